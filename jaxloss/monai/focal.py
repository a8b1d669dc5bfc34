"""MONAI's ``FocalLoss`` (sigmoid or softmax, ``alpha``, ``gamma``, per-class ``weight``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import Number, loss_function
from jaxloss._softmax import focal_term
from jaxloss.binary import _bce_logits, _log_sigmoid
from jaxloss.monai import _common as c

_NEGATIVE = "class_weight values must be non-negative."



def check_focal_weight(weight: Any, n_classes: int) -> None:
    """``FocalLoss``'s ``weight`` checks on the scored classes (``n_classes``)."""
    if weight is None:
        return
    if weight.ndim > 0:
        if n_classes == 1:
            raise ValueError("Per-class class_weight is not supported for single-channel outputs.")
        if weight.size != n_classes:
            raise ValueError(
                f"The number of class_weight ({weight.size}) must match the number of output channels ({n_classes})."
            )
    c.concrete_min_check(weight, _NEGATIVE)


def check_alpha(alpha: Any, n_classes: int) -> None:
    if alpha is not None and alpha.ndim > 0 and alpha.shape[0] != n_classes:
        raise ValueError(f"The length of alpha ({alpha.shape[0]}) must match the number of classes ({n_classes}).")


def focal_elementwise(x: Array, t: Array, gamma: Any, alpha: Array | None, use_softmax: bool) -> Array:
    """MONAI's ``softmax_focal_loss`` / ``sigmoid_focal_loss`` on float32 ``(B, C, ...)``.

    Softmax: :math:`-\\alpha_c (1 - p_c)^\\gamma \\log p_c \\, t_c` (``alpha`` scalar: ``1 - alpha``
    for channel 0, ``alpha`` for the others). Sigmoid: the BCE on logits times
    :math:`\\exp(\\gamma \\log\\sigma(-x (2t - 1)))`, times ``alpha t + (1 - alpha)(1 - t)`` (scalar)
    or ``alpha_c`` where ``t == 1`` (per class).
    """
    n_classes = t.shape[1]
    per_class = (1, n_classes) + (1,) * (t.ndim - 2)
    if use_softmax:
        logp = jax.nn.log_softmax(x, axis=1)
        # -(1 - p)^gamma log p with 1 - p = -expm1(log p): MONAI's 1 - exp(log p) in value (a few
        # ulp apart near p = 1) with a finite gradient at p = 1 where MONAI's pow gives NaN for gamma < 1
        loss = focal_term(logp, gamma) * t
        if alpha is not None:
            a = alpha.astype(x.dtype)
            fac = jnp.concatenate([1 - a[None], jnp.broadcast_to(a, (n_classes - 1,))]) if a.ndim == 0 else a
            loss = fac.reshape(per_class) * loss
        return loss
    loss = _bce_logits(x, t)  # x - x t - log sigmoid(x), without its cancellation
    loss = jnp.exp(_log_sigmoid(-x * (t * 2 - 1)) * gamma) * loss
    if alpha is not None:
        a = alpha.astype(x.dtype)
        if a.ndim == 0:
            loss = (t * a + (1 - t) * (1 - a)) * loss
        else:
            loss = jnp.where(t == 1, a.reshape(per_class), 1.0) * loss
    return loss


def focal_from_logits(
    input: Array,
    target: Array,
    *,
    include_background: bool,
    to_onehot_y: bool,
    gamma: Any,
    alpha: Array | None,
    weight: Array | None,
    reduction: str,
    use_softmax: bool,
    ignore_index: int | None,
) -> Array:
    """``FocalLoss.forward``, channels first: always float32, as MONAI (``input.float()``)."""
    n_pred_ch = input.shape[1]
    original = target
    target, bad = c.prepare_target(target, n_pred_ch, to_onehot_y, ignore_index)
    x = c.poison_input(input, bad)
    x = c.drop_background(x, include_background, n_pred_ch)
    target = c.drop_background(target, include_background, n_pred_ch)
    mask = c.ignore_mask(original, ignore_index)
    c.check_same_shape(target, x, error=ValueError)
    if mask is not None:
        x, target = x * mask, target * mask
    x, target = x.astype(jnp.float32), target.astype(jnp.float32)
    if use_softmax and not include_background and alpha is not None and alpha.ndim == 0:
        alpha = None  # MONAI ignores a scalar alpha there (and warns)
    loss = focal_element_checked(x, target, gamma, alpha, use_softmax)
    if mask is not None:
        loss = loss * mask
    if weight is not None:
        w = weight.astype(loss.dtype)
        loss = c.negative_poison(loss * (w if w.ndim == 0 else w.reshape((1, -1) + (1,) * (loss.ndim - 2))), weight, _NEGATIVE)
    spatial = tuple(range(2, target.ndim))
    eps = float(jnp.finfo(jnp.float32).eps)
    if reduction == "sum":
        # MONAI's "sum" is the sum over batch and classes of the spatial *means*
        if mask is not None:
            loss = jnp.sum(loss, axis=spatial, keepdims=True) / jnp.maximum(jnp.sum(mask, axis=spatial, keepdims=True), eps)
        else:
            loss = jnp.mean(loss, axis=spatial)
        loss = jnp.sum(loss)
    elif reduction == "mean":
        loss = jnp.sum(loss) / jnp.maximum(jnp.sum(mask), eps) if mask is not None else jnp.mean(loss)
    return c.poison_all(loss, bad)


def focal_element_checked(x: Array, t: Array, gamma: Any, alpha: Array | None, use_softmax: bool) -> Array:
    check_alpha(alpha, t.shape[1])
    return focal_elementwise(x, t, gamma, alpha, use_softmax)


def precheck_focal(values: dict[str, Any]) -> None:
    values["axis"] = c.check_axis(values["input"].ndim, values["axis"])
    n = values["input"].shape[values["axis"]]
    c.warn_target_options(n, values["to_onehot_y"], values["include_background"])
    alpha = values["alpha"]
    if values["use_softmax"] and not values["include_background"] and alpha is not None and alpha.ndim == 0:
        warnings.warn("`include_background=False`, scalar `alpha` ignored when using softmax.", stacklevel=3)
    n_scored = n if values["include_background"] or n == 1 else n - 1
    check_focal_weight(values["weight"], n_scored)


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("reduction", "ignore_index", "axis"),
    bools=("include_background", "to_onehot_y", "use_softmax"),
    numbers={"gamma": Number()},
    arrays={"input": "float", "target": "label"},  # weight, alpha: converted by the precheck
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_focal_options,
    precheck=precheck_focal,
    module="FocalLoss",
    torch="monai.losses.FocalLoss",
)
def focal_loss(
    input: Array,
    target: Array,
    include_background: bool = True,
    to_onehot_y: bool = False,
    gamma: float | Array = 2.0,
    alpha: float | Sequence[float] | Array | None = None,
    weight: Sequence[float] | float | Array | None = None,
    reduction: str = "mean",
    use_softmax: bool = False,
    ignore_index: int | None = None,
    axis: int = 1,
) -> Array:
    r"""Focal loss on logits (Lin et al. 2017): ``monai.losses.FocalLoss``.

    .. math::
        \ell = -\alpha_t (1 - p_t)^\gamma \log p_t

    with ``p = sigmoid(x)`` per channel (multi-label, ``use_softmax=False``) or
    ``p = softmax(x)`` over the channels (``use_softmax=True``).

    Args:
        input: ``(B, C, *spatial)`` logits (``axis`` says where ``C`` is).
        target: ``input``'s shape, or ``(B, 1, *spatial)`` labels with ``to_onehot_y``.
        include_background: keep channel 0. With ``use_softmax`` and a scalar ``alpha`` the
            alpha is then ignored, with MONAI's warning.
        to_onehot_y: one-hot the label map.
        gamma: the focusing exponent; traced.
        alpha: ``None``, a scalar in ``[0, 1]`` (sigmoid: ``alpha`` for positives, ``1 - alpha``
            for negatives; softmax: ``1 - alpha`` for channel 0, ``alpha`` for the others) or a
            per-class sequence / array (sigmoid: applied where ``target == 1``).
        weight: a scalar or per-class factor, no entry below 0.
        reduction: ``'mean'`` (over every element; with ``ignore_index``: the sum divided by the
            number of unmasked *voxels*, MONAI's rule), ``'sum'`` (MONAI's: the sum over batch and
            classes of each channel's spatial mean) or ``'none'`` (the elementwise loss,
            channels back at ``axis``).
        use_softmax: softmax instead of per-channel sigmoids.
        ignore_index: as :func:`jaxloss.monai.dice_loss`.
        axis: the channel axis (static), 1 as MONAI.

    Returns:
        float32 always, as MONAI (it computes ``input.float()``): a float64 input loses float64
        precision there (MONAI's choice, kept; the gradient comes back as float64), a float16 /
        bfloat16 input gives a float32 loss.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> x = jnp.array([[[1.0, -2.0, 0.5]], [[0.0, 3.0, -1.0]]])  # (2, 1, 3) logits
        >>> t = jnp.array([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])
        >>> round(float(jm.focal_loss(x, t)), 4)
        0.048
        >>> jm.focal_loss(x.astype(jnp.float16), t).dtype
        dtype('float32')
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    out = focal_from_logits(
        x, y, include_background=include_background, to_onehot_y=to_onehot_y, gamma=gamma, alpha=alpha,
        weight=weight, reduction=reduction, use_softmax=use_softmax, ignore_index=ignore_index,
    )
    return c.from_channels_first(out, axis, input.ndim)
