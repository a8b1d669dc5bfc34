"""The training loop: data-parallel, jit-compiled SGD-family training of a :mod:`train.models` model.

How a step runs
    The model is split once with ``nnx.split(model, nnx.Param, ...)`` into a static graphdef,
    the parameters and the rest (BatchNorm statistics). The train step is a plain
    ``jax.jit`` function of ``(params, rest, opt_state, metric sums, data, permutation,
    epoch, step)`` with the first four buffers donated; it gathers its batch from the
    training set held on the device (indices from the epoch's permutation), augments it on
    the device (:mod:`train.augment`), runs forward/backward with ``nnx.merge`` inside the
    trace, applies the optax update, and adds the batch's loss and correct count to running
    sums. Nothing goes to or from the host per step except the dispatch; the host reads the
    sums only when the progress bar redraws. The step is compiled ahead of time
    (``.lower().compile()``) so epoch timings exclude compilation, with
    :func:`train.step.compiler_options` (on CPU: YNNPACK for reductions only and XLA's own
    convolutions, which makes the seed CNN's step about twice as fast).

Randomness
    Everything random is derived from ``--seed``: the parameters (``nnx.Rngs(seed)``, the same
    values as ``build_model(name, rngs=nnx.Rngs(seed))``), the epoch's shuffle (numpy's PCG64
    seeded with ``(seed, epoch)``) and each step's augmentation (``key(seed)`` folded with a
    constant, the epoch and the step, inside the step). Nothing random is carried from step to
    step, so a run resumed from a checkpoint sees exactly the batches and augmentations of an
    uninterrupted one and ends with the same parameters.

Data parallelism
    A 1-D mesh ``('data',)`` over all devices (every process's, after
    ``jax.distributed.initialize`` in a multi-host launch: :func:`init_distributed`). The
    batch is sharded over ``'data'``; parameters, optimizer state and the (uint8) data set
    are replicated. XLA inserts the gradient all-reduce. BatchNorm statistics are therefore
    those of the *global* batch, like ``torch.nn.SyncBatchNorm`` and unlike plain
    ``DistributedDataParallel``, whose BatchNorm normalises each device's slice with that
    slice's statistics: with N devices, a torch DDP run at per-device batch B/N is not the
    same computation as this run at global batch B (it is for BatchNorm-free models such as
    the seed CNN). The global batch (``--batch-size``) must divide by the device count.

Precision
    ``fp32``: everything in float32. ``bf16``: the model computes in bfloat16 (its ``dtype``),
    parameters, optimizer state, BatchNorm statistics, logits and the loss stay float32.

Losses
    Any classification-shaped :mod:`jaxloss` loss, by name (:data:`LOSSES`), fed as torch code
    would feed it: class indices for ``cross_entropy`` / ``nll_loss`` (on ``log_softmax``) /
    ``focal_loss`` / ``multi_margin_loss``; one-hot targets for the binary and regression
    losses (regression losses on the softmax probabilities), ``kl_div`` on ``log_softmax``
    with ``reduction='batchmean'``.

The last partial training batch of an epoch is dropped (``drop_last=True``): every step
has the same shape (one compilation) and divides over the devices. Evaluation covers the
whole test set (padded, masked).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss
from train.augment import augment_batch, normalize
from train.checkpoint import Checkpointer
from train.data import Dataset, load_dataset
from train.step import compiler_options

__all__ = [
    "LOSSES",
    "Loss",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "init_distributed",
    "make_loss",
    "make_mesh",
    "plot_history",
    "train",
]


# =========================================================================== losses
@dataclasses.dataclass(frozen=True)
class _LossSpec:
    input: str  # what the loss gets: "logits" | "log_softmax" | "softmax" | "sigmoid"
    target: str  # "index" | "onehot" | "pm1" (one-hot as -1/+1) | "multilabel_index"
    options: tuple[str, ...] = ()  # keyword options the CLI may set
    reduction: str = "mean"  # reduction used for training
    per_example: str = "mean"  # how 'none' output (N, C) reduces to (N,) consistently with `reduction`


LOSSES: dict[str, _LossSpec] = {
    "cross_entropy": _LossSpec("logits", "index", ("label_smoothing",)),
    "nll_loss": _LossSpec("log_softmax", "index"),
    "focal_loss": _LossSpec("logits", "index", ("gamma", "alpha")),
    "multi_margin_loss": _LossSpec("logits", "index", ("p", "margin")),
    "multilabel_margin_loss": _LossSpec("logits", "multilabel_index"),
    "kl_div": _LossSpec("log_softmax", "onehot", reduction="batchmean", per_example="sum"),
    "binary_cross_entropy_with_logits": _LossSpec("logits", "onehot"),
    "binary_cross_entropy": _LossSpec("sigmoid", "onehot"),
    "sigmoid_focal_loss": _LossSpec("logits", "onehot", ("gamma", "alpha")),
    "multilabel_soft_margin_loss": _LossSpec("logits", "onehot"),
    "soft_margin_loss": _LossSpec("logits", "pm1"),
    "poisson_nll_loss": _LossSpec("logits", "onehot"),  # log_input=True: the logits are log-rates
    "mse_loss": _LossSpec("softmax", "onehot"),
    "l1_loss": _LossSpec("softmax", "onehot"),
    "smooth_l1_loss": _LossSpec("softmax", "onehot", ("beta",)),
    "huber_loss": _LossSpec("softmax", "onehot", ("delta",)),
}

_NOT_CLASSIFICATION = {
    "gaussian_nll_loss": "needs a predicted variance",
    "ctc_loss": "is a sequence loss",
    "linear_cross_entropy": "takes hidden features and the classifier weight, not logits",
    "margin_ranking_loss": "ranks pairs of inputs",
    "hinge_embedding_loss": "takes distances",
    "cosine_embedding_loss": "compares pairs of embeddings",
    "triplet_margin_loss": "compares triplets of embeddings",
    "triplet_margin_with_distance_loss": "compares triplets of embeddings",
}


@dataclasses.dataclass(frozen=True)
class Loss:
    """A jaxloss loss bound to its options and to how logits / labels are fed to it."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> _LossSpec:
        return LOSSES[self.name]

    def _inputs(self, logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        spec, c = self.spec, logits.shape[-1]
        x = {
            "logits": lambda z: z,
            "log_softmax": jax.nn.log_softmax,
            "softmax": jax.nn.softmax,
            "sigmoid": jax.nn.sigmoid,
        }[spec.input](logits)
        if spec.target == "index":
            t = labels
        elif spec.target == "onehot":
            t = jax.nn.one_hot(labels, c, dtype=logits.dtype)
        elif spec.target == "pm1":
            t = 2 * jax.nn.one_hot(labels, c, dtype=logits.dtype) - 1
        else:  # multilabel_margin_loss: target classes first, then -1 padding
            t = jnp.full(logits.shape, -1, labels.dtype).at[:, 0].set(labels)
        return x, t

    def __call__(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """The training loss: the mean over the batch (``'batchmean'`` for kl_div), float32."""
        fn = getattr(jaxloss, self.name)
        x, t = self._inputs(logits, labels)
        return fn(x, t, reduction=self.spec.reduction, **dict(self.options))

    def per_example(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """(N,) losses whose mean is :meth:`__call__` (for masked evaluation)."""
        fn = getattr(jaxloss, self.name)
        x, t = self._inputs(logits, labels)
        out = fn(x, t, reduction="none", **dict(self.options))
        if out.ndim == 2:
            out = out.sum(axis=1) if self.spec.per_example == "sum" else out.mean(axis=1)
        return out


def make_loss(name: str, **options: Any) -> Loss:
    """Bind a jaxloss loss by name; ``options`` with value ``None`` are left at the loss's default."""
    if name not in LOSSES:
        if name in _NOT_CLASSIFICATION:
            raise ValueError(f"--loss {name}: not a classification loss ({_NOT_CLASSIFICATION[name]})")
        raise ValueError(f"unknown --loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}")
    given = {k: v for k, v in options.items() if v is not None}
    bad = sorted(set(given) - set(LOSSES[name].options))
    if bad:
        allowed = ", ".join("--" + o.replace("_", "-") for o in LOSSES[name].options) or "none"
        raise ValueError(
            f"--loss {name} takes no option {', '.join('--' + b.replace('_', '-') for b in bad)} "
            f"(its options: {allowed})"
        )
    return Loss(name, tuple(sorted(given.items())))


# =========================================================================== config / results
@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a run (``python -m train --help`` documents each field)."""

    model: str = "seed-cnn"
    activation: str | None = None  # seed-cnn only: None (the seed's, linear) or 'relu'
    cifar_stem: bool = False  # resnet18 only
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = False
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 500
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    lr_schedule: str = "constant"  # constant | step | cosine
    lr_step_size: int = 30  # epochs (step schedule)
    lr_gamma: float = 0.1  # step schedule factor
    lr_min: float = 0.0  # cosine floor
    loss: str = "cross_entropy"
    loss_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    precision: str = "fp32"  # fp32 | bf16
    seed: int = 0
    augment: bool = True  # random crop (padding 4) + flip where the dataset allows it
    out: str = "runs/latest"
    checkpoint_dir: str | None = None  # default: <out>/checkpoints
    checkpoint_every: int = 1  # epochs; 0: only on Ctrl-C
    resume: bool = False
    num_devices: int | None = None  # default: all devices
    progress: bool = True
    plot: bool = True

    # what must match for --resume to continue the same run (epochs may grow)
    _RESUME_KEYS = (
        "model",
        "activation",
        "cifar_stem",
        "dataset",
        "batch_size",
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
        "nesterov",
        "lr_schedule",
        "lr_step_size",
        "lr_gamma",
        "lr_min",
        "loss",
        "loss_options",
        "precision",
        "seed",
        "augment",
    )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.out) / "checkpoints"


@dataclasses.dataclass
class TrainResult:
    model: nnx.Module  # the trained model, in eval mode
    params: Any  # nnx.State of the parameters (replicated jax arrays)
    rest: Any  # nnx.State of the other variables (BatchNorm statistics)
    history: list[dict[str, Any]]  # one record per finished epoch (also metrics.jsonl)
    global_step: int
    interrupted: bool = False


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGINT stopped training; ``checkpoint`` is the step saved (None if none could be)."""

    def __init__(self, checkpoint: int | None, directory: Path) -> None:
        super().__init__(f"interrupted; checkpoint {checkpoint} saved in {directory}")
        self.checkpoint = checkpoint
        self.directory = directory


# =========================================================================== distributed / mesh
def init_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """``jax.distributed.initialize`` when launched as one of several processes; True if it did.

    Recognised (``environ``, default ``os.environ``):

    * ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) + ``JAX_NUM_PROCESSES`` +
      ``JAX_PROCESS_ID``;
    * torchrun-style ``MASTER_ADDR`` / ``MASTER_PORT`` (default 29500) + ``WORLD_SIZE`` + ``RANK``;
    * the launchers JAX detects by itself (SLURM ``srun``, Open MPI ``mpirun``) when they
      start more than one task (``SLURM_NTASKS`` / ``OMPI_COMM_WORLD_SIZE`` > 1).

    A single process (none of these, or a count of 1) does nothing. Every process then sees
    every process's devices in ``jax.devices()``; :func:`make_mesh` spans them all. A
    launch with a count above 1 but no process id raises ValueError naming the variable.
    """
    env = os.environ if environ is None else environ

    def need_int(name: str) -> int:
        value = env.get(name)
        if value is None or not value.strip().lstrip("-").isdigit():
            raise ValueError(
                f"multi-process launch: environment variable {name} must be an integer, got {value!r}"
            )
        return int(value)

    if env.get("JAX_COORDINATOR_ADDRESS") and need_int("JAX_NUM_PROCESSES") > 1:
        jax.distributed.initialize(
            env["JAX_COORDINATOR_ADDRESS"], need_int("JAX_NUM_PROCESSES"), need_int("JAX_PROCESS_ID")
        )
        return True
    if env.get("MASTER_ADDR") and int(env.get("WORLD_SIZE", "1")) > 1:
        jax.distributed.initialize(
            f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '29500')}",
            need_int("WORLD_SIZE"),
            need_int("RANK"),
        )
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        jax.distributed.initialize()
        return True
    return False


def make_mesh(num_devices: int | None = None) -> Mesh:
    """1-D ``('data',)`` mesh over the first ``num_devices`` devices (default: all, every process's)."""
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices={num_devices}, but {len(devices)} devices are available")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), ("data",))


def _put(value: Any, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value every process holds in full (works multi-host)."""
    arr = np.asarray(value)
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


def _put_tree(tree: Any, sharding: NamedSharding) -> Any:
    return jax.tree.map(lambda x: _put(x, sharding), tree)


# =========================================================================== progress bar
class Progress:
    """A stdlib progress bar: ``desc [####------] k/n  key value ...`` on stderr.

    On a terminal it redraws in place, at most every ``interval`` seconds (:meth:`due` says
    when, so that the caller reads device values only then); otherwise (logs, CI) it prints
    one line when closed.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        interval: float = 0.25,
    ) -> None:
        self.total, self.desc, self.enabled, self.interval = total, desc, enabled, interval
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = float("-inf")

    def due(self) -> bool:
        return self.enabled and self.tty and time.monotonic() - self.last >= self.interval

    def update(self, n: int, postfix: str) -> None:
        self.last = time.monotonic()
        self._draw(n, postfix, "\r")

    def close(self, n: int, postfix: str) -> None:
        if self.enabled:
            self._draw(n, postfix, "\n")

    def _draw(self, n: int, postfix: str, end: str) -> None:
        frac = n / self.total if self.total else 1.0
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        line = f"{self.desc} [{bar}] {n:>{len(str(self.total))}}/{self.total}  {postfix}"
        self.stream.write(line + ("\x1b[K" if self.tty else "") + end)  # \x1b[K: clear the rest of the line
        self.stream.flush()


def _postfix(sums: jax.Array, images: int, seconds: float) -> str:
    """Progress text from the running (loss sum, correct, count); reading ``sums`` waits for the device."""
    s = np.asarray(jax.device_get(sums))
    n = max(float(s[2]), 1.0)
    rate = f"{images / max(seconds, 1e-9):,.0f}" if images else "-"  # none: resumed at the epoch's end
    return f"loss {s[0] / n:.4f}  acc {100 * s[1] / n:.2f}%  {rate} img/s"


# =========================================================================== steps
def _make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> float | optax.Schedule:
    from train import optim

    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":
        return optim.step_lr(cfg.lr, cfg.lr_step_size, cfg.lr_gamma, steps_per_epoch)
    if cfg.lr_schedule == "cosine":
        return optim.cosine_annealing(cfg.lr, cfg.epochs, eta_min=cfg.lr_min, steps_per_epoch=steps_per_epoch)
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; choose constant, step or cosine")


def _make_optimizer(cfg: TrainConfig, lr: float | optax.Schedule) -> optax.GradientTransformation:
    from train import optim

    kw: dict[str, Any] = {"weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        kw.update(momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif cfg.nesterov:
        raise ValueError("--nesterov applies to --optimizer sgd only")
    return optim.make_optimizer(cfg.optimizer, lr, **kw)


def _build_model(cfg: TrainConfig, num_classes: int) -> nnx.Module:
    from train.models import build_model

    kw: dict[str, Any] = {}
    if cfg.precision == "bf16":
        kw["dtype"] = jnp.bfloat16
    elif cfg.precision != "fp32":
        raise ValueError(f"--precision must be fp32 or bf16, got {cfg.precision!r}")
    if cfg.model.replace("_", "-") == "seed-cnn":
        if cfg.activation not in (None, "none"):
            kw["activation"] = cfg.activation
    elif cfg.activation not in (None, "none"):
        raise ValueError("--activation applies to --model seed-cnn only")
    if cfg.cifar_stem:
        kw["cifar_stem"] = True

    def build(seed: Any) -> nnx.Module:
        return build_model(cfg.model, rngs=nnx.Rngs(jax.random.key(seed)), num_classes=num_classes, **kw)

    # The same parameters as build_model(..., rngs=nnx.Rngs(seed)), initialised by one compiled program
    # with the seed as its argument (eagerly, every initializer is compiled on its own: seconds on CPU).
    graphdef = nnx.graphdef(nnx.eval_shape(build, 0))
    state = jax.jit(lambda seed: nnx.state(build(seed)))(np.int32(cfg.seed))
    return nnx.merge(graphdef, state)


_AUGMENT = 0x61756700  # folded into key(seed) for augmentation, apart from nnx.Rngs(seed)'s streams


def _train_step_fn(
    graphdef: Any,
    tx: optax.GradientTransformation,
    loss: Loss,
    *,
    batch_size: int,
    augment: bool,
    flip: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_sharding: NamedSharding,
) -> Callable[..., Any]:
    def step(
        params: Any,
        rest: Any,
        opt_state: Any,
        sums: jax.Array,
        x_all: jax.Array,
        y_all: jax.Array,
        perm: jax.Array,
        seed: jax.Array,
        epoch: jax.Array,
        i: jax.Array,
    ) -> Any:
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
        idx = jax.lax.with_sharding_constraint(idx, batch_sharding)
        images, labels = x_all[idx], y_all[idx]
        if augment:
            key = jax.random.fold_in(
                jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _AUGMENT), epoch), i
            )
            x = augment_batch(key, images, padding=4, flip=flip, mean=mean, std=std)
        else:
            x = normalize(images, mean, std)
        x = jax.lax.with_sharding_constraint(x, batch_sharding)

        def loss_fn(p: Any) -> Any:
            model = nnx.merge(
                graphdef, p, rest, copy=True
            )  # fresh Variables: BatchNorm updates them in this trace
            logits = model(x).astype(jnp.float32)
            new_rest = nnx.split(model, nnx.Param, ...)[2]
            return loss(logits, labels).astype(jnp.float32), (logits, new_rest)

        (value, (logits, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == labels, dtype=jnp.float32)
        sums = sums + jnp.stack([value * batch_size, correct, jnp.float32(batch_size)]).astype(sums.dtype)
        return params, new_rest, opt_state, sums

    return step


def _eval_step_fn(
    graphdef: Any,
    loss: Loss,
    *,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_sharding: NamedSharding,
) -> Callable[..., Any]:
    def step(
        params: Any,
        rest: Any,
        sums: jax.Array,
        x_all: jax.Array,
        y_all: jax.Array,
        mask_all: jax.Array,
        i: jax.Array,
    ) -> jax.Array:
        sl = partial(jax.lax.dynamic_slice_in_dim, start_index=i * batch_size, slice_size=batch_size)
        images, labels, mask = sl(x_all), sl(y_all), sl(mask_all)
        x = jax.lax.with_sharding_constraint(normalize(images, mean, std), batch_sharding)
        model = nnx.merge(graphdef, params, rest)
        logits = model(x).astype(jnp.float32)
        per = loss.per_example(logits, labels).astype(jnp.float32)
        correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
        return sums + jnp.stack([jnp.sum(per * mask), jnp.sum(correct * mask), jnp.sum(mask)])

    return step


# =========================================================================== outputs
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def plot_history(history: list[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """PNG of train/test loss and accuracy per epoch (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train (mean over the epoch's steps)")
    ax1.plot(ep, [h["test_loss"] for h in history], "s-", label="test (after the epoch)")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train (mean over the epoch's steps)")
    ax2.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test (after the epoch)")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        if ep:
            ax.set_xticks(ep if len(ep) <= 20 else ep[:: math.ceil(len(ep) / 20)])
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# =========================================================================== the loop
class _SigintFlag:
    """Turns the first SIGINT into a flag checked between steps; a second one interrupts at once."""

    def __init__(self) -> None:
        self.set = False
        self._old: Any = None

    def __enter__(self) -> _SigintFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _lr_at(lr: float | optax.Schedule, step: int) -> float:
    return float(lr(step)) if callable(lr) else float(lr)


def train(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    model: nnx.Module | None = None,
    on_step: Callable[[int, int], None] | None = None,
    log: IO[str] | None = None,
) -> TrainResult:
    """Train as ``cfg`` says; return the trained model and the per-epoch history.

    ``dataset`` overrides loading ``cfg.dataset``; ``model`` (a freshly initialised NNX module,
    NHWC images -> logits, used as it is: ``cfg.model``/``precision`` do not rebuild it) overrides
    ``cfg.model``. ``on_step(epoch, step)`` is called after each
    step (tests use it to send SIGINT). Raises :class:`TrainingInterrupted` (a
    ``KeyboardInterrupt``) after saving a checkpoint when interrupted by Ctrl-C / SIGINT.
    """
    log = log if log is not None else sys.stderr
    main_process = jax.process_index() == 0
    say = (lambda msg: print(msg, file=log, flush=True)) if main_process else (lambda msg: None)
    show = cfg.progress and main_process
    loss = make_loss(cfg.loss, **cfg.loss_options)
    ds = (
        dataset
        if dataset is not None
        else load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download, progress=show)
    )

    mesh = make_mesh(cfg.num_devices)
    n_dev = mesh.devices.size
    if cfg.batch_size % n_dev:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the device count ({n_dev})")
    n_train = ds.x_train.shape[0]
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the training set ({n_train} images)")
    eval_bs = max(n_dev, min(cfg.eval_batch_size, ds.x_test.shape[0]) // n_dev * n_dev)
    repl, batch_sh = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    # ---- resume: find the checkpoint and check it belongs to this run before compiling anything
    ckpt = Checkpointer(cfg.checkpoint_path)
    meta: dict[str, Any] | None = None
    if cfg.resume:
        if ckpt.latest_step() is None:
            ckpt.close()
            raise FileNotFoundError(f"--resume: no checkpoint in {ckpt.directory}")
        meta = ckpt.meta()
        _check_resume(cfg, meta["config"])

    # ---- model, optimizer, state (replicated)
    model = _build_model(cfg, ds.num_classes) if model is None else model
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    lr = _make_schedule(cfg, steps_per_epoch)
    tx = _make_optimizer(cfg, lr)
    opt_state = tx.init(params)
    sums = np.zeros(3, np.float32)
    params, rest, opt_state, sums = _put_tree((params, rest, opt_state, sums), repl)

    # ---- data on the device (replicated uint8), test set padded to whole eval batches
    x_train, y_train = _put(ds.x_train, repl), _put(ds.y_train.astype(np.int32), repl)
    n_test = ds.x_test.shape[0]
    n_eval_batches = -(-n_test // eval_bs)
    pad = n_eval_batches * eval_bs - n_test
    x_test = _put(np.concatenate([ds.x_test, np.zeros((pad, *ds.x_test.shape[1:]), np.uint8)]), repl)
    y_test = _put(np.concatenate([ds.y_test.astype(np.int32), np.zeros(pad, np.int32)]), repl)
    m_test = _put(np.concatenate([np.ones(n_test, np.float32), np.zeros(pad, np.float32)]), repl)
    seed = _put(np.int32(cfg.seed), repl)

    def permutation(epoch: int) -> jax.Array:
        """The epoch's shuffle: numpy's PCG64 seeded with (seed, epoch), the same on every host."""
        return _put(np.random.default_rng([cfg.seed, epoch]).permutation(n_train).astype(np.int32), repl)

    # ---- compile ahead of time (timings below exclude compilation)
    t0 = time.perf_counter()
    step_fn = _train_step_fn(
        graphdef,
        tx,
        loss,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        flip=bool(ds.hflip),
        mean=ds.mean,
        std=ds.std,
        batch_sharding=batch_sh,
    )
    eval_fn = _eval_step_fn(
        eval_graphdef, loss, batch_size=eval_bs, mean=ds.mean, std=ds.std, batch_sharding=batch_sh
    )
    perm = permutation(0)
    options = compiler_options()  # XLA:CPU: YNNPACK for reductions only (see train.step)
    train_step = (
        jax.jit(step_fn, donate_argnums=(0, 1, 2, 3))
        .lower(params, rest, opt_state, sums, x_train, y_train, perm, seed, np.int32(0), np.int32(0))
        .compile(options)
    )
    eval_step = (
        jax.jit(eval_fn, donate_argnums=(2,))
        .lower(params, rest, sums, x_test, y_test, m_test, np.int32(0))
        .compile(options)
    )
    compile_s = time.perf_counter() - t0

    history: list[dict[str, Any]] = []
    epoch, step, global_step = 0, 0, 0  # the position: next step to run
    if meta is not None:
        (params, rest, opt_state, sums), meta = ckpt.restore((params, rest, opt_state, sums))
        epoch, step, global_step = meta["epoch"], meta["step"], meta["global_step"]
        history = list(meta["history"])
        say(f"resumed from {ckpt.directory}/{global_step}: epoch {epoch + 1}, step {step}")
    out = Path(cfg.out)
    say(
        f"{cfg.model} on {ds.name} ({n_train} train / {n_test} test), {n_dev} device(s) "
        f"[{jax.devices()[0].platform}], batch {cfg.batch_size}, {steps_per_epoch} steps/epoch, "
        f"{cfg.optimizer} lr {cfg.lr}, loss {cfg.loss}, {cfg.precision}; compiled in {compile_s:.1f} s"
    )

    def save() -> int:
        meta = {
            "epoch": epoch,
            "step": step,
            "global_step": global_step,
            "config": cfg.to_json(),
            "history": history,
        }
        ckpt.save(global_step, (params, rest, opt_state, sums), meta)
        return global_step

    def state_alive() -> bool:
        leaves = jax.tree.leaves((params, rest, opt_state, sums))
        return not any(getattr(x, "is_deleted", lambda: False)() for x in leaves)

    try:
        with _SigintFlag() as sigint:
            while epoch < cfg.epochs:
                if step == 0:
                    sums = _put(np.zeros(3, np.float32), repl)
                perm = permutation(epoch)
                first = step
                bar = Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", stream=log, enabled=show)
                t_epoch = time.perf_counter()

                while step < steps_per_epoch:
                    params, rest, opt_state, sums = train_step(
                        params,
                        rest,
                        opt_state,
                        sums,
                        x_train,
                        y_train,
                        perm,
                        seed,
                        np.int32(epoch),
                        np.int32(step),
                    )
                    step, global_step = step + 1, global_step + 1
                    if on_step is not None:
                        on_step(epoch, step - 1)
                    if sigint.set:
                        raise KeyboardInterrupt
                    if bar.due():
                        bar.update(
                            step,
                            _postfix(sums, (step - first) * cfg.batch_size, time.perf_counter() - t_epoch),
                        )
                jax.block_until_ready(sums)
                train_time = time.perf_counter() - t_epoch
                ran = steps_per_epoch - first
                bar.close(step, _postfix(sums, ran * cfg.batch_size, train_time))
                s_train = np.asarray(jax.device_get(sums))

                esums = _put(np.zeros(3, np.float32), repl)
                for b in range(n_eval_batches):
                    esums = eval_step(params, rest, esums, x_test, y_test, m_test, np.int32(b))
                    if sigint.set:
                        raise KeyboardInterrupt
                s_test = np.asarray(jax.device_get(esums))
                record = {
                    "epoch": epoch + 1,
                    "step": global_step,
                    "lr": _lr_at(lr, global_step - 1),
                    "train_loss": float(s_train[0] / s_train[2]),
                    "train_acc": float(s_train[1] / s_train[2]),
                    "test_loss": float(s_test[0] / s_test[2]),
                    "test_acc": float(s_test[1] / s_test[2]),
                    "images_per_s": ran * cfg.batch_size / train_time if ran else None,
                    "train_time_s": train_time,
                    "eval_time_s": time.perf_counter() - t_epoch - train_time,
                }
                history.append(record)
                epoch, step = epoch + 1, 0
                say(
                    f"epoch {epoch}/{cfg.epochs}: train loss {record['train_loss']:.4f} acc "
                    f"{100 * record['train_acc']:.2f}% | test loss {record['test_loss']:.4f} acc "
                    f"{100 * record['test_acc']:.2f}% | "
                    + (f"{record['images_per_s']:,.0f}" if record["images_per_s"] else "-")
                    + " img/s"
                )
                if main_process:
                    _write_metrics(out, history)
                if cfg.checkpoint_every and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs):
                    save()
    except KeyboardInterrupt:
        saved = None
        if state_alive():
            saved = save()
            say(
                f"\ninterrupted at epoch {epoch + 1}, step {step}: "
                f"checkpoint {saved} saved in {ckpt.directory}; "
                "continue with --resume"
            )
        else:
            say("\ninterrupted mid-update; no checkpoint could be saved")
        if main_process:
            _write_metrics(out, history)
        ckpt.close()
        raise TrainingInterrupted(saved, ckpt.directory) from None
    ckpt.close()

    if main_process:
        _write_metrics(out, history)
        if cfg.plot and history:
            png = plot_history(
                history, out / "curves.png", f"{cfg.model} on {ds.name} ({cfg.loss}, {cfg.precision})"
            )
            say(f"metrics: {out / 'metrics.jsonl'}, curves: {png}")
    final = nnx.merge(eval_graphdef, params, rest)
    return TrainResult(final, params, rest, history, global_step)


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    _write_atomic(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def _check_resume(cfg: TrainConfig, saved: Mapping[str, Any]) -> None:
    now = cfg.to_json()
    diff = [
        f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}"
        for k in TrainConfig._RESUME_KEYS
        if json.loads(json.dumps(now[k])) != saved.get(k)
    ]
    if cfg.lr_schedule == "cosine" and saved.get("epochs") != cfg.epochs:
        diff.append(
            f"epochs (the cosine schedule's length): checkpoint {saved.get('epochs')}, now {cfg.epochs}"
        )
    if diff:
        raise ValueError("--resume: the checkpoint was written by a different run:\n  " + "\n  ".join(diff))
