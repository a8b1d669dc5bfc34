"""Checked mode of :mod:`jaxloss.smp`: each loss raising torch's / smp's error on invalid *values*.

``jaxloss.smp.checked.dice_loss(...)`` is :func:`jaxloss.smp.dice_loss` traced under ``checkify``
(see :mod:`jaxloss.checked`): where the function returns NaN (a ``'multiclass'`` label outside
``[0, C)``, a target index out of range) this one raises ``ValueError`` with the message torch
gives inside smp.

>>> import jax.numpy as jnp
>>> from jaxloss.smp import checked
>>> checked.dice_loss(jnp.zeros((1, 3, 2, 2)), jnp.array([[[0, 1], [2, 3]]]), "multiclass")
Traceback (most recent call last):
    ...
ValueError: Class values must be smaller than num_classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxloss import _registry
from jaxloss.checked import checked_function


def __getattr__(name: str) -> Callable[..., Any]:
    return checked_function("jaxloss.smp", name)


def __dir__() -> list[str]:
    return sorted(_registry.registered("jaxloss.smp"))
