"""Weights between a torch model and its Flax NNX twin, both ways, in place.

``torch_to_flax(torch_module, flax_model)`` loads a torch ``state_dict`` (a module, or
the state_dict itself) into a :mod:`jaxloss.train.models` model; ``flax_to_torch(flax_model,
torch_module)`` writes the Flax weights into the torch module with
``load_state_dict(strict=True)``. Both return their destination.

Layers are matched by *order*, not by name: the torch state_dict's Conv2d / Linear /
BatchNorm2d entries, in registration order, against ``flax_model.torch_order()``. So the
seed's own checkpoints load whatever its attribute names were, and so do torchvision's
``resnet18`` state_dicts. Each pair is checked for kind and shape.

Layout changes:

* Conv2d weight OIHW <-> Flax Conv kernel HWIO (``transpose(2, 3, 1, 0)``).
* Linear weight ``(out, in)`` <-> Flax kernel ``(in, out)``.
* Flatten order: :class:`jaxloss.train.models.SeedCNN` flattens its last feature map in torch's
  NCHW order (it transposes NHWC -> NCHW before the reshape), so the first Linear's
  weight needs no row permutation: the same two transposes give identical logits.
* BatchNorm2d ``weight, bias, running_mean, running_var, num_batches_tracked`` <->
  ``scale, bias, mean, var, num_batches_tracked`` of :class:`jaxloss.train.models.BatchNorm2d`;
  eps and momentum must agree (checked).

Activations (NCHW input vs NHWC) are the caller's: feed the Flax model
``x.transpose(0, 2, 3, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from jaxloss.train.models import BatchNorm2d, torch_order_layers

__all__ = ["flax_state_dict", "flax_to_torch", "torch_layer_groups", "torch_to_flax"]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torch_layer_groups(
    state_dict: Mapping[str, torch.Tensor],
) -> list[tuple[str, str, dict[str, torch.Tensor]]]:
    """``[(prefix, kind, {suffix: tensor})]`` in state_dict order; kind is 'conv' | 'linear' | 'bn'.

    >>> import torch
    >>> from jaxloss.train.convert import torch_layer_groups
    >>> [(p, k) for p, k, _ in torch_layer_groups(torch.nn.Sequential(torch.nn.Linear(2, 3)).state_dict())]
    [('0', 'linear')]
    """
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, suffix = key.rpartition(".")
        groups.setdefault(prefix, {})[suffix] = value
    out = []
    for prefix, entries in groups.items():
        if "running_mean" in entries:
            kind = "bn"
        elif "weight" in entries and entries["weight"].ndim == 4:
            kind = "conv"
        elif "weight" in entries and entries["weight"].ndim == 2:
            kind = "linear"
        else:
            raise ValueError(
                f"state_dict entry {prefix!r} ({sorted(entries)}) is not a Conv2d, Linear or BatchNorm2d"
            )
        out.append((prefix, kind, entries))
    return out


def _kind(layer: nnx.Module) -> str:
    if isinstance(layer, BatchNorm2d):
        return "bn"
    if isinstance(layer, nnx.Conv):
        return "conv"
    if isinstance(layer, nnx.Linear):
        return "linear"
    raise TypeError(f"cannot convert a {type(layer).__name__}")


def _state_dict(torch_module: Any) -> Mapping[str, torch.Tensor]:
    return torch_module.state_dict() if isinstance(torch_module, torch.nn.Module) else torch_module


def _pairs(
    torch_sd: Mapping[str, torch.Tensor], flax_model: nnx.Module
) -> list[tuple[str, str, dict, nnx.Module]]:
    groups = torch_layer_groups(torch_sd)
    layers = torch_order_layers(flax_model)
    if len(groups) != len(layers):
        raise ValueError(
            f"torch model has {len(groups)} Conv/Linear/BatchNorm layers, {type(flax_model).__name__} has "
            f"{len(layers)}: not twins (check num_classes, activation, cifar_stem)"
        )
    pairs = []
    for (prefix, kind, entries), layer in zip(groups, layers, strict=True):
        if kind != _kind(layer):
            raise ValueError(
                f"torch layer {prefix!r} is a {kind}, the Flax layer in its place a {_kind(layer)}"
            )
        pairs.append((prefix, kind, entries, layer))
    return pairs


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    # A copy: jnp.asarray may alias a NumPy buffer on CPU, and torch updates its buffers
    # (BatchNorm running stats) in place, which would silently change the "immutable" JAX array.
    return t.detach().to("cpu").numpy().copy()


def _assign(var: nnx.Variable, value: np.ndarray, what: str) -> None:
    old = var[...]
    if tuple(old.shape) != tuple(value.shape):
        raise ValueError(f"{what}: torch shape gives {tuple(value.shape)}, Flax expects {tuple(old.shape)}")
    new = jnp.array(value, dtype=old.dtype, copy=True)
    sharding = getattr(old, "sharding", None)
    var.set_value(jax.device_put(new, sharding) if sharding is not None else new)


def torch_to_flax(torch_module: Any, flax_model: nnx.Module) -> nnx.Module:
    """Load ``torch_module``'s weights (an ``nn.Module`` or a state_dict) into ``flax_model``, in place.

    >>> import numpy as np, torch
    >>> from flax import nnx
    >>> from jaxloss.train.convert import torch_to_flax
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> tm, fm = TorchSeedCNN(), SeedCNN(rngs=nnx.Rngs(0))
    >>> _ = torch_to_flax(tm, fm)
    >>> np.array_equal(np.asarray(fm.conv1.kernel[...]), tm.model[0].weight.detach().numpy().transpose(2, 3, 1, 0))
    True
    """
    _check_bn_config(torch_module, flax_model)
    for prefix, kind, entries, layer in _pairs(_state_dict(torch_module), flax_model):
        if kind == "conv":
            _assign(layer.kernel, _to_numpy(entries["weight"]).transpose(2, 3, 1, 0), f"{prefix}.weight")
        elif kind == "linear":
            _assign(layer.kernel, _to_numpy(entries["weight"]).T, f"{prefix}.weight")
        else:
            _assign(layer.scale, _to_numpy(entries["weight"]), f"{prefix}.weight")
            _assign(layer.mean, _to_numpy(entries["running_mean"]), f"{prefix}.running_mean")
            _assign(layer.var, _to_numpy(entries["running_var"]), f"{prefix}.running_var")
            if "num_batches_tracked" in entries:
                _assign(
                    layer.num_batches_tracked,
                    _to_numpy(entries["num_batches_tracked"]),
                    f"{prefix}.num_batches_tracked",
                )
        if kind in ("conv", "linear"):
            has_torch, has_flax = "bias" in entries, getattr(layer, "bias", None) is not None
            if has_torch != has_flax:
                raise ValueError(
                    f"{prefix}: bias {'present' if has_torch else 'absent'} in torch, not in Flax"
                )
        if "bias" in entries:
            _assign(layer.bias, _to_numpy(entries["bias"]), f"{prefix}.bias")
    return flax_model


def _torch_bn_config(torch_module: Any) -> dict[str, tuple[float, float | None]]:
    if not isinstance(torch_module, torch.nn.Module):
        return {}
    return {
        name: (m.eps, m.momentum)
        for name, m in torch_module.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    }


def _check_bn_config(torch_module: Any, flax_model: nnx.Module) -> None:
    config = _torch_bn_config(torch_module)
    for prefix, kind, _, layer in _pairs(_state_dict(torch_module), flax_model):
        if kind == "bn" and prefix in config:
            eps, momentum = config[prefix]
            if eps != layer.eps or momentum != layer.momentum:
                raise ValueError(
                    f"{prefix}: torch BatchNorm eps={eps}, momentum={momentum}; Flax eps={layer.eps}, "
                    f"momentum={layer.momentum} (torch convention)"
                )


def flax_state_dict(flax_model: nnx.Module, torch_module: Any) -> dict[str, np.ndarray]:
    """``flax_model``'s weights as NumPy arrays in torch layout, keyed like ``torch_module``'s state_dict.

    ``torch_module`` (an ``nn.Module`` or a state_dict) only supplies the names and the
    layer order; its values are not read.

    >>> from flax import nnx
    >>> from jaxloss.train.convert import flax_state_dict
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> sd = flax_state_dict(SeedCNN(rngs=nnx.Rngs(0)), TorchSeedCNN())
    >>> sd["model.0.weight"].shape
    (32, 3, 5, 5)
    """
    sd = _state_dict(torch_module)
    out: dict[str, np.ndarray] = {}

    def put(key: str, value: Any) -> None:
        out[key] = np.array(jax.device_get(value), copy=True)  # never alias a JAX buffer from torch
        if tuple(out[key].shape) != tuple(sd[key].shape):
            raise ValueError(
                f"{key}: Flax gives shape {tuple(out[key].shape)}, torch expects {tuple(sd[key].shape)}"
            )

    for prefix, kind, entries, layer in _pairs(sd, flax_model):
        if kind == "conv":
            put(f"{prefix}.weight", np.asarray(layer.kernel[...]).transpose(3, 2, 0, 1))
        elif kind == "linear":
            put(f"{prefix}.weight", np.asarray(layer.kernel[...]).T)
        else:
            put(f"{prefix}.weight", layer.scale[...])
            put(f"{prefix}.running_mean", layer.mean[...])
            put(f"{prefix}.running_var", layer.var[...])
            if "num_batches_tracked" in entries:
                put(f"{prefix}.num_batches_tracked", layer.num_batches_tracked[...])
        if "bias" in entries:
            if getattr(layer, "bias", None) is None:
                raise ValueError(f"{prefix}: bias present in torch, not in Flax")
            put(f"{prefix}.bias", layer.bias[...])
        elif kind != "bn" and getattr(layer, "bias", None) is not None:
            raise ValueError(f"{prefix}: bias present in Flax, not in torch")
    return out


def flax_to_torch(flax_model: nnx.Module, torch_module: torch.nn.Module) -> torch.nn.Module:
    """Write ``flax_model``'s weights into ``torch_module`` (strict ``load_state_dict``), in place.

    >>> import numpy as np
    >>> from flax import nnx
    >>> from jaxloss.train.convert import flax_to_torch
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> fm = SeedCNN(rngs=nnx.Rngs(0))
    >>> tm = flax_to_torch(fm, TorchSeedCNN())
    >>> np.array_equal(tm.model[-1].bias.detach().numpy(), np.asarray(fm.fc2.bias[...]))
    True
    """
    _check_bn_config(torch_module, flax_model)
    sd = torch_module.state_dict()
    new = {
        key: torch.from_numpy(np.ascontiguousarray(value)).to(dtype=sd[key].dtype, device=sd[key].device)
        for key, value in flax_state_dict(flax_model, sd).items()
    }
    torch_module.load_state_dict(new, strict=True)
    return torch_module
