"""Binary / multi-label losses: binary_cross_entropy, binary_cross_entropy_with_logits,
soft_margin_loss, multilabel_soft_margin_loss, sigmoid_focal_loss.

Documented deviations (:class:`jaxloss.parity.cases.TorchInexact`: judged against a float64
reference instead of torch; the same list is in :mod:`jaxloss.binary`'s docstring):

* ``binary_cross_entropy_with_logits`` with logits beyond +-30 (up to +-1e4): torch
  computes ``log(exp(-m) + exp(-x - m))`` without ``log1p`` and loses the tiny
  losses and gradients that jaxloss keeps (reference:
  :func:`jaxloss.parity.references.bce_with_logits_stable`).
* ``soft_margin_loss`` with ``-y x`` beyond ~88 in float32 (beyond ~709 in
  float64): torch's ``log(1 + exp(-y x))`` overflows to inf where jaxloss's
  softplus returns ``-y x`` (reference: :func:`jaxloss.parity.references.soft_margin_stable`).
* ``binary_cross_entropy`` in float16 at probabilities exactly 0 and 1: torch's
  backward clamps ``x (1 - x)`` at ``1e-12``, which is 0 in float16, so where
  ``x = y`` (0 or 1) it returns ``0 / 0 = NaN``; jaxloss computes half precision in
  float32 and returns the float64 value 0 (reference: torch's own formula in
  float64, rounded to float16).

Arguments torch refuses to differentiate ("is not differentiable with respect to
argument ...") but jaxloss differentiates as ordinary arguments: the ``weight`` of
both BCE losses, ``pos_weight`` and ``soft_margin_loss``'s ``target``. The
``extra_grads`` entries compare those gradients (first and second order) with the
same loss composed of differentiable torch ops
(:func:`jaxloss.parity.references.bce_weight_differentiable`,
:func:`jaxloss.parity.references.bce_with_logits_stable`,
:func:`jaxloss.parity.references.soft_margin_stable`).

Shapes: batched ``(4, 5)``, unbatched ``(5,)``, K-dim ``(2, 3, 2, 2)``, scalar, empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity import references
from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, TorchInexact, loss, rng_for, signs

SHAPES = {"batched": (4, 5), "unbatched": (5,), "kdim": (2, 3, 2, 2), "scalar": (), "empty": (0, 5)}
REDUCTIONS = ["mean", "none", "sum"]
_EXTRA_DTYPES = ("float64", "float32")  # gradients torch's fused ops refuse: vs differentiable torch ops
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


_LOGITS_LARGE = TorchInexact(
    "torch's log(exp(-m) + exp(-x - m)) loses log1p precision for |logits| >> 1 (tiny losses and "
    "gradients become 0); jaxloss keeps them",
    reference=references.bce_with_logits_stable,
    reference_expr="jaxloss.parity.references.bce_with_logits_stable",
)
_SOFT_MARGIN_OVERFLOW = TorchInexact(
    "torch's log(1 + exp(-y x)) overflows to inf (NaN gradient) for -y x > ~88.7 (float32) / ~709.8 "
    "(float64); jaxloss's softplus returns the finite truth",
    reference=references.soft_margin_stable,
    reference_expr="jaxloss.parity.references.soft_margin_stable",
)
_BCE_HALF_EPS = TorchInexact(
    "float16: torch's backward clamps x (1 - x) at 1e-12, which underflows to 0 in half, so x = y = 0 "
    "or 1 gives 0/0 = NaN; jaxloss computes in float32 and returns the float64 value 0",
    dtypes=("float16",),
)


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
    {"shape": "batched", "reduction": "mean", "weight": "none", "values": "normal", "extra_grads": False, "seed": 0},
    _BASE_GRID
    + [
        {"weight": "full", "dtypes": ALL_DTYPES},
        {"weight": "last", "reduction": "none"},
        {"weight": "rows", "reduction": "sum", "shape": "kdim"},
        {"values": "edge", "dtypes": ALL_DTYPES},
        {"values": "edge", "reduction": "none"},
        {"values": "soft-target", "dtypes": ALL_DTYPES},
        {"weight": "full", "extra_grads": True, "dtypes": _EXTRA_DTYPES},
        {"weight": "last", "extra_grads": True, "reduction": "sum", "hvp": True},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "weight": ["none", "full", "last", "rows"],
        "values": ["normal", "edge", "soft-target"],
        "extra_grads": [False, True],
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
    if s.get("extra_grads"):
        if w is None or s["values"] == "edge":
            raise Invalid("extra_grads: a weight, probabilities inside (0, 1)")
        return Case(
            "binary_cross_entropy",
            "",
            (p, y),
            kw,
            ("input", "target"),
            grad=("input", "target", "weight"),
            torch_fn=references.bce_weight_differentiable,
            torch_expr="jaxloss.parity.references.bce_weight_differentiable",
            note="weight differentiated: torch side is F.binary_cross_entropy(reduction='none') * weight",
        )
    return Case(
        "binary_cross_entropy",
        "",
        (p, y),
        kw,
        ("input", "target"),
        grad=("input", "target"),
        torch_inexact=_BCE_HALF_EPS if s["values"] == "edge" else None,
    )


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
    {"shape": "batched", "reduction": "mean", "weight": "none", "pos_weight": "none", "values": "normal",
     "extra_grads": False, "seed": 0},
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
        {"weight": "rows", "pos_weight": "last", "extra_grads": True, "dtypes": _EXTRA_DTYPES},
        {"weight": "last", "pos_weight": "channel", "shape": "kdim", "reduction": "none", "extra_grads": True},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "weight": ["none", "full", "last", "rows"],
        "pos_weight": ["none", "last", "channel", "full"],
        "values": ["normal", "soft-target", "moderate", "large"],
        "extra_grads": [False, True],
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
    if s.get("extra_grads"):
        extra = tuple(n for n in ("weight", "pos_weight") if n in kw)
        if not extra:
            raise Invalid("extra_grads: a weight or pos_weight")
        return Case(
            "binary_cross_entropy_with_logits",
            "",
            (x, y),
            kw,
            ("input", "target"),
            grad=("input", "target", *extra),
            torch_fn=references.bce_with_logits_stable,
            torch_expr="jaxloss.parity.references.bce_with_logits_stable",
            torch_inexact=_LOGITS_LARGE if deviation else None,
            note="weight / pos_weight differentiated: torch side in differentiable torch ops",
        )
    return Case(
        "binary_cross_entropy_with_logits",
        "",
        (x, y),
        kw,
        ("input", "target"),
        grad=("input", "target"),
        torch_inexact=_LOGITS_LARGE if deviation else None,
    )


# --------------------------------------------------------------------------- soft margin
@loss(
    "soft_margin_loss",
    "binary",
    ("input", "target", "reduction"),
    {"shape": "batched", "reduction": "mean", "values": "normal", "extra_grads": False, "seed": 0},
    _BASE_GRID
    + [
        {"values": "moderate", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "overflow", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "overflow", "dtypes": ALL_DTYPES},
        {"extra_grads": True, "dtypes": _EXTRA_DTYPES},
        {"extra_grads": True, "reduction": "none", "shape": "kdim"},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "values": ["normal", "moderate", "overflow"],
        "extra_grads": [False, True],
        "seed": [0, 1, 2, 3],
    },
)
def soft_margin_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "sm")
    x = rng.normal(size=shape) * (8.0 if s["values"] == "moderate" else 1.0)
    y = signs(rng, shape)
    if s["values"] == "overflow":  # -y x = 100 ... 1e4: exp overflows in float32 (1e4: float64 too)
        x = -y * np.where(rng.uniform(size=shape) < 0.5, 100.0, 1e4) if shape else np.float64(-100.0 * y)
    deviation = s["values"] == "overflow"
    if s.get("extra_grads"):  # target differentiated: softplus(-y x) in torch ops
        return Case(
            "soft_margin_loss",
            "",
            (x, y),
            {"reduction": s["reduction"]},
            ("input", "target"),
            grad=("input", "target"),
            torch_fn=references.soft_margin_stable,
            torch_expr="jaxloss.parity.references.soft_margin_stable",
            torch_inexact=_SOFT_MARGIN_OVERFLOW if deviation else None,
            note="target differentiated: torch side is softplus(-y x) in torch ops",
        )
    return Case(
        "soft_margin_loss",
        "",
        (x, y),
        {"reduction": s["reduction"]},
        ("input", "target"),
        grad=("input",),  # torch: "not differentiable with respect to argument 'target'" (extra_grads: yes)
        torch_inexact=_SOFT_MARGIN_OVERFLOW if deviation else None,
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
        # torchvision's ``if alpha >= 0`` is False: no weighting, finite gradients
        {"alpha": float("nan"), "reduction": "sum"},
        {"alpha": -float("inf")},
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
