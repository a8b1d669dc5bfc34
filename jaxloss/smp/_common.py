"""What the smp losses share: the mode, the option checks and the per-class aggregation.

Every public loss of :mod:`jaxloss.smp` is registered with :func:`jaxloss._registry.loss_function`
in the namespace ``jaxloss.smp`` (``jaxloss.smp.focal_loss`` is not ``jaxloss.focal_loss``); its
class twin is built by :func:`jaxloss._registry.module_class` in :mod:`jaxloss.smp`, its checked
twin is ``jaxloss.smp.checked.<name>``.

smp's constructors take ``mode`` as a required argument, and so do the functions and the class
twins here (first after the forward arguments, positional, without a default): leaving it out
raises Python's ``TypeError`` (``DiceLoss.__init__() missing 1 required positional argument:
'mode'``, as smp's constructor does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss._registry import InBody

BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE = "binary", "multiclass", "multilabel"
MODES = (BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE)


def check_mode(fname: str, mode: Any) -> str:
    """smp's ``assert mode in {BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE}``, with a message
    (a missing ``mode`` is Python's own ``TypeError``: it is a required argument)."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be 'binary', 'multiclass' or 'multilabel', got {mode!r}")
    return mode


def mode_check(fname: str, extra: Callable[[dict[str, Any]], None] | None = None) -> Callable[[dict[str, Any]], None]:
    """A ``check_options`` of a loss with a ``mode`` (run by the function and the class's constructor)."""

    def check(values: dict[str, Any]) -> None:
        check_mode(fname, values["mode"])
        if extra is not None:
            extra(values)

    return check


def check_ignore_index(fname: str, values: dict[str, Any]) -> None:
    value = values["ignore_index"]
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
        raise TypeError(f"{fname}(): argument 'ignore_index' must be int or None, not {type(value).__name__}")


def optional_number(fname: str, name: str, value: Any) -> Any:
    """An option smp lets be ``None`` or a number: ``None``, a Python float, or a 0-d array (traced)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fname}(): argument '{name}' must be float or None, not bool")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0 and jnp.issubdtype(value.dtype, jnp.number):
        return value
    raise TypeError(f"{fname}(): argument '{name}' must be float or None, not {type(value).__name__}")


def class_indices(fname: str, classes: Any) -> tuple[int, ...] | None:
    """``classes`` (a list / tuple / array of class indices) as a hashable tuple (a static option)."""
    if classes is None:
        return None
    values = np.asarray(classes)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise TypeError(f"{fname}(): argument 'classes' must be a list of class indices, got {classes!r}")
    return tuple(int(c) for c in values)


def class_weight_array(fname: str, weights: Any) -> jax.Array | None:
    """``class_weights`` as smp holds them: a float32 array (``to_tensor(..., dtype=torch.float)``),
    so a float64 loss is weighted by float32-rounded weights and a half one returns float32."""
    if weights is None:
        return None
    if isinstance(weights, (str, bytes, dict)):
        raise TypeError(f"{fname}(): argument 'class_weights' must be a list of numbers, not {type(weights).__name__}")
    w = jnp.asarray(weights)
    if w.ndim != 1:
        raise ValueError(f"{fname}(): class_weights must be a list of numbers, got shape {tuple(w.shape)}")
    return w.astype(jnp.float32)


def select_classes(loss: jax.Array, classes: Sequence[int] | None, what: str = "loss") -> jax.Array:
    """``loss[classes]`` (torch's indexing of dimension 0, negative indices allowed), checked
    before tracing with torch's ``IndexError``."""
    if classes is None:
        return loss
    n = loss.shape[0]
    for c in classes:
        if not -n <= c < n:
            raise IndexError(f"index {c} is out of bounds for dimension 0 with size {n}")
    return loss[jnp.asarray([c % n for c in classes], dtype=jnp.int32)]


def weighted_mean(loss: jax.Array, weights: jax.Array | None, classes: Sequence[int] | None) -> jax.Array:
    """smp's aggregation of per-class losses: ``mean``, or ``sum(loss * w) / sum(w)`` with class
    weights (selected by ``classes`` too); with float32 weights the result is promoted as torch does."""
    if weights is None:
        return jnp.mean(loss)
    w = select_classes(weights, classes, "class_weights")
    if w.shape != loss.shape and w.shape != (1,) and loss.shape != (1,):
        raise ValueError(f"The size of tensor a ({loss.shape[0]}) must match the size of tensor b "
                         f"({w.shape[0]}) at non-singleton dimension 0")
    dtype = jnp.promote_types(loss.dtype, w.dtype)
    return jnp.sum(loss.astype(dtype) * w.astype(dtype)) / jnp.sum(w.astype(dtype))


# The dtype rule every smp loss declares: smp casts at its own points (``.float()`` /
# ``.type_as`` on some intermediates), not torch's opmath round trip; the bodies mirror them.
IN_BODY = InBody("smp computes in the input dtype and casts at its own points (see the module docstring)")
