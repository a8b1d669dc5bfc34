"""Test-wide settings: float64 on (so float64 cases really run in float64), torch on one
thread per process (the suite runs under pytest-xdist), and JAX's persistent compilation
cache on for the whole session (see tests/_train_cache.py: many tests compile programs whose
XLA text is the same as an earlier test's, a model rebuilt, a step re-traced)."""

import os

import jax
import pytest

from tests._train_cache import enable_compilation_cache

jax.config.update("jax_enable_x64", True)

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the torch-free install test imports no torch
    pass


@pytest.fixture(scope="session", autouse=True)
def _session_compilation_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with enable_compilation_cache(tmp_path_factory) as path:
        yield path


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """Work stealing instead of xdist's default ``load`` (unless ``--dist`` is given).

    ``load`` hands out consecutive chunks that shrink as the run goes, alternating workers, so
    many modules are cut in two and their module fixtures and compiled programs are built on
    both workers. ``worksteal`` gives each worker one contiguous half and, when one runs out,
    moves the tail of the other's queue to it: fewer cuts, and no worker idles at the end.
    """
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    if config.getoption("dist") != "load" or any(a.startswith("--dist") for a in args):
        return None
    from xdist.scheduler import WorkStealingScheduling

    return WorkStealingScheduling(config, log)
