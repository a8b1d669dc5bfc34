"""classification.py against torch: cross_entropy, nll_loss (torch.nn.functional) and focal_loss
(a torch-op reference): values, gradients, second derivatives, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxloss
from jaxloss import checked
from tests.torch_compare import assert_close, check, check_each

DTYPES = ["float32", "float64"]
REDUCTIONS = ["none", "mean", "sum"]


def compare_each(jax_fn, torch_fn, cases, grad=("input",), dtype="float64", positional=None,
                 reductions=REDUCTIONS):  # fmt: skip
    """Each ``(arrays, kwargs)`` of ``cases`` with every reduction against torch: one
    :func:`tests.torch_compare.check_each` grid, so ONE compiled program for the whole grid. The
    cotangent of an output is ``0.5 .. 1.5`` (``cotangent="ramp"``), not all ones, so that the
    gradients of individual samples of a ``'none'`` output are checked too. Returns, per case,
    ``{reduction: JAX value}``."""
    per_case = [(arrays, {**(kwargs or {}), "reduction": red}) for arrays, kwargs in cases for red in reductions]
    outs = check_each(jax_fn, torch_fn, [a for a, _ in per_case], [k for _, k in per_case], grad, dtype, positional,
                      cotangent="ramp")  # fmt: skip
    n = len(reductions)
    return [dict(zip(reductions, outs[i : i + n])) for i in range(0, len(outs), n)]


def compare(jax_fn, torch_fn, arrays, kwargs=None, grad=("input",), dtype="float64", positional=None,
            reductions=REDUCTIONS):  # fmt: skip
    """:func:`compare_each` of one case: ``{reduction: JAX value}``."""
    return compare_each(jax_fn, torch_fn, [(arrays, kwargs)], grad, dtype, positional, reductions)[0]


def _long(t):
    """torch takes int64 (or uint8) class indices only; jaxloss gets the int32 / int64 array as is."""
    return t if t.is_floating_point() else t.long()


def t_cross_entropy(input, target, *args, **kwargs):
    return F.cross_entropy(input, _long(target), *args, **kwargs)


def t_nll_loss(input, target, *args, **kwargs):
    return F.nll_loss(input, _long(target), *args, **kwargs)


def _case(shape, n_classes=5, seed=0, ignore=(-100,), target_dtype=np.int64):
    """Logits of ``shape`` (class axis 1, or 0 for 1-D), class-index targets with some ignored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 2
    t_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = rng.integers(0, n_classes, size=t_shape)
    if t.ndim:
        flat = t.reshape(-1)
        for i, v in enumerate(ignore):
            flat[(2 * i + 1) % flat.size] = v
    return x, t.astype(target_dtype), rng.uniform(0.2, 2.0, size=n_classes)


SHAPES = {"1d": (5,), "2d": (6, 5), "3d": (3, 5, 4), "4d": (2, 5, 3, 2), "5d": (2, 5, 2, 2, 2)}

# (options, ignore_index values placed in the target)
CE_OPTIONS = [
    ({}, (-100,)),
    ({"weight": True}, (-100,)),
    ({"label_smoothing": 0.2}, (-100,)),
    ({"weight": True, "label_smoothing": 0.3}, (-100,)),
    ({"ignore_index": 1}, (1,)),  # an ignore_index inside [0, C)
    ({"weight": True, "label_smoothing": 0.1, "ignore_index": 2}, (2, 2)),
]


def _arrays(x, t, w, opts):
    arrays = {"input": x, "target": t}
    if opts.get("weight"):
        arrays["weight"] = w
    kwargs = {k: v for k, v in opts.items() if k != "weight"}
    return arrays, kwargs


# --------------------------------------------------------------------------- cross_entropy, class indices
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_indices_2d(dtype):
    """Each option set of CE_OPTIONS (every reduction), one compiled grid per dtype."""
    cases = []
    for opts, ignore in CE_OPTIONS:
        x, t, w = _case(SHAPES["2d"], ignore=ignore)
        cases.append(_arrays(x, t, w, opts))
    compare_each(jaxloss.cross_entropy, t_cross_entropy, cases, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_indices_other_shapes(dtype):
    shapes = ("1d", "3d", "4d", "5d") if dtype == "float64" else ("1d", "3d", "4d")
    cases = []
    for shape in shapes:
        x, t, w = _case(SHAPES[shape])
        cases.append(({"input": x, "target": t, "weight": w}, {"label_smoothing": 0.15}))
    compare_each(jaxloss.cross_entropy, t_cross_entropy, cases, dtype=dtype)


def test_cross_entropy_integer_target_dtypes():
    cases = []
    for target_dtype in (np.int32, np.int64, np.uint8):
        x, t, w = _case((6, 5), ignore=() if target_dtype == np.uint8 else (-100,), target_dtype=target_dtype)
        cases.append(({"input": x, "target": t, "weight": w}, {"label_smoothing": 0.1}))
    compare_each(jaxloss.cross_entropy, t_cross_entropy, cases, reductions=["mean"])


def test_cross_entropy_unbatched_target_of_size_one():
    # torch accepts a (1,) target for a (C,) input (its backward then fails: compare values, and
    # gradients with the () target).
    x = np.random.default_rng(1).normal(size=(5,))
    for fn, t_fn in ((jaxloss.cross_entropy, t_cross_entropy), (jaxloss.nll_loss, t_nll_loss)):
        outs = jax.jit(lambda a, fn=fn: [fn(a, jnp.asarray([3]), reduction=r) for r in REDUCTIONS])(jnp.asarray(x))
        for red, out in zip(REDUCTIONS, outs):  # the three reductions in one compiled program
            assert out.shape == ()
            assert_close(out, t_fn(torch.tensor(x), torch.tensor([3]), reduction=red), "float64", red)

        def grads(a, fn=fn):
            return [
                jax.grad(lambda b, t=t, r=r: fn(b, t, reduction=r))(a)
                for r in REDUCTIONS
                for t in (jnp.asarray([3]), 3)
            ]

        g = jax.jit(grads)(jnp.asarray(x))
        for i in range(0, len(g), 2):
            np.testing.assert_array_equal(np.asarray(g[i]), np.asarray(g[i + 1]))


def test_cross_entropy_all_targets_ignored():
    x, _, w = _case((4, 5))
    t = np.full((4,), -100)
    cases = [_arrays(x, t, w, opts) for opts in ({}, {"weight": True, "label_smoothing": 0.2})]
    for out in compare_each(jaxloss.cross_entropy, t_cross_entropy, cases):
        assert np.isnan(out["mean"])  # 0 / 0, like torch
    g = jax.jit(lambda v: [jax.grad(lambda a, r=r: jaxloss.cross_entropy(a, jnp.asarray(t), reduction=r).sum())(v)
                           for r in REDUCTIONS])(jnp.asarray(x))  # fmt: skip
    np.testing.assert_array_equal(np.asarray(g), 0.0)  # no NaN from the 0 / 0


def test_cross_entropy_empty_batch():
    x, t = np.zeros((0, 5)), np.zeros((0,), np.int64)
    compare(jaxloss.cross_entropy, t_cross_entropy, {"input": x, "target": t}, grad=())
    compare(jaxloss.cross_entropy, t_cross_entropy, {"input": x, "target": np.zeros((0, 5))}, grad=())


# --------------------------------------------------------------------------- cross_entropy, probabilities
def _probs(shape, seed=3):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=shape)
    return p / p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_probabilities(dtype):
    x, _, w = _case(SHAPES["2d"])
    options = [{}, {"weight": True}, {"label_smoothing": 0.25}, {"weight": True, "label_smoothing": 0.1}]
    cases = [_arrays(x, _probs(x.shape), w, opts) for opts in options]
    compare_each(jaxloss.cross_entropy, t_cross_entropy, cases, grad=("input", "target"), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_probabilities_other_shapes(dtype):
    cases = []
    for shape in ("1d", "3d", "4d"):
        x, _, w = _case(SHAPES[shape])
        cases.append(({"input": x, "target": _probs(x.shape), "weight": w}, {"label_smoothing": 0.2}))
    compare_each(jaxloss.cross_entropy, t_cross_entropy, cases, grad=("input", "target"), dtype=dtype)


def test_cross_entropy_probability_dtype_promotion():
    # result dtypes read with jax.eval_shape: fixed at trace, nothing compiled
    x = jnp.zeros((2, 3), jnp.float32)
    p = jnp.full((2, 3), 1 / 3, jnp.float64)
    ce = jaxloss.cross_entropy
    assert jax.eval_shape(ce, x, p).dtype == jnp.float64  # torch promotes too
    assert jax.eval_shape(lambda a, b, w: ce(a, b, weight=w), x, p.astype(jnp.float32),
                          jnp.ones(3, jnp.float64)).dtype == jnp.float64  # fmt: skip
    assert jax.eval_shape(ce, x.astype(jnp.float16), p.astype(jnp.float32)).dtype == jnp.float32


# --------------------------------------------------------------------------- extreme values
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf in the comparison
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_logits(dtype):
    compare_each(jaxloss.cross_entropy, t_cross_entropy,
                 [_extreme_logits(opts) for opts in ({}, {"weight": True, "label_smoothing": 0.2})],
                 dtype=dtype)  # fmt: skip


def _extreme_logits(opts):
    """Logits at and beyond the edges of floating point, as ``(arrays, kwargs)`` of ``opts``."""
    x = np.array(
        [
            [1e4, -1e4, 0.0, 3.0],  # target at the max: p = 1
            [1e4, -1e4, 0.0, 3.0],  # target at -1e4: p underflows, log p = -2e4
            [1e4, 1e4 + 1, 1e4 - 2, 1e4],  # large, close values (cancellation)
            [-np.inf, 0.0, 1.0, 2.0],  # -inf logit, not the target
            [-np.inf, 0.0, 1.0, 2.0],  # -inf logit at the target: infinite loss
            [-1e4, -1e4, -1e4, -1e4],
        ]
    )
    t = np.array([0, 1, 2, 1, 0, 3])
    w = np.array([0.5, 2.0, 1.0, 1.5])
    if opts.get("label_smoothing"):
        x = x[[0, 1, 2, 5]]  # smoothing over a -inf log-probability is NaN in torch as well (0 * inf)
        t = t[[0, 1, 2, 5]]
    return _arrays(x, t, w, opts)


def test_cross_entropy_non_finite_rows_are_nan_like_torch():
    x = np.array([[-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0]])
    compare(
        jaxloss.cross_entropy,
        t_cross_entropy,
        {"input": x, "target": np.array([0, 1, 2])},
        reductions=["none"],
    )


# --------------------------------------------------------------------------- second order
@pytest.mark.parametrize("shape", ["2d", "3d"])
@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_hessian_vector_product_matches_torch_double_backward(shape, probs):
    rng = np.random.default_rng(5)
    x, t, w = _case(SHAPES[shape])
    if probs:
        t = _probs(x.shape)
    v = rng.normal(size=x.shape)
    kwargs = {"label_smoothing": 0.2}
    tj, wj, vj = jnp.asarray(t), jnp.asarray(w), jnp.asarray(v)

    def f(a):
        return jaxloss.cross_entropy(a, tj, weight=wj, **kwargs)

    xt = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(t_cross_entropy(xt, torch.tensor(t), weight=torch.tensor(w), **kwargs), [xt],
                               create_graph=True)  # fmt: skip
    (hvp_t,) = torch.autograd.grad((g * torch.tensor(v)).sum(), [xt])
    fwd_over_rev, rev_over_rev = jax.jit(
        lambda a: (
            jax.jvp(jax.grad(f), (a,), (vj,))[1],
            jax.grad(lambda b: jnp.vdot(jax.grad(f)(b), vj))(a),
        )
    )(jnp.asarray(x))
    assert_close(fwd_over_rev, hvp_t, "float64", "forward-over-reverse HVP")
    assert_close(rev_over_rev, hvp_t, "float64", "reverse-over-reverse HVP")


def test_nll_loss_second_order_is_zero():
    x, t, w = _case((4, 5))
    h = jax.jit(jax.hessian(lambda a: jaxloss.nll_loss(a, jnp.asarray(t), weight=jnp.asarray(w))))(
        jnp.asarray(x)
    )
    np.testing.assert_array_equal(np.asarray(h), 0.0)


# --------------------------------------------------------------------------- compiled program
@pytest.mark.parametrize(
    "target,smoothing,most",
    [("index", "traced", 1), ("index", 0.1, 1), ("probs", None, 1), ("probs", "traced", 2)],
)
def test_class_sum_of_log_softmax_writes_at_most_one_input_sized_temporary(target, smoothing, most):
    """The smoothing term and probability targets sum ``log_softmax`` over the classes. XLA:CPU
    used to write both ``x - max`` and the broadcast log-sum-exp out as (N, C) temporaries for
    that sum (2, and 3 with probabilities and smoothing); value+grad now keeps at most
    ``most`` (measured on CPU, where the library reductions take one broadcast operand)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the temporaries counted are XLA:CPU's")
    n, c = 256, 1000
    x = jax.ShapeDtypeStruct((n, c), jnp.float32)
    t = x if target == "probs" else jax.ShapeDtypeStruct((n,), jnp.int32)
    s = jax.ShapeDtypeStruct((), jnp.float32)

    def loss(a, tt, ss):
        opts = {} if smoothing is None else {"label_smoothing": ss if smoothing == "traced" else smoothing}
        return jaxloss.cross_entropy(a, tt, **opts)

    compiled = jax.jit(jax.value_and_grad(loss)).lower(x, t, s).compile()
    input_sized = compiled.memory_analysis().temp_size_in_bytes / (n * c * 4)
    assert input_sized < most + 0.5, f"{input_sized:.2f} input-sized temporaries"


# --------------------------------------------------------------------------- transformations
def test_jit_vmap_grad_compose():
    rng = np.random.default_rng(7)
    xs = jnp.asarray(rng.normal(size=(3, 6, 5)))
    ts = jnp.asarray(rng.integers(0, 5, size=(3, 6)))
    w = jnp.asarray(rng.uniform(0.5, 2, size=5))

    def f(x, t):
        return jaxloss.cross_entropy(x, t, weight=w, label_smoothing=0.1)

    # vmap of value_and_grad against each sample's; forward mode against reverse mode; and grad
    # of a jitted closure (focal loss): one compiled program (was three)
    batched, singles, (jf, jr), g = jax.jit(
        lambda xs, ts: (
            jax.vmap(jax.value_and_grad(f))(xs, ts),
            [jax.value_and_grad(f)(xs[i], ts[i]) for i in range(3)],
            (jax.jacfwd(f)(xs[0], ts[0]), jax.jacrev(f)(xs[0], ts[0])),
            jax.grad(jax.jit(lambda x: jaxloss.focal_loss(x, ts[0], gamma=1.5)))(xs[0]),
        )
    )(xs, ts)
    for i, (v, gi) in enumerate(singles):
        np.testing.assert_allclose(np.asarray(batched[0][i]), np.asarray(v), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(batched[1][i]), np.asarray(gi), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(jf), np.asarray(jr), rtol=1e-10, atol=1e-15)
    # vmap over the target too (per-example losses; its shape is fixed at trace: nothing compiled)
    per = jax.eval_shape(jax.vmap(lambda x, t: jaxloss.nll_loss(jax.nn.log_softmax(x), t, reduction="none")), xs, ts)
    assert per.shape == (3, 6)
    assert g.shape == (6, 5) and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_is_computed_in_float32(dtype):
    x, t, w = _case((6, 5))
    xl = jnp.asarray(x, dtype)
    tj, wj = jnp.asarray(t), jnp.asarray(w, jnp.float32)

    @jax.jit  # the value, its float32 reference and the gradient in one compiled program (eager: three)
    def every(xl):
        return (jaxloss.cross_entropy(xl.astype(jnp.float32), tj, weight=wj, label_smoothing=0.1),
                jaxloss.cross_entropy(xl, tj, weight=wj, label_smoothing=0.1),
                jax.grad(lambda a: jaxloss.cross_entropy(a, tj))(xl))  # fmt: skip

    ref, out, g = every(xl)
    assert out.dtype == jnp.dtype(dtype)
    assert out == ref.astype(dtype)
    assert g.dtype == jnp.dtype(dtype)
    # torch rounds intermediate tensors to the low-precision dtype: jaxloss is at least as close
    # to the float64 value
    ref64 = float(F.cross_entropy(torch.tensor(np.asarray(xl.astype(jnp.float64))), torch.tensor(t),
                                  weight=torch.tensor(w), label_smoothing=0.1))  # fmt: skip
    t_out = float(F.cross_entropy(torch.tensor(x, dtype=getattr(torch, dtype)), torch.tensor(t),
                                  weight=torch.tensor(w, dtype=getattr(torch, dtype)), label_smoothing=0.1))  # fmt: skip
    assert abs(float(out) - ref64) <= abs(t_out - ref64) + 1e-7


# --------------------------------------------------------------------------- nll_loss
def _log_probs(x):
    return x - np.log(np.sum(np.exp(x), axis=0 if x.ndim == 1 else 1, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_loss(dtype):
    x, t, w = _case(SHAPES["2d"], ignore=(-100, 3))
    arrays = {"input": _log_probs(x), "target": t}
    compare_each(jaxloss.nll_loss, t_nll_loss, [(arrays, {}), ({**arrays, "weight": w}, {})], dtype=dtype)


def test_nll_loss_other_shapes():
    cases = []
    for shape in ("1d", "3d", "4d"):
        x, t, w = _case(SHAPES[shape], ignore=(3, 3))
        cases.append(({"input": _log_probs(x), "target": t, "weight": w}, {"ignore_index": 3}))
    compare_each(jaxloss.nll_loss, t_nll_loss, cases)


def test_nll_loss_all_ignored_and_int32():
    x, t, w = _case((4, 5), target_dtype=np.int32)
    compare(jaxloss.nll_loss, t_nll_loss, {"input": x, "target": t, "weight": w}, reductions=["mean"])
    t_all = np.full((4,), 7, np.int32)
    out = compare(jaxloss.nll_loss, t_nll_loss, {"input": x, "target": t_all}, {"ignore_index": 7})
    assert np.isnan(out["mean"])


# --------------------------------------------------------------------------- focal loss
def t_focal_loss(input, target, weight=None, ignore_index=-100, reduction="mean", alpha=None, gamma=2.0):
    """Reference multi-class focal loss in torch ops."""
    axis = 0 if input.ndim == 1 else 1
    t = target.long()
    active = t != ignore_index
    safe = torch.where(active, t, 0)
    logp_t = F.log_softmax(input, axis).gather(axis, safe.unsqueeze(axis)).squeeze(axis)
    term = -logp_t if gamma == 0 else -((-torch.expm1(logp_t)) ** gamma) * logp_t
    if alpha is not None:
        term = term * (alpha if alpha.ndim == 0 else alpha[safe])
    w_t = torch.ones_like(logp_t) if weight is None else weight[safe]
    term = torch.where(active, term * w_t, 0.0)
    if reduction == "none":
        return term
    if reduction == "sum":
        return term.sum()
    return term.sum() / torch.where(active, w_t, 0.0).sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_loss_matches_torch_reference(dtype):
    """gamma 0.5 and 2 by alpha none / scalar / per-class, every reduction: one compiled grid."""
    x, t, w = _case((8, 5), ignore=(-100, -100))
    alphas = {None: {}, "scalar": {"alpha": np.array(0.25)},
              "per-class": {"alpha": np.random.default_rng(2).uniform(0.1, 0.9, size=5)}}  # fmt: skip
    cases = [({"input": x, "target": t, "weight": w, **alphas[alpha]}, {"gamma": gamma})
             for gamma in (0.5, 2.0) for alpha in alphas]  # fmt: skip
    compare_each(jaxloss.focal_loss, t_focal_loss, cases, dtype=dtype, positional=["input", "target"])


def test_focal_loss_gamma_zero_and_one():
    x, t, _ = _case((8, 5), ignore=(4,))
    arrays = {"input": x, "target": t, "alpha": np.random.default_rng(2).uniform(0.1, 0.9, size=5)}
    cases = [(arrays, {"gamma": gamma, "ignore_index": 4}) for gamma in (0.0, 1.0)]
    compare_each(jaxloss.focal_loss, t_focal_loss, cases, positional=["input", "target"])


def test_focal_loss_other_shapes():
    cases = []
    for shape in ("1d", "3d"):
        x, t, w = _case(SHAPES[shape])
        cases.append(({"input": x, "target": t, "weight": w}, {"gamma": 1.5}))
    compare_each(jaxloss.focal_loss, t_focal_loss, cases, positional=["input", "target"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_loss_gamma_zero_is_cross_entropy_bitwise(dtype):
    x, t, w = _case((3, 5, 4), ignore=(-100, 2))
    xj, tj, wj = jnp.asarray(x, dtype), jnp.asarray(t), jnp.asarray(w, dtype)
    calls = (("mean", {}), ("none", {"ignore_index": 2}), ("mean", {"ignore_index": 2}), ("sum", {"ignore_index": 2}))
    weighted = (False, True, True, False)

    @jax.jit  # every call of the comparison in one compiled program (eager: ten)
    def both(xj, wj):
        pairs = []
        for (reduction, kwargs), w in zip(calls, weighted):
            kw = {**kwargs, "weight": wj} if w else kwargs
            pairs.append((jaxloss.focal_loss(xj, tj, reduction=reduction, gamma=0.0, **kw),
                          jaxloss.cross_entropy(xj, tj, reduction=reduction, **kw)))  # fmt: skip
        pairs.append((jax.grad(lambda a: jaxloss.focal_loss(a, tj, wj, gamma=0))(xj),
                      jax.grad(lambda a: jaxloss.cross_entropy(a, tj, wj))(xj)))  # fmt: skip
        return pairs

    for i, (fl, ce) in enumerate(both(xj, wj)):
        np.testing.assert_array_equal(np.asarray(fl), np.asarray(ce), err_msg=f"call {i}")

    # ... and both equal torch's cross entropy
    def t_ce(input, target, weight=None, reduction="mean", gamma=0.0):
        return t_cross_entropy(input, target, weight=weight, reduction=reduction)

    compare(jaxloss.focal_loss, t_ce, {"input": x, "target": t, "weight": w}, {"gamma": 0.0}, dtype=dtype,
            positional=["input", "target"])  # fmt: skip


def test_focal_loss_gradient_finite_at_p_one():
    # p_t == 1 exactly (float32): the naive chain rule through (1 - p)^gamma gives
    # inf * 0 = NaN for gamma < 1; the true derivative (the limit) is 0.
    gammas = (0.1, 0.5, 2.0)
    x = jnp.asarray([[1e4, 0.0, -1.0], [2.0, 1.0, 0.0]], jnp.float32)
    t = jnp.asarray([0, 1])
    grads = jax.jit(lambda a: [jax.grad(lambda b, g=g: jaxloss.focal_loss(b, t, gamma=g, reduction="sum"))(a)
                               for g in gammas])(x)  # fmt: skip
    for gamma, g in zip(gammas, grads):
        assert bool(jnp.all(jnp.isfinite(g))), gamma
        np.testing.assert_array_equal(np.asarray(g[0]), 0.0, err_msg=f"gamma {gamma}")
    # near p = 1 (finite everywhere in torch too) the custom derivative matches torch's chain rule
    xm = np.array([[25.0, 0.0, -1.0], [30.0, 2.0, 0.0], [3.0, 1.0, 0.0]])
    cases = [({"input": xm, "target": np.array([0, 0, 1])}, {"gamma": gamma}) for gamma in gammas]
    compare_each(jaxloss.focal_loss, t_focal_loss, cases, positional=["input", "target"], reductions=["sum"])


def test_focal_loss_infinite_at_minus_inf_logit_with_finite_gradient():
    x = jnp.asarray([[-jnp.inf, 0.0, 1.0]])
    g = jax.jit(jax.grad(lambda a: jaxloss.focal_loss(a, jnp.asarray([0]), reduction="sum")))(x)
    assert jaxloss.focal_loss(x, jnp.asarray([0])) == jnp.inf
    assert bool(jnp.all(jnp.isfinite(g)))


# --------------------------------------------------------------------------- out-of-range targets
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "focal_loss"])
def test_out_of_range_target_is_nan_and_checked_raises(name):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
    fn = getattr(jaxloss, name)
    # the three reductions in one compiled program (eager: three), reused by every bad value
    reductions = jax.jit(lambda x, t: [fn(x, t, reduction=r) for r in ("none", "mean", "sum")])
    for bad_value in (5, 7, -1):
        bad = jnp.asarray([0, bad_value, 1, -100])
        per, mean, total = reductions(x, bad)
        assert np.isnan(np.asarray(per)[1]) and np.isfinite(np.asarray(per)[[0, 2, 3]]).all()
        assert np.isnan(np.asarray(mean))
        assert np.isnan(np.asarray(total))
        with pytest.raises(ValueError, match=f"^Target {bad_value} is out of bounds.$"):
            getattr(checked, name)(x, bad)
    with pytest.raises(ValueError, match="Target 9 is out of bounds."):
        checked.cross_entropy(jnp.zeros((2, 5, 3)), jnp.asarray([[0, 9, 1], [1, 1, 1]]), label_smoothing=0.1)
    # valid targets pass checked mode with the same value
    good = jnp.asarray([0, 4, 1, -100])
    np.testing.assert_array_equal(
        np.asarray(getattr(checked, name)(x, good)), np.asarray(getattr(jaxloss, name)(x, good))
    )


def test_out_of_range_never_wraps():
    x = jnp.asarray([[0.0, 10.0, 0.0]])
    # -1 would read the last class with wrap-around indexing; 3 would clamp to class 2
    for bad in (-1, 3, 2**31 - 1):
        assert np.isnan(np.asarray(jaxloss.cross_entropy(x, jnp.asarray([bad], jnp.int64))))
    # an ignore_index outside the target dtype's range simply never matches
    assert np.isfinite(np.asarray(jaxloss.cross_entropy(x, jnp.asarray([1], jnp.int32), ignore_index=2**40)))


# --------------------------------------------------------------------------- errors
ERRORS = [
    # (fn, input shape, target (array), kwargs, exception, torch's message)
    ("cross_entropy", (3, 5), np.array([0, 1]), {}, ValueError,
     r"Expected input batch_size \(3\) to match target batch_size \(2\)\."),
    ("nll_loss", (3, 5), np.array([0, 1]), {}, ValueError,
     r"Expected input batch_size \(3\) to match target batch_size \(2\)\."),
    ("focal_loss", (3, 5), np.array([0, 1]), {}, ValueError,
     r"Expected input batch_size \(3\) to match target batch_size \(2\)\."),
    ("cross_entropy", (3, 5), np.array(1), {}, ValueError,
     r"Expected input batch_size \(3\) to match target batch_size \(0\)\."),
    ("cross_entropy", (3, 5), np.zeros((3, 2), np.int64), {}, ValueError,
     "0D or 1D target tensor expected, multi-target not supported"),
    ("cross_entropy", (5,), np.array([1, 2]), {}, ValueError,
     "For 1D input, 1D target must have size 1, but got target size: 2"),
    ("cross_entropy", (5,), np.zeros((1, 1), np.int64), {}, ValueError,
     "0D or 1D target tensor expected, multi-target not supported"),
    ("cross_entropy", (2, 5, 3), np.zeros((2, 4), np.int64), {}, ValueError,
     r"Expected target size \[2, 3\], got \[2, 4\]"),
    ("nll_loss", (2, 5, 3, 4, 2), np.zeros((2, 3, 5, 2), np.int64), {}, ValueError,
     r"Expected target size \[2, 3, 4, 2\], got \[2, 3, 5, 2\]"),
    ("cross_entropy", (2, 5, 3, 4), np.zeros((2, 3, 5), np.int64), {}, ValueError,
     r"size mismatch \(got input: \[2, 5, 3, 4\] , target: \[2, 3, 5\]"),
    ("cross_entropy", (2, 5, 3, 4), np.zeros((2, 3), np.int64), {}, ValueError,
     "only batches of spatial targets supported \\(3D tensors\\) but got targets of dimension: 2"),
    ("cross_entropy", (3, 5), np.array([0, 1, 2]), {"weight": np.ones(4)}, ValueError,
     r"weight tensor should be defined either for all 5 classes or no classes but got weight tensor of shape: \[4\]"),
    ("nll_loss", (3, 5), np.array([0, 1, 2]), {"weight": np.ones((5, 1))}, ValueError,
     r"weight tensor should be defined either for all 5 classes or no classes but got weight tensor of shape: \[5, 1\]"),
    ("nll_loss", (2, 5, 3), np.zeros((2, 3), np.int64), {"weight": np.ones(4)}, ValueError,
     "weight tensor should be defined either for all or no classes"),
    ("cross_entropy", (3, 5), np.full((3, 5), 0.2), {"weight": np.ones(4)}, ValueError,
     r"cross_entropy: weight tensor should be defined either for all 5 classes or no classes"),
    ("cross_entropy", (3, 5), np.array([0.0, 1.0, 2.0]), {}, TypeError, "expected target dtype to be an integer type"),
    ("nll_loss", (3, 5), np.array([0.0, 1.0, 2.0]), {}, TypeError, "expected target dtype to be an integer type"),
    ("cross_entropy", (3, 5), np.array([True, False, True]), {}, TypeError, "expected target dtype to be an integer"),
    ("cross_entropy", (3, 5), np.zeros((3, 5), np.int64), {}, TypeError,
     "Expected floating point type for target with class probabilities, got int64"),
    ("cross_entropy", (3, 5), np.full((3, 5), 0.2), {"ignore_index": 1}, ValueError,
     "ignore_index is not supported for floating point target"),
    ("cross_entropy", (3, 5), np.array([0, 1, 2]), {"label_smoothing": 1.5}, ValueError,
     r"label_smoothing must be between 0.0 and 1.0. Got: 1.5"),
    ("cross_entropy", (3, 5), np.full((3, 5), 0.2), {"label_smoothing": 1.5}, ValueError,
     r"label_smoothing must be between 0.0 and 1.0. Got: 1.5"),
    ("cross_entropy", (3, 5), np.array([0, 1, 2]), {"reduction": "avg"}, ValueError,
     "avg is not a valid value for reduction"),
    ("nll_loss", (3, 5), np.array([0, 1, 2]), {"reduction": "batchmean"}, ValueError,
     "batchmean is not a valid value for reduction"),
    ("focal_loss", (3, 5), np.array([0, 1, 2]), {"reduction": "avg"}, ValueError,
     "avg is not a valid value for reduction"),
    ("cross_entropy", (), np.array(0), {}, ValueError, r"Expected 1 or more dimensions \(got 0\)"),
    ("nll_loss", (), np.array(0), {}, ValueError, r"Expected 1 or more dimensions \(got 0\)"),
    ("cross_entropy", (3, 5), np.array([0, 1, 2]), {"ignore_index": 1.5}, TypeError, "ignore_index must be int"),
    ("focal_loss", (3, 5), np.array([0, 1, 2]), {"gamma": -1.0}, ValueError, "gamma must be a non-negative number"),
    ("focal_loss", (3, 5), np.array([0, 1, 2]), {"alpha": np.ones(4)}, ValueError,
     r"alpha must be a scalar or have shape \(5,\), got \[4\]"),
]  # fmt: skip


@pytest.mark.parametrize("name,shape,target,kwargs,exc,message", ERRORS)
def test_bad_input_raises_torch_message(name, shape, target, kwargs, exc, message):
    x = jnp.zeros(shape, jnp.float32)
    kw = {k: jnp.asarray(v, jnp.float32) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises(exc, match=message):
        getattr(jaxloss, name)(x, jnp.asarray(target), **kw)
    torch_fn = getattr(F, name, None)
    if torch_fn is not None and exc is ValueError and shape and "ignore_index" not in kwargs:
        # the same call fails in torch too (torch's message is the one matched above)
        tk = {
            k: torch.tensor(v, dtype=torch.float32) if isinstance(v, np.ndarray) else v
            for k, v in kwargs.items()
        }
        t_target = torch.tensor(target) if target.dtype.kind == "f" else torch.tensor(target).long()
        with pytest.raises(Exception, match=message):
            torch_fn(torch.zeros(shape), t_target, **tk)


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="expected a floating point dtype"):
        jaxloss.cross_entropy(jnp.zeros((3, 5), jnp.int32), jnp.asarray([0, 1, 2]))
    with pytest.raises(TypeError, match="expected a floating point dtype"):
        jaxloss.nll_loss(jnp.zeros((3, 5), jnp.int32), jnp.asarray([0, 1, 2]))


def test_negative_label_smoothing_is_ignored_like_torch():
    x, t, _ = _case((4, 5))
    a = jaxloss.cross_entropy(jnp.asarray(x), jnp.asarray(t), label_smoothing=-0.5)
    np.testing.assert_array_equal(
        np.asarray(a), np.asarray(jaxloss.cross_entropy(jnp.asarray(x), jnp.asarray(t)))
    )
    check(
        jaxloss.cross_entropy,
        t_cross_entropy,
        {"input": x, "target": t},
        {"label_smoothing": -0.5},
        dtype="float64",
    )
    p = _probs((4, 5))
    check(
        jaxloss.cross_entropy,
        t_cross_entropy,
        {"input": x, "target": p},
        {"label_smoothing": -0.5},
        dtype="float64",
    )


# --------------------------------------------------------------------------- axis
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "focal_loss"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_axis_minus_one_on_channels_last_equals_torch_on_the_transposed_input(name, reduction):
    from jaxloss.parity import references

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4, 5))  # (N, H, W, C)
    t = rng.integers(0, 5, size=(2, 3, 4))
    tfn = references.focal_loss if name == "focal_loss" else getattr(F, name)
    tx = torch.tensor(x, requires_grad=True)
    want = tfn(tx.movedim(-1, 1).contiguous(), torch.tensor(t), reduction=reduction)  # nll2d needs contiguous
    want.sum().backward()
    fn = lambda x: getattr(jaxloss, name)(x, jnp.asarray(t), reduction=reduction, axis=-1)
    # the value and the gradient in one compiled program (eager: three)
    got, grad = jax.jit(lambda x: (fn(x), jax.grad(lambda y: jnp.sum(fn(y)))(x)))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), tx.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_axis_with_probability_targets_and_a_square_sequence():
    # (N, T, C) logits with T == C: the wrong axis would silently give a number; axis=-1 is
    # the one torch computes on the transposed input.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 4, 4))
    p = np.exp(rng.normal(size=(2, 4, 4)))
    p = p / p.sum(-1, keepdims=True)
    want = F.cross_entropy(torch.tensor(x).movedim(-1, 1), torch.tensor(p).movedim(-1, 1))
    got = jaxloss.cross_entropy(jnp.asarray(x), jnp.asarray(p), axis=-1)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-12)
    assert abs(float(jaxloss.cross_entropy(jnp.asarray(x), jnp.asarray(p))) - float(want)) > 1e-6


def test_axis_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="axis 3 is out of bounds"):
        jaxloss.cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), axis=3)
