"""The sections of ``python -m benchmarks.gpu``: what each runs, in its own process, and records.

Each section is a function of a :class:`Ctx` (options, its JSON record saved on every change,
its deadline, a CLI runner); :data:`SECTIONS` lists them in order with their GPU time budgets.
A section sets ``record["status"]`` (PASSED, FAILED, TIMEOUT for comparisons, DONE for
measurements) and ``record["markdown"]``; a section with any ``error`` row is FAILED whatever
it set (:func:`run_section`), one that raises is ERROR, and only a missing optional dependency
(torchvision) raises :class:`Skip` (SKIPPED, with the reason). :func:`run_section` runs one in
this process; :mod:`benchmarks.gpu` starts one process per section and writes the summary.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.gpu_process import exit_with_parent, run_group
from benchmarks.timing import markdown_table


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
        self, module: str, args: list[str], *, precision: str = "ieee", margin: float = 5.0
    ) -> dict[str, Any]:
        """Run ``python -m module args`` with the flags :data:`CLIS` declares it has (precision, device)."""
        flags = CLIS[module]
        args = [*args, "--precision", precision]
        if self.gpu and flags.gpu_device:
            args += ["--device", flags.gpu_device]
        cmd = [sys.executable, "-m", module, *args]
        t0 = time.time()
        rc, out, err = run_group(cmd, max(1.0, self.left() - margin))
        run = {"command": " ".join(["python", "-m", module, *args]), "rc": rc,
               "seconds": round(time.time() - t0, 1), "tail": (out + err)[-3000:]}  # fmt: skip
        self.record.setdefault("commands", []).append(run)
        self.save()
        return run


@dataclass(frozen=True)
class CliFlags:
    """The flags of a project CLI that the check relies on (every one has ``--precision`` and ``--out``).

    >>> from benchmarks.gpu_sections import CLIS
    >>> CLIS["jaxloss.parity"].gpu_device, CLIS["jaxloss.parity.twin"].gpu_device
    ('gpu', None)
    """

    gpu_device: (
        str | None
    )  # the value of its ``--device`` on a GPU; None: it has no --device (JAX's default device)
    report_needs_matplotlib: bool  # its --out report draws a plot


CLIS = {
    # Declared here, checked against each CLI's own parser by tests/test_gpu_check.py.
    "jaxloss.parity": CliFlags(gpu_device="gpu", report_needs_matplotlib=False),
    "jaxloss.parity.models": CliFlags(gpu_device=None, report_needs_matplotlib=True),
    "jaxloss.parity.twin": CliFlags(gpu_device=None, report_needs_matplotlib=True),
}


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


# ----------------------------------------------------------------------------- sections
def _section_env(ctx: Ctx) -> None:
    import jax
    import numpy as np
    import torch

    from jaxloss.parity.precisions import precision, settings

    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for mod in ("jaxlib", "flax", "optax", "orbax.checkpoint", "torchvision", "matplotlib"):
        try:
            module = importlib.import_module(
                mod
            )  # imported: torchvision beside a mismatched torch fails here
            versions[mod] = getattr(module, "__version__", None) or importlib.metadata.version(
                mod.replace(".", "-")
            )
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
    where = f"JAX {', '.join(ctx.record['jax_devices'])}; torch {ctx.torch_device}"
    gpu_name = ctx.record["nvidia_smi"] or ctx.record["torch_cuda"] or "no GPU found"
    ctx.record["device"] = f"{gpu_name} ({where})" if ctx.gpu else f"CPU, --cpu mode ({where})"
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
    run = ctx.cli("jaxloss.parity", [*args, *jobs, "--out", str(out)], precision=precision)
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


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _cli_runs(ctx: Ctx, module: str, runs: list[list[str]], folder: str) -> None:
    statuses = []
    lines = []
    # The GPU machine is promised flax, optax and orbax, not matplotlib: without it, a CLI whose
    # report draws a plot runs without --out (its verdict and exit status are the same).
    reports = not CLIS[module].report_needs_matplotlib or _has_matplotlib()
    if not reports:
        ctx.note(
            f"matplotlib is not installed: `python -m {module}` runs without --out (no report files, same verdict)"
        )
    for args in runs:
        out = ctx.out / f"{folder}-{args[1]}"
        run = ctx.cli(module, [*args, "--out", str(out)] if reports else args)
        ctx.row({k: run[k] for k in ("command", "rc", "seconds")})
        statuses.append(_cli_status(ctx, run))
        lines.append(f"- `{run['command']}`: {'passed' if run['rc'] == 0 else 'FAILED (rc ' + str(run['rc']) + ')'}, "
                     f"{run['seconds']} s" + (f"; report in `{out}`" if reports else ""))  # fmt: skip
        if run["rc"] != 0:
            lines.append("\n```\n" + run["tail"][-1500:] + "\n```")
    ctx.record["status"] = next((s for s in ("TIMEOUT", "FAILED") if s in statuses), "PASSED")
    ctx.record["markdown"] = "\n".join(lines)


def _registry_models(ctx: Ctx) -> list[str]:
    """Every model of both tables (:data:`jaxloss.parity.models.twins.TORCH_TWINS`: trained and with a torch twin)
    on the GPU; the first with ``--cpu``."""
    from jaxloss.parity.models.twins import TORCH_TWINS

    return list(TORCH_TWINS) if ctx.gpu else list(TORCH_TWINS)[:1]


def _section_models(ctx: Ctx) -> None:
    _cli_runs(ctx, "jaxloss.parity.models", [["--model", m] for m in _registry_models(ctx)], "models")


def _section_twin(ctx: Ctx) -> None:
    # on the GPU each model's default number of steps (python -m jaxloss.parity.twin --help); --cpu: 2
    steps = ["--steps", "2"] if ctx.quick else []
    _cli_runs(ctx, "jaxloss.parity.twin", [["--model", m, *steps] for m in _registry_models(ctx)], "twin")


def _section_train_step(ctx: Ctx) -> None:
    from benchmarks import train_step

    models = _registry_models(ctx)
    batches = [128, 512] if ctx.gpu else [2]
    opts = ({"steps": 10, "reps": 3, "epoch_images": 50_000, "device": "cuda", "compile_backend": "inductor"} if ctx.gpu
            else {"steps": 1, "reps": 1, "epoch_images": 4, "device": "cpu", "compile_backend": "eager"})  # fmt: skip
    why = train_step.check_batch_sizes(models, batches, opts["device"])
    if why:
        raise RuntimeError(why)
    for row in train_step.run(
        models, batches, ["jit", "eager", "compile"], opts, left=lambda: ctx.left() - 3
    ):
        if "settings" in row:
            ctx.record["settings"] = row["settings"]
        else:
            ctx.row(row)
    ctx.record["markdown"] = train_step.markdown(ctx.record["rows"]) + _settings_line(
        ctx.record.get("settings")
    )
    timed_out = [r for r in ctx.record["rows"] if r.get("timeout")]
    if timed_out:
        ctx.record["reason"] = f"{len(timed_out)} configuration(s) ran past the section's time budget"
    ctx.record["status"] = "TIMEOUT" if timed_out else "DONE"


def _settings_line(settings: dict[str, Any] | None) -> str:
    if not settings:
        return ""
    keys = ("jax_default_matmul_precision", "jax_enable_x64", "torch_float32_matmul_precision", "torch_cudnn_allow_tf32",
            "torch_cudnn_deterministic", "torch_device")  # fmt: skip
    return "\n\nSettings: " + ", ".join(f"`{k}={settings.get(k)}`" for k in keys)


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
    >>> [s.name for s in SECTIONS][:3]
    ['env', 'parity_float32', 'parity_float64']
    """

    name: str
    run: Callable[[Ctx], None]
    budget_s: float  # seconds on the GPU (benchmarks.gpu.section_budget scales it for --cpu)
    deterministic: bool  # XLA determinism flag in XLA_FLAGS (comparisons yes, benchmarks no)


SECTIONS = [
    # The command's budget is their sum (benchmarks.gpu.total_budget): 460 s, inside the 8 minutes
    # with the start, the determinism probe and the summary.
    Section("env", _section_env, 30, True),
    Section("parity_float32", _section_parity_float32, 55, True),
    Section("parity_float64", _section_parity_float64, 50, True),
    Section("fuzz", _section_fuzz, 20, True),
    Section("models", _section_models, 35, True),
    Section("twin", _section_twin, 40, True),
    Section("train_step", _section_train_step, 125, False),
    Section("losses", _section_losses, 40, False),
    Section(
        "torchvision", _section_torchvision, 30, True
    ),  # compiles ~20 comparisons (XLA compiles on the host CPU)
    Section("parity_tf32", _section_parity_tf32, 35, True),
]


def _error_rows_fail(record: dict[str, Any]) -> None:
    """A measurement or comparison with an error row is FAILED, whatever the section concluded.

    >>> from benchmarks.gpu_sections import _error_rows_fail
    >>> rec = {"status": "DONE", "rows": [{"x": 1}, {"error": "TypeError: bad call"}]}
    >>> _error_rows_fail(rec); rec["status"], rec["reason"]
    ('FAILED', '1 error row(s), the first: TypeError: bad call')
    """
    errors = [r["error"] for r in record.get("rows", []) if "error" in r]
    if errors and record["status"] in ("DONE", "PASSED"):
        record["status"] = "FAILED"
        record["reason"] = f"{len(errors)} error row(s), the first: {errors[0]}"


def run_section(name: str, out: Path, quick: bool, deadline: float, parity_jobs: int) -> int:
    """Run one section in this process and save its record; 0 unless the section could not be recorded."""
    section = next(s for s in SECTIONS if s.name == name)
    exit_with_parent()  # an orchestrator killed without a word must not leave this section holding the device
    record: dict[str, Any] = {
        "section": name,
        "status": "RUNNING",
        "rows": [],
        "notes": [],
        "markdown": "",
        "started": time.time(),
        "pid": os.getpid(),
    }
    ctx = Ctx(name, out, quick, deadline, record, parity_jobs)
    ctx.save()
    try:
        section.run(ctx)
        _error_rows_fail(record)
    except Skip as e:
        record["status"], record["reason"] = "SKIPPED", str(e)
    except Exception as e:  # noqa: BLE001 - one section's crash must not hide the others
        import traceback

        record["status"], record["reason"] = "ERROR", f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()[-4000:]
    record["seconds"] = round(time.time() - record["started"], 1)
    ctx.save()
    return 0
