"""Checked mode: every jaxloss function, raising torch's error on invalid *values*.

The default functions cannot raise inside ``jax.jit`` on a bad value (a class
index out of range, a probability outside [0, 1], a negative variance, target
lengths longer than the input); they return NaN there instead. The functions of
this module trace the same code under :func:`jax.experimental.checkify.checkify`
with every :func:`jaxloss._core.value_check` turned on, and raise ``ValueError``
with torch's message when a check fails. They sync with the host once per call
(to raise), so use them while porting or debugging, not in a training step::

    import jaxloss.checked as checked
    checked.cross_entropy(logits, jnp.array([0, 7]))   # ValueError: Target 7 is out of bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.experimental import checkify

import jaxloss  # noqa: F401  (imports every loss module so the registry is full)
from jaxloss import _core

_CACHE: dict[str, Callable[..., Any]] = {}


def _make_checked(name: str) -> Callable[..., Any]:
    fn, static_argnames = _core.registered()[name]

    def with_checks(*args: Any, **kwargs: Any) -> Any:
        token = _core.checked_mode()
        try:
            return fn(*args, **kwargs)
        finally:
            _core.reset_checked_mode(token)

    @functools.partial(jax.jit, static_argnames=static_argnames)
    @functools.wraps(fn)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        # Static arguments are plain Python values here; close over everything so
        # that checkify only sees the traced computation.
        return checkify.checkify(lambda: with_checks(*args, **kwargs), errors=checkify.user_checks)()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        err, out = compiled(*args, **kwargs)
        message = err.get()
        if message is not None:
            raise ValueError(message.split(" (`check` failed")[0].strip())
        return out

    return run


def __getattr__(name: str) -> Callable[..., Any]:
    if name not in _core.registered():
        raise AttributeError(f"module 'jaxloss.checked' has no attribute {name!r}")
    if name not in _CACHE:
        _CACHE[name] = _make_checked(name)
    return _CACHE[name]


def __dir__() -> list[str]:
    return sorted(_core.registered())
