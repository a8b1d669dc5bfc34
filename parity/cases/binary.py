"""Binary / multi-label losses: binary_cross_entropy, binary_cross_entropy_with_logits,
soft_margin_loss, multilabel_soft_margin_loss, sigmoid_focal_loss.

Documented deviations, judged against a float64 reference (``judge="reference"``):

* ``binary_cross_entropy_with_logits`` with logits beyond +-30 (up to +-1e4): torch
  computes ``log(exp(-m) + exp(-x - m))`` without ``log1p`` and loses the tiny
  losses and gradients that jaxloss keeps (reference:
  :func:`parity.references.bce_with_logits_stable`).
* ``soft_margin_loss`` with ``-y x`` beyond ~88 in float32 (beyond ~709 in
  float64): torch's ``log(1 + exp(-y x))`` overflows to inf where jaxloss's
  softplus returns ``-y x`` (reference: :func:`parity.references.soft_margin_stable`).

Shapes: batched ``(4, 5)``, unbatched ``(5,)``, K-dim ``(2, 3, 2, 2)``, scalar, empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parity import references
from parity.cases import ALL_DTYPES, Case, Invalid, loss, rng_for, signs

SHAPES = {"batched": (4, 5), "unbatched": (5,), "kdim": (2, 3, 2, 2), "scalar": (), "empty": (0, 5)}
REDUCTIONS = ["mean", "none", "sum"]
_BASE_GRID = [
    {"dtypes": ALL_DTYPES},
    {"reduction": "none", "dtypes": ALL_DTYPES},
    {"reduction": "sum"},
    {"shape": "unbatched"},
    {"shape": "kdim", "reduction": "none"},
    {"shape": "scalar"},
    {"shape": "empty"},
    {"shape": "empty", "reduction": "sum"},
]


def _weight_for(s: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """weight: none, full shape, or broadcast along the last dim / a leading dim."""
    rng = rng_for(s, "weight")
    kind = s.get("weight", "none")
    if kind == "none":
        return None
    if kind == "full":
        return rng.uniform(0.2, 2.0, size=shape)
    if not shape:
        raise Invalid("broadcast weight needs a dimension")
    if kind == "last":
        return rng.uniform(0.2, 2.0, size=shape[-1:])
    if kind == "rows":  # (N, 1, ...)
        return rng.uniform(0.2, 2.0, size=shape[:1] + (1,) * (len(shape) - 1))
    raise ValueError(kind)


# --------------------------------------------------------------------------- BCE on probabilities
@loss(
    "binary_cross_entropy",
    "binary",
    ("input", "target", "weight", "reduction"),
    {"shape": "batched", "reduction": "mean", "weight": "none", "values": "normal", "seed": 0},
    _BASE_GRID
    + [
        {"weight": "full", "dtypes": ALL_DTYPES},
        {"weight": "last", "reduction": "none"},
        {"weight": "rows", "reduction": "sum", "shape": "kdim"},
        {"values": "edge", "dtypes": ALL_DTYPES},
        {"values": "edge", "reduction": "none"},
        {"values": "soft-target", "dtypes": ALL_DTYPES},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "weight": ["none", "full", "last", "rows"],
        "values": ["normal", "edge", "soft-target"],
        "seed": [0, 1, 2, 3],
    },
)
def binary_cross_entropy(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "bce")
    p = rng.uniform(0.02, 0.98, size=shape)
    y = rng.integers(0, 2, size=shape).astype(np.float64)
    if s["values"] == "edge":  # probabilities exactly 0 and 1: log clamped at -100 as in torch
        p = np.where(rng.uniform(size=shape) < 0.5, np.round(p), p)
    elif s["values"] == "soft-target":
        y = rng.uniform(size=shape)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    w = _weight_for(s, shape)
    if w is not None:
        kw["weight"] = w
    return Case("binary_cross_entropy", "", (p, y), kw, ("input", "target"), grad=("input", "target"))


# --------------------------------------------------------------------------- BCE with logits
def _pos_weight(s: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
    rng = rng_for(s, "pos_weight")
    kind = s["pos_weight"]
    if kind == "none":
        return None
    if not shape:
        return rng.uniform(0.5, 3.0, size=())
    if kind == "last":  # (C,) against (N, C): broadcast over the batch
        return rng.uniform(0.5, 3.0, size=shape[-1:])
    if kind == "channel":  # (C, 1, 1) against (N, C, H, W)
        if len(shape) < 3:
            raise Invalid("channel pos_weight needs K-dim input")
        return rng.uniform(0.5, 3.0, size=shape[1:2] + (1,) * (len(shape) - 2))
    return rng.uniform(0.5, 3.0, size=shape)  # "full"


@loss(
    "binary_cross_entropy_with_logits",
    "binary",
    ("input", "target", "weight", "reduction", "pos_weight"),
    {"shape": "batched", "reduction": "mean", "weight": "none", "pos_weight": "none", "values": "normal", "seed": 0},
    _BASE_GRID
    + [
        {"weight": "full", "dtypes": ALL_DTYPES},
        {"weight": "last", "reduction": "none"},
        {"pos_weight": "last", "dtypes": ALL_DTYPES},
        {"pos_weight": "last", "reduction": "none", "weight": "rows"},
        {"pos_weight": "channel", "shape": "kdim", "reduction": "none"},
        {"pos_weight": "full", "shape": "kdim"},
        {"pos_weight": "last", "shape": "unbatched"},
        {"values": "soft-target", "pos_weight": "last"},
        {"values": "moderate", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "large", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "large", "pos_weight": "last", "weight": "full", "dtypes": ALL_DTYPES},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "weight": ["none", "full", "last", "rows"],
        "pos_weight": ["none", "last", "channel", "full"],
        "values": ["normal", "soft-target", "moderate", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def binary_cross_entropy_with_logits(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "bcel")
    scale = {"normal": 1.0, "soft-target": 1.0, "moderate": 8.0, "large": 1e4}[s["values"]]
    x = rng.normal(size=shape) * scale
    if s["values"] == "large":  # logits +-30 ... +-1e4: the deviation regime
        x = np.sign(x) * np.where(rng.uniform(size=shape) < 0.5, 40.0, 1e4) if shape else np.float64(40.0)
    y = rng.uniform(size=shape) if s["values"] == "soft-target" else rng.integers(0, 2, size=shape).astype(np.float64)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    w = _weight_for(s, shape)
    if w is not None:
        kw["weight"] = w
    pw = _pos_weight(s, shape)
    if pw is not None:
        kw["pos_weight"] = pw
    deviation = s["values"] == "large"
    return Case(
        "binary_cross_entropy_with_logits",
        "",
        (x, y),
        kw,
        ("input", "target"),
        grad=("input", "target"),
        judge="reference" if deviation else "torch",
        reference=references.bce_with_logits_stable if deviation else None,
        reference_expr="parity.references.bce_with_logits_stable" if deviation else "",
        note="documented deviation: jaxloss keeps log1p precision for |logits| >> 1; judged against float64" if deviation else "",
    )


# --------------------------------------------------------------------------- soft margin
@loss(
    "soft_margin_loss",
    "binary",
    ("input", "target", "reduction"),
    {"shape": "batched", "reduction": "mean", "values": "normal", "seed": 0},
    _BASE_GRID
    + [
        {"values": "moderate", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "overflow", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "overflow", "dtypes": ALL_DTYPES},
    ],
    {"shape": list(SHAPES), "reduction": REDUCTIONS, "values": ["normal", "moderate", "overflow"], "seed": [0, 1, 2, 3]},
)
def soft_margin_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "sm")
    x = rng.normal(size=shape) * (8.0 if s["values"] == "moderate" else 1.0)
    y = signs(rng, shape)
    if s["values"] == "overflow":  # -y x = 100 ... 1e4: exp overflows in float32 (1e4: float64 too)
        x = -y * np.where(rng.uniform(size=shape) < 0.5, 100.0, 1e4) if shape else np.float64(-100.0 * y)
    deviation = s["values"] == "overflow"
    return Case(
        "soft_margin_loss",
        "",
        (x, y),
        {"reduction": s["reduction"]},
        ("input", "target"),
        grad=("input",),  # torch: "not differentiable with respect to argument 'target'"
        judge="reference" if deviation else "torch",
        reference=references.soft_margin_stable if deviation else None,
        reference_expr="parity.references.soft_margin_stable" if deviation else "",
        note="documented deviation: torch's log(1 + exp(-y x)) overflows; jaxloss uses softplus; judged against float64" if deviation else "",
    )


# --------------------------------------------------------------------------- multi-label soft margin
@loss(
    "multilabel_soft_margin_loss",
    "binary",
    ("input", "target", "weight", "reduction"),
    {"shape": "batched", "reduction": "mean", "weight": "none", "values": "normal", "seed": 0},
    [g for g in _BASE_GRID if g.get("shape") != "scalar"]
    + [
        {"weight": "last", "dtypes": ALL_DTYPES},
        {"weight": "last", "reduction": "none"},
        {"weight": "full", "reduction": "sum"},
        {"values": "soft-target", "dtypes": ALL_DTYPES},
        {"values": "large", "reduction": "none", "dtypes": ALL_DTYPES},
    ],
    {
        "shape": ["batched", "unbatched", "kdim", "empty"],
        "reduction": REDUCTIONS,
        "weight": ["none", "last", "full"],
        "values": ["normal", "soft-target", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def multilabel_soft_margin_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    if not shape:
        raise Invalid("needs a class dimension")
    rng = rng_for(s, "mlsm")
    x = rng.normal(size=shape) * (50.0 if s["values"] == "large" else 1.0)
    y = rng.uniform(size=shape) if s["values"] == "soft-target" else rng.integers(0, 2, size=shape).astype(np.float64)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    w = _weight_for(s, shape)
    if w is not None:
        kw["weight"] = w
    return Case("multilabel_soft_margin_loss", "", (x, y), kw, ("input", "target"), grad=("input", "target"))


# --------------------------------------------------------------------------- sigmoid focal
_TV_FN, _TV_EXPR = references.torch_sigmoid_focal_loss()


@loss(
    "sigmoid_focal_loss",
    "binary",
    ("inputs", "targets", "alpha", "gamma", "reduction"),
    {"shape": "batched", "reduction": "none", "alpha": None, "gamma": None, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "mean", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"alpha": 0.5},
        {"alpha": -1.0, "reduction": "mean"},
        {"gamma": 0.0},
        {"gamma": 1.0, "alpha": 0.75, "reduction": "sum"},
        {"gamma": 1.5, "reduction": "mean"},
        {"shape": "unbatched"},
        {"shape": "kdim", "reduction": "mean"},
        {"shape": "scalar"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "soft-target", "dtypes": ALL_DTYPES},
        {"values": "large", "dtypes": ("float64", "float32", "bfloat16")},
    ],
    {
        "shape": list(SHAPES),
        "reduction": ["none", "mean", "sum"],
        "alpha": [None, 0.5, -1.0, 0.75],
        "gamma": [None, 0.0, 1.0, 1.5, 3.0],
        "values": ["normal", "soft-target", "large"],
        "seed": [0, 1, 2, 3],
    },
    torch_name=_TV_EXPR,
)
def sigmoid_focal_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "sfl")
    x = rng.normal(size=shape) * (1e4 if s["values"] == "large" else 2.0)
    y = rng.uniform(size=shape) if s["values"] == "soft-target" else rng.integers(0, 2, size=shape).astype(np.float64)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["alpha"] is not None:
        kw["alpha"] = s["alpha"]
    if s["gamma"] is not None:
        kw["gamma"] = s["gamma"]
    return Case(
        "sigmoid_focal_loss",
        "",
        (x, y),
        kw,
        ("inputs", "targets"),
        grad=("inputs", "targets"),
        hvp=s["gamma"] not in (1.5,),
        torch_fn=_TV_FN,
        torch_expr=_TV_EXPR,
        note="torchvision's formula in torch ops (torchvision not installed)" if "parity" in _TV_EXPR else "",
    )
