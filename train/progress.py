"""The project's one progress bar, on :mod:`rich.progress`: count, elapsed time, ETA and a status text.

Used by the training loop (steps per epoch), the CIFAR-10 download (bytes) and the parity
runner (cases). On a terminal it redraws in place; elsewhere (logs, CI, a
``StringIO``) it prints the finished bar once, when closed. Imports only rich (no JAX),
so a torch-only install of ``parity`` can use it.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as _RichProgress

__all__ = ["Progress"]


class Progress:
    """A progress bar over ``total`` units (``None``: unknown) with a free status text.

    Args:
        total: how many units make the bar full (``None``: unknown, no ETA).
        description: what is counted, left of the bar.
        stream: where it draws (default ``sys.stderr``).
        enabled: ``False`` draws nothing (every method still works).
        bytes: count bytes (sizes and a transfer speed instead of ``k/n``).
        interval: :meth:`due` is true at most this often (seconds), and only on a terminal.

    >>> import io
    >>> from jaxloss.train.progress import Progress
    >>> out = io.StringIO()
    >>> with Progress(4, "epoch 1/1", stream=out) as bar:
    ...     for i in range(4):
    ...         bar.update(i + 1, text="loss 0.5")
    >>> "epoch 1/1" in out.getvalue() and "4/4" in out.getvalue() and "loss 0.5" in out.getvalue()
    True
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        bytes: bool = False,
        interval: float = 0.25,
    ) -> None:
        stream = stream if stream is not None else sys.stderr
        self.enabled, self.interval = enabled, interval
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self.tty = tty
        console = Console(file=stream, width=None if tty else 120, highlight=False)
        count: list[ProgressColumn] = (
            [DownloadColumn(), TransferSpeedColumn()] if bytes else [MofNCompleteColumn()]
        )
        self._bar = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            *count,
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[text]}"),
            console=console,
            transient=False,
            disable=not enabled,
            refresh_per_second=4,
        )
        self._task = self._bar.add_task(description, total=total, text="")
        self._last = float("-inf")
        self._started = False

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not self._started:
            self._bar.start()
            self._started = True

    def due(self) -> bool:
        """Whether a redraw would be seen now: callers read device values only then."""
        return self.enabled and self.tty and time.monotonic() - self._last >= self.interval

    def update(self, completed: int | None = None, *, advance: int = 0, text: str | None = None,
               total: int | None = None) -> None:  # fmt: skip
        """Set the count (or ``advance`` it), the status text, or the total."""
        self.start()
        self._last = time.monotonic()
        kw: dict[str, Any] = {}
        if completed is not None:
            kw["completed"] = completed
        if advance:
            kw["advance"] = advance
        if text is not None:
            kw["text"] = text
        if total is not None:
            kw["total"] = total
        self._bar.update(self._task, **kw)

    def close(self, text: str | None = None) -> None:
        """Draw the final state (with ``text``) and stop; later calls do nothing."""
        if text is not None:
            self._bar.update(self._task, text=text)
        if self._started:
            self._bar.stop()
            self._started = False
