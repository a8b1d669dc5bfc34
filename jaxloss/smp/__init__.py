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


def _doc(cls: str, fn: str, call: str, value: str) -> str:
    """The class twin's docstring: its smp original, its function and one example (smp's value)."""
    return f"""``segmentation_models_pytorch.losses.{cls}``. See :func:`jaxloss.smp.{fn}`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits, mask = jnp.array([[[[2.0, -1.0], [0.5, 3.0]]]]), jnp.array([[[1, 0], [0, 1]]])
        >>> round(float(smp.{call}), 4)
        {value}
    """


DiceLoss = module_class(dice_loss, doc=_doc("DiceLoss", "dice_loss", 'DiceLoss("binary")(logits, mask)', "0.2239"))
JaccardLoss = module_class(
    jaccard_loss, doc=_doc("JaccardLoss", "jaccard_loss", 'JaccardLoss("binary", smooth=1.0)(logits, mask)', "0.2719")
)
TverskyLoss = module_class(
    tversky_loss,
    doc=_doc("TverskyLoss", "tversky_loss", 'TverskyLoss("binary", alpha=0.3, beta=0.7)(logits, mask)', "0.1732"),
)
FocalLoss = module_class(focal_loss, doc=_doc("FocalLoss", "focal_loss", 'FocalLoss("binary")(logits, mask)', "0.1005"))
LovaszLoss = module_class(
    lovasz_loss, doc=_doc("LovaszLoss", "lovasz_loss", 'LovaszLoss("binary", per_image=True)(logits, mask)', "0.5")
)
SoftBCEWithLogitsLoss = module_class(
    soft_bce_with_logits_loss,
    doc=_doc("SoftBCEWithLogitsLoss", "soft_bce_with_logits_loss",
             "SoftBCEWithLogitsLoss(smooth_factor=0.1)(logits[:, 0], mask * 1.0)", "0.5032"),
)
SoftCrossEntropyLoss = module_class(
    soft_cross_entropy_loss,
    doc=_doc("SoftCrossEntropyLoss", "soft_cross_entropy_loss",
             "SoftCrossEntropyLoss(smooth_factor=0.1)(jnp.concatenate([logits, -logits], 1), mask)", "2.9777"),
)
MCCLoss = module_class(
    mcc_loss, doc=_doc("MCCLoss", "mcc_loss", "MCCLoss()(jnp.clip(logits, 0, 1), mask)", "0.2254")
)

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
