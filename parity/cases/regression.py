"""Regression losses: l1_loss, mse_loss, huber_loss, smooth_l1_loss, poisson_nll_loss, gaussian_nll_loss.

Shapes: batched ``(4, 5)``, unbatched ``(5,)``, K-dim ``(2, 3, 2, 2)``, scalar, empty
``(0, 5)``. Gaussian variances of 1e-12 / 1e10 and squared errors of 1e6 leave
float16's range (max 65504), so those regimes run in float64 / float32 / bfloat16. Values: normal, large (x1e4), tiny (x1e-6), and "kink" data that put
``|x - y|`` exactly at 0 / ``delta`` / ``beta``, where the gradient follows torch's
branch choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, loss, rng_for, traced_option

SHAPES = {"batched": (4, 5), "unbatched": (5,), "kdim": (2, 3, 2, 2), "scalar": (), "empty": (0, 5)}
REDUCTIONS = ["mean", "none", "sum"]
_SCALE = {"normal": 1.0, "large": 1e4, "tiny": 1e-6}


def _pair(s: dict[str, Any], kink: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "pair")
    if s["values"] == "kink":  # |x - y| == kink on every other element (exact in every dtype)
        y = np.round(rng.normal(size=shape) * 4) / 4
        d = np.where(np.arange(int(np.prod(shape))).reshape(shape) % 2 == 0, kink, rng.normal(size=shape))
        return y + d * rng.choice([-1.0, 1.0], size=shape), y
    scale = _SCALE[s["values"]]
    return rng.normal(size=shape) * scale, rng.normal(size=shape) * scale


def _target(s: dict[str, Any], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if s.get("broadcast"):  # a target of another shape: torch warns and broadcasts
        if x.ndim < 1 or x.shape[-1] == 0:
            raise Invalid("broadcast needs a trailing dimension")
        return y.reshape(-1)[: x.shape[-1]].copy() if x.ndim > 1 else y[:1].copy()
    return y


def _weight(s: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    if not s.get("weight"):
        return {}
    return {"weight": rng_for(s, "weight").uniform(0.1, 2.0, size=x.shape)}


_DEF = {"shape": "batched", "reduction": "mean", "values": "normal", "weight": False, "broadcast": False, "seed": 0}
_SPACE = {
    "shape": list(SHAPES),
    "reduction": REDUCTIONS,
    "values": ["normal", "kink", "large", "tiny"],
    "weight": [False, True],
    "broadcast": [False, True],
    "seed": [0, 1, 2, 3],
}


def _core_grid(extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"shape": "unbatched"},
        {"shape": "kdim", "reduction": "sum"},
        {"shape": "scalar"},
        {"shape": "empty"},
        {"shape": "empty", "reduction": "sum"},
        {"shape": "empty", "reduction": "none"},
        {"values": "large", "dtypes": ALL_DTYPES},
        {"values": "tiny", "dtypes": ALL_DTYPES},
        {"values": "kink", "reduction": "none", "dtypes": ALL_DTYPES},
        {"broadcast": True},
        *extra,
    ]


_WEIGHTED = [
    {"weight": True, "dtypes": ALL_DTYPES},
    {"weight": True, "reduction": "none"},
    {"weight": True, "reduction": "sum", "shape": "kdim"},
]


def _with_traced(case: Case, s: dict[str, Any], option: str) -> Case:
    """``traced=True``: jaxloss gets ``option`` as a JAX array (traced), torch the Python number."""
    if s.get("traced"):
        case.jax_fn = traced_option(case.loss, option)
        case.jax_expr = f"jaxloss.{case.loss} with {option}=jnp.asarray(...)"
    return case


def _simple(name: str, s: dict[str, Any], extra_kwargs: dict[str, Any], kink: float = 0.0) -> Case:
    x, y = _pair(s, kink)
    y = _target(s, x, y)
    kwargs = {"reduction": s["reduction"], **extra_kwargs, **_weight(s, x)}
    return Case(name, "", (x, y), kwargs, ("input", "target"), grad=("input", "target"))


@loss("l1_loss", "regression", ("input", "target", "reduction", "weight"), _DEF, _core_grid(_WEIGHTED), _SPACE)
def l1_loss(s: dict[str, Any]) -> Case:
    return _simple("l1_loss", s, {})


@loss("mse_loss", "regression", ("input", "target", "reduction", "weight"), _DEF, _core_grid(_WEIGHTED), _SPACE)
def mse_loss(s: dict[str, Any]) -> Case:
    return _simple("mse_loss", s, {})


@loss(
    "huber_loss",
    "regression",
    ("input", "target", "reduction", "delta", "weight"),
    {**_DEF, "delta": 1.0},
    _core_grid(
        _WEIGHTED
        + [
            {"delta": 0.5, "dtypes": ALL_DTYPES},
            {"delta": 2.0, "values": "kink", "reduction": "none"},
            {"delta": 0.25, "values": "kink", "reduction": "sum", "dtypes": ALL_DTYPES},
            {"delta": 0.5, "traced": True, "dtypes": ALL_DTYPES},
            {"delta": 2.0, "traced": True, "values": "kink", "reduction": "none"},
            # every element quadratic: the unused linear branch must not leak inf * 0 into the gradient
            {"delta": float("inf"), "dtypes": ("float64", "float32")},
            {"delta": float("inf"), "traced": True, "reduction": "sum"},
        ]
    ),
    {**_SPACE, "delta": [1.0, 0.5, 2.0, 0.25], "traced": [False, True]},
)
def huber_loss(s: dict[str, Any]) -> Case:
    return _with_traced(_simple("huber_loss", s, {"delta": s["delta"]}, kink=s["delta"]), s, "delta")


@loss(
    "smooth_l1_loss",
    "regression",
    ("input", "target", "reduction", "beta"),
    {**_DEF, "beta": 1.0},
    _core_grid(
        [
            {"beta": 0.5, "dtypes": ALL_DTYPES},
            {"beta": 0.0, "reduction": "none"},
            {"beta": 0.0, "values": "kink"},
            {"beta": 2.0, "values": "kink", "reduction": "none", "dtypes": ALL_DTYPES},
            {"beta": 0.5, "traced": True, "dtypes": ALL_DTYPES},
            {"beta": 0.0, "traced": True, "values": "kink", "reduction": "none"},
        ]
    ),
    {k: v for k, v in {**_SPACE, "beta": [1.0, 0.5, 0.0, 2.0], "traced": [False, True]}.items() if k != "weight"},
)
def smooth_l1_loss(s: dict[str, Any]) -> Case:
    c = _simple("smooth_l1_loss", {**s, "weight": False}, {"beta": s["beta"]}, kink=s["beta"])
    return _with_traced(c, s, "beta")


# --------------------------------------------------------------------------- Poisson
@loss(
    "poisson_nll_loss",
    "regression",
    ("input", "target", "log_input", "full", "eps", "reduction"),
    {"shape": "batched", "reduction": "mean", "log_input": True, "full": False, "eps": None, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"log_input": False, "dtypes": ALL_DTYPES},
        {"log_input": False, "values": "zeros", "reduction": "none"},
        {"full": True, "dtypes": ALL_DTYPES},
        {"full": True, "log_input": False, "reduction": "none"},
        {"eps": 1e-3, "log_input": False, "values": "zeros"},
        {"shape": "unbatched"},
        {"shape": "kdim", "reduction": "sum"},
        {"shape": "scalar", "full": True},
        {"shape": "empty"},
        {"shape": "empty", "reduction": "sum"},
        {"values": "large", "reduction": "none", "dtypes": ("float64", "float32", "bfloat16")},
    ],
    {
        "shape": list(SHAPES),
        "reduction": REDUCTIONS,
        "log_input": [True, False],
        "full": [False, True],
        "eps": [None, 1e-3],
        "values": ["normal", "zeros", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def poisson_nll_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "poisson")
    target = rng.poisson(2.0, size=shape).astype(np.float64)  # counts: 0, 1 and above (Stirling term)
    if s["log_input"]:
        x = rng.normal(size=shape) * (20.0 if s["values"] == "large" else 1.0)
    else:
        x = rng.uniform(0.1, 4.0, size=shape) * (1e3 if s["values"] == "large" else 1.0)
        if s["values"] == "zeros":  # rate exactly 0: log(0 + eps)
            x = np.where(rng.uniform(size=shape) < 0.4, 0.0, x)
    kwargs: dict[str, Any] = {"log_input": s["log_input"], "full": s["full"], "reduction": s["reduction"]}
    if s["eps"] is not None:
        kwargs["eps"] = s["eps"]
    # d/dtarget of the Stirling term is log(t) at t = 0 (masked, but 0 * -inf = NaN in torch's graph)
    grad = ("input",) if s["full"] else ("input", "target")
    return Case("poisson_nll_loss", "", (x, target), kwargs, ("input", "target"), grad=grad)


# --------------------------------------------------------------------------- Gaussian
_VAR_SHAPES = {
    "full": lambda shape: shape,
    "last1": lambda shape: shape[:-1] + (1,),
    "drop-last": lambda shape: shape[:-1],
    "float": lambda shape: None,
}


@loss(
    "gaussian_nll_loss",
    "regression",
    ("input", "target", "var", "full", "eps", "reduction"),
    {"shape": "batched", "var": "full", "reduction": "mean", "full": False, "eps": None, "values": "normal", "seed": 0},
    [
        {"dtypes": ALL_DTYPES},
        {"reduction": "none", "dtypes": ALL_DTYPES},
        {"reduction": "sum"},
        {"full": True, "dtypes": ALL_DTYPES},
        {"var": "last1"},
        {"var": "drop-last", "reduction": "none"},
        {"var": "float"},
        {"var": "float", "full": True, "reduction": "sum"},
        {"shape": "unbatched"},
        {"shape": "unbatched", "var": "last1"},
        {"shape": "kdim", "reduction": "sum"},
        {"shape": "empty"},
        {"values": "tiny-var", "reduction": "none", "dtypes": ("float64", "float32", "bfloat16")},
        {"values": "tiny-var", "eps": 1e-2},
        {"values": "huge-var", "reduction": "none", "dtypes": ("float64", "float32", "bfloat16")},
        {"values": "large", "dtypes": ("float64", "float32", "bfloat16")},
    ],
    {
        "shape": ["batched", "unbatched", "kdim", "empty"],
        "var": list(_VAR_SHAPES),
        "reduction": REDUCTIONS,
        "full": [False, True],
        "eps": [None, 1e-2],
        "values": ["normal", "tiny-var", "huge-var", "large"],
        "seed": [0, 1, 2, 3],
    },
)
def gaussian_nll_loss(s: dict[str, Any]) -> Case:
    shape = SHAPES[s["shape"]]
    rng = rng_for(s, "gauss")
    scale = 1e3 if s["values"] == "large" else 1.0
    x, y = rng.normal(size=shape) * scale, rng.normal(size=shape) * scale
    vshape = _VAR_SHAPES[s["var"]](shape)
    if s["var"] == "float":
        var: Any = 0.75
    else:
        var = rng.uniform(0.2, 2.0, size=vshape)
        if s["values"] == "tiny-var":  # below eps: clamped (the gradient passes straight through, as in torch)
            var = np.where(rng.uniform(size=vshape) < 0.5, 1e-12, var)
        elif s["values"] == "huge-var":
            var = var * 1e10
    kwargs: dict[str, Any] = {"full": s["full"], "reduction": s["reduction"]}
    if s["eps"] is not None:
        kwargs["eps"] = s["eps"]
    grad = ("input", "target") if s["var"] == "float" else ("input", "target", "var")
    return Case("gaussian_nll_loss", "", (x, y, var), kwargs, ("input", "target", "var"), grad=grad)
