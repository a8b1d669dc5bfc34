"""segmentation_models_pytorch's losses in JAX: ``jaxloss.smp.DiceLoss(...)`` as ``smp.losses.DiceLoss(...)``.

Each loss is a pure function (``dice_loss(y_pred, y_true, mode, ...)``: smp's ``forward``
arguments, then its constructor arguments as keyword options with smp's defaults) and a class of
smp's name. Proven against smp 0.6.0's own loss source (:mod:`jaxloss.parity.smp_reference`).
``jaxloss.smp.checked.<name>`` raises on invalid values where the function returns NaN.
"""

from jaxloss.smp.focal import focal_loss
from jaxloss.smp.lovasz import lovasz_loss
from jaxloss.smp.mcc import mcc_loss
from jaxloss.smp.region import dice_loss, jaccard_loss, tversky_loss
from jaxloss.smp.soft import soft_bce_with_logits_loss, soft_cross_entropy_loss

__all__ = [
    "dice_loss",
    "focal_loss",
    "jaccard_loss",
    "lovasz_loss",
    "mcc_loss",
    "soft_bce_with_logits_loss",
    "soft_cross_entropy_loss",
    "tversky_loss",
]
