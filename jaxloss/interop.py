"""``from_torch``: turn an instantiated ``torch.nn.*Loss`` into its jaxloss twin.

torch is never imported here: the module is recognised by its package and class
name, which the twin's registration declares (``loss_function(torch="torch.nn.L1Loss")``,
see :func:`jaxloss._registry.twins`), and read through its public attributes named like
the twin's fields (``reduction``, ``weight``, ``pos_weight``, ``margin``...), so jaxloss
keeps depending on jax alone.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxloss import distance
from jaxloss._registry import twins

# the original's top-level package -> the jaxloss namespace module whose import creates its twins
_NAMESPACES = {"torch": "jaxloss.nn", "monai": "jaxloss.monai", "segmentation_models_pytorch": "jaxloss.smp"}

def _array(value: Any) -> Any:
    """torch tensor -> JAX array (same dtype); anything else unchanged."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return jnp.asarray(np.asarray(value.detach().cpu().numpy()))
    return value


def _distance_function(fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """A torch distance for TripletMarginWithDistanceLoss -> its jaxloss twin.

    torch replaces ``None`` by ``nn.PairwiseDistance()``; that default maps back to
    ``None`` (jaxloss's default is the same distance). Other ``PairwiseDistance`` /
    ``CosineSimilarity`` modules and ``F.pairwise_distance`` / ``F.cosine_similarity``
    map to the jaxloss helpers; anything else is arbitrary torch code.
    """
    if fn is None:
        return None
    kind = type(fn).__name__
    if kind == "PairwiseDistance":
        if (fn.norm, fn.eps, fn.keepdim) == (2.0, 1e-6, False):
            return None
        return functools.partial(distance.pairwise_distance, p=fn.norm, eps=fn.eps, keepdim=fn.keepdim)
    if kind == "CosineSimilarity":
        return functools.partial(distance.cosine_similarity, dim=fn.dim, eps=fn.eps)
    name = getattr(fn, "__name__", None)
    if name in ("pairwise_distance", "cosine_similarity") and "torch" in (getattr(fn, "__module__", None) or "torch"):
        return getattr(distance, name)
    raise TypeError(
        "from_torch: TripletMarginWithDistanceLoss.distance_function is arbitrary torch code and cannot be "
        f"converted automatically (got {fn!r}); build jaxloss.nn.TripletMarginWithDistanceLoss("
        "distance_function=<a JAX function>) yourself"
    )


# options whose original value is not a tensor or a plain value
_CONVERT: dict[str, Callable[[Any], Any]] = {"distance_function": _distance_function}


def _twin(torch_class: type) -> type | None:
    """The registered twin of ``torch_class``: its top-level package and class name match a
    registration's ``torch="package.[...].Name"``."""
    package = torch_class.__module__.partition(".")[0]
    if package in _NAMESPACES:
        try:
            importlib.import_module(_NAMESPACES[package])
        except ModuleNotFoundError as err:  # a namespace not built (yet): no twins
            if err.name != _NAMESPACES[package]:
                raise
    for original, cls in twins().items():
        if original.partition(".")[0] == package and original.rpartition(".")[2] == torch_class.__name__:
            return cls
    return None


def from_torch(module: Any, *, rngs: Any = None) -> Any:
    """The jaxloss equivalent of an instantiated ``torch.nn`` loss module.

    Args:
        module: e.g. ``torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)``.
            Every ``torch.nn.*Loss`` is supported; ``weight`` / ``pos_weight``
            tensors are copied to JAX arrays of the same dtype.
        rngs: only for the two modules with parameters
            (``LinearCrossEntropyLoss``, ``AdaptiveLogSoftmaxWithLoss``): Flax
            random streams used to build the NNX module before the torch
            ``state_dict`` is loaded into it (default ``nnx.Rngs(0)``).

    Returns:
        A :mod:`jaxloss.nn` criterion (a frozen, jit-friendly callable), or a
        Flax NNX module holding the torch module's parameters.

    Raises:
        TypeError: for anything that is not a supported torch loss module.

    Example:
        >>> import jax.numpy as jnp
        >>> import torch
        >>> import jaxloss
        >>> criterion = jaxloss.from_torch(torch.nn.CrossEntropyLoss(label_smoothing=0.1))
        >>> criterion
        CrossEntropyLoss(weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.1)
        >>> round(float(criterion(jnp.zeros((2, 3)), jnp.array([0, 2]))), 4)
        1.0986
    """
    name = type(module).__name__
    cls = _twin(type(module))
    if cls is not None:
        options = {}
        for field in dataclasses.fields(cls):
            if hasattr(module, field.name):  # an option the original lacks keeps the twin's default
                convert = _CONVERT.get(field.name, _array)
                options[field.name] = convert(getattr(module, field.name))
        return cls(**options)
    if name in ("LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss"):
        return _from_torch_with_params(module, name, rngs)
    raise TypeError(f"from_torch: {type(module).__module__}.{name} is not a torch.nn loss module jaxloss knows")


def _from_torch_with_params(module: Any, name: str, rngs: Any) -> Any:
    from flax import nnx

    from jaxloss import nn_modules

    rngs = nnx.Rngs(0) if rngs is None else rngs
    state = module.state_dict()
    if name == "LinearCrossEntropyLoss":
        dtype = _array(module.linear.weight).dtype
        out: Any = nn_modules.LinearCrossEntropyLoss(
            module.linear.in_features,
            module.num_classes,
            out_features=tuple(module.out_features),
            bias=module.linear.bias is not None,
            dtype=dtype,
            reduction=module.reduction,
            weight=_array(module.weight),
            ignore_index=module.ignore_index,
            label_smoothing=module.label_smoothing,
            rngs=rngs,
        )
    else:
        dtype = _array(module.head.weight).dtype
        out = nn_modules.AdaptiveLogSoftmaxWithLoss(
            module.in_features,
            module.n_classes,
            list(module.cutoffs[:-1]),
            div_value=module.div_value,
            head_bias=module.head_bias,
            dtype=dtype,
            rngs=rngs,
        )
    out.load_torch_state_dict(state)
    return out
