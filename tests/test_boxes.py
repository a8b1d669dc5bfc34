"""boxes.py against torchvision's box losses (its formulas in torch ops, or torchvision itself).

Values, gradients and second order against :mod:`jaxloss.parity.references` (torchvision's ops,
op for op), hand-derived values, torchvision's dtype rules (integer and half-precision
boxes computed and returned in float32), empty 'mean' = 0, CIoU's gradient-free alpha and
its fixed DIoU eps, ``eps`` traced (no recompilation), broadcasting, degenerate and
non-finite boxes, and every bad input with a clear error.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jaxloss.parity import references as R

import jaxloss
from jaxloss import checked
from tests.torch_compare import assert_close, check, check_each, check_hvp, check_hvp_each

NAMES = list(R.BOX_LOSSES)
REDUCTIONS = ["none", "mean", "sum"]
POS = ("boxes1", "boxes2")


def _boxes(rng, n, scale=1.0):
    corner = rng.normal(size=(n, 2)) * 2.0
    return np.concatenate([corner, corner + rng.uniform(0.2, 3.0, size=(n, 2))], -1) * scale


def _pair(seed=0, n=5):
    rng = np.random.default_rng(seed)
    b1, b2 = _boxes(rng, n), _boxes(rng, n)
    b2[0] = b1[0]  # identical pair: ties in every min / max
    b2[1] = b1[1] + 0.1  # overlapping
    return {"boxes1": b1, "boxes2": b2}


def _fns(name):
    return getattr(jaxloss, name), getattr(R, name)


def _jax_named(boxes1, boxes2, name, **kw):
    """``jaxloss.<name>``: the three losses as one function, so that a check_each grid over
    ``name`` (a static option) checks all three in one compiled program."""
    return getattr(jaxloss, name)(boxes1, boxes2, **kw)


# The three losses' options are all static (their specs trace no number: eps is a constant of
# each plain call), so the wrapper declares the same and torch_compare compiles a grid holding a
# float eps as one program (an unregistered function's float would send it down the eager path).
assert all(not getattr(jaxloss, name).spec.numbers for name in NAMES)
_jax_named.spec = jaxloss.generalized_box_iou_loss.spec


def _torch_named(boxes1, boxes2, name, **kw):
    """:func:`_jax_named`'s reference (torchvision's formula in torch ops)."""
    return getattr(R, name)(boxes1, boxes2, **kw)


# --------------------------------------------------------------------------- values and gradients
def test_matches_torchvision_formula():
    """Each loss: 'none' in float32; 'mean' and 'sum' in float64 (a check_each grid per dtype
    over the three losses: two programs)."""
    outs = check_each(_jax_named, _torch_named, _pair(), [{"name": name, "reduction": "none"} for name in NAMES],
                      grad=POS, dtype="float32", positional=POS)  # fmt: skip
    assert [o.shape for o in outs] == [(5,)] * len(NAMES)
    outs = check_each(_jax_named, _torch_named, _pair(),
                      [{"name": name, "reduction": r} for name in NAMES for r in ("mean", "sum")],
                      grad=POS, dtype="float64", positional=POS)  # fmt: skip
    assert [o.shape for o in outs] == [()] * 2 * len(NAMES)


def test_second_order():
    """The three losses' HVPs against torch's double backward: one compiled program."""
    check_hvp_each(_jax_named, _torch_named, _pair(1), [{"name": name, "reduction": "sum", "eps": 1e-3} for name in NAMES],
                   wrt=POS, positional=POS)


def test_hand_derived_values():
    # disjoint unit squares 1 apart: IoU 0, union 2, enclosing box 3 -> GIoU loss 1 + 1/3;
    # centres 2 apart, enclosing diagonal^2 = 9 + 1 -> DIoU loss 1 + 4/10
    b1, b2 = jnp.array([0.0, 0.0, 1.0, 1.0], jnp.float64), jnp.array([2.0, 0.0, 3.0, 1.0], jnp.float64)
    eps = 1e-7
    assert float(jaxloss.generalized_box_iou_loss(b1, b2)) == pytest.approx(1 + 1 / (3 + eps), rel=1e-12)
    assert float(jaxloss.distance_box_iou_loss(b1, b2)) == pytest.approx(1 + 4 / (10 + eps), rel=1e-12)
    # (0,0,1,2) vs (0,0,2,1): I = 1, U = 3, centres (0.5,1) / (1,0.5), enclosing 2x2
    b1, b2 = jnp.array([0.0, 0.0, 1.0, 2.0], jnp.float64), jnp.array([0.0, 0.0, 2.0, 1.0], jnp.float64)
    iou = 1 / (3 + eps)
    diou = 1 - iou + 0.5 / (8 + eps)
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(0.5)) ** 2
    alpha = v / (1 - iou + v + eps)
    assert float(jaxloss.distance_box_iou_loss(b1, b2)) == pytest.approx(diou, rel=1e-12)
    assert float(jaxloss.complete_box_iou_loss(b1, b2)) == pytest.approx(diou + alpha * v, rel=1e-12)


def test_default_reduction_is_none():
    b = _pair()
    for name in NAMES:  # (the shape is fixed at trace: nothing compiled)
        assert jax.eval_shape(getattr(jaxloss, name), b["boxes1"], b["boxes2"]).shape == (5,)


# --------------------------------------------------------------------------- CIoU specifics
def test_ciou_alpha_carries_no_gradient():
    """The gradient is torchvision's (alpha under no_grad), not the true derivative of the value."""
    b = _pair(2)
    check(jaxloss.complete_box_iou_loss, R.complete_box_iou_loss, b, {"reduction": "sum"}, grad=POS, dtype="float64",
          positional=POS)
    b1, b2 = jnp.asarray(b["boxes1"]), jnp.asarray(b["boxes2"])
    h = 1e-6
    d = jnp.zeros_like(b1).at[2, 2].set(h)  # widen box 2: changes v and alpha
    f = lambda x: jaxloss.complete_box_iou_loss(x, b2, reduction="sum")
    # the gradient and both central-difference values in one compiled program (eager: four)
    g, plus, minus = jax.jit(lambda x: (jax.grad(f)(x), f(x + d), f(x - d)))(b1)
    numeric = (float(plus) - float(minus)) / (2 * h)
    assert abs(numeric - float(g[2, 2])) > 1e-4  # alpha's own derivative is left out


def test_ciou_eps_enters_alpha_only():
    """torchvision computes CIoU's DIoU part with eps=1e-7 whatever eps is passed."""
    b1 = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]], jnp.float64)
    b2 = jnp.array([[1.0, 1.0, 3.0, 3.0], [0.5, 0.5, 1.5, 1.5]], jnp.float64)  # same aspect ratio: v = 0
    ciou = jaxloss.complete_box_iou_loss(b1, b2, eps=0.5)
    np.testing.assert_allclose(ciou, jaxloss.distance_box_iou_loss(b1, b2), rtol=1e-15)
    assert not np.allclose(ciou, jaxloss.distance_box_iou_loss(b1, b2, eps=0.5))
    check(jaxloss.complete_box_iou_loss, R.complete_box_iou_loss, _pair(3), {"eps": 0.5}, grad=POS, dtype="float64",
          positional=POS)


# --------------------------------------------------------------------------- eps is traced
def test_eps_is_traced_no_recompilation():
    b = _pair()
    b1, b2 = jnp.asarray(b["boxes1"], jnp.float32), jnp.asarray(b["boxes2"], jnp.float32)
    for name in NAMES:
        fn = getattr(jaxloss, name)
        fn(b1, b2, eps=1e-7).block_until_ready()
        before = fn._cache_size()
        outs = [fn(b1, b2, eps=e) for e in (1e-3, 0.25, 1.0)]
        assert fn._cache_size() == before, name
        assert len({float(o.sum()) for o in outs}) == 3, name  # the value did change
        # a traced eps (inside jit) and its gradient
        g = float(jax.jit(jax.grad(lambda e, fn=fn: fn(b1, b2, reduction="sum", eps=e)))(jnp.float32(0.5)))
        if name == "complete_box_iou_loss":
            assert g == 0.0  # eps enters alpha only, which carries no gradient
        else:
            assert np.isfinite(g) and g != 0.0


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("name,half", list(zip(NAMES, ["float16", "bfloat16", "float16"])))
def test_half_precision_is_computed_and_returned_in_float32(name, half):
    jf, tf = _fns(name)
    b = _pair(4)
    j1, j2 = (jnp.asarray(b[k], half) for k in POS)
    # the value, its float32 reference and the gradient in one compiled program (eager: four)
    out, ref, g = jax.jit(lambda j1, j2: (jf(j1, j2), jf(j1.astype(jnp.float32), j2.astype(jnp.float32)),
                                          jax.grad(lambda x: jf(x, j2, reduction="sum"))(j1)))(j1, j2)  # fmt: skip
    assert out.dtype == jnp.float32  # torchvision's _upcast_non_float: not cast back
    np.testing.assert_array_equal(out, ref)
    t1, t2 = (torch.tensor(np.asarray(x.astype(jnp.float32))).to(getattr(torch, half)) for x in (j1, j2))
    t_out = tf(t1, t2)
    assert t_out.dtype == torch.float32
    assert_close(out, t_out, "float32", "value")
    assert g.dtype == jnp.dtype(half)


@pytest.mark.parametrize("name,int_dtype", list(zip(NAMES, ["int32", "int64", "uint8"])))
def test_integer_boxes_are_float32(name, int_dtype):
    jf, tf = _fns(name)
    rng = np.random.default_rng(5)
    corner = rng.integers(0, 4, size=(6, 2))
    b1 = np.concatenate([corner, corner + rng.integers(1, 4, size=(6, 2))], -1).astype(int_dtype)
    b2 = b1[::-1].copy()
    out = jf(jnp.asarray(b1), jnp.asarray(b2), reduction="mean")
    assert out.dtype == jnp.float32
    t_out = tf(torch.tensor(b1), torch.tensor(b2), reduction="mean")
    assert t_out.dtype == torch.float32
    assert_close(out, t_out, "float32", "value")


def test_mixed_float_dtypes():
    b = _pair(6)
    b1, b2 = jnp.asarray(b["boxes1"], jnp.float64), jnp.asarray(b["boxes2"], jnp.float32)
    for name in NAMES:
        jf, tf = _fns(name)
        out = jf(b1, b2)
        assert out.dtype == jnp.float64
        assert_close(out, tf(torch.tensor(np.asarray(b1)), torch.tensor(np.asarray(b2))), "float64", name)
        # float64 boxes2 into float32 boxes1: torchvision fails once two pairs overlap
        with pytest.raises(TypeError, match=r"boxes2 \(float64\) must not have a wider dtype than boxes1 \(float32"):
            jf(b2, b1)
        with pytest.raises(TypeError, match="boxes2"):
            jf(jnp.asarray(b["boxes1"], jnp.int32), b1)
    overlapping = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 3)
    with pytest.raises(RuntimeError, match="Index put requires the source and destination dtypes match"):
        R.generalized_box_iou_loss(overlapping, overlapping.double() + 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_bool_and_complex_boxes_are_rejected(name):
    fn = getattr(jaxloss, name)
    b = jnp.ones((2, 4))
    with pytest.raises(TypeError, match="boxes1 must have a real"):
        fn(b.astype(bool), b)
    with pytest.raises(TypeError, match="boxes2 must have a real"):
        fn(b, b.astype(jnp.complex64))


# --------------------------------------------------------------------------- shapes
def test_empty_mean_is_zero():
    e = np.zeros((0, 4))
    outs = check_each(_jax_named, _torch_named, {"boxes1": e, "boxes2": e},
                      [{"name": name, "reduction": "mean"} for name in NAMES], grad=POS, dtype="float32",
                      positional=POS)  # fmt: skip
    assert [float(out) for out in outs] == [0.0] * len(NAMES)
    for name in NAMES:  # (the shape is fixed at trace: nothing compiled)
        assert jax.eval_shape(getattr(jaxloss, name), jnp.zeros((0, 4)), jnp.zeros((0, 4))).shape == (0,)


def test_broadcasting_follows_torchvision():
    b = _pair(7)
    # boxes2 may broadcast into boxes1's batch shape (the three losses: one check_each grid) ...
    check_each(_jax_named, _torch_named, {"boxes1": b["boxes1"], "boxes2": b["boxes2"][0]},
               [{"name": name} for name in NAMES], grad=POS, dtype="float64", positional=POS)  # fmt: skip
    b1, b2 = b["boxes1"].reshape(5, 1, 4) + np.zeros((5, 2, 1)), b["boxes2"][:2]
    values = jax.jit(lambda x, y: [_jax_named(x, y, name) for name in NAMES])(jnp.asarray(b1), jnp.asarray(b2))
    for name, value in zip(NAMES, values):
        assert_close(value, _torch_named(torch.tensor(b1), torch.tensor(b2), name), "float64", f"{name} value")
    # ... but not enlarge it: torchvision raises IndexError (or RuntimeError for shapes that do
    # not broadcast at all), jaxloss a ValueError naming both
    for name in NAMES:
        jf, tf = _fns(name)
        for small, big in [(b["boxes1"][0], b["boxes2"]), (b["boxes1"][:1], b["boxes2"]),
                           (b["boxes1"][:3], b["boxes2"])]:  # fmt: skip
            with pytest.raises((IndexError, RuntimeError)):
                tf(torch.tensor(small), torch.tensor(big))
            with pytest.raises(ValueError, match=r"boxes2 of shape \[.*\] must broadcast to the shape of boxes1"):
                jf(jnp.asarray(small), jnp.asarray(big))


def test_k_dim_boxes():
    jf, tf = _fns("complete_box_iou_loss")  # the batch-shape logic is shared by the three
    rng = np.random.default_rng(8)
    b = {"boxes1": _boxes(rng, 6).reshape(2, 3, 4), "boxes2": _boxes(rng, 6).reshape(2, 3, 4)}
    out = check(jf, tf, b, {}, grad=POS, dtype="float64", positional=POS)
    assert out.shape == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes(name):
    fn = getattr(jaxloss, name)
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(\.\.\., 4\).*got shape \[2, 3\]"):
        fn(jnp.ones((2, 3)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., 4\).*got shape \[2, 5\]"):
        fn(jnp.ones((2, 4)), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(\.\.\., 4\).*got shape \[\]"):
        fn(jnp.float32(1.0), jnp.ones((4,)))


@pytest.mark.parametrize("name", NAMES)
def test_bad_reduction_has_torchvisions_message(name):
    jf, tf = _fns(name)
    b = torch.ones(2, 4)
    with pytest.raises(ValueError) as t_err:
        tf(b, b, reduction="avg")
    with pytest.raises(ValueError, match="Invalid Value for arg 'reduction': 'avg \n Supported reduction modes") as j_err:
        jf(jnp.ones((2, 4)), jnp.ones((2, 4)), reduction="avg")
    assert str(j_err.value).split("\n-----")[0] == str(t_err.value)  # (JAX appends its traceback note)


@pytest.mark.parametrize("name", NAMES)
def test_bad_eps(name):
    fn = getattr(jaxloss, name)
    b = jnp.ones((2, 4))
    with pytest.raises(TypeError, match="eps must be a real number, got NoneType"):
        fn(b, b, eps=None)
    with pytest.raises(TypeError, match="eps"):
        fn(b, b, eps="1e-7")
    with pytest.raises(TypeError, match="eps must be a real number, got (dtype )?bool"):
        fn(b, b, eps=True)
    with pytest.raises(ValueError, match=r"eps must be a scalar, got shape \[2\]"):
        fn(b, b, eps=jnp.ones(2))


def test_lists_work_like_arrays():
    out = jaxloss.generalized_box_iou_loss([[0.0, 0.0, 1.0, 1.0]], [[2.0, 0.0, 3.0, 1.0]])
    assert out.shape == (1,) and abs(float(out[0]) - 4 / 3) < 1e-6


# --------------------------------------------------------------------------- degenerate and non-finite boxes
def test_degenerate_boxes_match_torchvision():
    b2 = np.array([[0.0, 0.0, 2.0, 2.0]] * 5)
    b1 = np.array([[1.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 1.0], [2.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0],
                   [2.0, 2.0, 3.0, 3.0]])  # zero width, zero height, inverted, a point, touching corner
    outs = check_each(_jax_named, _torch_named, {"boxes1": b1, "boxes2": b2}, [{"name": name} for name in NAMES],
                      grad=POS, dtype="float64", positional=POS)  # fmt: skip
    assert np.isnan(outs[NAMES.index("complete_box_iou_loss")][3])  # atan(0 / 0), as in torchvision


def test_tiny_float32_boxes_have_torchvisions_finite_gradient():
    # Sides of ~1e-21: h * h underflows in float32. torch's division backward computes
    # (w / h) / h, finite; JAX's quotient rule w / (h * h) gave inf for CIoU's atan(w / h).
    rng = np.random.default_rng(12)
    arrays = {"boxes1": _boxes(rng, 5, scale=1e-21), "boxes2": _boxes(rng, 5, scale=1e-21)}
    check_each(_jax_named, _torch_named, arrays, [{"name": name, "reduction": "sum"} for name in NAMES], grad=POS,
               dtype="float32", positional=POS)  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_boxes_give_nan_value_and_gradient(name):
    fn = getattr(jaxloss, name)
    b2 = jnp.array([[0.0, 0.0, 2.0, 2.0]] * 4)
    b1 = jnp.array([[jnp.nan, 0.0, 2.0, 2.0], [0.0, 0.0, jnp.inf, 2.0], [-jnp.inf, 0.0, 2.0, 2.0], [0.5, 0.0, 2.0, 2.5]])
    # the value and the gradient in one compiled program (eager: three)
    out, g = jax.jit(lambda x: (fn(x, b2), jax.grad(lambda y: fn(y, b2, reduction="sum"))(x)))(b1)
    assert np.isnan(out[:3]).all() and np.isfinite(out[3])
    assert np.isnan(g[:3]).any(axis=1).all() and np.isfinite(g[3]).all()
    t_out = getattr(R, name)(torch.tensor(np.asarray(b1)), torch.tensor(np.asarray(b2)))
    assert np.isnan(t_out[:3].numpy()).all()


# --------------------------------------------------------------------------- composition
def test_jit_vmap_and_checked():
    b = _pair(9)
    b1, b2 = jnp.asarray(b["boxes1"], jnp.float32), jnp.asarray(b["boxes2"], jnp.float32)
    # every loss's plain, vmapped and summed value in one compiled program (eager: three per loss)
    values = jax.jit(lambda x, y: [(fn(x, y), jax.vmap(lambda u, v, fn=fn: fn(u, v))(x, y), fn(x, y, reduction="sum"))
                                   for fn in (getattr(jaxloss, name) for name in NAMES)])(b1, b2)  # fmt: skip
    for name, (full, vmapped, total) in zip(NAMES, values):
        np.testing.assert_allclose(vmapped, full, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(total, full.sum(), rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal(getattr(checked, name)(b1, b2), full)


def test_against_torchvision():
    """The real torchvision.ops functions, where torchvision imports (the GPU machine)."""
    try:
        import torchvision.ops  # noqa: F401
    except Exception as e:  # noqa: BLE001  (any import failure: missing, ABI mismatch...)
        pytest.skip(f"torchvision not importable: {type(e).__name__}: {e}")
    for name in NAMES:
        tv, expr = R.torchvision_box_loss(name)
        assert expr == f"torchvision.ops.{name}"
        for reduction, dtype in [("none", "float64"), ("mean", "float32"), ("sum", "float64")]:
            check(getattr(jaxloss, name), tv, _pair(10), {"reduction": reduction}, grad=POS, dtype=dtype, positional=POS)
        check_hvp(getattr(jaxloss, name), tv, _pair(11), {"reduction": "sum"}, wrt=POS, dtype="float64", positional=POS)
        e = torch.zeros(0, 4)
        assert float(tv(e, e, reduction="mean")) == 0.0
