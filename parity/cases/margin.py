"""Margin losses: multilabel_margin_loss, multi_margin_loss, margin_ranking_loss, hinge_embedding_loss.

"kink" data put the hinge argument exactly at 0 (e.g. ``margin - x[y] + x[i] == 0``,
exact in every dtype), where the gradient follows torch's choice (strict ``> 0`` in
the multi-margin kernels, ``>= 0`` through ``clamp_min``). multilabel targets are
-1-terminated class lists: none, some, all classes.

Documented deviation (:class:`jaxloss.parity.cases.TorchInexact`): for an empty batch with
reduction 'sum' / 'mean', torch's ``multilabel_margin_loss`` and
``multi_margin_loss`` return uninitialized memory (a different value from call to
call); jaxloss returns 0 / NaN, judged against torch's per-sample losses reduced
afterwards (:func:`jaxloss.parity.references.multilabel_margin_via_none`,
:func:`jaxloss.parity.references.multi_margin_via_none`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity import references
from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, TorchInexact, loss, rng_for, signs

HIGH = ("float64", "float32")  # torch's CPU multi(label)_margin kernels have no float16 / bfloat16

N, C = 4, 5
REDUCTIONS = ["mean", "none", "sum"]

_EMPTY_WHY = ("torch 2.13's CPU kernel returns uninitialized memory (any value, e.g. 4.7e-310 or -1e200) for "
              "reduction 'sum' / 'mean' over an empty batch; jaxloss returns the empty sum 0 / mean NaN")
_MLM_EMPTY = TorchInexact(_EMPTY_WHY, reference=references.multilabel_margin_via_none,
                          reference_expr="jaxloss.parity.references.multilabel_margin_via_none")
_MM_EMPTY = TorchInexact(_EMPTY_WHY, reference=references.multi_margin_via_none,
                         reference_expr="jaxloss.parity.references.multi_margin_via_none")


def _empty_reduced(s: dict[str, Any]) -> bool:
    return s["shape"] == "empty" and s["reduction"] != "none"


# --------------------------------------------------------------------------- multilabel margin
@loss(
    "multilabel_margin_loss",
    "margin",
    ("input", "target", "reduction"),
    {"shape": "batched", "reduction": "mean", "labels": "some", "values": "normal", "seed": 0},
    [
        {"dtypes": HIGH},
        {"reduction": "none", "dtypes": HIGH},
        {"reduction": "sum"},
        {"labels": "none", "reduction": "none"},
        {"labels": "all"},
        {"labels": "after-terminator", "reduction": "none"},
        {"shape": "unbatched"},
        {"shape": "unbatched", "reduction": "none"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "kink", "reduction": "none", "dtypes": HIGH},
        {"values": "large"},
    ],
    {
        "shape": ["batched", "unbatched", "empty"],
        "reduction": REDUCTIONS,
        "labels": ["some", "none", "all", "after-terminator"],
        "values": ["normal", "kink", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def multilabel_margin_loss(s: dict[str, Any]) -> Case:
    rng = rng_for(s, "mlm")
    n = {"batched": N, "unbatched": None, "empty": 0}[s["shape"]]
    rows = 1 if n is None else n
    x = rng.normal(size=(rows, C)) * (1e3 if s["values"] == "large" else 1.0)
    if s["values"] == "kink":  # 1 - (x[y] - x[i]) == 0 for neighbours
        x = np.round(x * 2) / 2
        x[:, 1] = x[:, 0] - 1.0
    t = np.full((rows, C), -1, dtype=np.int64)
    for r in range(rows):
        perm = rng.permutation(C)
        k = {"some": int(rng.integers(1, C)), "none": 0, "all": C, "after-terminator": 2}[s["labels"]]
        t[r, :k] = perm[:k]
        if s["labels"] == "after-terminator":  # entries after the first -1 are ignored
            t[r, 3:] = perm[3:]
    if n is None:
        x, t = x[0], t[0]
    return Case("multilabel_margin_loss", "", (x, t), {"reduction": s["reduction"]}, ("input", "target"), grad=("input",),
                torch_inexact=_MLM_EMPTY if _empty_reduced(s) else None)


# --------------------------------------------------------------------------- multi margin
@loss(
    "multi_margin_loss",
    "margin",
    ("input", "target", "p", "margin", "weight", "reduction"),
    {"shape": "batched", "reduction": "mean", "p": 1, "margin": 1.0, "weight": False, "values": "normal", "seed": 0},
    [
        {"dtypes": HIGH},
        {"reduction": "none", "dtypes": HIGH},
        {"reduction": "sum"},
        {"p": 2, "dtypes": HIGH},
        {"p": 2, "margin": 0.5, "weight": True, "reduction": "none"},
        {"margin": 0.3},
        {"margin": 2.0, "reduction": "sum"},
        {"weight": True, "dtypes": HIGH},
        {"weight": True, "reduction": "sum"},
        {"shape": "unbatched"},
        {"shape": "unbatched", "p": 2, "weight": True, "reduction": "none"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "kink", "reduction": "none", "dtypes": HIGH},
        {"values": "kink", "p": 2},
        {"values": "large", "reduction": "none"},
    ],
    {
        "shape": ["batched", "unbatched", "empty"],
        "reduction": REDUCTIONS,
        "p": [1, 2],
        "margin": [1.0, 0.3, 2.0],
        "weight": [False, True],
        "values": ["normal", "kink", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def multi_margin_loss(s: dict[str, Any]) -> Case:
    rng = rng_for(s, "mm")
    n = {"batched": N, "unbatched": None, "empty": 0}[s["shape"]]
    rows = 1 if n is None else n
    x = rng.normal(size=(rows, C)) * (1e3 if s["values"] == "large" else 1.0)
    t = rng.integers(0, C, size=(rows,)).astype(np.int64)
    if s["values"] == "kink":  # margin - x[y] + x[i] == 0 for one i per row
        x = np.round(x * 4) / 4
        for r in range(rows):
            i = (t[r] + 1) % C
            x[r, i] = x[r, t[r]] - s["margin"]
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["p"] != 1:
        kw["p"] = s["p"]
    if s["margin"] != 1.0:
        kw["margin"] = s["margin"]
    if s["weight"]:
        kw["weight"] = rng.uniform(0.2, 2.0, size=(C,))
    if n is None:
        x, t = x[0], t[0]
    return Case("multi_margin_loss", "", (x, t), kw, ("input", "target"), grad=("input",),
                torch_inexact=_MM_EMPTY if _empty_reduced(s) else None)


# --------------------------------------------------------------------------- margin ranking
SHAPES = {"batched": (N,), "unbatched": (), "2d": (N, 3), "empty": (0,)}


@loss(
    "margin_ranking_loss",
    "margin",
    ("input1", "input2", "target", "margin", "reduction"),
    {"shape": "batched", "reduction": "mean", "margin": 0.0, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"margin": 0.5, "dtypes": ALL_DTYPES},
        {"margin": -0.25, "reduction": "none"},
        {"shape": "unbatched"},
        {"shape": "2d", "reduction": "none", "margin": 0.5},
        {"shape": "empty", "reduction": "sum"},
        {"values": "kink", "margin": 0.5, "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "large"},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "margin": [0.0, 0.5, -0.25],
        "values": ["normal", "kink", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def margin_ranking_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "mr")
    scale = 1e3 if s["values"] == "large" else 1.0
    x1, x2, y = rng.normal(size=shape) * scale, rng.normal(size=shape) * scale, signs(rng, shape)
    if s["values"] == "kink":  # -y (x1 - x2) + margin == 0 on every element
        x2 = np.round(x2 * 4) / 4
        x1 = x2 + y * s["margin"]
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["margin"]:
        kw["margin"] = s["margin"]
    return Case(
        "margin_ranking_loss", "", (x1, x2, y), kw, ("input1", "input2", "target"), grad=("input1", "input2", "target")
    )


# --------------------------------------------------------------------------- hinge embedding
HSHAPES = {"batched": (N, C), "1d": (N,), "scalar": (), "kdim": (2, 3, 2), "empty": (0, C)}


@loss(
    "hinge_embedding_loss",
    "margin",
    ("input", "target", "margin", "reduction"),
    {"shape": "batched", "reduction": "mean", "margin": 1.0, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"margin": 0.5, "dtypes": ALL_DTYPES},
        {"margin": 2.0, "reduction": "none"},
        {"shape": "1d"},
        {"shape": "scalar"},
        {"shape": "kdim", "reduction": "sum"},
        {"shape": "empty"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "kink", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "large"},
    ],
    {
        "shape": list(HSHAPES),
        "reduction": REDUCTIONS,
        "margin": [1.0, 0.5, 2.0],
        "values": ["normal", "kink", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def hinge_embedding_loss(s: dict[str, Any]) -> Case:
    shape = HSHAPES[s["shape"]]
    rng = rng_for(s, "he")
    x = np.abs(rng.normal(size=shape)) * (1e3 if s["values"] == "large" else 1.5)
    y = signs(rng, shape)
    if s["values"] == "kink":  # margin - x == 0 where y == -1
        x = np.where(y < 0, s["margin"], np.round(x * 4) / 4)
        if not shape:
            raise Invalid("kink needs elements")
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["margin"] != 1.0:
        kw["margin"] = s["margin"]
    # target only selects a branch in torch (no gradient): not differentiated
    return Case("hinge_embedding_loss", "", (x, y), kw, ("input", "target"), grad=("input",))
