"""margin.py against torch.nn.functional: values and gradients (ties included), second order,
unbatched inputs, bad input, checked mode, jit / vmap, low precision.

Inputs with small integer values make the hinge arguments exactly 0 (ties) for many
entries: torch's ``clamp_min`` passes the gradient there (margin_ranking_loss,
hinge_embedding_loss), while the multi_margin / multilabel_margin kernels use a
strict ``z > 0`` and pass none. The tests assert the ties are really there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    check_hvp,
    check_hvp_each,
    low_precision_vs_float32,
    mixed_ties,
)

DTYPES = ["float32", "float64"]
REDUCTIONS = ["none", "mean", "sum"]
LOW = ["bfloat16", "float16"]
N, C = 6, 5


# --------------------------------------------------------------------------- helpers
def _long(fn: Callable[..., Any]) -> Callable[..., Any]:
    """torch's margin kernels want int64 targets; jaxloss takes int32 too."""
    return lambda input, target, *a, **k: fn(input, target.long(), *a, **k)


def _ints(rng: np.random.Generator, *shape: int, lo: int = -2, hi: int = 2) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=shape).astype(np.float64)


# --------------------------------------------------------------------------- multilabel_margin_loss
ML_TARGET = np.array(
    [
        [3, 0, -1, 1, 2],  # labels {3, 0}; what follows the first -1 is ignored
        [1, 2, 3, -1, 0],
        [0, -1, 0, 0, 0],
        [4, 3, 2, 1, 0],  # every class is a label: no term
        [-1, 0, 1, 2, 3],  # no label: no term
        [2, 2, -1, -1, -1],  # a label listed twice counts twice (torch)
    ]
)


def _ml_ties(x: np.ndarray, t: np.ndarray) -> int:
    """Number of counted-or-tied pairs with 1 - x[t_j] + x[i] == 0 exactly."""
    ties = 0
    for row, trow in zip(np.atleast_2d(x), np.atleast_2d(t)):
        labels = []
        for j in trow:
            if j < 0:
                break
            labels.append(j)
        for j in labels:
            ties += sum(1 for i in range(len(row)) if i not in labels and 1 - row[j] + row[i] == 0)
    return ties


# The grids loop over their options inside one test (check_each: one compiled program for the
# grid, a failure names its case), each case with the data it had as a test of its own.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target_dtype", [np.int32, np.int64])
def test_multilabel_margin_loss(dtype, target_dtype):
    rng = np.random.default_rng(0)
    x = mixed_ties(rng, N, C)
    assert _ml_ties(x, ML_TARGET) >= 2
    check_each(
        jaxloss.multilabel_margin_loss,
        _long(F.multilabel_margin_loss),
        {"input": x, "target": ML_TARGET.astype(target_dtype)},
        [{"reduction": reduction} for reduction in REDUCTIONS],
        dtype=dtype,
    )


def _multilabel_unbatched(case):
    rng = np.random.default_rng(1)
    if case == "vector":
        x, t = _ints(rng, C), ML_TARGET[1]
    elif case == "scalar-1":
        x, t = np.array(0.5), np.array([0])
    else:
        x, t = np.array(0.5), np.array(0)
    return {"input": x, "target": t}


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_margin_loss_unbatched(dtype):
    grid = [(r, case) for r in REDUCTIONS for case in ["vector", "scalar-1", "scalar-0d"]]
    outs = check_each(
        jaxloss.multilabel_margin_loss,
        _long(F.multilabel_margin_loss),
        [_multilabel_unbatched(case) for _, case in grid],
        [{"reduction": r} for r, _ in grid],
        dtype=dtype,
    )
    assert all(out.shape == () for out in outs)  # torch: a scalar for an unbatched input, even with 'none'


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_margin_loss_many_classes_and_labels(dtype):
    # jaxloss counts the pairs from sorted scores: exercise it on wide rows, many labels, ties.
    rng = np.random.default_rng(17)
    n, c = 48, 37
    x = np.concatenate([_ints(rng, n // 2, c), rng.normal(size=(n // 2, c)) * 3])
    t = np.full((n, c), -1)
    for row in range(n):
        k = rng.integers(0, c + 1)
        t[row, :k] = rng.choice(c, size=k, replace=rng.random() < 0.5)
        if k < c:
            t[row, k + 1 :] = rng.integers(-1, c, size=c - k - 1)  # ignored after the first -1
    assert _ml_ties(x, t) >= 10
    check_each(
        jaxloss.multilabel_margin_loss,
        _long(F.multilabel_margin_loss),
        {"input": x, "target": t},
        [{"reduction": reduction} for reduction in REDUCTIONS],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_margin_loss_row_blocks(dtype, monkeypatch):
    # Large batches go block by block of rows (each block as many label steps as its longest
    # list); shrink the blocks so that a small batch takes that path, with a padded last block.
    import jaxloss.margin

    monkeypatch.setattr(jaxloss.margin, "_BLOCK_ELEMENTS", 4 * 11)  # 4 rows of 11 classes a block
    rng = np.random.default_rng(23)
    n, c = 23, 11  # a shape of its own: no jit trace of the unblocked path to reuse
    x = _ints(rng, n, c)
    t = np.full((n, c), -1)
    for row, k in enumerate(rng.integers(0, 4, size=n)):
        t[row, :k] = rng.choice(c, size=k, replace=False)
    t[9, :] = rng.permutation(c)  # one block with every class a label
    t[17, :6] = rng.choice(c, size=6)  # one with repeated labels
    assert _ml_ties(x, t) >= 2
    jaxpr = str(
        jax.make_jaxpr(lambda z: jaxloss.multilabel_margin_loss(z, jnp.asarray(t)))(jnp.asarray(x, dtype))
    )
    assert "scan" in jaxpr  # the blocked path really runs
    check_each(  # a grid of its own: a program traced here, with the small blocks
        jaxloss.multilabel_margin_loss,
        _long(F.multilabel_margin_loss),
        {"input": x, "target": t},
        [{"reduction": reduction} for reduction in REDUCTIONS],
        dtype=dtype,
    )


def test_multilabel_margin_loss_tie_has_no_gradient():
    # 1 - x[0] + x[1] == 0 exactly: torch's kernel counts only z > 0.
    x = np.array([[1.0, 0.0, 0.5]])
    t = np.array([[0, -1, -1]])
    check(
        jaxloss.multilabel_margin_loss,
        _long(F.multilabel_margin_loss),
        {"input": x, "target": t},
        dtype="float64",
    )
    g = jax.grad(jaxloss.multilabel_margin_loss)(jnp.asarray(x), jnp.asarray(t))
    np.testing.assert_allclose(np.asarray(g), [[-1 / 3, 0.0, 1 / 3]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_margin_loss_non_finite_scores(dtype):
    # torch's kernel skips a pair whose z is not > 0, -inf and NaN included: a label at +inf
    # (row 0: every z is -inf or NaN) or a NaN non-label (row 2) leave a finite loss; a
    # non-label at +inf (row 1) or a label at -inf (row 3) make it inf.
    x = np.array(
        [
            [np.inf, 0.0, 0.5, -np.inf],
            [0.2, np.inf, 0.1, 0.0],
            [np.nan, 0.3, 0.0, 1.0],
            [1.0, -np.inf, 0.0, 2.0],
        ]
    )
    t = np.array([[0, -1, 0, 0], [2, 0, -1, 1], [1, -1, 0, 0], [3, 0, 1, -1]])
    out = check_each(
        jaxloss.multilabel_margin_loss,
        _long(F.multilabel_margin_loss),
        {"input": x, "target": t},
        [{"reduction": reduction} for reduction in REDUCTIONS],
        dtype=dtype,
    )[REDUCTIONS.index("none")]
    assert np.isfinite(np.asarray(out)[[0, 2]]).all() and np.isinf(np.asarray(out)[[1, 3]]).all()


def test_multilabel_margin_loss_second_order_is_zero():
    # torch has no double backward here; the loss is piecewise linear, so H = 0.
    x = jnp.asarray(np.random.default_rng(2).normal(size=(N, C)))
    t = jnp.asarray(ML_TARGET)
    hv = jax.jvp(jax.grad(lambda z: jaxloss.multilabel_margin_loss(z, t)), (x,), (jnp.ones_like(x),))[1]
    np.testing.assert_array_equal(np.asarray(hv), 0.0)


def test_multilabel_margin_loss_errors():
    x, t = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.int64)
    cases = [
        ((x, t[:, :3]), {}),
        ((x, t[0]), {}),
        ((x[0], t[0, :3]), {}),
        ((np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 4), np.int64)), {}),
        ((np.zeros((3, 0), np.float32), np.zeros((3, 0), np.int64)), {}),
        ((x, t), {"reduction": "avg"}),
    ]
    for (a, b), kw in cases:
        assert_same_error(
            lambda a=a, b=b, kw=kw: jaxloss.multilabel_margin_loss(jnp.asarray(a), jnp.asarray(b), **kw),
            lambda a=a, b=b, kw=kw: F.multilabel_margin_loss(torch.tensor(a), torch.tensor(b), **kw),
        )
    with pytest.raises(TypeError, match="integer dtype"):
        jaxloss.multilabel_margin_loss(jnp.asarray(x), jnp.asarray(t, jnp.float32))
    with pytest.raises(TypeError, match="floating point dtype"):
        jaxloss.multilabel_margin_loss(jnp.asarray(t), jnp.asarray(t))


@pytest.mark.parametrize("bad", [-2, C, 10**6])
@pytest.mark.parametrize("after_padding", [False, True])
def test_multilabel_margin_loss_invalid_target(bad, after_padding):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(N, C)), jnp.float32)
    t = ML_TARGET.copy()
    t[2, 4 if after_padding else 0] = bad  # torch range-checks every entry, padding included
    out = jaxloss.multilabel_margin_loss(x, jnp.asarray(t), reduction="none")
    assert np.isnan(out[2]) and np.isfinite(np.delete(np.asarray(out), 2)).all()
    assert np.isnan(jaxloss.multilabel_margin_loss(x, jnp.asarray(t)))
    g = jax.grad(lambda z: jaxloss.multilabel_margin_loss(z, jnp.asarray(t)))(x)
    assert np.isnan(g[2]).all() and np.isfinite(np.delete(np.asarray(g), 2, axis=0)).all()
    assert_same_error(
        lambda: checked.multilabel_margin_loss(x, jnp.asarray(t)),
        lambda: F.multilabel_margin_loss(torch.tensor(np.asarray(x)), torch.tensor(t)),
    )


# --------------------------------------------------------------------------- multi_margin_loss
def _mm_target(rng: np.random.Generator, n: int = N, dtype: Any = np.int64) -> np.ndarray:
    return rng.integers(0, C, size=(n,)).astype(dtype)


def _multi_margin_arrays(p, margin, weighted):
    rng = np.random.default_rng(4)
    x = mixed_ties(rng, N, C)
    t = _mm_target(rng, dtype=np.int32 if p == 1 else np.int64)
    if margin == 1.0:
        z = margin - x[np.arange(N), t][:, None] + x
        z[np.arange(N), t] = 1.0
        assert (z == 0).sum() >= 2
    arrays = {"input": x, "target": t}
    if weighted:
        arrays["weight"] = rng.uniform(0.2, 2.0, size=(C,))
    return arrays


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_loss(dtype, weighted):
    grid = [(r, p, margin) for r in REDUCTIONS for p in [1, 2] for margin in [1.0, 0.3]]
    check_each(
        jaxloss.multi_margin_loss,
        _long(F.multi_margin_loss),
        [_multi_margin_arrays(p, margin, weighted) for _, p, margin in grid],
        [{"p": p, "margin": margin, "reduction": r} for r, p, margin in grid],
        dtype=dtype,
        positional=["input", "target"],
    )


def _multi_margin_unbatched(case):
    rng = np.random.default_rng(5)
    if case == "scalar":
        x, t = np.array(0.7), np.array(0)
    else:
        x, t = _ints(rng, C), (np.array([2]) if case == "vector-1" else np.array(2))
    return {"input": x, "target": t}


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_margin_loss_unbatched(dtype):
    grid = [(r, case) for r in REDUCTIONS for case in ["vector-1", "vector-0d", "scalar"]]
    arrays = [_multi_margin_unbatched(case) for _, case in grid]
    outs = check_each(
        jaxloss.multi_margin_loss,
        _long(F.multi_margin_loss),
        arrays,
        [{"p": 2, "reduction": r} for r, _ in grid],
        dtype=dtype,
    )
    for (r, _), a, out in zip(grid, arrays, outs):
        assert out.shape == ((1,) if r == "none" and a["target"].ndim == 1 else ())


def test_multi_margin_loss_tie_has_no_gradient():
    # margin - x[0] + x[1] == 0 exactly: the strict z > 0 of torch's kernel gives no gradient.
    x, t = np.array([[2.0, 1.0, 0.0]]), np.array([0])
    check(jaxloss.multi_margin_loss, _long(F.multi_margin_loss), {"input": x, "target": t}, dtype="float64")
    g = jax.grad(jaxloss.multi_margin_loss)(jnp.asarray(x), jnp.asarray(t))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def _torch_multi_margin(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """torch-op reference of the kernel (differentiable in ``weight`` and to second order)."""
    c = input.shape[1]
    x_t = input.gather(1, target[:, None])
    z = margin - x_t + input
    counted = (z > 0) & (torch.arange(c)[None, :] != target[:, None])
    h = torch.where(counted, z if p == 1 else z * z, torch.zeros_like(z))
    if weight is not None:
        h = h * weight[target][:, None]
    loss = h.sum(1) / c
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def test_multi_margin_loss_weight_gradient_and_second_order():
    # torch's op refuses a gradient for `weight` and has no double backward: compare
    # with the same formula written in torch ops (itself checked against the op).
    # Every p x reduction in one program for the gradients, one for the HVPs (same data each).
    rng = np.random.default_rng(6)
    x, t, w = (
        _ints(rng, N, C) + rng.normal(size=(N, C)) * 0.3,
        _mm_target(rng),
        rng.uniform(0.2, 2.0, size=(C,)),
    )
    grid = [{"p": p, "margin": 0.8, "reduction": reduction} for p in [1, 2] for reduction in REDUCTIONS]
    for kw in grid:
        assert_close(
            _torch_multi_margin(torch.tensor(x), torch.tensor(t), weight=torch.tensor(w), **kw),
            F.multi_margin_loss(torch.tensor(x), torch.tensor(t), weight=torch.tensor(w), **kw),
            "float64",
            f"ref {kw}",
        )
    arrays = {"input": x, "target": t, "weight": w}
    check_each(
        jaxloss.multi_margin_loss,
        _torch_multi_margin,
        arrays,
        grid,
        grad=["input", "weight"],
        dtype="float64",
        positional=["input", "target"],
    )
    check_hvp_each(
        jaxloss.multi_margin_loss,
        _torch_multi_margin,
        arrays,
        grid,
        wrt=["input", "weight"],
        positional=["input", "target"],
    )


def test_multi_margin_loss_errors():
    x, t = np.zeros((3, 4), np.float32), np.zeros((3,), np.int64)
    cases = [
        ((x, t), {"p": 3}),
        ((x, t), {"weight": np.ones((1, 4), np.float32)}),
        ((x, t), {"weight": np.ones((3,), np.float32)}),
        ((x, t[:2]), {}),
        ((x, t[:, None]), {}),
        ((np.zeros((2, 3, 4), np.float32), t[:2]), {}),
        ((np.zeros((3, 0), np.float32), t), {}),
        ((x, t), {"reduction": "avg"}),
    ]
    for (a, b), kw in cases:
        tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        jkw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        assert_same_error(
            lambda a=a, b=b, jkw=jkw: jaxloss.multi_margin_loss(jnp.asarray(a), jnp.asarray(b), **jkw),
            lambda a=a, b=b, tkw=tkw: F.multi_margin_loss(torch.tensor(a), torch.tensor(b), **tkw),
        )
    with pytest.raises(TypeError, match="integer dtype"):
        jaxloss.multi_margin_loss(jnp.asarray(x), jnp.asarray(t, jnp.float32))
    with pytest.raises(TypeError, match="floating point dtype"):
        jaxloss.multi_margin_loss(jnp.zeros((3, 4), jnp.int32), jnp.asarray(t))


@pytest.mark.parametrize("bad", [-1, C, 10**6])
def test_multi_margin_loss_invalid_target(bad):
    x = jnp.asarray(np.random.default_rng(7).normal(size=(N, C)), jnp.float32)
    t = np.random.default_rng(7).integers(0, C, size=(N,))
    t[3] = bad
    out = jaxloss.multi_margin_loss(x, jnp.asarray(t), reduction="none")
    assert np.isnan(out[3]) and np.isfinite(np.delete(np.asarray(out), 3)).all()
    assert np.isnan(jaxloss.multi_margin_loss(x, jnp.asarray(t), p=2, weight=jnp.ones((C,))))
    g = jax.grad(lambda z: jaxloss.multi_margin_loss(z, jnp.asarray(t)))(x)
    assert np.isnan(g[3]).all() and np.isfinite(np.delete(np.asarray(g), 3, axis=0)).all()
    assert_same_error(
        lambda: checked.multi_margin_loss(x, jnp.asarray(t)),
        lambda: F.multi_margin_loss(torch.tensor(np.asarray(x)), torch.tensor(t)),
    )


# --------------------------------------------------------------------------- margin_ranking_loss
def _ranking_arrays(rng: np.random.Generator, shape: str) -> dict[str, np.ndarray]:
    if shape == "vector":
        s1 = s2 = st = (8,)
    elif shape == "broadcast":
        s1, s2, st = (3, 1), (1, 4), (3, 4)
    else:
        s1 = s2 = st = ()
    return {"input1": _ints(rng, *s1), "input2": _ints(rng, *s2), "target": rng.choice([-1.0, 1.0], size=st)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_margin_ranking_loss(dtype):
    # every shape x reduction x margin of a dtype in one program, each shape with its former data
    grid = [{"margin": margin, "reduction": r} for r in REDUCTIONS for margin in [0.0, 1.0, -0.5]]
    arrays, options = [], []
    for shape in ["vector", "broadcast", "scalar"]:
        arrs = _ranking_arrays(np.random.default_rng(8), shape)
        for margin in (0.0, 1.0):
            if shape == "vector":
                z = -arrs["target"] * (arrs["input1"] - arrs["input2"]) + margin
                assert (z == 0).sum() >= 1  # a tie: torch's clamp_min passes the gradient
        arrays += [arrs] * len(grid)
        options += grid
    check_each(
        jaxloss.margin_ranking_loss,
        F.margin_ranking_loss,
        arrays,
        options,
        grad=["input1", "input2", "target"],
        dtype=dtype,
    )


def test_margin_ranking_loss_tie_passes_gradient():
    x1, x2, y = jnp.asarray([1.0]), jnp.asarray([1.0]), jnp.asarray([1.0])
    g = jax.grad(jaxloss.margin_ranking_loss, argnums=(0, 1, 2))(x1, x2, y)
    np.testing.assert_array_equal([float(g[0][0]), float(g[1][0]), float(g[2][0])], [-1.0, 1.0, 0.0])
    check(
        jaxloss.margin_ranking_loss,
        F.margin_ranking_loss,
        {"input1": np.array([1.0]), "input2": np.array([1.0]), "target": np.array([1.0])},
        grad=["input1", "input2", "target"],
        dtype="float64",
    )


def test_margin_ranking_loss_second_order():
    # every shape x reduction in one program (check_hvp_each), each shape with its former data
    grid = [(shape, reduction) for shape in ["vector", "broadcast"] for reduction in REDUCTIONS]
    check_hvp_each(
        jaxloss.margin_ranking_loss,
        F.margin_ranking_loss,
        [_ranking_arrays(np.random.default_rng(9), shape) for shape, _ in grid],
        [{"margin": 0.5, "reduction": reduction} for _, reduction in grid],
        wrt=["input1", "input2", "target"],
    )


def test_margin_ranking_loss_dtypes():
    x32, x64 = jnp.ones((3,), jnp.float32), jnp.ones((3,), jnp.float64)
    assert jaxloss.margin_ranking_loss(x32, x64, jnp.asarray([1, -1, 1])).dtype == jnp.float64
    assert jaxloss.margin_ranking_loss(x32, x32, jnp.asarray([1, -1, 1])).dtype == jnp.float32
    assert jaxloss.margin_ranking_loss(x32, x32, x64, reduction="none").dtype == jnp.float64


def test_margin_ranking_loss_errors():
    cases = [
        ((np.zeros(3), np.zeros((3, 1)), np.ones(3)), {}),
        ((np.zeros(3), np.zeros(4), np.ones(3)), {}),
        ((np.zeros(3), np.zeros(3), np.ones(4)), {}),
        ((np.zeros(3), np.zeros(3), np.ones(3)), {"reduction": "avg"}),
    ]
    for args, kw in cases:
        assert_same_error(
            lambda args=args, kw=kw: jaxloss.margin_ranking_loss(*map(jnp.asarray, args), **kw),
            lambda args=args, kw=kw: F.margin_ranking_loss(*map(torch.tensor, args), **kw),
        )


# --------------------------------------------------------------------------- hinge_embedding_loss
def _hinge_arrays(target):
    rng = np.random.default_rng(10)
    x = _ints(rng, N, C, lo=-1, hi=2)
    if target == "pm1":
        y = rng.choice([-1.0, 1.0], size=(N, C))
    elif target == "any-value":  # torch: both terms for a target that is neither 1 nor -1
        y = rng.choice([-1.0, 1.0, 0.0, 2.0], size=(N, C))
    elif target == "broadcast":
        y = rng.choice([-1.0, 1.0], size=(C,))
    else:
        y = rng.choice([-1, 1], size=(N, C))
    for margin in (0.0, 1.0):
        assert (x == margin).sum() >= 2  # ties of max(0, margin - x)
    return {"input": x, "target": y}


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_embedding_loss(dtype):
    # every target kind x reduction x margin of a dtype in one program, each kind with its former data
    grid = [{"margin": margin, "reduction": r} for r in REDUCTIONS for margin in [1.0, 0.0, 0.5]]
    targets = ["pm1", "any-value", "broadcast", "int"]
    check_each(
        jaxloss.hinge_embedding_loss,
        F.hinge_embedding_loss,
        [_hinge_arrays(target) for target in targets for _ in grid],
        grid * len(targets),
        dtype=dtype,
    )


def test_hinge_embedding_loss_broadcast_target_larger_than_input():
    rng = np.random.default_rng(11)
    out = check(
        jaxloss.hinge_embedding_loss,
        F.hinge_embedding_loss,
        {"input": rng.normal(size=(C,)), "target": rng.choice([-1.0, 1.0], size=(N, C))},
        {"reduction": "none"},
        dtype="float64",
    )
    assert out.shape == (N, C)


def test_hinge_embedding_loss_second_order():
    rng = np.random.default_rng(12)
    check_hvp(
        jaxloss.hinge_embedding_loss,
        F.hinge_embedding_loss,
        {"input": rng.normal(size=(N, C)), "target": rng.choice([-1.0, 1.0], size=(N, C))},
        {"margin": 0.5},
    )


def test_hinge_embedding_loss_errors():
    assert_same_error(
        lambda: jaxloss.hinge_embedding_loss(jnp.zeros(3), jnp.ones(4)),
        lambda: F.hinge_embedding_loss(torch.zeros(3), torch.ones(4)),
    )
    assert_same_error(
        lambda: jaxloss.hinge_embedding_loss(jnp.zeros(3), jnp.ones(3), reduction="avg"),
        lambda: F.hinge_embedding_loss(torch.zeros(3), torch.ones(3), reduction="avg"),
    )
    with pytest.raises(TypeError, match="floating point dtype"):  # torch computes in integers here
        jaxloss.hinge_embedding_loss(jnp.asarray([0, 2]), jnp.asarray([1, -1]))


# --------------------------------------------------------------------------- checked mode, jit, vmap
def test_checked_mode_returns_the_same_values_on_valid_input():
    rng = np.random.default_rng(13)
    x = jnp.asarray(rng.normal(size=(N, C)), jnp.float32)
    t = jnp.asarray(_mm_target(rng))
    y = jnp.asarray(rng.choice([-1.0, 1.0], size=(N, C)), jnp.float32)
    pairs = [
        (
            jaxloss.multi_margin_loss(x, t, 2, 0.5, None, "none"),
            checked.multi_margin_loss(x, t, 2, 0.5, None, "none"),
        ),
        (
            jaxloss.multilabel_margin_loss(x, jnp.asarray(ML_TARGET)),
            checked.multilabel_margin_loss(x, jnp.asarray(ML_TARGET)),
        ),
        (
            jaxloss.margin_ranking_loss(x, x[::-1], y, margin=0.2),
            checked.margin_ranking_loss(x, x[::-1], y, margin=0.2),
        ),
        (jaxloss.hinge_embedding_loss(x, y, 0.5), checked.hinge_embedding_loss(x, y, 0.5)),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_vmap_over_unbatched_inputs_equals_batched():
    rng = np.random.default_rng(14)
    x = jnp.asarray(rng.normal(size=(N, C)))
    t = jnp.asarray(_mm_target(rng))
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=(C,)))
    per_row = jax.vmap(lambda xi, ti: jaxloss.multi_margin_loss(xi, ti, p=2, weight=w, reduction="none"))(
        x, t
    )
    np.testing.assert_allclose(
        per_row, jaxloss.multi_margin_loss(x, t, p=2, weight=w, reduction="none"), rtol=1e-12
    )
    ml = jnp.asarray(ML_TARGET)
    per_row = jax.vmap(lambda xi, ti: jaxloss.multilabel_margin_loss(xi, ti, reduction="none"))(x, ml)
    np.testing.assert_allclose(per_row, jaxloss.multilabel_margin_loss(x, ml, reduction="none"), rtol=1e-12)
    y = jnp.asarray(rng.choice([-1.0, 1.0], size=(N, C)))
    per_row = jax.vmap(lambda a, b, c: jaxloss.margin_ranking_loss(a, b, c, reduction="sum"))(x, x[::-1], y)
    np.testing.assert_allclose(
        per_row, jaxloss.margin_ranking_loss(x, x[::-1], y, reduction="none").sum(1), rtol=1e-12
    )
    per_row = jax.vmap(lambda a, c: jaxloss.hinge_embedding_loss(a, c, reduction="sum"))(x, y)
    np.testing.assert_allclose(
        per_row, jaxloss.hinge_embedding_loss(x, y, reduction="none").sum(1), rtol=1e-12
    )


def test_jit_of_grad_and_vmap_of_grad():
    rng = np.random.default_rng(15)
    x = jnp.asarray(rng.normal(size=(4, N, C)), jnp.float32)
    t = jnp.asarray(rng.integers(0, C, size=(4, N)))
    grad = jax.grad(lambda z, tt: jaxloss.multi_margin_loss(z, tt, p=2, margin=0.7))
    batched = jax.jit(jax.vmap(grad))(x, t)
    for i in range(4):
        np.testing.assert_allclose(batched[i], grad(x[i], t[i]), rtol=1e-6, atol=1e-7)
        expected = torch.autograd.functional.jacobian(
            lambda z, i=i: F.multi_margin_loss(z, torch.tensor(np.asarray(t[i])), p=2, margin=0.7),
            torch.tensor(np.asarray(x[i])),
        )
        assert_close(batched[i], expected, "float32", "jit(vmap(grad))")


# --------------------------------------------------------------------------- float16 / bfloat16
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_keeps_dtype(dtype):
    rng = np.random.default_rng(16)
    x, y = rng.normal(size=(N, C)), rng.normal(size=(N, C))
    sign = rng.choice([-1.0, 1.0], size=(N, C))
    t = _mm_target(rng)
    w = rng.uniform(0.5, 2.0, size=(C,))
    low_precision_vs_float32(
        jaxloss.multi_margin_loss, F.multi_margin_loss, [x, t, 2, 0.5, w], {}, dtype, [0, 4]
    )
    low_precision_vs_float32(
        jaxloss.multilabel_margin_loss, F.multilabel_margin_loss, [x, ML_TARGET], {}, dtype, [0]
    )
    low_precision_vs_float32(
        jaxloss.margin_ranking_loss, F.margin_ranking_loss, [x, y, sign], {"margin": 0.1}, dtype, [0, 1, 2]
    )
    low_precision_vs_float32(
        jaxloss.hinge_embedding_loss,
        F.hinge_embedding_loss,
        [np.abs(x), sign],
        {"reduction": "sum"},
        dtype,
        [0],
    )
