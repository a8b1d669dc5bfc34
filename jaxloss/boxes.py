r"""Bounding-box regression losses of ``torchvision.ops``: GIoU, DIoU and CIoU.

``generalized_box_iou_loss``, ``distance_box_iou_loss`` and ``complete_box_iou_loss``
mirror the ``torchvision.ops`` functions of the same name (torchvision 0.28): the same
signature ``(boxes1, boxes2, reduction='none', eps=1e-7)``, the same operations in the
same order (so values and gradients, first and second order, are torchvision's, ties of
``min`` / ``max`` splitting the gradient half and half as torch's do), and the same
dtype rules.

Boxes are arrays of shape ``(..., 4)`` holding ``(x1, y1, x2, y2)``, usually with
``x1 <= x2`` and ``y1 <= y2``. With ``w = x2 - x1``, ``h = y2 - y1``, the intersection
``I`` (0 unless the boxes overlap with a positive area), the union
``U = w h + w_g h_g - I``, ``IoU = I / (U + eps)`` and ``C`` the smallest box enclosing
both:

.. math::
    \mathrm{GIoU\ loss} &= 1 - \mathrm{IoU} + \frac{|C| - U}{|C| + \epsilon} \\
    \mathrm{DIoU\ loss} &= 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon} \\
    \mathrm{CIoU\ loss} &= \mathrm{DIoU\ loss} + \alpha v, \quad
        v = \frac{4}{\pi^2}\left(\arctan\frac{w_g}{h_g} - \arctan\frac{w}{h}\right)^2, \quad
        \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

with ``rho`` the distance between the boxes' centres and ``c`` the diagonal of ``C``.

torchvision's rules, all reproduced:

* dtypes (``_upcast_non_float``): float32 and float64 boxes are used as they are; every
  other real dtype (integers, float16, bfloat16) is converted to float32, and the result
  is *not* cast back: half-precision boxes give a float32 loss. The result's dtype is the
  promotion of the two converted dtypes.
* shapes: the loss has ``boxes1``'s batch shape ``boxes1.shape[:-1]``; ``boxes2`` may
  broadcast into it but not enlarge it (torchvision writes the intersection into an
  array of that shape and raises ``IndexError`` otherwise).
* CIoU's ``alpha`` is computed under ``torch.no_grad`` (no gradient flows through it),
  and its DIoU part and the ``IoU`` inside ``alpha`` use the default ``eps=1e-7``
  whatever ``eps`` is passed (torchvision calls ``_diou_iou_loss(boxes1, boxes2)``
  without it); ``eps`` enters ``alpha``'s denominator only.
* ``reduction='mean'`` of an empty batch is 0, not NaN (torchvision returns ``0 * sum``).
* degenerate boxes (zero or negative width / height) are not rejected: their values are
  torchvision's (e.g. CIoU is NaN for a zero-area box, ``atan(0 / 0)``); non-finite
  coordinates give NaN values and NaN gradients, as in torchvision.
* CIoU's ``w / h`` differentiates as torch's division, ``-(w / h) / h`` for ``h``: boxes
  smaller than ~1e-19 in float32 keep torchvision's finite gradient (JAX's quotient rule
  forms ``h * h``, which underflows to 0).

Documented deviations: none in values or gradients (torchvision is exact wherever it
computes). Where jaxloss is stricter than torchvision (torchvision computes these silently
or fails with an unrelated Python error): bool and complex boxes raise ``TypeError`` (torchvision
converts them to float32, dropping the imaginary part); a last dimension other than 4
and 0-d boxes raise ``ValueError`` naming the argument (torchvision: "not enough values
to unpack" / ``IndexError``); a non-scalar or non-real ``eps`` raises; float64 ``boxes2``
with float32 ``boxes1`` (after the conversion above: integer or half-precision ``boxes1``
too) raises ``TypeError``, where torchvision writes the float64 intersection areas into a
float32 array and fails ("Index put requires the source and destination dtypes match")
as soon as more than one pair of boxes overlaps, and silently rounds the single area to
float32 otherwise: a data-dependent failure becomes a clear error. ``eps`` is a
traced argument: changing its value does not recompile, and it is differentiable.
``reduction`` is static.

No ``jaxloss.nn`` classes: torchvision has no module classes for these losses.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._jvp import divide
from jaxloss._registry import loss_function
from jaxloss._shapes import Reduction, reduce, shape_str

__all__ = ["complete_box_iou_loss", "distance_box_iou_loss", "generalized_box_iou_loss"]

_DEFAULT_EPS = 1e-7  # torchvision's default, also the fixed eps of CIoU's DIoU part
_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- argument checks
def _as_boxes(name: str, boxes: Any) -> Array:
    """``boxes`` as a real array of shape ``(..., 4)``, converted as torchvision's ``_upcast_non_float``."""
    boxes = jnp.asarray(boxes)
    if jnp.issubdtype(boxes.dtype, jnp.bool_) or jnp.issubdtype(boxes.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must have a real (floating point or integer) dtype, got {boxes.dtype}")
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4) holding (x1, y1, x2, y2), got shape {shape_str(boxes.shape)}")
    if boxes.dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        boxes = boxes.astype(jnp.float32)
    return boxes


def _check_batch_shapes(boxes1: Array, boxes2: Array) -> None:
    """torchvision's rule: ``boxes2``'s batch shape must broadcast into ``boxes1``'s (not enlarge it)."""
    b1, b2 = boxes1.shape[:-1], boxes2.shape[:-1]
    try:
        ok = jnp.broadcast_shapes(b1, b2) == b1
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"boxes2 of shape {shape_str(boxes2.shape)} must broadcast to the shape of boxes1 "
            f"{shape_str(boxes1.shape)}: the loss has boxes1's batch shape (torchvision raises IndexError)"
        )


def _check_reduction(reduction: str) -> None:
    """torchvision's error for an unknown reduction (checked after the shapes, as torchvision does)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"
        )


def _as_eps(eps: Any, dtype: jnp.dtype) -> Array:
    """``eps`` (a Python number or a real scalar array, possibly traced) in the loss's dtype."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, jax.Array)) and not hasattr(eps, "dtype"):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    e = jnp.asarray(eps)
    if e.ndim != 0:
        raise ValueError(f"eps must be a scalar, got shape {shape_str(e.shape)}")
    if jnp.issubdtype(e.dtype, jnp.bool_) or jnp.issubdtype(e.dtype, jnp.complexfloating):
        raise TypeError(f"eps must be a real number, got dtype {e.dtype}")
    return e.astype(dtype)


def _check_dtypes(boxes1: Array, boxes2: Array) -> None:
    """torchvision writes the intersection (in the promoted dtype) into an array of boxes1's dtype."""
    if jnp.result_type(boxes1, boxes2) != boxes1.dtype:
        raise TypeError(
            f"boxes2 ({boxes2.dtype}) must not have a wider dtype than boxes1 ({boxes1.dtype}, after converting "
            "integer and half-precision boxes to float32 as torchvision does): torchvision fails with "
            "'Index put requires the source and destination dtypes match'; cast one of them"
        )


def _prepare(boxes1: Any, boxes2: Any, reduction: str, eps: Any) -> tuple[Array, Array, Array]:
    """Validate and convert the arguments: ``(boxes1, boxes2, eps)`` ready for the formulas."""
    b1, b2 = _as_boxes("boxes1", boxes1), _as_boxes("boxes2", boxes2)
    _check_batch_shapes(b1, b2)
    _check_dtypes(b1, b2)
    _check_reduction(reduction)
    return b1, b2, _as_eps(eps, jnp.result_type(b1, b2))


# --------------------------------------------------------------------------- the formulas
def _inter_union(boxes1: Array, boxes2: Array) -> tuple[Array, Array]:
    """torchvision's ``_loss_inter_union``: intersection area (0 unless the boxes overlap with
    a positive width and height) in ``boxes1``'s batch shape, and the union area."""
    x1, y1, x2, y2 = jnp.moveaxis(boxes1, -1, 0)
    x1g, y1g, x2g, y2g = jnp.moveaxis(boxes2, -1, 0)
    xkis1, ykis1 = jnp.maximum(x1, x1g), jnp.maximum(y1, y1g)
    xkis2, ykis2 = jnp.minimum(x2, x2g), jnp.minimum(y2, y2g)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    # both factors masked, so that no gradient (not even 0 * inf) reaches the masked-out boxes
    w = jnp.where(mask, xkis2 - xkis1, 0)
    h = jnp.where(mask, ykis2 - ykis1, 0)
    intsct = jnp.broadcast_to(w * h, x1.shape)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsct
    return intsct, union


def _enclosing(boxes1: Array, boxes2: Array) -> tuple[Array, Array, Array, Array]:
    """Corners ``(xc1, yc1, xc2, yc2)`` of the smallest box enclosing both boxes."""
    x1, y1, x2, y2 = jnp.moveaxis(boxes1, -1, 0)
    x1g, y1g, x2g, y2g = jnp.moveaxis(boxes2, -1, 0)
    return jnp.minimum(x1, x1g), jnp.minimum(y1, y1g), jnp.maximum(x2, x2g), jnp.maximum(y2, y2g)


def _diou_iou(boxes1: Array, boxes2: Array, eps: Any) -> tuple[Array, Array]:
    """torchvision's ``_diou_iou_loss``: the per-box DIoU loss and the IoU."""
    intsct, union = _inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    xc1, yc1, xc2, yc2 = _enclosing(boxes1, boxes2)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x1, y1, x2, y2 = jnp.moveaxis(boxes1, -1, 0)
    x1g, y1g, x2g, y2g = jnp.moveaxis(boxes2, -1, 0)
    x_p, y_p = (x2 + x1) / 2, (y2 + y1) / 2
    x_g, y_g = (x1g + x2g) / 2, (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    return 1 - iou + centers_distance_squared / diagonal_distance_squared, iou


def _reduce(loss: Array, reduction: str) -> Array:
    """torchvision's reduction: 'mean' of an empty batch is ``0 * sum`` = 0 (not NaN)."""
    if reduction == "mean" and loss.size == 0:
        return jnp.sum(loss) * 0
    return reduce(loss, reduction)


# --------------------------------------------------------------------------- public losses
@loss_function(static_argnames=("reduction",), reductions=None)  # checked after the shapes, torchvision's wording
def generalized_box_iou_loss(
    boxes1: Array, boxes2: Array, reduction: Reduction = "none", eps: float | Array = _DEFAULT_EPS
) -> Array:
    r"""Generalized IoU loss (``torchvision.ops.generalized_box_iou_loss``).

    .. math:: \ell = 1 - \frac{I}{U + \epsilon} + \frac{|C| - U}{|C| + \epsilon}

    with ``I`` / ``U`` the intersection / union areas and ``|C|`` the area of the
    smallest box enclosing both. Symmetric in ``boxes1`` and ``boxes2``.

    Args:
        boxes1: boxes ``(..., 4)`` as ``(x1, y1, x2, y2)``; any real dtype (integers and
            float16 / bfloat16 are computed in float32, as torchvision does).
        boxes2: boxes ``(..., 4)`` whose batch shape broadcasts to ``boxes1``'s.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'none'`` (torchvision's).
        eps: added to the denominators. Default ``1e-7``. Traced: a new value does not
            recompile.

    Returns:
        Shape ``boxes1.shape[:-1]`` for ``reduction='none'``, else a scalar; float32 for
        integer / half-precision boxes, else the promoted dtype of the two (module
        docstring: the rules are torchvision's).

    >>> import jax.numpy as jnp, jaxloss
    >>> b1 = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    >>> b2 = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    >>> [round(float(v), 4) for v in jaxloss.generalized_box_iou_loss(b1, b2)]
    [1.0794, 1.3333]
    >>> round(float(jaxloss.generalized_box_iou_loss(b1, b2, reduction="mean")), 4)
    1.2063
    """
    b1, b2, eps = _prepare(boxes1, boxes2, reduction, eps)
    intsctk, unionk = _inter_union(b1, b2)
    iouk = intsctk / (unionk + eps)
    xc1, yc1, xc2, yc2 = _enclosing(b1, b2)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return _reduce(1 - miouk, reduction)


@loss_function(static_argnames=("reduction",), reductions=None)  # checked after the shapes, torchvision's wording
def distance_box_iou_loss(
    boxes1: Array, boxes2: Array, reduction: Reduction = "none", eps: float | Array = _DEFAULT_EPS
) -> Array:
    r"""Distance IoU loss (``torchvision.ops.distance_box_iou_loss``).

    .. math:: \ell = 1 - \frac{I}{U + \epsilon} + \frac{\rho^2}{c^2 + \epsilon}

    with ``rho`` the distance between the boxes' centres and ``c`` the diagonal of the
    smallest box enclosing both. Symmetric in ``boxes1`` and ``boxes2``.

    Args:
        boxes1: boxes ``(..., 4)`` as ``(x1, y1, x2, y2)``; any real dtype (integers and
            float16 / bfloat16 are computed in float32, as torchvision does).
        boxes2: boxes ``(..., 4)`` whose batch shape broadcasts to ``boxes1``'s.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'none'``.
        eps: added to the denominators. Default ``1e-7``. Traced.

    Returns:
        Shape ``boxes1.shape[:-1]`` for ``reduction='none'``, else a scalar (dtype as in
        :func:`generalized_box_iou_loss`).

    >>> import jax.numpy as jnp, jaxloss
    >>> b1 = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    >>> b2 = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    >>> [round(float(v), 4) for v in jaxloss.distance_box_iou_loss(b1, b2)]
    [0.9683, 1.4]
    """
    b1, b2, eps = _prepare(boxes1, boxes2, reduction, eps)
    loss, _ = _diou_iou(b1, b2, eps)
    return _reduce(loss, reduction)


@loss_function(static_argnames=("reduction",), reductions=None)  # checked after the shapes, torchvision's wording
def complete_box_iou_loss(
    boxes1: Array, boxes2: Array, reduction: Reduction = "none", eps: float | Array = _DEFAULT_EPS
) -> Array:
    r"""Complete IoU loss (``torchvision.ops.complete_box_iou_loss``).

    .. math::
        \ell = \mathrm{DIoU\ loss} + \alpha v, \quad
        v = \frac{4}{\pi^2}\left(\arctan\frac{w_2}{h_2} - \arctan\frac{w_1}{h_1}\right)^2, \quad
        \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

    ``alpha`` carries no gradient (torchvision computes it under ``torch.no_grad``). As in
    torchvision, the DIoU part and the IoU inside ``alpha`` use ``eps=1e-7`` whatever
    ``eps`` is passed; ``eps`` enters ``alpha``'s denominator only. A box of zero height
    gives ``atan(w / 0)`` and one of zero area ``atan(0 / 0) = NaN``, as in torchvision.

    Args:
        boxes1: boxes ``(..., 4)`` as ``(x1, y1, x2, y2)``; any real dtype (integers and
            float16 / bfloat16 are computed in float32, as torchvision does).
        boxes2: boxes ``(..., 4)`` whose batch shape broadcasts to ``boxes1``'s.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'none'``.
        eps: added to ``alpha``'s denominator. Default ``1e-7``. Traced.

    Returns:
        Shape ``boxes1.shape[:-1]`` for ``reduction='none'``, else a scalar (dtype as in
        :func:`generalized_box_iou_loss`).

    >>> import jax.numpy as jnp, jaxloss
    >>> b1 = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 2.0]])
    >>> b2 = jnp.array([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 1.0]])
    >>> [round(float(v), 4) for v in jaxloss.complete_box_iou_loss(b1, b2)]
    [0.9683, 0.7629]
    """
    b1, b2, eps = _prepare(boxes1, boxes2, reduction, eps)
    diou_loss, iou = _diou_iou(b1, b2, _DEFAULT_EPS)
    x1, y1, x2, y2 = jnp.moveaxis(b1, -1, 0)
    x1g, y1g, x2g, y2g = jnp.moveaxis(b2, -1, 0)
    w_pred, h_pred = x2 - x1, y2 - y1
    w_gt, h_gt = x2g - x1g, y2g - y1g
    # torch's division backward ((w / h) / h): finite for boxes smaller than ~1e-19 in float32
    v = (4 / (math.pi**2)) * (jnp.arctan(divide(w_gt, h_gt)) - jnp.arctan(divide(w_pred, h_pred))) ** 2
    alpha = jax.lax.stop_gradient(v / (1 - iou + v + eps))
    return _reduce(diou_loss + alpha * v, reduction)
