"""The prepared GPU command (benchmarks/gpu_check.sh) runs end to end in its --cpu mode, and cannot fail silently.

No GPU here: the figures of a --cpu run mean nothing, but every section's code path, the
per-section files, the status lines, the time budget and the targets table are the ones the
GPU run uses. The script runs once with every section (minutes of CPU: ten section processes,
each importing JAX and torch, and the CLIs they start); the run fails this file on any error
row, any section not PASSED / DONE / SKIPPED-for-a-named-reason, and any unknown in the
summary's header. Ctrl-C, budgets, verdicts and bad input are checked on their own, cheaply.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu, gpu_process, gpu_sections, train_step

ROOT = Path(__file__).resolve().parents[1]
# The only reasons a section may be SKIPPED on a machine like this one (the summary names them).
ALLOWED_SKIPS = ("torchvision does not import here",)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["PYTHON"] = sys.executable
    return env


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=600, env=_env(), cwd=out,  # it finds the repository itself
    )  # fmt: skip
    return proc, out


def _record(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.slow  # the script's run (its sections' processes, ~115 CPU s): the slow tier, which CI runs
def test_cpu_mode_runs_every_section_without_an_error(cpu_run):
    proc, out = cpu_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    for s in gpu_sections.SECTIONS:
        rec = _record(out, s.name)
        assert rec["status"] in ("PASSED", "DONE", "SKIPPED"), (s.name, rec.get("reason"))
        if rec["status"] == "SKIPPED":
            assert rec["reason"].startswith(ALLOWED_SKIPS), (s.name, rec["reason"])
        assert not [r for r in rec["rows"] if "error" in r], (s.name, rec["rows"])
        assert f"{rec['status']:8s} {s.name}" in proc.stdout and f"## {s.name}: {rec['status']}" in summary
    header = summary.split("## Sections")[0]
    assert "?" not in header and "unknown" not in header, header
    assert "python " in header and "torch " in header and "CPU, --cpu mode" in header
    assert "## Targets" in summary


@pytest.mark.slow
def test_cpu_mode_times_the_train_step_of_python_m_train(cpu_run):
    _, out = cpu_run
    rec = _record(out, "train_step")
    assert rec["status"] == "DONE", rec.get("reason")
    measured = {r["variant"] for r in rec["rows"] if r.get("images_per_s", 0) > 0 and "epoch_s" not in r}
    assert measured == {"jit", "eager", "compile"}, rec["rows"]
    assert {r["model"] for r in rec["rows"]} == {"seed-cnn"}  # --cpu: the registry's first model only


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
    assert "--dtype float32" in row["command"] and "--precision ieee" in row["command"]
    assert (out / "parity-float32" / "report.json").is_file()


@pytest.mark.slow
def test_cpu_mode_losses_are_measured_against_the_bandwidth(cpu_run):
    _, out = cpu_run
    rec = _record(out, "losses")
    assert rec["status"] == "DONE"
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


# ----------------------------------------------------------------------------- verdicts
def test_a_section_with_an_error_row_is_failed(tmp_path, monkeypatch):
    # the old train-step call (TypeError caught, written as a row) was reported DONE
    def measured_with_an_error(ctx):
        ctx.row({"variant": "eager", "images_per_s": 10.0})
        ctx.row({"variant": "jit", "error": "TypeError: step() missing 1 required positional argument: 'y'"})
        ctx.record["status"] = "DONE"

    fake = gpu_sections.Section("fake", measured_with_an_error, 10, False)
    monkeypatch.setattr(gpu_sections, "SECTIONS", [*gpu_sections.SECTIONS, fake])
    gpu_sections.run_section("fake", tmp_path, True, time.time() + 60, 1)
    rec = _record(tmp_path, "fake")
    assert rec["status"] == "FAILED" and "TypeError" in rec["reason"]


def test_a_failed_section_fails_the_command_after_writing_everything(tmp_path, monkeypatch, capsys):
    def child(section, out, quick, env, budget, parity_jobs=4):
        status = "FAILED" if section.name == "train_step" else "DONE"
        return {
            "section": section.name,
            "status": status,
            "rows": [],
            "notes": [],
            "reason": "x" * (status == "FAILED"),
        }

    monkeypatch.setattr(gpu, "_run_child", child)
    monkeypatch.setattr(gpu, "_probe_determinism_flag", lambda env: {"flag": None, "tried": {}})
    assert gpu.main(["--cpu", "--out", str(tmp_path), "--sections", "train_step,losses"]) == 1
    assert {p.name for p in tmp_path.iterdir()} == {
        "env.json",
        "train_step.json",
        "losses.json",
        "summary.md",
    }
    assert "FAILED   train_step" in (tmp_path / "summary.md").read_text()
    assert "1 section(s) not passed: train_step FAILED" in capsys.readouterr().out


def test_a_section_over_its_budget_is_killed_and_reported(tmp_path):
    env = gpu.child_env(quick=True)
    rec = gpu._run_child(
        next(s for s in gpu_sections.SECTIONS if s.name == "parity_float64"), tmp_path, True, env, budget=1.0
    )
    assert rec["status"] == "TIMEOUT" and "budget" in rec["reason"]
    assert json.loads((tmp_path / "parity_float64.json").read_text())["status"] == "TIMEOUT"


def test_the_budget_is_the_sum_of_the_sections():
    assert gpu.total_budget(gpu_sections.SECTIONS) == sum(s.budget_s for s in gpu_sections.SECTIONS) <= 460
    assert "(budget 460 s)" in gpu.write_summary(Path(_tmp()), {}, True, time.time(), 460).read_text()


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp()


@pytest.mark.parametrize("module", sorted(gpu_sections.CLIS))
def test_the_declared_cli_flags_are_the_clis_own(module):
    main = {
        "jaxloss.parity": lambda: __import__("jaxloss.parity.__main__", fromlist=["main"]).main,
        "jaxloss.parity.models": lambda: __import__("jaxloss.parity.models.__main__", fromlist=["main"]).main,
        "jaxloss.parity.twin": lambda: __import__("jaxloss.parity.twin", fromlist=["main"]).main,
    }[module]()
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(text.getvalue().split())
    assert "--precision" in help_text and "--out" in help_text
    device = gpu_sections.CLIS[module].gpu_device
    assert ("--device" in help_text) == (device is not None)
    if device:
        assert f"--device {{cpu,{device}}}" in help_text


def test_without_matplotlib_the_model_clis_run_without_a_report(tmp_path, monkeypatch):
    # the GPU machine is promised flax, optax, orbax: not matplotlib, which the --out reports plot with
    calls = []

    def cli(self, module, args, **kw):
        calls.append(args)
        return {"command": " ".join([module, *args]), "rc": 0, "seconds": 0.0, "tail": ""}

    monkeypatch.setattr(gpu_sections.Ctx, "cli", cli)
    monkeypatch.setattr(gpu_sections, "_has_matplotlib", lambda: False)
    rec = {"section": "twin", "rows": [], "notes": []}
    gpu_sections._section_twin(gpu_sections.Ctx("twin", tmp_path, True, time.time() + 60, rec))
    assert calls == [["--model", "seed-cnn", "--steps", "2"]]
    assert rec["status"] == "PASSED" and "matplotlib is not installed" in rec["notes"][0]
    monkeypatch.setattr(gpu_sections, "_has_matplotlib", lambda: True)
    gpu_sections._section_models(
        gpu_sections.Ctx("models", tmp_path, True, time.time() + 60, dict(rec, notes=[]))
    )
    assert calls[-1] == ["--model", "seed-cnn", "--out", str(tmp_path / "models-seed-cnn")]


# ----------------------------------------------------------------------------- targets and tables
def _rows(jax_ips: float, eager: float, compiled: float | None) -> list[dict]:
    rows = []
    for model in ("seed-cnn", "resnet18"):
        rows.append({"variant": "jit", "model": model, "batch": 512, "images_per_s": jax_ips})
        rows.append({"variant": "eager", "model": model, "batch": 512, "images_per_s": eager})
        if compiled:
            rows.append({"variant": "compile", "model": model, "batch": 512, "images_per_s": compiled})
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


def test_every_registry_model_has_its_train_step_targets():
    from jaxloss.parity.models.twins import TORCH_TWINS as MODEL_NAMES

    goals = [t.goal for t in gpu.targets_of_the_run()]
    for model in MODEL_NAMES:
        assert sum(g.startswith(f"train step {model} ") for g in goals) == len(gpu.TRAIN_STEP_GOALS)


def test_train_step_table_ratios():
    md = train_step.markdown(_rows(3000.0, 1500.0, 1000.0))
    assert "| seed-cnn | 512 | 3e+03 | 1.5e+03 | 1e+03 | 2 | 3 | - | - |" in md


# ----------------------------------------------------------------------------- processes, Ctrl-C
def test_run_group_kills_the_command_and_what_it_started():
    rc, out, err = gpu_process.run_group(["bash", "-c", "sleep 30 & echo $!; wait"], timeout=1.0)
    assert rc is None and "killed after 1 s" in err
    _assert_gone(int(out.split()[0]))


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()  # a zombie is dead, not yet reaped
    except OSError:
        return False


def _assert_gone(pid: int) -> None:
    for _ in range(100):  # SIGKILL is delivered asynchronously
        if not _alive(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still alive")


def test_run_group_of_a_session_kills_what_left_the_group():
    # a section's CLI runs in a process group of its own inside the section's session: killed with the session
    child = f"{sys.executable} -c 'import os, time; os.setpgid(0, 0); time.sleep(30)'"
    rc, out, _ = gpu_process.run_group(["bash", "-c", f"{child} & echo $!; wait"], timeout=2.0, session=True)
    assert rc is None and out.split(), out
    _assert_gone(int(out.split()[0]))


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_kills_the_running_section_and_says_interrupted(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        "--cpu",
        "--out",
        str(tmp_path),
        "--sections",
        "parity_float32",
    ]
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    # SIGINT back to its default in the child: a suite started in the background (`cmd &`) inherits it
    # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt (the run would just finish)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        path = tmp_path / "env.json"

        def running() -> bool:
            try:
                return json.loads(path.read_text()).get("status") == "RUNNING"
            except (OSError, ValueError):
                return False

        _wait_for(running, 240, "the env section to start")
        section_pid = json.loads(path.read_text())["pid"]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (out, err)
    assert out.strip().endswith("python -m benchmarks.gpu: interrupted") and "Traceback" not in err
    _assert_gone(section_pid)
    assert not [p for p in gpu_process.session_pids(section_pid) if _alive(p)]
    time.sleep(1.0)  # a surviving section would rewrite its record now
    assert _record(tmp_path, "env")["status"] == "INTERRUPTED"
    summary = (tmp_path / "summary.md").read_text()
    assert "INTERRUPTED" in summary.splitlines()[0] and "Interrupted** during section env" in summary
    assert not (tmp_path / "parity_float32.json").exists()


def test_a_section_whose_orchestrator_is_killed_ends_itself(tmp_path):
    # SIGKILL cannot be caught: the section notices it was re-parented and ends its session
    code = (
        "import os, subprocess, sys, time\n"
        f"env = dict(os.environ, GPU_CHECK_PARENT=str(os.getpid()), PYTHONPATH={str(ROOT)!r})\n"
        f"subprocess.Popen([sys.executable, '-m', 'benchmarks.gpu', '--section', 'parity_float64', '--cpu', "
        f"'--out', {str(tmp_path)!r}, '--deadline', str(time.time() + 300)], env=env, cwd={str(ROOT)!r})\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env=_env(), start_new_session=True)
    try:
        path = tmp_path / "parity_float64.json"
        _wait_for(lambda: path.is_file() and "pid" in path.read_text(), 240, "the section to start")
        section_pid = json.loads(path.read_text())["pid"]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        # No fixed bound on how soon: the watcher polls every 0.5 s, but on loaded cores a
        # starved process took over 10 s to notice (this test failed ~1 in 5 with a 10 s
        # bound). What is proved does not depend on the time: the section dies while its
        # record still says RUNNING (it did not finish its work and exit), nothing here kills
        # it (the clean-up below comes after), and no process of its session is left.
        _wait_for(lambda: not _alive(section_pid), 240, "the section to end itself")
        assert json.loads(path.read_text())["status"] == "RUNNING"
        _wait_for(lambda: not [p for p in gpu_process.session_pids(parent.pid) if _alive(p)], 60,
                  "the section's processes to be gone")  # SIGKILL is delivered asynchronously
    finally:
        for pid in gpu_process.session_pids(parent.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- bad input
def _usage_error(main, argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes into a mode-0555 folder: use a read-only file system
        return Path("/proc/self/gpu-results")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    return folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget", "-1"], "argument --budget: must be a positive number of seconds, got '-1'"),
        (["--budget", "nan"], "argument --budget: must be a positive number of seconds, got 'nan'"),
        (["--parity-jobs", "0"], "argument --parity-jobs: must be a positive integer, got '0'"),
        (["--sections", "env,lossess"], "--sections: unknown lossess; known: env, parity_float32"),
        (["--out", "FILE"], "is a file, not a folder"),
        (["--out", "UNWRITABLE"], "is not a writable folder"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, monkeypatch, argv, message):
    started = []
    monkeypatch.setattr(gpu, "_probe_determinism_flag", lambda env: started.append(1))  # the first work
    (tmp_path / "FILE").write_text("")
    argv = [
        str(tmp_path / "FILE") if a == "FILE" else str(_unwritable(tmp_path)) if a == "UNWRITABLE" else a
        for a in argv
    ]
    line = _usage_error(gpu.main, ["--cpu", *argv])
    assert line.startswith("python -m benchmarks.gpu: error: ") and message in line
    assert not started


def test_a_batch_that_cannot_fit_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(train_step, "run", lambda *a, **k: pytest.fail("the benchmark ran"))
    line = _usage_error(train_step._cli, ["--models", "seed-cnn", "--batch-sizes", "8", "100000000"])
    assert line.startswith(
        "python -m benchmarks.train_step: error: --batch-sizes 100000000: a seed-cnn step needs at least"
    )
    assert "GiB are available" in line


def test_forward_bytes_bound_the_first_layers():
    # seed-cnn: conv 5x5 3->32 'SAME' on 32x32 gives 32*32*32 floats per image, then the pooled 16*16*32...
    assert train_step.forward_bytes_per_image("seed-cnn") >= 4 * (32 * 32 * 32 + 16 * 16 * 32)
