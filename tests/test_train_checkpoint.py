"""jaxloss.train.checkpoint and resuming: --resume and Ctrl-C give exactly the parameters of an uninterrupted run."""

from __future__ import annotations

import io
import signal

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")
import jax.numpy as jnp
from flax import nnx
from jaxloss.train import data
from jaxloss.train.checkpoint import Checkpointer
from jaxloss.train.config import ConfigError, TrainConfig
from jaxloss.train.loop import TrainingInterrupted, check_resume, train

from tests._fake_cifar import write_fake_cifar
from tests._train_cache import compilation_cache  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("compilation_cache")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("cifar")
    return data.load_cifar10(d, checksums=write_fake_cifar(d, 16))  # 80 train (5 steps of 16), 16 test


def _config(out, **kw):  # type: ignore[no-untyped-def]
    base = {
        "model": "seed-cnn",
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.01,
        "momentum": 0.9,
        "seed": 3,
        "out": str(out),
        "progress": False,
        "plot": False,
    }
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny):  # type: ignore[no-untyped-def]
    """Two epochs without interruption: the reference."""
    out = tmp_path_factory.mktemp("straight")
    return train(_config(out), dataset=tiny, log=io.StringIO())


def _assert_same_params(a, b):  # type: ignore[no-untyped-def]
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise


def _metrics(history):  # type: ignore[no-untyped-def]
    return [
        (h["epoch"], h["step"], h["train_loss"], h["train_acc"], h["test_loss"], h["test_acc"])
        for h in history
    ]


def test_resume_after_an_epoch_equals_a_straight_run(tmp_path, tiny, straight):
    first = train(_config(tmp_path, epochs=1), dataset=tiny, log=io.StringIO())
    with Checkpointer(tmp_path / "checkpoints") as ck:
        assert ck.all_steps() == [5]
    log = io.StringIO()
    resumed = train(_config(tmp_path, resume=True), dataset=tiny, log=log)
    assert "resumed from" in log.getvalue() and "epoch 2, step 0" in log.getvalue()
    assert resumed.global_step == straight.global_step == 10
    _assert_same_params(resumed.params, straight.params)
    assert _metrics(resumed.history) == _metrics(straight.history)
    assert _metrics(first.history) == _metrics(straight.history)[:1]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


# mid-epoch, and after an epoch's last step (before its evaluation: the resumed run trains no
# step in that epoch, only evaluates it)
@pytest.mark.parametrize("at_step", [2, pytest.param(4, marks=pytest.mark.slow)])  # a third run (~4 CPU s): slow tier
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_same_run(tmp_path, tiny, straight, at_step):
    def ctrl_c(epoch: int, step: int) -> None:
        if (epoch, step) == (0, at_step):
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends; the loop stops after this step

    log = io.StringIO()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        train(_config(tmp_path), dataset=tiny, on_step=ctrl_c, log=log)
    done = at_step + 1
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.checkpoint == done
    assert f"interrupted at epoch 1, step {done}: checkpoint {done} saved" in log.getvalue()
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    with Checkpointer(tmp_path / "checkpoints") as ck:
        assert ck.all_steps() == [done] and ck.meta(done)["step"] == done
    log = io.StringIO()
    resumed = train(_config(tmp_path, resume=True), dataset=tiny, log=log)
    _assert_same_params(resumed.params, straight.params)
    assert _metrics(resumed.history) == _metrics(straight.history)  # the partial epoch's sums were saved too
    if done == 5:  # no train step ran in the resumed epoch: no rate to report
        assert resumed.history[0]["images_per_s"] is None and "| - img/s" in log.getvalue()


def test_resume_refuses_a_different_run(tmp_path, tiny):
    with pytest.raises(ConfigError, match="^resume no checkpoint in"):
        train(_config(tmp_path, resume=True), dataset=tiny, log=io.StringIO())
    with pytest.raises(ConfigError, match=r"different run:\n  lr: checkpoint 0.5, now 0.01"):
        check_resume(_config(tmp_path), _config(tmp_path, lr=0.5).to_json(), 1)
    check_resume(_config(tmp_path, epochs=5), _config(tmp_path).to_json(), 2)  # more epochs: fine


def _numpy_init(std: float):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)  # no random-number program to compile
    return lambda key, shape, dtype=jnp.float32: jnp.asarray(rng.normal(0.0, std, shape), dtype)


class _ConvBN(nnx.Module):
    """A small network with torch-exact BatchNorm: float32 mean / var and an int32 num_batches_tracked."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        from jaxloss.train.models import BatchNorm2d

        self.conv = nnx.Conv(3, 4, (3, 3), strides=(2, 2), kernel_init=_numpy_init(0.2), rngs=rngs)
        self.bn = BatchNorm2d(4)
        self.fc = nnx.Linear(4, 10, kernel_init=_numpy_init(0.5), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(jax.nn.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


def test_ctrl_c_and_resume_keep_batchnorm_statistics(tmp_path, tiny):
    def run(out, on_step=None, **kw):  # type: ignore[no-untyped-def]
        cfg = _config(out, **kw)  # the model given replaces cfg.model's
        return train(cfg, dataset=tiny, model=_ConvBN(nnx.Rngs(0)), on_step=on_step, log=io.StringIO())

    def ctrl_c(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 1):
            signal.raise_signal(signal.SIGINT)

    reference = run(tmp_path / "a")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "b", on_step=ctrl_c)
    resumed = run(tmp_path / "b", resume=True)
    assert int(resumed.rest["bn"]["num_batches_tracked"][...]) == 10
    _assert_same_params((resumed.params, resumed.rest), (reference.params, reference.rest))
    assert _metrics(resumed.history) == _metrics(reference.history)


def test_checkpointer_round_trip_with_batchnorm_state_and_atomic_layout(tmp_path):
    from jaxloss.train.optim import make_optimizer

    _, params, rest = nnx.split(_ConvBN(nnx.Rngs(0)), nnx.Param, ...)
    rest = jax.tree.map(lambda x: x + 1, rest)  # non-default BatchNorm statistics
    tx = make_optimizer("adam", 1e-3)
    opt_state = tx.init(params)
    state = (params, rest, opt_state, jnp.arange(3, dtype=jnp.float32))
    with Checkpointer(tmp_path / "ck", max_to_keep=2) as ck:
        for step in (1, 2, 3):
            ck.save(step, state, {"epoch": step, "step": 0, "global_step": step, "config": {}, "history": []})
        (tmp_path / "ck" / "7.orbax-checkpoint-tmp-123").mkdir()  # what a crash mid-save leaves
        assert ck.all_steps() == [2, 3] and ck.latest_step() == 3
        zeros = jax.tree.map(jnp.zeros_like, state)
        restored, meta = ck.restore(zeros)
    assert meta["epoch"] == 3 and len(meta["checksum"]) == len(meta["arrays_checksum"]) == 64
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    _assert_same_params(restored, state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert got.dtype == want.dtype
