"""Multi-class losses on logits / log-probabilities: cross entropy, NLL, focal loss.

``cross_entropy`` and ``nll_loss`` mirror ``torch.nn.functional`` (torch 2.13):
shapes ``(C)``, ``(N, C)`` and ``(N, C, d1, ..., dK)`` (class axis 1, or 0 when
unbatched; ``axis=`` moves it, e.g. ``axis=-1`` for channels-last ``(N, H, W, C)``),
class-index targets (any integer dtype: int64, int32, uint8...) or,
for ``cross_entropy``, class-probability targets (floating, ``input``'s shape),
``weight``, ``ignore_index``, ``label_smoothing`` and the three reductions, with
torch's formulas, denominators and error messages. ``focal_loss`` is the
multi-class focal loss (Lin et al. 2017) with the same conventions. The kernels
live in :mod:`jaxloss._softmax`.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxloss._dtypes import Array, opmath_dtype, result_float_dtype
from jaxloss._registry import Number, Opmath, loss_function
from jaxloss._shapes import Reduction, shape_str
from jaxloss._softmax import (
    check_class_input,
    check_index_target,
    check_weight,
    index_loss,
    prob_loss,
)

# --------------------------------------------------------------------------- public losses


_LABEL_SMOOTHING = Number(
    lambda v: v <= 1.0, "label_smoothing must be between 0.0 and 1.0. Got: {:g}", off=lambda v: v <= 0.0
)


@loss_function(
    static_argnames=("ignore_index", "reduction", "axis"),
    numbers={"label_smoothing": _LABEL_SMOOTHING},
    arrays={"input": "float", "weight": "real"},
    module="CrossEntropyLoss",
    fields=("weight", "ignore_index", "reduction", "label_smoothing"),
    torch="torch.nn.CrossEntropyLoss",
)
def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float | Array = 0.0,
    axis: int = 1,
) -> Array:
    r"""Cross entropy between logits and class indices or class probabilities (``F.cross_entropy``).

    .. math::
        \ell_n = -w_{y_n} \log \frac{\exp x_{n,y_n}}{\sum_c \exp x_{n,c}}

    Args:
        input: unnormalised logits, ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``
            (classes on axis 1, or 0 when unbatched).
        target: class indices — any integer dtype (int64 and int32 alike; torch
            itself accepts only int64 / uint8), shape ``()``, ``(N)`` or
            ``(N, d1, ..., dK)``, values in ``[0, C)`` or ``ignore_index`` — or class
            probabilities: floating, exactly ``input``'s shape.
        weight: optional ``(C,)`` per-class rescaling weight.
        ignore_index: class-index targets equal to it contribute nothing (loss 0,
            gradient 0) and are left out of the ``'mean'`` denominator. Must be
            negative (e.g. the default -100) with probability targets.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. With class indices,
            ``'mean'`` is ``sum_n w_{y_n} l_n / sum_n w_{y_n}`` over the non-ignored
            targets (NaN when every target is ignored, as in torch); with
            probabilities it divides by the number of samples ``N * d1 * ... * dK``.
        label_smoothing: in ``[0, 1]``: mixes the target with the uniform
            distribution. With class indices the loss is torch's
            ``(1 - s) * nll + s / C * smooth``, ``smooth_n = -sum_c w_c log p_{n,c}``,
            both reduced with the same denominator. As in torch, a value ``> 1``
            raises and a value ``<= 0`` means no smoothing. Traced: a new value (e.g. a
            schedule inside a jitted train step) does not recompile; a traced value above 1
            is checked by :mod:`jaxloss.checked` only.
        axis: the class axis of ``input`` (static). Default 1, torch's; ``axis=-1`` takes
            channels-last logits ``(N, d1, ..., dK, C)`` without a transpose, with the
            target ``(N, d1, ..., dK)``. An unbatched ``(C,)`` input has its classes on 0.

    Returns:
        A scalar, or the per-sample loss (``target``'s shape for indices,
        ``input``'s shape without the class axis for probabilities) for ``'none'``.
        The dtype is ``input``'s (promoted with ``target`` / ``weight`` for
        probability targets, as torch does). float16 / bfloat16 are computed in float32.

    A class index outside ``[0, C)`` that is not ``ignore_index`` makes its loss
    (and any reduction including it) NaN; :mod:`jaxloss.checked` raises torch's
    ``Target {t} is out of bounds.`` instead. Gathers never wrap around.
    Unlike torch, a float ``weight`` of another precision is cast, not rejected.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
        >>> target = jnp.array([0, 2])
        >>> round(float(jaxloss.cross_entropy(logits, target)), 4)
        0.67
        >>> round(float(jaxloss.cross_entropy(logits, target, label_smoothing=0.1)), 4)
        0.745
        >>> channels_last = jnp.zeros((2, 4, 4, 3))  # (N, H, W, C)
        >>> jaxloss.cross_entropy(channels_last, jnp.zeros((2, 4, 4), int), reduction='none', axis=-1).shape
        (2, 4, 4)
    """
    axis, torch_shape = check_class_input(input, "cross_entropy", ignore_index, axis)
    if target.shape == input.shape:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(
                f"Expected floating point type for target with class probabilities, got {target.dtype}"
            )
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        check_weight(weight, torch_shape, prefix="cross_entropy: ")
        # cross_entropy keeps its own round trip: the result's dtype depends on the target's kind
        # (probabilities: promoted with target and weight; class indices: the input's).
        arrays = (input, target) if weight is None else (input, target, weight)
        dtype = result_float_dtype(*arrays)
        work = opmath_dtype(dtype)
        w = None if weight is None else weight.astype(work)
        x, y = input.astype(work), target.astype(work)
        return prob_loss(x, y, w, reduction, label_smoothing, axis=axis).astype(dtype)
    target = check_index_target(torch_shape, target)
    check_weight(weight, torch_shape)
    dtype = input.dtype
    work = opmath_dtype(dtype)
    w = None if weight is None else weight.astype(work)
    out = index_loss(
        input.astype(work), target, w, ignore_index, reduction, label_smoothing, axis=axis, log_softmax=True
    )
    return out.astype(dtype)


@loss_function(
    static_argnames=("ignore_index", "reduction", "axis"),
    arrays={"input": "float", "weight": "real"},
    opmath=Opmath(promote=("input",), cast=("weight",)),
    module="NLLLoss",
    fields=("weight", "ignore_index", "reduction"),
    torch="torch.nn.NLLLoss",
)
def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    axis: int = 1,
) -> Array:
    r"""Negative log-likelihood of log-probabilities and class indices (``F.nll_loss``).

    .. math:: \ell_n = -w_{y_n} x_{n, y_n}

    Args:
        input: log-probabilities, ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: class indices (any integer dtype), ``()``, ``(N)`` or ``(N, d1, ..., dK)``.
        weight: optional ``(C,)`` per-class weight.
        ignore_index: targets equal to it contribute nothing and are left out of
            the ``'mean'`` denominator.
        reduction: ``'none'`` | ``'mean'`` (``sum_n w_{y_n} l_n / sum_n w_{y_n}``,
            NaN when every target is ignored) | ``'sum'``.
        axis: the class axis of ``input`` (static), as for :func:`cross_entropy`. Default 1.

    Returns:
        A scalar, or ``target``'s shape for ``'none'``; ``input``'s dtype.

    Out-of-range class indices give NaN (``jaxloss.checked.nll_loss`` raises
    torch's ``Target {t} is out of bounds.``).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]]))
        >>> round(float(jaxloss.nll_loss(log_probs, jnp.array([0, 2]))), 4)
        0.67
        >>> round(float(jaxloss.nll_loss(log_probs, jnp.array([0, -100]))), 4)  # ignore_index
        0.2413
    """
    axis, torch_shape = check_class_input(input, "nll_loss", ignore_index, axis)
    target = check_index_target(torch_shape, target)
    check_weight(weight, torch_shape)
    return index_loss(input, target, weight, ignore_index, reduction, None, axis=axis, log_softmax=False)


@loss_function(
    static_argnames=("ignore_index", "reduction", "axis"),
    numbers={
        "gamma": Number(lambda v: v >= 0, "gamma must be a non-negative number, got {!r}", off=lambda v: v == 0)
    },
    arrays={"input": "float", "weight": "real", "alpha": "real"},
    opmath=Opmath(promote=("input",), cast=("weight", "alpha")),
    module="FocalLoss",
    fields=("weight", "ignore_index", "reduction", "alpha", "gamma"),
)
def focal_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    alpha: Array | float | None = None,
    gamma: float | Array = 2.0,
    axis: int = 1,
) -> Array:
    r"""Multi-class focal loss on logits with class-index targets (Lin et al., 2017).

    .. math::
        \ell_n = -w_{y_n}\, \alpha_{y_n} (1 - p_{n,y_n})^\gamma \log p_{n,y_n},
        \qquad p = \mathrm{softmax}(x)

    torch has no multi-class focal loss; this one keeps :func:`cross_entropy`'s
    leading parameters and semantics (shapes, integer targets, ``weight``,
    ``ignore_index``, reductions). With ``gamma=0`` and ``alpha=None`` it *is*
    ``cross_entropy`` (the same computation, bit for bit).

    Args:
        input: logits, ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: class indices (any integer dtype), as for :func:`cross_entropy`.
        weight: optional ``(C,)`` per-class weight; ``'mean'`` divides by the
            sum of the non-ignored targets' weights, as cross entropy does.
        ignore_index: targets equal to it contribute nothing.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        alpha: ``None`` (no balancing), a scalar (a constant factor), or a
            ``(C,)`` array of per-class factors :math:`\alpha_c`. Unlike
            ``weight``, ``alpha`` is not part of the ``'mean'`` denominator.
        gamma: focusing parameter, ``>= 0``, traced (differentiable; a Python 0 compiles
            the plain cross entropy). ``(1 - p)`` is computed as
            ``-expm1(log p)``; the gradient is finite everywhere, including at
            ``p = 1`` for ``0 < gamma < 1`` (where the naive chain rule gives NaN:
            its limit is 0).
        axis: the class axis of ``input`` (static), as for :func:`cross_entropy`. Default 1.

    Returns:
        A scalar, or ``target``'s shape for ``'none'``; ``input``'s dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
        >>> target = jnp.array([0, 2])
        >>> round(float(jaxloss.focal_loss(logits, target, gamma=2.0)), 4)
        0.2497
        >>> bool(jaxloss.focal_loss(logits, target, gamma=0.0) == jaxloss.cross_entropy(logits, target))
        True
    """
    axis, torch_shape = check_class_input(input, "focal_loss", ignore_index, axis)
    target = check_index_target(torch_shape, target)
    check_weight(weight, torch_shape)
    if alpha is not None:
        n_classes = input.shape[axis]
        if alpha.ndim != 0 and alpha.shape != (n_classes,):
            raise ValueError(f"alpha must be a scalar or have shape ({n_classes},), got {shape_str(alpha.shape)}")
    return index_loss(
        input, target, weight, ignore_index, reduction, None, axis=axis, log_softmax=True, alpha=alpha, gamma=gamma
    )
