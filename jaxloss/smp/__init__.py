"""segmentation_models_pytorch's losses in JAX: ``jaxloss.smp.DiceLoss(...)`` as ``smp.losses.DiceLoss(...)``.

Each loss is a pure function (``dice_loss(y_pred, y_true, mode, ...)``, smp's constructor
arguments as keyword options with smp's defaults) and a class of the same name as smp's.
Proven against smp 0.6.0's own loss source (:mod:`jaxloss.parity.smp_reference`).
"""

from jaxloss.smp.region import dice_loss, jaccard_loss, tversky_loss

__all__ = [
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
]
