"""jaxloss.checked: the checkify-based mode that raises torch's messages on bad values."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import _checked, checked


def test_every_public_loss_has_a_checked_twin():
    public = {n for n in jaxloss.__all__ if callable(getattr(jaxloss, n)) and n not in ("from_torch",)}
    public -= {"Reduction", "checked", "nn"}
    assert public <= set(dir(checked))


def test_checked_mode_passes_valid_input_and_returns_the_same_value():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
    t = jnp.asarray([0, 3, 1])
    np.testing.assert_array_equal(np.asarray(checked.cross_entropy(x, t)), np.asarray(jaxloss.cross_entropy(x, t)))


def test_checked_mode_raises_where_the_fast_mode_gives_nan():
    x = jnp.zeros((3, 4), jnp.float32)
    bad = jnp.asarray([0, 7, 1])
    assert np.isnan(np.asarray(jaxloss.cross_entropy(x, bad)))
    with pytest.raises(ValueError, match="out of bounds"):
        checked.cross_entropy(x, bad)
    # static arguments still work positionally and by keyword
    with pytest.raises(ValueError, match="out of bounds"):
        checked.nll_loss(x, bad, None, -100, "sum")


def test_value_check_is_inert_outside_checked_mode():
    # In the default mode a failing value_check must not raise or need checkify.
    _checked.value_check(jnp.asarray(False), "never raised")


def test_unknown_name():
    with pytest.raises(AttributeError):
        checked.no_such_loss  # noqa: B018


def test_checked_composes_with_jit_and_vmap():
    import jax

    x = jnp.zeros((2, 3), jnp.float32)
    good, bad = jnp.asarray([0, 2]), jnp.asarray([0, 7])
    want = float(jaxloss.cross_entropy(x, good))
    assert float(jax.jit(checked.cross_entropy)(x, good)) == want
    np.testing.assert_allclose(np.asarray(jax.vmap(checked.cross_entropy)(x[None], good[None])), [want])
    with pytest.raises(Exception, match="Target 7 is out of bounds."):
        jax.jit(checked.cross_entropy)(x, bad).block_until_ready()
    with pytest.raises(ValueError, match="Target 7 is out of bounds."):
        jax.vmap(checked.cross_entropy)(x[None], bad[None])


def test_checked_checks_a_traced_option_range():
    x = jnp.zeros((2, 3), jnp.float32)
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        checked.cross_entropy(x, jnp.asarray([0, 2]), label_smoothing=jnp.float32(1.5))


def test_the_segmentation_namespaces_are_one_module_each_and_raise_the_librarys_message():
    import importlib

    import jaxloss.monai
    import jaxloss.smp

    for name in checked.NAMESPACES:
        own = getattr(jaxloss, name).checked
        assert getattr(checked, name) is own is importlib.import_module(f"jaxloss.checked.{name}")
        assert name in dir(checked)
        # every loss of the namespace has its checked twin there
        assert set(dir(own)) == set(jaxloss._registry.registered(f"jaxloss.{name}")) != set()
    logits, labels = jnp.zeros((1, 3, 2, 2)), jnp.asarray([[[[0, 1], [2, 3]]]])
    assert np.isnan(np.asarray(jaxloss.monai.dice_loss(logits, labels, to_onehot_y=True)))
    with pytest.raises(ValueError, match="^index 3 is out of bounds for dimension 1 with size 3$"):
        checked.monai.dice_loss(logits, labels, to_onehot_y=True)
    with pytest.raises(ValueError, match="^Class values must be smaller than num_classes.$"):
        checked.smp.dice_loss(logits, labels[:, 0], "multiclass")
    good = jnp.asarray([[[[0, 1], [2, 2]]]])
    assert checked.monai.dice_loss(logits, good, to_onehot_y=True) == jaxloss.monai.dice_loss(logits, good, to_onehot_y=True)
