"""Arrays between NumPy, JAX and torch for the comparison engine, and its fixed test patterns.

>>> import numpy as np
>>> cast_floats({"x": np.ones(2), "n": 3}, "float32")["x"].dtype
dtype('float32')
>>> is_float_array(np.ones(2, np.int32)), [d for d in DTYPES]
(False, ['float64', 'float32', 'float16', 'bfloat16'])
"""

from __future__ import annotations

import zlib
from typing import Any

import jax
import ml_dtypes
import numpy as np

from jaxloss.parity.tolerances import DTYPES, dtype_name

__all__ = ["DTYPES", "LOW_PRECISION", "NP_DTYPES", "cast_floats", "dtype_name_or_none", "is_array", "is_float_array", "np64",
           "out_dtype", "path_name", "pattern", "to_torch", "torch_device"]

LOW_PRECISION = ("float16", "bfloat16")
NP_DTYPES: dict[str, Any] = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
}

def is_float_array(x: Any) -> bool:
    """True for a NumPy array (or NumPy scalar) of a floating dtype, bfloat16 included.

    >>> import numpy as np
    >>> is_float_array(np.float32(1)), is_float_array(np.arange(2))
    (True, False)
    """
    return isinstance(x, (np.ndarray, np.generic)) and dtype_name_or_none(x.dtype) in DTYPES


def dtype_name_or_none(dtype: Any) -> str | None:
    """:func:`jaxloss.parity.tolerances.dtype_name`, or ``None`` for a dtype it does not know.

    >>> dtype_name_or_none("float16"), dtype_name_or_none("not-a-dtype")
    ('float16', None)
    """
    try:
        return dtype_name(dtype)
    except TypeError:
        return None


def is_array(x: Any) -> bool:
    """A NumPy array or scalar (the leaves a comparison converts for each side).

    >>> import numpy as np
    >>> is_array(np.int64(3)), is_array(3)
    (True, False)
    """
    return isinstance(x, (np.ndarray, np.generic))


def cast_floats(tree: Any, dtype: str) -> Any:
    """Round every floating NumPy array of ``tree`` to ``dtype`` (other leaves unchanged).

    >>> import numpy as np
    >>> [x.dtype.name for x in cast_floats([np.ones(1), np.arange(1)], "float16")]
    ['float16', 'int64']
    """
    npdt = NP_DTYPES[dtype]
    return jax.tree_util.tree_map(lambda x: np.asarray(x).astype(npdt) if is_float_array(x) else x, tree)


def to_torch(x: Any, device: str, dtype: str | None = None, requires_grad: bool = False) -> Any:
    """NumPy array -> torch tensor (``dtype`` overrides a floating array's dtype).

    >>> import numpy as np
    >>> to_torch(np.ones(2), "cpu", dtype="float32", requires_grad=True).requires_grad
    True
    """
    import torch

    if not is_array(x):
        return x
    x = np.asarray(x)
    if is_float_array(x):
        name = dtype or dtype_name(x.dtype)
        t = torch.from_numpy(np.array(x, dtype=np.float64)).to(getattr(torch, name))
        t = t.to(torch_device(device))
        return t.requires_grad_(requires_grad)
    return torch.from_numpy(np.array(x)).to(torch_device(device))


def torch_device(device: str) -> str:
    """torch's device name for a parity device name.

    >>> torch_device("gpu"), torch_device("cpu")
    ('cuda', 'cpu')
    """
    return "cuda" if device == "gpu" else "cpu"


def np64(x: Any) -> np.ndarray:
    """Any array (torch, JAX, NumPy) -> NumPy; floating ones as float64.

    >>> import numpy as np, torch
    >>> np64(torch.ones(2, dtype=torch.float16)).dtype, np64(np.arange(2)).dtype
    (dtype('float64'), dtype('int64'))
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x._is_zerotensor():  # torch's symbolic zero gradients
            x = x.new_zeros(x.shape)
        return x.double().numpy() if x.is_floating_point() else x.numpy()
    a = np.asarray(x)
    return a.astype(np.float64) if is_float_array(a) else a


def out_dtype(x: Any) -> str:
    """The dtype name of an output, whichever framework it comes from.

    >>> import torch
    >>> out_dtype(torch.ones(1, dtype=torch.bfloat16))
    'bfloat16'
    """
    if hasattr(x, "detach"):
        return str(x.dtype).replace("torch.", "")
    return str(np.asarray(x).dtype) if not hasattr(x, "dtype") else dtype_name_or_none(x.dtype) or str(x.dtype)


def pattern(shape: tuple[int, ...], dtype: Any, salt: str, low: float, high: float) -> np.ndarray:
    """A fixed pseudo-random array in ``[low, high)``, rounded to ``dtype`` (seeded by shape + salt).

    >>> a = pattern((3,), "float32", "cot0", 0.5, 1.5)
    >>> a.dtype.name, bool(((a >= 0.5) & (a < 1.5)).all()), bool((a == pattern((3,), "float32", "cot0", 0.5, 1.5)).all())
    ('float32', True, True)
    """
    seed = zlib.crc32(f"{salt}:{shape}".encode())
    vals = np.random.default_rng(seed).uniform(low, high, size=shape)
    return vals.astype(NP_DTYPES.get(dtype_name_or_none(dtype) or "", np.float64))


def path_name(path: tuple[Any, ...]) -> str:
    """A pytree key path as text (``['a'][0]``), for the names of compared arrays.

    >>> import jax
    >>> path_name(jax.tree_util.tree_flatten_with_path({"a": [1]})[0][0][0])
    "['a'][0]"
    """
    return "".join(str(k) for k in path)
