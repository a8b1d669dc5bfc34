"""Kullback-Leibler divergence: ``kl_div``, mirroring ``torch.nn.functional.kl_div`` (torch 2.13)."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array
from jaxloss._registry import Opmath, loss_function
from jaxloss._shapes import broadcast_shapes, reduce


@jax.custom_jvp
def _xlogy(x: Array, y: Array) -> Array:
    """``torch.xlogy``: NaN where ``y`` is NaN, else 0 where ``x == 0``, else ``x log(y)``."""
    safe = jnp.where(x == 0, jnp.ones_like(y), y)
    out = jnp.where(x == 0, jnp.zeros_like(x), x * jnp.log(safe))
    return jnp.where(jnp.isnan(y), jnp.asarray(jnp.nan, dtype=out.dtype), out)


@_xlogy.defjvp
def _xlogy_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    # torch's derivatives.yaml: self: grad * xlogy(self != 0, other); other: grad * self / other
    # (so d/d other is 0/0 = NaN at self == other == 0, exactly as in torch).
    x, y = primals
    dx, dy = tangents
    return _xlogy(x, y), dx * _xlogy((x != 0).astype(x.dtype), y) + dy * (x / y)


@loss_function(
    static_argnames=("reduction",),
    bools=("log_target",),
    arrays={"input": "float", "target": "float"},
    reductions=("none", "mean", "sum", "batchmean"),
    opmath=Opmath(promote=("input", "target")),
    module="KLDivLoss",
    torch="torch.nn.KLDivLoss",
)
def kl_div(
    input: Array,
    target: Array,
    reduction: Literal["none", "mean", "sum", "batchmean"] = "mean",
    log_target: bool = False,
) -> Array:
    r"""Kullback-Leibler divergence loss (``torch.nn.KLDivLoss``).

    .. math::
        \ell_i = y_i (\log y_i - x_i) \quad\text{or, with }\texttt{log\_target}\text{,}\quad
        \ell_i = e^{y_i} (y_i - x_i)

    where ``x`` holds log-probabilities. Without ``log_target`` the first term is torch's
    ``xlogy(y, y)``, so a zero target contributes 0 (but NaN where ``x = -inf``, as in torch:
    ``0 * -inf``).

    Args:
        input: log-probabilities, any shape.
        target: probabilities (or log-probabilities with ``log_target=True``), broadcastable
            with ``input``; floating point.
        reduction: ``'none'`` | ``'batchmean'`` | ``'sum'`` | ``'mean'``. ``'batchmean'``
            divides the sum by ``input.shape[0]`` (the true KL divergence per sample; a 0-d
            input is only summed); ``'mean'`` divides by the number of elements. Default
            ``'mean'``. torch warns on every ``'mean'`` call that it is not the true KL value;
            jaxloss does not warn (this docstring is the warning): use ``'batchmean'``.
        log_target: whether ``target`` is given in log space. Static. Default ``False``.

    Returns:
        A scalar, or the broadcast shape for ``reduction='none'``; dtype of ``input`` /
        ``target`` promoted.

    Gradients are torch's autograd of ``xlogy(y, y) - y x`` (resp. ``exp(y) (y - x)``):
    d/dx = ``-y``; d/dy = ``log(y) + 1 - x`` for ``y > 0``, and NaN at ``y == 0`` (torch's
    ``xlogy`` derivative ``self / other = 0 / 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> import jax
        >>> log_q = jax.nn.log_softmax(jnp.array([[1.0, 2.0, 3.0]]))
        >>> p = jnp.array([[0.2, 0.3, 0.5]])
        >>> round(float(jaxloss.kl_div(log_q, p, reduction='batchmean')), 4)
        0.078
        >>> round(float(jaxloss.kl_div(log_q, jnp.log(p), reduction='batchmean', log_target=True)), 4)
        0.078
    """
    for name, a in (("input", input), ("target", target)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"kl_div: Integral inputs not supported ({name} has dtype {a.dtype}).")
    broadcast_shapes(target.shape, input.shape)  # torch's message: target is tensor "a"
    x, y = input, target
    if log_target:
        loss = jnp.exp(y) * (y - x)
    else:
        loss = _xlogy(y, y) - y * x
    if reduction == "batchmean":
        out = jnp.sum(loss)
        if input.ndim != 0:
            out = out / input.shape[0]
    else:
        out = reduce(loss, reduction)
    return out
