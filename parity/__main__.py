"""``python -m jaxloss.parity``: compare every jaxloss function with torch and write a report.

Usage::

    python -m jaxloss.parity                                  # the whole grid, all dtypes
    python -m jaxloss.parity --loss cross_entropy,nll_loss    # some losses (or families: --loss binary)
    python -m jaxloss.parity --dtype float32 --dtype bfloat16 # some dtypes
    python -m jaxloss.parity --fuzz 300 --seed 7              # 300 random cases instead of the grid
    python -m jaxloss.parity --device gpu                     # CUDA torch against JAX on the GPU
    python -m jaxloss.parity --out some/folder -j 2           # report folder, worker processes
    python -m jaxloss.parity --no-xla-cache                   # compile everything (no OUT/.xla-cache)
    python -m jaxloss.parity --precision tf32                 # float32 matmul precision (default ieee)
    python -m jaxloss.parity --models seed-cnn,resnet18       # add the per-layer model comparisons

Prints a progress bar, then a table per loss (cases, passed, worst value and
gradient error as relative error and ULPs, the case closest to failing), and
writes ``report.json``, ``report.md`` and a self-contained ``report.html`` into
``--out`` (default ``parity-report/``). Grid runs keep JAX's persistent
compilation cache in ``OUT/.xla-cache`` (the very executables a fresh compile
gives; compilation is ~70% of a cold run): a rerun compiles only what changed. In fuzz mode every failure is shrunk to
a minimal spec and printed as a few lines of Python that rerun it.

``--precision ieee|tf32|default`` sets JAX's and torch's float32 matmul/convolution precision
together (:mod:`jaxloss.parity.precisions`); the report header records the settings in force.
``--models`` adds :func:`jaxloss.parity.compare_models` of the project's models against their torch
twins (per-layer section with an error-by-layer plot in the HTML report; default: seed-cnn for
a whole-grid run, none when ``--loss`` or ``--fuzz`` narrows it; ``--models none`` turns it off).

Exit status (:mod:`jaxloss.train.cli`): 0 when nothing failed (cases whose jaxloss function still raises
``NotImplementedError`` are counted as "not implemented", not as failures),
1 when a case failed or errored, 2 for a usage error (a bad flag, a path that cannot be used, no
GPU for ``--device gpu``, a module of the ``parity`` extra missing: all checked before anything
runs), 130 when interrupted (Ctrl-C, taken between batches of cases; the previous run's report
in ``--out`` is removed when the run starts, so none is left looking current).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from jaxloss.parity.cases import ALL_DTYPES, SKIPPED
from jaxloss.parity.cli import path_problem, remove_reports, stop_if_interrupted
from jaxloss.parity.models.twins import TORCH_TWINS, twin_problem
from jaxloss.parity.precisions import MODES
from jaxloss.train.cli import EXIT_FAILED, EXIT_OK, Parser, fail, require, run_main
from jaxloss.train.registry import model_spec
from jaxloss.train.signals import SigintFlag

PROG = "python -m jaxloss.parity"
# The modules of pyproject's [parity] extra that the report imports (the nn.* module cases and
# the model comparisons need flax; the report's layer plot matplotlib).
REQUIRES = ("torch", "numpy", "rich", "flax", "matplotlib")
REPORT_FILES = ("report.json", "report.md", "report.html")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = Parser(prog=PROG, description="jaxloss vs torch parity report")
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
    for flag, path in (("--out", args.out), ("--xla-cache", args.xla_cache)):
        problem = path_problem(flag, path, "folder")
        if problem:
            out.append(problem)
    bad = [m for m in _models(args) if twin_problem(m)]
    if bad:
        out.append(f"--models: unknown {bad}; known: {', '.join(TORCH_TWINS)}, none")
    return out


def _models(args: argparse.Namespace) -> list[str]:
    if args.models is None:
        return ["seed-cnn"] if not (args.loss or args.fuzz) else []
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    return [] if names == ["none"] else names


def _select(names: list[str], registry: dict[str, Any]) -> list[str] | None:
    if not names:
        return None
    wanted = [n.strip() for arg in names for n in arg.split(",") if n.strip()]
    out: list[str] = []
    for w in wanted:
        hits = [n for n, L in registry.items() if n == w or L.family == w or n == f"nn.{w}"]
        family = w.split(".")[0]
        if not hits and family in SKIPPED:
            fail(PROG, f"--loss {w}: the {family} section is SKIPPED: {SKIPPED[family]}")
        if not hits:
            close = difflib.get_close_matches(w, [*registry, *{L.family for L in registry.values()}], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            fail(PROG, f"--loss: unknown loss or family {w!r}{hint} (known: {', '.join(registry)})")
        out += [h for h in hits if h not in out]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); Ctrl-C: 130 and one line (:func:`jaxloss.train.cli.run_main`)."""
    return run_main(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = _parse(argv)
    # all of the extra, found before anything runs: a model section (flax) or the HTML report's plot
    # (matplotlib) failing to import after minutes of the grid loses the run
    require("python -m jaxloss.parity", "the parity report", REQUIRES, "parity")
    t0 = time.perf_counter()
    if args.device == "gpu":
        os.environ.setdefault("JAX_PLATFORMS", "cuda,cpu")
    from jaxloss.parity.jax_side import gpu_available

    if args.device == "gpu" and not gpu_available():
        fail(PROG, "--device gpu needs CUDA torch and JAX's GPU backend")
    with SigintFlag() as flag:
        return _run(args, argv, t0, flag)


def _run(args: argparse.Namespace, argv: Sequence[str] | None, t0: float, flag: SigintFlag) -> int:
    import jax
    import torch

    import jaxloss
    import jaxloss.parity.precisions  # noqa: F401
    from jaxloss import parity
    from jaxloss.parity import report as rep
    from jaxloss.parity import runner
    from jaxloss.parity.precisions import precision

    registry = runner.registry()
    losses = _select(args.loss, registry)
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
        fail(PROG, "no case matches --loss / --dtype")
    costs = runner.previous_costs(os.path.join(args.out, "report.json"))  # before the old report goes
    remove_reports(args.out, REPORT_FILES)
    print(f"{PROG}: {len(jobs)} {label} cases, {workers} worker(s), report in {args.out}", flush=True)
    bar = runner.Progress(f"parity {label}")

    def progress(done: int, total: int, what: str) -> None:
        bar(done, total, what)
        stop_if_interrupted(flag)  # between batches: never inside a JAX callback

    with precision(args.precision):
        results = runner.run_jobs(jobs, workers=workers, device=args.device, progress=progress, fuzz=bool(args.fuzz),
                                  xla_cache=xla_cache, precision=args.precision, costs=costs)
        settings = parity.precisions.settings()
        models = {}
        for name in _models(args):
            models[name] = _model_report(name)
            stop_if_interrupted(flag)

    if args.fuzz:
        failed = [r for r in results if r.status in ("failed", "error")]
        for k, r in enumerate(failed):
            print(f"shrinking fuzz failure {k + 1}/{len(failed)}: {r.id}", file=sys.stderr)
            _, small = runner.shrink((r.loss, r.overrides, r.dtype), args.device, args.shrink_budget)
            stop_if_interrupted(flag)
            idx = results.index(r)
            results[idx] = small
            print(f"\n# minimal reproducer of {small.id}\n{small.reproducer}\n")

    seconds = time.perf_counter() - t0
    meta = {
        "command": "python -m jaxloss.parity " + " ".join(sys.argv[1:] if argv is None else argv),
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
        "skipped": dict(SKIPPED),  # families whose reference is missing, with the command that fixes it
    }
    report = rep.build(results, registry, meta, models)
    stop_if_interrupted(flag)
    paths = rep.write(report, args.out)
    print(rep.console_table(report))
    for family, why in SKIPPED.items():
        print(f"SKIPPED {family}: {why}")
    for name, m in models.items():
        print(f"{name} against its torch twin, layer by layer: {m['verdict']}")
    for f in report["failures"][:10]:
        print(f"\nFAILED {f['id']}\n{rep._result_text(f)}")
    if len(report["failures"]) > 10:
        print(f"\n... {len(report['failures']) - 10} more failures in {paths['md']}")
    print(f"\n{seconds:.1f} s; report: {paths['html']} ({paths['json']}, {paths['md']})")
    return EXIT_OK if report["summary"]["ok"] else EXIT_FAILED


def _model_report(name: str) -> dict[str, Any]:
    """The project model ``name`` against its torch twin (float32, float64 reference), as JSON."""
    from jaxloss import parity
    from jaxloss.parity.models.twins import DEFAULT_BATCH, build_pair, images

    spec = model_spec(name)  # the small, quick variant: the CIFAR stem where there is one, 8x8 where any size goes
    fm, tm, mapping = build_pair(name, "float32", **({"cifar_stem": True} if "cifar_stem" in spec.options else {}))
    xj, xt = images(DEFAULT_BATCH, spec.image_size or 8, "float32")  # batch: see DEFAULT_BATCH
    r = parity.compare_models(fm, tm, xj, xt, mapping=mapping, reference=True)
    return {**r.to_json(), "title": f"{name} (float32, batch {DEFAULT_BATCH}) against its torch twin"}


if __name__ == "__main__":
    sys.exit(main())
