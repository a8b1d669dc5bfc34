"""divergence.py (kl_div) against torch.nn.functional.kl_div.

Values and gradients of input and target for every reduction (incl. 'batchmean') x
log_target x {float32, float64}; zero targets (torch's xlogy: contribution 0, target
gradient NaN), -inf log-probabilities, broadcasting, second order against torch's double
backward, jit / vmap / forward mode, bad input, checked mode, float16 / bfloat16.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxloss
from jaxloss import checked
from tests.torch_compare import (
    TORCH_DTYPES,
    check,
    check_each,
    check_second_order_each,
    jax_value_and_grads_each,
)

# inf - inf in torch_compare's error computation (both sides inf: compared as equal)
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")

DTYPES = ["float32", "float64"]
REDUCTIONS = ["none", "mean", "sum", "batchmean"]
N, C = 4, 5


@pytest.fixture(autouse=True)
def _quiet_torch_mean_warning():
    # torch warns on every reduction='mean' call (jaxloss documents it instead).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss")
        yield


def _data(rng, log_target, shape=(N, C), zeros=True):
    logits = rng.normal(size=shape)
    inp = torch.tensor(logits).log_softmax(-1).numpy()
    t = torch.tensor(rng.normal(size=shape))
    if log_target:
        return inp, t.log_softmax(-1).numpy()
    target = t.softmax(-1).numpy()
    if zeros:
        target.reshape(-1)[[0, 3, 7]] = 0.0  # exact zeros: xlogy(0, 0) = 0
    return inp, target


# The grids loop over the reductions inside one test: check_each, one compiled program per
# grid, a failure names its case.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(dtype, log_target):
    inp, target = _data(np.random.default_rng(0), log_target)
    check_each(jaxloss.kl_div, F.kl_div, {"input": inp, "target": target},
               [{"reduction": r, "log_target": log_target} for r in REDUCTIONS], grad=["input", "target"],
               dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_zero_target_contributes_zero_and_target_grad_is_torchs_nan(dtype):
    inp = np.log(np.array([0.2, 0.3, 0.5]))
    target = np.array([0.0, 0.4, 0.6])
    out = check(jaxloss.kl_div, F.kl_div, {"input": inp, "target": target}, {"reduction": "none"},
                grad=["input", "target"], dtype=dtype)
    assert float(out[0]) == 0.0
    gt = jax.grad(lambda t: jnp.sum(jaxloss.kl_div(jnp.asarray(inp, dtype), t, reduction="sum")))(
        jnp.asarray(target, dtype))
    # torch's xlogy derivative wrt its second argument is self / other = 0 / 0 at a zero target
    assert np.isnan(float(gt[0])) and np.isfinite(np.asarray(gt[1:])).all()
    gi = jax.grad(lambda x: jnp.sum(jaxloss.kl_div(x, jnp.asarray(target, dtype), reduction="sum")))(
        jnp.asarray(inp, dtype))
    assert float(gi[0]) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_infinite_log_probabilities(dtype, log_target):
    # input -inf: inf where the target is positive; NaN (0 * -inf) where it is zero, as in torch
    inp = np.array([-np.inf, -np.inf, np.log(0.5), np.log(0.5), -1e30])
    p = np.array([0.5, 0.0, 0.5, 0.0, 0.25])
    with np.errstate(divide="ignore"):
        target = np.log(p) if log_target else p  # log_target: log(0) = -inf target
    check_each(jaxloss.kl_div, F.kl_div, {"input": inp, "target": target},
               [{"reduction": r, "log_target": log_target} for r in REDUCTIONS], grad=["input", "target"], dtype=dtype)
    out = np.asarray(jaxloss.kl_div(jnp.asarray(inp, dtype), jnp.asarray(target, dtype), reduction="none",
                                    log_target=log_target))
    assert np.isposinf(out[0]) and np.isnan(out[1]) and np.isfinite(out[[2, 4]]).all()
    # a zero probability: xlogy gives 0; as a log-target, exp(-inf) * (-inf - x) = 0 * -inf is NaN (torch too)
    assert np.isnan(out[3]) if log_target else out[3] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_shapes_and_broadcasting(dtype):
    # every shape pair x reduction in one compiled program (check_each), each pair with its former data
    arrays = []
    for ishape, tshape in [((N, C), (C,)), ((C,), (N, C)), ((N, 1, C), (3, C)), ((), ()), ((C,), (C,)),
                           ((2, 3, C), (2, 3, C))]:
        rng = np.random.default_rng(1)
        inp = np.asarray(-rng.uniform(0.1, 3.0, size=ishape))
        target = np.asarray(rng.uniform(0.0, 1.0, size=tshape))
        arrays += [{"input": inp, "target": target}] * len(REDUCTIONS)
    # 'batchmean' divides by input.shape[0] (not the broadcast shape's); a 0-d input is only summed
    check_each(jaxloss.kl_div, F.kl_div, arrays, [{"reduction": r} for r in REDUCTIONS] * (len(arrays) // len(REDUCTIONS)),
               grad=["input", "target"], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_second_order(dtype):
    # rows of the Hessian against torch's double backward: every reduction x log_target in one
    # compiled program (check_second_order_each), each with the data it had as a test of its own
    arrays, options = [], []
    for log_target in (False, True):
        inp, target = _data(np.random.default_rng(2), log_target, zeros=False)
        arrays += [{"input": inp, "target": target}] * len(REDUCTIONS)
        options += [{"reduction": r, "log_target": log_target} for r in REDUCTIONS]
    check_second_order_each(jaxloss.kl_div, F.kl_div, arrays, options,
                            [("input", ("target",)), ("target", ("input",))], dtype)


def test_kl_div_batchmean_is_the_true_kl_divergence():
    p = jax.nn.softmax(jnp.asarray(np.random.default_rng(3).normal(size=(N, C))), -1)
    q = jax.nn.softmax(jnp.asarray(np.random.default_rng(4).normal(size=(N, C))), -1)
    kl = jnp.mean(jnp.sum(p * (jnp.log(p) - jnp.log(q)), -1))
    np.testing.assert_allclose(jaxloss.kl_div(jnp.log(q), p, reduction="batchmean"), kl, rtol=1e-12)
    np.testing.assert_allclose(jaxloss.kl_div(jnp.log(q), jnp.log(p), reduction="batchmean", log_target=True),
                               kl, rtol=1e-12)
    np.testing.assert_allclose(jaxloss.kl_div(jnp.log(q), p), kl / C, rtol=1e-12)  # 'mean': per element


def test_kl_div_batchmean_of_empty_batch_is_nan_like_torch():
    out = jaxloss.kl_div(jnp.zeros((0, 3)), jnp.zeros((0, 3)), reduction="batchmean")
    assert np.isnan(float(out)) and torch.isnan(F.kl_div(torch.zeros(0, 3), torch.zeros(0, 3), reduction="batchmean"))


def test_kl_div_dtype_promotion():
    x32, x64 = jnp.zeros(3, jnp.float32), jnp.full(3, 0.5, jnp.float64)
    assert jaxloss.kl_div(x32, x64).dtype == jnp.float64
    assert jaxloss.kl_div(x64, x32).dtype == jnp.float64
    assert F.kl_div(torch.zeros(3), torch.full((3,), 0.5, dtype=torch.float64)).dtype == torch.float64


def test_kl_div_bad_input():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        jaxloss.kl_div(x, x, reduction="avg")
    with pytest.raises(TypeError, match="kl_div: Integral inputs not supported"):
        jaxloss.kl_div(x, jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(TypeError, match="kl_div: Integral inputs not supported"):
        jaxloss.kl_div(jnp.zeros((2, 3), jnp.int32), x)
    with pytest.raises(ValueError, match=r"The size of tensor a \(2\) must match the size of tensor b \(3\) "
                                         r"at non-singleton dimension 1"):
        jaxloss.kl_div(x, jnp.zeros(2))
    with pytest.raises(RuntimeError, match=r"The size of tensor a \(2\) must match the size of tensor b \(3\)"):
        F.kl_div(torch.zeros(2, 3), torch.zeros(2))


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_jit_vmap_forward_mode_and_checked(log_target):
    inp, target = (jnp.asarray(a) for a in _data(np.random.default_rng(5), log_target, zeros=False))

    def scalar(x, t):
        return jaxloss.kl_div(x, t, reduction="batchmean", log_target=log_target)

    g = jax.grad(scalar, argnums=(0, 1))(inp, target)
    gj = jax.jit(jax.grad(scalar, argnums=(0, 1)))(inp, target)
    for a, b in zip(g, gj):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    batch_x, batch_t = jnp.stack([inp, inp[::-1], inp[:, ::-1]]), jnp.stack([target, target, target[::-1]])
    np.testing.assert_allclose(np.asarray(jax.vmap(scalar)(batch_x, batch_t)),
                               np.asarray([scalar(a, b) for a, b in zip(batch_x, batch_t)]), rtol=1e-12)
    for argnum in (0, 1):
        f = lambda *a: jaxloss.kl_div(*a, reduction="none", log_target=log_target)
        np.testing.assert_allclose(np.asarray(jax.jacfwd(f, argnum)(inp, target)),
                                   np.asarray(jax.jacrev(f, argnum)(inp, target)), rtol=1e-12)
    # no value checks in kl_div (torch has none): the checked twin returns the same value
    np.testing.assert_allclose(np.asarray(checked.kl_div(inp, target, "batchmean", log_target)),
                               np.asarray(scalar(inp, target)), rtol=1e-12)


def _ulp(ref, dtype):
    nmant, minexp = {"float16": (10, -14), "bfloat16": (7, -126)}[dtype]
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.abs(ref)))
    return 2.0 ** (np.where(np.isfinite(e), np.maximum(e, minexp), minexp) - nmant)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_kl_div_low_precision(dtype):
    """float16 / bfloat16 in and out (computed in float32, rounded once): value and gradients
    within one ulp of the float64 truth on the same rounded inputs, and never further from it
    than torch's low-precision result (torch rounds intermediates). Each reduction x log_target,
    the JAX side of all of them from one compiled program; a failure names its case."""
    tdt = TORCH_DTYPES[dtype]
    cases = []
    for log_target in (False, True):
        inp, target = _data(np.random.default_rng(6), log_target, zeros=False)
        inp, target = (torch.tensor(a).to(tdt).double().numpy() for a in (inp, target))
        cases += [(inp, target, {"reduction": r, "log_target": log_target}) for r in ("none", "sum", "batchmean")]
    j_side = jax_value_and_grads_each(
        jaxloss.kl_div, [{"input": jnp.asarray(x, dtype), "target": jnp.asarray(t, dtype), **kw} for x, t, kw in cases],
        ["input", "target"], dtype)

    def torch_run(inp, target, kw, dt):
        x, t = (torch.tensor(a, dtype=dt, requires_grad=True) for a in (inp, target))
        out = F.kl_div(x, t, **kw)
        return [out.detach().double().numpy()] + [g.double().numpy() for g in torch.autograd.grad(out.sum(), [x, t])]

    failed = []
    for (inp, target, kw), (out, grads) in zip(cases, j_side):
        truth, lowp = torch_run(inp, target, kw, torch.float64), torch_run(inp, target, kw, tdt)
        assert out.dtype == jnp.dtype(dtype) and all(g.dtype == jnp.dtype(dtype) for g in grads.values()), kw
        for what, j, tr, tl in zip(["value", "input", "target"], [out, grads["input"], grads["target"]], truth, lowp):
            err_j = np.abs(np.asarray(j, np.float64) - tr)
            if not (err_j <= _ulp(tr, dtype)).all():
                failed.append(f"{kw} {what}: beyond one ulp of the float64 truth, worst {err_j.max():.3g}")
            if not err_j.max() <= np.abs(tl - tr).max() + 1e-3 * _ulp(tr, dtype).max():
                failed.append(f"{kw} {what}: further from the float64 truth than torch")
    assert not failed, "\n".join(failed)
