"""Classification: cross_entropy, nll_loss, focal_loss (torch-op reference, torch has none;
jaxloss's focal_loss takes class indices and no label_smoothing).

Shapes: batched ``(4, 5)``, unbatched ``(5,)``, K-dim ``(3, 5, 2, 2)``, empty
``(0, 5)``. Targets: class indices (int64) or class probabilities (floats, with
exact 0 and 1 in the "edge" regime). ``ignore`` puts ``ignore_index`` on some or
all targets (all ignored with 'mean' is 0/0 = NaN in torch). Logits up to +-1e4;
nll_loss inputs are log-probabilities with -inf entries. ``layout="last"`` moves the
class axis last and passes ``axis=-1`` (torch gets the input moved back: channels-last
jaxloss equals torch on the transposed input); ``traced=True`` passes the numeric option
(``label_smoothing`` / ``gamma``) as a JAX array, a traced value inside jit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxloss.parity import references
from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, log_softmax, loss, rng_for, softmax, traced_option

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


def _channels_last_torch(fn: Callable[..., Any]) -> Callable[..., Any]:
    """torch's ``fn`` on a channels-last input: the class axis moved back to 1 (a probability
    target too), ``axis`` dropped."""

    def call(input: Any, target: Any, *args: Any, axis: int, **kwargs: Any) -> Any:
        if input.ndim > 1:
            if target.shape == input.shape:
                target = target.movedim(axis, 1)
            input = input.movedim(axis, 1)
        return fn(input, target, *args, **kwargs)

    return call


def _layout_and_options(case: Case, s: dict[str, Any], option: str) -> Case:
    """Apply the spec's ``layout`` and ``traced`` choices to a built case."""
    import torch.nn.functional as F

    if s["traced"]:
        if option not in case.kwargs:
            raise Invalid(f"traced needs {option}")
        case.jax_fn = traced_option(case.loss, option)
        case.jax_expr = f"jaxloss.{case.loss} with {option}=jnp.asarray(...)"
    if s["layout"] == "last":
        x = case.args[0]
        if x.ndim < 2:
            raise Invalid("channels-last needs a batched input")
        t = case.args[1]
        t = np.moveaxis(t, 1, -1) if t.shape == x.shape else t
        case.args = (np.moveaxis(x, 1, -1), t, *case.args[2:])
        case.kwargs["axis"] = -1
        torch_fn = case.torch_fn or getattr(F, case.loss)
        case.torch_fn = _channels_last_torch(torch_fn)
        case.torch_expr = f"{case.torch_expr or 'F.' + case.loss} on the input moved to channels-first"
    return case


_DEF = {
    "shape": "batched",
    "target": "index",
    "reduction": "mean",
    "weight": False,
    "ignore": "none",
    "ignore_index": -100,
    "label_smoothing": 0.0,
    "values": "normal",
    "layout": "first",
    "traced": False,
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
    "layout": ["first", "last"],
    "traced": [False, True],
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
    {"label_smoothing": 0.1, "traced": True, "dtypes": ALL_DTYPES},
    {"label_smoothing": 0.2, "traced": True, "target": "probs", "reduction": "none"},
]
_LAYOUT = [
    {"layout": "last", "dtypes": ALL_DTYPES},
    {"layout": "last", "shape": "kdim", "reduction": "none", "weight": True},
    {"layout": "last", "shape": "kdim", "ignore": "some"},
    {"layout": "last", "shape": "k1", "target": "probs"},
]

_CE_PARAMS = ("input", "target", "weight", "ignore_index", "reduction", "label_smoothing", "axis")


@loss("cross_entropy", "classification", _CE_PARAMS, _DEF, _GRID + _SMOOTH + _LAYOUT, _SPACE)
def cross_entropy(s: dict[str, Any]) -> Case:
    x, t, kw = logits_and_target(s)
    if s["label_smoothing"]:
        kw["label_smoothing"] = s["label_smoothing"]
    grad = ("input", "target") if s["target"] == "probs" else ("input",)
    case = Case("cross_entropy", "", (x, t), kw, ("input", "target"), grad=grad)
    return _layout_and_options(case, s, "label_smoothing")


# --------------------------------------------------------------------------- nll_loss
@loss(
    "nll_loss",
    "classification",
    ("input", "target", "weight", "ignore_index", "reduction", "axis"),
    _DEF,
    [g for g in _GRID + _LAYOUT if g.get("target") != "probs"]
    + [
        {"values": "neg-inf", "dtypes": ALL_DTYPES},
        {"values": "neg-inf", "reduction": "none", "weight": True},
        {"values": "neg-inf-target", "reduction": "none"},
        {"values": "neg-inf-target", "ignore": "some", "ignore_index": 1},
    ],
    {**_SPACE, "target": ["index"], "label_smoothing": [0.0], "values": ["normal", "neg-inf", "neg-inf-target", "large"],
     "traced": [False]},
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
    case = Case("nll_loss", "", (lp, t), kw, ("input", "target"), grad=("input",))
    return _layout_and_options(case, s, "")


# --------------------------------------------------------------------------- focal_loss
@loss(
    "focal_loss",
    "classification",
    ("input", "target", "weight", "ignore_index", "reduction", "alpha", "gamma", "axis"),
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
        {"layout": "last", "shape": "kdim", "reduction": "none", "dtypes": ALL_DTYPES},
        {"layout": "last", "alpha": "array", "weight": True},
        {"traced": True, "gamma": 1.0, "dtypes": ALL_DTYPES},
        {"traced": True, "gamma": 0.5, "reduction": "none"},
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
    case = Case(
        "focal_loss",
        "",
        (x, t),
        kw,
        ("input", "target"),
        grad=("input",),
        hvp=s["gamma"] in (0.0, 1.0, 2.0, 3.0),  # (1 - p)**0.5 has an unbounded second derivative at p = 1
        torch_fn=references.focal_loss,
        torch_expr="jaxloss.parity.references.focal_loss",
        note="torch has no focal loss: compared with the torch-op reference parity.references.focal_loss",
    )
    return _layout_and_options(case, s, "gamma")
