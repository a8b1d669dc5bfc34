"""References written in torch ops, for what torch itself lacks or gets wrong on purpose.

* :func:`focal_loss`: torch has no multi-class focal loss. This is the formula
  ``-sum_c q_c w_c a_c (1 - p_c)**gamma log p_c`` with ``q`` the (smoothed) target
  distribution, ``w`` the class weights and ``a`` alpha ('mean' divides by the
  targets' weights, not alpha); with ``gamma=0`` and no alpha it is
  ``F.cross_entropy`` exactly. ``1 - p`` is ``-expm1(log p)`` and the gradient of
  ``(1 - p)**gamma`` at ``p = 1`` is its limit 0 (autograd's chain rule gives NaN
  there for ``0 < gamma < 1``).
* :func:`sigmoid_focal_loss`: torchvision's ``torchvision.ops.sigmoid_focal_loss``,
  copied op for op (used when torchvision is not installed).
* :func:`linear_cross_entropy`: ``F.linear_cross_entropy`` on its reference path
  (``options=None``); jaxloss's ``chunk_size`` only changes memory, not the math.
* :func:`bce_with_logits_stable`, :func:`soft_margin_stable`: float64 references for
  the documented deviations (jaxloss uses ``log1p`` / ``softplus`` where torch loses
  precision or overflows); the cases using them are judged against float64. Both,
  and :func:`bce_weight_differentiable`, are also the torch side of the cases that
  differentiate what torch's fused ops refuse to (``weight``, ``pos_weight``,
  ``soft_margin_loss``'s ``target``).
* :func:`multilabel_margin_via_none`, :func:`multi_margin_via_none`: torch's per-sample
  losses reduced afterwards, for empty batches, where torch's fused 'sum' / 'mean'
  returns uninitialized memory (0 and NaN are the values of an empty sum / mean).
* :func:`ctc_reference`: the CTC forward (alpha) recursion in torch ops, with
  torch's gradient convention (the gradient of the logits of a log-softmax) added
  as an explicit term, or the true gradient; torch itself gives NaN gradients at
  ``-inf`` log-probabilities where the limit (jaxloss's value) is 0.
* ``jax_*`` / ``torch_*`` pairs: compositions used by the grid (CTC through a
  log-softmax, distance functions for ``triplet_margin_with_distance_loss``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


# --------------------------------------------------------------------------- focal losses
def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    alpha: torch.Tensor | float | None = None,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Multi-class focal loss on logits (Lin et al. 2017), cross_entropy's conventions."""
    cdim = 1 if input.dim() > 1 else 0
    C = input.shape[cdim]
    logp = F.log_softmax(input, cdim)
    if gamma:
        q = -torch.expm1(logp)  # 1 - p, accurate near p = 1
        pos = q > 0
        # q**gamma with the gradient's limit (0) at q = 0 for 0 < gamma < 1, not 0 * inf = NaN
        mod = torch.where(pos, torch.where(pos, q, torch.ones_like(q)) ** gamma, torch.zeros_like(q))
        term = mod * logp
    else:
        term = logp

    def along_c(v: torch.Tensor) -> torch.Tensor:  # (C,) -> broadcastable along the class dim
        return v.reshape((C,) + (1,) * (input.dim() - cdim - 1))

    w = along_c(weight) if weight is not None else torch.ones((), dtype=input.dtype)
    if alpha is not None:
        w = w * (along_c(alpha) if isinstance(alpha, torch.Tensor) and alpha.dim() else alpha)
    if target.is_floating_point():  # class probabilities
        q = target
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / C
        loss = -(q * w * term).sum(cdim)
        if reduction == "mean":
            return loss.sum() / (loss.numel() if loss.dim() else 1) if loss.numel() else loss.sum() / 0.0
        return loss.sum() if reduction == "sum" else loss
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    q = F.one_hot(safe, C).to(input.dtype)
    if cdim == 1:
        q = q.movedim(-1, 1)
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / C
    loss = -(q * w * term).sum(cdim)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    wt = weight[safe] if weight is not None else torch.ones_like(loss)
    return loss.sum() / torch.where(valid, wt, torch.zeros_like(wt)).sum()


def sigmoid_focal_loss(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> torch.Tensor:
    """``torchvision.ops.sigmoid_focal_loss`` (torchvision 0.2x), op for op."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        pass
    elif reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    else:
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'")
    return loss


def torch_sigmoid_focal_loss() -> tuple[Any, str]:
    """torchvision's function when installed, else :func:`sigmoid_focal_loss`; with its expression."""
    try:
        from torchvision.ops import sigmoid_focal_loss as tv  # type: ignore[import-not-found]

        return tv, "torchvision.ops.sigmoid_focal_loss"
    except Exception:  # noqa: BLE001 - torchvision absent or broken
        return sigmoid_focal_loss, "jaxloss.parity.references.sigmoid_focal_loss"


# --------------------------------------------------------------------------- linear cross entropy
def linear_cross_entropy(
    input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor, *, chunk_size: int | None = None, **kwargs: Any
) -> torch.Tensor:
    """``F.linear_cross_entropy`` (reference path); ``chunk_size`` is jaxloss's memory knob, ignored."""
    return F.linear_cross_entropy(input, linear_weight, target, **kwargs)


# --------------------------------------------------------------------------- deviations
def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def bce_with_logits_stable(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE with logits as ``(1 - y) softplus(x) + pw y softplus(-x)`` (torch's
    ``(1 - y) x + (1 + (pw - 1) y) softplus(-x)`` rearranged): no overflow, no lost log1p, and no
    cancellation of ``x + softplus(-x)`` where ``y x << 0``."""
    pw = pos_weight if pos_weight is not None else 1
    loss = (1 - target) * F.softplus(input, threshold=50) + pw * target * F.softplus(-input, threshold=50)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def soft_margin_stable(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``softplus(-y x)`` instead of ``log(1 + exp(-y x))`` (which overflows for large margins)."""
    return _reduce(F.softplus(-target * input, threshold=50), reduction)


def bce_weight_differentiable(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """``F.binary_cross_entropy`` with ``weight`` applied outside, so that autograd differentiates
    it (torch's fused op refuses to): the same value, ``'mean'`` dividing by the element count."""
    loss = F.binary_cross_entropy(input, target, reduction="none")
    return _reduce(loss * weight if weight is not None else loss, reduction)


def multilabel_margin_via_none(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``F.multilabel_margin_loss`` per sample (``reduction='none'``), reduced afterwards: torch
    2.13's CPU kernel returns uninitialized memory for 'sum' / 'mean' over an empty batch."""
    return _reduce(F.multilabel_margin_loss(input, target, reduction="none"), reduction)


def multi_margin_via_none(
    input: torch.Tensor,
    target: torch.Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``F.multi_margin_loss`` per sample, reduced afterwards (the same empty-batch bug)."""
    return _reduce(F.multi_margin_loss(input, target, p=p, margin=margin, weight=weight, reduction="none"), reduction)


# --------------------------------------------------------------------------- CTC
def _lse(x: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp whose gradient stays finite (zero) where every term is -inf."""
    m = x.max(dim, keepdim=True).values.detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = torch.exp(x - m).sum(dim)
    pos = s > 0
    safe = torch.where(pos, s, torch.ones_like(s))  # no log(0) in the graph: its gradient would be NaN
    return torch.where(pos, torch.log(safe), torch.full_like(s, float("-inf"))) + m.squeeze(dim)


def _nan_gradient(lp: torch.Tensor, gradient: str) -> torch.Tensor:
    """0 whose gradient is NaN on ``lp`` (``gradient="torch"``): torch's convention for an infinite
    loss without ``zero_infinity`` (NaN over the sample's first ``input_length`` frames; jaxloss's
    too). ``sqrt(0 * sigmoid(x))`` has the value 0 and the derivative ``inf * 0`` at every
    ``x``, -inf included."""
    if gradient != "torch" or lp.numel() == 0:
        return lp.clamp_min(-1e300).sum() * 0
    return torch.sqrt(0 * torch.sigmoid(lp)).sum()


def ctc_reference(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: Any,
    target_lengths: Any,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
    gradient: str = "torch",
) -> torch.Tensor:
    """CTC negative log-likelihood by the alpha recursion in torch ops.

    ``gradient="true"``: autograd's derivative of the function. ``gradient="torch"``
    (default): torch's (and jaxloss's) convention, the true derivative plus
    ``exp(log_probs)`` on each sample's first ``input_length`` frames, which is the
    gradient with respect to the logits of a log-softmax; computed here without
    torch's NaN at ``-inf`` log-probabilities (the limit there is 0). An infeasible
    sample (loss ``inf``) gets torch's NaN gradient over its first ``input_length``
    frames unless ``zero_infinity``; an empty input with an empty target has loss 0.
    """
    unbatched = log_probs.dim() == 2
    lp = log_probs[:, None] if unbatched else log_probs
    N = lp.shape[1]
    il = torch.as_tensor(input_lengths).reshape(-1).tolist()
    tl = torch.as_tensor(target_lengths).reshape(-1).tolist()
    tg = targets[None] if unbatched else targets
    offsets = [sum(tl[:b]) for b in range(N)]
    losses = []
    for b in range(N):
        L, Tb = int(tl[b]), int(il[b])
        seq = tg[b, :L] if tg.dim() == 2 else tg[offsets[b] : offsets[b] + L]
        ext = [blank]
        for s in seq.tolist():
            ext += [int(s), blank]
        S = len(ext)
        allow_skip = torch.tensor([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(S)])
        feasible = Tb >= L + sum(1 for i in range(1, L) if int(seq[i]) == int(seq[i - 1]))
        zero = lp[:, b].clamp_min(-1e300).sum() * 0  # 0, in the graph (-inf * 0 would be NaN)
        if Tb == 0 and L == 0:  # nothing to align: probability 1
            losses.append(zero)
            continue
        if not feasible or Tb == 0:
            losses.append(zero if zero_infinity else zero + float("inf") + _nan_gradient(lp[:Tb, b], gradient))
            continue
        ninf = torch.full((S,), float("-inf"), dtype=lp.dtype)
        idx = torch.tensor(ext)
        alpha = ninf.clone()
        alpha = torch.cat([lp[0, b, idx[:1]], lp[0, b, idx[1:2]], ninf[2:]]) if S > 1 else lp[0, b, idx[:1]]
        for t in range(1, Tb):
            a1 = alpha
            a2 = torch.cat([ninf[:1], alpha[:-1]])
            a3 = torch.cat([ninf[:2], alpha[:-2]])
            a3 = torch.where(allow_skip, a3, ninf)
            alpha = _lse(torch.stack([a1, a2, a3]), 0) + lp[t, b, idx]
        nll = -_lse(alpha[-2:] if S > 1 else alpha[-1:], 0)
        if torch.isinf(nll):  # infeasible through -inf log-probabilities
            nll = zero if zero_infinity else nll + _nan_gradient(lp[:Tb, b], gradient)
        elif gradient == "torch":  # value + 0, gradient + exp(lp) on the first Tb frames
            e = torch.exp(lp[:Tb, b])
            nll = nll + (e - e.detach()).sum()
        losses.append(nll)
    loss = torch.stack(losses)
    if reduction == "none":
        return loss[0] if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    lengths = torch.tensor(tl, dtype=loss.dtype).clamp_min(1)
    return (loss / lengths).mean()


def torch_ctc_from_logits(logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``F.ctc_loss(log_softmax(logits))``: torch's gradient convention is exact through a log-softmax."""
    return F.ctc_loss(F.log_softmax(logits, -1), *args, **kwargs)


def jax_ctc_from_logits(logits: Any, *args: Any, **kwargs: Any) -> Any:
    import jax

    import jaxloss

    return jaxloss.ctc_loss(jax.nn.log_softmax(logits, -1), *args, **kwargs)


# --------------------------------------------------------------------------- distance functions
def torch_cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(x, y)


def jax_cosine_distance(x: Any, y: Any) -> Any:
    import jaxloss

    return 1.0 - jaxloss.cosine_similarity(x, y)


def torch_l1_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().sum(-1)


def jax_l1_distance(x: Any, y: Any) -> Any:
    import jax.numpy as jnp

    return jnp.abs(x - y).sum(-1)


# --------------------------------------------------------------------------- box losses
# torchvision.ops' generalized / distance / complete box IoU losses, written in torch ops
# from torchvision's formulas (torchvision/ops/_utils.py, giou_loss.py, diou_loss.py,
# ciou_loss.py of torchvision 0.2x): torchvision does not import beside CPU torch here.
# The same ops in the same order, including the two details that decide its errors and
# dtypes: ``_upcast_non_float`` (every dtype but float32 / float64 becomes float32, half
# precision included, and is not cast back) and the intersection written with an
# in-place masked assignment into ``zeros_like(x1)`` (so ``boxes2`` may broadcast into
# ``boxes1``'s batch shape but not enlarge it, and a ``boxes2`` of a wider float dtype than
# ``boxes1`` fails the assignment).
def _box_upcast_non_float(t: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_upcast_non_float``: anything but float32 / float64 becomes float32."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _box_inter_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ``_loss_inter_union``: intersection (0 unless strictly overlapping) and union areas."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1, ykis1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xkis2, ykis2 = torch.min(x2, x2g), torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _box_enclosing(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Corners ``(xc1, yc1, xc2, yc2)`` of the smallest box enclosing both boxes."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    return torch.min(x1, x1g), torch.min(y1, y1g), torch.max(x2, x2g), torch.max(y2, y2g)


def _box_reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """torchvision's box-loss reduction: an empty 'mean' is ``0 * sum`` (0, not NaN)."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'")


def generalized_box_iou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """``torchvision.ops.generalized_box_iou_loss``: ``1 - IoU + (area_c - union) / (area_c + eps)``.

    >>> import torch
    >>> from jaxloss.parity.references import generalized_box_iou_loss
    >>> round(float(generalized_box_iou_loss(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0]))), 4)
    1.3333
    """
    boxes1, boxes2 = _box_upcast_non_float(boxes1), _box_upcast_non_float(boxes2)
    intsctk, unionk = _box_inter_union(boxes1, boxes2)
    iouk = intsctk / (unionk + eps)
    xc1, yc1, xc2, yc2 = _box_enclosing(boxes1, boxes2)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return _box_reduce(1 - miouk, reduction)


def _box_diou_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ``_diou_iou_loss``: the per-box DIoU loss and the IoU."""
    intsct, union = _box_inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    xc1, yc1, xc2, yc2 = _box_enclosing(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p, y_p = (x2 + x1) / 2, (y2 + y1) / 2
    x_g, y_g = (x1g + x2g) / 2, (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    return 1 - iou + (centers_distance_squared / diagonal_distance_squared), iou


def distance_box_iou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """``torchvision.ops.distance_box_iou_loss``: ``1 - IoU + d_centers^2 / (diag_c^2 + eps)``.

    >>> import torch
    >>> from jaxloss.parity.references import distance_box_iou_loss
    >>> round(float(distance_box_iou_loss(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0]))), 4)
    1.4
    """
    boxes1, boxes2 = _box_upcast_non_float(boxes1), _box_upcast_non_float(boxes2)
    loss, _ = _box_diou_iou_loss(boxes1, boxes2, eps)
    return _box_reduce(loss, reduction)


def complete_box_iou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """``torchvision.ops.complete_box_iou_loss``: DIoU loss + ``alpha v`` with ``alpha`` under no_grad.

    As in torchvision, the DIoU part is computed with the default ``eps=1e-7`` whatever
    ``eps`` is passed (``_diou_iou_loss(boxes1, boxes2)``); ``eps`` enters ``alpha`` only.

    >>> import torch
    >>> from jaxloss.parity.references import complete_box_iou_loss
    >>> round(float(complete_box_iou_loss(torch.tensor([0.0, 0.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 2.0, 1.0]))), 4)
    0.7629
    """
    boxes1, boxes2 = _box_upcast_non_float(boxes1), _box_upcast_non_float(boxes2)
    diou_loss, iou = _box_diou_iou_loss(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    w_pred, h_pred = x2 - x1, y2 - y1
    w_gt, h_gt = x2g - x1g, y2g - y1g
    v = (4 / (torch.pi**2)) * torch.pow((torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _box_reduce(diou_loss + alpha * v, reduction)


BOX_LOSSES = ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss")


def torchvision_box_loss(name: str) -> tuple[Any, str]:
    """``torchvision.ops.<name>`` when torchvision imports, else this module's torch-op twin; with its expression.

    >>> from jaxloss.parity.references import torchvision_box_loss
    >>> fn, expr = torchvision_box_loss("complete_box_iou_loss")
    >>> expr in ("torchvision.ops.complete_box_iou_loss", "jaxloss.parity.references.complete_box_iou_loss")
    True
    """
    if name not in BOX_LOSSES:
        raise ValueError(f"unknown box loss {name!r}; expected one of {BOX_LOSSES}")
    try:
        import torchvision.ops as tv_ops  # type: ignore[import-not-found]

        return getattr(tv_ops, name), f"torchvision.ops.{name}"
    except Exception:  # noqa: BLE001 - torchvision absent or broken (ABI mismatch beside CPU torch)
        return globals()[name], f"jaxloss.parity.references.{name}"


# --------------------------------------------------------------------------- MONAI
def monai_loss(cls_name: str, other_act: str | None = None) -> Any:
    """``monai.losses.<cls_name>`` as a function: ``f(*args, **options)`` is
    ``monai.losses.<cls_name>(**options)(*args)`` (warnings silenced), with ``other_act`` the
    name of a torch function (``"tanh"``) passed as MONAI's ``other_act``: the torch side of the
    MONAI parity cases and of their reproducers."""

    def call(*args: Any, **options: Any) -> Any:
        import warnings

        import monai.losses

        if other_act is not None:
            options["other_act"] = getattr(torch, other_act)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(monai.losses, cls_name)(**options)(*args)

    return call


def channels_first(fn: Any) -> Any:
    """``fn`` (channels on axis 1) on arrays whose channels are last, the result moved back: the
    torch side of a jaxloss call with ``axis=-1`` (``axis`` itself is dropped)."""

    def call(*args: Any, **options: Any) -> Any:
        options.pop("axis", None)
        moved = [a.movedim(-1, 1) if hasattr(a, "movedim") and a.ndim > 2 else a for a in args]
        out = fn(*moved, **options)
        return out.movedim(1, -1) if out.ndim == args[0].ndim else out

    return call
