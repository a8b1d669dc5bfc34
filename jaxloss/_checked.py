"""Invalid values: checked mode (:func:`value_check`) and the NaN poisoning of the fast mode.

jit cannot raise on a bad *value* (a class index out of range, a probability outside [0, 1]):
the fast mode poisons the result with NaN, in value and gradient (:func:`poison`,
:func:`poison_gradient`), and records the check with :func:`value_check`, which raises torch's
message under :mod:`jaxloss.checked`.
"""

from __future__ import annotations

import contextvars
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jaxloss._dtypes import Array, ArrayLike

_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxloss_checked", default=False)


def value_check(pred: ArrayLike, message: str, *fmt_args: ArrayLike) -> None:
    """Record a run-time value check (``pred`` must be all True).

    A no-op in the default (fast) mode, where the caller must instead make the
    result NaN for an invalid value. In :mod:`jaxloss.checked` it becomes a
    ``checkify.check`` that raises ``message`` (formatted with ``fmt_args``,
    ``{}`` placeholders as in :func:`jax.experimental.checkify.check`).
    """
    if _CHECKED.get():
        checkify.check(jnp.all(pred), message, *fmt_args)


def checked_mode() -> contextvars.Token[bool]:
    """Turn checked mode on for the current trace; pass the token to ``reset``."""
    return _CHECKED.set(True)


def reset_checked_mode(token: contextvars.Token[bool]) -> None:
    _CHECKED.reset(token)


def poison(x: Array, invalid: Array) -> Array:
    """``x``, NaN where ``invalid`` in value *and* in the gradient flowing back through ``x``
    (a product with NaN; a select would pass a finite gradient to the rest of ``x``)."""
    return x * jnp.where(invalid, jnp.asarray(jnp.nan, dtype=x.dtype), jnp.asarray(1, dtype=x.dtype))


@jax.custom_jvp
def poison_gradient(x: Array, invalid: Array) -> Array:
    """``x`` itself in value; its gradient (every tangent through it) NaN where ``invalid``.

    Applied to a loss's inputs, it makes their gradients NaN even where the loss's own graph
    passes none back (a hinge at ``-inf``), without a copy of the inputs in the forward pass
    (a product with NaN would copy e.g. ``linear_cross_entropy``'s weight matrix).
    """
    return x


@poison_gradient.defjvp
def _poison_gradient_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, invalid = primals
    return x, poison(tangents[0], invalid)


def first_bad(bad: Array, x: Array) -> Array:
    """The first entry of ``x`` where ``bad`` (for error messages); 0 for an empty ``x``,
    where nothing can be bad."""
    flat = jnp.ravel(x)
    if flat.size == 0:
        return jnp.zeros((), flat.dtype)
    return flat[jnp.argmax(jnp.ravel(bad))]


def nan_where(invalid: Array, x: Array) -> Array:
    """Replace entries of ``x`` by NaN where ``invalid`` (poisoning for bad values)."""
    return jnp.where(invalid, jnp.asarray(jnp.nan, dtype=x.dtype), x)
