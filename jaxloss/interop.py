"""``from_torch``: turn an instantiated ``torch.nn.*Loss`` into its jaxloss twin.

torch is never imported here: the module is recognised by its class name and
read through its public attributes (``reduction``, ``weight``, ``pos_weight``,
``margin``...), so jaxloss keeps depending on jax alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxloss import distance
from jaxloss import nn as jnn

# torch class name -> (jaxloss.nn class, attributes copied as options)
_SIMPLE: dict[str, tuple[type, tuple[str, ...]]] = {
    "L1Loss": (jnn.L1Loss, ("reduction",)),
    "MSELoss": (jnn.MSELoss, ("reduction",)),
    "HuberLoss": (jnn.HuberLoss, ("reduction", "delta")),
    "SmoothL1Loss": (jnn.SmoothL1Loss, ("reduction", "beta")),
    "PoissonNLLLoss": (jnn.PoissonNLLLoss, ("log_input", "full", "eps", "reduction")),
    "GaussianNLLLoss": (jnn.GaussianNLLLoss, ("full", "eps", "reduction")),
    "NLLLoss": (jnn.NLLLoss, ("weight", "ignore_index", "reduction")),
    "NLLLoss2d": (jnn.NLLLoss2d, ("weight", "ignore_index", "reduction")),
    "CrossEntropyLoss": (jnn.CrossEntropyLoss, ("weight", "ignore_index", "reduction", "label_smoothing")),
    "BCELoss": (jnn.BCELoss, ("weight", "reduction")),
    "BCEWithLogitsLoss": (jnn.BCEWithLogitsLoss, ("weight", "reduction", "pos_weight")),
    "SoftMarginLoss": (jnn.SoftMarginLoss, ("reduction",)),
    "MultiLabelSoftMarginLoss": (jnn.MultiLabelSoftMarginLoss, ("weight", "reduction")),
    "KLDivLoss": (jnn.KLDivLoss, ("reduction", "log_target")),
    "MultiLabelMarginLoss": (jnn.MultiLabelMarginLoss, ("reduction",)),
    "MultiMarginLoss": (jnn.MultiMarginLoss, ("p", "margin", "weight", "reduction")),
    "MarginRankingLoss": (jnn.MarginRankingLoss, ("margin", "reduction")),
    "HingeEmbeddingLoss": (jnn.HingeEmbeddingLoss, ("margin", "reduction")),
    "CosineEmbeddingLoss": (jnn.CosineEmbeddingLoss, ("margin", "reduction")),
    "TripletMarginLoss": (jnn.TripletMarginLoss, ("margin", "p", "eps", "swap", "reduction")),
    "CTCLoss": (jnn.CTCLoss, ("blank", "reduction", "zero_infinity")),
}


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
    if name in _SIMPLE:
        cls, attrs = _SIMPLE[name]
        return cls(**{a: _array(getattr(module, a)) for a in attrs})
    if name == "TripletMarginWithDistanceLoss":
        return jnn.TripletMarginWithDistanceLoss(
            distance_function=_distance_function(module.distance_function),
            margin=module.margin,
            swap=module.swap,
            reduction=module.reduction,
        )
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
