"""``train``: the seed's CIFAR-10 CNN and ResNet-18 in Flax NNX, trained with optax.

One pipeline, in small modules:

* :mod:`jaxloss.train.config`: :class:`TrainConfig` (every setting; one flag each) and its checks.
* :mod:`jaxloss.train.recipe`: the model, the optimizer with its schedule and the loss, built from a config.
* :mod:`jaxloss.train.losses`: the table that feeds logits and labels to a :mod:`jaxloss.nn` criterion.
* :mod:`jaxloss.train.step`: *the* train step and eval step (jit, donated buffers, XLA:CPU options).
* :mod:`jaxloss.train.feed`: shuffled, augmented batches gathered on the device (:mod:`jaxloss.train.augment`).
* :mod:`jaxloss.train.loop`: :func:`jaxloss.train`, state in, history out; :mod:`jaxloss.train.mesh` (devices and
  hosts), :mod:`jaxloss.train.outputs` (metrics, plot, header), :mod:`jaxloss.train.progress` (the progress
  bar), :mod:`jaxloss.train.signals` (Ctrl-C), :mod:`jaxloss.train.checkpoint` (verified orbax checkpoints).
* :mod:`jaxloss.train.models`, :mod:`jaxloss.train.conv`, :mod:`jaxloss.train.pooling`: the networks; :mod:`jaxloss.train.optim`:
  torch's SGD / Adam / AdamW and schedules in optax; :mod:`jaxloss.train.data`: CIFAR-10 and digits.
* :mod:`jaxloss.train.torch_models`: the torch twins (weight conversion, which needs torch, is
  :mod:`jaxloss.parity.weights`; the lockstep proof against torch is :mod:`jaxloss.parity.twin`).

``python -m jaxloss.train --help`` is the command line. The names below are re-exported lazily
(importing ``train`` imports neither JAX nor Flax).

>>> from jaxloss import train
>>> train.TrainConfig().optimizer
'sgd'
"""

from __future__ import annotations

from typing import Any

if __name__.split(".")[0] != "jaxloss":  # imported from a checkout as a top-level package
    raise ImportError(
        f"this package is installed as 'jaxloss.{__name__}' (the top-level name '{__name__}' collides with "
        f"users' own {__name__}.py): use 'from jaxloss import {__name__}' and 'python -m jaxloss.{__name__}'"
    )

__all__ = ["TrainConfig", "TrainResult", "build_model", "load_dataset", "train"]

_LAZY = {
    "TrainConfig": "jaxloss.train.config",
    "TrainResult": "jaxloss.train.loop",
    "train": "jaxloss.train.loop",
    "load_dataset": "jaxloss.train.data",
    "build_model": "jaxloss.train.recipe",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")
