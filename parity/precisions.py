"""Float32 matmul/convolution precision, set for JAX and torch together: ``parity.precision(mode)``.

On Ampere/Hopper GPUs the two frameworks disagree out of the box: JAX computes float32
matmuls *and* convolutions in TF32 by default, torch computes convolutions in TF32
(``torch.backends.cudnn.allow_tf32``) but matmuls in full float32. A comparison of the two
is only meaningful when both are told the same thing.

Modes
    ``"ieee"``: true float32 everywhere (JAX ``default_matmul_precision('highest')``, which
    lowers every dot and convolution with ``precision = HIGHEST``; torch matmul precision
    ``'highest'``, cuDNN TF32 off). The default for parity runs.
    ``"tf32"``: TF32 on both sides (JAX ``'tensorfloat32'``, lowered as ``HIGH``, which XLA:GPU
    runs in TF32; torch ``'high'`` and cuDNN TF32 on).
    ``"default"``: each framework's factory default, set explicitly (JAX: no default
    precision, i.e. ``DEFAULT``, TF32 on Ampere+ GPUs; torch: matmul ``'highest'``, cuDNN
    TF32 on, no determinism). Set rather than left alone, so that a ``default`` block nested
    in an ``ieee`` one really is the default and the recorded mode is never a lie.

Determinism (``deterministic=``, on by default in ``ieee`` and ``tf32``): torch's
``use_deterministic_algorithms`` in warn-only mode and cuDNN ``deterministic``. cuBLAS is only
deterministic with ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment before CUDA starts,
and XLA:GPU only with one of :data:`XLA_GPU_DETERMINISM_FLAGS` in ``XLA_FLAGS`` before JAX's
backend starts: neither can be changed from inside a running process, so both are recorded by
:func:`settings` (``benchmarks.gpu`` sets them for its subprocesses).

Where it shows on CPU: nowhere in the numbers. XLA:CPU (jaxlib 0.10.2) computes float32 dots
and convolutions in float32 whatever the requested precision: ``'bfloat16'``,
``'tensorfloat32'`` and ``BF16_BF16_F32`` give bit-identical results, and the explicit TF32/F16
algorithms raise "not supported by dot_general on CPU". What is visible on CPU is the
``precision`` attribute of every dot and convolution in the lowered program, which is what
XLA:GPU acts on; ``tests/test_precision.py`` checks that.

Threads: JAX's setting is thread-local, torch's are process-wide. Blocks in one thread nest
freely; a block in another thread is accepted only with the same mode as every block active
in other threads (else :class:`RuntimeError`), and torch's settings are restored only when the
last block that relies on them ends.

>>> from jaxloss import parity
>>> from jaxloss.parity.precisions import settings
>>> with parity.precision("ieee"):
...     s = settings()
>>> s["mode"], s["jax_default_matmul_precision"]
('ieee', 'highest')
>>> settings()["mode"]
'default'
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax

__all__ = ["MODES", "XLA_GPU_DETERMINISM_FLAGS", "precision", "settings", "xla_determinism_flags"]

MODES = ("ieee", "tf32", "default")

# The XLA:GPU flags that make execution deterministic, newest first. XLA has renamed them
# (``xla_gpu_deterministic_ops`` became ``xla_gpu_exclude_nondeterministic_ops``), and an
# unknown flag in XLA_FLAGS aborts the process, so a caller probes which one its jaxlib knows.
XLA_GPU_DETERMINISM_FLAGS = (
    "--xla_gpu_exclude_nondeterministic_ops=true",
    "--xla_gpu_deterministic_ops=true",
)

_JAX_PRECISION: dict[str, str | None] = {"ieee": "highest", "tf32": "tensorfloat32", "default": None}
# torch's legacy API only (set_float32_matmul_precision, cudnn.allow_tf32): torch >= 2.9 rejects
# a mix of it and the newer ``fp32_precision`` attributes, and the legacy one exists everywhere.
_TORCH_MATMUL = {"ieee": "highest", "tf32": "high", "default": "highest"}
_TORCH_CUDNN_TF32 = {"ieee": False, "tf32": True, "default": True}


@dataclass
class _Block:
    thread: int
    mode: str
    saved: tuple[Any, ...] | None  # torch's settings before this block, restored after it


_lock = threading.Lock()
_blocks: list[_Block] = []  # the active blocks of every thread, in the order they started


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # the JAX side alone is still configured
        return None
    return torch


def _torch_state(torch: Any) -> tuple[Any, ...]:
    return (
        torch.get_float32_matmul_precision(),
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )


def _set_torch_state(torch: Any, state: tuple[Any, ...]) -> None:
    matmul, allow_tf32, cudnn_det, det, warn_only = state
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cudnn.deterministic = cudnn_det
    torch.use_deterministic_algorithms(det, warn_only=warn_only)


def _enter(torch: Any, mode: str, deterministic: bool) -> _Block:
    me = threading.get_ident()
    with _lock:
        others = {b.mode for b in _blocks if b.thread != me}
        if others - {mode}:
            raise RuntimeError(
                f"precision({mode!r}): another thread holds precision({min(others)!r}); torch's float32 "
                "settings are process-wide, so two threads cannot use different modes at once"
            )
        block = _Block(me, mode, None if torch is None else _torch_state(torch))
        if torch is not None:
            _set_torch_state(
                torch, (_TORCH_MATMUL[mode], _TORCH_CUDNN_TF32[mode], deterministic, deterministic, True)
            )
        _blocks.append(block)
        return block


def _exit(torch: Any, block: _Block) -> None:
    with _lock:
        i = next(k for k, b in enumerate(_blocks) if b is block)
        del _blocks[i]
        if i < len(_blocks):
            # A later block (another thread's, same mode) still relies on the current settings:
            # it restores what this block found when it ends.
            _blocks[i].saved = block.saved
        elif torch is not None and block.saved is not None:
            _set_torch_state(torch, block.saved)


@contextlib.contextmanager
def precision(mode: str, *, deterministic: bool | None = None) -> Iterator[None]:
    """Configure JAX's and torch's float32 precision together for the ``with`` block.

    Args:
        mode: ``'ieee'``, ``'tf32'`` or ``'default'`` (see the module docstring).
        deterministic: request torch's deterministic kernels (cuDNN ``deterministic``,
            ``use_deterministic_algorithms`` warn-only); default: on for ``ieee`` and
            ``tf32``, off for ``default``. Benchmarks turn it off: it also restricts cuDNN's
            choice of algorithms.

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
        RuntimeError: another thread holds a block with a different mode.

    >>> import jax, jax.numpy as jnp
    >>> from jaxloss.parity.precisions import precision
    >>> with precision("ieee"):
    ...     text = jax.jit(jnp.dot).lower(jnp.ones((2, 2)), jnp.ones((2, 2))).as_text()
    >>> "HIGHEST" in text
    True
    """
    if mode not in MODES:
        raise ValueError(f"precision mode must be one of {', '.join(MODES)}, got {mode!r}")
    det = mode != "default" if deterministic is None else bool(deterministic)
    torch = _torch()
    block = _enter(torch, mode, det)
    try:
        with _jax_matmul_precision(_JAX_PRECISION[mode]):
            yield
    finally:
        _exit(torch, block)


@contextlib.contextmanager
def _jax_matmul_precision(value: str | None) -> Iterator[None]:
    """JAX's thread-local ``default_matmul_precision`` context, or a global update where a JAX lacks it."""
    context = getattr(jax, "default_matmul_precision", None)
    if context is not None:
        with context(value):
            yield
        return
    before = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", value)
    try:
        yield
    finally:
        jax.config.update("jax_default_matmul_precision", before)


def current_mode() -> str:
    """The mode of this thread's innermost :func:`precision` block (``'default'`` outside any).

    >>> from jaxloss.parity.precisions import current_mode, precision
    >>> with precision("tf32"):
    ...     current_mode()
    'tf32'
    """
    me = threading.get_ident()
    with _lock:
        mine = [b.mode for b in _blocks if b.thread == me]
    return mine[-1] if mine else "default"


def xla_determinism_flags(xla_flags: str | None = None) -> list[str]:
    """The flags of :data:`XLA_GPU_DETERMINISM_FLAGS` present in ``xla_flags`` (default: ``$XLA_FLAGS``).

    >>> from jaxloss.parity.precisions import xla_determinism_flags
    >>> xla_determinism_flags("--xla_gpu_deterministic_ops=true --foo=1")
    ['--xla_gpu_deterministic_ops=true']
    """
    given = (os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags).split()
    return [f for f in XLA_GPU_DETERMINISM_FLAGS if f in given]


def settings() -> dict[str, Any]:
    """The precision and determinism settings in force, for a report header.

    ``jax_default_matmul_precision`` is this thread's (``None``: JAX's default, DEFAULT
    precision); the torch values are the process's. ``torch_fp32_precision_*`` are torch >= 2.9's
    newer view of the same settings, where it has one.

    >>> from jaxloss.parity.precisions import settings
    >>> sorted(k for k in settings() if k.startswith("jax"))
    ['jax_default_matmul_precision', 'jax_device', 'jax_enable_x64', 'jax_platform']
    """
    device = jax.devices()[0]
    out: dict[str, Any] = {
        "mode": current_mode(),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax_enable_x64": bool(jax.config.read("jax_enable_x64")),
        "jax_platform": device.platform,
        "jax_device": device.device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "xla_determinism_flags": xla_determinism_flags(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    torch = _torch()
    if torch is not None:
        out.update(
            torch_float32_matmul_precision=torch.get_float32_matmul_precision(),
            torch_cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            torch_cudnn_deterministic=torch.backends.cudnn.deterministic,
            torch_cudnn_benchmark=torch.backends.cudnn.benchmark,
            torch_deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
            torch_device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        )
        for name, getter in (
            ("matmul", lambda: torch.backends.cuda.matmul.fp32_precision),
            ("cudnn_conv", lambda: torch.backends.cudnn.conv.fp32_precision),
        ):
            try:
                out[f"torch_fp32_precision_{name}"] = getter()
            except (AttributeError, RuntimeError):  # torch < 2.9, or a state that view cannot express
                pass
    return out
