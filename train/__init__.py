"""``train``: the seed's CIFAR-10 CNN and ResNet-18 in Flax NNX, trained with optax.

One pipeline, in small modules:

* :mod:`train.config`: :class:`TrainConfig` (every setting; one flag each) and its checks.
* :mod:`train.recipe`: the model, the optimizer with its schedule and the loss, built from a config.
* :mod:`train.losses`: the table that feeds logits and labels to a :mod:`jaxloss.nn` criterion.
* :mod:`train.step`: *the* train step and eval step (jit, donated buffers, XLA:CPU options).
* :mod:`train.feed`: shuffled, augmented batches gathered on the device (:mod:`train.augment`).
* :mod:`train.loop`: :func:`train`, state in, history out; :mod:`train.mesh` (devices and
  hosts), :mod:`train.outputs` (metrics, plot, header), :mod:`train.progress` (the progress
  bar), :mod:`train.signals` (Ctrl-C), :mod:`train.checkpoint` (verified orbax checkpoints).
* :mod:`train.models`, :mod:`train.conv`, :mod:`train.pooling`: the networks; :mod:`train.optim`:
  torch's SGD / Adam / AdamW and schedules in optax; :mod:`train.data`: CIFAR-10 and digits.
* :mod:`train.torch_models`, :mod:`train.convert`: the torch twins and weight conversion
  (the lockstep proof against torch is :mod:`parity.twin`).

``python -m train --help`` is the command line. The names below are re-exported lazily
(importing ``train`` imports neither JAX nor Flax).

>>> import train
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
    "TrainConfig": "train.config",
    "TrainResult": "train.loop",
    "train": "train.loop",
    "load_dataset": "train.data",
    "build_model": "train.recipe",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")
