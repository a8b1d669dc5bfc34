"""linear_cross_entropy at an LLM-like shape: time and peak memory of value+gradient.

Variants, each run in its own subprocess so that its peak resident memory is its own:

* ``jaxloss``        — ``jaxloss.linear_cross_entropy`` (chunked, custom VJP)
* ``jax-unchunked``  — ``logits = input @ W.T`` then ``jaxloss.cross_entropy`` (holds (N, C) logits)
* ``torch``          — ``torch.nn.functional.linear_cross_entropy`` without options (reference path)
* ``torch-chunked``  — the same with ``options=LinearCrossEntropyOptions()`` (torch's chunked path)

Peak memory is how far the process's resident memory rises during one value+gradient
call above its level with inputs allocated and everything compiled and warmed up
(the peak is reset through ``/proc/self/clear_refs`` just before the call, so the
warm-up does not count). For the JAX variants the compiler's own figure is reported
too: the temporary buffers of the compiled executable (``memory_analysis()``), which
excludes arguments and outputs.

    python -m benchmarks.linear_ce [--n 8192 --hidden 1024 --vocab 65536] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

import gc

from benchmarks.timing import peak_rss_mib, reset_peak_rss, rss_mib

VARIANTS = ("jaxloss", "jax-unchunked", "torch", "torch-chunked")


def run_variant(variant: str, n: int, hidden: int, vocab: int, reps: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(n, hidden)) / np.sqrt(hidden)).astype(np.float32)
    w = rng.normal(size=(vocab, hidden)).astype(np.float32)
    t = rng.integers(0, vocab, size=(n,))
    if variant.startswith("jax"):
        import jax
        import jax.numpy as jnp

        import jaxloss

        xj, wj, tj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(t, jnp.int32)
        if variant == "jaxloss":
            f = lambda a, b: jaxloss.linear_cross_entropy(a, b, tj)  # noqa: E731
        else:
            f = lambda a, b: jaxloss.cross_entropy(a @ b.T, tj)  # noqa: E731
        step = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
        call = lambda: jax.block_until_ready(step(xj, wj))  # noqa: E731
        analysis = step.lower(xj, wj).compile().memory_analysis()
        temp_mib = analysis.temp_size_in_bytes / 2**20 if analysis is not None else float("nan")
    else:
        import torch
        import torch.nn.functional as F

        temp_mib = float("nan")
        torch.manual_seed(0)
        xt = torch.from_numpy(x).requires_grad_(True)
        wt = torch.from_numpy(w).requires_grad_(True)
        tt = torch.from_numpy(t)
        opts = None
        if variant == "torch-chunked":
            from torch.nn import LinearCrossEntropyOptions

            opts = LinearCrossEntropyOptions()

        def call() -> Any:
            loss = F.linear_cross_entropy(xt, wt, tt, options=opts)
            return torch.autograd.grad(loss, [xt, wt])

    call()  # compile / warm up
    gc.collect()
    base = rss_mib()
    exact = reset_peak_rss()
    call()
    peak = max(0.0, peak_rss_mib() - base)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {
        "variant": variant,
        "seconds": float(np.median(times)),
        "peak_mib": peak,
        "peak_exact": exact,
        "xla_temp_mib": temp_mib,
    }


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=65536)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--variant", choices=VARIANTS, help="run one variant in this process and print JSON")
    args = p.parse_args(argv)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.n, args.hidden, args.vocab, args.reps)))
        return ""
    results = {}
    for v in VARIANTS:
        cmd = [sys.executable, "-m", "benchmarks.linear_ce", "--variant", v, "--n", str(args.n),
               "--hidden", str(args.hidden), "--vocab", str(args.vocab), "--reps", str(args.reps)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            results[v] = {"variant": v, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
        else:
            results[v] = json.loads(out.stdout.strip().splitlines()[-1])
        print(results[v], flush=True)
    base = results["jax-unchunked"]
    lines = [
        f"Shape: N={args.n} tokens, hidden={args.hidden}, vocabulary={args.vocab}, float32, value+grad wrt input and weight.",
        "",
        "| variant | time s | peak MiB (RSS rise) | XLA temp MiB | time / jax-unchunked | peak / jax-unchunked |",
        "|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        r = results[v]
        if "error" in r:
            lines.append(f"| {v} | error: {r['error']} | | | | |")
            continue
        rel_t = r["seconds"] / base["seconds"] if "seconds" in base else float("nan")
        rel_m = r["peak_mib"] / base["peak_mib"] if base.get("peak_mib") else float("nan")
        temp = "-" if r["xla_temp_mib"] != r["xla_temp_mib"] else f"{r['xla_temp_mib']:.0f}"
        lines.append(
            f"| {v} | {r['seconds']:.3g} | {r['peak_mib']:.0f} | {temp} | {rel_t:.2f} | {rel_m:.3f} |"
        )
    md = "\n".join(lines)
    print(md)
    return md


if __name__ == "__main__":
    main()
