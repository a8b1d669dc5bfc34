"""Classification: cross_entropy, nll_loss, focal_loss (torch-op reference, torch has none;
jaxloss's focal_loss takes class indices and no label_smoothing).

Shapes: batched ``(4, 5)``, unbatched ``(5,)``, K-dim ``(3, 5, 2, 2)``, empty
``(0, 5)``. Targets: class indices (int64) or class probabilities (floats, with
exact 0 and 1 in the "edge" regime). ``ignore`` puts ``ignore_index`` on some or
all targets (all ignored with 'mean' is 0/0 = NaN in torch). Logits up to +-1e4;
nll_loss inputs are log-probabilities with -inf entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parity import references
from parity.cases import ALL_DTYPES, Case, Invalid, log_softmax, loss, rng_for, softmax

C = 5
SHAPES = {"batched": (4, C), "unbatched": (C,), "kdim": (3, C, 2, 2), "k1": (3, C, 4), "empty": (0, C)}
REDUCTIONS = ["mean", "none", "sum"]


def _target_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return () if len(shape) == 1 else (shape[0],) + shape[2:]


def _class_axis(shape: tuple[int, ...]) -> int:
    return 0 if len(shape) == 1 else 1


def logits_and_target(s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Logits, target (indices or probabilities) and the cross-entropy options of a spec."""
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "ce")
    scale = {"normal": 1.0, "large": 1e4, "edge": 1.0, "confident": 30.0}[s["values"]]
    x = rng.normal(size=shape) * scale
    kw: dict[str, Any] = {}
    ax = _class_axis(shape)
    if s["target"] == "probs":
        if s["values"] == "edge":  # one-hot rows: probabilities exactly 0 and 1
            idx = rng.integers(0, C, size=_target_shape(shape))
            t = np.moveaxis(np.eye(C)[idx], -1, ax) if shape else np.eye(C)[idx]
        else:
            t = softmax(rng.normal(size=shape) * 2, ax)
        if s["ignore"] != "none":
            raise Invalid("ignore_index applies to class-index targets only")
    else:
        t = rng.integers(0, C, size=_target_shape(shape)).astype(np.int64)
        ii = s["ignore_index"]
        if s["ignore"] == "some":
            t = np.where(rng.uniform(size=t.shape) < 0.4, ii, t).astype(np.int64)
            if t.size:
                t.reshape(-1)[0] = ii  # at least one
        elif s["ignore"] == "all":
            t = np.full(t.shape, ii, dtype=np.int64)
        if s["ignore"] != "none" or ii != -100:
            kw["ignore_index"] = ii
    if s["weight"]:
        kw["weight"] = rng_for(s, "w").uniform(0.2, 2.0, size=(C,))
    kw["reduction"] = s["reduction"]
    return x, t, kw


_DEF = {
    "shape": "batched",
    "target": "index",
    "reduction": "mean",
    "weight": False,
    "ignore": "none",
    "ignore_index": -100,
    "label_smoothing": 0.0,
    "values": "normal",
    "seed": 0,
}
_SPACE = {
    "shape": ["batched", "unbatched", "k1", "kdim", "empty"],
    "target": ["index", "probs"],
    "reduction": REDUCTIONS,
    "weight": [False, True],
    "ignore": ["none", "some", "all"],
    "ignore_index": [-100, 1, -1],
    "label_smoothing": [0.0, 0.1, 0.5],
    "values": ["normal", "edge", "confident", "large"],
    "seed": [0, 1, 2, 3],
}
_GRID = [
    {"dtypes": ALL_DTYPES},
    {"reduction": "none", "dtypes": ALL_DTYPES},
    {"reduction": "sum"},
    {"shape": "unbatched"},
    {"shape": "unbatched", "reduction": "none"},
    {"shape": "k1"},
    {"shape": "kdim", "reduction": "none"},
    {"shape": "kdim", "weight": True, "ignore": "some"},
    {"shape": "empty"},
    {"shape": "empty", "reduction": "sum"},
    {"shape": "empty", "reduction": "none"},
    {"weight": True, "dtypes": ALL_DTYPES},
    {"weight": True, "reduction": "sum"},
    {"weight": True, "reduction": "none"},
    {"ignore": "some", "dtypes": ALL_DTYPES},
    {"ignore": "some", "ignore_index": 1, "weight": True},
    {"ignore": "some", "reduction": "none"},
    {"ignore": "all"},
    {"ignore": "all", "reduction": "sum"},
    {"ignore": "all", "weight": True, "ignore_index": -1},
    {"values": "large", "dtypes": ALL_DTYPES},
    {"values": "large", "reduction": "none"},
    {"values": "confident", "dtypes": ALL_DTYPES},
    {"target": "probs", "dtypes": ALL_DTYPES},
    {"target": "probs", "reduction": "none"},
    {"target": "probs", "reduction": "sum", "weight": True},
    {"target": "probs", "shape": "unbatched"},
    {"target": "probs", "shape": "kdim"},
    {"target": "probs", "shape": "empty"},
    {"target": "probs", "values": "edge", "dtypes": ALL_DTYPES},
    {"target": "probs", "values": "large"},
]
_SMOOTH = [
    {"label_smoothing": 0.1, "dtypes": ALL_DTYPES},
    {"label_smoothing": 0.1, "reduction": "none"},
    {"label_smoothing": 0.5, "weight": True, "ignore": "some"},
    {"label_smoothing": 0.1, "weight": True, "reduction": "sum", "shape": "kdim"},
    {"label_smoothing": 0.2, "ignore": "all"},
    {"label_smoothing": 0.1, "target": "probs"},
    {"label_smoothing": 0.3, "target": "probs", "weight": True, "reduction": "none"},
]

_CE_PARAMS = ("input", "target", "weight", "ignore_index", "reduction", "label_smoothing")


@loss("cross_entropy", "classification", _CE_PARAMS, _DEF, _GRID + _SMOOTH, _SPACE)
def cross_entropy(s: dict[str, Any]) -> Case:
    x, t, kw = logits_and_target(s)
    if s["label_smoothing"]:
        kw["label_smoothing"] = s["label_smoothing"]
    grad = ("input", "target") if s["target"] == "probs" else ("input",)
    return Case("cross_entropy", "", (x, t), kw, ("input", "target"), grad=grad)


# --------------------------------------------------------------------------- nll_loss
@loss(
    "nll_loss",
    "classification",
    ("input", "target", "weight", "ignore_index", "reduction"),
    _DEF,
    [g for g in _GRID if g.get("target") != "probs"]
    + [
        {"values": "neg-inf", "dtypes": ALL_DTYPES},
        {"values": "neg-inf", "reduction": "none", "weight": True},
        {"values": "neg-inf-target", "reduction": "none"},
        {"values": "neg-inf-target", "ignore": "some", "ignore_index": 1},
    ],
    {**_SPACE, "target": ["index"], "label_smoothing": [0.0], "values": ["normal", "neg-inf", "neg-inf-target", "large"]},
)
def nll_loss(s: dict[str, Any]) -> Case:
    if s["target"] != "index" or s["label_smoothing"]:
        raise Invalid("nll_loss takes class indices, no smoothing")
    vals = s["values"] if s["values"] in ("normal", "large", "confident") else "normal"
    x, t, kw = logits_and_target({**s, "values": vals})
    ax = _class_axis(x.shape)
    lp = log_softmax(x, ax)
    if s["values"].startswith("neg-inf") and lp.size:
        rng = rng_for(s, "ninf")
        tt = np.where(t == s["ignore_index"], 0, t)
        hit = np.moveaxis(np.eye(C, dtype=bool)[tt], -1, ax) if lp.ndim > 1 else np.eye(C, dtype=bool)[tt]
        zero = rng.uniform(size=lp.shape) < 0.3
        # "neg-inf": probability 0 on other classes; "-target": also on some targets (loss inf)
        mask = zero & ~hit if s["values"] == "neg-inf" else zero | (hit & (rng.uniform(size=lp.shape) < 0.5))
        lp = np.where(mask, -np.inf, lp)
    return Case("nll_loss", "", (lp, t), kw, ("input", "target"), grad=("input",))


# --------------------------------------------------------------------------- focal_loss
@loss(
    "focal_loss",
    "classification",
    ("input", "target", "weight", "ignore_index", "reduction", "alpha", "gamma"),
    {**_DEF, "gamma": 2.0, "alpha": "none"},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"gamma": 0.0},
        {"gamma": 0.0, "weight": True, "ignore": "some"},
        {"gamma": 0.5, "reduction": "none"},
        {"gamma": 0.5, "values": "confident", "reduction": "sum"},
        {"gamma": 1.0, "alpha": "float"},
        {"alpha": "array", "dtypes": ALL_DTYPES},
        {"alpha": "array", "weight": True, "reduction": "none"},
        {"alpha": "array", "weight": True, "ignore": "some"},
        {"shape": "unbatched"},
        {"shape": "kdim", "reduction": "none"},
        {"shape": "kdim", "alpha": "array", "ignore": "some"},
        {"shape": "empty"},
        {"weight": True},
        {"ignore": "some", "ignore_index": 1},
        {"ignore": "all"},
        {"values": "confident", "dtypes": ALL_DTYPES},
        {"values": "large"},
    ],
    {**_SPACE, "target": ["index"], "label_smoothing": [0.0], "values": ["normal", "confident", "large"],
     "gamma": [2.0, 0.0, 1.0, 0.5, 3.0], "alpha": ["none", "float", "array"]},
    torch_name="torch-op reference (parity.references.focal_loss)",
)
def focal_loss(s: dict[str, Any]) -> Case:
    if s["target"] != "index" or s["label_smoothing"]:
        raise Invalid("jaxloss.focal_loss takes class indices, no label smoothing")
    x, t, kw = logits_and_target(s)
    kw["gamma"] = s["gamma"]
    if s["alpha"] == "float":
        kw["alpha"] = 0.25
    elif s["alpha"] == "array":
        kw["alpha"] = rng_for(s, "alpha").uniform(0.1, 0.9, size=(C,))
    return Case(
        "focal_loss",
        "",
        (x, t),
        kw,
        ("input", "target"),
        grad=("input",),
        hvp=s["gamma"] in (0.0, 1.0, 2.0, 3.0),  # (1 - p)**0.5 has an unbounded second derivative at p = 1
        torch_fn=references.focal_loss,
        torch_expr="parity.references.focal_loss",
        note="torch has no focal loss: compared with the torch-op reference parity.references.focal_loss",
    )
