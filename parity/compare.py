"""Run a JAX function and its torch twin on the same data and compare everything.

:func:`compare` is the engine of the whole parity suite and a public API::

    import numpy as np, torch.nn.functional as F, jaxloss
    from jaxloss import parity

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
  contraction compares like with like (the result field is still ``hvps``; the arrays are
  named ``vᵀH <argument>``);
* for inputs of a dtype other than float64, both results against a float64
  reference (``torch_fn``, or ``reference``, run on the same inputs converted to
  float64, then rounded once to the dtype: the correctly rounded truth), which
  tells whether jaxloss or torch is closer to the truth.

An element agrees where ``|jax - torch| <= atol + rtol * |torch|`` with the
dtype's tolerance from :mod:`jaxloss.parity.tolerances`; NaNs agree with NaNs and
infinities with infinities of the same sign.

The *low-precision rule*: a float16 / bfloat16 array (jaxloss computes these in
float32 and rounds once, torch rounds some intermediates) that misses torch's
value is judged against the float64 reference instead: it passes when every
element is within tolerance of it and the array is at least as close to it as
torch's (``Comparison.judged == "reference"`` and a message say so).
``judge="reference"`` judges every array against the float64 reference, in any
dtype: the parity grid uses it for documented deviations only
(:class:`jaxloss.parity.cases.TorchInexact`, where torch itself is inexact).

Nothing here raises on a bad comparison: an exception on one side, a
signature mismatch, a non-array argument named in ``grad_argnums`` end up in the
returned :class:`Result`. A ``NotImplementedError`` from the JAX side gives the
status ``"not_implemented"``. :func:`assert_close` is the pytest form;
:func:`compare_many` runs several comparisons with one compiled JAX program.

The engine, one job per module: :mod:`jaxloss.parity.convert` (arrays between NumPy, JAX and torch),
:mod:`jaxloss.parity.jax_side` and :mod:`jaxloss.parity.torch_side` (running each side), :mod:`jaxloss.parity.judge`
(judging one array: the rule every parity comparison uses, models included),
:mod:`jaxloss.parity.result` (:class:`Comparison`, :class:`Result`); this module runs a comparison
step by step.

Importing :mod:`jaxloss.parity` turns on ``jax_enable_x64`` (float64 must really be
float64 for the comparison to mean anything).
"""

from __future__ import annotations

import dataclasses
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.parity.convert import DTYPES, cast_floats, is_array, is_float_array, path_name, pattern
from jaxloss.parity.jax_side import (
    DEVICES,
    JaxCall,
    call_leaves,
    cot_tree,
    gpu_available,
    jax_device,
    jax_program,
    run_jax_calls,
)
from jaxloss.parity.judge import JUDGES, compare_arrays, tolerance
from jaxloss.parity.result import Comparison, Result, describe, first_line, same_error_kind
from jaxloss.parity.tolerances import Tolerance, check_tolerance, dtype_name
from jaxloss.parity.torch_side import torch_run

jax.config.update("jax_enable_x64", True)

__all__ = ["SECOND_ORDER", "CompareRequest", "Comparison", "Result", "assert_close", "cast_floats", "compare", "compare_arrays",
           "compare_many", "is_float_array"]


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
    rtol: float | None = None,
    atol: float | None = None,
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
        rtol, atol: override the dtype's tolerance (finite numbers >= 0); default: the
            table of :mod:`jaxloss.parity.tolerances`.

    Returns:
        A :class:`Result`; never raises for a mismatch or an exception on either side. Both
        sides raising passes only when the errors are of the same kind
        (:data:`jaxloss.parity.result.TORCH_TO_JAXLOSS_ERRORS`); nothing compared (both return
        ``None``, ``()`` or ``{}``) fails.

    Raises:
        ValueError: an invalid ``judge``, ``device`` (or ``'gpu'`` without one), ``rtol`` or
            ``atol``, before anything runs.

    >>> import numpy as np, torch.nn.functional as F, jaxloss
    >>> from jaxloss import parity
    >>> x, y = np.linspace(-1, 1, 6).reshape(2, 3), np.zeros((2, 3))
    >>> r = parity.compare(jaxloss.l1_loss, F.l1_loss, x, y, grad_argnums=0)
    >>> r.passed, [c.name for c in r.comparisons]
    (True, ['value', 'grad args[0]'])
    """
    return compare_many([CompareRequest(jax_fn, torch_fn, args, kwargs, grad_argnums, hvp, dtype, reference, judge, device,
                                        arg_names, rtol, atol)])[0]


@dataclasses.dataclass
class CompareRequest:
    """The arguments of one :func:`compare` call, for :func:`compare_many`.

    >>> import numpy as np, torch.nn.functional as F, jaxloss
    >>> from jaxloss.parity.compare import CompareRequest, compare_many
    >>> reqs = [CompareRequest(jaxloss.mse_loss, F.mse_loss, (np.ones(3), np.zeros(3)), {}, grad_argnums=0)]
    >>> [r.status for r in compare_many(reqs)]
    ['passed']
    """

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
    rtol: float | None = None
    atol: float | None = None

    def check(self) -> None:
        """``ValueError`` naming the first argument :func:`compare` cannot take (see there)."""
        if not (callable(self.jax_fn) and callable(self.torch_fn)):
            raise TypeError(f"jax_fn and torch_fn must be callables, got {type(self.jax_fn).__name__} and "
                            f"{type(self.torch_fn).__name__}")
        if self.judge not in JUDGES:
            raise ValueError(f"judge must be one of {', '.join(map(repr, JUDGES))}, got {self.judge!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}, got {self.device!r}")
        if self.device == "gpu" and not gpu_available():
            raise ValueError("device='gpu' needs CUDA torch and JAX's GPU backend; neither or only one is available here")
        for name in ("rtol", "atol"):
            if getattr(self, name) is not None:
                check_tolerance(name, getattr(self, name))


def compare_many(requests: Sequence[CompareRequest], merge: bool = True) -> list[Result]:
    """:func:`compare` for several comparisons at once, sharing one compiled JAX program.

    Each comparison runs as in :func:`compare`, except that the JAX computations of all
    of them are traced into one jitted program (when ``merge``): compiling one program
    instead of one per comparison saves XLA's fixed per-program cost, which dominates a
    parity run of small arrays. The computations stay independent (no data flows
    between them), as a loss inside a user's larger jitted step. If the merged program
    fails to trace or compile, each comparison's program runs on its own, so errors are
    reported per comparison exactly as :func:`compare` reports them.

    Returns one :class:`Result` per request, in order; never raises for a mismatch (an invalid
    request is a ``ValueError`` before anything runs: :meth:`CompareRequest.check`).

    >>> import numpy as np, torch.nn.functional as F, jaxloss
    >>> reqs = [CompareRequest(f, g, (np.ones(3), np.zeros(3)), {}) for f, g in
    ...         ((jaxloss.l1_loss, F.l1_loss), (jaxloss.mse_loss, F.mse_loss))]
    >>> [r.passed for r in compare_many(reqs)]
    [True, True]
    """
    for r in requests:
        r.check()
    results: list[Result | None] = [None] * len(requests)
    gens: dict[int, Any] = {}
    pending: dict[int, JaxCall] = {}

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
        with jax_device(device):
            for i in idx:
                r = requests[i]
                gens[i] = _compare_steps(r)
                advance(i, None)
            while pending:
                batch = dict(pending)
                pending.clear()
                for i, outcome in zip(batch, run_jax_calls(list(batch.values()), merge)):
                    advance(i, outcome)
    return [r if r is not None else Result("error", notes=["parity harness error: no result"]) for r in results]


# --------------------------------------------------------------------------- one comparison, step by step
@dataclasses.dataclass
class _Setup:
    """A request flattened: its leaves, their report names, which are arrays and which are differentiated."""

    request: CompareRequest
    leaves: list[Any]
    treedef: Any
    names: list[str]
    array_pos: list[int]
    diff_pos: list[int]
    order: str  # "value", "grad" or "hvp": the highest order compared

    @property
    def static(self) -> list[Any]:
        return [None if i in self.array_pos else x for i, x in enumerate(self.leaves)]

    @property
    def jax_leaves(self) -> list[Any]:
        return [jnp.asarray(x) if i in self.array_pos else x for i, x in enumerate(self.leaves)]


@dataclasses.dataclass
class _Side:
    """One side's arrays (``None`` where not computed) and its errors by order."""

    out: Any = None
    grads: list[Any] | None = None
    hvps: list[Any] | None = None
    errors: dict[str, str] = dataclasses.field(default_factory=dict)


def _setup(r: CompareRequest, result: Result) -> _Setup | None:
    """Flatten the request; ``None`` (with the error in ``result``) when ``grad_argnums`` is unusable."""
    args, kwargs = (cast_floats((r.args, r.kwargs), r.dtype) if r.dtype is not None else (r.args, dict(r.kwargs)))
    args = tuple(np.asarray(a) if isinstance(a, np.generic) else a for a in args)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path((args, kwargs))
    leaves = [leaf for _, leaf in leaves_with_path]
    names = [_leaf_name(p, r.arg_names) for p, _ in leaves_with_path]
    array_pos = [i for i, x in enumerate(leaves) if is_array(x)]
    float_dts = sorted({dtype_name(leaves[i].dtype) for i in array_pos if is_float_array(leaves[i])}, key=DTYPES.index)
    result.dtype = r.dtype or (float_dts[-1] if float_dts else "float64")  # the narrowest decides the tolerance
    if len(float_dts) > 1:
        result.notes.append(f"inputs mix floating dtypes {float_dts}; tolerance of {result.dtype}")
    argnums = [r.grad_argnums] if isinstance(r.grad_argnums, (int, str)) else list(r.grad_argnums)
    diff_pos: list[int] = []
    for a in argnums:
        if isinstance(a, int) and not -len(args) <= a < len(args):
            return _setup_error(result, f"grad_argnums: no positional argument {a} (got {len(args)})")
        if isinstance(a, str) and a not in kwargs:
            return _setup_error(result, f"grad_argnums: no keyword argument {a!r}")
        head = (0, a % len(args)) if isinstance(a, int) else (1, a)
        found = [i for i, (p, _) in enumerate(leaves_with_path) if _key_head(p) == head]
        bad = [names[i] for i in found if is_array(leaves[i]) and not is_float_array(leaves[i])]
        found = [i for i in found if is_float_array(leaves[i])]
        if not found:
            what = f"{bad[0]} is not a floating array" if bad else "it holds no floating NumPy array"
            return _setup_error(result, f"grad_argnums: cannot differentiate argument {a!r}: {what}")
        diff_pos += [i for i in found if i not in diff_pos]
    order = "hvp" if (r.hvp and diff_pos) else "grad" if diff_pos else "value"
    return _Setup(r, leaves, treedef, names, array_pos, diff_pos, order)


def _jax_shapes(s: _Setup, result: Result) -> Any:
    """The JAX output's shapes by abstract evaluation (cheap; a raise here is the JAX side raising)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jl = s.jax_leaves
            return jax.eval_shape(lambda *arrs: call_leaves(s.request.jax_fn, s.treedef, s.static, s.array_pos, arrs),
                                  *[jl[i] for i in s.array_pos])
    except Exception as e:  # noqa: BLE001
        result.jax_error = describe(e)
        return None


def _directions(s: _Setup, jax_struct: Any) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """The fixed pseudo-random cotangent of the outputs and direction ``v`` of ``v^T H``, the same for both sides."""
    if not s.diff_pos:
        return None, None
    tan = [pattern(np.shape(s.leaves[i]), s.leaves[i].dtype, f"tan{i}", -1.0, 1.0) for i in s.diff_pos] if s.order == "hvp" else None
    if jax_struct is None:
        return None, tan
    shapes = [(tuple(x.shape), x.dtype) for x in jax.tree_util.tree_leaves(jax_struct)]
    return [pattern(sh, dt, f"cot{k}", 0.5, 1.5) for k, (sh, dt) in enumerate(shapes)], tan


def _torch_side(s: _Setup, cot: Any, tan: Any, result: Result) -> tuple[_Side, bool]:
    """torch's value / gradients / second order, and whether the second order is compared."""
    r = s.request
    out, grads, hvps, errors = torch_run(r.torch_fn, s.leaves, s.treedef, s.diff_pos if cot is not None else [], cot, tan, r.device)
    if "value" in errors:
        result.torch_error = errors["value"]
    hvp_compared = s.order == "hvp" and ("hvp" not in errors or r.judge == "reference")
    if s.order == "hvp" and "hvp" in errors and r.judge != "reference":
        result.notes.append("second order skipped: torch has no double backward here (" + first_line(errors["hvp"])[:160] + ")")
    if "grad" in errors:
        result.torch_error = (result.torch_error or "") + errors["grad"]
    return _Side(out, grads, hvps, errors), hvp_compared


def _jax_side(s: _Setup, jax_struct: Any, cot: Any, tan: Any, hvp_compared: bool, result: Result) -> Any:
    """A generator: yields the :class:`JaxCall` of the highest order wanted, falls back to lower
    orders when one raises, returns the JAX :class:`_Side`."""
    side = _Side()
    if result.jax_error is not None:
        return side
    order = s.order if (s.order != "hvp" or hvp_compared) else "grad"
    if order != "value" and cot is None:
        order = "value"
    jl = s.jax_leaves
    for attempt in _ORDERS_FROM[order]:
        error: BaseException | None = None
        try:
            diff_pos = s.diff_pos if attempt != "value" else []
            prog, jitted = jax_program(s.request.jax_fn, s.treedef, s.static, s.array_pos, diff_pos, attempt, s.request.device)
            diff = [jl[i] for i in diff_pos]
            rest = [jl[i] for i in s.array_pos if i not in diff_pos]
            jcot = cot_tree(jax_struct, cot) if attempt != "value" else None
            jtan = [jnp.asarray(t) for t in tan] if attempt == "hvp" and tan is not None else []
        except Exception as e:  # noqa: BLE001
            error = e
        if error is None:
            outputs, error = yield JaxCall(prog, jitted, (diff, rest, jcot, jtan))
        if error is None:
            side.out, side.grads, side.hvps = outputs
            return side
        if attempt == "value":
            result.jax_error = describe(error)
        else:
            side.errors[attempt] = first_line(describe(error))
    return side


def _reference_side(s: _Setup, cot: Any, tan: Any, hvp_compared: bool, result: Result) -> _Side | None:
    """The float64 reference run (``None`` when not wanted or it could not run)."""
    r = s.request
    ref_fn = r.torch_fn if r.reference is None or r.reference is True else r.reference
    if r.reference is False or not (result.dtype != "float64" or callable(r.reference) or r.judge == "reference"):
        return None
    try:
        out, grads, hvps, errors = torch_run(ref_fn, s.leaves, s.treedef, s.diff_pos, cot,
                                             tan if hvp_compared or r.judge == "reference" else None, r.device, dtype="float64")
    except Exception as e:  # noqa: BLE001
        result.notes.append(f"float64 reference raised: {e}")
        return None
    if errors:
        result.notes.append("float64 reference raised: " + "; ".join(first_line(v)[:160] for v in errors.values()))
    return _Side(out, grads, hvps, errors)


def _compare_steps(r: CompareRequest) -> Any:
    """One comparison as a generator: it yields each JAX computation it needs (a
    :class:`JaxCall`), receives ``(outputs, error)`` and returns the :class:`Result`.
    The caller holds the JAX device context."""
    result = Result("passed", r.dtype or "")
    s = _setup(r, result)
    if s is None:
        return result
    jax_struct = _jax_shapes(s, result)
    if result.jax_error and _is_not_implemented(result.jax_error):
        result.status = "not_implemented"  # nothing to compare: skip torch
        return result
    cot, tan = _directions(s, jax_struct)
    torch_side, hvp_compared = _torch_side(s, cot, tan, result)
    jax_side = yield from _jax_side(s, jax_struct, cot, tan, hvp_compared, result)
    ref = _reference_side(s, cot, tan, hvp_compared, result)
    return _verdict(s, result, jax_side, torch_side, ref, hvp_compared)


def _verdict(s: _Setup, result: Result, j: _Side, t: _Side, ref: _Side | None, hvp_compared: bool) -> Result:
    """Compare what both sides returned and set the status."""
    judge_mode, dtype = s.request.judge, result.dtype
    if result.jax_error and _is_not_implemented(result.jax_error):
        result.status = "not_implemented"
        return result
    if result.jax_error and "value" in t.errors:
        if same_error_kind(result.jax_error, t.errors["value"]):
            result.notes.append("both sides raised")
        else:
            result.status = "failed"
            result.notes.append(f"both sides raised, different kinds of error: JAX {first_line(result.jax_error)!r}, "
                                f"torch {first_line(t.errors['value'])!r}")
        return result
    if result.jax_error and j.out is None:
        result.status = "failed"
        result.notes.append("JAX raised, torch did not")
        return result
    if "value" in t.errors:
        if judge_mode == "reference" and ref is not None and ref.out is not None:
            result.notes.append("torch raised; judged against the float64 reference alone")
            t = _Side(ref.out, ref.grads, t.hvps, t.errors)
        else:
            result.status = "failed"
            result.notes.append("torch raised, JAX did not")
            return result
    tol = tolerance(dtype, s.request.rtol, s.request.atol)
    result.outputs = _compare_outputs(j.out, t.out, ref.out if ref else None, dtype, judge_mode, tol)
    if s.diff_pos:
        result.grads = _compare_grads(s, j, t, ref, result, tol)
        if s.order == "hvp" and hvp_compared:
            result.hvps = _compare_hvps(s, j, t, ref, result, tol)
    if not result.comparisons:
        result.status = "failed"
        result.notes.append("nothing compared: neither side returned an array (None, () or {})")
    if any(not c.passed for c in result.comparisons):
        result.status = "failed"
    return result


def _compare_outputs(j_out: Any, t_out: Any, ref_out: Any, dtype: str, judge_mode: str, tol: Tolerance) -> list[Comparison]:
    j_leaves, t_leaves = jax.tree_util.tree_leaves(j_out), jax.tree_util.tree_leaves(t_out)
    r_leaves = jax.tree_util.tree_leaves(ref_out) if ref_out is not None else [None] * len(t_leaves)
    if len(j_leaves) != len(t_leaves):
        return [Comparison("value", dtype, False, message=f"JAX returned {len(j_leaves)} arrays, torch {len(t_leaves)}")]
    return [compare_arrays("value" if len(j_leaves) == 1 else f"value[{k}]", a, e, dtype, r, judge_mode, tol)
            for k, (a, e, r) in enumerate(zip(j_leaves, t_leaves, r_leaves))]


def _compare_grads(s: _Setup, j: _Side, t: _Side, ref: _Side | None, result: Result, tol: Tolerance) -> list[Comparison]:
    dtype, judge_mode = result.dtype, s.request.judge
    t_grads = t.grads
    if t_grads is None and judge_mode == "reference" and ref is not None and ref.grads is not None:
        result.notes.append("torch's gradient raised; judged against the float64 reference alone")
        t_grads = ref.grads
    if j.grads is None or t_grads is None:
        if "grad" in j.errors:
            return [Comparison("grad", dtype, False, message="JAX's gradient raised: " + j.errors["grad"])]
        if t_grads is None and result.torch_error:
            return [Comparison("grad", dtype, False, message="torch's gradient raised")]
        result.notes.append("gradients not compared: no cotangent could be built")
        return []
    rg = ref.grads if ref is not None and ref.grads is not None else [None] * len(s.diff_pos)
    return [compare_arrays(f"grad {s.names[i]}", a, e, dtype, r, judge_mode, tol)
            for i, a, e, r in zip(s.diff_pos, j.grads, t_grads, rg)]


def _compare_hvps(s: _Setup, j: _Side, t: _Side, ref: _Side | None, result: Result, tol: Tolerance) -> list[Comparison]:
    """Second order, named ``vTH <arg>``: the vector-Hessian product ``v^T H`` (see the module docstring)."""
    dtype, judge_mode = result.dtype, s.request.judge
    ref_hvps = ref.hvps if ref is not None else None
    if j.hvps is None and t.hvps is None and "hvp" in j.errors:
        result.notes.append("second order skipped: neither torch nor JAX has it here (JAX: " + j.errors["hvp"][:160] + ")")
        return []
    if j.hvps is None:
        msg = j.errors.get("hvp", "not computed")
        return [Comparison(SECOND_ORDER, dtype, False, message="JAX's second order raised where torch's works: " + msg)]
    if t.hvps is None and not (judge_mode == "reference" and ref_hvps is not None):
        return []
    rh = ref_hvps if ref_hvps is not None else [None] * len(s.diff_pos)
    if t.hvps is None:
        result.notes.append("torch has no double backward here: second order judged against the float64 reference alone")
    expected = t.hvps if t.hvps is not None else rh
    return [compare_arrays(f"{SECOND_ORDER} {s.names[i]}", a, e, dtype, r, judge_mode, tol)
            for i, a, e, r in zip(s.diff_pos, j.hvps, expected, rh)]


_ORDERS_FROM = {"hvp": ["hvp", "grad", "value"], "grad": ["grad", "value"], "value": ["value"]}
SECOND_ORDER = "vTH"  # the name of second-order comparisons: v^T H, the gradient of <gradient, v>


def _is_not_implemented(err: str) -> bool:
    return err.startswith("NotImplementedError")


def _setup_error(result: Result, msg: str) -> None:
    result.status = "error"
    result.notes.append(msg)


def _leaf_name(path: tuple[Any, ...], arg_names: Sequence[str] | None = None) -> str:
    head, rest = path[0], path[1:]
    if getattr(head, "idx", None) == 0:
        i = path[1].idx
        base = arg_names[i] if arg_names is not None and i < len(arg_names) else f"args[{i}]"
        rest = path[2:]
    else:
        base = str(path[1].key) if len(path) > 1 and hasattr(path[1], "key") else "kwargs"
        rest = path[2:]
    return base + path_name(rest)


def _key_head(path: tuple[Any, ...]) -> tuple[int, Any]:
    top = path[0].idx
    second = path[1]
    return (top, second.idx if top == 0 else second.key)


def assert_close(jax_fn: Callable[..., Any], torch_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Result:
    """:func:`compare`, raising ``AssertionError`` (with the readable result) unless it passed.

    >>> import numpy as np, torch.nn.functional as F, jaxloss
    >>> from jaxloss import parity
    >>> parity.assert_close(jaxloss.l1_loss, F.l1_loss, np.ones(3), np.zeros(3)).passed
    True
    """
    r = compare(jax_fn, torch_fn, *args, **kwargs)
    if not r.passed:
        raise AssertionError(f"jax and torch differ:\n{r}")
    return r
