"""``python -m parity.models``: the project's Flax models against their torch twins, layer by layer.

Usage::

    python -m parity.models --model seed-cnn                 # SeedCNN, float32, batch 2
    python -m parity.models --model resnet18 --image-size 16 --dtype float64
    python -m parity.models --model seed-cnn --no-reference  # float32 without the float64 torch run
    python -m parity.models --model seed-cnn --save torch.npz             # golden file of torch's run
    python -m parity.models --model seed-cnn --against torch.npz          # JAX against it, later
    python -m parity.models --model seed-cnn --side torch --save t.npz    # (--side picks the side)
    python -m parity.models --model resnet18 --out report/   # report.{json,md,html} + layers.png

Prints the verdict (the first layer out of tolerance, forward then backward, and in float32
whether torch's own float32 run leaves its float64 run there too: deep networks with BatchNorm
over few values do, so a faithful ResNet-18 in float32 is not within elementwise float32
tolerance layer by layer, and the verdict says it is rounding) and the per-layer table. ``--precision ieee|tf32|default`` (default ieee) sets both frameworks' float32
matmul/convolution precision (:mod:`parity.precisions`); the report header records it.

Exit status: 0 when every layer is within tolerance (or a golden file was saved), 1 when one is
not, 2 for a usage error or a missing torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from parity.files import writable_folder
from parity.precisions import MODES


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m parity.models", description="Flax model vs torch twin, layer by layer")
    ap.add_argument("--model", choices=("seed-cnn", "resnet18"), default="seed-cnn")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=None, help="default 32 (seed-cnn needs 32), 16 for resnet18")
    ap.add_argument("--cifar-stem", action="store_true", help="resnet18: the CIFAR stem (3x3 conv, no max-pool)")
    ap.add_argument("--seed", type=int, default=0, help="weights, images and cotangent")
    ap.add_argument("--precision", choices=MODES, default="ieee")
    ap.add_argument("--no-grads", action="store_true", help="forward only")
    ap.add_argument("--no-reference", action="store_true",
                    help="float32: skip the float64 torch run that says whether a divergence is float32 rounding")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first layer out of tolerance")
    ap.add_argument("--rtol", type=float, default=None)
    ap.add_argument("--atol", type=float, default=None)
    ap.add_argument("--side", choices=("jax", "torch"), default=None,
                    help="--save: the side saved (default torch); --against: the side run (default jax)")
    ap.add_argument("--save", metavar="FILE.npz", help="save one side's run as a golden file, compare nothing")
    ap.add_argument("--against", metavar="FILE.npz", help="compare one side against a golden file")
    ap.add_argument("--out", metavar="DIR", help="write report.json, report.md, report.html and layers.png here")
    ap.add_argument("--all", action="store_true", help="print every compared tensor (default: the failures and a summary)")
    args = ap.parse_args(argv)
    problems = []
    if args.batch_size < 1:
        problems.append("--batch-size must be >= 1")
    if args.image_size is not None and args.image_size < 1:
        problems.append("--image-size must be >= 1")
    if args.model == "seed-cnn" and args.image_size not in (None, 32):
        problems.append("--model seed-cnn takes 32x32 images only")
    if args.save and args.against:
        problems.append("--save and --against exclude each other")
    if args.against and not os.path.isfile(args.against):
        problems.append(f"--against {args.against}: no such file")
    for what, path in (("--save", args.save), ("--out", args.out)):
        if path and not writable_folder(path if what == "--out" else os.path.dirname(os.path.abspath(path))):
            problems.append(f"{what} {path}: not writable")
    if problems:
        ap.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("python -m parity.models needs torch: pip install 'jaxloss[parity]'", file=sys.stderr)
        return 2
    import parity
    from parity import report as rep
    from parity.models.twins import build_pair, images
    from parity.precisions import precision

    size = args.image_size or (32 if args.model == "seed-cnn" else 16)
    kw = {"cifar_stem": True} if args.cifar_stem else {}
    fm, tm, mapping = build_pair(args.model, args.dtype, args.seed, **kw)
    xj, xt = images(args.batch_size, size, args.dtype, args.seed)
    title = f"{args.model} {args.dtype} batch {args.batch_size} {size}x{size}, precision {args.precision}"
    with precision(args.precision):
        if args.save:
            side = args.side or "torch"
            parity.save_golden(args.save, tm if side == "torch" else fm, xt if side == "torch" else xj,
                               grads=not args.no_grads, seed=args.seed)
            print(f"saved {side}'s run of {title} to {args.save}")
            return 0
        tol = {"rtol": args.rtol, "atol": args.atol}
        if args.against:
            side = args.side or "jax"
            report = parity.compare_golden(fm if side == "jax" else tm, xj if side == "jax" else xt, args.against,
                                           mapping=mapping, fail_fast=args.fail_fast, **tol)
            title += f", {side} against {args.against}"
        else:
            report = parity.compare_models(fm, tm, xj, xt, mapping=mapping, grads=not args.no_grads,
                                           reference=None if args.no_reference or args.dtype == "float64" else True,
                                           seed=args.seed,
                                           fail_fast=args.fail_fast, **tol)
    print(title)
    print(report.verdict())
    print(report.table(only_failed=not args.all) or f"({len(report.layers)} layer tensors, {len(report.params)} parameters; --all lists them)")
    if args.out:
        paths = rep.write_model_report(report.to_json(), args.out, title)
        print(f"report: {paths['html']} ({paths['json']}, {paths['md']}, {paths['png']})")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
