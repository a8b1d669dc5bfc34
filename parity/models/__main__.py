"""``python -m jaxloss.parity.models``: the project's Flax models against their torch twins, layer by layer.

Usage::

    python -m jaxloss.parity.models --model seed-cnn                 # SeedCNN, float32, batch 4
    python -m jaxloss.parity.models --model resnet18 --image-size 16 --dtype float64
    python -m jaxloss.parity.models --model seed-cnn --no-reference  # float32 without the float64 torch run
    python -m jaxloss.parity.models --model seed-cnn --save torch.npz             # golden file of torch's run
    python -m jaxloss.parity.models --model seed-cnn --against torch.npz          # JAX against it, later
    python -m jaxloss.parity.models --model seed-cnn --side torch --save t.npz    # (--side picks the side)
    python -m jaxloss.parity.models --model resnet18 --out report/   # report.{json,md,html} + layers.png

Prints the verdict first: passed, or what kind of difference the first layer out of tolerance
(forward then backward) shows, float32 rounding (torch's own float32 run leaves its float64 run
there too: deep networks with BatchNorm over few values do, so a faithful ResNet-18 in float32
is not within elementwise float32 tolerance layer by layer) or a porting error, and the float64
command that compares exactly; then the first failing layer, the worst tolerance use and the
tolerance. The per-layer table with ``--verbose`` (failures) or ``--all``, and in the ``--out``
report. A batch whose BatchNorms normalise over 2 values or fewer gets a note: the comparison
there measures rounding noise. ``--precision ieee|tf32|default`` (default ieee) sets both frameworks' float32
matmul/convolution precision (:mod:`jaxloss.parity.precisions`); the report header records it.

Exit status (:mod:`jaxloss.train.cli`): 0 when every layer is within tolerance (or a golden file was
saved), 1 when one is not, 2 for a usage error, a path that cannot be used, a malformed golden
file or one of another batch size or model, or a missing module of the ``parity`` extra; 130 when
interrupted (Ctrl-C; the previous run's report in ``--out`` is removed when the run starts, so none
is left looking current).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from jaxloss.parity.cli import path_problem, remove_reports, stop_if_interrupted
from jaxloss.parity.models.twins import (
    DEFAULT_BATCH,
    DEGENERATE_BATCHNORM,
    TORCH_TWINS,
    batchnorm_values,
    twin_problem,
)
from jaxloss.parity.precisions import MODES
from jaxloss.parity.tolerances import tolerance_flag
from jaxloss.train.cli import EXIT_FAILED, EXIT_OK, Parser, fail, require, run_main
from jaxloss.train.registry import OptionError, model_kwargs, model_spec
from jaxloss.train.signals import SigintFlag

PROG = "python -m jaxloss.parity.models"
REPORT_FILES = ("report.json", "report.md", "report.html", "layers.png")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = Parser(prog=PROG, description="Flax model vs torch twin, layer by layer")
    ap.add_argument("--model", default="seed-cnn", help=f"one of {', '.join(TORCH_TWINS)} (default: %(default)s)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                    help="images (default: %(default)s; at 2 ResNet-18's last BatchNorms normalise over 2 values)")
    ap.add_argument("--image-size", type=int, default=None,
                    help="default: the model's (train.registry: 32, seed-cnn takes 32 only; 16 for resnet18)")
    ap.add_argument("--cifar-stem", action="store_true", help="resnet18: the CIFAR stem (3x3 conv, no max-pool)")
    ap.add_argument("--seed", type=int, default=0, help="weights, images and cotangent")
    ap.add_argument("--precision", choices=MODES, default="ieee")
    ap.add_argument("--no-grads", action="store_true", help="forward only")
    ap.add_argument("--no-reference", action="store_true",
                    help="float32: skip the float64 torch run that says whether a divergence is float32 rounding")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first layer out of tolerance")
    ap.add_argument("--rtol", type=tolerance_flag, default=None, help="every layer's rtol (default: the dtype's)")
    ap.add_argument("--atol", type=tolerance_flag, default=None, help="every layer's atol (default: the dtype's)")
    ap.add_argument("--side", choices=("jax", "torch"), default=None,
                    help="--save: the side saved (default torch); --against: the side run (default jax)")
    ap.add_argument("--save", metavar="FILE.npz", help="save one side's run as a golden file, compare nothing")
    ap.add_argument("--against", metavar="FILE.npz", help="compare one side against a golden file")
    ap.add_argument("--out", metavar="DIR", help="write report.json, report.md, report.html and layers.png here")
    ap.add_argument("--verbose", action="store_true", help="print the per-layer line of every tensor out of tolerance")
    ap.add_argument("--all", action="store_true", help="print the per-layer line of every compared tensor")
    args = ap.parse_args(argv)
    problems = []
    if args.batch_size < 1:
        problems.append("--batch-size must be >= 1")
    if args.image_size is not None and args.image_size < 1:
        problems.append("--image-size must be >= 1")
    problem = twin_problem(args.model)
    if problem:
        problems.append(f"--model: {problem}")
    else:
        fixed = model_spec(args.model).image_size
        if fixed is not None and args.image_size not in (None, fixed):
            problems.append(f"--model {args.model} takes {fixed}x{fixed} images only")
        try:
            model_kwargs(args.model, cifar_stem=args.cifar_stem)
        except OptionError as e:
            problems.append(f"--cifar-stem {e.problem}")
    if args.save and args.against:
        problems.append("--save and --against exclude each other")
    for flag, path, kind in (("--against", args.against, "input"), ("--save", args.save, "output"), ("--out", args.out, "folder")):
        problem = path_problem(flag, path, kind)
        if problem:
            problems.append(problem)
    if problems:
        ap.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); Ctrl-C: 130 and one line (:func:`jaxloss.train.cli.run_main`)."""
    return run_main(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    args = _parse(argv)
    require(PROG, "the model comparison", ("torch", "flax", "numpy", *(("matplotlib",) if args.out else ())), "parity")
    remove_reports(args.out, REPORT_FILES)
    with SigintFlag() as flag:
        return _run(args, flag)


def _run(args: argparse.Namespace, flag: SigintFlag) -> int:
    from jaxloss import parity
    from jaxloss.parity import report as rep
    from jaxloss.parity.models import load_golden
    from jaxloss.parity.models.twins import build_pair, images
    from jaxloss.parity.precisions import precision

    if args.against:
        try:  # a malformed golden file is bad input (2), not a divergence (1): found before any model runs
            load_golden(args.against)
        except ValueError as e:
            fail(PROG, e)
    spec = model_spec(args.model)
    size = args.image_size or spec.image_size or spec.default_image_size
    title = f"{args.model} {args.dtype} batch {args.batch_size} {size}x{size}, precision {args.precision}"
    print(f"{PROG}: {title}", flush=True)  # the run has started: Ctrl-C from here on is taken at a safe point
    kw = model_kwargs(args.model, cifar_stem=args.cifar_stem)
    fm, tm, mapping = build_pair(args.model, args.dtype, args.seed, **kw)
    xj, xt = images(args.batch_size, size, args.dtype, args.seed)
    note = degenerate_note(args, size)
    if note:  # before the work: the user may stop and pick another batch
        print(note, flush=True)
    stop_if_interrupted(flag)
    with precision(args.precision):
        if args.save:
            side = args.side or "torch"
            parity.save_golden(args.save, tm if side == "torch" else fm, xt if side == "torch" else xj,
                               grads=not args.no_grads, seed=args.seed)
            stop_if_interrupted(flag)
            print(f"saved {side}'s run of {title} to {args.save}")
            return EXIT_OK
        tol = {"rtol": args.rtol, "atol": args.atol}
        if args.against:
            side = args.side or "jax"
            try:
                report = parity.compare_golden(fm if side == "jax" else tm, xj if side == "jax" else xt, args.against,
                                               mapping=mapping, fail_fast=args.fail_fast, **tol)
            except ValueError as e:  # a golden file of another batch size or model
                fail(PROG, e)
            title += f", {side} against {args.against}"
        else:
            report = parity.compare_models(fm, tm, xj, xt, mapping=mapping, grads=not args.no_grads,
                                           reference=None if args.no_reference or args.dtype == "float64" else True,
                                           seed=args.seed,
                                           fail_fast=args.fail_fast, **tol)
    stop_if_interrupted(flag)
    print(headline(report, args, size))
    print(title)
    for line in details(report):
        print(line)
    if args.all or args.verbose:
        print(report.table(only_failed=not args.all))
    if args.out:
        paths = rep.write_model_report(report.to_json(), args.out, title)
        print(f"report: {paths['html']} ({paths['json']}, {paths['md']}, {paths['png']})")
    return EXIT_OK if report.passed else EXIT_FAILED


def exact_command(args: argparse.Namespace, size: int) -> str:
    """The float64 command line of this comparison, at a batch whose BatchNorms are not degenerate."""
    batch = max(args.batch_size, DEFAULT_BATCH)
    words = [PROG, "--model", args.model, "--dtype", "float64", "--batch-size", str(batch), "--image-size", str(size)]
    words += ["--cifar-stem"] * args.cifar_stem + (["--seed", str(args.seed)] if args.seed else [])
    return " ".join(words)


def _kind(report: Any, args: argparse.Namespace) -> str:
    """What kind of difference the first layer out of tolerance is."""
    d = report.first_divergence
    if d is None:
        return "the parameters differ before the run: a conversion error"
    if args.dtype == "float64":
        return "a real divergence: float64 leaves no room for rounding"
    if d.torch_ref_passed is None:
        return "float32 rounding or a porting error: the float64 reference did not run (--no-reference)"
    if not d.torch_ref_passed or d.jax_ref_passed:
        return (f"float32 rounding, not a porting error: at {d.jax_path or '(model)'} ({d.kind}) "
                + ("torch's own float32 run leaves its float64 run too" if not d.torch_ref_passed
                   else "JAX's float32 run stays within tolerance of torch's float64 run"))
    return f"a porting error: at {d.jax_path or '(model)'} ({d.kind}) JAX leaves float64 where torch's float32 does not"


def headline(report: Any, args: argparse.Namespace, size: int) -> str:
    """The first lines: the verdict and what kind of difference it is; in float32 the command that
    shows the exact comparison."""
    if not report.compared:  # nothing paired up: the report's own verdict names what did not pair
        return report.verdict()
    if report.passed:
        return f"PASSED: {len(report.layers)} layer tensors and {len(report.params)} parameters within {args.dtype} tolerance"
    bad = sum(not d.passed for d in report.layers + report.params)
    text = f"FAILED {args.dtype} tolerance at {bad} of {len(report.layers) + len(report.params)} tensors: {_kind(report, args)}"
    if args.dtype != "float64":
        text += f"\nexact comparison (float64): {exact_command(args, size)}"
    return text


def details(report: Any) -> list[str]:
    """The first failing layer, the error statistics and the tolerance it was held to (a few lines)."""
    d = report.first_divergence or report.first_param_divergence
    if d is None:
        return []
    worst = max((x for x in report.layers + report.params if x.size), key=lambda x: x.usage or 0.0, default=d)
    first = (f"first out of tolerance: {d.name} ({d.kind}): max abs {d.max_abs_err:.2g}, rel {d.max_rel_err:.2g}, "
             f"{d.n_bad}/{d.size} elements outside atol {d.atol:.2g} + rtol {d.rtol:.2g} x |torch|")
    worst_line = f"worst: {worst.name} ({worst.kind}), tolerance use {worst.usage or 0:.3g} (1 is the limit)"
    if worst.jax_ref_abs is not None and worst.torch_ref_abs is not None:  # how far each float32 run is from float64
        worst_line += f"; max abs from float64: JAX {worst.jax_ref_abs:.2g}, torch {worst.torch_ref_abs:.2g}"
    lines = [first, worst_line,
             "per-layer lines: --verbose (those out of tolerance), --all (every one), --out DIR (report files)"]
    return lines


def degenerate_note(args: argparse.Namespace, size: int) -> str:
    """A warning when a BatchNorm normalises over so few values that the comparison measures rounding noise."""
    n = batchnorm_values(args.model, args.batch_size, size, args.cifar_stem)
    if n is None or n > DEGENERATE_BATCHNORM:
        return ""
    return (f"note: batch {args.batch_size} at {size}x{size}: the last BatchNorms normalise over {n} value(s) per channel, "
            f"where their output is constant and their input gradient 0 up to rounding; use --batch-size {DEFAULT_BATCH} "
            "or more for a meaningful comparison")


if __name__ == "__main__":
    sys.exit(main())
