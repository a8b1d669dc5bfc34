"""ctc.py against torch.nn.functional.ctc_loss: values, torch's gradient, the true gradient, errors.

Shapes are shared between tests on purpose (one compilation serves several tests).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax import lax

import jaxloss
from jaxloss import checked, ctc
from jaxloss._dtypes import Array
from tests.torch_compare import TORCH_DTYPES, assert_close, check_each


# --------------------------------------------------------------------------- reference (true gradient)
def _reference_nll(
    log_probs: Array, ext: Array, skip: Array, il: Array, tl: Array, force_inf: Array, poison: Array,
    zero_infinity: bool,
) -> Array:
    """Plain differentiable forward recursion (JAX autodiff gives the *true* gradient)."""

    def lse(*xs: Array) -> Array:
        m = lax.stop_gradient(functools.reduce(jnp.maximum, xs))
        m = jnp.where(m == ctc._NEG_INF, 0.0, m)
        tot = sum(jnp.exp(x - m) for x in xs)
        zero = tot == 0
        return jnp.where(zero, ctc._NEG_INF, jnp.log(jnp.where(zero, 1.0, tot)) + m)

    lp_ext = ctc._emissions(log_probs, ext)
    n_states = lp_ext.shape[-1]
    alpha0 = jnp.where(jnp.arange(n_states) < 2, lp_ext[0], ctc._NEG_INF)

    def step(alpha: Array, xs: tuple[Array, Array]) -> tuple[Array, None]:
        lp_t, t = xs
        bar = lse(alpha, ctc._shift_right(alpha, 1), jnp.where(skip, ctc._shift_right(alpha, 2), ctc._NEG_INF))
        return jnp.where((t < il)[:, None], bar + lp_t, alpha), None

    last, _ = lax.scan(step, alpha0, (lp_ext[1:], jnp.arange(1, lp_ext.shape[0])))
    l1 = jnp.take_along_axis(last, (2 * tl)[:, None], axis=1)[:, 0]
    l2 = jnp.take_along_axis(last, jnp.maximum(2 * tl - 1, 0)[:, None], axis=1)[:, 0]
    ll = lse(l1, jnp.where(tl > 0, l2, ctc._NEG_INF))
    ll = jnp.where(il == 0, jnp.where(tl == 0, 0.0, ctc._NEG_INF), ll)
    return ctc._finish_nll(ll, force_inf, poison)


def _reference_ctc_loss(
    log_probs: Array, targets: Array, input_lengths: ctc.Lengths, target_lengths: ctc.Lengths,
    blank: int = 0, reduction: str = "mean", zero_infinity: bool = False,
) -> Array:
    """:func:`ctc_loss` with JAX autodiff through the forward recursion (the true gradient)."""
    return ctc._ctc_loss_impl(
        _reference_nll, log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity
    )


T, N, C, S = 10, 4, 5, 4
DTYPES = ["float32", "float64"]
REDUCTIONS = ["none", "mean", "sum"]


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _data(seed=0, blank=0):
    """log_probs (T, N, C), padded targets (N, S), lengths: a repeat, an empty target, short inputs."""
    rng = np.random.default_rng(seed)
    lp = _log_softmax(1.5 * rng.normal(size=(T, N, C)))
    labels = np.array([c for c in range(C) if c != blank])
    tg = rng.choice(labels, size=(N, S))
    tg[0, 1] = tg[0, 0]  # repeated label: needs a blank in between
    il = np.array([T, T - 1, T - 3, T - 5])
    tl = np.array([S, 3, 1, 0])
    return lp, tg, il, tl


def _concat(tg, tl):
    return np.concatenate([tg[i, : tl[i]] for i in range(len(tl))])


def _lengths(x, kind):
    if kind == "list":
        return [int(v) for v in x]
    if kind == "tuple":
        return tuple(int(v) for v in x)
    return np.asarray(x, dtype=np.int32 if kind == "array32" else np.int64)


def _t(x):
    return torch.as_tensor(x) if isinstance(x, np.ndarray) else x


def _vjp_body(lp, tg, il, tl, blank=0, reduction="mean", zero_infinity=False):
    kw = {"blank": blank, "reduction": reduction, "zero_infinity": zero_infinity}
    out, pull = jax.vjp(lambda x: jaxloss.ctc_loss(x, tg, il, tl, **kw), lp)
    return out, pull(jnp.ones_like(out))[0]


@functools.partial(jax.jit, static_argnames=("blank", "reduction", "zero_infinity"))
def _vjp(lp, tg, il, tl, blank=0, reduction="mean", zero_infinity=False):
    """Value and gradient (cotangent of ones) of jaxloss.ctc_loss in one compilation, cached
    across tests (lengths given as lists / tuples stay lists / tuples: pytrees)."""
    return _vjp_body(lp, tg, il, tl, blank, reduction, zero_infinity)


@functools.partial(jax.jit, static_argnames=("options",))
def _vjp_each(lp, cases, options):
    """:func:`_vjp` of each ``(tg, il, tl)`` of ``cases`` with the keyword options of the same
    index of ``options`` (a tuple of ``(name, value)`` tuples), all in ONE compiled program: a
    CTC program's compilation is most of its test's time, and much of it is paid per program."""
    return [_vjp_body(lp, *case, **dict(kw)) for case, kw in zip(cases, options)]


def _compare(lp, tg, il, tl, dtype="float64", **kw):
    """Value and gradient wrt log_probs against torch, within parity/tolerances.py."""
    t_x = torch.tensor(lp, dtype=TORCH_DTYPES[dtype], requires_grad=True)
    t_out = F.ctc_loss(t_x, _t(tg), _t(il), _t(tl), **kw)
    (t_g,) = torch.autograd.grad(t_out.sum(), t_x)
    j_out, j_g = _vjp(jnp.asarray(lp, dtype), tg, il, tl, **kw)
    assert j_out.dtype == jnp.dtype(dtype) and j_g.dtype == jnp.dtype(dtype)
    assert_close(j_out, t_out, dtype, "value")
    assert_close(j_g, t_g, dtype, "grad wrt log_probs")
    return np.asarray(j_out), np.asarray(j_g)


@functools.partial(jax.jit, static_argnames=("options",))
def _vjp_cases(cases, options):
    """:func:`_vjp` of each ``(lp, tg, il, tl)`` of ``cases`` (each its own log_probs, dtype
    and shapes) with the keyword options of the same index of ``options``: ONE compiled program."""
    return [_vjp_body(*case, **dict(kw)) for case, kw in zip(cases, options)]


def _compare_each(cases):
    """:func:`_compare` of each ``(lp, tg, il, tl, dtype, kw)`` of ``cases``, the JAX side of
    all of them in one compiled program (:func:`_vjp_cases`; a CTC program's compilation is most
    of its test's time). Every case is checked, then one error lists the failing ones. Returns
    each case's ``(value, gradient)`` as NumPy arrays."""
    results = _vjp_cases(tuple((jnp.asarray(lp, dtype), tg, il, tl) for lp, tg, il, tl, dtype, _ in cases),
                         tuple(tuple(sorted(kw.items())) for *_, kw in cases))  # fmt: skip
    failed, outs = [], []
    for i, ((lp, tg, il, tl, dtype, kw), (j_out, j_g)) in enumerate(zip(cases, results)):
        t_x = torch.tensor(lp, dtype=TORCH_DTYPES[dtype], requires_grad=True)
        t_out = F.ctc_loss(t_x, _t(tg), _t(il), _t(tl), **kw)
        (t_g,) = torch.autograd.grad(t_out.sum(), t_x)
        try:
            assert j_out.dtype == jnp.dtype(dtype) and j_g.dtype == jnp.dtype(dtype), (j_out.dtype, j_g.dtype)
            assert_close(j_out, t_out, dtype, "value")
            assert_close(j_g, t_g, dtype, "grad wrt log_probs")
        except AssertionError as e:
            failed.append(f"case {i} ({dtype}, {kw}, targets {np.shape(tg)}): {e}")
        outs.append((np.asarray(j_out), np.asarray(j_g)))
    if failed:
        raise AssertionError(f"{len(failed)} of {len(cases)} cases fail:\n" + "\n".join(failed))
    return outs


def _torch_grad(lp, tg, il, tl, **kw):
    x = torch.tensor(lp).requires_grad_(True)
    out = F.ctc_loss(x, torch.as_tensor(tg), torch.as_tensor(il), torch.as_tensor(tl), **kw)
    (g,) = torch.autograd.grad(out.sum(), x)
    return out.detach().numpy(), g.numpy()


# --------------------------------------------------------------------------- against torch
_KINDS = ["array64", "list", "tuple"]  # lengths given as an int64 array (int32 for padded), list, tuple


@functools.partial(jax.jit, static_argnames=("options",))
def _vjp_and_plain(lp, cases, options, plain):
    """:func:`_vjp_each` of ``cases`` and the plain (non-differentiated) ``'none'`` value of
    each ``(tg, il, tl)`` of ``plain``: one compiled program."""
    return (_vjp_each(lp, cases, options),
            [jaxloss.ctc_loss(lp, *case, reduction="none") for case in plain])  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(dtype):
    """reduction x dtype x layout, the length kind rotating so that every pair of
    (kind, reduction), (kind, dtype), (kind, layout) occurs (both layouts' reductions of one
    dtype, and each layout's plain (non-differentiated) 'none' value, in one compiled program)."""
    d = DTYPES.index(dtype)
    lp, tg0, il, tl = _data()
    labels, cases, plain = [], [], []
    for l, layout in enumerate(["padded", "concatenated"]):
        tg = _concat(tg0, tl) if layout == "concatenated" else tg0
        kinds = []
        for r in range(len(REDUCTIONS)):
            kind = _KINDS[(r + d + 2 * l) % 3]
            kinds.append("array32" if kind == "array64" and layout == "padded" else kind)
        labels += [(layout, reduction, kind) for reduction, kind in zip(REDUCTIONS, kinds)]
        cases += [(tg, _lengths(il, kind), _lengths(tl, kind)) for kind in kinds]
        kind = kinds[REDUCTIONS.index("none")]
        plain.append((tg, _lengths(il, kind), _lengths(tl, kind)))
    options = tuple((("reduction", r),) for _, r, _ in labels)
    results, plain_values = _vjp_and_plain(jnp.asarray(lp, dtype), cases, options, plain)
    for (layout, reduction, kind), (tg, il_k, tl_k), (j_out, j_g) in zip(labels, cases, results):
        t_x = torch.tensor(lp, dtype=TORCH_DTYPES[dtype], requires_grad=True)
        t_out = F.ctc_loss(t_x, _t(tg), _t(il_k), _t(tl_k), reduction=reduction)
        (t_g,) = torch.autograd.grad(t_out.sum(), t_x)
        assert j_out.dtype == jnp.dtype(dtype) and j_g.dtype == jnp.dtype(dtype)
        assert_close(j_out, t_out, dtype, f"value ({layout}, {reduction}, lengths {kind})")
        assert_close(j_g, t_g, dtype, f"grad wrt log_probs ({layout}, {reduction}, lengths {kind})")
    for (tg, _, _), value in zip(plain, plain_values):
        assert_close(value, F.ctc_loss(torch.tensor(lp, dtype=TORCH_DTYPES[dtype]), torch.as_tensor(tg),
                                       torch.as_tensor(il), torch.as_tensor(tl), reduction="none"),
                     dtype, f"plain value (targets {tg.shape})")  # fmt: skip


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_random_cases_match_torch(zero_infinity):
    """Random lengths (empty inputs and targets, infeasible ones) and many repeats (one program
    per zero_infinity: :func:`_vjp`'s, which several tests share)."""
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        lp = _log_softmax(2.0 * rng.normal(size=(T, N, C)))
        tg = rng.integers(1, 3 if seed % 2 else C, size=(N, S))  # few classes: many repeats
        il = rng.integers(0, T + 1, size=N)
        tl = rng.integers(0, S + 1, size=N)
        _compare(lp, tg, il, tl, reduction="none", zero_infinity=zero_infinity)


def test_gradient_wrt_log_probs_is_torchs_not_autodiffs():
    """(a) Raw (unnormalised) log_probs: our gradient is torch's, which is the true gradient plus
    ``g_n * exp(log_probs)`` on the frames ``t < input_length``."""
    lp, tg, il, tl = _data()
    raw = np.random.default_rng(1).normal(size=lp.shape)  # not log-probabilities
    _, ours = _compare(raw, tg, il, tl, reduction="sum")
    true = jax.jit(jax.grad(lambda x: _reference_ctc_loss(x, tg, il, tl, reduction="sum")))(jnp.asarray(raw))
    live = np.arange(T)[:, None, None] < il[None, :, None]
    np.testing.assert_allclose(ours - np.asarray(true), np.exp(raw) * live, rtol=1e-10, atol=1e-12)


def test_gradient_through_log_softmax_is_torchs_and_true():
    """(b) logits -> log_softmax -> ctc: the gradient wrt logits equals torch's and the true one
    (JAX autodiff through a plain forward recursion). Three (reduction, dtype) cases, one
    compiled program."""
    _, tg, il, tl = _data()
    logits = np.random.default_rng(2).normal(size=(T, N, C)) * 2
    cases = [("mean", "float32"), ("none", "float64"), ("sum", "float64")]

    @jax.jit
    def every(xs):
        out = []
        for x, (reduction, _) in zip(xs, cases):
            def ours(x, reduction=reduction):
                return jnp.sum(jaxloss.ctc_loss(jax.nn.log_softmax(x, -1), tg, il, tl, reduction=reduction))

            def true(x, reduction=reduction):
                return jnp.sum(_reference_ctc_loss(jax.nn.log_softmax(x, -1), tg, il, tl, reduction=reduction))

            out.append((*jax.value_and_grad(ours)(x), *jax.value_and_grad(true)(x)))
        return out

    results = every([jnp.asarray(logits, dtype) for _, dtype in cases])
    for (reduction, dtype), (v, g, v_true, g_true) in zip(cases, results):
        x = torch.tensor(logits, dtype=TORCH_DTYPES[dtype], requires_grad=True)
        out = F.ctc_loss(x.log_softmax(-1), torch.tensor(tg), torch.tensor(il), torch.tensor(tl),
                         reduction=reduction).sum()  # fmt: skip
        (g_torch,) = torch.autograd.grad(out, x)
        what = f" ({reduction}, {dtype})"
        assert g.dtype == jnp.dtype(dtype), what
        assert_close(v, out, dtype, "value" + what)
        assert_close(g, g_torch, dtype, "grad wrt logits vs torch" + what)
        assert_close(v_true, out, dtype, "reference value" + what)
        assert_close(g, g_true, dtype, "grad wrt logits vs true gradient" + what)


# --------------------------------------------------------------------------- layouts and options
def test_unbatched():
    lp, tg, il, tl = _data()
    lp1 = lp[:, 0]
    (_, _), (out, _) = _compare_each([
        # 1-D targets are "concatenated": exactly target_length long (torch's rule)
        (lp1, tg[0], [int(il[0])], (int(tl[0]),), "float64", {"reduction": "mean"}),
        # (1, S) targets are padded: a shorter target length is fine
        (lp1, tg[:1], np.array(8), np.array([2]), "float64", {"reduction": "none"}),
    ])
    assert out.shape == ()
    out = jaxloss.ctc_loss(jnp.asarray(lp1), tg[0], int(il[0]), int(tl[0]), reduction="none")  # Python ints too
    expected = F.ctc_loss(torch.tensor(lp1), torch.tensor(tg[0]), torch.tensor(il[0]), torch.tensor(tl[0]), reduction="none")
    assert out.shape == () and np.allclose(out, expected, rtol=1e-12)


def test_every_target_empty():
    # Found by `python -m jaxloss.parity --fuzz 2000 --seed 7`: targets with no entry at all (unbatched
    # (0,), padded (N, 0), concatenated (0,)) raised (argmax of an empty array; a 2-column skip mask
    # for the single blank state). Each sample's loss is then -log P(all blanks), as in torch.
    # The three layouts by the three reductions: one check_each grid, one compiled program.
    lp, _, il, _ = _data()
    zeros = np.zeros((N,), np.int64)
    il0 = il.copy()
    il0[-1] = 0  # and an empty input
    layouts = [
        (lp[:, 0], np.zeros((0,), np.int64), np.array(int(il[0])), np.array(0)),
        (lp, np.zeros((N, 0), np.int64), il, zeros),
        (lp, np.zeros((0,), np.int64), il0, zeros),
    ]
    names = ("log_probs", "targets", "input_lengths", "target_lengths")
    arrays = [dict(zip(names, layout)) for _ in REDUCTIONS for layout in layouts]
    options = [{"reduction": r} for r in REDUCTIONS for _ in layouts]
    check_each(jaxloss.ctc_loss, F.ctc_loss, arrays, options, grad=("log_probs",), dtype="float64")


def test_blank_not_zero():
    cases = []
    for blank, layout in [(2, "padded"), (C - 1, "concatenated")]:
        lp, tg, il, tl = _data(seed=3, blank=blank)
        assert (tg == 0).any()  # class 0 is an ordinary label here
        if layout == "padded":
            cases.append((lp, tg, il, tl, "float64", {"blank": blank, "reduction": "none"}))
        else:
            cases.append((lp, _concat(tg, tl), il, tl, "float32", {"blank": blank}))
    _compare_each(cases)


def test_repeated_labels_need_blanks():
    lp, _, _, _ = _data()
    tg = np.array([[1, 1, 1, 0], [2, 2, 3, 3], [1, 2, 1, 2], [4, 4, 4, 4]])
    tl = np.array([3, 4, 4, 4])
    for il in ([5, 6, 4, 7], [4, 5, 4, 6]):  # exactly enough frames, then one too few (-> inf)
        for zero_infinity in (False, True):
            out, _ = _compare(lp, tg, np.array(il), tl, reduction="none", zero_infinity=zero_infinity)
    assert out[2] > 0 and (out[[0, 1, 3]] == 0).all()  # zero_infinity: the infeasible ones are 0
    out = np.asarray(jaxloss.ctc_loss(lp, tg, np.array([4, 5, 4, 6]), tl, reduction="none"))
    assert np.isinf(out[[0, 1, 3]]).all() and np.isfinite(out[2])


def test_infeasible_targets():
    """Targets longer than their input: inf (NaN gradient on t < input_length), or 0 with
    zero_infinity. Each (reduction, zero_infinity) in float64, and 'mean' without zero_infinity
    in float32 too: one compiled program."""
    lp, tg, _, _ = _data()
    il = np.array([3, 0, 0, T])  # too short; empty input with a target; empty input, empty target
    tl = np.array([S, 2, 0, 1])
    grid = [(reduction, zi) for reduction in ["none", "mean"] for zi in (False, True)]
    cases = [(lp, tg, il, tl, "float64", {"reduction": r, "zero_infinity": zi}) for r, zi in grid]
    cases.append((lp, tg, il, tl, "float32", {"reduction": "mean", "zero_infinity": False}))
    results = _compare_each(cases)
    for (reduction, zero_infinity), (out, g) in zip(grid, results):
        what = f"{reduction}, zero_infinity={zero_infinity}"
        if reduction == "mean":
            assert np.isfinite(out) == zero_infinity, what
        else:
            assert out[2] == 0 and np.signbit(out[2]), what  # torch's -0.0
            assert np.isinf(out[:2]).all() != zero_infinity, what
        if zero_infinity:
            assert (g[:, 0] == 0).all(), what
        else:
            assert np.isnan(g[:3, 0]).all() and (g[3:, 0] == 0).all(), what
        assert (g[:, 1:3] == 0).all() and np.isfinite(g[:, 3]).all(), what


def test_targets_longer_than_input_axis():
    """Concatenated targets of total length > T and padded width S > T: only min(., T) label
    slots are computed; longer targets are still inf (and their gradient NaN)."""
    lp, _, _, _ = _data()
    rng = np.random.default_rng(4)
    tl = np.array([12, 3, 5, 9])  # 12 > T: infeasible; 29 labels in all
    il = np.array([T, T, 8, T])
    flat = rng.integers(1, C, size=int(tl.sum()))
    padded = np.zeros((N, 12), np.int64)
    for i, (a, b) in enumerate(zip(np.cumsum(tl) - tl, tl)):
        padded[i, :b] = flat[a : a + b]
    for out, _ in _compare_each([(lp, tg, il, tl, "float64", {"reduction": "none"}) for tg in (flat, padded)]):
        assert np.isinf(out[0]) and np.isfinite(out[1:]).all()


def test_minus_inf_log_probs():
    """-inf log-probabilities: torch's value; torch's gradient where torch's is finite, and 0
    (the limit) where torch's formula gives NaN; no NaN at all."""
    lp, tg, il, tl = _data()
    lp = lp.copy()
    lp[2, 0, :] = -np.inf
    lp[2, 0, tg[0, 0]] = 0.0  # a one-hot frame
    lp[:, 1, 4] = -np.inf  # a class never emitted
    lp[1, 2, 0] = -np.inf
    tg[1, :3] = [1, 2, 3]
    v_t, g_t = _torch_grad(lp, tg, il, tl, reduction="none")
    v_j, g_j = (np.asarray(a) for a in _vjp(jnp.asarray(lp), tg, il, tl, reduction="none"))
    assert np.isfinite(v_j).all() and not np.isnan(g_j).any()
    np.testing.assert_allclose(v_j, v_t, rtol=1e-12)
    torch_nan = np.isnan(g_t)
    live = np.arange(T)[:, None, None] < il[None, :, None]
    np.testing.assert_array_equal(torch_nan, np.isneginf(lp) & live)  # torch: NaN exactly there
    np.testing.assert_allclose(g_j[~torch_nan], g_t[~torch_nan], rtol=1e-10, atol=1e-12)
    assert (g_j[torch_nan] == 0).all()
    # every path of sample 1 crosses a -inf: inf loss, NaN gradient (as torch) unless zero_infinity
    lp[:, 1, 2] = -np.inf
    for zi in (False, True):
        v_t, g_t = _torch_grad(lp, tg, il, tl, reduction="none", zero_infinity=zi)
        v_j, g_j = (np.asarray(a) for a in _vjp(jnp.asarray(lp), tg, il, tl, reduction="none", zero_infinity=zi))
        np.testing.assert_allclose(v_j, v_t, rtol=1e-12)
        assert v_j[1] == (0 if zi else np.inf)
        assert (g_j[:, 1] == 0).all() if zi else np.isnan(g_j[: il[1], 1]).all() and (g_j[il[1] :, 1] == 0).all()
        others = [0, 2, 3]
        finite = ~np.isnan(g_t[:, others])
        np.testing.assert_allclose(g_j[:, others][finite], g_t[:, others][finite], rtol=1e-10, atol=1e-12)


def test_frames_beyond_input_length_are_never_read():
    lp, tg, il, tl = _data()
    garbage = lp.copy()
    for n in range(N):
        garbage[il[n] :, n] = [np.nan, np.inf, -np.inf, 1e30, 0.0][: C]
    v_t, g_t = _torch_grad(lp, tg, il, tl, reduction="none")
    v_j, g_j = (np.asarray(a) for a in _vjp(jnp.asarray(garbage), tg, il, tl, reduction="none"))
    np.testing.assert_allclose(v_j, v_t, rtol=1e-12)
    np.testing.assert_allclose(g_j, g_t, rtol=1e-10, atol=1e-12)


def test_low_precision_computed_in_float32():
    """float16 and bfloat16: the float32 result of the same (rounded) values, rounded; both
    dtypes and their float32 references in one compiled program."""
    lp, tg, il, tl = _data()
    dtypes = ["float16", "bfloat16"]
    lows = [jnp.asarray(lp, dtype) for dtype in dtypes]
    cases = [(x, tg, il, tl) for x in lows] + [(x.astype(jnp.float32), tg, il, tl) for x in lows]
    results = _vjp_cases(tuple(cases), ((),) * len(cases))
    for dtype, (out, g), (ref, g_ref) in zip(dtypes, results[:2], results[2:]):
        assert out.dtype == jnp.dtype(dtype) and g.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.float32(out), np.float32(ref.astype(dtype)), err_msg=dtype)
        np.testing.assert_array_equal(np.float32(g), np.float32(g_ref.astype(dtype)), err_msg=dtype)


# --------------------------------------------------------------------------- transformations
def test_jit_and_list_lengths():
    lp, tg, il, tl = _data()
    expected = _vjp(jnp.asarray(lp), tg, il, tl, reduction="none")[0]  # (the program other tests compile)

    @jax.jit
    def f(x, il, tl):
        return jaxloss.ctc_loss(x, tg, il, tl, reduction="none")

    np.testing.assert_allclose(f(lp, [int(v) for v in il], tuple(int(v) for v in tl)), expected, rtol=1e-12)
    np.testing.assert_allclose(f(lp, jnp.asarray(il, jnp.int32), jnp.asarray(tl, jnp.int32)), expected, rtol=1e-12)


def test_vmap():
    lp, tg, il, tl = _data()
    expected, g_expected = _vjp(jnp.asarray(lp), tg, il, tl, reduction="none")

    def single(x, t, i, k):  # unbatched: x (T, C), t (1, S) padded, lengths 0-d
        return jaxloss.ctc_loss(x, t[None], i, k, reduction="none")

    @jax.jit  # both vmaps in one compiled program (eager: a program per vmapped call and pass)
    def vmapped(lp, stack):
        return (jax.vmap(jax.value_and_grad(single))(jnp.swapaxes(lp, 0, 1), tg, il, tl),
                jax.vmap(lambda x: jaxloss.ctc_loss(x, tg, il, tl, reduction="none"))(stack))  # fmt: skip

    # ... the second: a vmapped batch of batches
    stack = jnp.stack([lp, lp[::-1]])
    (batched, g), out = vmapped(jnp.asarray(lp), stack)
    np.testing.assert_allclose(batched, expected, rtol=1e-12)
    np.testing.assert_allclose(jnp.swapaxes(g, 0, 1), g_expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out[0], expected, rtol=1e-12)
    np.testing.assert_allclose(out[1], _vjp(jnp.asarray(lp[::-1]), tg, il, tl, reduction="none")[0], rtol=1e-12)


def test_second_order_raises_like_torch():
    lp, tg, il, tl = _data()
    x = torch.tensor(lp, requires_grad=True)
    (g,) = torch.autograd.grad(F.ctc_loss(x, torch.tensor(tg), torch.tensor(il), torch.tensor(tl)), x, create_graph=True)
    with pytest.raises(RuntimeError, match="derivative for aten::_ctc_loss_backward is not implemented"):
        torch.autograd.grad(g.sum(), x)

    def f(v):
        return jaxloss.ctc_loss(v, tg, il, tl)

    # traced only (make_jaxpr: the error is raised while tracing the gradient of the gradient;
    # nothing is compiled, where eager jax.grad compiled the first gradient's pieces)
    with pytest.raises(NotImplementedError, match="derivative for aten::_ctc_loss_backward is not implemented"):
        jax.make_jaxpr(jax.grad(lambda v: jnp.sum(jax.grad(f)(v))))(lp)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(f, (lp,), (lp,))


# --------------------------------------------------------------------------- bad values (checked mode)
@pytest.mark.parametrize(
    "case",
    ["input_too_long", "input_negative", "target_length_negative", "target_wider_than_targets", "concatenated_size"],
)
def test_checked_raises_torchs_message_and_fast_mode_gives_nan(case):
    lp, tg, il, tl = _data()
    il, tl = il.copy(), tl.copy()
    if case == "input_too_long":
        il[2] = T + 3
    elif case == "input_negative":
        il[1] = -2
        il[3] = T + 1  # the first bad one is reported, as in torch
    elif case == "target_length_negative":
        tl[3] = -1
    elif case == "target_wider_than_targets":
        tl[1] = S + 2
    else:
        tg = _concat(tg, tl)[:-1]
    with pytest.raises(RuntimeError) as expected:
        F.ctc_loss(torch.tensor(lp), torch.tensor(tg), torch.tensor(il), torch.tensor(tl))
    with pytest.raises(ValueError) as e:
        checked.ctc_loss(lp, tg, il, tl)
    assert str(e.value) == str(expected.value)
    out, g = (np.asarray(a) for a in _vjp(jnp.asarray(lp), tg, il, tl, reduction="none"))
    bad = np.isnan(out)
    assert bad.any() and np.isnan(g[:, bad]).all() and not np.isnan(g[:, ~bad]).any()
    assert bad.sum() == {"concatenated_size": N, "input_negative": 2}.get(case, 1)


@pytest.mark.parametrize("value", [C, -1, 0])
def test_bad_target_values(value):
    """Out-of-range indices (torch reads out of bounds memory) and the blank index (torch
    computes a number its docs call invalid): NaN for that sample, checked mode raises."""
    lp, tg, il, tl = _data()
    tg = tg.copy()
    tg[1, 2] = value  # inside target_lengths[1] == 3
    tg[2, 3] = C + 7  # padding beyond target_lengths[2]: ignored, as in torch
    out, g = (np.asarray(a) for a in _vjp(jnp.asarray(lp), tg, il, tl, reduction="none"))
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2, 3]]).all()
    assert np.isnan(g[:, 1]).all() and np.isfinite(g[:, [0, 2, 3]]).all()
    match = "blank index" if value == 0 else f"target index {value} is out of bounds"
    with pytest.raises(ValueError, match=match):
        checked.ctc_loss(lp, tg, il, tl)
    with pytest.raises(ValueError, match=match):
        checked.ctc_loss(lp, _concat(tg, tl), il, tl)


def test_checked_passes_valid_and_infeasible_input():
    lp, tg, il, tl = _data()
    np.testing.assert_array_equal(checked.ctc_loss(lp, tg, il, tl), jaxloss.ctc_loss(lp, tg, il, tl))
    short = np.array([2, T, T, T])  # infeasible: inf, not an error (torch's behaviour)
    assert np.isinf(np.asarray(checked.ctc_loss(lp, tg, short, tl)))
    assert np.isfinite(np.asarray(checked.ctc_loss(lp, tg, short, tl, zero_infinity=True)))


# --------------------------------------------------------------------------- trace-time errors
def test_trace_time_errors_use_torchs_wording():
    lp, tg, il, tl = _data()
    cases = [
        ((lp[None], tg, il, tl), {}, ValueError),  # 4-D log_probs
        ((lp[:, 0, 0], tg, il, tl), {}, ValueError),  # 1-D log_probs
        ((lp, tg[:, :, None], il, tl), {}, ValueError),  # 3-D targets
        ((lp, tg[:3], il, tl), {}, ValueError),  # targets batch size
        ((lp, tg, il[:3], tl), {}, ValueError),
        ((lp, tg, il, tl[:3]), {}, ValueError),
        ((lp, tg, il, tl), {"blank": C}, ValueError),
        ((lp, tg, il, tl), {"blank": -1}, ValueError),
        ((lp, tg, il.astype(np.float32), tl), {}, TypeError),
        ((lp, tg, il, tl.astype(np.float64)), {}, TypeError),
        ((lp, tg, il > 0, tl), {}, TypeError),
        ((lp[:, :, :0], tg, il, tl), {}, ValueError),
        ((lp, tg, il, tl), {"reduction": "avg"}, ValueError),
    ]
    for args, kw, exc in cases:
        with pytest.raises((RuntimeError, ValueError)) as expected:
            F.ctc_loss(*[torch.as_tensor(a) for a in args], **kw)
        with pytest.raises(exc) as e:
            jaxloss.ctc_loss(*[jnp.asarray(a) for a in args], **kw)
        assert str(e.value) == str(expected.value)
    with pytest.raises(TypeError, match="must be integral"):
        jaxloss.ctc_loss(lp, tg, [10.0, 9.0, 7.0, 5.0], tl)
    with pytest.raises(TypeError, match="expected a floating point dtype, got integer 'log_probs'"):
        jaxloss.ctc_loss(jnp.zeros((T, N, C), jnp.int32), tg, il, tl)
    # torch converts float and bool targets to long; so does jaxloss
    np.testing.assert_allclose(
        jaxloss.ctc_loss(lp, tg.astype(np.float32), il, tl),
        F.ctc_loss(torch.tensor(lp), torch.tensor(tg, dtype=torch.float32), torch.tensor(il), torch.tensor(tl)),
    )
