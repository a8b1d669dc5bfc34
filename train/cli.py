"""What every command line of the project shares: exit codes, one-line errors, Ctrl-C.

One convention for ``python -m jaxloss.train``, ``python -m jaxloss.parity``, ``python -m jaxloss.parity.models``,
``python -m jaxloss.parity.twin`` and ``python -m benchmarks.gpu``:

=====  ==========================================================================
code   meaning
=====  ==========================================================================
0      done, and every verdict passed
1      a real divergence or failure (a comparison failed, a section failed, bad data)
2      bad input: a flag, a file or an environment problem found before the work
130    interrupted (Ctrl-C); partial outputs are marked as such
=====  ==========================================================================

A bad flag prints one line (``prog: error: ... (see --help)``), with a "did you mean"
for a misspelt flag or choice, never the whole usage text. This module imports
nothing heavy, so a CLI can refuse a bad flag before Flax, optax or torch is loaded (JAX
comes with the ``jaxloss`` package that holds it).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "Parser",
    "fail",
    "positive_int",
    "require",
    "run_main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit status 2.

    >>> import contextlib, io
    >>> from jaxloss.train.cli import Parser
    >>> p = Parser(prog="demo")
    >>> _ = p.add_argument("--epochs", type=int, default=1)
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     try:
    ...         p.parse_args(["--epohcs", "3"])
    ...     except SystemExit as e:
    ...         print(e.code)
    2
    >>> print(err.getvalue().strip())
    demo: error: unrecognized arguments: --epohcs 3; did you mean --epochs? (see --help)
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # "--epoch" silently meaning "--epochs" hides typos
        super().__init__(*args, **kwargs)

    def _flags(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings]

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse's hook
        hint = ""
        m = re.match(r"unrecognized arguments: (\S+)", message)
        if m:
            hint = _suggest(m.group(1).split("=")[0], self._flags())
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'|([^,\s]+)", m.group(2))
            hint = _suggest(m.group(1), [a or b for a, b in choices])
        fail(self.prog, f"{message}{hint} (see --help)")


def positive_int(text: str) -> int:
    """An argparse ``type`` for a count: a whole number of at least 1, else argparse's one-line error.

    >>> from jaxloss.train.cli import positive_int
    >>> positive_int("4")
    4
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a positive integer, got '0'
    """
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def fail(prog: str, message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``prog: error: message`` as one line on stderr and exit with ``code`` (2: bad input).

    >>> from jaxloss.train.cli import fail
    >>> try:
    ...     fail("demo", "--out is a file")
    ... except SystemExit as e:
    ...     e.code
    2
    """
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def require(prog: str, what: str, modules: Sequence[str], extra: str) -> None:
    """Exit 2 with one line naming the ``pip install`` that fixes it when a module of ``modules``
    is not installed: checked before any work, so a run is never lost to an import at its end.
    Finds the modules without importing them.

    >>> import contextlib, io
    >>> from jaxloss.train.cli import require
    >>> require("demo", "the demo", ["json"], "parity")  # installed: nothing happens
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     try:
    ...         require("demo", "the demo", ["json", "no_such_module"], "parity")
    ...     except SystemExit as e:
    ...         print(e.code)
    2
    >>> print(err.getvalue().strip())
    demo: error: the demo needs no_such_module: pip install 'jaxloss[parity]'
    """
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        fail(prog, f"{what} needs {', '.join(missing)}: pip install 'jaxloss[{extra}]'")


def run_main(prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI's ``main``: Ctrl-C becomes one line and status 130 instead of a traceback.

    ``main`` is responsible for marking any partial output it leaves as interrupted
    (typically in a ``finally`` or ``except KeyboardInterrupt`` that re-raises).

    >>> from jaxloss.train.cli import run_main
    >>> def main(argv):
    ...     raise KeyboardInterrupt
    >>> run_main("demo", main, [])
    demo: interrupted
    130
    """
    try:
        return int(main(argv))
    except KeyboardInterrupt:
        # stdout: the line belongs with the progress the user was watching
        print(f"{prog}: interrupted", flush=True)
        return EXIT_INTERRUPTED
