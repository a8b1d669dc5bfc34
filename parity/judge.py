"""Judging one array against another: the rule every parity comparison uses (loss grid, models, tests).

An element agrees where ``|actual - expected| <= atol + rtol |expected|`` (the dtype's
tolerance from :mod:`jaxloss.parity.tolerances`, or one given), NaN with NaN and infinities of the same
sign; with a float64 reference, both sides are also measured against it (rounded once to the
dtype: the correctly rounded truth). See :mod:`jaxloss.parity.compare` for the low-precision rule.

>>> import numpy as np
>>> c = compare_arrays("value", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12]), "float64")
>>> c.passed, c.n_bad, round(c.max_abs, 15)
(True, 0, 1e-12)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxloss.parity.convert import LOW_PRECISION, NP_DTYPES, np64, out_dtype
from jaxloss.parity.precisions import current_mode
from jaxloss.parity.result import Comparison, is_smaller
from jaxloss.parity.tolerances import Tolerance, check_tolerance, tolerance_for, tolerance_usage, ulp_error

__all__ = ["JUDGES", "agree", "compare_arrays", "rounded", "tolerance"]

JUDGES = ("torch", "reference")  # what an array is judged against: torch's, or the float64 reference


def _precision_in_force() -> str:
    """The :mod:`jaxloss.parity.precisions` mode whose tolerance tier applies now.

    Outside any block the mode is ``'default'``; XLA:CPU computes float32 dots and convolutions
    exactly in float32 whatever the setting (measured: see ``tests/test_precision.py``), so on
    CPU that is ``'ieee'``; on a GPU it is the TF32 JAX defaults to there.
    """
    mode = current_mode()
    if mode == "default" and jax.default_backend() == "cpu":
        return "ieee"
    return mode


def tolerance(dtype: str, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The tolerance an array of ``dtype`` is judged with: the dtype's under the precision in force,
    with ``rtol`` / ``atol`` (checked: :func:`jaxloss.parity.tolerances.check_tolerance`) where given.

    >>> tolerance("float32", atol=0)
    Tolerance(rtol=1.3e-06, atol=0.0)
    """
    own = tolerance_for(dtype, precision=_precision_in_force())
    return Tolerance(own.rtol if rtol is None else check_tolerance("rtol", rtol),
                     own.atol if atol is None else check_tolerance("atol", atol))


def compare_arrays(
    name: str,
    actual: Any,
    expected: Any,
    dtype: str,
    reference: Any = None,
    judge: str = "torch",
    tol: Tolerance | None = None,
) -> Comparison:
    """Compare one JAX array with torch's (and both with an optional float64 reference).

    ``tol`` overrides the dtype's tolerance from :mod:`jaxloss.parity.tolerances`; without it the
    tolerance is the dtype's under the float32 precision in force (:func:`jaxloss.parity.precisions.current_mode`:
    the TF32 tier inside ``precision('tf32')``).

    >>> import numpy as np
    >>> c = compare_arrays("grad x", np.float32([1.0, 2.5]), np.float32([1.0, 2.0]), "float32")
    >>> c.passed, c.n_bad, c.worst_index
    (False, 1, (1,))
    """
    if tol is None:
        tol = tolerance(dtype)
    else:  # every judged array passes through here: no invalid bound can judge one
        tol = Tolerance(check_tolerance("rtol", tol.rtol), check_tolerance("atol", tol.atol))
    a, e = np64(actual), np64(expected)
    a_dt, e_dt = out_dtype(actual), out_dtype(expected)
    if a.shape != e.shape:
        return Comparison(name, dtype, False, message=f"shape {list(a.shape)} != torch's {list(e.shape)}")
    c = Comparison(name, dtype, True, shape=tuple(a.shape), size=int(a.size))
    if a_dt != e_dt:
        c.passed, c.message = False, f"dtype {a_dt} != torch's {e_dt}"
    if a.size == 0:
        return c
    if not (np.issubdtype(a.dtype, np.floating) and np.issubdtype(e.dtype, np.floating)):
        bad = a != e
        c.n_bad = int(bad.sum())
        c.passed = c.passed and not c.n_bad
        return c
    ok, usage = agree(a, e, tol)
    abs_err = _err(a, e)
    # relative and ULP errors where torch's value is significant (|e| > atol): near 0 the
    # absolute error is the meaningful one (a 1e-17 vs 0 difference is "100% relative")
    sig = ~(np.abs(e) <= tol.atol)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where((abs_err == 0) | ~sig, 0.0, abs_err / np.abs(e))
    ulps = np.where((abs_err == 0) | ~sig, 0.0, ulp_error(a, e, dtype))
    ulps = np.where(np.isnan(ulps), np.inf, ulps)
    c.max_abs, c.max_rel, c.max_ulp = _max(abs_err), _max(rel), _max(ulps)
    c.usage = _max(usage)
    c.n_bad = int((~ok).sum())
    idx = np.unravel_index(int(np.argmax(np.where(ok, -1.0, usage))) if c.n_bad else int(np.argmax(usage)), a.shape)
    c.worst_index = tuple(int(i) for i in idx)
    c.jax_at_worst, c.torch_at_worst = float(a[idx]), float(e[idx])
    passed_torch = c.n_bad == 0
    if reference is not None:
        r = rounded(np64(reference), dtype)
        if r.shape == a.shape:
            ja, ta = _err(a, r), _err(e, r)
            c.jax_ref_abs, c.torch_ref_abs = _max(ja), _max(ta)
            with np.errstate(invalid="ignore"):
                c.jax_ref_ulp = _max(np.where(ja == 0, 0.0, np.nan_to_num(ulp_error(a, r, dtype), nan=np.inf)))
                c.torch_ref_ulp = _max(np.where(ta == 0, 0.0, np.nan_to_num(ulp_error(e, r, dtype), nan=np.inf)))
            ok_ref, _ = agree(a, r, tol)
            c.torch_ref_passed = bool(agree(e, r, tol)[0].all())
            c.jax_ref_passed = bool(ok_ref.all())
            if judge == "reference":
                c.judged = "reference"
                c.passed = c.passed and bool(ok_ref.all())
                return c
            if not passed_torch and dtype in LOW_PRECISION and ok_ref.all() and not is_smaller(c.torch_ref_abs, c.jax_ref_abs):
                c.judged = "reference"
                c.message = c.message or "low-precision rule: differs from torch; within tolerance of the float64 reference and at least as close to it as torch"
                return c
        elif judge == "reference":
            c.passed, c.message = False, f"reference shape {list(r.shape)} != {list(a.shape)}"
            return c
    elif judge == "reference":
        c.passed, c.message = False, "judged against a float64 reference, but none could be computed"
        return c
    c.passed = c.passed and passed_torch
    return c


def rounded(r: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 reference rounded once to ``dtype`` (as float64): the correctly rounded
    truth, the best any implementation can return (a float64 value beyond the dtype's range
    is an infinity in it).

    >>> import numpy as np
    >>> float(rounded(np.array([1 + 2.0**-30]), "float32")[0])
    1.0
    """
    if not np.issubdtype(r.dtype, np.floating) or dtype == "float64":
        return r
    with np.errstate(over="ignore"):
        return r.astype(NP_DTYPES[dtype]).astype(np.float64)


def agree(a: np.ndarray, e: np.ndarray, tol: Tolerance) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise agreement (NaN ~ NaN, inf ~ inf of the same sign) and tolerance usage.

    >>> import numpy as np
    >>> from jaxloss.parity.tolerances import Tolerance
    >>> ok, usage = agree(np.array([1.0, np.nan, 2.0]), np.array([1.0, np.nan, 3.0]), Tolerance(0.0, 0.5))
    >>> ok.tolist(), usage.tolist()
    ([True, True, False], [0.0, 0.0, 2.0])
    """
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    special = both_nan | same_inf
    usage = np.where(special, 0.0, tolerance_usage(a, e, tol))
    usage = np.where(np.isnan(usage), np.inf, usage)
    return special | (usage <= 1.0), usage


def _err(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
    err = np.where(both_nan | same_inf, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def _max(x: np.ndarray) -> float:
    return float(np.max(x)) if x.size else 0.0
