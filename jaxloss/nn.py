"""``torch.nn.*Loss`` twins: small immutable callables with torch's constructor arguments.

Porting torch code is a change of import:

>>> import jax.numpy as jnp
>>> import jaxloss
>>> logits, target = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0])
>>> criterion = jaxloss.nn.CrossEntropyLoss(weight=jnp.array([1.0, 2.0, 1.0]), label_smoothing=0.1)
>>> bool(criterion(logits, target) == jaxloss.cross_entropy(logits, target, weight=criterion.weight, label_smoothing=0.1))
True

Each class is a frozen dataclass registered as a JAX pytree (array fields such
as ``weight`` / ``pos_weight`` are leaves, options are static), so a criterion
can be passed into ``jax.jit``-ed functions, and calling it is exactly calling
the functional form. The deprecated ``size_average`` / ``reduce`` arguments are
left out.

The two classes that own parameters, :class:`LinearCrossEntropyLoss` and
:class:`AdaptiveLogSoftmaxWithLoss`, are Flax NNX modules living in
:mod:`jaxloss.nn_modules`; they are reachable from here but import Flax only
when first used, so ``jaxloss`` keeps depending on ``jax`` alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax

from jaxloss import binary, classification, ctc, divergence, embedding, margin, regression
from jaxloss._core import Array, Reduction, check_reduction

__all__ = [
    "AdaptiveLogSoftmaxWithLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CTCLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "GaussianNLLLoss",
    "HingeEmbeddingLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "LinearCrossEntropyLoss",
    "MSELoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "NLLLoss",
    "NLLLoss2d",
    "PoissonNLLLoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
]

# Pytree leaves: the arrays and the numeric options, so that a criterion passed into a jitted
# function carries them as traced values (a new ``label_smoothing`` or ``margin`` does not
# recompile). Everything else (reduction, ignore_index, booleans, ``p``, callables) is static.
_ARRAY_FIELDS = ("weight", "pos_weight", "alpha", "gamma", "delta", "beta", "eps", "margin", "label_smoothing")


def _loss_class(cls: type) -> type:
    """Make ``cls`` a frozen dataclass and a pytree (array fields and numeric options are leaves)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = [n for n in names if n in _ARRAY_FIELDS]
    meta = [n for n in names if n not in _ARRAY_FIELDS]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


class _Loss:
    """Base of the criteria: validates ``reduction`` at construction, like torch."""

    reduction: str
    _reductions: ClassVar[tuple[str, ...]] = ("none", "mean", "sum")

    def __post_init__(self) -> None:
        if hasattr(self, "reduction"):
            check_reduction(self.reduction, self._reductions)

    def _options(self, *names: str) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names}


# --------------------------------------------------------------------------- regression
@_loss_class
class L1Loss(_Loss):
    """``torch.nn.L1Loss``: mean absolute error. See :func:`jaxloss.l1_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.L1Loss()(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))), 4)
        1.0
    """

    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return regression.l1_loss(input, target, reduction=self.reduction)


@_loss_class
class MSELoss(_Loss):
    """``torch.nn.MSELoss``: mean squared error. See :func:`jaxloss.mse_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MSELoss(reduction='sum')(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))), 4)
        2.0
    """

    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return regression.mse_loss(input, target, reduction=self.reduction)


@_loss_class
class HuberLoss(_Loss):
    """``torch.nn.HuberLoss``. See :func:`jaxloss.huber_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.HuberLoss(delta=0.5)(jnp.array([0.0, 2.0]), jnp.zeros(2))), 4)
        0.4375
    """

    reduction: Reduction = "mean"
    delta: float = 1.0

    def __call__(self, input: Array, target: Array) -> Array:
        return regression.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


@_loss_class
class SmoothL1Loss(_Loss):
    """``torch.nn.SmoothL1Loss``. See :func:`jaxloss.smooth_l1_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.SmoothL1Loss(beta=0.5)(jnp.array([0.0, 2.0]), jnp.zeros(2))), 4)
        0.875
    """

    reduction: Reduction = "mean"
    beta: float = 1.0

    def __call__(self, input: Array, target: Array) -> Array:
        return regression.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


@_loss_class
class PoissonNLLLoss(_Loss):
    """``torch.nn.PoissonNLLLoss``. See :func:`jaxloss.poisson_nll_loss`.

    torch names the first ``forward`` argument ``log_input`` (the same name as the
    option); here it is ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.PoissonNLLLoss()(jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0]))), 4)
        0.3591
    """

    log_input: bool = True
    full: bool = False
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return regression.poisson_nll_loss(input, target, **self._options("log_input", "full", "eps", "reduction"))


@_loss_class
class GaussianNLLLoss(_Loss):
    """``torch.nn.GaussianNLLLoss`` (keyword-only options, as in torch). See :func:`jaxloss.gaussian_nll_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.GaussianNLLLoss()(jnp.zeros(2), jnp.array([0.5, 1.0]), jnp.ones(2))), 4)
        0.3125
    """

    _: dataclasses.KW_ONLY
    full: bool = False
    eps: float = 1e-6
    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array, var: Array | float) -> Array:
        return regression.gaussian_nll_loss(input, target, var, **self._options("full", "eps", "reduction"))


# --------------------------------------------------------------------------- classification
@_loss_class
class NLLLoss(_Loss):
    """``torch.nn.NLLLoss``. See :func:`jaxloss.nll_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((2, 3)))
        >>> round(float(nn.NLLLoss()(log_probs, jnp.array([0, 2]))), 4)
        1.0986
    """

    weight: Array | None = None
    ignore_index: int = -100
    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return classification.nll_loss(input, target, **self._options("weight", "ignore_index", "reduction"))


@_loss_class
class NLLLoss2d(NLLLoss):
    """``torch.nn.NLLLoss2d``: torch's deprecated alias of :class:`NLLLoss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((1, 3, 2, 2)), axis=1)
        >>> round(float(nn.NLLLoss2d()(log_probs, jnp.zeros((1, 2, 2), int))), 4)
        1.0986
    """


@_loss_class
class CrossEntropyLoss(_Loss):
    """``torch.nn.CrossEntropyLoss``. See :func:`jaxloss.cross_entropy`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> round(float(criterion(jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0]))), 4)
        0.3913
    """

    weight: Array | None = None
    ignore_index: int = -100
    reduction: Reduction = "mean"
    label_smoothing: float = 0.0

    def __call__(self, input: Array, target: Array) -> Array:
        return classification.cross_entropy(
            input, target, **self._options("weight", "ignore_index", "reduction", "label_smoothing")
        )


@_loss_class
class FocalLoss(_Loss):
    """Multi-class focal loss on logits (no torch twin). See :func:`jaxloss.focal_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.FocalLoss(gamma=2.0)(jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0]))), 4)
        0.0111
    """

    weight: Array | None = None
    ignore_index: int = -100
    reduction: Reduction = "mean"
    alpha: Array | float | None = None
    gamma: float = 2.0

    def __call__(self, input: Array, target: Array) -> Array:
        return classification.focal_loss(
            input, target, **self._options("weight", "ignore_index", "reduction", "alpha", "gamma")
        )


# --------------------------------------------------------------------------- binary / multi-label
@_loss_class
class BCELoss(_Loss):
    """``torch.nn.BCELoss``. See :func:`jaxloss.binary_cross_entropy`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.BCELoss()(jnp.array([0.9, 0.2]), jnp.array([1.0, 0.0]))), 4)
        0.1643
    """

    weight: Array | None = None
    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return binary.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


@_loss_class
class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss``. See :func:`jaxloss.binary_cross_entropy_with_logits`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> criterion = nn.BCEWithLogitsLoss(pos_weight=jnp.array(2.0))
        >>> round(float(criterion(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]))), 4)
        0.2836
    """

    weight: Array | None = None
    reduction: Reduction = "mean"
    pos_weight: Array | None = None

    def __call__(self, input: Array, target: Array) -> Array:
        return binary.binary_cross_entropy_with_logits(
            input, target, **self._options("weight", "reduction", "pos_weight")
        )


@_loss_class
class SigmoidFocalLoss(_Loss):
    """torchvision's ``sigmoid_focal_loss`` as a criterion. See :func:`jaxloss.sigmoid_focal_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> [round(v, 4) for v in nn.SigmoidFocalLoss(reduction='none')(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0])).tolist()]
        [0.0005, 0.017]
    """

    alpha: float = 0.25
    gamma: float = 2.0
    reduction: Reduction = "none"

    def __call__(self, inputs: Array, targets: Array) -> Array:
        return binary.sigmoid_focal_loss(inputs, targets, **self._options("alpha", "gamma", "reduction"))


@_loss_class
class SoftMarginLoss(_Loss):
    """``torch.nn.SoftMarginLoss``. See :func:`jaxloss.soft_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.SoftMarginLoss()(jnp.array([2.0, -1.0]), jnp.array([1.0, -1.0]))), 4)
        0.2201
    """

    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return binary.soft_margin_loss(input, target, reduction=self.reduction)


@_loss_class
class MultiLabelSoftMarginLoss(_Loss):
    """``torch.nn.MultiLabelSoftMarginLoss``. See :func:`jaxloss.multilabel_soft_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MultiLabelSoftMarginLoss()(jnp.array([[2.0, -1.0]]), jnp.array([[1.0, 0.0]]))), 4)
        0.2201
    """

    weight: Array | None = None
    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return binary.multilabel_soft_margin_loss(input, target, weight=self.weight, reduction=self.reduction)


@_loss_class
class KLDivLoss(_Loss):
    """``torch.nn.KLDivLoss`` (``reduction`` also takes ``'batchmean'``). See :func:`jaxloss.kl_div`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_q = jax.nn.log_softmax(jnp.array([[1.0, 2.0]]))
        >>> round(float(nn.KLDivLoss(reduction='batchmean')(log_q, jnp.array([[0.5, 0.5]]))), 4)
        0.1201
    """

    _reductions: ClassVar[tuple[str, ...]] = ("none", "mean", "sum", "batchmean")
    reduction: str = "mean"
    log_target: bool = False

    def __call__(self, input: Array, target: Array) -> Array:
        return divergence.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


# --------------------------------------------------------------------------- margin
@_loss_class
class MultiLabelMarginLoss(_Loss):
    """``torch.nn.MultiLabelMarginLoss``. See :func:`jaxloss.multilabel_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MultiLabelMarginLoss()(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([[3, 0, -1, 1]]))), 4)
        0.85
    """

    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return margin.multilabel_margin_loss(input, target, reduction=self.reduction)


@_loss_class
class MultiMarginLoss(_Loss):
    """``torch.nn.MultiMarginLoss``. See :func:`jaxloss.multi_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MultiMarginLoss(margin=0.5)(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([3]))), 4)
        0.025
    """

    p: int = 1
    margin: float = 1.0
    weight: Array | None = None
    reduction: Reduction = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p not in (1, 2):
            raise ValueError("only p == 1 and p == 2 supported")

    def __call__(self, input: Array, target: Array) -> Array:
        return margin.multi_margin_loss(input, target, **self._options("p", "margin", "weight", "reduction"))


@_loss_class
class MarginRankingLoss(_Loss):
    """``torch.nn.MarginRankingLoss``. See :func:`jaxloss.margin_ranking_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> criterion = nn.MarginRankingLoss(margin=0.1)
        >>> round(float(criterion(jnp.array([1.0, 0.2]), jnp.array([0.5, 0.4]), jnp.array([1.0, 1.0]))), 4)
        0.15
    """

    margin: float = 0.0
    reduction: Reduction = "mean"

    def __call__(self, input1: Array, input2: Array, target: Array) -> Array:
        return margin.margin_ranking_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


@_loss_class
class HingeEmbeddingLoss(_Loss):
    """``torch.nn.HingeEmbeddingLoss``. See :func:`jaxloss.hinge_embedding_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.HingeEmbeddingLoss()(jnp.array([0.3, 0.3]), jnp.array([1.0, -1.0]))), 4)
        0.5
    """

    margin: float = 1.0
    reduction: Reduction = "mean"

    def __call__(self, input: Array, target: Array) -> Array:
        return margin.hinge_embedding_loss(input, target, margin=self.margin, reduction=self.reduction)


# --------------------------------------------------------------------------- embedding
@_loss_class
class CosineEmbeddingLoss(_Loss):
    """``torch.nn.CosineEmbeddingLoss``. See :func:`jaxloss.cosine_embedding_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> a, b = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]])
        >>> round(float(nn.CosineEmbeddingLoss()(a, b, jnp.array([1]))), 4)
        0.2929
    """

    margin: float = 0.0
    reduction: Reduction = "mean"

    def __call__(self, input1: Array, input2: Array, target: Array) -> Array:
        return embedding.cosine_embedding_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


@_loss_class
class TripletMarginLoss(_Loss):
    """``torch.nn.TripletMarginLoss``. See :func:`jaxloss.triplet_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.array([[2.0, 0.0]])
        >>> round(float(nn.TripletMarginLoss(margin=1.5)(a, p, n)), 4)
        0.5
    """

    margin: float = 1.0
    p: float = 2.0
    eps: float = 1e-6
    swap: bool = False
    reduction: Reduction = "mean"

    def __call__(self, anchor: Array, positive: Array, negative: Array) -> Array:
        return embedding.triplet_margin_loss(
            anchor, positive, negative, **self._options("margin", "p", "eps", "swap", "reduction")
        )


@_loss_class
class TripletMarginWithDistanceLoss(_Loss):
    """``torch.nn.TripletMarginWithDistanceLoss`` (keyword-only, as in torch).

    ``distance_function`` must be hashable (a function, not a fresh lambda per
    call, to avoid recompiling). See :func:`jaxloss.triplet_margin_with_distance_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.array([[2.0, 0.0]])
        >>> round(float(nn.TripletMarginWithDistanceLoss(margin=1.5)(a, p, n)), 4)
        0.5
    """

    _: dataclasses.KW_ONLY
    distance_function: Callable[[Array, Array], Array] | None = None
    margin: float = 1.0
    swap: bool = False
    reduction: Reduction = "mean"

    def __call__(self, anchor: Array, positive: Array, negative: Array) -> Array:
        return embedding.triplet_margin_with_distance_loss(
            anchor, positive, negative, **self._options("distance_function", "margin", "swap", "reduction")
        )


# --------------------------------------------------------------------------- sequence
@_loss_class
class CTCLoss(_Loss):
    """``torch.nn.CTCLoss``. See :func:`jaxloss.ctc_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((4, 1, 3)), axis=-1)
        >>> round(float(nn.CTCLoss(reduction='sum')(log_probs, jnp.array([[1, 2]]), [4], [2])), 4)
        1.6864
    """

    blank: int = 0
    reduction: Reduction = "mean"
    zero_infinity: bool = False

    def __call__(self, log_probs: Array, targets: Array, input_lengths: Any, target_lengths: Any) -> Array:
        return ctc.ctc_loss(
            log_probs, targets, input_lengths, target_lengths, **self._options("blank", "reduction", "zero_infinity")
        )


# --------------------------------------------------------------------------- modules with parameters (Flax NNX)
_NNX_MODULES = ("LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss")


def __getattr__(name: str) -> Any:
    if name in _NNX_MODULES:
        from jaxloss import nn_modules  # imports flax on first use only

        return getattr(nn_modules, name)
    raise AttributeError(f"module 'jaxloss.nn' has no attribute {name!r}")
