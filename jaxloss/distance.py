"""Distance helpers with torch semantics: ``pairwise_distance`` and ``cosine_similarity``.

Both mirror ``torch.nn.functional`` (torch 2.13) in value, shape, broadcasting and
gradient, including torch's choices at the non-smooth points:

* ``pairwise_distance(x1, x2, p, eps)`` is ``torch.norm(x1 - x2 + eps, p, dim=-1)``
  (``eps`` is added to the *difference*, not to the norm), reduced over the last
  dimension of the broadcast shape. Its gradient is torch's ``norm_backward``: 0
  where the norm is 0 (p = 2), ``sign(d)`` (so 0 at ``d == 0``) for p = 1, the
  gradient shared equally between tied maxima for p = inf, nothing for p = 0.
* ``cosine_similarity(x1, x2, dim, eps)`` is
  ``sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps), dim)``: each norm is
  clamped *separately*, and the clamp changes the value only (torch clamps under
  ``no_grad``), so the gradient flows through the unclamped norm. A zero vector
  gives similarity 0 and a finite gradient, as in torch.

The shared pieces used by the embedding losses live here too: :func:`norm`
(torch's ``norm`` with its exact backward, also correct to second order) and
:func:`jaxloss._shapes.broadcast_shapes` (NumPy broadcasting that fails with torch's message).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss._dtypes import Array, opmath_dtype, real_dtype, result_float_dtype, torch_dtype_name
from jaxloss._jvp import abs as abs_
from jaxloss._jvp import clamp_min_straight_through
from jaxloss._registry import Number, loss_function
from jaxloss._shapes import broadcast_shapes

__all__ = ["cosine_similarity", "pairwise_distance"]

class DimensionError(IndexError, ValueError):
    """torch raises ``IndexError`` for a dimension out of range; jaxloss's trace-time
    errors are ``ValueError``. This one is both."""


# --------------------------------------------------------------------------- shapes
def wrap_dim(dim: int, ndim: int) -> int:
    """torch's ``maybe_wrap_dim`` (a 0-d tensor accepts ``dim`` in ``[-1, 0]``)."""
    n = max(ndim, 1)
    dim = operator.index(dim)
    if not -n <= dim < n:
        raise DimensionError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n


# --------------------------------------------------------------------------- torch.norm
def _norm_value(x: Array, p: float, axis: int, keepdims: bool) -> Array:
    a = jnp.abs(x)
    if p == 0:
        return jnp.sum(x != 0, axis=axis, keepdims=keepdims).astype(x.dtype)
    if p == 1:
        return jnp.sum(a, axis=axis, keepdims=keepdims)
    if p == 2:
        return jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims))
    if p == math.inf:
        return jnp.max(a, axis=axis, keepdims=keepdims, initial=0)
    if p == -math.inf:
        return jnp.min(a, axis=axis, keepdims=keepdims, initial=math.inf)
    return jnp.sum(a**p, axis=axis, keepdims=keepdims) ** (1.0 / p)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _norm(x: Array, p: float, axis: int, keepdims: bool) -> Array:
    return _norm_value(x, p, axis, keepdims)


@_norm.defjvp
def _norm_jvp(
    p: float, axis: int, keepdims: bool, primals: tuple[Array], tangents: tuple[Array]
) -> tuple[Array, Array]:
    # torch's norm_backward (FunctionsManual.cpp), written as a JVP with
    # differentiable JAX ops so that differentiating it again gives torch's
    # double backward (the norm itself is re-entered through this rule).
    (x,), (dx,) = primals, tangents
    out = _norm(x, p, axis, keepdims)
    if p == 0:
        return out, jnp.zeros_like(out)
    n = out if keepdims else jnp.expand_dims(out, axis)
    zero = jnp.zeros((), x.dtype)
    if p == 1:
        g = jnp.sign(x)
    elif p == 2:
        g = jnp.where(n == 0, zero, x / jnp.where(n == 0, 1, n))
    elif math.isinf(p):
        a = jnp.abs(x)
        mask = (a == n) | jnp.isnan(a)
        count = jnp.sum(mask, axis=axis, keepdims=True).astype(x.dtype)
        g = jnp.sign(x) * jnp.where(mask, 1 / count, zero)
    elif p < 1:
        a = jnp.where(x == 0, 1, jnp.abs(x))
        g = jnp.sign(x) * jnp.where(x == 0, zero, a ** (p - 1)) * n ** (1 - p)
    else:
        safe_n = jnp.where(n == 0, 1, n)
        scale = jnp.where(n == 0, zero, 1 / safe_n ** (p - 1))
        g = (jnp.sign(x) * jnp.abs(x) ** (p - 1) if p < 2 else x * jnp.abs(x) ** (p - 2)) * scale
    return out, jnp.sum(g * dx, axis=axis, keepdims=keepdims)


def norm(x: Array, p: float, axis: int, keepdims: bool = False) -> Array:
    """``torch.norm(x, p, dim=axis, keepdim=keepdims)`` with torch's gradient.

    ``p`` is any real number or ``±inf`` (``0`` counts non-zeros). A 0-d ``x`` is
    treated as a vector of one element and gives a 0-d result, as in torch. A complex ``x``
    has the norm of its moduli, and torch's gradient ``g(|x|) sgn(x)`` by the chain rule
    through :func:`jaxloss._jvp.abs`.
    """
    if jnp.iscomplexobj(x):
        x = abs_(x)
    if x.ndim == 0:
        return _norm(x[None], float(p), 0, False)
    return _norm(x, float(p), axis, keepdims)


# --------------------------------------------------------------------------- pairwise_distance
def _check_p(values: dict[str, Any]) -> None:
    """``p`` selects the norm's code path, so it is static: a Python number (torch's message)."""
    p = values["p"]
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"argument 'p' must be float, not {type(p).__name__}")


def _pairwise_distance(
    x1: Array, x2: Array, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Array:
    x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
    dtype = result_float_dtype(x1, x2)
    shape = broadcast_shapes(x1.shape, x2.shape)
    work = opmath_dtype(dtype)
    diff = x1.astype(work) - x2.astype(work) + eps  # complex: eps is added to the real part, as in torch
    diff = jnp.broadcast_to(diff, shape)
    return norm(diff, p, len(shape) - 1, keepdim).astype(real_dtype(dtype))


@loss_function(
    static_argnames=("p",),
    bools=("keepdim",),
    numbers={"eps": Number()},
    arrays={"x1": "float", "x2": "float"},
    integer_inputs=True,
    reductions=None,
    check_options=_check_p,
    complex_inputs=True,
)
def pairwise_distance(
    x1: Array, x2: Array, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Array:
    r"""``torch.nn.functional.pairwise_distance``: the p-norm of ``x1 - x2 + eps`` over the last dimension.

    .. math:: d = \lVert x_1 - x_2 + \epsilon \rVert_p

    Args:
        x1: ``(N, D)`` or ``(D,)``; any shape broadcastable with ``x2`` (the norm is
            taken over the last dimension of the broadcast shape).
        x2: broadcastable with ``x1``.
        p: the norm degree: any real number, ``float('inf')`` (max) or
            ``-inf`` (min); ``0`` counts the non-zero entries. Default 2.
        eps: added to the difference (not to the norm), as torch does. Default 1e-6.
        keepdim: keep the reduced dimension (size 1). Default False.

    Returns:
        Shape ``(N,)`` (``(N, 1)`` with ``keepdim``), ``()`` for 1-D or 0-d inputs;
        the promoted floating dtype of ``x1``, ``x2`` (integer inputs give float32,
        float16 / bfloat16 are computed in float32 and returned in their dtype). Complex
        inputs give the real dtype (complex64: float32), as in torch; ``jax.grad`` returns
        the conjugate of torch's ``.grad`` (JAX's convention for complex arguments).

    Gradient as torch's ``norm_backward``: 0 where the norm is 0 (p = 2),
    ``sign(d)`` for p = 1, shared equally between tied maxima for p = inf.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x1, x2 = jnp.array([[0.0, 0.0], [1.0, 1.0]]), jnp.array([[3.0, 4.0], [1.0, 1.0]])
        >>> [round(v, 4) for v in jaxloss.pairwise_distance(x1, x2).tolist()]
        [5.0, 0.0]
        >>> jaxloss.pairwise_distance(x1, x2, p=1.0, keepdim=True).shape
        (2, 1)
    """
    return _pairwise_distance(x1, x2, p, eps, keepdim)


# --------------------------------------------------------------------------- cosine_similarity
def _cosine_similarity(x1: Array, x2: Array, dim: int = 1, eps: float = 1e-8) -> Array:
    x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
    common = jnp.result_type(x1, x2)
    if not jnp.issubdtype(common, jnp.floating):
        raise TypeError(
            f"expected common dtype to be floating point, yet common dtype is {torch_dtype_name(common)}"
        )
    shape = broadcast_shapes(x1.shape, x2.shape)
    axis = wrap_dim(dim, len(shape))
    work = opmath_dtype(common)
    x1 = jnp.broadcast_to(x1.astype(work), shape)
    x2 = jnp.broadcast_to(x2.astype(work), shape)
    if not shape:  # a 0-d pair is a vector of one element (torch accepts dim 0 / -1)
        x1, x2 = x1[None], x2[None]
    n1 = clamp_min_straight_through(_norm(x1, 2.0, axis, True), eps)
    n2 = clamp_min_straight_through(_norm(x2, 2.0, axis, True), eps)
    return jnp.sum((x1 / n1) * (x2 / n2), axis=axis).astype(common)


@loss_function(
    static_argnames=("dim",),
    # torch's TORCH_CHECK(eps >= 0) (a NaN fails it too), its C++ number format
    numbers={"eps": Number(lambda v: v >= 0, "eps must be non-negative, got: {:g}")},
    arrays={"x1": "float", "x2": "float"},
    integer_inputs=True,
    reductions=None,
)
def cosine_similarity(x1: Array, x2: Array, dim: int = 1, eps: float = 1e-8) -> Array:
    r"""``torch.nn.functional.cosine_similarity`` along ``dim``.

    .. math:: \mathrm{sim} = \sum \frac{x_1}{\max(\lVert x_1 \rVert_2, \epsilon)}
        \cdot \frac{x_2}{\max(\lVert x_2 \rVert_2, \epsilon)}

    Each norm is clamped separately (torch's rule since it normalises first, not
    ``max(||x1|| ||x2||, eps)``), and the clamp acts on the value only: torch
    applies it under ``no_grad``, so the gradient flows through the unclamped
    norm (and is 0 through the norm of a zero vector). A zero vector therefore
    has similarity 0 with anything, and a finite gradient.

    Args:
        x1: any shape broadcastable with ``x2``.
        x2: broadcastable with ``x1``.
        dim: the dimension of the vectors (of the broadcast shape). Default 1.
        eps: lower bound of each norm, ``>= 0`` (torch's ``eps must be non-negative, got: -1``
            for a Python number; a traced negative or NaN ``eps`` makes the value and gradient
            NaN, and :mod:`jaxloss.checked` raises torch's message). Default 1e-8.

    Returns:
        The broadcast shape without ``dim``; the promoted dtype of ``x1``, ``x2``
        (which must be floating: two integer inputs raise ``TypeError``, torch refuses them too).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> x1, x2 = jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[0.0, 2.0], [2.0, 2.0]])
        >>> [round(v, 4) for v in jaxloss.cosine_similarity(x1, x2).tolist()]
        [0.0, 1.0]
    """
    return _cosine_similarity(x1, x2, dim, eps)
