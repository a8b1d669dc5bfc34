"""Run a command as a user who installed only some of jaxloss's extras.

The modules a user has after ``pip install 'jaxloss[parity]'`` are those of the closure of
jaxloss's requirements and the extra's, read from ``pyproject.toml`` and the installed
distributions' metadata (:mod:`importlib.metadata`), never a hand-written list. Every other
installed distribution's top-level modules are hidden from the subprocess (and its spawned
workers) by wrapping its meta-path finders: importing one raises ``ModuleNotFoundError``, the
error a user without them would get.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# Installed into the subprocess through PYTHONPATH: Python imports ``sitecustomize`` at start-up,
# in spawned worker processes too.
_SITECUSTOMIZE = '''
import os, sys

_BLOCKED = frozenset(os.environ["JAXLOSS_TEST_BLOCKED"].split(","))


class _Hiding:
    """A meta-path finder that finds nothing of the distributions the simulated install lacks:
    ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` returns None, as
    without them (torch probes optional modules with find_spec)."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [_Hiding(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
'''


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def allowed_distributions(extras: tuple[str, ...]) -> set[str]:
    """Canonical names of the distributions ``pip install 'jaxloss[extras]'`` installs."""
    seen: set[str] = {"jaxloss"}
    todo = [(r, "") for r in _requirements(extras)]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name == "jaxloss":  # "jaxloss[parity,train]": the project's own extras
            todo += [(r, "") for r in _requirements(tuple(req.extras))]
            continue
        if name in seen and not req.extras:
            continue
        seen.add(name)
        try:
            requires = md.requires(req.name) or []
        except md.PackageNotFoundError:
            continue  # not installed here: nothing of it can leak either
        for wanted in ("", *req.extras):
            todo += [(Requirement(r), wanted) for r in requires]
    return seen


def blocked_modules(extras: tuple[str, ...]) -> set[str]:
    """Top-level modules of the installed distributions outside that closure."""
    allowed = allowed_distributions(extras)
    return {
        module
        for module, dists in md.packages_distributions().items()
        if not any(canonicalize_name(d) in allowed for d in dists) and not module.startswith("_")
    }


def run_with_only(extras: tuple[str, ...], args: list[str], tmp_path: Path, timeout: float = 300,
                  also_block: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``python args...`` in ``tmp_path``, with the project first on the path and only ``extras``
    importable (less ``also_block``: an install that lacks them)."""
    site = tmp_path / "_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "JAXLOSS_TEST_BLOCKED": ",".join(sorted(blocked_modules(extras) | set(also_block))),
    }
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, check=False,
                          env=full_env, timeout=timeout)
