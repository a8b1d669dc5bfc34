"""Chunked linear + cross entropy that never materialises the (N, C) logits."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxloss import _softmax
from jaxloss._dtypes import Array, opmath_dtype, result_float_dtype
from jaxloss._registry import Number, loss_function
from jaxloss._shapes import Reduction

# Logit elements per chunk when ``chunk_size`` is None: 2**24 float32 = 64 MiB of logits (and as
# much for their gradient) whatever the vocabulary. Large enough that the per-chunk update of the
# (C, H) weight gradient (one read-modify-write of it per chunk) costs a few percent of the three
# (rows, H) x (H, C) matrix products; small enough to stay far below the (N, C) logits.
_CHUNK_ELEMENTS = 1 << 24
# The weight gradient of a chunk, dz.T @ x, is added to the accumulator in blocks of rows of this
# many elements (32 MiB in float32), so that no (C, H) temporary exists besides the accumulator.
_DW_BLOCK_ELEMENTS = 1 << 23


class _Config(NamedTuple):
    """Static description of one call (hashable: a ``nondiff_argnums`` of the custom VJP)."""

    probs: bool  # class-probability targets
    ignore_index: int
    reduction: str
    n_classes: int
    out_features: tuple[int, ...]  # (d1, ..., dK) of a K-dimensional loss, () otherwise
    chunk: int  # rows per chunk


def default_chunk_size(num_classes: int) -> int:
    """Rows per chunk used when ``chunk_size`` is None: the largest power of two whose
    ``(rows, num_classes)`` float32 logits fit in 64 MiB (256 rows for a 65536-word vocabulary)."""
    rows = max(1, _CHUNK_ELEMENTS // max(1, num_classes))
    return 1 << (rows.bit_length() - 1)


# --------------------------------------------------------------------------- per-chunk pieces


def _logits(x: Array, w: Array, b: Array | None) -> Array:
    z = lax.dot_general(x, w, (((1,), (1,)), ((), ())))  # x @ w.T, (rows, C * D)
    return z if b is None else z + b


def _rows_loss(cfg: _Config, z: Array, t: Array, w: Array | None, ls: Array | None) -> Array:
    """Per-sample loss (``'none'``) of one chunk of flat logits ``z`` (rows, C * D);
    ``ls`` is the label smoothing (``None``: none)."""
    if cfg.out_features:
        z = z.reshape(z.shape[0], cfg.n_classes, -1)
    if cfg.probs:
        return _softmax.prob_loss(z, t, w, "none", ls, axis=1)
    return _softmax.index_loss(z, t, w, cfg.ignore_index, "none", ls, axis=1, log_softmax=True, check=False)


def _map_chunks(body: Any, carry: Any, xs: tuple[Array, ...], chunk: int) -> tuple[Any, Any]:
    """``lax.scan`` of ``body(carry, chunk_xs) -> (carry, ys)`` over row chunks of ``xs``.

    Rows that do not fill a last chunk are processed by one more call of ``body``;
    the ``ys`` of every chunk are concatenated along rows.
    """
    n = xs[0].shape[0]
    k, rem = divmod(n, chunk)
    parts = []
    if k == 1:
        carry, ys = body(carry, tuple(a[:chunk] for a in xs))
        parts.append(ys)
    elif k > 1:
        main = tuple(a[: k * chunk].reshape(k, chunk, *a.shape[1:]) for a in xs)
        carry, ys = lax.scan(body, carry, main)
        parts.append(jax.tree.map(lambda y: y.reshape(k * chunk, *y.shape[2:]), ys))
    if rem or n == 0:  # the ragged last chunk; an empty batch is one empty chunk
        carry, ys = body(carry, tuple(a[k * chunk :] for a in xs))
        parts.append(ys)
    if len(parts) == 1:
        return carry, parts[0]
    return carry, jax.tree.map(lambda *p: jnp.concatenate(p, axis=0), *parts)


def _add_weight_grad(dw: Array, dz: Array, x: Array) -> Array:
    """``dw + dz.T @ x``, by blocks of rows of ``dw`` updated in place (no ``dw``-sized temporary)."""
    rows, h = dw.shape
    block = max(1, _DW_BLOCK_ELEMENTS // max(1, h))

    def product(dz_part: Array) -> Array:
        return lax.dot_general(dz_part, x, (((0,), (0,)), ((), ())), preferred_element_type=dw.dtype)

    if block >= rows:
        return dw + product(dz)
    n_blocks, rem = divmod(rows, block)

    def add_block(j: Array, dw: Array) -> Array:
        start = j * block
        part = lax.dynamic_slice_in_dim(dw, start, block, axis=0)
        part = part + product(lax.dynamic_slice_in_dim(dz, start, block, axis=1))
        return lax.dynamic_update_slice_in_dim(dw, part, start, axis=0)

    dw = lax.fori_loop(0, n_blocks, add_block, dw)
    if rem:
        dw = dw.at[n_blocks * block :].add(product(dz[:, n_blocks * block :]))
    return dw


def _losses(
    cfg: _Config, x: Array, w: Array, b: Array | None, t: Array, cw: Array | None, ls: Array | None
) -> Array:
    """Per-sample losses ``(N, ...)``, logits computed chunk by chunk (no derivatives)."""

    def body(carry: None, xs: tuple[Array, Array]) -> tuple[None, Array]:
        x_c, t_c = xs
        return carry, _rows_loss(cfg, _logits(x_c, w, b), t_c, cw, ls)

    return _map_chunks(body, None, (x, t), cfg.chunk)[1]


def _losses_and_grads(
    cfg: _Config,
    x: Array,
    w: Array,
    b: Array | None,
    t: Array,
    cw: Array | None,
    ls: Array | None,
    g: Array,
    need: tuple[bool, bool, bool, bool],
) -> tuple[Array, Array | None, Array | None, Array | None, Array | None]:
    """Per-sample losses and the gradients of ``sum(g * losses)`` wrt ``(x, w, b, t)``.

    ``g`` is the cotangent of the per-sample losses: a scalar (the same for every
    sample) or an array of their shape. Per chunk: logits, then the softmax
    backward (one fused pass), ``dx = dz @ w`` and ``dw += dz.T @ x``, ``db += sum(dz)``.
    Only the gradients flagged in ``need`` are computed.
    """
    need_x, need_w, need_b, need_t = need
    per_row_g = jnp.ndim(g) > 0
    acc = x.dtype  # float32 or float64 (low precision is computed in float32)
    dw0 = jnp.zeros(w.shape, acc) if need_w else None
    db0 = jnp.zeros((w.shape[0],), acc) if need_b else None

    def body(carry: tuple[Array | None, Array | None], xs: tuple[Array, ...]):
        dw, db = carry
        x_c, t_c = xs[0], xs[1]
        z = _logits(x_c, w, b)
        if need_t:
            rows, vjp = jax.vjp(lambda z_, t_: _rows_loss(cfg, z_, t_, cw, ls), z, t_c)
        else:
            rows, vjp = jax.vjp(lambda z_: _rows_loss(cfg, z_, t_c, cw, ls), z)
        g_c = xs[2] if per_row_g else jnp.full(rows.shape, g, rows.dtype)
        cts = vjp(g_c)
        dz = cts[0]
        dt_c = cts[1] if need_t else None
        dx_c = lax.dot_general(dz, w, (((1,), (0,)), ((), ()))) if need_x else None  # dz @ w
        if need_w:
            dw = _add_weight_grad(dw, dz, x_c)  # dw += dz.T @ x
        if need_b:
            db = db + jnp.sum(dz, axis=0, dtype=acc)
        return (dw, db), (rows, dx_c, dt_c)

    xs = (x, t, g) if per_row_g else (x, t)
    (dw, db), (rows, dx, dt) = _map_chunks(body, (dw0, db0), xs, cfg.chunk)
    return rows, dx, dw, db, dt


def _denominator(cfg: _Config, t: Array, cw: Array | None, dtype: Any) -> Array:
    """torch's ``'mean'`` denominator: the summed weight of the non-ignored class
    indices, or the number of samples for class probabilities."""
    if cfg.probs:
        return jnp.asarray(t.shape[0] * math.prod(cfg.out_features), dtype)
    active = ~_softmax.ignore_mask(t, cfg.ignore_index)
    if cw is None:
        return jnp.sum(active, dtype=dtype)
    safe = jnp.where(_softmax.in_range(t, cfg.n_classes), t, 0).astype(jnp.int32)
    return jnp.sum(jnp.where(active, jnp.take(cw, safe, mode="clip"), 0))


def _reduce(cfg: _Config, rows: Array, t: Array, cw: Array | None) -> Array:
    if cfg.reduction == "none":
        return rows
    total = jnp.sum(rows)
    return total if cfg.reduction == "sum" else total / _denominator(cfg, t, cw, rows.dtype)


# --------------------------------------------------------------------------- custom VJP


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _chunked(
    cfg: _Config, x: Array, w: Array, b: Array | None, t: Array, cw: Array | None, ls: Array | None
) -> Array:
    return _reduce(cfg, _losses(cfg, x, w, b, t, cw, ls), t, cw)


def _chunked_fwd(cfg: _Config, x: Any, w: Any, b: Any, t: Any, cw: Any, ls: Any):
    need = (x.perturbed, w.perturbed, b is not None and b.perturbed, cfg.probs and t.perturbed)
    x, w, t = x.value, w.value, t.value
    b = None if b is None else b.value
    cw = None if cw is None else cw.value
    ls = None if ls is None else ls.value
    if cfg.reduction == "none":
        # The cotangent of each sample is only known in the backward pass: recompute there.
        # (``need`` travels as pytree structure: residuals may only hold arrays.)
        marks = tuple(() if n else None for n in need)
        return _reduce(cfg, _losses(cfg, x, w, b, t, cw, ls), t, cw), (x, w, b, t, cw, ls, marks)
    # Scalar loss: its gradient is g * (gradient for g = 1), computed here in the same pass
    # as the loss, so the backward pass only scales it.
    dtype = x.dtype
    scale = jnp.ones((), dtype) if cfg.reduction == "sum" else 1 / _denominator(cfg, t, cw, dtype)
    rows, dx, dw, db, dt = _losses_and_grads(cfg, x, w, b, t, cw, ls, scale, need)
    return _reduce(cfg, rows, t, cw), (dx, dw, db, dt)


def _chunked_bwd(cfg: _Config, res: tuple[Any, ...], g: Any):
    if cfg.reduction != "none":
        dx, dw, db, dt = res
        if isinstance(g, SymbolicZero):
            g = jnp.zeros((), next(a for a in res if a is not None).dtype)

        def scaled(a: Array | None) -> Array | None:
            return None if a is None else (g * a).astype(a.dtype)

        return scaled(dx), scaled(dw), scaled(db), scaled(dt) if cfg.probs else None, None, None
    x, w, b, t, cw, ls, marks = res
    need = tuple(m is not None for m in marks)
    if isinstance(g, SymbolicZero):
        g = jnp.zeros(g.shape, g.dtype)
    _, dx, dw, db, dt = _losses_and_grads(cfg, x, w, b, t, cw, ls, g, need)
    return dx, dw, db, dt if cfg.probs else None, None, None


_chunked.defvjp(_chunked_fwd, _chunked_bwd, symbolic_zeros=True)


# --------------------------------------------------------------------------- public function


def _check_shapes(
    input: Array, linear_weight: Array, linear_bias: Array | None
) -> tuple[tuple[int, ...], int, int, tuple[int, ...]]:
    """torch's checks; returns ``(batch_shape, in_features, num_classes, out_features)``."""
    if input.ndim < 1 or input.ndim > 2:
        raise ValueError(f"expected input with dimensionality 1 or 2, got {input.ndim}")
    if linear_weight.ndim < 2:
        raise ValueError(f"expected linear_weight with dimensionality at least 2, got {linear_weight.ndim}")
    batch, in_features = tuple(input.shape[:-1]), input.shape[-1]
    if in_features != linear_weight.shape[-1]:
        raise ValueError(
            "expected equal input and linear_weight last dimensions (in_features), "
            f"got {input.shape[-1]} and {linear_weight.shape[-1]}, respectively"
        )
    num_classes, out_features = linear_weight.shape[0], tuple(linear_weight.shape[1:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != (num_classes, *out_features):
        raise ValueError(
            f"expected linear_bias shape {(num_classes, *out_features)}, got {tuple(linear_bias.shape)}"
        )
    if out_features and not batch:
        raise ValueError(
            f"K-dimensional loss defined by linear_weight shape {tuple(linear_weight.shape)} requires"
            f" batched input, (N, {in_features}), got unbatched input with shape {tuple(input.shape)}"
        )
    for name, a in (("input", input), ("linear_weight", linear_weight), ("linear_bias", linear_bias)):
        if a is not None and not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{name} must have a floating point dtype, got {a.dtype}")
    return batch, in_features, num_classes, out_features


@loss_function(
    static_argnames=("reduction", "ignore_index", "chunk_size"),
    numbers={
        "label_smoothing": Number(
            lambda v: v <= 1.0, "label_smoothing must be between 0.0 and 1.0. Got: {:g}", off=lambda v: v <= 0.0
        )
    },
    arrays={"input": "float", "linear_weight": "float", "linear_bias": "float", "weight": "real"},
)
def linear_cross_entropy(
    input: Array,
    linear_weight: Array,
    target: Array,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float | Array = 0.0,
    chunk_size: int | None = None,
) -> Array:
    r"""``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)`` without the logits.

    Mirrors ``torch.nn.functional.linear_cross_entropy`` (torch 2.13): same
    arguments (``chunk_size`` replaces torch's ``options``), shapes, semantics and
    errors, and the value of torch's reference path ``options=None``.

    Args:
        input: ``(N, in_features)`` rows (tokens), or ``(in_features,)`` unbatched.
        linear_weight: ``(C, in_features)``, or ``(C, d1, ..., dK, in_features)``
            for a K-dimensional loss (logits ``(N, C, d1, ..., dK)``, softmax over
            ``C``; needs batched input).
        target: class indices (any integer dtype), ``()``, ``(N)`` or
            ``(N, d1, ..., dK)``; or class probabilities, floating, the logits' shape.
        linear_bias: optional ``(C, d1, ..., dK)`` bias.
        weight: optional ``(C,)`` class weight (not differentiated).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``, as :func:`jaxloss.cross_entropy`.
        ignore_index: ``None`` means -100 for class indices; must be ``None`` with
            class probabilities (torch's rule).
        label_smoothing: in ``[0, 1]``, as :func:`jaxloss.cross_entropy`: a Python
            number or a traced scalar (a new value does not recompile). Not
            differentiated (torch's is a Python float): its gradient is zero.
        chunk_size: rows of logits computed at a time. ``None``: the largest power
            of two with at most 2**24 logits per chunk (64 MiB in float32; 256
            rows for C = 65536), see :func:`default_chunk_size`.

    Returns:
        A scalar, or the per-sample loss for ``'none'``; dtype of ``input`` /
        ``linear_weight`` / ``linear_bias`` promoted (float16 / bfloat16 inputs are
        computed in float32).

    How it is computed. The rows are processed ``chunk_size`` at a time (a
    ``lax.scan``), so at most one chunk of logits — ``(chunk_size, C)`` — and its
    gradient exist at once, in the forward *and* the backward pass; the extra
    memory is ``O(chunk_size * C + C * in_features)`` instead of ``O(N * C)``.
    A ``jax.custom_vjp`` makes this hold for gradients too:

    * ``'mean'`` / ``'sum'`` (the scalar losses): the forward pass computes, chunk
      by chunk, the loss *and* its gradient wrt ``input``, ``linear_weight`` and
      ``linear_bias`` (logits, softmax-minus-one-hot in one fused pass, then
      ``dx = dz @ W`` and ``dW += dz.T @ x``), and the backward pass only scales
      them by the incoming cotangent. That is three matrix products per chunk,
      the same as the unchunked ``logits -> cross_entropy`` value and gradient,
      where recomputing the logits in the backward pass would cost four. Only the
      gradients of the differentiated arguments are computed (``symbolic_zeros``);
      a value-only call computes no gradient at all.
    * ``'none'``: each sample's cotangent is only known in the backward pass, so
      the forward pass computes the losses only and the backward pass recomputes
      the logits chunk by chunk (four products; torch's chunked path does the same).

    Class indices out of range (not ``ignore_index``) give NaN
    (:mod:`jaxloss.checked` raises torch's message). Derivatives wrt ``input``,
    ``linear_weight``, ``linear_bias`` (and a probability ``target``; ``weight`` is
    not differentiated), under ``jit`` and ``vmap``. Second derivatives
    (Hessian-vector products, reverse- or forward-over-reverse) work: the forward
    rule is plain JAX and is differentiated in turn. Forward-mode differentiation of
    the loss itself (``jax.jvp``, ``jax.jacfwd``) is not available (``custom_vjp``).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x = jnp.ones((4, 8))  # (N, in_features)
        >>> w = jnp.zeros((10, 8))  # (C, in_features): uniform logits
        >>> round(float(jaxloss.linear_cross_entropy(x, w, jnp.array([0, 3, 9, 1]))), 4)
        2.3026
        >>> import math; round(math.log(10), 4)
        2.3026
    """
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    batch, in_features, num_classes, out_features = _check_shapes(input, linear_weight, linear_bias)
    logits_shape = (*batch, num_classes, *out_features)
    probs = tuple(target.shape) == logits_shape
    if probs and ignore_index is not None:
        raise ValueError("ignore_index cannot be specified when target contains probabilities")
    ignore = -100 if ignore_index is None else ignore_index
    _softmax.check_ignore_index(ignore)
    if probs:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(
                f"Expected floating point type for target with class probabilities, got {target.dtype}"
            )
        _softmax.check_weight(weight, logits_shape, prefix="cross_entropy: ")
    else:
        target = _softmax.check_index_target(logits_shape, target)
        _softmax.check_weight(weight, logits_shape)

    arrays = [a for a in (input, linear_weight, linear_bias) if a is not None]
    if probs:
        arrays += [target] + ([weight] if weight is not None else [])
    dtype = result_float_dtype(*arrays)
    work = opmath_dtype(dtype)
    n_rows = batch[0] if batch else 1
    d = math.prod(out_features)
    x = input.astype(work).reshape(n_rows, in_features)
    w = linear_weight.astype(work).reshape(num_classes * d, in_features)
    b = None if linear_bias is None else linear_bias.astype(work).reshape(num_classes * d)
    cw = None if weight is None else weight.astype(work)
    if probs:
        t = target.astype(work).reshape((n_rows, num_classes, d) if out_features else (n_rows, num_classes))
    else:
        t = target.reshape((n_rows, d) if out_features else (n_rows,))
        _softmax.check_targets_in_range(t, _softmax.bad_targets(t, num_classes, ignore))
    chunk = chunk_size if chunk_size is not None else default_chunk_size(num_classes * d)
    cfg = _Config(probs, ignore, reduction, num_classes, out_features, max(1, min(chunk, n_rows)))
    ls = None if label_smoothing is None else jnp.asarray(label_smoothing, work)
    out = _chunked(cfg, x, w, b, t, cw, ls)
    if reduction == "none":
        out = out.reshape(*batch, *out_features)
    return out.astype(dtype)
