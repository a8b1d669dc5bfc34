"""torch's gradients at kinks, where JAX's defaults differ: custom JVPs of ``clamp_min``,
``abs``, ``divide`` (``clamp_min(x, m)`` passes the gradient where ``x >= m``; JAX's ``maximum``
splits it 0.5/0.5 at a tie)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array, ArrayLike


def _bound_tangent(dbound: Any, x: Array) -> Array:
    """The tangent of a clamp bound as an array like ``x`` (zeros for int / symbolic-zero bounds)."""
    if isinstance(dbound, jax.custom_derivatives.SymbolicZero) or jnp.asarray(dbound).dtype == jax.dtypes.float0:
        return jnp.zeros_like(x)
    return jnp.broadcast_to(jnp.asarray(dbound, dtype=x.dtype), x.shape)


def _takes_bound(x: Array, minimum: ArrayLike) -> Array:
    """Where ``clamp_min(x, minimum)`` is ``minimum``: below it, and everywhere for a NaN
    ``minimum`` (torch's clamp propagates a NaN bound; ``x < nan`` alone would keep ``x``)."""
    return (x < minimum) | jnp.isnan(minimum)


@jax.custom_jvp
def clamp_min(x: Array, minimum: ArrayLike) -> Array:
    """``torch.clamp_min``: ``max(x, minimum)``, NaN stays NaN (a NaN ``x`` or ``minimum``);
    gradient 1 where ``x >= minimum`` (ties too)."""
    return jnp.where(_takes_bound(x, minimum), jnp.asarray(minimum, dtype=x.dtype), x)


@clamp_min.defjvp
def _clamp_min_jvp(primals: tuple[Array, Any], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, minimum = primals
    dx, dmin = tangents
    return clamp_min(x, minimum), jnp.where(x >= minimum, dx, _bound_tangent(dmin, x))


@jax.custom_jvp
def clamp_min_straight_through(x: Array, minimum: ArrayLike) -> Array:
    """``max(x, minimum)`` in value (NaN stays NaN, a NaN ``minimum`` too), the identity in ``x``'s gradient.

    torch clamps in place under ``no_grad`` in ``gaussian_nll_loss`` (the variance) and
    ``cosine_similarity`` (the norms), so autograd sees the identity there. A traced
    ``minimum`` gets the gradient where it is the value.
    """
    return jnp.where(_takes_bound(x, minimum), jnp.asarray(minimum, dtype=x.dtype), x)


@clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(primals: tuple[Array, Any], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, minimum = primals
    dx, dmin = tangents
    return clamp_min_straight_through(x, minimum), dx + jnp.where(_takes_bound(x, minimum), _bound_tangent(dmin, x), 0)


@jax.custom_jvp
def divide(x: Array, y: Array) -> Array:
    """``x / y`` with torch's gradient for ``y``: ``-g * ((x / y) / y)``.

    JAX's quotient rule forms ``y * y``, which underflows to 0 for ``|y|`` below ~1e-19 in
    float32 and makes the gradient infinite where torch's is finite (e.g. tiny boxes, whose
    ``w / h`` is moderate).
    """
    return x / y


@divide.defjvp
def _divide_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    x, y = primals
    dx, dy = tangents
    out = divide(x, y)
    # The barrier keeps XLA's simplifier from rewriting (x / y) / y back into x / (y * y).
    return out, divide(dx, y) - divide(jax.lax.optimization_barrier(out), y) * dy


@jax.custom_jvp
def abs(x: Array) -> Array:
    """``torch.abs``: gradient ``sign(x)``, i.e. 0 at ``x == 0`` (JAX's ``jnp.abs`` gives 1 there).

    For complex ``x`` the result is real and the derivative torch's ``sgn(x) = x / |x|`` (0 at
    0): the tangent is ``Re(conj(sgn(x)) dx)``. (``jax.grad`` of a real function of a complex
    argument returns the conjugate of what torch's ``.grad`` holds: the same gradient in the
    two frameworks' conventions.)
    """
    return jnp.abs(x)


@abs.defjvp
def _abs_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    if jnp.iscomplexobj(x):
        return abs(x), jnp.real(jnp.conj(jnp.sign(x)) * dx)
    return abs(x), jnp.sign(x) * dx
