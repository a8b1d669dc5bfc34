"""Multi-class losses on logits / log-probabilities: cross entropy, NLL, focal loss.

``cross_entropy`` and ``nll_loss`` mirror ``torch.nn.functional`` (torch 2.13):
shapes ``(C)``, ``(N, C)`` and ``(N, C, d1, ..., dK)`` (class axis 1, or 0 when
unbatched), class-index targets (any integer dtype: int64, int32, uint8...) or,
for ``cross_entropy``, class-probability targets (floating, ``input``'s shape),
``weight``, ``ignore_index``, ``label_smoothing`` and the three reductions, with
torch's formulas, denominators and error messages. ``focal_loss`` is the
multi-class focal loss (Lin et al. 2017) with the same conventions.

How the softmax is computed (speed, and torch's numerics):

* One ``max`` pass and one fused pass for ``log(sum(exp(x - max)))`` (the target
  logit is a gather). ``log p = (x - max) - logsumexp`` is formed in torch's
  order, so values agree with torch's CPU kernel to the last bits.
* Gradients: a ``custom_jvp`` on the shifted log-sum-exp (tangent
  ``sum(softmax * dx)``) and on the target gather (tangent: a masked sum) make
  the reverse pass a single fused elementwise loop,
  ``grad = c * softmax - c * onehot`` (plus the smoothing term), with no
  scatter and no softmax materialised in the forward pass. Both rules are plain
  JAX, so forward mode, ``vmap`` and second derivatives (Hessian-vector
  products) work and agree with torch's double backward.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss._core import (
    Array,
    Reduction,
    check_reduction,
    loss_function,
    opmath_dtype,
    result_float_dtype,
    shape_str,
    value_check,
)

# --------------------------------------------------------------------------- softmax pieces


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _shifted_logsumexp(x: Array, m: Array, axis: int) -> Array:
    """``log(sum(exp(x - m), axis, keepdims=True))`` (``m`` the row max, kept dims)."""
    return jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True))


@_shifted_logsumexp.defjvp
def _shifted_logsumexp_jvp(axis: int, primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    x, m = primals
    dx, dm = tangents
    logs = _shifted_logsumexp(x, m, axis)
    # softmax, recomputed where the tangent is used so that it fuses into the backward loop. The
    # barrier gives the backward its own ``x - m``: without it XLA shares (materialises) the
    # forward's ``x - m`` between the forward reduction and the backward loop.
    p = jnp.exp((x - lax.optimization_barrier(m)) - logs)
    return logs, jnp.sum(p * dx, axis=axis, keepdims=True) - dm  # d/dm = -sum(p) = -1


def _log_softmax_parts(x: Array, axis: int) -> tuple[Array, Array]:
    """``(m, logs)`` with ``log_softmax(x) = (x - m) - logs``, torch's order of operations."""
    m = lax.stop_gradient(jnp.expand_dims(lax.reduce_max(x, (axis,)), axis))
    return m, _shifted_logsumexp(x, m, axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _pick(x: Array, index: Array, axis: int) -> Array:
    """``take_along_axis(x, index, axis)`` for in-range ``index`` (size 1 along ``axis``).

    The tangent is a masked sum rather than a gather, so that its transpose is
    an elementwise select (fused into the backward loop) instead of a scatter.
    """
    return jnp.take_along_axis(x, index, axis=axis, mode="promise_in_bounds")


@_pick.defjvp
def _pick_jvp(axis: int, primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    x, index = primals
    dx, _ = tangents
    hit = lax.broadcasted_iota(index.dtype, x.shape, axis) == index
    return _pick(x, index, axis), jnp.sum(
        jnp.where(hit, dx, jnp.zeros((), dx.dtype)), axis=axis, keepdims=True
    )


# --------------------------------------------------------------------------- validation


def _class_axis(input: Array | tuple[int, ...]) -> int:
    return 0 if len(getattr(input, "shape", input)) == 1 else 1


def _check_input(input: Array, fname: str) -> None:
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if not jnp.issubdtype(input.dtype, jnp.floating):
        raise TypeError(f"{fname}: input must have a floating point dtype, got {input.dtype}")


def _check_index_target(input_shape: tuple[int, ...], target: Array) -> Array:
    """torch's ``nll_loss_nd`` shape checks; returns ``target`` (a ``(1,)`` target of a 1-D input squeezed)."""
    ndim = len(input_shape)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        hint = ""
        if jnp.issubdtype(target.dtype, jnp.floating):
            hint = (
                f" (a floating target holds class probabilities and must have input's shape "
                f"{shape_str(input_shape)}, got {shape_str(target.shape)})"
            )
        raise TypeError(
            f"expected target dtype to be an integer type (class indices: int64, int32, uint8...), "
            f"but got {target.dtype}{hint}"
        )
    if ndim != 1 and (target.shape[0] if target.ndim else 0) != input_shape[0]:
        raise ValueError(
            f"Expected input batch_size ({input_shape[0]}) to match target batch_size "
            f"({target.shape[0] if target.ndim else 0})."
        )
    if ndim <= 2:
        if target.ndim > 1:
            raise ValueError("0D or 1D target tensor expected, multi-target not supported")
        if ndim == 1 and target.ndim == 1:
            if target.shape[0] != 1:
                raise ValueError(
                    f"For 1D input, 1D target must have size 1, but got target size: {target.shape[0]}"
                )
            target = target.reshape(())
    elif ndim == 4:
        if target.ndim != 3:
            raise ValueError(
                "only batches of spatial targets supported (3D tensors) but got targets of dimension: "
                f"{target.ndim}"
            )
        if target.shape[1:] != input_shape[2:]:
            raise ValueError(
                f"size mismatch (got input: {shape_str(input_shape)} , target: {shape_str(target.shape)}"
            )
    elif target.shape[1:] != input_shape[2:]:
        out_size = (input_shape[0], *input_shape[2:])
        raise ValueError(f"Expected target size {shape_str(out_size)}, got {shape_str(target.shape)}")
    return target


def _check_weight(weight: Array | None, input_shape: tuple[int, ...], prefix: str = "") -> None:
    if weight is None:
        return
    n_classes = input_shape[_class_axis(input_shape)]
    if weight.ndim != 1 or weight.shape[0] != n_classes:
        if len(input_shape) > 2 and not prefix:  # torch's nll_loss2d wording for K-dimensional input
            raise ValueError("weight tensor should be defined either for all or no classes")
        raise ValueError(
            f"{prefix}weight tensor should be defined either for all {n_classes} classes or no classes "
            f"but got weight tensor of shape: {shape_str(weight.shape)}"
        )
    if not (jnp.issubdtype(weight.dtype, jnp.floating) or jnp.issubdtype(weight.dtype, jnp.integer)):
        raise TypeError(f"weight must have a floating point dtype, got {weight.dtype}")


def _check_label_smoothing(label_smoothing: float) -> None:
    if label_smoothing > 1.0:
        raise ValueError(
            f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing:g}"
        )  # C++ formatting


def _check_ignore_index(ignore_index: int) -> None:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be int, not {type(ignore_index).__name__}")


# --------------------------------------------------------------------------- class-index targets


def _ignore_mask(target: Array, ignore_index: int) -> Array:
    """``target == ignore_index`` without overflowing the target's integer dtype."""
    info = jnp.iinfo(target.dtype)
    if not info.min <= ignore_index <= info.max:
        return jnp.zeros(target.shape, bool)
    return target == jnp.asarray(ignore_index, target.dtype)


def _bad_targets(target: Array, n_classes: int, ignore_index: int) -> Array:
    """Class indices outside ``[0, C)`` that are not ``ignore_index``."""
    return ~_in_range(target, n_classes) & ~_ignore_mask(target, ignore_index)


def _in_range(target: Array, n_classes: int) -> Array:
    """``0 <= target < n_classes`` without overflowing the target's integer dtype."""
    if n_classes > jnp.iinfo(target.dtype).max:
        return target >= 0
    return (target < n_classes) & (target >= 0)


def check_targets_in_range(target: Array, bad: Array) -> None:
    """Record torch's ``Target {t} is out of bounds.`` check (raised by :mod:`jaxloss.checked`)."""
    first_bad = jnp.ravel(target)[jnp.argmax(jnp.ravel(bad))] if target.size else jnp.zeros((), target.dtype)
    value_check(~bad, "Target {} is out of bounds.", first_bad)


def _focal_term(logp_t: Array, gamma: float) -> Array:
    """``-(1 - p)^gamma * log p`` for ``gamma > 0``, with a finite gradient everywhere."""
    return _focal_core(logp_t, gamma)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _focal_core(logp: Array, gamma: float) -> Array:
    u = -jnp.expm1(logp)  # 1 - p, accurate near p = 1
    return -(u**gamma) * logp


@_focal_core.defjvp
def _focal_core_jvp(gamma: float, primals: tuple[Array], tangents: tuple[Array]):
    # d/dl [-(1 - e^l)^g l] = u^g (g p l / u - 1), u = 1 - p. l / u stays bounded (-> -1 at
    # p -> 1) and p l -> 0 at p -> 0, so the derivative is finite for every gamma > 0, where
    # the chain rule through u^g would give inf * 0 = NaN at p = 1 for gamma < 1.
    (logp,), (dlogp,) = primals, tangents
    u = -jnp.expm1(logp)
    p = jnp.exp(logp)
    pos = u > 0
    ratio = jnp.where(pos, logp / jnp.where(pos, u, 1), -1)  # log p / (1 - p)
    p_ratio = jnp.where(p > 0, p * ratio, 0)
    deriv = (u**gamma) * (gamma * p_ratio - 1)
    return _focal_core(logp, gamma), deriv * dlogp


def _index_loss(
    input: Array,
    target: Array,
    weight: Array | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    *,
    log_softmax: bool,
    alpha: Array | None = None,
    gamma: float = 0.0,
    check: bool = True,
) -> Array:
    """NLL (``log_softmax=False``) / cross entropy / focal loss with class-index targets.

    ``input`` and ``weight`` are already in the compute dtype; shapes are checked.
    """
    axis = _class_axis(input)
    n_classes = input.shape[axis]
    dtype = input.dtype
    ignored = _ignore_mask(target, ignore_index)
    in_range = _in_range(target, n_classes)
    bad = ~in_range & ~ignored
    if check:
        check_targets_in_range(target, bad)
    safe = jnp.where(in_range, target, 0).astype(jnp.int32)
    safe_k = jnp.expand_dims(safe, axis)

    picked = jnp.squeeze(_pick(input, safe_k, axis), axis)
    if log_softmax:
        m, logs = _log_softmax_parts(input, axis)
        logp_t = (picked - jnp.squeeze(m, axis)) - jnp.squeeze(logs, axis)
    else:
        logp_t = picked

    active = ~ignored
    if weight is None:
        w_t = None
        total_weight = jnp.sum(active, dtype=dtype) if reduction == "mean" else None
    else:
        w_t = jnp.take(weight, safe, mode="clip") if n_classes else jnp.zeros(safe.shape, dtype)
        total_weight = jnp.sum(jnp.where(active, w_t, 0)) if reduction == "mean" else None

    if gamma != 0.0:
        term = _focal_term(logp_t, gamma)  # -(1 - p)^gamma log p
    else:
        term = -logp_t
    if alpha is not None:
        term = term * (alpha if alpha.ndim == 0 else jnp.take(alpha, safe, mode="clip"))
    if w_t is not None:
        term = term * w_t
    zero = jnp.zeros((), dtype)
    nan = jnp.asarray(jnp.nan, dtype)
    loss = jnp.where(bad, nan, jnp.where(active, term, zero))
    loss = _reduce_index(loss, reduction, total_weight)

    if log_softmax and label_smoothing > 0.0:
        logp = (input - m) - logs
        if weight is not None:
            wshape = [1] * input.ndim
            wshape[axis] = n_classes
            logp = logp * weight.reshape(wshape)
        smooth = -jnp.sum(logp, axis=axis)
        smooth = jnp.where(bad, nan, jnp.where(active, smooth, zero))
        smooth = _reduce_index(smooth, reduction, total_weight)
        loss = (1 - label_smoothing) * loss + smooth * (label_smoothing / n_classes)
    return loss


def _reduce_index(loss: Array, reduction: str, total_weight: Array | None) -> Array:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.sum(loss) / total_weight


# --------------------------------------------------------------------------- probability targets


def _prob_loss(
    input: Array, target: Array, weight: Array | None, reduction: str, label_smoothing: float
) -> Array:
    axis = _class_axis(input)
    n_classes = input.shape[axis]
    m, logs = _log_softmax_parts(input, axis)
    logp = (input - m) - logs
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + (label_smoothing / n_classes)
    prod = logp * target
    if weight is not None:
        wshape = [1] * input.ndim
        wshape[axis] = n_classes
        prod = prod * weight.reshape(wshape)
    if reduction == "none":
        return -jnp.sum(prod, axis=axis)
    total = -jnp.sum(prod)
    if reduction == "sum":
        return total
    return total / (input.size // n_classes if n_classes else 0)


# --------------------------------------------------------------------------- public losses


@loss_function(static_argnames=("ignore_index", "reduction", "label_smoothing"))
def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
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
            raises and a value ``<= 0`` means no smoothing.

    Returns:
        A scalar, or the per-sample loss (``target``'s shape for indices,
        ``input``'s shape without the class axis for probabilities) for ``'none'``.
        The dtype is ``input``'s (promoted with ``target`` / ``weight`` for
        probability targets, as torch does). float16 / bfloat16 are computed in float32.

    A class index outside ``[0, C)`` that is not ``ignore_index`` makes its loss
    (and any reduction including it) NaN; :mod:`jaxloss.checked` raises torch's
    ``Target {t} is out of bounds.`` instead. Gathers never wrap around.
    Unlike torch, a float ``weight`` of another precision is cast, not rejected.
    """
    check_reduction(reduction)
    _check_input(input, "cross_entropy")
    _check_ignore_index(ignore_index)
    _check_label_smoothing(label_smoothing)
    if target.shape == input.shape:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(
                f"Expected floating point type for target with class probabilities, got {target.dtype}"
            )
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        _check_weight(weight, input.shape, prefix="cross_entropy: ")
        arrays = (input, target) if weight is None else (input, target, weight)
        dtype = result_float_dtype(*arrays)
        work = opmath_dtype(dtype)
        w = None if weight is None else weight.astype(work)
        return _prob_loss(input.astype(work), target.astype(work), w, reduction, label_smoothing).astype(
            dtype
        )
    target = _check_index_target(input.shape, target)
    _check_weight(weight, input.shape)
    dtype = input.dtype
    work = opmath_dtype(dtype)
    w = None if weight is None else weight.astype(work)
    out = _index_loss(
        input.astype(work), target, w, ignore_index, reduction, label_smoothing, log_softmax=True
    )
    return out.astype(dtype)


@loss_function(static_argnames=("ignore_index", "reduction"))
def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
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

    Returns:
        A scalar, or ``target``'s shape for ``'none'``; ``input``'s dtype.

    Out-of-range class indices give NaN (``jaxloss.checked.nll_loss`` raises
    torch's ``Target {t} is out of bounds.``).
    """
    check_reduction(reduction)
    _check_input(input, "nll_loss")
    _check_ignore_index(ignore_index)
    target = _check_index_target(input.shape, target)
    _check_weight(weight, input.shape)
    dtype = input.dtype
    work = opmath_dtype(dtype)
    w = None if weight is None else weight.astype(work)
    return _index_loss(input.astype(work), target, w, ignore_index, reduction, 0.0, log_softmax=False).astype(
        dtype
    )


@loss_function(static_argnames=("ignore_index", "reduction", "gamma"))
def focal_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    alpha: Array | float | None = None,
    gamma: float = 2.0,
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
        gamma: focusing parameter, ``>= 0`` (static). ``(1 - p)`` is computed as
            ``-expm1(log p)``; the gradient is finite everywhere, including at
            ``p = 1`` for ``0 < gamma < 1`` (where the naive chain rule gives NaN:
            its limit is 0).

    Returns:
        A scalar, or ``target``'s shape for ``'none'``; ``input``'s dtype.
    """
    check_reduction(reduction)
    _check_input(input, "focal_loss")
    _check_ignore_index(ignore_index)
    if not isinstance(gamma, (int, float)) or gamma < 0:
        raise ValueError(f"gamma must be a non-negative number, got {gamma!r}")
    target = _check_index_target(input.shape, target)
    _check_weight(weight, input.shape)
    dtype = input.dtype
    work = opmath_dtype(dtype)
    w = None if weight is None else weight.astype(work)
    a = None
    if alpha is not None:
        a = jnp.asarray(alpha)
        n_classes = input.shape[_class_axis(input)]
        if a.ndim != 0 and a.shape != (n_classes,):
            raise ValueError(f"alpha must be a scalar or have shape ({n_classes},), got {shape_str(a.shape)}")
        a = a.astype(work)
    out = _index_loss(
        input.astype(work),
        target,
        w,
        ignore_index,
        reduction,
        0.0,
        log_softmax=True,
        alpha=a,
        gamma=float(gamma),
    )
    return out.astype(dtype)
