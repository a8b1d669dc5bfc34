"""Everything a GPU machine must show, in one command that ends in under 8 minutes on one H200.

    bash benchmarks/gpu_check.sh                    # = PYTHONPATH=. python -m benchmarks.gpu --out gpu-results
    python -m benchmarks.gpu --cpu --out /tmp/g     # the same sections at tiny sizes on CPU (tests)
    python -m benchmarks.gpu --sections env,losses  # some sections

Sections (:mod:`benchmarks.gpu_sections`), in order, each in its own process session with its
own time budget (a section that runs over is killed, with every process it started, and
reported as TIMEOUT; what it wrote stays). ``env`` always runs first: the summary's header
(device, versions) comes from it. The command's budget is the sum of its sections' budgets
(each multiplied by :data:`CPU_BUDGET_SCALE` with ``--cpu``).

=================  ====================================================================
env                versions, devices, ``parity.precisions.settings()`` under ``ieee``, the
                   XLA determinism flag this jaxlib accepts, a float32 matmul's error from
                   float64 in ``ieee`` and ``tf32`` on both frameworks
parity_float32     ``python -m jaxloss.parity --precision ieee --dtype float32`` on the GPU (value,
parity_float64     gradient, second order), and float64
fuzz               a short ``python -m jaxloss.parity --fuzz`` in ieee
models             ``python -m jaxloss.parity.models --model seed-cnn|resnet18 --precision ieee``
twin               ``python -m jaxloss.parity.twin``: SeedCNN 50 steps, ResNet-18 10 steps, ieee
train_step         :mod:`benchmarks.train_step`: ``python -m jaxloss.train``'s step against torch
                   eager and ``torch.compile``, every registry model, batch 128 and 512,
                   and one epoch on device-held data
losses             :mod:`benchmarks.bandwidth` then every large loss of
                   :mod:`benchmarks.losses` against torch eager, as a multiple of the
                   bandwidth limit; linear_cross_entropy where torch has it
torchvision        ``sigmoid_focal_loss`` and the box IoU losses against the real
                   ``torchvision.ops`` (where torchvision imports)
parity_tf32        the float32 grid in ``tf32`` (with time left): which cases fail only there
=================  ====================================================================

Results, written as they come: ``OUT/<section>.json`` (status, rows, notes, Markdown) and
``OUT/summary.md`` (header, one status line per section, every section's tables, the
:func:`targets_of_the_run` with the figures measured in this run), rewritten after every section. Every
comparison runs in ``parity.precision('ieee')`` (the CLIs get ``--precision ieee``);
benchmarks run in ``ieee`` without deterministic kernels. Nothing is installed; the
repository root is put on ``PYTHONPATH``.

Statuses: PASSED / DONE (a comparison passed / a measurement has every row), FAILED (a
comparison failed, or any row is an error), ERROR (the section crashed), TIMEOUT, SKIPPED
(only: torchvision absent; the env section found no device; the run's budget spent),
INTERRUPTED (Ctrl-C or SIGTERM: the section and every process it started are killed).

Exit status (:mod:`jaxloss.train.cli`): 0 when every section PASSED, is DONE or SKIPPED; 1 when one
FAILED, ERRORED or TIMED OUT (after everything is written); 2 for bad input (one line, before
any work: unknown section, ``--out`` a file or not writable, ``--budget`` not positive);
130 when interrupted (the summary says so).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxloss.train.cli import Parser, fail, positive_int, run_main

from benchmarks.gpu_process import PARENT_ENV, ROOT, run_group
from benchmarks.gpu_sections import SECTIONS, Section, run_section, write_json
from benchmarks.timing import markdown_table

PROG = "python -m benchmarks.gpu"


# --cpu: the sections run at tiny sizes, but process starts, imports and compiles dominate, on
# shared CPU cores: each section gets this multiple of its GPU budget (a TIMEOUT still means stuck).
CPU_BUDGET_SCALE = 4


def section_budget(section: Section, quick: bool) -> float:
    """A section's time budget: its GPU budget, times :data:`CPU_BUDGET_SCALE` with ``--cpu``.

    >>> from benchmarks.gpu import section_budget
    >>> from benchmarks.gpu_sections import SECTIONS
    >>> section_budget(SECTIONS[0], quick=False), section_budget(SECTIONS[0], quick=True)
    (30, 120)
    """
    return section.budget_s * (CPU_BUDGET_SCALE if quick else 1)


def total_budget(sections: list[Section], quick: bool = False) -> float:
    """The run's default budget: the sum of its sections' budgets (460 s for all on the GPU, inside 8 minutes).

    >>> from benchmarks.gpu import total_budget
    >>> from benchmarks.gpu_sections import SECTIONS
    >>> total_budget(SECTIONS)
    460
    """
    return sum(section_budget(s, quick) for s in sections)


# ----------------------------------------------------------------------------- orchestrator
PROBE = """
import jax, jax.numpy as jnp
def f(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME")
    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return (y.reshape(2, -1) @ jnp.ones((y.size // 2, 3))).sum()
print(jax.jit(jax.grad(f))(jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))).shape)
"""


def _probe_determinism_flag(env: dict[str, str]) -> dict[str, Any]:
    """The first XLA determinism flag with which this jaxlib compiles a conv + max-pool + dot gradient.

    An unknown flag aborts XLA, and ``--xla_gpu_exclude_nondeterministic_ops`` refuses
    select-and-scatter (max-pool's gradient) on some versions: each is tried in a subprocess.
    """
    from jaxloss.parity.precisions import XLA_GPU_DETERMINISM_FLAGS

    tried = {}
    for flag in XLA_GPU_DETERMINISM_FLAGS:
        e = {**env, "XLA_FLAGS": (env.get("XLA_FLAGS", "") + " " + flag).strip()}
        rc, _, err = run_group([sys.executable, "-c", PROBE], 90, env=e, session=True)
        ok, why = rc == 0, (err.strip().splitlines() or [""])[-1][:200]
        tried[flag] = "ok" if ok else why
        if ok:
            return {"flag": flag, "tried": tried}
    return {"flag": None, "tried": tried}


def child_env(quick: bool) -> dict[str, str]:
    """The environment of every section process (this one's, plus the repository and device settings).

    >>> from benchmarks.gpu import child_env
    >>> env = child_env(quick=True)
    >>> env["JAX_PLATFORMS"], env["XLA_PYTHON_CLIENT_PREALLOCATE"]
    ('cpu', 'false')
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # JAX and torch share the device; parity workers too
    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # cuBLAS determinism (read when CUDA starts)
    env["JAX_PLATFORMS"] = "cpu" if quick else "cuda,cpu"
    env[PARENT_ENV] = str(
        os.getpid()
    )  # a section ends itself should this process die (gpu_process.exit_with_parent)
    return env


def _record(name: str, status: str, reason: str) -> dict[str, Any]:
    return {"section": name, "status": status, "reason": reason, "rows": [], "notes": []}


def _run_child(
    section: Section, out: Path, quick: bool, env: dict[str, str], budget: float, parity_jobs: int = 4
) -> dict[str, Any]:
    """Run one section in its own process session; its record, with the verdict of how the process ended.

    On Ctrl-C (KeyboardInterrupt) every process of the section is killed and its record says
    INTERRUPTED before the interrupt goes on.
    """
    deadline = time.time() + budget
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--out", str(out), "--section", section.name,
           "--deadline", str(deadline), "--parity-jobs", str(parity_jobs)] + (["--cpu"] if quick else [])  # fmt: skip
    t0 = time.time()
    path = out / f"{section.name}.json"
    try:
        rc, out_text, err_text = run_group(
            cmd, budget + 5, env=env, session=True
        )  # the section checks its own deadline first
    except KeyboardInterrupt:
        record = json.loads(path.read_text()) if path.is_file() else _record(section.name, "RUNNING", "")
        record["status"], record["reason"] = (
            "INTERRUPTED",
            "interrupted (Ctrl-C or SIGTERM): killed; partial rows kept",
        )
        record["seconds"] = round(time.time() - t0, 1)
        write_json(path, record)
        raise
    timed_out = rc is None
    record = json.loads(path.read_text()) if path.is_file() else _record(section.name, "RUNNING", "")
    if timed_out:
        record["status"], record["reason"] = (
            "TIMEOUT",
            f"over its {budget:.0f} s budget: killed; partial rows kept",
        )
    elif rc != 0:
        record["status"], record["reason"] = "ERROR", f"exit {rc}: {(out_text + err_text)[-1500:]}"
    elif record.get("status") == "RUNNING":
        record["status"], record["reason"] = "ERROR", "exited without a result"
    record["seconds"] = round(time.time() - t0, 1)
    write_json(path, record)
    return record


def _status_line(r: dict[str, Any]) -> str:
    return f"{r['status']:8s} {r['section']:15s} {r.get('seconds', 0):6.1f} s  {r.get('reason', '')}".rstrip()


# ----------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    """A goal the GPU run is judged against: its wording and how a run's records measure it.

    ``measure(records) -> (status, figures)``; status is ``met``, ``NOT met`` or ``not measured``.

    >>> from benchmarks.gpu import targets_of_the_run
    >>> first = targets_of_the_run()[0]
    >>> first.goal, first.measure({})
    ('GPU parity: every case passes in ieee', ('not measured', '-'))
    """

    goal: str
    measure: Callable[[dict[str, dict[str, Any]]], tuple[str, str]]


PARITY_SECTIONS = ("parity_float32", "parity_float64", "fuzz")  # every case passes in ieee
TRAIN_STEP_BATCH = 512
TRAIN_STEP_GOALS = (
    ("eager", "torch eager", 1.5),
    ("compile", "torch.compile", 1.0),
)  # JAX images/s >= goal x this
LOSS_GOAL_OVER_LIMIT = 2.0  # a large loss's value + gradient within this multiple of the bandwidth limit


def _parity(records: dict[str, dict[str, Any]]) -> tuple[str, str]:
    done = [records[n] for n in PARITY_SECTIONS if records.get(n, {}).get("status") in ("PASSED", "FAILED")]
    if len(done) < len(PARITY_SECTIONS):
        return "not measured", "-"
    counts = "; ".join(
        f"{r['section']}: {r['rows'][-1].get('passed')}/{r['rows'][-1].get('cases')}"
        for r in done
        if r.get("rows")
    )
    return ("met" if all(r["status"] == "PASSED" for r in done) else "NOT met"), counts or "-"


def _train_step(
    model: str, variant: str, goal: float
) -> Callable[[dict[str, dict[str, Any]]], tuple[str, str]]:
    def measure(records: dict[str, dict[str, Any]]) -> tuple[str, str]:
        from benchmarks.train_step import images_per_s

        rows = records.get("train_step", {}).get("rows", [])
        j, ref = (
            images_per_s(rows, "jit", model, TRAIN_STEP_BATCH),
            images_per_s(rows, variant, model, TRAIN_STEP_BATCH),
        )
        if not (j and ref):
            return "not measured", "-"
        return ("met" if j / ref >= goal else "NOT met"), f"{j / ref:.2f}x"

    return measure


def _losses(records: dict[str, dict[str, Any]]) -> tuple[str, str]:
    rows = [r for r in records.get("losses", {}).get("rows", []) if "jax_vgrad_over_limit" in r]
    if not rows:
        return "not measured", "-"
    within = [r for r in rows if r["jax_vgrad_over_limit"] <= LOSS_GOAL_OVER_LIMIT]
    faster = [r for r in rows if r["torch_vgrad"] > r["jax_vgrad"]]
    miss = sorted({r["loss"] for r in rows} - {r["loss"] for r in within if r in faster})
    figures = (f"{len(within)}/{len(rows)} within {LOSS_GOAL_OVER_LIMIT:g}x, {len(faster)}/{len(rows)} faster; "
               f"misses: {', '.join(miss) or 'none'}")  # fmt: skip
    return ("NOT met" if miss else "met"), figures


def targets_of_the_run() -> list[Target]:
    """The targets: parity, the train step of every registry model against each torch variant, the large losses."""
    from jaxloss.parity.models.twins import TORCH_TWINS  # every trained model with a torch twin

    out = [Target("GPU parity: every case passes in ieee", _parity)]
    out += [Target(f"train step {m} batch {TRAIN_STEP_BATCH} >= {goal}x {label}", _train_step(m, variant, goal))
            for m in TORCH_TWINS for variant, label, goal in TRAIN_STEP_GOALS]  # fmt: skip
    out.append(Target(f"large losses: v+g within {LOSS_GOAL_OVER_LIMIT:g}x of the bandwidth limit and faster than "
                      "torch eager", _losses))  # fmt: skip
    return out


def targets(records: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Each of :func:`targets_of_the_run` with its status and the figures of this run behind it.

    >>> from benchmarks.gpu import targets
    >>> targets({})[0]
    ['GPU parity: every case passes in ieee', 'not measured', '-']
    """
    rows = [[t.goal, *t.measure(records)] for t in targets_of_the_run()]
    tf32 = records.get("parity_tf32", {})
    if "tf32_only_failures" in tf32:
        rows.insert(
            1,
            ["cases failing only in tf32 reported", "reported", f"{len(tf32['tf32_only_failures'])} case(s)"],
        )
    return rows


# ----------------------------------------------------------------------------- summary
def _env_line(env: dict[str, Any], key: str, text: Callable[[Any], str]) -> str:
    """The header's ``key`` from the env section, or what stopped it (never a bare '?')."""
    if env.get(key):
        return text(env[key])
    return f"unknown: the env section is {env.get('status', 'not run')}" + (
        f" ({env['reason']})" if env.get("reason") else ""
    )


def write_summary(out: Path, records: dict[str, dict[str, Any]], quick: bool, started: float, budget: float,
                  interrupted: str | None = None) -> Path:  # fmt: skip
    """Write ``out/summary.md``: header, one status line per section, the targets, each section's tables.

    >>> import tempfile, time
    >>> from pathlib import Path
    >>> from benchmarks.gpu import write_summary
    >>> rec = {"section": "torchvision", "status": "SKIPPED", "reason": "no torchvision", "rows": [], "notes": []}
    >>> path = write_summary(Path(tempfile.mkdtemp()), {"torchvision": rec}, True, time.time(), 10.0)
    >>> "## torchvision: SKIPPED" in path.read_text()
    True
    """
    env = records.get("env", {})
    title = "# GPU check" + (" (--cpu: tiny sizes, CPU; not GPU figures)" if quick else "")
    lines = [title + (" - INTERRUPTED" if interrupted else ""), ""]
    if interrupted:
        lines += [
            f"**Interrupted** {interrupted}: the sections after it did not run; this summary is partial.",
            "",
        ]
    lines += [
        (
            f"- date: {datetime.datetime.fromtimestamp(started, datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"total {time.time() - started:.0f} s (budget {budget:.0f} s)"
        ),
        f"- device: {_env_line(env, 'device', str)}",
        f"- versions: {_env_line(env, 'versions', lambda v: ', '.join(f'{k} {x}' for k, x in v.items()))}",
        f"- precision: comparisons in `ieee`; settings: {_env_line(env, 'settings_ieee', lambda v: '`' + json.dumps(v) + '`')}",
        "",
        "## Sections",
        "",
        "```",
        *[_status_line(r) for r in records.values()],
        "```",
        "",
        "## Targets",
        "",
        "Computed from this run's own measurements.",
        "",
        markdown_table(["target", "status", "this run"], targets(records)),
        "",
    ]
    for r in records.values():
        lines += [f"## {r['section']}: {r['status']}", ""]
        if r.get("reason"):
            lines += [f"Reason: {r['reason']}", ""]
        if r.get("markdown"):
            lines += [r["markdown"], ""]
        lines += [f"- note: {n}" for n in r.get("notes", [])] + ([""] if r.get("notes") else [])
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


# ----------------------------------------------------------------------------- command line
def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-results", help="results folder (created; default gpu-results)")
    p.add_argument("--cpu", action="store_true", help="tiny sizes on CPU (tests); the figures mean nothing")
    p.add_argument("--sections", default="", help=f"comma-separated subset of {','.join(s.name for s in SECTIONS)} "
                   "(env always runs: the header comes from it)")  # fmt: skip
    p.add_argument("--budget", type=_positive_seconds, default=None,
                   help="seconds for the whole run (default: the sum of the sections' budgets)")  # fmt: skip
    p.add_argument(
        "--parity-jobs",
        type=positive_int,
        default=4,
        help="parity CLI worker processes on the GPU (default 4)",
    )
    p.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section in this process
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return p


def _check_out(out: Path) -> None:
    """Refuse, before any work, an ``--out`` that is a file or a folder this process cannot write."""
    if out.exists() and not out.is_dir():
        fail(PROG, f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        fail(PROG, f"--out {out} is not a writable folder: {e.strerror or e}")


def _chosen(p: Parser, sections: str) -> list[Section]:
    wanted = [s.strip() for s in sections.split(",") if s.strip()]
    known = [s.name for s in SECTIONS]
    unknown = [w for w in wanted if w not in known]
    if unknown:
        p.error(f"--sections: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in SECTIONS if not wanted or s.name in wanted or s.name == "env"]


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a lease ending, ``kill``) ends the run like Ctrl-C: sections killed, summary marked."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if args.section:
        return run_section(args.section, out, args.cpu, args.deadline or time.time() + 600, args.parity_jobs)
    chosen = _chosen(p, args.sections)
    _check_out(out)
    budget = args.budget if args.budget is not None else total_budget(chosen, args.cpu)
    _interrupt_on_sigterm()
    started = time.time()
    records: dict[str, dict[str, Any]] = {}
    running = None
    try:
        env = child_env(args.cpu)
        probe = _probe_determinism_flag(env)
        print(f"XLA determinism flag: {probe['flag'] or 'none accepted'} ({probe['tried']})", flush=True)
        env["GPU_CHECK_DETERMINISM"] = json.dumps(probe)
        end = started + budget
        for s in chosen:
            running = s.name
            left = end - time.time()
            if records.get("env", {}).get("status") in ("ERROR", "TIMEOUT"):
                rec = _record(s.name, "SKIPPED", "env failed (no usable device)")
            elif left < 10:
                rec = _record(s.name, "SKIPPED", f"the run's {budget:.0f} s are spent")
            else:
                e = dict(env)
                if s.deterministic and probe["flag"]:
                    e["XLA_FLAGS"] = (e.get("XLA_FLAGS", "") + " " + probe["flag"]).strip()
                rec = _run_child(
                    s, out, args.cpu, e, min(section_budget(s, args.cpu), left), args.parity_jobs
                )
            records[s.name] = rec
            write_json(out / f"{s.name}.json", rec)
            print(_status_line(rec), flush=True)
            write_summary(out, records, args.cpu, started, budget)
    except KeyboardInterrupt:
        path = out / f"{running}.json"
        if running and path.is_file():
            records[running] = json.loads(path.read_text())
        where = f"during section {running}" if running else "before the first section"
        path = write_summary(out, records, args.cpu, started, budget, interrupted=where)
        print(f"interrupted {where}; partial summary in {path}", flush=True)
        raise
    path = write_summary(out, records, args.cpu, started, budget)
    print("\n" + markdown_table(["target", "status", "this run"], targets(records)))
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")
    bad = [r for r in records.values() if r["status"] in ("FAILED", "ERROR", "TIMEOUT")]
    if bad:
        print(
            f"{PROG}: {len(bad)} section(s) not passed: {', '.join(r['section'] + ' ' + r['status'] for r in bad)}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main, sys.argv[1:]))
