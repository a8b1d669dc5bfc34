"""smp's ``MCCLoss``: one minus the Matthews correlation coefficient of soft binary predictions."""

from __future__ import annotations

import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import Number, Opmath, loss_function
from jaxloss._shapes import broadcast_shapes


@loss_function(
    numbers={"eps": Number()},
    arrays={"y_pred": "float", "y_true": "real"},
    reductions=None,
    opmath=Opmath(promote=("y_pred", "y_true")),
    module="MCCLoss",
    forward=("y_pred", "y_true"),
)
def mcc_loss(y_pred: Array, y_true: Array, eps: float | Array = 1e-5) -> Array:
    r"""smp's ``MCCLoss(eps)(y_pred, y_true)``.

    .. math::
        TP = \sum p y + \epsilon,\; TN = \sum (1 - p)(1 - y) + \epsilon,\;
        FP = \sum p (1 - y) + \epsilon,\; FN = \sum (1 - p) y + \epsilon, \\
        L = 1 - \frac{TP \cdot TN - FP \cdot FN}{\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN)}}

    summed over the whole batch.

    Args:
        y_pred: probabilities (no sigmoid is applied, as in smp), ``(N, H, W)`` or ``(N, 1, H, W)``.
        y_true: 0-1 targets, ``(N, H, W)`` or ``(N, 1, H, W)``, any real dtype.
        eps: added to each count (traced).

    Returns:
        A scalar in torch's promotion of ``y_pred`` and ``y_true`` (half precision computed in
        float32: smp's half-precision products overflow past 65504, e.g. ``TP * TN`` of a 256 x 256
        image, where jaxloss stays finite).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> probs = jnp.array([[[0.9, 0.2], [0.1, 0.7]]])
        >>> round(float(smp.mcc_loss(probs, jnp.array([[[1, 0], [0, 1]]]))), 4)
        0.3492
    """
    bs = y_true.shape[0] if y_true.ndim else 1
    if y_pred.size % bs:
        raise ValueError(f"shape '[{bs}, 1, -1]' is invalid for input of size {y_pred.size}")
    p, y = y_pred.reshape(bs, 1, -1), y_true.reshape(bs, 1, -1).astype(y_pred.dtype)
    broadcast_shapes(p.shape, y.shape)  # torch's message when the pixel counts differ
    tp = jnp.sum(p * y) + eps
    tn = jnp.sum((1 - p) * (1 - y)) + eps
    fp = jnp.sum(p * (1 - y)) + eps
    fn = jnp.sum((1 - p) * y) + eps
    mcc = (tp * tn - fp * fn) / jnp.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 1.0 - mcc
