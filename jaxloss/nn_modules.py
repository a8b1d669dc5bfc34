"""The two ``torch.nn`` losses that own parameters, as Flax NNX modules.

Importing this module imports Flax; ``jaxloss.nn`` re-exports both classes
lazily, so users of the pure functions never need Flax.

Parameters are stored in torch's layout (``weight`` is ``(out_features,
in_features)``), so :meth:`load_torch_state_dict` copies tensors without
transposes and the same weights give the same numbers in both frameworks.
Initialisation follows ``torch.nn.Linear``: weights and biases
``U(-1/sqrt(in_features), 1/sqrt(in_features))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxloss import _checked, _dtypes
from jaxloss._dtypes import Array
from jaxloss._shapes import check_reduction
from jaxloss.linear import linear_cross_entropy


def _torch_linear_init(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int, dtype: Any) -> nnx.Param:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return nnx.Param(jax.random.uniform(rngs.params(), shape, dtype=dtype, minval=-bound, maxval=bound))


def _to_array(value: Any, like: Array) -> Array:
    """A torch tensor or array-like as a JAX array of ``like``'s dtype, shape-checked."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = jnp.asarray(np.asarray(value), dtype=like.dtype)
    if arr.shape != like.shape:
        raise ValueError(f"size mismatch: checkpoint has shape {tuple(arr.shape)}, the module {tuple(like.shape)}")
    return arr


def _load(params: Mapping[str, nnx.Variable], state_dict: Mapping[str, Any]) -> None:
    missing = sorted(set(params) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(params))
    if missing or unexpected:
        raise KeyError(f"state_dict mismatch: missing keys {missing}, unexpected keys {unexpected}")
    for key, var in params.items():
        var.set_value(_to_array(state_dict[key], var[...]))


class LinearCrossEntropyLoss(nnx.Module):
    """``torch.nn.LinearCrossEntropyLoss``: a linear layer fused with cross entropy.

    ``loss = cross_entropy(input @ W.T + b, target)`` computed by
    :func:`jaxloss.linear_cross_entropy` in chunks, so the ``(N, C)`` logits are
    never held in memory. ``chunk_size`` replaces torch's ``options``.

    Args:
        in_features: size of each input row.
        num_classes: number of classes ``C``.
        out_features: ``(d1, ..., dK)`` for a K-dimensional loss; the stored
            weight is flat, ``(C * prod(out_features), in_features)``, as in torch.
        bias: add a learnable bias.
        dtype: parameter dtype (default float32).
        reduction, weight, ignore_index, label_smoothing: as
            :func:`jaxloss.cross_entropy` (``ignore_index=None`` means -100).
        chunk_size: rows per chunk (``None``: the function's default).
        rngs: Flax random streams for the initial parameters.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxloss.nn_modules import LinearCrossEntropyLoss
        >>> head = LinearCrossEntropyLoss(8, 10, rngs=nnx.Rngs(0))
        >>> head.weight[...].shape
        (10, 8)
        >>> loss = head(jnp.ones((4, 8)), jnp.array([0, 3, 9, 1]))
        >>> loss.shape, bool(jnp.isfinite(loss))
        ((), True)
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        dtype: Any = jnp.float32,
        reduction: str = "mean",
        weight: Array | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        chunk_size: int | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if weight is not None and tuple(jnp.shape(weight)) != (num_classes,):
            raise ValueError(f"expected weight shape to be {(num_classes,)}, got {tuple(jnp.shape(weight))}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"expected label_smoothing to be in range [0, 1], got {label_smoothing}")
        check_reduction(reduction)
        self.in_features = in_features
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.chunk_size = chunk_size
        self.class_weight = None if weight is None else nnx.Variable(jnp.asarray(weight))
        rows = math.prod(self.out_features, start=num_classes)
        self.weight = _torch_linear_init(rngs, (rows, in_features), in_features, dtype)
        self.bias = _torch_linear_init(rngs, (rows,), in_features, dtype) if bias else None

    def __call__(self, input: Array, target: Array) -> Array:
        linear_weight = self.weight[...].reshape((self.num_classes, *self.out_features, self.in_features))
        linear_bias = None if self.bias is None else self.bias[...].reshape((self.num_classes, *self.out_features))
        extra = {} if self.chunk_size is None else {"chunk_size": self.chunk_size}
        return linear_cross_entropy(
            input,
            linear_weight,
            target,
            linear_bias=linear_bias,
            weight=None if self.class_weight is None else self.class_weight[...],
            reduction=self.reduction,  # type: ignore[arg-type]
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            **extra,
        )

    def load_torch_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Copy a ``torch.nn.LinearCrossEntropyLoss.state_dict()`` into this module."""
        params: dict[str, nnx.Variable] = {"linear.weight": self.weight}
        if self.bias is not None:
            params["linear.bias"] = self.bias
        if self.class_weight is not None:
            params["weight"] = self.class_weight
        _load(params, state_dict)


class ASMOutput(NamedTuple):
    """What :class:`AdaptiveLogSoftmaxWithLoss` returns (torch's ``_ASMoutput``).

    Example:
        >>> from jaxloss.nn_modules import ASMOutput
        >>> ASMOutput(output=1.0, loss=2.0).loss
        2.0
    """

    output: Array
    """Log-probability of each example's target class, shape ``(N,)`` (``()`` unbatched)."""
    loss: Array
    """``mean(-output)``."""


class AdaptiveLogSoftmaxWithLoss(nnx.Module):
    """``torch.nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al., 2016, "Efficient softmax
    approximation for GPUs", https://arxiv.org/abs/1609.04309).

    The head scores the ``cutoffs[0]`` frequent classes plus one logit per tail
    cluster; cluster ``i`` projects to ``in_features // div_value**(i+1)`` and then
    to its classes. ``log p(c) = head_logprob[c]`` for shortlist classes and
    ``head_logprob[cluster] + cluster_logprob[c - cutoff]`` otherwise.

    Unlike torch, which runs each cluster only on the rows whose target falls in
    it (data-dependent shapes), this version evaluates every cluster on every row
    and selects: same numbers, static shapes, so it jits and vmaps. A target
    outside ``[0, n_classes)`` gives NaN (torch raises; ``jaxloss.checked`` has no
    module form, so validate targets beforehand if needed).

    Shapes: ``input`` ``(N, in_features)`` with ``target`` ``(N,)``, or ``(in_features,)``
    with a scalar target.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxloss.nn_modules import AdaptiveLogSoftmaxWithLoss
        >>> asm = AdaptiveLogSoftmaxWithLoss(8, 10, cutoffs=[4], rngs=nnx.Rngs(0))
        >>> out = asm(jnp.ones((3, 8)), jnp.array([0, 5, 9]))
        >>> out.output.shape, out.loss.shape
        ((3,), ())
        >>> asm.log_prob(jnp.ones((3, 8))).shape
        (3, 10)
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        cutoffs: Sequence[int],
        div_value: float = 4.0,
        head_bias: bool = False,
        *,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        cutoffs = list(cutoffs)
        if len(cutoffs) == 0:
            raise ValueError("cutoffs should be a sequence of length larger than 0")
        if (
            cutoffs != sorted(cutoffs)
            or min(cutoffs) <= 0
            or max(cutoffs) > n_classes - 1
            or len(set(cutoffs)) != len(cutoffs)
            or any(int(c) != c for c in cutoffs)
        ):
            raise ValueError(
                "cutoffs should be a sequence of unique, positive integers sorted in an increasing order, "
                "where each value is between 1 and n_classes-1"
            )
        self.in_features = in_features
        self.n_classes = n_classes
        self.cutoffs = tuple(int(c) for c in cutoffs) + (n_classes,)
        self.div_value = div_value
        self.head_bias = head_bias
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        head_size = self.shortlist_size + self.n_clusters
        self.head_weight = _torch_linear_init(rngs, (head_size, in_features), in_features, dtype)
        self.head_bias_param = _torch_linear_init(rngs, (head_size,), in_features, dtype) if head_bias else None
        projections = []
        for i in range(self.n_clusters):
            hsz = int(in_features // (div_value ** (i + 1)))
            osz = self.cutoffs[i + 1] - self.cutoffs[i]
            projections.append(
                (
                    _torch_linear_init(rngs, (hsz, in_features), in_features, dtype),
                    _torch_linear_init(rngs, (osz, hsz), hsz, dtype),
                )
            )
        self.tail = nnx.List([nnx.List(p) for p in projections])

    def _head_logprob(self, x: Array) -> Array:
        logits = x @ self.head_weight[...].T
        if self.head_bias_param is not None:
            logits = logits + self.head_bias_param[...]
        return jax.nn.log_softmax(logits, axis=1)

    def _cluster_logprob(self, x: Array, i: int) -> Array:
        i2h, h2o = self.tail[i]
        return jax.nn.log_softmax((x @ i2h[...].T) @ h2o[...].T, axis=1)

    def __call__(self, input: Array, target: Array) -> ASMOutput:
        _dtypes.check_integer("target", jnp.asarray(target))
        if target.ndim == 1:
            if input.shape[0] != target.shape[0]:
                raise ValueError("Input and target should have the same size in the batch dimension.")
            if input.ndim != 2:
                raise ValueError(f"1D target tensor expects 2D input tensors, but found inputs with size {input.shape}")
        elif target.ndim == 0:
            if input.ndim != 1:
                raise ValueError(f"0D target tensor expects 1D input tensors, but found inputs with size {input.shape}")
        else:
            raise ValueError("0D or 1D target tensor expected, multi-target not supported")
        batched = target.ndim == 1
        x = input if batched else input[None]
        t = target if batched else target[None]

        head_lp = self._head_logprob(x)
        valid = (t >= 0) & (t < self.n_classes)
        _checked.value_check(valid, f"Target values should be in [0, {self.n_classes - 1}]")
        # Head column: the class itself in the shortlist, else the cluster's logit.
        head_col = jnp.where(t < self.shortlist_size, t, 0)
        out = jnp.zeros(t.shape, dtype=head_lp.dtype)
        for i in range(self.n_clusters):
            low, high = self.cutoffs[i], self.cutoffs[i + 1]
            in_cluster = (t >= low) & (t < high)
            head_col = jnp.where(in_cluster, self.shortlist_size + i, head_col)
            rel = jnp.where(in_cluster, t - low, 0)[:, None]
            local = jnp.take_along_axis(self._cluster_logprob(x, i), rel, axis=1)[:, 0]
            out = jnp.where(in_cluster, local, out)
        out = out + jnp.take_along_axis(head_lp, head_col[:, None], axis=1)[:, 0]
        out = _checked.nan_where(~valid, out)
        loss = jnp.mean(-out)
        return ASMOutput(out if batched else out[0], loss)

    def log_prob(self, input: Array) -> Array:
        """Log-probabilities of all ``n_classes`` classes, ``(N, in_features) -> (N, n_classes)``."""
        head_lp = self._head_logprob(input)
        parts = [head_lp[:, : self.shortlist_size]]
        for i in range(self.n_clusters):
            parts.append(self._cluster_logprob(input, i) + head_lp[:, self.shortlist_size + i][:, None])
        return jnp.concatenate(parts, axis=1)

    def predict(self, input: Array) -> Array:
        """The most probable class per row, ``(N, in_features) -> (N,)`` (= ``log_prob(input).argmax(1)``)."""
        return jnp.argmax(self.log_prob(input), axis=1)

    def load_torch_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Copy a ``torch.nn.AdaptiveLogSoftmaxWithLoss.state_dict()`` into this module."""
        params: dict[str, nnx.Variable] = {"head.weight": self.head_weight}
        if self.head_bias_param is not None:
            params["head.bias"] = self.head_bias_param
        for i, (i2h, h2o) in enumerate(self.tail):
            params[f"tail.{i}.0.weight"] = i2h
            params[f"tail.{i}.1.weight"] = h2o
        _load(params, state_dict)
