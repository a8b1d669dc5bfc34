"""CPU time of the seed CNN's layers, JAX (as the train step compiles them) against torch, one thread each.

The per-op view behind ``benchmarks.train_step --pairs``: each convolution's forward pass, its
value+gradient (wrt input and kernel, as the backward pass needs them) and each max-pool's
forward+backward, batch 128, float32. The two frameworks are called alternately in one
process and each time is the *CPU* time of the process (user + system), the minimum over
``--reps``: on a shared machine, wall time is mostly waiting for a core. Run with XLA on one
thread (the command sets ``XLA_FLAGS`` before JAX starts) and ``torch.set_num_threads(1)``.

    python -m benchmarks.train_ops [--batch 128] [--reps 5]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.train_step import ONE_THREAD_XLA_FLAGS

# (name, input channels, output channels, map side) of the seed CNN's 5x5 convolutions
SEED_CONVS = [("conv1", 3, 32, 32), ("conv2", 32, 32, 16), ("conv3", 32, 64, 8)]


def cpu_seconds(fn: Callable[[], Any], reps: int) -> float:
    """Minimum CPU time of the process over ``reps`` calls of ``fn`` (which blocks until done), after one warm-up.

    >>> from benchmarks.train_ops import cpu_seconds
    >>> cpu_seconds(lambda: sum(range(1000)), 2) >= 0.0
    True
    """
    fn()
    best = float("inf")
    for _ in range(reps):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def layer_fns(
    batch: int, cin: int, cout: int, side: int
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """``{what: (jax call, torch call)}`` for one 5x5 convolution (padding 2) and the 2x2 max-pool after it."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import torch.nn.functional as F
    from jaxloss.train.conv import conv_general_dilated
    from jaxloss.train.pooling import max_pool2d
    from jaxloss.train.step import compiler_options

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, side, side, cin), dtype=np.float32)
    w = rng.standard_normal((5, 5, cin, cout), dtype=np.float32) / 10
    h = rng.standard_normal((batch, side, side, cout), dtype=np.float32)
    opts = compiler_options("cpu")

    def conv(x: Any, w: Any) -> Any:
        return conv_general_dilated(x, w, (1, 1), [(2, 2), (2, 2)], dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=jax.lax.Precision.HIGHEST)  # fmt: skip

    def conv_vg(x: Any, w: Any) -> Any:
        y, vjp = jax.vjp(conv, x, w)
        return vjp(y)

    def pool_vg(h: Any) -> Any:
        y, vjp = jax.vjp(lambda a: max_pool2d(a, 2, 2), h)
        return vjp(y)

    jf = {
        k: jax.jit(f, compiler_options=opts) for k, f in [("fwd", conv), ("vg", conv_vg), ("pool", pool_vg)]
    }
    jx, jw, jh = map(jnp.asarray, (x, w, h))
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    tw = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()
    th = torch.from_numpy(h.transpose(0, 3, 1, 2).copy()).requires_grad_()

    def t_vg() -> Any:
        y = F.conv2d(tx, tw, padding=2)
        return torch.autograd.grad(y, (tx, tw), y)

    def t_pool() -> Any:
        y = F.max_pool2d(th, 2, 2)
        return torch.autograd.grad(y, th, y)

    block = jax.block_until_ready
    return {
        "conv forward": (
            lambda: block(jf["fwd"](jx, jw)),
            lambda: F.conv2d(tx.detach(), tw.detach(), padding=2),
        ),
        "conv value+grad (input, kernel)": (lambda: block(jf["vg"](jx, jw)), t_vg),
        "max-pool 2x2 value+grad": (lambda: block(jf["pool"](jh)), t_pool),
    }


def main(argv: list[str]) -> int:
    import argparse

    import torch

    from benchmarks.timing import benchmark_precision, markdown_table

    p = argparse.ArgumentParser(prog="python -m benchmarks.train_ops", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with benchmark_precision(), torch.no_grad():
        for name, cin, cout, side in SEED_CONVS:
            for what, (j, t) in layer_fns(args.batch, cin, cout, side).items():
                with torch.enable_grad():
                    js, tsec = cpu_seconds(j, args.reps), cpu_seconds(t, args.reps)
                rows.append([f"{name} ({cin}->{cout}, {side}x{side})", what, 1e3 * js, 1e3 * tsec, tsec / js])
                print(rows[-1], flush=True)
    print(markdown_table(["layer", "op", "jax CPU ms", "torch CPU ms", "jax/torch speed"], rows))
    return 0


if __name__ == "__main__":
    if ONE_THREAD_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):  # before JAX starts its CPU client
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {ONE_THREAD_XLA_FLAGS}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main(sys.argv[1:]))
