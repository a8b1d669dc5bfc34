"""Everything a GPU machine must show, in one command that ends in under 8 minutes on one H200.

    bash benchmarks/gpu_check.sh                    # = PYTHONPATH=. python -m benchmarks.gpu --out gpu-results
    python -m benchmarks.gpu --cpu --out /tmp/g     # the same sections at tiny sizes on CPU (tests)
    python -m benchmarks.gpu --sections env,losses  # some sections

Sections (:mod:`benchmarks.gpu_sections`), in order, each in its own process group with its
own time budget (a section that runs over is killed and reported as TIMEOUT; what it wrote
stays):

=================  ====================================================================
env                versions, devices, ``parity.precisions.settings()`` under ``ieee``, the
                   XLA determinism flag this jaxlib accepts, a float32 matmul's error from
                   float64 in ``ieee`` and ``tf32`` on both frameworks
parity_float32     ``python -m parity --precision ieee --dtype float32`` on the GPU (value,
parity_float64     gradient, second order), and float64
fuzz               a short ``python -m parity --fuzz`` in ieee
models             ``python -m parity.models --model seed-cnn|resnet18 --precision ieee``
twin               ``python -m parity.twin``: SeedCNN 50 steps, ResNet-18 10 steps, ieee
train_step         :mod:`benchmarks.gpu_train_step`: JAX against torch eager and
                   ``torch.compile``, batch 128 and 512, and one epoch on device-held data
losses             :mod:`benchmarks.bandwidth` then every large loss of
                   :mod:`benchmarks.losses` against torch eager, as a multiple of the
                   bandwidth limit; linear_cross_entropy where torch has it
torchvision        ``sigmoid_focal_loss`` and the box IoU losses against the real
                   ``torchvision.ops`` (where torchvision imports)
parity_tf32        the float32 grid in ``tf32`` (with time left): which cases fail only there
=================  ====================================================================

Results, written as they come: ``OUT/<section>.json`` (status, rows, notes, Markdown) and
``OUT/summary.md`` (header, one status line per section, every section's tables, the targets
of issue 12 with the ratios measured in this run), rewritten after every section. Every
comparison runs in ``parity.precision('ieee')`` (the CLIs get ``--precision ieee``; one that
lacks the flag is run inside the context manager, and the notes say so); benchmarks run in
``ieee`` without deterministic kernels. Nothing is installed; the repository root is put on
``PYTHONPATH``.

Exit status: 0 when no section FAILED, ERRORED or TIMED OUT (SKIPPED sections are listed with
their reason), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_sections import ROOT, SECTIONS, Section, images_per_s, run_group, run_section, write_json
from benchmarks.timing import markdown_table

TOTAL_BUDGET_S = 460.0  # the 8 minutes, less the start, the probe's overrun and the summary
ANALYSIS_NOTE = "Targets of issue 12, computed from this run's own measurements."


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
    from parity.precisions import XLA_GPU_DETERMINISM_FLAGS

    tried = {}
    for flag in XLA_GPU_DETERMINISM_FLAGS:
        e = {**env, "XLA_FLAGS": (env.get("XLA_FLAGS", "") + " " + flag).strip()}
        rc, _, err = run_group([sys.executable, "-c", PROBE], 90, env=e)
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
    return env


def _run_child(
    section: Section, out: Path, quick: bool, env: dict[str, str], budget: float, parity_jobs: int = 4
) -> dict[str, Any]:
    deadline = time.time() + budget
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        "--out",
        str(out),
        "--section",
        section.name,
        "--deadline",
        str(deadline),
    ]
    cmd += ["--parity-jobs", str(parity_jobs)] + (["--cpu"] if quick else [])
    t0 = time.time()
    rc, out_text, err_text = run_group(cmd, budget + 5, env=env)  # the section checks its own deadline first
    timed_out = rc is None
    path = out / f"{section.name}.json"
    record = (
        json.loads(path.read_text())
        if path.is_file()
        else {"section": section.name, "rows": [], "notes": [], "markdown": ""}
    )
    if timed_out or record.get("status") == "RUNNING":
        record["status"] = "TIMEOUT" if timed_out else "ERROR"
        record["reason"] = (
            f"over its {budget:.0f} s budget: killed; partial rows kept"
            if timed_out
            else "exited without a result"
        )
    if rc not in (0, None):
        record["status"], record["reason"] = "ERROR", f"exit {rc}: {(out_text + err_text)[-1500:]}"
    record["seconds"] = round(time.time() - t0, 1)
    write_json(path, record)
    return record


def _status_line(r: dict[str, Any]) -> str:
    return f"{r['status']:8s} {r['section']:15s} {r.get('seconds', 0):6.1f} s  {r.get('reason', '')}".rstrip()


def targets(records: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Issue 12's targets, each with its status and the figures of this run behind it.

    >>> from benchmarks.gpu import targets
    >>> targets({})[0]
    ['GPU parity: every case passes in ieee', 'not measured', '-']
    """
    out = []
    par = [records.get(n, {}) for n in ("parity_float32", "parity_float64", "fuzz")]
    done = [r for r in par if r.get("status") in ("PASSED", "FAILED")]
    status = (
        "not measured"
        if len(done) < 3
        else ("met" if all(r["status"] == "PASSED" for r in done) else "NOT met")
    )
    counts = "; ".join(
        f"{r['section']}: {r['rows'][-1].get('passed')}/{r['rows'][-1].get('cases')}"
        for r in done
        if r.get("rows")
    )
    out.append(["GPU parity: every case passes in ieee", status, counts or "-"])
    tf32 = records.get("parity_tf32", {})
    if "tf32_only_failures" in tf32:
        out.append(
            ["cases failing only in tf32 reported", "reported", f"{len(tf32['tf32_only_failures'])} case(s)"]
        )
    rows = records.get("train_step", {}).get("rows", [])
    for model in ("seed-cnn", "resnet18"):
        j, e, c = (
            images_per_s(rows, fw, v, model, 512)
            for fw, v in (("jax", "jit"), ("torch", "eager"), ("torch", "compile"))
        )
        for what, ref, goal in (("torch eager", e, 1.5), ("torch.compile", c, 1.0)):
            ratio = j / ref if j and ref else None
            st = "not measured" if ratio is None else ("met" if ratio >= goal else "NOT met")
            out.append(
                [f"train step {model} batch 512 >= {goal}x {what}", st, f"{ratio:.2f}x" if ratio else "-"]
            )
    lrows = [r for r in records.get("losses", {}).get("rows", []) if "jax_vgrad_over_limit" in r]
    if lrows:
        within = [r for r in lrows if r["jax_vgrad_over_limit"] <= 2]
        faster = [r for r in lrows if r["torch_vgrad"] > r["jax_vgrad"]]
        miss = sorted({r["loss"] for r in lrows} - {r["loss"] for r in within if r in faster})
        st = "met" if not miss else "NOT met"
        out.append(["large losses: v+g within 2x of the bandwidth limit and faster than torch eager", st,
                    f"{len(within)}/{len(lrows)} within 2x, {len(faster)}/{len(lrows)} faster; misses: {', '.join(miss) or 'none'}"])  # fmt: skip
    else:
        out.append(
            [
                "large losses: v+g within 2x of the bandwidth limit and faster than torch eager",
                "not measured",
                "-",
            ]
        )
    return out


def write_summary(out: Path, records: dict[str, dict[str, Any]], quick: bool, started: float) -> Path:
    """Write ``out/summary.md``: header, one status line per section, the targets, each section's tables.

    >>> import tempfile, time
    >>> from pathlib import Path
    >>> from benchmarks.gpu import write_summary
    >>> rec = {"section": "torchvision", "status": "SKIPPED", "reason": "no torchvision", "rows": [], "notes": []}
    >>> path = write_summary(Path(tempfile.mkdtemp()), {"torchvision": rec}, True, time.time())
    >>> "## torchvision: SKIPPED" in path.read_text()
    True
    """
    env = records.get("env", {})
    lines = [
        "# GPU check" + (" (--cpu: tiny sizes, CPU; not GPU figures)" if quick else ""),
        "",
        (
            f"- date: {datetime.datetime.fromtimestamp(started, datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"total {time.time() - started:.0f} s (budget {TOTAL_BUDGET_S:.0f} s)"
        ),
        f"- device: {env.get('nvidia_smi') or env.get('torch_cuda') or env.get('jax_devices', '?')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in env.get('versions', {}).items()) or '?'}",
        f"- precision: comparisons in `ieee`; settings: `{json.dumps(env.get('settings_ieee', {}))}`",
        "",
        "## Sections",
        "",
        "```",
        *[_status_line(r) for r in records.values()],
        "```",
        "",
        "## Targets",
        "",
        ANALYSIS_NOTE,
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu-results")
    p.add_argument("--cpu", action="store_true", help="tiny sizes on CPU (tests); the figures mean nothing")
    p.add_argument(
        "--sections", default="", help=f"comma-separated subset of {','.join(s.name for s in SECTIONS)}"
    )
    p.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole run")
    p.add_argument(
        "--parity-jobs", type=int, default=4, help="parity CLI worker processes on the GPU (default 4)"
    )
    p.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section in this process
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.section:
        return run_section(args.section, out, args.cpu, args.deadline or time.time() + 600, args.parity_jobs)

    started = time.time()
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(wanted) - {s.name for s in SECTIONS}
    if unknown:
        p.error(
            f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SECTIONS)}"
        )
    chosen = [s for s in SECTIONS if not wanted or s.name in wanted]
    env = child_env(args.cpu)
    probe = _probe_determinism_flag(env)
    print(f"XLA determinism flag: {probe['flag'] or 'none accepted'} ({probe['tried']})", flush=True)
    env["GPU_CHECK_DETERMINISM"] = json.dumps(probe)
    records: dict[str, dict[str, Any]] = {}
    end = started + args.budget
    for s in chosen:
        left = end - time.time()
        if records.get("env", {}).get("status") in ("ERROR", "TIMEOUT"):
            rec = {
                "section": s.name,
                "status": "SKIPPED",
                "reason": "env failed (no usable device)",
                "rows": [],
                "notes": [],
            }
        elif left < 10:
            rec = {
                "section": s.name,
                "status": "SKIPPED",
                "reason": f"the run's {args.budget:.0f} s are spent",
                "rows": [],
                "notes": [],
            }
        else:
            e = dict(env)
            if s.deterministic and probe["flag"]:
                e["XLA_FLAGS"] = (e.get("XLA_FLAGS", "") + " " + probe["flag"]).strip()
            rec = _run_child(s, out, args.cpu, e, min(s.budget_s, left), args.parity_jobs)
        records[s.name] = rec
        write_json(out / f"{s.name}.json", rec)
        print(_status_line(rec), flush=True)
        write_summary(out, records, args.cpu, started)
    path = write_summary(out, records, args.cpu, started)
    print("\n" + markdown_table(["target", "status", "this run"], targets(records)))
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")
    bad = [r for r in records.values() if r["status"] in ("FAILED", "ERROR", "TIMEOUT")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
