"""``train``: the seed's CIFAR-10 CNN and ResNet-18 in Flax NNX, trained with optax, with a PyTorch twin.

* :mod:`train.models`: ``SeedCNN``, ``ResNet18``, ``build_model`` (NHWC in, logits out).
* :mod:`train.optim`: torch's SGD / Adam / AdamW and StepLR / CosineAnnealingLR as optax objects.
* :mod:`train.data`: CIFAR-10 (python and binary layouts, md5-checked, safe unpickling,
  ``--download``) and scikit-learn's digits as an offline 32x32x3 set.
* :mod:`train.augment`: on-device random crop / flip / normalisation.
* :mod:`train.loop`: the jit-compiled, data-parallel training loop (:func:`train.loop.train`).
* :mod:`train.step`: the plain jitted train step and the XLA:CPU compiler options every
  step compiles with; :mod:`train.conv`: the convolution ``nnx.Conv`` runs (im2col +
  matmul for tiny CPU maps); :mod:`train.pooling`: torch's ``max_pool2d`` with a
  scatter-free backward pass.
* :mod:`train.checkpoint`: orbax checkpoints for Ctrl-C and ``--resume``.
* :mod:`train.convert`, :mod:`train.torch_models`, :mod:`train.twin`: the PyTorch twin and
  weight conversion.

``python -m train --help`` is the command line. The names below are re-exported lazily
(importing ``train`` imports neither JAX nor Flax).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "TrainResult", "build_model", "load_dataset", "train"]

_LAZY = {
    "TrainConfig": "train.loop",
    "TrainResult": "train.loop",
    "train": "train.loop",
    "load_dataset": "train.data",
    "build_model": "train.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")
