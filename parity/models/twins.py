"""The project's model pairs (:mod:`train.models` against :mod:`train.torch_models`), ready to compare.

>>> from parity.models.twins import build_pair
>>> fm, tm, mapping = build_pair("seed-cnn")
>>> mapping["conv2"], mapping["fc1"]
('model.2', 'model.7')
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["build_pair", "images", "order_mapping"]


def order_mapping(flax_model: Any, torch_model: Any) -> dict[str, str]:
    """``{jax_path: torch_name}`` of the parameterised layers, paired in state_dict order (as
    :mod:`train.convert` pairs them), for twins whose layer names differ (the seed CNN's
    ``conv1`` is torch's ``model.0``).

    >>> from parity.models.twins import build_pair
    >>> order_mapping(*build_pair("seed-cnn")[:2])["fc2"]
    'model.8'
    """
    from parity.models.capture import jax_module_names
    from train.convert import torch_layer_groups
    from train.models import torch_order_layers

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

    from train.convert import torch_to_flax
    from train.models import build_model
    from train.torch_models import TorchResNet18, TorchSeedCNN

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
