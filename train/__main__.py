"""``python -m jaxloss.train``: train the seed's CIFAR-10 CNN (or ResNet-18) in Flax NNX with optax.

With no flags it runs the seed's recipe (SGD, lr 0.01, momentum 0.9, batch 32, random crop +
flip + normalisation, cross entropy, 10 epochs) on the offline ``digits`` set. Examples::

    python -m jaxloss.train                                                       # the seed's recipe, offline
    python -m jaxloss.train --dataset cifar10 --data-dir data --download --epochs 30
    python -m jaxloss.train --model resnet18 --lr 0.1 --weight-decay 5e-4 --lr-schedule cosine
    python -m jaxloss.train --loss focal_loss --gamma 2 ...
    python -m jaxloss.train ... --resume                                          # continue after Ctrl-C

Writes ``<out>/metrics.jsonl`` (one JSON record per epoch), ``<out>/curves.png`` and
checkpoints in ``<checkpoint-dir>`` (default ``<out>/checkpoints``). Ctrl-C saves a
checkpoint and exits with status 130; ``--resume`` continues it to the same final
parameters as an uninterrupted run. A bad flag, or ``--dataset cifar10`` without its files
(and no ``--download``), is one line on stderr and status 2, before anything is trained;
exit codes as every CLI of the project (:mod:`jaxloss.train.cli`: 0 done, 1 failed, 2 bad input,
130 interrupted).

Devices: data-parallel over every local device (a ``('data',)`` mesh; BatchNorm statistics
are those of the global batch, as torch's SyncBatchNorm). Several hosts: start one process
per host with the same command and either ``--coordinator-address HOST:PORT
--num-processes N --process-id I``, or the environment variables ``JAX_COORDINATOR_ADDRESS``
/ ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, torchrun's ``MASTER_ADDR`` / ``MASTER_PORT`` /
``WORLD_SIZE`` / ``RANK``, or a SLURM ``srun`` / Open MPI ``mpirun`` launch::

    # host 0                                       # host 1
    python -m jaxloss.train --coordinator-address h0:1234 --num-processes 2 --process-id 0 ...
    python -m jaxloss.train --coordinator-address h0:1234 --num-processes 2 --process-id 1 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable
from typing import Any

from jaxloss.train.cli import Parser, require
from jaxloss.train.config import ConfigError, TrainConfig, flag, validate

PROG = "python -m jaxloss.train"
# pyproject's [train] extra, as the modules a run imports (checked before anything runs)
REQUIRES = ("flax", "optax", "orbax", "numpy", "rich", "matplotlib", "sklearn")


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def add_config_arguments(
    parser: argparse.ArgumentParser, fields: Iterable[str] | None = None, defaults: dict[str, Any] | None = None
) -> None:
    """One flag per :class:`TrainConfig` field (or per field of ``fields``), its default shown in ``--help``.

    ``defaults`` replaces a field's default (the twin's shorter runs). :mod:`jaxloss.parity.twin`
    builds its shared flags with this function.

    >>> import argparse
    >>> from jaxloss.train.__main__ import add_config_arguments
    >>> p = argparse.ArgumentParser()
    >>> add_config_arguments(p, ["batch_size", "augment"])
    >>> sorted(vars(p.parse_args(["--batch-size", "8", "--no-augment"])).items())
    [('augment', False), ('batch_size', 8)]
    """
    wanted = set(fields) if fields is not None else None
    defaults = defaults or {}
    for f in dataclasses.fields(TrainConfig):
        if wanted is not None and f.name not in wanted:
            continue
        meta, default = f.metadata, defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        # a field whose default is None says in its help what None means ("default: all devices")
        help_text = meta["help"] if "default:" in meta["help"] else f"{meta['help']} (default: %(default)s)"
        if "negate" in meta:  # --no-augment: the help says what the flag does, turning the feature off
            parser.add_argument(meta["negate"], dest=f.name, action="store_false", default=default,
                                help=f"turn off the {meta['help']} (on by default)")
        elif f.type in ("bool", bool):
            parser.add_argument(flag(f.name), dest=f.name, action="store_true", default=default, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            if "tuple[float" in str(f.type):
                kind = float
            parser.add_argument(flag(f.name), dest=f.name, type=kind, default=default, help=help_text,
                                **{k: meta[k] for k in ("choices", "metavar", "nargs") if k in meta})  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=plain_text(__doc__ or ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    return p


def plain_text(rest: str) -> str:
    """A reST docstring as a terminal shows it: no ``literal`` quotes, roles or ``::``.

    >>> from jaxloss.train.__main__ import plain_text
    >>> plain_text("Writes ``metrics.jsonl`` (:mod:`jaxloss.train.cli`). Examples::")
    'Writes metrics.jsonl (jaxloss.train.cli). Examples:'
    """
    import re

    return re.sub(r":\w+:`([^`]*)`", r"\1", rest).replace("``", "").replace("::", ":")


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a command line (not yet validated).

    >>> from jaxloss.train.__main__ import config_from_args
    >>> config_from_args(["--batch-size", "64", "--gamma", "2", "--loss", "focal_loss"]).loss_options
    {'gamma': 2.0}
    """
    return TrainConfig(**config_values(vars(_parser().parse_args(argv))))


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """Parsed flag values as :class:`TrainConfig` field values (``--betas`` a tuple, ``--activation none`` None).

    >>> from jaxloss.train.__main__ import config_values
    >>> config_values({"betas": [0.9, 0.99], "activation": "none"})
    {'betas': (0.9, 0.99), 'activation': None}
    """
    values = dict(values)
    if values.get("betas") is not None:
        values["betas"] = tuple(values["betas"])
    if values.get("activation") == "none":
        values["activation"] = None
    return values


def error(prog: str, e: Exception) -> None:
    """One line on stderr: a :class:`ConfigError` worded as its flag (``--batch-size must be ...``).

    >>> import contextlib, io
    >>> from jaxloss.train.__main__ import error
    >>> from jaxloss.train.config import ConfigError
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     error("python -m jaxloss.train", ConfigError("batch_size", "must be a positive integer, got 0"))
    >>> print(err.getvalue().strip())
    python -m jaxloss.train: error: --batch-size must be a positive integer, got 0
    """
    text = f"{flag(e.field)} {e.problem}" if isinstance(e, ConfigError) else str(e)
    print(f"{prog}: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m jaxloss.train``: 0 when trained, 2 for a bad flag (one line on stderr), 1 for bad data, 130 on Ctrl-C.

    >>> from jaxloss.train.__main__ import main
    >>> main(["--epochs", "0"])
    2
    """
    cfg = config_from_args(argv)
    try:
        validate(cfg)
    except ConfigError as e:
        error(PROG, e)
        return 2
    require(PROG, "training", REQUIRES, "train")
    from jaxloss.train.checkpoint import CheckpointError
    from jaxloss.train.data import DatasetError, DatasetNotFound
    from jaxloss.train.loop import TrainingInterrupted, train
    from jaxloss.train.mesh import distributed_env, init_distributed
    from jaxloss.train.outputs import check_writable_dir

    try:
        check_writable_dir(cfg.out, "out")
        check_writable_dir(cfg.checkpoint_path, "checkpoint_dir")
        env = distributed_env(cfg.coordinator_address, cfg.num_processes, cfg.process_id, os.environ)
        try:
            init_distributed(env, timeout_s=cfg.distributed_timeout, prog=PROG)
        except ValueError as e:  # a launcher's variable that is not what it must be: bad input
            error(PROG, e)
            return 2
        result = train(cfg)
    except TrainingInterrupted:
        return 130
    except (ConfigError, DatasetNotFound) as e:  # bad input found before training: 2
        error(PROG, e)
        return 2
    except (DatasetError, CheckpointError, ValueError) as e:
        error(PROG, e)
        return 1
    if result.history:
        last = result.history[-1]
        print(f"final: test accuracy {100 * last['test_acc']:.2f}%, test loss {last['test_loss']:.4f} "
              f"after {last['epoch']} epochs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
