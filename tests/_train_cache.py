"""A persistent JAX compilation cache shared by every test (workers and subprocesses).

Tests compile the same programs many times: the seed CNN's initialiser, the same step in
several runs, a model rebuilt for each planted bug, a loss's gradient re-traced; XLA's CPU
compiler takes from tens of milliseconds to seconds for each, and a program whose XLA text
was compiled before is read back instead. tests/conftest.py turns the cache on for the whole
session (measured on 2 busy cores: test_parity_models 86 -> 58 CPU s, a regression/binary
loss subset 98 -> 81 CPU s); a subprocess gets it through :func:`subprocess_env`. The cache
lives in the pytest session's temporary folder, so every run of the suite starts cold and
nothing leaks into other sessions."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_OPTIONS = {
    "jax_compilation_cache_dir": None,  # filled in
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session folder, shared by the workers
    path = base / "jax-compilation-cache"
    path.mkdir(exist_ok=True)
    return path


def subprocess_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables that give a child process the same cache."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(cache_dir(tmp_path_factory)),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@contextlib.contextmanager
def enable_compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Turn the cache on in this process (every worker shares the session's folder), and back off after."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    path = cache_dir(tmp_path_factory)
    old = {k: jax.config.values[k] for k in _OPTIONS}
    for k, v in {**_OPTIONS, "jax_compilation_cache_dir": str(path)}.items():
        jax.config.update(k, v)
    cc.reset_cache()  # JAX opens its cache once per process: the new folder needs a reset
    try:
        yield path
    finally:
        for k, v in old.items():
            jax.config.update(k, v)
        cc.reset_cache()


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's cache folder (tests/conftest.py turns the cache on for every test; modules
    that name this fixture were written before that and keep working)."""
    return cache_dir(tmp_path_factory)
