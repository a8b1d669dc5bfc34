"""A run is never lost: damaged, truncated or foreign checkpoints, and resumes that would change the run.

Each test is a finding of a hostile probe against the earlier code (a damaged checkpoint
loaded silently, a fresh run mixing an older run's checkpoints, an unchecked ``--subset`` on
resume, ``--resume`` with nothing left to train). The checkpoints here are written with
:class:`train.checkpoint.Checkpointer` directly, so the tests compile nothing but tiny
programs; the loop-level tests stop before compiling (the checks come first).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

import jax
import jax.numpy as jnp
from flax import nnx

from train.checkpoint import CheckpointBusy, CheckpointError, Checkpointer, record_checksum
from train.config import ConfigError, TrainConfig
from train.data import Dataset
from train.loop import train


def _state(value: float = 0.0) -> dict:
    return {"w": jnp.arange(512, dtype=jnp.float32) + value, "b": jnp.full(3, value, jnp.float32)}


def _meta(step: int, config: dict | None = None, epoch: int = 1) -> dict:
    return {"epoch": epoch, "step": 0, "global_step": step, "config": config or {}, "history": []}


def _data_file(ckpt: Path, step: int) -> Path:
    """The largest array-data file of checkpoint ``step`` (the ``w`` array's chunk)."""
    files = [p for p in (ckpt / str(step) / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


def _flip_bytes(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    for i in range(len(raw) // 3, len(raw) // 3 + 64):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ck"
    with Checkpointer(ckpt, max_to_keep=3) as c:
        c.save(1, _state(1.0), _meta(1))
        c.save(2, _state(2.0), _meta(2))
    return ckpt


def _restore(ckpt: Path, **kw) -> tuple:  # type: ignore[no-untyped-def]
    warnings: list[str] = []
    with Checkpointer(ckpt) as c:
        state, meta = c.restore(_state(), warn=warnings.append, **kw)
    return state, meta, warnings


def test_damaged_bytes_are_detected_and_the_newest_intact_checkpoint_is_restored(two_checkpoints):
    _flip_bytes(_data_file(two_checkpoints, 2))
    state, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 1
    np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(512) + 1.0)
    assert len(warnings) == 1 and f"{two_checkpoints}/2" in warnings[0] and f"restored {two_checkpoints}/1" in warnings[0]
    with Checkpointer(two_checkpoints) as c, pytest.raises(CheckpointError, match=f"^{two_checkpoints}/2: "):
        c.restore(_state(), step=2)  # asked for by number: no fallback, a clear error


def test_arrays_that_differ_from_their_checksum_are_refused(two_checkpoints):
    """Bytes that still decode, but to other numbers (what a silent flip gives): the checksum catches them."""
    path = two_checkpoints / "2" / "meta" / "metadata"
    meta = {**json.loads(path.read_text()), "arrays_checksum": "0" * 64}  # as if the arrays had changed under it
    path.write_text(json.dumps({**meta, "checksum": record_checksum(meta)}))  # a record still self-consistent
    state, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 1 and "/ck/2: the arrays do not match their checksum" in warnings[0]


def _edit_meta(ckpt: Path, step: int, **changes) -> None:  # type: ignore[no-untyped-def]
    path = ckpt / str(step) / "meta" / "metadata"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_the_record_is_covered_by_the_checksum(two_checkpoints):
    """An edited epoch (3 -> 2 once relabelled a run's fourth epoch "3/3") makes the checkpoint damaged."""
    _edit_meta(two_checkpoints, 2, epoch=0)
    state, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 1 and meta["epoch"] == 1
    assert f"{two_checkpoints}/2: the record (meta) does not match its checksum" in warnings[0]


def test_a_record_in_another_steps_folder_is_refused(two_checkpoints):
    (two_checkpoints / "2").rename(two_checkpoints / "7")  # a checkpoint renamed (or copied) to another step
    state, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 1 and f"{two_checkpoints}/7: meta 'global_step' is 2, not the folder's step" in warnings[0]


def test_truncated_or_missing_files_and_bad_meta_are_clear_errors_naming_the_folder(two_checkpoints):
    data = _data_file(two_checkpoints, 2)
    data.write_bytes(data.read_bytes()[:10])  # truncated
    (two_checkpoints / "1" / "meta" / "metadata").unlink()  # missing
    with Checkpointer(two_checkpoints) as c, pytest.raises(CheckpointError) as info:
        c.restore(_state())
    text = str(info.value)
    assert text.startswith("no intact checkpoint:") and f"{two_checkpoints}/2: " in text
    assert f"{two_checkpoints}/1: meta is unreadable" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "meta,problem",
    [
        ({"epoch": "1", "step": 0, "global_step": 1, "config": {}, "history": []}, "meta 'epoch' is '1', not a int"),
        ({"epoch": 1, "step": -4, "global_step": 1, "config": {}, "history": []}, "meta 'step' is negative"),
        ({"epoch": 1, "step": 0, "global_step": 1, "config": {}}, "meta lacks 'history'"),
    ],
)
def test_meta_is_validated(tmp_path, meta, problem):
    with Checkpointer(tmp_path / "ck") as c:
        c.save(1, _state(), _meta(1))
    path = tmp_path / "ck" / "1" / "meta" / "metadata"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "arrays_checksum": saved["arrays_checksum"], "checksum": saved["checksum"]}))
    with Checkpointer(tmp_path / "ck") as c, pytest.raises(CheckpointError, match=f"{tmp_path}/ck/1: {problem}"):
        c.restore(_state())


def test_the_last_intact_checkpoint_is_never_deleted(tmp_path, monkeypatch):
    """Pruning happens only after the new checkpoint reads back intact."""
    with Checkpointer(tmp_path / "ck", max_to_keep=1) as c:
        c.save(1, _state(1.0), _meta(1))
        c.save(2, _state(2.0), _meta(2))
        assert c.all_steps() == [2]  # a verified save prunes as asked

        def damaged_on_disk(step, target):  # type: ignore[no-untyped-def]
            raise CheckpointError(f"{c.path(step)}: the arrays do not match their checksum (damaged bytes)")

        monkeypatch.setattr(c, "_read", damaged_on_disk)
        with pytest.raises(CheckpointError, match="/ck/3: the arrays do not match"):
            c.save(3, _state(3.0), _meta(3))
        assert 2 in c.all_steps()  # the intact one survives the failed save


# --------------------------------------------------------------------------- the loop refuses before it compiles
def _tiny() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(64) % 10).astype(np.int32)
    return Dataset("tiny", x, y, x[:16], y[:16], tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3)


def _cfg(out: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "out": str(out), "progress": False, "plot": False, **kw})


def _old_run(cfg: TrainConfig, epoch: int = 1) -> None:
    """Leave what an earlier run of ``cfg`` leaves: a checkpoint after ``epoch`` epochs."""
    with Checkpointer(cfg.checkpoint_path) as c:
        c.save(4 * epoch, _state(), _meta(4 * epoch, cfg.to_json(), epoch=epoch))


def test_a_fresh_run_refuses_a_folder_holding_an_older_runs_checkpoints(tmp_path):
    _old_run(_cfg(tmp_path, lr=0.5))
    with pytest.raises(ConfigError, match=r"^checkpoint_dir .* holds checkpoints of an earlier run \(steps \[4\]\)"):
        train(_cfg(tmp_path), dataset=_tiny(), log=io.StringIO())
    with Checkpointer(_cfg(tmp_path).checkpoint_path) as c:
        assert c.all_steps() == [4]  # untouched


def test_resume_checks_the_subset_and_says_when_nothing_is_left(tmp_path):
    _old_run(_cfg(tmp_path, subset=48), epoch=2)
    with pytest.raises(ConfigError, match=r"different run:\n  subset: checkpoint 48, now 32"):
        train(_cfg(tmp_path, subset=32, resume=True), dataset=_tiny(), log=io.StringIO())
    with pytest.raises(ConfigError, match=r"^epochs is 2, and the checkpoint has already finished 2 epochs"):
        train(_cfg(tmp_path, subset=48, resume=True), dataset=_tiny(), log=io.StringIO())


class _Tiny(nnx.Module):
    """A linear classifier on the mean colour: compiles in a blink."""

    def __init__(self) -> None:
        self.fc = nnx.Linear(3, 10, rngs=nnx.Rngs(0))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(x.mean(axis=(1, 2)))


def test_overwrite_starts_afresh(tmp_path):
    _old_run(_cfg(tmp_path, lr=0.5))
    cfg = _cfg(tmp_path, epochs=1, overwrite=True, augment=False, checkpoint_every=1)
    result = train(cfg, dataset=_tiny(), model=_Tiny(), log=io.StringIO())
    assert result.global_step == 4
    with Checkpointer(_cfg(tmp_path).checkpoint_path) as c:
        assert c.all_steps() == [4] and c.meta(4)["config"]["lr"] == 0.01  # the new run's
