"""``torch.nn`` loss modules converted with ``jaxloss.from_torch`` and compared with the module.

One row per ``torch.nn.*Loss`` class (``nn.CrossEntropyLoss``...): the torch module
is built with non-default options (weights in the case's dtype), converted, and
both are called on the same inputs. The two modules with parameters
(``LinearCrossEntropyLoss``, ``AdaptiveLogSoftmaxWithLoss``, needing flax) are
compared on their forward pass with the torch module's parameters loaded; without flax
their cases are errors that name it (``python -m jaxloss.parity`` checks for flax before it starts).
Registered only when ``jaxloss.from_torch`` exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import jaxloss
from jaxloss.parity.cases import ALL_DTYPES, Case, log_softmax, loss, rng_for, signs

N, C = 4, 5
T, S = 10, 3

_TORCH_DT = {"float64": "torch.float64", "float32": "torch.float32", "float16": "torch.float16", "bfloat16": "torch.bfloat16"}


def _inputs(name: str, rng: np.random.Generator) -> tuple[tuple[Any, ...], tuple[str, ...], tuple[str, ...]]:
    """(forward inputs, their names, names to differentiate) for a module class."""
    x = rng.normal(size=(N, C))
    y = rng.normal(size=(N, C))
    prob = rng.uniform(0.05, 0.95, size=(N, C))
    cls = rng.integers(0, C, size=(N,)).astype(np.int64)
    two = ("input", "target")
    if name in ("L1Loss", "MSELoss", "HuberLoss", "SmoothL1Loss"):
        return (x, y), two, two
    if name == "PoissonNLLLoss":
        return (prob * 3, rng.poisson(2.0, (N, C)).astype(np.float64)), two, ("input",)
    if name == "GaussianNLLLoss":
        return (x, y, prob), ("input", "target", "var"), ("input", "target", "var")
    if name in ("NLLLoss", "NLLLoss2d"):
        shape = (N, C) if name == "NLLLoss" else (N, C, 2, 2)
        t = cls if name == "NLLLoss" else rng.integers(0, C, size=(N, 2, 2)).astype(np.int64)
        return (log_softmax(rng.normal(size=shape), 1), t), two, ("input",)
    if name == "CrossEntropyLoss":
        return (x, cls), two, ("input",)
    if name == "BCELoss":
        return (prob, rng.uniform(size=(N, C))), two, two
    if name in ("BCEWithLogitsLoss", "MultiLabelSoftMarginLoss"):
        return (x, rng.integers(0, 2, size=(N, C)).astype(np.float64)), two, two
    if name == "SoftMarginLoss":
        return (x, signs(rng, (N, C))), two, ("input",)
    if name == "KLDivLoss":
        return (log_softmax(x, 1), log_softmax(y, 1)), two, two
    if name == "MultiLabelMarginLoss":
        t = np.array([[3, 0, -1, 1, 2], [1, 2, 3, -1, 0], [0, -1, 0, 0, 0], [4, 3, 2, 1, 0]], dtype=np.int64)
        return (x, t), two, ("input",)
    if name == "MultiMarginLoss":
        return (x, cls), two, ("input",)
    if name in ("MarginRankingLoss",):
        return (x[:, 0], y[:, 0], signs(rng, (N,))), ("input1", "input2", "target"), ("input1", "input2")
    if name == "HingeEmbeddingLoss":
        return (np.abs(x), signs(rng, (N, C))), two, ("input",)
    if name == "CosineEmbeddingLoss":
        return (x, y, signs(rng, (N,))), ("input1", "input2", "target"), ("input1", "input2")
    if name in ("TripletMarginLoss", "TripletMarginWithDistanceLoss"):
        return (x, x + 0.3 * y, y), ("anchor", "positive", "negative"), ("anchor", "positive", "negative")
    if name == "CTCLoss":
        lp = log_softmax(rng.normal(size=(T, N, C)), -1)
        tg = rng.integers(1, C, size=(N, S)).astype(np.int64)
        return (lp, tg, np.full((N,), T, dtype=np.int64), np.array([3, 2, 1, 3], dtype=np.int64)), (
            "log_probs", "targets", "input_lengths", "target_lengths"), ()
    if name == "LinearCrossEntropyLoss":
        return (rng.normal(size=(N, 6)), cls), two, ("input",)
    if name == "AdaptiveLogSoftmaxWithLoss":
        return (rng.normal(size=(7, 8)), np.array([0, 3, 4, 9, 10, 11, 5], dtype=np.int64)), two, ("input",)
    raise KeyError(name)


def _options(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """Non-default constructor options; NumPy arrays become tensors of the case's dtype."""
    w = rng.uniform(0.2, 2.0, size=(C,))
    return {
        "L1Loss": {"reduction": "sum"},
        "MSELoss": {"reduction": "none"},
        "HuberLoss": {"delta": 0.5, "reduction": "none"},
        "SmoothL1Loss": {"beta": 0.3},
        "PoissonNLLLoss": {"log_input": False, "full": True},
        "GaussianNLLLoss": {"full": True, "reduction": "sum", "eps": 1e-3},
        "NLLLoss": {"weight": w, "ignore_index": 1},
        "NLLLoss2d": {"reduction": "sum"},
        "CrossEntropyLoss": {"weight": w, "label_smoothing": 0.1, "ignore_index": 2},
        "BCELoss": {"weight": w},
        "BCEWithLogitsLoss": {"pos_weight": w + 0.5, "weight": w[::-1].copy()},
        "SoftMarginLoss": {"reduction": "sum"},
        "MultiLabelSoftMarginLoss": {"weight": w},
        "KLDivLoss": {"reduction": "batchmean", "log_target": True},
        "MultiLabelMarginLoss": {"reduction": "none"},
        "MultiMarginLoss": {"p": 2, "margin": 0.7, "weight": w},
        "MarginRankingLoss": {"margin": 0.2},
        "HingeEmbeddingLoss": {"margin": 0.8},
        "CosineEmbeddingLoss": {"margin": 0.1, "reduction": "none"},
        "TripletMarginLoss": {"margin": 0.5, "p": 1.0, "swap": True, "eps": 1e-3},
        "TripletMarginWithDistanceLoss": {"margin": 0.5, "swap": True, "distance_function": "pairwise_distance"},
        "CTCLoss": {"blank": 0, "reduction": "sum", "zero_infinity": True},
        "LinearCrossEntropyLoss": {"args": (6, C), "bias": True, "label_smoothing": 0.1},
        "AdaptiveLogSoftmaxWithLoss": {"args": (8, 12, [4, 8]), "div_value": 2.0, "head_bias": True},
    }[name]


def _maker(name: str, opts: dict[str, Any]) -> Callable[[str], tuple[Any, Any]]:
    def make(dtype: str) -> tuple[Any, Any]:
        import torch
        import torch.nn.functional as F

        tdt = getattr(torch, dtype)
        kw = {k: v for k, v in opts.items() if k != "args"}
        for k, v in list(kw.items()):
            if isinstance(v, np.ndarray):
                kw[k] = torch.tensor(v, dtype=tdt)
            elif v == "pairwise_distance":
                kw[k] = F.pairwise_distance
        torch.manual_seed(0)
        module = getattr(torch.nn, name)(*opts.get("args", ()), **kw)
        if "args" in opts:
            module = module.to(tdt)
        return jaxloss.from_torch(module), module

    return make


def _make_expr(name: str, opts: dict[str, Any]) -> Callable[[str], tuple[str, str]]:
    def expr(dtype: str) -> tuple[str, str]:
        parts = [repr(a) for a in opts.get("args", ())]
        for k, v in opts.items():
            if k == "args":
                continue
            if isinstance(v, np.ndarray):
                parts.append(f"{k}=torch.tensor({v.tolist()!r}, dtype={_TORCH_DT[dtype]})")
            elif v == "pairwise_distance":
                parts.append(f"{k}=F.pairwise_distance")
            else:
                parts.append(f"{k}={v!r}")
        ctor = f"torch.nn.{name}({', '.join(parts)})"
        if "args" in opts:
            ctor = f"(torch.manual_seed(0), {ctor}.to({_TORCH_DT[dtype]}))[1]"
        return f"jaxloss.from_torch(m := {ctor})", "m"

    return expr


_CLASSES = [
    "L1Loss", "MSELoss", "HuberLoss", "SmoothL1Loss", "PoissonNLLLoss", "GaussianNLLLoss", "NLLLoss", "NLLLoss2d",
    "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "KLDivLoss",
    "MultiLabelMarginLoss", "MultiMarginLoss", "MarginRankingLoss", "HingeEmbeddingLoss", "CosineEmbeddingLoss",
    "TripletMarginLoss", "TripletMarginWithDistanceLoss", "CTCLoss", "LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss",
]


def _register(name: str) -> None:
    dtypes = ("float64", "float32") if name in ("CTCLoss", "LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss") else ALL_DTYPES
    opts0 = _options(name, np.random.default_rng(0))
    params = tuple(k for k in opts0 if k != "args") + ("forward",)

    def build(s: dict[str, Any]) -> Case:
        rng = rng_for(s, name)
        opts = _options(name, rng_for(s, name + "/options"))
        args, names, grad = _inputs(name, rng)
        return Case(
            f"nn.{name}",
            "",
            args,
            {},
            names,
            grad=grad,
            dtypes=dtypes if s["dtypes"] == "all" else ("float64",),
            hvp=name not in ("LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss"),
            make=_maker(name, opts),
            make_expr=_make_expr(name, opts),
            covers=tuple(k for k in opts if k != "args") + ("forward",),
            note=f"torch.nn.{name} converted with jaxloss.from_torch",
        )

    loss(
        f"nn.{name}",
        "modules",
        params,
        {"dtypes": "high", "seed": 0},
        [{"dtypes": ("float64", "float32"), "id": "from_torch"}],
        {"seed": [0, 1, 2, 3]},
        torch_name=f"torch.nn.{name}",
    )(build)


if hasattr(jaxloss, "from_torch"):
    # every class, with or without flax: a case that cannot run is an error naming the missing
    # module in the report, never a case left out of the count
    for _name in _CLASSES:
        _register(_name)
