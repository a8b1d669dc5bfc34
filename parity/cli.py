"""What parity's command lines share, beyond :mod:`jaxloss.train.cli` (exit codes, one-line errors).

* :func:`path_problem`: every flag naming a path (``--out``, ``--save``, ``--against``,
  ``--xla-cache``) is checked before the work starts, so a run is never lost at its end to a
  path that was wrong from the start.
* :func:`remove_reports`: the previous run's report files go at the start of a run, so an
  interrupted or failed run never leaves an old report in ``--out`` that looks current.
* :func:`stop_if_interrupted`: Ctrl-C is taken into a :class:`jaxloss.train.signals.SigintFlag` and
  raised here, between cases, steps or models: a ``KeyboardInterrupt`` raised inside a JAX
  callback (where the signal may land) can be swallowed, and the run would finish as if nothing
  happened.

Imports nothing heavy, so a bad flag is refused before JAX or torch is loaded.

>>> path_problem("--out", "/dev/null", "folder")
'--out /dev/null: not a folder that can be written into'
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from jaxloss.parity.files import writable_folder
from jaxloss.train.signals import SigintFlag

__all__ = ["path_problem", "remove_reports", "stop_if_interrupted"]

PATH_KINDS = ("folder", "output", "input")


def path_problem(flag: str, path: str | None, kind: str) -> str | None:
    """What is wrong with the path a flag names (``None``: nothing, or no path given).

    ``kind``: ``'folder'`` (an output folder: made if missing, then writable), ``'output'``
    (a file to write: not a folder, in a writable folder) or ``'input'`` (a file to read).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> path_problem("--save", d, "output") == f"--save {d}: is a folder, expected a file"
    True
    >>> path_problem("--against", d + "/none.npz", "input").endswith("no such file")
    True
    """
    if kind not in PATH_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PATH_KINDS)}, got {kind!r}")
    if not path:
        return None
    if kind == "folder":
        return None if writable_folder(path) else f"{flag} {path}: not a folder that can be written into"
    if os.path.isdir(path):
        return f"{flag} {path}: is a folder, expected a file"
    if kind == "input":
        if not os.path.exists(path):
            return f"{flag} {path}: no such file"
        return None if os.access(path, os.R_OK) else f"{flag} {path}: not readable"
    folder = os.path.dirname(os.path.abspath(path))
    return None if writable_folder(folder) else f"{flag} {path}: cannot write into {folder}"


def remove_reports(folder: str | None, names: Iterable[str]) -> None:
    """Delete the report files ``names`` of a previous run from ``folder`` (those present).

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "report.json"), "w").close()
    >>> remove_reports(d, ["report.json", "report.md"])
    >>> os.listdir(d)
    []
    """
    if not folder:
        return
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)


def stop_if_interrupted(flag: SigintFlag) -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C came since ``flag`` was set up: a safe point of a run.

    >>> import os, signal
    >>> with SigintFlag() as flag:
    ...     stop_if_interrupted(flag)  # nothing yet
    ...     os.kill(os.getpid(), signal.SIGINT)
    ...     try:
    ...         stop_if_interrupted(flag)
    ...     except KeyboardInterrupt:
    ...         print("interrupted")
    interrupted
    """
    if flag.set:
        raise KeyboardInterrupt
