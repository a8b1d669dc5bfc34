"""MONAI's sums of two losses: ``DiceCELoss``, ``DiceFocalLoss``, ``GeneralizedDiceFocalLoss``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import Number, loss_function
from jaxloss._softmax import check_weight, index_loss, prob_loss
from jaxloss.binary import _bce_with_logits_elementwise
from jaxloss.classification import _LABEL_SMOOTHING
from jaxloss.monai import _common as c
from jaxloss.monai.dice import (
    activate_work,
    check_dice_weight,
    dice_from_probs,
    fused_applies,
    fused_dice,
    generalized_dice_from_probs,
    n_scored_classes,
)
from jaxloss.monai.focal import check_focal_weight, focal_from_logits


def _channels(values: dict[str, Any]) -> int:
    values["axis"] = c.check_axis(values["input"].ndim, values["axis"])
    x, t, axis = values["input"], values["target"], values["axis"]
    c.check_target_dims(_first(x.shape, axis), _first(t.shape, axis) if t.ndim == x.ndim else tuple(t.shape))
    return x.shape[axis]


def _first(shape: Sequence[int], axis: int) -> tuple[int, ...]:
    s = list(shape)
    s.insert(1, s.pop(axis))
    return tuple(s)


# --------------------------------------------------------------------------- DiceCELoss
def _precheck_dice_ce(values: dict[str, Any]) -> None:
    n = _channels(values)
    c.warn_activation(n, values["softmax"])
    c.warn_target_options(n, values["to_onehot_y"], values["include_background"])
    w = values["weight"]
    dice_w = w[1:] if w is not None and not values["include_background"] and w.ndim == 1 else w
    check_dice_weight(dice_w, n_scored_classes(n, values["include_background"]))


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax", "squared_pred", "jaccard", "batch"),
    numbers={
        "smooth_nr": Number(),
        "smooth_dr": Number(),
        "lambda_dice": c.check_lambda("lambda_dice"),
        "lambda_ce": c.check_lambda("lambda_ce"),
        "label_smoothing": _LABEL_SMOOTHING,
    },
    arrays={"input": "float", "target": "label"},
    reductions=c.DICE_CE_REDUCTIONS,
    reduction_message=c.DICE_CE_REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=_precheck_dice_ce,
    module="DiceCELoss",
    torch="monai.losses.DiceCELoss",
)
def dice_ce_loss(
    input: Array,
    target: Array,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Array], Array] | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    reduction: str = "mean",
    smooth_nr: float | Array = 1e-5,
    smooth_dr: float | Array = 1e-5,
    batch: bool = False,
    weight: Sequence[float] | Array | None = None,
    lambda_dice: float | Array = 1.0,
    lambda_ce: float | Array = 1.0,
    label_smoothing: float | Array = 0.0,
    axis: int = 1,
) -> Array:
    r"""Dice plus cross entropy: ``monai.losses.DiceCELoss``.

    .. math:: \lambda_{dice}\,\mathrm{dice\_loss}(x, y) + \lambda_{ce}\,\mathrm{CE}(x, y)

    The Dice part is :func:`dice_loss` with the Dice options (``weight`` without its first entry
    when ``include_background=False``). The CE part sees the raw logits: ``F.cross_entropy`` with
    class indices (the ``(B, 1, ...)`` label map squeezed, truncated to integers), or with class
    probabilities when ``target`` has ``C`` channels; ``BCEWithLogits`` with
    ``pos_weight=weight`` when ``C == 1``. ``weight``, ``reduction`` and ``label_smoothing``
    are passed to it; the lambdas and smoothing values are traced.

    Args:
        input, target, include_background, to_onehot_y, sigmoid, softmax, other_act,
        squared_pred, jaccard, smooth_nr, smooth_dr, batch, axis: as :func:`dice_loss`.
        reduction: ``'mean'`` | ``'sum'`` (MONAI refuses ``'none'``).
        weight: per-class weight of both parts (``(C,)``).
        lambda_dice, lambda_ce: the trade-off, each ``>= 0``.
        label_smoothing: the CE's, in ``[0, 1]``.

    Returns:
        A scalar: the Dice dtype promoted with the CE's (the input's).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 0.0]], [[-2.0, 1.0], [0.0, 3.0]]]])  # (1, 2, 2, 2)
        >>> labels = jnp.array([[[[0, 1], [0, 1]]]])
        >>> round(float(jm.dice_ce_loss(logits, labels, to_onehot_y=True, softmax=True)), 4)
        0.3079
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    dice_w = weight[1:] if weight is not None and not include_background and weight.ndim == 1 else weight
    if fused_applies(x.shape[1], to_onehot_y=to_onehot_y, softmax=softmax, other_act=other_act, squared_pred=squared_pred):
        return _fused_dice_ce(x, y, input.dtype, include_background, jaccard, reduction, smooth_nr, smooth_dr, batch,
                              weight, dice_w, lambda_dice, lambda_ce, label_smoothing)
    p = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, None)
    dice = dice_from_probs(
        p, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=to_onehot_y, squared_pred=squared_pred,
        jaccard=jaccard, reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch,
        weight=dice_w, soft_label=False, ignore_index=None,
    )
    ce = _ce(x, y, weight, reduction, label_smoothing)
    total = lambda_dice * dice + lambda_ce * ce
    return total.astype(jnp.result_type(dice, ce))


def _fused_dice_ce(
    x: Array, y: Array, in_dtype: Any, include_background: bool, jaccard: bool, reduction: str, smooth_nr: Any,
    smooth_dr: Any, batch: bool, weight: Array | None, dice_w: Array | None, lambda_dice: Any, lambda_ce: Any,
    label_smoothing: Any,
) -> Array:
    r"""``dice_ce_loss`` with softmax logits and a label map, from :func:`softmax_dice_sums`.

    Without a class weight the cross entropy comes from the same pass, as torch computes it
    for class indices: :math:`(1 - arepsilon)\,\overline{nll} + (arepsilon / C)\,\overline{sm}`
    (means over the voxels for ``'mean'``, sums for ``'sum'``; ``arepsilon`` clamped at 0).
    Every voxel counts: a label torch's cross entropy would ignore (-100) is out of range for
    the Dice part, which makes the total NaN anyway."""
    with_ce = weight is None
    dice, ce_sums = fused_dice(x, y, in_dtype, include_background=include_background, jaccard=jaccard,
                               reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch,
                               weight=dice_w, with_ce=with_ce)
    if with_ce:
        nll, smooth = (jnp.sum(s) for s in ce_sums)
        if reduction == "mean":
            voxels = x.size // x.shape[1]
            nll, smooth = nll / voxels, smooth / voxels
        if label_smoothing is None:  # a concrete value <= 0: the registry leaves the term out
            ce = nll.astype(in_dtype)
        else:
            eps = jnp.maximum(label_smoothing, 0)
            ce = ((1 - eps) * nll + smooth * (eps / x.shape[1])).astype(in_dtype)
    else:
        ce = _ce(x, y, weight, reduction, label_smoothing)
    total = lambda_dice * dice + lambda_ce * ce
    return total.astype(jnp.result_type(dice, ce))


def _ce(x: Array, y: Array, weight: Array | None, reduction: str, label_smoothing: Any) -> Array:
    """``DiceCELoss.ce`` / ``.bce`` on channels-first logits, in torch's dtypes."""
    n, n_target = x.shape[1], y.shape[1]
    if n == 1:  # BCEWithLogitsLoss(pos_weight=weight)
        dtype = c.float_dtype(x, y)
        work = c.working(dtype)
        loss = _bce_with_logits_elementwise(x.astype(work), y.astype(work), None if weight is None else weight.astype(work))
        return c.reduce(loss, reduction).astype(dtype)
    if n_target == 1:  # class indices
        check_weight(weight, x.shape)
        labels = jnp.squeeze(y, 1)
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            labels = jnp.trunc(labels).astype(jnp.int32)  # torch's .long()
        work = c.working(x.dtype)
        w = None if weight is None else weight.astype(work)
        return index_loss(
            x.astype(work), labels, w, -100, reduction, label_smoothing, axis=1, log_softmax=True
        ).astype(x.dtype)
    check_weight(weight, x.shape, prefix="cross_entropy: ")
    # torch's probability-target cross entropy promotes with the weight too (float64 weight: float64)
    dtype = c.float_dtype(x, y if jnp.issubdtype(y.dtype, jnp.floating) else x, weight)
    work = c.working(dtype)
    w = None if weight is None else weight.astype(work)
    return prob_loss(x.astype(work), y.astype(work), w, reduction, label_smoothing, axis=1).astype(dtype)


# --------------------------------------------------------------------------- DiceFocalLoss
def _precheck_dice_focal(values: dict[str, Any]) -> None:
    n = _channels(values)
    c.warn_target_options(n, values["to_onehot_y"], True)
    c.warn_activation(n, values["softmax"])
    c.warn_target_options(n, False, values["include_background"])
    scored = n_scored_classes(n, values["include_background"])
    check_dice_weight(values["weight"], scored)
    check_focal_weight(values["weight"], scored)


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax", "squared_pred", "jaccard", "batch"),
    numbers={
        "smooth_nr": Number(),
        "smooth_dr": Number(),
        "gamma": Number(),
        "lambda_dice": c.check_lambda("lambda_dice"),
        "lambda_focal": c.check_lambda("lambda_focal"),
    },
    arrays={"input": "float", "target": "label"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_focal_options,
    precheck=_precheck_dice_focal,
    module="DiceFocalLoss",
    torch="monai.losses.DiceFocalLoss",
)
def dice_focal_loss(
    input: Array,
    target: Array,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Array], Array] | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    reduction: str = "mean",
    smooth_nr: float | Array = 1e-5,
    smooth_dr: float | Array = 1e-5,
    batch: bool = False,
    gamma: float | Array = 2.0,
    weight: Sequence[float] | float | Array | None = None,
    lambda_dice: float | Array = 1.0,
    lambda_focal: float | Array = 1.0,
    alpha: float | Array | None = None,
    axis: int = 1,
) -> Array:
    r"""Dice plus focal loss: ``monai.losses.DiceFocalLoss``.

    .. math:: \lambda_{dice}\,\mathrm{dice\_loss}(x, y) + \lambda_{focal}\,\mathrm{focal\_loss}(x, y)

    The target is one-hot encoded once (``to_onehot_y``), then the Dice part (activation and
    Dice options) and :func:`focal_loss` (sigmoid focal on the raw logits, with
    ``include_background``, ``gamma``, ``alpha``, ``weight``, ``reduction``) are added.
    ``reduction='none'`` adds the Dice ``(B, C, 1, ...)`` and the elementwise focal loss.

    Returns:
        MONAI's dtype: the Dice dtype promoted with float32 (the focal part is float32 always).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 0.0]], [[-2.0, 1.0], [0.0, 3.0]]]])
        >>> labels = jnp.array([[[[0, 1], [0, 1]]]])
        >>> round(float(jm.dice_focal_loss(logits, labels, to_onehot_y=True, sigmoid=True)), 4)
        0.3147
    """
    # one cast for both parts: their input gradients add up before the one rounding to a half input's dtype
    x = c.to_channels_first(input, axis).astype(c.working(input.dtype))
    y = c.to_channels_first(target, axis)
    n = x.shape[1]
    y, bad = c.prepare_target(y, n, to_onehot_y, None)
    x = c.poison_input(x, bad)
    p = activate_work(x, y, False, sigmoid, softmax, other_act, None)
    dice = dice_from_probs(
        p, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=False, squared_pred=squared_pred,
        jaccard=jaccard, reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch,
        weight=weight, soft_label=False, ignore_index=None,
    )
    focal = focal_from_logits(
        x, y, include_background=include_background, to_onehot_y=False, gamma=gamma, alpha=alpha,
        weight=weight, reduction=reduction, use_softmax=False, ignore_index=None,
    )
    total = c.poison_all(lambda_dice * dice + lambda_focal * focal, bad).astype(jnp.result_type(dice, focal))
    return c.from_channels_first(total, axis, input.ndim)


# --------------------------------------------------------------------------- GeneralizedDiceFocalLoss
def _precheck_gdf(values: dict[str, Any]) -> None:
    n = _channels(values)
    c.warn_activation(n, values["softmax"])
    c.warn_target_options(n, values["to_onehot_y"], values["include_background"])
    check_focal_weight(values["weight"], n_scored_classes(n, values["include_background"]))


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "w_type", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax", "batch"),
    numbers={
        "smooth_nr": Number(),
        "smooth_dr": Number(),
        "gamma": Number(),
        "lambda_gdl": c.check_lambda("lambda_gdl"),
        "lambda_focal": c.check_lambda("lambda_focal"),
    },
    arrays={"input": "float", "target": "label"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=_precheck_gdf,
    module="GeneralizedDiceFocalLoss",
    torch="monai.losses.GeneralizedDiceFocalLoss",
)
def generalized_dice_focal_loss(
    input: Array,
    target: Array,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Array], Array] | None = None,
    w_type: str = "square",
    reduction: str = "mean",
    smooth_nr: float | Array = 1e-5,
    smooth_dr: float | Array = 1e-5,
    batch: bool = False,
    gamma: float | Array = 2.0,
    weight: Sequence[float] | float | Array | None = None,
    lambda_gdl: float | Array = 1.0,
    lambda_focal: float | Array = 1.0,
    axis: int = 1,
) -> Array:
    r"""Generalised Dice plus focal loss: ``monai.losses.GeneralizedDiceFocalLoss``.

    .. math:: \lambda_{gdl}\,\mathrm{generalized\_dice\_loss}(x, y) + \lambda_{focal}\,\mathrm{focal\_loss}(x, y)

    :func:`generalized_dice_loss` with the activation and ``w_type``, plus the sigmoid
    :func:`focal_loss` on the raw logits with ``gamma`` and ``weight`` (``weight`` is not
    used by the generalised Dice, as in MONAI). Both one-hot the target themselves.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 0.0]], [[-2.0, 1.0], [0.0, 3.0]]]])
        >>> labels = jnp.array([[[[0, 1], [0, 1]]]])
        >>> round(float(jm.generalized_dice_focal_loss(logits, labels, to_onehot_y=True, softmax=True)), 4)
        0.1984
    """
    # one cast for both parts: their input gradients add up before the one rounding to a half input's dtype
    x = c.to_channels_first(input, axis).astype(c.working(input.dtype))
    y = c.to_channels_first(target, axis)
    p = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, None, [jnp.zeros((), jnp.float32)])
    gdl = generalized_dice_from_probs(
        p, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=to_onehot_y, w_type=w_type, reduction=reduction,
        smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, soft_label=False,
    )
    focal = focal_from_logits(
        x, y, include_background=include_background, to_onehot_y=to_onehot_y, gamma=gamma, alpha=None,
        weight=weight, reduction=reduction, use_softmax=False, ignore_index=None,
    )
    total = (lambda_gdl * gdl + lambda_focal * focal).astype(jnp.result_type(gdl, focal))
    return c.from_channels_first(total, axis, input.ndim)
