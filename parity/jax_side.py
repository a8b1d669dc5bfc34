"""The JAX side of a comparison: the compiled program of one call (value, VJP, second order),
cached by structure, and running many such programs as one merged ``jax.jit`` program.

>>> import jax.numpy as jnp
>>> call_leaves(lambda a, b: a + b, __import__("jax").tree_util.tree_structure(((0, 0), {})), [None, 2], [0], [1])
3
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DEVICES", "JaxCall", "call_leaves", "cot_tree", "gpu_available", "jax_device", "jax_program", "run_jax_calls"]

DEVICES = ("cpu", "gpu")  # where a comparison runs: both frameworks on the CPU, or both on a CUDA GPU


_JIT_CACHE: dict[Any, tuple[Any, Callable[..., Any], Callable[..., Any]]] = {}
_JIT_CACHE_MAX = 4096


def _static_key(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str, complex)):
        return (type(v).__name__, v)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_static_key(x) for x in v))
    if callable(v):
        return ("callable", id(v))
    return ("repr", type(v).__name__, repr(v))


def jax_program(
    jax_fn: Callable[..., Any],
    treedef: Any,
    static: list[Any],
    array_pos: list[int],
    diff_pos: list[int],
    order: str,
    device: str,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(program, jax.jit(program))``: ``program(diff, rest, cot, tan) -> (out, grads, hvps)``,
    cached by structure.

    ``order`` is ``"value"``, ``"grad"`` or ``"hvp"``. Non-array leaves are baked in
    (they are jaxloss's static options); jit's own cache keys the shapes/dtypes. The plain
    ``program`` is what :func:`compare_many` traces into one merged program.

    >>> import jax, jax.numpy as jnp
    >>> prog, jitted = jax_program(jnp.sum, jax.tree_util.tree_structure(((0,), {})), [None], [0], [0], "grad", "cpu")
    >>> out, grads, _ = jitted([jnp.ones(3)], [], jnp.float64(2.0), [])
    >>> float(out), grads[0].tolist()
    (3.0, [2.0, 2.0, 2.0])
    """
    key = (id(jax_fn), treedef, tuple(_static_key(s) for s in static), tuple(array_pos), tuple(diff_pos), order, device)
    hit = _JIT_CACHE.get(key)
    if hit is not None and hit[0] is jax_fn:
        return hit[1], hit[2]
    nondiff_pos = [p for p in array_pos if p not in diff_pos]

    def call(diff: Sequence[Any], rest: Sequence[Any]) -> Any:
        leaves = list(static)
        for p, v in zip(diff_pos, diff):
            leaves[p] = v
        for p, v in zip(nondiff_pos, rest):
            leaves[p] = v
        args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
        return jax_fn(*args, **kwargs)

    def program(diff: Sequence[Any], rest: Sequence[Any], cot: Any, tan: Sequence[Any]) -> Any:
        f = lambda d: call(d, rest)
        if order == "value":
            return f(diff), None, None
        if order == "grad":
            out, vjp = jax.vjp(f, list(diff))
            return out, vjp(cot)[0], None

        def grad_fn(d: Any) -> Any:
            out, vjp = jax.vjp(f, d)
            return vjp(cot)[0], out

        # reverse over reverse, as torch's double backward: the gradient of <grad, tan>
        # (v^T H, not the directional derivative H v; see the module docstring)
        grads, grad_vjp, out = jax.vjp(grad_fn, list(diff), has_aux=True)
        (hvps,) = grad_vjp(list(tan))
        return out, grads, hvps

    jitted = jax.jit(program)
    if len(_JIT_CACHE) >= _JIT_CACHE_MAX:
        _JIT_CACHE.clear()
    _JIT_CACHE[key] = (jax_fn, program, jitted)
    return program, jitted


def gpu_available() -> bool:
    """Whether both CUDA torch and JAX's GPU backend are there (``device='gpu'`` needs both).

    >>> isinstance(gpu_available(), bool)
    True
    """
    import torch

    try:
        jax_gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU backend: JAX raises rather than returning none
        return False
    return bool(jax_gpus) and torch.cuda.is_available()


@contextlib.contextmanager
def jax_device(device: str) -> Any:
    """JAX's default device for ``'cpu'`` or ``'gpu'``, in a ``with`` block.

    >>> import jax.numpy as jnp
    >>> with jax_device("cpu"):
    ...     jnp.ones(1).devices().pop().platform
    'cpu'
    """
    if device == "gpu":
        with jax.default_device(jax.devices("gpu")[0]):
            yield
    else:
        with jax.default_device(jax.devices("cpu")[0]):
            yield



@dataclasses.dataclass
class JaxCall:
    """What a comparison needs from JAX: ``program(*inputs)`` (``jitted`` is its cached jit).

    >>> call = JaxCall(abs, abs, (-2,))
    >>> call.program(*call.inputs)
    2
    """

    program: Callable[..., Any]
    jitted: Callable[..., Any]
    inputs: tuple[Any, ...]


def run_jax_calls(calls: list[JaxCall], merge: bool) -> list[tuple[Any, BaseException | None]]:
    """Run JAX programs; ``(outputs, error)`` each.

    A program that occurs several times with inputs of the same shapes and dtypes (cases that
    differ only in their values) is compiled once on its own and run for each; the others are
    merged into one jitted program (``merge``), or run one by one if that fails.

    >>> import jax.numpy as jnp
    >>> [(float(out), err) for out, err in run_jax_calls([JaxCall(jnp.sum, jnp.sum, (jnp.ones(2),))], merge=True)]
    [(2.0, None)]
    """
    groups: dict[Any, list[int]] = {}
    for k, c in enumerate(calls):
        groups.setdefault((id(c.program), aval_key(c.inputs)), []).append(k)
    together = [k for g in groups.values() if len(g) == 1 and merge for k in g]
    done: dict[int, tuple[Any, BaseException | None]] = {}
    if len(together) > 1:
        programs = [calls[k].program for k in together]

        def merged(all_inputs: list[tuple[Any, ...]]) -> list[Any]:
            return [p(*inp) for p, inp in zip(programs, all_inputs)]

        outs = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outs = jax.block_until_ready(jax.jit(merged)([calls[k].inputs for k in together]))
        except Exception:  # noqa: BLE001 - one program fails: run each alone (errors reported per comparison)
            outs = None
        if outs is not None:
            done.update({k: (o, None) for k, o in zip(together, outs)})
    for k in range(len(calls)):
        if k in done:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                done[k] = (jax.block_until_ready(calls[k].jitted(*calls[k].inputs)), None)
        except Exception as e:  # noqa: BLE001
            done[k] = (None, e)
    return [done[k] for k in range(len(calls))]


def aval_key(tree: Any) -> Any:
    """Tree structure, shapes and dtypes of a program's inputs (what jit's cache keys on)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves)


def call_leaves(fn: Callable[..., Any], treedef: Any, static: list[Any], array_pos: list[int], arrays: Sequence[Any]) -> Any:
    """Call ``fn`` with the array leaves put back among the static ones.

    >>> import jax
    >>> call_leaves(max, jax.tree_util.tree_structure(((0, 0), {})), [None, 5], [0], [7])
    7
    """
    leaves = list(static)
    for p, v in zip(array_pos, arrays):
        leaves[p] = v
    args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
    return fn(*args, **kwargs)


def cot_tree(struct: Any, cot: list[np.ndarray] | None) -> Any:
    """The cotangent arrays in the structure and dtypes of the JAX output.

    >>> import jax, numpy as np
    >>> cot_tree({"a": jax.ShapeDtypeStruct((2,), np.float32)}, [np.ones(2)])["a"].dtype
    dtype('float32')
    """
    if cot is None:
        return None
    treedef = jax.tree_util.tree_structure(struct)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(c, dtype=s.dtype) for c, s in zip(cot, jax.tree_util.tree_leaves(struct))])
