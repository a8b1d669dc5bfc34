"""A run is never lost: damaged, truncated or foreign checkpoints, and resumes that would change the run.

Each test is a finding of a hostile probe against the earlier code (a damaged checkpoint
loaded silently, a fresh run mixing an older run's checkpoints, an unchecked ``--subset`` on
resume, ``--resume`` with nothing left to train). The checkpoints here are written with
:class:`jaxloss.train.checkpoint.Checkpointer` directly, so the tests compile nothing but tiny
programs; the loop-level tests stop before compiling (the checks come first).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

import jax
import jax.numpy as jnp
from flax import nnx

from tests._train_cache import compilation_cache  # noqa: F401  (fixture)
from jaxloss.train.checkpoint import CheckpointBusy, Checkpointer, CheckpointError, record_checksum
from jaxloss.train.config import ConfigError, TrainConfig
from jaxloss.train.data import Dataset
from jaxloss.train.loop import TrainingInterrupted, train
from jaxloss.train.recipe import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("compilation_cache")  # the runs below share their compiled programs


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
    _, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 1 and "/ck/2: the arrays do not match their checksum" in warnings[0]


def _edit_meta(ckpt: Path, step: int, **changes) -> None:  # type: ignore[no-untyped-def]
    path = ckpt / str(step) / "meta" / "metadata"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_the_record_is_covered_by_the_checksum(two_checkpoints):
    """An edited epoch (3 -> 2 once relabelled a run's fourth epoch "3/3") makes the checkpoint damaged."""
    _edit_meta(two_checkpoints, 2, epoch=0)
    _, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 1 and meta["epoch"] == 1
    assert f"{two_checkpoints}/2: the record (meta) does not match its checksum" in warnings[0]


def test_a_record_in_another_steps_folder_is_refused(two_checkpoints):
    (two_checkpoints / "2").rename(two_checkpoints / "7")  # a checkpoint renamed (or copied) to another step
    _, meta, warnings = _restore(two_checkpoints)
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


def test_a_save_replaces_a_damaged_step_folder(two_checkpoints):
    """Saving into a step folder that exists but is damaged once returned silently, leaving it damaged."""
    (two_checkpoints / "2" / "meta" / "metadata").write_text('{"epoch": ')  # damaged record
    with Checkpointer(two_checkpoints, max_to_keep=3) as c:
        c.save(2, _state(5.0), _meta(2))
    state, meta, warnings = _restore(two_checkpoints)
    assert meta["global_step"] == 2 and warnings == []
    np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(512) + 5.0)  # the new save, not the old one


def test_an_intact_step_folder_at_the_same_position_is_kept(two_checkpoints):
    with Checkpointer(two_checkpoints, max_to_keep=3) as c:
        c.save(2, _state(5.0), _meta(2))  # the same step and position: already saved, verified
    state, _, _ = _restore(two_checkpoints)
    np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(512) + 2.0)


def test_damaged_checkpoints_never_count_toward_max_to_keep(two_checkpoints):
    """With the newest damaged, pruning once deleted the older intact checkpoint and kept the damaged one."""
    _flip_bytes(_data_file(two_checkpoints, 2))
    with Checkpointer(two_checkpoints, max_to_keep=1) as c:
        c.save(3, _state(3.0), _meta(3))
        assert c.all_steps() == [2, 3]  # 1 (intact, beyond max_to_keep) pruned; 2 (damaged) left, not counted
    with Checkpointer(two_checkpoints, max_to_keep=2) as c:
        c.save(4, _state(4.0), _meta(4))
        assert c.all_steps() == [2, 3, 4]  # the two newest intact kept, though the damaged one is between them


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
    folder = tmp_path / "ck"
    with Checkpointer(folder) as first:
        with pytest.raises(CheckpointBusy, match=f"^{folder} is in use by another run \\(process {os.getpid()} on "):
            Checkpointer(folder)
        first.save(1, _state(), _meta(1))
    with Checkpointer(folder) as again:  # released on close
        assert again.all_steps() == [1]


def test_the_lock_dies_with_the_process_that_held_it(tmp_path):
    """An OS lock (flock), not a marker file: a killed writer leaves the folder free."""
    folder = tmp_path / "ck"
    folder.mkdir()
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242 on elsewhere'); print('locked', flush=True); time.sleep(60)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointBusy, match=r"in use by another run \(process 4242 on elsewhere\)"):
            Checkpointer(folder)
    finally:
        holder.kill()
        holder.wait()
    with Checkpointer(folder) as c:
        assert c.all_steps() == []


def test_skipping_a_damaged_checkpoint_prints_no_event_loop_tracebacks(tmp_path):
    """A failed orbax restore once left dozens of "RuntimeError: Event loop is closed" tracebacks on stderr."""
    script = textwrap.dedent(
        """
        import gc, sys
        from pathlib import Path
        import jax.numpy as jnp
        from jaxloss.train.checkpoint import Checkpointer
        folder = Path(sys.argv[1])
        state = lambda v: {f"w{i}": jnp.full(64, v + i, jnp.float32) for i in range(40)}  # many reads in flight
        meta = lambda s: {"epoch": s, "step": 0, "global_step": s, "config": {}, "history": []}
        with Checkpointer(folder, max_to_keep=None) as c:
            c.save(1, state(1.0), meta(1))
            c.save(2, state(2.0), meta(2))
        for f in (folder / "2" / "state").rglob("*"):
            if f.is_file() and "/d/" in str(f):
                f.write_bytes(f.read_bytes()[:10])
        with Checkpointer(folder) as c:
            restored, m = c.restore(state(0.0), warn=lambda w: print(w.splitlines()[1]))
        del restored
        gc.collect()
        print("restored", m["global_step"])
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ck")], capture_output=True, text=True,
                         env=env, timeout=240, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("restored 1") and "the arrays are unreadable" in out.stdout
    assert "Event loop is closed" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]


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


# --------------------------------------------------------------------------- the loop over damaged or busy folders
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A finished 2-epoch run (checkpoints 4 and 8), copied by each test before it damages anything."""
    out = tmp_path_factory.mktemp("finished")
    return out, train(_loop_cfg(out), dataset=_tiny(), model=_Tiny(), log=io.StringIO())


def _loop_cfg(out: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    return _cfg(out, augment=False, **kw)


def _copy(finished_run, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copytree(finished_run[0], tmp_path / "run"))


def _damage_arrays(ckpt: Path, step: int) -> None:
    """Truncate every array-data file of checkpoint ``step`` (small states keep their data in several)."""
    for f in (ckpt / str(step) / "state").rglob("*"):
        if f.is_file() and "/d/" in str(f):
            f.write_bytes(f.read_bytes()[:10])


def _read_back(out: Path, result, step: int) -> dict:  # type: ignore[no-untyped-def]
    """Checkpoint ``step`` of the run in ``out``, restored (arrays and checksums verified): its meta."""
    tx, _ = build_optimizer(_loop_cfg(out), steps_per_epoch=4)  # the optimizer state's structure, as saved
    target = (result.params, result.rest, tx.init(result.params), jnp.zeros(3, jnp.float32))
    with Checkpointer(out / "checkpoints") as c:
        return c.restore(target, step=step)[1]


def _same_params(a, b) -> None:  # type: ignore[no-untyped-def]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("damage", ["arrays", "edited epoch"])
def test_resume_falls_back_past_a_damaged_finished_checkpoint_and_rewrites_it(tmp_path, finished_run, damage):
    """The newest checkpoint (epoch 2 of 2) damaged: --resume continues from the intact epoch-1 one.

    Before: damaged arrays made it refuse as "already finished"; an epoch edited from 2 to 1
    made it train epoch 2 a second time (three records, two labelled 2).
    """
    out = _copy(finished_run, tmp_path)
    if damage == "arrays":
        _damage_arrays(out / "checkpoints", 8)
    else:
        _edit_meta(out / "checkpoints", 8, epoch=1)
    log = io.StringIO()
    result = train(_loop_cfg(out, resume=True), dataset=_tiny(), model=_Tiny(), log=log)
    assert "skipped damaged checkpoint(s):" in log.getvalue()
    assert f"resumed from {out}/checkpoints/4: epoch 2, step 0" in log.getvalue()
    assert result.global_step == 8 and [h["epoch"] for h in result.history] == [1, 2]
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    _same_params(result.params, finished_run[1].params)  # the same run, bit for bit
    assert _read_back(out, result, 8)["epoch"] == 2  # the damaged folder was replaced, and reads back


def test_ctrl_c_onto_a_damaged_step_folder_saves_it_for_real(tmp_path, finished_run):
    """Ctrl-C at a step whose folder existed damaged once printed "checkpoint saved" and saved nothing."""
    out = _copy(finished_run, tmp_path)
    _damage_arrays(out / "checkpoints", 8)

    def ctrl_c(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 3):  # the last step of epoch 2: global step 8
            signal.raise_signal(signal.SIGINT)

    log = io.StringIO()
    with pytest.raises(TrainingInterrupted) as info:
        train(_loop_cfg(out, resume=True, epochs=3), dataset=_tiny(), model=_Tiny(), on_step=ctrl_c, log=log)
    assert info.value.checkpoint == 8 and "checkpoint 8 saved" in log.getvalue()
    meta = _read_back(out, finished_run[1], 8)
    assert (meta["epoch"], meta["step"]) == (1, 4)  # the interrupted position, verified on disk


def test_a_checkpoint_of_another_epoch_length_is_not_resumed(tmp_path, finished_run):
    """global_step must be epoch x steps per epoch + step: a data set of another size makes them disagree."""
    out = _copy(finished_run, tmp_path)
    smaller = _tiny()
    smaller = Dataset("tiny", smaller.x_train[:48], smaller.y_train[:48], smaller.x_test, smaller.y_test,
                      smaller.classes, smaller.mean, smaller.std)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"/checkpoints/8: global_step 8 is not epoch 2 x 3 steps \+ step 0"):
        train(_loop_cfg(out, resume=True, epochs=3), dataset=smaller, model=_Tiny(), log=io.StringIO())


def test_a_run_into_a_folder_another_run_writes_is_refused_before_compiling(tmp_path):
    """Two runs into one folder: the second's orbax once removed the first's temporary folder and pruned its checkpoints."""
    cfg = _loop_cfg(tmp_path, epochs=1)
    busy = f"^checkpoint_dir {cfg.checkpoint_path} is in use by another run"
    with Checkpointer(cfg.checkpoint_path), pytest.raises(ConfigError, match=busy):  # the first run, still writing
        train(cfg, dataset=_tiny(), model=_Tiny(), log=io.StringIO())
    train(cfg, dataset=_tiny(), model=_Tiny(), log=io.StringIO())  # free once the first is done


def test_ctrl_c_says_so_when_its_checkpoint_does_not_read_back(tmp_path, monkeypatch):
    """A save is reported only after it reads back; a failed one is said, and the run still ends as interrupted."""

    def unreadable(self, step, target):  # type: ignore[no-untyped-def]
        raise CheckpointError(f"{self.path(step)}: the arrays do not match their checksum (damaged bytes)")

    def ctrl_c(epoch: int, step: int) -> None:
        if (epoch, step) == (0, 1):
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Checkpointer, "_read", unreadable)
    log = io.StringIO()
    with pytest.raises(TrainingInterrupted) as info:
        train(_loop_cfg(tmp_path, checkpoint_every=0), dataset=_tiny(), model=_Tiny(), on_step=ctrl_c, log=log)
    assert info.value.checkpoint is None and str(info.value) == "interrupted; no checkpoint saved"
    assert "saved in" not in log.getvalue()
    assert f"interrupted; no checkpoint could be saved ({tmp_path}/checkpoints/2: the arrays do not match" in log.getvalue()


def test_asyncio_never_retrieved_records_are_dropped_only_for_a_failed_restores_read_tasks():
    """The subprocess test above is timing-dependent: a read task collected with its error is logged by
    asyncio ("Task exception was never retrieved") instead of reaching the unraisable hook."""
    import logging

    from jaxloss.train.checkpoint import _FailedRestoreTaskFilter

    keep = _FailedRestoreTaskFilter().filter

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    debris = "Task exception was never retrieved\nfuture: <Task finished name='Task-7' coro=<async_deserialize() done>"
    assert not keep(record(debris))
    assert keep(record("Task exception was never retrieved\nfuture: <Task finished coro=<user_code() done>"))
    assert keep(record("Executing <Task pending coro=<async_deserialize()>> took 0.2 seconds"))
