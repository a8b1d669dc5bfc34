"""``python -m jaxloss.parity.twin``: the flags (``python -m jaxloss.train``'s for the shared settings, plus the twin's own),
the run and its report; exit 0 when every step is within tolerance, 1 when not, 2 for a bad flag, 130 when interrupted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxloss.parity.cli import path_problem, remove_reports, stop_if_interrupted
from jaxloss.parity.tolerances import tolerance_flag
from jaxloss.parity.twin.config import JAX_PRECISION, PROG, SHARED_FIELDS, TwinConfig, check_config
from jaxloss.parity.twin.report import REPORT_FILES, format_table, summary, verdict_line, write_report
from jaxloss.parity.twin.run import run_twin
from jaxloss.train.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Parser, fail, run_main
from jaxloss.train.config import ConfigError, TrainConfig
from jaxloss.train.signals import SigintFlag

__all__ = ["config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The twin's flags: ``python -m jaxloss.train``'s for the shared settings, plus the twin's own."""
    from jaxloss.train.__main__ import add_config_arguments

    p = Parser(
        prog=PROG,
        description="Train the shipped Flax train step and its torch twin in lockstep on synthetic batches; "
        "report the differences.",
    )
    add_config_arguments(p.add_argument_group("the training recipe (as python -m jaxloss.train)"), SHARED_FIELDS,
                         defaults={"out": None})  # fmt: skip
    g = p.add_argument_group("the twin")
    g.add_argument("--steps", type=int, default=None, help="default: 50 (seed-cnn), 10 (resnet18)")
    g.add_argument("--steps-per-epoch", type=int, default=5, help="schedules step once per this many steps (default: %(default)s)")
    g.add_argument("--image-size", type=int, default=32, help="square image side; seed-cnn needs 32 (default: %(default)s)")
    g.add_argument("--num-classes", type=int, default=10, help="(default: %(default)s)")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="float64 runs both frameworks in double precision, the exactness check (default: %(default)s)")
    g.add_argument("--precision", choices=list(JAX_PRECISION), default="ieee",
                   help="float32 matmul/convolution precision of both frameworks (parity.precision; default: %(default)s)")
    g.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the float64 torch reference run (torch's own float32 error)")
    g.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                   help="skip the layer-by-layer diagnosis of the first step outside tolerance (parity.compare_models)")
    g.add_argument("--rtol", type=tolerance_flag, default=None, help="default: parity.tolerances for --dtype")
    g.add_argument("--atol", type=tolerance_flag, default=None, help="default: parity.tolerances for --dtype")
    return p  # fmt: skip


def config_from_args(argv: Sequence[str] | None = None) -> TwinConfig:
    """The :class:`TwinConfig` of a command line.

    >>> from jaxloss.parity.twin import config_from_args
    >>> cfg = config_from_args(["--model", "resnet18", "--momentum", "0.5", "--dtype", "float64"])
    >>> cfg.train.model, cfg.train.momentum, cfg.dtype, cfg.resolved_steps()
    ('resnet18', 0.5, 'float64', 10)
    """
    args = vars(build_parser().parse_args(argv))
    from jaxloss.train.__main__ import config_values

    shared = config_values({k: args.pop(k) for k in SHARED_FIELDS})
    out = shared.pop("out")
    return TwinConfig(train=TrainConfig(**shared, out=out or TrainConfig().out), **args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxloss.parity.twin``: 0 when every step is within tolerance, 1 when not, 2 for a bad flag
    or an ``--out`` that cannot be written, 130 when interrupted (Ctrl-C, taken between steps; the
    previous run's report in ``--out`` is removed when the run starts).

    >>> from jaxloss.parity.twin import main
    >>> main(["--batch-size", "1"])  # one line on stderr, status 2
    2
    """
    return run_main(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    from jaxloss.train.__main__ import error

    args_out = build_parser().parse_args(argv).out
    cfg = config_from_args(argv)
    try:
        check_config(cfg)
    except ConfigError as e:
        error(PROG, e)
        return EXIT_USAGE
    problem = path_problem("--out", args_out, "folder")
    if problem:
        fail(PROG, problem)
    remove_reports(args_out, REPORT_FILES)
    with SigintFlag() as sigint:
        print(f"{PROG}: {cfg.resolved_steps()} steps of {cfg.train.model}, {cfg.dtype}", flush=True)
        result = run_twin(cfg, on_step=lambda _: stop_if_interrupted(sigint))
        stop_if_interrupted(sigint)
    print(verdict_line(result, _exact_command(sys.argv[1:] if argv is None else list(argv))))
    print(format_table(result))
    print(summary(result))
    if args_out:
        paths = write_report(result, args_out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK if result.passed else EXIT_FAILED


def _exact_command(argv: list[str]) -> str:
    """This command line in float64 (the comparison without float32 rounding)."""
    words, skip = [], False
    for w in argv:
        if skip or w == "--dtype" or w.startswith("--dtype="):
            skip = w == "--dtype" and not skip
            continue
        words.append(w)
    return " ".join([PROG, *words, "--dtype", "float64"])

