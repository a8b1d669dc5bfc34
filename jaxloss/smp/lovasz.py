"""smp's ``LovaszLoss``: the Lovasz hinge (binary, multilabel) and Lovasz-Softmax (multiclass).

Both are the Lovasz extension of the Jaccard loss (Berman et al., 2018) applied to a vector of
errors ``e``: sorted in decreasing order (``e_(1) >= e_(2) >= ...``, with the labels ``g``
permuted alike),

.. math::
    L = \\sum_i \\phi(e_{(i)})\\, \\big(J_i - J_{i-1}\\big), \\qquad
    J_i = 1 - \\frac{G - \\sum_{k \\le i} g_{(k)}}{G + \\sum_{k \\le i} (1 - g_{(k)})}, \\; J_0 = 0,

``G = sum(g)``. The hinge takes ``e = 1 - x (2g - 1)`` of the logits and ``phi = relu``, over all
pixels (of all channels) of the batch or, with ``per_image``, of each image, averaged. The
softmax form takes ``e = |[y = c] - softmax(x)_c|`` and ``phi = id`` for each class ``c`` present
in the labels, averaged over those classes.

The gradient is piecewise: between ties of ``e`` it is exact; at a tie it depends on which of the
tied errors the sort puts first (the value does not). jaxloss sorts stably (the earlier element
first), torch's ``sort`` does not promise an order, so at ties the two may give different (equally
valid) gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import loss_function
from jaxloss._shapes import shape_str
from jaxloss.smp._common import IN_BODY, MULTICLASS_MODE, check_ignore_index, mode_check


def _lovasz_weights(g_sorted: Array, valid_sorted: Array) -> Array:
    """``J_i - J_{i-1}`` of the sorted labels (invalid entries, sorted last, get weight 0)."""
    g = jnp.where(valid_sorted, g_sorted, 0)
    total = jnp.sum(g)
    intersection = total - jnp.cumsum(g)
    union = total + jnp.cumsum(jnp.where(valid_sorted, 1 - g, 0))
    jaccard = 1.0 - intersection / jnp.where(union == 0, 1, union)  # union is 0 only after the valid entries
    return jnp.where(valid_sorted, jnp.diff(jaccard, prepend=0.0), 0)


def _lovasz_sorted(errors: Array, labels: Array, valid: Array, hinge: bool) -> Array:
    """The Lovasz extension of one flat error vector (invalid entries left out)."""
    order = jnp.argsort(jnp.where(valid, -errors, jnp.inf), stable=True)  # decreasing errors, invalid last
    e, g, v = errors[order], labels[order], valid[order]
    phi = jax.nn.relu(e) if hinge else e
    return jnp.sum(jnp.where(v, phi, 0) * _lovasz_weights(g, v))


def _hinge(logits: Array, labels: Array, valid: Array) -> Array:
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    return _lovasz_sorted(errors, labels, valid, hinge=True)


def _softmax_flat(probas: Array, labels: Array, valid: Array) -> Array:
    """``probas (P, C)``: the mean over the present classes (0 when none is present)."""
    n_classes = probas.shape[1]
    fg = (labels[None, :] == jnp.arange(n_classes)[:, None]) & valid[None, :]  # (C, P)
    fg = fg.astype(probas.dtype)
    errors = jnp.abs(fg - probas.T)  # |fg - p| >= 0; gradient sign, as torch's abs
    losses = jax.vmap(lambda e, g: _lovasz_sorted(e, g, valid, hinge=False))(errors, fg)
    present = jnp.sum(fg, axis=1) > 0
    return jnp.sum(jnp.where(present, losses, 0)) / jnp.maximum(jnp.sum(present), 1)


@loss_function(
    opmath=IN_BODY,
    static_argnames=("mode", "ignore_index"),
    bools=("per_image", "from_logits"),
    arrays={"y_pred": "float", "y_true": "label"},
    reductions=None,
    check_options=mode_check("lovasz_loss", lambda values: check_ignore_index("lovasz_loss", values)),
    module="LovaszLoss",
    forward=("y_pred", "y_true"),
)
def lovasz_loss(
    y_pred: Array,
    y_true: Array,
    mode: str,
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = True,
) -> Array:
    """smp's ``LovaszLoss(mode, ...)(y_pred, y_true)``.

    Args:
        y_pred: logits: ``(N, *)`` or ``(N, C, *)`` for ``'binary'`` / ``'multilabel'`` (every
            element of an image is one pixel of the hinge), ``(N, C, *)`` for ``'multiclass'``.
        y_true: 0-1 targets with ``y_pred``'s number of elements (hinge), or ``(N, *)`` class
            indices (``'multiclass'``; labels outside ``[0, C)`` are simply in no class, as in smp).
        mode: ``'binary'`` | ``'multiclass'`` | ``'multilabel'`` (static).
        per_image: the loss of each image, averaged (else one loss over the batch).
        ignore_index: target value whose pixels are left out (static).
        from_logits: accepted and, as in smp, unused: the hinge always takes logits and the
            multiclass loss always applies a softmax.

    Returns:
        A scalar in ``y_pred``'s dtype, except float32 for float16 / bfloat16 input in the
        ``'binary'`` / ``'multilabel'`` modes (smp's hinge multiplies by float32 signs). Half
        precision is computed in float32.

    Where smp fails, jaxloss computes (judged against a float64 reference of the formula):
    smp's ``torch.dot`` of float64 errors with its float32 Lovasz weights raises for float64
    input, and the multiclass loss raises for half precision too. An image (``per_image``) or
    batch with every pixel ignored gives 0 here (smp: 0 for the hinge, an empty tensor or an
    error for the softmax form); it counts in the ``per_image`` mean, as in smp's hinge.
    ``mode='multiclass'`` with ``C = 1`` raises smp's "Sigmoid output possible only with 1 class"
    before tracing (smp raises it only when class 0 is present). At ties of the errors the
    gradient depends on the sort order (see the module docstring). With soft labels in half
    precision smp sums the labels in half precision (its ``G`` is rounded); jaxloss sums in float32.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxloss import smp
        >>> logits = jnp.array([[[[2.0, -1.0], [0.5, 3.0]]]])
        >>> target = jnp.array([[[1, 0], [0, 1]]])
        >>> round(float(smp.lovasz_loss(logits, target, "binary")), 4)
        0.5
    """
    work = jnp.promote_types(y_pred.dtype, jnp.float32)
    x = y_pred.astype(work)
    if y_true.ndim < 1 or y_true.shape[0] != x.shape[0]:
        raise ValueError(f"y_true and y_pred must have the same batch size, got {shape_str(y_true.shape)} "
                         f"and {shape_str(y_pred.shape)}")
    bs = x.shape[0]
    if mode != MULTICLASS_MODE:
        logits, labels = x.reshape(bs, -1), y_true.reshape(bs, -1)
        if logits.shape != labels.shape:
            raise ValueError(f"y_pred and y_true must have the same number of elements per image, got "
                             f"{shape_str(y_pred.shape)} and {shape_str(y_true.shape)}")
        valid = labels != ignore_index if ignore_index is not None else jnp.ones(labels.shape, bool)
        labels = jnp.where(valid, labels, 0).astype(work)
        if per_image:
            return jnp.mean(jax.vmap(_hinge)(logits, labels, valid))
        return _hinge(logits.reshape(-1), labels.reshape(-1), valid.reshape(-1))
    out_dtype = y_pred.dtype  # smp's softmax path keeps the input's dtype (it raises for half precision)
    if x.ndim < 3 or x.shape[1] == 1:  # smp reshapes (B, H, W) to one channel, then raises
        raise ValueError("Sigmoid output possible only with 1 class")
    n_classes = x.shape[1]
    probas = jax.nn.softmax(x, axis=1)
    probas = jnp.moveaxis(probas, 1, -1).reshape(bs, -1, n_classes)
    labels = y_true.reshape(bs, -1)
    if labels.shape[1] != probas.shape[1]:
        raise ValueError(f"y_true must have y_pred's shape without the class axis, got {shape_str(y_true.shape)} "
                         f"for {shape_str(y_pred.shape)}")
    valid = labels != ignore_index if ignore_index is not None else jnp.ones(labels.shape, bool)
    if per_image:
        return jnp.mean(jax.vmap(_softmax_flat)(probas, labels, valid)).astype(out_dtype)
    return _softmax_flat(probas.reshape(-1, n_classes), labels.reshape(-1), valid.reshape(-1)).astype(out_dtype)
