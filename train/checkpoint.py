"""Training checkpoints with orbax: the whole train state, a JSON record of where it stands, and a checksum.

A checkpoint is a folder ``<dir>/<global step>/`` holding two orbax items: ``state`` (a
pytree of arrays: parameters, BatchNorm statistics, optimizer state, the epoch's running
metric sums) and ``meta`` (JSON: epoch, step within the epoch, the config, the metric
history, and the SHA-256 of the state's arrays). orbax writes each checkpoint into a
temporary folder and renames it into place when complete, so a crash mid-save never
leaves a half checkpoint that looks valid.

A run is never lost to a damaged checkpoint:

* every save is read back and its checksum compared before older checkpoints are pruned,
  so the newest intact checkpoint is never deleted;
* :meth:`Checkpointer.restore` verifies ``meta`` (its keys and types) and the checksum; a
  damaged, truncated or incomplete newest checkpoint is reported (naming its folder) and
  the newest intact one is restored instead; when none is intact,
  :class:`CheckpointError` lists what is wrong with each.

Restoring takes an *abstract* target (the freshly initialised state, or its
``jax.ShapeDtypeStruct`` s with shardings), so arrays come back with the layout the
current run uses: replicated over the current mesh, whatever mesh wrote them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointError", "Checkpointer", "abstract_like", "state_checksum"]

# meta key -> the JSON types it may hold
_META_TYPES: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "step": (int,),
    "global_step": (int,),
    "config": (dict,),
    "history": (list,),
    "checksum": (str,),
}


class CheckpointError(RuntimeError):
    """A checkpoint (or every checkpoint of a folder) cannot be used; the message names the folder.

    >>> import tempfile
    >>> from train.checkpoint import CheckpointError, Checkpointer
    >>> with Checkpointer(tempfile.mkdtemp()) as ckpt:
    ...     try:
    ...         ckpt.restore({})
    ...     except CheckpointError as e:
    ...         print(str(e).split(" in ")[0])
    no checkpoint
    """


def abstract_like(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` (with sharding) for every array leaf of ``tree``.

    >>> import jax.numpy as jnp
    >>> from train.checkpoint import abstract_like
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
    >>> from train.checkpoint import state_checksum
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
    return meta


def _describe(e: BaseException) -> str:
    """The first line of an orbax / tensorstore error, without its dump of the tensorstore spec."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0][:300] if lines else ""
    return f"{type(e).__name__}: {text}".rstrip(": ")


class Checkpointer:
    """Synchronous, atomic, verified orbax checkpoints of ``(state pytree, meta dict)`` keyed by step.

    The ``max_to_keep`` newest checkpoints are kept (``None``: all). Every process of a
    multi-host run must call :meth:`save` / :meth:`restore` (orbax coordinates them).

    >>> import tempfile, jax.numpy as jnp
    >>> from train.checkpoint import Checkpointer
    >>> with Checkpointer(tempfile.mkdtemp()) as ckpt:
    ...     ckpt.save(3, {"w": jnp.arange(3.0)}, {"epoch": 1, "step": 0, "global_step": 3, "config": {}, "history": []})
    ...     state, meta = ckpt.restore({"w": jnp.zeros(3)})
    >>> state["w"].tolist(), meta["global_step"]
    ([0.0, 1.0, 2.0], 3)
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_to_keep: int | None = 2) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.max_to_keep = max_to_keep
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # pruning is ours: only after the new checkpoint verified
            enable_async_checkpointing=False,  # a save (e.g. on Ctrl-C) is complete when it returns
            create=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def path(self, step: int) -> Path:
        """The folder of checkpoint ``step``."""
        return self.directory / str(step)

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Write checkpoint ``step`` with the checksum of ``state``, read it back, then prune.

        A step already saved is left as it is. Raises :class:`CheckpointError` when the
        written checkpoint does not read back intact (nothing older is deleted then).
        """
        if step in self.all_steps():
            return
        meta = {**meta, "checksum": state_checksum(state)}
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()
        self._read(step, state)  # raises if what is on disk is not what was meant
        self._prune()

    def _prune(self) -> None:
        if self.max_to_keep is None:
            return
        for step in self.all_steps()[: -self.max_to_keep]:
            self._manager.delete(step)

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
            self._manager.delete(step)
        self._manager.reload()

    def meta(self, step: int) -> dict[str, Any]:
        """The validated JSON record of checkpoint ``step``, without reading the arrays."""
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
            raise CheckpointError(f"{where}: the arrays are unreadable ({_describe(e)})") from None
        state = restored["state"]
        if state_checksum(state) != meta["checksum"]:
            raise CheckpointError(f"{where}: the arrays do not match their checksum (damaged bytes)")
        return state, meta

    def restore(
        self,
        target: Any,
        step: int | None = None,
        *,
        warn: Callable[[str], None] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """(state, meta) of checkpoint ``step``, or of the newest intact one, laid out like ``target``.

        ``target`` is a state of the same structure (arrays or ``ShapeDtypeStruct`` s); its
        shardings say where the restored arrays go. Without ``step``, a damaged newer
        checkpoint is skipped with a message to ``warn``. Raises :class:`CheckpointError`
        (naming each folder and what is wrong) when no candidate is intact.
        """
        steps = [step] if step is not None else self.all_steps()[::-1]
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step is not None:  # asked for by number: that one or a clear error
            return self._read(step, target)
        problems = []
        for s in steps:
            try:
                state, meta = self._read(s, target)
            except CheckpointError as e:
                problems.append(str(e))
                continue
            if problems and warn is not None:
                warn("skipped damaged checkpoint(s):\n  " + "\n  ".join(problems) + f"\nrestored {self.path(s)}")
            return state, meta
        raise CheckpointError("no intact checkpoint:\n  " + "\n  ".join(problems))

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

