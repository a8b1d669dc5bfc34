"""Checked mode: every jaxloss function, raising torch's error on invalid *values*.

The default functions cannot raise inside ``jax.jit`` on a bad value (a class
index out of range, a probability outside [0, 1], a negative variance, target
lengths longer than the input, a traced option out of its range); they return
NaN there instead. The functions of this module trace the same code under
:func:`jax.experimental.checkify.checkify` with every
:func:`jaxloss._checked.value_check` turned on, and raise ``ValueError`` with
torch's message when a check fails. Called on concrete arrays they sync with the
host once per call (to raise), so use them while porting or debugging, not in a
training step.

They compose with ``jax.jit``, ``jax.vmap`` and ``jax.grad``: under a
transformation the error is functionalised by ``checkify`` and raised by a host
callback when the result is computed (under ``jit`` as a ``JaxRuntimeError``
whose message contains torch's, e.g. ``Target 7 is out of bounds.``).

>>> import jax, jax.numpy as jnp
>>> import jaxloss.checked as checked
>>> logits = jnp.zeros((2, 3))
>>> round(float(checked.cross_entropy(logits, jnp.array([0, 2]))), 4)
1.0986
>>> checked.cross_entropy(logits, jnp.array([0, 7]))
Traceback (most recent call last):
    ...
ValueError: Target 7 is out of bounds.
>>> round(float(jax.jit(checked.cross_entropy)(logits, jnp.array([0, 2]))), 4)
1.0986
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.experimental import checkify

import jaxloss  # noqa: F401  (imports every loss module so the registry is full)
from jaxloss import _checked, _registry

_CACHE: dict[str, Callable[..., Any]] = {}


def _message(err: checkify.Error) -> str | None:
    message = err.get()
    return None if message is None else message.split(" (`check` failed")[0].strip()


def _raise_if_failed(err: checkify.Error) -> None:
    message = _message(err)
    if message is not None:
        raise ValueError(message)


def _make_checked(name: str, namespace: str = "jaxloss") -> Callable[..., Any]:
    spec = _registry.registered(namespace)[name]
    body = spec.checked_body()

    def with_checks(values: dict[str, Any]) -> Any:
        token = _checked.checked_mode()
        try:
            return body(**values)
        finally:
            _checked.reset_checked_mode(token)

    def checkified(**values: Any) -> tuple[checkify.Error, Any]:
        # Static options are plain Python values here; close over everything so that
        # checkify only sees the traced computation.
        return checkify.checkify(lambda: with_checks(values), errors=checkify.user_checks)()

    compiled = jax.jit(checkified, static_argnames=spec.static_argnames)

    @functools.wraps(spec.fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        values = spec.bind(args, kwargs)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values)):
            # Under jit / vmap / grad: the error is a traced value, raised on the host when
            # the result is computed.
            err, out = checkified(**values)
            jax.debug.callback(_raise_if_failed, err)
            return out
        err, out = compiled(**values)
        _raise_if_failed(err)
        return out

    return run


def __getattr__(name: str) -> Callable[..., Any]:
    if name not in _registry.registered():
        raise AttributeError(f"module 'jaxloss.checked' has no attribute {name!r}")
    if name not in _CACHE:
        _CACHE[name] = _make_checked(name)
    return _CACHE[name]


def __dir__() -> list[str]:
    return sorted(_registry.registered())
