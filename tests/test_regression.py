"""regression.py against torch.nn.functional: values, gradients, second derivatives, errors.

Every function x every option x reduction x {float32, float64} is compared with torch
(value and the gradients of every differentiable argument), then: data on the kinks,
extreme values, Hessian-vector products against torch's double backward, jit / vmap
composition, every bad-input path (with torch's exact message where torch has one), type
promotion and float16 / bfloat16.
"""

import math
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jaxloss.parity.tolerances import tolerance_for

import jaxloss
from jaxloss import checked
from tests.torch_compare import (
    assert_close,
    check,
    check_each,
    check_hvp_each,
    jax_value_and_grads_each,
    to_jax,
    to_torch,
)

DTYPES = ["float32", "float64"]
LOW = ["float16", "bfloat16"]
REDUCTIONS = ["none", "mean", "sum"]
SHAPE = (4, 5)


def _rng(*key):
    """A generator seeded by ``key`` (stable across processes, unlike ``hash``)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _kink_pair(rng, kink, shape=SHAPE):
    """``|x - y|`` exactly ``kink`` on a third of the elements, exactly 0 on another third.

    Values are multiples of 1/8 (and ``kink`` a power of two or 0), exact in every dtype.
    """
    y = np.round(rng.normal(size=shape) * 8) / 8
    d = np.round(rng.normal(size=shape) * 16) / 8
    sel = np.arange(np.prod(shape)).reshape(shape) % 3
    d = np.where(sel == 0, kink * rng.choice([-1.0, 1.0], size=shape), np.where(sel == 1, 0.0, d))
    return y + d, y


def _torch_error(fn):
    """The message of the exception ``fn`` raises in torch (asserts that it raises)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return str(e)
    raise AssertionError("torch did not raise")


def _t(x, dtype="float64", requires_grad=False):
    return to_torch(np.asarray(x, dtype=np.float64), dtype, requires_grad)


def _j(x, dtype="float64"):
    return to_jax(np.asarray(x, dtype=np.float64), dtype)


# =========================================================================== the grid
# Each grid loops over its options inside one test (check_each: one compiled program for the
# grid, a failure names its case), with the data each case had as a test of its own.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_l1_loss(dtype, weighted):
    rng = np.random.default_rng(0)
    x = rng.normal(size=SHAPE)
    y = rng.normal(size=SHAPE)
    y[0, :2] = x[0, :2]  # ties: gradient sign(0) = 0 in torch
    arrays = {"input": x, "target": y}
    if weighted:
        arrays["weight"] = rng.uniform(0.1, 2.0, size=SHAPE)
    check_each(jaxloss.l1_loss, F.l1_loss, arrays, [{"reduction": r} for r in REDUCTIONS], grad=list(arrays),
               dtype=dtype, positional=["input", "target"])


def _weighted_kink_arrays(rng, kink, weighted):
    x, y = _kink_pair(rng, kink)  # |x - y| == kink and x == y: torch's branch choices
    arrays = {"input": x, "target": y}
    if weighted:
        arrays["weight"] = rng.uniform(0.1, 2.0, size=SHAPE)
    return arrays


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_mse_loss(dtype, weighted):
    arrays = [_weighted_kink_arrays(_rng("mse", r, weighted), 1.0, weighted) for r in REDUCTIONS]
    check_each(jaxloss.mse_loss, F.mse_loss, arrays, [{"reduction": r} for r in REDUCTIONS], grad=list(arrays[0]),
               dtype=dtype, positional=["input", "target"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_huber_loss(dtype, weighted):
    grid = [(r, delta) for r in REDUCTIONS for delta in [1.0, 0.5, 2.0]]
    arrays = [_weighted_kink_arrays(_rng("huber", r, delta, weighted), delta, weighted) for r, delta in grid]
    check_each(jaxloss.huber_loss, F.huber_loss, arrays, [{"reduction": r, "delta": delta} for r, delta in grid],
               grad=list(arrays[0]), dtype=dtype, positional=["input", "target"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_smooth_l1_loss(dtype):
    grid = [(r, beta) for r in REDUCTIONS for beta in [1.0, 0.5, 2.0, 0.0]]
    pairs = [_kink_pair(_rng("sl1", r, beta), beta) for r, beta in grid]
    check_each(jaxloss.smooth_l1_loss, F.smooth_l1_loss, [{"input": x, "target": y} for x, y in pairs],
               [{"reduction": r, "beta": beta} for r, beta in grid], grad=["input", "target"], dtype=dtype)


def _poisson_data(rng, log_input, shape=SHAPE):
    target = rng.poisson(2.0, size=shape).astype(np.float64)
    target.flat[:3] = [0.0, 1.0, 0.5]  # the Stirling mask: target <= 1 (0.5: between)
    if log_input:
        x = rng.normal(size=shape)
    else:
        x = rng.uniform(0.1, 4.0, size=shape)
        x.flat[3:5] = 0.0  # rate exactly 0: log(0 + eps)
    return x, target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poisson_nll_loss(dtype, reduction):
    grid = [(True, False, None), (True, True, None), (False, False, None), (False, True, None),
            (False, False, 1e-3), (False, True, 1e-3), (True, False, 1e-3)]  # eps only acts without log_input
    arrays, options = [], []
    for log_input, full, eps in grid:
        x, t = _poisson_data(_rng("poisson", reduction, log_input, full, eps), log_input)
        arrays.append({"input": x, "target": t})
        options.append({"log_input": log_input, "full": full, "reduction": reduction,
                        **({"eps": eps} if eps is not None else {})})
    # target is differentiable; with full=True its gradient at target == 0 is NaN in torch too
    check_each(jaxloss.poisson_nll_loss, F.poisson_nll_loss, arrays, options, grad=["input", "target"], dtype=dtype)


def test_poisson_full_target_gradient_is_torchs_nan_at_zero():
    x = np.array([0.3, 0.1, 1.0, 2.0, 3.0])
    t = np.array([0.0, 0.5, 1.0, 2.0, 5.0])
    for log_input in (True, False):
        tt = _t(t, requires_grad=True)
        F.poisson_nll_loss(_t(x), tt, log_input=log_input, full=True).backward()
        g = jax.grad(lambda t_, li=log_input: jaxloss.poisson_nll_loss(_j(x), t_, log_input=li, full=True))(_j(t))
        assert np.isnan(np.asarray(g)[0]) and np.isnan(tt.grad.numpy()[0])
        assert_close(g, tt.grad, "float64", "target grad")


_VAR_SHAPES = {
    "full": lambda s: s,
    "drop-last": lambda s: s[:-1],
    "last1": lambda s: s[:-1] + (1,),
    "mid1": lambda s: (s[0], 1, s[2]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("var_form", ["array", "float"])
def test_gaussian_nll_loss(dtype, var_form):
    # every var shape (array form) x reduction x full in one check_each grid, each with its former data
    grid = [(r, full) for r in REDUCTIONS for full in [False, True]]
    arrays, options = [], []
    for var_kind in _VAR_SHAPES if var_form == "array" else ["float"]:
        for reduction, full in grid:
            rng = _rng("gauss", reduction, var_kind, full)
            shape = (3, 4, 2)
            x, y = rng.normal(size=shape), rng.normal(size=shape)
            if var_kind == "float":
                var = 0.7
            else:
                var = rng.uniform(0.1, 2.0, size=_VAR_SHAPES[var_kind](shape))
                var.flat[:2] = [0.0, 1e-8]  # below eps: clamped, gradient passed through the clamp
            arrays.append({"input": x, "target": y, "var": var})
            options.append({"full": full, "reduction": reduction})
    grad = ["input", "target"] if var_form == "float" else ["input", "target", "var"]
    check_each(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, arrays, options, grad=grad, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1e-6, 1e-2, 0.5, math.nan])
def test_gaussian_nll_loss_eps(dtype, eps):
    rng = _rng("gauss-eps", eps)
    x, y = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    var = rng.uniform(0.0, 1.0, size=SHAPE)
    var[0, :4] = [0.0, eps, eps / 2, 2 * eps]
    check(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, {"input": x, "target": y, "var": var},
          {"eps": eps, "reduction": "none"}, grad=["input", "target", "var"], dtype=dtype)


def test_gaussian_nll_loss_nan_eps_is_nan_traced_and_checked_too():
    # torch clamps var at a NaN eps to NaN (no error): value and gradients NaN, in every mode.
    x, y, var = _j(_X), _j(_X) + 0.5, _j(np.abs(_X) + 0.1)
    assert np.isnan(float(F.gaussian_nll_loss(_t(_X), _t(_X), _t(np.abs(_X) + 0.1), eps=math.nan)))
    assert np.isnan(float(checked.gaussian_nll_loss(x, y, var, eps=math.nan)))
    value, grads = jax.jit(jax.value_and_grad(
        lambda x, var, eps: jaxloss.gaussian_nll_loss(x, y, var, eps=eps), argnums=(0, 1)))(x, var, jnp.nan)
    assert np.isnan(float(value))
    assert all(np.isnan(np.asarray(g)).all() for g in grads)


@pytest.mark.parametrize("input_shape,var_shape", [
    ((5,), ()), ((5,), (5,)), ((5,), (1,)), ((), ()), ((2, 3, 4), (2, 3)),
])
def test_gaussian_nll_loss_small_shapes(input_shape, var_shape):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=input_shape), rng.normal(size=input_shape)
    var = np.asarray(rng.uniform(0.5, 2.0, size=var_shape))
    check(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, {"input": x, "target": y, "var": var}, {},
          grad=["input", "target", "var"], dtype="float64")


def test_gaussian_nll_loss_broadcast_target():
    # torch does not check target's shape: it broadcasts (silently) with input.
    rng = np.random.default_rng(2)
    x, y, var = rng.normal(size=SHAPE), rng.normal(size=(5,)), rng.uniform(0.5, 2, size=SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, {"input": x, "target": y, "var": var},
              {"reduction": "none"}, grad=["input", "target", "var"], dtype="float64")


def test_gaussian_nll_loss_float_var_forms():
    # Python int, numpy float64 (a float subclass) and a weakly typed 0-d array all mean "one var".
    rng = np.random.default_rng(3)
    x, y = _j(rng.normal(size=SHAPE), "float32"), _j(rng.normal(size=SHAPE), "float32")
    ref = F.gaussian_nll_loss(_t(x, "float32"), _t(y, "float32"), 2.0)
    for var in (2, 2.0, np.float64(2.0), jnp.asarray(2.0)):
        out = jaxloss.gaussian_nll_loss(x, y, var)
        assert out.dtype == jnp.float32
        assert_close(out, ref, "float32", f"var={var!r}")
    # inside the user's jit a Python float is a weakly typed tracer: still one var
    out = jax.jit(lambda v: jaxloss.gaussian_nll_loss(x, y, v))(2.0)
    assert_close(out, ref, "float32", "jit float var")


# =========================================================================== kinks, explicitly
def test_smooth_l1_beta_zero_is_l1():
    rng = np.random.default_rng(4)
    x, y = _kink_pair(rng, 0.0)
    for red in REDUCTIONS:
        a = jaxloss.smooth_l1_loss(_j(x), _j(y), reduction=red, beta=0.0)
        b = jaxloss.l1_loss(_j(x), _j(y), reduction=red)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    g = jax.grad(lambda x_: jaxloss.smooth_l1_loss(x_, _j(y), beta=0.0, reduction="sum"))(_j(x))
    np.testing.assert_array_equal(np.asarray(g), np.sign(x - y))  # 0 at the ties


@pytest.mark.parametrize("fn,tfn,opt", [
    (jaxloss.huber_loss, F.huber_loss, "delta"),
    (jaxloss.smooth_l1_loss, F.smooth_l1_loss, "beta"),
])
@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_gradient_at_threshold_and_tie(fn, tfn, opt, k):
    # d = x - y in {-k, 0, k} exactly, and just inside/outside
    d = np.array([-k, 0.0, k, np.nextafter(k, 0), np.nextafter(k, 2 * k), -np.nextafter(k, 0)])
    x, y = 1.0 + d, np.ones_like(d)  # x - y == d exactly (Sterbenz)
    xt = _t(x, requires_grad=True)
    yt = _t(y, requires_grad=True)
    tfn(xt, yt, reduction="sum", **{opt: k}).backward()
    gx, gy = jax.grad(lambda a, b: fn(a, b, reduction="sum", **{opt: k}), argnums=(0, 1))(_j(x), _j(y))
    # on the threshold and at the tie the branch decides: exactly torch's +-1 (+-delta) and 0
    exact = np.abs(d) == k
    exact[1] = True
    np.testing.assert_array_equal(np.asarray(gx)[exact], xt.grad.numpy()[exact])
    np.testing.assert_array_equal(np.asarray(gy)[exact], yt.grad.numpy()[exact])
    # one ULP inside / outside: the quadratic / linear branch, as torch (up to rounding)
    assert_close(gx, xt.grad, "float64", "grad wrt input")
    assert_close(gy, yt.grad, "float64", "grad wrt target")


# =========================================================================== extreme values
@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
@pytest.mark.parametrize("scale", [1e4, 1e30])
@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huge_values_float32(scale, name, reduction):
    rng = _rng("huge", scale, name)
    x, y = rng.normal(size=SHAPE) * scale, rng.normal(size=SHAPE) * scale
    x[0, 0] = y[0, 0]  # a tie among huge values
    check(getattr(jaxloss, name), getattr(F, name), {"input": x, "target": y}, {"reduction": reduction},
          grad=["input", "target"], dtype="float32")


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
@pytest.mark.parametrize("name,kw", [("huber_loss", {"delta": 0.5}), ("smooth_l1_loss", {"beta": 0.5}),
                                     ("l1_loss", {}), ("mse_loss", {})])
def test_infinite_input(name, kw):
    # |x - y| = inf: torch's gradient is finite (+-delta / +-1) for huber / smooth L1; no 0 * inf NaN.
    x = np.array([np.inf, -np.inf, 1.0, 0.2])
    y = np.array([0.0, 0.0, np.inf, 0.1])
    check(getattr(jaxloss, name), getattr(F, name), {"input": x, "target": y}, {"reduction": "sum", **kw},
          grad=["input", "target"], dtype="float32")


@pytest.mark.parametrize("dtype,real", [("complex64", "float32"), ("complex128", "float64")])
@pytest.mark.parametrize("weighted", [False, True])
def test_l1_loss_complex(dtype, real, weighted):
    # torch computes |x - y| for complex inputs (a real result) with the gradient sgn(x - y);
    # jax.grad gives the conjugate of torch's .grad (JAX's convention for complex inputs).
    # The three reductions (each with the data it had as a test of its own) in one jitted program.
    data = []
    for reduction in REDUCTIONS:
        rng = _rng("l1-complex", dtype, reduction, weighted)
        x, y = (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE) for _ in range(2))
        y[0, :2] = x[0, :2]  # x == y: gradient 0, as sgn(0)
        w = rng.uniform(0.5, 2.0, size=SHAPE) if weighted else None
        data.append((x, y, w))

    @jax.jit
    def values_and_grads(args):
        out = []
        for reduction, (a, b, jw) in zip(REDUCTIONS, args):
            def loss(a, b, reduction=reduction, jw=jw):
                return jaxloss.l1_loss(a, b, reduction=reduction, weight=jw)

            out.append((loss(a, b), jax.grad(lambda a, b, loss=loss: jnp.sum(loss(a, b)), argnums=(0, 1))(a, b)))
        return out

    j_side = values_and_grads([(jnp.asarray(x, dtype), jnp.asarray(y, dtype), None if w is None else jnp.asarray(w, real))
                               for x, y, w in data])
    for reduction, (x, y, w), (out, (gx, gy)) in zip(REDUCTIONS, data, j_side):
        tx, ty = (torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=True) for a in (x, y))
        tw = None if w is None else torch.tensor(w, dtype=getattr(torch, real))
        t_out = F.l1_loss(tx, ty, reduction=reduction, weight=tw)
        t_gx, t_gy = torch.autograd.grad(t_out.sum(), [tx, ty])
        assert out.dtype == jnp.dtype(real) and str(t_out.dtype) == f"torch.{real}"
        assert_close(out, t_out.detach(), real, f"value ({reduction})")
        for g, t_g, what in ((gx, t_gx, "input"), (gy, t_gy, "target")):
            g = np.conj(np.asarray(g))
            assert_close(g.real, t_g.real.numpy(), real, f"grad wrt {what} (real part, {reduction})")
            assert_close(g.imag, t_g.imag.numpy(), real, f"grad wrt {what} (imaginary part, {reduction})")
        np.testing.assert_array_equal(np.asarray(gx)[0, :2], 0)


def test_l1_loss_complex_and_real_promote_like_torch():
    x, y = np.array([1.0, 2.0, -1.0]), np.array([1j, 2.0, 1 - 1j])
    out = jaxloss.l1_loss(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.complex64))
    t_out = F.l1_loss(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.complex64))
    assert out.dtype == jnp.float32
    assert_close(out, t_out, "float32", "value")


@pytest.mark.parametrize("name,kw", [("huber_loss", {"delta": math.inf}), ("smooth_l1_loss", {"beta": math.inf})])
@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_threshold(name, kw, dtype):
    # An infinite delta / beta: every element is quadratic; the unused linear branch
    # (delta * (|d| - delta / 2) = inf * -inf) must not leak a 0 * inf NaN into the gradient.
    x, y = _kink_pair(_rng("inf-threshold", name), 1.0)
    check(getattr(jaxloss, name), getattr(F, name), {"input": x, "target": y}, {"reduction": "mean", **kw},
          grad=["input", "target"], dtype=dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_extremes(dtype):
    # log_input=False: rate 0 with target 0 (0 * log(eps) = 0) and with target > 0; huge rates
    x = np.array([0.0, 0.0, 1e30 if dtype == "float32" else 1e300, 1e4, 1e-30, 3.0])
    t = np.array([0.0, 3.0, 2.0, 0.0, 0.0, 1e4])
    check_each(jaxloss.poisson_nll_loss, F.poisson_nll_loss, {"input": x, "target": t},
               [{"log_input": False, "full": full, "eps": eps, "reduction": "none"}
                for full in (False, True) for eps in (1e-8, 0.0)], grad=["input"], dtype=dtype)
    # log_input=True: exp overflows to inf like torch, very negative log-rates underflow to 0
    x = np.array([100.0, 1000.0, -100.0, -1e30 if dtype == "float32" else -1e300, 0.0])
    t = np.array([0.0, 3.0, 2.0, 0.0, 1e4])
    check(jaxloss.poisson_nll_loss, F.poisson_nll_loss, {"input": x, "target": t}, {"reduction": "none"},
          grad=["input", "target"], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_extreme_var(dtype):
    x = np.array([1.0, 1e4, 0.0, 2.0, 1e3, -3.0, 1e15, 0.5])
    y = np.array([0.0, -1e4, 0.0, 2.0, 0.0, 3.0, 0.0, 0.5])
    var = np.array([0.0, 1e-30, 1e-7, 1e30, 1e-6, 1e10, 1e30, 5e-7])
    reductions = [{"reduction": reduction} for reduction in REDUCTIONS]
    check_each(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, {"input": x, "target": y, "var": var},
               reductions, grad=["input", "target", "var"], dtype=dtype)
    check_each(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, {"input": x, "target": y, "var": 1e-30},
               reductions, grad=["input", "target"], dtype=dtype)


def test_gaussian_var_gradient_passes_through_the_clamp():
    x, y = _j([1.0, 2.0, 3.0, 4.0]), _j([0.0, 0.0, 0.0, 0.0])
    var = np.array([0.0, 1e-7, 1e-6, 1.0])
    vt = _t(var, requires_grad=True)
    F.gaussian_nll_loss(_t(x), _t(y), vt, reduction="none").sum().backward()
    g = jax.grad(lambda v: jaxloss.gaussian_nll_loss(x, y, v, reduction="sum"))(_j(var))
    assert np.asarray(g)[0] == pytest.approx(-5e11, rel=1e-6)  # evaluated at eps, not 0
    assert_close(g, vt.grad, "float64", "var grad")


@pytest.mark.parametrize("dtype", DTYPES + LOW)
def test_empty(dtype):
    e = np.zeros((0, 3))
    # each loss's three reductions: one value-only check_each grid (one program)
    for name in ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss"]:
        check_each(getattr(jaxloss, name), getattr(F, name), {"input": e, "target": e},
                   [{"reduction": red} for red in REDUCTIONS], grad=[], dtype=dtype)
    check_each(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, {"input": e, "target": e, "var": e + 1},
               [{"reduction": red} for red in REDUCTIONS], grad=[], dtype=dtype)


# =========================================================================== second order
# Each grid loops over its options inside one test (check_hvp_each: one compiled program for the
# grid, a failure names its case), with the data and direction each case had as a test of its own.
# Every array goes by keyword (positional=()): F.mse_loss's third positional is size_average.
def _hvp_grid(jax_fn, torch_fn, arrays, options, wrt, dtype="float64"):
    check_hvp_each(jax_fn, torch_fn, arrays, options, wrt=wrt, dtype=dtype, positional=(), seed=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_mse_second_order(dtype, weighted):
    arrays = []
    for reduction in ("mean", "sum"):
        rng = _rng("mse2", reduction, weighted)
        arrays.append({"input": rng.normal(size=SHAPE), "target": rng.normal(size=SHAPE)})
        if weighted:
            arrays[-1]["weight"] = rng.uniform(0.1, 2.0, size=SHAPE)
    _hvp_grid(jaxloss.mse_loss, F.mse_loss, arrays, [{"reduction": r} for r in ("mean", "sum")],
              list(arrays[0]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_nll_second_order(dtype):
    arrays, options = [], []
    for full in (False, True):
        for var_kind in ("full", "drop-last", "last1"):
            for reduction in ("mean", "sum"):
                rng = _rng("gauss2", reduction, var_kind, full)
                shape = (3, 4, 2)
                var = rng.uniform(0.2, 2.0, size=_VAR_SHAPES[var_kind](shape))
                var.flat[0] = 1e-7  # clamped: torch differentiates at the clamped value
                arrays.append({"input": rng.normal(size=shape), "target": rng.normal(size=shape), "var": var})
                options.append({"reduction": reduction, "full": full})
    _hvp_grid(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, arrays, options, ["input", "target", "var"], dtype)


def test_gaussian_nll_second_order_float_var():
    rng = np.random.default_rng(5)
    arrays = {"input": rng.normal(size=SHAPE), "target": rng.normal(size=SHAPE), "var": 0.3}
    _hvp_grid(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, arrays, [{}], ["input", "target"])


_SECOND_ORDER_CASES = {
    ("huber_loss", False): [({"delta": d}, d) for d in (0.5, 1.0, 2.0)],
    ("huber_loss", True): [({"delta": d}, d) for d in (0.5, 1.0, 2.0)],
    ("smooth_l1_loss", False): [({"beta": b}, b) for b in (0.0, 0.5, 1.0)],
    ("l1_loss", True): [({}, 1.0)],
    ("mse_loss", False): [({}, 1.0)],
}


@pytest.mark.parametrize("name,weighted", list(_SECOND_ORDER_CASES))
def test_piecewise_second_order(name, weighted):
    # kink data: second derivative 1 at x == y, 0 from |x - y| == delta / beta on (torch's
    # double backward); for weighted l1 the mixed d2/dw dx is sign(x - y), 0 at the ties.
    arrays, options = [], []
    for kw, kink in _SECOND_ORDER_CASES[name, weighted]:
        for reduction in ("mean", "sum"):
            rng = _rng("2nd", name, kink, weighted)
            x, y = _kink_pair(rng, kink)
            arrays.append({"input": x, "target": y})
            if weighted:
                arrays[-1]["weight"] = rng.uniform(0.1, 2.0, size=SHAPE)
            options.append({"reduction": reduction, **kw})
    _hvp_grid(getattr(jaxloss, name), getattr(F, name), arrays, options, list(arrays[0]))


def test_poisson_second_order():
    arrays, options = [], []
    for full in (False, True):
        for log_input in (True, False):
            for reduction in ("mean", "sum"):
                x, t = _poisson_data(_rng("poisson2", reduction, log_input, full), log_input)
                x = np.where(x == 0, 0.5, x)
                t = np.where(t <= 0, 3.0, t)  # target 0 with full=True: NaN (as torch), tested above
                arrays.append({"input": x, "target": t})
                options.append({"reduction": reduction, "log_input": log_input, "full": full})
    _hvp_grid(jaxloss.poisson_nll_loss, F.poisson_nll_loss, arrays, options, ["input", "target"])


# =========================================================================== jit / vmap
def test_jit_vmap_grad_composition():
    rng = np.random.default_rng(7)
    B = 3
    x, y = _j(rng.normal(size=(B, *SHAPE)), "float32"), _j(rng.normal(size=(B, *SHAPE)), "float32")
    var = _j(rng.uniform(0.5, 2.0, size=(B, *SHAPE)), "float32")
    w = _j(rng.uniform(0.5, 2.0, size=(B, *SHAPE)), "float32")
    fns = {
        "mse": lambda a, b, v, w_: jaxloss.mse_loss(a, b, weight=w_),
        "huber": lambda a, b, v, w_: jaxloss.huber_loss(a, b, delta=0.5, weight=w_),
        "smooth_l1": lambda a, b, v, w_: jaxloss.smooth_l1_loss(a, b, beta=0.5),
        "poisson": lambda a, b, v, w_: jaxloss.poisson_nll_loss(a, jnp.abs(b), full=True),
        "gaussian": lambda a, b, v, w_: jaxloss.gaussian_nll_loss(a, b, v, full=True),
        "gaussian_float": lambda a, b, v, w_: jaxloss.gaussian_nll_loss(a, b, 0.5),
    }
    for name, f in fns.items():
        grad_f = jax.jit(jax.grad(f))
        loop_val = jnp.stack([f(x[i], y[i], var[i], w[i]) for i in range(B)])
        loop_grad = jnp.stack([grad_f(x[i], y[i], var[i], w[i]) for i in range(B)])
        vm_val = jax.jit(jax.vmap(f))(x, y, var, w)
        vm_grad = jax.jit(jax.vmap(jax.grad(f, argnums=0)))(x, y, var, w)
        np.testing.assert_allclose(np.asarray(vm_val), np.asarray(loop_val), rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.asarray(vm_grad), np.asarray(loop_grad), rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    # vmap over the variance with a fixed input, and over the batch axis inside a jitted grad step
    f = jax.jit(jax.vmap(lambda v: jaxloss.gaussian_nll_loss(x[0], y[0], v), in_axes=0))
    per_var = [float(jaxloss.gaussian_nll_loss(x[0], y[0], var[i])) for i in range(B)]
    np.testing.assert_allclose(np.asarray(f(var)), per_var, rtol=1e-6)
    hess = jax.jit(jax.hessian(lambda a: jaxloss.mse_loss(a, y[0, 0], reduction="sum")))(x[0, 0])
    np.testing.assert_allclose(np.asarray(hess), 2 * np.eye(SHAPE[1]), rtol=1e-6)


# =========================================================================== bad input
_X = np.zeros(SHAPE)


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss"])
def test_bad_reduction_unweighted(name):
    msg = _torch_error(lambda: getattr(F, name)(_t(_X), _t(_X), reduction="avg"))
    with pytest.raises(ValueError) as e:
        getattr(jaxloss, name)(_j(_X), _j(_X), reduction="avg")
    assert str(e.value) == msg == "avg is not a valid value for reduction"


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss"])
def test_bad_reduction_weighted(name):
    w = np.ones(SHAPE)
    msg = _torch_error(lambda: getattr(F, name)(_t(_X), _t(_X), reduction="avg", weight=_t(w)))
    with pytest.raises(ValueError) as e:
        getattr(jaxloss, name)(_j(_X), _j(_X), reduction="avg", weight=_j(w))
    assert str(e.value) == msg


def test_bad_reduction_gaussian():
    msg = _torch_error(lambda: F.gaussian_nll_loss(_t(_X), _t(_X), _t(_X + 1), reduction="avg"))
    with pytest.raises(ValueError) as e:
        jaxloss.gaussian_nll_loss(_j(_X), _j(_X), _j(_X + 1), reduction="avg")
    assert str(e.value) == msg == "avg is not valid"


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss"])
@pytest.mark.parametrize("wshape", [(5,), (4, 1), (1, 4, 5)])
def test_bad_weight_shape(name, wshape):
    msg = _torch_error(lambda: getattr(F, name)(_t(_X), _t(_X), weight=_t(np.ones(wshape))))
    with pytest.raises(ValueError) as e:
        getattr(jaxloss, name)(_j(_X), _j(_X), weight=_j(np.ones(wshape)))
    assert str(e.value) == msg == "Weights and input must have the same size."


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weight_is_checked_against_input_not_broadcast_shape(name, reduction):
    # torch compares weight with input.size(): input (4, 1), target (4, 5) -> weight (4, 1) ok,
    # weight (4, 5) raises.
    rng = np.random.default_rng(8)
    x, y, w = rng.normal(size=(4, 1)), rng.normal(size=(4, 5)), rng.uniform(0.5, 2, size=(4, 1))
    with pytest.warns(UserWarning, match="Using a target size"):
        check(getattr(jaxloss, name), getattr(F, name), {"input": x, "target": y, "weight": w},
              {"reduction": reduction}, grad=["input", "target", "weight"], dtype="float64",
              positional=["input", "target"])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="Weights and input must have the same"):
        getattr(jaxloss, name)(_j(x), _j(y), reduction=reduction, weight=_j(np.ones((4, 5))))


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan")])
def test_huber_bad_delta(delta):
    msg = "huber_loss does not support non-positive values for delta."
    if not math.isnan(delta):
        assert _torch_error(lambda: F.huber_loss(_t(_X), _t(_X), delta=delta)) == msg
    with pytest.raises(ValueError) as e:
        jaxloss.huber_loss(_j(_X), _j(_X), delta=delta)
    assert str(e.value) == msg
    with pytest.raises(ValueError, match="non-positive values for delta"):
        jaxloss.huber_loss(_j(_X), _j(_X), delta=delta, weight=_j(_X))


@pytest.mark.parametrize("beta", [-1.0, -1e-30, float("nan")])
def test_smooth_l1_bad_beta(beta):
    msg = "smooth_l1_loss does not support negative values for beta."
    if not math.isnan(beta):
        assert _torch_error(lambda: F.smooth_l1_loss(_t(_X), _t(_X), beta=beta)) == msg
    with pytest.raises(ValueError) as e:
        jaxloss.smooth_l1_loss(_j(_X), _j(_X), beta=beta)
    assert str(e.value) == msg


def test_huber_integer_input():
    x = np.ones(3, np.int64)
    assert "can't be cast to the desired output type Long" in _torch_error(
        lambda: F.huber_loss(torch.tensor(x), torch.ones(3)))
    with pytest.raises(TypeError, match="can't be cast to the desired output type Long"):
        jaxloss.huber_loss(jnp.asarray(x), jnp.ones(3, jnp.float32))


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss"])
@pytest.mark.parametrize("tshape", [(4, 6), (6,), (2, 4, 6)])
def test_non_broadcastable_shapes(name, tshape):
    with pytest.warns(UserWarning, match="Using a target size"):
        msg = _torch_error(lambda: getattr(F, name)(_t(_X), _t(np.zeros(tshape))))
    with pytest.warns(UserWarning, match="Using a target size"), pytest.raises(ValueError) as e:
        getattr(jaxloss, name)(_j(_X), _j(np.zeros(tshape)))
    assert str(e.value) == msg


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss"])
def test_differing_shapes_warn_and_broadcast(name):
    # every target shape x reduction in one program (check_each), each shape with its former data;
    # jaxloss warns for each (torch's own warning, with torch.Size in it, is told apart)
    tshapes = [(5,), (4, 1), (3, 4, 5), ()]
    arrays = []
    for tshape in tshapes:
        rng = np.random.default_rng(9)
        x, y = rng.normal(size=SHAPE), np.asarray(rng.normal(size=tshape))
        arrays += [{"input": x, "target": y}] * 2
    with pytest.warns(UserWarning, match=r"Using a target size .* different to the input size") as record:
        check_each(getattr(jaxloss, name), getattr(F, name), arrays, [{"reduction": r} for r in ("none", "mean")] * 4,
                   grad=["input", "target"], dtype="float64")
    ours = [str(w.message) for w in record if "torch.Size" not in str(w.message)]
    for tshape in tshapes:
        assert any(m.startswith(f"Using a target size ({tshape})") for m in ours), (tshape, ours)
    with warnings.catch_warnings():  # same shapes: no warning
        warnings.simplefilter("error")
        getattr(jaxloss, name)(_j(x), _j(x))


def test_poisson_broadcasts_silently():
    # every target shape x full in one program (check_each), each shape with its former data
    arrays = []
    for tshape in [(5,), (4, 1), (3, 4, 5)]:
        rng = np.random.default_rng(10)
        x, t = rng.normal(size=SHAPE), rng.poisson(2.0, size=tshape).astype(float) + 2
        arrays += [{"input": x, "target": t}] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_each(jaxloss.poisson_nll_loss, F.poisson_nll_loss, arrays,
                   [{"reduction": "none", "full": full} for full in (False, True)] * 3, grad=["input", "target"],
                   dtype="float64")


@pytest.mark.parametrize("tshape", [(4, 6), (6,)])
def test_poisson_and_gaussian_non_broadcastable(tshape):
    msg = _torch_error(lambda: F.poisson_nll_loss(_t(_X), _t(np.ones(tshape))))
    with pytest.raises(ValueError) as e:
        jaxloss.poisson_nll_loss(_j(_X), _j(np.ones(tshape)))
    assert str(e.value) == msg
    msg = _torch_error(lambda: F.gaussian_nll_loss(_t(_X), _t(np.ones(tshape)), _t(_X + 1)))
    with pytest.raises(ValueError) as e:
        jaxloss.gaussian_nll_loss(_j(_X), _j(np.ones(tshape)), _j(_X + 1))
    assert str(e.value) == msg


@pytest.mark.parametrize("input_shape,var_shape", [
    ((3, 4), (3, 5)), ((3, 4), (4,)), ((3, 4), (1, 1)), ((3, 4), (3, 4, 1)), ((3, 4), (2, 1)),
    ((3, 4), (5, 4)),
    ((2, 3, 4), (1, 3, 1)), ((2, 3, 4), (2, 3, 2)), ((2, 3, 4), (2, 6, 4)), ((2, 3, 4), (3, 4)),
    # accepted ones, for contrast
    ((3, 4), (3,)), ((3, 4), (3, 1)), ((3, 4), (1, 4)), ((2, 3, 4), (2, 1, 4)), ((4,), ()), ((4,), (1,)),
])
def test_gaussian_var_shape_rules(input_shape, var_shape):
    x = np.ones(input_shape)
    var = np.ones(var_shape)
    try:
        F.gaussian_nll_loss(_t(x), _t(x), _t(var))
        torch_msg = None
    except ValueError as e:
        torch_msg = str(e)
    if torch_msg is None:
        arrays = {"input": x, "target": x * 0.5, "var": np.asarray(var + 1)}
        check(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, arrays, {"reduction": "none"},
              grad=["input", "target", "var"], dtype="float64")
    else:
        assert torch_msg == "var is of incorrect size"
        with pytest.raises(ValueError) as e:
            jaxloss.gaussian_nll_loss(_j(x), _j(x), _j(var))
        assert str(e.value) == torch_msg


def test_gaussian_zero_dim_var_is_one_variance():
    # Documented deviation: torch rejects a 0-d *tensor* var unless input is 1-D ("var is of
    # incorrect size"); JAX cannot tell a 0-d array from a traced Python float, so every 0-d var
    # is one variance for all elements: the value torch gives for the same Python float.
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    zero_dim = torch.tensor(0.7, dtype=torch.float64)
    assert _torch_error(lambda: F.gaussian_nll_loss(_t(x), _t(y), zero_dim)) == "var is of incorrect size"
    ref = F.gaussian_nll_loss(_t(x), _t(y), 0.7, reduction="none")
    for var in (jnp.float64(0.7), jnp.asarray(0.7), np.float64(0.7), np.asarray(0.7)):
        for fn in (jaxloss.gaussian_nll_loss, checked.gaussian_nll_loss):
            assert_close(fn(_j(x), _j(y), var, reduction="none"), ref, "float64", repr(var))
    # a 0-d float64 var does not widen float32 input (torch: var * ones_like(input))
    out = jaxloss.gaussian_nll_loss(_j(x, "float32"), _j(y, "float32"), jnp.float64(0.7))
    assert out.dtype == jnp.float32


def test_gaussian_negative_float_var_raises():
    msg = _torch_error(lambda: F.gaussian_nll_loss(_t(_X), _t(_X), -1.0))
    assert msg == "var has negative entry/entries"
    for var in (-1.0, -1, np.float64(-0.5)):
        with pytest.raises(ValueError) as e:
            jaxloss.gaussian_nll_loss(_j(_X), _j(_X), var)
        assert str(e.value) == msg
        with pytest.raises(ValueError, match="var has negative entry/entries"):
            checked.gaussian_nll_loss(_j(_X), _j(_X), var)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("var_shape", [SHAPE, SHAPE[:-1]])
def test_gaussian_negative_array_var_poisons(reduction, var_shape):
    msg = _torch_error(lambda: F.gaussian_nll_loss(_t(_X), _t(_X), -_t(np.ones(var_shape))))
    var = np.ones(var_shape)
    var.flat[1] = -1e-3
    x, y = _j(np.arange(20.0).reshape(SHAPE)), _j(_X)
    out = jaxloss.gaussian_nll_loss(x, y, _j(var), reduction=reduction)
    assert np.isnan(np.asarray(out)).all()  # every element, not just the bad one
    grads = jax.grad(lambda a, b, v: jnp.sum(jaxloss.gaussian_nll_loss(a, b, v, reduction=reduction)),
                     argnums=(0, 1, 2))(x, y, _j(var))
    for g in grads:
        assert np.isnan(np.asarray(g)).all()
    with pytest.raises(ValueError) as e:
        checked.gaussian_nll_loss(x, y, _j(var), reduction=reduction)
    assert str(e.value) == msg
    # a valid var passes checked mode with the same value
    ok = _j(np.abs(var))
    np.testing.assert_array_equal(np.asarray(checked.gaussian_nll_loss(x, y, ok, reduction=reduction)),
                                  np.asarray(jaxloss.gaussian_nll_loss(x, y, ok, reduction=reduction)))


def test_gaussian_negative_weak_scalar_var_under_jit():
    # a Python float that reaches the loss as a tracer (the user's jit): NaN, checked mode raises
    x = _j(_X, "float32")
    out = jax.jit(lambda v: jaxloss.gaussian_nll_loss(x, x, v))(-1.0)
    assert np.isnan(np.asarray(out))
    with pytest.raises(ValueError, match="var has negative entry/entries"):
        checked.gaussian_nll_loss(x, x, jnp.asarray(-1.0))


def test_gaussian_nan_var_propagates_like_torch():
    var = np.array([np.nan, 1.0, 1.0])
    arrays = {"input": np.ones(3), "target": np.zeros(3), "var": var}
    check(jaxloss.gaussian_nll_loss, F.gaussian_nll_loss, arrays, {"reduction": "none"},
          grad=["input", "target", "var"], dtype="float64")


def test_checked_twins_return_the_same_values():
    rng = np.random.default_rng(11)
    x, y = _j(rng.normal(size=SHAPE), "float32"), _j(rng.normal(size=SHAPE), "float32")
    var = _j(rng.uniform(0.5, 2.0, size=SHAPE), "float32")
    pairs = [
        (checked.mse_loss(x, y, "sum"), jaxloss.mse_loss(x, y, "sum")),
        (checked.huber_loss(x, y, delta=0.5, weight=var), jaxloss.huber_loss(x, y, delta=0.5, weight=var)),
        (checked.smooth_l1_loss(x, y, beta=0.0), jaxloss.smooth_l1_loss(x, y, beta=0.0)),
        (checked.poisson_nll_loss(x, jnp.abs(y), False, True),
         jaxloss.poisson_nll_loss(x, jnp.abs(y), False, True)),
        (checked.gaussian_nll_loss(x, y, var, True), jaxloss.gaussian_nll_loss(x, y, var, True)),
        (checked.gaussian_nll_loss(x, y, 0.5), jaxloss.gaussian_nll_loss(x, y, 0.5)),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# =========================================================================== dtypes
def _promotion_cases():
    f = np.array([1.0, 2.0, -0.5])
    g = np.array([1.1, 0.0, 0.5])
    return f, g


_PROMOTIONS = [
    ("float32", "float64"), ("float64", "float32"), ("float16", "float32"), ("float32", "float16"),
    ("bfloat16", "float16"), ("float32", "int64"), ("int64", "float32"),
]


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss",
                                  "gaussian_nll_loss"])
def test_type_promotion(name):
    # every dtype pair of a loss in one jitted program (the result dtype is fixed at trace, as in
    # the plain call; eager, one program per pair), each pair judged against torch apart
    f, g = _promotion_cases()
    if name == "poisson_nll_loss":
        f, g = np.abs(f), np.array([1.0, 3.0, 0.0])
    pairs = [(dt_in, dt_t) for dt_in, dt_t in _PROMOTIONS if not (name == "huber_loss" and dt_in == "int64")]  # raises, tested above

    def mk(a, dt, lib):
        if lib == "torch":
            return torch.tensor(a).to(getattr(torch, dt))
        return jnp.asarray(a).astype(dt)

    extra_t, extra_j = [], []
    if name == "gaussian_nll_loss":
        extra_t, extra_j = [torch.full((3,), 0.7)], [jnp.full((3,), 0.7, jnp.float32)]
    jouts = jax.jit(lambda args: [getattr(jaxloss, name)(a, b, *extra_j) for a, b in args])(
        [(mk(f, dt_in, "jax"), mk(g, dt_t, "jax")) for dt_in, dt_t in pairs])
    for (dt_in, dt_t), jout in zip(pairs, jouts):
        tout = getattr(F, name)(mk(f, dt_in, "torch"), mk(g, dt_t, "torch"), *extra_t)
        tname = str(tout.dtype).replace("torch.", "")
        assert jout.dtype == jnp.dtype(tname), f"{name} {dt_in} {dt_t}: {jout.dtype} vs torch {tname}"
        # torch rounds some intermediates to the narrower input dtype (e.g. exp(float16 input) before
        # subtracting a float32 term), jaxloss does not: compare at the narrowest input's tolerance.
        floats = [d for d in (dt_in, dt_t) if d.startswith(("float", "bfloat"))]
        widest_tol = max(floats, key=lambda d: tolerance_for(d).rtol)
        assert_close(jout, tout, widest_tol, f"{name} {dt_in} {dt_t}")


def test_weight_dtype_promotes():
    x = np.array([1.0, 2.0, -0.5])
    for name in ("l1_loss", "mse_loss", "huber_loss"):
        tout = getattr(F, name)(_t(x, "float32"), _t(x * 0, "float32"), weight=_t(x + 2, "float64"))
        jout = getattr(jaxloss, name)(_j(x, "float32"), _j(x * 0, "float32"), weight=_j(x + 2, "float64"))
        assert jout.dtype == jnp.float64 and tout.dtype == torch.float64
        assert_close(jout, tout, "float64", name)


_LOW_CASES = {
    "l1_loss": ({}, False),
    "mse_loss": ({}, False),
    "mse_loss_w": ({}, True),
    "huber_loss": ({"delta": 0.5}, False),
    "huber_loss_w": ({"delta": 0.5}, True),
    "smooth_l1_loss": ({"beta": 0.5}, False),
    "smooth_l1_loss_0": ({"beta": 0.0}, False),
    "poisson_nll_loss": ({}, False),
    "poisson_nll_loss_rate": ({"log_input": False, "full": True}, False),
    "gaussian_nll_loss": ({"full": True}, False),
    "gaussian_nll_loss_float": ({}, False),
}


def _values_and_grads(fn, call_args, grad_names):
    """(value, {name: grad of sum(value)}) of fn(**call_args) in torch (the JAX side:
    tests.torch_compare.jax_value_and_grads_each)."""
    out = fn(**call_args)
    gs = torch.autograd.grad(out.sum(), [call_args[n] for n in grad_names]) if grad_names else ()
    return out, dict(zip(grad_names, gs))


def _judge_low_precision(j_out, j_g, torch_fn, rounded, kwargs, grad, dtype):
    """One case of :func:`check_low_precision_each` (raises ``AssertionError`` naming what disagrees)."""
    t_args = {n: to_torch(a, dtype, requires_grad=n in grad) for n, a in rounded.items()}
    r_args = {n: to_torch(a, "float64", requires_grad=n in grad) for n, a in rounded.items()}
    t_out, t_g = _values_and_grads(lambda **a: torch_fn(**a, **kwargs), t_args, grad)
    r_out, r_g = _values_and_grads(lambda **a: torch_fn(**a, **kwargs), r_args, grad)
    tol = tolerance_for(dtype)
    assert j_out.dtype == jnp.dtype(dtype), f"value dtype {j_out.dtype}"
    triples = [("value", j_out, t_out, r_out)] + [(f"grad wrt {n}", j_g[n], t_g[n], r_g[n]) for n in grad]
    for what, j, t, r in triples:
        assert j.dtype == jnp.dtype(dtype), f"{what} dtype {j.dtype}"
        j = np.asarray(jnp.asarray(j, jnp.float64))
        t, r = t.detach().double().numpy(), r.detach().numpy()
        assert j.shape == t.shape, what
        bound = tol.atol + tol.rtol * np.abs(r)
        assert (np.abs(j - r) <= bound).all(), f"{what} ({dtype}): jax {j} vs float64 {r}"
        near_torch = np.abs(j - t) <= tol.atol + tol.rtol * np.abs(t)
        not_worse = np.abs(j - r) <= np.abs(t - r)
        assert (near_torch | not_worse).all(), f"{what} ({dtype}): jax {j} torch {t} float64 {r}"


def check_low_precision_each(jax_fn, torch_fn, arrays, options, grad, dtype):
    """float16 / bfloat16 parity of each ``kwargs`` in ``options`` (each case with its own
    ``arrays``): dtype, and closeness to torch run in the same dtype.

    Every element of the value and of each gradient must be within the dtype's tolerance of
    torch, or else at least as close as torch to the float64 result on the same (rounded)
    inputs: torch rounds intermediates (``exp(x)``, ``x - y``, ``(x - y)**2``...) to the low
    dtype where jaxloss computes in float32 and rounds once. jaxloss must also be within the
    dtype's tolerance of that float64 result everywhere. The JAX side of every case comes
    from one compiled program; every case is judged, then one failure lists each failing case.
    """
    rounded = [{n: (to_torch(a, dtype).double().numpy() if isinstance(a, np.ndarray) else a)
                for n, a in arrs.items()} for arrs in arrays]
    j_side = jax_value_and_grads_each(
        jax_fn, [{**{n: to_jax(a, dtype) for n, a in r.items()}, **kw} for r, kw in zip(rounded, options)],
        grad, dtype)
    failed = []
    for kw, r, (j_out, j_g) in zip(options, rounded, j_side):
        try:
            _judge_low_precision(j_out, j_g, torch_fn, r, kw, grad, dtype)
        except AssertionError as e:
            failed.append(f"{kw}: {e}")
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("case", list(_LOW_CASES))
def test_low_precision(dtype, case):
    """float16 / bfloat16: computed in float32, returned in the input dtype, close to torch in that
    dtype; the three reductions in one compiled program, each with the data it had as a test of its own."""
    name = case.rsplit("_", 1)[0] if case.endswith(("_w", "_0", "_rate", "_float")) else case
    kwargs, weighted = _LOW_CASES[case]
    all_arrays = []
    for reduction in REDUCTIONS:
        rng = _rng("low", dtype, case, reduction)
        x, y = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
        grad = ["input", "target"]
        if name == "poisson_nll_loss":
            y = rng.poisson(2.0, size=SHAPE).astype(float)
            if kwargs.get("log_input") is False:
                x = rng.uniform(0.5, 3.0, size=SHAPE)
                grad = ["input"]  # the Stirling gradient wrt target is NaN at target 0
        arrays = {"input": x, "target": y}
        if name == "gaussian_nll_loss":
            arrays["var"] = 0.5 if case.endswith("_float") else rng.uniform(0.5, 2.0, size=SHAPE)
            if not case.endswith("_float"):
                grad = ["input", "target", "var"]
        if weighted:
            arrays["weight"] = rng.uniform(0.5, 2.0, size=SHAPE)
            grad = ["input", "target", "weight"]
        all_arrays.append(arrays)
    check_low_precision_each(getattr(jaxloss, name), getattr(F, name), all_arrays,
                             [{"reduction": r, **kwargs} for r in REDUCTIONS], grad, dtype)


def test_low_precision_is_computed_in_float32():
    # each squared error (40000) is a float16 number, their float16 sum would overflow (max 65504)
    big = np.full((8,), 200.0)
    out = jaxloss.mse_loss(_j(big, "float16"), _j(np.zeros(8), "float16"))
    assert float(out) == 40000.0
    tout = F.mse_loss(_t(big, "float16"), _t(np.zeros(8), "float16"))
    assert float(tout) == 40000.0


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss"])
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_broadcast_target_gradient_sums_in_float32(name, dtype):
    # Found by `python -m jaxloss.parity --fuzz 2000 --seed 7`: a target broadcast against input gets the
    # sum of the elementwise gradients. jaxloss broadcast the float16 target before casting to
    # float32, so that sum accumulated in float16: a partial sum beyond 65504 became inf (torch:
    # 22352, float64: 22405.7) and smaller ones lost ULPs. Now it sums in float32 and rounds once,
    # like torch's sum_to_size.
    rng = _rng("broadcast-target", name, dtype)
    lo = jnp.dtype(dtype)
    y = rng.normal(size=(2,)) * 100
    sign = np.where(np.arange(64) < 32, 1.0, -1.0)[:, None]  # partial sums of d/dy reach -96000
    x = y + sign * 1500 + rng.normal(size=(64, 2))
    cot = rng.uniform(0.5, 1.5, size=(64, 2))
    x, y, cot = (np.asarray(a).astype(lo).astype(np.float64) for a in (x, y, cot))  # the same numbers everywhere

    def torch_grad(dt):
        tx, ty = _t(x, dt, True), _t(y, dt, True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = getattr(F, name)(tx, ty, reduction="none")
        return torch.autograd.grad(out, ty, _t(cot, dt))[0].double().numpy()

    truth, t_low = torch_grad("float64"), torch_grad(dtype)
    assert np.isfinite(truth).all() and np.abs(truth).max() < 6e4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, vjp = jax.vjp(lambda b: getattr(jaxloss, name)(_j(x, dtype), b, reduction="none"), _j(y, dtype))
    (g,) = vjp(_j(cot, dtype))
    assert g.dtype == lo
    g = np.asarray(g.astype(jnp.float32), dtype=np.float64)
    tol = tolerance_for(dtype)
    np.testing.assert_allclose(g, truth, rtol=tol.rtol, atol=tol.atol)
    assert np.abs(g - truth).max() <= np.abs(t_low - truth).max()
