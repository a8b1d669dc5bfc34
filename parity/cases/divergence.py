"""kl_div: reductions 'none' | 'mean' | 'sum' | 'batchmean', ``log_target``.

Inputs are log-probabilities; targets probabilities (exact zeros in the "edge"
regime: ``xlogy(0, 0) = 0``) or, with ``log_target=True``, log-probabilities
(``-inf`` in the "edge" regime, where torch's ``exp(t) * (t - x)`` is NaN; NaN
must then match NaN). Shapes: batched ``(4, 5)``, unbatched ``(5,)``, K-dim
``(3, 5, 2)``, empty ``(0, 5)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity.cases import ALL_DTYPES, Case, log_softmax, loss, rng_for

SHAPES = {"batched": (4, 5), "unbatched": (5,), "kdim": (3, 5, 2), "empty": (0, 5)}


@loss(
    "kl_div",
    "divergence",
    ("input", "target", "reduction", "log_target"),
    {"shape": "batched", "reduction": "mean", "log_target": False, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "batchmean", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"log_target": True, "dtypes": ALL_DTYPES},
        {"log_target": True, "reduction": "batchmean"},
        {"log_target": True, "reduction": "none"},
        {"shape": "unbatched", "reduction": "batchmean"},
        {"shape": "kdim", "reduction": "batchmean"},
        {"shape": "kdim", "log_target": True, "reduction": "none"},
        {"shape": "empty", "reduction": "sum"},
        {"shape": "empty", "reduction": "batchmean"},
        {"values": "edge", "reduction": "none", "dtypes": ALL_DTYPES},
        {"values": "edge", "reduction": "batchmean"},
        {"values": "edge", "log_target": True, "reduction": "none"},
        {"values": "edge", "log_target": True, "reduction": "sum"},
        {"values": "peaked", "dtypes": ALL_DTYPES},
    ],
    {
        "shape": list(SHAPES),
        "reduction": ["mean", "batchmean", "sum", "none"],
        "log_target": [False, True],
        "values": ["normal", "edge", "peaked"],
        "seed": [0, 1, 2, 3],
    },
)
def kl_div(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "kl")
    ax = 0 if len(shape) == 1 else 1
    scale = 12.0 if s["values"] == "peaked" else 1.0
    x = log_softmax(rng.normal(size=shape) * scale, ax)
    lt = log_softmax(rng.normal(size=shape) * scale, ax)
    if s["values"] == "edge":  # target probability exactly 0
        lt = np.where(rng.uniform(size=shape) < 0.3, -np.inf, lt)
    t = lt if s["log_target"] else np.exp(lt)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["log_target"]:
        kw["log_target"] = True
    return Case("kl_div", "", (x, t), kw, ("input", "target"), grad=("input", "target"))
