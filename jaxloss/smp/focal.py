"""smp's ``FocalLoss``: a sigmoid focal loss per class (binary, multilabel and multiclass alike).

For a logit ``x`` and a 0-1 target ``t`` (``'multiclass'``: ``t = [y == c]`` per class ``c``):

.. math::
    \\ell = -\\log p_t, \\quad p_t = e^{-\\ell}, \\quad
    f = (1 - p_t)^\\gamma \\;\\; \\left(\\text{reduced: } ((1 - p_t) / r)^\\gamma, \\; 1 \\text{ where } p_t < r\\right),
    \\qquad L = f \\, \\ell \\, (\\alpha t + (1 - \\alpha)(1 - t)) \\; [/ \\max(\\textstyle\\sum f, 10^{-6})]

with ``l`` the binary cross entropy on logits; each class is reduced over its non-ignored
elements, then the classes are averaged (``class_weights``: a weighted mean).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from jaxloss._dtypes import Array, opmath_dtype
from jaxloss._jvp import clamp_min
from jaxloss._registry import Number, loss_function
from jaxloss._shapes import shape_str
from jaxloss.binary import _bce_with_logits_elementwise, _pow_scalar
from jaxloss.smp._common import (
    BINARY_MODE,
    IN_BODY,
    MULTICLASS_MODE,
    check_ignore_index,
    class_weight_array,
    mode_check,
    optional_number,
)

REDUCTIONS = ("mean", "sum", "none", "batchwise_mean")
_NORM_EPS = 1e-6  # focal_loss_with_logits' eps of the normalisation (not a FocalLoss option)



def _check(values: dict[str, Any]) -> None:  # the options alone: the class's constructor runs it too
    if values["class_weights"] is not None and values["mode"] == BINARY_MODE:
        raise ValueError("class_weights are not supported with mode=binary")
    class_weight_array("focal_loss", values["class_weights"])
    for name in ("alpha", "reduced_threshold"):
        optional_number("focal_loss", name, values[name])
    check_ignore_index("focal_loss", values)


def _precheck(values: dict[str, Any]) -> None:
    values["class_weights"] = class_weight_array("focal_loss", values["class_weights"])
    for name in ("alpha", "reduced_threshold"):
        values[name] = optional_number("focal_loss", name, values[name])


def _clamp(x: Array, low: Any, high: Any) -> Array:
    """``torch.clamp(x, low, high)``: gradient 1 where ``low <= x <= high`` (bounds included)."""
    return -clamp_min(-clamp_min(x, low), -high)


def _to_logits(y_pred: Array, mode: str, eps: Any) -> Array:
    """smp's ``from_logits=False`` conversion: clamp to ``[eps, 1 - eps]``, then the inverse sigmoid
    (binary / multilabel) or, for ``'multiclass'``, ``log(p)``, which the sigmoid focal loss then
    takes for a logit (smp's choice; see :func:`focal_loss`)."""
    p = _clamp(y_pred, eps, 1.0 - eps)
    return jnp.log(p / (1.0 - p)) if mode != MULTICLASS_MODE else jnp.log(p)


def _focal_terms(x: Array, t: Array, valid: Array, alpha: Any, gamma: Any, reduced_threshold: Any,
                 normalized: bool, axes: tuple[int, ...]) -> Array:  # fmt: skip
    """The elementwise focal loss (0 where not ``valid``), normalised over ``axes`` if asked."""
    t = jnp.where(valid, t, 0)  # an ignored label (e.g. 255) must not reach pow / log
    logpt = _bce_with_logits_elementwise(x, t, None)
    pt = jnp.exp(-logpt)
    if reduced_threshold is None:
        focal = _pow_scalar(1.0 - pt, jnp.asarray(gamma, x.dtype))
    else:
        focal = _pow_scalar((1.0 - pt) / reduced_threshold, jnp.asarray(gamma, x.dtype))
        focal = jnp.where(pt < reduced_threshold, jnp.ones_like(focal), focal)  # smp: focal_term[pt < r] = 1
    loss = focal * logpt
    if alpha is not None:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    loss = jnp.where(valid, loss, 0)
    if normalized:
        norm = jnp.sum(jnp.where(valid, focal, 0), axis=axes, keepdims=True)
        loss = loss / clamp_min(norm, _NORM_EPS)
    return loss


def _check_sizes(pred_shape: tuple[int, ...], true_shape: tuple[int, ...], ignore: bool) -> None:
    if pred_shape == true_shape:
        return
    if ignore:  # smp selects y_pred[y_true != ignore_index]
        raise IndexError(f"The shape of the mask {shape_str(true_shape)} at index 0 does not match the shape of "
                         f"the indexed tensor {shape_str(pred_shape)} at index 0")
    raise ValueError(f"Target size (torch.Size({list(true_shape)})) must be the same as input size "
                     f"(torch.Size({list(pred_shape)}))")


@loss_function(
    opmath=IN_BODY,
    static_argnames=("mode", "ignore_index", "reduction"),
    bools=("from_logits", "normalized"),
    numbers={"gamma": Number(), "eps": Number()},
    arrays={"y_pred": "float", "y_true": "label"},
    reductions=REDUCTIONS,
    reduction_message="reduction must be 'mean', 'sum', 'none' or 'batchwise_mean', got {!r}",
    check_options=mode_check("focal_loss", _check),
    precheck=_precheck,
    module="FocalLoss",
    forward=("y_pred", "y_true"),
)
def focal_loss(
    y_pred: Array,
    y_true: Array,
    mode: str,
    alpha: float | Array | None = None,
    gamma: float | Array = 2.0,
    ignore_index: int | None = None,
    from_logits: bool = True,
    eps: float | Array = 1e-7,
    reduction: str = "mean",
    normalized: bool = False,
    reduced_threshold: float | Array | None = None,
    class_weights: Any = None,
) -> Array:
    """smp's ``FocalLoss(mode, ...)(y_pred, y_true)``.

    Args:
        y_pred: logits (or probabilities with ``from_logits=False``): any shape for ``'binary'``
            (flattened), ``(N, C, *)`` otherwise.
        y_true: ``'binary'``: 0-1 targets with ``y_pred``'s number of elements; ``'multiclass'``:
            ``(N, *)`` class indices; ``'multilabel'``: ``(N, C, *)`` 0-1 targets.
        mode: ``'binary'`` | ``'multiclass'`` | ``'multilabel'`` (static).
        alpha: weight of the positive targets (``1 - alpha`` for the negatives); ``None``: none.
        gamma: the focusing power (traced; torch's ``pow`` gradient).
        ignore_index: target value whose elements are left out (static).
        from_logits: ``False``: ``y_pred`` are probabilities, clamped to ``[eps, 1 - eps]`` and turned
            into logits.
        eps: the clamp of ``from_logits=False`` (traced).
        reduction: ``'mean'`` (over the non-ignored elements) | ``'sum'`` | ``'batchwise_mean'``
            (smp's ``sum(0)``: the sum of the flattened ``'binary'`` loss, or with ``ignore_index``;
            otherwise each class's batch sums ``(*)``, averaged with the classes) | ``'none'``
            (static; smp's ``None``, an alias of ``'none'`` there, is refused).
        normalized: divide by the sum of the focal factors (Normalized Focal Loss).
        reduced_threshold: Reduced Focal Loss: the factor is 1 where ``p_t < r``.
        class_weights: per-class weights of the mean over classes (not ``'binary'``), float32 as smp.

    Returns:
        A scalar, or for ``'binary'`` with ``reduction='none'`` the flattened per-element loss; in
        ``y_pred``'s dtype (float32 for half precision with ``class_weights``; half precision is
        computed in float32). In ``'multiclass'`` / ``'multilabel'`` modes ``'none'`` still returns
        a scalar: smp stacks the per-class losses and averages them.

    Where jaxloss differs from smp, on purpose:

    * ``'binary'``, ``ignore_index`` and ``reduction='none'``: smp returns only the non-ignored
      elements (a data-dependent shape); jaxloss returns every element, 0 where ignored.
    * ``'multilabel'`` with ``ignore_index`` fails in smp (a ``(N, C, *)`` mask indexes a
      ``(N, *)`` class slice); jaxloss raises the same ``IndexError`` before tracing.
    * ``class_weights`` with ``'none'`` (or ``'batchwise_mean'`` without ``ignore_index``) in the
      multi-class modes: smp broadcasts a per-element loss against ``(C,)`` weights (an error
      unless the shapes happen to agree); jaxloss raises ``ValueError``.
    * An unknown ``reduction`` (or ``None``) means no reduction in smp; jaxloss raises ``ValueError``.

    smp's own choice, kept: with ``mode='multiclass', from_logits=False`` the probabilities become
    ``log(p)``, which the per-class *sigmoid* focal loss then takes for a logit (so ``sigmoid(log p)
    = p / (1 + p)`` is the probability it scores). Every element with all elements ignored: 'mean'
    is NaN (smp's mean of nothing) with a zero gradient, as in smp.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 3.0]]]])
        >>> target = jnp.array([[[1, 0], [0, 1]]])
        >>> round(float(smp.focal_loss(logits, target, "binary")), 4)
        0.1005
        >>> round(float(smp.focal_loss(logits, target, "binary", alpha=0.25, gamma=1.0)), 4)
        0.1306
    """
    dtype = y_pred.dtype if class_weights is None else jnp.promote_types(y_pred.dtype, jnp.float32)
    work = opmath_dtype(y_pred.dtype)
    x = y_pred.astype(work)
    if not from_logits:
        x = _to_logits(x, mode, eps)
    ignore = ignore_index is not None
    if mode == BINARY_MODE:
        x, t_raw = x.reshape(-1), y_true.reshape(-1)
        _check_sizes(x.shape, t_raw.shape, ignore)
        valid = t_raw != ignore_index if ignore else jnp.ones(t_raw.shape, bool)
        loss = _focal_terms(x, t_raw.astype(work), valid, alpha, gamma, reduced_threshold, normalized, (0,))
        count = jnp.sum(valid)
        if reduction == "none":
            return loss.astype(dtype)
        total = jnp.sum(loss)
        return (total / count if reduction == "mean" else total).astype(dtype)
    if x.ndim < 2:
        raise ValueError(f"y_pred must have shape (N, C, *) in mode={mode}, got {shape_str(x.shape)}")
    n_classes = x.shape[1]
    if mode == MULTICLASS_MODE:
        _check_sizes(x.shape[:1] + x.shape[2:], y_true.shape, ignore)
        valid = y_true != ignore_index if ignore else jnp.ones(y_true.shape, bool)
        t = (y_true[:, None] == jnp.arange(n_classes).reshape((1, -1) + (1,) * (y_true.ndim - 1))).astype(work)
        valid = jnp.broadcast_to(valid[:, None], t.shape)
    else:
        if ignore:
            # smp indexes the (N, *) slice of one class with the (N, C, *) mask
            raise IndexError(f"too many indices for tensor of dimension {y_true.ndim - 1}")
        _check_sizes(x.shape, y_true.shape, ignore)
        t, valid = y_true.astype(work), jnp.ones(y_true.shape, bool)
    axes = (0, *range(2, x.ndim))
    loss = _focal_terms(x, t, valid, alpha, gamma, reduced_threshold, normalized, axes)
    per_class = jnp.sum(loss, axis=axes)  # (C,)
    count = jnp.sum(valid[:, 0])  # the non-ignored elements of one class
    # smp stacks the per-class results: 'none' gives (C, P), 'batchwise_mean' without ignore_index
    # sums over the batch axis of the unflattened (N, *) slices, (C, *); both are then averaged
    elementwise = reduction == "none" or (reduction == "batchwise_mean" and not ignore)
    if elementwise and class_weights is not None:
        raise ValueError(f"class_weights with reduction={reduction!r} broadcast a per-element loss against (C,) "
                         f"weights in smp; use reduction='mean' or 'sum'")
    if reduction == "none":
        return (jnp.sum(per_class) / (n_classes * count)).astype(dtype)
    if reduction == "batchwise_mean" and not ignore:
        positions = math.prod(x.shape[2:])
        return (jnp.sum(per_class) / (n_classes * positions)).astype(dtype)
    if reduction == "mean":
        per_class = per_class / count
    if class_weights is None:
        return jnp.mean(per_class).astype(dtype)
    if class_weights.shape != (n_classes,):
        raise ValueError(f"The size of tensor a ({n_classes}) must match the size of tensor b "
                         f"({class_weights.shape[0]}) at non-singleton dimension 0")
    w = class_weights.astype(jnp.promote_types(work, jnp.float32))
    return (jnp.sum(per_class * w) / jnp.sum(w)).astype(dtype)
