"""Distance helpers: pairwise_distance, cosine_similarity.

pairwise_distance: ``p`` in {2, 1, 3, 0.5, inf, 0}, ``eps``, ``keepdim``, batched
``(4, 5)``, unbatched ``(5,)``, broadcast ``(1, 5)`` vs ``(4, 5)``, identical inputs
(the norm of the eps vector). cosine_similarity: ``dim`` 1 / -1 / 0, 3-D inputs,
broadcasting, zero vectors (the eps clamp), ``eps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, loss, rng_for

N, D = 4, 5


@loss(
    "pairwise_distance",
    "distance",
    ("x1", "x2", "p", "eps", "keepdim"),
    {"shape": "batched", "p": 2.0, "eps": None, "keepdim": False, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"p": 1.0, "dtypes": ALL_DTYPES},
        {"p": 3.0},
        {"p": 0.5},
        {"p": float("inf"), "dtypes": ALL_DTYPES},
        {"p": 0.0},
        {"eps": 1e-3},
        {"keepdim": True},
        {"keepdim": True, "shape": "unbatched"},
        {"shape": "unbatched"},
        {"shape": "broadcast"},
        {"shape": "3d", "p": 1.0},
        {"shape": "empty"},
        {"values": "identical", "dtypes": ALL_DTYPES},
        {"values": "identical", "p": 1.0, "eps": 0.0},
        {"values": "large"},
    ],
    {
        "shape": ["batched", "unbatched", "broadcast", "3d", "empty"],
        "p": [2.0, 1.0, 3.0, 0.5, float("inf"), 0.0],
        "eps": [None, 1e-3, 0.0],
        "keepdim": [False, True],
        "values": ["normal", "identical", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def pairwise_distance(s: dict[str, Any]) -> Case:
    rng = rng_for(s, "pd")
    shapes = {"batched": ((N, D), (N, D)), "unbatched": ((D,), (D,)), "broadcast": ((1, D), (N, D)), "3d": ((2, 3, D), (2, 3, D)), "empty": ((0, D), (0, D))}
    s1, s2 = shapes[s["shape"]]
    scale = 1e3 if s["values"] == "large" else 1.0
    x1, x2 = rng.normal(size=s1) * scale, rng.normal(size=s2) * scale
    if s["values"] == "identical":
        x2 = np.broadcast_to(x1, s2).copy()
        if s["eps"] == 0.0 and s["p"] != 1.0:
            raise Invalid("norm of an exact zero vector: gradient undefined")
    kw: dict[str, Any] = {}
    if s["p"] != 2.0:
        kw["p"] = s["p"]
    if s["eps"] is not None:
        kw["eps"] = s["eps"]
    if s["keepdim"]:
        kw["keepdim"] = True
    # p < 1 / p == 0: no second derivative at a coordinate of 0; gradients of x == y: subgradient choices
    hvp = s["p"] not in (0.0, 0.5, float("inf")) and s["values"] != "identical"
    return Case("pairwise_distance", "", (x1, x2), kw, ("x1", "x2"), grad=("x1", "x2"), hvp=hvp)


# Precision limit of float32 itself, not a tolerance exception: the gradient of the cosine of
# vectors of norm ~2e-5 is a difference of terms ~1/|x| = 5e4 whose float32 rounding (~3e-3
# absolute, ~1e-7 of the gradient's scale) exceeds the elementwise atol 1e-5 + rtol |g| on small
# components, in both implementations (measured over 50 seeds: 35 fail, jaxloss up to 3380 ULP and
# torch up to 10060 ULP from the float64 gradient; --fuzz 2000 --seed 11 found it). "tiny" runs in
# float64 only (grid and fuzzer).
_TINY_LIMIT = ("float64",)


@loss(
    "cosine_similarity",
    "distance",
    ("x1", "x2", "dim", "eps"),
    {"shape": "batched", "dim": None, "eps": None, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"dim": -1, "dtypes": ALL_DTYPES},
        {"dim": 0},
        {"shape": "3d", "dim": 1},
        {"shape": "3d", "dim": 2},
        {"shape": "unbatched", "dim": 0},
        {"shape": "broadcast"},
        {"shape": "empty"},
        {"eps": 1e-3},
        {"values": "zero-vector", "dtypes": ("float64", "float32", "bfloat16")},
        {"values": "zero-vector", "eps": 1e-2},
        {"values": "tiny"},
        {"values": "large", "dtypes": ALL_DTYPES},
    ],
    {
        "shape": ["batched", "unbatched", "broadcast", "3d", "empty"],
        "dim": [None, -1, 0, 1, 2],
        "eps": [None, 1e-3, 1e-2],
        "values": ["normal", "zero-vector", "tiny", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def cosine_similarity(s: dict[str, Any]) -> Case:
    rng = rng_for(s, "cs")
    shapes = {"batched": ((N, D), (N, D)), "unbatched": ((D,), (D,)), "broadcast": ((1, D), (N, D)), "3d": ((2, 3, D), (2, 3, D)), "empty": ((0, D), (0, D))}
    s1, s2 = shapes[s["shape"]]
    dim = s["dim"]
    nd = len(s1)
    if dim is not None and not -nd <= dim < nd:
        raise Invalid("dim out of range")
    if dim is None and nd < 2:
        raise Invalid("default dim=1 needs 2 dims")
    scale = {"normal": 1.0, "zero-vector": 1.0, "tiny": 1e-5, "large": 1e3}[s["values"]]
    x1, x2 = rng.normal(size=s1) * scale, rng.normal(size=s2) * scale
    if s["values"] == "zero-vector" and x1.size:
        x1.reshape(-1)[:D] = 0.0  # one all-zero vector (below eps)
    kw: dict[str, Any] = {}
    if dim is not None:
        kw["dim"] = dim
    if s["eps"] is not None:
        kw["eps"] = s["eps"]
    return Case("cosine_similarity", "", (x1, x2), kw, ("x1", "x2"), grad=("x1", "x2"), hvp=s["values"] != "zero-vector",
                fuzz_dtypes=_TINY_LIMIT if s["values"] == "tiny" else None)
