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

__all__ = ["TrainResult", "TrainingInterrupted", "check_resume", "train"]


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
    validate(cfg)
    log = log if log is not None else sys.stderr
    main_process = jax.process_index() == 0
    say = (lambda msg: print(msg, file=log, flush=True)) if main_process else (lambda msg: None)
    show = cfg.progress and main_process
    for field in ("out", "checkpoint_dir"):
        check_writable_dir(cfg.out if field == "out" else cfg.checkpoint_path, field)
    loss = build_loss(cfg)
    ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download, progress=show)
    if cfg.subset is not None:
        if cfg.subset > ds.x_train.shape[0]:
            raise ConfigError("subset", f"is larger than the training set ({ds.x_train.shape[0]} images), got {cfg.subset}")
        ds = dataclasses.replace(ds, x_train=ds.x_train[: cfg.subset], y_train=ds.y_train[: cfg.subset])

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
        # ---- model, optimizer, state (replicated)
        model = build_model(cfg, ds.num_classes) if model is None else model
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        model.eval()
        eval_graphdef = nnx.graphdef(model)
        tx, lr = build_optimizer(cfg, steps_per_epoch)
        params, rest, opt_state, sums = put_tree((params, rest, tx.init(params), np.zeros(3, np.float32)), repl)

        # ---- data on the device (replicated uint8), the test set padded to whole eval batches
        x_train, y_train = put(ds.x_train, repl), put(ds.y_train.astype(np.int32), repl)
        *test, n_eval_batches = padded_test_set(ds.x_test, ds.y_test, eval_bs)
        x_test, y_test, m_test = put_tree(test, repl)
        seed = put(np.int32(cfg.seed), repl)

        # ---- compile ahead of time (the epoch timings below exclude compilation)
        t0 = time.perf_counter()
        precision = MATMUL_PRECISION[cfg.precision]
        batch = make_train_batch(batch_size=cfg.batch_size, augment=cfg.augment, flip=bool(ds.hflip), mean=ds.mean,
                                 std=ds.std, sharding=batch_sh)  # fmt: skip
        eval_batch = make_eval_batch(batch_size=eval_bs, mean=ds.mean, std=ds.std, sharding=batch_sh)
        perm = put(permutation(cfg.seed, 0, n_train), repl)
        x0, y0 = batch(x_train, y_train, perm, seed, np.int32(0), np.int32(0))
        train_step = make_train_step(graphdef, tx, loss, matmul_precision=precision).lower(
            params, rest, opt_state, sums, x0, y0).compile()  # fmt: skip
        ex, ey, em = eval_batch(x_test, y_test, m_test, np.int32(0))
        eval_step = make_eval_step(eval_graphdef, loss, matmul_precision=precision).lower(
            params, rest, sums, ex, ey, em).compile()  # fmt: skip
        compile_s = time.perf_counter() - t0

        history: list[dict[str, Any]] = []
        epoch, step, global_step = 0, 0, 0  # the position: the next step to run
        if meta is not None:
            (params, rest, opt_state, sums), meta = ckpt.restore(
                (params, rest, opt_state, sums), warn=say, check=lambda m: _position_problem(m, steps_per_epoch)
            )
            check_resume(cfg, meta["config"], meta["epoch"])
            epoch, step, global_step, history = meta["epoch"], meta["step"], meta["global_step"], list(meta["history"])
            say(f"resumed from {ckpt.path(global_step)}: epoch {epoch + 1}, step {step}")
        out = Path(cfg.out)
        say(header(cfg, {"data": f"{ds.name} ({n_train} train / {n_test} test)", "steps/epoch": steps_per_epoch,
                         "devices": f"{n_dev} x {jax.devices()[0].platform}", "processes": jax.process_count(),
                         "compiled in": f"{compile_s:.1f} s"}))  # fmt: skip

        def save() -> int:
            record = {"epoch": epoch, "step": step, "global_step": global_step, "config": cfg.to_json(), "history": history}
            ckpt.save(global_step, (params, rest, opt_state, sums), record)
            return global_step

        def state_alive() -> bool:
            leaves = jax.tree.leaves((params, rest, opt_state, sums))
            return not any(getattr(x, "is_deleted", lambda: False)() for x in leaves)

        try:
            with SigintFlag() as sigint:
                while epoch < cfg.epochs:
                    if step == 0:
                        sums = put(np.zeros(3, np.float32), repl)
                    perm = put(permutation(cfg.seed, epoch, n_train), repl)
                    first, t_epoch = step, time.perf_counter()
                    with Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", stream=log, enabled=show) as bar:
                        while step < steps_per_epoch:
                            x, y = batch(x_train, y_train, perm, seed, np.int32(epoch), np.int32(step))
                            params, rest, opt_state, sums, _ = train_step(params, rest, opt_state, sums, x, y)
                            step, global_step = step + 1, global_step + 1
                            if on_step is not None:
                                on_step(epoch, step - 1)
                            if sigint.set:
                                raise KeyboardInterrupt
                            if bar.due():
                                elapsed = time.perf_counter() - t_epoch
                                bar.update(step, text=_postfix(sums, (step - first) * cfg.batch_size, elapsed))
                        jax.block_until_ready(sums)
                        train_time, ran = time.perf_counter() - t_epoch, steps_per_epoch - first
                        bar.update(step)
                        bar.close(_postfix(sums, ran * cfg.batch_size, train_time))
                    s_train = np.asarray(jax.device_get(sums))

                    esums = put(np.zeros(3, np.float32), repl)
                    for b in range(n_eval_batches):
                        esums = eval_step(params, rest, esums, *eval_batch(x_test, y_test, m_test, np.int32(b)))
                        if sigint.set:
                            raise KeyboardInterrupt
                    s_test = np.asarray(jax.device_get(esums))
                    history.append({
                        "epoch": epoch + 1, "step": global_step,
                        "lr": float(lr(global_step - 1)) if callable(lr) else float(lr),
                        "train_loss": float(s_train[0] / s_train[2]), "train_acc": float(s_train[1] / s_train[2]),
                        "test_loss": float(s_test[0] / s_test[2]), "test_acc": float(s_test[1] / s_test[2]),
                        "images_per_s": ran * cfg.batch_size / train_time if ran else None,
                        "train_time_s": train_time, "eval_time_s": time.perf_counter() - t_epoch - train_time,
                        "precision": cfg.precision,
                    })  # fmt: skip
                    epoch, step = epoch + 1, 0
                    say(epoch_line(history[-1], cfg.epochs))
                    if main_process:
                        write_metrics(out, history)
                    if cfg.checkpoint_every and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs):
                        save()
        except KeyboardInterrupt:
            saved, why = None, "interrupted mid-update"
            if state_alive():
                try:
                    saved = save()  # returns only once the checkpoint read back intact
                except CheckpointError as e:
                    why = str(e)
            if saved is not None:
                say(f"\ninterrupted at epoch {epoch + 1}, step {step}: checkpoint {saved} saved in {ckpt.directory}; "
                    "continue with --resume")  # fmt: skip
            else:
                say(f"\ninterrupted; no checkpoint could be saved ({why})")
            if main_process:
                write_metrics(out, history)
            raise TrainingInterrupted(saved, ckpt.directory) from None

        if main_process:
            metrics = write_metrics(out, history)
            if cfg.plot and history:
                png = plot_history(history, out / "curves.png", f"{cfg.model} on {ds.name} ({cfg.loss}, {cfg.precision})")
                say(f"metrics: {metrics}, curves: {png}")
        return TrainResult(nnx.merge(eval_graphdef, params, rest), params, rest, history, global_step)
    finally:
        ckpt.close()  # releases the folder's lock, whatever ended the run