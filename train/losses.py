"""The training loss: a :mod:`jaxloss.nn` criterion fed from logits and class labels.

:data:`LOSSES` is the one table that says, for every classification-shaped loss, which
criterion it is and how a classifier's logits and integer labels are fed to it, as torch
code would feed them: class indices for ``cross_entropy`` / ``nll_loss`` (on
``log_softmax``) / ``focal_loss`` / ``multi_margin_loss``; one-hot targets for the binary
and regression losses (the regression losses on the softmax probabilities); ``kl_div`` on
``log_softmax`` with ``reduction='batchmean'`` (its mathematically correct mean).
:mod:`jaxloss.parity.twin` feeds torch's criterion of the same name from the same table.

Importing this module imports no JAX (the table is plain data; :func:`make_loss` builds).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["LOSSES", "Loss", "LossSpec", "make_loss"]


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """How one loss is fed: its criterion class, what it gets, its options and its reductions.

    >>> from jaxloss.train.losses import LOSSES
    >>> LOSSES["kl_div"].criterion, LOSSES["kl_div"].input, LOSSES["kl_div"].reduction
    ('KLDivLoss', 'log_softmax', 'batchmean')
    """

    criterion: str  # the class name in jaxloss.nn (and torch.nn, where torch has it)
    input: str  # "logits" | "log_softmax" | "softmax" | "sigmoid"
    target: str  # "index" | "onehot" | "pm1" (one-hot as -1/+1) | "multilabel_index"
    options: tuple[str, ...] = ()  # the keyword options a run may set
    reduction: str = "mean"  # the reduction training uses
    per_example: str = "mean"  # how an (N, C) 'none' output becomes (N,) consistently with `reduction`


LOSSES: dict[str, LossSpec] = {
    "cross_entropy": LossSpec("CrossEntropyLoss", "logits", "index", ("label_smoothing",)),
    "nll_loss": LossSpec("NLLLoss", "log_softmax", "index"),
    "focal_loss": LossSpec("FocalLoss", "logits", "index", ("gamma", "alpha")),
    "multi_margin_loss": LossSpec("MultiMarginLoss", "logits", "index", ("p", "margin")),
    "multilabel_margin_loss": LossSpec("MultiLabelMarginLoss", "logits", "multilabel_index"),
    "kl_div": LossSpec("KLDivLoss", "log_softmax", "onehot", reduction="batchmean", per_example="sum"),
    "binary_cross_entropy_with_logits": LossSpec("BCEWithLogitsLoss", "logits", "onehot"),
    "binary_cross_entropy": LossSpec("BCELoss", "sigmoid", "onehot"),
    "sigmoid_focal_loss": LossSpec("SigmoidFocalLoss", "logits", "onehot", ("gamma", "alpha")),
    "multilabel_soft_margin_loss": LossSpec("MultiLabelSoftMarginLoss", "logits", "onehot"),
    "soft_margin_loss": LossSpec("SoftMarginLoss", "logits", "pm1"),
    "poisson_nll_loss": LossSpec("PoissonNLLLoss", "logits", "onehot"),  # log_input=True: logits are log-rates
    "mse_loss": LossSpec("MSELoss", "softmax", "onehot"),
    "l1_loss": LossSpec("L1Loss", "softmax", "onehot"),
    "smooth_l1_loss": LossSpec("SmoothL1Loss", "softmax", "onehot", ("beta",)),
    "huber_loss": LossSpec("HuberLoss", "softmax", "onehot", ("delta",)),
}

_NOT_CLASSIFICATION = {
    "gaussian_nll_loss": "needs a predicted variance",
    "ctc_loss": "is a sequence loss",
    "linear_cross_entropy": "takes hidden features and the classifier weight, not logits",
    "margin_ranking_loss": "ranks pairs of inputs",
    "hinge_embedding_loss": "takes distances",
    "cosine_embedding_loss": "compares pairs of embeddings",
    "triplet_margin_loss": "compares triplets of embeddings",
    "triplet_margin_with_distance_loss": "compares triplets of embeddings",
}


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss of :data:`LOSSES` bound to its options: ``loss(logits, labels) -> scalar``.

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.losses import make_loss
    >>> loss = make_loss("cross_entropy", label_smoothing=0.1)
    >>> round(float(loss(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
    1.3863
    >>> loss.per_example(jnp.zeros((2, 4)), jnp.array([0, 3])).shape
    (2,)
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> LossSpec:
        return LOSSES[self.name]

    def criterion(self, reduction: str | None = None) -> Any:
        """The :mod:`jaxloss.nn` criterion, with the training reduction unless told another."""
        import jaxloss.nn

        cls = getattr(jaxloss.nn, self.spec.criterion)
        return cls(reduction=reduction or self.spec.reduction, **dict(self.options))

    def inputs(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        """``(input, target)`` for the criterion, from logits (N, C) and class labels (N,)."""
        import jax
        import jax.numpy as jnp

        spec, c = self.spec, logits.shape[-1]
        x = {"logits": lambda z: z, "log_softmax": jax.nn.log_softmax, "softmax": jax.nn.softmax,
             "sigmoid": jax.nn.sigmoid}[spec.input](logits)  # fmt: skip
        if spec.target == "index":
            return x, labels
        if spec.target == "multilabel_index":  # the target class first, then -1 padding
            return x, jnp.full(logits.shape, -1, labels.dtype).at[:, 0].set(labels)
        onehot = jax.nn.one_hot(labels, c, dtype=logits.dtype)
        return x, (2 * onehot - 1 if spec.target == "pm1" else onehot)

    def __call__(self, logits: Any, labels: Any) -> Any:
        """The training loss: the batch mean (``'batchmean'`` for kl_div)."""
        return self.criterion()(*self.inputs(logits, labels))

    def per_example(self, logits: Any, labels: Any) -> Any:
        """(N,) losses whose mean is :meth:`__call__` (for masked evaluation)."""
        out = self.criterion("none")(*self.inputs(logits, labels))
        if out.ndim == 2:
            out = out.sum(axis=1) if self.spec.per_example == "sum" else out.mean(axis=1)
        return out


def make_loss(name: str, **options: Any) -> Loss:
    """Bind a loss of :data:`LOSSES` by name; options set to ``None`` keep the loss's default.

    Raises :class:`jaxloss.train.config.ConfigError` naming ``loss`` or the option.

    >>> from jaxloss.train.losses import make_loss
    >>> make_loss("focal_loss", gamma=2.0).options
    (('gamma', 2.0),)
    >>> make_loss("cross_entropy", gamma=2.0)
    Traceback (most recent call last):
    ...
    jaxloss.train.config.ConfigError: gamma does not apply to loss cross_entropy (its options: label_smoothing)
    """
    from jaxloss.train.config import ConfigError

    if name not in LOSSES:
        if name in _NOT_CLASSIFICATION:
            raise ConfigError("loss", f"{name} is not a classification loss (it {_NOT_CLASSIFICATION[name]})")
        raise ConfigError("loss", f"must be one of {', '.join(sorted(LOSSES))}, got {name!r}")
    given = {k: v for k, v in options.items() if v is not None}
    for key in sorted(given):
        if key not in LOSSES[name].options:
            allowed = ", ".join(LOSSES[name].options) or "none"
            raise ConfigError(key, f"does not apply to loss {name} (its options: {allowed})")
    if name == "multi_margin_loss" and given.get("p", 1) not in (1, 2):
        raise ConfigError("p", f"must be 1 or 2, got {given['p']!r}")
    return Loss(name, tuple(sorted(given.items())))
