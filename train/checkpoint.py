"""Training checkpoints with orbax: the whole train state, a JSON record of where it stands, and a checksum.

A checkpoint is a folder ``<dir>/<global step>/`` holding two orbax items: ``state`` (a
pytree of arrays: parameters, BatchNorm statistics, optimizer state, the epoch's running
metric sums) and ``meta`` (JSON: epoch, step within the epoch, the config, the metric
history, ``arrays_checksum``: the SHA-256 of the state's arrays, and ``checksum``: the
SHA-256 of the whole record, arrays' checksum included). orbax writes each checkpoint
into a temporary folder and renames it into place when complete, so a crash mid-save
never leaves a half checkpoint that looks valid.

A run is never lost to a damaged checkpoint:

* every save is read back and verified before it is reported and before older
  checkpoints are pruned; a step folder that already exists is kept only if it reads back
  intact at the same position, and replaced otherwise;
* pruning keeps the ``max_to_keep`` newest *intact* checkpoints: a damaged one never
  takes an intact one's place (it is left for :meth:`Checkpointer.restore` to report);
* :meth:`Checkpointer.restore` verifies ``meta`` (its keys, types, folder and checksum)
  and the arrays' checksum; a damaged, truncated or incomplete newest checkpoint is
  reported (naming its folder) and the newest intact one is restored instead; when none
  is intact, :class:`CheckpointError` lists what is wrong with each;
* one writer per folder: the writing process holds an OS lock (``flock``) on
  ``<dir>/.lock`` while the :class:`Checkpointer` is open (the OS releases it when the
  process dies); a second writer gets :class:`CheckpointBusy` before orbax starts (whose
  start-up would remove the first writer's temporary folders).

Restoring takes an *abstract* target (the freshly initialised state, or its
``jax.ShapeDtypeStruct`` s with shardings), so arrays come back with the layout the
current run uses: replicated over the current mesh, whatever mesh wrote them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointBusy", "CheckpointError", "Checkpointer", "abstract_like", "record_checksum", "state_checksum"]

# meta key -> the JSON types it may hold
_META_TYPES: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "step": (int,),
    "global_step": (int,),
    "config": (dict,),
    "history": (list,),
    "arrays_checksum": (str,),
    "checksum": (str,),
}
LOCK_FILE = ".lock"


class CheckpointError(RuntimeError):
    """A checkpoint (or every checkpoint of a folder) cannot be used; the message names the folder.

    >>> import tempfile
    >>> from jaxloss.train.checkpoint import CheckpointError, Checkpointer
    >>> with Checkpointer(tempfile.mkdtemp()) as ckpt:
    ...     try:
    ...         ckpt.restore({})
    ...     except CheckpointError as e:
    ...         print(str(e).split(" in ")[0])
    no checkpoint
    """


class CheckpointBusy(CheckpointError):
    """Another process is writing checkpoints into the folder (it holds the folder's lock).

    >>> import tempfile
    >>> from jaxloss.train.checkpoint import CheckpointBusy, Checkpointer
    >>> folder = tempfile.mkdtemp()
    >>> with Checkpointer(folder) as first:
    ...     try:
    ...         Checkpointer(folder)
    ...     except CheckpointBusy as e:
    ...         print(str(e).split(" (")[0].endswith("is in use by another run"))
    True
    """


def _lock_folder(directory: Path) -> int:
    """Take the folder's writer lock (an ``flock`` on ``<dir>/.lock``); return its file descriptor.

    The OS drops the lock when the descriptor is closed or the process dies, so a crashed
    run never leaves the folder locked. Raises :class:`CheckpointBusy` naming the holder.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise CheckpointBusy(
            f"{directory} is in use by another run (process {holder}): "
            "wait for it to finish, or choose another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} on {os.uname().nodename}".encode(), 0)
    return fd


def abstract_like(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` (with sharding) for every array leaf of ``tree``.

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.checkpoint import abstract_like
    >>> abstract_like({"w": jnp.zeros((2, 3))})["w"].shape
    (2, 3)
    """

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, tree)


def _host(x: Any) -> np.ndarray:
    """A leaf's full value on this host (a replicated global array from its local copy)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def state_checksum(state: Any) -> str:
    """SHA-256 over every leaf of ``state``: its tree path, dtype, shape and bytes.

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.checkpoint import state_checksum
    >>> a = state_checksum({"w": jnp.zeros(3)})
    >>> a == state_checksum({"w": jnp.zeros(3)}), a == state_checksum({"w": jnp.ones(3)}), len(a)
    (True, False, 64)
    """
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        arr = np.ascontiguousarray(_host(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def record_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's record: every key of ``meta`` but ``checksum`` itself, as canonical JSON.

    It covers ``arrays_checksum``, so one checksum vouches for the arrays and the record
    (epoch, step, config, history) together.

    >>> from jaxloss.train.checkpoint import record_checksum
    >>> a = record_checksum({"epoch": 3, "arrays_checksum": "ab"})
    >>> a == record_checksum({"arrays_checksum": "ab", "epoch": 3, "checksum": "x"}), a == record_checksum({"epoch": 2, "arrays_checksum": "ab"})
    (True, False)
    """
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _validate_meta(meta: Any, where: Path) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: meta is not a JSON object")
    for key, types in _META_TYPES.items():
        if key not in meta:
            raise CheckpointError(f"{where}: meta lacks {key!r}")
        value = meta[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise CheckpointError(f"{where}: meta {key!r} is {value!r}, not a {types[0].__name__}")
    for key in ("epoch", "step", "global_step"):
        if meta[key] < 0:
            raise CheckpointError(f"{where}: meta {key!r} is negative ({meta[key]})")
    if meta["checksum"] != record_checksum(meta):
        raise CheckpointError(f"{where}: the record (meta) does not match its checksum (edited or damaged)")
    if where.name != str(meta["global_step"]):
        raise CheckpointError(f"{where}: meta 'global_step' is {meta['global_step']}, not the folder's step")
    return meta


def _describe(e: BaseException) -> str:
    """The first line of an orbax / tensorstore error, without its dump of the tensorstore spec."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0][:300] if lines else ""
    return f"{type(e).__name__}: {text}".rstrip(": ")


def _is_failed_restore_cleanup(u: Any) -> bool:
    """Whether an unraisable exception is the debris of a failed orbax restore, and nothing else.

    When one array of a restore fails, orbax's ``asyncio.gather`` raises at once and
    ``asyncio.run`` closes its loop while tensorstore still reads the other arrays; each
    read that finishes later calls ``loop.call_soon_threadsafe`` on the closed loop
    (``RuntimeError: Event loop is closed``, reported with no object), and the abandoned
    per-array coroutines are closed at garbage collection. Both are reported through
    ``sys.unraisablehook`` as tracebacks (dozens for one damaged checkpoint) though
    nothing is wrong beyond the damage the restore already reported.
    """
    if u.object is None and isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed":
        return any(frame.name == "call_soon_threadsafe" for frame in traceback.extract_tb(u.exc_traceback))
    code = getattr(u.object, "cr_code", None)
    return code is not None and code.co_name == "_read_array_index_and_device_put" and "orbax" in code.co_filename


class _FailedRestoreTaskFilter(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for the per-array read tasks of a
    failed orbax restore (the same debris as above, when a task is collected with its error:
    the error was already reported by the restore); every other asyncio record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith(("Task exception was never retrieved", "Future exception was never retrieved")):
            return True
        frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info and record.exc_info[2] else []
        names = {f.name for f in frames if "orbax" in f.filename} | {n for n in _READ_TASKS if n in text}
        return not (names & set(_READ_TASKS))


_READ_TASKS = ("async_deserialize", "_read_array_index_and_device_put")


def _drop_failed_restore_cleanup() -> None:
    """From now on, hand every unraisable exception but a failed restore's debris to the hook in place.

    Only that debris is dropped (and asyncio's never-retrieved log record of the same tasks);
    every other unraisable exception and log record is reported as before.
    """
    hook = sys.unraisablehook
    if getattr(hook, "drops_failed_restore_cleanup", False):
        return
    logging.getLogger("asyncio").addFilter(_FailedRestoreTaskFilter())

    def unraisable(u: Any) -> None:
        if not _is_failed_restore_cleanup(u):
            hook(u)

    unraisable.drops_failed_restore_cleanup = True  # type: ignore[attr-defined]
    sys.unraisablehook = unraisable


class Checkpointer:
    """Synchronous, atomic, verified orbax checkpoints of ``(state pytree, meta dict)`` keyed by step.

    The ``max_to_keep`` newest intact checkpoints are kept (``None``: all). Every process of
    a multi-host run must call :meth:`save` / :meth:`restore` (orbax coordinates them); only
    the writing one takes the folder's lock (``lock``, default: process 0). Close it (or
    use it as a context manager) to release the lock.

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxloss.train.checkpoint import Checkpointer
    >>> with Checkpointer(tempfile.mkdtemp()) as ckpt:
    ...     ckpt.save(3, {"w": jnp.arange(3.0)}, {"epoch": 1, "step": 0, "global_step": 3, "config": {}, "history": []})
    ...     state, meta = ckpt.restore({"w": jnp.zeros(3)})
    >>> state["w"].tolist(), meta["global_step"]
    ([0.0, 1.0, 2.0], 3)
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_to_keep: int | None = 2, lock: bool | None = None
    ) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.max_to_keep = max_to_keep
        # before orbax: its start-up removes temporary folders, another writer's included
        self._lock_fd = _lock_folder(self.directory) if (jax.process_index() == 0 if lock is None else lock) else None
        self._intact: set[int] = set()  # steps read back intact by this Checkpointer
        _drop_failed_restore_cleanup()  # before any restore: a failed one's debris can come at once
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # pruning is ours: only after the new checkpoint verified
            enable_async_checkpointing=False,  # a save (e.g. on Ctrl-C) is complete when it returns
            create=True,
        )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
        except BaseException:
            self._unlock()
            raise

    def path(self, step: int) -> Path:
        """The folder of checkpoint ``step``."""
        return self.directory / str(step)

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Write checkpoint ``step`` (``meta`` with its checksums), read it back, then prune.

        A step folder that already exists is kept if it reads back intact at the same
        position (epoch and step), and replaced otherwise (damaged, or another position).
        Raises :class:`CheckpointError` when the written checkpoint does not read back
        intact (nothing older is deleted then); a return means it is on disk and verified.
        """
        meta = json.loads(json.dumps({**meta, "arrays_checksum": state_checksum(state)}))  # as it reads back
        meta["checksum"] = record_checksum(meta)
        if step in self.all_steps():
            if self._same_position(step, state, meta):
                self._prune(state)
                return
            self._delete(step)
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()
        self._read(step, state)  # raises if what is on disk is not what was meant
        self._prune(state)

    def _same_position(self, step: int, state: Any, meta: dict[str, Any]) -> bool:
        """Whether checkpoint ``step`` reads back intact and holds the position ``meta`` describes."""
        try:
            _, there = self._read(step, state)
        except CheckpointError:
            return False
        return (there["epoch"], there["step"]) == (meta["epoch"], meta["step"])

    def _is_intact(self, step: int, target: Any) -> bool:
        """Whether ``step`` reads back intact (read once per Checkpointer: pruning stays cheap)."""
        if step in self._intact:
            return True
        try:
            self._read(step, target)
        except CheckpointError:
            return False
        return True

    def _prune(self, target: Any) -> None:
        """Delete the intact checkpoints older than the ``max_to_keep`` newest intact ones."""
        if self.max_to_keep is None:
            return
        kept = 0
        for step in reversed(self.all_steps()):
            if not self._is_intact(step, target):
                continue  # damaged: never counts, never displaces an intact one
            kept += 1
            if kept > self.max_to_keep:
                self._delete(step)

    def _delete(self, step: int) -> None:
        self._manager.delete(step)
        self._intact.discard(step)

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        """The steps of the finished checkpoints in the folder, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def delete_all(self) -> None:
        """Remove every checkpoint of the folder (a fresh run with ``--overwrite``)."""
        for step in self.all_steps():
            self._delete(step)
        self._manager.reload()

    def meta(self, step: int) -> dict[str, Any]:
        """The validated JSON record of checkpoint ``step`` (checksum included), without reading the arrays."""
        where = self.path(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds for a damaged folder
            raise CheckpointError(f"{where}: meta is unreadable ({_describe(e)})") from None
        return _validate_meta(restored["meta"], where)

    def _read(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
        where = self.path(step)
        meta = self.meta(step)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(target)))
            )
        except Exception as e:  # noqa: BLE001 - truncated files, missing arrays, another tree structure
            self._intact.discard(step)
            raise CheckpointError(f"{where}: the arrays are unreadable ({_describe(e)})") from None
        state = restored["state"]
        if state_checksum(state) != meta["arrays_checksum"]:
            self._intact.discard(step)
            raise CheckpointError(f"{where}: the arrays do not match their checksum (damaged bytes)")
        self._intact.add(step)
        return state, meta

    def restore(
        self,
        target: Any,
        step: int | None = None,
        *,
        warn: Callable[[str], None] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """(state, meta) of checkpoint ``step``, or of the newest intact one, laid out like ``target``.

        ``target`` is a state of the same structure (arrays or ``ShapeDtypeStruct`` s); its
        shardings say where the restored arrays go. ``check(meta)`` returns what makes an
        intact checkpoint unusable to the caller (None: nothing); such a checkpoint counts
        as damaged. Without ``step``, a damaged newer checkpoint is skipped with a message
        to ``warn``. Raises :class:`CheckpointError` (naming each folder and what is wrong)
        when no candidate is intact.
        """
        steps = [step] if step is not None else self.all_steps()[::-1]
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        problems = []
        for s in steps:
            try:
                state, meta = self._read(s, target)
                problem = check(meta) if check is not None else None
                if problem:
                    raise CheckpointError(f"{self.path(s)}: {problem}")
            except CheckpointError as e:
                if step is not None:  # asked for by number: that one or a clear error
                    raise
                problems.append(str(e))
                continue
            if problems and warn is not None:
                warn("skipped damaged checkpoint(s):\n  " + "\n  ".join(problems) + f"\nrestored {self.path(s)}")
            return state, meta
        raise CheckpointError("no intact checkpoint:\n  " + "\n  ".join(problems))

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def close(self) -> None:
        try:
            self._manager.close()
        finally:
            self._unlock()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
