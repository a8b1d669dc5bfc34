"""linear.py against torch.nn.functional.linear_cross_entropy (torch's reference path): values,
gradients wrt input / linear_weight / linear_bias, chunking, memory, shapes, errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxloss
from jaxloss import checked
from jaxloss.linear import default_chunk_size
from tests.test_classification import REDUCTIONS, compare, compare_each
from tests.torch_compare import assert_close

DTYPES = ["float32", "float64"]
N, H, C = 13, 6, 7


def t_linear_cross_entropy(input, linear_weight, target, **kwargs):
    """torch's reference path; int32 class indices go in as int64 (torch takes no int32)."""
    if not target.is_floating_point():
        target = target.long()
    kwargs.pop("chunk_size", None)
    return F.linear_cross_entropy(input, linear_weight, target, **kwargs)


def _data(n=N, h=H, c=C, out=(), seed=0, ignore=(-100,)):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h))
    w = rng.normal(size=(c, *out, h)) / np.sqrt(h) * 3
    b = rng.normal(size=(c, *out))
    t = rng.integers(0, c, size=(n, *out))
    flat = t.reshape(-1)
    for i, v in enumerate(ignore):
        flat[(3 * i + 1) % flat.size] = v
    return x, w, b, t, rng.uniform(0.2, 2.0, size=c)


GRAD = ("input", "linear_weight", "linear_bias")
POS = ("input", "linear_weight", "target")

CASES = [
    # (options, chunk_size, ignore values placed in the target)
    ({}, None, (-100,)),  # default chunk: larger than N, one chunk
    ({"bias": True}, 4, (-100,)),  # 3 chunks + a remainder of 1 row
    ({"weight": True, "label_smoothing": 0.2}, 5, (-100,)),  # 2 chunks + a remainder of 3 rows
    (
        {"bias": True, "weight": True, "label_smoothing": 0.1, "ignore_index": 3},
        13,
        (3, 3),
    ),  # chunk = all rows
]


def _arrays(x, w, b, t, cw, opts):
    arrays = {"input": x, "linear_weight": w, "target": t}
    if opts.get("bias"):
        arrays["linear_bias"] = b
    if opts.get("weight"):
        arrays["weight"] = cw
    kwargs = {k: v for k, v in opts.items() if k not in ("bias", "weight")}
    grad = [g for g in GRAD if g in arrays]
    return arrays, kwargs, grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(dtype):
    """Each of CASES, every reduction, in one compiled grid per dtype; the cases without a bias
    differentiate only input and linear_weight (with linear_bias, all three)."""
    for with_bias in (False, True):
        cases = []
        for opts, chunk, ignore in CASES:
            if bool(opts.get("bias")) != with_bias:
                continue
            x, w, b, t, cw = _data(ignore=ignore)
            arrays, kwargs, grad = _arrays(x, w, b, t, cw, opts)
            cases.append((arrays, {**kwargs, "chunk_size": chunk}))
        compare_each(jaxloss.linear_cross_entropy, t_linear_cross_entropy, cases, grad=grad, dtype=dtype,
                     positional=POS)  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_targets(dtype):
    x, w, b, _, cw = _data()
    p = np.random.default_rng(1).uniform(size=(N, C))
    p /= p.sum(1, keepdims=True)
    arrays = {"input": x, "linear_weight": w, "target": p, "linear_bias": b, "weight": cw}
    compare(jaxloss.linear_cross_entropy, t_linear_cross_entropy, arrays, {"label_smoothing": 0.1, "chunk_size": 4},
            grad=(*GRAD, "target"), dtype=dtype, positional=POS)  # fmt: skip


@pytest.mark.parametrize("probs", [False, True])
def test_k_dimensional(probs):
    out = (3, 2)
    x, w, b, t, cw = _data(out=out, ignore=(-100, -100))
    if probs:
        p = np.random.default_rng(2).uniform(size=(N, C, *out))
        t = p / p.sum(1, keepdims=True)
    arrays = {"input": x, "linear_weight": w, "target": t, "linear_bias": b, "weight": cw}
    grad = (*GRAD, "target") if probs else GRAD
    compare(jaxloss.linear_cross_entropy, t_linear_cross_entropy, arrays, {"label_smoothing": 0.2, "chunk_size": 5},
            grad=grad, positional=POS)  # fmt: skip


def test_unbatched():
    """A class-index and a probability target (gradients wrt input, linear_weight and
    linear_bias), every reduction: one compiled grid."""
    x, w, b, t, cw = _data()
    cases = []
    for probs in (False, True):
        target = np.full((C,), 1 / C) + np.linspace(-0.05, 0.05, C) if probs else np.array(t[0])
        cases.append(({"input": x[0], "linear_weight": w, "target": target, "linear_bias": b, "weight": cw},
                      {"label_smoothing": 0.1}))  # fmt: skip
    outs = compare_each(jaxloss.linear_cross_entropy, t_linear_cross_entropy, cases, grad=GRAD, positional=POS)
    assert [out["none"].shape for out in outs] == [(), ()]


def test_int32_and_int64_targets_agree_and_all_ignored():
    x, w, _, t, cw = _data()
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    t_all = np.full((N,), -100)

    @jax.jit  # every call below in one compiled program (eager: three)
    def every(xj, wj, t32, t64, cw):
        return (jaxloss.linear_cross_entropy(xj, wj, t32, weight=cw, chunk_size=4),
                jaxloss.linear_cross_entropy(xj, wj, t64, weight=cw, chunk_size=4),
                jax.value_and_grad(lambda a, b: jaxloss.linear_cross_entropy(a, b, jnp.asarray(t_all), chunk_size=4),
                                   argnums=(0, 1))(xj, wj))  # fmt: skip

    a, b, (v, g) = every(xj, wj, jnp.asarray(t, jnp.int32), jnp.asarray(t, jnp.int64), jnp.asarray(cw))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # every target ignored: 'mean' is 0 / 0 = NaN like torch, the gradients are 0 (not NaN)
    assert np.isnan(float(F.linear_cross_entropy(torch.tensor(x), torch.tensor(w), torch.tensor(t_all))))
    assert np.isnan(v)
    np.testing.assert_array_equal(np.asarray(g[0]), 0.0)
    np.testing.assert_array_equal(np.asarray(g[1]), 0.0)


def test_empty_batch_matches_torch():
    """N = 0 rows: 'mean' is 0 / 0 = NaN, 'sum' 0, 'none' an empty array, as in torch; the
    gradients are empty / zero, never an error."""
    x, w, b, _, cw = _data(n=0, ignore=())
    arrays = {"input": x, "linear_weight": w, "target": np.zeros((0,), np.int64), "linear_bias": b, "weight": cw}
    out = compare(jaxloss.linear_cross_entropy, t_linear_cross_entropy, arrays, {"chunk_size": 4},
                  grad=GRAD, positional=POS)  # fmt: skip
    assert out["none"].shape == (0,) and np.isnan(out["mean"]) and out["sum"] == 0


def test_same_value_as_unchunked_cross_entropy():
    x, w, b, t, cw = _data(n=40, c=11, seed=3)
    xj, wj, bj, tj, cwj = map(jnp.asarray, (x, w, b, t, cw))
    kw = {"weight": cwj, "label_smoothing": 0.1}

    def both(a, ww, bb):
        chunked = jax.value_and_grad(lambda *p: jaxloss.linear_cross_entropy(p[0], p[1], tj, linear_bias=p[2], chunk_size=16,
                                                                             **kw), argnums=(0, 1, 2))(a, ww, bb)  # fmt: skip
        full = jax.value_and_grad(
            lambda *p: jaxloss.cross_entropy(p[0] @ p[1].T + p[2], tj, **kw), argnums=(0, 1, 2)
        )(a, ww, bb)
        return chunked, full

    (v1, g1), (v2, g2) = jax.jit(both)(xj, wj, bj)
    np.testing.assert_allclose(np.asarray(v1), np.asarray(v2), rtol=1e-13)
    for a, e in zip(g1, g2):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-11, atol=1e-15)


# --------------------------------------------------------------------------- custom VJP details
def test_backward_scales_saved_gradients_by_the_cotangent():
    x, w, b, t, _ = _data()
    xj, wj, bj, tj = map(jnp.asarray, (x, w, b, t))

    def f(a, ww, bb):
        return jaxloss.linear_cross_entropy(a, ww, tj, linear_bias=bb, reduction="sum", chunk_size=4)

    # the scaled pullback and the gradient in one compiled program (eager: a program per pass)
    g3, g1 = jax.jit(lambda *a: (jax.vjp(f, *a)[1](jnp.asarray(3.0)), jax.grad(f, argnums=(0, 1, 2))(*a)))(xj, wj, bj)
    for a, e in zip(g3, g1):
        np.testing.assert_allclose(np.asarray(a), 3 * np.asarray(e), rtol=1e-14)


def test_gradient_wrt_a_subset_of_arguments():
    x, w, b, t, _ = _data()
    xj, wj, bj, tj = map(jnp.asarray, (x, w, b, t))

    def f(a, ww, bb):
        return jaxloss.linear_cross_entropy(a, ww, tj, linear_bias=bb, chunk_size=4)

    subsets = ((2,), (0, 1))
    # the full gradient and each subset's in one compiled program (was one per subset)
    full, parts = jax.jit(lambda *a: (jax.grad(f, argnums=(0, 1, 2))(*a),
                                      [jax.grad(f, argnums=n)(*a) for n in subsets]))(xj, wj, bj)  # fmt: skip
    for argnums, part in zip(subsets, parts):
        for i, g in zip(argnums, part):
            np.testing.assert_allclose(np.asarray(g), np.asarray(full[i]), rtol=1e-14)


def test_second_order_matches_torch_double_backward():
    x, w, b, t, _ = _data(n=9, h=4, c=6)
    v = np.random.default_rng(4).normal(size=x.shape)
    wj, bj, tj, vj = map(jnp.asarray, (w, b, t, v))

    def f(a):
        return jaxloss.linear_cross_entropy(a, wj, tj, linear_bias=bj, label_smoothing=0.1, chunk_size=4)

    hvp, hvp_fwd = jax.jit(lambda a: (jax.grad(lambda c: jnp.vdot(jax.grad(f)(c), vj))(a),
                                      jax.jvp(jax.grad(f), (a,), (vj,))[1]))(jnp.asarray(x))  # fmt: skip
    xt = torch.tensor(x, requires_grad=True)
    loss = F.linear_cross_entropy(
        xt, torch.tensor(w), torch.tensor(t), linear_bias=torch.tensor(b), label_smoothing=0.1
    )
    (g,) = torch.autograd.grad(loss, [xt], create_graph=True)
    (h,) = torch.autograd.grad((g * torch.tensor(v)).sum(), [xt])
    assert_close(hvp, h, "float64", "reverse-over-reverse HVP")
    assert_close(hvp_fwd, h, "float64", "forward-over-reverse HVP")


def test_vmap_and_jit_compose():
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(3, N, H)))
    ts = jnp.asarray(rng.integers(0, C, size=(3, N)))
    w = jnp.asarray(rng.normal(size=(C, H)))

    def f(x, ww, t):
        return jaxloss.linear_cross_entropy(x, ww, t, label_smoothing=0.1, chunk_size=4)

    vg = jax.value_and_grad(f, argnums=(0, 1))
    (vals, grads), singles = jax.jit(
        lambda xs, w, ts: (
            jax.vmap(vg, in_axes=(0, None, 0))(xs, w, ts),
            [vg(xs[i], w, ts[i]) for i in range(3)],
        )
    )(xs, w, ts)
    for i, (v, g) in enumerate(singles):
        np.testing.assert_allclose(np.asarray(vals[i]), np.asarray(v), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(grads[0][i]), np.asarray(g[0]), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(grads[1][i]), np.asarray(g[1]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_low_precision_is_computed_in_float32(dtype):
    x, w, b, t, _ = _data()
    xl, wl, bl = (jnp.asarray(a, dtype) for a in (x, w, b))
    tj = jnp.asarray(t)

    @jax.jit  # the value, its float32 reference and the gradient in one compiled program (eager: three)
    def every(xl, wl, bl):
        return (jaxloss.linear_cross_entropy(xl, wl, tj, linear_bias=bl, chunk_size=4),
                jaxloss.linear_cross_entropy(*(a.astype(jnp.float32) for a in (xl, wl)), tj,
                                             linear_bias=bl.astype(jnp.float32), chunk_size=4),
                jax.grad(lambda a, ww: jaxloss.linear_cross_entropy(a, ww, tj, chunk_size=4), argnums=(0, 1))(xl, wl))  # fmt: skip

    out, ref, g = every(xl, wl, bl)
    assert out.dtype == jnp.dtype(dtype)
    assert out == ref.astype(dtype)
    assert g[0].dtype == jnp.dtype(dtype) and g[1].dtype == jnp.dtype(dtype)


def test_default_chunk_size():
    assert default_chunk_size(65536) == 256
    assert default_chunk_size(50257) == 256
    assert default_chunk_size(1000) == 16384
    assert default_chunk_size(1 << 30) == 1


# --------------------------------------------------------------------------- memory
@pytest.mark.parametrize("reduction,probs", [("mean", False), ("none", False), ("sum", True)])
def test_value_and_grad_never_materialises_the_logits(reduction, probs):
    """Compiled temp memory is O(chunk * C), not O(N * C), forward and backward."""
    n, h, c, chunk = 2048, 32, 2048, 64
    x = jax.ShapeDtypeStruct((n, h), jnp.float32)
    w = jax.ShapeDtypeStruct((c, h), jnp.float32)
    t = jax.ShapeDtypeStruct((n, c), jnp.float32) if probs else jax.ShapeDtypeStruct((n,), jnp.int32)
    logits_bytes = n * c * 4  # 16 MiB

    def chunked(a, ww, tt):
        return jnp.sum(
            jaxloss.linear_cross_entropy(
                a, ww, tt, reduction=reduction, label_smoothing=0.1, chunk_size=chunk
            )
        )

    def unchunked(a, ww, tt):
        return jnp.sum(jaxloss.cross_entropy(a @ ww.T, tt, reduction=reduction, label_smoothing=0.1))

    def temp_and_hlo(f):
        compiled = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(x, w, t).compile()
        return compiled.memory_analysis().temp_size_in_bytes, compiled.as_text()

    temp, hlo = temp_and_hlo(chunked)
    # a few (64, 2048) f32 buffers: the chunk's logits and their gradient (0.5 MiB each), plus
    # O(N * H + C * H) bookkeeping; 16 MiB if the logits were materialised
    chunk_bytes = chunk * c * 4
    assert temp <= 5 * chunk_bytes < logits_bytes / 4, (
        f"temp {temp / 2**20:.1f} MiB, logits {logits_bytes / 2**20:.0f} MiB"
    )
    if not probs:  # (a probability target is itself (N, C))
        assert not re.search(rf"f32\[{n},{c}\]", hlo), "an (N, C) array in the compiled computation"
    # the test has teeth: the unchunked computation holds (N, C) logits
    temp_full, hlo_full = temp_and_hlo(unchunked)
    assert temp_full >= logits_bytes
    assert re.search(rf"f32\[{n},{c}\]", hlo_full)


# --------------------------------------------------------------------------- bad values and inputs
def test_out_of_range_target_is_nan_and_checked_raises():
    x, w, _, t, _ = _data()
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    bad = t.copy()
    bad[5] = 9
    # both calls in one compiled program (eager: two)
    per, mean = jax.jit(lambda a, b, tt: (jaxloss.linear_cross_entropy(a, b, tt, reduction="none", chunk_size=4),
                                          jaxloss.linear_cross_entropy(a, b, tt)))(xj, wj, jnp.asarray(bad))  # fmt: skip
    assert np.isnan(np.asarray(per)[5]) and np.isfinite(np.delete(np.asarray(per), 5)).all()
    assert np.isnan(np.asarray(mean))
    with pytest.raises(ValueError, match=r"^Target 9 is out of bounds\.$"):
        checked.linear_cross_entropy(xj, wj, jnp.asarray(bad), chunk_size=4)
    np.testing.assert_array_equal(
        np.asarray(checked.linear_cross_entropy(xj, wj, jnp.asarray(t))),
        np.asarray(jaxloss.linear_cross_entropy(xj, wj, jnp.asarray(t))),
    )


ERRORS = [
    # (input shape, weight shape, target, kwargs, exception, message)
    ((2, 3, 4), (5, 4), np.zeros(2, np.int64), {}, ValueError, "expected input with dimensionality 1 or 2, got 3"),
    ((2, 4), (4,), np.zeros(2, np.int64), {}, ValueError, "expected linear_weight with dimensionality at least 2, got 1"),
    ((2, 4), (5, 3), np.zeros(2, np.int64), {}, ValueError,
     r"expected equal input and linear_weight last dimensions \(in_features\), got 4 and 3, respectively"),
    ((2, 4), (5, 4), np.zeros(2, np.int64), {"linear_bias": np.zeros(4)}, ValueError,
     r"expected linear_bias shape \(5,\), got \(4,\)"),
    ((4,), (5, 3, 4), np.zeros(3, np.int64), {}, ValueError,
     r"K-dimensional loss defined by linear_weight shape \(5, 3, 4\) requires batched input, \(N, 4\), "
     + r"got unbatched input with shape \(4,\)"),
    ((2, 4), (5, 4), np.full((2, 5), 0.2), {"ignore_index": -100}, ValueError,
     "ignore_index cannot be specified when target contains probabilities"),
    ((2, 4), (5, 4), np.zeros(3, np.int64), {}, ValueError,
     r"Expected input batch_size \(2\) to match target batch_size \(3\)\."),
    ((2, 4), (5, 3, 4), np.zeros((2, 2), np.int64), {}, ValueError, r"Expected target size \[2, 3\], got \[2, 2\]"),
    ((2, 4), (5, 4), np.zeros(2, np.int64), {"weight": np.ones(4)}, ValueError,
     "weight tensor should be defined either for all 5 classes or no classes"),
    ((2, 4), (5, 4), np.zeros(2, np.int64), {"label_smoothing": 2.0}, ValueError,
     "label_smoothing must be between 0.0 and 1.0. Got: 2"),
    ((2, 4), (5, 4), np.zeros(2, np.int64), {"reduction": "avg"}, ValueError, "avg is not a valid value for reduction"),
    ((2, 4), (5, 4), np.zeros(2), {}, TypeError, "expected target dtype to be an integer type"),
    ((2, 4), (5, 4), np.zeros((2, 5), np.int64), {}, TypeError,
     "Expected floating point type for target with class probabilities"),
]  # fmt: skip


@pytest.mark.parametrize("in_shape,w_shape,target,kwargs,exc,message", ERRORS)
def test_bad_input_raises_torch_message(in_shape, w_shape, target, kwargs, exc, message):
    kw = {k: jnp.asarray(v, jnp.float32) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises(exc, match=message):
        jaxloss.linear_cross_entropy(jnp.zeros(in_shape), jnp.zeros(w_shape), jnp.asarray(target), **kw)
    if exc is ValueError:  # torch fails on the same call with the same message
        tk = {
            k: torch.tensor(v, dtype=torch.float32) if isinstance(v, np.ndarray) else v
            for k, v in kwargs.items()
        }
        with pytest.raises(Exception, match=message):
            F.linear_cross_entropy(torch.zeros(in_shape), torch.zeros(w_shape), torch.tensor(target), **tk)


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True])
def test_bad_chunk_size(chunk):
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None"):
        jaxloss.linear_cross_entropy(
            jnp.zeros((2, 4)), jnp.zeros((5, 4)), jnp.zeros(2, jnp.int32), chunk_size=chunk
        )


def test_reductions_of_none_output_shape():
    x, w, _, t, _ = _data(out=(2,))
    for red, shape in zip(REDUCTIONS, [(N, 2), (), ()]):  # traced for its shape only: nothing compiled
        out = jax.eval_shape(lambda *a, red=red: jaxloss.linear_cross_entropy(*a, reduction=red),
                             jnp.asarray(x), jnp.asarray(w), jnp.asarray(t))  # fmt: skip
        assert out.shape == shape


def test_label_smoothing_is_traced_no_recompile_and_checked_for_traced_values():
    rng = np.random.default_rng(7)
    x, w = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((6, 4), (5, 4)))
    t = jnp.asarray(rng.integers(0, 5, 6))
    fn = jaxloss.linear_cross_entropy
    fn(x, w, t, label_smoothing=0.1, chunk_size=4)
    size = fn._cache_size()
    out = fn(x, w, t, label_smoothing=0.2, chunk_size=4)  # a new Python number: no new trace
    assert fn._cache_size() == size
    ref = F.cross_entropy(torch.tensor(np.asarray(x @ w.T)), torch.tensor(np.asarray(t)), label_smoothing=0.2)
    np.testing.assert_allclose(float(out), float(ref), rtol=1e-5)

    traces = []

    @jax.jit
    def step(a, smoothing):  # a scheduled smoothing inside a jitted step compiles once
        traces.append(1)
        return jax.value_and_grad(lambda a: fn(a, w, t, label_smoothing=smoothing, chunk_size=4))(a)

    for s in (0.0, 0.2):
        v, g = step(x, jnp.float32(s))
        xt = torch.tensor(np.asarray(x), requires_grad=True)
        loss = F.linear_cross_entropy(xt, torch.tensor(np.asarray(w)), torch.tensor(np.asarray(t)), label_smoothing=s)
        loss.backward()
        np.testing.assert_allclose(float(v), float(loss.detach()), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(g), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert len(traces) == 1

    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        fn(x, w, t, label_smoothing=1.5)
    bad = jnp.float32(1.5)  # traced: NaN value and gradient, torch's message in checked mode
    v, g = jax.jit(jax.value_and_grad(lambda a: fn(a, w, t, label_smoothing=bad)))(x)  # one program (eager: two)
    assert np.isnan(float(v)) and np.isnan(np.asarray(g)).all()
    with pytest.raises(Exception, match="label_smoothing must be between 0.0 and 1.0"):
        checked.linear_cross_entropy(x, w, t, label_smoothing=bad)
