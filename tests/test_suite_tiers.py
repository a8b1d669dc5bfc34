"""The suite's set-up. Two tiers: the default run leaves out ``@pytest.mark.slow``, and ``.ci/run`` runs the
README's test command verbatim first, then the slow tier, failing when either fails.

``.ci/run`` is run for real with stand-ins for ``python3`` (the venv step) and the venv's
``pip`` and ``python``: each records its arguments, and the stand-in ``python`` exits with the
status a test gives each tier. Every test runs with the session's persistent compilation
cache, and xdist schedules by work stealing (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e ".[all]" '
    "&& .venv/bin/python -m pytest -n 2 -q"
)

# a stand-in executable: logs its arguments, exits with $STATUS_<tier> for a pytest run
STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in
  *"-m slow"*) exit "${STATUS_SLOW:-0}" ;;
  *pytest*) exit "${STATUS_DEFAULT:-0}" ;;
esac
exit 0
"""


def _stand_in(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STAND_IN)
    path.chmod(0o755)


def _run_ci(tmp_path: Path, default: int, slow: int) -> tuple[int, list[str]]:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    for name in (".venv/bin/python", ".venv/bin/pip", "bin/python3"):
        _stand_in((repo if name.startswith(".venv") else tmp_path) / name)
    calls = tmp_path / "calls.txt"
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "STATUS_DEFAULT": str(default),
        "STATUS_SLOW": str(slow),
    }
    proc = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    return proc.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_ci_runs_the_readme_command_verbatim_then_the_slow_tier(tmp_path):
    assert README_COMMAND in (ROOT / "README.md").read_text()
    assert README_COMMAND in (ROOT / ".ci" / "run").read_text()
    rc, calls = _run_ci(tmp_path, default=0, slow=0)
    assert rc == 0
    assert calls == [
        "python3 -m venv .venv",
        'pip install -q -c constraints.txt -e .[all]',
        "python -m pytest -n 2 -q",
        "python -m pytest -n 2 -q -m slow",
    ]


@pytest.mark.parametrize(
    "default,slow,expected",
    [
        (0, 5, 0),  # 5: no test marked slow (none collected) is not a failure
        (0, 1, 1),  # a failure in the slow tier fails CI
        (0, 2, 2),  # so does a usage error
        (1, 0, 1),  # the default tier's failure stops CI before the slow tier
    ],
)
def test_ci_exit_status(tmp_path, default, slow, expected):
    rc, calls = _run_ci(tmp_path, default=default, slow=slow)
    assert rc == expected
    assert any("-m slow" in c for c in calls) == (default == 0)


def test_the_default_run_deselects_the_slow_tier(pytestconfig):
    addopts = pytestconfig.getini("addopts")
    assert [addopts[i : i + 2] for i in range(len(addopts) - 1)].count(["-m", "not slow"]) == 1
    assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))


def test_every_test_runs_with_the_sessions_compilation_cache(tmp_path_factory):
    import jax

    from tests._train_cache import cache_dir

    assert jax.config.jax_compilation_cache_dir == str(cache_dir(tmp_path_factory))
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0


def test_xdist_schedules_by_work_stealing_unless_dist_is_given(pytestconfig, monkeypatch):
    pytest.importorskip("xdist")
    from xdist.scheduler import WorkStealingScheduling

    from tests.conftest import pytest_xdist_make_scheduler

    monkeypatch.setattr(pytestconfig.option, "tx", ["2*popen"], raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    cases = [
        ("load", ("-n", "2"), True),  # xdist's default: replaced
        ("load", ("-n", "2", "--dist", "load"), False),  # asked for: kept
        ("load", ("-n", "2", "--dist=load"), False),
        ("loadfile", ("-n", "2"), False),
    ]
    for dist, args, stealing in cases:
        monkeypatch.setattr(pytestconfig.option, "dist", dist, raising=False)
        params = dataclasses.replace(pytestconfig.invocation_params, args=args)
        monkeypatch.setattr(pytestconfig, "invocation_params", params)
        scheduler = pytest_xdist_make_scheduler(pytestconfig, None)
        assert isinstance(scheduler, WorkStealingScheduling) == stealing, (dist, args)
        assert stealing or scheduler is None
