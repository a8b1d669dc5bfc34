"""Multi-host for real: two processes joined by ``jax.distributed`` train the same run as one process.

Two processes on this machine, each with one CPU device, start with the coordinator on
127.0.0.1 at a free port (jax 0.10.2 runs cross-process CPU collectives with gloo, its
default ``jax_cpu_collectives_implementation``) and train through :func:`jaxloss.train.loop.train`,
checkpoints included. A third process trains the same config alone on two CPU devices
(``--xla_force_host_platform_device_count=2``), the same global batch over the same
``('data',)`` mesh shape.

Tolerance: none; the two runs must agree bit for bit (the per-epoch metrics, and the
SHA-256 of the final checkpoint's arrays). Both compile the same SPMD program for a mesh of
two devices; the only cross-device arithmetic is the gradient (and metric) all-reduce of
two operands, ``a + b``, which is exact-commutative, whether gloo or the in-process
runtime adds them. Any difference is therefore a real divergence (a batch seen by one
process only, a different shuffle, a missed all-reduce), not rounding.

Bounded: every process has a deadline and all are killed when one fails or the deadline
passes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

from tests._train_cache import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 240  # far above the ~20 s it takes on an idle 2-core machine; only a hang reaches it

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from flax import nnx
    from jaxloss.train.config import TrainConfig
    from jaxloss.train.data import Dataset
    from jaxloss.train.loop import train
    from jaxloss.train.mesh import distributed_env, init_distributed

    out, coordinator, n, pid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    cfg = TrainConfig(epochs=2, batch_size=16, eval_batch_size=8, out=out, progress=False, plot=False,
                      coordinator_address=coordinator if coordinator != "-" else None,
                      num_processes=int(n) if coordinator != "-" else None,
                      process_id=int(pid) if coordinator != "-" else None)
    init_distributed(distributed_env(cfg.coordinator_address, cfg.num_processes, cfg.process_id, os.environ))
    import jax
    assert len(jax.devices()) == 2 and len(jax.local_devices()) == (1 if coordinator != "-" else 2)

    rng = np.random.default_rng(0)  # every process builds the same data set
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(64) % 10).astype(np.int32)
    ds = Dataset("tiny", x, y, x[:24], y[:24], tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, hflip=True)

    class Tiny(nnx.Module):  # a small conv net: compiles in about a second
        def __init__(self):
            self.conv = nnx.Conv(3, 8, (3, 3), strides=(2, 2), rngs=nnx.Rngs(0))
            self.fc = nnx.Linear(8, 10, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.fc(jax.nn.relu(self.conv(x)).mean(axis=(1, 2)))

    train(cfg, dataset=ds, model=Tiny(), log=sys.stderr)
    print("done", jax.process_index(), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out: Path, coordinator: str, n: int, pid: int, devices: int, env: dict[str, str]) -> subprocess.Popen:
    env = {**env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", SCRIPT, str(out), coordinator, str(n), str(pid)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_all(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """Wait for every process; kill them all when one fails or the deadline passes."""
    end = time.monotonic() + DEADLINE_S
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > end or any(p.returncode not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.wait(), *p.communicate()) for p in procs]


def _checksum(out: Path) -> str:
    steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    return json.loads((out / "checkpoints" / str(steps[-1]) / "meta" / "metadata").read_text())["arrays_checksum"]


@pytest.mark.slow  # three training processes (~36 CPU s)
def test_two_processes_train_the_same_trajectory_as_one(tmp_path, tmp_path_factory):
    env = {
        **os.environ,
        **subprocess_env(tmp_path_factory),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [
        _start(tmp_path / "multi", coordinator, 2, 0, 1, env),
        _start(tmp_path / "multi", coordinator, 2, 1, 1, env),
        _start(tmp_path / "single", "-", 1, 0, 2, env),
    ]
    results = _wait_all(procs)
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    done = [[line for line in out.splitlines() if line.startswith("done")] for _, out, _ in results]
    assert done == [["done 0"], ["done 1"], ["done 0"]]  # process indices as launched
    multi = (tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()
    single = (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    keys = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc")
    pick = lambda lines: [{k: json.loads(s)[k] for k in keys} for s in lines]  # noqa: E731
    assert len(multi) == 2 and pick(multi) == pick(single)  # bit for bit, every epoch
    assert _checksum(tmp_path / "multi") == _checksum(tmp_path / "single")  # the final state, bit for bit
    assert "processes 2" in results[0][2] and "processes 1" in results[2][2]  # the header says how it ran


def test_a_peer_that_never_joins_is_announced_bounded_and_named(tmp_path):
    """Process 0 alone (its peer never starts) and process 1 alone (no coordinator at its address): each says
    what it waits for, then exits 1 naming the coordinator.

    Before, the wait was silent for 310 s and ended in an abort (status 134, "another task died").
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    coordinators = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]  # one each: they must not meet
    commands = [
        [sys.executable, "-m", "jaxloss.train", "--coordinator-address", coordinators[pid], "--num-processes", "2",
         "--process-id", str(pid), "--distributed-timeout", "2", "--out", str(tmp_path / str(pid))]
        for pid in (0, 1)
    ]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    t0 = time.monotonic()
    try:
        results = [(p.wait(timeout=DEADLINE_S), *p.communicate()) for p in procs]  # both fail: wait for each
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert time.monotonic() - t0 < 120  # seconds, not the 310 s of jax's default
    for pid, (rc, _, err) in enumerate(results):
        coordinator = coordinators[pid]
        lines = err.strip().splitlines()
        assert rc == 1, err[-2000:]
        assert lines[0] == (f"process {pid} of 2: waiting up to 2 s for every process to join at coordinator "
                            f"{coordinator} (--distributed-timeout)"), err[-2000:]  # fmt: skip
        assert lines[-1].startswith(f"python -m jaxloss.train: error: not every process joined at coordinator {coordinator} "
                                    "within 2 s"), err[-2000:]  # fmt: skip
        assert "Traceback" not in err and "Check failure" not in err
        assert not (tmp_path / str(pid) / "metrics.jsonl").exists()
