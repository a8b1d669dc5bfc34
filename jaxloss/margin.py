"""Hinge / margin losses: multilabel_margin_loss, multi_margin_loss, margin_ranking_loss,
hinge_embedding_loss.

Each mirrors the ``torch.nn.functional`` function of the same name (torch 2.13),
including the gradient at the hinge kinks:

* ``margin_ranking_loss`` and ``hinge_embedding_loss`` are torch composites of
  ``clamp_min(·, 0)``, whose gradient passes at a tie (``z == 0``):
  :func:`jaxloss._core.clamp_min`.
* ``multi_margin_loss`` and ``multilabel_margin_loss`` are torch kernels that
  count a term only where ``z > 0`` (strictly), forward and backward: at a tie the
  gradient is 0. These two have no double backward in torch; here their second
  derivative is the exact one (0 for the piecewise-linear ones, ``2`` on the
  active terms of ``multi_margin_loss(p=2)``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _core
from jaxloss._core import (
    Array,
    Reduction,
    broadcast_shapes,
    check_float,
    check_integer,
    check_reduction,
    loss_function,
    opmath_dtype,
    result_float_dtype,
    shape_str,
    value_check,
)

__all__ = ["hinge_embedding_loss", "margin_ranking_loss", "multi_margin_loss", "multilabel_margin_loss"]


def _torch_size(shape: tuple[int, ...]) -> str:
    """A shape as torch prints ``tensor.size()``: ``torch.Size([2, 3])``."""
    return f"torch.Size({list(shape)})"


def _frames(input: Array) -> tuple[int, int]:
    """torch's ``multi(label)_margin_loss_shape_check``: (number of samples, number of classes)."""
    ndims = input.ndim
    if not ((ndims == 2 and input.shape[1] != 0) or (ndims == 1 and input.shape[0] != 0) or ndims == 0):
        raise ValueError(
            "Expected non-empty vector or matrix with optional 0-dim batch size, but got: "
            f"{shape_str(input.shape)}"
        )
    if ndims <= 1:
        return 1, (1 if ndims == 0 else input.shape[0])
    return input.shape[0], input.shape[1]


def _poison(loss: Array, invalid: Array, x: Array) -> Array:
    """Per-sample ``loss`` (N,), NaN where ``invalid``, in value and in the gradient of the
    whole row of ``x`` (N, C); valid samples are untouched, value and gradient."""
    touch = jnp.where(invalid, jnp.sum(x, axis=1), 0)  # makes every x of an invalid row receive the NaN
    return (loss + touch) * jnp.where(invalid, jnp.asarray(jnp.nan, loss.dtype), jnp.asarray(1, loss.dtype))


# --------------------------------------------------------------------------- multilabel_margin_loss


def _multilabel_hinge_sum(x: Array, t: Array) -> Array:
    """Per row of ``x`` (N, C): the sum over the labels ``j`` (the entries of ``t`` before its
    first negative one) and the non-label classes ``i`` of ``1 - x[t_j] + x[i]`` where that is > 0.

    In ``O(C log C)`` per row rather than torch's pairwise ``O(C * labels)`` (which would be
    ``O(C^2)`` here, the number of labels being a run-time value): with ``a_j = 1 - x[t_j]``,
    ``a_j + x_i > 0`` exactly when ``x_i > -a_j`` (a rounded sum is 0 only when the exact one
    is), so each label's term is ``count_j * a_j + (sum of the x_i above -a_j)``, read off the
    sorted non-label scores. The set of counted pairs is exactly torch's (strict ``> 0``), so
    the gradient is too: ``+1`` per counted pair for ``x_i``, ``-count_j`` for ``x[t_j]``.
    """
    n, c = x.shape
    active = (jnp.cumsum(t < 0, axis=1) == 0) & (t < c)  # the entries before the first negative one
    tt = jnp.where(active, t, 0).astype(jnp.int32)
    rows = jnp.arange(n)[:, None]
    is_label = jnp.zeros((n, c), bool).at[rows, jnp.where(active, tt, c)].set(True, mode="drop")
    a = 1 - jnp.take_along_axis(x, tt, axis=1)  # (N, C): 1 - x[n, t[n, j]], rounded as in torch
    keys = jnp.where(is_label, -jnp.inf, x)  # labels sort first and are never above a threshold
    keys, vals = lax.sort((keys, jnp.where(is_label, 0, x)), dimension=1, num_keys=1)
    above = jnp.flip(jnp.cumsum(jnp.flip(vals, 1), axis=1), 1)  # above[k] = sum of vals[k:]
    above = jnp.concatenate([above, jnp.zeros((n, 1), x.dtype)], axis=1)
    first = jax.vmap(functools.partial(jnp.searchsorted, side="right"))(keys, -a)  # first key > -a_j
    count = (c - first).astype(x.dtype)
    terms = count * a + jnp.take_along_axis(above, first, axis=1)
    return jnp.sum(jnp.where(active, terms, 0), axis=1)


@loss_function(static_argnames=("reduction",))
def multilabel_margin_loss(input: Array, target: Array, reduction: Reduction = "mean") -> Array:
    r"""Multi-class multi-label hinge loss (``torch.nn.functional.multilabel_margin_loss``).

    .. math:: \ell_n = \frac{1}{C} \sum_{j} \sum_{i \notin y_n}
        \max\bigl(0,\; 1 - x_{n, y_{n,j}} + x_{n,i}\bigr)

    where ``j`` runs over the target indices of sample ``n`` up to (excluding) its
    first ``-1``, and ``i`` over the classes that are not among them. A class listed
    twice counts twice (as in torch).

    Args:
        input: ``(N, C)``, ``(C,)`` or ``()`` scores (floating).
        target: class indices, same shape as ``input`` (``(C,)`` / one element for an
            unbatched input), int32 or int64. Each row holds the target classes,
            then ``-1``; everything from the first ``-1`` on is ignored.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'`` (over samples).

    Returns:
        A scalar, or ``(N,)`` for ``reduction='none'`` with a 2-D target; dtype of ``input``.

    Entries outside ``[-1, C)`` (anywhere in the row, as torch checks them all)
    make that sample's loss and gradient NaN; :mod:`jaxloss.checked` raises
    torch's ``argument #2 'target' is out of range``. A term counts only where
    ``1 - x_y + x_i > 0`` strictly, forward and backward, as in torch's kernel.
    The work is ``O(N C log C)`` (a sort per row), the memory ``O(N C)``.
    """
    check_reduction(reduction)
    check_float("input", input)
    check_integer("target", target)
    nframe, dim = _frames(input)
    if input.ndim <= 1:
        ok = target.ndim <= 1 and target.size == dim
    else:
        ok = target.ndim == 2 and target.shape == (nframe, dim)
    if not ok:
        raise ValueError(
            f"inconsistent target size: {shape_str(target.shape)} for input of size: {shape_str(input.shape)}"
        )

    dtype = input.dtype
    x = input.astype(opmath_dtype(dtype)).reshape(nframe, dim)
    t = target.reshape(nframe, dim)
    bad = jnp.any((t < -1) | (t >= dim), axis=1)
    value_check(~bad, "argument #2 'target' is out of range")
    loss = _multilabel_hinge_sum(x, t) / dim
    loss = _poison(loss, bad, x)
    if reduction == "none" and target.ndim > 1:
        return loss.astype(dtype)
    if reduction == "mean":
        return jnp.mean(loss).astype(dtype)
    return jnp.sum(loss).astype(dtype)  # 'sum', and 'none' of an unbatched input (a scalar in torch)


# --------------------------------------------------------------------------- multi_margin_loss
@loss_function(static_argnames=("p", "margin", "reduction"))
def multi_margin_loss(
    input: Array,
    target: Array,
    p: int = 1,
    margin: float = 1.0,
    weight: Array | None = None,
    reduction: Reduction = "mean",
) -> Array:
    r"""Multi-class hinge loss (``torch.nn.functional.multi_margin_loss``).

    .. math:: \ell_n = \frac{1}{C} \sum_{i \ne y_n}
        w_{y_n} \max\bigl(0,\; \mathrm{margin} - x_{n, y_n} + x_{n, i}\bigr)^p

    Args:
        input: ``(N, C)``, ``(C,)`` or ``()`` scores (floating).
        target: ``(N,)`` class indices (``(1,)`` or ``()`` for an unbatched input),
            int32 or int64.
        p: 1 or 2 (anything else raises torch's ``only p == 1 and p == 2 supported``).
        margin: Default 1.
        weight: optional ``(C,)`` per-class weights, indexed by the *target* class.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. ``'mean'`` divides by the
            number of samples ``N`` (not by the weights). Default ``'mean'``.

    Returns:
        A scalar, or ``(N,)`` for ``reduction='none'`` with a 1-D target; dtype of ``input``.

    A target outside ``[0, C)`` makes that sample's loss and gradient NaN;
    :mod:`jaxloss.checked` raises torch's ``target out of range``. A term counts
    only where ``margin - x_y + x_i > 0`` strictly (torch's kernel): at a tie its
    gradient is 0. torch cannot differentiate with respect to ``weight``; here its
    gradient is the exact one.
    """
    check_reduction(reduction)
    if p != 1 and p != 2:
        raise ValueError("only p == 1 and p == 2 supported")
    if weight is not None and jnp.ndim(weight) != 1:
        raise ValueError("weight must be one-dimensional")
    check_float("input", input)
    check_integer("target", target)
    nframe, dim = _frames(input)
    if not (target.ndim <= 1 and target.size == nframe):
        raise ValueError(
            "multi_margin_loss: target tensor should be 1-D with size equal to the number of input samples "
            f"(batch size). Expected target size [{nframe}], but got {shape_str(target.shape)}. "
            f"Input has shape {shape_str(input.shape)}."
        )
    if weight is not None and jnp.size(weight) != dim:
        raise ValueError(f"inconsistent weight size, expected {dim} but got {shape_str(jnp.shape(weight))}")

    dtype = input.dtype
    work = opmath_dtype(dtype)
    x = input.astype(work).reshape(nframe, dim)
    t = target.reshape(nframe)
    valid = (t >= 0) & (t < dim)
    value_check(valid, "target out of range")
    tt = jnp.where(valid, t, 0).astype(jnp.int32)
    x_target = jnp.take_along_axis(x, tt[:, None], axis=1, mode="clip")  # (N, 1)
    z = margin - x_target + x  # same rounding as torch's kernel
    counted = (z > 0) & (jnp.arange(dim) != tt[:, None])
    h = z if p == 1 else z * z
    if weight is not None:
        h = h * jnp.take(jnp.asarray(weight).astype(work), tt, mode="clip")[:, None]
    loss = jnp.sum(jnp.where(counted, h, 0), axis=1) / dim
    loss = _poison(loss, ~valid, x)
    if reduction == "none" and target.ndim > 0:
        return loss.astype(dtype)
    if reduction == "mean":
        return jnp.mean(loss).astype(dtype)
    return jnp.sum(loss).astype(dtype)  # 'sum', and 'none' of an unbatched input (a scalar in torch)


# --------------------------------------------------------------------------- margin_ranking_loss
@loss_function(static_argnames=("margin", "reduction"))
def margin_ranking_loss(
    input1: Array, input2: Array, target: Array, margin: float = 0.0, reduction: Reduction = "mean"
) -> Array:
    r"""Ranking hinge loss (``torch.nn.functional.margin_ranking_loss``).

    .. math:: \ell = \max\bigl(0,\; -y \, (x_1 - x_2) + \mathrm{margin}\bigr)

    Args:
        input1: any shape.
        input2: same number of dimensions as ``input1``, broadcastable with it.
        target: same number of dimensions, broadcastable; usually ±1 (any value is
            used as it is). Differentiable, as in torch.
        margin: Default 0.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; the promoted
        floating dtype of the three arguments.

    The gradient passes at a tie (``-y (x_1 - x_2) + margin == 0``), as torch's ``clamp_min``.
    """
    check_reduction(reduction)
    if not (input1.ndim == input2.ndim == target.ndim):
        raise ValueError(
            "margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            f"input1: {_torch_size(input1.shape)}, input2: {_torch_size(input2.shape)}, "
            f"target: {_torch_size(target.shape)} "
        )
    broadcast_shapes(target.shape, broadcast_shapes(input1.shape, input2.shape))
    dtype = result_float_dtype(input1, input2, target)
    work = opmath_dtype(dtype)
    x1, x2, y = (a.astype(work) for a in (input1, input2, target))
    loss = _core.clamp_min(-y * (x1 - x2) + margin, 0.0)
    return _core.reduce(loss, reduction).astype(dtype)


# --------------------------------------------------------------------------- hinge_embedding_loss
@loss_function(static_argnames=("margin", "reduction"))
def hinge_embedding_loss(
    input: Array, target: Array, margin: float = 1.0, reduction: Reduction = "mean"
) -> Array:
    r"""Hinge embedding loss (``torch.nn.functional.hinge_embedding_loss``).

    .. math:: \ell = [y \ne 1] \max(0, \mathrm{margin} - x) + [y \ne -1] \, x

    (so ``x`` for ``y = 1``, ``max(0, margin - x)`` for ``y = -1``, and both for any
    other target value, exactly as torch).

    Args:
        input: any shape (floating), typically distances.
        target: broadcastable with ``input``; ±1.
        margin: Default 1.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; dtype of ``input``.

    The gradient of ``max(0, margin - x)`` passes at ``x == margin`` (torch's
    ``clamp_min``). torch computes garbage in integer arithmetic for an integer
    ``input`` (and fails for ``'mean'``); here an integer ``input`` raises ``TypeError``.
    """
    check_reduction(reduction)
    check_float("input", input)
    broadcast_shapes(target.shape, input.shape)
    dtype = input.dtype
    x = input.astype(opmath_dtype(dtype))
    zero = jnp.zeros((), x.dtype)
    loss = jnp.where(target != 1, _core.clamp_min(margin - x, 0.0), zero) + jnp.where(target != -1, x, zero)
    return _core.reduce(loss, reduction).astype(dtype)
