"""``python -m parity``: compare every jaxloss function with torch and write a report.

Usage::

    python -m parity                                  # the whole grid, all dtypes
    python -m parity --loss cross_entropy,nll_loss    # some losses (or families: --loss binary)
    python -m parity --dtype float32 --dtype bfloat16 # some dtypes
    python -m parity --fuzz 300 --seed 7              # 300 random cases instead of the grid
    python -m parity --device gpu                     # CUDA torch against JAX on the GPU
    python -m parity --out some/folder -j 2           # report folder, worker processes
    python -m parity --no-xla-cache                   # compile everything (no OUT/.xla-cache)
    python -m parity --precision tf32                 # float32 matmul precision (default ieee)
    python -m parity --models seed-cnn,resnet18       # add the per-layer model comparisons

Prints a progress bar, then a table per loss (cases, passed, worst value and
gradient error as relative error and ULPs, the case closest to failing), and
writes ``report.json``, ``report.md`` and a self-contained ``report.html`` into
``--out`` (default ``parity-report/``). Grid runs keep JAX's persistent
compilation cache in ``OUT/.xla-cache`` (the very executables a fresh compile
gives; compilation is ~70% of a cold run): a rerun compiles only what changed. In fuzz mode every failure is shrunk to
a minimal spec and printed as a few lines of Python that rerun it.

``--precision ieee|tf32|default`` sets JAX's and torch's float32 matmul/convolution precision
together (:mod:`parity.precisions`); the report header records the settings in force.
``--models`` adds :func:`parity.compare_models` of the project's models against their torch
twins (per-layer section with an error-by-layer plot in the HTML report; default: seed-cnn for
a whole-grid run, none when ``--loss`` or ``--fuzz`` narrows it; ``--models none`` turns it off).

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
from parity.files import writable_folder
from parity.precisions import MODES

MODEL_NAMES = ("seed-cnn", "resnet18")


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
    ap.add_argument("--precision", choices=MODES, default="ieee", help="float32 matmul/convolution precision (default ieee)")
    ap.add_argument("--models", default=None, metavar="NAMES",
                    help="model comparisons to add (comma-separated: seed-cnn, resnet18, or none); default seed-cnn for "
                         "a whole-grid run")
    args = ap.parse_args(argv)
    problems = _problems(args)
    if problems:
        ap.error("; ".join(problems))
    return args


def _problems(args: argparse.Namespace) -> list[str]:
    """Usage errors found before anything runs (a bad --out would otherwise lose the run at the end)."""
    out = []
    for flag, value in (("--fuzz", args.fuzz), ("-j/--jobs", args.jobs), ("--seed", args.seed), ("--shrink-budget", args.shrink_budget)):
        if value < 0:
            out.append(f"{flag} must be >= 0, got {value}")
    if not writable_folder(args.out):
        out.append(f"--out {args.out}: cannot write there")
    models = _models(args)
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        out.append(f"--models: unknown {bad}; known: {', '.join(MODEL_NAMES)}, none")
    return out


def _models(args: argparse.Namespace) -> list[str]:
    if args.models is None:
        return ["seed-cnn"] if not (args.loss or args.fuzz) else []
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    return [] if names == ["none"] else names


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
    try:
        import torch
    except ImportError:
        print("python -m parity needs torch: pip install 'jaxloss[parity]'", file=sys.stderr)
        return 2
    import jax

    import jaxloss
    import parity.precisions
    from parity import report as rep
    from parity import runner
    from parity.precisions import precision

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
    with precision(args.precision):
        results = runner.run_jobs(jobs, workers=workers, device=args.device, progress=runner.Progress(f"parity {label}"), fuzz=bool(args.fuzz),
                                  xla_cache=xla_cache, precision=args.precision,
                                  costs=runner.previous_costs(os.path.join(args.out, "report.json")))
        settings = parity.precisions.settings()
        models = {name: _model_report(name) for name in _models(args)}

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
        "precision": settings,
    }
    report = rep.build(results, registry, meta, models)
    paths = rep.write(report, args.out)
    print(rep.console_table(report))
    for name, m in models.items():
        print(f"{name} against its torch twin, layer by layer: {m['verdict']}")
    for f in report["failures"][:10]:
        print(f"\nFAILED {f['id']}\n{rep._result_text(f)}")
    if len(report["failures"]) > 10:
        print(f"\n... {len(report['failures']) - 10} more failures in {paths['md']}")
    print(f"\n{seconds:.1f} s; report: {paths['html']} ({paths['json']}, {paths['md']})")
    return 0 if report["summary"]["ok"] else 1


def _model_report(name: str) -> dict[str, Any]:
    """The project model ``name`` against its torch twin (float32, float64 reference), as JSON."""
    import parity
    from parity.models.twins import build_pair, images

    fm, tm, mapping = build_pair(name, "float32", **({"cifar_stem": True} if name == "resnet18" else {}))
    xj, xt = images(2, 32 if name == "seed-cnn" else 8, "float32")
    r = parity.compare_models(fm, tm, xj, xt, mapping=mapping, reference=True)
    return {**r.to_json(), "title": f"{name} (float32, batch 2) against its torch twin"}


if __name__ == "__main__":
    sys.exit(main())
