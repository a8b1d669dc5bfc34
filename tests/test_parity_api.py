"""jaxloss.parity.compare / parity.assert_close: passing, failure detection, exceptions, pytrees, gradients."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxloss
from jaxloss import parity
from jaxloss.parity.tolerances import ulp, ulp_error

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 5))
Y = rng.normal(size=(4, 5))


def test_passes_with_grads_and_hvp_in_every_dtype():
    for dt in ("float64", "float32", "float16", "bfloat16"):
        r = parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, grad_argnums=(0, 1), hvp=True, dtype=dt, reduction="none")
        assert r.passed, r
        assert r.dtype == dt
        assert [c.name for c in r.grads] == ["grad args[0]", "grad args[1]"]
        assert len(r.hvps) == 2
        if dt != "float64":  # both compared with the float64 reference
            assert r.outputs[0].jax_ref_abs is not None and r.outputs[0].closer in ("jax", "torch", "tie")


def test_detects_a_wrong_value_and_gradient():
    r = parity.compare(lambda a, b: jaxloss.l1_loss(a, b) * 1.001, F.l1_loss, X, Y, grad_argnums=0)
    assert r.status == "failed" and not r.passed
    assert not r.outputs[0].passed and not r.grads[0].passed
    assert r.outputs[0].max_rel == pytest.approx(1e-3, rel=1e-6)
    assert r.outputs[0].max_ulp > 1e9
    text = repr(r)
    assert "FAIL value" in text and "FAIL grad args[0]" in text
    with pytest.raises(AssertionError, match="FAIL value"):
        parity.assert_close(lambda a, b: jaxloss.l1_loss(a, b) * 1.001, F.l1_loss, X, Y)


def test_detects_a_wrong_gradient_only():
    import jax

    @jax.custom_vjp
    def f(a):
        return jnp.sum(a**2)

    f.defvjp(lambda a: (f(a), a), lambda a, g: (3 * a * g,))  # should be 2a
    r = parity.compare(f, lambda a: (a**2).sum(), X, grad_argnums=0)
    assert r.status == "failed" and r.outputs[0].passed and not r.grads[0].passed


def test_exception_on_one_side_is_reported_not_raised():
    def boom(*a, **k):
        raise RuntimeError("nope")

    r = parity.compare(boom, F.l1_loss, X, Y)
    assert r.status == "failed" and "RuntimeError: nope" in r.jax_error
    r = parity.compare(jaxloss.l1_loss, boom, X, Y)
    assert r.status == "failed" and "RuntimeError: nope" in r.torch_error
    r = parity.compare(boom, boom, X, Y)
    assert r.passed and "both sides raised" in r.notes


def test_not_implemented_is_its_own_status():
    def todo(*a, **k):
        raise NotImplementedError("later")

    r = parity.compare(todo, F.l1_loss, X, Y, grad_argnums=0)
    assert r.status == "not_implemented" and not r.passed


def test_mismatched_signatures_and_bad_arguments():
    r = parity.compare(jaxloss.l1_loss, F.mse_loss, X, Y, bogus=1)  # both reject the keyword: consistent
    assert r.passed and r.jax_error and r.torch_error
    r = parity.compare(lambda a, b: jaxloss.l1_loss(a, b), F.l1_loss, X, Y, reduction="sum")  # jax side lacks it
    assert r.status == "failed" and "reduction" in r.jax_error
    r = parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, grad_argnums="reduction", reduction="sum")
    assert r.status == "error" and "cannot differentiate" in r.notes[0]
    r = parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, grad_argnums=5)
    assert r.status == "error"
    r = parity.compare(jaxloss.l1_loss, F.l1_loss, X, "not an array")
    assert r.status in ("passed", "failed")  # both raise or not: reported, never raised


def test_shape_and_dtype_mismatches_fail():
    r = parity.compare(lambda a: a.sum(0), lambda a: a.sum(), X)
    assert r.status == "failed" and "shape" in r.outputs[0].message
    r = parity.compare(lambda a: a.astype(jnp.float32), lambda a: a, X)
    assert r.status == "failed" and "dtype" in r.outputs[0].message


def test_pytree_arguments_outputs_and_keyword_grads():
    def jf(d, scale, w=None):
        return d["a"] * scale + d["b"][0] * w, jnp.sum(d["b"][0])

    def tf(d, scale, w=None):
        return d["a"] * scale + d["b"][0] * w, d["b"][0].sum()

    tree = {"a": X, "b": [Y, "a string leaf", 3]}
    r = parity.compare(jf, tf, tree, 2.0, grad_argnums=(0, "w"), hvp=True, w=X * 0.5)
    assert r.passed, r
    assert [c.name for c in r.outputs] == ["value[0]", "value[1]"]
    assert {c.name for c in r.grads} == {"grad args[0]['a']", "grad args[0]['b'][0]", "grad w"}
    bad = parity.compare(lambda d, s, w=None: jf(d, s, w)[::-1], tf, tree, 2.0, w=X)
    assert bad.status == "failed"


def test_reference_judging_for_documented_deviations():
    big = np.array([100.0, -100.0, 3.0])
    # torch's naive log(1 + exp(x)) overflows in float32; the stable JAX form is right
    naive = lambda x: torch.log(1 + torch.exp(x))  # noqa: E731
    stable = lambda x: F.softplus(x, threshold=50)  # noqa: E731
    r = parity.compare(lambda x: jnp.logaddexp(0.0, x), naive, big, dtype="float32", grad_argnums=0)
    assert r.status == "failed"
    r = parity.compare(lambda x: jnp.logaddexp(0.0, x), naive, big, dtype="float32", grad_argnums=0,
                       judge="reference", reference=stable)
    assert r.passed, r
    assert r.outputs[0].judged == "reference" and r.outputs[0].closer == "jax"


def test_low_precision_miss_judged_by_float64_reference():
    # torch-side sum in bfloat16, one rounding per addition (stagnates); the JAX side sums in float32
    x = np.linspace(1.0, 2.0, 512)

    def tf(a):
        s = a[0]
        for v in a[1:]:
            s = s + v
        return s

    jf = lambda a: jnp.sum(a.astype(jnp.float32)).astype(a.dtype)  # noqa: E731
    r = parity.compare(jf, tf, x, dtype="bfloat16")
    c = r.outputs[0]
    assert c.closer == "jax" and c.n_bad == 1
    assert r.passed and c.judged == "reference", r
    # the same in float32 is judged against torch alone: a miss is a failure
    r32 = parity.compare(lambda a: jnp.sum(a) * (1 + 1e-4), tf, x, dtype="float32")
    assert r32.status == "failed"


def test_gradients_of_unused_arguments_are_zero_on_both_sides():
    r = parity.compare(lambda a, b: jnp.sum(a), lambda a, b: a.sum(), X, Y, grad_argnums=(0, 1), hvp=True)
    assert r.passed, r


def test_ulp_helpers():
    assert ulp(np.array(1.0), "float32") == 2.0**-23
    assert ulp(np.array(1.0), "bfloat16") == 2.0**-7
    assert ulp(np.array(0.0), "float16") == 2.0**-24
    assert ulp_error(np.array(1.0 + 2**-22), np.array(1.0), "float32") == pytest.approx(2.0)
    assert parity.tolerance_for(torch.float32) == parity.TOLERANCES["float32"]


def test_second_order_is_the_double_backward_contraction():
    """The second order is v^T H (the gradient of <grad, v>, torch's double backward) on both
    sides. Here the "Hessian" of the derivative rules is not symmetric (d/db of df/da = 1, d/da of
    df/db = 2): H v and v^T H differ, and only the same contraction agrees."""
    import jax

    @jax.custom_jvp
    def jf(a, b):
        return jnp.sum(a * b)

    @jf.defjvp
    def _(primals, tangents):
        (a, b), (da, db) = primals, tangents
        return jf(a, b), jnp.sum(b * da) + jnp.sum(2 * a * db)  # df/db = 2a on purpose

    class TF(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return (a * b).sum()

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * 2 * a

    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.25, 3.0, -1.0])
    r = parity.compare(jf, TF.apply, a, b, grad_argnums=(0, 1), hvp=True)
    assert r.passed, r
    # and the numbers are v^T H: the a-component is H[b, a] v_b = 2 v_b (H v would give 1 v_b)
    from jaxloss.parity.convert import pattern as _pattern

    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    cot = float(_pattern((), np.float64, "cot0", 0.5, 1.5))
    va, vb = (torch.tensor(_pattern((3,), np.float64, f"tan{i}", -1.0, 1.0)) for i in (0, 1))
    ga, gb = torch.autograd.grad(TF.apply(ta, tb) * cot, (ta, tb), create_graph=True)
    ha, hb = torch.autograd.grad((ga * va).sum() + (gb * vb).sum(), (ta, tb))
    np.testing.assert_allclose(ha.numpy(), 2 * cot * vb.numpy())
    np.testing.assert_allclose(hb.numpy(), cot * va.numpy())


def test_bce_second_order_at_exact_zero_and_one_matches_torch():
    """Regression: at probabilities exactly 0 / 1, torch's BCE mixed second derivatives are not
    symmetric (clamped -1/max(x(1-x), 1e-12) vs unclamped -1/(x(1-x)) = inf); a forward-over-reverse
    H v on the JAX side gave finite ~5e10 where torch's double backward gives +-inf."""
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 0.7])
    for reduction in ("sum", "mean", "none"):
        r = parity.compare(jaxloss.binary_cross_entropy, F.binary_cross_entropy, x, y, grad_argnums=(0, 1),
                           hvp=True, reduction=reduction)
        assert r.passed, r
        assert len(r.hvps) == 2


def test_compare_many_isolates_errors():
    from jaxloss.parity.compare import CompareRequest, compare_many

    def raising(*a, **k):
        raise ValueError("bad trace")

    reqs = [
        CompareRequest(jaxloss.l1_loss, F.l1_loss, (X, Y), {}, grad_argnums=(0,), hvp=True),
        CompareRequest(raising, F.l1_loss, (X, Y), {}, grad_argnums=(0,)),
        CompareRequest(jaxloss.mse_loss, F.mse_loss, (X, Y), {"reduction": "sum"}, grad_argnums=(0, 1), dtype="float32"),
    ]
    a, b, c = compare_many(reqs)
    assert a.passed and c.passed and len(a.hvps) == 1, (a, c)
    assert b.status == "failed" and "bad trace" in b.jax_error


def test_reference_is_rounded_once_to_the_dtype():
    # 1e6 overflows float16: the correctly rounded truth is inf, which the JAX side returns,
    # while this torch side returns NaN. Judged against the (rounded) float64 reference it passes.
    x = np.array([1.0, 2.0])
    jf = lambda a: (a.astype(jnp.float32) * 1e6).astype(a.dtype)  # noqa: E731
    tf = lambda a: a * float("nan")  # noqa: E731
    r = parity.compare(jf, tf, x, dtype="float16", judge="reference", reference=lambda a: a * 1e6)
    assert r.passed, r
    c = r.outputs[0]
    assert c.judged == "reference" and c.jax_ref_abs == 0.0 and c.closer == "jax"
    assert parity.compare(jf, tf, x, dtype="float16").status == "failed"  # against torch: a failure


def test_loss_tests_judge_with_parity_s_rule():
    """tests.torch_compare.assert_close is parity.judge.compare_arrays (no second engine)."""
    from tests.torch_compare import assert_close

    a = np.array([1.0, np.nan, np.inf, 2.0])
    assert_close(a, torch.tensor(a), "float64", "same")  # NaN ~ NaN, inf ~ inf
    b = a.copy()
    b[3] += 1e-6
    with pytest.raises(AssertionError, match=r"FAIL bad .*1/4 bad, worst at \[3\]"):
        assert_close(b, torch.tensor(a), "float64", "bad")
    assert_close(b.astype(np.float32), torch.tensor(a), "float32", "within float32 tolerance")
