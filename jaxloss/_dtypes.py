"""Array types and torch's dtype rules: promotion, the "opmath" compute dtype, dtype checks and names."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def dtype_of(value: Any) -> np.dtype:
    """The dtype of an array (read, not computed) or of a Python / NumPy scalar (JAX's)."""
    dtype = getattr(value, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.dtype(jnp.result_type(value))


def check_float(name: str, x: Array) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating point dtype, got {x.dtype}")


def check_integer(name: str, x: Array) -> None:
    """Raise ``TypeError`` unless ``x`` has an integer dtype (int32 and int64 both welcome)."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {x.dtype}")


def result_float_dtype(*xs: Any) -> jnp.dtype:
    """The floating dtype torch's type promotion gives these arrays (or dtypes).

    An integer operand never widens a floating one (``int64 * float32 -> float32``, as in
    torch and in JAX's promotion lattice); integers alone give float32 (torch's default dtype).
    """
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(dt, jnp.float32)
    return jnp.dtype(dt)


def real_dtype(dtype: Any) -> jnp.dtype:
    """The dtype of the modulus of ``dtype``'s numbers: float32 for complex64, a real dtype unchanged."""
    return jnp.dtype(jnp.finfo(dtype).dtype)


# torch's names of dtypes, for messages in its wording ("result type Float can't be cast ...").
_TORCH_DTYPE_NAMES = {
    "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
    "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64",
    "float64": "Double", "float32": "Float", "float16": "Half", "bfloat16": "BFloat16",
}


def torch_dtype_name(dtype: Any) -> str:
    """torch's name of ``dtype`` (``Long``, ``Float``...), as its error messages print it."""
    name = jnp.dtype(dtype).name
    return _TORCH_DTYPE_NAMES.get(name, name)


def opmath_dtype(dtype: Any) -> jnp.dtype:
    """The dtype torch computes in: float32 for float16 / bfloat16, else ``dtype``."""
    dtype = jnp.dtype(dtype)
    if dtype in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        return jnp.dtype(jnp.float32)
    return dtype
