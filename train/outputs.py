"""What a run writes: ``metrics.jsonl`` (one JSON record per epoch), ``curves.png`` and the header it prints."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from jaxloss.train.config import TrainConfig, flag

__all__ = ["check_writable_dir", "command_line", "epoch_line", "header", "plot_history", "write_atomic", "write_metrics"]


def check_writable_dir(path: str | os.PathLike[str], field: str) -> None:
    """Create ``path`` if needed and prove a file can be written in it; :class:`ConfigError` naming ``field`` else.

    >>> import tempfile, pathlib
    >>> from jaxloss.train.outputs import check_writable_dir
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "file"; _ = f.write_text("")
    >>> check_writable_dir(f, "out")
    Traceback (most recent call last):
    ...
    jaxloss.train.config.ConfigError: out .../file is a file, not a folder
    """
    from jaxloss.train.config import ConfigError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(field, f"{p} is a file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(field, f"{p} is not writable ({e.strerror or e})") from None


def write_metrics(out: Path, history: list[dict[str, Any]]) -> Path:
    """``out/metrics.jsonl``: one JSON record per finished epoch, written atomically.

    >>> import pathlib, tempfile
    >>> from jaxloss.train.outputs import write_metrics
    >>> path = write_metrics(pathlib.Path(tempfile.mkdtemp()), [{"epoch": 1, "test_acc": 0.5}])
    >>> path.name, path.read_text().strip()
    ('metrics.jsonl', '{"epoch": 1, "test_acc": 0.5}')
    """
    path = Path(out) / "metrics.jsonl"
    write_atomic(path, "".join(json.dumps(h) + "\n" for h in history))
    return path


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The line printed after each epoch.

    >>> from jaxloss.train.outputs import epoch_line
    >>> r = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 0.9, "test_acc": 0.6, "images_per_s": 1234.5}
    >>> epoch_line(r, 10)
    'epoch 1/10: train loss 1.0000 acc 50.00% | test loss 0.9000 acc 60.00% | 1,234 img/s'
    """
    rate = f"{record['images_per_s']:,.0f}" if record["images_per_s"] else "-"  # none: resumed at the epoch's end
    return (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} acc "
            f"{100 * record['train_acc']:.2f}% | test loss {record['test_loss']:.4f} acc "
            f"{100 * record['test_acc']:.2f}% | {rate} img/s")  # fmt: skip


def header(cfg: TrainConfig, facts: dict[str, Any]) -> str:
    """The run's command line, every setting spelt out so that it can be pasted back to rerun it,
    plus ``facts`` about data and devices (one block).

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.outputs import header
    >>> print(header(TrainConfig(download=True), {"devices": 1}).splitlines()[0].split(" --epochs")[0])
    command: python -m jaxloss.train --model seed-cnn --dataset digits --data-dir data --download
    """
    return f"command: {command_line(cfg)}\nrun: " + ", ".join(f"{k} {v}" for k, v in facts.items())


def command_line(cfg: TrainConfig) -> str:
    """``python -m jaxloss.train`` with every setting of ``cfg`` as a flag: a switch when it is on (off
    for the ``--no-...`` ones), nothing for an unset option (its default), sgd's momentum as run.

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.outputs import command_line
    >>> line = command_line(TrainConfig(augment=False, out="my runs/a"))
    >>> "--no-augment" in line, "'my runs/a'" in line, "--download" in line, "--momentum 0.9" in line
    (True, True, False, True)
    """
    import dataclasses
    import shlex

    words = ["python", "-m", "jaxloss.train"]
    for f in dataclasses.fields(cfg):
        value = cfg.effective_momentum if f.name == "momentum" and cfg.optimizer == "sgd" else getattr(cfg, f.name)
        if "negate" in f.metadata:
            words += [] if value else [f.metadata["negate"]]
        elif isinstance(value, bool):
            words += [flag(f.name)] if value else []
        elif value is not None:
            words += [flag(f.name), *(str(v) for v in (value if isinstance(value, (tuple, list)) else [value]))]
    return " ".join(shlex.quote(w) for w in words)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half file.

    >>> import tempfile, pathlib
    >>> from jaxloss.train.outputs import write_atomic
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(p, "hi"); p.read_text()
    'hi'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def plot_history(history: list[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """PNG of train/test loss and accuracy per epoch (matplotlib, Agg backend).

    >>> import tempfile, pathlib
    >>> from jaxloss.train.outputs import plot_history
    >>> h = [{"epoch": 1, "train_loss": 1.0, "test_loss": 0.9, "train_acc": 0.5, "test_acc": 0.6}]
    >>> plot_history(h, pathlib.Path(tempfile.mkdtemp()) / "c.png").suffix
    '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train (mean over the epoch's steps)")
    ax1.plot(ep, [h["test_loss"] for h in history], "s-", label="test (after the epoch)")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train (mean over the epoch's steps)")
    ax2.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test (after the epoch)")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        if ep:
            ax.set_xticks(ep if len(ep) <= 20 else ep[:: math.ceil(len(ep) / 20)])
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
