"""Data parallelism: on 4 (forced host) CPU devices training follows the 1-device trajectory.

Runs in a subprocess because the device count is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``). Two models: the seed CNN, and a
small conv + torch-exact BatchNorm2d net, whose batch statistics under sharding are those
of the global batch (so 4 devices equal 1 device; torch DDP without SyncBatchNorm would not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")

from tests._train_cache import subprocess_env

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import io, json, sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from tests._fake_cifar import write_fake_cifar
    from jaxloss.train import data
    from jaxloss.train.config import TrainConfig
    from jaxloss.train.loop import train
    from jaxloss.train.models import BatchNorm2d

    assert len(jax.devices()) == 4, jax.devices()
    d = sys.argv[1]
    ds = data.load_cifar10(d, checksums=write_fake_cifar(d, 16))  # 80 train, 16 test

    def init(std):  # numpy draws: no random-number program to compile
        rng = np.random.default_rng(0)
        return lambda key, shape, dtype=jnp.float32: jnp.asarray(rng.normal(0, std, shape), dtype)

    class ConvBN(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 8, (3, 3), strides=(2, 2), kernel_init=init(0.2), rngs=rngs)
            self.bn = BatchNorm2d(8)
            self.fc = nnx.Linear(8, 10, kernel_init=init(0.3), rngs=rngs)

        def __call__(self, x):
            h = jax.nn.relu(self.bn(self.conv(x)))
            return self.fc(h.mean(axis=(1, 2)))

    report = {}
    for name in ("seed-cnn", "convbn"):
        runs = {}
        for n in (1, 4):
            cfg = TrainConfig(model="seed-cnn", epochs=2, batch_size=16, eval_batch_size=8, lr=0.01, num_devices=n,
                              out=f"{d}/{name}{n}", progress=False, plot=False, checkpoint_every=0)
            model = ConvBN(nnx.Rngs(0)) if name == "convbn" else None
            r = train(cfg, dataset=ds, model=model, log=io.StringIO())
            leaves = jax.tree.leaves((r.params, r.rest))
            assert all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == n for x in leaves)
            runs[n] = ([np.asarray(x, np.float64) for x in leaves], r.history)
        (p1, h1), (p4, h4) = runs[1], runs[4]
        report[name] = {
            "max_abs": max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p4)),
            "max_ref": max(float(np.max(np.abs(a))) for a in p1),
            "loss1": [h["train_loss"] for h in h1], "loss4": [h["train_loss"] for h in h4],
            "test1": [h["test_loss"] for h in h1], "test4": [h["test_loss"] for h in h4],
        }
    print("REPORT " + json.dumps(report))
    """
)


@pytest.mark.slow  # a fresh JAX process on 4 devices, 4 training runs (~28 CPU s)
def test_four_devices_follow_the_one_device_trajectory(tmp_path, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
    env.update(subprocess_env(tmp_path_factory))
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.split("REPORT ", 1)[1])
    for name, r in report.items():
        # float32 reductions split over 4 devices round differently: equal to f32 tolerance, not bitwise
        assert r["max_abs"] <= 1e-5 * max(1.0, r["max_ref"]), (name, r)
        for a, b in ((r["loss1"], r["loss4"]), (r["test1"], r["test4"])):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), (name, r)


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, None),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}, None),
        (
            {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"},
            ("10.0.0.1:1234", 4, 2),
        ),
        (
            {"MASTER_ADDR": "node0", "MASTER_PORT": "6000", "WORLD_SIZE": "2", "RANK": "1"},
            ("node0:6000", 2, 1),
        ),
        ({"MASTER_ADDR": "node0", "WORLD_SIZE": "8", "RANK": "0"}, ("node0:29500", 8, 0)),
        ({"MASTER_ADDR": "node0", "WORLD_SIZE": "1", "RANK": "0"}, None),
        ({"SLURM_NTASKS": "2"}, (None, None, None)),  # jax reads the launcher's variables
        ({"OMPI_COMM_WORLD_SIZE": "3"}, (None, None, None)),
        ({"SLURM_NTASKS": "1"}, None),
    ],
)
def test_init_distributed_reads_the_launchers_variables(env, expected, monkeypatch):
    import jax

    from jaxloss.train.mesh import init_distributed

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kw: calls.append(args))
    assert init_distributed(env) is (expected is not None)
    assert calls == ([] if expected is None else [expected])


def test_init_distributed_names_a_missing_variable(monkeypatch):
    import jax

    from jaxloss.train.mesh import init_distributed

    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kw: pytest.fail("must not initialise"))
    with pytest.raises(ValueError, match="JAX_PROCESS_ID must be an integer, got None"):
        init_distributed({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match="RANK must be an integer, got 'x'"):
        init_distributed({"MASTER_ADDR": "h", "WORLD_SIZE": "2", "RANK": "x"})
    with pytest.raises(ValueError, match=r"JAX_COORDINATOR_ADDRESS must be HOST:PORT .*, got 'garbage'"):
        init_distributed({"JAX_COORDINATOR_ADDRESS": "garbage", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})


def test_cli_flags_launch_jax_distributed(monkeypatch):
    """``--coordinator-address/--num-processes/--process-id`` reach jax.distributed.initialize."""
    import jax

    from jaxloss.train.__main__ import config_from_args
    from jaxloss.train.config import ConfigError, validate
    from jaxloss.train.mesh import distributed_env, init_distributed

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kw: calls.append((*args, kw)))
    cfg = config_from_args(["--coordinator-address", "h0:1234", "--num-processes", "2", "--process-id", "1",
                            "--distributed-timeout", "7"])  # fmt: skip
    env = distributed_env(cfg.coordinator_address, cfg.num_processes, cfg.process_id, {"JAX_PROCESS_ID": "0"})
    assert init_distributed(env, timeout_s=cfg.distributed_timeout)  # the flag wins over the variable
    assert calls == [("h0:1234", 2, 1, {"initialization_timeout": 7 + 30})]  # jax's deadline: after ours
    with pytest.raises(ConfigError, match="go together"):
        validate(config_from_args(["--num-processes", "2"]))
    assert distributed_env(None, None, None, {"X": "1"}) == {"X": "1"}
