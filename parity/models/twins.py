"""The project's model pairs (:mod:`jaxloss.train.models` against :mod:`jaxloss.train.torch_models`), ready to compare.

>>> from jaxloss.parity.models.twins import build_pair
>>> fm, tm, mapping = build_pair("seed-cnn")
>>> mapping["conv2"], mapping["fc1"]
('model.2', 'model.7')
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DEFAULT_BATCH", "batchnorm_values", "build_pair", "images", "order_mapping"]

# Images per comparison: ResNet-18's last stages have 1x1 maps at 16x16 (and at 8x8 with the CIFAR
# stem), so their BatchNorm normalises over batch values per channel; at 2 its output is +-1
# whatever the input and its input gradient is 0 up to rounding, a comparison of rounding noise
# (at 4, float64 JAX and torch agree within tolerance: tests/test_parity_models.py).
DEFAULT_BATCH = 4
DEGENERATE_BATCHNORM = 2  # values per channel at or below which a BatchNorm's output is constant


def batchnorm_values(name: str, batch: int, size: int, cifar_stem: bool = False) -> int | None:
    """The fewest values per channel any BatchNorm of the model normalises over in training mode
    (batch x height x width of the last stage's maps); ``None`` for a model without BatchNorm.

    >>> from jaxloss.parity.models.twins import batchnorm_values
    >>> batchnorm_values("resnet18", 2, 16), batchnorm_values("resnet18", 4, 64), batchnorm_values("seed-cnn", 2, 32)
    (2, 16, None)
    """
    if name != "resnet18":
        return None
    side = size
    strides = (2, 2, 2) if cifar_stem else (2, 2, 2, 2, 2)  # [conv 7x7, max-pool,] layer2, layer3, layer4
    for _ in strides:
        side = -(-side // 2)  # each stride-2 layer (padded): ceil(side / 2)
    return batch * side * side


def order_mapping(flax_model: Any, torch_model: Any) -> dict[str, str]:
    """``{jax_path: torch_name}`` of the parameterised layers, paired in state_dict order (as
    :mod:`jaxloss.train.convert` pairs them), for twins whose layer names differ (the seed CNN's
    ``conv1`` is torch's ``model.0``).

    >>> from jaxloss.parity.models.twins import build_pair
    >>> order_mapping(*build_pair("seed-cnn")[:2])["fc2"]
    'model.8'
    """
    from jaxloss.parity.models.capture import jax_module_names
    from jaxloss.parity.weights import torch_layer_groups
    from jaxloss.train.models import torch_order_layers

    names = jax_module_names(flax_model)
    groups = torch_layer_groups(torch_model.state_dict())
    return {names[id(layer)]: prefix for (prefix, _, _), layer in zip(groups, torch_order_layers(flax_model), strict=True)}


def build_pair(name: str, dtype: str = "float32", seed: int = 0, **kw: Any) -> tuple[Any, Any, dict[str, str]]:
    """``(flax_model, torch_model, mapping)`` with the same weights (torch's init, converted), in ``dtype``.

    ``name``: ``'seed-cnn'`` or ``'resnet18'``; ``kw`` go to both constructors (``cifar_stem``,
    ``activation``, ``num_classes``). Both models are in training mode.

    >>> fm, tm, mapping = build_pair("seed-cnn", "float64")
    >>> type(fm).__name__, str(next(tm.parameters()).dtype)
    ('SeedCNN', 'torch.float64')
    """
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from jaxloss.parity.weights import torch_to_flax
    from jaxloss.train.models import build_model
    from jaxloss.train.torch_models import TorchResNet18, TorchSeedCNN

    torch.manual_seed(seed)
    tm = TorchSeedCNN(**kw) if name == "seed-cnn" else TorchResNet18(**kw)
    fm = build_model(name, rngs=nnx.Rngs(seed), **kw)
    torch_to_flax(tm, fm)
    fm.train(), tm.train()
    if dtype == "float64":
        tm.double()
        floats = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a
        nnx.update(fm, jax.tree.map(floats, nnx.state(fm)))
    return fm, tm, order_mapping(fm, tm)


def images(n: int, size: int, dtype: str = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(nhwc, nchw)``: the same standard normal images in both layouts.

    >>> [a.shape for a in images(2, 4)]
    [(2, 4, 4, 3), (2, 3, 4, 4)]
    """
    x = np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(dtype)
    return x.transpose(0, 2, 3, 1).copy(), x
