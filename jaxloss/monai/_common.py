"""What MONAI's segmentation losses share: option checks, the channel axis, activations, one-hot
targets, the ``ignore_index`` mask and the soft true-positive / false-positive / false-negative sums.

Everything here is private to :mod:`jaxloss.monai`. Arrays reaching these helpers are in MONAI's
layout, classes on axis 1 (``(B, C, *spatial)``); the public functions move a channels-last
``axis`` there first (:func:`to_channels_first`). Messages are MONAI 1.6.1's, word for word.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss._checked import poison, poison_gradient, value_check
from jaxloss._dtypes import Array, opmath_dtype
from jaxloss._jvp import abs as abs_
from jaxloss._registry import InBody, Number

REDUCTIONS = ("none", "mean", "sum")
# the order MONAI's enums list their options in (its message prints a Python set, whose order varies)
DICE_CE_REDUCTIONS = ("mean", "sum")
W_TYPES = ("simple", "square", "uniform")


class ShapeError(ValueError, AssertionError):
    """A shape MONAI refuses with an ``AssertionError`` (``ground truth has different shape``, the
    one-hot channel): raised as both, so ``except ValueError`` (jaxloss) and ``except
    AssertionError`` (code ported from MONAI) both catch it.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> try:
        ...     jm.dice_loss(jnp.zeros((1, 2, 3)), jnp.zeros((1, 1, 3)))
        ... except AssertionError as e:
        ...     print(type(e).__name__, isinstance(e, ValueError))
        ShapeError True
    """


# --------------------------------------------------------------------------- option checks
# ``monai.utils.LossReduction(reduction)``'s message, and ``look_up_option``'s for DiceCELoss
REDUCTION_MESSAGE = "{!r} is not a valid LossReduction"
DICE_CE_REDUCTION_MESSAGE = "Unsupported option {!r}, Available options are {{'mean', 'sum'}}.\n"


def check_option(value: Any, options: Sequence[str]) -> None:
    """``monai.utils.look_up_option``'s message for a string outside ``options``."""
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(f"Unsupported option {value!r}, Available options are {{{listed}}}.\n")


def check_options(values: dict[str, Any]) -> None:
    """The checks MONAI's constructors make (run on every call and by each class twin's
    constructor): the activation flags, ``w_type``, ``iter_``; ``weight`` / ``alpha`` in any
    form MONAI takes (number, sequence, array) become arrays."""
    if "sigmoid" in values:
        check_activation(values["sigmoid"], values["softmax"], values["other_act"])
    if "w_type" in values:
        check_option(values["w_type"], W_TYPES)
    if "iter_" in values:
        iter_ = values["iter_"]
        if not isinstance(iter_, int):
            raise TypeError(f"iter_ must be an integer but got {type(iter_).__name__}.")
        if iter_ < 0:
            raise ValueError(f"iter_ must be a non-negative integer but got {iter_}.")
    if "weight" in values:
        values["weight"] = as_array_option(values["weight"])


def check_focal_options(values: dict[str, Any]) -> None:
    """:func:`check_options` for the focal losses, whose ``alpha`` is a number or per-class array."""
    check_options(values)
    values["alpha"] = as_array_option(values["alpha"])


def check_activation(sigmoid: bool, softmax: bool, other_act: Any) -> None:
    """The activation checks of ``DiceLoss``, ``GeneralizedDiceLoss``, ``TverskyLoss`` and clDice."""
    check_other_act(other_act)
    if int(sigmoid) + int(softmax) + int(other_act is not None) > 1:
        raise ValueError("Incompatible values: more than 1 of [sigmoid=True, softmax=True, other_act is not None].")


def check_other_act(other_act: Any) -> None:
    if other_act is not None and not callable(other_act):
        raise TypeError(f"other_act must be None or callable but is {type(other_act).__name__}.")


def check_lambda(name: str) -> Any:
    """The range check of a trade-off weight (``lambda_dice``...), a traced :class:`Number`."""
    return Number(lambda v: v >= 0.0, f"{name} should be no less than 0.0.")


def as_array_option(value: Any) -> Any:
    """A ``weight`` / ``alpha`` as MONAI takes it (a number, a sequence, an array) as an array
    (``None`` stays ``None``): MONAI's ``torch.as_tensor``. Python numbers and sequences become
    float32 (torch's default dtype), so they never widen a float32 loss under ``jax_enable_x64``."""
    if value is None or isinstance(value, (jax.Array, np.ndarray)):
        return value
    if isinstance(value, (bool, str)):
        raise TypeError(f"expected a number, a sequence of numbers or an array, not {type(value).__name__}")
    return jnp.asarray(value, dtype=jnp.float32)


def concrete_min_check(value: Any, message: str) -> None:
    """MONAI's ``min() < 0`` check of a constructor weight, raised before tracing when the value
    is concrete (a traced weight is checked inside the trace: :func:`negative_poison`)."""
    if value is not None and not isinstance(value, jax.core.Tracer) and np.size(value) and np.min(np.asarray(value)) < 0:
        raise ValueError(message)


def negative_poison(out: Array, weight: Array, message: str) -> Array:
    """``out``, NaN in value and gradient where the (traced) ``weight`` has a negative entry."""
    bad = jnp.any(weight < 0)
    value_check(~bad, message)
    return poison(out, bad)


def warn_single_channel(option: str) -> None:
    warnings.warn(f"single channel prediction, `{option}=True` ignored.", stacklevel=4)


def torch_size(shape: Sequence[int]) -> str:
    """``torch.Size([2, 3, 4])``, as MONAI's messages print a shape."""
    return "torch.Size([" + ", ".join(str(int(d)) for d in shape) + "])"


# --------------------------------------------------------------------------- layout
def check_axis(ndim: int, axis: int) -> int:
    """``axis`` as a non-negative class axis of an ``ndim``-D input (at least 2-D: MONAI's ``BN...``)."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"axis must be int, not {type(axis).__name__}")
    if ndim < 2:
        raise ValueError(f"input must have a batch and a channel axis (BNH[WD]), got {ndim} dimensions")
    if not -ndim <= axis < ndim or axis % ndim == 0:
        raise ValueError(f"axis {axis} is not a channel axis of a {ndim}-D input (axis 0 is the batch)")
    return axis % ndim


def to_channels_first(x: Array | None, axis: int) -> Array | None:
    """``x`` with its channel ``axis`` moved to 1 (MONAI's layout); identity for ``axis == 1``."""
    if x is None or axis == 1 or x.ndim < 2:
        return x
    return jnp.moveaxis(x, axis, 1)


def from_channels_first(out: Array, axis: int, ndim: int) -> Array:
    """A result of the input's rank (``reduction='none'``) with its channels moved back to ``axis``."""
    if axis == 1 or out.ndim != ndim:
        return out
    return jnp.moveaxis(out, 1, axis)


# --------------------------------------------------------------------------- dtypes
def float_dtype(*arrays: Any) -> jnp.dtype:
    """torch's promotion of the floating arrays among ``arrays`` (integer and bool ones never
    widen a float: MONAI multiplies an int64 label map into a float32 prediction as float32)."""
    floats = [a for a in arrays if a is not None and jnp.issubdtype(jnp.result_type(a), jnp.floating)]
    return jnp.dtype(jnp.result_type(*floats)) if floats else jnp.dtype(jnp.float32)


def working(dtype: Any) -> jnp.dtype:
    """The dtype to compute in: float32 for float16 / bfloat16 (torch's opmath), else ``dtype``."""
    return opmath_dtype(dtype)


# --------------------------------------------------------------------------- activations
def activate(x: Array, sigmoid: bool, softmax: bool, other_act: Callable[[Array], Array] | None) -> Array:
    """MONAI's prediction activation: sigmoid, softmax over the channels (unless there is one),
    then ``other_act``."""
    if sigmoid:
        x = jax.nn.sigmoid(x)
    if softmax and x.shape[1] != 1:
        x = jax.nn.softmax(x, axis=1)
    if other_act is not None:
        x = other_act(x)
    return x


def warn_activation(n_pred_ch: int, softmax: bool) -> None:
    if softmax and n_pred_ch == 1:
        warn_single_channel("softmax")


# --------------------------------------------------------------------------- targets
def check_one_hot_target(target_shape: Sequence[int]) -> None:
    """``monai.networks.one_hot``'s check: the label map has one channel."""
    if len(target_shape) < 2 or target_shape[1] != 1:
        raise ShapeError("labels should have a channel with length equal to one.")


def label_index(labels: Array, n_classes: int) -> tuple[Array, Array]:
    """The class index of a label map as ``monai.networks.one_hot`` reads it (floats truncated
    toward zero, as ``labels.long()``) and the flag of a label outside ``[0, C)`` anywhere,
    where MONAI's ``scatter_`` raises ``index {t} is out of bounds ...`` (raised here in
    checked mode; the caller makes the result NaN)."""
    index = labels if jnp.issubdtype(labels.dtype, jnp.integer) else jnp.trunc(labels)
    bad = (index < 0) | (index >= n_classes) | (jnp.isnan(labels) if jnp.issubdtype(labels.dtype, jnp.floating) else False)
    first = jnp.ravel(index)[jnp.argmax(jnp.ravel(bad))] if labels.size else jnp.zeros((), index.dtype)
    value_check(~jnp.any(bad), f"index {{}} is out of bounds for dimension 1 with size {n_classes}", first)
    return index, jnp.any(bad)


def one_hot(labels: Array, n_classes: int) -> tuple[Array, Array]:
    """``monai.networks.one_hot(labels, n_classes)``: float32 ``(B, C, ...)`` from ``(B, 1, ...)``
    labels, and :func:`label_index`'s flag of labels outside ``[0, C)``."""
    index, bad = label_index(labels, n_classes)
    classes = jnp.arange(n_classes).reshape((1, n_classes) + (1,) * (labels.ndim - 2))
    return (index == classes).astype(jnp.float32), bad


def ignore_mask(target: Array, ignore_index: int | None) -> Array | None:
    """``monai.metrics.utils.create_ignore_mask``: ``(B, 1, ...)``, 0 where ignored; float32,
    except for a one-hot target's valid class, ``1 - target[:, i]``, in the target's dtype when
    it is a float (a float16 one-hot target keeps the loss in float16, as MONAI's)."""
    if ignore_index is None:
        return None
    if target.shape[1] == 1:
        return (target != ignore_index).astype(jnp.float32)
    if 0 <= ignore_index < target.shape[1]:
        kept = target[:, ignore_index : ignore_index + 1]
        return 1 - (kept if jnp.issubdtype(kept.dtype, jnp.floating) else kept.astype(jnp.float32))
    return (jnp.sum(target, axis=1, keepdims=True) > 0).astype(jnp.float32)


def ignore_dtypes(target: Array, ignore_index: int | None) -> list[Array]:
    """:func:`ignore_mask`'s dtype as it enters torch's result-dtype promotion (a zero of it;
    ``[]`` without ``ignore_index``)."""
    mask = ignore_mask(target, ignore_index)
    return [] if mask is None else [jnp.zeros((), mask.dtype)]


def prepare_target(
    target: Array, n_pred_ch: int, to_onehot_y: bool, ignore_index: int | None
) -> tuple[Array, Array | None]:
    """The target after MONAI's ``to_onehot_y`` step (``ignore_index`` labels outside ``[0, C)``
    set to 0 first, as MONAI does) and the flag of out-of-range labels (``None``: none possible)."""
    if not to_onehot_y or n_pred_ch == 1:
        return target, None
    check_one_hot_target(target.shape)
    if ignore_index is not None and not 0 <= ignore_index < n_pred_ch:
        target = jnp.where(target == ignore_index, jnp.zeros_like(target), target)
    return one_hot(target, n_pred_ch)


def warn_target_options(n_pred_ch: int, to_onehot_y: bool, include_background: bool) -> None:
    if n_pred_ch == 1:
        if to_onehot_y:
            warn_single_channel("to_onehot_y")
        if not include_background:
            warnings.warn("single channel prediction, `include_background=False` ignored.", stacklevel=4)


def drop_background(x: Array, include_background: bool, n_pred_ch: int) -> Array:
    return x if include_background or n_pred_ch == 1 else x[:, 1:]


def check_same_shape(target: Array, input: Array, word: str = "different", error: type = ShapeError) -> None:
    if target.shape != input.shape:
        raise error(
            f"ground truth has {word} shape ({torch_size(target.shape)}) from input ({torch_size(input.shape)})"
        )


def check_target_dims(input_shape: Sequence[int], target_shape: Sequence[int], hint: bool = True) -> None:
    """The ``dim`` / channel checks of MONAI's combined losses (``DiceCELoss``, ``DiceFocalLoss``,
    ``GeneralizedDiceFocalLoss``; ``hint=False``: ``SoftDiceclDiceLoss``'s shorter wording)."""
    i, t = torch_size(input_shape), torch_size(target_shape)
    if len(input_shape) != len(target_shape):
        if hint:
            raise ValueError(
                "the number of dimensions for input and target should be the same, "
                f"got shape {i} (nb dims: {len(input_shape)}) and {t} (nb dims: {len(target_shape)}). "
                "if target is not one-hot encoded, please provide a tensor with shape B1H[WD]."
            )
        raise ValueError(f"the number of dimensions for input and target should be the same, got shape {i} and {t}.")
    if target_shape[1] != 1 and target_shape[1] != input_shape[1]:
        if hint:
            raise ValueError(
                "number of channels for target is neither 1 (without one-hot encoding) nor the same as input, "
                f"got shape {i} and {t}."
            )
        raise ValueError(f"number of channels for target is neither 1 nor the same as input, got shape {i} and {t}.")


def poison_all(out: Array, bad: Array | None) -> Array:
    """``out`` NaN in value (and so in every gradient through it) where ``bad``."""
    return out if bad is None else poison(out, bad)


def poison_input(x: Array, bad: Array | None) -> Array:
    """``x``, its gradient NaN where ``bad``: a masked or clamped path cannot drop the NaN."""
    return x if bad is None else poison_gradient(x, bad)


# --------------------------------------------------------------------------- overlap sums
def tp_fp_fn(
    p: Array, g: Array, axes: tuple[int, ...], order: int, soft_label: bool, decoupled: bool = True
) -> tuple[Array, Array, Array]:
    r"""MONAI's ``compute_tp_fp_fn``: soft true positives, false positives, false negatives.

    Hard-label L1 (``order=1``, ``soft_label=False``): ``tp = sum(p g)``, then ``fp = sum(p) - tp``,
    ``fn = sum(g) - tp`` (``decoupled``, Dice) or ``fp = sum(p (1 - g))``, ``fn = sum((1 - p) g)``
    (Tversky). Otherwise (squared predictions, soft labels) the norms' form
    :math:`tp = (\|p\|^o + \|g\|^o - \|p - g\|^o) / 2`, equal for hard labels in exact arithmetic
    but cancelling in floating point (MONAI's formula, kept for the same numbers); ``|.|`` has
    torch's gradient 0 at 0.
    """
    if order == 1 and not soft_label:
        tp = jnp.sum(p * g, axis=axes)
        if decoupled:
            return tp, jnp.sum(p, axis=axes) - tp, jnp.sum(g, axis=axes) - tp
        return tp, jnp.sum(p * (1 - g), axis=axes), jnp.sum((1 - p) * g, axis=axes)
    if order == 1:
        po, go, d = (jnp.sum(abs_(v), axis=axes) for v in (p, g, p - g))
    else:
        po, go, d = (jnp.sum(v * v, axis=axes) for v in (p, g, p - g))
    tp = (po + go - d) / 2
    return tp, po - tp, go - tp


def reduce(f: Array, reduction: str) -> Array:
    """``'mean'`` / ``'sum'`` over every element; ``'none'`` unchanged."""
    if reduction == "mean":
        return jnp.mean(f)
    if reduction == "sum":
        return jnp.sum(f)
    return f


def broadcastable(f: Array, ndim: int) -> Array:
    """Dice's ``'none'`` result: ``f``'s first two dimensions, then ones to the input's rank."""
    return f.reshape(tuple(f.shape[0:2]) + (1,) * (ndim - 2))


# The dtype rule every MONAI loss declares: MONAI casts at its own points (a float32 focal result,
# float32 class volumes), not torch's opmath round trip; the bodies mirror them.
IN_BODY = InBody("MONAI computes in the input dtype and casts at its own points (see the module docstring)")
