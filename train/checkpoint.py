"""Training checkpoints with orbax: the whole train state plus a JSON record of where it stands.

A checkpoint is a folder ``<dir>/<global step>/`` holding two orbax items: ``state`` (a
pytree of arrays: parameters, BatchNorm statistics, optimizer state, the epoch's running
metric sums) and ``meta`` (JSON: epoch, step within the epoch, the config, the metric
history). orbax writes each checkpoint into a temporary folder and renames it into place
when complete, so a crash mid-save never leaves a half checkpoint that looks valid;
:meth:`Checkpointer.latest_step` only sees finished ones.

Restoring takes an *abstract* target (the freshly initialised state, or its
``jax.ShapeDtypeStruct`` s with shardings), so arrays come back with the layout the
current run uses: replicated over the current mesh, whatever mesh wrote them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "abstract_like"]


def abstract_like(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` (with sharding) for every array leaf of ``tree``."""

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, tree)


class Checkpointer:
    """Synchronous, atomic orbax checkpoints of ``(state pytree, meta dict)`` keyed by step.

    ``max_to_keep`` most recent checkpoints are kept. Every process of a multi-host run must
    call :meth:`save` / :meth:`restore` (orbax coordinates them); only process 0 writes the
    JSON metadata.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_to_keep: int | None = 2) -> None:
        self.directory = Path(directory).expanduser().absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,  # a save (e.g. on Ctrl-C) is complete when it returns
            create=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Write checkpoint ``step`` (overwriting nothing: a step already saved is skipped)."""
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return list(self._manager.all_steps())

    def meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON record of checkpoint ``step`` (default: the latest), without reading the arrays."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """(state, meta) of checkpoint ``step`` (default: the latest), laid out like ``target``.

        ``target`` is a state of the same structure (arrays or ``ShapeDtypeStruct`` s); its
        shardings say where the restored arrays go.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_like(target)), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"])

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
