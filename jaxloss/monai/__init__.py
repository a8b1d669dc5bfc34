"""MONAI's segmentation losses in JAX: ``jaxloss.monai.DiceLoss(...)`` for ``monai.losses.DiceLoss(...)``.

Each loss is a pure, jit-compiled function (``dice_loss(input, target, **options)``, the
snake-cased class name) and a class twin with MONAI's constructor (``DiceLoss(**options)(input,
target)``, a frozen dataclass and a pytree). Options, defaults, shapes, result dtypes and error
messages are MONAI 1.6.1's; values and gradients are proven against the real ``monai`` classes
(tests/test_monai.py, the parity grid ``python -m jaxloss.parity --loss monai.dice_loss``).

What they share:

* Layout: ``(B, C, *spatial)`` as MONAI, 2-D and 3-D (any rank for the Dice and focal
  losses; the clDice skeleton needs 2-D or 3-D). ``axis=`` (static, default 1) names the
  channel axis of ``input``, ``target`` (and ``mask``) instead: ``axis=-1`` for channels-last.
  A ``reduction='none'`` result of the input's rank has its channels back at ``axis``.
* Targets: one-hot / soft labels of ``input``'s shape, or a ``(B, 1, *spatial)`` label map
  with ``to_onehot_y=True`` (any integer dtype; floats are truncated as MONAI's ``long()``).
  An integer target never widens the result (an int64 label map under ``jax_enable_x64``
  with a float32 input gives float32).
* Result dtype: MONAI's. The input's dtype, promoted with a float target and with MONAI's
  float32 intermediates: its one-hot targets and masks are float32 (a float16 input with
  ``to_onehot_y`` gives float32), the generalised Dice's class weights are float32, and the
  focal loss computes in float32 always (a float64 input gives float32). float16 / bfloat16
  are computed in float32 and rounded once.
* Numeric options (``smooth_nr``, ``smooth_dr``, ``alpha``, ``beta``, ``gamma``, the
  ``lambda_*``, ``label_smoothing``, ``smooth``) are traced; flags, ``reduction``,
  ``other_act`` (a hashable JAX callable, e.g. ``jnp.tanh``), ``w_type``, ``iter_``,
  ``ignore_index`` and ``axis`` are static. ``weight`` / ``alpha`` take MONAI's forms (a
  number, a sequence, an array); pass arrays to a class twin that crosses a ``jax.jit``
  boundary (a list is not hashable).
* Errors: MONAI's messages for bad options and shapes (its ``AssertionError`` shape checks
  raise :class:`ShapeError`, both a ``ValueError`` and an ``AssertionError``). A class index
  outside ``[0, C)`` in a label map (MONAI's ``index 3 is out of bounds for dimension 1 with
  size 3``), a negative traced ``weight`` or an out-of-range traced option gives NaN in value
  and gradient; :mod:`jaxloss.monai.checked` raises MONAI's message instead.
* Gradients: torch's autograd formulas where they differ from JAX's defaults (``|x|`` at 0,
  max-pool ties to the first maximum, ``min`` ties split in half). The focal term uses
  ``1 - p = -expm1(log p)``: its gradient is finite at ``p = 1`` for ``gamma < 1``, where
  MONAI's ``pow`` gives NaN.

Where MONAI is inexact (kept, for the same numbers, and noted in each docstring):
``squared_pred`` / ``soft_label`` compute ``tp`` as ``(|p|^o + |g|^o - |p - g|^o) / 2``,
which cancels; the focal loss rounds float64 inputs to float32; the generalised Dice rounds
class volumes to float32.
"""

from jaxloss._registry import module_class
from jaxloss.monai._common import ShapeError
from jaxloss.monai.cldice import soft_dicecl_dice_loss, softcl_dice_loss
from jaxloss.monai.combined import dice_ce_loss, dice_focal_loss, generalized_dice_focal_loss
from jaxloss.monai.dice import dice_loss, generalized_dice_loss, masked_dice_loss, tversky_loss
from jaxloss.monai.focal import focal_loss


def _doc(name: str, function: str, call: str, value: str, mask: str = "") -> str:
    """The class twin's docstring: its MONAI original, its function, an example (the value
    MONAI 1.6.1 gives for the same call)."""
    return f"""``monai.losses.{name}``. See :func:`jaxloss.monai.{function}`.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss.monai as jm
        >>> x = jnp.array([[[[2.0, -1.0], [0.5, 0.0]], [[-2.0, 1.0], [0.0, 3.0]]]])  # (1, 2, 2, 2) logits
        >>> y = jnp.array([[[[0, 1], [0, 1]]]])  # labels
        >>> mask = jnp.array([[[[1.0, 1.0], [1.0, 0.0]]]])
        >>> options = dict(to_onehot_y=True, softmax=True)
        >>> round(float(jm.{call}(x, y{mask})), 4)
        {value}
    """


DiceLoss = module_class(dice_loss, doc=_doc("DiceLoss", "dice_loss", "DiceLoss(**options)", "0.141", ""))
MaskedDiceLoss = module_class(masked_dice_loss, doc=_doc("MaskedDiceLoss", "masked_dice_loss", "MaskedDiceLoss(**options)", "0.2734", ", mask"))
GeneralizedDiceLoss = module_class(generalized_dice_loss, doc=_doc("GeneralizedDiceLoss", "generalized_dice_loss", "GeneralizedDiceLoss(**options)", "0.1405", ""))
TverskyLoss = module_class(tversky_loss, doc=_doc("TverskyLoss", "tversky_loss", "TverskyLoss(alpha=0.3, beta=0.7, **options)", "0.1415", ""))
FocalLoss = module_class(focal_loss, doc=_doc("FocalLoss", "focal_loss", "FocalLoss(to_onehot_y=True, use_softmax=True)", "0.0087", ""))
DiceCELoss = module_class(dice_ce_loss, doc=_doc("DiceCELoss", "dice_ce_loss", "DiceCELoss(**options)", "0.3079", ""))
DiceFocalLoss = module_class(dice_focal_loss, doc=_doc("DiceFocalLoss", "dice_focal_loss", "DiceFocalLoss(**options)", "0.1989", ""))
GeneralizedDiceFocalLoss = module_class(generalized_dice_focal_loss, doc=_doc("GeneralizedDiceFocalLoss", "generalized_dice_focal_loss", "GeneralizedDiceFocalLoss(**options)", "0.1984", ""))
SoftclDiceLoss = module_class(softcl_dice_loss, doc=_doc("SoftclDiceLoss", "softcl_dice_loss", "SoftclDiceLoss(**options)", "0.0596", ""))
SoftDiceclDiceLoss = module_class(soft_dicecl_dice_loss, doc=_doc("SoftDiceclDiceLoss", "soft_dicecl_dice_loss", "SoftDiceclDiceLoss(**options)", "0.0861", ""))

__all__ = [
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalLoss",
    "GeneralizedDiceFocalLoss",
    "GeneralizedDiceLoss",
    "MaskedDiceLoss",
    "ShapeError",
    "SoftDiceclDiceLoss",
    "SoftclDiceLoss",
    "TverskyLoss",
    "checked",
    "dice_ce_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_loss",
    "generalized_dice_focal_loss",
    "generalized_dice_loss",
    "masked_dice_loss",
    "soft_dicecl_dice_loss",
    "softcl_dice_loss",
    "tversky_loss",
]

from jaxloss.monai import checked  # after the losses: it reads their registrations
