"""The twin's loss pair: the training loss (:func:`jaxloss.train.losses.make_loss`) and torch's criterion of the same name.

Criteria torch lacks come from :mod:`jaxloss.parity.references` (the same torch-op references the
parity grid judges against): ``FocalLoss`` and ``SigmoidFocalLoss``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import torch
import torch.nn.functional as F
from jaxloss.parity.references import focal_loss, sigmoid_focal_loss
from jaxloss.train.losses import make_loss

__all__ = ["loss_pair"]

_TORCH_ONLY_FUNCTIONS = {"FocalLoss": focal_loss, "SigmoidFocalLoss": sigmoid_focal_loss}
# how the table's spec.input feeds torch's criterion from the logits
_TORCH_INPUTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logits": lambda z: z, "log_softmax": lambda z: F.log_softmax(z, dim=1),
    "softmax": lambda z: F.softmax(z, dim=1), "sigmoid": torch.sigmoid,
}  # fmt: skip


def _torch_target(y: torch.Tensor, logits: torch.Tensor, target: str) -> torch.Tensor:
    """Class indices ``y`` as the criterion takes them: indices, a multilabel index row, one-hot or +-1."""
    if target == "index":
        return y
    if target == "multilabel_index":
        t = torch.full(logits.shape, -1, dtype=torch.long)
        t[:, 0] = y
        return t
    t = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    return 2 * t - 1 if target == "pm1" else t


def loss_pair(
    name: str, num_classes: int, **options: Any
) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    """``(jax_loss(logits, labels), torch_loss(logits, labels), target_kind)`` for a loss of :data:`jaxloss.train.losses.LOSSES`.

    The JAX side is the training loss (:func:`jaxloss.train.losses.make_loss`); the torch side is
    torch's criterion of the same name, fed as the table says. List-valued options
    (``alpha=[...]``) become arrays / tensors.

    >>> import jax.numpy as jnp, torch
    >>> from jaxloss.parity.twin import loss_pair
    >>> jl, tl, kind = loss_pair("kl_div", 3)
    >>> z, y = [[0.1, 0.2, 0.3]], [2]
    >>> kind, round(float(jl(jnp.array(z), jnp.array(y))), 4) == round(float(tl(torch.tensor(z), torch.tensor(y))), 4)
    ('onehot', True)
    """
    arrays = {k: v for k, v in options.items() if isinstance(v, (list, tuple))}
    plain = {k: v for k, v in options.items() if k not in arrays}
    loss = make_loss(name, **plain)
    spec = loss.spec
    if arrays:  # array options (class weights) bypass the scalar table check, on both sides
        loss = dataclasses.replace(loss, options=tuple(sorted({**dict(loss.options), **arrays}.items())))

    def jax_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
        opts = {k: jnp.asarray(v, logits.dtype) if k in arrays else v for k, v in loss.options}
        return dataclasses.replace(loss, options=tuple(opts.items()))(logits, y)

    def torch_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opts = {k: torch.tensor(v, dtype=logits.dtype) if k in arrays else v for k, v in loss.options}
        x, t = _TORCH_INPUTS[spec.input](logits), _torch_target(y, logits, spec.target)
        fn = _TORCH_ONLY_FUNCTIONS.get(spec.criterion)
        if fn is not None:
            return fn(x, t, reduction=spec.reduction, **opts)
        return getattr(torch.nn, spec.criterion)(reduction=spec.reduction, **opts)(x, t)

    return jax_loss, torch_loss, "index" if spec.target == "index" else "onehot"
