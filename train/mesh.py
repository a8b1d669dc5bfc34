"""Devices and hosts: ``jax.distributed`` start-up, the ``('data',)`` mesh, and global arrays from host values.

A 1-D mesh ``('data',)`` over all devices (every process's, after
``jax.distributed.initialize`` in a multi-host launch). The batch is sharded over
``'data'``; parameters, optimizer state and the (uint8) data set are replicated; XLA
inserts the gradient all-reduce. BatchNorm statistics are therefore those of the *global*
batch, like ``torch.nn.SyncBatchNorm`` and unlike plain ``DistributedDataParallel``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from jaxloss.train.config import DISTRIBUTED_TIMEOUT_S, ConfigError, flag, parse_address

__all__ = ["distributed_env", "init_distributed", "make_mesh", "put", "put_tree"]

# jax.distributed.initialize's own deadline comes this much after ours: it ends the process
# with an abort ("another task died"), ours with a line naming the coordinator and status 1.
_JAX_GRACE_S = 30


def distributed_env(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """``environ`` with the given multi-host settings written over the ``JAX_*`` variables
    :func:`init_distributed` reads (settings left ``None`` keep the environment's).

    >>> from jaxloss.train.mesh import distributed_env
    >>> distributed_env("h0:1234", 2, 1, {})["JAX_PROCESS_ID"]
    '1'
    """
    env = dict(environ)
    given = {"JAX_COORDINATOR_ADDRESS": coordinator_address, "JAX_NUM_PROCESSES": num_processes,
             "JAX_PROCESS_ID": process_id}  # fmt: skip
    env.update({k: str(v) for k, v in given.items() if v is not None})
    return env


def init_distributed(
    environ: Mapping[str, str] | None = None,
    *,
    timeout_s: int = DISTRIBUTED_TIMEOUT_S,
    say: Callable[[str], None] | None = None,
    prog: str = "python -m jaxloss.train",
) -> bool:
    """``jax.distributed.initialize`` when launched as one of several processes; True if it did.

    Recognised (``environ``, default ``os.environ``):

    * ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) + ``JAX_NUM_PROCESSES`` +
      ``JAX_PROCESS_ID``;
    * torchrun-style ``MASTER_ADDR`` / ``MASTER_PORT`` (default 29500) + ``WORLD_SIZE`` + ``RANK``;
    * the launchers JAX detects by itself (SLURM ``srun``, Open MPI ``mpirun``) when they
      start more than one task (``SLURM_NTASKS`` / ``OMPI_COMM_WORLD_SIZE`` > 1).

    A single process (none of these, or a count of 1) does nothing. Every process then sees
    every process's devices in ``jax.devices()``; :func:`make_mesh` spans them all. A
    launch with a count above 1 but no process id, or an address that is not HOST:PORT,
    raises ValueError naming the variable.

    The wait for the other processes is announced (one line to ``say``, default stderr,
    naming the coordinator and ``timeout_s``) and bounded: when they have not all joined
    within ``timeout_s`` seconds, the process prints ``prog: error: ...`` naming the
    coordinator and exits with status 1 (it cannot return: jax is still waiting inside).

    >>> from jaxloss.train.mesh import init_distributed
    >>> init_distributed({})
    False
    """
    env = os.environ if environ is None else environ

    def need_int(name: str) -> int:
        value = env.get(name)
        if value is None or not value.strip().lstrip("-").isdigit():
            raise ValueError(
                f"multi-process launch: environment variable {name} must be an integer, got {value!r}"
            )
        return int(value)

    def need_address(name: str, address: str) -> str:
        try:
            parse_address(address)
        except ValueError as e:
            raise ValueError(f"multi-process launch: environment variable {name} {e}") from None
        return address

    join = _announced_join(timeout_s, say, prog)
    if env.get("JAX_COORDINATOR_ADDRESS") and need_int("JAX_NUM_PROCESSES") > 1:
        address = need_address("JAX_COORDINATOR_ADDRESS", env["JAX_COORDINATOR_ADDRESS"])
        join(address, need_int("JAX_NUM_PROCESSES"), need_int("JAX_PROCESS_ID"))
        return True
    if env.get("MASTER_ADDR") and int(env.get("WORLD_SIZE", "1")) > 1:
        address = need_address("MASTER_ADDR", f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '29500')}")
        join(address, need_int("WORLD_SIZE"), need_int("RANK"))
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        join(None, None, None)  # jax reads the launcher's variables
        return True
    return False


def _announced_join(
    timeout_s: int, say: Callable[[str], None] | None, prog: str
) -> Callable[[str | None, int | None, int | None], None]:
    """``join(coordinator, num_processes, process_id)``: ``jax.distributed.initialize``, announced and bounded."""
    say = say if say is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))

    def join(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
        where = f"coordinator {coordinator}" if coordinator else "the coordinator the launcher names (SLURM / MPI)"
        who = f"process {process_id} of {num_processes}" if num_processes else "this process"
        say(f"{who}: waiting up to {timeout_s} s for every process to join at {where} "
            f"({flag('distributed_timeout')})")  # fmt: skip
        message = (f"{prog}: error: not every process joined at {where} within {timeout_s} s: start all of them "
                   f"with the same address, check that process 0's host and port are reachable, or raise "
                   f"{flag('distributed_timeout')}")  # fmt: skip
        watchdog = threading.Timer(timeout_s, _give_up, args=(message,))
        watchdog.daemon = True
        watchdog.start()
        try:
            jax.distributed.initialize(
                coordinator, num_processes, process_id, initialization_timeout=timeout_s + _JAX_GRACE_S
            )
        finally:
            watchdog.cancel()

    return join


def _give_up(message: str) -> None:
    """Print ``message`` and end the process with status 1 (from the watchdog thread: the main one is inside jax)."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """1-D ``('data',)`` mesh over the first ``num_devices`` devices (default: all, every process's).

    >>> from jaxloss.train.mesh import make_mesh
    >>> make_mesh(1).axis_names
    ('data',)
    """
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ConfigError("num_devices", f"must be at most the {len(devices)} devices available, got {num_devices}")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), ("data",))


def put(value: Any, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value every process holds in full (works multi-host).

    >>> import jax, numpy as np
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec
    >>> from jaxloss.train.mesh import put
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> put(np.arange(4), NamedSharding(mesh, PartitionSpec("data"))).tolist()
    [0, 1, 2, 3]
    """
    arr = np.asarray(value)
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


def put_tree(tree: Any, sharding: NamedSharding) -> Any:
    """:func:`put` over every leaf of ``tree``.

    >>> import jax, numpy as np
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec
    >>> from jaxloss.train.mesh import put_tree
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> put_tree({"w": np.ones(2)}, NamedSharding(mesh, PartitionSpec()))["w"].tolist()
    [1.0, 1.0]
    """
    return jax.tree.map(lambda x: put(x, sharding), tree)
