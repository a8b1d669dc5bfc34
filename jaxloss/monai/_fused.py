r"""The softmax Dice / cross-entropy sums over a class-index label map, in few passes over the logits.

MONAI's ``DiceLoss(softmax=True, to_onehot_y=True)`` (and ``DiceCELoss``'s) needs, per sample
``n`` and class ``c``, only sums over the voxels ``s`` of the softmax ``p = softmax_c(z)`` and
the one-hot target ``g_c = [l = c]``:

.. math::
    tp_{nc} = \sum_s g_c\,p_c,\quad sp_{nc} = \sum_s p_c,\quad
    sg_{nc} = \sum_s g_c,\quad nll_n = -\sum_s \log p_l,\quad sm_n = -\sum_s \sum_c \log p_c

(``nll`` and ``sm`` are the cross entropy and its label-smoothing term). Written as a generic
program, the softmax, the float one-hot target and the products are full-size temporaries
written and read again, and the gradient goes through the generic derivative of each. Here:

* ``lse = log sum_c exp z_c`` is computed from the ``C`` channel slices (``(N, S)`` each: the
  channel max and sum are elementwise over them), the softmax ``exp(z - lse)`` is then one
  full-size elementwise kernel: the value+gradient program's only input-sized temporary;
* the one-hot target is computed from the label where it is used (:func:`_hits`), never stored;
* the derivative is a ``custom_jvp`` with the closed form
  :math:`dp_c = p_c (dz_c - \sum_k p_k dz_k)`, :math:`d \log p_c = dz_c - \sum_k p_k dz_k`,
  written so that JAX's transpose of it is one elementwise kernel over the full array, reading
  the stored softmax and the label and writing the gradient (see :func:`_tangents`). Being a
  JVP rule (not a VJP), forward mode (``jvp``, ``jacfwd``) and second order keep working;
* in value+gradient, the forward sums of all classes are one reduction kernel
  (:func:`_voxel_sums_at_once`), reading the stored softmax and the label once.

What costs time on XLA:CPU is mostly memory written for the first time (each input-sized
temporary is fresh pages, faulted in on every call), then reductions (a multi-operand
reduction is not vectorised: it must not compute ``exp``), and kernels whose output is
assembled from per-channel pieces (a concatenation or zero-padded slices, added up: a branch
per element, not vectorised). Measured on ``(8, 4, 128, 128, 64)`` float32 value+gradient
(CPU time per call, 2 cores, alternating processes under the same load): Dice 431-455 ->
319-331 ms, DiceCE 414-422 -> 377-399 ms against the per-slice softmax and tangents this
replaced (which stored ``C`` softmax slices and a float copy of the label, and built the
gradient from padded slices); temporaries 1.31 -> 1.06 input sizes at ``(4, 4, 64, 64, 32)``.
Tried and dropped: recomputing the softmax in the reverse pass (``jax.checkpoint`` saving
only ``lse``): the ``exp`` then ran inside the unvectorised reduction and per output element
(CPU time 1.3x); an ``optimization_barrier`` to store ``sum_k p_k a_k`` so the gradient could
overwrite the softmax in place: XLA then built the gradient kernel worse (2x).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array

# the most classes the slice-by-slice program is used for (its size grows with C)
MAX_CLASSES = 16
# how many voxels _voxel_sums_at_once adds up in one running sum (float32 accuracy)
_ROW = 1024


def _slices(z: Array) -> list[Array]:
    """The ``C`` channels of ``(N, C, S)``, each ``(N, S)``."""
    return [z[:, k] for k in range(z.shape[1])]


def _split(z: Array) -> list[Array]:
    """:func:`_slices` by ``lax.split``, whose transpose is one concatenation (a slice's is a
    zero-padded full-size array, one per channel, added up: a branch per gradient element)."""
    return [part[:, 0] for part in jax.lax.split(z, [1] * z.shape[1], axis=1)]


def _add(xs: list[Array]) -> Array:
    return functools.reduce(jnp.add, xs)


def _softmax(zs: list[Array]) -> tuple[list[Array], Array]:
    """The softmax of the channel slices ``zs`` as ``p_c = exp(z_c - lse)``, and
    ``lse = m + log sum_c exp(z_c - m)`` (``(N, S)``, ``m`` the channel max).

    Why not torch's ``exp(z_c - m) / Z``: XLA:CPU fuses the cheap channel max into every
    consumer, so each ``exp(z_c - m)`` would read all ``C`` channels again; ``lse`` (with its
    ``exp`` and ``log``) is computed once into an ``(N, S)`` array that every channel reads.
    The two agree to a few units in the last place."""
    m = functools.reduce(jnp.maximum, zs)
    lse = m + jnp.log(_add([jnp.exp(zk - m) for zk in zs]))
    return [jnp.exp(zk - lse) for zk in zs], lse


def _softmax_full(z: Array) -> Array:
    """The softmax of ``(N, C, S)`` logits over ``C`` as one ``(N, C, S)`` array,
    ``exp(z - lse)``, ``lse`` from :func:`_softmax` (bit for bit its slices)."""
    _, lse = _softmax(_slices(z))
    return jnp.exp(z - lse[:, None])


def _voxel_sums(xs: list[Array]) -> Array:
    """``(N, K)``: each of the ``K`` ``(N, S)`` slices ``xs`` summed over its voxels (linear, so
    JAX can transpose it: the tangents use it)."""
    return jnp.stack([jnp.sum(x, axis=1) for x in xs], axis=1)


def _voxel_sums_at_once(xs: list[Array]) -> Array:
    """``(N, K)`` like :func:`_voxel_sums`, as one ``K``-operand reduction.

    Why: XLA:CPU compiles it into one kernel that computes the products and the one-hot target
    on the fly, reading each stored softmax channel once; separate sums are ``K`` reduction
    kernels, each reading its input from memory (the one-hot target stored for them). Dice
    value+gradient at ``(8, 4, 128, 128, 64)``: 8 to 15 % less CPU time. Not transposable
    (a generic reduction): the primal sums only.

    The voxels are summed in rows of :data:`_ROW` (then the ``S / _ROW`` row sums, and the
    ``S mod _ROW`` left over): one running sum over all ``S`` voxels lost float32 accuracy
    (DiceCE at the shape above: 1.8e-6 relative from the float64 value; in rows 7e-8, as torch)."""
    n, s = xs[0].shape
    rows = s // _ROW
    head = [x[:, :rows * _ROW].reshape(n, rows, _ROW) for x in xs]
    tail = [x[:, rows * _ROW:] for x in xs]
    return jnp.sum(_add_up(head, 2), axis=2) + _add_up(tail, 1)


def _add_up(xs: list[Array], axis: int) -> Array:
    """The arrays ``xs`` summed along ``axis`` by one reduction, stacked on axis 1."""
    zeros = tuple(jnp.zeros((), x.dtype) for x in xs)
    sums = jax.lax.reduce(tuple(xs), zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)), (axis,))
    return jnp.stack(sums, axis=1)


def _hits(label: Array, n_classes: int, dtype: Any) -> list[Array]:
    """The one-hot target's channels ``[l = c]`` (``(N, S)`` each, in ``dtype``) of a class index
    (integer, or whole numbers in a float dtype; the label is not converted into a stored copy).

    Written as ``max(0, 1 - |l - c|)`` (exactly 1 or 0 for whole numbers): XLA:CPU fuses this
    arithmetic into the voxel sums that use it, where a comparison or a select would be
    computed into a full-size temporary first."""
    if jnp.issubdtype(label.dtype, jnp.unsignedinteger):  # 1 - |l - c| must not wrap around
        label = label.astype(jnp.int32 if label.dtype.itemsize <= 4 else jnp.int64)
    return [jnp.maximum(0, 1 - jnp.abs(label - k)).astype(dtype) for k in range(n_classes)]


def _sums(z: Array, label: Array, with_ce: bool, at_once: bool) -> tuple[Array, ...]:
    """The sums, by one reduction (``at_once``, :func:`_voxel_sums_at_once`) or one per sum.

    One reduction pays where the softmax is stored anyway (value+gradient: the reverse pass
    reads it). In a value-only program XLA:CPU fuses the softmax, ``lse`` and its ``C`` exp
    into that one reduction and computes them again for each of their uses (Dice value: 1.9x
    the CPU time); separate sums keep its stored ``lse``."""
    zs = _slices(z)
    n_classes = len(zs)
    if at_once:
        ps = _split(_softmax_full(z))
        lse = _softmax(zs)[1]
    else:
        ps, lse = _softmax(zs)
    hits = _hits(label, n_classes, z.dtype)
    # MONAI sums its float one-hot target (sg)
    terms = [h * p for h, p in zip(hits, ps)] + ps + hits
    if with_ce:
        logps = [zk - lse for zk in zs]
        terms += [_add([h * lp for h, lp in zip(hits, logps)]), _add(logps)]
    sums = (_voxel_sums_at_once if at_once else _voxel_sums)(terms)
    tp, sp, sg = (sums[:, k * n_classes:(k + 1) * n_classes] for k in range(3))
    if not with_ce:
        return tp, sp, sg
    return tp, sp, sg, -sums[:, 3 * n_classes], -sums[:, 3 * n_classes + 1]


def _tangents(z: Array, label: Array, dz: Array, with_ce: bool) -> tuple[Array, ...]:
    """The sums' tangents along ``dz`` (linear in ``dz``; JAX transposes it into the reverse pass).

    Written on the full ``(N, C, S)`` arrays, so that the transpose is elementwise with
    broadcasts: ``d_lse`` (a sum over the channels) as added :func:`_split` pieces, and its
    broadcast back over the channels as a concatenation, whose transposes are a broadcast and
    added slices. The plain forms (``jnp.sum(axis=1)``, ``d_lse[:, None]``) transpose into a
    reduction over the channels, which XLA:CPU compiles into one single-threaded kernel
    (Dice value+gradient: 1.7x the CPU time)."""
    n_classes = z.shape[1]
    p = _softmax_full(z)
    hits = label[:, None] == jnp.arange(n_classes, dtype=label.dtype)[None, :, None]
    zero = jnp.zeros((), z.dtype)
    d_lse = _add(_split(p * dz))  # d log sum_c exp z_c
    d_logp = dz - jnp.concatenate([d_lse[:, None]] * n_classes, axis=1)
    dp = p * d_logp
    d_tp = jnp.sum(jnp.where(hits, dp, zero), axis=2)
    d_sp = jnp.sum(dp, axis=2)
    d_sg = jnp.zeros_like(d_sp)  # the target's sums do not depend on the logits
    if not with_ce:
        return d_tp, d_sp, d_sg
    d_nll = -jnp.sum(jnp.where(hits, d_logp, zero), axis=(1, 2))
    d_smooth = -jnp.sum(d_logp, axis=(1, 2))
    return d_tp, d_sp, d_sg, d_nll, d_smooth


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def softmax_label_sums(z: Array, label: Array, with_ce: bool = False) -> tuple[Array, ...]:
    r"""``(tp, sp, sg)`` (each ``(N, C)``; ``sg_{nc} = \sum_s g_c``, the class volumes), and with
    ``with_ce`` also ``(nll, sm)`` (each ``(N,)``),
    of ``(N, C, S)`` logits ``z`` (``C <= MAX_CLASSES``) and an ``(N, S)`` class index
    ``label`` (any integer dtype, or whole numbers in a float dtype); see the module
    docstring for the formulas. An index outside ``[0, C)`` matches no class (the caller poisons the result).

    Example:
        >>> import jax.numpy as jnp
        >>> z = jnp.zeros((1, 2, 3))  # p = 1/2 everywhere
        >>> tp, sp, sg = softmax_label_sums(z, jnp.array([[0.0, 1.0, 1.0]]))
        >>> tp.tolist(), sp.tolist(), sg.tolist()
        ([[0.5, 1.0]], [[1.5, 1.5]], [[1.0, 2.0]])
    """
    return _sums(z, label, with_ce, at_once=False)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _sums_at_once(z: Array, label: Array, with_ce: bool) -> tuple[Array, ...]:
    """:func:`softmax_label_sums` by one reduction: the primal of its derivative rule."""
    return _sums(z, label, with_ce, at_once=True)


def _jvp(with_ce: bool, primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    z, label = primals
    dz, _ = tangents  # the sums are piecewise constant in the label
    # the primal through a function with this same rule (not _sums): second order
    # differentiates this rule, and the one reduction has no transpose
    return _sums_at_once(z, label, with_ce), _tangents(z, label, dz, with_ce)


softmax_label_sums.defjvp(_jvp)
_sums_at_once.defjvp(_jvp)
