"""jaxloss.checked: the checkify-based mode that raises torch's messages on bad values."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
import jaxloss.checked as checked
from jaxloss import _core


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
    _core.value_check(jnp.asarray(False), "never raised")


def test_unknown_name():
    with pytest.raises(AttributeError):
        checked.no_such_loss  # noqa: B018
