"""The training loop: state in, history out.

:func:`jaxloss.train` builds the run from its :class:`~jaxloss.train.config.TrainConfig` through
:mod:`jaxloss.train.recipe` (model, optimizer with schedule, loss), puts the state and the data set
on the ``('data',)`` mesh (:mod:`jaxloss.train.mesh`), and runs :func:`jaxloss.train.step.make_train_step`
(the one train step, compiled ahead of time so epoch timings exclude compilation) on the
batches :mod:`jaxloss.train.feed` gathers and augments on the device. Each epoch ends with an
evaluation over the whole test set (padded, masked) by :func:`jaxloss.train.step.make_eval_step`,
a record in ``metrics.jsonl`` and, every ``checkpoint_every`` epochs, a verified
checkpoint (:mod:`jaxloss.train.checkpoint`). Ctrl-C saves one and raises
:class:`TrainingInterrupted`; ``resume`` continues from the newest intact checkpoint to the
same final parameters as an uninterrupted run.

The last partial training batch of an epoch is dropped (``drop_last=True``): every step
has the same shape (one compilation) and divides over the devices. With N devices the
global batch is split N ways and BatchNorm statistics are those of the global batch
(SyncBatchNorm), not per device as in plain torch DDP.

Precision: ``fp32`` compiles the step with ``jax.default_matmul_precision('highest')``
(true float32 on every device; on GPUs XLA otherwise uses TF32), ``tf32`` with
``'tensorfloat32'``, ``bf16`` computes in bfloat16 with float32 parameters, optimizer
state, BatchNorm statistics, logits and loss.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxloss.train.checkpoint import CheckpointBusy, Checkpointer, CheckpointError
from jaxloss.train.config import MATMUL_PRECISION, RESUME_KEYS, ConfigError, TrainConfig, validate
from jaxloss.train.data import Dataset, load_dataset
from jaxloss.train.feed import make_eval_batch, make_train_batch, padded_test_set, permutation
from jaxloss.train.mesh import make_mesh, put, put_tree
from jaxloss.train.outputs import check_writable_dir, epoch_line, header, plot_history, write_metrics
from jaxloss.train.progress import Progress
from jaxloss.train.recipe import build_loss, build_model, build_optimizer
from jaxloss.train.signals import SigintFlag
from jaxloss.train.step import make_eval_step, make_train_step

__all__ = ["Run", "State", "TrainResult", "TrainingInterrupted", "check_resume", "end_epoch", "evaluate", "setup",
           "train", "train_epoch"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`jaxloss.train` returns: the trained model (eval mode), its state and the history.

    (:func:`jaxloss.train`'s example shows one.)

    >>> from jaxloss.train.loop import TrainResult
    >>> [f for f in TrainResult.__dataclass_fields__][:3]
    ['model', 'params', 'rest']
    """

    model: nnx.Module  # the trained model, in eval mode
    params: Any  # nnx.State of the parameters (replicated jax arrays)
    rest: Any  # nnx.State of the other variables (BatchNorm statistics)
    history: list[dict[str, Any]]  # one record per finished epoch (also metrics.jsonl)
    global_step: int
    interrupted: bool = False


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGINT stopped training; ``checkpoint`` is the step saved (None if none could be).

    >>> from pathlib import Path
    >>> from jaxloss.train.loop import TrainingInterrupted
    >>> e = TrainingInterrupted(40, Path("runs/ck"))
    >>> isinstance(e, KeyboardInterrupt), e.checkpoint
    (True, 40)
    """

    def __init__(self, checkpoint: int | None, directory: Path) -> None:
        saved = f"checkpoint {checkpoint} saved in {directory}" if checkpoint is not None else "no checkpoint saved"
        super().__init__(f"interrupted; {saved}")
        self.checkpoint = checkpoint
        self.directory = directory


def check_resume(cfg: TrainConfig, saved: dict[str, Any], done_epochs: int) -> None:
    """Raise :class:`ConfigError` unless ``cfg`` continues the run whose config is ``saved``.

    Every setting that changes the trajectory must match (:data:`jaxloss.train.config.RESUME_KEYS`;
    under the cosine schedule ``epochs`` too, its length); ``epochs`` must exceed the epochs
    the checkpoint has finished.

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.loop import check_resume
    >>> check_resume(TrainConfig(epochs=3), TrainConfig(epochs=3).to_json(), 3)
    Traceback (most recent call last):
    ...
    jaxloss.train.config.ConfigError: epochs is 3, and the checkpoint has already finished 3 epochs: nothing to train (raise epochs to continue)
    """
    now = cfg.to_json()
    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}" for k in RESUME_KEYS if now[k] != saved.get(k)]
    if cfg.lr_schedule == "cosine" and saved.get("epochs") != cfg.epochs:
        diff.append(f"epochs (the cosine schedule's length): checkpoint {saved.get('epochs')}, now {cfg.epochs}")
    if diff:
        raise ConfigError("resume", "the checkpoint was written by a different run:\n  " + "\n  ".join(diff))
    if done_epochs >= cfg.epochs:
        raise ConfigError(
            "epochs",
            f"is {cfg.epochs}, and the checkpoint has already finished {done_epochs} epochs: "
            "nothing to train (raise epochs to continue)",
        )


def _open_checkpoints(cfg: TrainConfig) -> tuple[Checkpointer, dict[str, Any] | None]:
    """The checkpoint folder (locked against a second writer), and with ``resume`` the meta of its newest readable checkpoint.

    A fresh run refuses a folder holding an earlier run's checkpoints unless ``overwrite``.
    A resume is refused here only when every readable checkpoint has finished the epochs
    asked for: the newest may turn out damaged, and an older one continue the run.
    """
    try:
        ckpt = Checkpointer(cfg.checkpoint_path)
    except CheckpointBusy as e:
        raise ConfigError("checkpoint_dir", str(e)) from None
    try:
        return ckpt, _check_checkpoints(cfg, ckpt)
    except BaseException:
        ckpt.close()  # releases the folder's lock
        raise


def _check_checkpoints(cfg: TrainConfig, ckpt: Checkpointer) -> dict[str, Any] | None:
    steps = ckpt.all_steps()
    if not cfg.resume:
        if steps and not cfg.overwrite:
            raise ConfigError(
                "checkpoint_dir",
                f"{ckpt.directory} holds checkpoints of an earlier run (steps {steps}): "
                "resume it, or overwrite them to start afresh, or choose another folder",
            )
        if steps:
            ckpt.delete_all()
        return None
    if not steps:
        raise ConfigError("resume", f"no checkpoint in {ckpt.directory}")
    metas = []
    for step in reversed(steps):
        try:
            metas.append(ckpt.meta(step))
        except CheckpointError:  # a damaged meta: restore() reports it and falls back
            continue
    if metas:
        check_resume(cfg, metas[0]["config"], min(m["epoch"] for m in metas))
        return metas[0]
    return {}  # every meta damaged: restore() raises naming each folder


def _position_problem(meta: dict[str, Any], steps_per_epoch: int) -> str | None:
    """What makes a checkpoint's position impossible for this run (None: nothing).

    >>> from jaxloss.train.loop import _position_problem
    >>> _position_problem({"epoch": 2, "step": 1, "global_step": 11, "history": [{}, {}]}, 5) is None
    True
    >>> _position_problem({"epoch": 2, "step": 1, "global_step": 9, "history": [{}, {}]}, 5)
    'global_step 9 is not epoch 2 x 5 steps + step 1 (written with another data set or batch size?)'
    """
    epoch, step, global_step = meta["epoch"], meta["step"], meta["global_step"]
    if step > steps_per_epoch or global_step != epoch * steps_per_epoch + step:
        return (f"global_step {global_step} is not epoch {epoch} x {steps_per_epoch} steps + step {step} "
                "(written with another data set or batch size?)")  # fmt: skip
    if len(meta["history"]) != epoch:
        return f"its history holds {len(meta['history'])} epochs, not {epoch}"
    return None


def _postfix(sums: Any, images: int, seconds: float) -> str:
    """Progress text from the running (loss sum, correct, count); reading ``sums`` waits for the device."""
    s = np.asarray(jax.device_get(sums))
    n = max(float(s[2]), 1.0)
    rate = f"{images / max(seconds, 1e-9):,.0f}" if images else "-"  # none: resumed at the epoch's end
    return f"loss {s[0] / n:.4f}  acc {100 * s[1] / n:.2f}%  {rate} img/s"


@dataclasses.dataclass(frozen=True)
class Run:
    """What :func:`setup` builds once and training only reads: the config, the data set on the
    device, the two compiled steps and their batch makers, the schedule, the checkpoint folder.

    (:func:`train_epoch`'s example builds one.)

    >>> from jaxloss.train.loop import Run
    >>> [f for f in Run.__dataclass_fields__][:4]
    ['cfg', 'ds', 'steps_per_epoch', 'n_eval_batches']
    """

    cfg: TrainConfig
    ds: Dataset
    steps_per_epoch: int
    n_eval_batches: int
    repl: NamedSharding  # replicated over the ('data',) mesh
    train_data: tuple[Any, Any]  # x_train (uint8), y_train on the device
    test_data: tuple[Any, Any, Any]  # x_test, y_test, mask, padded to whole eval batches
    seed: Any  # cfg.seed on the device (augmentation)
    batch: Callable[..., Any]  # (x, y, perm, seed, epoch, step) -> a sharded, augmented training batch
    eval_batch: Callable[..., Any]  # (x, y, mask, i) -> the i-th test batch
    train_step: Any  # compiled: (params, rest, opt_state, sums, x, y) -> (params, rest, opt_state, sums, loss)
    eval_step: Any  # compiled: (params, rest, sums, x, y, mask) -> sums
    lr: Any  # the schedule (or a constant)
    eval_graphdef: Any
    ckpt: Checkpointer
    say: Callable[[str], None]  # a line on the log, from process 0 only
    log: IO[str]
    main_process: bool
    on_step: Callable[[int, int], None] | None


@dataclasses.dataclass(frozen=True)
class State:
    """What training changes: the replicated arrays (parameters, other variables, optimizer state,
    the epoch's running (loss sum, correct, count)), the position (the next step to run) and the
    per-epoch history. Every function takes one and returns the next.

    >>> from jaxloss.train.loop import State
    >>> s = State(params={}, rest={}, opt_state=(), sums=None)
    >>> s.epoch, s.step, s.global_step, s.history, s.arrays
    (0, 0, 0, [], ({}, {}, (), None))
    """

    params: Any
    rest: Any
    opt_state: Any
    sums: Any
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def arrays(self) -> tuple[Any, Any, Any, Any]:
        return self.params, self.rest, self.opt_state, self.sums


class _Stopped(KeyboardInterrupt):
    """A KeyboardInterrupt inside :func:`train_epoch`, carrying the last state it reached."""

    def __init__(self, state: State) -> None:
        super().__init__()
        self.state = state


def setup(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    model: nnx.Module | None = None,
    on_step: Callable[[int, int], None] | None = None,
    log: IO[str] | None = None,
) -> tuple[Run, State]:
    """Check everything, load the data, build and compile the run, resume it if asked: ``(run, state)``.

    Every :class:`~jaxloss.train.config.ConfigError` is raised here, before anything compiles
    (a wrong ``resume`` included). The checkpoint folder is locked until ``run.ckpt.close()``.
    The arguments are :func:`train`'s; :func:`train_epoch`'s example drives a run by hand.

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.loop import setup
    >>> setup(TrainConfig(batch_size=0))
    Traceback (most recent call last):
    ...
    jaxloss.train.config.ConfigError: batch_size must be a positive integer, got 0
    """
    validate(cfg)
    log = log if log is not None else sys.stderr
    main_process = jax.process_index() == 0
    say = (lambda msg: print(msg, file=log, flush=True)) if main_process else (lambda msg: None)
    for field in ("out", "checkpoint_dir"):
        check_writable_dir(cfg.out if field == "out" else cfg.checkpoint_path, field)
    loss = build_loss(cfg)
    ds = _load(cfg, dataset, show=cfg.progress and main_process)
    mesh = make_mesh(cfg.num_devices)
    n_dev = mesh.devices.size
    if cfg.batch_size % n_dev:
        raise ConfigError("batch_size", f"must be a multiple of the device count ({n_dev}), got {cfg.batch_size}")
    n_train, n_test = ds.x_train.shape[0], ds.x_test.shape[0]
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError("batch_size", f"is larger than the training set ({n_train} images), got {cfg.batch_size}")
    eval_bs = max(n_dev, min(cfg.eval_batch_size, n_test) // n_dev * n_dev)
    repl, batch_sh = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    ckpt, meta = _open_checkpoints(cfg)  # a wrong --resume fails here, before anything compiles
    try:
        # the state, replicated
        model = build_model(cfg, ds.num_classes) if model is None else model
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        model.eval()
        eval_graphdef = nnx.graphdef(model)
        tx, lr = build_optimizer(cfg, steps_per_epoch)
        state = State(*put_tree((params, rest, tx.init(params), np.zeros(3, np.float32)), repl))
        # the data on the device (replicated uint8), the test set padded to whole eval batches
        train_data = put(ds.x_train, repl), put(ds.y_train.astype(np.int32), repl)
        *test, n_eval_batches = padded_test_set(ds.x_test, ds.y_test, eval_bs)
        test_data, seed = put_tree(test, repl), put(np.int32(cfg.seed), repl)
        # compiled ahead of time: the epoch timings exclude compilation
        t0, precision = time.perf_counter(), MATMUL_PRECISION[cfg.precision]
        batch = make_train_batch(batch_size=cfg.batch_size, augment=cfg.augment, flip=bool(ds.hflip), mean=ds.mean,
                                 std=ds.std, sharding=batch_sh)  # fmt: skip
        eval_batch = make_eval_batch(batch_size=eval_bs, mean=ds.mean, std=ds.std, sharding=batch_sh)
        x0, y0 = batch(*train_data, put(permutation(cfg.seed, 0, n_train), repl), seed, np.int32(0), np.int32(0))
        train_step = make_train_step(graphdef, tx, loss, matmul_precision=precision).lower(*state.arrays, x0, y0).compile()
        ex, ey, em = eval_batch(*test_data, np.int32(0))
        eval_step = make_eval_step(eval_graphdef, loss, matmul_precision=precision).lower(
            state.params, state.rest, state.sums, ex, ey, em).compile()  # fmt: skip
        compile_s = time.perf_counter() - t0
        run = Run(cfg, ds, steps_per_epoch, n_eval_batches, repl, train_data, test_data, seed, batch, eval_batch,
                  train_step, eval_step, lr, eval_graphdef, ckpt, say, log, main_process, on_step)  # fmt: skip
        if meta is not None:
            state = _resume(run, state, meta)
        say(header(cfg, {"data": f"{ds.name} ({n_train} train / {n_test} test)", "steps/epoch": steps_per_epoch,
                         "devices": f"{n_dev} x {jax.devices()[0].platform}", "processes": jax.process_count(),
                         "compiled in": f"{compile_s:.1f} s"}))  # fmt: skip
        return run, state
    except BaseException:
        ckpt.close()  # releases the folder's lock
        raise


def _load(cfg: TrainConfig, dataset: Dataset | None, show: bool) -> Dataset:
    """``dataset``, or ``cfg.dataset`` loaded; its first ``cfg.subset`` training images."""
    ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download, progress=show)
    if cfg.subset is None:
        return ds
    if cfg.subset > ds.x_train.shape[0]:
        raise ConfigError("subset", f"is larger than the training set ({ds.x_train.shape[0]} images), got {cfg.subset}")
    return dataclasses.replace(ds, x_train=ds.x_train[: cfg.subset], y_train=ds.y_train[: cfg.subset])


def _resume(run: Run, state: State, meta: dict[str, Any]) -> State:
    """``state`` replaced by the newest intact checkpoint (an older one if the newest is damaged)."""
    arrays, meta = run.ckpt.restore(state.arrays, warn=run.say,
                                    check=lambda m: _position_problem(m, run.steps_per_epoch))  # fmt: skip
    check_resume(run.cfg, meta["config"], meta["epoch"])
    state = State(*arrays, meta["epoch"], meta["step"], meta["global_step"], list(meta["history"]))
    run.say(f"resumed from {run.ckpt.path(state.global_step)}: epoch {state.epoch + 1}, step {state.step}")
    return state


def train_epoch(run: Run, state: State, sigint: SigintFlag) -> tuple[State, dict[str, Any]]:
    """The rest of ``state``'s epoch, with a progress bar: the state at its end, and the epoch's
    training figures. Ctrl-C (``sigint``) stops it after the step that is running.

    What :func:`train` does, by hand (64 images, batch 32: two steps an epoch):

    >>> import io, tempfile, numpy as np
    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.data import Dataset
    >>> from jaxloss.train.loop import end_epoch, evaluate, setup, train_epoch
    >>> from jaxloss.train.signals import SigintFlag
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8); y = rng.integers(0, 10, 64).astype(np.int32)
    >>> ds = Dataset("mine", x, y, x[:16], y[:16], tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3)
    >>> cfg = TrainConfig(epochs=1, batch_size=32, out=tempfile.mkdtemp(), progress=False, plot=False)
    >>> run, state = setup(cfg, dataset=ds, log=io.StringIO())
    >>> with SigintFlag() as sigint:
    ...     state, train = train_epoch(run, state, sigint)
    ...     test = evaluate(run, state, sigint)
    >>> state.step, state.global_step, sorted(train), sorted(test)
    (2, 2, ['acc', 'images_per_s', 'loss', 'seconds'], ['acc', 'loss', 'seconds'])
    >>> state = end_epoch(state, train, test, run.lr, cfg.precision)
    >>> state.epoch, state.step, state.history[0]["test_acc"] == test["acc"]
    (1, 0, True)
    >>> run.ckpt.close()
    """
    cfg, n_train = run.cfg, run.train_data[0].shape[0]
    if state.step == 0:
        state = dataclasses.replace(state, sums=put(np.zeros(3, np.float32), run.repl))
    perm = put(permutation(cfg.seed, state.epoch, n_train), run.repl)
    first, t0 = state.step, time.perf_counter()
    show = cfg.progress and run.main_process
    with Progress(run.steps_per_epoch, f"epoch {state.epoch + 1}/{cfg.epochs}", stream=run.log, enabled=show) as bar:
        try:
            while state.step < run.steps_per_epoch:
                x, y = run.batch(*run.train_data, perm, run.seed, np.int32(state.epoch), np.int32(state.step))
                *arrays, _ = run.train_step(*state.arrays, x, y)
                state = State(*arrays, state.epoch, state.step + 1, state.global_step + 1, state.history)
                if run.on_step is not None:
                    run.on_step(state.epoch, state.step - 1)
                if sigint.set:
                    raise KeyboardInterrupt
                if bar.due():
                    images = (state.step - first) * cfg.batch_size
                    bar.update(state.step, text=_postfix(state.sums, images, time.perf_counter() - t0))
        except KeyboardInterrupt:
            raise _Stopped(state) from None
        jax.block_until_ready(state.sums)
        seconds, ran = time.perf_counter() - t0, run.steps_per_epoch - first
        bar.update(state.step)
        bar.close(_postfix(state.sums, ran * cfg.batch_size, seconds))
    s = np.asarray(jax.device_get(state.sums))
    images_per_s = ran * cfg.batch_size / seconds if ran else None  # none ran: resumed at the epoch's end
    return state, {"loss": float(s[0] / s[2]), "acc": float(s[1] / s[2]), "images_per_s": images_per_s, "seconds": seconds}


def evaluate(run: Run, state: State, sigint: SigintFlag) -> dict[str, Any]:
    """Loss and accuracy over the whole test set (padding masked out), and the seconds it took.

    The figures are means over the test images: the padding that fills the last batch has weight 0
    (:func:`jaxloss.train.feed.padded_test_set`). :func:`train_epoch`'s example calls it.

    >>> from jaxloss.train.feed import padded_test_set
    >>> import numpy as np
    >>> *_, mask, batches = padded_test_set(np.zeros((5, 32, 32, 3), np.uint8), np.zeros(5, np.int32), 4)
    >>> int(mask.sum()), batches
    (5, 2)
    """
    t0 = time.perf_counter()
    sums = put(np.zeros(3, np.float32), run.repl)
    for b in range(run.n_eval_batches):
        sums = run.eval_step(state.params, state.rest, sums, *run.eval_batch(*run.test_data, np.int32(b)))
        if sigint.set:
            raise KeyboardInterrupt
    s = np.asarray(jax.device_get(sums))
    return {"loss": float(s[0] / s[2]), "acc": float(s[1] / s[2]), "seconds": time.perf_counter() - t0}


def end_epoch(state: State, train: dict[str, Any], test: dict[str, Any], lr: Any, precision: str) -> State:
    """The state at the start of the next epoch, its history one record longer (``train``, ``test``: the
    figures of :func:`train_epoch` and :func:`evaluate`; ``lr``: the schedule, or a constant).

    >>> from jaxloss.train.loop import State, end_epoch
    >>> s = State({}, {}, (), None, epoch=0, step=2, global_step=2)
    >>> s = end_epoch(s, {"loss": 2.3, "acc": 0.1, "images_per_s": 90.0, "seconds": 0.7},
    ...               {"loss": 2.2, "acc": 0.2, "seconds": 0.1}, lambda step: 0.1 / (1 + step), "fp32")
    >>> s.epoch, s.step, s.global_step, s.history[0]["lr"], s.history[0]["test_acc"]
    (1, 0, 2, 0.05, 0.2)
    """
    rate = float(lr(state.global_step - 1)) if callable(lr) else float(lr)  # the last step's
    record = {"epoch": state.epoch + 1, "step": state.global_step, "lr": rate,
              "train_loss": train["loss"], "train_acc": train["acc"], "test_loss": test["loss"], "test_acc": test["acc"],
              "images_per_s": train["images_per_s"], "train_time_s": train["seconds"], "eval_time_s": test["seconds"],
              "precision": precision}  # fmt: skip
    return dataclasses.replace(state, epoch=state.epoch + 1, step=0, history=[*state.history, record])


def _publish_epoch(run: Run, state: State) -> None:
    """After an epoch: its line on the log, ``metrics.jsonl``, and a checkpoint when one is due."""
    cfg = run.cfg
    run.say(epoch_line(state.history[-1], cfg.epochs))
    if run.main_process:
        write_metrics(Path(cfg.out), state.history)
    if cfg.checkpoint_every and (state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs):
        _save(run, state)


def _save(run: Run, state: State) -> int:
    """A verified checkpoint of ``state`` (returns once it has read back intact); its step."""
    record = {"epoch": state.epoch, "step": state.step, "global_step": state.global_step,
              "config": run.cfg.to_json(), "history": state.history}  # fmt: skip
    run.ckpt.save(state.global_step, state.arrays, record)
    return state.global_step


def _interrupted(run: Run, state: State) -> TrainingInterrupted:
    """After Ctrl-C: a checkpoint of ``state`` if its arrays survived (a second Ctrl-C inside a step
    leaves donated, deleted buffers), the metrics so far, and the exception to raise."""
    saved, why = None, "interrupted mid-update"
    if not any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state.arrays)):
        try:
            saved = _save(run, state)
        except CheckpointError as e:
            why = str(e)
    if saved is not None:
        run.say(f"\ninterrupted at epoch {state.epoch + 1}, step {state.step}: checkpoint {saved} saved in "
                f"{run.ckpt.directory}; continue with --resume")  # fmt: skip
    else:
        run.say(f"\ninterrupted; no checkpoint could be saved ({why})")
    if run.main_process:
        write_metrics(Path(run.cfg.out), state.history)
    return TrainingInterrupted(saved, run.ckpt.directory)


def _finish(run: Run, state: State) -> TrainResult:
    """``metrics.jsonl`` and ``curves.png``; the trained model in eval mode."""
    cfg, out = run.cfg, Path(run.cfg.out)
    if run.main_process:
        metrics = write_metrics(out, state.history)
        if cfg.plot and state.history:
            png = plot_history(state.history, out / "curves.png", f"{cfg.model} on {run.ds.name} ({cfg.loss}, {cfg.precision})")
            run.say(f"metrics: {metrics}, curves: {png}")
    model = nnx.merge(run.eval_graphdef, state.params, state.rest)
    return TrainResult(model, state.params, state.rest, state.history, state.global_step)


def train(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    model: nnx.Module | None = None,
    on_step: Callable[[int, int], None] | None = None,
    log: IO[str] | None = None,
) -> TrainResult:
    """Train as ``cfg`` says; return the trained model and the per-epoch history.

    ``dataset`` replaces loading ``cfg.dataset`` (``cfg.subset`` still applies); ``model`` (a
    freshly initialised NNX module, NHWC images -> logits, used as it is) replaces building
    ``cfg.model``. ``on_step(epoch, step)`` is called after each step (tests send SIGINT
    from it). Raises :class:`~jaxloss.train.config.ConfigError` for a setting the run cannot take
    (before anything is compiled) and :class:`TrainingInterrupted` (a ``KeyboardInterrupt``)
    after saving a checkpoint when interrupted by Ctrl-C / SIGINT.

    The driver: :func:`setup`, then per epoch :func:`train_epoch`, :func:`evaluate`,
    :func:`end_epoch` (then the log line, metrics.jsonl and a checkpoint when due); at the end metrics.jsonl
    and curves.png, or after Ctrl-C a checkpoint and :class:`TrainingInterrupted`.

    >>> import tempfile, numpy as np
    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.data import Dataset
    >>> from jaxloss.train.loop import train
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8); y = rng.integers(0, 10, 64).astype(np.int32)
    >>> ds = Dataset("mine", x, y, x[:16], y[:16], tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3)
    >>> out = tempfile.mkdtemp()
    >>> result = train(TrainConfig(epochs=1, batch_size=32, out=out, progress=False, plot=False), dataset=ds,
    ...                log=open(f"{out}/log.txt", "w"))
    >>> len(result.history), result.global_step
    (1, 2)
    """
    run, state = setup(cfg, dataset=dataset, model=model, on_step=on_step, log=log)
    try:
        try:
            with SigintFlag() as sigint:
                while state.epoch < cfg.epochs:
                    state, train_figures = train_epoch(run, state, sigint)
                    state = end_epoch(state, train_figures, evaluate(run, state, sigint), run.lr, cfg.precision)
                    _publish_epoch(run, state)
        except KeyboardInterrupt as e:
            raise _interrupted(run, e.state if isinstance(e, _Stopped) else state) from None
        return _finish(run, state)
    finally:
        run.ckpt.close()  # releases the folder's lock, whatever ended the run
