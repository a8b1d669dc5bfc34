"""Binary and multi-label losses on probabilities / logits.

``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``soft_margin_loss`` and
``multilabel_soft_margin_loss`` mirror the ``torch.nn.functional`` functions of the same
name (torch 2.13); ``sigmoid_focal_loss`` mirrors ``torchvision.ops.sigmoid_focal_loss``.

Gradients follow torch's autograd formulas (``derivatives.yaml`` / ``FunctionsManual.cpp``),
first and second order, through ``jax.custom_jvp`` rules:

* ``binary_cross_entropy``: d/dx = ``(x - y) / max(x (1 - x), 1e-12)`` (about ``-1e12 * y`` at
  ``x = 0``, not the clamped-log derivative 0), d/dy = ``-logit(x)`` (unclamped: ``+-inf`` at
  ``x = 0 / 1``), and torch's double-backward formulas for the second derivatives.
* ``binary_cross_entropy_with_logits``: d/dx = ``(pos_weight*y + 1 - y) sigmoid(x) - pos_weight*y``,
  d/dy = ``-x`` (``log_sigmoid(-x) - pos_weight * log_sigmoid(x)`` with ``pos_weight``).

Documented deviations (values where torch is inexact; each is tested against a float64 /
high-precision reference, where jaxloss' error is never larger than torch's, up to XLA's CPU
backend flushing denormal results such as ``softplus(-90) = 8e-40`` in float32 to zero):

* ``binary_cross_entropy_with_logits`` evaluates ``(1 - y) softplus(x) + pos_weight y softplus(-x)``
  instead of torch's ``(1 - y) x - (1 + (pos_weight - 1) y) log_sigmoid(x)``, which cancels
  catastrophically for ``y x << 0`` (float32 torch gives 0 for ``x = -20, y = 0``; the truth is
  ``2.06e-9``). Both agree within the parity tolerances everywhere; gradients are torch's.
* ``soft_margin_loss`` evaluates ``softplus(-y x)``; torch's ``log1p(exp(-y x))`` overflows to
  ``inf`` (gradient NaN) once ``-y x`` exceeds ~88.7 in float32 (~709.8 in float64). jaxloss
  returns the true, finite value and gradient ``-y sigmoid(-y x)`` there.
* ``binary_cross_entropy`` in float16, input gradient at probabilities exactly 0 or 1 with an
  equal target (``x = y = 0`` or ``x = y = 1``): torch evaluates its backward
  ``(x - y) / max(x (1 - x), 1e-12)`` in half precision, where the ``1e-12`` clamp underflows
  to 0, so it returns ``0 / 0 = NaN``. jaxloss computes half precision in float32 (torch's
  opmath type, as everywhere) and returns 0, torch's own formula's value in float64 (and in
  float32 / bfloat16, where torch also gives 0). Where ``x != y`` at 0 / 1 both give
  ``+-inf`` in float16 (the float64 value ``+-1e12`` is beyond float16's range).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._checked import nan_where, poison, value_check
from jaxloss._dtypes import Array, ArrayLike, check_float, dtype_of
from jaxloss._registry import Number, Opmath, loss_function
from jaxloss._shapes import Reduction, broadcast_shapes, check_broadcast_into, reduce

_SymbolicZero = jax.custom_derivatives.SymbolicZero

# ATen's Loss.cpp declares ``constexpr float EPSILON = 1e-12`` for the BCE backward, so in
# float64 the clamp is float32(1e-12), not 1e-12. The double-backward formulas use a double.
_BCE_EPS = 9.999999960041972e-13  # float(np.float32(1e-12))
_BCE_EPS2 = 1e-12

_INPUT_RANGE_MSG = "all elements of input should be between 0 and 1"
_TARGET_RANGE_MSG = "all elements of target should be between 0 and 1"


def _is_zero(t: object) -> bool:
    return isinstance(t, _SymbolicZero)


def _sum_tangents(terms: list[Array], like: Array) -> Array:
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(like)


# --------------------------------------------------------------------------- softplus / sigmoid
@jax.custom_jvp
def _softplus(z: Array) -> Array:
    """``log(1 + exp(z))`` without overflow or cancellation; derivative ``sigmoid(z)``."""
    return jnp.maximum(z, 0) + jnp.log1p(jnp.exp(-jnp.abs(z)))


@_softplus.defjvp
def _softplus_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (z,), (dz,) = primals, tangents
    return _softplus(z), jax.nn.sigmoid(z) * dz


def _log_sigmoid(x: Array) -> Array:
    """``torch.nn.functional.logsigmoid``: ``-softplus(-x)``; derivative ``sigmoid(-x)``."""
    return -_softplus(-x)


# --------------------------------------------------------------------------- BCE on probabilities
def _bce_value(x: Array, y: Array) -> Array:
    # ATen: (y - 1) * max(log1p(-x), -100) - y * max(log(x), -100)
    return (y - 1) * jnp.maximum(jnp.log1p(-x), -100.0) - y * jnp.maximum(jnp.log(x), -100.0)


@jax.custom_jvp
def _bce_slope(x: Array, y: Array) -> Array:
    """torch's ``binary_cross_entropy_backward`` (per element, unit cotangent)."""
    return (x - y) / jnp.maximum((1 - x) * x, _BCE_EPS)


def _bce_slope_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    x, y = primals
    dx, dy = tangents
    terms = []
    if not _is_zero(dx):
        # binary_cross_entropy_double_backward
        # The barrier keeps XLA from folding (1 - x) + eps into (1 + eps) - x, which loses
        # eps in float32 (and gives 0 / 0 at x = 1 where torch has 1e24-scale values).
        num = x * x - 2 * x * y + y
        den = (x + _BCE_EPS2) ** 2 * (jax.lax.optimization_barrier(1 - x) + _BCE_EPS2) ** 2
        terms.append(num / den * dx)
    if not _is_zero(dy):
        # binary_cross_entropy_double_backward_target
        terms.append(-dy / jnp.maximum((1 - x) * x, _BCE_EPS2))
    return _bce_slope(x, y), _sum_tangents(terms, x)


_bce_slope.defjvp(_bce_slope_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _neg_logit(x: Array) -> Array:
    """``-torch.logit(x)`` (no eps): torch's d BCE / d target per element."""
    return -jnp.log(x / (1 - x))


@_neg_logit.defjvp
def _neg_logit_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    # logit_backward without eps: grad / (x (1 - x)) inside [0, 1], NaN outside.
    inside = (x >= 0) & (x <= 1)
    slope = nan_where(~inside, 1 / (x * (1 - x)))
    return _neg_logit(x), -slope * dx


@jax.custom_jvp
def _bce_elementwise(x: Array, y: Array) -> Array:
    return _bce_value(x, y)


def _bce_elementwise_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    x, y = primals
    dx, dy = tangents
    terms = []
    if not _is_zero(dx):
        terms.append(_bce_slope(x, y) * dx)
    if not _is_zero(dy):
        terms.append(_neg_logit(x) * dy)
    # the primal through the custom function itself, so that outer derivatives use these rules too
    return _bce_elementwise(x, y), _sum_tangents(terms, x)


_bce_elementwise.defjvp(_bce_elementwise_jvp, symbolic_zeros=True)


def _same_dtypes(values: dict[str, Any]) -> None:
    # Before the registration's upcast, which would make float16 and float32 look alike.
    input_dtype, target_dtype = dtype_of(values["input"]), dtype_of(values["target"])
    if not jnp.issubdtype(input_dtype, jnp.floating):
        raise TypeError(f"input must have a floating point dtype, got {input_dtype}")
    if target_dtype != input_dtype:
        raise TypeError(f"Found dtype {target_dtype} but expected {input_dtype}")


@loss_function(
    static_argnames=("reduction",),
    arrays={"input": "float", "target": "float", "weight": "real"},
    precheck=_same_dtypes,
    opmath=Opmath(promote=("input",), cast=("target", "weight")),
    module="BCELoss",
    torch="torch.nn.BCELoss",
)
def binary_cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    reduction: Reduction = "mean",
) -> Array:
    r"""Binary cross entropy between probabilities ``input`` and ``target`` (``torch.nn.BCELoss``).

    .. math:: \ell_i = -w_i \left[ y_i \max(\log x_i, -100) + (1 - y_i) \max(\log(1 - x_i), -100) \right]

    Args:
        input: probabilities in ``[0, 1]``, any shape ``(*)``.
        target: same shape and dtype as ``input``, values in ``[0, 1]``.
        weight: optional rescaling weight, broadcast to ``input``'s shape (it may not enlarge it).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or shape ``(*)`` for ``reduction='none'``, in ``input``'s dtype.

    Like torch, the logarithms are clamped at -100, so probabilities of exactly 0 and 1 give
    finite losses, while the gradient is torch's ``(x - y) / max(x (1 - x), 1e-12)`` (about
    ``-1e12`` at ``x = 0, y = 1``) and the target gradient ``-logit(x)``. ``weight`` is
    differentiable here (torch refuses to differentiate it).

    An ``input`` or ``target`` value outside ``[0, 1]`` (or NaN) makes the result NaN;
    :mod:`jaxloss.checked` raises torch's "all elements of input should be between 0 and 1"
    (or "... of target ...").

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> p, y = jnp.array([0.9, 0.2]), jnp.array([1.0, 0.0])
        >>> round(float(jaxloss.binary_cross_entropy(p, y)), 4)
        0.1643
    """
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({tuple(target.shape)}) that is different to the input size "
            f"({tuple(input.shape)}) is deprecated. Please ensure they have the same size."
        )
    x, y = input, target
    x_ok = (x >= 0) & (x <= 1)
    y_ok = (y >= 0) & (y <= 1)
    value_check(x_ok, _INPUT_RANGE_MSG)
    value_check(y_ok, _TARGET_RANGE_MSG)

    loss = _bce_elementwise(x, y)
    if weight is not None:
        check_broadcast_into(input.shape, broadcast_shapes(target.shape, weight.shape))
        loss = loss * weight
    loss = poison(loss, ~(x_ok & y_ok))
    return reduce(loss, reduction)


# --------------------------------------------------------------------------- BCE on logits
def _log1p_exp_neg_abs(x: Array) -> Array:
    """``log(1 + exp(-|x|))``: the part of ``softplus(x) = max(x, 0) + log(1 + exp(-|x|))``
    shared by ``softplus(x)`` and ``softplus(-x)``."""
    return jnp.log1p(jnp.exp(-jnp.abs(x)))


@jax.custom_jvp
def _bce_logits(x: Array, y: Array) -> Array:
    # (1 - y) softplus(x) + y softplus(-x) = max(x, 0) - x y + log(1 + exp(-|x|)): one exp and
    # one log1p per element, and only operations XLA:CPU fuses into the reduction that follows
    # (the two-softplus form made it write two input-sized temporaries first). Exact where
    # torch's form cancels: y = 0, x << 0 gives log1p(exp(x)), not 0.
    return jnp.maximum(x, 0) - x * y + _log1p_exp_neg_abs(x)


def _bce_logits_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    x, y = primals
    dx, dy = tangents
    terms = []
    if not _is_zero(dx):
        terms.append((jax.nn.sigmoid(x) - y) * dx)  # binary_cross_entropy_with_logits_backward
    if not _is_zero(dy):
        terms.append(-x * dy)  # binary_cross_entropy_with_logits_target_backward
    return _bce_logits(x, y), _sum_tangents(terms, x)


_bce_logits.defjvp(_bce_logits_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _bce_logits_pos(x: Array, y: Array, pw: Array) -> Array:
    # (1 - y) softplus(x) + pw y softplus(-x), the shared log(1 + exp(-|x|)) computed once
    py = pw * y
    return (1 - y) * jnp.maximum(x, 0) + py * jnp.maximum(-x, 0) + (1 - y + py) * _log1p_exp_neg_abs(x)


def _bce_logits_pos_jvp(
    primals: tuple[Array, Array, Array], tangents: tuple[Array, Array, Array]
) -> tuple[Array, Array]:
    x, y, pw = primals
    dx, dy, dpw = tangents
    terms = []
    if not _is_zero(dx):
        s = pw * y
        terms.append(((s + 1 - y) * jax.nn.sigmoid(x) - s) * dx)
    if not _is_zero(dy):
        terms.append((_log_sigmoid(-x) - _log_sigmoid(x) * pw) * dy)
    if not _is_zero(dpw):
        terms.append(y * _softplus(-x) * dpw)  # torch does not differentiate pos_weight
    return _bce_logits_pos(x, y, pw), _sum_tangents(terms, x)


_bce_logits_pos.defjvp(_bce_logits_pos_jvp, symbolic_zeros=True)


def _bce_with_logits_elementwise(x: Array, y: Array, pos_weight: Array | None) -> Array:
    """Unreduced, unweighted BCE on logits (``x``, ``y`` already in the working dtype)."""
    if pos_weight is None:
        return _bce_logits(x, y)
    pw_shape = broadcast_shapes(pos_weight.shape, y.shape)  # torch: (pos_weight - 1) * target
    check_broadcast_into(x.shape, pw_shape)
    return _bce_logits_pos(x, y, jnp.broadcast_to(pos_weight.astype(x.dtype), x.shape))


@loss_function(
    static_argnames=("reduction",),
    arrays={"input": "float", "target": "float", "weight": "real", "pos_weight": "real"},
    opmath=Opmath(promote=("input", "target"), cast=("weight",), result=("target",)),
    module="BCEWithLogitsLoss",
    torch="torch.nn.BCEWithLogitsLoss",
)
def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    weight: Array | None = None,
    reduction: Reduction = "mean",
    pos_weight: Array | None = None,
) -> Array:
    r"""Binary cross entropy on logits (``torch.nn.BCEWithLogitsLoss``).

    .. math::
        \ell_i = w_i \left[ (1 - y_i)\, \mathrm{softplus}(x_i) + p_i\, y_i\, \mathrm{softplus}(-x_i) \right]

    (torch's :math:`(1 - y) x - (1 + (p - 1) y) \log\sigma(x)`, evaluated without cancellation).

    Args:
        input: logits, any shape ``(*)``.
        target: same shape as ``input``, floating point (usually in ``[0, 1]``; not checked).
        weight: optional rescaling weight, broadcast to ``input``'s shape (it may not enlarge it).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.
        pos_weight: optional weight of positive examples, broadcast against ``target`` from the
            right, so shape ``(C,)`` weights the last (class) dimension of ``(N, *, C)``.

    Returns:
        A scalar, or shape ``(*)`` for ``reduction='none'``, in ``target``'s dtype (as torch).

    Gradients are torch's formulas: d/dx = ``(p y + 1 - y) sigmoid(x) - p y``, d/dy = ``-x``
    (``log_sigmoid(-x) - p log_sigmoid(x)`` with ``pos_weight``); logits of ``+-1e4`` give
    finite values and gradients. ``weight`` and ``pos_weight`` are differentiable here (torch
    refuses to differentiate them).

    Deviation: the value is the accurate one where torch's formula cancels (``y x << 0``, e.g.
    float32 ``x = -20, y = 0``: torch 0, truth and jaxloss ``2.06e-9``); the difference is far
    inside the parity tolerances.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> logits, y = jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0])
        >>> round(float(jaxloss.binary_cross_entropy_with_logits(logits, y)), 4)
        0.2201
        >>> round(float(jaxloss.binary_cross_entropy_with_logits(logits, y, pos_weight=jnp.array(3.0))), 4)
        0.347
    """
    check_float("input", input)
    if target.shape != input.shape:
        raise ValueError(
            f"Target size ({tuple(target.shape)}) must be the same as input size ({tuple(input.shape)})"
        )
    check_float("target", target)  # torch: "result type Float can't be cast to the desired output type Long"
    loss = _bce_with_logits_elementwise(input, target, pos_weight)
    if weight is not None:
        check_broadcast_into(input.shape, broadcast_shapes(input.shape, weight.shape))
        loss = loss * weight
    return reduce(loss, reduction)


# --------------------------------------------------------------------------- sigmoid focal loss
@jax.custom_jvp
def _pow_scalar(x: Array, exponent: ArrayLike) -> Array:
    """``torch.pow(x, exponent)`` for a scalar exponent, with torch's gradient rules:
    ``exponent * x ** (exponent - 1)``, exactly 0 for ``exponent == 0`` (JAX's ``jnp.power``
    gives NaN there at ``x = 0``), and ``x ** exponent * log(x)`` for the exponent (0 where
    ``x == 0``)."""
    return jnp.where(exponent == 0, jnp.ones_like(x), jnp.power(x, exponent))


@_pow_scalar.defjvp
def _pow_scalar_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    x, exponent = primals
    dx, dexponent = tangents
    off = exponent == 0
    base = jnp.where(off, jnp.ones_like(x), x)  # no inf from x ** -1 in the unused branch
    slope = jnp.where(off, jnp.zeros_like(x), exponent * _pow_scalar(base, exponent - 1))
    out = _pow_scalar(x, exponent)
    safe_x = jnp.where(x == 0, jnp.ones_like(x), x)
    return out, slope * dx + jnp.where(x == 0, jnp.zeros_like(x), out * jnp.log(safe_x)) * dexponent


@loss_function(
    static_argnames=("reduction",),
    numbers={"alpha": Number(), "gamma": Number()},
    arrays={"inputs": "float", "targets": "float"},
    opmath=Opmath(promote=("inputs", "targets")),
    reduction_message="Invalid Value for arg 'reduction': '{} \n Supported reduction modes: 'none', 'mean', 'sum'",
    module="SigmoidFocalLoss",
    forward=("inputs", "targets"),
)
def sigmoid_focal_loss(
    inputs: Array,
    targets: Array,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Sigmoid focal loss of RetinaNet (``torchvision.ops.sigmoid_focal_loss``).

    .. math::
        p_t = \sigma(x) y + (1 - \sigma(x))(1 - y), \quad
        \ell = \alpha_t \, \mathrm{BCEWithLogits}(x, y) \, (1 - p_t)^\gamma, \quad
        \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    Args:
        inputs: logits, any shape.
        targets: same shape as ``inputs``, floating point: 0 for the negative class, 1 for
            the positive class.
        alpha: weight of the positive class in ``(0, 1)``; a negative value (torchvision's
            ``-1``), ``-inf`` or NaN disables the ``alpha_t`` weighting (torchvision's
            ``if alpha >= 0``). Traced. Default ``0.25``.
        gamma: exponent of the modulating factor ``(1 - p_t)``. Traced. Default ``2``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'none'`` (torchvision's).

    Returns:
        Shape of ``inputs`` for ``reduction='none'``, else a scalar.

    Computed exactly as torchvision composes torch ops (so gradients are those of torch's
    autograd, including ``pow``'s ``gamma * base ** (gamma - 1)`` rule), with the BCE term of
    :func:`binary_cross_entropy_with_logits`.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> logits, y = jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0])
        >>> [round(v, 4) for v in jaxloss.sigmoid_focal_loss(logits, y).tolist()]
        [0.0005, 0.017]
        >>> round(float(jaxloss.sigmoid_focal_loss(logits, y, reduction='mean')), 4)
        0.0087
    """
    if targets.shape != inputs.shape:
        raise ValueError(
            f"Target size ({tuple(targets.shape)}) must be the same as input size ({tuple(inputs.shape)})"
        )
    check_float("inputs", inputs)
    check_float("targets", targets)
    x, y = inputs, targets

    p = jax.nn.sigmoid(x)
    ce_loss = _bce_logits(x, y)
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * _pow_scalar(1 - p_t, gamma)
    # torchvision: ``if alpha >= 0`` weights, else (negative, -inf, NaN) not: a select, so alpha
    # may be traced. The unused weighted branch sees a safe alpha, so that a NaN / -inf alpha
    # does not leak a 0 * NaN into the gradient.
    weighted = alpha >= 0
    safe_alpha = jnp.where(weighted, alpha, 0)
    alpha_t = safe_alpha * y + (1 - safe_alpha) * (1 - y)
    loss = jnp.where(weighted, alpha_t * loss, loss)
    return reduce(loss, reduction)


# --------------------------------------------------------------------------- soft margin
@loss_function(
    static_argnames=("reduction",),
    arrays={"input": "float", "target": "label"},
    opmath=Opmath(promote=("input", "target"), result=("input",)),
    module="SoftMarginLoss",
    torch="torch.nn.SoftMarginLoss",
)
def soft_margin_loss(input: Array, target: Array, reduction: Reduction = "mean") -> Array:
    r"""Two-class logistic loss (``torch.nn.SoftMarginLoss``).

    .. math:: \ell_i = \log(1 + \exp(-y_i x_i))

    Args:
        input: scores, any shape ``(*)``.
        target: labels (usually ``-1`` / ``1``), broadcastable to ``input``'s shape (it may not
            enlarge it); any real or integer dtype.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or shape ``(*)`` for ``reduction='none'``, in ``input``'s dtype.

    Deviation: evaluated as ``softplus(-y x)``, which stays finite and exact where torch's
    ``log1p(exp(-y x))`` overflows to ``inf`` with a NaN gradient (``-y x`` above ~88.7 in
    float32, ~709.8 in float64); the gradient there is the true ``-y sigmoid(-y x)``.
    Elsewhere values and gradients agree with torch within the parity tolerances. ``target``
    is differentiable here (torch refuses to differentiate it).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x, y = jnp.array([2.0, -1.0]), jnp.array([1.0, -1.0])
        >>> round(float(jaxloss.soft_margin_loss(x, y)), 4)
        0.2201
    """
    check_float("input", input)
    check_broadcast_into(input.shape, broadcast_shapes(input.shape, target.shape))
    loss = _softplus(-input * jnp.broadcast_to(target, input.shape))
    return reduce(loss, reduction)


@loss_function(
    static_argnames=("reduction",),
    arrays={"input": "float", "target": "real", "weight": "real"},
    reduction_message="{} is not valid",
    opmath=Opmath(promote=("input", "target", "weight")),
    module="MultiLabelSoftMarginLoss",
    torch="torch.nn.MultiLabelSoftMarginLoss",
)
def multilabel_soft_margin_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    reduction: Reduction = "mean",
) -> Array:
    r"""Multi-label one-versus-all logistic loss (``torch.nn.MultiLabelSoftMarginLoss``).

    .. math::
        \ell_n = -\frac{1}{C} \sum_c w_c
        \left[ y_{nc} \log\sigma(x_{nc}) + (1 - y_{nc}) \log\sigma(-x_{nc}) \right]

    Args:
        input: logits of shape ``(N, C)`` or ``(C,)`` (generally ``(*, C)``: the class
            dimension is the last one).
        target: ``0`` / ``1`` labels (any real or integer dtype), broadcastable with ``input``.
        weight: optional rescaling weight, e.g. per class ``(C,)``; broadcast with the loss
            exactly as torch does (``loss * weight``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        Shape ``(N,)`` (``()`` for a 1-D input) for ``reduction='none'``, else a scalar;
        dtype of ``input`` / ``target`` / ``weight`` promoted.

    Gradients of ``input``, ``target`` and ``weight`` are all torch's (this is a composite
    function in torch too).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> logits = jnp.array([[2.0, -1.0, 0.0]])
        >>> labels = jnp.array([[1.0, 0.0, 1.0]])
        >>> round(float(jaxloss.multilabel_soft_margin_loss(logits, labels)), 4)
        0.3778
    """
    check_float("input", input)
    if input.ndim == 0:
        raise ValueError("Dimension specified as -1 but tensor has no dimensions")
    shape = broadcast_shapes(target.shape, input.shape)  # torch: target * logsigmoid(input)
    x, y = input, target
    loss = -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))
    if weight is not None:
        shape = broadcast_shapes(shape, weight.shape)
        loss = loss * weight
    loss = jnp.broadcast_to(loss, shape)
    class_dim = input.ndim - 1
    loss = jnp.sum(loss, axis=class_dim) / input.shape[-1]
    return reduce(loss, reduction)
