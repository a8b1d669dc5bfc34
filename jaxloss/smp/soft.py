"""smp's label-smoothed cross entropies: ``SoftBCEWithLogitsLoss`` and ``SoftCrossEntropyLoss``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._checked import first_bad, poison, poison_gradient, value_check
from jaxloss._dtypes import Array, opmath_dtype, result_float_dtype, torch_dtype_name
from jaxloss._registry import loss_function
from jaxloss._shapes import broadcast_shapes, check_broadcast_into, shape_str
from jaxloss.binary import _bce_with_logits_elementwise
from jaxloss.smp._common import IN_BODY, check_ignore_index, optional_number

# smp applies no reduction for any value but 'mean' / 'sum'; jaxloss refuses a misspelt one with
# torch's message (the registration's default 'none' | 'mean' | 'sum')



def _bce_check(values: dict[str, Any]) -> None:  # the options alone: the class's constructor runs it too
    optional_number("soft_bce_with_logits_loss", "smooth_factor", values["smooth_factor"])
    check_ignore_index("soft_bce_with_logits_loss", values)


def _bce_precheck(values: dict[str, Any]) -> None:
    values["smooth_factor"] = optional_number("soft_bce_with_logits_loss", "smooth_factor", values["smooth_factor"])


def _reduce(loss: Array, reduction: str) -> Array:
    """smp's reductions: ``loss.mean()`` / ``loss.sum()`` (ignored elements counted in the mean)."""
    if reduction == "mean":
        return jnp.mean(loss)
    return jnp.sum(loss) if reduction == "sum" else loss


def _round_to(x: Array, dtype: Any) -> Array:
    """``x`` (float32) rounded to half-precision ``dtype``'s values, kept in float32: a rounding XLA
    keeps (a convert round trip may be dropped as excess precision inside a fused computation)."""
    info = jnp.finfo(dtype)
    return jax.lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def _smoothed(y: Array, eps: Any) -> Array:
    """smp's ``(1 - y) * eps + y * (1 - eps)`` in ``y``'s dtype, rounded where torch rounds it.

    In float16 / bfloat16 torch computes each of the four operations in float32 and rounds its
    result to the dtype; a Python ``eps`` enters in float32 (``1 - eps`` in Python's double), a
    half-precision 0-d array as it is (``1 - eps`` rounded to its dtype). jaxloss does the same,
    so that its smoothed target is smp's bit for bit (XLA would otherwise round once)."""
    if y.dtype not in (jnp.float16, jnp.bfloat16):
        return (1 - y) * eps + y * (1 - eps)
    e = jnp.asarray(eps)
    one_minus = 1 - e.astype(jnp.float32)
    if e.dtype in (jnp.float16, jnp.bfloat16):
        one_minus = _round_to(one_minus, e.dtype)
    t, e = y.astype(jnp.float32), e.astype(jnp.float32)
    out = _round_to(_round_to(_round_to(1 - t, y.dtype) * e, y.dtype) + _round_to(t * one_minus, y.dtype), y.dtype)
    return out.astype(y.dtype)


@loss_function(
    opmath=IN_BODY,
    static_argnames=("ignore_index", "reduction"),
    arrays={"y_pred": "float", "y_true": "real", "weight": "real", "pos_weight": "real"},
    check_options=_bce_check,
    precheck=_bce_precheck,
    module="SoftBCEWithLogitsLoss",
    forward=("y_pred", "y_true"),
)
def soft_bce_with_logits_loss(
    y_pred: Array,
    y_true: Array,
    weight: Array | None = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
    smooth_factor: float | Array | None = None,
    pos_weight: Array | None = None,
) -> Array:
    """smp's ``SoftBCEWithLogitsLoss(...)(y_pred, y_true)``: ``BCEWithLogitsLoss`` with a smoothed
    target and an ignored label.

    .. math::
        s = (1 - y)\\,\\varepsilon + y (1 - \\varepsilon), \\qquad
        \\ell_i = [y_i \\ne \\text{ignore}] \\cdot w_i \\left[(1 - s_i)\\,\\mathrm{softplus}(x_i)
        + p_i s_i\\, \\mathrm{softplus}(-x_i)\\right]

    Args:
        y_pred: logits, any shape.
        y_true: targets of the same shape (floating; an integer target needs ``smooth_factor``,
            which makes it float32 as in torch).
        weight, pos_weight: as in ``binary_cross_entropy_with_logits`` (smp's buffers).
        ignore_index: elements whose *unsmoothed* target equals it have loss 0 (static; ``None``: none).
        reduction: ``'mean'`` (over **all** elements, ignored ones included, as smp) | ``'sum'`` | ``'none'``.
        smooth_factor: ``eps`` above (traced); ``None``: no smoothing.

    Returns:
        A scalar, or ``y_pred``'s shape for ``'none'``; the dtype torch's promotion of ``y_pred``
        and the (smoothed) target gives; float16 / bfloat16 are computed in float32, after the
        smoothed target is rounded to the target's dtype exactly as smp's is (bit for bit).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits, target = jnp.array([2.0, -1.0, 0.5]), jnp.array([1.0, 0.0, -100.0])
        >>> round(float(smp.soft_bce_with_logits_loss(logits, target)), 4)
        0.1467
        >>> round(float(smp.soft_bce_with_logits_loss(logits, target, smooth_factor=0.1)), 4)
        0.2467
    """
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Target size (torch.Size({list(y_true.shape)})) must be the same as input size "
                         f"(torch.Size({list(y_pred.shape)}))")
    target = y_true
    if smooth_factor is not None:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            target = target.astype(jnp.float32)  # int tensor * Python float: torch's default dtype
        target = _smoothed(target, smooth_factor)
    elif not jnp.issubdtype(target.dtype, jnp.floating):
        raise TypeError(f"result type {torch_dtype_name(result_float_dtype(y_pred, target))} can't be cast to the "
                        f"desired output type {torch_dtype_name(target.dtype)}")
    dtype = result_float_dtype(y_pred, target)
    work = opmath_dtype(dtype)
    pw = None if pos_weight is None else pos_weight.astype(work)
    loss = _bce_with_logits_elementwise(y_pred.astype(work), target.astype(work), pw)
    if weight is not None:
        check_broadcast_into(loss.shape, broadcast_shapes(loss.shape, weight.shape))
        loss = loss * weight.astype(work)
    if ignore_index is not None:
        loss = loss * (y_true != ignore_index).astype(work)  # a product, as smp: 0 * inf stays NaN
    return _reduce(loss, reduction).astype(dtype)


def _ce_check(values: dict[str, Any]) -> None:  # the options alone: the class's constructor runs it too
    optional_number("soft_cross_entropy_loss", "smooth_factor", values["smooth_factor"])
    check_ignore_index("soft_cross_entropy_loss", values)
    if not isinstance(values["dim"], int) or isinstance(values["dim"], bool):
        raise TypeError(f"soft_cross_entropy_loss(): argument 'dim' must be int, not {type(values['dim']).__name__}")


def _ce_precheck(values: dict[str, Any]) -> None:
    values["smooth_factor"] = optional_number("soft_cross_entropy_loss", "smooth_factor", values["smooth_factor"])


@loss_function(
    opmath=IN_BODY,
    static_argnames=("reduction", "ignore_index", "dim"),
    arrays={"y_pred": "float"},
    check_options=_ce_check,
    precheck=_ce_precheck,
    module="SoftCrossEntropyLoss",
    forward=("y_pred", "y_true"),
)
def soft_cross_entropy_loss(
    y_pred: Array,
    y_true: Array,
    reduction: str = "mean",
    smooth_factor: float | Array | None = None,
    ignore_index: int | None = -100,
    dim: int = 1,
) -> Array:
    """smp's ``SoftCrossEntropyLoss(...)(y_pred, y_true)``: cross entropy with fairseq's label smoothing.

    .. math::
        \\ell = (1 - \\varepsilon)\\,(-\\log p_{y}) + \\frac{\\varepsilon}{C} \\sum_c (-\\log p_c),
        \\qquad p = \\mathrm{softmax}(x, \\text{dim})

    Args:
        y_pred: logits, classes on axis ``dim``.
        y_true: class indices (any integer dtype) of ``y_pred``'s shape without ``dim``, or with
            ``dim`` of size 1.
        reduction: ``'mean'`` (over **all** positions, ignored ones included, as smp; the two terms
            are reduced separately) | ``'sum'`` | ``'none'``.
        smooth_factor: ``eps`` above (traced). smp's default ``None`` makes smp raise ``TypeError``
            (``None / C``); jaxloss reads it as no smoothing (the plain NLL term).
        ignore_index: positions whose target equals it have loss 0 (static; ``None``: none).
        dim: the class axis (static).

    Returns:
        A scalar, or for ``'none'`` the per-position loss: with ``ignore_index`` (the default -100)
        it keeps ``dim`` with size 1, as smp's (``(N, 1, H, W)``); with ``ignore_index=None`` ``dim``
        is squeezed. ``y_pred``'s dtype (half precision computed in float32).

    A target outside ``[0, C)`` that is not ``ignore_index`` makes value and gradient NaN;
    ``jaxloss.smp.checked.soft_cross_entropy_loss`` raises torch's gather message ("index 5 is out
    of bounds for dimension 1 with size 3").

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits, target = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]]), jnp.array([0, 2])
        >>> round(float(smp.soft_cross_entropy_loss(logits, target, smooth_factor=0.1)), 4)
        0.745
    """
    if not jnp.issubdtype(y_true.dtype, jnp.integer):
        raise TypeError(f"gather(): Expected dtype int64 for index, got {y_true.dtype}")
    ndim = y_pred.ndim
    if not -ndim <= dim < ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {dim})")
    dim %= ndim
    dtype = y_pred.dtype
    lprobs = jax.nn.log_softmax(y_pred.astype(opmath_dtype(dtype)), axis=dim)
    target = jnp.expand_dims(y_true, dim) if y_true.ndim == ndim - 1 else y_true
    expected = lprobs.shape[:dim] + (1,) + lprobs.shape[dim + 1:]
    if target.shape != expected:
        raise ValueError(f"y_true must have y_pred's shape without dim {dim} (or with it of size 1): "
                         f"y_pred {shape_str(y_pred.shape)}, y_true {shape_str(y_true.shape)}")
    n_classes = lprobs.shape[dim]
    pad = target == ignore_index if ignore_index is not None else jnp.zeros(target.shape, bool)
    safe = jnp.where(pad, 0, target)
    bad = (safe < 0) | (safe >= n_classes)
    value_check(~bad, f"index {{}} is out of bounds for dimension {dim} with size {n_classes}", first_bad(bad, safe))
    lprobs = poison_gradient(lprobs, jnp.any(bad))
    nll = -jnp.take_along_axis(lprobs, jnp.clip(safe, 0, n_classes - 1).astype(jnp.int32), axis=dim)
    nll = poison(nll, bad)
    smooth = None if smooth_factor is None else -jnp.sum(lprobs, axis=dim, keepdims=True)
    if ignore_index is not None:
        nll = jnp.where(pad, 0, nll)
        smooth = None if smooth is None else jnp.where(pad, 0, smooth)
    else:
        nll = jnp.squeeze(nll, dim)
        smooth = None if smooth is None else jnp.squeeze(smooth, dim)
    nll = _reduce(nll, reduction)
    if smooth is None:
        return nll.astype(dtype)
    smooth = _reduce(smooth, reduction)
    keep, spread = _coefficients(smooth_factor, n_classes)
    return (keep * nll + spread * smooth).astype(dtype)


def _coefficients(eps: Any, n_classes: int) -> tuple[Any, Any]:
    """smp's ``1 - eps`` and ``eps / C``: exact for a Python ``eps``; for a float16 / bfloat16 0-d
    array torch computes them on the tensor, rounded to its dtype (explicitly here: XLA may skip
    the rounding of a fused half-precision scalar, as it does for bfloat16 on CPU)."""
    e = jnp.asarray(eps)
    if e.dtype not in (jnp.float16, jnp.bfloat16):
        return 1.0 - eps, eps / n_classes
    e32 = e.astype(jnp.float32)
    return _round_to(1 - e32, e.dtype), _round_to(e32 / n_classes, e.dtype)
