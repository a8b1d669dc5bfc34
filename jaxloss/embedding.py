"""Embedding losses: cosine_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss.

Each mirrors the ``torch.nn.functional`` function of the same name (torch 2.13).
They are built on the private twins of :mod:`jaxloss.distance` (a public loss
never calls another jitted public one), and every hinge is torch's
``clamp_min(·, 0)``: the gradient passes at a tie. ``swap`` uses
``minimum``, whose gradient is shared 0.5 / 0.5 between tied distances in both
torch and JAX.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jaxloss import _jvp, _shapes
from jaxloss._dtypes import Array
from jaxloss._registry import Number, Opmath, loss_function
from jaxloss._shapes import Reduction, broadcast_shapes, shape_str
from jaxloss.distance import _check_p, _pairwise_distance, pairwise_distance

__all__ = ["cosine_embedding_loss", "triplet_margin_loss", "triplet_margin_with_distance_loss"]

# torch's Loss.cpp: ``constexpr float EPSILON = 1e-12;`` -- a float32 constant, also in float64 code.
_EPSILON = struct.unpack("f", struct.pack("f", 1e-12))[0]


# --------------------------------------------------------------------------- cosine_embedding_loss
@loss_function(
    static_argnames=("reduction",),
    numbers={"margin": Number()},
    arrays={"input1": "float", "input2": "float", "target": "label"},
    integer_inputs=True,
    opmath=Opmath(promote=("input1", "input2")),
    module="CosineEmbeddingLoss",
    forward=("input1", "input2", "target"),
    torch="torch.nn.CosineEmbeddingLoss",
)
def cosine_embedding_loss(
    input1: Array, input2: Array, target: Array, margin: float = 0.0, reduction: Reduction = "mean"
) -> Array:
    r"""Cosine embedding loss (``torch.nn.functional.cosine_embedding_loss``).

    .. math::
        \cos = \frac{\sum x_1 x_2}{\sqrt{(\sum x_1^2 + \epsilon)(\sum x_2^2 + \epsilon)}},
        \qquad \ell = \begin{cases} 1 - \cos & y = 1 \\ \max(0, \cos - \mathrm{margin}) & y = -1
        \\ 0 & \text{otherwise} \end{cases}

    with torch's ``EPSILON`` = ``float32(1e-12)`` added to each squared norm (this
    is *not* ``cosine_similarity``'s rule). A zero vector gives ``cos = 0`` and a
    finite gradient.

    Args:
        input1: ``(N, D)`` with a ``(N,)`` target, or ``(D,)`` with a 0-d target.
        input2: same number of dimensions as ``input1``, broadcastable with it.
        target: ``(N,)`` or ``()``; 1 or -1 (other values give 0).
        margin: in ``[-1, 1]``, torch suggests ``[0, 0.5]``. Default 0.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or ``(N,)`` for ``reduction='none'``; the promoted floating dtype
        of ``input1``, ``input2`` (float16 / bfloat16 computed in float32, where
        torch's float16 arithmetic turns a zero vector into NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> a = jnp.array([[1.0, 0.0], [1.0, 0.0]])
        >>> b = jnp.array([[1.0, 1.0], [1.0, 1.0]])
        >>> [round(v, 4) for v in jaxloss.cosine_embedding_loss(a, b, jnp.array([1, -1]), reduction='none').tolist()]
        [0.2929, 0.7071]
    """
    targ_dim = target.ndim
    if targ_dim not in (0, 1):
        raise ValueError("0D or 1D target tensor expected, multi-target not supported")
    want = 2 if targ_dim == 1 else 1
    if input1.ndim != want or input2.ndim != want:
        raise ValueError(
            f"{targ_dim}D target tensor expects {want}D input tensors, but found inputs with sizes "
            f"{shape_str(input1.shape)} and {shape_str(input2.shape)}."
        )
    broadcast_shapes(input1.shape, input2.shape)
    x1, x2 = input1, input2
    prod_sum = jnp.sum(x1 * x2, axis=targ_dim)
    mag_square1 = jnp.sum(x1 * x1, axis=targ_dim) + _EPSILON
    mag_square2 = jnp.sum(x2 * x2, axis=targ_dim) + _EPSILON
    cos = prod_sum / jnp.sqrt(mag_square1 * mag_square2)
    broadcast_shapes(target.shape, cos.shape)
    zero = jnp.zeros((), x1.dtype)
    loss = jnp.where(target == 1, 1 - cos, zero) + jnp.where(
        target == -1, _jvp.clamp_min(cos - margin, 0.0), zero
    )
    return _shapes.reduce(loss, reduction)


# --------------------------------------------------------------------------- triplet losses
_TRIPLET_MARGIN = Number(lambda v: v > 0, "margin must be greater than 0, got {}")
_TRIPLET_ARRAYS: dict[str, Any] = {"anchor": "float", "positive": "float", "negative": "float"}
_TRIPLET_OPMATH = Opmath(promote=("anchor", "positive", "negative"))


def _check_triplet(anchor: Array, positive: Array, negative: Array) -> None:
    if not (anchor.ndim == positive.ndim == negative.ndim):
        raise ValueError(
            "The anchor, positive, and negative tensors are expected to have the same number of dimensions, "
            f"but got: anchor {anchor.ndim}D, positive {positive.ndim}D, and negative {negative.ndim}D inputs"
        )


def _triplet(
    anchor: Array,
    positive: Array,
    negative: Array,
    distance: Callable[[Array, Array], Array],
    margin: float,
    swap: bool,
    reduction: str,
) -> Array:
    a, p, n = anchor, positive, negative
    dist_pos = distance(a, p)
    dist_neg = distance(a, n)
    if swap:
        dist_neg = jnp.minimum(dist_neg, distance(p, n))
    loss = _jvp.clamp_min(margin + dist_pos - dist_neg, 0.0)
    return _shapes.reduce(loss, reduction)


@loss_function(
    static_argnames=("p", "reduction"),
    bools=("swap",),
    numbers={"margin": _TRIPLET_MARGIN, "eps": Number()},
    arrays=_TRIPLET_ARRAYS,
    integer_inputs=True,
    check_options=_check_p,
    opmath=_TRIPLET_OPMATH,
    complex_inputs=True,  # torch's distances of complex vectors are real
    module="TripletMarginLoss",
    forward=("anchor", "positive", "negative"),
    torch="torch.nn.TripletMarginLoss",
)
def triplet_margin_loss(
    anchor: Array,
    positive: Array,
    negative: Array,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: Reduction = "mean",
) -> Array:
    r"""Triplet margin loss (``torch.nn.functional.triplet_margin_loss``).

    .. math:: \ell = \max\bigl(0,\; \mathrm{margin} + d(a, p) - d(a, n)\bigr),
        \qquad d(x, y) = \lVert x - y + \epsilon \rVert_p

    (``d`` is :func:`jaxloss.pairwise_distance`: ``eps`` is added to the difference.)

    Args:
        anchor: ``(N, D)`` or ``(D,)``.
        positive: same number of dimensions as ``anchor``, broadcastable.
        negative: same number of dimensions as ``anchor``, broadcastable.
        margin: must be > 0 (torch's ``ValueError`` otherwise). Default 1.
        p: the norm degree of the distance (any real, ``inf``). Default 2.
        eps: added to the differences. Default 1e-6.
        swap: use ``min(d(a, n), d(p, n))`` as the negative distance. Default False.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or ``(N,)`` for ``reduction='none'``; the promoted floating dtype (complex
        inputs, which torch accepts, give its real dtype: the distances are real).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.array([[2.0, 0.0]])
        >>> round(float(jaxloss.triplet_margin_loss(a, p, n, margin=1.5)), 4)
        0.5
    """
    _check_triplet(anchor, positive, negative)

    def distance(x1: Array, x2: Array) -> Array:
        return _pairwise_distance(x1, x2, p, eps)

    return _triplet(anchor, positive, negative, distance, margin, swap, reduction)


@loss_function(
    static_argnames=("distance_function", "reduction"),
    bools=("swap",),
    numbers={"margin": _TRIPLET_MARGIN},
    arrays=_TRIPLET_ARRAYS,
    integer_inputs=True,
    opmath=_TRIPLET_OPMATH,
    complex_inputs=True,
    module="TripletMarginWithDistanceLoss",
    forward=("anchor", "positive", "negative"),
    kw_only=True,
    torch="torch.nn.TripletMarginWithDistanceLoss",
)
def triplet_margin_with_distance_loss(
    anchor: Array,
    positive: Array,
    negative: Array,
    *,
    distance_function: Callable[[Array, Array], Array] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: Reduction = "mean",
) -> Array:
    r"""Triplet loss with any distance (``torch.nn.functional.triplet_margin_with_distance_loss``).

    .. math:: \ell = \max\bigl(0,\; \mathrm{margin} + d(a, p) - d(a, n)\bigr)

    Args:
        anchor: any shape the distance function accepts; ``anchor``, ``positive``
            and ``negative`` must have the same number of dimensions.
        positive: see ``anchor``.
        negative: see ``anchor``.
        distance_function: a JAX function ``(x1, x2) -> distances``, static (it is
            part of the compiled function: pass the same object each call, not a
            fresh lambda, to avoid recompiling). Default (``None``):
            :func:`jaxloss.pairwise_distance`. E.g.
            ``lambda x, y: 1.0 - jaxloss.cosine_similarity(x, y)``.
        margin: must be > 0. Default 1.
        swap: use ``min(d(a, n), d(p, n))`` as the negative distance. Default False.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.

    Returns:
        A scalar, or the distances' shape for ``reduction='none'``; the promoted
        floating dtype of the three inputs. float16 / bfloat16 inputs reach the
        distance function as float32.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> a, p, n = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.1]]), jnp.array([[0.0, 1.0]])
        >>> def cosine_distance(x, y):
        ...     return 1.0 - jaxloss.cosine_similarity(x, y)
        ...
        >>> round(float(jaxloss.triplet_margin_with_distance_loss(a, p, n, distance_function=cosine_distance)), 4)
        0.005
    """
    _check_triplet(anchor, positive, negative)
    if distance_function is None or distance_function is pairwise_distance:
        distance_function = _pairwise_distance
    return _triplet(anchor, positive, negative, distance_function, margin, swap, reduction)
