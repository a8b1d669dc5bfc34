"""jaxloss: every ``torch.nn.functional`` loss as a pure, jit-compiled JAX function.

Same names, parameter names, defaults, shapes, reductions and numerics as torch
(2.13), values and gradients. ``jaxloss.nn`` holds the ``torch.nn.*Loss`` classes,
``jaxloss.checked`` the same functions raising torch's errors on invalid values;
``jaxloss.smp`` the losses of segmentation_models_pytorch.
"""

from jaxloss import _registry
from jaxloss._shapes import Reduction as Reduction
from jaxloss.binary import binary_cross_entropy as binary_cross_entropy
from jaxloss.binary import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from jaxloss.binary import multilabel_soft_margin_loss as multilabel_soft_margin_loss
from jaxloss.binary import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss.binary import soft_margin_loss as soft_margin_loss
from jaxloss.boxes import complete_box_iou_loss as complete_box_iou_loss
from jaxloss.boxes import distance_box_iou_loss as distance_box_iou_loss
from jaxloss.boxes import generalized_box_iou_loss as generalized_box_iou_loss
from jaxloss.classification import cross_entropy as cross_entropy
from jaxloss.classification import focal_loss as focal_loss
from jaxloss.classification import nll_loss as nll_loss
from jaxloss.ctc import ctc_loss as ctc_loss
from jaxloss.distance import cosine_similarity as cosine_similarity
from jaxloss.distance import pairwise_distance as pairwise_distance
from jaxloss.divergence import kl_div as kl_div
from jaxloss.embedding import cosine_embedding_loss as cosine_embedding_loss
from jaxloss.embedding import triplet_margin_loss as triplet_margin_loss
from jaxloss.embedding import triplet_margin_with_distance_loss as triplet_margin_with_distance_loss
from jaxloss.linear import linear_cross_entropy as linear_cross_entropy
from jaxloss.margin import hinge_embedding_loss as hinge_embedding_loss
from jaxloss.margin import margin_ranking_loss as margin_ranking_loss
from jaxloss.margin import multi_margin_loss as multi_margin_loss
from jaxloss.margin import multilabel_margin_loss as multilabel_margin_loss
from jaxloss.regression import gaussian_nll_loss as gaussian_nll_loss
from jaxloss.regression import huber_loss as huber_loss
from jaxloss.regression import l1_loss as l1_loss
from jaxloss.regression import mse_loss as mse_loss
from jaxloss.regression import poisson_nll_loss as poisson_nll_loss
from jaxloss.regression import smooth_l1_loss as smooth_l1_loss

__version__ = "0.2.0"

# The public names: every loss registered in the jaxloss namespace (importing it above is the
# one edit a new loss makes here), and the rest of the API. (ruff's PLE0604 wants a literal list;
# the registry is the one list of losses.)
__all__ = ["Reduction", "checked", "from_torch", "monai", "nn", "smp", *sorted(_registry.registered())]  # noqa: PLE0604

from jaxloss import checked, monai, nn, smp
from jaxloss.interop import from_torch
