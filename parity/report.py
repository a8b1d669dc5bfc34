"""The parity report: a summary per loss and per dtype, written as JSON, Markdown and one HTML page.

``build(results, registry, meta)`` turns the :class:`jaxloss.parity.runner.CaseResult`
list into one JSON-able dict (the schema below); :func:`write` writes
``report.json``, ``report.md`` and ``report.html`` (self-contained: inline CSS,
no script, no external resource) into a folder.

JSON schema (``"schema": "parity-report/1"``)::

    {
      "schema": "parity-report/1",
      "meta": {"command", "seed", "fuzz", "device", "dtypes", "seconds", "jaxloss", "torch", "jax", "tolerances"},
      "summary": {"cases", "passed", "failed", "errors", "not_implemented", "judged_by_reference",
                  "documented_deviations", "low_precision_rule", "jax_closer", "torch_closer", "ties", "ok"},
      "losses": [{"loss", "family", "torch", "cases", "passed", "failed", "errors", "not_implemented",
                  "worst_value": {"abs", "rel", "ulp", "usage"}, "worst_grad": {...}, "worst_hvp": {...},
                  "worst_value_at": {"abs": case id, ...}, "worst_grad_at", "worst_hvp_at", "worst_case", "status"}],
      "dtypes": [{"dtype", "cases", "passed", "worst_value": {...}, "worst_grad": {...}, "worst_hvp": {...},
                  "worst_value_at": {"abs": case id, "rel", "ulp", "usage"}, "worst_grad_at", "worst_hvp_at",
                  "jax_closer", "torch_closer", "ties"}],
      "coverage": {"params": {loss: [param...]}, "covered": {loss: {param: n_cases}}, "missing": {loss: [param...]}},
      "deviations": [{"loss", "reason", "dtypes", "cases", "passed"}],  # TorchInexact cases met
      "failures": [case result (below) of every failed / error case],
      "cases": [{"id", "loss", "family", "case", "dtype", "status", "judge", "deviation", "params", "spec",
                 "result": parity.Result.to_json(), "seconds", "note", "reproducer", "fuzz"}],
      "models": {name: parity.ModelReport.to_json()}  # --models: layer by layer against the torch twin

"worst_hvp" is the second order, the vector-Hessian product vᵀH (the report shows it so).
Floats that are not finite are written as strings (:func:`jaxloss.parity.result.jsonable`).

"judged_by_reference" counts cases with at least one array judged against the
float64 reference: "documented_deviations" (a :class:`jaxloss.parity.cases.TorchInexact`
applies; every array judged so) plus "low_precision_rule" (float16 / bfloat16
arrays that miss torch but are within tolerance of the rounded float64 truth and
at least as close to it as torch; see :mod:`jaxloss.parity.compare`).
    }

Non-finite floats are written as the strings ``"inf"`` / ``"nan"``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from jaxloss.parity.cases import Loss
from jaxloss.parity.result import jsonable
from jaxloss.parity.runner import CaseResult
from jaxloss.parity.tolerances import DTYPES, TOLERANCES

SCHEMA = "parity-report/1"
_METRICS = ("max_abs", "max_rel", "max_ulp", "usage")


def _worst(results: Sequence[CaseResult], kind: str) -> dict[str, float]:
    out = {}
    for m in _METRICS:
        vals = [r.worst(kind, m) for r in results if r.status in ("passed", "failed")]
        out[m.replace("max_", "")] = max(vals, default=0.0)
    return out


def _worst_at(results: Sequence[CaseResult], kind: str) -> dict[str, str]:
    """The case id where each metric of :func:`_worst` is attained ("" when it is 0)."""
    out = {}
    for m in _METRICS:
        ranked = [(r.worst(kind, m), r.id) for r in results if r.status in ("passed", "failed")]
        best = max(ranked, default=(0.0, ""), key=lambda t: t[0])
        out[m.replace("max_", "")] = best[1] if best[0] else ""
    return out


def _closer_counts(results: Sequence[CaseResult]) -> dict[str, int]:
    counts = {"jax_closer": 0, "torch_closer": 0, "ties": 0}
    for r in results:
        for c in r.result.comparisons:
            k = {"jax": "jax_closer", "torch": "torch_closer", "tie": "ties"}.get(c.closer or "")
            if k:
                counts[k] += 1
    return counts


def _counts(results: Sequence[CaseResult]) -> dict[str, int]:
    st = [r.status for r in results]
    return {
        "cases": len(st),
        "passed": st.count("passed"),
        "failed": st.count("failed"),
        "errors": st.count("error"),
        "not_implemented": st.count("not_implemented"),
    }


def _usage_of(r: CaseResult) -> float:
    return max((r.worst(k, "usage") for k in ("outputs", "grads", "hvps")), default=0.0)


def build(results: Sequence[CaseResult], registry: dict[str, Loss], meta: dict[str, Any],
          models: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report as one JSON-able dict; ``models``: ``{name: ModelReport.to_json()}`` of model comparisons."""
    by_loss: dict[str, list[CaseResult]] = {}
    for r in results:
        by_loss.setdefault(r.loss, []).append(r)
    losses = []
    for name in [n for n in registry if n in by_loss] + [n for n in by_loss if n not in registry]:
        rs = by_loss[name]
        c = _counts(rs)
        bad = [r for r in rs if r.status in ("failed", "error")]
        ranked = bad or [r for r in rs if r.status == "passed"]
        worst = max(ranked, key=lambda r: (r.status != "passed", _usage_of(r)), default=None)
        status = "failed" if bad else ("not implemented" if c["not_implemented"] == c["cases"] else
                                      "partial" if c["not_implemented"] else "passed")
        losses.append({
            "loss": name,
            "family": registry[name].family if name in registry else "",
            "torch": registry[name].torch_name if name in registry else "",
            **c,
            "worst_value": _worst(rs, "outputs"),
            "worst_grad": _worst(rs, "grads"),
            "worst_hvp": _worst(rs, "hvps"),
            "worst_value_at": _worst_at(rs, "outputs"),
            "worst_grad_at": _worst_at(rs, "grads"),
            "worst_hvp_at": _worst_at(rs, "hvps"),
            "worst_case": worst.id if worst else "",
            "status": status,
        })
    dtypes = []
    for dt in TOLERANCES:
        rs = [r for r in results if r.dtype == dt]
        if rs:
            dtypes.append({"dtype": dt, **_counts(rs), "worst_value": _worst(rs, "outputs"), "worst_grad": _worst(rs, "grads"),
                           "worst_hvp": _worst(rs, "hvps"), "worst_value_at": _worst_at(rs, "outputs"),
                           "worst_grad_at": _worst_at(rs, "grads"), "worst_hvp_at": _worst_at(rs, "hvps"), **_closer_counts(rs)})
    covered: dict[str, dict[str, int]] = {}
    for r in results:
        if r.fuzz:
            continue
        cov = covered.setdefault(r.loss, {})
        for p in r.params:
            cov[p] = cov.get(p, 0) + 1
    params = {n: list(registry[n].params) for n in registry if n in by_loss}
    missing = {n: [p for p in ps if not covered.get(n, {}).get(p)] for n, ps in params.items()}
    summary = {**_counts(results)}
    by_reference = [r for r in results if any(c.judged == "reference" for c in r.result.comparisons)]
    summary["judged_by_reference"] = len(by_reference)
    summary["documented_deviations"] = sum(1 for r in results if r.deviation)
    summary["low_precision_rule"] = sum(1 for r in by_reference if not r.deviation and r.judge == "torch")
    summary.update(_closer_counts(results))
    summary["ok"] = summary["failed"] == 0 and summary["errors"] == 0
    return {
        "schema": SCHEMA,
        "meta": meta,
        "summary": summary,
        "losses": losses,
        "dtypes": dtypes,
        "coverage": {"params": params, "covered": covered, "missing": {k: v for k, v in missing.items() if v}},
        "deviations": _deviations(results),
        "failures": [r.to_json() for r in results if r.status in ("failed", "error")],
        "cases": [r.to_json() for r in results],
        "models": dict(models or {}),
    }


def _deviations(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """The documented torch inexactnesses met in this run: loss, reason, dtypes, cases, passed."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        if r.deviation:
            d = out.setdefault((r.loss, r.deviation), {"loss": r.loss, "reason": r.deviation, "dtypes": [], "cases": 0, "passed": 0})
            if r.dtype not in d["dtypes"]:
                d["dtypes"].append(r.dtype)
            d["cases"] += 1
            d["passed"] += r.status == "passed"
    for d in out.values():
        d["dtypes"].sort(key=DTYPES.index)
    return sorted(out.values(), key=lambda d: (d["loss"], d["reason"]))


# --------------------------------------------------------------------------- text
def _e(x: float) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.1e}"


def _ulps(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.0f}" if x < 1e5 else f"{x:.1e}"


def _err(w: dict[str, float]) -> str:
    """'6.5e-03 (2 ulp)': worst relative error and worst error in ULPs of a worst-error dict."""
    if not any(w.values()):
        return "0"
    return f"{_e(w['rel'])} ({_ulps(w['ulp'])} ulp)"


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the per-loss table: its key in a row, its header, left-aligned or not."""

    key: str
    header: str
    left: bool = False


LOSS_COLUMNS = (
    Column("loss", "loss", left=True),
    Column("cases", "cases"),
    Column("passed", "passed"),
    Column("failed", "failed"),
    Column("n/i", "n/i"),
    Column("usage", "tol used"),
    Column("value", "worst value err", left=True),
    Column("grad", "worst grad err", left=True),
    Column("vTH", "worst vᵀH err", left=True),
    Column("worst_case", "worst case", left=True),
)
_NN_PREFIX = "nn."  # the loss modules: one row together (each checks its class wraps its function)


def _err_at(w: dict[str, float], at: dict[str, str]) -> str:
    """'2 ulp in case[dtype]; rel 6.5e-03 in other[dtype]': the worst error in ULPs and the worst
    relative error, each with the case it comes from (once when it is the same case)."""
    if not any(w.values()):
        return "0"
    case = {k: (at.get(k) or "").split("/", 1)[-1] for k in ("ulp", "rel")}
    ulp = f"{_ulps(w['ulp'])} ulp" + (f" in {case['ulp']}" if case["ulp"] else "")
    if case["rel"] == case["ulp"]:
        return f"{_e(w['rel'])} ({_ulps(w['ulp'])} ulp)" + (f" in {case['ulp']}" if case["ulp"] else "")
    return f"{ulp}; rel {_e(w['rel'])}" + (f" in {case['rel']}" if case["rel"] else "")


def table_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The per-loss table, one dict per row keyed by :data:`LOSS_COLUMNS`: counts, the largest fraction
    of the tolerance any array used (<= 1 passes), the worst relative / ULP errors of values,
    gradients and second-order products (``vᵀH``) with the case each comes from. The ``nn.*``
    module rows are folded into one."""
    rows = []
    losses = [L for L in report["losses"] if not L["loss"].startswith(_NN_PREFIX)]
    modules = [L for L in report["losses"] if L["loss"].startswith(_NN_PREFIX)]
    for L in losses + ([_fold(modules)] if modules else []):
        usage = max(L["worst_value"]["usage"], L["worst_grad"]["usage"], L.get("worst_hvp", {}).get("usage", 0.0))
        rows.append({
            "loss": L["loss"], "cases": str(L["cases"]), "passed": str(L["passed"]), "failed": str(L["failed"] + L["errors"]),
            "n/i": str(L["not_implemented"]), "usage": f"{usage:.2f}" if math.isfinite(usage) else str(usage),
            "value": _err_at(L["worst_value"], L.get("worst_value_at", {})),
            "grad": _err_at(L["worst_grad"], L.get("worst_grad_at", {})),
            "vTH": _err_at(L.get("worst_hvp") or {}, L.get("worst_hvp_at", {})),
            **{f"{k}_err": _err(L.get(f"worst_{w}") or {}) for k, w in (("value", "value"), ("grad", "grad"), ("vTH", "hvp"))},
            "worst_case": L["worst_case"] if L["status"] != "not implemented" else "-",
            "status": L["status"], "torch": L.get("torch", ""),
        })
    return rows


def _fold(modules: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``nn.*`` rows as one: summed counts, the worst errors and where they occur."""
    out: dict[str, Any] = {"loss": f"{_NN_PREFIX}* ({len(modules)} modules)", "torch": "torch.nn loss modules"}
    for k in ("cases", "passed", "failed", "errors", "not_implemented"):
        out[k] = sum(L[k] for L in modules)
    for key in ("worst_value", "worst_grad", "worst_hvp"):
        out[key], out[key + "_at"] = {}, {}
        for m in ("abs", "rel", "ulp", "usage"):
            best = max(modules, key=lambda L, key=key, m=m: L.get(key, {}).get(m, 0.0))
            out[key][m] = best.get(key, {}).get(m, 0.0)
            out[key + "_at"][m] = best.get(key + "_at", {}).get(m, "")
    worst = max(modules, key=lambda L: (L["status"] == "failed", max(L["worst_value"]["usage"], L["worst_grad"]["usage"])))
    out["worst_case"] = worst["worst_case"]
    statuses = {L["status"] for L in modules}
    out["status"] = "failed" if "failed" in statuses else "passed" if statuses == {"passed"} else "partial"
    return out


# The terminal's table: the numbers only; where each worst error occurs is in the report files.
CONSOLE_COLUMNS = (
    *LOSS_COLUMNS[:6],
    Column("value_err", "worst value err", left=True),
    Column("grad_err", "worst grad err", left=True),
    Column("vTH_err", "worst vᵀH err", left=True),
)
CONSOLE_WIDTH = 120  # at most, and no wider than the terminal


def console_width() -> int:
    """The terminal's width, at most :data:`CONSOLE_WIDTH` (that when not a terminal)."""
    import shutil

    return min(shutil.get_terminal_size((CONSOLE_WIDTH, 24)).columns, CONSOLE_WIDTH)


def _fit(rows: list[dict[str, str]], columns: Sequence[Column], width: int) -> list[str]:
    """The rows as aligned text, dropping columns from the right until a line fits ``width``."""
    columns = list(columns)
    while True:
        widths = {c.key: max(len(r[c.key]) for r in rows) for c in columns}
        if sum(widths.values()) + 2 * (len(columns) - 1) <= width or len(columns) <= 2:
            break
        columns.pop()
    lines = []
    for k, r in enumerate(rows):
        cells = [r[c.key].ljust(widths[c.key]) if c.left else r[c.key].rjust(widths[c.key]) for c in columns]
        lines.append("  ".join(cells).rstrip()[:width])
        if k == 0:
            lines.append("  ".join("-" * widths[c.key] for c in columns)[:width])
    return lines


def console_table(report: dict[str, Any], width: int | None = None) -> str:
    """The per-loss table and the summary for a terminal ``width`` columns wide (default:
    :func:`console_width`): the counts and worst errors; which case each comes from is in the
    report files (report.md / report.html)."""
    import textwrap

    width = width or console_width()
    rows = [{c.key: c.header for c in CONSOLE_COLUMNS}] + table_rows(report)
    lines = _fit(rows, CONSOLE_COLUMNS, width)
    s = report["summary"]
    lines.append("")
    lines += textwrap.wrap(
        f"{s['cases']} cases: {s['passed']} passed, {s['failed']} failed, {s['errors']} errors, "
        f"{s['not_implemented']} not implemented; judged against the float64 reference: {s['documented_deviations']} documented "
        f"deviations, {s['low_precision_rule']} by the low-precision rule; "
        f"vs float64: jaxloss closer {s['jax_closer']}x, torch closer {s['torch_closer']}x, tie {s['ties']}x",
        width,
    )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    m, s = report["meta"], report["summary"]
    out = ["# jaxloss parity report", ""]
    out.append(f"`{m.get('command', 'python -m jaxloss.parity')}` — torch {m.get('torch')}, jax {m.get('jax')}, device {m.get('device')}, "
               f"{m.get('seconds', 0):.1f} s. **{'PASSED' if s['ok'] else 'FAILED'}**")
    out.append("")
    out.append(f"{s['cases']} cases: {s['passed']} passed, {s['failed']} failed, {s['errors']} errors, {s['not_implemented']} not implemented; "
               f"{s['judged_by_reference']} judged against the float64 reference ({s['documented_deviations']} documented deviations, "
               f"{s['low_precision_rule']} by the low-precision rule). "
               f"Against float64: jaxloss closer {s['jax_closer']}×, torch closer {s['torch_closer']}×, tie {s['ties']}×.")
    if m.get("precision"):
        out += ["", "Precision: " + _settings_text(m["precision"])]
    for family, why in (m.get("skipped") or {}).items():  # a section whose reference is missing: never silent
        out += ["", f"**SKIPPED** {family}: {why}"]
    out += ["", "## Per loss", ""]
    out.append("| " + " | ".join(c.header for c in LOSS_COLUMNS) + " |")
    out.append("|" + "---|" * len(LOSS_COLUMNS))
    for r in table_rows(report):
        cells = [f"`{r[c.key]}`" if c.key == "worst_case" and r[c.key] != "-" else r[c.key] for c in LOSS_COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Per dtype", "", "| dtype | tolerance (rtol, atol) | cases | passed | worst value (abs / rel / ulp) | worst grad (abs / rel / ulp) | jaxloss closer to f64 | torch closer | tie |", "|---|---|---|---|---|---|---|---|---|"]
    for d in report["dtypes"]:
        tol = TOLERANCES[d["dtype"]]
        wv, wg = d["worst_value"], d["worst_grad"]
        out.append(f"| {d['dtype']} | {tol.rtol:g}, {tol.atol:g} | {d['cases']} | {d['passed']} | {_e(wv['abs'])} / {_e(wv['rel'])} / {_e(wv['ulp'])} | "
                   f"{_e(wg['abs'])} / {_e(wg['rel'])} / {_e(wg['ulp'])} | {d['jax_closer']} | {d['torch_closer']} | {d['ties']} |")
    out.append("")
    for d in report["dtypes"]:
        for what, key in (("value", "worst_value"), ("gradient", "worst_grad"), ("vᵀH", "worst_hvp")):
            at = d.get(key + "_at", {})
            if at.get("ulp"):
                out.append(f"- {d['dtype']} worst {what}: {_ulps(d[key]['ulp'])} ulp in `{at['ulp']}`, "
                           f"{_e(d[key]['rel'])} rel in `{at['rel']}`, {_e(d[key]['abs'])} abs in `{at['abs']}`")
    out += ["", "## Documented deviations (judged against the float64 reference)", ""]
    if not report.get("deviations"):
        out.append("None in this run.")
    for d in report.get("deviations", []):
        out.append(f"- **{d['loss']}** ({', '.join(d['dtypes'])}; {d['passed']}/{d['cases']} cases passed): {d['reason']}")
    miss = report["coverage"]["missing"]
    out += ["", "## Coverage", ""]
    out.append("Every public parameter of every loss appears in at least one grid case." if not miss else
               "Parameters no grid case exercises: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in miss.items()))
    for name, model in report.get("models", {}).items():
        out += ["", model_markdown(model, model.get("title", name))]
    out += ["", "## Failures", ""]
    if not report["failures"]:
        out.append("None.")
    for f in report["failures"]:
        out.append(f"### `{f['id']}` ({f['status']})")
        out.append("")
        out.append("```")
        out.append(_result_text(f))
        out.append("```")
        if f.get("reproducer"):
            out += ["", "```python", f["reproducer"], "```"]
        out.append("")
    return "\n".join(out) + "\n"


def _result_text(f: dict[str, Any]) -> str:
    r = f["result"]
    lines = []
    if r.get("jax_error"):
        lines.append("jax raised: " + r["jax_error"].splitlines()[0])
    if r.get("torch_error"):
        lines.append("torch raised: " + r["torch_error"].splitlines()[0])
    for kind in ("outputs", "grads", "hvps"):
        for c in r.get(kind, []):
            mark = "ok  " if c["passed"] else "FAIL"
            if c.get("message") and not c.get("size"):
                lines.append(f"{mark} {c['name']}: {c['message']}")
                continue
            s = f"{mark} {c['name']}: abs {_e(c['max_abs'])} rel {_e(c['max_rel'])} ulp {_e(c['max_ulp'])} tol-use {_e(c['usage'])}"
            if c.get("n_bad"):
                s += f"; {c['n_bad']}/{c['size']} bad, worst at {c['worst_index']}: jax={c['jax_at_worst']} torch={c['torch_at_worst']}"
            if c.get("jax_ref_abs") is not None:
                s += f"; vs f64 jax {_e(c['jax_ref_abs'])} torch {_e(c['torch_ref_abs'])}"
            if c.get("message"):
                s += f" ({c['message']})"
            lines.append(s)
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1500px}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;vertical-align:bottom}
td.l,th.l{text-align:left}
td.w{white-space:normal;min-width:10em;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
.sub{color:#666;font-size:12px;font-weight:normal}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.ni{background:#f1f3f4;color:#777}.partial{background:#fff7e0}
.cov td{text-align:center;font-size:12px;padding:1px 3px;min-width:1.6em}.cov td.l{text-align:left}
.cov th.v{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;padding:4px 2px;font-weight:normal;font-size:12px}
.cov .na{background:#fafafa;color:#ccc}.cov .miss{background:#fce8e6}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap}
h1{font-size:22px}h2{font-size:18px;margin-top:1.6em}
p.note{color:#555;max-width:70em}
.ok{color:#137333;font-weight:bold}.bad{color:#c5221f;font-weight:bold}
"""


def _scrolling(page: str) -> str:
    """Every table in a box that scrolls sideways: a wide table never widens the page.

    >>> _scrolling("<table><tr><td>1</td></tr></table>")
    "<div class='scroll'><table><tr><td>1</td></tr></table></div>"
    """
    return page.replace("<table", "<div class='scroll'><table").replace("</table>", "</table></div>")


def _breakable(text: str) -> str:
    """Escaped text that may wrap after '/', ',', '(' and '[' (long case ids)."""
    out = html.escape(text)
    for ch in ("/", ",", "[", "("):
        out = out.replace(ch, ch + "<wbr>")
    return out


def html_page(report: dict[str, Any]) -> str:
    esc = html.escape
    m, s = report["meta"], report["summary"]
    p = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>jaxloss parity report</title>", f"<style>{_CSS}</style></head><body>"]
    p.append("<h1>jaxloss parity report</h1>")
    verdict = "<span class='ok'>PASSED</span>" if s["ok"] else "<span class='bad'>FAILED</span>"
    p.append(f"<p>{verdict} — <code>{esc(str(m.get('command', '')))}</code>; torch {esc(str(m.get('torch')))}, jax {esc(str(m.get('jax')))}, "
             f"device {esc(str(m.get('device')))}, {m.get('seconds', 0):.1f} s.</p>")
    p.append(f"<p>{s['cases']} cases: {s['passed']} passed, {s['failed']} failed, {s['errors']} errors, {s['not_implemented']} not implemented; "
             f"{s['judged_by_reference']} judged against the float64 reference ({s['documented_deviations']} documented deviations, "
             f"{s['low_precision_rule']} by the low-precision rule). Against float64: jaxloss closer {s['jax_closer']}×, "
             f"torch closer {s['torch_closer']}×, tie {s['ties']}×.</p>")
    if m.get("precision"):
        p.append(f"<p class='note'>Precision: {esc(_settings_text(m['precision']))}</p>")
    for family, why in (m.get("skipped") or {}).items():
        p.append(f"<p class='bad'>SKIPPED {esc(family)}: {esc(why)}</p>")
    # per loss
    p.append("<h2>Per loss</h2><p class='note'>tol used: the largest fraction of its dtype's tolerance "
             "(|jax - torch| / (atol + rtol |torch|)) any compared array of the loss used; 1 is the limit. Errors: worst "
             "relative error (where |torch| &gt; atol) and worst error in ULPs, over all dtypes, of arrays judged "
             "against torch.</p><table><tr>")
    p.append("".join(f"<th class='{'l' if c.left else ''}'>{esc(c.header)}</th>" for c in LOSS_COLUMNS)
             .replace(">loss<", ">loss <span class='sub'>(torch side)</span><", 1) + "</tr>")
    for r in table_rows(report):
        cls = {"passed": "pass", "failed": "fail", "not implemented": "ni", "partial": "partial"}[r["status"]]
        cells = []
        for c in LOSS_COLUMNS:
            if c.key == "loss":
                cells.append(f"<td class='l'>{esc(r['loss'])}<br><span class='sub'>{_breakable(r['torch'])}</span></td>")
            elif c.key in ("worst_case", "value", "grad", "vTH"):
                cells.append(f"<td class='l w'>{_breakable(r[c.key])}</td>")
            else:
                cells.append(f"<td class='{'l' if c.left else ''}'>{esc(r[c.key])}</td>")
        p.append(f"<tr class='{cls}'>{''.join(cells)}</tr>")
    p.append("</table>")
    # per dtype
    p.append("<h2>Per dtype</h2><table><tr><th class='l'>dtype</th><th>rtol</th><th>atol</th><th>cases</th><th>passed</th>"
             "<th>worst value abs / rel / ulp</th><th>worst grad abs / rel / ulp</th><th>jaxloss closer to f64</th><th>torch closer</th><th>tie</th></tr>")
    for d in report["dtypes"]:
        tol = TOLERANCES[d["dtype"]]
        wv, wg = d["worst_value"], d["worst_grad"]
        p.append(f"<tr><td class='l'>{d['dtype']}</td><td>{tol.rtol:g}</td><td>{tol.atol:g}</td><td>{d['cases']}</td><td>{d['passed']}</td>"
                 f"<td>{_e(wv['abs'])} / {_e(wv['rel'])} / {_e(wv['ulp'])}</td><td>{_e(wg['abs'])} / {_e(wg['rel'])} / {_e(wg['ulp'])}</td>"
                 f"<td>{d['jax_closer']}</td><td>{d['torch_closer']}</td><td>{d['ties']}</td></tr>")
    p.append("</table><ul class='note'>")
    for d in report["dtypes"]:
        parts = []
        for what, key in (("value", "worst_value"), ("gradient", "worst_grad"), ("vᵀH", "worst_hvp")):
            at = d.get(key + "_at", {})
            if at.get("ulp"):
                parts.append(f"{what}: {_ulps(d[key]['ulp'])} ulp in <code>{esc(at['ulp'])}</code>, "
                             f"{_e(d[key]['rel'])} rel in <code>{esc(at['rel'])}</code>")
        if parts:
            p.append(f"<li>{d['dtype']} worst — " + "; ".join(parts) + "</li>")
    p.append("</ul>")
    # coverage matrix
    cov, params = report["coverage"]["covered"], report["coverage"]["params"]
    all_params: list[str] = []
    for ps in params.values():
        for x in ps:
            if x not in all_params:
                all_params.append(x)
    p.append("<h2>Coverage: grid cases per loss × parameter</h2><p class='note'>A number: how many grid cases pass that "
             "parameter explicitly; red: a parameter of that loss no case exercises; grey dot: not a parameter of that "
             "loss.</p><table class='cov'><tr><th class='l'>loss</th>")
    p.append("".join(f"<th class='v'>{esc(x)}</th>" for x in all_params) + "</tr>")
    for name, ps in params.items():
        row = [f"<td class='l'>{esc(name)}</td>"]
        for x in all_params:
            if x not in ps:
                row.append("<td class='na'>·</td>")
            else:
                n = cov.get(name, {}).get(x, 0)
                row.append(f"<td class='{'miss' if not n else 'pass'}'>{n}</td>")
        p.append("<tr>" + "".join(row) + "</tr>")
    p.append("</table>")
    for name, model in report.get("models", {}).items():
        p.append(model_section_html(model, model.get("title", name)))
    # failures
    p.append(f"<h2>Failures ({len(report['failures'])})</h2>")
    if not report["failures"]:
        p.append("<p>None.</p>")
    for f in report["failures"]:
        p.append(f"<h3><code>{esc(f['id'])}</code> — {esc(f['status'])}</h3><pre>{esc(_result_text(f))}</pre>")
        if f.get("reproducer"):
            p.append(f"<p>Reproducer:</p><pre>{esc(f['reproducer'])}</pre>")
    # documented deviations
    p.append("<h2>Documented deviations (judged against the float64 reference)</h2>")
    devs = report.get("deviations", [])
    if not devs:
        p.append("<p>None in this run.</p>")
    else:
        p.append("<p class='note'>Where torch itself is inexact (a <code>parity.cases.TorchInexact</code>), jaxloss is "
                 "judged against the float64 truth rounded to the dtype, with the dtype's usual tolerance.</p>"
                 "<table><tr><th class='l'>loss</th><th class='l'>dtypes</th>"
                 "<th>cases</th><th>passed</th><th class='l'>reason</th></tr>")
        for d in devs:
            p.append(f"<tr><td class='l'>{esc(d['loss'])}</td><td class='l'>{esc(', '.join(d['dtypes']))}</td><td>{d['cases']}</td>"
                     f"<td>{d['passed']}</td><td class='l w'>{esc(d['reason'])}</td></tr>")
        p.append("</table>")
    p.append(f"<p class='note'>Besides these, {s['low_precision_rule']} float16 / bfloat16 cases had an array judged by the "
             "low-precision rule: jaxloss computes these dtypes in float32 and rounds once, torch rounds intermediates; an "
             "array that misses torch passes only if it is within tolerance of the float64 truth and at least as close "
             "to it as torch's.</p>")
    p.append("</body></html>")
    return _scrolling("\n".join(p) + "\n")


# --------------------------------------------------------------------------- files
def write(report: dict[str, Any], folder: str) -> dict[str, str]:
    """Write report.json, report.md, report.html into ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {k: os.path.join(folder, f"report.{k}") for k in ("json", "md", "html")}
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump(jsonable(report), fh, indent=1, allow_nan=False)
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(markdown(report))
    with open(paths["html"], "w", encoding="utf-8") as fh:
        fh.write(html_page(report))
    return paths


def _settings_text(settings: dict[str, Any]) -> str:
    """``parity.precisions.settings()`` as one line."""
    return ", ".join(f"{k}={v}" for k, v in settings.items())


# --------------------------------------------------------------------------- models, layer by layer
_FLOOR = 1e-9  # exact agreement is drawn here (log scale)
_KIND_COLOURS = {"param": "#9aa0a6", "forward": "#1a73e8", "grad": "#e8710a"}


def layer_plot_png(model: dict[str, Any], title: str = "") -> bytes:
    """The error-by-layer plot of a :meth:`jaxloss.parity.models.ModelReport.to_json` dict, as PNG bytes.

    One point per compared tensor in report order (forward, then backward): the fraction of
    its tolerance it used (log scale; above 1 fails), coloured by kind, failures ringed in red.

    >>> layer_plot_png({"layers": [{"kind": "forward", "usage": 0.1, "passed": True, "jax_path": "fc", "tensor": "output"}]})[:4]
    b'\\x89PNG'
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = model["layers"]
    usage = [max(_num(d["usage"]), _FLOOR) for d in rows]
    fig, ax = plt.subplots(figsize=(12.0, 4.2), dpi=100)
    for kind, colour in _KIND_COLOURS.items():
        idx = [k for k, d in enumerate(rows) if d["kind"] == kind]
        ax.scatter(idx, [usage[k] for k in idx], s=14, color=colour, label=kind, zorder=3)
    bad = [k for k, d in enumerate(rows) if not d["passed"]]
    ax.scatter(bad, [usage[k] for k in bad], s=70, facecolors="none", edgecolors="#c5221f", linewidths=1.5,
               label="out of tolerance", zorder=4)
    ax.axhline(1.0, color="#c5221f", lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_ylabel("tolerance used\n(exact: bottom)", fontsize=8)
    step = max(1, len(rows) // 45)
    ax.set_xticks(range(0, len(rows), step))
    ax.set_xticklabels([_short(rows[k]) for k in range(0, len(rows), step)], rotation=70, fontsize=6, ha="right")
    ax.set_title(title or "error by layer (forward, then backward)", fontsize=10)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _num(x: Any) -> float:
    return float(x) if not isinstance(x, str) else float("inf")


def _short(d: dict[str, Any]) -> str:
    name = d["jax_path"] or "(model)"
    return f"{name}.{d['tensor']}" if d["tensor"] != "output" else name


def _layer_row(d: dict[str, Any]) -> list[str]:
    nonfinite = [f"{side} at {d[side + '_nonfinite']}" for side in ("jax", "torch") if d.get(side + "_nonfinite") is not None]
    closer = "-" if d.get("closer") is None else f"{d['closer']}; torch f32 {'ok' if d.get('torch_ref_passed') else 'OUT'}"
    return [d["kind"], d["jax_path"] or "(model)", d["torch_name"] or "(model)", d["tensor"], "ok" if d["passed"] else "FAIL",
            _e(_num(d["max_abs_err"])), _e(_num(d["mean_abs_err"])), _e(_num(d["p99_abs_err"])), _e(_num(d["max_rel_err"])),
            _ulps(_num(d["max_ulp"])), f"{_num(d['usage']):.2g}", ", ".join(nonfinite) or "-", closer, d.get("message", "")]


_LAYER_HEAD = ["kind", "jax path", "torch name", "tensor", "", "max abs", "mean abs", "p99 abs", "max rel", "ulp",
               "tol used", "first NaN/inf", "vs float64", "note"]


def model_markdown(model: dict[str, Any], title: str) -> str:
    """A per-layer section in Markdown: the verdict, then the table of every compared tensor.

    >>> from jaxloss.parity.models.diff import LayerDiff, ModelReport
    >>> md = model_markdown(ModelReport([LayerDiff.failed("fc", "fc", "forward", "x")]).to_json(), "Per layer")
    >>> md.splitlines()[2], md.count("| forward | fc |")
    ('**FAILED: first divergence at fc, forward: max abs 0, rel 0 (x)**', 1)
    """
    out = [f"## {title}", "", f"**{model['verdict']}**", ""]
    if model.get("unpaired_torch") or model.get("unpaired_jax"):
        out += [f"Not compared (no partner): JAX {model['unpaired_jax']}, torch {model['unpaired_torch']}.", ""]
    out.append("| " + " | ".join(_LAYER_HEAD) + " |")
    out.append("|" + "---|" * len(_LAYER_HEAD))
    for d in model["params"] + model["layers"]:
        out.append("| " + " | ".join(c.replace("|", "/") for c in _layer_row(d)) + " |")
    return "\n".join(out) + "\n"


def model_section_html(model: dict[str, Any], title: str) -> str:
    """A per-layer section in HTML: the verdict, the error-by-layer plot (inline PNG), the table.

    >>> from jaxloss.parity.models.diff import LayerDiff, ModelReport
    >>> page = model_section_html(ModelReport([LayerDiff.failed("fc", "fc", "grad", "x")]).to_json(), "SeedCNN")
    >>> page.startswith("<h2>SeedCNN</h2>"), "data:image/png;base64," in page
    (True, True)
    """
    import base64

    esc = html.escape
    cls = "ok" if model["passed"] else "bad"
    p = [f"<h2>{esc(title)}</h2><p class='{cls}'>{esc(model['verdict'])}</p>"]
    png = base64.b64encode(layer_plot_png(model, title)).decode()
    p.append(f"<p><img alt='error by layer' style='max-width:100%' src='data:image/png;base64,{png}'></p>")
    settings = model.get("meta", {}).get("settings", {})
    if settings:
        p.append("<p class='note'>" + esc(_settings_text(settings)) + "</p>")
    if model.get("unpaired_torch") or model.get("unpaired_jax"):
        p.append(f"<p class='note'>Not compared (no partner): JAX {esc(str(model['unpaired_jax']))}, "
                 f"torch {esc(str(model['unpaired_torch']))}.</p>")
    for what, rows in (("layer tensors (forward, then backward)", model["layers"]), ("parameters and buffers before the run", model["params"])):
        bad = sum(not d["passed"] for d in rows)
        p.append(f"<details{' open' if bad else ''}><summary>{len(rows)} {what}: {bad} out of tolerance</summary><table><tr>"
                 + "".join(f"<th class='l'>{esc(h)}</th>" for h in _LAYER_HEAD) + "</tr>")
        for d in rows:
            cells = "".join(f"<td class='l'>{esc(c)}</td>" for c in _layer_row(d))
            p.append(f"<tr class='{'pass' if d['passed'] else 'fail'}'>{cells}</tr>")
        p.append("</table></details>")
    return "\n".join(p)


def write_model_report(model: dict[str, Any], folder: str, title: str) -> dict[str, str]:
    """``report.json``, ``report.md``, ``report.html`` and ``layers.png`` of one model comparison.

    >>> import tempfile
    >>> from jaxloss.parity.models.diff import LayerDiff, ModelReport
    >>> paths = write_model_report(ModelReport([LayerDiff.failed("fc", "fc", "forward", "x")]).to_json(), tempfile.mkdtemp(), "t")
    >>> sorted(paths)
    ['html', 'json', 'md', 'png']
    """
    os.makedirs(folder, exist_ok=True)
    paths = {k: os.path.join(folder, f"report.{k}") for k in ("json", "md", "html")}
    paths["png"] = os.path.join(folder, "layers.png")
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump(jsonable(model), fh, indent=1, allow_nan=False)
    with open(paths["md"], "w", encoding="utf-8") as fh:
        fh.write(f"# {title}\n\n" + model_markdown(model, "Per layer"))
    with open(paths["html"], "w", encoding="utf-8") as fh:
        fh.write(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style>"
                 f"</head><body><h1>{html.escape(title)}</h1>\n{_scrolling(model_section_html(model, 'Per layer'))}\n</body></html>\n")
    with open(paths["png"], "wb") as fh:
        fh.write(layer_plot_png(model, title))
    return paths
