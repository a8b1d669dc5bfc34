"""Float32 matmul/convolution precision, set for JAX and torch together.

On Ampere/Hopper GPUs the two frameworks disagree out of the box: JAX computes float32
matmuls *and* convolutions in TF32 by default, torch computes convolutions in TF32
(``torch.backends.cudnn.allow_tf32``) but matmuls in full float32. A comparison of the two
is only meaningful when both are told the same thing.

Modes
    ``"ieee"``: true float32 everywhere (JAX ``default_matmul_precision('highest')``, torch
    matmul precision ``'highest'``, cuDNN TF32 off). The default for parity runs.
    ``"tf32"``: TF32 on both sides (JAX ``'tensorfloat32'``, torch ``'high'`` and cuDNN TF32 on).
    ``"default"``: each framework's own default, left untouched (what an unconfigured
    program gets); recorded, never assumed equal.

Deterministic kernels are requested on both sides where they exist (torch's
``use_deterministic_algorithms`` in warn-only mode, cuDNN ``deterministic``; XLA's
``--xla_gpu_deterministic_ops`` only takes effect when set before the backend starts, so it is
recorded, not changed, here).

>>> with precision("ieee"):
...     settings()["mode"]
'ieee'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import jax

__all__ = ["MODES", "precision", "settings"]

MODES = ("ieee", "tf32", "default")

_JAX_PRECISION = {"ieee": "highest", "tf32": "tensorfloat32"}
_TORCH_MATMUL = {"ieee": "highest", "tf32": "high"}

_current: str = "default"


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # the JAX side alone is still configured
        return None
    return torch


@contextlib.contextmanager
def precision(mode: str) -> Iterator[None]:
    """Configure JAX's and torch's float32 precision together for the ``with`` block.

    Args:
        mode: ``'ieee'``, ``'tf32'`` or ``'default'`` (see the module docstring).

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
    """
    global _current
    if mode not in MODES:
        raise ValueError(f"precision mode must be one of {', '.join(MODES)}, got {mode!r}")
    torch = _torch()
    saved_mode = _current
    saved_torch = None
    if torch is not None:
        saved_torch = (
            torch.get_float32_matmul_precision(),
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
    with contextlib.ExitStack() as stack:
        if mode != "default":
            stack.enter_context(jax.default_matmul_precision(_JAX_PRECISION[mode]))
            if torch is not None:
                torch.set_float32_matmul_precision(_TORCH_MATMUL[mode])
                torch.backends.cudnn.allow_tf32 = mode == "tf32"
                torch.backends.cudnn.deterministic = True
                torch.use_deterministic_algorithms(True, warn_only=True)
        _current = mode
        try:
            yield
        finally:
            _current = saved_mode
            if torch is not None and saved_torch is not None:
                matmul, allow_tf32, cudnn_det, det, warn_only = saved_torch
                torch.set_float32_matmul_precision(matmul)
                torch.backends.cudnn.allow_tf32 = allow_tf32
                torch.backends.cudnn.deterministic = cudnn_det
                torch.use_deterministic_algorithms(det, warn_only=warn_only)


def settings() -> dict[str, Any]:
    """The precision and determinism settings in force, for a report header."""
    out: dict[str, Any] = {
        "mode": _current,
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax_platform": jax.devices()[0].platform,
        "jax_device": jax.devices()[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    torch = _torch()
    if torch is not None:
        out.update(
            torch_float32_matmul_precision=torch.get_float32_matmul_precision(),
            torch_cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            torch_cudnn_deterministic=torch.backends.cudnn.deterministic,
            torch_deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
            torch_device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        )
    return out
