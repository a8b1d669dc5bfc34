"""Parity tolerances, one per dtype, defined here and nowhere else.

They are ``torch.testing.assert_close``'s defaults, so "jaxloss agrees with
torch" means what it means inside torch's own test-suite: an element passes when
``|jax - torch| <= atol + rtol * |torch|``.

* float64 / float32: torch's defaults. Both frameworks round each operation to
  the dtype; the remaining differences come from summation order (XLA and ATen
  reduce in different trees) and from libm differences in ``exp`` / ``log``
  (a few ULP), which these bounds cover for the reductions used in losses.
* float16 / bfloat16: torch's defaults too. jaxloss computes these dtypes in
  float32 (torch's opmath type) and rounds once at the end, while torch rounds
  some intermediate tensors (e.g. the elementwise loss before a reduction) to the
  low-precision dtype. The parity suite therefore also compares both against a
  float64 reference, to show which one is closer to the truth.

No dtype has an exception, and no case loosens them. Two related mechanisms, both
listed in the report: a case where torch itself is inexact is judged against the
float64 truth with these same bounds (:class:`jaxloss.parity.cases.TorchInexact`), and a
case float32 itself cannot resolve for any two correct implementations runs in
float64 only (``Case.fuzz_dtypes``): CTC with log-probabilities down to -30 (both
~1e-5 from the float64 gradient, the size of atol; ``parity.cases.ctc._F32_LIMIT``)
and the cosine similarity of vectors of norm ~1e-5 (gradient terms ~5e4 cancel;
``parity.cases.distance._TINY_LIMIT``).

TF32 tier (:data:`TF32`, picked by ``tolerance_for(dtype, precision="tf32")``): with TF32 on
(``parity.precision('tf32')``, or JAX's ``default`` precision on an Ampere/Hopper GPU), float32
matmuls and convolutions round their operands to TF32's 10 explicit mantissa bits (unit
roundoff 2**-11 ~ 4.9e-4 when rounded to nearest, 2**-10 when truncated; cuBLAS, cuDNN and
XLA's Triton kernels do not all convert alike) and accumulate in float32. Each product then
carries a relative error up to ~2**-10, so a dot of K terms is off by ~1e-3 of its typical
term, and a loss or gradient built on it by as much again: far beyond float32's 1.3e-6, yet not
a bug. The tier is ``rtol = atol = 5e-3``, the precision torch's own suite gives its TF32 runs
of the same convolution and linear tests (``tf32_on_and_off(0.005)``), about 10 TF32 units.
``tests/test_precision.py`` emulates both conversions in NumPy on a linear layer with cross
entropy and on a convolution and checks that two TF32 implementations, and each against the
float64 truth, stay well inside it. It applies to float32 and, as the looser of the two, to
float16 / bfloat16 (computed in float32); float64 never uses TF32. A case that passes in
``ieee`` and fails only under this tier is a TF32 effect, reported as such, never a reason to
loosen the float32 row.

Besides the table: :func:`ulp` / :func:`ulp_error` (errors in units in the last
place of a dtype, reported next to absolute and relative errors) and
:func:`tolerance_usage` (``|a - e| / (atol + rtol |e|)``, the fraction of the
tolerance an element uses; the parity report ranks cases by it).
"""

from __future__ import annotations

import argparse
import math
import numbers
from typing import NamedTuple

import numpy as np


class Tolerance(NamedTuple):
    """``rtol`` and ``atol`` of one dtype.

    >>> Tolerance(rtol=1e-3, atol=1e-5).rtol
    0.001
    """
    rtol: float
    atol: float


TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float16": Tolerance(rtol=1e-3, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
}

DTYPES: tuple[str, ...] = tuple(TOLERANCES)  # the one order of the floating dtypes (widest first)


TF32 = Tolerance(rtol=5e-3, atol=5e-3)
PRECISIONS = ("ieee", "tf32", "default")  # parity.precision's modes


def tolerance_for(dtype: object, precision: str = "ieee") -> Tolerance:
    """The tolerance of a dtype given as a name, NumPy/JAX dtype or torch dtype.

    Args:
        dtype: the compared arrays' dtype.
        precision: the float32 matmul precision of the run (``parity.precision``'s mode).
            ``'tf32'`` and ``'default'`` (JAX's default is TF32 on Ampere+ GPUs) take the
            :data:`TF32` tier for float32 and the looser of it and the dtype's own for
            float16 / bfloat16; ``'ieee'``, and float64 always, the dtype's own.

    >>> from jaxloss.parity.tolerances import tolerance_for
    >>> tolerance_for("float32"), tolerance_for("float32", precision="tf32")
    (Tolerance(rtol=1.3e-06, atol=1e-05), Tolerance(rtol=0.005, atol=0.005))
    >>> tolerance_for("float64", precision="tf32")
    Tolerance(rtol=1e-07, atol=1e-07)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    name = dtype_name(dtype)
    own = TOLERANCES[name]
    if precision == "ieee" or name == "float64":
        return own
    return Tolerance(rtol=max(own.rtol, TF32.rtol), atol=max(own.atol, TF32.atol))


def check_tolerance(name: str, value: object) -> float:
    """``value`` as a tolerance (a finite number >= 0, as a float), else ``ValueError`` naming ``name``.

    The one check of every ``rtol`` / ``atol`` parity takes (functions and command lines):
    a negative bound turns the tolerance usage ``|a - e| / (atol + rtol |e|)`` negative, so
    everything "passes"; an infinite or NaN one passes anything or nothing.

    >>> check_tolerance("rtol", 1e-3)
    0.001
    >>> check_tolerance("atol", -1e-9)
    Traceback (most recent call last):
    ...
    ValueError: atol must be a finite number >= 0, got -1e-09
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def tolerance_flag(text: str) -> float:
    """argparse ``type=`` of the command lines' ``--rtol`` / ``--atol`` (:func:`check_tolerance`).

    >>> tolerance_flag("1e-4")
    0.0001
    >>> tolerance_flag("inf")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a finite number >= 0, got inf
    """
    try:
        return check_tolerance("value", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}") from None


# --------------------------------------------------------------------------- ULPs
class Format(NamedTuple):
    """Binary floating-point format: explicit mantissa bits and smallest normal exponent."""

    nmant: int
    minexp: int


FORMATS: dict[str, Format] = {
    "float64": Format(nmant=52, minexp=-1022),
    "float32": Format(nmant=23, minexp=-126),
    "float16": Format(nmant=10, minexp=-14),
    "bfloat16": Format(nmant=7, minexp=-126),
}


def dtype_name(dtype: object) -> str:
    """Canonical name (``'float32'``...) of a dtype given as a name, NumPy/JAX or torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in FORMATS:
        name = np.dtype(dtype).name  # type: ignore[call-overload]
    return name


def ulp(x: np.ndarray, dtype: object) -> np.ndarray:
    """The unit in the last place of ``dtype`` at each value of ``x`` (float64 array).

    The spacing of the representable ``dtype`` numbers around ``|x|``
    (``2**(e - nmant)`` for ``2**e <= |x| < 2**(e+1)``), the subnormal spacing
    below the smallest normal number. Infinite or NaN ``x`` give NaN.

    >>> import numpy as np
    >>> float(ulp(np.array(1.0), "float32"))
    1.1920928955078125e-07
    """
    fmt = FORMATS[dtype_name(dtype)]
    a = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        _, e = np.frexp(np.where(np.isfinite(a), a, 1.0))  # a = m * 2**e, m in [0.5, 1)
    exp = np.where(a == 0, fmt.minexp, np.maximum(e.astype(np.float64) - 1.0, fmt.minexp))
    out = np.ldexp(1.0, (exp - fmt.nmant).astype(np.int64))
    return np.where(np.isfinite(a), out, np.nan)


def ulp_error(actual: np.ndarray, expected: np.ndarray, dtype: object) -> np.ndarray:
    """``|actual - expected|`` in units of ``dtype``'s ULP at ``expected`` (float64 array).

    >>> import numpy as np
    >>> float(ulp_error(np.array(1.0 + 2.0**-22), np.array(1.0), "float32"))
    2.0
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(a - e) / ulp(e, dtype)


def tolerance_usage(actual: np.ndarray, expected: np.ndarray, dtype: object) -> np.ndarray:
    """``|actual - expected| / (atol + rtol * |expected|)``: an element passes where this is <= 1.

    ``dtype`` names the tolerance (a dtype), or is a :class:`Tolerance` itself.

    >>> float(tolerance_usage(np.array([1.5]), np.array([1.0]), Tolerance(rtol=0.25, atol=0.25))[0])
    1.0
    """
    tol = dtype if isinstance(dtype, Tolerance) else tolerance_for(dtype)
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(a - e) / (tol.atol + tol.rtol * np.abs(e))
