"""Datasets for ``python -m jaxloss.train``: CIFAR-10 from disk (or downloaded) and an offline digits set.

CIFAR-10 is read from either of the dataset authors' two layouts, as torchvision and the
C tools leave them on disk:

* ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
  ``batches.meta``, each a (Python 2) pickled dict with ``b'data'``, a uint8 array of shape
  (10000, 3072) in CHW order, and ``b'labels'``, a list of ints. Every file is md5-checked
  against the official checksums (the ones torchvision lists) before it is read, and read
  with a restricted unpickler (:func:`safe_pickle_load`) that can build only containers,
  strings, numbers and uint8 numpy arrays: a hostile or corrupted file raises
  :class:`UnsafePickleError` / :class:`DatasetError` and never runs code.
* ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``:
  10000 records of 1 label byte + 3072 image bytes each (no pickle involved). The authors
  publish an md5 for the archive only, so these files are checked for size and label range;
  a download checks the archive's md5.

``download_cifar10`` fetches the official archive with a progress bar, checks its md5,
writes it under a temporary name and renames it into place (``os.replace``), then extracts
into a temporary folder that is renamed into place once every file verifies. Offline, it
raises :class:`DownloadError` saying what to do instead.

``load_digits32`` needs no network: scikit-learn's bundled 8x8 handwritten digits (1797
images), upscaled x3 (nearest) to 24x24, zero-padded to 32x32 and repeated over 3 channels,
with a fixed stratified 80/20 train/test split.

All loaders return a :class:`Dataset` of NHWC uint8 images and int32 labels; normalisation
and augmentation happen on the device (:mod:`jaxloss.train.augment`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from jaxloss.train.progress import Progress

__all__ = [
    "CIFAR10_BIN",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_PY",
    "CIFAR10_STD",
    "ChecksumError",
    "Dataset",
    "DatasetError",
    "DatasetNotFound",
    "DownloadError",
    "UnsafePickleError",
    "download_cifar10",
    "load_cifar10",
    "load_dataset",
    "load_digits32",
    "md5sum",
    "safe_pickle_load",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean / std of the CIFAR-10 training images in [0, 1] (the usual torchvision values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES  # binary version: label byte + CHW image


@dataclasses.dataclass(frozen=True)
class _Layout:
    folder: str
    url: str
    archive: str
    archive_md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    md5: Mapping[str, str]  # per-file official md5 (empty where the authors publish none)


CIFAR10_PY = _Layout(
    folder="cifar-10-batches-py",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
)

CIFAR10_BIN = _Layout(
    folder="cifar-10-batches-bin",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    archive="cifar-10-binary.tar.gz",
    archive_md5="c32a1d4ab5d03f1284b67883e8d87530",
    train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test=("test_batch.bin",),
    meta="batches.meta.txt",
    md5={},
)

_LAYOUTS = {"py": CIFAR10_PY, "bin": CIFAR10_BIN}


class DatasetError(RuntimeError):
    """A data set file is missing, truncated or malformed.

    >>> from jaxloss.train.data import ChecksumError, DatasetError
    >>> issubclass(ChecksumError, DatasetError)
    True
    """


class DatasetNotFound(DatasetError):
    """The data set's files are not where they were looked for (a bad ``--data-dir``: bad input).

    >>> from jaxloss.train.data import DatasetError, DatasetNotFound
    >>> issubclass(DatasetNotFound, DatasetError)
    True
    """


class ChecksumError(DatasetError):
    """A file's md5 differs from the expected (official) one.

    >>> from jaxloss.train.data import ChecksumError
    >>> str(ChecksumError("data_batch_1: md5 differs"))
    'data_batch_1: md5 differs'
    """


class UnsafePickleError(DatasetError, pickle.UnpicklingError):
    """A pickle asked for a global the restricted unpickler does not allow.

    >>> import pickle
    >>> from jaxloss.train.data import UnsafePickleError
    >>> issubclass(UnsafePickleError, pickle.UnpicklingError)
    True
    """


class DownloadError(DatasetError):
    """The archive could not be downloaded (offline, HTTP error, ...).

    >>> from jaxloss.train.data import DatasetError, DownloadError
    >>> issubclass(DownloadError, DatasetError)
    True
    """


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images as uint8 NHWC (N, 32, 32, 3), labels as int32 (N,).

    >>> import numpy as np
    >>> from jaxloss.train.data import Dataset
    >>> x, y = np.zeros((4, 32, 32, 3), np.uint8), np.arange(4, dtype=np.int32)
    >>> Dataset("mine", x, y, x, y, ("a", "b", "c", "d"), (0.5,) * 3, (0.25,) * 3).num_classes
    4
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, float, float]  # per channel, in [0, 1] units, for normalisation
    std: tuple[float, float, float]
    hflip: bool = True  # whether a horizontal flip keeps the label (not for digits)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- checksums
def md5sum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks.

    >>> import pathlib, tempfile
    >>> from jaxloss.train.data import md5sum
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "f"; _ = p.write_bytes(b"")
    >>> md5sum(p)
    'd41d8cd98f00b204e9800998ecf8427e'
    """
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _verify_md5(path: Path, expected: str | None, got: str | None = None) -> None:
    if expected is None:
        return
    got = md5sum(path) if got is None else got
    if got != expected:
        raise ChecksumError(
            f"{path}: md5 {got} differs from the expected {expected}; the file is corrupt, truncated or "
            "not the official CIFAR-10 file. Delete it and download again (--download)."
        )


# --------------------------------------------------------------------------- restricted unpickling
def _codecs_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes ``bytes`` in protocol <= 2 pickles as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError("pickle called _codecs.encode with unexpected arguments")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Protocol <= 2 pickles write b"" as a call of bytes() with no arguments (an empty batch's data).
    if args:
        raise UnsafePickleError("pickle called bytes() with arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray

    return {
        # numpy array reconstruction as written by numpy 1.x (the official files) and 2.x
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed for numpy arrays; anything else raises."""

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global {module}.{name} from a pickle; a CIFAR-10 batch "
                "holds only a dict of a uint8 array and lists. The file is corrupt or hostile."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refusing a persistent id in a pickle")


def safe_pickle_load(path: str | os.PathLike[str]) -> Any:
    """Load a pickle that may only hold builtin containers, bytes/str/numbers and numpy arrays.

    Object arrays are refused too (their elements would be arbitrary objects). Raises
    :class:`UnsafePickleError` for a disallowed global and :class:`DatasetError` for a
    truncated or malformed file; never imports or calls anything else.

    >>> import os, pathlib, pickle, tempfile
    >>> from jaxloss.train.data import UnsafePickleError, safe_pickle_load
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "batch"
    >>> _ = p.write_bytes(pickle.dumps({b"labels": [1, 2]}, protocol=2))
    >>> safe_pickle_load(p)
    {b'labels': [1, 2]}
    >>> _ = p.write_bytes(pickle.dumps(os.getcwd, protocol=2))
    >>> try:
    ...     safe_pickle_load(p)
    ... except UnsafePickleError as e:
    ...     print("refused")
    refused
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            obj = _RestrictedUnpickler(f, str(path)).load()
        except UnsafePickleError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            IndexError,
            KeyError,
            AttributeError,
            MemoryError,
            OverflowError,
            UnicodeDecodeError,
        ) as e:
            raise DatasetError(f"{path}: truncated or malformed pickle ({type(e).__name__}: {e})") from None
    _refuse_object_arrays(obj, path)
    return obj


def _refuse_object_arrays(obj: Any, path: Path) -> None:
    stack, seen = [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:  # a pickle may reference a container from inside itself
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            if o.dtype.hasobject:
                raise UnsafePickleError(f"{path}: refusing a numpy object array in a pickle")
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)


# --------------------------------------------------------------------------- CIFAR-10 readers
def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = safe_pickle_load(path)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DatasetError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = d[b"data"], d[b"labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != IMAGE_BYTES
    ):
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{path}: b'data' must be a uint8 array of shape (N, {IMAGE_BYTES}), got {shape}")
    return _to_nhwc(data), _check_labels(_int_labels(labels, data.shape[0], path), path)


def _int_labels(labels: Any, n: int, path: Path) -> np.ndarray:
    """``labels`` as int64 if it is a list/tuple of ``n`` ints or a 1-D integer array; else DatasetError."""
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
        values = labels
    elif isinstance(labels, (list, tuple)):
        ok = all(type(v) is int for v in labels)  # not bool, float, str, bytes or a nested list
        if ok and labels and not all(0 <= v < len(CIFAR10_CLASSES) for v in labels):  # huge ints too
            raise DatasetError(f"{path}: labels outside 0..9 ({min(labels)}..{max(labels)})")
        values = np.asarray(labels, dtype=np.int64) if ok else None
    else:
        ok, values = False, None
    if not ok or len(labels) != n:
        got = type(labels).__name__
        if isinstance(labels, np.ndarray):
            got = f"array of {labels.dtype} shape {labels.shape}"
        elif isinstance(labels, (list, tuple)):
            kinds = sorted({type(v).__name__ for v in labels})
            got = f"{type(labels).__name__} of {len(labels)} {'/'.join(kinds) or 'values'}"
        raise DatasetError(
            f"{path}: b'labels' must be a list of {n} ints in 0..{len(CIFAR10_CLASSES) - 1}, got {got}"
        )
    return np.asarray(values, dtype=np.int64)


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DatasetError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records "
            "(1 label byte + 3072 pixels); the file is truncated or not a CIFAR-10 binary batch"
        )
    rec = raw.reshape(-1, RECORD_BYTES)
    return _to_nhwc(rec[:, 1:]), _check_labels(rec[:, 0].astype(np.int64), path)


def _to_nhwc(flat: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _check_labels(y: np.ndarray, path: Path) -> np.ndarray:
    if y.size and (y.min() < 0 or y.max() >= len(CIFAR10_CLASSES)):
        raise DatasetError(f"{path}: labels outside 0..9 ({int(y.min())}..{int(y.max())})")
    return y.astype(np.int32)


def _read_classes(
    folder: Path, layout: _Layout, checksums: Mapping[str, str] | None, explicit: bool = False
) -> tuple[str, ...]:
    path = folder / layout.meta
    if not path.exists():
        return CIFAR10_CLASSES
    if checksums is not None:
        if explicit and layout.meta not in checksums:
            raise ChecksumError(f"{path}: the checksums given have no md5 for {layout.meta}")
        _verify_md5(path, checksums.get(layout.meta))
    if layout is CIFAR10_BIN:
        names = [
            s.strip() for s in path.read_text(encoding="ascii", errors="replace").splitlines() if s.strip()
        ]
    else:
        meta = safe_pickle_load(path)
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if not isinstance(names, list):
            raise DatasetError(f"{path}: expected a dict with b'label_names'")
        names = [n.decode("ascii", "replace") if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != len(CIFAR10_CLASSES):
        raise DatasetError(f"{path}: {len(names)} class names, expected {len(CIFAR10_CLASSES)}")
    return tuple(names)


def _find_folder(root: Path, fmt: str) -> tuple[Path, _Layout] | None:
    fmts = ("py", "bin") if fmt == "auto" else (fmt,)
    for f in fmts:
        layout = _LAYOUTS[f]
        for folder in (root / layout.folder, root):
            if all((folder / name).is_file() for name in layout.train + layout.test):
                return folder, layout
    return None


def load_cifar10(
    root: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    checksums: Mapping[str, str] | bool = True,
    download: bool = False,
    progress: bool = True,
) -> Dataset:
    """CIFAR-10 from ``root`` (holding ``cifar-10-batches-py`` or ``cifar-10-batches-bin``, or being one).

    ``fmt``: ``'py'``, ``'bin'`` or ``'auto'`` (python layout first). ``checksums``: ``True`` checks
    the official md5s (python layout); a mapping ``{file name: md5}`` checks those instead (for test
    data); ``False`` checks nothing. ``download``: fetch the official archive when the files are
    missing (see :func:`download_cifar10`).

    >>> import tempfile
    >>> from jaxloss.train.data import DatasetError, load_cifar10
    >>> try:
    ...     load_cifar10(tempfile.mkdtemp())
    ... except DatasetError as e:
    ...     print(str(e).split(" under ")[0])
    CIFAR-10 not found
    """
    if fmt not in ("auto", "py", "bin"):
        raise ValueError(f"fmt must be 'auto', 'py' or 'bin', got {fmt!r}")
    root = Path(root).expanduser()
    found = _find_folder(root, fmt)
    if found is None:
        if not download:
            raise DatasetNotFound(
                f"CIFAR-10 not found under {root} (looked for {CIFAR10_PY.folder}/ and {CIFAR10_BIN.folder}/ "
                "with data_batch_1..5 and test_batch). Pass --download to fetch it, or --dataset digits to "
                "train offline."
            )
        download_cifar10(root, fmt="bin" if fmt == "bin" else "py", progress=progress)
        found = _find_folder(root, fmt)
        assert found is not None
    folder, layout = found
    sums: Mapping[str, str] | None
    if checksums is True:
        sums = layout.md5
    elif checksums is False:
        sums = None
    else:
        sums = checksums
    read = _read_py_batch if layout is CIFAR10_PY else _read_bin_batch

    explicit = not isinstance(checksums, bool)  # a mapping given by the caller must cover every file
    seen: dict[str, str] = {}  # md5 -> file: the same batch twice (e.g. test == train) is refused

    def read_split(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            path = folder / name
            if explicit and name not in sums:  # type: ignore[operator]
                raise ChecksumError(f"{path}: the checksums given have no md5 for {name}")
            digest = md5sum(path)
            if sums is not None:
                _verify_md5(path, sums.get(name), digest)
            if digest in seen:
                raise DatasetError(f"{path} is identical to {folder / seen[digest]}: every batch file must differ")
            seen[digest] = name
            x, y = read(path)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = read_split(layout.train)
    x_test, y_test = read_split(layout.test)
    classes = _read_classes(folder, layout, sums, explicit)
    return Dataset(
        "cifar10", x_train, y_train, x_test, y_test, classes, CIFAR10_MEAN, CIFAR10_STD, hflip=True
    )


# --------------------------------------------------------------------------- download
def _fetch(url: str, dest: Path, md5: str, *, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically (temp file, md5 check, os.replace)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise DownloadError(
                    f"could not download {url}: {reason}. This machine may be offline: fetch {dest.name} "
                    f"(md5 {md5}) by other means and put it in {dest.parent} (it is then used as it is), "
                    "or train on --dataset digits, which needs no download."
                ) from None
            with resp:
                total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
                bar = Progress(int(total) if total else None, f"downloading {dest.name}", bytes=True,
                               enabled=progress)  # fmt: skip
                try:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
                        bar.update(advance=len(block))
                except OSError as e:
                    raise DownloadError(f"download of {url} broke off: {e}") from None
                finally:
                    bar.close()
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != md5:
            raise ChecksumError(f"downloaded {url}: md5 {h.hexdigest()} differs from the official {md5}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _safe_extract(archive: Path, into: Path, layout: _Layout) -> None:
    wanted = {f"{layout.folder}/{n}" for n in layout.train + layout.test + (layout.meta,)}
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for m in tar.getmembers():
            name = m.name.lstrip("./")
            if name in wanted:
                if not m.isfile():
                    raise DatasetError(f"{archive}: {m.name} is not a regular file")
                members.append(m)
        missing = wanted - {m.name.lstrip("./") for m in members} - {f"{layout.folder}/{layout.meta}"}
        if missing:
            raise DatasetError(f"{archive}: missing {sorted(missing)}")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(into, members=members, filter="data")
        else:  # members are already limited to known regular-file names
            tar.extractall(into, members=members)


def download_cifar10(
    root: str | os.PathLike[str],
    *,
    fmt: str = "py",
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    file_md5: Mapping[str, str] | None = None,
) -> Path:
    """Download and extract the official CIFAR-10 archive into ``root``; return the batches folder.

    An archive already in ``root`` with the right md5 is used without downloading. The archive is
    written to a temporary file and renamed into place once its md5 matches; it is extracted into
    a temporary folder that replaces ``root/<folder>`` only after every batch file verifies
    (per-file official md5s for the python layout). ``url`` / ``md5`` / ``file_md5`` override the
    official values (tests). Raises :class:`DownloadError` when offline.

    >>> import tempfile, urllib.request
    >>> from jaxloss.train.data import DownloadError, download_cifar10
    >>> try:  # an address that cannot answer: the error says what to do instead
    ...     download_cifar10(tempfile.mkdtemp(), url="http://127.0.0.1:9/none.tar.gz", progress=False, timeout=1)
    ... except DownloadError as e:
    ...     print("--dataset digits" in str(e))
    True
    """
    layout = _LAYOUTS[fmt]
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    url = url or layout.url
    md5 = md5 or layout.archive_md5
    sums = layout.md5 if file_md5 is None else file_md5
    archive = root / layout.archive
    if not (archive.is_file() and md5sum(archive) == md5):
        _fetch(url, archive, md5, progress=progress, timeout=timeout)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        _safe_extract(archive, tmp, layout)
        folder = tmp / layout.folder
        for name in layout.train + layout.test + (layout.meta,):
            if (folder / name).exists():
                _verify_md5(folder / name, sums.get(name))
        final = root / layout.folder
        old = None
        if final.exists():  # a previous, incomplete or corrupt copy: move it aside, then drop it
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=root))
            os.replace(final, old / layout.folder)
        os.replace(folder, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / layout.folder


# --------------------------------------------------------------------------- digits (offline)
def load_digits32(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits as 32x32x3 uint8 images, deterministic stratified split.

    >>> from jaxloss.train.data import load_digits32
    >>> ds = load_digits32()
    >>> ds.x_train.shape[1:], ds.x_train.dtype, ds.num_classes
    ((32, 32, 3), dtype('uint8'), 10)
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    img = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(
        np.uint8
    )  # (1797, 8, 8), 0..16 -> 0..255
    img = img.repeat(3, axis=1).repeat(3, axis=2)  # nearest-neighbour x3 -> 24x24
    img = np.pad(img, ((0, 0), (4, 4), (4, 4)))  # -> 32x32, digit centred
    img = np.ascontiguousarray(np.repeat(img[..., None], 3, axis=-1))  # grey -> 3 channels
    y = d.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):  # stratified: the same fraction of each class in the test split
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_idx.append(idx[: int(round(test_fraction * idx.size))])
    test = np.zeros(y.size, dtype=bool)
    test[np.concatenate(test_idx)] = True
    x_train, y_train, x_test, y_test = img[~test], y[~test], img[test], y[test]
    m = float(x_train.mean() / 255.0)
    s = float(x_train.std() / 255.0)
    return Dataset(
        "digits",
        x_train,
        y_train,
        x_test,
        y_test,
        tuple(str(i) for i in range(10)),
        (m, m, m),
        (s, s, s),
        hflip=False,
    )


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] = "data", *, download: bool = False, progress: bool = True
) -> Dataset:
    """``'cifar10'`` (from ``data_dir``) or ``'digits'`` (offline).

    >>> from jaxloss.train.data import load_dataset
    >>> load_dataset("digits").name
    'digits'
    """
    if name == "cifar10":
        return load_cifar10(data_dir, download=download, progress=progress)
    if name == "digits":
        return load_digits32()
    raise ValueError(f"unknown dataset {name!r}; choose 'cifar10' or 'digits'")
