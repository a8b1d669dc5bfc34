"""MONAI's Dice family: ``DiceLoss``, ``MaskedDiceLoss``, ``GeneralizedDiceLoss``, ``TverskyLoss``.

Each public function is the ``forward`` of the MONAI 1.6.1 class of the same (snake-cased) name,
with the constructor's arguments as keyword options, same defaults; see
:mod:`jaxloss.monai` for what they share (layout, dtypes, bad values).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import Number, loss_function
from jaxloss.monai import _common as c
from jaxloss.monai._fused import MAX_CLASSES, softmax_label_sums

_ARRAYS = {"input": "float", "target": "label"}  # weight: any MONAI form, converted by the precheck
_DICE_STATIC = ("include_background", "to_onehot_y", "sigmoid", "softmax", "squared_pred", "jaccard", "batch", "soft_label")
_WEIGHT_LENGTH = (
    "The length of the `weight` sequence should be the same as the number of classes. "
    "If `include_background=False`, the weight should not include the background category class 0."
)
_WEIGHT_NEGATIVE = "the value/values of the `weight` should be no less than 0."



# --------------------------------------------------------------------------- the shared Dice core
def n_scored_classes(n_pred_ch: int, include_background: bool) -> int:
    """The channels a Dice score is computed for (background dropped unless it is the only one)."""
    return n_pred_ch if include_background or n_pred_ch == 1 else n_pred_ch - 1


def check_dice_weight(weight: Any, n_classes: int) -> None:
    """``DiceLoss``'s ``weight`` checks (skipped, as in MONAI, when one class is scored)."""
    if weight is None or n_classes == 1:
        return
    if weight.ndim > 1 or (weight.ndim == 1 and weight.shape[0] != n_classes):
        raise ValueError(_WEIGHT_LENGTH)
    c.concrete_min_check(weight, _WEIGHT_NEGATIVE)


def dice_result_dtype(input: Array, target: Array, one_hot: bool, masks: Sequence[Any] = ()) -> Any:
    """torch's result dtype: the prediction promoted with the float target (float32 after
    ``one_hot``) and MONAI's float32 masks."""
    t = jnp.zeros((), jnp.float32) if one_hot else target
    return c.float_dtype(input, t, *masks)


def dice_from_probs(
    x: Array,
    target: Array,
    *,
    in_dtype: Any,
    include_background: bool,
    to_onehot_y: bool,
    squared_pred: bool,
    jaccard: bool,
    reduction: str,
    smooth_nr: Any,
    smooth_dr: Any,
    batch: bool,
    weight: Array | None,
    soft_label: bool,
    ignore_index: int | None,
    mask: Array | None = None,
) -> Array:
    """``DiceLoss.forward`` after the activation, channels first (``mask``: ``MaskedDiceLoss``'s,
    multiplied into ``x`` and the label map before anything else)."""
    ndim, n_pred_ch = x.ndim, x.shape[1]
    one_hot = to_onehot_y and n_pred_ch > 1
    dtype = dice_result_dtype(jnp.zeros((), in_dtype), target, one_hot, [m for m in (mask,) if m is not None]
                              + c.ignore_dtypes(target, ignore_index))
    work = c.working(dtype)
    x = x.astype(work)
    if mask is not None:
        mask = mask.astype(work)
        x, target = x * mask, target * mask
    original = target
    target, bad = c.prepare_target(target, n_pred_ch, to_onehot_y, ignore_index)
    x = c.poison_input(x, bad)
    x = c.drop_background(x, include_background, n_pred_ch)
    target = c.drop_background(target, include_background, n_pred_ch)
    ignore = c.ignore_mask(original, ignore_index)
    c.check_same_shape(target, x)
    target = target.astype(work)
    if ignore is not None:
        x, target = x * ignore.astype(work), target * ignore.astype(work)
    axes = tuple(range(2, ndim))
    if batch:
        axes = (0, *axes)
    tp, fp, fn = c.tp_fp_fn(x, target, axes, 2 if squared_pred else 1, soft_label)
    f = dice_score(tp, fp, fn, jaccard=jaccard, smooth_nr=smooth_nr, smooth_dr=smooth_dr, weight=weight)
    return finish_dice(f, reduction, ndim, bad, dtype)


def dice_score(tp: Array, fp: Array, fn: Array, *, jaccard: bool, smooth_nr: Any, smooth_dr: Any, weight: Array | None) -> Array:
    r"""Per-class Dice (Jaccard) loss from the overlap sums, weighted, last axis the classes:
    :math:`1 - (2 tp + s_{nr}) / (2 (tp + fp/2 + fn/2) + s_{dr})` (``jaccard``: ``fp``, ``fn`` whole)."""
    if not jaccard:
        fp, fn = fp * 0.5, fn * 0.5
    f = 1 - (2 * tp + smooth_nr) / (2 * (tp + fp + fn) + smooth_dr)
    n_classes = tp.shape[-1]
    if weight is not None and n_classes != 1:
        w = jnp.broadcast_to(weight.astype(tp.dtype), (n_classes,))
        f = c.negative_poison(f * w, weight, _WEIGHT_NEGATIVE)
    return f


def finish_dice(f: Array, reduction: str, ndim: int, bad: Array | None, dtype: Any) -> Array:
    """The reduced Dice in MONAI's dtype, NaN where a label was out of range."""
    if reduction == "none":
        f = c.broadcastable(f, ndim)
    return c.poison_all(c.reduce(f, reduction), bad).astype(dtype)


# --------------------------------------------------------------------------- the fused softmax path
def fused_applies(
    n_pred_ch: int, *, to_onehot_y: bool, softmax: bool, other_act: Any, squared_pred: bool = False,
    soft_label: bool = False, ignore_index: int | None = None,
) -> bool:
    """Whether :func:`softmax_dice_sums` computes this Dice: MONAI's usual segmentation
    configuration (softmax logits, a class-index label map), any other options allowed."""
    return (
        softmax and to_onehot_y and 1 < n_pred_ch <= MAX_CLASSES and other_act is None
        and not squared_pred and not soft_label and ignore_index is None
    )


def softmax_dice_sums(
    x: Array, target: Array, *, include_background: bool, batch: bool, with_ce: bool = False
) -> tuple[tuple[Array, Array, Array], tuple[Array, ...], Array]:
    """``(tp, fp, fn)`` of the softmax of channels-first logits ``x`` (in the working dtype)
    against the ``(B, 1, *spatial)`` label map ``target``, as :func:`dice_from_probs` computes
    them after MONAI's activation and one-hot step (same checks, same NaN for a bad label), in
    :func:`jaxloss.monai._fused.softmax_label_sums`'s few passes; with ``with_ce`` also its
    per-sample cross-entropy sums ``(nll, sm)``; and the bad-label flag."""
    n, n_pred_ch = x.shape[:2]
    c.check_one_hot_target(target.shape)
    kept = n_scored_classes(n_pred_ch, include_background)
    c.check_same_shape(jax.ShapeDtypeStruct((target.shape[0], kept, *target.shape[2:]), x.dtype),
                       jax.ShapeDtypeStruct((n, kept, *x.shape[2:]), x.dtype))
    index, bad = c.label_index(target, n_pred_ch)
    x = c.poison_input(x, bad)
    # the class index as it is (a converted copy would be one more stored array); a label
    # outside [0, C) matches no class there, and the result is NaN for it anyway
    sums = softmax_label_sums(x.reshape(n, n_pred_ch, -1), index.reshape(n, -1), with_ce)
    tp, sp, sg = (s[:, n_pred_ch - kept:] for s in sums[:3])
    if batch:
        tp, sp, sg = (jnp.sum(s, axis=0) for s in (tp, sp, sg))
    return (tp, sp - tp, sg - tp), sums[3:], bad


def fused_dice(
    x: Array, target: Array, in_dtype: Any, *, include_background: bool, jaccard: bool, reduction: str,
    smooth_nr: Any, smooth_dr: Any, batch: bool, weight: Array | None, with_ce: bool = False,
) -> tuple[Array, tuple[Array, ...]]:
    """The reduced Dice of channels-first logits ``x`` (input dtype ``in_dtype``) against a label
    map, in MONAI's dtype, by the fused path (:func:`fused_applies` says when); with
    ``with_ce`` also the cross-entropy sums of :func:`softmax_dice_sums`."""
    dtype = dice_result_dtype(jnp.zeros((), in_dtype), target, True)
    (tp, fp, fn), ce_sums, bad = softmax_dice_sums(
        x.astype(c.working(dtype)), target, include_background=include_background, batch=batch, with_ce=with_ce)
    f = dice_score(tp, fp, fn, jaccard=jaccard, smooth_nr=smooth_nr, smooth_dr=smooth_dr, weight=weight)
    return finish_dice(f, reduction, x.ndim, bad, dtype), ce_sums


def precheck_dice(values: dict[str, Any]) -> None:
    """The checks MONAI's ``DiceLoss.__init__`` and ``forward`` make on Python values."""
    _precheck_layout(values)
    n = values["input"].shape[values["axis"]]
    check_dice_weight(values["weight"], n_scored_classes(n, values["include_background"]))


def _precheck_layout(values: dict[str, Any]) -> None:
    values["axis"] = c.check_axis(values["input"].ndim, values["axis"])
    n = values["input"].shape[values["axis"]]
    c.warn_activation(n, values.get("softmax", False))
    c.warn_target_options(n, values["to_onehot_y"], values["include_background"])


# --------------------------------------------------------------------------- DiceLoss
@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "ignore_index", "axis"),
    bools=_DICE_STATIC,
    numbers={"smooth_nr": Number(), "smooth_dr": Number()},
    arrays=_ARRAYS,
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=precheck_dice,
    module="DiceLoss",
    torch="monai.losses.DiceLoss",
)
def dice_loss(
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
    weight: Sequence[float] | float | Array | None = None,
    soft_label: bool = False,
    ignore_index: int | None = None,
    axis: int = 1,
) -> Array:
    r"""Soft Dice (or Jaccard) loss per sample and class: ``monai.losses.DiceLoss``.

    .. math::
        f_{b,c} = 1 - \frac{2\,tp + s_{nr}}{2\,tp + fp + fn + s_{dr}},\quad
        tp = \sum_v p\,g,\; fp = \sum_v p\,(1 - g),\; fn = \sum_v (1 - p)\,g

    (sums over the spatial voxels ``v``, and the batch too with ``batch=True``; ``jaccard=True``
    doubles ``fp`` and ``fn``: the soft IoU; ``squared_pred`` / ``soft_label`` use MONAI's norm
    form, see :func:`jaxloss.monai._common.tp_fp_fn`).

    Args:
        input: ``(B, C, *spatial)`` predictions (probabilities, or logits with ``sigmoid`` /
            ``softmax`` / ``other_act``); ``axis`` says where ``C`` is.
        target: ``input``'s shape (one-hot or soft labels), or ``(B, 1, *spatial)`` class
            indices with ``to_onehot_y=True`` (any integer dtype, or floats truncated as MONAI's
            ``long()``).
        include_background: keep channel 0 (dropped when False, unless it is the only one).
        to_onehot_y: one-hot the label map into ``C`` channels (float32, as MONAI's ``one_hot``).
        sigmoid, softmax, other_act: the activation (at most one); ``other_act`` a JAX callable
            (static: hashable, e.g. ``jnp.tanh``).
        squared_pred: squared predictions and targets in the denominator.
        jaccard: the Jaccard (IoU) loss instead of Dice.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (shape ``(B, C, 1, ...)``, or
            ``(C, 1, ...)`` with ``batch``; ``C`` back at ``axis``).
        smooth_nr, smooth_dr: added to numerator and denominator; traced.
        batch: sum over the batch before dividing.
        weight: per-class factors (a number, a sequence or a ``(C',)`` array, ``C'`` the scored
            classes), no entry below 0.
        soft_label: the soft-label form (Wang et al. 2023), exact for targets in ``(0, 1)``.
        ignore_index: label (or one-hot channel) whose voxels are left out (MONAI's rules:
            a sentinel outside ``[0, C)`` masks voxels whose one-hot channels are all 0).
        axis: the channel axis (static), 1 as MONAI; ``-1`` for channels-last.

    Returns:
        A scalar (or the ``'none'`` shape) in MONAI's dtype: the input's, promoted with a float
        target and with float32 where MONAI builds float32 one-hot targets or masks (a float16
        input with ``to_onehot_y`` gives float32, as in MONAI).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 0.0]], [[-2.0, 1.0], [0.0, 3.0]]]])  # (1, 2, 2, 2)
        >>> labels = jnp.array([[[[0, 1], [0, 1]]]])  # (1, 1, 2, 2)
        >>> round(float(jm.dice_loss(logits, labels, to_onehot_y=True, softmax=True)), 4)
        0.141
        >>> jm.dice_loss(logits, labels, to_onehot_y=True, softmax=True, reduction='none').shape
        (1, 2, 1, 1)
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    if fused_applies(x.shape[1], to_onehot_y=to_onehot_y, softmax=softmax, other_act=other_act,
                     squared_pred=squared_pred, soft_label=soft_label, ignore_index=ignore_index):
        dice, _ = fused_dice(x, y, input.dtype, include_background=include_background, jaccard=jaccard,
                             reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, weight=weight)
        return c.from_channels_first(dice, axis, input.ndim)
    x = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, ignore_index)
    out = dice_from_probs(
        x, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=to_onehot_y, squared_pred=squared_pred,
        jaccard=jaccard, reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch,
        weight=weight, soft_label=soft_label, ignore_index=ignore_index,
    )
    return c.from_channels_first(out, axis, input.ndim)


def activate_work(
    x: Array, target: Array, to_onehot_y: bool, sigmoid: bool, softmax: bool, other_act: Any, ignore_index: Any,
    extra: Sequence[Any] = (),
) -> Array:
    """The activation, computed in the working dtype of the loss's result (float32 for half)."""
    masks = list(extra) + c.ignore_dtypes(target, ignore_index)
    work = c.working(dice_result_dtype(x, target, to_onehot_y and x.shape[1] > 1, masks))
    return c.activate(x.astype(work), sigmoid, softmax, other_act)


# --------------------------------------------------------------------------- MaskedDiceLoss
def _options_masked(values: dict[str, Any]) -> None:
    """``MaskedDiceLoss``'s own activation checks (its wording differs from ``DiceLoss``'s)."""
    c.check_other_act(values["other_act"])
    if values["sigmoid"] and values["softmax"]:
        raise ValueError("Incompatible values: sigmoid=True and softmax=True.")
    if values["other_act"] is not None and (values["sigmoid"] or values["softmax"]):
        raise ValueError("Incompatible values: other_act is not None and sigmoid=True or softmax=True.")
    values["weight"] = c.as_array_option(values["weight"])


def _precheck_masked(values: dict[str, Any]) -> None:
    _precheck_layout(values)
    x, mask = values["input"], values["mask"]
    axis = values["axis"]
    check_dice_weight(values["weight"], n_scored_classes(x.shape[axis], values["include_background"]))
    if mask is None:
        warnings.warn("No mask value specified for the MaskedLoss.", stacklevel=3)
        return
    xs = _channels_first_shape(x.shape, axis)
    ms = _channels_first_shape(mask.shape, axis) if mask.ndim == x.ndim else tuple(mask.shape)
    if x.ndim != mask.ndim:
        warnings.warn(f"Dim of input ({c.torch_size(xs)}) is different from mask ({c.torch_size(ms)}).", stacklevel=3)
    if xs[0] != ms[0] and ms[0] != 1:
        raise ValueError(f"Batch size of mask ({c.torch_size(ms)}) must be one or equal to input ({c.torch_size(xs)}).")
    if values["target"].ndim > 1:
        if ms[1] != 1:
            raise ValueError(f"Mask ({c.torch_size(ms)}) must have only one channel.")
        if xs[2:] != ms[2:]:
                warnings.warn(
                f"Spatial size of input ({c.torch_size(xs)}) is different from mask ({c.torch_size(ms)}).", stacklevel=3
            )


def _channels_first_shape(shape: Sequence[int], axis: int) -> tuple[int, ...]:
    s = list(shape)
    if axis != 1 and len(s) > axis:
        s.insert(1, s.pop(axis))
    return tuple(s)


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "axis"),
    bools=_DICE_STATIC,
    numbers={"smooth_nr": Number(), "smooth_dr": Number()},
    arrays={**_ARRAYS, "mask": "real"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=_options_masked,
    precheck=_precheck_masked,
    module="MaskedDiceLoss",
    forward=("input", "target", "mask"),
    torch="monai.losses.MaskedDiceLoss",
)
def masked_dice_loss(
    input: Array,
    target: Array,
    mask: Array | None = None,
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
    weight: Sequence[float] | float | Array | None = None,
    soft_label: bool = False,
    axis: int = 1,
) -> Array:
    r"""Dice loss inside a spatial mask: ``monai.losses.MaskedDiceLoss`` (``forward(input, target, mask)``).

    .. math:: \mathrm{dice\_loss}(\mathrm{act}(x) \cdot m,\; g \cdot m)

    The prediction is activated first, then prediction and target are multiplied by ``mask``
    (``(B, 1, *spatial)`` or ``(1, 1, *spatial)``, 1 inside the region), then scored by
    :func:`dice_loss` with the other options (no ``ignore_index``, as in MONAI). Without a mask
    MONAI warns and computes the plain Dice loss; so does this. MONAI multiplies the label map by
    the mask *before* ``to_onehot_y``: a label outside the mask becomes class 0 (its one-hot
    channel 0 is 1 there, not 0), so with ``to_onehot_y`` the background channel still counts the
    masked-out voxels; kept, for the same numbers.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> p = jnp.array([[[[0.9, 0.2], [0.8, 0.1]]]])  # (1, 1, 2, 2) probabilities
        >>> g = jnp.array([[[[1.0, 0.0], [0.0, 0.0]]]])
        >>> m = jnp.array([[[[1.0, 1.0], [0.0, 0.0]]]])  # only the first row counts
        >>> round(float(jm.masked_dice_loss(p, g, m)), 4)
        0.1429
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    m = None if mask is None else (c.to_channels_first(mask, axis) if mask.ndim == input.ndim else mask)
    extra = [] if m is None else [m]
    x = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, None, extra)
    out = dice_from_probs(
        x, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=to_onehot_y, squared_pred=squared_pred,
        jaccard=jaccard, reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch,
        weight=weight, soft_label=soft_label, ignore_index=None, mask=m,
    )
    return c.from_channels_first(out, axis, input.ndim)


# --------------------------------------------------------------------------- GeneralizedDiceLoss
def generalized_dice_from_probs(
    x: Array,
    target: Array,
    *,
    in_dtype: Any,
    include_background: bool,
    to_onehot_y: bool,
    w_type: str,
    reduction: str,
    smooth_nr: Any,
    smooth_dr: Any,
    batch: bool,
    soft_label: bool,
) -> Array:
    """``GeneralizedDiceLoss.forward`` after the activation, channels first."""
    ndim, n_pred_ch = x.ndim, x.shape[1]
    one_hot = to_onehot_y and n_pred_ch > 1
    # MONAI's class weights are float32 (``ground_o.float()``): they promote the result
    dtype = c.float_dtype(dice_result_dtype(jnp.zeros((), in_dtype), target, one_hot), jnp.zeros((), jnp.float32))
    work = c.working(dtype)
    x = x.astype(work)
    target, bad = c.prepare_target(target, n_pred_ch, to_onehot_y, None)
    x = c.poison_input(x, bad)
    x = c.drop_background(x, include_background, n_pred_ch)
    target = c.drop_background(target, include_background, n_pred_ch)
    c.check_same_shape(target, x, "differing")
    t_dtype = c.working(c.float_dtype(x, target)) if not one_hot else work
    target = target.astype(t_dtype)
    axes = tuple(range(2, ndim))
    if batch:
        axes = (0, *axes)
    tp, fp, fn = c.tp_fp_fn(x, target, axes, 1, soft_label)
    denominator = 2 * (tp + fp * 0.5 + fn * 0.5)
    # the class volumes rounded to float32 first, as MONAI does (even for float64 targets)
    ground = jnp.sum(target, axis=axes).astype(jnp.float32)
    if w_type == "simple":
        w = 1 / ground
    elif w_type == "square":
        w = 1 / (ground * ground)
    else:
        w = jnp.ones_like(ground)
    infs = jnp.isinf(w)
    w = jnp.where(infs, 0.0, w)
    # an empty class gets the largest weight of its sample (of the batch with ``batch``)
    w = w + infs * (jnp.max(w) if batch else jnp.max(w, axis=1, keepdims=True))
    final = 0 if batch else 1
    numer = 2.0 * jnp.sum(tp * w, axis=final, keepdims=True) + smooth_nr
    denom = jnp.sum(denominator * w, axis=final, keepdims=True) + smooth_dr
    f = 1.0 - numer / denom
    if reduction == "none":
        f = c.broadcastable(f, ndim)
    return c.poison_all(c.reduce(f, reduction), bad).astype(dtype)


def precheck_generalized(values: dict[str, Any]) -> None:
    _precheck_layout(values)


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "w_type", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax", "batch", "soft_label"),
    numbers={"smooth_nr": Number(), "smooth_dr": Number()},
    arrays={"input": "float", "target": "label"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=precheck_generalized,
    module="GeneralizedDiceLoss",
    torch="monai.losses.GeneralizedDiceLoss",
)
def generalized_dice_loss(
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
    soft_label: bool = False,
    axis: int = 1,
) -> Array:
    r"""Generalised Dice loss (Sudre et al. 2017): ``monai.losses.GeneralizedDiceLoss``.

    .. math::
        f_b = 1 - \frac{2 \sum_c w_c\, tp_c + s_{nr}}{\sum_c w_c\, (2 tp_c + fp_c + fn_c) + s_{dr}},
        \quad w_c = 1 / |g_c|^2 \;(\texttt{square}),\; 1 / |g_c| \;(\texttt{simple}),\; 1 \;(\texttt{uniform})

    ``|g_c|`` is the class volume (rounded to float32, as MONAI does); an empty class, whose
    weight would be infinite, gets the largest weight of its sample (of the batch with
    ``batch``); a sample with no class present scores 0.

    Args:
        input, target, include_background, to_onehot_y, sigmoid, softmax, other_act,
        smooth_nr, smooth_dr, batch, soft_label, axis: as :func:`dice_loss`.
        w_type: ``'square'`` | ``'simple'`` | ``'uniform'``.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B, 1, 1, ...)``; ``(1, C, 1, ...)``
            with ``batch``, MONAI's shapes).

    Returns:
        MONAI's dtype: the Dice dtype promoted with float32 (the class weights): float32 for
        float16 / bfloat16 inputs, float64 for float64.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> p = jnp.array([[[0.9, 0.1, 0.2], [0.1, 0.9, 0.8]]])  # (1, 2, 3)
        >>> g = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
        >>> round(float(jm.generalized_dice_loss(p, g)), 4)
        0.1587
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    x = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, None, [jnp.zeros((), jnp.float32)])
    out = generalized_dice_from_probs(
        x, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=to_onehot_y, w_type=w_type, reduction=reduction,
        smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, soft_label=soft_label,
    )
    return c.from_channels_first(out, axis, input.ndim)


# --------------------------------------------------------------------------- TverskyLoss
def _precheck_tversky(values: dict[str, Any]) -> None:
    _precheck_layout(values)


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "other_act", "ignore_index", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax", "batch", "soft_label"),
    numbers={"alpha": Number(), "beta": Number(), "smooth_nr": Number(), "smooth_dr": Number()},
    arrays={"input": "float", "target": "label"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=_precheck_tversky,
    module="TverskyLoss",
    torch="monai.losses.TverskyLoss",
)
def tversky_loss(
    input: Array,
    target: Array,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Array], Array] | None = None,
    alpha: float | Array = 0.5,
    beta: float | Array = 0.5,
    reduction: str = "mean",
    smooth_nr: float | Array = 1e-5,
    smooth_dr: float | Array = 1e-5,
    batch: bool = False,
    soft_label: bool = False,
    ignore_index: int | None = None,
    axis: int = 1,
) -> Array:
    r"""Tversky loss (Salehi et al. 2017): ``monai.losses.TverskyLoss``.

    .. math::
        f_{b,c} = 1 - \frac{tp + s_{nr}}{tp + \alpha\, fp + \beta\, fn + s_{dr}},\quad
        fp = \sum_v p (1 - g),\; fn = \sum_v (1 - p) g

    ``alpha = beta = 0.5`` is the Dice loss (up to the smoothing terms). ``alpha``, ``beta``,
    ``smooth_nr``, ``smooth_dr`` are traced.

    Args:
        input, target, include_background, to_onehot_y, sigmoid, softmax, other_act, batch,
        soft_label, ignore_index, axis: as :func:`dice_loss`.
        alpha: weight of the false positives. beta: weight of the false negatives.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (shape ``(B, C)``, or ``(C,)`` with
            ``batch``: MONAI's, not broadcastable to the input).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> p = jnp.array([[[0.9, 0.1, 0.2], [0.1, 0.9, 0.8]]])
        >>> g = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
        >>> round(float(jm.tversky_loss(p, g, alpha=0.3, beta=0.7)), 4)
        0.1373
    """
    n_pred_ch = input.shape[axis]
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    x = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, ignore_index)
    one_hot = to_onehot_y and n_pred_ch > 1
    dtype = dice_result_dtype(input, y, one_hot, c.ignore_dtypes(y, ignore_index))
    work = c.working(dtype)
    original = y
    y, bad = c.prepare_target(y, n_pred_ch, to_onehot_y, ignore_index)
    x = c.poison_input(x, bad)
    y = y.astype(work)
    ignore = c.ignore_mask(original, ignore_index)
    if ignore is not None:
        x, y = x * ignore.astype(work), y * ignore.astype(work)
    x = c.drop_background(x, include_background, n_pred_ch)
    y = c.drop_background(y, include_background, n_pred_ch)
    c.check_same_shape(y, x, "differing")
    axes = tuple(range(2, x.ndim))
    if batch:
        axes = (0, *axes)
    tp, fp, fn = c.tp_fp_fn(x, y, axes, 1, soft_label, decoupled=False)
    score = 1.0 - (tp + smooth_nr) / (tp + fp * alpha + fn * beta + smooth_dr)
    return c.poison_all(c.reduce(score, reduction), bad).astype(dtype)
