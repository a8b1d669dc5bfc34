"""smp's overlap losses: ``DiceLoss``, ``JaccardLoss``, ``TverskyLoss`` (one Tversky core).

For predictions ``p`` and targets ``t`` flattened to ``(N, C, P)`` and summed over the batch and
the pixels (per class ``c``), smp 0.6 computes

.. math::
    I_c = \\tfrac12 \\left(\\textstyle\\sum p + \\sum t - \\sum |p - t|\\right), \\quad
    FP_c = \\textstyle\\sum p - I_c, \\quad FN_c = \\sum t - I_c, \\qquad
    s_c = \\frac{I_c + \\text{smooth}}{\\max(I_c + \\alpha FP_c + \\beta FN_c + \\text{smooth}, \\text{eps})}

(``I = sum(p t)`` for hard targets), the loss ``1 - s_c`` (``-log(max(s_c, eps))`` with
``log_loss``), zero for a class with no target pixel, then the mean over ``classes`` (or the
``class_weights``-weighted mean). Dice is ``alpha = beta = 0.5``, Jaccard ``alpha = beta = 1``;
Tversky raises the mean to ``gamma``.

Documented deviation (tested in ``tests/test_smp.py``, judged against float64 by the parity
suite): Tversky with ``gamma < 1`` and no target pixel in any class has gradient 0 here, NaN in
smp (see :func:`tversky_loss`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._checked import poison, poison_gradient, value_check
from jaxloss._dtypes import Array, opmath_dtype
from jaxloss._jvp import abs, clamp_min
from jaxloss._registry import Number, loss_function
from jaxloss._shapes import shape_str
from jaxloss.binary import _pow_scalar
from jaxloss.smp._common import (
    BINARY_MODE,
    IN_BODY,
    MULTICLASS_MODE,
    check_ignore_index,
    class_indices,
    class_weight_array,
    mode_check,
    select_classes,
    weighted_mean,
)


def _region_options(name: str, cls: str) -> dict[str, Any]:
    def check(values: dict[str, Any]) -> None:  # the options alone: the class's constructor runs it too
        if values["class_weights"] is not None and values["mode"] == BINARY_MODE:
            raise ValueError("class_weights are not supported with mode=binary")
        if values["classes"] is not None and values["mode"] == BINARY_MODE:
            raise ValueError("Masking classes is not supported with mode=binary")
        class_indices(name, values["classes"])
        class_weight_array(name, values["class_weights"])
        check_ignore_index(name, values)

    def precheck(values: dict[str, Any]) -> None:
        values["classes"] = class_indices(name, values["classes"])
        values["class_weights"] = class_weight_array(name, values["class_weights"])

    numbers = {"smooth": Number(), "eps": Number()}
    if name == "tversky_loss":
        numbers.update(alpha=Number(), beta=Number(), gamma=Number())
    return {
        "opmath": IN_BODY,
        "static_argnames": ("mode", "classes", "ignore_index"),
        "bools": ("log_loss", "from_logits"),
        "numbers": numbers,
        "arrays": {"y_pred": "float", "y_true": "label"},
        "reductions": None,
        "check_options": mode_check(name, check),
        "precheck": precheck,
        "module": cls,
        "forward": ("y_pred", "y_true"),
    }


def _probabilities(y_pred: Array, mode: str) -> Array:
    """smp's ``log_softmax(dim=1).exp()`` (multiclass) or ``logsigmoid(x).exp()``."""
    if mode == MULTICLASS_MODE:
        return jnp.exp(jax.nn.log_softmax(y_pred, axis=1))
    return jnp.exp(jax.nn.log_sigmoid(y_pred))


def _one_hot_target(y_true: Array, n_classes: int, ignore_index: int | None) -> tuple[Array, Array, Array]:
    """Multiclass targets ``(N, P)`` as smp's one-hot ``(N, C, P)``; returns ``(one_hot, mask, bad)``.

    ``bad``: a (non-ignored) label outside ``[0, C)``, where torch's ``one_hot`` raises."""
    if jnp.issubdtype(y_true.dtype, jnp.floating) and ignore_index is None:
        raise TypeError("one_hot is only applicable to index tensor.")
    if ignore_index is None:
        mask = jnp.ones(y_true.shape, bool)
        labels = y_true
    else:
        mask = y_true != ignore_index
        labels = jnp.where(mask, y_true, 0)
        if jnp.issubdtype(labels.dtype, jnp.floating):  # smp: (y_true * mask).to(torch.long) truncates
            labels = jnp.trunc(labels)
    value_check(labels < n_classes, "Class values must be smaller than num_classes.")
    value_check(labels >= 0, "Class values must be non-negative.")
    bad = jnp.any((labels < 0) | (labels >= n_classes))
    one_hot = labels[:, None, :] == jnp.arange(n_classes).reshape(1, -1, 1)
    return one_hot & mask[:, None, :], mask, bad


def _flatten(y_pred: Array, y_true: Array, mode: str, ignore_index: int | None) -> tuple[Array, Array, Array, Array]:
    """``(p, t, t_raw, bad)``: prediction and target ``(N, C, P)`` as smp reshapes and masks them;
    ``t_raw`` in the target's own dtype (smp tests ``t.sum() > 0`` on it)."""
    bs, n_classes = y_true.shape[0], y_pred.shape[1]
    bad = jnp.zeros((), bool)
    if mode == MULTICLASS_MODE:
        p = y_pred.reshape(bs, n_classes, -1)
        t_raw, mask, bad = _one_hot_target(y_true.reshape(bs, -1), n_classes, ignore_index)
        if ignore_index is not None:
            p = p * mask[:, None, :].astype(p.dtype)
        t_raw = t_raw.astype(jnp.int32)
    else:
        channels = 1 if mode == BINARY_MODE else n_classes
        if y_true.size % (bs * channels):
            raise ValueError(f"shape '[{bs}, {channels}, -1]' is invalid for input of size {y_true.size}")
        t_raw = y_true.reshape(bs, channels, -1)
        p = y_pred.reshape(bs, channels, -1)
        if ignore_index is not None:
            mask = t_raw != ignore_index
            p = p * mask.astype(p.dtype)
            t_raw = t_raw * mask.astype(t_raw.dtype)
    if p.shape != t_raw.shape:  # smp: assert output.size() == target.size()
        raise ValueError(f"y_pred and y_true must give the same {mode} shape (N, C, H*W): y_pred gives "
                         f"{shape_str(p.shape)}, y_true {shape_str(t_raw.shape)}")
    return p, t_raw.astype(p.dtype), t_raw, bad


def tversky_score(p: Array, t: Array, alpha: Any, beta: Any, smooth: Any, eps: Any) -> Array:
    """smp's ``soft_tversky_score`` over the batch and pixel axes of ``(N, C, P)``: ``(C,)``."""
    p_sum, t_sum = jnp.sum(p, axis=(0, 2)), jnp.sum(t, axis=(0, 2))
    difference = jnp.sum(abs(p - t), axis=(0, 2))  # torch's L1 norm: gradient sign(p - t), 0 at a tie
    intersection = (p_sum + t_sum - difference) / 2
    fp, fn = p_sum - intersection, t_sum - intersection
    return (intersection + smooth) / clamp_min(intersection + alpha * fp + beta * fn + smooth, eps)


def _without_empty_classes(loss: Array, has_target: Array) -> Array:
    """smp's ``loss * (t.sum() > 0)``: no loss for a class with no target pixel.

    The value is smp's product (``NaN * 0`` stays NaN); the gradient of such a class is exactly
    0, through a select. A product would give ``0 * inf = NaN`` when ``gamma < 1`` meets a mean
    of 0 (``pow``'s slope at 0 is infinite), and XLA rewrites a product with a converted boolean
    into a select inside one jitted program: the same call then gave NaN called directly and 0
    inside an outer ``jax.jit``. With every class empty the loss is 0 for every ``y_pred``, so
    0 is the true gradient (smp's NaN is the chain rule's ``0 * inf``).
    """
    return jnp.where(has_target, loss, jax.lax.stop_gradient(loss) * 0)


def _region_loss(
    y_pred: Array, y_true: Array, mode: str, classes: tuple[int, ...] | None, log_loss: bool, from_logits: bool,
    smooth: Any, ignore_index: int | None, eps: Any, class_weights: Array | None,
    alpha: Any, beta: Any, gamma: Any = None,
) -> Array:  # fmt: skip
    if y_pred.ndim < 2:
        raise ValueError(f"y_pred must have shape (N, C, *), got {shape_str(y_pred.shape)}")
    if y_true.ndim < 1 or y_true.shape[0] != y_pred.shape[0]:  # smp: assert y_true.size(0) == y_pred.size(0)
        raise ValueError(f"y_true and y_pred must have the same batch size, got {shape_str(y_true.shape)} "
                         f"and {shape_str(y_pred.shape)}")
    out_dtype = y_pred.dtype if class_weights is None else jnp.promote_types(y_pred.dtype, jnp.float32)
    x = y_pred.astype(opmath_dtype(y_pred.dtype))
    if from_logits:
        x = _probabilities(x, mode)
    p, t, t_raw, bad = _flatten(x, y_true, mode, ignore_index)
    # a non-finite prediction (NaN logit) poisons the gradient: the select below would pass 0 back
    p = poison_gradient(p, bad | ~jnp.all(jnp.isfinite(p)))
    score = tversky_score(p, t, alpha, beta, smooth, eps)
    loss = -jnp.log(clamp_min(score, eps)) if log_loss else 1.0 - score
    loss = _without_empty_classes(loss, jnp.sum(t_raw, axis=(0, 2)) > 0)
    loss = select_classes(loss, classes)
    out = weighted_mean(loss, class_weights, classes)
    if gamma is not None:
        out = _pow_scalar(out, jnp.asarray(gamma, out.dtype))
    return poison(out, bad).astype(out_dtype)


_DOC_ARGS = """
    Args:
        y_pred: ``(N, C, *)``: logits (``from_logits=True``) or probabilities; ``C = 1`` for
            ``'binary'``.
        y_true: ``(N, *)`` class indices (``'multiclass'``: any integer dtype; a float target is
            truncated where smp converts it, with ``ignore_index``), or ``(N, *)`` / ``(N, 1, *)``
            (``'binary'``) / ``(N, C, *)`` (``'multilabel'``) 0-1 targets, hard or soft, any dtype.
        mode: ``'binary'`` | ``'multiclass'`` | ``'multilabel'`` (static).
        classes: class indices whose losses are averaged (static; default all). Not with ``'binary'``.
        log_loss: ``-log(max(score, eps))`` instead of ``1 - score``.
        from_logits: apply softmax (``'multiclass'``) or sigmoid first, as smp does.
        smooth: added to numerator and denominator (traced).
        ignore_index: target value whose pixels are left out (static; default none).
        eps: the denominator's lower bound (traced).
        class_weights: per-class weights of the mean (not with ``'binary'``), held in float32 as smp
            does (a float16 / bfloat16 ``y_pred`` then gives a float32 result)."""

_DOC_COMMON = """
    Returns:
        A scalar in ``y_pred``'s dtype (float16 / bfloat16 computed in float32, where smp computes in
        half precision: within the half-precision tolerances of the parity suite).

    A ``'multiclass'`` label outside ``[0, C)`` that is not ``ignore_index`` makes value and gradient
    NaN; ``jaxloss.smp.checked.{name}`` raises torch's ``one_hot`` message ("Class values must be
    smaller than num_classes." / "Class values must be non-negative.") instead. smp's bare
    ``assert`` s (mode, batch size, matching shapes) are ``ValueError`` s here, with a message."""


@loss_function(**_region_options("dice_loss", "DiceLoss"))
def dice_loss(
    y_pred: Array,
    y_true: Array,
    mode: str,
    classes: Any = None,
    log_loss: bool = False,
    from_logits: bool = True,
    smooth: float | Array = 0.0,
    ignore_index: int | None = None,
    eps: float | Array = 1e-7,
    class_weights: Any = None,
) -> Array:
    """smp's ``DiceLoss(mode, ...)(y_pred, y_true)``: the Tversky core with ``alpha = beta = 0.5``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 3.0]]]])  # (N=1, C=1, 2, 2)
        >>> target = jnp.array([[[1, 0], [0, 1]]])
        >>> round(float(smp.dice_loss(logits, target, "binary")), 4)
        0.2239
        >>> round(float(smp.dice_loss(logits, target, "binary", log_loss=True)), 4)
        0.2535
    """
    return _region_loss(y_pred, y_true, mode, classes, log_loss, from_logits, smooth, ignore_index, eps,
                        class_weights, 0.5, 0.5)


@loss_function(**_region_options("jaccard_loss", "JaccardLoss"))
def jaccard_loss(
    y_pred: Array,
    y_true: Array,
    mode: str,
    classes: Any = None,
    log_loss: bool = False,
    from_logits: bool = True,
    smooth: float | Array = 0.0,
    ignore_index: int | None = None,
    eps: float | Array = 1e-7,
    class_weights: Any = None,
) -> Array:
    """smp's ``JaccardLoss(mode, ...)(y_pred, y_true)`` (IoU loss): the Tversky core with ``alpha = beta = 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits = jnp.zeros((1, 3, 2, 2))  # uniform: p = 1/3 everywhere
        >>> target = jnp.array([[[0, 1], [2, 2]]])
        >>> round(float(smp.jaccard_loss(logits, target, "multiclass")), 4)
        0.8056
    """
    return _region_loss(y_pred, y_true, mode, classes, log_loss, from_logits, smooth, ignore_index, eps,
                        class_weights, 1.0, 1.0)


@loss_function(**_region_options("tversky_loss", "TverskyLoss"))
def tversky_loss(
    y_pred: Array,
    y_true: Array,
    mode: str,
    classes: Any = None,
    log_loss: bool = False,
    from_logits: bool = True,
    smooth: float | Array = 0.0,
    ignore_index: int | None = None,
    eps: float | Array = 1e-7,
    alpha: float | Array = 0.5,
    beta: float | Array = 0.5,
    gamma: float | Array = 1.0,
    class_weights: Any = None,
) -> Array:
    """smp's ``TverskyLoss(mode, ...)(y_pred, y_true)``: false positives weighted by ``alpha``,
    false negatives by ``beta`` (traced), the class mean raised to ``gamma`` (traced, torch's
    ``pow`` gradient). ``alpha = beta = 0.5, gamma = 1`` is :func:`dice_loss`.

    Deviation: with ``gamma < 1`` and no target pixel in any class (an all-background binary or
    multilabel batch) the loss is 0 for every ``y_pred`` and jaxloss's gradient is 0, in every
    context (called directly or inside ``jax.jit``); smp's is NaN (torch's ``pow`` slope at 0,
    infinite, times the empty-class mask's 0). Where the mean is 0 because the predictions are
    exact, the gradient is truly infinite and NaN / inf as smp's.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 3.0]]]])
        >>> target = jnp.array([[[1, 0], [0, 1]]])
        >>> round(float(smp.tversky_loss(logits, target, "binary", alpha=0.3, beta=0.7)), 4)
        0.1732
        >>> round(float(smp.tversky_loss(logits, target, "binary", alpha=0.7, beta=0.3, gamma=2.0)), 4)
        0.0723
    """
    return _region_loss(y_pred, y_true, mode, classes, log_loss, from_logits, smooth, ignore_index, eps,
                        class_weights, alpha, beta, gamma)


for _fn in (dice_loss, jaccard_loss, tversky_loss):
    _fn.__doc__ = _fn.__doc__.replace("\n    Example:", _DOC_ARGS + "\n" + _DOC_COMMON.format(name=_fn.__name__)
                                      + "\n\n    Example:", 1)
