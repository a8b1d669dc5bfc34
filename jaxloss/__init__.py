"""jaxloss: every ``torch.nn.functional`` loss as a pure, jit-compiled JAX function.

Same names, parameter names, defaults, shapes, reductions and numerics as torch
(2.13), values and gradients. ``jaxloss.nn`` holds the ``torch.nn.*Loss`` classes,
``jaxloss.checked`` the same functions raising torch's errors on invalid values.
"""

from jaxloss._shapes import Reduction
from jaxloss.binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    multilabel_soft_margin_loss,
    sigmoid_focal_loss,
    soft_margin_loss,
)
from jaxloss.boxes import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss
from jaxloss.classification import cross_entropy, focal_loss, nll_loss
from jaxloss.ctc import ctc_loss
from jaxloss.distance import cosine_similarity, pairwise_distance
from jaxloss.divergence import kl_div
from jaxloss.embedding import cosine_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss
from jaxloss.linear import linear_cross_entropy
from jaxloss.margin import (
    hinge_embedding_loss,
    margin_ranking_loss,
    multi_margin_loss,
    multilabel_margin_loss,
)
from jaxloss.regression import (
    gaussian_nll_loss,
    huber_loss,
    l1_loss,
    mse_loss,
    poisson_nll_loss,
    smooth_l1_loss,
)

__version__ = "0.1.0"

__all__ = [
    "Reduction",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "checked",
    "complete_box_iou_loss",
    "cosine_embedding_loss",
    "cosine_similarity",
    "cross_entropy",
    "ctc_loss",
    "distance_box_iou_loss",
    "focal_loss",
    "from_torch",
    "gaussian_nll_loss",
    "generalized_box_iou_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "nn",
    "pairwise_distance",
    "poisson_nll_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

from jaxloss import checked, nn
from jaxloss import monai as monai  # MONAI's segmentation losses: jaxloss.monai.DiceLoss...
from jaxloss.interop import from_torch
