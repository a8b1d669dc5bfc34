"""The twin's report: the verdict line, the summary, the per-step table and plot (the ones
:func:`jaxloss.parity.compare_training` users get, :mod:`jaxloss.parity.training.table`), and the files
``twin.md``, ``twin.json`` and ``twin.png``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from jaxloss.parity.training.table import format_table as _format_steps
from jaxloss.parity.training.table import plot_steps
from jaxloss.parity.twin.results import TwinResult

__all__ = ["REPORT_FILES", "write_report"]

REPORT_FILES = ("twin.md", "twin.json", "twin.png")


def format_table(result: TwinResult, markdown: bool = False, width: int | None = None) -> str:
    """The per-step table of :func:`jaxloss.parity.training.format_table` (every column in Markdown; on a
    terminal ``width`` wide the columns on the right are left out until a line fits)."""
    return _format_steps(result.steps, markdown=markdown, width=width)


def summary(result: TwinResult) -> str:
    """One paragraph: the run, the largest differences, torch's own float32 error and the verdict."""
    c = result.config
    opt = f"{c['optimizer']} (lr {c['lr']}"
    opt += f", momentum {c['momentum']})" if c["optimizer"] == "sgd" else ")"
    text = (
        f"twin run: {c['model']} / {opt} / {c['loss']}, {c['steps']} steps of batch {c['batch_size']} in "
        f"{c['dtype']} (precision {c['precision']}) on {result.device}: max |dloss| {result.max_loss_diff:.2e}, "
        f"max |dparam| {result.max_param_diff:.2e}, max |dstat| {result.max_buffer_diff:.2e}"
    )
    refs = [s for s in result.steps if s.ref_param_diff is not None]
    if refs:
        text += (
            f"; torch's own float32 error (vs float64): max |dloss| {max(s.ref_loss_diff for s in refs):.2e}, "  # type: ignore[type-var]
            f"max |dparam| {max(s.ref_param_diff for s in refs):.2e}; Flax's: max |dloss| "  # type: ignore[type-var]
            f"{max(s.jax_ref_loss_diff for s in refs):.2e}, max |dparam| {max(s.jax_ref_param_diff for s in refs):.2e}"  # type: ignore[type-var]
        )
    n, strict = len(result.steps), sum(s.strict for s in result.steps)
    within = sum(s.within_tolerance for s in result.steps)
    verdict = "within" if result.passed else "OUTSIDE"
    where = "at every step" if result.passed else f"at {n - within} step(s), first step {_first_failing(result)}"
    text += (
        f"; {verdict} {c['dtype']} tolerance {where} ({within}/{n} steps within; strict rtol "
        f"{result.rtol:g} / atol {result.atol:g}: {strict}/{n}"
    )
    if refs and strict < within:
        text += "; the other steps: no farther apart than twice torch's own float32 error vs float64"
    text += ")"
    if result.diagnosis is not None:
        text += "\n" + result.diagnosis.line()
    return text


def difference_kind(result: TwinResult) -> str:
    """What kind of difference a failed run shows, from its dtype and its diagnosis (a phrase)."""
    d = result.diagnosis
    if result.config.get("dtype") == "float64":
        return "a real divergence: float64 leaves no room for rounding"
    if d is None:
        return "not located (the diagnosis did not run)"
    if d.flax_only_layer and d.routing:
        return f"a ReLU / max-pool near-tie decided differently at {d.flax_only_layer} (float32 rounding)"
    if d.flax_only_layer:
        return f"Flax's float32 run alone leaves float64 at {d.flax_only_layer} (torch's does not): likely a porting difference"
    if (d.torch_ref_passed if d.layer else d.parameter_torch_ref_passed) is False:
        return "float32 rounding: torch's own float32 run leaves float64 there too"
    return "see the diagnosis below"


def verdict_line(result: TwinResult, exact_command: str = "") -> str:
    """The first line: passed, or how many steps failed, what kind of difference it is, and the
    command that compares exactly (float64)."""
    n, within = len(result.steps), sum(s.within_tolerance for s in result.steps)
    dtype = result.config.get("dtype", "")
    if result.passed:
        return f"PASSED: {n} of {n} steps within {dtype} tolerance"
    text = (f"FAILED: {n - within} of {n} steps outside {dtype} tolerance (first: step {_first_failing(result)}): "
            f"{difference_kind(result)}")
    if exact_command and dtype != "float64":
        text += f". Exact comparison: {exact_command}"
    return text


def _first_failing(result: TwinResult) -> int | None:
    return next((s.step for s in result.steps if not s.within_tolerance), None)


def plot(result: TwinResult, path: Path) -> None:
    """``twin.png``: :func:`jaxloss.parity.training.plot_steps`, titled with the run and what kind of difference it shows."""
    c = result.config
    n, within = len(result.steps), sum(s.within_tolerance for s in result.steps)
    opt = f"{c['optimizer']} lr {c['lr']:g}"
    if c["optimizer"] == "sgd" and c["momentum"]:
        opt += f" momentum {c['momentum']:g}"
    verdict = "PASSED" if result.passed else f"{n - within} of {n} steps outside tolerance: {difference_kind(result)}"
    plot_steps(result.steps, path, f"twin run: {c['model']}, {opt}, {c['loss']}, batch {c['batch_size']}, {c['dtype']}\n{verdict}")


def write_report(result: TwinResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``twin.md``, ``twin.json`` and ``twin.png`` into ``out``; returns their paths.

    >>> import tempfile
    >>> from jaxloss.parity.twin import TwinResult, TwinStep, write_report
    >>> step = TwinStep(1, 2.3, 2.3, 0.0, 1e-8, 1e-7, 0.0, True, param_bound=1e-5, loss_bound=1e-5,
    ...                 within_tolerance=True)
    >>> config = {"model": "seed-cnn", "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "loss": "cross_entropy",
    ...           "steps": 1, "batch_size": 2, "dtype": "float32", "precision": "ieee"}
    >>> sorted(write_report(TwinResult(config, 1.3e-6, 1e-5, [step], "cpu", 1.0), tempfile.mkdtemp()))
    ['json', 'md', 'png']
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "twin.md", "json": out_dir / "twin.json", "png": out_dir / "twin.png"}
    paths["md"].write_text(f"{summary(result).replace(chr(10), chr(10) * 2)}\n\n{format_table(result, markdown=True)}\n")
    payload = {
        "config": result.config,
        "rtol": result.rtol,
        "atol": result.atol,
        "device": result.device,
        "seconds": result.seconds,
        "passed": result.passed,
        "first_failing_step": _first_failing(result),
        "max_loss_diff": result.max_loss_diff,
        "max_param_diff": result.max_param_diff,
        "max_buffer_diff": result.max_buffer_diff,
        "steps": [asdict(s) for s in result.steps],
        "diagnosis": result.diagnosis.to_json() if result.diagnosis is not None else None,
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(result, paths["png"])
    return paths
