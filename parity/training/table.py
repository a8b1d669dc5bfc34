"""The per-step table and plot of a training comparison (:class:`jaxloss.parity.training.TrainingStep` rows).

The terminal table goes through the project's table writer (:func:`jaxloss.parity.report._fit`:
columns on the right are dropped until a line fits); the Markdown one has every column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jaxloss.parity.training.records import TrainingStep

__all__ = ["format_table", "plot_steps"]


def _e(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def format_table(steps: Sequence[TrainingStep], markdown: bool = False, width: int | None = None) -> str:
    """Per-step table. ``ref`` columns: torch float32 vs torch float64 (torch's own rounding
    error) and Flax float32 vs torch float64 (Flax's), when the reference ran. For a terminal
    ``width`` columns wide (default: :func:`jaxloss.parity.report.console_width`) the columns on the
    right are left out until a line fits.

    >>> s = TrainingStep(1, 2.3, 2.3, 0.0, 1e-8, 1e-7, 0.0, True, within_tolerance=True)
    >>> print(format_table([s], width=60))
    step   ok  strict  loss (jax)  loss (torch)   |dloss|
    ----  ---  ------  ----------  ------------  --------
       1  yes     yes   2.3000000     2.3000000  0.00e+00
    """
    from jaxloss.parity.report import Column, _fit, console_width

    has_ref = any(s.ref_param_diff is not None for s in steps)
    # the verdict first, then the differences; on a narrow terminal the columns on the right go first
    cols: list[tuple[str, Callable[[TrainingStep], str]]] = [
        ("step", lambda s: str(s.step)),
        ("ok", lambda s: "yes" if s.within_tolerance else "NO"),
        ("strict", lambda s: "yes" if s.strict else "no"),
        ("loss (jax)", lambda s: f"{s.loss_jax:.7f}"),
        ("loss (torch)", lambda s: f"{s.loss_torch:.7f}"),
        ("|dloss|", lambda s: _e(s.loss_diff)),
        ("max |dparam|", lambda s: _e(s.param_diff)),
    ]
    if has_ref:
        cols += [("torch |dparam| vs f64", lambda s: _e(s.ref_param_diff)),
                 ("flax |dparam| vs f64", lambda s: _e(s.jax_ref_param_diff))]  # fmt: skip
    cols += [("max |dstat|", lambda s: _e(s.buffer_diff)), ("max rel dparam", lambda s: _e(s.param_rel_diff))]
    if has_ref:
        cols += [("torch |dloss| vs f64", lambda s: _e(s.ref_loss_diff)),
                 ("flax |dloss| vs f64", lambda s: _e(s.jax_ref_loss_diff))]  # fmt: skip
    head = [h for h, _ in cols]
    rows = [[cell(s) for _, cell in cols] for s in steps]
    if markdown:
        lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |", "|" + "---|" * len(head)]  # a bare | ends a cell
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    columns = [Column(str(j), h) for j, h in enumerate(head)]
    cells = [{str(j): v for j, v in enumerate(r)} for r in [head, *rows]]
    return "\n".join(_fit(cells, columns, width or console_width()))


def _log_series(ax: Any, steps: list[int], values: list[float], floor: float, **kw: Any) -> None:
    """Nonzero values on the log axis; exact zeros as hollow markers on the axis floor, labelled so."""
    v = np.asarray(values, dtype=float)
    s = np.asarray(steps)
    line = ax.semilogy(s, np.where(v > 0, v, np.nan), **kw)[0]
    if np.any(v == 0):
        ax.semilogy(s[v == 0], np.full(int((v == 0).sum()), floor), ls="none", marker="v", mfc="none",
                    color=line.get_color(), label=f"{kw.get('label', '')} = 0 exactly")  # fmt: skip


def plot_steps(steps: Sequence[TrainingStep], path: str | Path, title: str = "") -> None:
    """A PNG: the two loss curves, and the differences per step against the band that decides pass/fail
    (log scale; with the reference, torch's own float32 error too). ``title``: the figure's title.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "steps.png")
    >>> plot_steps([TrainingStep(1, 2.3, 2.3, 0.0, 1e-8, 1e-7, 0.0, True, param_bound=1e-5, within_tolerance=True)], path)
    >>> os.path.getsize(path) > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = list(steps)
    xs = [s.step for s in st]
    positive = [v for s in st for v in (s.loss_diff, s.param_diff, s.param_bound, s.buffer_diff) if v > 0]
    floor = min(positive) / 10 if positive else 1e-16
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    ax0.plot(xs, [s.loss_jax for s in st], label="Flax / optax")
    ax0.plot(xs, [s.loss_torch for s in st], "--", label="torch")
    ax0.set(xlabel="step", ylabel="loss", title="training loss")
    ax0.legend(loc="upper left", bbox_to_anchor=(0.0, -0.15), ncol=2, fontsize="small")
    ax1.fill_between(xs, floor, [s.param_bound for s in st], color="tab:green", alpha=0.15, step="mid",
                     label="allowed max |dparam| (pass/fail band)")  # fmt: skip
    ax1.plot(xs, [s.loss_bound for s in st], color="tab:blue", lw=0.8, ls=":", label="allowed |dloss|")
    _log_series(ax1, xs, [s.loss_diff for s in st], floor, marker="o", ms=3, color="tab:blue", label="|dloss|")
    _log_series(ax1, xs, [s.param_diff for s in st], floor, marker="s", ms=3, color="tab:orange",
                label="max |dparam|")  # fmt: skip
    if any(s.ref_param_diff is not None for s in st):
        _log_series(ax1, xs, [s.ref_param_diff or 0.0 for s in st], floor, color="k", ls="--", lw=1,
                    label="max |dparam| torch f32 vs f64")  # fmt: skip
    if any(s.buffer_diff for s in st):
        _log_series(ax1, xs, [s.buffer_diff for s in st], floor, marker="^", ms=3, color="tab:red",
                    label="max |dBN stat|")  # fmt: skip
    failing = [s.step for s in st if not s.within_tolerance]
    for k in failing:
        ax1.axvline(k, color="red", alpha=0.3, lw=1)
    ax1.set_ylim(bottom=floor / 2)
    n, within = len(st), sum(s.within_tolerance for s in st)
    ax1.set(xlabel="step", ylabel="absolute difference Flax - torch",
            title=f"{within}/{n} steps within tolerance" + (f"; first outside: step {failing[0]}" if failing else ""))  # fmt: skip
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
