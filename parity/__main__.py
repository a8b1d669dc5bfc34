"""``python -m parity``: compare every jaxloss function with torch and write a report.

Usage::

    python -m parity                                  # the whole grid, all dtypes
    python -m parity --loss cross_entropy,nll_loss    # some losses (or families: --loss binary)
    python -m parity --dtype float32 --dtype bfloat16 # some dtypes
    python -m parity --fuzz 300 --seed 7              # 300 random cases instead of the grid
    python -m parity --device gpu                     # CUDA torch against JAX on the GPU
    python -m parity --out some/folder -j 2           # report folder, worker processes
    python -m parity --no-xla-cache                   # compile everything (no OUT/.xla-cache)

Prints a progress bar, then a table per loss (cases, passed, worst value and
gradient error as relative error and ULPs, the case closest to failing), and
writes ``report.json``, ``report.md`` and a self-contained ``report.html`` into
``--out`` (default ``parity-report/``). Grid runs keep JAX's persistent
compilation cache in ``OUT/.xla-cache`` (the very executables a fresh compile
gives; compilation is ~70% of a cold run): a rerun compiles only what changed. In fuzz mode every failure is shrunk to
a minimal spec and printed as a few lines of Python that rerun it.

Exit status: 0 when nothing failed (cases whose jaxloss function still raises
``NotImplementedError`` are counted as "not implemented", not as failures),
1 when a case failed or errored, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from parity.cases import ALL_DTYPES


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m parity", description="jaxloss vs torch parity report")
    ap.add_argument("--loss", action="append", default=[], help="loss or family names (comma-separated, repeatable)")
    ap.add_argument("--dtype", action="append", default=[], choices=ALL_DTYPES, help="dtypes to run (repeatable)")
    ap.add_argument("--fuzz", type=int, default=0, metavar="N", help="run N random cases instead of the grid")
    ap.add_argument("--seed", type=int, default=0, help="fuzzing seed")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--out", default="parity-report", help="report folder (default parity-report/)")
    ap.add_argument("-j", "--jobs", type=int, default=0, help="worker processes (default: CPU cores, max 8; 1 on GPU)")
    ap.add_argument("--shrink-budget", type=int, default=60, help="comparisons per shrunk fuzz failure")
    ap.add_argument("--xla-cache", metavar="DIR", default=None,
                    help="persistent XLA compilation cache: a rerun of the same cases reloads the compiled programs "
                         "(compilation is most of a run's time) instead of compiling them again; default for the "
                         "grid: OUT/.xla-cache (none for --fuzz, whose cases differ from run to run)")
    ap.add_argument("--no-xla-cache", action="store_true", help="compile everything, store nothing")
    return ap.parse_args(argv)


class _UsageError(Exception):
    pass


def _select(names: list[str], registry: dict[str, Any]) -> list[str] | None:
    if not names:
        return None
    wanted = [n.strip() for arg in names for n in arg.split(",") if n.strip()]
    out: list[str] = []
    for w in wanted:
        hits = [n for n, L in registry.items() if n == w or L.family == w or n == f"nn.{w}"]
        if not hits:
            raise _UsageError(f"python -m parity: unknown loss or family {w!r}; known: {', '.join(registry)}")
        out += [h for h in hits if h not in out]
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    t0 = time.perf_counter()
    if args.device == "gpu":
        os.environ.setdefault("JAX_PLATFORMS", "cuda,cpu")
    import jax
    import torch

    import jaxloss
    from parity import report as rep
    from parity import runner

    if args.device == "gpu" and (not torch.cuda.is_available() or not [d for d in jax.devices() if d.platform == "gpu"]):
        print("python -m parity: --device gpu needs CUDA torch and JAX's GPU backend", file=sys.stderr)
        return 2
    registry = runner.registry()
    try:
        losses = _select(args.loss, registry)
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    dtypes = args.dtype or None
    xla_cache = None if args.no_xla_cache else args.xla_cache or (None if args.fuzz else os.path.join(args.out, ".xla-cache"))
    workers = args.jobs or (1 if args.device == "gpu" else runner.default_workers())

    if args.fuzz:
        jobs = runner.fuzz_specs(args.fuzz, args.seed, losses, dtypes)
        label = f"fuzz seed={args.seed}"
    else:
        jobs = runner.grid_jobs(losses, dtypes)
        label = "grid"
    if not jobs:
        print("python -m parity: no case matches", file=sys.stderr)
        return 2
    results = runner.run_jobs(jobs, workers=workers, device=args.device, progress=runner.Progress(f"parity {label}"), fuzz=bool(args.fuzz),
                              xla_cache=xla_cache)

    if args.fuzz:
        failed = [r for r in results if r.status in ("failed", "error")]
        for k, r in enumerate(failed):
            print(f"shrinking fuzz failure {k + 1}/{len(failed)}: {r.id}", file=sys.stderr)
            _, small = runner.shrink((r.loss, r.overrides, r.dtype), args.device, args.shrink_budget)
            idx = results.index(r)
            results[idx] = small
            print(f"\n# minimal reproducer of {small.id}\n{small.reproducer}\n")

    seconds = time.perf_counter() - t0
    meta = {
        "command": "python -m parity " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": "fuzz" if args.fuzz else "grid",
        "seed": args.seed,
        "fuzz": args.fuzz,
        "device": args.device,
        "dtypes": list(dtypes or ALL_DTYPES),
        "losses": losses or "all",
        "workers": workers,
        "xla_cache": xla_cache,
        "seconds": seconds,
        "jaxloss": getattr(jaxloss, "__version__", "?"),
        "torch": torch.__version__,
        "jax": jax.__version__,
        "tolerances": {k: {"rtol": v.rtol, "atol": v.atol} for k, v in rep.TOLERANCES.items()},
    }
    report = rep.build(results, registry, meta)
    paths = rep.write(report, args.out)
    print(rep.console_table(report))
    for f in report["failures"][:10]:
        print(f"\nFAILED {f['id']}\n{rep._result_text(f)}")
    if len(report["failures"]) > 10:
        print(f"\n... {len(report['failures']) - 10} more failures in {paths['md']}")
    print(f"\n{seconds:.1f} s; report: {paths['html']} ({paths['json']}, {paths['md']})")
    return 0 if report["summary"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
