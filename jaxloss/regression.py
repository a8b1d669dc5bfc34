"""Regression losses: L1, MSE, Huber, smooth L1, Poisson and Gaussian negative log-likelihood.

Each mirrors the ``torch.nn.functional`` function of the same name (torch 2.13).
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp

from jaxloss import _core
from jaxloss._core import Array, Reduction, check_reduction, loss_function, opmath_dtype, result_float_dtype


def _broadcast_pair(input: Array, target: Array) -> tuple[Array, Array]:
    """torch's l1/mse behaviour for differing shapes: warn, then broadcast."""
    if input.shape != target.shape:
        warnings.warn(
            f"Using a target size ({tuple(target.shape)}) that is different to the input size "
            f"({tuple(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,
        )
        try:
            shape = jnp.broadcast_shapes(input.shape, target.shape)
        except ValueError as e:
            raise ValueError(
                f"The size of tensor a ({input.shape}) must match the size of tensor b ({target.shape}): {e}"
            ) from None
        input, target = jnp.broadcast_to(input, shape), jnp.broadcast_to(target, shape)
    return input, target


def _weighted_reduce(loss: Array, weight: Array | None, reduction: str, input_shape: tuple[int, ...]) -> Array:
    """torch's weighted l1/mse reduction: 'mean' divides by ``sum(weight)``."""
    if weight is None:
        if reduction == "none":
            return loss
        return jnp.sum(loss) if reduction == "sum" else jnp.mean(loss)
    if weight.shape != input_shape:
        raise ValueError("Weights and input must have the same size.")
    loss = loss * weight.astype(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.sum(loss) / jnp.sum(weight.astype(loss.dtype))


@loss_function(static_argnames=("reduction",))
def l1_loss(
    input: Array,
    target: Array,
    reduction: Reduction = "mean",
    weight: Array | None = None,
) -> Array:
    r"""Mean absolute error, optionally weighted.

    .. math:: \ell_i = w_i \, |x_i - y_i|

    Args:
        input: predictions, any shape ``(*)``.
        target: same shape as ``input`` (another shape warns and broadcasts, as in torch).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. Default ``'mean'``.
        weight: optional per-element weights, exactly ``input``'s shape. With
            ``'mean'`` the result is ``sum(w * |x - y|) / sum(w)`` (torch's rule).

    Returns:
        A scalar, or shape ``(*)`` for ``reduction='none'``; dtype of ``input``/``target`` promoted.

    The gradient at ``x == y`` is 0 (``sign(0)``), as in torch.
    """
    check_reduction(reduction)
    dtype = result_float_dtype(input, target)
    input, target = _broadcast_pair(input, target)
    work = opmath_dtype(dtype)
    loss = _core.abs(input.astype(work) - target.astype(work))
    return _weighted_reduce(loss, weight, reduction, input.shape).astype(dtype)


# PLACEHOLDERS below: replace.
def mse_loss(*args, **kwargs):
    raise NotImplementedError


def huber_loss(*args, **kwargs):
    raise NotImplementedError


def smooth_l1_loss(*args, **kwargs):
    raise NotImplementedError


def poisson_nll_loss(*args, **kwargs):
    raise NotImplementedError


def gaussian_nll_loss(*args, **kwargs):
    raise NotImplementedError
