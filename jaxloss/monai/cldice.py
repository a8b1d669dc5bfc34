"""MONAI's centreline Dice: ``SoftclDiceLoss`` and ``SoftDiceclDiceLoss`` (Shit et al. 2021).

The soft skeleton is built from iterated min / max pooling (erosion: the minimum over the
3-voxel line along each spatial axis; dilation: the maximum over the 3x3(x3) block; padding
never wins), with torch's gradients: a max-pool passes its gradient to the first maximum of
its window, ``min(a, b)`` splits it half and half at a tie, ``relu`` passes none at 0
(decided by comparing the two terms, so that an exact tie stays one under XLA's fused
multiply-add: :func:`_relu_diff`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import Number, loss_function
from jaxloss.monai import _common as c
from jaxloss.monai.dice import activate_work, dice_from_probs, dice_result_dtype


def _max_line(x: Array, axis: int) -> Array:
    """The maximum over the 3-voxel line ``i - 1, i, i + 1`` along ``axis`` (the border padded
    with ``-inf``, which never wins), its gradient to the first maximum of the three (torch's
    ``max_pool`` tie rule: the first in scan order). NaN propagates, as in torch."""
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    xp = jnp.pad(x, pad, constant_values=-jnp.inf)
    stack = jnp.stack([jax.lax.slice_in_dim(xp, o, o + n, axis=axis) for o in range(3)])
    top = jax.lax.stop_gradient(jnp.max(stack, axis=0))
    hit = stack == top
    first = hit & (jnp.cumsum(hit, axis=0) == 1)
    out = jnp.sum(jnp.where(first, stack, 0), axis=0)
    return jnp.where(jnp.isnan(top), top, out)


def _max_pool(x: Array, window: tuple[int, ...]) -> Array:
    """Stride-1 max pooling with a window of 3s and 1s over the spatial axes, padded by
    ``window // 2``: separable, the innermost axis first, so that the element whose gradient it
    takes is torch's, the first maximum of the window in row-major order (the first row holding
    the maximum, then its first column). JAX's ``reduce_window`` max compiles a larger
    gradient program and may pick another tied element."""
    for axis in reversed(range(len(window))):
        if window[axis] == 3:
            x = _max_line(x, axis + 2)
    return x


def _lines(ndim: int) -> list[tuple[int, ...]]:
    """The 3-voxel line along each spatial axis: ``(3, 1)``, ``(1, 3)`` (and 3-D's three)."""
    k = ndim - 2
    return [tuple(3 if i == j else 1 for j in range(k)) for i in range(k)]


def soft_erode(x: Array) -> Array:
    """Soft erosion: the minimum of the per-axis 3-voxel minima (``-maxpool(-x)``, as MONAI)."""
    parts = [-_max_pool(-x, w) for w in _lines(x.ndim)]
    out = parts[0]
    for p in parts[1:]:
        out = jnp.minimum(out, p)
    return out


def soft_dilate(x: Array) -> Array:
    """Soft dilation: the maximum over the 3x3 (3x3x3) block."""
    return _max_pool(x, (3,) * (x.ndim - 2))


def _relu_diff(a: Array, b: Array) -> Array:
    """``relu(a - b)`` with its gradient (1 to ``a``, -1 to ``b``) only where ``a > b``.

    The test is the comparison, not the sign of the difference, because XLA on CPU contracts
    ``a * c - b`` into one fused multiply-add: where ``a`` is a product (softmax is
    ``exp * (1 / sum)``) and ``b`` that same product picked by the pooling, an exact tie
    (``a - b == 0`` in torch) leaves the rounding error of the product (about 1e-17), and
    ``relu`` would pass a gradient that MONAI's does not (the fuzz finding of issue 19, 2e-3 on
    18 of 180 float64 elements). A comparison is never fused, so the tie stays a tie. NaN
    propagates, as in torch.
    """
    d = a - b
    return jnp.where(a > b, d, jax.lax.stop_gradient(jnp.where(jnp.isnan(d), d, 0.0)))


def soft_skeleton(x: Array, iterations: int) -> Array:
    r"""MONAI's ``soft_skel``: :math:`s_0 = \mathrm{relu}(x - \mathrm{open}(x))`, then ``iterations`` times
    :math:`x \leftarrow \mathrm{erode}(x)`, :math:`d = \mathrm{relu}(x - \mathrm{open}(x))`,
    :math:`s \leftarrow s + \mathrm{relu}(d - s d)`; ``open = dilate . erode``."""
    skel = _relu_diff(x, soft_dilate(soft_erode(x)))
    for _ in range(iterations):
        x = soft_erode(x)
        delta = _relu_diff(x, soft_dilate(soft_erode(x)))
        skel = skel + _relu_diff(delta, skel * delta)
    return skel


def _check_rank(ndim: int) -> None:
    if ndim not in (4, 5):
        raise ValueError(f"the soft skeleton needs a 2-D or 3-D input (BNHW or BNHWD), got {ndim} dimensions")


def cl_dice_from_probs(x: Array, target: Array, *, in_dtype: Any, include_background: bool, to_onehot_y: bool, iter_: int,
                       smooth_nr: Any, smooth_dr: Any, smooth: Any, reduction: str) -> Array:
    """``SoftclDiceLoss.forward`` after the activation, channels first."""
    n_pred_ch = x.shape[1]
    one_hot = to_onehot_y and n_pred_ch > 1
    dtype = dice_result_dtype(jnp.zeros((), in_dtype), target, one_hot)
    work = c.working(dtype)
    target, bad = c.prepare_target(target, n_pred_ch, to_onehot_y, None)
    x = c.poison_input(x.astype(work), bad)
    x = c.drop_background(x, include_background, n_pred_ch)
    target = c.drop_background(target, include_background, n_pred_ch)
    c.check_same_shape(target, x)
    _check_rank(x.ndim)
    target = target.astype(work)
    skel_pred, skel_true = soft_skeleton(x, iter_), soft_skeleton(target, iter_)
    axes = tuple(range(1, x.ndim))
    tprec = (jnp.sum(skel_pred * target, axis=axes) + smooth_nr) / (jnp.sum(skel_pred, axis=axes) + smooth_dr)
    tsens = (jnp.sum(skel_true * x, axis=axes) + smooth_nr) / (jnp.sum(skel_true, axis=axes) + smooth_dr)
    cl = 1.0 - 2.0 * (tprec * tsens) / (tprec + tsens + smooth)
    return c.poison_all(c.reduce(cl, reduction), bad).astype(dtype)


_SMOOTH = Number(lambda v: v > 0, "smooth must be a positive value but got {}.")


def _precheck_cl(values: dict[str, Any]) -> None:
    values["axis"] = c.check_axis(values["input"].ndim, values["axis"])
    n = values["input"].shape[values["axis"]]
    c.warn_activation(n, values["softmax"])
    c.warn_target_options(n, values["to_onehot_y"], values["include_background"])


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("iter_", "reduction", "other_act", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax"),
    numbers={"smooth_nr": Number(), "smooth_dr": Number(), "smooth": _SMOOTH},
    arrays={"input": "float", "target": "label"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=_precheck_cl,
    module="SoftclDiceLoss",
    torch="monai.losses.SoftclDiceLoss",
)
def softcl_dice_loss(
    input: Array,
    target: Array,
    iter_: int = 3,
    smooth_nr: float | Array = 1.0,
    smooth_dr: float | Array = 1.0,
    smooth: float | Array = 1e-4,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Array], Array] | None = None,
    reduction: str = "mean",
    axis: int = 1,
) -> Array:
    r"""Soft centreline Dice loss: ``monai.losses.SoftclDiceLoss`` (2-D and 3-D).

    .. math::
        T_{prec} = \frac{\sum S(p)\, g + s_{nr}}{\sum S(p) + s_{dr}},\;
        T_{sens} = \frac{\sum S(g)\, p + s_{nr}}{\sum S(g) + s_{dr}},\;
        f_b = 1 - \frac{2\, T_{prec} T_{sens}}{T_{prec} + T_{sens} + s}

    ``S`` the soft skeleton after ``iter_`` erosions (:func:`soft_skeleton`); sums over the
    channels and voxels of each sample.

    Args:
        input: ``(B, C, H, W)`` or ``(B, C, H, W, D)`` predictions (``axis`` says where ``C`` is).
        target: ``input``'s shape, or ``(B, 1, ...)`` labels with ``to_onehot_y``.
        iter_: skeleton iterations (static, ``>= 0``).
        smooth_nr, smooth_dr: smoothing of the two ratios; smooth: of the harmonic mean (``> 0``).
            Traced.
        include_background, to_onehot_y, sigmoid, softmax, other_act: as :func:`dice_loss`.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)``).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> g = jnp.zeros((1, 1, 5, 5)).at[0, 0, 2, :].set(1.0)  # a horizontal line
        >>> round(float(jm.softcl_dice_loss(g * 0.9, g)), 4)
        0.0435
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    x = activate_work(x, y, to_onehot_y, sigmoid, softmax, other_act, None)
    return cl_dice_from_probs(x, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=to_onehot_y, iter_=iter_,
                              smooth_nr=smooth_nr, smooth_dr=smooth_dr, smooth=smooth, reduction=reduction)


def _precheck_dice_cl(values: dict[str, Any]) -> None:
    values["axis"] = c.check_axis(values["input"].ndim, values["axis"])
    _precheck_cl(values)
    x, t, axis = values["input"], values["target"], values["axis"]

    def first(shape: Any) -> tuple[int, ...]:
        s = list(shape)
        if len(s) > axis:
            s.insert(1, s.pop(axis))
        return tuple(s)

    c.check_target_dims(first(x.shape), first(t.shape) if t.ndim == x.ndim else tuple(t.shape), hint=False)


@loss_function(
    opmath=c.IN_BODY,
    static_argnames=("iter_", "reduction", "other_act", "axis"),
    bools=("include_background", "to_onehot_y", "sigmoid", "softmax"),
    numbers={
        "alpha": Number(lambda v: (v >= 0.0) & (v <= 1.0), "alpha must be in [0, 1] but got {}."),
        "smooth_nr": Number(),
        "smooth_dr": Number(),
        "smooth": _SMOOTH,
    },
    arrays={"input": "float", "target": "label"},
    reductions=c.REDUCTIONS,
    reduction_message=c.REDUCTION_MESSAGE,
    check_options=c.check_options,
    precheck=_precheck_dice_cl,
    module="SoftDiceclDiceLoss",
    torch="monai.losses.SoftDiceclDiceLoss",
)
def soft_dicecl_dice_loss(
    input: Array,
    target: Array,
    iter_: int = 3,
    alpha: float | Array = 0.5,
    smooth_nr: float | Array = 1.0,
    smooth_dr: float | Array = 1.0,
    smooth: float | Array = 1e-4,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool = False,
    other_act: Callable[[Array], Array] | None = None,
    reduction: str = "mean",
    axis: int = 1,
) -> Array:
    r"""Dice plus centreline Dice: ``monai.losses.SoftDiceclDiceLoss``.

    .. math:: (1 - \alpha)\, \mathrm{dice\_loss}(x, y) + \alpha\, \mathrm{softcl\_dice\_loss}(x, y)

    Both parts share the activation, ``include_background``, ``smooth_nr`` / ``smooth_dr``
    (default 1.0 here, as in MONAI) and ``reduction``; the target is one-hot encoded once.
    With ``reduction='none'`` MONAI adds the Dice ``(B, C, 1, 1)`` to the clDice ``(B,)``, a
    broadcast that only works for some shapes; so does this (same error otherwise).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> g = jnp.zeros((1, 1, 5, 5)).at[0, 0, 2, :].set(1.0)
        >>> round(float(jm.soft_dicecl_dice_loss(g * 0.9, g)), 4)
        0.0456
    """
    x = c.to_channels_first(input, axis)
    y = c.to_channels_first(target, axis)
    n = x.shape[1]
    y, bad = c.prepare_target(y, n, to_onehot_y, None)
    x = c.poison_input(x, bad)
    p = activate_work(x, y, False, sigmoid, softmax, other_act, None)
    dice = dice_from_probs(
        p, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=False, squared_pred=False, jaccard=False,
        reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=False, weight=None,
        soft_label=False, ignore_index=None,
    )
    cl = cl_dice_from_probs(p, y, in_dtype=input.dtype, include_background=include_background, to_onehot_y=False, iter_=iter_,
                            smooth_nr=smooth_nr, smooth_dr=smooth_dr, smooth=smooth, reduction=reduction)
    total = ((1.0 - alpha) * dice + alpha * cl).astype(jnp.result_type(dice, cl))
    return c.poison_all(total, bad)
