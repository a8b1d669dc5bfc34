"""One configuration for a training run: :class:`TrainConfig`, its checks, and its vocabulary.

Every field is one command-line flag of ``python -m jaxloss.train`` (``batch_size`` is
``--batch-size``); :mod:`jaxloss.parity.twin` takes the same flags for the fields it shares. The
defaults are the seed's recipe: the seed CNN, SGD with learning rate 0.01 and momentum
0.9, batch 32, random crop (padding 4) + horizontal flip + normalisation, cross entropy,
10 epochs, on the offline ``digits`` set.

:func:`validate` checks a config before anything slow happens and raises
:class:`ConfigError` (a ``ValueError``) naming the field: ``batch_size must be a
positive integer, got 0``. The command line rewords the field as its flag.

This module imports no JAX: the CLI checks its flags without starting a backend.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from jaxloss.train.registry import MODELS, OPTIONS, OptionError, model_kwargs

__all__ = [
    "LOSS_OPTIONS",
    "MATMUL_PRECISION",
    "PRECISIONS",
    "RESUME_KEYS",
    "ConfigError",
    "TrainConfig",
    "flag",
    "parse_address",
    "validate",
]

PRECISIONS = ("fp32", "tf32", "bf16")
# The JAX matmul/convolution precision each setting compiles the step with. bf16 computes in
# bfloat16 (the model's dtype), so XLA's default precision is already what it asks for.
MATMUL_PRECISION: dict[str, str | None] = {"fp32": "highest", "tf32": "tensorfloat32", "bf16": None}
LOSS_OPTIONS = ("label_smoothing", "gamma", "alpha", "margin", "p", "delta", "beta")
DATASETS = ("digits", "cifar10")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
# How long a multi-host process waits for the others at start-up: long enough for hosts that
# start minutes apart (jax's own default is 300 s), short enough that a typo'd address or a
# process that never started is reported within minutes, not never.
DISTRIBUTED_TIMEOUT_S = 300


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field whose metadata the command line turns into a flag."""
    kw = {"default_factory": lambda: default} if isinstance(default, (list, dict, tuple)) else {"default": default}
    return dataclasses.field(metadata={"help": help, **meta}, **kw)  # type: ignore[call-overload]


class ConfigError(ValueError):
    """A setting that a run cannot take; ``field`` names it (``str(e)`` starts with it).

    >>> from jaxloss.train.config import ConfigError
    >>> e = ConfigError("epochs", "must be a positive integer, got 0")
    >>> (e.field, str(e))
    ('epochs', 'epochs must be a positive integer, got 0')
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def flag(field: str) -> str:
    """The command-line flag of a config field.

    >>> from jaxloss.train.config import flag
    >>> flag("batch_size")
    '--batch-size'
    """
    return "--" + field.replace("_", "-")


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a run; ``python -m jaxloss.train --help`` lists each field as a flag.

    >>> from jaxloss.train.config import TrainConfig
    >>> cfg = TrainConfig(epochs=2)
    >>> (cfg.model, cfg.optimizer, cfg.lr, cfg.effective_momentum, cfg.batch_size, cfg.dataset)
    ('seed-cnn', 'sgd', 0.01, 0.9, 32, 'digits')
    """

    # model and data
    model: str = _f("seed-cnn", "the network (train.registry.MODELS)", choices=MODELS)  # the live table
    activation: str | None = _f(None, "seed-cnn: none (the seed's, a linear network) or relu (default: none)", choices=("none", "relu"))
    cifar_stem: bool = _f(False, "resnet18: 3x3 stride-1 stem without max-pool")
    dataset: str = _f("digits", "digits: scikit-learn's bundled digits as 32x32x3 (offline); cifar10: from --data-dir", choices=DATASETS)
    data_dir: str = _f("data", "folder holding cifar-10-batches-py or -bin")
    download: bool = _f(False, "download CIFAR-10 into --data-dir if missing")
    subset: int | None = _f(None, "train on the first N training images only (default: all)", metavar="N")
    augment: bool = _f(True, "random crop (padding 4) + horizontal flip (no flip on digits)", negate="--no-augment")
    # optimisation
    epochs: int = _f(10, "epochs to train (the cosine schedule's length)")
    batch_size: int = _f(32, "global batch, split over the devices")
    eval_batch_size: int = _f(500, "test batch (rounded down to a multiple of the device count)")
    optimizer: str = _f("sgd", "torch.optim.SGD / Adam / AdamW", choices=OPTIMIZERS)
    lr: float = _f(0.01, "learning rate")
    momentum: float | None = _f(None, "sgd momentum (default: 0.9, the seed's)")
    dampening: float = _f(0.0, "sgd dampening")
    nesterov: bool = _f(False, "sgd Nesterov momentum")
    weight_decay: float | None = _f(None, "weight decay (default: torch's, 0 for sgd and adam, 1e-2 for adamw)")
    betas: tuple[float, float] = _f((0.9, 0.999), "adam(w) betas", nargs=2)
    eps: float = _f(1e-8, "adam(w) eps")
    amsgrad: bool = _f(False, "adam(w) amsgrad")
    lr_schedule: str = _f("constant", "per epoch, as torch's StepLR / CosineAnnealingLR(T_max=epochs)", choices=SCHEDULES)
    lr_step_size: int = _f(30, "step schedule: epochs per decay")
    lr_gamma: float = _f(0.1, "step schedule: decay factor")
    lr_min: float = _f(0.0, "cosine schedule: eta_min")
    precision: str = _f("fp32", "fp32: true float32; tf32: TF32 matmuls/convolutions; bf16: bfloat16 compute, float32 weights, statistics, logits and loss", choices=PRECISIONS)
    seed: int = _f(0, "parameters, shuffling and augmentation all derive from it")
    # loss
    loss: str = _f("cross_entropy", "a loss of train.losses.LOSSES, fed the logits and labels as that table says "
                          "(the regression losses, e.g. mse_loss: softmax probabilities against one-hot labels)")
    label_smoothing: float | None = _f(None, "cross_entropy's (default: the loss's)")
    gamma: float | None = _f(None, "focal_loss's, sigmoid_focal_loss's (default: the loss's)")
    alpha: float | None = _f(None, "focal_loss's, sigmoid_focal_loss's (default: the loss's)")
    margin: float | None = _f(None, "multi_margin_loss's (default: the loss's)")
    p: int | None = _f(None, "multi_margin_loss's, 1 or 2 (default: the loss's)")
    delta: float | None = _f(None, "huber_loss's (default: the loss's)")
    beta: float | None = _f(None, "smooth_l1_loss's (default: the loss's)")
    # outputs
    out: str = _f("runs/latest", "metrics.jsonl and curves.png go here")
    checkpoint_dir: str | None = _f(None, "checkpoint folder (default: <out>/checkpoints)")
    checkpoint_every: int = _f(1, "epochs between checkpoints; 0: only on Ctrl-C")
    resume: bool = _f(False, "continue the run whose checkpoints are in --checkpoint-dir")
    overwrite: bool = _f(False, "start afresh, deleting the checkpoints of an earlier run in --checkpoint-dir")
    progress: bool = _f(True, "progress bar", negate="--no-progress")
    plot: bool = _f(True, "curves.png plot written at the end", negate="--no-plot")
    # devices and hosts
    num_devices: int | None = _f(None, "use the first N devices (default: all)", metavar="N")
    coordinator_address: str | None = _f(None, "several hosts: process 0's HOST:PORT (default: one host)", metavar="HOST:PORT")
    num_processes: int | None = _f(None, "several hosts: how many processes (default: one host)")
    process_id: int | None = _f(None, "several hosts: this process's index (default: one host)")
    distributed_timeout: int = _f(DISTRIBUTED_TIMEOUT_S, "several hosts: seconds to wait for every process to join the coordinator before giving up (exit 1)", metavar="SECONDS")

    @property
    def effective_momentum(self) -> float:
        """The momentum SGD runs with (0.9 when unset: the seed's); 0 for Adam(W)."""
        if self.optimizer != "sgd":
            return 0.0
        return 0.9 if self.momentum is None else self.momentum

    @property
    def loss_options(self) -> dict[str, Any]:
        """The loss options that were set (the others stay at the loss's defaults)."""
        return {k: getattr(self, k) for k in LOSS_OPTIONS if getattr(self, k) is not None}

    @property
    def model_options(self) -> dict[str, Any]:
        """The model options that were set, as constructor keywords (:func:`jaxloss.train.registry.model_kwargs`).

        >>> from jaxloss.train.config import TrainConfig
        >>> TrainConfig(model="resnet18", cifar_stem=True).model_options
        {'cifar_stem': True}
        """
        return model_kwargs(self.model, **{k: getattr(self, k) for k in OPTIONS})

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.out) / "checkpoints"

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# What must match for --resume to continue the same run (epochs may grow, except under cosine).
RESUME_KEYS = (
    "model", "activation", "cifar_stem", "dataset", "subset", "augment", "batch_size",
    "optimizer", "lr", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps",
    "amsgrad", "lr_schedule", "lr_step_size", "lr_gamma", "lr_min", "precision", "seed",
    "loss", *LOSS_OPTIONS,
)  # fmt: skip


def _positive_int(cfg: TrainConfig, name: str, *, zero: bool = False, none: bool = False) -> None:
    v = getattr(cfg, name)
    if v is None and none:
        return
    ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if zero else v >= 1)
    if not ok:
        what = "a non-negative integer" if zero else "a positive integer"
        raise ConfigError(name, f"must be {what}, got {v!r}")


def _finite(cfg: TrainConfig, name: str, lo: float = 0.0, hi: float = math.inf, *, none: bool = False) -> None:
    v = getattr(cfg, name)
    if v is None and none:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not (lo <= v <= hi) or math.isnan(v):
        raise ConfigError(name, f"must be a number in [{lo:g}, {hi:g}], got {v!r}")


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of a ``HOST:PORT`` coordinator address; ValueError saying what is expected.

    >>> from jaxloss.train.config import parse_address
    >>> parse_address("h0:1234"), parse_address("[::1]:8476")
    (('h0', 1234), ('[::1]', 8476))
    >>> parse_address("garbage")
    Traceback (most recent call last):
    ...
    ValueError: must be HOST:PORT (process 0's host name or address, and a port in 1..65535), got 'garbage'
    """
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT (process 0's host name or address, and a port in 1..65535), got {text!r}")
    return host, int(port)


def _choice(cfg: TrainConfig, name: str, choices: Any) -> None:
    if getattr(cfg, name) not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every setting (no file system, no JAX); return ``cfg`` or raise :class:`ConfigError`.

    >>> from jaxloss.train.config import TrainConfig, validate
    >>> validate(TrainConfig(batch_size=0))
    Traceback (most recent call last):
    ...
    jaxloss.train.config.ConfigError: batch_size must be a positive integer, got 0
    """
    for name, choices in (("model", MODELS), ("dataset", DATASETS), ("optimizer", OPTIMIZERS),
                          ("lr_schedule", SCHEDULES), ("precision", PRECISIONS)):  # fmt: skip
        _choice(cfg, name, choices)
    for name in ("epochs", "batch_size", "eval_batch_size", "lr_step_size"):
        _positive_int(cfg, name)
    _positive_int(cfg, "checkpoint_every", zero=True)
    _positive_int(cfg, "seed", zero=True)
    for name in ("subset", "num_devices", "num_processes"):
        _positive_int(cfg, name, none=True)
    _positive_int(cfg, "process_id", zero=True, none=True)
    _positive_int(cfg, "distributed_timeout")
    _finite(cfg, "lr", 0.0, math.inf)
    _finite(cfg, "momentum", 0.0, 1.0, none=True)
    _finite(cfg, "dampening", 0.0, 1.0)
    _finite(cfg, "weight_decay", 0.0, math.inf, none=True)
    _finite(cfg, "eps", 0.0, math.inf)
    _finite(cfg, "lr_gamma", 0.0, math.inf)
    _finite(cfg, "lr_min", 0.0, math.inf)
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ConfigError("betas", f"must be two numbers in [0, 1), got {cfg.betas!r}")
    if cfg.activation not in (None, "none", "relu"):
        raise ConfigError("activation", f"must be none or relu, got {cfg.activation!r}")
    try:
        cfg.model_options  # noqa: B018 (each option set must be one the model takes)
    except OptionError as e:
        raise ConfigError(e.option, e.problem) from None
    if cfg.optimizer != "sgd":
        for name, default in (("momentum", None), ("dampening", 0.0), ("nesterov", False)):
            if getattr(cfg, name) != default:
                raise ConfigError(name, f"applies to optimizer sgd only, not {cfg.optimizer}")
    else:
        for name, default in (("betas", [0.9, 0.999]), ("eps", 1e-8), ("amsgrad", False)):
            if (list(cfg.betas) if name == "betas" else getattr(cfg, name)) != default:
                raise ConfigError(name, "applies to optimizers adam and adamw only")
    if cfg.nesterov and (cfg.effective_momentum <= 0 or cfg.dampening != 0):
        raise ConfigError("nesterov", "needs a momentum and zero dampening (as torch.optim.SGD)")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("overwrite", "and resume exclude each other")
    hosts = {k: getattr(cfg, k) for k in ("coordinator_address", "num_processes", "process_id")}
    if any(v is not None for v in hosts.values()) and any(v is None for v in hosts.values()):
        raise ConfigError("coordinator_address", "num_processes and process_id go together")
    if cfg.coordinator_address is not None:
        try:
            parse_address(cfg.coordinator_address)
        except ValueError as e:
            raise ConfigError("coordinator_address", str(e)) from None
    if cfg.process_id is not None and cfg.num_processes is not None and cfg.process_id >= cfg.num_processes:
        raise ConfigError("process_id", f"must be below num_processes ({cfg.num_processes}), got {cfg.process_id}")
    from jaxloss.train.losses import make_loss  # the loss table imports no JAX

    make_loss(cfg.loss, **cfg.loss_options)
    return cfg
