"""linear_cross_entropy: ``cross_entropy(linear(input, linear_weight, linear_bias), target)``.

torch's side is ``F.linear_cross_entropy`` on its reference path (``options=None``,
see :func:`jaxloss.parity.references.linear_cross_entropy`); jaxloss's ``chunk_size``
chunks the batch to save memory and must not change the result, so chunked
cases (chunk sizes dividing the batch and not) are compared with the same torch
value. Shapes: input ``(N, F)`` or unbatched ``(F,)``, weight ``(C, F)`` or
K-dimensional ``(C, d1, F)``; class-index or probability targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity import references
from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, loss, rng_for, softmax

N, F_IN, C = 6, 4, 5


@loss(
    "linear_cross_entropy",
    "linear",
    ("input", "linear_weight", "target", "linear_bias", "weight", "reduction", "ignore_index", "label_smoothing", "chunk_size"),
    {
        "shape": "batched",
        "target": "index",
        "bias": False,
        "weight": False,
        "reduction": "mean",
        "ignore": "none",
        "ignore_index": None,
        "label_smoothing": 0.0,
        "chunk_size": None,
        "values": "normal",
        "seed": 0,
    },
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ("float64", "float32")},
        {"reduction": "sum", "bias": True},
        {"bias": True, "dtypes": ALL_DTYPES},
        {"weight": True, "bias": True, "reduction": "none"},
        {"weight": True},
        {"ignore": "some"},
        {"ignore": "some", "ignore_index": 2, "weight": True},
        {"ignore": "all", "ignore_index": -100},
        {"label_smoothing": 0.1, "dtypes": ("float64", "float32")},
        {"label_smoothing": 0.2, "weight": True, "ignore": "some", "reduction": "sum"},
        {"chunk_size": 2, "dtypes": ALL_DTYPES},
        {"chunk_size": 4, "bias": True, "reduction": "none"},
        {"chunk_size": 4, "weight": True, "ignore": "some", "label_smoothing": 0.1},
        {"chunk_size": 1, "target": "probs"},
        {"shape": "unbatched"},
        {"shape": "unbatched", "bias": True, "reduction": "none"},
        {"shape": "kdim"},
        {"shape": "kdim", "bias": True, "reduction": "none"},
        {"shape": "empty"},
        {"shape": "empty", "reduction": "sum"},
        {"target": "probs", "dtypes": ("float64", "float32")},
        {"target": "probs", "bias": True, "reduction": "none", "label_smoothing": 0.1},
        {"values": "large", "dtypes": ("float64", "float32", "bfloat16")},
        {"values": "large", "reduction": "none", "chunk_size": 4},
    ],
    {
        "shape": ["batched", "unbatched", "kdim", "empty"],
        "target": ["index", "probs"],
        "bias": [False, True],
        "weight": [False, True],
        "reduction": ["mean", "none", "sum"],
        "ignore": ["none", "some", "all"],
        "ignore_index": [None, -100, 2],
        "label_smoothing": [0.0, 0.1],
        "chunk_size": [None, 1, 2, 4],
        "values": ["normal", "large"],
        "seed": [0, 1, 2, 3],
    },
    torch_name="F.linear_cross_entropy (options=None)",
)
def linear_cross_entropy(s: dict[str, Any]) -> Case:
    rng = rng_for(s, "lce")
    n = {"batched": N, "unbatched": None, "kdim": N, "empty": 0}[s["shape"]]
    x = rng.normal(size=(F_IN,) if n is None else (n, F_IN))
    out_extra = (2,) if s["shape"] == "kdim" else ()
    w = rng.normal(size=(C,) + out_extra + (F_IN,)) * (30.0 if s["values"] == "large" else 0.7)
    tshape = () if n is None else (n,) + out_extra
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["target"] == "probs":
        if s["ignore"] != "none" or s["shape"] == "kdim":
            raise Invalid("probability targets: no ignore_index, no K-dim weight here")
        t = softmax(rng.normal(size=(C,) if n is None else (n, C)) * 2, -1)
    else:
        t = rng.integers(0, C, size=tshape).astype(np.int64)
        ii = -100 if s["ignore_index"] is None else s["ignore_index"]
        if s["ignore"] == "some":
            t = np.where(rng.uniform(size=t.shape) < 0.4, ii, t).astype(np.int64)
            if t.size:
                t.reshape(-1)[0] = ii
        elif s["ignore"] == "all":
            t = np.full(t.shape, ii, dtype=np.int64)
        if s["ignore_index"] is not None:
            kw["ignore_index"] = s["ignore_index"]
    grad = ["input", "linear_weight"]
    if s["bias"]:
        kw["linear_bias"] = rng.normal(size=(C,) + out_extra)
        grad.append("linear_bias")
    if s["weight"]:
        kw["weight"] = rng.uniform(0.2, 2.0, size=(C,))
    if s["label_smoothing"]:
        kw["label_smoothing"] = s["label_smoothing"]
    if s["chunk_size"] is not None:
        if n is None:
            raise Invalid("chunking needs a batch")
        kw["chunk_size"] = s["chunk_size"]
    if s["target"] == "probs":
        grad.append("target")
    return Case(
        "linear_cross_entropy",
        "",
        (x, w, t),
        kw,
        ("input", "linear_weight", "target"),
        grad=tuple(grad),
        torch_fn=references.linear_cross_entropy,
        torch_expr="jaxloss.parity.references.linear_cross_entropy",
    )
