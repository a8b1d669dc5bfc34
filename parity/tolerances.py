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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Tolerance(NamedTuple):
    rtol: float
    atol: float


TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float16": Tolerance(rtol=1e-3, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
}


def tolerance_for(dtype: object) -> Tolerance:
    """The tolerance of a dtype given as a name, NumPy/JAX dtype or torch dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in TOLERANCES:
        name = np.dtype(dtype).name  # type: ignore[call-overload]
    return TOLERANCES[name]
