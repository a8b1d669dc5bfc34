"""Judging two captures layer by layer: :class:`LayerDiff`, :class:`ModelReport`, :func:`compare_captures`.

Every array is judged by :func:`jaxloss.parity.compare.compare_arrays` (the same code that judges
the loss grid): an element agrees where ``|jax - torch| <= atol + rtol |torch|``, NaN with
NaN, infinities of the same sign; the tolerance is the dtype's from :mod:`jaxloss.parity.tolerances`
unless ``rtol`` / ``atol`` say otherwise (a number for every layer, or a mapping
``{jax_path: number}`` for some; the others keep the dtype's).

Order: :attr:`ModelReport.layers` holds the forward records in execution order (each
module's output, then after its last call the buffers it updated, e.g. BatchNorm's running
statistics, with ``tensor`` naming the buffer), then the backward records in backward order
(the gradient reaching each module's output, from the model output back to the first layer,
each module's parameter gradients after the gradient reaching its first call). So
:attr:`ModelReport.first_divergence` is the first forward record out of tolerance, else the
first backward one: where a port starts to differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxloss.parity.compare import Comparison, compare_arrays
from jaxloss.parity.models.capture import Capture, Record, TensorKey
from jaxloss.parity.models.layout import align, align_param, channels_last, torch_tensor_name
from jaxloss.parity.result import jsonable
from jaxloss.parity.tolerances import Tolerance, check_tolerance, tolerance_for

__all__ = ["LayerDiff", "ModelReport", "check_tols", "compare_captures", "pair_modules"]

Tol = float | Mapping[str, float] | None


@dataclasses.dataclass
class LayerDiff:
    """One compared tensor of one layer: a :class:`jaxloss.parity.compare.Comparison` with the layer's names.

    ``kind``: ``"forward"`` (the layer's output, or a buffer it updated: ``tensor`` says
    which), ``"grad"`` (the gradient reaching its output, or a parameter's gradient) or
    ``"param"`` (a parameter / buffer before the run). Errors are of JAX against torch, in
    torch's layout (``max_abs_err``, ``max_rel_err`` where ``|torch| > atol``, ``max_ulp``,
    ``usage``, the worst element: read through to ``comparison``), with their mean and 99th
    percentile. ``jax_nonfinite`` / ``torch_nonfinite``: index of the first NaN or infinity
    (``None``: all finite). With a float64 torch run (``reference``): ``closer`` says which of
    JAX and torch is nearer to it, ``torch_ref_passed`` whether torch's own run is within
    tolerance of it there.

    >>> from jaxloss.parity.compare import Comparison
    >>> d = LayerDiff("layer1.0.bn1", "layer1.0.bn1", "grad", Comparison("w", "float32", False, max_abs=0.5), tensor="weight")
    >>> d.name, d.max_abs_err, d.passed
    ('layer1.0.bn1 .weight', 0.5, False)
    """

    jax_path: str
    torch_name: str
    kind: str
    comparison: Comparison
    tensor: str = "output"
    call: int = 0
    mean_abs_err: float = 0.0
    mean_rel_err: float = 0.0
    p99_abs_err: float = 0.0
    p99_rel_err: float = 0.0
    jax_nonfinite: tuple[int, ...] | None = None
    torch_nonfinite: tuple[int, ...] | None = None
    rtol: float = 0.0
    atol: float = 0.0

    @classmethod
    def failed(cls, jax_path: str, torch_name: str, kind: str, message: str, call: int = 0) -> LayerDiff:
        """A pair that could not be compared (a missing call, a different number of outputs)."""
        return cls(jax_path, torch_name, kind, Comparison(f"{jax_path}.output", "", False, message=message), call=call)

    passed = property(lambda self: self.comparison.passed)
    shape = property(lambda self: self.comparison.shape)
    dtype = property(lambda self: self.comparison.dtype)
    max_abs_err = property(lambda self: self.comparison.max_abs)
    max_rel_err = property(lambda self: self.comparison.max_rel)
    max_ulp = property(lambda self: self.comparison.max_ulp)
    usage = property(lambda self: self.comparison.usage)
    n_bad = property(lambda self: self.comparison.n_bad)
    size = property(lambda self: self.comparison.size)
    worst_index = property(lambda self: self.comparison.worst_index)
    jax_at_worst = property(lambda self: self.comparison.jax_at_worst)
    torch_at_worst = property(lambda self: self.comparison.torch_at_worst)
    closer = property(lambda self: self.comparison.closer)
    jax_ref_abs = property(lambda self: self.comparison.jax_ref_abs)
    torch_ref_abs = property(lambda self: self.comparison.torch_ref_abs)
    torch_ref_passed = property(lambda self: self.comparison.torch_ref_passed)
    jax_ref_passed = property(lambda self: self.comparison.jax_ref_passed)
    message = property(lambda self: self.comparison.message)

    @property
    def name(self) -> str:
        """``'conv2'`` or ``'conv2 (torch model.3)'``, with the call and tensor when not the plain output."""
        s = self.jax_path or "(model)"
        if self.torch_name != self.jax_path:
            s += f" (torch {self.torch_name or '(model)'})"
        if self.call:
            s += f" call {self.call + 1}"
        if self.tensor != "output":
            s += f" .{self.tensor}"
        return s

    def line(self) -> str:
        """One line of the per-layer table."""
        mark = "ok  " if self.passed else "FAIL"
        head = f"{mark} {self.kind:<7} {self.name:<44}"
        if self.message and not self.size:
            return f"{head} {self.message}"
        s = (f"{head} abs {_g(self.max_abs_err)} (mean {_g(self.mean_abs_err)}, p99 {_g(self.p99_abs_err)})"
             f"  rel {_g(self.max_rel_err)}  ulp {_g(self.max_ulp)}  tol-use {_g(self.usage)}")
        if self.n_bad:
            s += f"  {self.n_bad}/{self.size} bad, worst at {list(self.worst_index)}: jax={self.jax_at_worst:.6g} torch={self.torch_at_worst:.6g}"
        for side in ("jax", "torch"):
            idx = getattr(self, f"{side}_nonfinite")
            if idx is not None:
                s += f"  first NaN/inf in {side} at {list(idx)}"
        if self.closer is not None:
            s += f"  | vs f64: closer {self.closer}, torch f32 {'within' if self.torch_ref_passed else 'OUT of'} tolerance"
        if self.message:
            s += f"  ({self.message})"
        return s

    def to_json(self) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "comparison"}
        c = self.comparison.to_json()
        errors = {"max_abs_err": c.pop("max_abs"), "max_rel_err": c.pop("max_rel")}
        return jsonable({**c, **own, **errors, "name": self.name})


def _vs_reference(d: LayerDiff) -> str:
    """What the float64 torch run says about a divergence: float32 rounding, or the port."""
    if not d.torch_ref_passed:
        return "torch's own float32 run also diverges from its float64 run there (float32 rounding, not only the port)"
    j, t = d.jax_ref_abs or 0.0, d.torch_ref_abs or 0.0
    how = f"{j / t:.2g}x farther from it than torch's" if t > 0 else "farther from it than torch's (exact)"
    return (f"torch's float32 run is within tolerance of its float64 run there, JAX's is "
            f"{'also within tolerance' if d.jax_ref_passed else 'not'} ({how}: abs {_g(j)} vs {_g(t)})")


def _g(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2g}" if x else "0"


@dataclasses.dataclass
class ModelReport:
    """What :func:`jaxloss.parity.compare_models` found (see :mod:`jaxloss.parity.models`).

    >>> r = ModelReport([LayerDiff.failed("fc", "fc", "grad", "no gradient")])
    >>> r.passed, r.first_divergence.jax_path, r.verdict()[:40]
    (False, 'fc', 'FAILED: first divergence at fc, grad: ma')
    """

    layers: list[LayerDiff]
    params: list[LayerDiff] = dataclasses.field(default_factory=list)
    unpaired_jax: list[str] = dataclasses.field(default_factory=list)
    unpaired_torch: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def compared(self) -> int:
        """How many tensors were compared (layers and parameters)."""
        return len(self.layers) + len(self.params)

    @property
    def passed(self) -> bool:
        """Something was compared, and every compared layer (and parameter) is within tolerance."""
        return self.compared > 0 and all(d.passed for d in self.layers) and all(d.passed for d in self.params)

    @property
    def first_divergence(self) -> LayerDiff | None:
        """The first layer out of tolerance: forward order first, then backward order."""
        return next((d for d in self.layers if not d.passed), None)

    @property
    def first_param_divergence(self) -> LayerDiff | None:
        """The first parameter / buffer (forward order of the layers) out of tolerance before the run."""
        return next((d for d in self.params if not d.passed), None)

    @property
    def first_nonfinite(self) -> LayerDiff | None:
        """The first layer (in ``layers`` order) where a NaN or an infinity appears on either side."""
        return next((d for d in self.layers if d.jax_nonfinite is not None or d.torch_nonfinite is not None), None)

    def verdict(self) -> str:
        """One sentence: passed, or where the port diverges and whether torch's float32 run does too."""
        n = len(self.layers)
        if not self.compared:
            return (f"FAILED: nothing compared (0 layer tensors, 0 parameters): no layer pairs up; JAX has "
                    f"{self.unpaired_jax[:12]}, torch {self.unpaired_torch[:12]} (pass mapping={{jax_path: torch_name}})")
        if self.passed:
            return f"PASSED: {n} layer tensors and {len(self.params)} parameters within tolerance"
        d = self.first_divergence
        if d is None:
            p = self.first_param_divergence
            return f"FAILED: layers agree, but parameter {p.name if p else '?'} differs before the run"
        s = f"FAILED: first divergence at {d.name}, {d.kind}: max abs {_g(d.max_abs_err)}, rel {_g(d.max_rel_err)}"
        if d.message:
            s += f" ({d.message})"
        if d.torch_ref_passed is not None:
            s += "; " + _vs_reference(d)
        nf = self.first_nonfinite
        if nf is not None:
            side = "JAX" if nf.jax_nonfinite is not None else "torch"
            s += f"; first NaN/inf in {side} at {nf.name} ({nf.kind})"
        return s

    def table(self, only_failed: bool = False) -> str:
        rows = [d for d in self.params + self.layers if not (only_failed and d.passed)]
        return "\n".join(d.line() for d in rows)

    def __str__(self) -> str:
        lines = [self.verdict(), self.table()]
        if self.unpaired_jax or self.unpaired_torch:
            lines.append(f"not compared (no partner; pass mapping={{jax_path: torch_name}}): JAX {self.unpaired_jax}, torch {self.unpaired_torch}")
        return "\n".join(lines)

    __repr__ = __str__

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "verdict": self.verdict(),
            "first_divergence": self.first_divergence.to_json() if self.first_divergence else None,
            "layers": [d.to_json() for d in self.layers],
            "params": [d.to_json() for d in self.params],
            "unpaired_jax": self.unpaired_jax,
            "unpaired_torch": self.unpaired_torch,
            "meta": self.meta,
        }


# --------------------------------------------------------------------------- pairing
def pair_modules(jax_names: Sequence[str], torch_names: Sequence[str], mapping: Mapping[str, str] | None) -> dict[str, str]:
    """``{jax_path: torch_name}``: equal names pair, ``mapping`` adds (or overrides) pairs.

    >>> pair_modules(["", "conv1", "head"], ["", "conv1", "fc"], {"head": "fc"})
    {'': '', 'conv1': 'conv1', 'head': 'fc'}

    Raises:
        ValueError: ``mapping`` names a JAX path or a torch module the models do not have.
    """
    mapping = dict(mapping or {})
    bad_j = [k for k in mapping if k not in jax_names]
    bad_t = [v for v in mapping.values() if v not in torch_names]
    if bad_j or bad_t:
        raise ValueError(
            f"mapping: unknown JAX paths {bad_j} / torch module names {bad_t}; "
            f"JAX has {list(jax_names)[:12]}..., torch has {list(torch_names)[:12]}..."
        )
    taken = set(mapping.values())
    out = {}
    for j in jax_names:
        if j in mapping:
            out[j] = mapping[j]
        elif j in torch_names and j not in taken:
            out[j] = j
    return out


def check_tols(rtol: Tol, atol: Tol, paths: Sequence[str] | None = None) -> None:
    """``ValueError`` for a tolerance that is not a finite number >= 0 (:func:`check_tolerance`),
    one per layer included, or (given the JAX layer ``paths``) a per-layer one naming no layer.

    >>> check_tols({"fc": 1e-3}, None, ["", "conv"])
    Traceback (most recent call last):
    ...
    ValueError: rtol names layers the model does not have: ['fc']; JAX layers: ['', 'conv']
    """
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is None:
            continue
        if not isinstance(tol, Mapping):
            check_tolerance(name, tol)
            continue
        for path, value in tol.items():
            check_tolerance(f"{name}[{path!r}]", value)
        unknown = [p for p in tol if paths is not None and p not in paths]
        if unknown:
            raise ValueError(f"{name} names layers the model does not have: {unknown}; JAX layers: {list(paths or [])[:12]}")


def _tol(tol: Tol, path: str, default: float) -> float:
    if tol is None:
        return default
    if isinstance(tol, Mapping):
        return float(tol.get(path, default))
    return float(tol)


def _nonfinite(a: np.ndarray) -> tuple[int, ...] | None:
    if not np.issubdtype(a.dtype, np.floating):
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))


def _stats(a: np.ndarray, e: np.ndarray, atol: float) -> dict[str, float]:
    """Mean and 99th percentile of the absolute and relative errors (finite elements)."""
    if a.shape != e.shape or a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return {}
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    fin = np.isfinite(a64) & np.isfinite(e64)
    err = np.abs(a64 - e64)[fin]
    sig = np.abs(e64[fin]) > atol
    rel = np.where(sig, err / np.where(sig, np.abs(e64[fin]), 1.0), 0.0)
    if not err.size:
        return {}
    return {"mean_abs_err": float(err.mean()), "p99_abs_err": float(np.percentile(err, 99)),
            "mean_rel_err": float(rel.mean()), "p99_rel_err": float(np.percentile(rel, 99))}


def judge(jax_path: str, torch_name: str, kind: str, tensor: str, call: int, j: np.ndarray, t: np.ndarray,
          ref: np.ndarray | None, rtol: Tol, atol: Tol) -> LayerDiff:
    """One :class:`LayerDiff` from arrays already in torch's layout.

    >>> import numpy as np
    >>> judge("fc", "fc", "forward", "output", 0, np.array([1.0, np.nan]), np.array([1.0, 2.0]), None, None, None).jax_nonfinite
    (1,)
    """
    dtype = str(t.dtype) if np.issubdtype(t.dtype, np.floating) else "float64"
    base = tolerance_for(dtype) if dtype in ("float64", "float32", "float16", "bfloat16") else tolerance_for("float64")
    tol = Tolerance(_tol(rtol, jax_path, base.rtol), _tol(atol, jax_path, base.atol))
    if np.issubdtype(j.dtype, np.integer) and np.issubdtype(t.dtype, np.integer):
        j = j.astype(t.dtype)  # counters: int32 in JAX, int64 in torch; the values must agree
    c = compare_arrays(f"{jax_path}.{tensor}", j, t, dtype, ref, tol=tol)
    d = LayerDiff(jax_path, torch_name, kind, c, tensor=tensor, call=call, jax_nonfinite=_nonfinite(j),
                  torch_nonfinite=_nonfinite(t), rtol=tol.rtol, atol=tol.atol)
    for k, v in _stats(j, t, tol.atol).items():
        setattr(d, k, v)
    return d


# --------------------------------------------------------------------------- captures
def compare_captures(jc: Capture, tc: Capture, *, mapping: Mapping[str, str] | None = None, rtol: Tol = None,
                     atol: Tol = None, ref: Capture | None = None, fail_fast: bool = False) -> ModelReport:
    """Pair and judge two captures (``jc`` the one under test, ``tc`` the expected one, ``ref``
    an optional float64 run of the expected side). Either may come from either framework
    (a golden file of one against a live run of the other, or two runs of the same one).

    >>> import numpy as np
    >>> from jaxloss.parity.models.capture import Capture, Record
    >>> a = Capture("torch", [], [np.ones(2)], [Record("fc", 0, [np.ones(2)])], {}, {})
    >>> b = Capture("torch", [], [np.ones(2)], [Record("fc", 0, [np.ones(2) + 1e-3])], {}, {})
    >>> [(d.jax_path, d.passed) for d in compare_captures(b, a).layers]
    [('fc', False)]
    """
    cl = channels_last(jc.inputs, tc.inputs) if jc.framework != tc.framework else False
    j_names = list(dict.fromkeys(r.name for r in jc.layers))
    check_tols(rtol, atol, list(dict.fromkeys(j_names + [m for m, _ in jc.params])))
    t_names = list(dict.fromkeys([r.name for r in tc.layers] + [m for m, _ in tc.params]))
    pairs = pair_modules(list(dict.fromkeys(j_names + [m for m, _ in jc.params])), t_names, mapping)
    t_rec = {r.key: r for r in tc.layers}
    ref_rec = {r.key: r for r in ref.layers} if ref else {}

    def act(a: np.ndarray, t: np.ndarray) -> np.ndarray:
        return align(a, t.shape, cl) if jc.framework != tc.framework else a

    def tensor_pairs(module: str, jsrc: Mapping[TensorKey, Any], tsrc: Mapping[TensorKey, Any]) -> list[tuple[str, str]]:
        """``(jax name, torch name)`` of the tensors of ``module`` held in both ``jsrc`` and ``tsrc``."""
        tm = pairs.get(module)
        if tm is None:
            return []
        t_tensors = [t for (m, t) in tsrc if m == tm]
        out = []
        for name in [n for (m, n) in jsrc if m == module]:
            tn = torch_tensor_name(name, t_tensors) if jc.framework != tc.framework else (name if name in t_tensors else None)
            if tn is not None:
                out.append((name, tn))
        return out

    def param(jkey: TensorKey, tkey: TensorKey, j: np.ndarray, t: np.ndarray, r: np.ndarray | None, kind: str) -> LayerDiff:
        ja = align_param(j, jkey[1], t.shape) if jc.framework != tc.framework else j
        return judge(jkey[0], tkey[0], kind, tkey[1], 0, ja, t, r, rtol, atol)

    # parameters and buffers before the run, in the order the modules first ran
    order = list(dict.fromkeys(j_names + [m for m, _ in jc.params]))
    params: list[LayerDiff] = []
    for module in order:
        for jn, tn in tensor_pairs(module, jc.params, tc.params):
            jk, tk = (module, jn), (pairs[module], tn)
            params.append(param(jk, tk, jc.params[jk], tc.params[tk], ref.params.get(tk) if ref else None, "param"))

    forward: list[LayerDiff] = []
    last_call = {r.name: r.call for r in jc.layers}
    for r in jc.layers:
        tm = pairs.get(r.name)
        if tm is None:
            continue
        forward += _outputs(r, tm, t_rec.get((tm, r.call)), ref_rec.get((tm, r.call)), act, rtol, atol, "forward", r.outputs)
        if r.call == last_call[r.name]:
            for jn, tn in tensor_pairs(r.name, jc.state, tc.state):
                jk, tk = (r.name, jn), (tm, tn)
                forward.append(param(jk, tk, jc.state[jk], tc.state[tk], ref.state.get(tk) if ref else None, "forward"))
        t_calls = sum(1 for x in tc.layers if x.name == tm)
        if r.call == last_call[r.name] and t_calls > r.call + 1:
            forward.append(LayerDiff.failed(r.name, tm, "forward", f"called {r.call + 1}x in {jc.framework}, {t_calls}x in {tc.framework}"))
        if fail_fast and any(not d.passed for d in forward):
            break

    backward: list[LayerDiff] = []
    if jc.grads and tc.grads and not (fail_fast and any(not d.passed for d in forward)):
        for r in reversed(jc.layers):
            tm = pairs.get(r.name)
            if tm is None or (tm, r.call) not in tc.grads:
                continue
            trec = Record(tm, r.call, tc.grads[(tm, r.call)])
            rrec = Record(tm, r.call, ref.grads[(tm, r.call)]) if ref and (tm, r.call) in ref.grads else None
            backward += _outputs(r, tm, trec, rrec, act, rtol, atol, "grad", jc.grads.get(r.key, []))
            if r.call == 0:
                for jn, tn in tensor_pairs(r.name, jc.param_grads, tc.param_grads):
                    jk, tk = (r.name, jn), (tm, tn)
                    backward.append(param(jk, tk, jc.param_grads[jk], tc.param_grads[tk],
                                          ref.param_grads.get(tk) if ref else None, "grad"))
            if fail_fast and any(not d.passed for d in backward):
                break

    t_called = list(dict.fromkeys(r.name for r in tc.layers))
    report = ModelReport(
        layers=forward + backward,
        params=params,
        unpaired_jax=[n for n in j_names if n not in pairs],
        unpaired_torch=[n for n in t_called if n not in set(pairs.values())],
    )
    return report


def _outputs(r: Record, tm: str, trec: Record | None, rrec: Record | None, act: Any, rtol: Tol, atol: Tol, kind: str,
             arrays: Sequence[np.ndarray]) -> list[LayerDiff]:
    if trec is None:
        return [LayerDiff.failed(r.name, tm, kind, f"no call {r.call + 1} of {tm!r} on the other side", r.call)]
    if len(arrays) != len(trec.outputs):
        return [LayerDiff.failed(r.name, tm, kind, f"{len(arrays)} output arrays against {len(trec.outputs)}", r.call)]
    out = []
    for k, (j, t) in enumerate(zip(arrays, trec.outputs)):
        ref = rrec.outputs[k] if rrec is not None and k < len(rrec.outputs) else None
        tensor = "output" if len(arrays) == 1 else f"output[{k}]"
        out.append(judge(r.name, tm, kind, tensor, r.call, act(j, t), t, ref, rtol, atol))
    return out
