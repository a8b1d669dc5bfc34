"""``torch.nn.*Loss`` twins: small immutable callables with torch's constructor arguments.

Porting torch code is a change of import:

>>> import jax.numpy as jnp
>>> import jaxloss
>>> logits, target = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0])
>>> criterion = jaxloss.nn.CrossEntropyLoss(weight=jnp.array([1.0, 2.0, 1.0]), label_smoothing=0.1)
>>> bool(criterion(logits, target) == jaxloss.cross_entropy(logits, target, weight=criterion.weight, label_smoothing=0.1))
True

Each class is generated from its function's registration
(:func:`jaxloss._registry.module_class`): a frozen dataclass registered as a JAX
pytree (array fields such as ``weight`` / ``pos_weight`` and numeric options are
leaves, the other options static), so a criterion can be passed into
``jax.jit``-ed functions, and calling it is exactly calling the functional form.
The constructor checks the options as the function does, with torch's messages.
The deprecated ``size_average`` / ``reduce`` arguments are left out.

The two classes that own parameters, :class:`LinearCrossEntropyLoss` and
:class:`AdaptiveLogSoftmaxWithLoss`, are Flax NNX modules living in
:mod:`jaxloss.nn_modules`; they are reachable from here but import Flax only
when first used, so ``jaxloss`` keeps depending on ``jax`` alone.
"""

from __future__ import annotations

from typing import Any

from jaxloss import binary, classification, ctc, divergence, embedding, margin, regression
from jaxloss._registry import module_class

__all__ = [
    "AdaptiveLogSoftmaxWithLoss",  # noqa: F822 (a Flax module, made on access by __getattr__)
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
    "LinearCrossEntropyLoss",  # noqa: F822 (a Flax module, made on access by __getattr__)
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

# --------------------------------------------------------------------------- regression
L1Loss = module_class(
    regression.l1_loss,
    doc="""``torch.nn.L1Loss``: mean absolute error. See :func:`jaxloss.l1_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.L1Loss()(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))), 4)
        1.0
    """,
)

MSELoss = module_class(
    regression.mse_loss,
    doc="""``torch.nn.MSELoss``: mean squared error. See :func:`jaxloss.mse_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MSELoss(reduction='sum')(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))), 4)
        2.0
    """,
)

HuberLoss = module_class(
    regression.huber_loss,
    doc="""``torch.nn.HuberLoss``. See :func:`jaxloss.huber_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.HuberLoss(delta=0.5)(jnp.array([0.0, 2.0]), jnp.zeros(2))), 4)
        0.4375
    """,
)

SmoothL1Loss = module_class(
    regression.smooth_l1_loss,
    doc="""``torch.nn.SmoothL1Loss``. See :func:`jaxloss.smooth_l1_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.SmoothL1Loss(beta=0.5)(jnp.array([0.0, 2.0]), jnp.zeros(2))), 4)
        0.875
    """,
)

PoissonNLLLoss = module_class(
    regression.poisson_nll_loss,
    doc="""``torch.nn.PoissonNLLLoss``. See :func:`jaxloss.poisson_nll_loss`.

    torch names the first ``forward`` argument ``log_input`` (the same name as the
    option); here it is ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.PoissonNLLLoss()(jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0]))), 4)
        0.3591
    """,
)

GaussianNLLLoss = module_class(
    regression.gaussian_nll_loss,
    doc="""``torch.nn.GaussianNLLLoss`` (keyword-only options, as in torch). See :func:`jaxloss.gaussian_nll_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.GaussianNLLLoss()(jnp.zeros(2), jnp.array([0.5, 1.0]), jnp.ones(2))), 4)
        0.3125
    """,
)

# --------------------------------------------------------------------------- classification
NLLLoss = module_class(
    classification.nll_loss,
    doc="""``torch.nn.NLLLoss``. See :func:`jaxloss.nll_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((2, 3)))
        >>> round(float(nn.NLLLoss()(log_probs, jnp.array([0, 2]))), 4)
        1.0986
    """,
)

NLLLoss2d = module_class(
    classification.nll_loss,
    name="NLLLoss2d",
    base=NLLLoss,
    torch="torch.nn.NLLLoss2d",
    doc="""``torch.nn.NLLLoss2d``: torch's deprecated alias of :class:`NLLLoss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((1, 3, 2, 2)), axis=1)
        >>> round(float(nn.NLLLoss2d()(log_probs, jnp.zeros((1, 2, 2), int))), 4)
        1.0986
    """,
)

CrossEntropyLoss = module_class(
    classification.cross_entropy,
    doc="""``torch.nn.CrossEntropyLoss``. See :func:`jaxloss.cross_entropy`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> round(float(criterion(jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0]))), 4)
        0.3913
    """,
)

FocalLoss = module_class(
    classification.focal_loss,
    doc="""Multi-class focal loss on logits (no torch twin). See :func:`jaxloss.focal_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.FocalLoss(gamma=2.0)(jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0]))), 4)
        0.0111
    """,
)

# --------------------------------------------------------------------------- binary / multi-label
BCELoss = module_class(
    binary.binary_cross_entropy,
    doc="""``torch.nn.BCELoss``. See :func:`jaxloss.binary_cross_entropy`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.BCELoss()(jnp.array([0.9, 0.2]), jnp.array([1.0, 0.0]))), 4)
        0.1643
    """,
)

BCEWithLogitsLoss = module_class(
    binary.binary_cross_entropy_with_logits,
    doc="""``torch.nn.BCEWithLogitsLoss``. See :func:`jaxloss.binary_cross_entropy_with_logits`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> criterion = nn.BCEWithLogitsLoss(pos_weight=jnp.array(2.0))
        >>> round(float(criterion(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]))), 4)
        0.2836
    """,
)

SigmoidFocalLoss = module_class(
    binary.sigmoid_focal_loss,
    doc="""torchvision's ``sigmoid_focal_loss`` as a criterion. See :func:`jaxloss.sigmoid_focal_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> [round(v, 4) for v in nn.SigmoidFocalLoss(reduction='none')(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0])).tolist()]
        [0.0005, 0.017]
    """,
)

SoftMarginLoss = module_class(
    binary.soft_margin_loss,
    doc="""``torch.nn.SoftMarginLoss``. See :func:`jaxloss.soft_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.SoftMarginLoss()(jnp.array([2.0, -1.0]), jnp.array([1.0, -1.0]))), 4)
        0.2201
    """,
)

MultiLabelSoftMarginLoss = module_class(
    binary.multilabel_soft_margin_loss,
    doc="""``torch.nn.MultiLabelSoftMarginLoss``. See :func:`jaxloss.multilabel_soft_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MultiLabelSoftMarginLoss()(jnp.array([[2.0, -1.0]]), jnp.array([[1.0, 0.0]]))), 4)
        0.2201
    """,
)

KLDivLoss = module_class(
    divergence.kl_div,
    doc="""``torch.nn.KLDivLoss`` (``reduction`` also takes ``'batchmean'``). See :func:`jaxloss.kl_div`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_q = jax.nn.log_softmax(jnp.array([[1.0, 2.0]]))
        >>> round(float(nn.KLDivLoss(reduction='batchmean')(log_q, jnp.array([[0.5, 0.5]]))), 4)
        0.1201
    """,
)

# --------------------------------------------------------------------------- margin
MultiLabelMarginLoss = module_class(
    margin.multilabel_margin_loss,
    doc="""``torch.nn.MultiLabelMarginLoss``. See :func:`jaxloss.multilabel_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MultiLabelMarginLoss()(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([[3, 0, -1, 1]]))), 4)
        0.85
    """,
)

MultiMarginLoss = module_class(
    margin.multi_margin_loss,
    doc="""``torch.nn.MultiMarginLoss``. See :func:`jaxloss.multi_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.MultiMarginLoss(margin=0.5)(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([3]))), 4)
        0.025
    """,
)

MarginRankingLoss = module_class(
    margin.margin_ranking_loss,
    doc="""``torch.nn.MarginRankingLoss``. See :func:`jaxloss.margin_ranking_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> criterion = nn.MarginRankingLoss(margin=0.1)
        >>> round(float(criterion(jnp.array([1.0, 0.2]), jnp.array([0.5, 0.4]), jnp.array([1.0, 1.0]))), 4)
        0.15
    """,
)

HingeEmbeddingLoss = module_class(
    margin.hinge_embedding_loss,
    doc="""``torch.nn.HingeEmbeddingLoss``. See :func:`jaxloss.hinge_embedding_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> round(float(nn.HingeEmbeddingLoss()(jnp.array([0.3, 0.3]), jnp.array([1.0, -1.0]))), 4)
        0.5
    """,
)

# --------------------------------------------------------------------------- embedding
CosineEmbeddingLoss = module_class(
    embedding.cosine_embedding_loss,
    doc="""``torch.nn.CosineEmbeddingLoss``. See :func:`jaxloss.cosine_embedding_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> a, b = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]])
        >>> round(float(nn.CosineEmbeddingLoss()(a, b, jnp.array([1]))), 4)
        0.2929
    """,
)

TripletMarginLoss = module_class(
    embedding.triplet_margin_loss,
    doc="""``torch.nn.TripletMarginLoss``. See :func:`jaxloss.triplet_margin_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.array([[2.0, 0.0]])
        >>> round(float(nn.TripletMarginLoss(margin=1.5)(a, p, n)), 4)
        0.5
    """,
)

TripletMarginWithDistanceLoss = module_class(
    embedding.triplet_margin_with_distance_loss,
    doc="""``torch.nn.TripletMarginWithDistanceLoss`` (keyword-only, as in torch).

    ``distance_function`` must be hashable (a function, not a fresh lambda per
    call, to avoid recompiling). See :func:`jaxloss.triplet_margin_with_distance_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]), jnp.array([[2.0, 0.0]])
        >>> round(float(nn.TripletMarginWithDistanceLoss(margin=1.5)(a, p, n)), 4)
        0.5
    """,
)

# --------------------------------------------------------------------------- sequence
CTCLoss = module_class(
    ctc.ctc_loss,
    doc="""``torch.nn.CTCLoss``. See :func:`jaxloss.ctc_loss`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import nn
        >>> import jax
        >>> log_probs = jax.nn.log_softmax(jnp.zeros((4, 1, 3)), axis=-1)
        >>> round(float(nn.CTCLoss(reduction='sum')(log_probs, jnp.array([[1, 2]]), [4], [2])), 4)
        1.6864
    """,
)

# --------------------------------------------------------------------------- modules with parameters (Flax NNX)
_NNX_MODULES = ("LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss")


def __getattr__(name: str) -> Any:
    if name in _NNX_MODULES:
        from jaxloss import nn_modules  # imports flax on first use only

        return getattr(nn_modules, name)
    raise AttributeError(f"module 'jaxloss.nn' has no attribute {name!r}")
