"""The device's memory-bandwidth limit, measured in the running process by both frameworks.

A streaming pass reads one float32 array and writes one of the same size: JAX ``x + 1``
(jitted; XLA allocates the output from its pool) and torch ``torch.add(x, 1, out=y)`` into a
preallocated ``y``, and torch ``y.copy_(x)``. Each is timed with many calls in flight
(:func:`benchmarks.timing.in_flight_seconds`), so the rate is the device's, not Python's.
The *limit* is the best rate any of them reached: no loss can move its bytes faster than the
device's own fastest streaming kernel.

    python -m benchmarks.bandwidth [--mib 1024] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.timing import in_flight_seconds


def torch_sync(device: str) -> Any:
    """A ``finish`` for :func:`in_flight_seconds` that waits for torch's queued work on ``device``.

    >>> from benchmarks.bandwidth import torch_sync
    >>> torch_sync("cpu")(None) is None
    True
    """
    import torch

    if device.startswith("cuda"):
        return lambda _: torch.cuda.synchronize()
    return lambda _: None


def measure(n_bytes: int, device: str = "cuda") -> dict[str, Any]:
    """Read+write rates (bytes/s) of a ``n_bytes`` float32 array in JAX and torch, and their maximum.

    >>> from benchmarks.bandwidth import measure
    >>> r = measure(1 << 16, device="cpu")
    >>> r["limit_bytes_per_s"] == max(r["rates"].values()) > 0
    True
    """
    import jax
    import jax.numpy as jnp
    import torch

    n = n_bytes // 4
    moved = 2 * n * 4  # one read, one write
    x = jnp.ones((n,), jnp.float32)
    add_one = jax.jit(lambda a: a + 1)
    rates = {"jax x+1": moved / in_flight_seconds(lambda: add_one(x), jax.block_until_ready, min_time=0.2)}
    tx = torch.ones(n, dtype=torch.float32, device=device)
    ty = torch.empty_like(tx)
    sync = torch_sync(device)
    rates["torch add(out=)"] = moved / in_flight_seconds(lambda: torch.add(tx, 1, out=ty), sync, min_time=0.2)
    rates["torch copy_"] = moved / in_flight_seconds(lambda: ty.copy_(tx), sync, min_time=0.2)
    return {"bytes": n_bytes, "rates": rates, "limit_bytes_per_s": max(rates.values())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    out = measure(args.mib << 20, args.device)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
