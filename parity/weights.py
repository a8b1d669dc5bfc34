"""A torch model's weights into its Flax NNX port, and back: :func:`load_torch_weights`, :func:`export_torch_weights`.

::

    from jaxloss import parity
    report = parity.load_torch_weights(flax_model, torch_model)   # in place; or a state_dict
    print(report)                     # every NNX variable, the torch tensor it came from, the conversion
    sd = parity.export_torch_weights(flax_model, torch_model)     # {name: tensor}, for load_state_dict

Modules pair by name as :func:`jaxloss.parity.compare_models` pairs them (the NNX attribute path
equals the torch module name, ``layers`` of an ``nnx.Sequential`` left out), else through
``mapping={jax_path: torch_name}``; a mapping entry naming an NNX *variable* pairs one tensor
(``{"lstm.cell.ii.kernel": "lstm.weight_ih_l0[0]"}``: ``[k]`` is the ``k``-th equal chunk of a
packed tensor). Layouts change by the layer rules of :mod:`jaxloss.parity.models.rules` (the
same rules compare parameters and gradients in ``compare_models``): Linear, Conv with groups,
ConvTranspose (both ``transpose_kernel``), BatchNorm / LayerNorm / GroupNorm, Embed,
MultiHeadAttention (``in_proj_weight`` split into query / key / value heads), LSTM / GRU (packed
gates split, ``bias_ih + bias_hh`` summed where NNX has one bias).

Not loadable, by design: a torch tensor NNX has no place for (the GRU's hidden n-gate bias
``b_hn``, attention's ``bias_k``) must be 0, else :func:`load_torch_weights` raises naming it
(zero it in torch, or write a cell that has it). ``num_batches_tracked`` (BatchNorm's step
counter) is loaded where the NNX module has one, else ignored.

The project's own models (:mod:`jaxloss.train.models` and their torch twins) pair by layer
*order* instead (the seed CNN's ``conv1`` is torch's ``model.0``): :func:`torch_to_flax`,
:func:`flax_to_torch`, :func:`flax_state_dict` use :func:`order_mapping` for ``mapping``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LoadReport", "export_torch_weights", "flax_state_dict", "flax_to_torch", "load_torch_weights", "order_mapping",
           "torch_layer_groups", "torch_to_flax"]

_IGNORED = ("num_batches_tracked",)  # BatchNorm's step counter: loaded where NNX has one, else not an error


@dataclasses.dataclass
class Copied:
    """One NNX variable filled from torch: names, shapes, how the layout changed."""

    jax: str
    torch: str
    jax_shape: tuple[int, ...]
    torch_shape: tuple[int, ...]
    how: str


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_torch_weights` did: ``copied`` (one :class:`Copied` per NNX variable),
    ``unpaired_jax`` / ``unpaired_torch`` (empty under ``strict=True``), ``ignored`` (torch
    tensors with no NNX place that hold nothing: ``num_batches_tracked``, a zero ``b_hn``).

    >>> r = LoadReport([Copied("fc.kernel", "fc.weight", (3, 2), (2, 3), "weight (out, in) -> kernel (in, out)")])
    >>> print(r)
    loaded 1 NNX variables from torch
      fc.kernel (3, 2)  <-  fc.weight (2, 3)  weight (out, in) -> kernel (in, out)
    """

    copied: list[Copied]
    unpaired_jax: list[str] = dataclasses.field(default_factory=list)
    unpaired_torch: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        w = max((len(f"{c.jax} {c.jax_shape}") for c in self.copied), default=0)
        lines = [f"loaded {len(self.copied)} NNX variables from torch"]
        lines += [f"  {f'{c.jax} {c.jax_shape}':<{w}}  <-  {c.torch} {c.torch_shape}  {c.how}" for c in self.copied]
        if self.ignored:
            lines.append(f"  ignored (no NNX place, nothing lost): {self.ignored}")
        if self.unpaired_jax or self.unpaired_torch:
            lines.append(f"  NOT loaded: NNX {self.unpaired_jax}, torch {self.unpaired_torch}")
        return "\n".join(lines)

    __repr__ = __str__


# --------------------------------------------------------------------------- both sides' names
def _jax_variables(model: Any) -> tuple[dict[tuple[str, str], Any], dict[str, dict[str, Any]]]:
    """``({(module path, variable): nnx.Variable}, {module path: rule description})``: the
    parameters and batch statistics (RNG state and caches are no weights)."""
    from flax import nnx

    from jaxloss.parity.models.capture import jax_module_names
    from jaxloss.parity.models.rules import describe

    names = jax_module_names(model)
    out: dict[tuple[str, str], Any] = {}
    descs: dict[str, dict[str, Any]] = {}
    for _, mod in nnx.iter_modules(model):
        descs[names[id(mod)]] = describe(mod)
        for attr, v in vars(mod).items():
            if isinstance(v, (nnx.Param, nnx.BatchStat)) or (isinstance(v, nnx.Variable) and attr == "num_batches_tracked"):
                out.setdefault((names[id(mod)], attr), v)
    return out, descs


def _torch_numpy(torch_model_or_state_dict: Any, what: str) -> tuple[dict[tuple[str, str], np.ndarray], list[str]]:
    """``({(module, tensor): array}, torch module names)`` of a module or a state_dict."""
    import torch

    if isinstance(torch_model_or_state_dict, torch.nn.Module):
        sd = torch_model_or_state_dict.state_dict()
        modules = [n for n, _ in torch_model_or_state_dict.named_modules()]
    elif isinstance(torch_model_or_state_dict, Mapping):
        sd = torch_model_or_state_dict
        modules = []
    else:
        raise TypeError(f"{what} must be a torch.nn.Module or a state_dict, got {type(torch_model_or_state_dict).__name__}")
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for key, value in sd.items():
        m, _, t = key.rpartition(".")
        # a copy: torch updates buffers in place, and a JAX array may alias a NumPy buffer
        arrays[(m, t)] = value.detach().to("cpu").numpy().copy() if hasattr(value, "detach") else np.array(value)
    for m, _ in arrays:  # every prefix is a module name too
        parts = m.split(".") if m else []
        modules += [".".join(parts[:k]) for k in range(len(parts) + 1)]
    return arrays, list(dict.fromkeys(modules))


def _links(jshapes: Mapping[tuple[str, str], tuple[int, ...]], descs: Mapping[str, dict[str, Any]],
           tshapes: Mapping[tuple[str, str], tuple[int, ...]] | None, torch_modules: list[str] | None,
           mapping: Mapping[str, str] | None) -> list[Any]:
    from jaxloss.parity.models.diff import pair_modules
    from jaxloss.parity.models.rules import module_links, split_mapping

    mods, tens = split_mapping(mapping, list(jshapes))
    jnames = list(dict.fromkeys(list(descs) + [m for m, _ in jshapes]))
    pairs = pair_modules(jnames, jnames if torch_modules is None else torch_modules, mods)
    return module_links(descs, jshapes, tshapes, pairs, tens)


def _name(key: tuple[str, str]) -> str:
    return f"{key[0]}.{key[1]}" if key[0] else key[1]


# --------------------------------------------------------------------------- torch -> NNX
def load_torch_weights(flax_model: Any, torch_model_or_state_dict: Any, *, mapping: Mapping[str, str] | None = None,
                       strict: bool = True) -> LoadReport:
    """Copy every torch parameter and buffer into the NNX model, in place (see the module docstring).

    Args:
        flax_model: a ``flax.nnx.Module``; its variables keep their dtype and sharding. It may
            be abstract (``nnx.eval_shape(lambda: Model(rngs=nnx.Rngs(0)))``: no initialiser
            runs); the loaded variables are then concrete.
        torch_model_or_state_dict: a ``torch.nn.Module`` or its ``state_dict()``.
        mapping: ``{jax_path: torch_name}`` for modules whose names differ, and / or
            ``{"jax_path.variable": "torch_name.tensor[k]"}`` for single tensors.
        strict: every torch tensor consumed and every NNX parameter / batch statistic filled;
            otherwise they are listed in the report's ``unpaired_*``.

    For a float64 comparison, make the float64 twin first (:func:`jaxloss.parity.to_float64`) and
    load into it: a bias NNX keeps as ``bias_ih + bias_hh`` is summed in the NNX variable's dtype
    (in float32 about 3e-9 off the float64 sum).

    Returns:
        A :class:`LoadReport`: each NNX variable, the torch tensor(s) it came from, the conversion.

    Raises:
        ValueError: one error listing what is unpaired on each side (``strict``); a shape
            mismatch, naming both tensors and shapes; a non-zero torch tensor NNX has no place
            for (GRU ``b_hn``); a ``mapping`` naming what the models do not have.
        TypeError: a model that is not one.

    >>> import numpy as np, torch
    >>> from flax import nnx
    >>> from jaxloss import parity
    >>> tm = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    >>> fm = nnx.Sequential(nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(0)), nnx.relu,
    ...                     nnx.Conv(4, 2, (1, 1), rngs=nnx.Rngs(0)))
    >>> report = parity.load_torch_weights(fm, tm)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    loaded 4 NNX variables from torch
      0.kernel (3, 3, 3, 4)  <-  0.weight (4, 3, 3, 3)  weight (out, in/groups, *k) -> kernel (*k, in/groups, out)
      0.bias (4,)            <-  0.bias (4,)  as-is
      2.kernel (1, 1, 4, 2)  <-  2.weight (2, 4, 1, 1)  weight (out, in/groups, *k) -> kernel (*k, in/groups, out)
      2.bias (2,)            <-  2.bias (2,)  as-is
    >>> x = np.random.default_rng(0).normal(size=(1, 3, 5, 5)).astype(np.float32)
    >>> y = np.asarray(fm(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    >>> bool(np.allclose(y, tm(torch.tensor(x)).detach().numpy(), atol=1e-5))
    True
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if not isinstance(flax_model, nnx.Module):
        raise TypeError(f"flax_model must be a flax.nnx.Module, got {type(flax_model).__name__}")
    tarrays, tmodules = _torch_numpy(torch_model_or_state_dict, "torch_model_or_state_dict")
    jvars, descs = _jax_variables(flax_model)
    jshapes = {k: tuple(v.get_raw_value().shape) for k, v in jvars.items()}  # raw: an nnx.eval_shape model loads too
    tshapes = {k: tuple(a.shape) for k, a in tarrays.items()}
    links = _links(jshapes, descs, tshapes, tmodules, mapping)

    report = LoadReport([])
    used: set[tuple[str, str]] = set()
    errors: list[str] = []
    new: dict[tuple[str, str], np.ndarray] = {}
    for lk in links:
        used.update(p.key for p in lk.torch)
        if lk.jax is None:
            value = lk.torch[0].take(tarrays[lk.torch[0].key])
            if np.any(value != 0):
                errors.append(f"torch {lk.torch_name} is non-zero and NNX has no place for it ({lk.how}): "
                              f"loading it would give a different model")
            else:
                report.ignored.append(lk.torch_name)
            continue
        value = sum(p.take(tarrays[p.key]) for p in lk.torch)
        try:
            new[lk.jax] = lk.to_jax(np.asarray(value), jshapes[lk.jax])
        except ValueError as e:
            errors.append(str(e))
            continue
        report.copied.append(Copied(lk.jax_name, lk.torch_name, jshapes[lk.jax], tuple(np.shape(value)), lk.how))
    report.unpaired_jax = sorted(_name(k) for k, v in jvars.items() if k not in new and isinstance(v, (nnx.Param, nnx.BatchStat))
                                 and not any(lk.jax == k for lk in links))
    for k in tarrays:
        if k not in used:
            (report.ignored if k[1] in _IGNORED else report.unpaired_torch).append(_name(k))
    if strict and (report.unpaired_jax or report.unpaired_torch):
        errors.insert(0, f"unpaired: NNX variables {report.unpaired_jax} have no torch tensor, torch tensors "
                         f"{report.unpaired_torch} no NNX variable (pass mapping={{jax_path: torch_name}} or "
                         f"{{'jax_path.variable': 'torch_name.tensor'}}, or strict=False)")
    if errors:
        raise ValueError("load_torch_weights: " + "; ".join(errors))
    for k, a in new.items():
        var = jvars[k]
        old = var.get_raw_value()
        arr = jnp.array(a, dtype=old.dtype, copy=True)
        sharding = getattr(old, "sharding", None)
        var.set_value(jax.device_put(arr, sharding) if sharding is not None else arr)
    return report


# --------------------------------------------------------------------------- NNX -> torch
def export_torch_weights(flax_model: Any, torch_model: Any = None, *, mapping: Mapping[str, str] | None = None,
                         strict: bool = True) -> dict[str, Any]:
    """The NNX model's weights as a torch ``state_dict`` (``{name: torch.Tensor}``), by the same rules.

    ``torch_model`` (a module or a state_dict) gives the names, shapes and dtypes (its values
    are read only for tensors NNX has no place for, e.g. ``num_batches_tracked``); without it
    the names are NNX's paths with torch's tensor names (``fc.weight``, ``lstm.weight_ih_l0``),
    float dtypes as NNX's. Where NNX keeps one bias for torch's two (``bias_ih + bias_hh``),
    ``bias_ih`` gets the value and ``bias_hh`` zeros. ``strict``: every tensor of
    ``torch_model`` produced and every NNX parameter used, else one ``ValueError`` listing them.

    >>> import numpy as np, torch
    >>> from flax import nnx
    >>> from jaxloss import parity
    >>> fm = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    >>> sd = parity.export_torch_weights(fm)
    >>> {k: tuple(v.shape) for k, v in sd.items()}
    {'weight': (2, 3), 'bias': (2,)}
    >>> tm = torch.nn.Linear(3, 2)
    >>> _ = tm.load_state_dict(parity.export_torch_weights(fm, tm))
    >>> bool(np.array_equal(tm.weight.detach().numpy(), np.asarray(fm.kernel[...]).T))
    True
    """
    import torch
    from flax import nnx

    from jaxloss.parity.models.rules import Piece

    if not isinstance(flax_model, nnx.Module):
        raise TypeError(f"flax_model must be a flax.nnx.Module, got {type(flax_model).__name__}")
    jvars, descs = _jax_variables(flax_model)
    jvals = {k: np.asarray(v[...]) for k, v in jvars.items()}
    jshapes = {k: a.shape for k, a in jvals.items()}
    if torch_model is None:
        tarrays, tmodules = None, None
        links = _links(jshapes, descs, None, None, mapping)
    else:
        tarrays, tmodules = _torch_numpy(torch_model, "torch_model")
        links = _links(jshapes, descs, {k: a.shape for k, a in tarrays.items()}, tmodules, mapping)

    out: dict[tuple[str, str], np.ndarray] = {}

    def slot(p: Piece, piece_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if p.key not in out:
            shape = tarrays[p.key].shape if tarrays is not None else (piece_shape[0] * p.count, *piece_shape[1:]) \
                if p.index is not None else piece_shape
            out[p.key] = np.zeros(shape, dtype if tarrays is None else tarrays[p.key].dtype)
        return out[p.key]

    errors = []
    for lk in links:
        if lk.jax is None:
            for p in lk.torch:
                full = tarrays[p.key].shape if tarrays is not None else None
                if full is not None:
                    slot(p, full, np.float32)  # zeros: NNX has no value for it
            continue
        value = lk.to_torch(jvals[lk.jax])
        for k, p in enumerate(lk.torch):
            full = slot(p, value.shape, value.dtype)
            if p.shape_of(full.shape) != value.shape:
                errors.append(f"shape mismatch: NNX {lk.jax_name} {jshapes[lk.jax]} gives {value.shape} ({lk.how}), "
                              f"torch {p.name} is {p.shape_of(full.shape)}")
                continue
            if p.keep is None:
                p.put(full, value if k == 0 else np.zeros_like(value))
    used = {lk.jax for lk in links}
    unpaired_jax = [_name(k) for k, v in jvars.items() if k not in used and isinstance(v, (nnx.Param, nnx.BatchStat))]
    unpaired_torch = []
    if tarrays is not None:
        for k, a in tarrays.items():
            if k not in out:
                out[k] = a.copy()  # NNX has nothing for it (num_batches_tracked): torch's own value
                if k[1] not in _IGNORED:
                    unpaired_torch.append(_name(k))
    if strict and (unpaired_jax or unpaired_torch):
        errors.insert(0, f"unpaired: NNX variables {unpaired_jax} have no torch tensor, torch tensors {unpaired_torch} "
                         "no NNX variable (pass mapping=, or strict=False)")
    if errors:
        raise ValueError("export_torch_weights: " + "; ".join(errors))
    order = list(tarrays) if tarrays is not None else list(out)
    return {_name(k): torch.from_numpy(np.array(out[k], order="C")) for k in order if k in out}


# --------------------------------------------------------------------------- the project's models
def torch_layer_groups(state_dict: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``[(prefix, kind, {suffix: tensor})]`` in state_dict order; kind is 'conv' | 'linear' | 'bn'.

    >>> import torch
    >>> from jaxloss.parity.weights import torch_layer_groups
    >>> [(p, k) for p, k, _ in torch_layer_groups(torch.nn.Sequential(torch.nn.Linear(2, 3)).state_dict())]
    [('0', 'linear')]
    """
    groups: dict[str, dict[str, Any]] = {}
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
            raise ValueError(f"state_dict entry {prefix!r} ({sorted(entries)}) is not a Conv2d, Linear or BatchNorm2d")
        out.append((prefix, kind, entries))
    return out


def _kind(layer: Any) -> str:
    from flax import nnx

    from jaxloss.train.models import BatchNorm2d

    if isinstance(layer, BatchNorm2d):
        return "bn"
    if isinstance(layer, nnx.Conv):
        return "conv"
    if isinstance(layer, nnx.Linear):
        return "linear"
    raise TypeError(f"cannot convert a {type(layer).__name__}")


def order_mapping(flax_model: Any, torch_model_or_state_dict: Any) -> dict[str, str]:
    """``{jax_path: torch_name}`` of a :mod:`jaxloss.train.models` model and its torch twin, paired in
    state_dict order (their names differ: the seed CNN's ``conv1`` is torch's ``model.0``); each
    pair checked for kind, and BatchNorm eps / momentum for agreement.

    >>> from flax import nnx
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> order_mapping(SeedCNN(rngs=nnx.Rngs(0)), TorchSeedCNN())["fc2"]
    'model.8'
    """
    import torch

    from jaxloss.parity.models.capture import jax_module_names
    from jaxloss.train.models import torch_order_layers

    sd = torch_model_or_state_dict.state_dict() if isinstance(torch_model_or_state_dict, torch.nn.Module) \
        else torch_model_or_state_dict
    groups = torch_layer_groups(sd)
    layers = torch_order_layers(flax_model)
    if len(groups) != len(layers):
        raise ValueError(f"torch model has {len(groups)} Conv/Linear/BatchNorm layers, {type(flax_model).__name__} has "
                         f"{len(layers)}: not twins (check num_classes, activation, cifar_stem)")
    bn = {n: (m.eps, m.momentum) for n, m in torch_model_or_state_dict.named_modules()
          if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} if isinstance(torch_model_or_state_dict, torch.nn.Module) else {}
    names = jax_module_names(flax_model)
    out = {}
    for (prefix, kind, _), layer in zip(groups, layers, strict=True):
        if kind != _kind(layer):
            raise ValueError(f"torch layer {prefix!r} is a {kind}, the Flax layer in its place a {_kind(layer)}")
        if prefix in bn and bn[prefix] != (layer.eps, layer.momentum):
            raise ValueError(f"{prefix}: torch BatchNorm eps={bn[prefix][0]}, momentum={bn[prefix][1]}; Flax eps={layer.eps}, "
                             f"momentum={layer.momentum} (torch convention)")
        out[names[id(layer)]] = prefix
    return out


def torch_to_flax(torch_module: Any, flax_model: Any) -> Any:
    """Load ``torch_module``'s weights (an ``nn.Module`` or a state_dict) into a :mod:`jaxloss.train.models`
    model, in place, layers paired by order; returns ``flax_model``.

    >>> import numpy as np
    >>> from flax import nnx
    >>> from jaxloss.parity.weights import torch_to_flax
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> tm, fm = TorchSeedCNN(), SeedCNN(rngs=nnx.Rngs(0))
    >>> _ = torch_to_flax(tm, fm)
    >>> np.array_equal(np.asarray(fm.conv1.kernel[...]), tm.model[0].weight.detach().numpy().transpose(2, 3, 1, 0))
    True
    """
    load_torch_weights(flax_model, torch_module, mapping=order_mapping(flax_model, torch_module))
    return flax_model


def flax_state_dict(flax_model: Any, torch_module: Any) -> dict[str, np.ndarray]:
    """``flax_model``'s weights as NumPy arrays in torch layout, keyed like ``torch_module``'s state_dict
    (which supplies the names and the layer order; its values are not read).

    >>> from flax import nnx
    >>> from jaxloss.parity.weights import flax_state_dict
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> sd = flax_state_dict(SeedCNN(rngs=nnx.Rngs(0)), TorchSeedCNN())
    >>> sd["model.0.weight"].shape
    (32, 3, 5, 5)
    """
    sd = export_torch_weights(flax_model, torch_module, mapping=order_mapping(flax_model, torch_module))
    return {k: v.numpy() for k, v in sd.items()}


def flax_to_torch(flax_model: Any, torch_module: Any) -> Any:
    """Write ``flax_model``'s weights into ``torch_module`` (strict ``load_state_dict``), in place.

    >>> import numpy as np
    >>> from flax import nnx
    >>> from jaxloss.parity.weights import flax_to_torch
    >>> from jaxloss.train.models import SeedCNN
    >>> from jaxloss.train.torch_models import TorchSeedCNN
    >>> fm = SeedCNN(rngs=nnx.Rngs(0))
    >>> tm = flax_to_torch(fm, TorchSeedCNN())
    >>> np.array_equal(tm.model[-1].bias.detach().numpy(), np.asarray(fm.fc2.bias[...]))
    True
    """
    sd = torch_module.state_dict()
    new = export_torch_weights(flax_model, torch_module, mapping=order_mapping(flax_model, torch_module))
    torch_module.load_state_dict({k: v.to(dtype=sd[k].dtype, device=sd[k].device) for k, v in new.items()}, strict=True)
    return torch_module
