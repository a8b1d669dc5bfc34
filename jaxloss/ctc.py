"""Connectionist temporal classification loss: ``torch.nn.functional.ctc_loss`` (torch 2.13).

The forward (alpha) and backward (beta) recursions of Graves et al. (2006) run in
log space with :func:`jax.lax.scan` over time, vectorised over the batch and the
``2S + 1`` states of the blank-extended targets, with torch's CPU kernel's exact
per-step formula (``log(e1 + e2 + e3) + max + log_prob``, a ``-inf`` maximum
replaced by 0). The gradient is a :func:`jax.custom_vjp` reproducing torch's
``_ctc_loss_backward`` (see :func:`ctc_loss` for how it differs from the true
gradient and why that does not matter after ``log_softmax``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checked
from jaxloss._dtypes import Array, ArrayLike, opmath_dtype
from jaxloss._registry import loss_function
from jaxloss._shapes import Reduction

_WHERE = " (while checking arguments for ctc_loss_allocate_outputs)"
_NEG_INF = -jnp.inf

Lengths = ArrayLike | Sequence[int]


# --------------------------------------------------------------------------- log-space helpers
def _lse3(a: Array, b: Array, c: Array) -> Array:
    """torch's ``log(exp(a-m) + exp(b-m) + exp(c-m)) + m`` with ``m = max``, 0 if ``m == -inf``."""
    m = jnp.maximum(jnp.maximum(a, b), c)
    m = jnp.where(m == _NEG_INF, jnp.zeros_like(m), m)
    return jnp.log(jnp.exp(a - m) + jnp.exp(b - m) + jnp.exp(c - m)) + m


def _lse2(a: Array, b: Array) -> Array:
    m = jnp.maximum(a, b)
    m = jnp.where(m == _NEG_INF, jnp.zeros_like(m), m)
    return jnp.log(jnp.exp(a - m) + jnp.exp(b - m)) + m


def _shift_right(x: Array, k: int) -> Array:
    """``y[..., s] = x[..., s - k]``, ``-inf`` for ``s < k`` (along the last axis)."""
    pad = [(0, 0)] * (x.ndim - 1) + [(k, 0)]
    return jnp.pad(x, pad, constant_values=_NEG_INF)[..., : x.shape[-1]]


def _emissions(log_probs: Array, ext: Array) -> Array:
    """``lp_ext[t, n, s] = log_probs[t, n, ext[n, s]]``, shape ``(T, N, L)``."""
    idx = jnp.broadcast_to(ext[None], (log_probs.shape[0],) + ext.shape)
    return jnp.take_along_axis(log_probs, idx, axis=2, mode="clip")


# --------------------------------------------------------------------------- recursions
_UNROLL = 1  # scan unroll: >1 is slower on XLA:CPU (and compiles much slower)


def _scan(lp: Array, skip: Array, init: Array, start: Array, stop: Array, store: bool) -> tuple[Array, Array | None]:
    """The alpha recursion over ``R`` independent rows (torch's eq. (6)/(7)), shape ``(T, R, L)``.

    Row ``r`` starts at ``t = start[r]`` with ``alpha = lp`` on the states ``init[r]`` (``-inf``
    elsewhere, and before), follows ``alpha[t, s] = lse(alpha[t-1, s], alpha[t-1, s-1],
    alpha[t-1, s-2] if skip[s]) + lp[t, s]`` and is frozen from ``t = stop[r]`` on. Returns the
    last alpha ``(R, L)`` and (``store``) the pre-emission ``alpha_bar`` ``(T, R, L)``
    (``alpha = alpha_bar + lp``; 0 on the initial states)."""
    t_len = lp.shape[0]
    neg = jnp.asarray(_NEG_INF, lp.dtype)
    zero = jnp.zeros((), lp.dtype)
    first = init & (start == 0)[:, None]
    alpha0 = jnp.where(first, lp[0], neg)

    def step(alpha: Array, xs: tuple[Array, Array]) -> tuple[Array, Array | None]:
        lp_t, t = xs
        bar = _lse3(alpha, _shift_right(alpha, 1), jnp.where(skip, _shift_right(alpha, 2), neg))
        begin = init & (t == start)[:, None]
        # before its start a row stays -inf whatever lp holds there (frames torch never reads)
        new = jnp.where((t > start)[:, None], bar + lp_t, jnp.where(begin, lp_t, neg))
        new = jnp.where((t < stop)[:, None], new, alpha)
        return new, (jnp.where(begin, zero, bar) if store else None)

    last, bars = lax.scan(step, alpha0, (lp[1:], jnp.arange(1, t_len)), unroll=_UNROLL)
    if store:
        bars = jnp.concatenate([jnp.where(first, zero, neg)[None], bars], axis=0)
    return last, bars


def _alpha(lp_ext: Array, skip: Array, il: Array) -> Array:
    """Forward alpha at ``t = il - 1`` (frozen afterwards), shape ``(N, L)``."""
    init = jnp.broadcast_to(jnp.arange(lp_ext.shape[2]) < 2, skip.shape)
    return _scan(lp_ext, skip, init, jnp.zeros_like(il), il, store=False)[0]


def _log_likelihood(alpha_last: Array, il: Array, tl: Array) -> Array:
    """torch's final step: ``lse(alpha[2S'], alpha[2S'-1])``; empty input: 0 if the target is empty else -inf."""
    l1 = jnp.take_along_axis(alpha_last, (2 * tl)[:, None], axis=1, mode="clip")[:, 0]
    l2 = jnp.take_along_axis(alpha_last, jnp.maximum(2 * tl - 1, 0)[:, None], axis=1, mode="clip")[:, 0]
    l2 = jnp.where(tl > 0, l2, _NEG_INF)
    ll = _lse2(l1, l2)
    empty = jnp.where(tl == 0, 0.0, _NEG_INF).astype(ll.dtype)
    return jnp.where(il == 0, empty, ll)


def _alpha_beta(lp_ext: Array, skip: Array, il: Array, tl: Array) -> tuple[Array, Array, Array]:
    """Alpha and beta in one scan over ``2N`` rows.

    The backward recursion (torch's eq. (10)/(11)) is the forward one on the problem reversed in
    time and in states (``x[::-1, :, ::-1]``), started at ``t = T - il`` on the states of
    ``2 tl`` and ``2 tl - 1``; its arithmetic is then torch's, term for term. Returns the forward
    alpha at ``t = il - 1``, ``alpha_bar`` and ``beta`` (with the emission at ``t``; ``-inf`` for
    ``t >= il`` or ``s > 2 tl``), both ``(T, N, L)``."""
    t_len, n, n_states = lp_ext.shape
    s = jnp.arange(n_states)[None, :]
    fwd_init = jnp.broadcast_to(s < 2, skip.shape)
    rev_s = n_states - 1 - 2 * tl[:, None]  # state 2 tl, reversed
    rev_init = (s == rev_s) | ((s == rev_s + 1) & (tl[:, None] > 0))
    skip_up = jnp.pad(skip, [(0, 0), (0, 2)])[:, 2:]  # beta[s] may take beta[s + 2] iff skip[s + 2]
    lp_rev = lp_ext[::-1, :, ::-1]
    last, bars = _scan(
        jnp.concatenate([lp_ext, lp_rev], axis=1),
        jnp.concatenate([skip, skip_up[:, ::-1]]),
        jnp.concatenate([fwd_init, rev_init]),
        jnp.concatenate([jnp.zeros_like(il), t_len - il]),
        jnp.concatenate([il, jnp.full_like(il, t_len)]),
        store=True,
    )
    beta = (bars[:, n:] + lp_rev)[::-1, :, ::-1]
    return last[:n], bars[:, :n], beta


def _finish_nll(ll: Array, force_inf: Array, poison: Array) -> Array:
    nll = jnp.where(force_inf, jnp.inf, -ll)
    return _checked.nan_where(poison, nll)


# --------------------------------------------------------------------------- torch's gradient
@jax.custom_jvp
def _no_double_backward(x: Array) -> Array:
    return x


@_no_double_backward.defjvp
def _no_double_backward_jvp(primals: Any, tangents: Any) -> Any:
    raise NotImplementedError(
        "derivative for aten::_ctc_loss_backward is not implemented: like torch, jaxloss.ctc_loss "
        "has first derivatives only"
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def _ctc_nll(
    log_probs: Array, ext: Array, skip: Array, il: Array, tl: Array, force_inf: Array, poison: Array,
    zero_infinity: bool,
) -> Array:
    """Per-sample negative log-likelihood ``(N,)`` with torch's backward."""
    alpha_last = _alpha(_emissions(log_probs, ext), skip, il)
    return _finish_nll(_log_likelihood(alpha_last, il, tl), force_inf, poison)


def _ctc_nll_fwd(log_probs, ext, skip, il, tl, force_inf, poison, zero_infinity):  # type: ignore[no-untyped-def]
    alpha_last, bars, betas = _alpha_beta(_emissions(log_probs, ext), skip, il, tl)
    nll = _finish_nll(_log_likelihood(alpha_last, il, tl), force_inf, poison)
    return nll, (log_probs, ext, il, poison, bars, betas, nll)


def _ctc_nll_bwd(zero_infinity, res, g):  # type: ignore[no-untyped-def]
    log_probs, ext, il, poison, bars, betas, nll = res
    t_len, n, _ = log_probs.shape
    finite = jnp.isfinite(nll)
    # Occupation probability of (t, s): alpha[t, s] * beta[t, s] / (y[t, ext[s]] * p), computed as
    # exp(alpha_bar + beta + nll) so that a -inf log-prob gives 0 instead of torch's NaN.
    gamma = jnp.exp(bars + betas + jnp.where(finite, nll, 0.0)[None, :, None])
    n_idx = jnp.broadcast_to(jnp.arange(n)[:, None], ext.shape)
    occ = jnp.zeros_like(log_probs).at[:, n_idx, ext].add(gamma, mode="drop")
    live = jnp.arange(t_len)[:, None, None] < il[None, :, None]
    grad = jnp.where(live, (jnp.exp(log_probs) - occ) * g[None, :, None], 0.0)
    # torch: an infinite loss gives NaN over t < input_length (exp(-inf + inf)), or 0 with zero_infinity.
    infinite = (nll == jnp.inf)[None, :, None]
    if zero_infinity:
        grad = jnp.where(infinite, 0.0, grad)
    else:
        grad = jnp.where(infinite & live, jnp.nan, grad)
    grad = jnp.where(poison[None, :, None], jnp.nan, grad)
    return (_no_double_backward(grad.astype(log_probs.dtype)), None, None, None, None, None, None)


_ctc_nll.defvjp(_ctc_nll_fwd, _ctc_nll_bwd)


# --------------------------------------------------------------------------- argument handling
def _as_lengths(x: Any, name: str, n: int) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must be integral")
    if x.size != n:
        raise ValueError(f"{name} must be of size batch_size")
    x = x.reshape(n)
    return x.astype(jnp.int32) if x.dtype.itemsize < 4 else x


def _prepare(
    log_probs: Array, targets: Array, input_lengths: Lengths, target_lengths: Lengths, blank: int,
) -> tuple[Array, tuple[Array, ...], Array]:
    """Trace-time checks, run-time value checks and the extended-label tables.

    Returns ``log_probs`` as ``(T, N, C)``, the core's integer arguments
    ``(ext, skip, il, tl, force_inf, poison)`` and the raw target lengths (for 'mean').
    """
    t_len, n, n_cls = log_probs.shape
    if log_probs.size == 0:
        raise ValueError("log_probs tensor must not be empty")
    if isinstance(blank, bool) or not isinstance(blank, int):
        raise TypeError(f"blank must be a Python int, got {type(blank).__name__}")
    if not 0 <= blank < n_cls:
        raise ValueError("blank must be in label range")
    il_raw = _as_lengths(input_lengths, "input_lengths", n)
    tl_raw = _as_lengths(target_lengths, "target_lengths", n)

    if targets.ndim not in (1, 2):
        raise ValueError(
            f"Expected 1 to 2 dimensions, but got {targets.ndim}-dimensional tensor for argument #2 'targets'" + _WHERE
        )
    if targets.dtype == jnp.bool_ or jnp.issubdtype(targets.dtype, jnp.floating):
        targets = targets.astype(jnp.int32)  # torch: targets.to(kLong) (truncation)
    elif not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must have an integer dtype (class indices), got {targets.dtype}")

    # Value checks, in torch's order: target lengths, target size, input lengths.
    tl_neg = tl_raw < 0
    _checked.value_check(
        ~tl_neg, "Expected target_lengths to have value at least 0, but got value {}" + _WHERE, _checked.first_bad(tl_neg, tl_raw)
    )
    tl_nonneg = jnp.maximum(tl_raw, 0)
    if targets.ndim == 1:  # concatenated
        total = targets.shape[0]
        size_ok = jnp.sum(tl_nonneg) == total
        _checked.value_check(
            size_ok | jnp.any(tl_neg),
            "Expected tensor to have size {} at dimension 0, but got size " + str(total)
            + " for argument #2 'targets'" + _WHERE,
            jnp.sum(tl_nonneg),
        )
        slots = min(total, t_len)  # a target longer than T is infeasible (inf): no need for its states
        tl_c = jnp.clip(tl_nonneg, 0, total).astype(jnp.int32)
        offsets = jnp.cumsum(tl_c) - tl_c
        pos = offsets[:, None] + jnp.arange(slots, dtype=jnp.int32)[None]
        labels = jnp.take(targets, pos, axis=0, mode="clip") if total else jnp.zeros((n, 0), targets.dtype)
        invalid = jnp.broadcast_to(~size_ok, (n,))
    else:  # padded (N, S)
        if targets.shape[0] != n:
            raise ValueError(
                f"Expected tensor to have size {n} at dimension 0, but got size {targets.shape[0]} "
                "for argument #2 'targets'" + _WHERE
            )
        width = targets.shape[1]
        too_wide = tl_raw > width
        _checked.value_check(
            ~jnp.any(too_wide) | jnp.any(tl_neg),
            "Expected tensor to have size at least {} at dimension 1, but got size " + str(width)
            + " for argument #2 'targets'" + _WHERE,
            jnp.max(tl_raw),
        )
        slots = min(width, t_len)
        labels = targets[:, :slots]
        invalid = too_wide
    il_bad_low, il_bad_high = il_raw < 0, il_raw > t_len
    il_bad = il_bad_low | il_bad_high
    first_low = _checked.first_bad(il_bad, il_bad_low)
    _checked.value_check(
        ~(jnp.any(il_bad) & first_low),
        "Expected input_lengths to have value at least 0, but got value {}" + _WHERE, _checked.first_bad(il_bad, il_raw),
    )
    _checked.value_check(
        ~(jnp.any(il_bad) & ~first_low),
        f"Expected input_lengths to have value at most {t_len}, but got value {{}}" + _WHERE, _checked.first_bad(il_bad, il_raw),
    )

    # Target values inside each target length: torch does not check them (it reads out of bounds
    # memory for an index outside [0, C), and its documentation forbids the blank index).
    in_target = jnp.arange(slots)[None] < tl_raw[:, None]
    bad_index = in_target & ((labels < 0) | (labels >= n_cls))
    is_blank = in_target & (labels == blank)
    _checked.value_check(
        ~bad_index, f"ctc_loss: target index {{}} is out of bounds for log_probs with {n_cls} classes",
        _checked.first_bad(bad_index, labels),
    )
    _checked.value_check(
        ~is_blank, f"ctc_loss: targets must not contain the blank index ({blank}): the target index cannot be blank",
    )
    labels = jnp.where(in_target, jnp.clip(labels, 0, n_cls - 1), blank).astype(jnp.int32)

    ext = jnp.full((n, 2 * slots + 1), blank, jnp.int32)
    ext = ext.at[:, 1::2].set(labels)
    # [:, :L]: with every target empty (L = 1) the pad would give 2 columns
    skip = jnp.pad(ext[:, 2:] != ext[:, :-2], [(0, 0), (2, 0)])[:, : ext.shape[1]]
    poison = tl_neg | invalid | il_bad | jnp.any(bad_index | is_blank, axis=1)
    force_inf = tl_nonneg > slots  # longer than T: infeasible (or invalid, then poisoned)
    il = jnp.clip(il_raw, 0, t_len).astype(jnp.int32)
    tl = jnp.clip(tl_nonneg, 0, slots).astype(jnp.int32)
    return log_probs, (ext, skip, il, tl, force_inf, poison), tl_raw


def _ctc_loss_impl(
    core: Callable[..., Array], log_probs: Array, targets: Array, input_lengths: Lengths, target_lengths: Lengths,
    blank: int, reduction: str, zero_infinity: bool,
) -> Array:
    log_probs, targets = jnp.asarray(log_probs), jnp.asarray(targets)
    if not jnp.issubdtype(log_probs.dtype, jnp.floating):
        raise TypeError(f'"ctc_loss" not implemented for \'{log_probs.dtype}\': log_probs must have a floating dtype')
    batched = log_probs.ndim == 3
    if log_probs.ndim not in (2, 3):  # torch unsqueezes a non-3-D input first
        raise ValueError(
            f"Expected 3-dimensional tensor, but got {log_probs.ndim + 1}-dimensional tensor "
            "for argument #1 'log_probs'" + _WHERE
        )
    dtype = log_probs.dtype
    work = opmath_dtype(dtype)
    lp = log_probs if batched else log_probs[:, None, :]
    lp, aux, tl_raw = _prepare(lp.astype(work), targets, input_lengths, target_lengths, blank)
    nll = core(lp, *aux, bool(zero_infinity))
    if zero_infinity:
        nll = jnp.where(nll == jnp.inf, jnp.zeros((), work), nll)
    if reduction == "mean":
        out = jnp.mean(nll / jnp.maximum(tl_raw.astype(work), 1))
    elif reduction == "sum":
        out = jnp.sum(nll)
    else:
        out = nll if batched else nll[0]
    return out.astype(dtype)


@loss_function(
    static_argnames=("blank", "reduction"),
    bools=("zero_infinity",),
    arrays={"log_probs": "float"},
    module="CTCLoss",
    forward=("log_probs", "targets", "input_lengths", "target_lengths"),
    torch="torch.nn.CTCLoss",
)
def ctc_loss(
    log_probs: Array,
    targets: Array,
    input_lengths: Lengths,
    target_lengths: Lengths,
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
) -> Array:
    r"""Connectionist temporal classification loss, ``torch.nn.functional.ctc_loss``.

    The negative log-likelihood of each target under all alignments of the
    blank-extended target to the input frames (Graves et al., 2006).

    Args:
        log_probs: ``(T, N, C)`` log-probabilities (e.g. ``log_softmax`` output), or ``(T, C)``
            unbatched. float16 / bfloat16 are computed in float32.
        targets: class indices, padded ``(N, S)`` or concatenated 1-D ``(sum(target_lengths),)``;
            unbatched: ``(S,)`` (concatenated: ``S`` must equal the target length, as in
            torch) or ``(1, S)``. Integer dtypes; float / bool are truncated like torch's
            ``targets.to(long)``.
        input_lengths: ``(N,)`` integer array (int32 or int64), list or tuple; each in ``[0, T]``.
            Unbatched: a 0-d array, one-element list / array or a Python int.
        target_lengths: ``(N,)`` likewise; each ``>= 0`` and ``<= S`` for padded targets.
        blank: index of the blank class, in ``[0, C)``. Default 0.
        reduction: ``'none'`` (``(N,)``, a scalar when unbatched) | ``'mean'`` (each loss
            divided by its target length clamped to >= 1, then the batch mean) | ``'sum'``.
        zero_infinity: replace infinite losses (and their gradients) by 0. Default False.

    Returns:
        The loss, dtype of ``log_probs``.

    **Infeasible targets.** A target that no alignment fits (longer than its input, counting
    one blank between repeated labels, or one whose every path crosses a ``-inf``
    log-probability) gives ``+inf`` and, as in torch, a NaN gradient over its first
    ``input_length`` frames (0 after them); ``zero_infinity=True`` gives 0 and a 0 gradient.
    This is torch's defined behaviour, not an error: :mod:`jaxloss.checked` does not raise.
    An empty input gives 0 (``-0.0``, as torch) for an empty target, else ``inf``.

    **Gradient (torch's, not autodiff's).** Like torch's ``_ctc_loss_backward``, the gradient
    with respect to ``log_probs`` is, for ``t < input_length``,

    .. math:: g_n \left(e^{\,\mathrm{lp}_{t,n,c}} - \gamma_{t,n,c}\right), \qquad
              \gamma_{t,n,c} = \frac{1}{p_n} \sum_{s:\, l'_s = c} \alpha_t(s)\,\beta_t(s) / y_{t,c}

    (``gamma``: posterior probability that frame ``t`` emits ``c``), and 0 for later frames.
    The true derivative of the function is ``-g_n * gamma``: torch adds ``g_n * exp(lp)``,
    assuming ``log_probs = log_softmax(logits)``. Through ``log_softmax`` the extra term
    vanishes (``sum_c (exp(lp) - gamma) = 0`` per frame), so gradients with respect to the
    logits are the true ones, and equal torch's; gradients taken directly with respect to
    ``log_probs`` equal torch's, not the function's derivative. Where a log-probability is
    ``-inf`` (and ``t < input_length``) torch's formula evaluates ``exp(-inf + inf)`` and gives
    NaN; jaxloss gives the limit, 0 (``exp(lp) = gamma = 0``), elsewhere they agree.

    **Higher order.** First derivatives only, as in torch: differentiating the gradient
    (``grad`` of ``grad``, ``hessian``) raises ``NotImplementedError``, forward mode
    (``jvp``, ``jacfwd``) raises JAX's ``TypeError`` for custom-VJP functions.

    **Invalid values** (cannot raise under ``jit``; NaN loss and NaN gradient for that sample,
    :mod:`jaxloss.checked` raises): ``input_lengths`` outside ``[0, T]``, negative
    ``target_lengths``, padded target lengths above ``S`` and concatenated targets whose size
    is not ``sum(target_lengths)`` (torch's messages; the latter poisons the whole batch),
    and target indices outside ``[0, C)`` or equal to ``blank`` (torch does not check these: it
    reads out of bounds memory, resp. computes a number its documentation calls invalid).

    **Cost.** ``O(T * N * (2S + 1))`` over ``T`` sequential steps, ``S`` the padded target width,
    capped at ``T``; for concatenated targets ``S = min(len(targets), T)`` (the longest target is
    not known at trace time), so padded targets are faster for long batches.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((4, 1, 3)), axis=-1)  # (T, N, C)
        >>> targets = jnp.array([[1, 2]])
        >>> round(float(jaxloss.ctc_loss(log_probs, targets, [4], [2], reduction='sum')), 4)
        1.6864
    """
    return _ctc_loss_impl(_ctc_nll, log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)

