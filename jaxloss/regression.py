"""Regression losses: L1, MSE, Huber, smooth L1, Poisson and Gaussian negative log-likelihood.

Each mirrors the ``torch.nn.functional`` function of the same name (torch 2.13): names,
parameter names and defaults (without torch's deprecated ``size_average`` / ``reduce``),
shapes, type promotion, reductions, error messages, values and gradients (first and second
order, including the gradient torch picks at every kink).

Shared torch behaviours:

* ``input`` / ``target`` of different shapes warn (torch's ``UserWarning``) and broadcast
  (l1, mse, huber, smooth L1); Poisson and Gaussian NLL broadcast silently, as in torch.
  Shapes that do not broadcast raise torch's ``The size of tensor a (..) must match ...``.
* Result dtype: torch's promotion of the floating arguments (an integer array never widens
  a float one: ``int64`` with ``float32`` gives ``float32``, also under ``jax_enable_x64``).
  ``huber_loss`` returns ``input``'s dtype, as torch does. float16 / bfloat16 are computed in
  float32 and the result is cast back.
* ``weight`` (l1, mse, huber) must have exactly ``input``'s shape (before broadcasting).
  ``'mean'`` divides by ``sum(weight)`` for l1 / mse, but by the element count for huber.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax.numpy as jnp

from jaxloss._checked import value_check
from jaxloss._dtypes import Array, ArrayLike, opmath_dtype, real_dtype, result_float_dtype, torch_dtype_name
from jaxloss._jvp import abs as abs_
from jaxloss._jvp import clamp_min_straight_through
from jaxloss._registry import Number, Opmath, loss_function
from jaxloss._shapes import Reduction, broadcast_shapes, check_reduction, reduce

_REDUCTIONS = ("none", "mean", "sum")
_NEGATIVE_VAR_MSG = "var has negative entry/entries"

# --------------------------------------------------------------------------- dtypes and shapes
def _broadcast_pair(input: Array, target: Array) -> tuple[Array, Array]:
    """torch's l1/mse/huber/smooth-L1 behaviour for differing shapes: warn, then broadcast.

    Callers pass arrays already in the working (opmath) dtype: the gradient of a broadcast is
    a sum over the broadcast dimensions, which must accumulate in float32 for float16 /
    bfloat16 inputs (as torch's ``sum_to_size``), not in the low-precision dtype, where it
    loses precision and overflows (a float16 partial sum beyond 65504 is inf)."""
    if input.shape != target.shape:
        warnings.warn(
            f"Using a target size ({tuple(target.shape)}) that is different to the input size "
            f"({tuple(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            UserWarning,
            stacklevel=3,
        )
        shape = broadcast_shapes(input.shape, target.shape)
        input, target = jnp.broadcast_to(input, shape), jnp.broadcast_to(target, shape)
    return input, target


def _check_weight(weight: Array, input_shape: tuple[int, ...]) -> None:
    # torch compares with the size of ``input`` as given, not the broadcast size.
    if tuple(weight.shape) != tuple(input_shape):
        raise ValueError("Weights and input must have the same size.")


def _check_weighted_reduction(reduction: str) -> None:
    # The weighted branch of torch's l1/mse/huber raises this message (not get_enum's).
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', 'sum'.")


def _apply_weight(loss: Array, loss_dtype: Any, weight: Array, reduction: str, mean_by_weight: bool) -> Array:
    """``loss * weight`` reduced as torch's weighted branch does; returns the result dtype.

    ``loss`` is the elementwise loss (in the compute dtype of ``loss_dtype``). With
    ``mean_by_weight`` ``'mean'`` is ``sum(loss * w) / sum(w)`` (l1, mse), else
    ``mean(loss * w)`` (huber).
    """
    out = result_float_dtype(loss_dtype, weight)
    work = opmath_dtype(out)
    w = weight.astype(work)
    weighted = loss.astype(work) * w
    _check_weighted_reduction(reduction)
    if reduction == "none":
        res = weighted
    elif reduction == "sum":
        res = jnp.sum(weighted)
    elif mean_by_weight:
        res = jnp.sum(weighted) / jnp.sum(w)
    else:
        res = jnp.mean(weighted)
    return res.astype(out)


# --------------------------------------------------------------------------- elementwise pieces
def _huber(d: Array, delta: float) -> Array:
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - delta / 2)``.

    Gradient: ``d`` inside, ``+-delta`` from ``|d| == delta`` on (torch's branch choice);
    second derivative 1 inside (also at ``d == 0``), 0 outside. Each branch only sees its
    own elements (the other gets 0), so neither an ``inf`` input in the quadratic branch nor
    ``delta = inf`` in the linear one gives a ``0 * inf`` NaN gradient.
    """
    z = abs_(d)
    quad = z < delta
    dq = jnp.where(quad, d, 0)
    zl, deltal = jnp.where(quad, 0, z), jnp.where(quad, 0, delta)
    return jnp.where(quad, 0.5 * dq * dq, deltal * (zl - 0.5 * deltal))


def _smooth_l1(d: Array, beta: ArrayLike) -> Array:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - beta / 2``; ``|d|`` for ``beta == 0``.

    At ``beta == 0`` no element is quadratic (``|d| < 0`` never holds), so the result is ``|d|``
    with the gradient ``sign(d)``; the quadratic branch divides by 1 there so that its unused
    derivative stays finite.
    """
    z = abs_(d)
    quad = z < beta
    dq = jnp.where(quad, d, 0)
    return jnp.where(quad, 0.5 * dq * dq / jnp.where(quad, beta, 1), z - 0.5 * beta)


# --------------------------------------------------------------------------- L1 / MSE
@loss_function(
    static_argnames=("reduction",),
    arrays={"input": "float", "target": "float", "weight": "real"},
    reductions=None,
    complex_inputs=True,
    module="L1Loss",
    fields=("reduction",),
    torch="torch.nn.L1Loss",
)
def l1_loss(
    input: Array,
    target: Array,
    reduction: Reduction = "mean",
    weight: Array | None = None,
) -> Array:
    r"""Mean absolute error, optionally weighted.

    .. math:: \ell_i = w_i \, |x_i - y_i|

    Args:
        input: predictions, any shape ``(*)``.
        target: same shape as ``input`` (another shape warns and broadcasts, as in torch).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.
        weight: optional per-element weights, exactly ``input``'s shape. With
            ``'mean'`` the result is ``sum(w * |x - y|) / sum(w)`` (torch's rule).

    Returns:
        A scalar, or shape ``(*)`` for ``reduction='none'``; dtype of ``input``/``target`` promoted
        (its real dtype for complex inputs: ``complex64`` gives ``float32``, as in torch).

    The gradient at ``x == y`` is 0 (``sign(0)``), as in torch.

    Complex ``input`` / ``target`` are accepted, as torch does: the loss is ``|x - y|`` (the
    modulus) and the gradient torch's ``sgn(x - y) = (x - y) / |x - y|``, 0 where ``x == y``.
    ``jax.grad`` returns it in JAX's convention, the complex conjugate of torch's ``.grad``:
    ``conj(jax.grad(f)(z)) == torch_grad``. (torch rejects complex for every other loss
    except ``poisson_nll_loss`` and the distance losses; so does jaxloss.)

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x, y = jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 2.0, 1.0])
        >>> round(float(jaxloss.l1_loss(x, y)), 4)
        0.8333
        >>> jaxloss.l1_loss(x, y, reduction='none').tolist()
        [0.5, 0.0, 2.0]
        >>> z = jnp.array([3 + 4j, 1j])  # complex: the modulus, a real result
        >>> out = jaxloss.l1_loss(z, jnp.zeros(2, jnp.complex64), reduction='sum')
        >>> float(out), out.dtype
        (6.0, dtype('float32'))
    """
    input_shape = input.shape
    dtype = result_float_dtype(input, target)
    work = opmath_dtype(dtype)
    input, target = _broadcast_pair(input.astype(work), target.astype(work))
    if weight is None:
        check_reduction(reduction)
    else:
        _check_weight(weight, input_shape)
    loss = abs_(input - target)
    dtype = real_dtype(dtype)  # complex: the modulus is real (complex64 -> float32)
    if weight is None:
        return reduce(loss, reduction).astype(dtype)
    return _apply_weight(loss, dtype, weight, reduction, mean_by_weight=True)


@loss_function(
    static_argnames=("reduction",), arrays={"input": "float", "target": "float", "weight": "real"}, reductions=None,
    module="MSELoss",
    fields=("reduction",),
    torch="torch.nn.MSELoss",
)
def mse_loss(
    input: Array,
    target: Array,
    reduction: Reduction = "mean",
    weight: Array | None = None,
) -> Array:
    r"""Mean squared error, optionally weighted (``torch.nn.functional.mse_loss``).

    .. math:: \ell_i = w_i \, (x_i - y_i)^2

    Args:
        input: predictions, any shape ``(*)``.
        target: same shape as ``input`` (another shape warns and broadcasts, as in torch).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.
        weight: optional per-element weights, exactly ``input``'s shape. With
            ``'mean'`` the result is ``sum(w (x - y)^2) / sum(w)`` (torch's rule).

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; the promoted dtype of
        ``input``, ``target`` (and ``weight``).

    Gradients with respect to ``input``, ``target`` and ``weight`` are torch's, and so are the
    second derivatives.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x, y = jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 2.0, 1.0])
        >>> round(float(jaxloss.mse_loss(x, y)), 4)
        1.4167
        >>> round(float(jaxloss.mse_loss(x, y, reduction='sum')), 4)
        4.25
    """
    input_shape = input.shape
    dtype = result_float_dtype(input, target)
    work = opmath_dtype(dtype)
    input, target = _broadcast_pair(input.astype(work), target.astype(work))
    if weight is None:
        check_reduction(reduction)
    else:
        _check_weight(weight, input_shape)
    d = input - target
    loss = d * d
    if weight is None:
        return reduce(loss, reduction).astype(dtype)
    return _apply_weight(loss, dtype, weight, reduction, mean_by_weight=True)


# --------------------------------------------------------------------------- Huber / smooth L1
@loss_function(
    static_argnames=("reduction",),
    numbers={"delta": Number(lambda v: v > 0, "huber_loss does not support non-positive values for delta.")},
    arrays={"input": "float", "target": "float", "weight": "real"},
    reductions=None,
    module="HuberLoss",
    fields=("reduction", "delta"),
    torch="torch.nn.HuberLoss",
)
def huber_loss(
    input: Array,
    target: Array,
    reduction: Reduction = "mean",
    delta: float = 1.0,
    weight: Array | None = None,
) -> Array:
    r"""Huber loss (``torch.nn.functional.huber_loss``), optionally weighted.

    .. math::
        \ell_i = w_i \begin{cases} \tfrac12 (x_i - y_i)^2 & |x_i - y_i| < \delta \\
                 \delta \, (|x_i - y_i| - \tfrac12 \delta) & \text{otherwise} \end{cases}

    Args:
        input: predictions, any shape ``(*)``, floating.
        target: same shape as ``input`` (another shape warns and broadcasts, as in torch).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.
        delta: the threshold, ``> 0``; ``inf`` (every element quadratic) has torch's
            finite gradient. Default 1.0.
        weight: optional per-element weights, exactly ``input``'s shape. ``'mean'`` is the
            mean of ``w * loss`` over the elements (torch divides by the element count here,
            not by ``sum(w)`` as for l1 / mse).

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; ``input``'s dtype (torch
        computes in the promoted dtype of ``input`` and ``target`` and writes ``input``'s),
        promoted with ``weight``'s when weighted.

    The gradient is ``x - y`` inside and ``+-delta`` from ``|x - y| == delta`` on; the second
    derivative 1 inside and 0 from the threshold on, as torch's double backward.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x, y = jnp.array([0.5, 3.0]), jnp.zeros(2)
        >>> jaxloss.huber_loss(x, y, reduction='none', delta=1.0).tolist()
        [0.125, 2.5]
        >>> round(float(jaxloss.huber_loss(x, y, delta=jnp.float32(2.0))), 4)  # a traced delta
        2.0625
    """
    input_shape = input.shape
    out_dtype = jnp.dtype(input.dtype)
    promoted = result_float_dtype(input, target)
    compute = opmath_dtype(promoted)
    input, target = _broadcast_pair(input.astype(compute), target.astype(compute))
    if weight is None:
        check_reduction(reduction)
    else:
        _check_weight(weight, input_shape)
    if not jnp.issubdtype(out_dtype, jnp.floating):
        raise TypeError(
            f"result type {torch_dtype_name(promoted)} can't be cast to the desired output "
            f"type {torch_dtype_name(out_dtype)}"
        )
    loss = _huber(input - target, delta)
    # torch writes the elementwise loss in input's dtype (float32 input, float64 target: rounded).
    loss = loss.astype(opmath_dtype(out_dtype))
    if weight is None:
        return reduce(loss, reduction).astype(out_dtype)
    return _apply_weight(loss, out_dtype, weight, reduction, mean_by_weight=False)


@loss_function(
    static_argnames=("reduction",),
    numbers={"beta": Number(lambda v: v >= 0, "smooth_l1_loss does not support negative values for beta.")},
    arrays={"input": "float", "target": "float"},
    opmath=Opmath(promote=("input", "target")),
    module="SmoothL1Loss",
    torch="torch.nn.SmoothL1Loss",
)
def smooth_l1_loss(
    input: Array,
    target: Array,
    reduction: Reduction = "mean",
    beta: float = 1.0,
) -> Array:
    r"""Smooth L1 loss (``torch.nn.functional.smooth_l1_loss``).

    .. math::
        \ell_i = \begin{cases} \tfrac12 (x_i - y_i)^2 / \beta & |x_i - y_i| < \beta \\
                 |x_i - y_i| - \tfrac12 \beta & \text{otherwise} \end{cases}

    Args:
        input: predictions, any shape ``(*)``.
        target: same shape as ``input`` (another shape warns and broadcasts, as in torch).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.
        beta: the threshold, ``>= 0``. ``beta == 0`` is exactly :func:`l1_loss` (as in torch).

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; promoted dtype.

    The gradient is ``(x - y) / beta`` inside and ``+-1`` from ``|x - y| == beta`` on (0 at
    ``x == y`` when ``beta == 0``), as in torch.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x, y = jnp.array([0.5, 3.0]), jnp.zeros(2)
        >>> jaxloss.smooth_l1_loss(x, y, reduction='none', beta=1.0).tolist()
        [0.125, 2.5]
    """
    input, target = _broadcast_pair(input, target)
    return reduce(_smooth_l1(input - target, beta), reduction)


# --------------------------------------------------------------------------- Poisson NLL
@loss_function(
    static_argnames=("reduction",),
    bools=("log_input", "full"),
    numbers={"eps": Number()},
    arrays={"input": "float", "target": "float"},
    integer_inputs=True,
    opmath=Opmath(promote=("input", "target")),
    module="PoissonNLLLoss",
    torch="torch.nn.PoissonNLLLoss",
)
def poisson_nll_loss(
    input: Array,
    target: Array,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
) -> Array:
    r"""Poisson negative log-likelihood (``torch.nn.functional.poisson_nll_loss``).

    .. math::
        \ell_i = \begin{cases} e^{x_i} - y_i x_i & \text{log\_input} \\
                 x_i - y_i \log(x_i + \epsilon) & \text{otherwise} \end{cases}
                 \; + \; [\text{full} \wedge y_i > 1] \, (y_i \log y_i - y_i + \tfrac12 \log(2 \pi y_i))

    Args:
        input: the log-rate (``log_input=True``) or the rate, any shape.
        target: counts; broadcast with ``input`` (silently, as in torch).
        log_input: see above. Default ``True``.
        full: add Stirling's approximation of ``log(y!)`` where ``target > 1``. Default ``False``.
        eps: added to the rate before the log when ``log_input=False``. Default ``1e-8``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; promoted dtype.

    ``target`` is differentiable, as in torch. With ``full=True`` its gradient is NaN where
    ``target <= 0``: torch masks the Stirling term's *value* there but its backward still
    multiplies the zero cotangent by ``log(0) = -inf`` (``0 * -inf``); jaxloss does the same.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> log_rate, counts = jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0])
        >>> round(float(jaxloss.poisson_nll_loss(log_rate, counts)), 4)
        0.3591
        >>> round(float(jaxloss.poisson_nll_loss(log_rate, counts, full=True)), 4)
        1.2412
    """
    broadcast_shapes(target.shape, input.shape)  # torch's first op is ``target * input``
    x, t = input, target
    if log_input:
        loss = jnp.exp(x) - t * x
    else:
        loss = x - t * jnp.log(x + eps)
    if full:
        stirling = t * jnp.log(t) - t + 0.5 * jnp.log((2 * math.pi) * t)
        loss = loss + jnp.where(t <= 1, jnp.zeros((), t.dtype), stirling)
    return reduce(loss, reduction)


# --------------------------------------------------------------------------- Gaussian NLL
def _check_python_var(values: dict[str, Any]) -> None:
    """A Python-number ``var`` is concrete before tracing: torch's error for a negative one."""
    var = values["var"]
    if isinstance(var, (int, float)) and not isinstance(var, bool) and var < 0:
        raise ValueError(_NEGATIVE_VAR_MSG)


@loss_function(
    static_argnames=("reduction",),
    bools=("full",),
    numbers={"eps": Number()},
    arrays={"input": "float", "target": "float", "var": "float"},
    integer_inputs=True,
    reduction_message="{} is not valid",
    precheck=_check_python_var,
    module="GaussianNLLLoss",
    forward=("input", "target", "var"),
    kw_only=True,
    torch="torch.nn.GaussianNLLLoss",
)
def gaussian_nll_loss(
    input: Array,
    target: Array,
    var: Array | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> Array:
    r"""Gaussian negative log-likelihood (``torch.nn.functional.gaussian_nll_loss``).

    .. math::
        \ell_i = \tfrac12 \left(\log \max(v_i, \epsilon)
                  + \frac{(x_i - y_i)^2}{\max(v_i, \epsilon)}\right) \; [+ \tfrac12 \log 2\pi]

    Args:
        input: the means, any shape ``(N, *)`` or ``(*)``.
        target: samples, broadcast with ``input``.
        var: the variances: a Python ``float`` or any 0-d array (one variance for all,
            computed in the dtype of ``input``/``target``), or an array of ``input``'s shape,
            of ``input``'s shape without the last dimension, or of ``input``'s shape with
            exactly one dimension of size 1 (torch's rule: the var sizes at the mismatched
            dimensions must sum to 1); any other shape raises ``var is of incorrect size``.
            Deviation: torch raises that error for a 0-d *tensor* unless ``input`` is 1-D;
            under ``jit`` a Python float is itself a 0-d array, so jaxloss accepts every 0-d
            ``var`` as a scalar variance (the same value wherever torch accepts it).
        full: add the constant ``0.5 log(2 pi)``. Default ``False``.
        eps: ``var`` is clamped from below at ``eps``; a NaN ``eps`` gives NaN (value and
            gradients), as torch's clamp. Default ``1e-6``.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; the promoted dtype of
        ``input``, ``target`` and ``var`` (a 0-d ``var`` takes ``input``'s dtype, as torch's float).

    As in torch the clamp is invisible to autograd: the gradient with respect to ``var`` is
    evaluated at the clamped value and passed through the clamp (``-5e11`` at ``var = 0``,
    not 0). ``target`` is differentiable. A negative ``var`` entry raises torch's ``ValueError``
    for a Python float; for an array, whose values ``jit`` cannot inspect, the result (and
    every gradient) is NaN, and :mod:`jaxloss.checked` raises ``var has negative entry/entries``.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> mean, sample = jnp.array([0.0, 1.0]), jnp.array([0.5, 1.0])
        >>> round(float(jaxloss.gaussian_nll_loss(mean, sample, jnp.array([1.0, 0.5]))), 4)
        -0.1108
        >>> round(float(jaxloss.gaussian_nll_loss(mean, sample, 1.0)), 4)  # one variance for all
        0.0625
    """
    var = jnp.asarray(var)

    if var.ndim == 0:
        # One variance for every element (torch: ``var * ones_like(input)``, input's dtype).
        dtype = result_float_dtype(input, target)
        if not jnp.issubdtype(input.dtype, jnp.floating):
            dtype = result_float_dtype(jnp.float32, target)  # torch: ones_like(int input) * float
    else:
        dtype = result_float_dtype(input, target, var)
        if var.shape != input.shape:
            if tuple(input.shape[:-1]) == tuple(var.shape):
                var = var[..., None]  # homoscedastic over the last dimension
            elif input.ndim == var.ndim and sum(v for i, v in zip(input.shape, var.shape) if i != v) == 1:
                pass  # one dimension of size 1, broadcast
            else:
                raise ValueError("var is of incorrect size")
    broadcast_shapes(broadcast_shapes(input.shape, target.shape), var.shape)

    work = opmath_dtype(dtype)
    x, t, v = input.astype(work), target.astype(work), var.astype(work)
    negative = jnp.any(v < 0)
    value_check(~negative, _NEGATIVE_VAR_MSG)
    v = clamp_min_straight_through(v, eps)
    # Poison value and every gradient (an additive NaN reaches d/dvar too; a select would not).
    v = v + jnp.where(negative, jnp.asarray(jnp.nan, work), jnp.asarray(0, work))
    d = x - t
    loss = 0.5 * (jnp.log(v) + jnp.square(d) / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return reduce(loss, reduction).astype(dtype)

