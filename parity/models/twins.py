"""The project's model pairs (:mod:`jaxloss.train.models` against :mod:`jaxloss.parity.torch_models`), ready to compare.

:data:`TORCH_TWINS` is the second model table: name -> the torch twin of the Flax model of the
same name in :data:`jaxloss.train.registry.MODELS`, built as ``twin(num_classes=n, **options)``.
A Flax model without an entry here is trained but never compared: :func:`build_pair` refuses it
by name, never falling back to another model's twin.

>>> from jaxloss.parity.models.twins import build_pair
>>> fm, tm, mapping = build_pair("seed-cnn")
>>> mapping["conv2"], mapping["fc1"]
('model.2', 'model.7')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxloss.train.registry import model_kwargs, model_spec, resolve

from jaxloss.parity.weights import order_mapping  # the twins pair their layers in state_dict order

__all__ = ["DEFAULT_BATCH", "TORCH_TWINS", "batchnorm_values", "build_pair", "build_torch", "images", "order_mapping",
           "twin_problem"]

# name -> torch twin: the class (or any callable), or its import path "module:attribute" (imported on
# first use, so that the command lines check --model without importing torch)
TORCH_TWINS: dict[str, str | Callable[..., Any]] = {
    "seed-cnn": "jaxloss.parity.torch_models:TorchSeedCNN",
    "resnet18": "jaxloss.parity.torch_models:TorchResNet18",
}

# Images per comparison: ResNet-18's last stages have 1x1 maps at 16x16 (and at 8x8 with the CIFAR
# stem), so their BatchNorm normalises over batch values per channel; at 2 its output is +-1
# whatever the input and its input gradient is 0 up to rounding, a comparison of rounding noise
# (at 4, float64 JAX and torch agree within tolerance: tests/test_parity_models.py).
DEFAULT_BATCH = 4
DEGENERATE_BATCHNORM = 2  # values per channel at or below which a BatchNorm's output is constant


def batchnorm_values(name: str, batch: int, size: int, cifar_stem: bool = False) -> int | None:
    """The fewest values per channel any BatchNorm of the model normalises over in training mode
    (batch x height x width of the last stage's maps, from the table's ``batchnorm_stride``);
    ``None`` for a model without BatchNorm.

    >>> from jaxloss.parity.models.twins import batchnorm_values
    >>> batchnorm_values("resnet18", 2, 16), batchnorm_values("resnet18", 4, 64), batchnorm_values("seed-cnn", 2, 32)
    (2, 16, None)
    """
    spec = model_spec(name)
    if spec.batchnorm_stride is None:
        return None
    side = -(-size // spec.batchnorm_stride(model_kwargs(name, cifar_stem=cifar_stem)))  # each stride-2 layer: ceil
    return batch * side * side


def twin_problem(name: str) -> str | None:
    """Why ``name`` cannot be compared with torch (unknown, or a Flax model without a twin); ``None`` if it can.

    >>> from jaxloss.parity.models.twins import twin_problem
    >>> twin_problem("seed-cnn") is None, twin_problem("vgg")
    (True, "unknown model 'vgg'; known: seed-cnn, resnet18")
    """
    try:
        model_spec(name)
    except ValueError as e:
        return str(e)
    if name not in TORCH_TWINS:
        return (f"model {name!r} has no torch twin (jaxloss.parity.models.twins.TORCH_TWINS has "
                f"{', '.join(TORCH_TWINS)}): add one to compare it with torch")  # fmt: skip
    return None


def build_torch(name: str, **kw: Any) -> Any:
    """The torch twin of ``name`` (fresh weights from torch's generator); ``kw``: ``num_classes`` and the
    model options, as :func:`jaxloss.train.registry.model_kwargs` keeps them. ``ValueError`` from
    :func:`twin_problem` for a model without one.

    >>> from jaxloss.parity.models.twins import build_torch
    >>> type(build_torch("resnet18", num_classes=3, cifar_stem=True)).__name__
    'TorchResNet18'
    """
    kw = _constructor_kwargs(name, kw)  # first: a model without a twin is refused by name
    return resolve(TORCH_TWINS[name])(**kw)


def _constructor_kwargs(name: str, kw: dict[str, Any]) -> dict[str, Any]:
    """``num_classes`` and the model options that are set; ``ValueError`` for a model without a twin."""
    problem = twin_problem(name)
    if problem:
        raise ValueError(problem)
    options = {k: v for k, v in kw.items() if k != "num_classes"}
    return {**{k: v for k, v in kw.items() if k == "num_classes"}, **model_kwargs(name, **options)}


def build_pair(name: str, dtype: str = "float32", seed: int = 0, **kw: Any) -> tuple[Any, Any, dict[str, str]]:
    """``(flax_model, torch_model, mapping)`` with the same weights (torch's init, converted), in ``dtype``.

    The Flax model is :func:`jaxloss.train.recipe.build_model`'s (float32 parameters), so the pair
    compares what training builds.

    ``name``: a model of both tables (:data:`jaxloss.train.registry.MODELS`, :data:`TORCH_TWINS`);
    ``kw`` go to both constructors (``num_classes`` and the model options: ``cifar_stem``,
    ``activation``). Both models are in training mode.

    >>> fm, tm, mapping = build_pair("seed-cnn", "float64")
    >>> type(fm).__name__, str(next(tm.parameters()).dtype)
    ('SeedCNN', 'torch.float64')
    """
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from jaxloss.parity.weights import torch_to_flax
    from jaxloss.train.config import TrainConfig
    from jaxloss.train.recipe import build_model

    kw = _constructor_kwargs(name, kw)  # first: a model without a twin is refused before anything is built
    torch.manual_seed(seed)
    tm = resolve(TORCH_TWINS[name])(**kw)
    num_classes = kw.pop("num_classes", 10)
    # built as training builds it (train.recipe), its zeros replaced by the torch twin's weights
    fm = build_model(TrainConfig(model=name, seed=seed, **kw), num_classes, initialise=False)
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
