"""The sections of ``python -m benchmarks.gpu``: what each runs, in its own process, and records.

Each section is a function of a :class:`Ctx` (options, its JSON record saved on every change,
its deadline, a CLI runner); :data:`SECTIONS` lists them in order with their GPU time budgets.
A section raises :class:`Skip` when it cannot run here; it sets ``record["status"]`` (PASSED,
FAILED, TIMEOUT for comparisons, DONE for measurements) and ``record["markdown"]``.
:func:`run_section` runs one in this process; :mod:`benchmarks.gpu` starts one process per
section and writes the summary.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.timing import markdown_table

ROOT = Path(__file__).resolve().parents[1]


class Skip(Exception):
    """Raised by a section that cannot run here; the message says why (the section is SKIPPED).

    >>> from benchmarks.gpu_sections import Skip
    >>> str(Skip("torchvision does not import here"))
    'torchvision does not import here'
    """


# ----------------------------------------------------------------------------- section context
@dataclass
class Ctx:
    """What a section sees: options, its JSON record (saved on every change), the time it has left, a CLI runner.

    >>> import tempfile, time
    >>> from pathlib import Path
    >>> from benchmarks.gpu_sections import Ctx
    >>> out = Path(tempfile.mkdtemp())
    >>> ctx = Ctx("demo", out, True, time.time() + 60, {"rows": [], "notes": []})
    >>> ctx.row({"x": 1}); (out / "demo.json").is_file(), ctx.torch_device
    (True, 'cpu')
    """

    name: str
    out: Path
    quick: bool
    deadline: float
    record: dict[str, Any]
    parity_jobs: int = 4  # worker processes of the parity CLI on the GPU (1 with --cpu)

    @property
    def gpu(self) -> bool:
        return not self.quick

    @property
    def torch_device(self) -> str:
        return "cuda" if self.gpu else "cpu"

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self) -> None:
        write_json(self.out / f"{self.name}.json", self.record)

    def row(self, row: dict[str, Any]) -> None:
        self.record["rows"].append(row)
        self.save()

    def note(self, text: str) -> None:
        self.record["notes"].append(text)
        self.save()

    def cli(
        self, module: str, args: list[str], *, precision: str | None = "ieee", margin: float = 5.0
    ) -> dict[str, Any]:
        """Run ``python -m module args`` (with ``--precision``, ``--device gpu`` where it has them)."""
        src = module_source(module)
        if src is None:
            raise Skip(f"python -m {module} does not exist in this checkout")
        args = list(args)
        if self.gpu and '"--device"' in src:
            args += ["--device", "gpu" if '"gpu"' in src else "cuda"]
        if precision is not None and '"--precision"' in src:
            cmd = [sys.executable, "-m", module, *args, "--precision", precision]
        elif precision is not None:
            self.note(
                f"`python -m {module}` has no --precision flag yet: run inside parity.precision({precision!r})"
            )
            code = (
                "import runpy, sys\nfrom parity.precisions import precision\n"
                f"sys.argv = [{module!r}] + {args!r}\n"
                f"with precision({precision!r}):\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
            )
            cmd = [sys.executable, "-c", code]
        else:
            cmd = [sys.executable, "-m", module, *args]
        shown = (
            " ".join(["python", "-m", module, *args, *cmd[3 + len(args) :]])
            if cmd[1] == "-m"
            else (" ".join(["python", "-m", module, *args]) + f" (inside parity.precision({precision!r}))")
        )
        t0 = time.time()
        timeout = max(1.0, self.left() - margin)
        rc, out, err = run_group(cmd, timeout)
        text = out + err
        run = {"command": shown, "rc": rc, "seconds": round(time.time() - t0, 1), "tail": text[-3000:]}
        self.record.setdefault("commands", []).append(run)
        self.save()
        return run


def run_group(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[int | None, str, str]:
    """Run ``cmd`` in its own process group: ``(exit status or None if it ran past timeout, stdout, stderr)``.

    On timeout the whole group is killed: the command and every process it started (parity's
    worker processes hold the GPU too).

    >>> from benchmarks.gpu_sections import run_group
    >>> rc, out, err = run_group(["echo", "hi"], timeout=10)
    >>> rc, out.strip(), err
    (0, 'hi', '')
    """
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err + f"\n[killed after {timeout:.0f} s]"


def module_source(module: str) -> str | None:
    """The source of what ``python -m module`` runs, read without importing it."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base / "__main__.py", base.with_suffix(".py")):
        if path.is_file():
            return path.read_text()
    return None


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


# ----------------------------------------------------------------------------- sections
def _section_env(ctx: Ctx) -> None:
    import jax
    import numpy as np
    import torch

    from parity.precisions import precision, settings

    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for mod in ("jaxlib", "flax", "optax", "torchvision"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 - torchvision raises RuntimeError beside a mismatched torch
            versions[mod] = f"unavailable ({type(e).__name__})"
    ctx.record["versions"] = versions
    ctx.record["jax_devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    ctx.record["torch_cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    ctx.record["determinism_probe"] = json.loads(os.environ.get("GPU_CHECK_DETERMINISM", "{}"))
    try:
        ctx.record["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            check=False, capture_output=True, text=True, timeout=20,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        ctx.record["nvidia_smi"] = None
    with precision("ieee"):
        ctx.record["settings_ieee"] = settings()
    ctx.save()
    if ctx.gpu and (jax.devices()[0].platform != "gpu" or not torch.cuda.is_available()):
        raise RuntimeError(
            f"no GPU: JAX devices {ctx.record['jax_devices']}, torch CUDA {torch.cuda.is_available()}"
        )
    # The modes take effect on the device: a float32 matmul's error from float64 in each.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(512, 2048)).astype(np.float32), rng.normal(size=(2048, 512)).astype(np.float32)
    truth = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    ta, tb = torch.from_numpy(a).to(ctx.torch_device), torch.from_numpy(b).to(ctx.torch_device)
    for mode in ("ieee", "tf32", "default"):
        with precision(mode):
            j = np.asarray(jax.jit(lambda x, y: x @ y)(a, b), np.float64)
            t = (ta @ tb).double().cpu().numpy()
        ctx.row({"mode": mode, "jax_matmul_error": float((np.abs(j - truth) / scale).max()),
                 "torch_matmul_error": float((np.abs(t - truth) / scale).max())})  # fmt: skip
    rows = [[r["mode"], r["jax_matmul_error"], r["torch_matmul_error"]] for r in ctx.record["rows"]]
    ctx.record["markdown"] = (
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.\n\nJAX devices: {ctx.record['jax_devices']}; "
        f"torch CUDA: {ctx.record['torch_cuda']}; nvidia-smi: {ctx.record['nvidia_smi']}.\n\n"
        f"XLA determinism flag: {ctx.record['determinism_probe'].get('flag') or 'none accepted'}.\n\n"
        "Settings in `ieee`: "
        + ", ".join(f"`{k}={v}`" for k, v in ctx.record["settings_ieee"].items())
        + "\n\n"
        "Float32 matmul 512x2048x512, max |error| / (|a| |b|) from float64, per mode (TF32: ~1e-3; float32: ~1e-7):\n\n"
        + markdown_table(["mode", "jax", "torch"], rows)
    )
    ctx.record["status"] = "PASSED"


def _parity_summary(ctx: Ctx, folder: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    report = folder / "report.json"
    if not report.is_file():
        return None
    data = json.loads(report.read_text())
    failures = [f.get("id", "?") for f in data.get("failures", [])]
    summary = {**data.get("summary", {}), "failure_ids": failures}
    ctx.row({"command": run["command"], "rc": run["rc"], "seconds": run["seconds"], **summary})
    return summary


def _cli_status(ctx: Ctx, run: dict[str, Any]) -> str:
    """PASSED (exit 0), TIMEOUT (killed at the section's deadline, with the reason) or FAILED."""
    if run["rc"] is None:
        ctx.record["reason"] = f"`{run['command']}` ran past the section's time budget"
        return "TIMEOUT"
    return "PASSED" if run["rc"] == 0 else "FAILED"


def _parity_section(ctx: Ctx, args: list[str], folder: str, precision: str = "ieee") -> None:
    out = ctx.out / folder
    jobs = ["-j", "1" if ctx.quick else str(ctx.parity_jobs)]
    run = ctx.cli("parity", [*args, *jobs, "--out", str(out)], precision=precision)
    summary = _parity_summary(ctx, out, run)
    if summary is None:
        ctx.record["status"] = _cli_status(ctx, run)
        ctx.record["markdown"] = (
            f"`{run['command']}` wrote no report (rc {run['rc']}):\n\n```\n{run['tail'][-1500:]}\n```"
        )
        return
    ctx.record["status"] = _cli_status(ctx, run)
    s = summary
    ctx.record["markdown"] = (
        f"`{run['command']}`: {s.get('cases')} cases, {s.get('passed')} passed, {s.get('failed')} failed, "
        f"{s.get('errors')} errors, {s.get('not_implemented')} not implemented; {run['seconds']} s. Report: `{out}/report.md`."
        + ("\n\nFailed: " + ", ".join(f"`{i}`" for i in s["failure_ids"][:30]) if s["failure_ids"] else "")
    )


QUICK_LOSSES = "l1_loss"


def _section_parity_float32(ctx: Ctx) -> None:
    _parity_section(
        ctx, ["--dtype", "float32"] + (["--loss", QUICK_LOSSES] if ctx.quick else []), "parity-float32"
    )


def _section_parity_float64(ctx: Ctx) -> None:
    _parity_section(
        ctx, ["--dtype", "float64"] + (["--loss", QUICK_LOSSES] if ctx.quick else []), "parity-float64"
    )


def _section_fuzz(ctx: Ctx) -> None:
    args = ["--fuzz", "3" if ctx.quick else "150", "--seed", "12", "--dtype", "float32", "--dtype", "float64"]
    _parity_section(ctx, args + (["--loss", QUICK_LOSSES] if ctx.quick else []), "parity-fuzz")


def _section_parity_tf32(ctx: Ctx) -> None:
    src = module_source("parity") or ""
    if '"--precision"' not in src:
        raise Skip("python -m parity has no --precision flag here: it picks the tf32 tolerance tier")
    _parity_section(
        ctx, ["--dtype", "float32"] + (["--loss", QUICK_LOSSES] if ctx.quick else []), "parity-tf32", "tf32"
    )
    ieee = (
        json.loads((ctx.out / "parity_float32.json").read_text())
        if (ctx.out / "parity_float32.json").is_file()
        else {}
    )
    ieee_failed = {i for r in ieee.get("rows", []) for i in r.get("failure_ids", [])}
    tf32_failed = {i for r in ctx.record["rows"] for i in r.get("failure_ids", [])}
    only = sorted(tf32_failed - ieee_failed)
    ctx.record["tf32_only_failures"] = only
    ctx.record["markdown"] += f"\n\nCases that fail only in tf32 ({len(only)}): " + (
        ", ".join(f"`{i}`" for i in only) or "none"
    )
    # A tf32-only failure is a TF32 effect, reported, not a parity failure.
    if ieee and ctx.record["status"] == "FAILED" and not (tf32_failed & ieee_failed) and tf32_failed:
        ctx.record["status"] = "PASSED"
        ctx.note("every failure here passes in ieee: reported as TF32 effects")


def _cli_runs(ctx: Ctx, module: str, runs: list[list[str]], folder: str) -> None:
    statuses = []
    lines = []
    for args in runs:
        out = ctx.out / f"{folder}-{args[1]}"
        has_out = '"--out"' in (module_source(module) or "")
        run = ctx.cli(module, [*args, "--out", str(out)] if has_out else args)
        ctx.row({k: run[k] for k in ("command", "rc", "seconds")})
        statuses.append(_cli_status(ctx, run))
        lines.append(f"- `{run['command']}`: {'passed' if run['rc'] == 0 else 'FAILED (rc ' + str(run['rc']) + ')'}, "
                     f"{run['seconds']} s" + (f"; report in `{out}`" if has_out else ""))  # fmt: skip
        if run["rc"] != 0:
            lines.append("\n```\n" + run["tail"][-1500:] + "\n```")
    ctx.record["status"] = next((s for s in ("TIMEOUT", "FAILED") if s in statuses), "PASSED")
    ctx.record["markdown"] = "\n".join(lines)


def _section_models(ctx: Ctx) -> None:
    models = ["seed-cnn"] if ctx.quick else ["seed-cnn", "resnet18"]
    _cli_runs(ctx, "parity.models", [["--model", m] for m in models], "models")


def _section_twin(ctx: Ctx) -> None:
    runs = (
        [["--model", "seed-cnn", "--steps", "2"]]
        if ctx.quick
        else [["--model", "seed-cnn", "--steps", "50"], ["--model", "resnet18", "--steps", "10"]]
    )
    _cli_runs(ctx, "parity.twin", runs, "twin")


def _section_train_step(ctx: Ctx) -> None:
    models = ["seed-cnn"] if ctx.quick else ["seed-cnn", "resnet18"]
    opts = (["--batch-sizes", "8", "--steps", "2", "--epoch-images", "32", "--device", "cpu", "--compile-backend", "eager"]
            if ctx.quick else ["--batch-sizes", "128", "512", "--steps", "10", "--epoch-images", "50000"])  # fmt: skip
    for model in models:
        for fw in ("jax", "torch"):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.gpu_train_step",
                "--framework",
                fw,
                "--model",
                model,
                *opts,
            ]
            # JAX alone in its process: its default allocator (preallocated), as a training script has it
            env = {
                k: v
                for k, v in os.environ.items()
                if not (fw == "jax" and k == "XLA_PYTHON_CLIENT_PREALLOCATE")
            }
            rc, out, err = run_group(cmd, max(1.0, ctx.left() - 3), env=env)
            for line in out.splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    if "settings" in row:
                        ctx.record["settings"] = row["settings"]
                    else:
                        ctx.row(row)
            if rc is None:
                ctx.note(f"{fw} {model} ran out of the section's time: the rows above are what it measured")
            elif rc != 0:
                ctx.note(f"{fw} {model} exited with {rc}: {err[-800:]}")
    rows = ctx.record["rows"]
    if rows and all("skipped" in r for r in rows):
        raise Skip("; ".join(sorted({r["skipped"] for r in rows})))
    ctx.record["markdown"] = train_step_markdown(rows) + _settings_line(ctx.record.get("settings"))
    ctx.record["status"] = "DONE"


def _settings_line(settings: dict[str, Any] | None) -> str:
    if not settings:
        return ""
    keys = ("jax_default_matmul_precision", "jax_enable_x64", "torch_float32_matmul_precision", "torch_cudnn_allow_tf32",
            "torch_cudnn_deterministic", "torch_device")  # fmt: skip
    return "\n\nSettings: " + ", ".join(f"`{k}={settings.get(k)}`" for k in keys)


def images_per_s(
    rows: list[dict[str, Any]], fw: str, variant: str, model: str, batch: int, epoch: bool = False
) -> float | None:
    for r in rows:
        if (r.get("framework"), r.get("variant"), r.get("model"), r.get("batch")) == (
            fw,
            variant,
            model,
            batch,
        ) and (("epoch_s" in r) == epoch):
            return r.get("images_per_s")
    return None


def train_step_markdown(rows: list[dict[str, Any]]) -> str:
    """The train-step table: images/s per framework and the JAX/torch ratios.

    >>> from benchmarks.gpu_sections import train_step_markdown
    >>> rows = [{"framework": "jax", "variant": "jit", "model": "seed-cnn", "batch": 512, "images_per_s": 300.0},
    ...         {"framework": "torch", "variant": "eager", "model": "seed-cnn", "batch": 512, "images_per_s": 200.0}]
    >>> "| seed-cnn | 512 | 300 | 200 | - | 1.5 | - |" in train_step_markdown(rows)
    True
    """
    keys = sorted({(r["model"], r["batch"]) for r in rows if "batch" in r and "epoch_s" not in r})
    table = []
    for model, batch in keys:
        j, e, c = (
            images_per_s(rows, fw, v, model, batch)
            for fw, v in (("jax", "jit"), ("torch", "eager"), ("torch", "compile"))
        )
        table.append(
            [model, batch, j or "-", e or "-", c or "-", j / e if j and e else "-", j / c if j and c else "-"]
        )
    epochs = []
    for model in sorted({m for m, _ in keys}):
        batch = max(b for m, b in keys if m == model)
        vals = [
            images_per_s(rows, fw, v, model, batch, epoch=True)
            for fw, v in (("jax", "jit"), ("torch", "eager"), ("torch", "compile"))
        ]
        epochs.append([model, batch] + [v or "-" for v in vals])
    errors = [
        f"- {r['framework']} {r.get('variant', '')} {r['model']} {r.get('batch', '')}: {r['error']}"
        for r in rows
        if "error" in r
    ]
    return (
        "Images/s, float32 (`ieee`), SGD(momentum 0.9) + cross entropy, CIFAR-shaped random batch on the device, "
        "steps queued (median):\n\n"
        + markdown_table(
            ["model", "batch", "jax", "torch eager", "torch.compile", "jax/eager", "jax/compile"], table
        )
        + "\n\nOne epoch over device-held CIFAR-shaped data, images/s:\n\n"
        + markdown_table(["model", "batch", "jax", "torch eager", "torch.compile"], epochs)
        + ("\n\nErrors:\n" + "\n".join(errors) if errors else "")
    )


def _section_losses(ctx: Ctx) -> None:
    from benchmarks import gpu_losses
    from benchmarks.timing import benchmark_precision

    with benchmark_precision() as settings:
        ctx.record["settings"] = settings
        gpu_losses.run(ctx.row, ctx.note, ctx.record, quick=ctx.quick, device=ctx.torch_device, left=ctx.left)
    ctx.record["markdown"] = gpu_losses.markdown(ctx.record) + _settings_line(ctx.record.get("settings"))
    ctx.record["status"] = "DONE"


def _section_torchvision(ctx: Ctx) -> None:
    try:
        import torchvision.ops as tvops
    except Exception as e:  # beside a mismatched torch build torchvision raises RuntimeError, not ImportError
        raise Skip(
            f"torchvision does not import here ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from e
    from benchmarks import gpu_losses

    gpu_losses.torchvision_rows(tvops, ctx.row, ctx.note, device="gpu" if ctx.gpu else "cpu")
    rows = ctx.record["rows"]
    ctx.record["status"] = "PASSED" if all(r.get("passed") for r in rows if "skipped" not in r) else "FAILED"
    ctx.record["markdown"] = markdown_table(
        ["loss", "dtype", "result"],
        [
            [
                r["loss"],
                r.get("dtype", "-"),
                r.get("skipped") or ("passed" if r["passed"] else "FAILED: " + r["detail"]),
            ]
            for r in rows
        ],
    )


@dataclass(frozen=True)
class Section:
    """One section of the check: its function, its time budget on the GPU, whether it compares.

    >>> from benchmarks.gpu_sections import SECTIONS
    >>> [s.name for s in SECTIONS][:3], sum(s.budget_s for s in SECTIONS[:-1])
    (['env', 'parity_float32', 'parity_float64'], 460)
    """

    name: str
    run: Callable[[Ctx], None]
    budget_s: float  # on the GPU; --cpu gives each section at most its own budget too
    deterministic: bool  # XLA determinism flag in XLA_FLAGS (comparisons yes, benchmarks no)


SECTIONS = [
    # The budgets add up to benchmarks.gpu.TOTAL_BUDGET_S; parity_tf32 runs on what the others leave.
    Section("env", _section_env, 35, True),
    Section("parity_float32", _section_parity_float32, 60, True),
    Section("parity_float64", _section_parity_float64, 60, True),
    Section("fuzz", _section_fuzz, 20, True),
    Section("models", _section_models, 35, True),
    Section("twin", _section_twin, 45, True),
    Section("train_step", _section_train_step, 140, False),
    Section("losses", _section_losses, 45, False),
    Section("torchvision", _section_torchvision, 20, True),
    Section("parity_tf32", _section_parity_tf32, 60, True),
]


def run_section(name: str, out: Path, quick: bool, deadline: float, parity_jobs: int) -> int:
    section = next(s for s in SECTIONS if s.name == name)
    record: dict[str, Any] = {
        "section": name,
        "status": "RUNNING",
        "rows": [],
        "notes": [],
        "markdown": "",
        "started": time.time(),
    }
    ctx = Ctx(name, out, quick, deadline, record, parity_jobs)
    ctx.save()
    try:
        section.run(ctx)
    except Skip as e:
        record["status"], record["reason"] = "SKIPPED", str(e)
    except Exception as e:  # noqa: BLE001 - one section's crash must not hide the others
        import traceback

        record["status"], record["reason"] = "ERROR", f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()[-4000:]
    record["seconds"] = round(time.time() - record["started"], 1)
    ctx.save()
    return 0
