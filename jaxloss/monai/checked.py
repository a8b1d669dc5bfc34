"""Checked mode for :mod:`jaxloss.monai`: each loss raising MONAI's error on an invalid *value*.

The same functions as :mod:`jaxloss.monai`, traced under ``checkify`` as :mod:`jaxloss.checked`
does for the torch losses: where the default function returns NaN (a label outside ``[0, C)``
with ``to_onehot_y``, a negative traced ``weight``, a traced option out of its range) these
raise ``ValueError`` with MONAI's message.

>>> import jax.numpy as jnp
>>> import jaxloss.monai.checked as checked
>>> logits = jnp.zeros((1, 3, 2, 2))
>>> checked.dice_loss(logits, jnp.array([[[[0, 1], [2, 3]]]]), to_onehot_y=True)
Traceback (most recent call last):
    ...
ValueError: index 3 is out of bounds for dimension 1 with size 3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jaxloss.monai  # noqa: F401  (registers every MONAI loss)
from jaxloss import _registry
from jaxloss.checked import checked_function

_NAMESPACE = "jaxloss.monai"


def __getattr__(name: str) -> Callable[..., Any]:
    return checked_function(_NAMESPACE, name)


def __dir__() -> list[str]:
    return sorted(_registry.registered(_NAMESPACE))
