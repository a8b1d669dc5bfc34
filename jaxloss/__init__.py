"""jaxloss: every ``torch.nn.functional`` loss as a pure, jit-compiled JAX function.

Same names, parameter names, defaults, shapes, reductions and numerics as torch
(2.13), values and gradients. ``jaxloss.nn`` holds the ``torch.nn.*Loss`` classes,
``jaxloss.checked`` the same functions raising torch's errors on invalid values.
"""

from jaxloss._core import Reduction
from jaxloss.regression import l1_loss, mse_loss, huber_loss, smooth_l1_loss, poisson_nll_loss, gaussian_nll_loss
from jaxloss.classification import cross_entropy, nll_loss, focal_loss
from jaxloss.linear import linear_cross_entropy
from jaxloss.binary import binary_cross_entropy, binary_cross_entropy_with_logits, sigmoid_focal_loss, soft_margin_loss, multilabel_soft_margin_loss
from jaxloss.divergence import kl_div
from jaxloss.margin import multilabel_margin_loss, multi_margin_loss, margin_ranking_loss, hinge_embedding_loss
from jaxloss.distance import pairwise_distance, cosine_similarity
from jaxloss.embedding import cosine_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss
from jaxloss.ctc import ctc_loss

__version__ = "0.1.0"

__all__ = [
    "Reduction",
    "checked",
    "from_torch",
    "nn",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cosine_similarity",
    "cross_entropy",
    "ctc_loss",
    "focal_loss",
    "gaussian_nll_loss",
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
    "pairwise_distance",
    "poisson_nll_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

from jaxloss import checked, nn  # noqa: E402  (namespaces: jaxloss.nn.*Loss, jaxloss.checked.*)
from jaxloss.interop import from_torch  # noqa: E402
