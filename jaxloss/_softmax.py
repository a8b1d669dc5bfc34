"""Softmax cross-entropy kernels and class-index checks shared by the losses with a class axis.

:mod:`jaxloss.classification` (``cross_entropy``, ``nll_loss``, ``focal_loss``) and
:mod:`jaxloss.linear` (``linear_cross_entropy``, chunk by chunk) compute with these.

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

A class index outside ``[0, C)`` that is not ``ignore_index`` multiplies its sample's loss by
NaN: the value *and* the gradient of that sample's logits are NaN (a training step cannot
update silently), the other samples keep theirs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss._checked import first_bad, poison, value_check
from jaxloss._dtypes import Array, ArrayLike
from jaxloss._shapes import shape_str

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


def log_softmax_parts(x: Array, axis: int) -> tuple[Array, Array]:
    """``(m, logs)`` with ``log_softmax(x) = (x - m) - logs``, torch's order of operations."""
    m = lax.stop_gradient(jnp.expand_dims(lax.reduce_max(x, (axis,)), axis))
    return m, _shifted_logsumexp(x, m, axis)


def log_softmax_from_parts(x: Array, m: Array, logs: Array) -> Array:
    """The whole ``log_softmax(x) = (x - m) - logs`` from :func:`log_softmax_parts`, for a class sum.

    The barriers cost no arithmetic (the bits are those of ``(x - m) - logs``). They stop
    XLA from sharing ``x - m`` and the broadcast ``logs`` with the log-sum-exp reduction:
    XLA:CPU's library reductions (YNNPACK) fuse one broadcast operand, so without the
    barriers it wrote both out as input-sized temporaries before summing (traced
    ``label_smoothing``, probability targets: 2 -> at most 1 such temporary, 1.3x faster
    value+grad at 32768x1000).
    """
    return (x - lax.optimization_barrier(m)) - lax.optimization_barrier(logs)


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


def class_axis(shape: tuple[int, ...], axis: int = 1) -> int:
    """The class axis of an input of ``shape``: ``axis`` (torch's 1 by default), 0 when unbatched.

    An unbatched ``(C,)`` input has its classes on axis 0 whatever ``axis`` says (torch's
    rule for 1, and the only axis there is for -1).
    """
    ndim = len(shape)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be int, not {type(axis).__name__}")
    if ndim == 1:
        if axis not in (-1, 0, 1):
            raise ValueError(f"axis {axis} is out of bounds for an unbatched input of shape {shape_str(shape)}")
        return 0
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for input of shape {shape_str(shape)}")
    return axis % ndim


def torch_layout(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """``shape`` with the class axis moved to torch's position (1, or 0 when unbatched),
    for the shape checks, which are written in torch's layout."""
    if len(shape) == 1:
        return tuple(shape)
    rest = [d for i, d in enumerate(shape) if i != axis]
    return (rest[0], shape[axis], *rest[1:])


def check_input(input: Array, fname: str) -> None:
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if not jnp.issubdtype(input.dtype, jnp.floating):
        raise TypeError(f"{fname}: input must have a floating point dtype, got {input.dtype}")


def check_class_input(input: Array, fname: str, ignore_index: int, axis: int) -> tuple[int, tuple[int, ...]]:
    """The checks every class-axis loss opens with; returns the class axis and the shape in torch's layout."""
    check_input(input, fname)
    check_ignore_index(ignore_index)
    axis = class_axis(input.shape, axis)
    return axis, torch_layout(input.shape, axis)


def check_index_target(input_shape: tuple[int, ...], target: Array) -> Array:
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


def check_weight(weight: Array | None, input_shape: tuple[int, ...], prefix: str = "") -> None:
    if weight is None:
        return
    n_classes = input_shape[0 if len(input_shape) == 1 else 1]  # torch's layout
    if weight.ndim != 1 or weight.shape[0] != n_classes:
        if len(input_shape) > 2 and not prefix:  # torch's nll_loss2d wording for K-dimensional input
            raise ValueError("weight tensor should be defined either for all or no classes")
        raise ValueError(
            f"{prefix}weight tensor should be defined either for all {n_classes} classes or no classes "
            f"but got weight tensor of shape: {shape_str(weight.shape)}"
        )
    if not (jnp.issubdtype(weight.dtype, jnp.floating) or jnp.issubdtype(weight.dtype, jnp.integer)):
        raise TypeError(f"weight must have a floating point dtype, got {weight.dtype}")


def check_ignore_index(ignore_index: int) -> None:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be int, not {type(ignore_index).__name__}")


# --------------------------------------------------------------------------- class-index targets


def ignore_mask(target: Array, ignore_index: int) -> Array:
    """``target == ignore_index`` without overflowing the target's integer dtype."""
    info = jnp.iinfo(target.dtype)
    if not info.min <= ignore_index <= info.max:
        return jnp.zeros(target.shape, bool)
    return target == jnp.asarray(ignore_index, target.dtype)


def bad_targets(target: Array, n_classes: int, ignore_index: int) -> Array:
    """Class indices outside ``[0, C)`` that are not ``ignore_index``."""
    return ~in_range(target, n_classes) & ~ignore_mask(target, ignore_index)


def in_range(target: Array, n_classes: int) -> Array:
    """``0 <= target < n_classes`` without overflowing the target's integer dtype."""
    if n_classes > jnp.iinfo(target.dtype).max:
        return target >= 0
    return (target < n_classes) & (target >= 0)


def check_targets_in_range(target: Array, bad: Array) -> None:
    """Record torch's ``Target {t} is out of bounds.`` check (raised by :mod:`jaxloss.checked`)."""
    value_check(~bad, "Target {} is out of bounds.", first_bad(bad, target))


@jax.custom_jvp
def focal_term(logp: Array, gamma: ArrayLike) -> Array:
    """``-(1 - p)^gamma * log p`` for ``gamma >= 0``, with a finite gradient everywhere."""
    u = -jnp.expm1(logp)  # 1 - p, accurate near p = 1
    return -(u**gamma) * logp


@focal_term.defjvp
def _focal_term_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    # d/dl [-(1 - e^l)^g l] = u^g (g p l / u - 1), u = 1 - p. l / u stays bounded (-> -1 at
    # p -> 1) and p l -> 0 at p -> 0, so the derivative is finite for every gamma > 0, where
    # the chain rule through u^g would give inf * 0 = NaN at p = 1 for gamma < 1.
    # d/dgamma = -u^g log(u) l, 0 where u = 0 (the limit).
    logp, gamma = primals
    dlogp, dgamma = tangents
    u = -jnp.expm1(logp)
    p = jnp.exp(logp)
    pos = u > 0
    ratio = jnp.where(pos, logp / jnp.where(pos, u, 1), -1)  # log p / (1 - p)
    p_ratio = jnp.where(p > 0, p * ratio, 0)
    ug = u**gamma
    out = -ug * logp
    tangent = ug * (gamma * p_ratio - 1) * dlogp
    if not isinstance(dgamma, jax.custom_derivatives.SymbolicZero) and jnp.result_type(dgamma) != jax.dtypes.float0:
        tangent = tangent - jnp.where(pos, ug * jnp.log(jnp.where(pos, u, 1)), 0) * logp * dgamma
    return out, tangent


def index_loss(
    input: Array,
    target: Array,
    weight: Array | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: ArrayLike | None,
    *,
    axis: int,
    log_softmax: bool,
    alpha: Array | None = None,
    gamma: ArrayLike | None = None,
    check: bool = True,
) -> Array:
    """NLL (``log_softmax=False``) / cross entropy / focal loss with class-index targets.

    ``input`` and ``weight`` are already in the compute dtype; shapes are checked; ``axis``
    is the class axis of ``input`` (``target`` has ``input``'s shape without it).
    ``label_smoothing`` / ``gamma`` of ``None`` leave their term out of the computation.
    """
    n_classes = input.shape[axis]
    dtype = input.dtype
    ignored = ignore_mask(target, ignore_index)
    valid = in_range(target, n_classes)
    bad = ~valid & ~ignored
    if check:
        check_targets_in_range(target, bad)
    safe = jnp.where(valid, target, 0).astype(jnp.int32)
    safe_k = jnp.expand_dims(safe, axis)

    picked = jnp.squeeze(_pick(input, safe_k, axis), axis)
    if log_softmax:
        m, logs = log_softmax_parts(input, axis)
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

    if gamma is not None:
        term = focal_term(logp_t, gamma)  # -(1 - p)^gamma log p
    else:
        term = -logp_t
    if alpha is not None:
        term = term * (alpha if alpha.ndim == 0 else jnp.take(alpha, safe, mode="clip"))
    if w_t is not None:
        term = term * w_t
    zero = jnp.zeros((), dtype)
    loss = jnp.where(active, poison(term, bad), zero)
    loss = _reduce_index(loss, reduction, total_weight)

    if log_softmax and label_smoothing is not None:
        # torch: a value <= 0 means no smoothing; traced values are clamped the same way.
        label_smoothing = jnp.maximum(label_smoothing, 0)
        logp = log_softmax_from_parts(input, m, logs)
        if weight is not None:
            wshape = [1] * input.ndim
            wshape[axis] = n_classes
            logp = logp * weight.reshape(wshape)
        smooth = -jnp.sum(logp, axis=axis)
        smooth = jnp.where(active, poison(smooth, bad), zero)
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


def prob_loss(
    input: Array, target: Array, weight: Array | None, reduction: str, label_smoothing: ArrayLike | None,
    *, axis: int,
) -> Array:
    """Cross entropy with class-probability targets (``input``'s shape), classes on ``axis``."""
    n_classes = input.shape[axis]
    m, logs = log_softmax_parts(input, axis)
    logp = log_softmax_from_parts(input, m, logs)
    if label_smoothing is not None:
        label_smoothing = jnp.maximum(label_smoothing, 0)
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
