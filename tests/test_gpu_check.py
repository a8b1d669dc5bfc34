"""The prepared GPU command (benchmarks/gpu_check.sh) runs end to end in its --cpu mode.

No GPU here: the figures of a --cpu run mean nothing, but every section's code path, the
per-section files, the status lines, the time budget and the targets table are the ones the
GPU run uses. The script runs once (env, parity, and the sections that skip here); the losses
section runs in this process (its own would cost ~10 s of imports); the train-step section
(tens of seconds even at batch 8: `python -m benchmarks.gpu --cpu` runs it) is checked through
its table and the targets built from it, on synthetic rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu, gpu_sections

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["PYTHON"] = sys.executable
    sections = "env,parity_float32,models,torchvision,parity_tf32"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(out), "--sections", sections],
        check=False, capture_output=True, text=True, timeout=300, env=env, cwd=out,  # it finds the repository itself
    )  # fmt: skip
    return proc, out


def _record(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.slow  # the script's run (its sections' processes, ~30 CPU s): the slow tier
def test_cpu_mode_runs_every_section_and_writes_its_files(cpu_run):
    proc, out = cpu_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    for name in ("env", "parity_float32", "models", "torchvision", "parity_tf32"):
        rec = _record(out, name)
        assert rec["status"] in ("PASSED", "DONE", "SKIPPED"), (name, rec)
        assert rec["status"] != "SKIPPED" or rec["reason"], name  # a skip always says why
        assert f"{rec['status']:8s} {name}" in proc.stdout and f"## {name}: {rec['status']}" in summary
    assert "## Targets" in summary


@pytest.mark.slow
def test_cpu_mode_records_the_precision_and_the_devices(cpu_run):
    _, out = cpu_run
    env = _record(out, "env")
    assert env["settings_ieee"]["mode"] == "ieee"
    assert env["settings_ieee"]["jax_default_matmul_precision"] == "highest"
    assert env["settings_ieee"]["torch_cudnn_allow_tf32"] is False
    assert env["jax_devices"] == ["cpu:cpu"]
    assert {r["mode"] for r in env["rows"]} == {"ieee", "tf32", "default"}
    # float32 on CPU in every mode (XLA:CPU has no TF32)
    assert max(r["jax_matmul_error"] for r in env["rows"]) < 1e-6


@pytest.mark.slow
def test_cpu_mode_parity_runs_the_cli_in_ieee(cpu_run):
    _, out = cpu_run
    rec = _record(out, "parity_float32")
    assert rec["status"] == "PASSED"
    (row,) = rec["rows"]
    assert row["cases"] > 0 and row["passed"] == row["cases"] and row["failed"] == 0
    assert "--dtype float32" in row["command"] and "ieee" in row["command"]
    assert (out / "parity-float32" / "report.json").is_file()


def test_cpu_mode_losses_are_measured_against_the_bandwidth(tmp_path):
    # in this process (the section's own process costs ~10 s of imports)
    rec = {"section": "losses", "rows": [], "notes": []}
    gpu_sections._section_losses(gpu_sections.Ctx("losses", tmp_path, True, time.time() + 120, rec))
    assert (
        rec["status"] == "DONE" and json.loads((tmp_path / "losses.json").read_text())["rows"] == rec["rows"]
    )
    assert rec["settings"]["mode"] == "ieee" and rec["settings"]["jax_enable_x64"] is False
    bw = rec["bandwidth"]
    assert bw["limit_bytes_per_s"] == max(bw["rates"].values()) > 0
    timed = [r for r in rec["rows"] if "jax_vgrad_over_limit" in r]
    assert {r["loss"] for r in timed} >= {"cross_entropy"}
    for r in timed:
        # the limit moves at least every input once: no measured time can beat it
        assert r["bytes_vgrad"] > r["bytes_value"] > 0
        assert r["jax_vgrad_over_limit"] == pytest.approx(
            r["jax_vgrad"] * bw["limit_bytes_per_s"] / r["bytes_vgrad"]
        )
    lce = next(r for r in rec["rows"] if r["loss"] == "linear_cross_entropy")
    assert ("skipped" in lce) == (not hasattr(__import__("torch").nn.functional, "linear_cross_entropy"))


def test_a_section_over_its_budget_is_killed_and_reported(tmp_path):
    env = gpu.child_env(quick=True)
    rec = gpu._run_child(
        next(s for s in gpu_sections.SECTIONS if s.name == "parity_float64"), tmp_path, True, env, budget=1.0
    )
    assert rec["status"] == "TIMEOUT" and "budget" in rec["reason"]
    assert json.loads((tmp_path / "parity_float64.json").read_text())["status"] == "TIMEOUT"


def _rows(jax_ips: float, eager: float, compiled: float | None) -> list[dict]:
    rows = []
    for model in ("seed-cnn", "resnet18"):
        rows.append(
            {"framework": "jax", "variant": "jit", "model": model, "batch": 512, "images_per_s": jax_ips}
        )
        rows.append(
            {"framework": "torch", "variant": "eager", "model": model, "batch": 512, "images_per_s": eager}
        )
        if compiled:
            rows.append(
                {
                    "framework": "torch",
                    "variant": "compile",
                    "model": model,
                    "batch": 512,
                    "images_per_s": compiled,
                }
            )
    return rows


def test_targets_are_computed_from_the_run():
    records = {
        name: {"section": name, "status": "PASSED", "rows": [{"cases": 3, "passed": 3}]}
        for name in ("parity_float32", "parity_float64", "fuzz")
    }
    records["train_step"] = {"section": "train_step", "status": "DONE", "rows": _rows(3000.0, 1500.0, None)}
    records["losses"] = {"section": "losses", "status": "DONE", "rows": [
        {"loss": "mse_loss", "jax_vgrad": 1.0, "torch_vgrad": 2.0, "jax_vgrad_over_limit": 1.5},
        {"loss": "kl_div", "jax_vgrad": 1.0, "torch_vgrad": 0.5, "jax_vgrad_over_limit": 1.2},
    ]}  # fmt: skip
    t = {row[0]: row[1:] for row in gpu.targets(records)}
    assert t["GPU parity: every case passes in ieee"][0] == "met"
    assert t["train step seed-cnn batch 512 >= 1.5x torch eager"] == ["met", "2.00x"]
    assert t["train step resnet18 batch 512 >= 1.0x torch.compile"][0] == "not measured"
    status, figures = t["large losses: v+g within 2x of the bandwidth limit and faster than torch eager"]
    assert status == "NOT met" and "misses: kl_div" in figures
    records["fuzz"]["status"] = "FAILED"
    records["train_step"]["rows"] = _rows(1000.0, 800.0, 1100.0)
    t = {row[0]: row[1:] for row in gpu.targets(records)}
    assert t["GPU parity: every case passes in ieee"][0] == "NOT met"
    assert t["train step seed-cnn batch 512 >= 1.5x torch eager"] == ["NOT met", "1.25x"]
    assert t["train step seed-cnn batch 512 >= 1.0x torch.compile"] == ["NOT met", "0.91x"]


def test_train_step_table_ratios():
    md = gpu_sections.train_step_markdown(_rows(3000.0, 1500.0, 1000.0))
    assert "| seed-cnn | 512 | 3e+03 | 1.5e+03 | 1e+03 | 2 | 3 |" in md


def test_run_group_kills_the_command_and_what_it_started():
    rc, out, err = gpu_sections.run_group(["bash", "-c", "sleep 30 & echo $!; wait"], timeout=1.0)
    assert rc is None and "killed after 1 s" in err
    status = Path(f"/proc/{int(out.split()[0])}/status")
    for _ in range(50):  # SIGKILL is delivered asynchronously
        if not status.exists() or "State:\tZ" in status.read_text():  # gone, or dead and not yet reaped
            break
        time.sleep(0.02)
    assert not status.exists() or "State:\tZ" in status.read_text()
