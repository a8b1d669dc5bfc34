"""Ctrl-C during training: the first SIGINT becomes a flag the loop checks between steps."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["SigintFlag"]


class SigintFlag:
    """Within the ``with`` block the first SIGINT sets :attr:`set`; a second one interrupts at once.

    Outside the main thread (where signals cannot be caught) it does nothing.

    >>> import os, signal
    >>> from jaxloss.train.signals import SigintFlag
    >>> with SigintFlag() as flag:
    ...     os.kill(os.getpid(), signal.SIGINT)
    ...     flag.set
    True
    """

    def __init__(self) -> None:
        self.set = False
        self._old: Any = None

    def __enter__(self) -> SigintFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
