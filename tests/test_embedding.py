"""distance.py and embedding.py against torch.nn.functional: pairwise_distance, cosine_similarity,
cosine_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss.

Values and gradients of every differentiable argument, ties (small integer inputs:
exact hinge ties, tied maxima of the inf-norm, tied swap distances), zero vectors,
shapes (unbatched, broadcasting), second order against torch's double backward,
bad input with torch's messages, checked mode, jit / vmap, float16 / bfloat16.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxloss
from jaxloss import checked
from tests.torch_compare import (
    assert_close,
    assert_same_error,
    check,
    check_each,
    check_hvp_each,
    low_precision_vs_float32,
    mixed_ties,
    to_jax,
    to_torch,
)

DTYPES = ["float32", "float64"]
REDUCTIONS = ["none", "mean", "sum"]
LOW = ["bfloat16", "float16"]
N, D = 6, 4
INF = float("inf")


def _pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows: equal (zero difference), integer (ties of |d|), normal."""
    x1, x2 = mixed_ties(rng, N, D), mixed_ties(rng, N, D)
    x2[0] = x1[0]
    x1[1] = [2.0, -2.0, 1.0, 0.0]  # |d| tied maximum with x2[1] = 0
    x2[1] = 0.0
    return x1, x2


# --------------------------------------------------------------------------- pairwise_distance
# The grids below loop over their static options inside one test (check_each: one compiled
# program for the whole grid; a failure names its case) instead of one test per option.
@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_distance(dtype):
    x1, x2 = _pairs(np.random.default_rng(0))
    options = [{"p": p, "eps": eps, "keepdim": keepdim} for keepdim in [False, True]
               for p in [2.0, 1.0, INF, -INF, 0.0, 0.5, 1.5, 3.0, -1.0] for eps in [1e-6, 0.0]]
    outs = check_each(
        jaxloss.pairwise_distance,
        F.pairwise_distance,
        {"x1": x1, "x2": x2},
        options,
        grad=["x1", "x2"],
        dtype=dtype,
    )
    assert all(out.shape == ((N, 1) if o["keepdim"] else (N,)) for out, o in zip(outs, options))


PAIRWISE_SHAPES = [
    ((D,), (D,)),
    ((), ()),
    ((N, D), (D,)),
    ((D,), (N, D)),
    ((2, 3, D), (2, 3, D)),
    ((2, 1, D), (3, D)),
    ((), (N, D)),
    ((N, 1), (N, D)),
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_distance_shapes(dtype):
    cases = [(shapes, keepdim) for shapes in PAIRWISE_SHAPES for keepdim in [False, True]]
    arrays = []
    for shapes, _ in cases:
        rng = np.random.default_rng(1)
        arrays.append({"x1": rng.normal(size=shapes[0]), "x2": rng.normal(size=shapes[1])})
    check_each(
        jaxloss.pairwise_distance,
        F.pairwise_distance,
        arrays,
        [{"keepdim": keepdim} for _, keepdim in cases],
        grad=["x1", "x2"],
        dtype=dtype,
    )


def test_pairwise_distance_second_order():
    rng = np.random.default_rng(2)
    arrays = {"x1": rng.normal(size=(N, D)), "x2": rng.normal(size=(N, D))}
    check_hvp_each(jaxloss.pairwise_distance, F.pairwise_distance, arrays,
                   [{"p": p} for p in [2.0, 1.0, INF, 1.5, 3.0, 0.5]], wrt=["x1", "x2"])


def test_pairwise_distance_integer_inputs_and_promotion():
    a, b = np.array([[1, 2, 3]]), np.array([[0, 0, 1]])
    out = jaxloss.pairwise_distance(jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32))
    assert out.dtype == jnp.float32
    assert_close(out, F.pairwise_distance(torch.tensor(a), torch.tensor(b)), "float32", "int inputs")
    assert (
        jaxloss.pairwise_distance(jnp.ones((2, 3), jnp.float32), jnp.ones((2, 3), jnp.float64)).dtype
        == jnp.float64
    )


def test_pairwise_distance_errors():
    assert_same_error(
        lambda: jaxloss.pairwise_distance(jnp.zeros((3, 4)), jnp.zeros((3, 5))),
        lambda: F.pairwise_distance(torch.zeros(3, 4), torch.zeros(3, 5)),
    )


# --------------------------------------------------------------------------- cosine_similarity
def _cos_pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows: zero vector in x1, zero vector in x2, both zero, a norm below eps=1e-8, integers, normal."""
    x1, x2 = mixed_ties(rng, N, D), mixed_ties(rng, N, D)
    x1[0] = 0.0
    x2[1] = 0.0
    x1[2] = x2[2] = 0.0
    x1[3] = [1e-9, -2e-9, 0.0, 1e-9]
    return x1, x2


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_similarity(dtype):
    x1, x2 = _cos_pairs(np.random.default_rng(3))
    outs = check_each(
        jaxloss.cosine_similarity,
        F.cosine_similarity,
        {"x1": x1, "x2": x2},
        [{"eps": eps} for eps in [1e-8, 0.5]],  # 0.5: the clamp acts on ordinary vectors too
        grad=["x1", "x2"],
        dtype=dtype,
    )
    assert all(np.asarray(out)[:3].tolist() == [0.0, 0.0, 0.0] for out in outs)


COSINE_SHAPES_DIMS = [
    (((D,), (D,)), 0),
    (((D,), (D,)), -1),
    (((), ()), 0),
    (((3, 1, D), (5, D)), -1),
    (((N, D), (N, D)), 0),
    (((2, D, 3), (2, D, 3)), 1),
    (((2, D, 3), (1, D, 1)), -2),
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_similarity_shapes(dtype):
    arrays = []
    for (s1, s2), _ in COSINE_SHAPES_DIMS:
        rng = np.random.default_rng(4)
        arrays.append({"x1": rng.normal(size=s1), "x2": rng.normal(size=s2)})
    check_each(
        jaxloss.cosine_similarity,
        F.cosine_similarity,
        arrays,
        [{"dim": dim} for _, dim in COSINE_SHAPES_DIMS],
        grad=["x1", "x2"],
        dtype=dtype,
    )


def test_cosine_similarity_second_order():
    rng = np.random.default_rng(5)
    arrays = {"x1": rng.normal(size=(N, D)), "x2": rng.normal(size=(N, D))}
    check_hvp_each(jaxloss.cosine_similarity, F.cosine_similarity, arrays, [{"eps": eps} for eps in [1e-8, 0.5]],
                   wrt=["x1", "x2"])


def test_cosine_similarity_integer_and_mixed_inputs():
    a, b = np.array([[1, 2]]), np.array([[1.0, 0.0]], np.float32)
    out = jaxloss.cosine_similarity(jnp.asarray(a), jnp.asarray(b))
    assert out.dtype == jnp.float32
    assert_close(out, F.cosine_similarity(torch.tensor(a), torch.tensor(b)), "float32", "int + float")
    assert_same_error(
        lambda: jaxloss.cosine_similarity(jnp.asarray(a, jnp.int64), jnp.asarray(a, jnp.int64)),
        lambda: F.cosine_similarity(torch.tensor(a), torch.tensor(a)),
        TypeError,
    )


def test_cosine_similarity_errors():
    assert_same_error(
        lambda: jaxloss.cosine_similarity(jnp.zeros((3, 4)), jnp.zeros((3, 5))),
        lambda: F.cosine_similarity(torch.zeros(3, 4), torch.zeros(3, 5)),
    )
    for shape, dim in [((3, 4), -3), ((3, 4), 2), ((4,), 1), ((), 1)]:
        assert_same_error(
            lambda shape=shape, dim=dim: jaxloss.cosine_similarity(jnp.zeros(shape), jnp.zeros(shape), dim=dim),
            lambda shape=shape, dim=dim: F.cosine_similarity(torch.zeros(shape), torch.zeros(shape), dim=dim),
            IndexError,
        )


def _complex_vs_torch(cases):
    """For each ``(name, jax_fn, torch_fn, arrays, dtype, real)`` of ``cases``: the value
    (torch's real dtype) and the gradient of every array, against torch; jax.grad is the
    conjugate of torch's .grad (JAX's convention for complex arguments). The JAX values and
    gradients of all cases come from ONE compiled program (eager: a value and a gradient
    program per case); every case is checked, then the failing ones are listed."""

    @jax.jit
    def program(all_args):
        out = []
        for (_, jax_fn, *_), args in zip(cases, all_args):
            def scalar(*a, jax_fn=jax_fn):
                v = jax_fn(*a)
                return jnp.sum(v), v

            (_, value), grads = jax.value_and_grad(scalar, argnums=tuple(range(len(args))), has_aux=True)(*args)
            out.append((value, grads))
        return out

    results = program([[jnp.asarray(a, dtype) for a in arrays] for _, _, _, arrays, dtype, _ in cases])
    failed = []
    for (name, _, torch_fn, arrays, dtype, real), (out, j_grads) in zip(cases, results):
        t_args = [torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=True) for a in arrays]
        t_out = torch_fn(*t_args)
        t_grads = torch.autograd.grad(t_out.sum(), t_args, allow_unused=True)
        try:
            assert out.dtype == jnp.dtype(real) and str(t_out.dtype) == f"torch.{real}", (out.dtype, t_out.dtype)
            assert_close(out, t_out.detach(), real, "value")
            for i, (g, t_g) in enumerate(zip(j_grads, t_grads)):
                t_g = torch.zeros_like(t_args[i]) if t_g is None else t_g
                g = np.conj(np.asarray(g))
                assert_close(g.real, t_g.real.numpy(), real, f"grad {i} (real part)")
                assert_close(g.imag, t_g.imag.numpy(), real, f"grad {i} (imaginary part)")
        except AssertionError as e:
            failed.append(f"{name} {dtype}: {e}")
    if failed:
        raise AssertionError(f"{len(failed)} of {len(cases)} cases fail:\n" + "\n".join(failed))


def _complex_rows(rng, n=N, d=D):
    x = rng.normal(size=(n, d)) + 1j * rng.normal(size=(n, d))
    x[0, :2] = 0  # zero entries: sgn(0) = 0
    return x


def test_pairwise_distance_complex():
    # torch: the p-norm of the moduli of x1 - x2 + eps (eps on the real part), a real result.
    # Every p in both complex dtypes: one compiled program.
    rng = np.random.default_rng(21)
    x1, x2 = _complex_rows(rng), _complex_rows(rng)
    x2[1] = x1[1]  # a zero difference (only eps remains)
    _complex_vs_torch([(f"p={p}", functools.partial(jaxloss.pairwise_distance, p=p),
                        functools.partial(F.pairwise_distance, p=p), [x1, x2], dtype, real)
                       for dtype, real in [("complex64", "float32"), ("complex128", "float64")]
                       for p in [2.0, 1.0, INF, 0.5, 3.0, 0.0]])  # fmt: skip


def test_triplet_losses_complex():
    rng = np.random.default_rng(22)
    arrays = [_complex_rows(rng) for _ in range(3)]
    cases = []
    for swap in (False, True):
        kw = {"margin": 2.0, "swap": swap}
        cases.append((f"triplet_margin_loss swap={swap}", functools.partial(jaxloss.triplet_margin_loss, **kw),
                      functools.partial(F.triplet_margin_loss, **kw), arrays, "complex128", "float64"))
        cases.append((f"triplet_margin_with_distance_loss swap={swap}",
                      functools.partial(jaxloss.triplet_margin_with_distance_loss, **kw),
                      functools.partial(F.triplet_margin_with_distance_loss, **kw), arrays, "complex64", "float32"))
    _complex_vs_torch(cases)


@pytest.mark.parametrize("eps", [-1.0, -0.5, -1e-10, float("nan")])
def test_cosine_similarity_negative_eps_raises_torchs_error_or_poisons_when_traced(eps):
    a, b = jnp.ones((2, 3)), jnp.arange(6.0).reshape(2, 3)
    assert_same_error(
        lambda: jaxloss.cosine_similarity(a, b, eps=eps),
        lambda: F.cosine_similarity(torch.ones(2, 3), torch.ones(2, 3), eps=eps),
    )
    # traced: jit cannot raise, so the value and every gradient are NaN; checked mode raises
    value, grads = jax.jit(jax.value_and_grad(
        lambda a, b, e: jaxloss.cosine_similarity(a, b, eps=e).sum(), argnums=(0, 1)))(a, b, eps)
    assert np.isnan(float(value)) and all(np.isnan(np.asarray(g)).all() for g in grads)
    with pytest.raises(ValueError, match="eps must be non-negative, got: "):
        checked.cosine_similarity(a, b, eps=jnp.float32(eps))


# --------------------------------------------------------------------------- cosine_embedding_loss
def _cos_embedding_arrays(rng: np.random.Generator, target: str) -> dict[str, np.ndarray]:
    x1, x2 = _cos_pairs(rng)
    x1[4], x2[4] = [1.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, -1.0]  # orthogonal: cos == 0 exactly
    if target == "pm1":
        y = np.array([1.0, -1.0, 1.0, -1.0, -1.0, 1.0])
    elif target == "any-value":  # neither 1 nor -1: no loss
        y = np.array([1.0, -1.0, 0.0, 2.0, -1.0, 1.0])
    else:
        y = np.array([1, -1, 1, -1, -1, 1])
    return {"input1": x1, "input2": x2, "target": y}


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_loss(dtype):
    cases = [(target, reduction, margin) for target in ["pm1", "any-value", "int"]
             for reduction in REDUCTIONS for margin in [0.0, 0.5, -0.5]]
    check_each(
        jaxloss.cosine_embedding_loss,
        F.cosine_embedding_loss,
        [_cos_embedding_arrays(np.random.default_rng(6), target) for target, _, _ in cases],
        [{"margin": margin, "reduction": reduction} for _, reduction, margin in cases],
        grad=["input1", "input2"],
        dtype=dtype,
    )


def _cos_embedding_shapes(case: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    if case == "unbatched":
        arrays = {"input1": rng.normal(size=(D,)), "input2": rng.normal(size=(D,)), "target": np.array(-1.0)}
    elif case == "broadcast-input2":
        arrays = {
            "input1": rng.normal(size=(N, D)),
            "input2": rng.normal(size=(1, D)),
            "target": rng.choice([-1.0, 1.0], N),
        }
    else:
        arrays = {
            "input1": rng.normal(size=(N, D)),
            "input2": rng.normal(size=(N, D)),
            "target": np.array([-1.0]),
        }
    return arrays


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_loss_shapes(dtype):
    cases = [(case, reduction) for case in ["unbatched", "broadcast-input2", "broadcast-target"]
             for reduction in REDUCTIONS]
    check_each(
        jaxloss.cosine_embedding_loss,
        F.cosine_embedding_loss,
        [_cos_embedding_shapes(case) for case, _ in cases],
        [{"margin": 0.1, "reduction": reduction} for _, reduction in cases],
        grad=["input1", "input2"],
        dtype=dtype,
    )


def test_cosine_embedding_loss_tie_passes_gradient():
    # orthogonal vectors, target -1, margin 0: clamp_min(cos - 0, 0) at cos == 0 passes the gradient
    x1, x2, y = np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]), np.array([-1.0])
    check(
        jaxloss.cosine_embedding_loss,
        F.cosine_embedding_loss,
        {"input1": x1, "input2": x2, "target": y},
        grad=["input1", "input2"],
        dtype="float64",
    )
    g = jax.jit(jax.grad(jaxloss.cosine_embedding_loss))(jnp.asarray(x1), jnp.asarray(x2), jnp.asarray(y))  # one program
    assert float(jnp.abs(g).sum()) > 0.1


def test_cosine_embedding_loss_uses_torchs_float32_epsilon():
    # torch adds float32(1e-12) to each squared norm, in float64 too: visible at norms ~1e-6
    x = np.array([[1e-6]])
    out = jaxloss.cosine_embedding_loss(jnp.asarray(x), jnp.asarray(x), jnp.asarray([1.0]), reduction="none")
    expected = F.cosine_embedding_loss(
        torch.tensor(x), torch.tensor(x), torch.tensor([1.0]), reduction="none"
    )
    assert abs(float(out[0]) - float(expected[0])) < 1e-15
    assert abs(float(out[0]) - 0.5) > 1e-10  # what an exact 1e-12 would give


def test_cosine_embedding_loss_second_order():
    rng = np.random.default_rng(8)
    arrays = _cos_embedding_arrays(rng, "pm1")
    arrays["input1"][0] = rng.normal(size=D)  # torch's double backward is NaN through an all-zero pair
    arrays["input1"][2] = rng.normal(size=D)
    check_hvp_each(jaxloss.cosine_embedding_loss, F.cosine_embedding_loss, arrays,
                   [{"margin": margin, "reduction": reduction} for reduction in REDUCTIONS for margin in [0.0, 0.3]],
                   wrt=["input1", "input2"])


def test_cosine_embedding_loss_errors():
    z2, z1 = np.zeros((3, 4)), np.zeros(4)
    cases = [
        (z2, z2, np.ones((3, 1))),
        (z1, z1, np.ones(1)),
        (z2, z2, np.array(1.0)),
        (z2, z1, np.ones(3)),
        (z1, z2, np.array(1.0)),
        (np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.ones(2)),
        (z2, np.zeros((3, 5)), np.ones(3)),
        (z2, z2, np.ones(2)),
    ]
    for args in cases:
        assert_same_error(
            lambda args=args: jaxloss.cosine_embedding_loss(*map(jnp.asarray, args)),
            lambda args=args: F.cosine_embedding_loss(*map(torch.tensor, args)),
        )
    assert_same_error(
        lambda: jaxloss.cosine_embedding_loss(
            jnp.zeros((3, 4)), jnp.zeros((3, 4)), jnp.ones(3), reduction="x"
        ),
        lambda: F.cosine_embedding_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(3), reduction="x"),
    )


# --------------------------------------------------------------------------- triplet_margin_loss
def _triplets(rng: np.random.Generator) -> dict[str, np.ndarray]:
    a, p, n = mixed_ties(rng, N, D), mixed_ties(rng, N, D), mixed_ties(rng, N, D)
    p[0] = a[0]  # swap: d(a, n) == d(p, n) exactly (gradient shared 0.5 / 0.5)
    return {"anchor": a, "positive": p, "negative": n}


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_margin_loss(dtype):
    # every p with and without swap; each margin with each p; every reduction
    grid = [(2.0, False, 1.0), (2.0, True, 0.5), (1.0, True, 1.0), (1.0, False, 0.5),
            (INF, True, 0.5), (INF, False, 1.0), (3.0, False, 0.5), (3.0, True, 1.0)]
    check_each(
        jaxloss.triplet_margin_loss,
        F.triplet_margin_loss,
        _triplets(np.random.default_rng(9)),
        [{"margin": margin, "p": p, "swap": swap, "reduction": reduction}
         for reduction in REDUCTIONS for p, swap, margin in grid],
        grad=["anchor", "positive", "negative"],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_margin_loss_ties(dtype):
    # eps=0, p=1: margin + d(a, p) - d(a, n) == 1 + 1 - 2 == 0 exactly in row 0 (gradient passes),
    # a == p in row 1 (zero distance, and tied swap distances), zero vectors everywhere in row 2.
    # Each p with and without swap: one check_each grid.
    a = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]])
    p = np.array([[1.0, 0.0], [1.0, 2.0], [0.0, 0.0]])
    n = np.array([[0.0, 2.0], [2.0, 0.0], [0.0, 0.0]])
    check_each(
        jaxloss.triplet_margin_loss,
        F.triplet_margin_loss,
        {"anchor": a, "positive": p, "negative": n},
        [{"p": pn, "eps": 0.0, "swap": swap, "reduction": "sum"} for swap in (False, True) for pn in (1.0, 2.0, INF)],
        grad=["anchor", "positive", "negative"],
        dtype=dtype,
    )
    if dtype == "float64":  # (the inputs below are float64 whatever the test's dtype)
        g = jax.jit(jax.grad(lambda x: jaxloss.triplet_margin_loss(x, jnp.asarray(p), jnp.asarray(n), p=1.0, eps=0.0)))(
            jnp.asarray(a))
        assert float(jnp.abs(g[0]).sum()) > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_margin_loss_shapes(dtype):
    cases = [(shapes, reduction) for reduction in REDUCTIONS
             for shapes in [((D,),) * 3, ((N, D), (1, D), (N, D)), ((2, 3, D),) * 3, ((N, D), (N, D), (N, 1))]]
    arrays = []
    for shapes, _ in cases:
        rng = np.random.default_rng(10)
        arrays.append({k: rng.normal(size=s) for k, s in zip(("anchor", "positive", "negative"), shapes)})
    check_each(
        jaxloss.triplet_margin_loss,
        F.triplet_margin_loss,
        arrays,
        [{"swap": True, "reduction": reduction} for _, reduction in cases],
        grad=["anchor", "positive", "negative"],
        dtype=dtype,
    )


def test_triplet_margin_loss_second_order():
    rng = np.random.default_rng(11)
    arrays = {k: rng.normal(size=(N, D)) for k in ("anchor", "positive", "negative")}
    check_hvp_each(jaxloss.triplet_margin_loss, F.triplet_margin_loss, arrays,
                   [{"p": p, "swap": swap, "margin": 2.0} for swap in (False, True) for p in (2.0, 3.0, 1.0)],
                   wrt=list(arrays))


def test_triplet_margin_loss_errors():
    z = np.zeros((3, 4))
    cases = [
        ((z, z, np.zeros(4)), {}),
        ((z, z, z), {"margin": 0}),
        ((z, z, z), {"margin": -1.5}),
        ((z, z, z), {"reduction": "avg"}),
        ((z, z, np.zeros((3, 5))), {}),
    ]
    for args, kw in cases:
        assert_same_error(
            lambda args=args, kw=kw: jaxloss.triplet_margin_loss(*map(jnp.asarray, args), **kw),
            lambda args=args, kw=kw: F.triplet_margin_loss(*map(torch.tensor, args), **kw),
        )


# -------------------------------------------------------------------------- triplet_margin_with_distance_loss
def _jax_cosine_distance(x, y):
    return 1.0 - jaxloss.cosine_similarity(x, y)


def _torch_cosine_distance(x, y):
    return 1.0 - F.cosine_similarity(x, y)


DISTANCES = {
    "default": (None, None),
    "pairwise_distance": (jaxloss.pairwise_distance, F.pairwise_distance),
    "cosine": (_jax_cosine_distance, _torch_cosine_distance),
    "l1": (
        functools.partial(jaxloss.pairwise_distance, p=1.0),
        functools.partial(F.pairwise_distance, p=1.0),
    ),
}


def _with_distance(name: str, framework: int):
    fn = (jaxloss.triplet_margin_with_distance_loss, F.triplet_margin_with_distance_loss)[framework]
    distance = DISTANCES[name][framework]
    return lambda anchor, positive, negative, **kw: fn(
        anchor, positive, negative, distance_function=distance, **kw
    )


def _torch_with_jax_distance(*args, distance_function=None, **kw):
    """torch's loss, given the JAX distance of :data:`DISTANCES` that the JAX side receives:
    the options of both sides are one dict, and the JAX loss itself (registered) keeps its
    numeric options traced in check_each's program, where a lambda around it would not."""
    torch_distance = {id(j): t for j, t in DISTANCES.values()}[id(distance_function)]
    return F.triplet_margin_with_distance_loss(*args, distance_function=torch_distance, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_margin_with_distance_loss(dtype):
    check_each(
        jaxloss.triplet_margin_with_distance_loss,
        _torch_with_jax_distance,
        _triplets(np.random.default_rng(12)),
        [{"margin": margin, "swap": swap, "reduction": reduction, "distance_function": DISTANCES[d][0]}
         for swap, margin in [(False, 1.0), (True, 0.3)] for reduction in REDUCTIONS for d in sorted(DISTANCES)],
        grad=["anchor", "positive", "negative"],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_margin_with_distance_loss_unbatched(dtype):
    rng = np.random.default_rng(13)
    arrays = {k: rng.normal(size=(D,)) for k in ("anchor", "positive", "negative")}
    out = check(
        _with_distance("default", 0),
        _with_distance("default", 1),
        arrays,
        {"reduction": "none"},
        grad=list(arrays),
        dtype=dtype,
    )
    assert out.shape == ()


def test_triplet_margin_with_distance_loss_second_order():
    rng = np.random.default_rng(14)
    arrays = {k: rng.normal(size=(N, D)) for k in ("anchor", "positive", "negative")}
    check_hvp_each(jaxloss.triplet_margin_with_distance_loss, _torch_with_jax_distance, arrays,
                   [{"swap": swap, "margin": 2.0, "distance_function": DISTANCES[distance][0]}
                    for distance in ["default", "cosine"] for swap in (False, True)], wrt=list(arrays))


def test_triplet_margin_with_distance_loss_errors():
    z = np.zeros((3, 4))
    cases = [
        ((z, z, np.zeros(4)), {}),
        ((z, z, z), {"margin": 0.0}),
        ((z, z, z), {"reduction": "avg"}),
    ]
    for args, kw in cases:
        assert_same_error(
            lambda args=args, kw=kw: jaxloss.triplet_margin_with_distance_loss(*map(jnp.asarray, args), **kw),
            lambda args=args, kw=kw: F.triplet_margin_with_distance_loss(*map(torch.tensor, args), **kw),
        )
    with pytest.raises(TypeError):  # keyword-only, as in torch
        jaxloss.triplet_margin_with_distance_loss(jnp.asarray(z), jnp.asarray(z), jnp.asarray(z), None)


# --------------------------------------------------------------------------- checked mode, jit, vmap
def test_checked_mode_returns_the_same_values():
    rng = np.random.default_rng(15)
    a, p, n = (jnp.asarray(rng.normal(size=(N, D)), jnp.float32) for _ in range(3))
    y = jnp.asarray(rng.choice([-1.0, 1.0], N), jnp.float32)
    pairs = [
        (jaxloss.pairwise_distance(a, p, 1.0), checked.pairwise_distance(a, p, 1.0)),
        (jaxloss.cosine_similarity(a, p, dim=0), checked.cosine_similarity(a, p, dim=0)),
        (jaxloss.cosine_embedding_loss(a, p, y, 0.2), checked.cosine_embedding_loss(a, p, y, 0.2)),
        (jaxloss.triplet_margin_loss(a, p, n, swap=True), checked.triplet_margin_loss(a, p, n, swap=True)),
        (
            jaxloss.triplet_margin_with_distance_loss(a, p, n, distance_function=_jax_cosine_distance),
            checked.triplet_margin_with_distance_loss(a, p, n, distance_function=_jax_cosine_distance),
        ),
    ]
    for x, c in pairs:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(c))


def test_vmap_over_unbatched_inputs_equals_batched():
    rng = np.random.default_rng(16)
    a, p, n = (jnp.asarray(rng.normal(size=(N, D))) for _ in range(3))
    y = jnp.asarray(rng.choice([-1.0, 1.0], N))

    def cos_distance_loss(u, v, w, **kw):
        return jaxloss.triplet_margin_with_distance_loss(u, v, w, distance_function=_jax_cosine_distance, **kw)

    @jax.jit  # every (vmapped, batched) pair in one compiled program (eager: two programs per pair)
    def pairs(a, p, n, y):
        return {
            "pairwise_distance": (jax.vmap(jaxloss.pairwise_distance)(a, p), jaxloss.pairwise_distance(a, p)),
            "cosine_similarity": (jax.vmap(lambda u, v: jaxloss.cosine_similarity(u, v, dim=0))(a, p),
                                  jaxloss.cosine_similarity(a, p)),
            "cosine_embedding_loss": (jax.vmap(jaxloss.cosine_embedding_loss)(a, p, y),
                                      jaxloss.cosine_embedding_loss(a, p, y, reduction="none")),
            "triplet_margin_loss": (jax.vmap(lambda u, v, w: jaxloss.triplet_margin_loss(u, v, w, swap=True))(a, p, n),
                                    jaxloss.triplet_margin_loss(a, p, n, swap=True, reduction="none")),
            "triplet_margin_with_distance_loss": (
                jax.vmap(lambda u, v, w: cos_distance_loss(u[None], v[None], w[None]))(a, p, n),
                cos_distance_loss(a, p, n, reduction="none")),
        }  # fmt: skip

    for name, (vmapped, batched) in pairs(a, p, n, y).items():
        np.testing.assert_allclose(vmapped, batched, rtol=1e-12, err_msg=name)


def test_jit_of_grad_and_vmap_of_grad():
    rng = np.random.default_rng(17)
    a, p, n = (rng.normal(size=(3, N, D)).astype(np.float32) for _ in range(3))
    grad = jax.grad(lambda u, v, w: jaxloss.triplet_margin_loss(u, v, w, p=1.5, swap=True), argnums=(0, 1, 2))
    batched = jax.jit(jax.vmap(grad))(a, p, n)
    for i in range(3):
        ta, tp, tn = (torch.tensor(z[i], requires_grad=True) for z in (a, p, n))
        expected = torch.autograd.grad(F.triplet_margin_loss(ta, tp, tn, p=1.5, swap=True), (ta, tp, tn))
        for got, exp in zip(batched, expected):
            assert_close(got[i], exp, "float32", "jit(vmap(grad))")


# --------------------------------------------------------------------------- float16 / bfloat16
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_keeps_dtype(dtype):
    rng = np.random.default_rng(18)
    a, p, n = (rng.normal(size=(N, D)) for _ in range(3))
    y = rng.choice([-1.0, 1.0], N)
    low_precision_vs_float32(jaxloss.pairwise_distance, F.pairwise_distance, [a, p], {}, dtype, [0, 1])
    low_precision_vs_float32(jaxloss.cosine_similarity, F.cosine_similarity, [a, p], {}, dtype, [0, 1])
    low_precision_vs_float32(
        jaxloss.cosine_embedding_loss, F.cosine_embedding_loss, [a, p, y], {"margin": 0.1}, dtype, [0, 1]
    )
    low_precision_vs_float32(
        jaxloss.triplet_margin_loss, F.triplet_margin_loss, [a, p, n], {"swap": True}, dtype, [0, 1, 2]
    )
    low_precision_vs_float32(
        _with_distance("cosine", 0), _with_distance("cosine", 1), [a, p, n], {}, dtype, [0, 1, 2]
    )


def test_low_precision_zero_vector_stays_finite():
    # torch's float16 cosine_embedding_loss adds 1e-12 in float16 (it underflows): NaN for a zero
    # vector. jaxloss computes float16 in float32, torch's opmath type, and stays finite.
    x1 = jnp.zeros((2, D), jnp.float16)
    x2 = jnp.ones((2, D), jnp.float16)
    out = jaxloss.cosine_embedding_loss(x1, x2, jnp.asarray([1.0, -1.0]), reduction="none")
    assert out.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(out, np.float32), [1.0, 0.0])
