"""segmentation_models_pytorch's losses (:mod:`jaxloss.smp`) against smp 0.6.0's own loss code.

The torch side is ``smp.losses.<Class>(**options)(y_pred, y_true)``, smp's code loaded by
:mod:`jaxloss.parity.smp_reference` (installed, else from its wheel, fetched once). When it cannot
be had, no smp case is registered and the section is listed in :data:`jaxloss.parity.cases.SKIPPED`
with the reason and the command that fixes it (the grid prints it as SKIPPED).

Data: ``(2, C, 5, 6)`` logits (``C = 3``, 1 for ``'binary'``), ``'3d'``: ``(2, C, 3, 4, 2)``;
values ``normal`` (N(0, 1.5)), ``extreme`` (x40: saturated sigmoids / softmaxes), ``ties``
(logits on a 0.5 lattice); targets ``hard`` (0-1 / class indices), ``soft`` (U(0, 1)), ``empty``
(no foreground), ``full`` (all foreground), ``oneclass`` (every label 1); ``ignore``: a fifth of
the pixels labelled 255 (``ignore_index=255``). ``opts`` are the loss's options, passed to
jaxloss as keywords and to smp's constructor; ``traced``: that option goes to jaxloss as a 0-d
array (traced inside jit) and to smp as a 0-d tensor.

Documented deviations (judged against the float64 truth, :class:`~jaxloss.parity.cases.TorchInexact`):
smp's Lovasz loss raises for float64 input (``torch.dot`` of float64 errors and float32 weights) and,
in the multiclass mode, for float16 / bfloat16 too: the float64 truth is smp's own code run with
its ``.float()`` casts in float64 (:func:`~jaxloss.parity.smp_reference.lovasz_float64`).
The hinge's fuzz cases with random (not ``distinct``) logits or soft labels run in float64 and
float32 only: half-precision rounding ties errors, and smp sums soft labels in half precision.
smp's ``TverskyLoss`` with ``gamma < 1`` and no target pixel in any class (binary / multilabel
``empty``): gradient NaN in smp (``0 * inf``), 0 in jaxloss, the true one (the loss is 0 for every
``y_pred``): judged against smp with ``gamma=1`` (:func:`~jaxloss.parity.smp_reference.tversky_gamma_one`).
``SoftBCEWithLogitsLoss`` with ``smooth_factor`` smooths the target in its own dtype (rounded in
half precision); the float64 reference of a case receives that rounding
(:func:`~jaxloss.parity.smp_reference.soft_bce_target_in`, ``Case.reference_in``); so does
``SoftCrossEntropyLoss``'s traced ``smooth_factor`` (``1 - eps``, ``eps / C`` rounded in its dtype:
:func:`~jaxloss.parity.smp_reference.soft_ce_coefficients_in`).
``SoftCrossEntropyLoss``'s default ``smooth_factor=None`` raises in smp (``None / C``); jaxloss
reads it as no smoothing, compared with smp's ``smooth_factor=0`` (a note on the case).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxloss.parity import smp_reference
from jaxloss.parity.cases import ALL_DTYPES, SKIPPED, Case, Invalid, TorchInexact, loss, rng_for

IGNORE = 255
SHAPES = {"2d": (5, 6), "3d": (3, 4, 2)}
_SCALE = {"normal": 1.5, "extreme": 40.0, "ties": 1.5, "distinct": 1.0}
F64_F32 = ("float64", "float32")

_DEF: dict[str, Any] = {"mode": "multiclass", "shape": "2d", "values": "normal", "target": "hard", "ignore": False,
                        "opts": {}, "traced": "", "seed": 0}
_SPACE: dict[str, list[Any]] = {
    "mode": ["multiclass", "binary", "multilabel"],
    "shape": list(SHAPES),
    "values": ["normal", "extreme", "ties", "distinct"],
    "target": ["hard", "soft", "empty", "full", "oneclass"],
    "ignore": [False, True],
    "seed": [0, 1, 2, 3],
}


def _logits(s: dict[str, Any], n_classes: int) -> np.ndarray:
    rng, shape = rng_for(s, "logits"), (2, n_classes, *SHAPES[s["shape"]])
    if s["values"] == "distinct":  # distinct |x| = k / 64, k <= 255: exact in every dtype, so no two
        size = int(np.prod(shape))  # hinge errors 1 -+ x tie after rounding to half precision
        if size > 255:
            raise Invalid("distinct logits: at most 255 values")
        k = rng.choice(np.arange(1, 256), size=size, replace=False)
        return (k * rng.choice([-1.0, 1.0], size=size) / 64.0).reshape(shape)
    x = rng.normal(size=shape) * _SCALE[s["values"]]
    return np.round(x * 2) / 2 if s["values"] == "ties" else x


def _target(s: dict[str, Any], n_classes: int) -> np.ndarray:
    """The target of a mode: ``(N, *)`` 0-1 (binary) or class indices, ``(N, C, *)`` 0-1 (multilabel)."""
    rng, mode, kind = rng_for(s, "target"), s["mode"], s["target"]
    spatial = SHAPES[s["shape"]]
    shape = (2, *spatial) if mode != "multilabel" else (2, n_classes, *spatial)
    high = n_classes if mode == "multiclass" else 2
    if kind == "soft":
        if mode == "multiclass":
            raise Invalid("multiclass targets are class indices")
        t = rng.uniform(size=shape)
    else:
        fill = {"empty": 0, "full": high - 1, "oneclass": 1}.get(kind)
        t = rng.integers(0, high, size=shape) if fill is None else np.full(shape, fill, dtype=np.int64)
    if s["ignore"]:
        t = np.where(rng.uniform(size=shape) < 0.2, IGNORE, t)
    return t


def _case(name: str, cls: str, s: dict[str, Any], *, probabilities: bool = False, with_mode: bool = True,
          n_classes: int | None = None, mode_free_binary: bool = False) -> Case:  # fmt: skip
    """A case of ``jaxloss.smp.<name>`` against ``smp.losses.<cls>``."""
    import jaxloss.smp

    mode = s["mode"]
    c = n_classes or (1 if mode == "binary" else 3)
    x, t = _logits(s, c), _target(s, c)
    if probabilities:  # from_logits=False: probabilities in, as smp expects
        x = np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True) \
            if mode == "multiclass" else 1 / (1 + np.exp(-x))
    kw: dict[str, Any] = dict(s["opts"])
    if with_mode:
        kw["mode"] = mode
    if s["ignore"]:
        kw["ignore_index"] = IGNORE
    if s["traced"]:
        if s["traced"] not in kw:
            raise Invalid(f"traced={s['traced']!r} names no option of {kw}")
        kw[s["traced"]] = np.asarray(kw[s["traced"]], dtype=np.float64)  # a 0-d array: traced in JAX
    grad = ("y_pred", "y_true") if s["target"] == "soft" else ("y_pred",)
    return Case(f"smp.{name}", "", (x, t), kw, ("y_pred", "y_true"), grad=grad,
                jax_fn=getattr(jaxloss.smp, name), torch_fn=smp_reference.module_call(cls),
                jax_expr=f"jaxloss.smp.{name}", torch_expr=f"smp_reference.module_call({cls!r})")


def fuzz_space(grid: list[dict[str, Any]], defaults: dict[str, Any], drop: dict[str, tuple[Any, ...]] | None = None,
               ) -> dict[str, list[Any]]:
    """A loss's fuzzing space: the data choices of :data:`_SPACE`, and its option sets: no options
    first (the simplest), then each ``opts`` of its grid (``traced``: each option the grid traces,
    drawn with any option set that has it), and its own spec keys (``weights``) with their grid values."""
    opts = list({repr(o): o for o in [{}, *(g["opts"] for g in grid if "opts" in g)]}.values())
    own = {k: list(dict.fromkeys([v, *(g[k] for g in grid if k in g)])) for k, v in defaults.items() if k not in _DEF}
    data = {k: [v for v in choices if v not in (drop or {}).get(k, ())] for k, choices in _SPACE.items()}
    return {**data, "opts": opts, "traced": list(dict.fromkeys(["", *(g.get("traced", "") for g in grid)])), **own}


def _register(name: str, cls: str, params: tuple[str, ...], grid: list[dict[str, Any]],
              build: Any, defaults: dict[str, Any] | None = None,
              drop: dict[str, tuple[Any, ...]] | None = None) -> None:  # fmt: skip
    """Register ``smp.<name>``; ``drop``: data choices its cases cannot take (the fuzzer's space)."""
    loss(f"smp.{name}", "smp", params, {**_DEF, **(defaults or {})}, grid, fuzz_space(grid, defaults or {}, drop),
         torch_name=f"smp.losses.{cls}")(build)


# --------------------------------------------------------------------------- Dice / Jaccard / Tversky
_REGION_PARAMS = ("y_pred", "y_true", "mode", "classes", "log_loss", "from_logits", "smooth", "ignore_index", "eps",
                  "class_weights")
# Dice, Jaccard and Tversky share one core (jaxloss.smp.region): Dice runs the full grid, the
# other two the modes and the options of their own (tests/test_smp.py sweeps all three alike).
_REGION_CORE: list[dict[str, Any]] = [
    {"mode": "multiclass", "dtypes": ALL_DTYPES},
    {"mode": "binary", "ignore": True, "dtypes": F64_F32},
    {"mode": "multilabel", "target": "soft"},
    {"opts": {"log_loss": True, "smooth": 0.5}, "traced": "smooth", "ignore": True},
    {"opts": {"classes": [0, 2], "class_weights": [1.0, 2.0, 0.5], "from_logits": False, "eps": 1e-3}},
]
_REGION_GRID: list[dict[str, Any]] = _REGION_CORE + [
    {"mode": "binary", "dtypes": ("float32", "bfloat16")},
    {"mode": "multilabel", "values": "extreme", "dtypes": ("float64", "float16")},
    {"mode": "binary", "target": "empty"},
    {"mode": "multilabel", "target": "full", "ignore": True},
    {"target": "oneclass", "shape": "3d"},
    {"opts": {"from_logits": False}, "mode": "multilabel"},
    {"opts": {"classes": [1]}, "dtypes": ("float16",)},
]


_EMPTY_GAMMA = ("no target pixel in any class and gamma < 1: the loss is 0 for every y_pred, so its gradient is 0 "
                "(jaxloss); smp's is NaN (pow's infinite slope at 0 times the empty-class mask's 0): judged "
                "against smp's TverskyLoss with gamma=1, the same 0 exactly")


def _region(name: str, cls: str) -> Any:
    def build(s: dict[str, Any]) -> Case:
        case = _case(name, cls, s, probabilities=s["opts"].get("from_logits") is False)
        if s["target"] == "empty" and s["mode"] != "multiclass" and float(s["opts"].get("gamma", 1.0)) < 1:
            case.torch_inexact = TorchInexact(_EMPTY_GAMMA, ALL_DTYPES, smp_reference.tversky_gamma_one(),
                                              "smp_reference.tversky_gamma_one()")
        return case

    return build


# --------------------------------------------------------------------------- Focal
_FOCAL_PARAMS = ("y_pred", "y_true", "mode", "alpha", "gamma", "ignore_index", "from_logits", "eps", "reduction",
                 "normalized", "reduced_threshold", "class_weights")
_FOCAL_GRID: list[dict[str, Any]] = [
    {"mode": "multiclass", "ignore": True, "dtypes": ALL_DTYPES},
    {"mode": "binary", "dtypes": ALL_DTYPES},
    {"mode": "multilabel", "values": "extreme", "dtypes": F64_F32},
    {"opts": {"alpha": 0.25, "gamma": 1.5, "reduction": "none"}, "mode": "binary", "ignore": True},
    {"opts": {"gamma": 3.0, "reduction": "sum"}, "traced": "gamma"},
    {"opts": {"reduced_threshold": 0.5, "reduction": "sum"}},
    {"opts": {"normalized": True, "reduction": "batchwise_mean"}, "mode": "multilabel", "target": "soft"},
    {"opts": {"from_logits": False, "eps": 1e-4, "class_weights": [1.0, 2.0, 0.5]}, "dtypes": ("float64", "bfloat16")},
    {"ignore": True, "mode": "multilabel", "id": "multilabel+ignore_index raises in smp and jaxloss"},
]


def _focal(s: dict[str, Any]) -> Case:
    case = _case("focal_loss", "FocalLoss", s, probabilities=s["opts"].get("from_logits") is False)
    if s["mode"] == "binary" and s["ignore"] and s["opts"].get("reduction") == "none":
        case.torch_fn = smp_reference.every_element(case.torch_fn)
        case.torch_expr = f"smp_reference.every_element({case.torch_expr})"
        case.note = "jaxloss returns every element, 0 where ignored; smp only the kept ones"
    return case


# --------------------------------------------------------------------------- Lovasz
_LOVASZ_PARAMS = ("y_pred", "y_true", "mode", "per_image", "ignore_index", "from_logits")
_LOVASZ_GRID: list[dict[str, Any]] = [
    {"mode": "binary", "dtypes": ALL_DTYPES},
    {"mode": "multilabel", "ignore": True, "opts": {"per_image": True}},
    {"mode": "multiclass", "values": "normal", "dtypes": ALL_DTYPES},
    {"mode": "multiclass", "values": "normal", "ignore": True, "opts": {"per_image": True}, "dtypes": F64_F32},
    {"mode": "multiclass", "values": "extreme", "target": "oneclass", "shape": "3d"},
    {"mode": "binary", "values": "extreme", "target": "empty", "opts": {"from_logits": False}},
    {"mode": "binary", "values": "ties", "dtypes": ("float32",)},
]
_LOVASZ_F64 = ("smp's LovaszLoss raises here (torch.dot of {} errors with its float32 Lovasz weights): judged "
               "against smp's own code run with its .float() casts in float64")


def _lovasz(s: dict[str, Any]) -> Case:
    import jaxloss.smp

    case = _case("lovasz_loss", "LovaszLoss", s)
    raising = ("float64",) if s["mode"] != "multiclass" else ("float64", "float16", "bfloat16")
    kinds = "float64" if s["mode"] != "multiclass" else "float64 / half-precision"
    case.torch_inexact = TorchInexact(_LOVASZ_F64.format(kinds), raising, smp_reference.lovasz_float64(),
                                      "smp_reference.lovasz_float64()")
    # where smp raises, its torch side is its own code run in float64 and rounded to the dtype
    case.make = lambda dtype: (jaxloss.smp.lovasz_loss, smp_reference.lovasz_float64(cast_back=True)
                               if dtype in raising else smp_reference.module_call("LovaszLoss"))
    case.make_expr = lambda dtype: ("jaxloss.smp.lovasz_loss", "smp_reference.lovasz_float64(cast_back=True)"
                                    if dtype in raising else case.torch_expr)
    if s["values"] == "ties":  # the value does not depend on the order of tied errors; the gradient does
        case.grad = ()
        case.note = "ties: value only (the gradient at a tie depends on the sort order)"
    elif s["mode"] != "multiclass" and (s["values"] != "distinct" or s["target"] == "soft"):
        # rounding random logits to half precision ties some hinge errors (see "ties" above); with
        # soft labels smp sums them in half precision (its G is rounded, the weights move ~1e-4)
        case.fuzz_dtypes = F64_F32
    return case


# --------------------------------------------------------------------------- soft BCE / CE, MCC
_SBCE_PARAMS = ("y_pred", "y_true", "weight", "ignore_index", "reduction", "smooth_factor", "pos_weight")
_SBCE_GRID: list[dict[str, Any]] = [
    {"opts": {"smooth_factor": 0.1}, "dtypes": ALL_DTYPES},
    {"opts": {"reduction": "none"}, "values": "extreme", "dtypes": F64_F32},
    {"opts": {"reduction": "sum", "smooth_factor": 0.3}, "traced": "smooth_factor", "weights": True},
    {"opts": {"ignore_index": None}, "target": "soft"},
]


def _sbce(s: dict[str, Any]) -> Case:
    opts = dict(s["opts"])
    ignore_index = opts.pop("ignore_index", IGNORE)
    case = _case("soft_bce_with_logits_loss", "SoftBCEWithLogitsLoss",
                 {**s, "mode": "multilabel", "opts": opts, "ignore": False}, with_mode=False)
    x, t = case.args
    if s["target"] != "soft":
        t = np.where(rng_for(s, "ignore").uniform(size=t.shape) < 0.2, IGNORE, t).astype(np.float64)
    case.args = (x, t)
    case.kwargs["ignore_index"] = ignore_index
    if s.get("weights"):
        rng = rng_for(s, "weights")
        case.kwargs["weight"] = rng.uniform(0.5, 2.0, size=x.shape[1:])
        case.kwargs["pos_weight"] = rng.uniform(0.5, 2.0, size=x.shape[1:])
    case.grad = ("y_pred",)
    if opts.get("smooth_factor") is not None:  # smp smooths in the target's dtype: the truth of that rounding
        case.reference_in = lambda dtype: (smp_reference.soft_bce_target_in(dtype),
                                           f"smp_reference.soft_bce_target_in({dtype!r})")
    return case


_SCE_PARAMS = ("y_pred", "y_true", "reduction", "smooth_factor", "ignore_index", "dim")
_SCE_GRID: list[dict[str, Any]] = [
    {"opts": {"smooth_factor": 0.1}, "ignore": True, "dtypes": ALL_DTYPES},
    {"opts": {"smooth_factor": 0.2, "reduction": "none"}, "values": "extreme", "dtypes": F64_F32},
    {"opts": {"smooth_factor": 0.4, "reduction": "sum", "dim": 1}, "traced": "smooth_factor", "shape": "3d"},
    {"opts": {"smooth_factor": 0.1, "reduction": "none", "ignore_index": None}},
    {"opts": {}, "ignore": True, "id": "smooth_factor=None (smp raises)"},
]


def _sce(s: dict[str, Any]) -> Case:
    case = _case("soft_cross_entropy_loss", "SoftCrossEntropyLoss", {**s, "mode": "multiclass", "ignore": False},
                 with_mode=False)
    if s["ignore"]:
        x, t = case.args
        case.args = (x, np.where(rng_for(s, "ignore").uniform(size=t.shape) < 0.2, IGNORE, t))
        case.kwargs["ignore_index"] = IGNORE
    if "smooth_factor" not in s["opts"]:  # smp's default None raises TypeError (None / C)
        case.torch_fn = smp_reference.module_call("SoftCrossEntropyLoss", smooth_factor=0.0)
        case.torch_expr = "smp_reference.module_call('SoftCrossEntropyLoss', smooth_factor=0.0)"
        case.note = "smp's default smooth_factor=None raises (None / C); jaxloss reads it as 0, compared with smp's 0"
    if s["traced"] == "smooth_factor":  # smp rounds 1 - eps and eps / C in the array's dtype: the truth of that
        case.reference_in = lambda dtype: (smp_reference.soft_ce_coefficients_in(dtype),
                                           f"smp_reference.soft_ce_coefficients_in({dtype!r})")
    return case


_MCC_PARAMS = ("y_pred", "y_true", "eps")
_MCC_GRID: list[dict[str, Any]] = [
    {"target": "soft", "dtypes": ALL_DTYPES},
    {"opts": {"eps": 1e-2}, "traced": "eps", "shape": "3d"},
    {"target": "empty", "dtypes": F64_F32},
    {"target": "full", "opts": {"eps": 1e-3}},
]


def _mcc(s: dict[str, Any]) -> Case:
    case = _case("mcc_loss", "MCCLoss", {**s, "mode": "binary"}, probabilities=True, with_mode=False)
    return case


# --------------------------------------------------------------------------- registration
def _register_all() -> None:
    for name, cls in (("dice_loss", "DiceLoss"), ("jaccard_loss", "JaccardLoss")):
        _register(name, cls, _REGION_PARAMS, _REGION_GRID if name == "dice_loss" else _REGION_CORE,
                  _region(name, cls))
    tversky_grid = _REGION_CORE + [
        {"opts": {"alpha": 0.3, "beta": 0.7, "gamma": 2.0}, "mode": "binary", "dtypes": F64_F32},
        {"opts": {"alpha": 0.7, "beta": 0.3, "gamma": 0.5}, "traced": "gamma", "mode": "multilabel"},
    ]
    _register("tversky_loss", "TverskyLoss", (*_REGION_PARAMS[:-1], "alpha", "beta", "gamma", "class_weights"),
              tversky_grid, _region("tversky_loss", "TverskyLoss"))
    _register("focal_loss", "FocalLoss", _FOCAL_PARAMS, _FOCAL_GRID, _focal)
    _register("lovasz_loss", "LovaszLoss", _LOVASZ_PARAMS, _LOVASZ_GRID, _lovasz,
              {"mode": "binary", "values": "distinct"})
    _register("soft_bce_with_logits_loss", "SoftBCEWithLogitsLoss", _SBCE_PARAMS, _SBCE_GRID, _sbce,
              {"weights": False})
    _register("soft_cross_entropy_loss", "SoftCrossEntropyLoss", _SCE_PARAMS, _SCE_GRID, _sce,
              drop={"target": ("soft",)})  # class indices only
    _register("mcc_loss", "MCCLoss", _MCC_PARAMS, _MCC_GRID, _mcc)


_UNAVAILABLE = smp_reference.available()
if _UNAVAILABLE is None:
    _register_all()
else:
    SKIPPED["smp"] = _UNAVAILABLE
