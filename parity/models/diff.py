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
from jaxloss.parity.models.layout import align, channels_last
from jaxloss.parity.models.rules import Link, Piece, module_links, split_mapping, sub_pairs
from jaxloss.parity.result import jsonable
from jaxloss.parity.tolerances import Tolerance, check_tolerance, tolerance_for

__all__ = ["LayerDiff", "ModelReport", "check_tols", "compare_captures", "pair_leaves", "pair_modules"]

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
    not_compared: list[str] = dataclasses.field(default_factory=list)
    not_called: list[str] = dataclasses.field(default_factory=list)
    not_seen: list[str] = dataclasses.field(default_factory=list)

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
        if self.not_compared:
            lines.append(f"output leaves not compared (choose with outputs=): {self.not_compared}")
        if self.not_called:
            lines.append(f"not called as modules in torch (their weights are compared, their outputs cannot be): {self.not_called}")
        if self.not_seen:
            lines.append(f"JAX modules not seen called (inside nnx.scan / nnx.RNN / another transform, or unused; their "
                         f"parameters and gradients are compared, their outputs are not captured): {self.not_seen}")
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
            "not_compared": self.not_compared,
            "not_called": self.not_called,
            "not_seen": self.not_seen,
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
          ref: np.ndarray | None, rtol: Tol, atol: Tol, by_value: bool = False) -> LayerDiff:
    """One :class:`LayerDiff` from arrays already in torch's layout.

    ``by_value`` (parameters and buffers): floats of two dtypes (NNX keeps BatchNorm statistics
    in float32 against a float64 torch run) are compared by value at the coarser dtype's
    tolerance, the dtype difference a note in ``message``, not a failure.

    >>> import numpy as np
    >>> judge("fc", "fc", "forward", "output", 0, np.array([1.0, np.nan]), np.array([1.0, 2.0]), None, None, None).jax_nonfinite
    (1,)
    """
    dtype = str(t.dtype) if np.issubdtype(t.dtype, np.floating) else "float64"
    note = ""
    if by_value and np.issubdtype(j.dtype, np.floating) and np.issubdtype(t.dtype, np.floating) and j.dtype != t.dtype:
        coarse = j.dtype if np.finfo(j.dtype).eps > np.finfo(t.dtype).eps else t.dtype
        note = f"dtype {j.dtype} vs torch's {t.dtype}: compared by value at {coarse}'s tolerance"
        dtype, j = str(coarse), j.astype(t.dtype)
    base = tolerance_for(dtype) if dtype in ("float64", "float32", "float16", "bfloat16") else tolerance_for("float64")
    tol = Tolerance(_tol(rtol, jax_path, base.rtol), _tol(atol, jax_path, base.atol))
    if np.issubdtype(j.dtype, np.integer) and np.issubdtype(t.dtype, np.integer):
        j = j.astype(t.dtype)  # counters: int32 in JAX, int64 in torch; the values must agree
    c = compare_arrays(f"{jax_path}.{tensor}", j, t, dtype, ref, tol=tol)
    d = LayerDiff(jax_path, torch_name, kind, c, tensor=tensor, call=call, jax_nonfinite=_nonfinite(j),
                  torch_nonfinite=_nonfinite(t), rtol=tol.rtol, atol=tol.atol)
    for k, v in _stats(j, t, tol.atol).items():
        setattr(d, k, v)
    if note and not c.message:
        c.message = note
    return d


# --------------------------------------------------------------------------- captures
Outputs = Mapping[str, Sequence[tuple[int | str, int | str]]] | None


def pair_leaves(j: Record, t: Record, choice: Sequence[tuple[int | str, int | str]] | None = None,
                where: str = "") -> tuple[list[tuple[int, int]], list[str]]:
    """``([(jax output index, torch output index)], [what is not compared])`` for one call.

    By key when both sides return dicts, else by position in the flattened output (``None``
    leaves count: torch attention's ``(out, None)``); a leaf one side lacks, or ``None``, is
    listed as not compared. ``choice``: the pairs to compare instead, each side a position
    (``int``, counting ``None`` leaves) or a path (``"[1][0]"``, ``"['logits']"``).

    >>> import numpy as np
    >>> pair_leaves(Record("lstm", 0, [np.zeros(3)]), Record("lstm", 0, [np.zeros(3)] * 3, ["[0]", "[1][0]", "[1][1]"]))
    ([(0, 0)], ['lstm output[1][0] (torch only)', 'lstm output[1][1] (torch only)'])
    """
    def index(r: Record, x: int | str, side: str) -> int:
        path = r.slots[x] if isinstance(x, int) and 0 <= x < len(r.slots) else x
        if path not in r.paths:
            raise ValueError(f"outputs={{{r.name!r}: ...}}: the {side} output has no array leaf {x!r}; its leaves: {r.slots}")
        return r.paths.index(path)  # type: ignore[arg-type]

    name = where or j.name or "(model)"
    if choice is not None:
        pairs = [(index(j, a, "JAX"), index(t, b, "torch")) for a, b in choice]
        notes = [f"{name} output{p} (not chosen in outputs=)" for k, p in enumerate(t.paths) if k not in {b for _, b in pairs}]
        return pairs, notes
    pairs, notes = [], []
    if all(p.startswith("['") for p in j.slots + t.slots) and j.slots and t.slots:
        for p in dict.fromkeys(j.slots + t.slots):
            if p in j.paths and p in t.paths:
                pairs.append((j.paths.index(p), t.paths.index(p)))
            else:
                notes.append(f"{name} output{p} ({'None on one side' if p in j.slots and p in t.slots else ('JAX' if p in j.slots else 'torch') + ' only'})")
        return pairs, notes
    for k in range(max(len(j.slots), len(t.slots))):
        jp = j.slots[k] if k < len(j.slots) else None
        tp = t.slots[k] if k < len(t.slots) else None
        j_arr = jp is not None and jp in j.paths and k == j.slots.index(jp)
        t_arr = tp is not None and tp in t.paths and k == t.slots.index(tp)
        if j_arr and t_arr:
            pairs.append((j.paths.index(jp), t.paths.index(tp)))  # type: ignore[arg-type]
        elif jp is None or tp is None:
            notes.append(f"{name} output{jp if tp is None else tp} ({'JAX' if tp is None else 'torch'} only)")
        else:
            notes.append(f"{name} output{tp} (None on {'JAX' if not j_arr else 'torch'})")
    return pairs, notes


def _links(jc: Capture, tc: Capture, pairs: Mapping[str, str], tensors: Mapping[TensorKey, str]) -> list[Link]:
    """The layer rules' links (across frameworks), or equal names (two runs of one framework)."""
    if jc.framework != tc.framework:
        jshapes = {k: tuple(v.shape) for k, v in jc.params.items()}
        tshapes = {k: tuple(v.shape) for k, v in tc.params.items()}
        return module_links(jc.meta.get("modules", {}), jshapes, tshapes, pairs, tensors)
    return [Link(k, (Piece(pairs[k[0]], k[1]),), "as-is") for k in jc.params if k[0] in pairs and (pairs[k[0]], k[1]) in tc.params]


def compare_captures(jc: Capture, tc: Capture, *, mapping: Mapping[str, str] | None = None, rtol: Tol = None,
                     atol: Tol = None, ref: Capture | None = None, fail_fast: bool = False,
                     outputs: Outputs = None) -> ModelReport:
    """Pair and judge two captures (``jc`` the one under test, ``tc`` the expected one, ``ref``
    an optional float64 run of the expected side). Either may come from either framework
    (a golden file of one against a live run of the other, or two runs of the same one).
    ``mapping`` and ``outputs`` as in :func:`jaxloss.parity.compare_models`.

    >>> import numpy as np
    >>> from jaxloss.parity.models.capture import Capture, Record
    >>> a = Capture("torch", [], [np.ones(2)], [Record("fc", 0, [np.ones(2)])], {}, {})
    >>> b = Capture("torch", [], [np.ones(2)], [Record("fc", 0, [np.ones(2) + 1e-3])], {}, {})
    >>> [(d.jax_path, d.passed) for d in compare_captures(b, a).layers]
    [('fc', False)]
    """
    cross = jc.framework != tc.framework
    cl = channels_last(jc.inputs, tc.inputs) if cross else False
    descs = jc.meta.get("modules", {}) if cross else {}
    j_names = list(dict.fromkeys(r.name for r in jc.layers))
    j_all = list(dict.fromkeys(j_names + [m for m, _ in jc.params] + list(descs)))
    check_tols(rtol, atol, j_all)
    t_names = list(dict.fromkeys([r.name for r in tc.layers] + [m for m, _ in tc.params] + list(tc.meta.get("module_names", []))))
    mods, tensors = split_mapping(mapping, list(jc.params)) if cross else (dict(mapping or {}), {})
    pairs = sub_pairs(descs, pair_modules(j_all, t_names, mods), t_names)
    links = _links(jc, tc, pairs, tensors)
    inv = {t: j for j, t in pairs.items()}
    outputs = dict(outputs or {})
    bad = [k for k in outputs if k not in j_names]
    if bad:
        raise ValueError(f"outputs names layers the JAX model did not call: {bad}; called: {j_names[:12]}")
    t_rec = {r.key: r for r in tc.layers}
    ref_rec = {r.key: r for r in ref.layers} if ref else {}
    t_calls: dict[str, int] = {}
    for x in tc.layers:
        t_calls[x.name] = t_calls.get(x.name, 0) + 1
    recorded = set(j_names)

    def owner(path: str) -> str | None:
        """The deepest module the JAX run recorded at or above ``path`` (``lstm`` for ``lstm.cell.ii``)."""
        parts = path.split(".") if path else []
        for k in range(len(parts), -1, -1):
            cand = ".".join(parts[:k])
            if cand in recorded:
                return cand
        return None

    def act(a: np.ndarray, t: np.ndarray) -> np.ndarray:
        return align(a, t.shape, cl) if cross else a

    def link_diff(lk: Link, jsrc: Mapping[TensorKey, np.ndarray], tsrc: Mapping[TensorKey, np.ndarray],
                  rsrc: Mapping[TensorKey, np.ndarray] | None, kind: str, grad: bool) -> LayerDiff | None:
        if lk.jax is None:  # a torch tensor NNX has no place for: the port is faithful only while it is 0
            p = lk.torch[0]
            if grad or p.key not in tsrc or not np.any(p.take(tsrc[p.key]) != 0):
                return None
            d = LayerDiff.failed(inv.get(p.module, p.module), p.module, kind, f"torch {p.name} is non-zero; {lk.how}")
            d.tensor = p.short
            return d
        pieces = lk.torch[:1] if grad else lk.torch  # d/d(b_ih + b_hh) is the gradient of each term
        if lk.jax not in jsrc or any(p.key not in tsrc for p in pieces):
            return None
        t = sum(p.take(tsrc[p.key]) for p in pieces)
        j = jsrc[lk.jax]
        try:
            ja = lk.to_torch(j) if cross else j
        except ValueError:
            ja = j
        r = sum(p.take(rsrc[p.key]) for p in pieces) if rsrc is not None and all(p.key in rsrc for p in pieces) else None
        tensor = pieces[0].short if grad else lk.torch_short
        return judge(lk.jax[0], lk.torch[0].module, kind, tensor, 0, ja, np.asarray(t), r, rtol, atol, by_value=not grad)

    def grouped(src: Mapping[TensorKey, Any]) -> dict[str | None, list[Link]]:
        out: dict[str | None, list[Link]] = {}
        for lk in links:
            key = lk.jax if lk.jax is not None else None
            if key is None or key in src:
                out.setdefault(owner(key[0] if key else inv.get(lk.torch[0].module, "")), []).append(lk)
        return out

    # parameters and buffers before the run, in the order the modules first ran
    params = [d for lk in sorted(links, key=lambda lk: _first(j_names, lk)[0])
              if (d := link_diff(lk, jc.params, tc.params, ref.params if ref else None, "param", False)) is not None]

    forward: list[LayerDiff] = []
    not_compared: list[str] = []
    not_called: list[str] = []
    last_call = {r.name: r.call for r in jc.layers}
    state_links = grouped(jc.state)
    for r in jc.layers:
        tm = pairs.get(r.name)
        if tm is not None and t_calls.get(tm, 0) == 0 and tm in t_names:
            if tm not in not_called:
                not_called.append(tm)
        elif tm is not None:
            forward += _outputs(r, tm, t_rec.get((tm, r.call)), ref_rec.get((tm, r.call)), act, rtol, atol, "forward",
                                r.outputs, outputs.get(r.name), not_compared)
            if r.call == last_call[r.name] and t_calls.get(tm, 0) > r.call + 1:
                forward.append(LayerDiff.failed(r.name, tm, "forward", f"called {r.call + 1}x in {jc.framework}, {t_calls[tm]}x in {tc.framework}"))
        if r.call == last_call[r.name]:
            for lk in state_links.pop(r.name, []):
                d = link_diff(lk, jc.state, tc.state, ref.state if ref else None, "forward", False)
                forward += [d] if d is not None and lk.jax is not None else []
        if fail_fast and any(not d.passed for d in forward):
            break
    for rest in state_links.values():
        forward += [d for lk in rest if lk.jax is not None
                    and (d := link_diff(lk, jc.state, tc.state, ref.state if ref else None, "forward", False)) is not None]

    backward: list[LayerDiff] = []
    if jc.grads and tc.grads and not (fail_fast and any(not d.passed for d in forward)):
        grad_links = grouped(jc.param_grads)
        for r in reversed(jc.layers):
            tm = pairs.get(r.name)
            if tm is not None and (tm, r.call) in tc.grads:
                tf = t_rec[(tm, r.call)]
                trec = Record(tm, r.call, tc.grads[(tm, r.call)], tf.paths, tf.slots)
                rrec = Record(tm, r.call, ref.grads[(tm, r.call)], tf.paths, tf.slots) if ref and (tm, r.call) in ref.grads else None
                jrec = Record(r.name, r.call, jc.grads.get(r.key, []), r.paths, r.slots)
                backward += _outputs(jrec, tm, trec, rrec, act, rtol, atol, "grad", jrec.outputs, outputs.get(r.name), [])
            if r.call == 0:
                backward += [d for lk in grad_links.pop(r.name, [])
                             if (d := link_diff(lk, jc.param_grads, tc.param_grads, ref.param_grads if ref else None, "grad", True))]
            if fail_fast and any(not d.passed for d in backward):
                break
        else:
            for rest in grad_links.values():
                backward += [d for lk in rest
                             if (d := link_diff(lk, jc.param_grads, tc.param_grads, ref.param_grads if ref else None, "grad", True))]

    t_called = list(dict.fromkeys(r.name for r in tc.layers))
    holders = list(dict.fromkeys(m for m, _ in jc.params))
    return ModelReport(
        layers=forward + backward,
        params=params,
        unpaired_jax=[n for n in j_names if n not in pairs],
        unpaired_torch=[n for n in t_called if n not in set(pairs.values())],
        not_compared=list(dict.fromkeys(not_compared)),
        not_called=not_called,
        not_seen=[m for m in holders if m not in recorded and m in descs and jc.layers],
    )


def _first(j_names: list[str], lk: Link) -> tuple[int, str]:
    """Sort key: the links of the module that ran first come first (unrecorded ones after their recorded parent)."""
    path = lk.jax[0] if lk.jax is not None else lk.torch[0].module
    best = len(j_names)
    for k, n in enumerate(j_names):
        if path == n or path.startswith(n + ".") or n == "":
            best = min(best, k) if n else best
    return (best, path)


def _outputs(r: Record, tm: str, trec: Record | None, rrec: Record | None, act: Any, rtol: Tol, atol: Tol, kind: str,
             arrays: Sequence[np.ndarray], choice: Any, notes: list[str]) -> list[LayerDiff]:
    if trec is None:
        return [LayerDiff.failed(r.name, tm, kind, f"no call {r.call + 1} of {tm!r} on the other side", r.call)]
    jr = Record(r.name, r.call, list(arrays), r.paths, r.slots)
    pairs, skipped = pair_leaves(jr, trec, choice)
    notes += skipped
    if not pairs:
        return [LayerDiff.failed(r.name, tm, kind, f"no output array pairs up: JAX {r.slots}, torch {trec.slots} (pass outputs=)", r.call)]
    out = []
    single = len(pairs) == 1 and len(r.outputs) == 1 and len(trec.outputs) == 1
    for jk, tk in pairs:
        j, t = arrays[jk], trec.outputs[tk]
        ref = rrec.outputs[tk] if rrec is not None and tk < len(rrec.outputs) else None
        tensor = "output" if single else f"output{trec.paths[tk]}"
        out.append(judge(r.name, tm, kind, tensor, r.call, act(j, t), t, ref, rtol, atol))
    return out
