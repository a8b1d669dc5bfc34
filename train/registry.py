"""The table of models: name -> the Flax model and what the command lines need to know about it.

:data:`MODELS` is the one list of the project's networks. ``python -m jaxloss.train --model``,
:func:`jaxloss.train.recipe.build_model`, :func:`jaxloss.train.models.build_model`, the parity
command lines and every benchmark read it; their torch twins are the second table,
:data:`jaxloss.parity.models.twins.TORCH_TWINS`. A new model is one entry here and one there
(``docs/development.md``, "Adding a model").

A model is built as ``build(rngs=rngs, num_classes=n, **options, **extra)``: ``options`` are the
*model options* it takes (:data:`OPTIONS`, each a :class:`~jaxloss.train.config.TrainConfig`
field and a flag), ``extra`` the constructor's own keywords (``dtype``, ``torch_init``).
An unknown name is a ``ValueError`` listing the known ones; an option the model does not take
is an :class:`OptionError` naming it.

This module imports no JAX (the command lines check ``--model`` before a backend starts): the
built-in models are named by import path, ``"module:attribute"``, imported on first use.

>>> from jaxloss.train.registry import MODELS, model_spec
>>> list(MODELS), model_spec("resnet18").options
(['seed-cnn', 'resnet18'], ('cifar_stem',))
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MODELS", "OPTIONS", "ModelSpec", "OptionError", "model_kwargs", "model_spec", "resolve"]

# The model options, with the value that means "not set": a model constructor gets only those set.
OPTIONS: dict[str, Any] = {"activation": None, "cifar_stem": False}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model: how to build it and what the command lines need to know about it.

    * ``build``: the NNX module class (or any callable), or its import path ``"module:attribute"``.
    * ``options``: the model options (keys of :data:`OPTIONS`) its constructor takes.
    * ``image_size``: the only image side it takes (the seed CNN's first Linear fixes 32); ``None``: any.
    * ``default_image_size``: the parity command lines' default side when any is taken
      (smaller is faster; ResNet-18 is compared at 16).
    * ``batchnorm_stride``: ``None`` for a model without BatchNorm; otherwise, from the options,
      the total stride of its last BatchNorm's input, whose side is ``ceil(side / stride)``
      (the parity command lines warn when a batch leaves it 2 values or fewer per channel).

    >>> from jaxloss.train.registry import model_spec
    >>> spec = model_spec("resnet18")
    >>> spec.batchnorm_stride({"cifar_stem": True}), spec.image_size, model_spec("seed-cnn").batchnorm_stride
    (8, None, None)
    """

    build: str | Callable[..., Any]
    options: tuple[str, ...] = ()
    image_size: int | None = None
    default_image_size: int = 32
    batchnorm_stride: Callable[[Mapping[str, Any]], int] | None = None

    def __post_init__(self) -> None:
        unknown = [o for o in self.options if o not in OPTIONS]
        if unknown:
            raise ValueError(f"options {unknown} are not model options; known: {', '.join(OPTIONS)}")


def _resnet_stride(options: Mapping[str, Any]) -> int:
    # stride-2 steps before layer4: [conv 7x7, max-pool,] layer2, layer3, layer4
    return 2**3 if options.get("cifar_stem") else 2**5


MODELS: dict[str, ModelSpec] = {
    "seed-cnn": ModelSpec("jaxloss.train.models:SeedCNN", options=("activation",), image_size=32),
    "resnet18": ModelSpec(
        "jaxloss.train.models:ResNet18", options=("cifar_stem",), default_image_size=16, batchnorm_stride=_resnet_stride
    ),
}


class OptionError(ValueError):
    """A model option the model does not take; ``option`` names it (``str(e)`` starts with it).

    >>> from jaxloss.train.registry import model_kwargs
    >>> model_kwargs("seed-cnn", cifar_stem=True)
    Traceback (most recent call last):
    ...
    jaxloss.train.registry.OptionError: cifar_stem applies to model resnet18 only
    """

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option, self.problem = option, problem


def model_spec(name: str) -> ModelSpec:
    """The table's entry for ``name``; ``ValueError`` listing the known names otherwise.

    >>> from jaxloss.train.registry import model_spec
    >>> model_spec("vgg")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'vgg'; known: seed-cnn, resnet18
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_kwargs(name: str, **options: Any) -> dict[str, Any]:
    """The constructor keywords of ``name`` for the model options that are set (not at their
    :data:`OPTIONS` value, nor ``'none'``); :class:`OptionError` for one it does not take.

    >>> from jaxloss.train.registry import model_kwargs
    >>> model_kwargs("seed-cnn", activation="relu", cifar_stem=False), model_kwargs("resnet18", activation="none")
    ({'activation': 'relu'}, {})
    """
    spec = model_spec(name)
    out = {}
    for option, value in options.items():
        if option not in OPTIONS:
            raise OptionError(option, f"is not a model option; known: {', '.join(OPTIONS)}")
        if value == OPTIONS[option] or value == "none":
            continue
        if option not in spec.options:
            takers = [m for m, s in MODELS.items() if option in s.options]
            raise OptionError(option, f"applies to model {', '.join(takers) or '(none)'} only")
        out[option] = value
    return out


def resolve(build: str | Callable[..., Any]) -> Callable[..., Any]:
    """A table's builder: ``"module:attribute"`` imported, a callable as it is.

    >>> from jaxloss.train.registry import resolve
    >>> resolve("jaxloss.train.registry:model_spec").__name__
    'model_spec'
    """
    if callable(build):
        return build
    module, _, attr = build.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
