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
    """Whole test files per worker (xdist's ``loadfile``) instead of its default ``load``
    (unless ``--dist`` is given).

    A test file's tests share compiled programs (the loss grids' programs, a model's step) and
    module fixtures, and each worker has its own JAX caches: a file cut in two compiles them on
    both workers. ``load`` cuts many files; work stealing (used before) fewer; ``loadfile`` none.
    Measured on 2 idle cores, the default tier back to back (1,587 tests): work stealing 7 min
    59 s (917 CPU s), ``loadfile`` 7 min 14 s (829 CPU s). The largest file costs about 70 CPU
    seconds, small beside each worker's ~400, so whole files still balance the two workers.
    """
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    if config.getoption("dist") != "load" or any(a.startswith("--dist") for a in args):
        return None
    from xdist.scheduler import LoadFileScheduling

    return LoadFileScheduling(config, log)
