"""segmentation_models_pytorch's losses in JAX: ``jaxloss.smp.DiceLoss(...)`` as ``smp.losses.DiceLoss(...)``.

Each loss is a pure function (``dice_loss(y_pred, y_true, mode, ...)``: smp's ``forward``
arguments, then its constructor arguments as keyword options with smp's defaults) and a class of
smp's name (``DiceLoss(mode, ...)(y_pred, y_true)``, a frozen dataclass and pytree built from the
function's registration). Proven against smp 0.6.0's own loss code
(:mod:`jaxloss.parity.smp_reference`). ``jaxloss.smp.checked.<name>`` raises on the invalid
values where the function returns NaN.

>>> import jax.numpy as jnp
>>> from jaxloss import smp
>>> criterion = smp.DiceLoss("multiclass", ignore_index=255)
>>> logits, labels = jnp.zeros((1, 3, 2, 2)), jnp.array([[[0, 1], [2, 255]]])
>>> bool(criterion(logits, labels) == smp.dice_loss(logits, labels, "multiclass", ignore_index=255))
True
"""

from jaxloss._registry import module_class
from jaxloss.smp._common import BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE
from jaxloss.smp.focal import focal_loss
from jaxloss.smp.lovasz import lovasz_loss
from jaxloss.smp.mcc import mcc_loss
from jaxloss.smp.region import dice_loss, jaccard_loss, tversky_loss
from jaxloss.smp.soft import soft_bce_with_logits_loss, soft_cross_entropy_loss

DiceLoss = module_class(dice_loss)
JaccardLoss = module_class(jaccard_loss)
TverskyLoss = module_class(tversky_loss)
FocalLoss = module_class(focal_loss)
LovaszLoss = module_class(lovasz_loss)
SoftBCEWithLogitsLoss = module_class(soft_bce_with_logits_loss)
SoftCrossEntropyLoss = module_class(soft_cross_entropy_loss)
MCCLoss = module_class(mcc_loss)

__all__ = [
    "BINARY_MODE",
    "MULTICLASS_MODE",
    "MULTILABEL_MODE",
    "DiceLoss",
    "FocalLoss",
    "JaccardLoss",
    "LovaszLoss",
    "MCCLoss",
    "SoftBCEWithLogitsLoss",
    "SoftCrossEntropyLoss",
    "TverskyLoss",
    "checked",
    "dice_loss",
    "focal_loss",
    "jaccard_loss",
    "lovasz_loss",
    "mcc_loss",
    "soft_bce_with_logits_loss",
    "soft_cross_entropy_loss",
    "tversky_loss",
]

from jaxloss.smp import checked  # after the losses: it reads their registrations
