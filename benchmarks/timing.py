"""Timing helpers shared by the benchmark scripts (one process, one run, medians)."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np


def median_seconds(fn: Callable[[], Any], *, min_reps: int = 5, min_time: float = 0.3, warmup: int = 2) -> float:
    """Median wall time of ``fn()``; ``fn`` must block until its result is ready."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def in_flight_seconds(fn: Callable[[], Any], finish: Callable[[Any], Any], in_flight: int = 10, **kw: Any) -> float:
    """Median seconds per call of ``fn`` when ``in_flight`` calls are queued before ``finish(last
    result)`` waits for them: on an asynchronous device (GPU) dispatch overlaps execution, as in a
    training loop, so this is the device's time per call, not the round trip. ``kw``: as
    :func:`median_seconds`.

    >>> from benchmarks.timing import in_flight_seconds
    >>> in_flight_seconds(lambda: 1, lambda last: last, in_flight=3, min_reps=2, min_time=0.0, warmup=0) < 0.01
    True
    """

    def calls() -> None:
        out = None
        for _ in range(in_flight):
            out = fn()
        finish(out)

    return median_seconds(calls, **kw) / in_flight


@contextlib.contextmanager
def benchmark_precision() -> Iterator[dict[str, Any]]:
    """How the device benchmarks run: true float32 in both frameworks (``parity.precision('ieee')``)
    without deterministic kernels (they restrict cuDNN's choice), and ``jax_enable_x64`` off as in
    a user's program (importing :mod:`jaxloss.parity` turns it on). Yields ``parity.precisions.settings()``.

    >>> from benchmarks.timing import benchmark_precision
    >>> with benchmark_precision() as s:
    ...     s["mode"], s["jax_enable_x64"], s["torch_cudnn_deterministic"]
    ('ieee', False, False)
    """
    from jaxloss.parity.precisions import precision, settings

    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", False)
    try:
        with precision("ieee", deterministic=False):
            yield settings()
    finally:
        jax.config.update("jax_enable_x64", before)


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def machine_header() -> str:
    import torch

    try:
        import optax

        optax_version = optax.__version__
    except ImportError:  # pragma: no cover
        optax_version = "-"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"- date: {datetime.date.today().isoformat()}\n"
        f"- machine: {cpu}, {os.cpu_count()} cores; JAX devices: {devices}\n"
        f"- versions: python {platform.python_version()}, jax {jax.__version__}, torch {torch.__version__}, "
        f"optax {optax_version}, numpy {np.__version__}\n"
        f"- load: 1-minute load average {os.getloadavg()[0]:.2f} when the run started (2 cores: above ~1 "
        "means something else was running)\n"
    )


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def rss_mib() -> float:
    """Current resident memory of this process, MiB."""
    return _status_mib("VmRSS")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (``VmHWM``) to its current RSS.

    Linux: writing ``5`` to ``/proc/self/clear_refs``. Returns False where that is not
    possible (then :func:`peak_rss_mib` is the peak since the process started).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process since start or the last :func:`reset_peak_rss`, MiB."""
    hwm = _status_mib("VmHWM")
    if hwm == hwm:  # not NaN
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
