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

The segmentation losses' checked twins are the namespaces ``jaxloss.checked.monai`` and
``jaxloss.checked.smp``: each is the very module ``jaxloss.monai.checked`` /
``jaxloss.smp.checked`` (one object under two names), raising MONAI's / smp's messages.

>>> checked.monai is jaxloss.monai.checked and checked.smp is jaxloss.smp.checked
True
>>> checked.monai.dice_loss(jnp.zeros((1, 3, 2, 2)), jnp.array([[[[0, 1], [2, 3]]]]), to_onehot_y=True)
Traceback (most recent call last):
    ...
ValueError: index 3 is out of bounds for dimension 1 with size 3
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import jax
from jax.experimental import checkify

import jaxloss  # noqa: F401  (imports every loss module so the registry is full)
from jaxloss import _checked, _registry

_CACHE: dict[int, Callable[..., Any]] = {}  # by id of the registration


def _message(err: checkify.Error) -> str | None:
    message = err.get()
    return None if message is None else message.split(" (`check` failed")[0].strip()


def _raise_if_failed(err: checkify.Error) -> None:
    message = _message(err)
    if message is not None:
        raise ValueError(message)


def _make_checked(spec: _registry.LossSpec) -> Callable[..., Any]:
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


def _checked_twin(spec: _registry.LossSpec) -> Callable[..., Any]:
    if id(spec) not in _CACHE:
        _CACHE[id(spec)] = _make_checked(spec)
    return _CACHE[id(spec)]


def of(loss: Callable[..., Any]) -> Callable[..., Any]:
    """The checked twin of any registered loss, of any namespace (``jaxloss.checked.NAME`` is
    ``of(jaxloss.NAME)``).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> from jaxloss import checked
        >>> checked.of(jaxloss.nll_loss)(jnp.zeros((2, 3)), jnp.array([0, 3]))
        Traceback (most recent call last):
            ...
        ValueError: Target 3 is out of bounds.
    """
    spec = getattr(loss, "spec", None)
    if not isinstance(spec, _registry.LossSpec):
        raise TypeError(f"checked.of: {loss!r} is not a loss registered with loss_function")
    return _checked_twin(spec)


def checked_function(namespace: str, name: str) -> Callable[..., Any]:
    """The checked twin of the loss ``name`` registered in ``namespace`` (e.g. ``jaxloss.smp``),
    for a namespace's own ``checked`` module."""
    if name not in _registry.registered(namespace):
        raise AttributeError(f"module '{namespace}.checked' has no attribute {name!r}")
    return _checked_twin(_registry.registered(namespace)[name])


def __getattr__(name: str) -> Callable[..., Any]:
    return checked_function("jaxloss", name)


# The namespaces of the other libraries' losses: their own checked modules, imported here (after
# checked_function, which they use) and also importable as ``jaxloss.checked.monai`` / ``.smp``.
NAMESPACES = ("monai", "smp")

from jaxloss.monai import checked as monai
from jaxloss.smp import checked as smp

for _name, _module in (("monai", monai), ("smp", smp)):
    sys.modules[f"{__name__}.{_name}"] = _module


def __dir__() -> list[str]:
    return sorted([*_registry.registered(), "of", *NAMESPACES])
