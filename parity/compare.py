"""Run a JAX function and its torch twin on the same data and compare everything.

:func:`compare` is the engine of the whole parity suite and a public API::

    import numpy as np, torch.nn.functional as F, jaxloss, parity

    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    y = np.zeros((4, 5), np.float32)
    r = parity.compare(jaxloss.l1_loss, F.l1_loss, x, y, grad_argnums=(0, 1), reduction="sum")
    r.passed          # True
    print(r)          # one line per compared array: worst abs / rel / ULP error

What is compared, for the same inputs (NumPy arrays, scalars, or pytrees of them;
the floating arrays' dtype is the dtype of the comparison):

* every output (a pytree of arrays is compared leaf by leaf, shape and dtype
  included);
* the gradient of every argument named in ``grad_argnums`` (positions or keyword
  names; a pytree argument is differentiated leaf by leaf), as a vector-Jacobian
  product with a fixed pseudo-random cotangent (so that ``reduction='none'`` is
  checked element by element, not only through a sum);
* with ``hvp=True`` the second order, where torch supports double backward (where
  it does not, it is reported as skipped): the gradient of ``<gradient, v>`` for a
  fixed pseudo-random ``v``, i.e. the vector-Hessian product ``v^T H``, computed
  the same way on both sides (torch: double backward; JAX: reverse over reverse,
  ``jax.vjp`` of the gradient). Not the directional derivative ``H v`` (forward
  over reverse): the two differ where the "Hessian" of torch's derivative
  formulas is not symmetric. Example: ``binary_cross_entropy`` at ``x = 0``,
  where torch's d/dx is clamped (``-1/max(x (1 - x), 1e-12)`` when differentiated
  by ``y``) but its d/dy ``-logit(x)`` is not (``1/(x (1 - x)) = inf`` when
  differentiated by ``x``); jaxloss reproduces both rules, so only the same
  contraction compares like with like (the field and the report still say "hvp");
* for inputs of a dtype other than float64, both results against a float64
  reference (``torch_fn``, or ``reference``, run on the same inputs converted to
  float64, then rounded once to the dtype: the correctly rounded truth), which
  tells whether jaxloss or torch is closer to the truth.

An element agrees where ``|jax - torch| <= atol + rtol * |torch|`` with the
dtype's tolerance from :mod:`parity.tolerances`; NaNs agree with NaNs and
infinities with infinities of the same sign.

The *low-precision rule*: a float16 / bfloat16 array (jaxloss computes these in
float32 and rounds once, torch rounds some intermediates) that misses torch's
value is judged against the float64 reference instead: it passes when every
element is within tolerance of it and the array is at least as close to it as
torch's (``Comparison.judged == "reference"`` and a message say so).
``judge="reference"`` judges every array against the float64 reference, in any
dtype: the parity grid uses it for documented deviations only
(:class:`parity.cases.TorchInexact`, where torch itself is inexact).

Nothing here raises on a bad comparison: an exception on one side, a
signature mismatch, a non-array argument named in ``grad_argnums`` end up in the
returned :class:`Result`. A ``NotImplementedError`` from the JAX side gives the
status ``"not_implemented"``. :func:`assert_close` is the pytest form;
:func:`compare_many` runs several comparisons with one compiled JAX program.

Importing :mod:`parity` turns on ``jax_enable_x64`` (float64 must really be
float64 for the comparison to mean anything).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from parity.tolerances import Tolerance, dtype_name, tolerance_for, tolerance_usage, ulp_error

jax.config.update("jax_enable_x64", True)

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
LOW_PRECISION = ("float16", "bfloat16")
NP_DTYPES: dict[str, Any] = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
}

__all__ = ["CompareRequest", "Comparison", "Result", "assert_close", "cast_floats", "compare", "compare_many", "is_float_array"]


# --------------------------------------------------------------------------- results
@dataclasses.dataclass
class Comparison:
    """One compared array: an output, a gradient or a second-order product (``v^T H``)."""

    name: str  # "value", "value[1]", "grad input", "hvp target['a']"
    dtype: str
    passed: bool
    shape: tuple[int, ...] = ()
    max_abs: float = 0.0  # worst |jax - torch|
    max_rel: float = 0.0  # worst |jax - torch| / |torch| (where |torch| > atol)
    max_ulp: float = 0.0  # worst error in ULPs of ``dtype`` at torch's value (likewise)
    usage: float = 0.0  # worst |jax - torch| / (atol + rtol |torch|); <= 1 passes
    n_bad: int = 0
    size: int = 0
    worst_index: tuple[int, ...] = ()
    jax_at_worst: float | None = None
    torch_at_worst: float | None = None
    judged: str = "torch"  # "torch" or "reference" (float64 reference decided)
    jax_ref_abs: float | None = None  # worst |jax - float64 reference|
    torch_ref_abs: float | None = None  # worst |torch - float64 reference|
    jax_ref_ulp: float | None = None
    torch_ref_ulp: float | None = None
    torch_ref_passed: bool | None = None  # torch within tolerance of the float64 reference
    message: str = ""

    @property
    def closer(self) -> str | None:
        """``'jax'``, ``'torch'`` or ``'tie'``: which is nearer the float64 reference."""
        if self.jax_ref_abs is None or self.torch_ref_abs is None:
            return None
        j, t = self.jax_ref_abs, self.torch_ref_abs
        if _same(j, t):
            return "tie"
        return "jax" if _lt(j, t) else "torch"

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        if self.message and not self.size:
            return f"{mark} {self.name:<22} {self.message}"
        s = (
            f"{mark} {self.name:<22} {self.dtype:<8} {list(self.shape)!s:<12} abs {_g(self.max_abs)}"
            f"  rel {_g(self.max_rel)}  ulp {_g(self.max_ulp)}  tol-use {_g(self.usage)}"
        )
        if self.n_bad:
            s += f"  {self.n_bad}/{self.size} bad, worst at {list(self.worst_index)}: jax={self.jax_at_worst!r} torch={self.torch_at_worst!r}"
        if self.closer is not None:
            s += f"  | vs f64: jax {_g(self.jax_ref_abs)} torch {_g(self.torch_ref_abs)} (closer: {self.closer})"
        if self.judged == "reference":
            s += "  [judged against float64 reference]"
        if self.message:
            s += f"  ({self.message})"
        return s

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["worst_index"] = list(self.worst_index)
        d["closer"] = self.closer
        return {k: _json_float(v) for k, v in d.items()}


@dataclasses.dataclass
class Result:
    """The outcome of :func:`compare`.

    ``status`` is ``"passed"``, ``"failed"`` (a comparison failed, or one side
    raised where the other did not), ``"not_implemented"`` (the JAX side raised
    ``NotImplementedError``) or ``"error"`` (the comparison could not be set up:
    e.g. ``grad_argnums`` names a non-array argument).
    """

    status: str
    dtype: str = ""
    outputs: list[Comparison] = dataclasses.field(default_factory=list)
    grads: list[Comparison] = dataclasses.field(default_factory=list)
    hvps: list[Comparison] = dataclasses.field(default_factory=list)
    jax_error: str | None = None
    torch_error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def comparisons(self) -> list[Comparison]:
        return self.outputs + self.grads + self.hvps

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    def worst(self, kind: str, attr: str = "usage") -> float:
        """Worst ``attr`` over ``kind`` = ``'outputs'``, ``'grads'`` or ``'hvps'`` (0 if none)."""
        vals = [getattr(c, attr) for c in getattr(self, kind) if c.size]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        return max(vals, default=0.0)

    def __repr__(self) -> str:
        head = f"parity.Result({self.status}, dtype={self.dtype or '?'}"
        head += f", {len(self.outputs)} outputs, {len(self.grads)} grads, {len(self.hvps)} hvps)"
        lines = [head]
        if self.jax_error:
            lines.append(f"  jax raised:   {_first_line(self.jax_error)}")
        if self.torch_error:
            lines.append(f"  torch raised: {_first_line(self.torch_error)}")
        lines += ["  " + c.line() for c in self.comparisons]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = __repr__

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "dtype": self.dtype,
            "outputs": [c.to_json() for c in self.outputs],
            "grads": [c.to_json() for c in self.grads],
            "hvps": [c.to_json() for c in self.hvps],
            "jax_error": self.jax_error,
            "torch_error": self.torch_error,
            "notes": list(self.notes),
        }


def _g(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2g}" if x else "0"


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else s


def _describe(e: BaseException) -> str:
    """``'TypeError: message'`` (first line), then a short traceback."""
    msg = str(e).strip().splitlines()
    head = f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")
    return head + "\n" + "".join(traceback.format_exception(e, limit=-3))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _lt(a: float, b: float) -> bool:
    if math.isnan(b):
        return not math.isnan(a)
    return a < b


def _json_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


# --------------------------------------------------------------------------- inputs
def is_float_array(x: Any) -> bool:
    """True for a NumPy array (or NumPy scalar) of a floating dtype, bfloat16 included."""
    return isinstance(x, (np.ndarray, np.generic)) and dtype_name_or_none(x.dtype) in FLOAT_DTYPES


def dtype_name_or_none(dtype: Any) -> str | None:
    try:
        return dtype_name(dtype)
    except TypeError:
        return None


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def cast_floats(tree: Any, dtype: str) -> Any:
    """Round every floating NumPy array of ``tree`` to ``dtype`` (other leaves unchanged)."""
    npdt = NP_DTYPES[dtype]
    return jax.tree_util.tree_map(lambda x: np.asarray(x).astype(npdt) if is_float_array(x) else x, tree)


def _to_torch(x: Any, device: str, dtype: str | None = None, requires_grad: bool = False) -> Any:
    """NumPy array -> torch tensor (``dtype`` overrides a floating array's dtype)."""
    import torch

    if not _is_array(x):
        return x
    x = np.asarray(x)
    if is_float_array(x):
        name = dtype or dtype_name(x.dtype)
        t = torch.from_numpy(np.array(x, dtype=np.float64)).to(getattr(torch, name))
        t = t.to(_torch_device(device))
        return t.requires_grad_(requires_grad)
    return torch.from_numpy(np.array(x)).to(_torch_device(device))


def _torch_device(device: str) -> str:
    return "cuda" if device == "gpu" else "cpu"


def _np64(x: Any) -> np.ndarray:
    """Any array (torch, JAX, NumPy) -> NumPy; floating ones as float64."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x._is_zerotensor():  # torch's symbolic zero gradients
            x = x.new_zeros(x.shape)
        return x.double().numpy() if x.is_floating_point() else x.numpy()
    a = np.asarray(x)
    return a.astype(np.float64) if is_float_array(a) else a


def _out_dtype(x: Any) -> str:
    if hasattr(x, "detach"):
        return str(x.dtype).replace("torch.", "")
    return str(np.asarray(x).dtype) if not hasattr(x, "dtype") else dtype_name_or_none(x.dtype) or str(x.dtype)


def _pattern(shape: tuple[int, ...], dtype: Any, salt: str, low: float, high: float) -> np.ndarray:
    """A fixed pseudo-random array in ``[low, high)``, rounded to ``dtype`` (seeded by shape + salt)."""
    seed = zlib.crc32(f"{salt}:{shape}".encode())
    vals = np.random.default_rng(seed).uniform(low, high, size=shape)
    return vals.astype(NP_DTYPES.get(dtype_name_or_none(dtype) or "", np.float64))


def _path_name(path: tuple[Any, ...]) -> str:
    return "".join(str(k) for k in path)


# --------------------------------------------------------------------------- the JAX side
_JIT_CACHE: dict[Any, tuple[Any, Callable[..., Any], Callable[..., Any]]] = {}
_JIT_CACHE_MAX = 4096


def _static_key(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str, complex)):
        return (type(v).__name__, v)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_static_key(x) for x in v))
    if callable(v):
        return ("callable", id(v))
    return ("repr", type(v).__name__, repr(v))


def _jax_program(
    jax_fn: Callable[..., Any],
    treedef: Any,
    static: list[Any],
    array_pos: list[int],
    diff_pos: list[int],
    order: str,
    device: str,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(program, jax.jit(program))``: ``program(diff, rest, cot, tan) -> (out, grads, hvps)``,
    cached by structure.

    ``order`` is ``"value"``, ``"grad"`` or ``"hvp"``. Non-array leaves are baked in
    (they are jaxloss's static options); jit's own cache keys the shapes/dtypes. The plain
    ``program`` is what :func:`compare_many` traces into one merged program.
    """
    key = (id(jax_fn), treedef, tuple(_static_key(s) for s in static), tuple(array_pos), tuple(diff_pos), order, device)
    hit = _JIT_CACHE.get(key)
    if hit is not None and hit[0] is jax_fn:
        return hit[1], hit[2]
    nondiff_pos = [p for p in array_pos if p not in diff_pos]

    def call(diff: Sequence[Any], rest: Sequence[Any]) -> Any:
        leaves = list(static)
        for p, v in zip(diff_pos, diff):
            leaves[p] = v
        for p, v in zip(nondiff_pos, rest):
            leaves[p] = v
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        return jax_fn(*args, **kwargs)

    def program(diff: Sequence[Any], rest: Sequence[Any], cot: Any, tan: Sequence[Any]) -> Any:
        f = lambda d: call(d, rest)
        if order == "value":
            return f(diff), None, None
        if order == "grad":
            out, vjp = jax.vjp(f, list(diff))
            return out, vjp(cot)[0], None

        def grad_fn(d: Any) -> Any:
            out, vjp = jax.vjp(f, d)
            return vjp(cot)[0], out

        # reverse over reverse, as torch's double backward: the gradient of <grad, tan>
        # (v^T H, not the directional derivative H v; see the module docstring)
        grads, grad_vjp, out = jax.vjp(grad_fn, list(diff), has_aux=True)
        (hvps,) = grad_vjp(list(tan))
        return out, grads, hvps

    jitted = jax.jit(program)
    if len(_JIT_CACHE) >= _JIT_CACHE_MAX:
        _JIT_CACHE.clear()
    _JIT_CACHE[key] = (jax_fn, program, jitted)
    return program, jitted


@contextlib.contextmanager
def _jax_device(device: str) -> Any:
    if device == "gpu":
        with jax.default_device(jax.devices("gpu")[0]):
            yield
    else:
        with jax.default_device(jax.devices("cpu")[0]):
            yield


# --------------------------------------------------------------------------- the torch side
def _torch_run(
    torch_fn: Callable[..., Any],
    leaves: list[Any],
    treedef: Any,
    diff_pos: list[int],
    cot: list[np.ndarray] | None,
    tan: list[np.ndarray] | None,
    device: str,
    dtype: str | None = None,
) -> tuple[Any, list[Any] | None, list[Any] | None, dict[str, str]]:
    """Run torch: ``(outputs, grads, hvps, errors)``; ``dtype`` recasts floating inputs
    (the float64 reference). ``errors`` maps ``'value' | 'grad' | 'hvp'`` to a traceback."""
    import torch

    errors: dict[str, str] = {}
    want_grad = bool(diff_pos) and cot is not None
    tleaves = [
        _to_torch(x, device, dtype=dtype, requires_grad=want_grad and i in diff_pos) for i, x in enumerate(leaves)
    ]
    args, kwargs = jax.tree_util.tree_unflatten(treedef, tleaves)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch_fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported, never raised
        errors["value"] = _describe(e)
        return None, None, None, errors
    outs = jax.tree_util.tree_leaves(out)
    if not want_grad:
        return out, None, None, errors
    inputs = [tleaves[p] for p in diff_pos]
    try:
        gouts = [_to_torch(c, device, dtype=dtype) for c in cot]  # type: ignore[union-attr]
        pairs = [(o, g.to(o.dtype)) for o, g in zip(outs, gouts) if getattr(o, "requires_grad", False)]
        if pairs:
            grads = torch.autograd.grad(
                [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True, create_graph=tan is not None
            )
        else:
            grads = tuple(None for _ in inputs)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    except Exception as e:  # noqa: BLE001
        errors["grad"] = _describe(e)
        return out, None, None, errors
    if tan is None:
        return out, [g.detach() for g in grads], None, errors
    try:
        tvs = [_to_torch(t, device, dtype=dtype) for t in tan]
        live = [(g, v.to(g.dtype)) for g, v in zip(grads, tvs) if g.requires_grad]
        if live:
            hvps = torch.autograd.grad([g for g, _ in live], inputs, [v for _, v in live], allow_unused=True)
        else:
            hvps = tuple(None for _ in inputs)
        hvps = [torch.zeros_like(x) if h is None else h.detach() for x, h in zip(inputs, hvps)]
    except Exception as e:  # noqa: BLE001
        errors["hvp"] = _describe(e)
        hvps = None
    return out, [g.detach() for g in grads], hvps, errors


# --------------------------------------------------------------------------- array comparison
def compare_arrays(
    name: str,
    actual: Any,
    expected: Any,
    dtype: str,
    reference: Any = None,
    judge: str = "torch",
    tol: Tolerance | None = None,
) -> Comparison:
    """Compare one JAX array with torch's (and both with an optional float64 reference).

    ``tol`` overrides the dtype's tolerance from :mod:`parity.tolerances`.
    """
    tol = tol or tolerance_for(dtype)
    a, e = _np64(actual), _np64(expected)
    a_dt, e_dt = _out_dtype(actual), _out_dtype(expected)
    if a.shape != e.shape:
        return Comparison(name, dtype, False, message=f"shape {list(a.shape)} != torch's {list(e.shape)}")
    c = Comparison(name, dtype, True, shape=tuple(a.shape), size=int(a.size))
    if a_dt != e_dt:
        c.passed, c.message = False, f"dtype {a_dt} != torch's {e_dt}"
    if a.size == 0:
        return c
    if not (np.issubdtype(a.dtype, np.floating) and np.issubdtype(e.dtype, np.floating)):
        bad = a != e
        c.n_bad = int(bad.sum())
        c.passed = c.passed and not c.n_bad
        return c
    ok, usage = _agree(a, e, tol)
    abs_err = _err(a, e)
    # relative and ULP errors where torch's value is significant (|e| > atol): near 0 the
    # absolute error is the meaningful one (a 1e-17 vs 0 difference is "100% relative")
    sig = ~(np.abs(e) <= tol.atol)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where((abs_err == 0) | ~sig, 0.0, abs_err / np.abs(e))
    ulps = np.where((abs_err == 0) | ~sig, 0.0, ulp_error(a, e, dtype))
    ulps = np.where(np.isnan(ulps), np.inf, ulps)
    c.max_abs, c.max_rel, c.max_ulp = _max(abs_err), _max(rel), _max(ulps)
    c.usage = _max(usage)
    c.n_bad = int((~ok).sum())
    idx = np.unravel_index(int(np.argmax(np.where(ok, -1.0, usage))) if c.n_bad else int(np.argmax(usage)), a.shape)
    c.worst_index = tuple(int(i) for i in idx)
    c.jax_at_worst, c.torch_at_worst = float(a[idx]), float(e[idx])
    passed_torch = c.n_bad == 0
    if reference is not None:
        r = _rounded(_np64(reference), dtype)
        if r.shape == a.shape:
            ja, ta = _err(a, r), _err(e, r)
            c.jax_ref_abs, c.torch_ref_abs = _max(ja), _max(ta)
            with np.errstate(invalid="ignore"):
                c.jax_ref_ulp = _max(np.where(ja == 0, 0.0, np.nan_to_num(ulp_error(a, r, dtype), nan=np.inf)))
                c.torch_ref_ulp = _max(np.where(ta == 0, 0.0, np.nan_to_num(ulp_error(e, r, dtype), nan=np.inf)))
            ok_ref, _ = _agree(a, r, tol)
            c.torch_ref_passed = bool(_agree(e, r, tol)[0].all())
            if judge == "reference":
                c.judged = "reference"
                c.passed = c.passed and bool(ok_ref.all())
                return c
            if not passed_torch and dtype in LOW_PRECISION and ok_ref.all() and not _lt(c.torch_ref_abs, c.jax_ref_abs):
                c.judged = "reference"
                c.message = c.message or "low-precision rule: differs from torch; within tolerance of the float64 reference and at least as close to it as torch"
                return c
        elif judge == "reference":
            c.passed, c.message = False, f"reference shape {list(r.shape)} != {list(a.shape)}"
            return c
    elif judge == "reference":
        c.passed, c.message = False, "judged against a float64 reference, but none could be computed"
        return c
    c.passed = c.passed and passed_torch
    return c


def _rounded(r: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 reference rounded once to ``dtype`` (as float64): the correctly rounded
    truth, the best any implementation can return (a float64 value beyond the dtype's range
    is an infinity in it)."""
    if not np.issubdtype(r.dtype, np.floating) or dtype == "float64":
        return r
    with np.errstate(over="ignore"):
        return r.astype(NP_DTYPES[dtype]).astype(np.float64)


def _agree(a: np.ndarray, e: np.ndarray, tol: Tolerance) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise agreement (NaN ~ NaN, inf ~ inf of the same sign) and tolerance usage."""
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    special = both_nan | same_inf
    usage = np.where(special, 0.0, tolerance_usage(a, e, tol))
    usage = np.where(np.isnan(usage), np.inf, usage)
    return special | (usage <= 1.0), usage


def _err(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
    err = np.where(both_nan | same_inf, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def _max(x: np.ndarray) -> float:
    return float(np.max(x)) if x.size else 0.0


# --------------------------------------------------------------------------- compare
def compare(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    *args: Any,
    grad_argnums: int | str | Iterable[int | str] = (),
    hvp: bool = False,
    dtype: str | None = None,
    reference: Callable[..., Any] | bool | None = None,
    judge: str = "torch",
    device: str = "cpu",
    arg_names: Sequence[str] | None = None,
    **kwargs: Any,
) -> Result:
    """Run ``jax_fn(*args, **kwargs)`` and ``torch_fn(*args, **kwargs)`` and compare.

    Args:
        jax_fn, torch_fn: the two functions; torch's receives torch tensors.
        *args, **kwargs: NumPy arrays, scalars, strings, callables, or pytrees
            (tuples / lists / dicts) of them, passed to both functions (arrays
            converted to JAX arrays / torch tensors of the same dtype).
        grad_argnums: positions in ``args`` and/or names in ``kwargs`` of the
            floating arguments to differentiate.
        hvp: also compare second derivatives of those arguments, as the gradient of
            ``<gradient, v>`` (``v^T H``, torch's double backward), where torch
            supports double backward.
        dtype: if given, every floating array is first rounded to this dtype.
        reference: the float64 reference: ``None`` (default) uses ``torch_fn`` in
            float64 when the inputs are not float64, ``False`` turns it off, a
            callable is used instead of ``torch_fn`` (it receives float64 tensors).
        judge: ``"torch"`` (default) or ``"reference"``: judge every array against
            the float64 reference instead of torch (documented deviations).
        device: ``"cpu"`` or ``"gpu"`` (CUDA torch, JAX's GPU backend).
        arg_names: names of the positional arguments, used in the report
            (``grad input`` rather than ``grad args[0]``).

    Returns:
        A :class:`Result`; never raises for a mismatch or an exception on either side.
    """
    request = CompareRequest(jax_fn, torch_fn, args, kwargs, grad_argnums, hvp, dtype, reference, judge, device, arg_names)
    return compare_many([request])[0]


@dataclasses.dataclass
class CompareRequest:
    """The arguments of one :func:`compare` call, for :func:`compare_many`."""

    jax_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    grad_argnums: int | str | Iterable[int | str] = ()
    hvp: bool = False
    dtype: str | None = None
    reference: Callable[..., Any] | bool | None = None
    judge: str = "torch"
    device: str = "cpu"
    arg_names: Sequence[str] | None = None


@dataclasses.dataclass
class _JaxCall:
    """What a comparison needs from JAX: ``program(*inputs)`` (``jitted`` is its cached jit)."""

    program: Callable[..., Any]
    jitted: Callable[..., Any]
    inputs: tuple[Any, ...]


def compare_many(requests: Sequence[CompareRequest], merge: bool = True) -> list[Result]:
    """:func:`compare` for several comparisons at once, sharing one compiled JAX program.

    Each comparison runs as in :func:`compare`, except that the JAX computations of all
    of them are traced into one jitted program (when ``merge``): compiling one program
    instead of one per comparison saves XLA's fixed per-program cost, which dominates a
    parity run of small arrays. The computations stay independent (no data flows
    between them), as a loss inside a user's larger jitted step. If the merged program
    fails to trace or compile, each comparison's program runs on its own, so errors are
    reported per comparison exactly as :func:`compare` reports them.

    Returns one :class:`Result` per request, in order; never raises.
    """
    results: list[Result | None] = [None] * len(requests)
    gens: dict[int, Any] = {}
    pending: dict[int, _JaxCall] = {}

    def advance(i: int, outcome: Any) -> None:
        try:
            call = gens[i].send(outcome)
            pending[i] = call
        except StopIteration as stop:
            results[i] = stop.value
        except Exception:  # noqa: BLE001 - the harness itself must never crash a report
            results[i] = Result("error", requests[i].dtype or "", notes=["parity harness error:\n" + traceback.format_exc(limit=-4)])

    by_device: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        by_device.setdefault(r.device, []).append(i)
    for device, idx in by_device.items():
        with _jax_device(device):
            for i in idx:
                r = requests[i]
                gens[i] = _compare_steps(r.jax_fn, r.torch_fn, tuple(r.args), dict(r.kwargs), r.grad_argnums, r.hvp, r.dtype,
                                         r.reference, r.judge, r.device, r.arg_names)
                advance(i, None)
            while pending:
                batch = dict(pending)
                pending.clear()
                for i, outcome in zip(batch, _run_jax_calls(list(batch.values()), merge)):
                    advance(i, outcome)
    return [r if r is not None else Result("error", notes=["parity harness error: no result"]) for r in results]


def _run_jax_calls(calls: list[_JaxCall], merge: bool) -> list[tuple[Any, BaseException | None]]:
    """Run JAX programs; ``(outputs, error)`` each.

    A program that occurs several times with inputs of the same shapes and dtypes (cases that
    differ only in their values) is compiled once on its own and run for each; the others are
    merged into one jitted program (``merge``), or run one by one if that fails."""
    groups: dict[Any, list[int]] = {}
    for k, c in enumerate(calls):
        groups.setdefault((id(c.program), _aval_key(c.inputs)), []).append(k)
    together = [k for g in groups.values() if len(g) == 1 and merge for k in g]
    done: dict[int, tuple[Any, BaseException | None]] = {}
    if len(together) > 1:
        programs = [calls[k].program for k in together]

        def merged(all_inputs: list[tuple[Any, ...]]) -> list[Any]:
            return [p(*inp) for p, inp in zip(programs, all_inputs)]

        outs = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outs = jax.block_until_ready(jax.jit(merged)([calls[k].inputs for k in together]))
        except Exception:  # noqa: BLE001 - one program fails: run each alone (errors reported per comparison)
            outs = None
        if outs is not None:
            done.update({k: (o, None) for k, o in zip(together, outs)})
    for k in range(len(calls)):
        if k in done:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                done[k] = (jax.block_until_ready(calls[k].jitted(*calls[k].inputs)), None)
        except Exception as e:  # noqa: BLE001
            done[k] = (None, e)
    return [done[k] for k in range(len(calls))]


def _aval_key(tree: Any) -> Any:
    """Tree structure, shapes and dtypes of a program's inputs (what jit's cache keys on)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves)


def _compare_steps(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    grad_argnums: int | str | Iterable[int | str],
    hvp: bool,
    dtype: str | None,
    reference: Callable[..., Any] | bool | None,
    judge: str,
    device: str,
    arg_names: Sequence[str] | None = None,
) -> Any:
    """One comparison as a generator: it yields each JAX computation it needs (a
    :class:`_JaxCall`), receives ``(outputs, error)`` and returns the :class:`Result`.
    The caller holds the JAX device context."""
    if dtype is not None:
        args, kwargs = cast_floats((args, kwargs), dtype)
    args = tuple(np.asarray(a) if isinstance(a, np.generic) else a for a in args)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path((args, kwargs))
    leaves = [leaf for _, leaf in leaves_with_path]
    names = [_leaf_name(p, arg_names) for p, _ in leaves_with_path]
    array_pos = [i for i, x in enumerate(leaves) if _is_array(x)]
    float_dts = sorted({dtype_name(leaves[i].dtype) for i in array_pos if is_float_array(leaves[i])})
    cmp_dtype = dtype or (max(float_dts, key=lambda d: FLOAT_DTYPES.index(d)) if float_dts else "float64")
    result = Result("passed", cmp_dtype)
    if len(float_dts) > 1:
        result.notes.append(f"inputs mix floating dtypes {float_dts}; tolerance of {cmp_dtype}")

    # which leaves to differentiate
    argnums = [grad_argnums] if isinstance(grad_argnums, (int, str)) else list(grad_argnums)
    diff_pos: list[int] = []
    for a in argnums:
        path_head = (0, a) if isinstance(a, int) else (1, a)
        if isinstance(a, int) and not -len(args) <= a < len(args):
            return _setup_error(result, f"grad_argnums: no positional argument {a} (got {len(args)})")
        if isinstance(a, int) and a < 0:
            path_head = (0, a % len(args))
        if isinstance(a, str) and a not in kwargs:
            return _setup_error(result, f"grad_argnums: no keyword argument {a!r}")
        found = [i for i, (p, _) in enumerate(leaves_with_path) if _key_head(p) == path_head]
        bad = [names[i] for i in found if _is_array(leaves[i]) and not is_float_array(leaves[i])]
        found = [i for i in found if is_float_array(leaves[i])]
        if not found:
            what = f"{bad[0]} is not a floating array" if bad else "it holds no floating NumPy array"
            return _setup_error(result, f"grad_argnums: cannot differentiate argument {a!r}: {what}")
        diff_pos += [i for i in found if i not in diff_pos]
    order = "hvp" if (hvp and diff_pos) else "grad" if diff_pos else "value"

    # shapes of the JAX output first (cheap; a raise here is the JAX side raising)
    static = [None if i in array_pos else x for i, x in enumerate(leaves)]
    jleaves = [jnp.asarray(x) if i in array_pos else x for i, x in enumerate(leaves)]
    jax_out_struct = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jax_out_struct = jax.eval_shape(lambda *arrs: _call_leaves(jax_fn, treedef, static, array_pos, arrs), *[jleaves[i] for i in array_pos])
    except Exception as e:  # noqa: BLE001
        result.jax_error = _describe(e)

    if result.jax_error and _is_not_implemented(result.jax_error):
        result.status = "not_implemented"  # nothing to compare: skip torch
        return result

    # cotangents / tangents, identical for both sides
    out_leaves_struct = jax.tree_util.tree_leaves(jax_out_struct) if jax_out_struct is not None else None
    cot = tan = None
    if diff_pos:
        tan = [_pattern(np.shape(leaves[i]), leaves[i].dtype, f"tan{i}", -1.0, 1.0) for i in diff_pos] if order == "hvp" else None

    # torch (the cotangent's shapes come from JAX's abstract evaluation)
    out_shapes = _out_shapes(out_leaves_struct, None)
    if diff_pos and out_shapes is not None:
        cot = [_pattern(s, d, f"cot{k}", 0.5, 1.5) for k, (s, d) in enumerate(out_shapes)]
    t_out, t_grads, t_hvps, t_err = _torch_run(
        torch_fn, leaves, treedef, diff_pos if cot is not None else [], cot, tan, device
    )
    if "value" in t_err:
        result.torch_error = t_err["value"]
    hvp_supported = order == "hvp" and ("hvp" not in t_err or judge == "reference")
    if order == "hvp" and "hvp" in t_err and judge != "reference":
        result.notes.append("second order skipped: torch has no double backward here (" + _first_line(t_err["hvp"])[:160] + ")")
    if "grad" in t_err:
        result.torch_error = (result.torch_error or "") + t_err["grad"]

    # JAX
    j_out = j_grads = j_hvps = None
    j_order_errors: dict[str, str] = {}
    if result.jax_error is None:
        j_order = order if (order != "hvp" or hvp_supported) else "grad"
        if j_order != "value" and cot is None:
            j_order = "value"
        for attempt in _orders_from(j_order):
            error: BaseException | None = None
            try:
                prog, jitted = _jax_program(jax_fn, treedef, static, array_pos, diff_pos if attempt != "value" else [], attempt, device)
                diff = [jleaves[i] for i in diff_pos] if attempt != "value" else []
                rest = [jleaves[i] for i in array_pos if attempt == "value" or i not in diff_pos]
                jcot = _cot_tree(jax_out_struct, cot) if attempt != "value" else None
                jtan = [jnp.asarray(t) for t in tan] if attempt == "hvp" and tan is not None else []
            except Exception as e:  # noqa: BLE001
                error = e
            if error is None:
                outputs, error = yield _JaxCall(prog, jitted, (diff, rest, jcot, jtan))
            if error is None:
                j_out, j_grads, j_hvps = outputs
                break
            # a lower order may still work
            if attempt == "value":
                result.jax_error = _describe(error)
            else:
                j_order_errors[attempt] = _first_line(_describe(error))

    # float64 reference
    ref_out = ref_grads = ref_hvps = None
    ref_fn = torch_fn if reference is None or reference is True else reference
    want_ref = reference is not False and (cmp_dtype != "float64" or callable(reference) or judge == "reference")
    if want_ref:
        try:
            ref_out, ref_grads, ref_hvps, ref_err = _torch_run(
                ref_fn, leaves, treedef, diff_pos, cot, tan if hvp_supported or judge == "reference" else None, device, dtype="float64"
            )
            if ref_err:
                result.notes.append("float64 reference raised: " + "; ".join(_first_line(v)[:160] for v in ref_err.values()))
        except Exception as e:  # noqa: BLE001
            result.notes.append(f"float64 reference raised: {e}")

    # verdict
    if result.jax_error and _is_not_implemented(result.jax_error):
        result.status = "not_implemented"
        return result
    if result.jax_error and "value" in t_err:
        result.notes.append("both sides raised")
        return result
    if result.jax_error and j_out is None:
        result.status = "failed"
        result.notes.append("JAX raised, torch did not")
        return result
    if "value" in t_err:
        if judge == "reference" and ref_out is not None:
            result.notes.append("torch raised; judged against the float64 reference alone")
            t_out, t_grads = ref_out, ref_grads
        else:
            result.status = "failed"
            result.notes.append("torch raised, JAX did not")
            return result

    j_leaves = jax.tree_util.tree_leaves(j_out)
    t_leaves = jax.tree_util.tree_leaves(t_out)
    r_leaves = jax.tree_util.tree_leaves(ref_out) if ref_out is not None else [None] * len(t_leaves)
    if len(j_leaves) != len(t_leaves):
        result.outputs.append(Comparison("value", cmp_dtype, False, message=f"JAX returned {len(j_leaves)} arrays, torch {len(t_leaves)}"))
    else:
        for k, (j, t, r) in enumerate(zip(j_leaves, t_leaves, r_leaves)):
            nm = "value" if len(j_leaves) == 1 else f"value[{k}]"
            result.outputs.append(compare_arrays(nm, j, t, cmp_dtype, r, judge))
    if diff_pos:
        if t_grads is None and judge == "reference" and ref_grads is not None:
            result.notes.append("torch's gradient raised; judged against the float64 reference alone")
            t_grads = ref_grads
        if j_grads is None or t_grads is None:
            if "grad" in j_order_errors:
                result.grads.append(Comparison("grad", cmp_dtype, False, message="JAX's gradient raised: " + j_order_errors["grad"]))
            elif t_grads is None and result.torch_error:
                result.grads.append(Comparison("grad", cmp_dtype, False, message="torch's gradient raised"))
            else:
                result.notes.append("gradients not compared: no cotangent could be built")
        else:
            rg = ref_grads if ref_grads is not None else [None] * len(diff_pos)
            for i, jg, tg, r in zip(diff_pos, j_grads, t_grads, rg):
                result.grads.append(compare_arrays(f"grad {names[i]}", jg, tg, cmp_dtype, r, judge))
        if order == "hvp" and hvp_supported:
            if j_hvps is None and t_hvps is None and "hvp" in j_order_errors:
                result.notes.append("second order skipped: neither torch nor JAX has it here (JAX: " + j_order_errors["hvp"][:160] + ")")
            elif j_hvps is None:
                msg = j_order_errors.get("hvp", "not computed")
                result.hvps.append(Comparison("hvp", cmp_dtype, False, message="JAX's second order raised where torch's works: " + msg))
            elif t_hvps is not None or (judge == "reference" and ref_hvps is not None):
                rh = ref_hvps if ref_hvps is not None else [None] * len(diff_pos)
                th_all = t_hvps if t_hvps is not None else rh  # torch lacks double backward: reference only
                if t_hvps is None:
                    result.notes.append("torch has no double backward here: second order judged against the float64 reference alone")
                for i, jh, th, r in zip(diff_pos, j_hvps, th_all, rh):
                    result.hvps.append(compare_arrays(f"hvp {names[i]}", jh, th, cmp_dtype, r, judge))
    if any(not c.passed for c in result.comparisons):
        result.status = "failed"
    return result


def _orders_from(order: str) -> list[str]:
    return {"hvp": ["hvp", "grad", "value"], "grad": ["grad", "value"], "value": ["value"]}[order]


def _is_not_implemented(err: str) -> bool:
    return err.startswith("NotImplementedError")


def _setup_error(result: Result, msg: str) -> Result:
    result.status = "error"
    result.notes.append(msg)
    return result


def _leaf_name(path: tuple[Any, ...], arg_names: Sequence[str] | None = None) -> str:
    head, rest = path[0], path[1:]
    if getattr(head, "idx", None) == 0:
        i = path[1].idx
        base = arg_names[i] if arg_names is not None and i < len(arg_names) else f"args[{i}]"
        rest = path[2:]
    else:
        base = str(path[1].key) if len(path) > 1 and hasattr(path[1], "key") else "kwargs"
        rest = path[2:]
    return base + _path_name(rest)


def _key_head(path: tuple[Any, ...]) -> tuple[int, Any]:
    top = path[0].idx
    second = path[1]
    return (top, second.idx if top == 0 else second.key)


def _call_leaves(fn: Callable[..., Any], treedef: Any, static: list[Any], array_pos: list[int], arrays: Sequence[Any]) -> Any:
    leaves = list(static)
    for p, v in zip(array_pos, arrays):
        leaves[p] = v
    args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
    return fn(*args, **kwargs)


def _out_shapes(jax_struct: list[Any] | None, torch_out: Any) -> list[tuple[tuple[int, ...], Any]] | None:
    """Shapes/dtypes of the outputs (from JAX's abstract evaluation, else torch's)."""
    if jax_struct is not None:
        return [(tuple(s.shape), s.dtype) for s in jax_struct]
    if torch_out is not None:
        leaves = jax.tree_util.tree_leaves(torch_out)
        return [(tuple(t.shape), NP_DTYPES.get(str(t.dtype).replace("torch.", ""), np.float64)) for t in leaves]
    return None


def _cot_tree(struct: Any, cot: list[np.ndarray] | None) -> Any:
    if cot is None:
        return None
    treedef = jax.tree_util.tree_structure(struct)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(c, dtype=s.dtype) for c, s in zip(cot, jax.tree_util.tree_leaves(struct))])


def assert_close(jax_fn: Callable[..., Any], torch_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Result:
    """:func:`compare`, raising ``AssertionError`` (with the readable result) unless it passed."""
    r = compare(jax_fn, torch_fn, *args, **kwargs)
    if not r.passed:
        raise AssertionError(f"jax and torch differ:\n{r}")
    return r
