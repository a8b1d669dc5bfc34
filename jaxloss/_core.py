"""Shared machinery of every jaxloss function.

Conventions every loss module follows (read this before writing a loss):

* A public loss is a plain Python function decorated with :func:`loss_function`,
  which jit-compiles it with its non-array arguments declared static and records
  the un-jitted function so that :mod:`jaxloss.checked` can re-trace it under
  ``checkify``. A public loss never calls another *public* (jitted) loss: it
  composes the private helpers of its module or of this one. (A jitted function
  traced once in checked mode would cache a trace containing ``checkify.check``.)
* Array arguments are traced; strings, ints, floats, bools and callables that
  select behaviour (``reduction``, ``ignore_index``, ``margin``, ``p``...) are
  static Python values, validated at trace time.
* Low-precision inputs (float16 / bfloat16) are computed in float32, torch's
  "opmath" type for these dtypes on CPU and GPU, and the result is cast back to
  the input dtype. No float64 constant may leak into float32 code: use Python
  scalars (weakly typed) or ``jnp.asarray(c, dtype=x.dtype)``.
* Trace-time errors (shape, dtype, option value) raise ``ValueError`` or
  ``TypeError`` with a message naming the argument, in torch's wording where
  torch has one. Value errors jit cannot raise (a class index out of range, a
  probability outside [0, 1], a negative variance) poison the result with NaN
  and are recorded with :func:`value_check`, which raises torch's message in
  :mod:`jaxloss.checked`.
* Gradients at kinks follow torch's autograd formulas, not JAX's defaults: e.g.
  ``clamp_min(x, m)`` passes the gradient where ``x >= m`` (JAX's ``maximum``
  splits it 0.5/0.5 at a tie). Use :func:`clamp_min` / :func:`clamp_max`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
from jax.experimental import checkify

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
Reduction = Literal["none", "mean", "sum"]

F = TypeVar("F", bound=Callable[..., Any])

# name -> (un-jitted function, static argument names)
_REGISTRY: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {}


def loss_function(*, static_argnames: Sequence[str] = ()) -> Callable[[F], F]:
    """Jit-compile a public loss with ``static_argnames`` and register it.

    The returned object is the ``jax.jit`` wrapper; the original function stays
    reachable through :func:`registered` for checked mode.
    """

    def decorate(fn: F) -> F:
        _REGISTRY[fn.__name__] = (fn, tuple(static_argnames))
        return jax.jit(fn, static_argnames=tuple(static_argnames))  # type: ignore[return-value]

    return decorate


def registered() -> dict[str, tuple[Callable[..., Any], tuple[str, ...]]]:
    """All registered public losses: ``name -> (unjitted_fn, static_argnames)``."""
    return dict(_REGISTRY)


# --------------------------------------------------------------------------- checks
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxloss_checked", default=False)


def value_check(pred: ArrayLike, message: str, *fmt_args: ArrayLike) -> None:
    """Record a run-time value check (``pred`` must be all True).

    A no-op in the default (fast) mode, where the caller must instead make the
    result NaN for an invalid value. In :mod:`jaxloss.checked` it becomes a
    ``checkify.check`` that raises ``message`` (formatted with ``fmt_args``,
    ``{}`` placeholders as in :func:`jax.experimental.checkify.check`).
    """
    if _CHECKED.get():
        checkify.check(jnp.all(pred), message, *fmt_args)


def checked_mode() -> contextvars.Token[bool]:
    """Turn checked mode on for the current trace; pass the token to ``reset``."""
    return _CHECKED.set(True)


def reset_checked_mode(token: contextvars.Token[bool]) -> None:
    _CHECKED.reset(token)


def check_reduction(reduction: str, allowed: Sequence[str] = ("none", "mean", "sum")) -> None:
    """Raise torch's error for an unknown ``reduction``."""
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def check_float(name: str, x: Array) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating point dtype, got {x.dtype}")


def check_integer(name: str, x: Array) -> None:
    """Raise ``TypeError`` unless ``x`` has an integer dtype (int32 and int64 both welcome)."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {x.dtype}")


def shape_str(shape: Sequence[int]) -> str:
    """Format a shape the way torch prints it in error messages: ``[2, 3]``."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """NumPy/torch broadcasting of two shapes, failing with torch's ``infer_size`` message.

    ``a`` and ``b`` are "tensor a" and "tensor b" in the message, as torch names the
    operands of the binary op that fails (pass them in that op's order). Like torch,
    the right-most mismatching dimension is reported.
    """
    a, b = tuple(int(d) for d in a), tuple(int(d) for d in b)
    ndim = max(len(a), len(b))
    pa, pb = (1,) * (ndim - len(a)) + a, (1,) * (ndim - len(b)) + b
    for i in range(ndim - 1, -1, -1):
        if pa[i] != pb[i] and pa[i] != 1 and pb[i] != 1:
            raise ValueError(
                f"The size of tensor a ({pa[i]}) must match the size of tensor b ({pb[i]}) "
                f"at non-singleton dimension {i}"
            )
    return tuple(db if da == 1 else da for da, db in zip(pa, pb))


def check_broadcast_into(shape: Sequence[int], broadcast: Sequence[int]) -> None:
    """torch's in-place / ``out=`` rule: an operand may not enlarge the output's ``shape``."""
    if tuple(broadcast) != tuple(shape):
        raise ValueError(
            f"output with shape {shape_str(shape)} doesn't match the broadcast shape {shape_str(broadcast)}"
        )


# --------------------------------------------------------------------------- dtypes
def result_float_dtype(*xs: Any) -> jnp.dtype:
    """The floating dtype torch's type promotion gives these arrays (or dtypes).

    An integer operand never widens a floating one (``int64 * float32 -> float32``, as in
    torch and in JAX's promotion lattice); integers alone give float32 (torch's default dtype).
    """
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(dt, jnp.float32)
    return jnp.dtype(dt)


def opmath_dtype(dtype: Any) -> jnp.dtype:
    """The dtype torch computes in: float32 for float16 / bfloat16, else ``dtype``."""
    dtype = jnp.dtype(dtype)
    if dtype in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        return jnp.dtype(jnp.float32)
    return dtype


def to_opmath(*xs: Array | None) -> tuple[Array | None, ...]:
    """Cast float16 / bfloat16 arrays to float32; others (and ``None``) unchanged."""
    return tuple(None if x is None else x.astype(opmath_dtype(x.dtype)) for x in xs)


# --------------------------------------------------------------------------- reductions
def reduce(loss: Array, reduction: str) -> Array:
    """Apply torch's ``'none' | 'mean' | 'sum'`` to an elementwise loss."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss)
    raise ValueError(f"{reduction} is not a valid value for reduction")


# --------------------------------------------------------------------------- torch-gradient kinks
def _bound_tangent(dbound: Any, x: Array) -> Array:
    """The tangent of a clamp bound as an array like ``x`` (zeros for int / symbolic-zero bounds)."""
    if isinstance(dbound, jax.custom_derivatives.SymbolicZero) or jnp.asarray(dbound).dtype == jax.dtypes.float0:
        return jnp.zeros_like(x)
    return jnp.broadcast_to(jnp.asarray(dbound, dtype=x.dtype), x.shape)


@jax.custom_jvp
def clamp_min(x: Array, minimum: ArrayLike) -> Array:
    """``torch.clamp_min``: ``max(x, minimum)``, NaN stays NaN; gradient 1 where ``x >= minimum`` (ties too)."""
    return jnp.where(x < minimum, jnp.asarray(minimum, dtype=x.dtype), x)


@clamp_min.defjvp
def _clamp_min_jvp(primals: tuple[Array, Any], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, minimum = primals
    dx, dmin = tangents
    return clamp_min(x, minimum), jnp.where(x >= minimum, dx, _bound_tangent(dmin, x))


@jax.custom_jvp
def clamp_max(x: Array, maximum: ArrayLike) -> Array:
    """``torch.clamp_max``: ``min(x, maximum)``, NaN stays NaN; gradient 1 where ``x <= maximum`` (ties too)."""
    return jnp.where(x > maximum, jnp.asarray(maximum, dtype=x.dtype), x)


@clamp_max.defjvp
def _clamp_max_jvp(primals: tuple[Array, Any], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, maximum = primals
    dx, dmax = tangents
    return clamp_max(x, maximum), jnp.where(x <= maximum, dx, _bound_tangent(dmax, x))


# --------------------------------------------------------------------------- safe indexing
def safe_take_along_axis(x: Array, index: Array, axis: int, valid: Array) -> Array:
    """``take_along_axis`` that never wraps or reads out of bounds.

    Where ``valid`` is False the index is replaced by 0 before gathering (the
    caller masks those entries afterwards). ``index`` must already have the
    gathered axis as a size-1 dimension, like ``jnp.take_along_axis``.
    """
    safe = jnp.where(valid, index, 0)
    return jnp.take_along_axis(x, safe.astype(jnp.int32), axis=axis, mode="clip")


def nan_where(invalid: Array, x: Array) -> Array:
    """Replace entries of ``x`` by NaN where ``invalid`` (poisoning for bad values)."""
    return jnp.where(invalid, jnp.asarray(jnp.nan, dtype=x.dtype), x)


@jax.custom_jvp
def abs(x: Array) -> Array:
    """``torch.abs``: gradient ``sign(x)``, i.e. 0 at ``x == 0`` (JAX's ``jnp.abs`` gives 1 there)."""
    return jnp.abs(x)


@abs.defjvp
def _abs_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    return abs(x), jnp.sign(x) * dx
