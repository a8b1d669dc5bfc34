"""``python -m train``: train the seed's CIFAR-10 CNN (or ResNet-18) in Flax NNX with optax.

Examples::

    python -m train --model seed-cnn --dataset digits --epochs 3          # offline, a minute on 2 CPU cores
    python -m train --dataset cifar10 --data-dir data --download --epochs 30
    python -m train --model resnet18 --optimizer sgd --lr 0.1 --weight-decay 5e-4 --lr-schedule cosine
    python -m train --loss focal_loss --gamma 2 ...
    python -m train ... --resume                                          # continue after Ctrl-C

Writes ``<out>/metrics.jsonl`` (one JSON record per epoch), ``<out>/curves.png`` and
checkpoints in ``<checkpoint-dir>`` (default ``<out>/checkpoints``). Ctrl-C saves a
checkpoint and exits with status 130; ``--resume`` continues it to the same final
parameters as an uninterrupted run.

Devices: data-parallel over every local device (a ``('data',)`` mesh; the global batch is
split over it, so BatchNorm statistics are those of the global batch, as torch's
SyncBatchNorm, not per device as plain DDP). Several hosts: start one process per host with
the same command and either ``--coordinator-address HOST:PORT --num-processes N
--process-id I``, or the environment variables ``JAX_COORDINATOR_ADDRESS`` /
``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, torchrun's ``MASTER_ADDR`` / ``MASTER_PORT`` /
``WORLD_SIZE`` / ``RANK``, or a SLURM ``srun`` / Open MPI ``mpirun`` launch; the program
then calls ``jax.distributed.initialize`` and trains over all processes' devices (every
process loads the data set; process 0 writes metrics and the plot)::

    # host 0                                       # host 1
    python -m train --coordinator-address h0:1234 --num-processes 2 --process-id 0 ...
    python -m train --coordinator-address h0:1234 --num-processes 2 --process-id 1 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping

from train.loop import LOSSES, TrainConfig


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=d.model, choices=["seed-cnn", "resnet18"])
    g.add_argument(
        "--activation",
        default=None,
        choices=["none", "relu"],
        help="seed-cnn: the seed has none (a linear network); 'relu' adds ReLUs",
    )
    g.add_argument("--cifar-stem", action="store_true", help="resnet18: 3x3 stride-1 stem without max-pool")
    g.add_argument(
        "--dataset",
        default=d.dataset,
        choices=["cifar10", "digits"],
        help="cifar10 from --data-dir, or scikit-learn's bundled digits (offline)",
    )
    g.add_argument(
        "--data-dir",
        default=d.data_dir,
        help="folder holding cifar-10-batches-py or -bin (default: %(default)s)",
    )
    g.add_argument("--download", action="store_true", help="download CIFAR-10 into --data-dir if missing")
    g.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="no random crop / flip (flip is never used on digits)",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (default: %(default)s)")
    g.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    g.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adam", "adamw"])
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=d.momentum, help="sgd (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--nesterov", action="store_true")
    g.add_argument(
        "--lr-schedule",
        default=d.lr_schedule,
        choices=["constant", "step", "cosine"],
        help="per epoch, as torch's StepLR / CosineAnnealingLR(T_max=epochs)",
    )
    g.add_argument("--lr-step-size", type=int, default=d.lr_step_size, help="step schedule: epochs per decay")
    g.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="step schedule: decay factor")
    g.add_argument("--lr-min", type=float, default=d.lr_min, help="cosine schedule: eta_min")
    g.add_argument(
        "--precision",
        default=d.precision,
        choices=["fp32", "bf16"],
        help="bf16: bfloat16 compute, float32 parameters and loss",
    )
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument(
        "--subset", type=int, default=None, metavar="N", help="train on the first N images only (smoke tests)"
    )
    g = p.add_argument_group("loss (any classification loss of jaxloss)")
    g.add_argument(
        "--loss",
        default=d.loss,
        choices=sorted(LOSSES),
        metavar="NAME",
        help="one of: " + ", ".join(sorted(LOSSES)) + " (default: %(default)s)",
    )
    g.add_argument("--label-smoothing", type=float, help="cross_entropy")
    g.add_argument("--gamma", type=float, help="focal_loss, sigmoid_focal_loss")
    g.add_argument("--alpha", type=float, help="focal_loss, sigmoid_focal_loss")
    g.add_argument("--margin", type=float, help="multi_margin_loss")
    g.add_argument("--p", type=int, choices=[1, 2], help="multi_margin_loss")
    g.add_argument("--delta", type=float, help="huber_loss")
    g.add_argument("--beta", type=float, help="smooth_l1_loss")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=d.out, help="metrics.jsonl and curves.png go here (default: %(default)s)")
    g.add_argument("--checkpoint-dir", default=None, help="default: <out>/checkpoints")
    g.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="epochs; 0: only on Ctrl-C"
    )
    g.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    g.add_argument("--num-devices", type=int, default=None, help="use the first N devices (default: all)")
    g = p.add_argument_group("several hosts (jax.distributed; environment variables work too, see above)")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT", help="process 0's address")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)
    g.add_argument("--no-progress", dest="progress", action="store_false")
    g.add_argument("--no-plot", dest="plot", action="store_false")
    return p


def distributed_env(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the ``--coordinator-address`` / ``--num-processes`` / ``--process-id`` flags
    written over the ``JAX_*`` variables that :func:`train.loop.init_distributed` reads."""
    env = dict(environ)
    flags = {
        "JAX_COORDINATOR_ADDRESS": args.coordinator_address,
        "JAX_NUM_PROCESSES": args.num_processes,
        "JAX_PROCESS_ID": args.process_id,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if given and len(given) != len(flags):
        raise ValueError("--coordinator-address, --num-processes and --process-id go together")
    env.update({k: str(v) for k, v in given.items()})
    return env


def config_from_args(argv: list[str] | None = None) -> tuple[TrainConfig, int | None]:
    return _config(_parser().parse_args(argv))


def _config(args: argparse.Namespace) -> tuple[TrainConfig, int | None]:
    loss_opts = {
        k: getattr(args, k) for k in ("label_smoothing", "gamma", "alpha", "margin", "p", "delta", "beta")
    }
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in vars(args).items() if k in fields and k != "loss_options"}
    kw["loss_options"] = {k: v for k, v in loss_opts.items() if v is not None}
    return TrainConfig(**kw), args.subset


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg, subset = _config(args)
    from train.data import DatasetError
    from train.loop import TrainingInterrupted, init_distributed, make_loss, train

    try:
        make_loss(cfg.loss, **cfg.loss_options)  # option errors before anything slow
        env = distributed_env(args, os.environ)
    except ValueError as e:
        print(f"python -m train: error: {e}", file=sys.stderr)
        return 2
    init_distributed(env)
    try:
        dataset = None
        if subset is not None:
            from train.data import load_dataset

            full = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download, progress=cfg.progress)
            dataset = dataclasses.replace(full, x_train=full.x_train[:subset], y_train=full.y_train[:subset])
        result = train(cfg, dataset=dataset)
    except TrainingInterrupted:
        return 130
    except (DatasetError, FileNotFoundError, ValueError) as e:
        print(f"python -m train: error: {e}", file=sys.stderr)
        return 1
    if result.history:
        last = result.history[-1]
        print(
            f"final: test accuracy {100 * last['test_acc']:.2f}%, test loss {last['test_loss']:.4f} "
            f"after {last['epoch']} epochs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
