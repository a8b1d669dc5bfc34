"""Hinge / margin losses: multilabel_margin_loss, multi_margin_loss, margin_ranking_loss,
hinge_embedding_loss.

Each mirrors the ``torch.nn.functional`` function of the same name (torch 2.13),
including the gradient at the hinge kinks:

* ``margin_ranking_loss`` and ``hinge_embedding_loss`` are torch composites of
  ``clamp_min(·, 0)``, whose gradient passes at a tie (``z == 0``):
  :func:`jaxloss._jvp.clamp_min`.
* ``multi_margin_loss`` and ``multilabel_margin_loss`` are torch kernels that
  count a term only where ``z > 0`` (strictly), forward and backward: at a tie the
  gradient is 0. These two have no double backward in torch; here their second
  derivative is the exact one (0 for the piecewise-linear ones, ``2`` on the
  active terms of ``multi_margin_loss(p=2)``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _jvp, _shapes
from jaxloss._checked import value_check
from jaxloss._dtypes import Array, check_float, check_integer
from jaxloss._registry import Number, Opmath, loss_function
from jaxloss._shapes import Reduction, broadcast_shapes, shape_str

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


def _multilabel_block(x: Array, t: Array, with_grad: bool) -> tuple[Array, Array | None]:
    """One block of rows of :func:`_multilabel_pairs`.

    Per row of ``x`` (N, C) with target rows ``t`` (N, C): ``(v, g)``, ``v`` (N,) the sum over
    the labels ``j`` (the entries of ``t`` before its first negative one) and the non-label
    classes ``i`` of ``z = (1 - x[t_j]) + x[i]`` where ``z > 0``, each ``z`` rounded as in
    torch's kernel; ``g`` (N, C) its gradient (``None`` unless ``with_grad``): ``+1`` per
    counted pair for ``x[i]``, ``-(number of counted i)`` for ``x[t_j]``, as torch's backward.

    Like torch's kernel, ``O(C)`` work per label: a loop over the label positions ``j``, each
    step a fused pass over the whole (N, C) block, as many steps as the longest label list in
    the block (rows with fewer labels idle in the later steps). No sort, no (N, C, C) pairs:
    the scratch is a few (N, C) arrays.
    """
    n, c = x.shape
    classes = lax.broadcasted_iota(jnp.int32, (n, c), 1)
    # (N, 1): position of the first negative entry = the number of label positions
    nlabels = jnp.min(jnp.where(t < 0, classes, c), axis=1, keepdims=True)
    steps = jnp.max(nlabels, initial=0)

    def column(j: Array) -> tuple[Array, Array]:
        """Label position ``j``: its class (N, 1), 0 where unused, and whether it is used (N, 1)."""
        tj = lax.dynamic_slice_in_dim(t, j, 1, axis=1)
        used = (j < nlabels) & (tj < c)  # an entry >= C poisons its row (see _poison)
        return jnp.where(used, tj, 0).astype(jnp.int32), used

    def mark(j: Array, is_label: Array) -> Array:
        tj, used = column(j)
        return is_label | ((classes == tj) & used)

    is_label = lax.fori_loop(0, steps, mark, jnp.zeros((n, c), bool))

    def add_label(j: Array, carry: tuple[Array, Array | None]) -> tuple[Array, Array | None]:
        v, g = carry
        tj, used = column(j)
        z = (1 - jnp.take_along_axis(x, tj, axis=1)) + x
        counted = (z > 0) & ~is_label & used  # strictly > 0, forward and backward (torch)
        v = v + jnp.sum(jnp.where(counted, z, 0), axis=1)
        if g is not None:
            count = jnp.sum(counted, axis=1, keepdims=True, dtype=x.dtype)
            g = g + counted.astype(x.dtype) - jnp.where(classes == tj, count, 0)
        return v, g

    g0 = jnp.zeros((n, c), x.dtype) if with_grad else None
    return lax.fori_loop(0, steps, add_label, (jnp.zeros((n,), x.dtype), g0))


_BLOCK_ELEMENTS = 1 << 18  # rows per block of _multilabel_pairs: this many scores (1 MiB of float32)


def _multilabel_pairs(x: Array, t: Array, with_grad: bool) -> tuple[Array, Array | None]:
    """``(v, g)`` of :func:`_multilabel_block` for ``x``, ``t`` (N, C), block by block of rows:
    a block stays in cache through its label steps, and only a block holding a long label
    list pays for it (the work is about ``O(C)`` per label of each row, as torch's, not
    ``O(C)`` per row times the longest list of the batch)."""
    n, c = x.shape
    rows = max(1, min(n, _BLOCK_ELEMENTS // c))
    if n <= rows:
        return _multilabel_block(x, t, with_grad)
    nb = -(-n // rows)
    pad = nb * rows - n
    if pad:
        x = jnp.pad(x, ((0, pad), (0, 0)))
        t = jnp.pad(t, ((0, pad), (0, 0)), constant_values=-1)
    out = lax.map(
        lambda xt: _multilabel_block(xt[0], xt[1], with_grad),
        (x.reshape(nb, rows, c), t.reshape(nb, rows, c)),
    )
    v = out[0].reshape(nb * rows)[:n]
    g = None if out[1] is None else out[1].reshape(nb * rows, c)[:n]
    return v, g


# The loop runs a data-dependent number of steps (a while loop, which reverse-mode autodiff
# cannot go through), so the derivative is given explicitly: the loss is piecewise linear
# in x with the exact gradient g from _multilabel_pairs. The rules call the functions
# themselves, so higher derivatives come from the same rules: g's derivative is 0.
@jax.custom_jvp
def _multilabel_hinge_sum(x: Array, t: Array) -> Array:
    """The hinge sum ``v`` (N,) of :func:`_multilabel_pairs` (value only: no gradient work)."""
    return _multilabel_pairs(x, t, False)[0]


@jax.custom_jvp
def _multilabel_hinge_and_grad(x: Array, t: Array) -> tuple[Array, Array]:
    """``(v, g)`` of :func:`_multilabel_pairs`: (N,) and (N, C)."""
    v, g = _multilabel_pairs(x, t, True)
    assert g is not None
    return v, g


@_multilabel_hinge_sum.defjvp
def _multilabel_hinge_sum_jvp(
    primals: tuple[Array, Array], tangents: tuple[Array, Array]
) -> tuple[Array, Array]:
    v, g = _multilabel_hinge_and_grad(*primals)
    return v, jnp.sum(g * tangents[0], axis=1)


@_multilabel_hinge_and_grad.defjvp
def _multilabel_hinge_and_grad_jvp(
    primals: tuple[Array, Array], tangents: tuple[Array, Array]
) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    v, g = _multilabel_hinge_and_grad(*primals)
    return (v, g), (jnp.sum(g * tangents[0], axis=1), jnp.zeros_like(g))


@loss_function(
    static_argnames=("reduction",),
    arrays={"input": "float"},
    opmath=Opmath(promote=("input",)),
    module="MultiLabelMarginLoss",
    torch="torch.nn.MultiLabelMarginLoss",
)
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
    The work is about torch's, ``O(C)`` per label of each row (the rows go in blocks
    of about 2**18 scores, each running as many label steps as its longest list), the
    memory ``O(N C)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> y = jnp.array([[3, 0, -1, 1]])  # classes 3 and 0, then -1 ends the list
        >>> round(float(jaxloss.multilabel_margin_loss(x, y)), 4)
        0.85
    """
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

    x = input.reshape(nframe, dim)
    t = target.reshape(nframe, dim)
    bad = jnp.any((t < -1) | (t >= dim), axis=1)
    value_check(~bad, "argument #2 'target' is out of range")
    loss = _multilabel_hinge_sum(x, t) / dim
    loss = _poison(loss, bad, x)
    if reduction == "none" and target.ndim > 1:
        return loss
    if reduction == "mean":
        return jnp.mean(loss)
    return jnp.sum(loss)  # 'sum', and 'none' of an unbatched input (a scalar in torch)


# --------------------------------------------------------------------------- multi_margin_loss
def _check_p(values: dict[str, Any]) -> None:
    """``p`` selects the hinge's power (a code path): 1 or 2, torch's message otherwise."""
    p = values["p"]
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")


@loss_function(
    static_argnames=("p", "reduction"),
    numbers={"margin": Number()},
    arrays={"input": "float", "weight": "real"},
    check_options=_check_p,
    opmath=Opmath(promote=("input",), cast=("weight",)),
    module="MultiMarginLoss",
    torch="torch.nn.MultiMarginLoss",
)
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

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> round(float(jaxloss.multi_margin_loss(x, jnp.array([3]))), 4)
        0.325
        >>> round(float(jaxloss.multi_margin_loss(x, jnp.array([3]), p=2, margin=2.0)), 4)
        1.5525
    """
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

    x = input.reshape(nframe, dim)
    t = target.reshape(nframe)
    valid = (t >= 0) & (t < dim)
    value_check(valid, "target out of range")
    tt = jnp.where(valid, t, 0).astype(jnp.int32)
    x_target = jnp.take_along_axis(x, tt[:, None], axis=1, mode="clip")  # (N, 1)
    z = margin - x_target + x  # same rounding as torch's kernel
    counted = (z > 0) & (jnp.arange(dim) != tt[:, None])
    h = z if p == 1 else z * z
    if weight is not None:
        h = h * jnp.take(weight, tt, mode="clip")[:, None]
    loss = jnp.sum(jnp.where(counted, h, 0), axis=1) / dim
    loss = _poison(loss, ~valid, x)
    if reduction == "none" and target.ndim > 0:
        return loss
    if reduction == "mean":
        return jnp.mean(loss)
    return jnp.sum(loss)  # 'sum', and 'none' of an unbatched input (a scalar in torch)


# --------------------------------------------------------------------------- margin_ranking_loss
@loss_function(
    static_argnames=("reduction",),
    numbers={"margin": Number()},
    arrays={"input1": "float", "input2": "float", "target": "float"},
    integer_inputs=True,
    opmath=Opmath(promote=("input1", "input2", "target")),
    module="MarginRankingLoss",
    forward=("input1", "input2", "target"),
    torch="torch.nn.MarginRankingLoss",
)
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

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x1, x2 = jnp.array([1.0, 0.2]), jnp.array([0.5, 0.4])
        >>> y = jnp.array([1.0, 1.0])  # x1 should rank higher
        >>> round(float(jaxloss.margin_ranking_loss(x1, x2, y, margin=0.1)), 4)
        0.15
    """
    if not (input1.ndim == input2.ndim == target.ndim):
        raise ValueError(
            "margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            f"input1: {_torch_size(input1.shape)}, input2: {_torch_size(input2.shape)}, "
            f"target: {_torch_size(target.shape)} "
        )
    broadcast_shapes(target.shape, broadcast_shapes(input1.shape, input2.shape))
    loss = _jvp.clamp_min(-target * (input1 - input2) + margin, 0.0)
    return _shapes.reduce(loss, reduction)


# --------------------------------------------------------------------------- hinge_embedding_loss
@loss_function(
    static_argnames=("reduction",),
    numbers={"margin": Number()},
    arrays={"input": "float", "target": "label"},
    opmath=Opmath(promote=("input",)),
    module="HingeEmbeddingLoss",
    torch="torch.nn.HingeEmbeddingLoss",
)
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

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> d, y = jnp.array([0.3, 0.3]), jnp.array([1.0, -1.0])
        >>> [round(v, 4) for v in jaxloss.hinge_embedding_loss(d, y, reduction='none').tolist()]
        [0.3, 0.7]
    """
    check_float("input", input)
    broadcast_shapes(target.shape, input.shape)
    x = input
    zero = jnp.zeros((), x.dtype)
    loss = jnp.where(target != 1, _jvp.clamp_min(margin - x, 0.0), zero) + jnp.where(target != -1, x, zero)
    return _shapes.reduce(loss, reduction)
