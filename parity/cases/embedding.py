"""Embedding losses: cosine_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss.

Batched ``(4, 5)`` and unbatched ``(5,)`` inputs; ``margin`` (including negative
cosine margins), ``p`` in {2, 1, 3}, ``eps``, ``swap``; zero vectors for the
cosine loss (torch's 1e-12 clamp); for the distance variant: the default
(pairwise distance) and two custom distance functions, each given as a JAX
function to jaxloss and as a torch function to torch (see
:mod:`jaxloss.parity.references`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch.nn.functional as F

import jaxloss
from jaxloss.parity import references
from jaxloss.parity.cases import ALL_DTYPES, Case, loss, rng_for, signs

N, D = 4, 5
REDUCTIONS = ["mean", "none", "sum"]
SHAPES = {"batched": (N, D), "unbatched": (D,), "empty": (0, D)}


@loss(
    "cosine_embedding_loss",
    "embedding",
    ("input1", "input2", "target", "margin", "reduction"),
    {"shape": "batched", "reduction": "mean", "margin": 0.0, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"margin": 0.5, "dtypes": ALL_DTYPES},
        {"margin": -0.3, "reduction": "none"},
        {"shape": "unbatched"},
        {"shape": "unbatched", "reduction": "none", "margin": 0.2},
        {"shape": "empty", "reduction": "sum"},
        {"values": "zero-vector", "reduction": "none", "dtypes": ("float64", "float32", "bfloat16")},
        {"values": "large"},
        {"values": "int-target"},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "margin": [0.0, 0.5, -0.3],
        "values": ["normal", "zero-vector", "large", "int-target"],
        "seed": [0, 1, 2, 3],
    },
)
def cosine_embedding_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "ce")
    scale = 1e3 if s["values"] == "large" else 1.0
    x1, x2 = rng.normal(size=shape) * scale, rng.normal(size=shape) * scale
    y = signs(rng, shape[:-1])
    if s["values"] == "zero-vector" and x1.size:
        x1.reshape(-1)[:D] = 0.0
    if s["values"] == "int-target":
        y = y.astype(np.int64)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["margin"]:
        kw["margin"] = s["margin"]
    return Case(
        "cosine_embedding_loss", "", (x1, x2, y), kw, ("input1", "input2", "target"), grad=("input1", "input2"),
        hvp=s["values"] != "zero-vector",
    )


def _triplet(s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "tr")
    scale = 1e3 if s["values"] == "large" else 1.0
    a = rng.normal(size=shape) * scale
    p = a + rng.normal(size=shape) * 0.5 * scale
    n = a + rng.normal(size=shape) * scale
    return a, p, n


@loss(
    "triplet_margin_loss",
    "embedding",
    ("anchor", "positive", "negative", "margin", "p", "eps", "swap", "reduction"),
    {"shape": "batched", "reduction": "mean", "margin": 1.0, "p": 2.0, "eps": None, "swap": False, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"margin": 0.3},
        {"margin": 3.0, "reduction": "none"},
        {"p": 1.0, "dtypes": ALL_DTYPES},
        {"p": 3.0},
        {"eps": 1e-3},
        {"swap": True, "dtypes": ALL_DTYPES},
        {"swap": True, "p": 1.0, "reduction": "none"},
        {"shape": "unbatched"},
        {"shape": "unbatched", "swap": True, "reduction": "none"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "large"},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "margin": [1.0, 0.3, 3.0],
        "p": [2.0, 1.0, 3.0],
        "eps": [None, 1e-3],
        "swap": [False, True],
        "values": ["normal", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def triplet_margin_loss(s: dict[str, Any]) -> Case:
    a, p, n = _triplet(s)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    for k, default in (("margin", 1.0), ("p", 2.0), ("eps", None), ("swap", False)):
        if s[k] != default:
            kw[k] = s[k]
    return Case(
        "triplet_margin_loss", "", (a, p, n), kw, ("anchor", "positive", "negative"), grad=("anchor", "positive", "negative")
    )


_DISTANCES = {
    "default": (None, None, "", ""),
    "cosine": (
        references.jax_cosine_distance,
        references.torch_cosine_distance,
        "jaxloss.parity.references.jax_cosine_distance",
        "jaxloss.parity.references.torch_cosine_distance",
    ),
    "l1": (references.jax_l1_distance, references.torch_l1_distance, "jaxloss.parity.references.jax_l1_distance", "jaxloss.parity.references.torch_l1_distance"),
}


@loss(
    "triplet_margin_with_distance_loss",
    "embedding",
    ("anchor", "positive", "negative", "distance_function", "margin", "swap", "reduction"),
    {"shape": "batched", "reduction": "mean", "distance": "default", "margin": 1.0, "swap": False, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"margin": 0.3},
        {"swap": True, "dtypes": ALL_DTYPES},
        {"distance": "cosine", "dtypes": ALL_DTYPES},
        {"distance": "cosine", "swap": True, "margin": 0.5, "reduction": "none"},
        {"distance": "l1", "reduction": "sum"},
        {"distance": "l1", "swap": True},
        {"shape": "unbatched"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "large"},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "distance": list(_DISTANCES),
        "margin": [1.0, 0.3],
        "swap": [False, True],
        "values": ["normal", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def triplet_margin_with_distance_loss(s: dict[str, Any]) -> Case:
    a, p, n = _triplet(s)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["margin"] != 1.0:
        kw["margin"] = s["margin"]
    if s["swap"]:
        kw["swap"] = True
    jd, td, jexpr, texpr = _DISTANCES[s["distance"]]
    name = "triplet_margin_with_distance_loss"
    if jd is None:
        return Case(name, "", (a, p, n), kw, ("anchor", "positive", "negative"), grad=("anchor", "positive", "negative"))
    return Case(
        name,
        "",
        (a, p, n),
        kw,
        ("anchor", "positive", "negative"),
        grad=("anchor", "positive", "negative"),
        jax_fn=functools.partial(jaxloss.triplet_margin_with_distance_loss, distance_function=jd),
        torch_fn=functools.partial(F.triplet_margin_with_distance_loss, distance_function=td),
        jax_expr=f"functools.partial(jaxloss.{name}, distance_function={jexpr})",
        torch_expr=f"functools.partial(F.{name}, distance_function={texpr})",
        covers=("distance_function",),
    )
