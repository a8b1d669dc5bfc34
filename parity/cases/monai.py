"""MONAI's segmentation losses (``jaxloss.monai``) against the real ``monai.losses`` classes.

Each loss is registered as ``monai.<function>`` (e.g. ``monai.dice_loss``; run one with
``python -m jaxloss.parity --loss monai.dice_loss``). The torch side constructs the MONAI
class with the case's options and calls it (``monai.losses.DiceLoss(**options)(input,
target)``); the JAX side is ``jaxloss.monai.<function>(input, target, **options)``.

Data (``data`` in a spec): logits ``(2, 3, 5, 6)`` with a ``(2, 1, 5, 6)`` int64 label map
(``labels``, used with ``to_onehot_y``), its one-hot float target (``onehot``), soft labels
(``soft``), one channel with a binary target (``binary``), a 3-D volume ``(1, 2, 4, 4, 3)``
(``volume``), saturating logits x500 (``extreme``), all-background labels (``background``:
empty foreground classes, the generalised Dice's infinite-weight path), the ``-1`` sentinel
label (``sentinel``, with ``ignore_index=-1``) and probabilities without activation
(``probs``). A Dice-type case with no activation (``sigmoid``, ``softmax``, ``other_act`` all
off) receives its logits through a sigmoid, predictions in (0, 1) as the losses expect them
(:func:`_no_activation` says why). ``layout='last'`` moves the channels last and passes ``axis=-1``.

Precision: the focal losses compute in float32 whatever the input (MONAI's ``input.float()``),
so their cases run float32 and the half dtypes (a float64 input would only be rounded to
float32 on both sides), and the fuzzer draws those three only (``Case.fuzz_dtypes``).
Second order (float64, core entries): MONAI's Dice-type losses support
double backward; the soft skeleton's max-pooling gradients are compared to first order only.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, loss, rng_for

_FOCAL_DTYPES = ("float32", "bfloat16", "float16")
_LABEL_DATA = ("labels", "volume", "extreme", "background", "sentinel")


def _jaxloss(name: str, other_act: str | None, *args: Any, **options: Any) -> Any:
    import warnings

    import jax.numpy as jnp

    import jaxloss.monai

    if other_act is not None:
        options["other_act"] = getattr(jnp, other_act)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(jaxloss.monai, name)(*args, **options)


@functools.cache
def _jax_side(name: str, other_act: str | None) -> Any:
    """The JAX side of every case of one loss (and activation): one object, so that the engine's
    program cache (keyed by the function's identity) shares a compiled program between cases
    that differ only in their data (e.g. labels, extreme logits, empty foreground)."""
    return functools.partial(_jaxloss, name, other_act)


def _data(s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rng = rng_for(s, "monai")
    kind = s["data"]
    shape = (1, 2, 4, 4, 3) if kind == "volume" else (2, 1, 6, 7) if kind == "binary" else (2, 3, 5, 6)
    x = rng.normal(size=shape) * (500.0 if kind == "extreme" else 2.0)
    c = shape[1]
    labels = rng.integers(0, c, size=(shape[0], 1, *shape[2:]))
    if kind == "background":
        labels = np.zeros_like(labels)
    if kind == "sentinel":
        labels = np.where(rng.uniform(size=labels.shape) < 0.25, -1, labels)
    if kind in _LABEL_DATA:
        return x, labels
    if kind == "binary":
        return x, (rng.uniform(size=shape) > 0.5).astype(np.float64)
    onehot = np.moveaxis(np.eye(c)[labels[:, 0]], -1, 1)
    if kind == "soft":
        return x, rng.uniform(size=shape)
    if kind == "probs":
        return rng.uniform(size=shape), onehot
    return x, onehot


def _no_activation(x: np.ndarray) -> np.ndarray:
    """The input of a Dice-type loss without activation: the logits through a sigmoid, predictions in
    (0, 1) as the loss expects them. Raw logits there make ``sum(input) + sum(target) + smooth_dr``
    cancel towards 0 (e.g. -0.56 from terms of size 2): the gradient ``smooth / den**2`` then
    multiplies the float32 summation error by ``2 sum|x| / |den|`` (~100), and torch's and XLA's
    summation orders, each ~30 float32 ULP from float64, differ by more than float32's tolerance
    (fuzz seed 7, ``soft_dicecl_dice_loss``): ill-conditioned data, not a difference of the losses."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the sigmoid, without exp's overflow at the x500 logits


def _builder(name: str, cls_name: str, defaults: dict[str, Any], focal: bool = False, hvp: bool = True) -> Any:
    def build(s: dict[str, Any]) -> Case:
        from jaxloss.parity import references  # torch: imported when a case is built

        x, y = _data(s)
        if "sigmoid" in defaults and not (s["sigmoid"] or s["softmax"] or s.get("other_act")) and s["data"] != "probs":
            x = _no_activation(x)
        if (s["data"] in _LABEL_DATA) != bool(s.get("to_onehot_y")):
            raise Invalid("a label map goes with to_onehot_y=True, a one-hot target without")
        if s["data"] == "sentinel" and s.get("ignore_index") != -1:  # -1 is a bad label without it (NaN vs
            raise Invalid("the -1 sentinel labels go with ignore_index=-1")  # MONAI's error: tests/test_monai.py)
        options = {k: s[k] for k in defaults if s[k] != defaults[k] and k != "other_act"}
        if "weight" in options:
            n = x.shape[1] - (0 if s.get("include_background", True) or x.shape[1] == 1 else 1)
            if name == "dice_ce_loss":
                n = x.shape[1]
            options["weight"] = rng_for(s, "weight").uniform(0.5, 2.0, size=(n,))
        act = s.get("other_act")
        jax_fn = _jax_side(name, act)
        torch_fn = references.monai_loss(cls_name, act)
        jax_expr = f"functools.partial(jaxloss.monai.{name}, other_act=jax.numpy.{act})" if act else f"jaxloss.monai.{name}"
        torch_expr = f"jaxloss.parity.references.monai_loss({cls_name!r}{f', {act!r}' if act else ''})"
        args: tuple[Any, ...] = (x, y)
        if name == "masked_dice_loss":  # a region mask (B, 1, *spatial)
            args = (x, y, (rng_for(s, "mask").uniform(size=(x.shape[0], 1, *x.shape[2:])) > 0.4).astype(np.float64))
        if s.get("layout") == "last":
            args = tuple(np.moveaxis(a, 1, -1) for a in args)
            options["axis"] = -1
            torch_fn = references.channels_first(torch_fn)
            torch_expr = f"jaxloss.parity.references.channels_first({torch_expr})"
        covers = ("other_act",) if act is not None else ()
        return Case(
            f"monai.{name}",
            "",
            args,
            options,
            ("input", "target", "mask") if name == "masked_dice_loss" else ("input", "target"),
            grad=("input",),
            dtypes=_FOCAL_DTYPES[:1] if focal else ("float64",),
            hvp=hvp,
            jax_fn=jax_fn,
            torch_fn=torch_fn,
            jax_expr=jax_expr,
            torch_expr=torch_expr,
            covers=covers + (("axis",) if s.get("layout") == "last" else ()),
        )

    def build_limited(s: dict[str, Any]) -> Case:
        case = build(s)
        if focal:  # MONAI computes the focal term in float32 whatever the input: a float64 case would be
            case.fuzz_dtypes = _FOCAL_DTYPES  # a float32 computation judged at float64's tolerance
        return case

    return build_limited


def fuzz_space(defaults: dict[str, Any], grid: list[dict[str, Any]], space: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The fuzzing space of a loss: ``space``'s choices, and for every other option (and ``data``,
    ``layout``) its default first, then each value the grid gives it: the fuzzer draws every
    option the grid covers, in combinations the grid does not."""
    out: dict[str, list[Any]] = {}
    for key, default in defaults.items():
        if key == "seed":
            continue
        values = [default, *(g[key] for g in grid if key in g)]
        out[key] = list(dict.fromkeys(values))  # unique, the default (the simplest) first
    return {**out, **space, "seed": [0, 1, 2]}


def _register(name: str, cls_name: str, defaults: dict[str, Any], grid: list[dict[str, Any]],
              space: dict[str, list[Any]], focal: bool = False, hvp: bool = True) -> None:
    spec_defaults = {"data": "onehot", "layout": "first", "seed": 0, **defaults}
    params = ("input", "target", *(("mask",) if name == "masked_dice_loss" else ()), *defaults, "axis")
    data = {"data": list(dict.fromkeys(["onehot", "labels", "soft", "volume", "extreme", "background",
                                        *(g["data"] for g in grid if "data" in g)])), "layout": ["first", "last"]}
    loss(f"monai.{name}", "monai", params, spec_defaults, grid, fuzz_space(spec_defaults, grid, {**data, **space}),
         torch_name=f"monai.losses.{cls_name}")(_builder(name, cls_name, defaults, focal, hvp))


_ACT = {"sigmoid": False, "softmax": False, "other_act": None}
_SMOOTH = {"smooth_nr": 1e-5, "smooth_dr": 1e-5}
_DICE = {"include_background": True, "to_onehot_y": False, **_ACT, "squared_pred": False, "jaccard": False,
         "reduction": "mean", **_SMOOTH, "batch": False, "weight": None, "soft_label": False, "ignore_index": None}
_SPACE_COMMON = {"include_background": [True, False], "reduction": ["mean", "sum", "none"], "batch": [False, True]}
_HALF = {"dtypes": ALL_DTYPES}

_register("dice_loss", "DiceLoss", _DICE, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, **_HALF},
    {"sigmoid": True, "include_background": False, "reduction": "none", **_HALF},
    {"sigmoid": True, "squared_pred": True, "jaccard": True, "batch": True, "reduction": "sum"},
    {"data": "soft", "sigmoid": True, "soft_label": True, "reduction": "none"},
    {"softmax": True, "weight": "yes", "include_background": False, "smooth_nr": 0.0, "smooth_dr": 1e-3},
    {"data": "sentinel", "to_onehot_y": True, "softmax": True, "ignore_index": -1},
    {"other_act": "tanh"},
    {"data": "volume", "to_onehot_y": True, "softmax": True, "layout": "last", "reduction": "none"},
    {"data": "extreme", "to_onehot_y": True, "softmax": True, "dtypes": ("float64", "float32")},
    {"data": "background", "to_onehot_y": True, "softmax": True},
], {**_SPACE_COMMON, "softmax": [False, True], "sigmoid": [False, True], "to_onehot_y": [False, True],
    "squared_pred": [False, True], "jaccard": [False, True], "soft_label": [False, True]})

_register("masked_dice_loss", "MaskedDiceLoss", {k: v for k, v in _DICE.items() if k != "ignore_index"}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, **_HALF},
    {"sigmoid": True, "reduction": "none", "batch": True, "weight": "yes", "jaccard": True},
    {"data": "soft", "other_act": "tanh", "soft_label": True, "squared_pred": True, "include_background": False,
     "smooth_nr": 0.0, "smooth_dr": 1e-3, "reduction": "sum", "layout": "last"},
], {**_SPACE_COMMON, "sigmoid": [False, True]})

_register("generalized_dice_loss", "GeneralizedDiceLoss",
          {"include_background": True, "to_onehot_y": False, **_ACT, "w_type": "square", "reduction": "mean",
           **_SMOOTH, "batch": False, "soft_label": False}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, **_HALF},
    {"data": "labels", "to_onehot_y": True, "softmax": True, "w_type": "simple", "batch": True, "reduction": "none"},
    {"sigmoid": True, "w_type": "uniform", "reduction": "sum", "include_background": False},
    {"data": "background", "to_onehot_y": True, "softmax": True, "include_background": False},
    {"data": "soft", "other_act": "tanh", "soft_label": True, "smooth_nr": 0.0, "smooth_dr": 1e-3, "layout": "last"},
], {**_SPACE_COMMON, "w_type": ["square", "simple", "uniform"], "softmax": [False, True]})

_register("tversky_loss", "TverskyLoss",
          {"include_background": True, "to_onehot_y": False, **_ACT, "alpha": 0.5, "beta": 0.5, "reduction": "mean",
           **_SMOOTH, "batch": False, "soft_label": False, "ignore_index": None}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, "alpha": 0.3, "beta": 0.7, **_HALF},
    {"sigmoid": True, "soft_label": True, "batch": True, "ignore_index": 0, "reduction": "none"},
    {"data": "volume", "to_onehot_y": True, "sigmoid": True, "include_background": False, "reduction": "sum",
     "layout": "last", "smooth_nr": 0.0, "smooth_dr": 1e-3},
    {"other_act": "tanh", "alpha": 0.0, "beta": 1.0},
], {**_SPACE_COMMON, "alpha": [0.5, 0.3, 0.7], "beta": [0.5, 0.7, 0.3]})

_FOCAL = {"include_background": True, "to_onehot_y": False, "gamma": 2.0, "alpha": None, "weight": None,
          "reduction": "mean", "use_softmax": False, "ignore_index": None}
_register("focal_loss", "FocalLoss", _FOCAL, [
    {"data": "labels", "to_onehot_y": True, "dtypes": _FOCAL_DTYPES},
    {"data": "labels", "to_onehot_y": True, "use_softmax": True, "alpha": 0.25, "reduction": "sum",
     "dtypes": _FOCAL_DTYPES},
    {"weight": "yes", "gamma": 1.5, "reduction": "none", "layout": "last"},
    {"data": "labels", "to_onehot_y": True, "ignore_index": 1, "include_background": False, "reduction": "sum"},
    {"data": "sentinel", "to_onehot_y": True, "ignore_index": -1, "alpha": 0.3, "gamma": 0.5},
    {"data": "extreme", "to_onehot_y": True, "use_softmax": True, "gamma": 0.0},
], {**_SPACE_COMMON, "use_softmax": [False, True], "gamma": [2.0, 0.0, 1.5], "alpha": [None, 0.25]},
    focal=True)

_register("dice_ce_loss", "DiceCELoss",
          {"include_background": True, "to_onehot_y": False, **_ACT, "squared_pred": False, "jaccard": False,
           "reduction": "mean", **_SMOOTH, "batch": False, "weight": None, "lambda_dice": 1.0, "lambda_ce": 1.0,
           "label_smoothing": 0.0}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, **_HALF},
    {"data": "labels", "to_onehot_y": True, "softmax": True, "weight": "yes", "include_background": False,
     "label_smoothing": 0.1, "lambda_ce": 0.5, "lambda_dice": 2.0, "reduction": "sum"},
    {"softmax": True, "weight": "yes", "jaccard": True, "squared_pred": True, "layout": "last"},
    {"data": "binary", "sigmoid": True, "batch": True, "smooth_nr": 0.0, "smooth_dr": 1e-3},
    {"data": "extreme", "to_onehot_y": True, "other_act": "tanh"},
], {"include_background": [True, False], "reduction": ["mean", "sum"], "label_smoothing": [0.0, 0.1]})

_register("dice_focal_loss", "DiceFocalLoss",
          {"include_background": True, "to_onehot_y": False, **_ACT, "squared_pred": False, "jaccard": False,
           "reduction": "mean", **_SMOOTH, "batch": False, "gamma": 2.0, "weight": None, "lambda_dice": 1.0,
           "lambda_focal": 1.0, "alpha": None}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, "gamma": 1.5, "alpha": 0.3, "dtypes": _FOCAL_DTYPES},
    {"sigmoid": True, "weight": "yes", "reduction": "none", "squared_pred": True, "jaccard": True, "batch": True,
     "lambda_dice": 0.5, "lambda_focal": 2.0, "layout": "last"},
    {"other_act": "tanh", "include_background": False, "reduction": "sum", "smooth_nr": 0.0, "smooth_dr": 1e-3},
], {**_SPACE_COMMON, "gamma": [2.0, 1.0]}, focal=True)

_register("generalized_dice_focal_loss", "GeneralizedDiceFocalLoss",
          {"include_background": True, "to_onehot_y": False, **_ACT, "w_type": "square", "reduction": "mean",
           **_SMOOTH, "batch": False, "gamma": 2.0, "weight": None, "lambda_gdl": 1.0, "lambda_focal": 1.0}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, "w_type": "simple", "weight": "yes",
     "dtypes": _FOCAL_DTYPES},
    {"sigmoid": True, "batch": True, "reduction": "none", "lambda_gdl": 2.0, "lambda_focal": 0.5, "gamma": 1.0,
     "layout": "last", "include_background": False},
    {"other_act": "tanh", "w_type": "uniform", "reduction": "sum", "smooth_nr": 0.0, "smooth_dr": 1e-3},
], {**_SPACE_COMMON, "w_type": ["square", "simple", "uniform"]}, focal=True)

_CL = {"iter_": 3, "smooth_nr": 1.0, "smooth_dr": 1.0, "smooth": 1e-4, "include_background": True,
       "to_onehot_y": False, **_ACT, "reduction": "mean"}
_register("softcl_dice_loss", "SoftclDiceLoss", _CL, [
    {"data": "binary", "sigmoid": True, **_HALF},
    {"data": "labels", "to_onehot_y": True, "softmax": True, "iter_": 2, "reduction": "none"},
    {"data": "volume", "to_onehot_y": True, "sigmoid": True, "include_background": False, "layout": "last",
     "reduction": "sum"},
    {"other_act": "tanh", "iter_": 0, "smooth_nr": 1e-3, "smooth_dr": 1e-3, "smooth": 1e-2},
], {"iter_": [3, 0, 1], "reduction": ["mean", "sum", "none"]}, hvp=False)

_register("soft_dicecl_dice_loss", "SoftDiceclDiceLoss", {"iter_": 3, "alpha": 0.5, **{k: v for k, v in _CL.items() if k != "iter_"}}, [
    {"data": "labels", "to_onehot_y": True, "softmax": True, "alpha": 0.3, **_HALF},
    {"data": "volume", "to_onehot_y": True, "sigmoid": True, "iter_": 1, "include_background": False,
     "smooth_nr": 1e-3, "smooth_dr": 1e-3, "smooth": 1e-2, "reduction": "sum", "layout": "last"},
    {"data": "binary", "other_act": "tanh", "iter_": 0, "reduction": "none"},
], {"iter_": [3, 0, 1], "alpha": [0.5, 0.0, 1.0], "reduction": ["mean", "sum"]}, hvp=False)
