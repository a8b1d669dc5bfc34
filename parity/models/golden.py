"""Golden files: one side's run saved, to compare the other side (or a later run) against.

A golden file is a NumPy ``.npz`` (no other dependency) of a :class:`parity.models.capture.Capture`:
inputs, output, every layer's outputs, the cotangent, the gradient reaching every layer,
parameter gradients, parameters and buffers before the run and buffers after it, each in its
framework's own layout, plus one JSON entry ``__meta__`` (schema, framework, library versions,
device and precision settings, dtype, layer names). Arrays are stored by index; the names are
in the metadata.

>>> import os, tempfile, numpy as np
>>> from flax import nnx
>>> from parity.models.golden import save_golden, load_golden
>>> m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
>>> path = os.path.join(tempfile.mkdtemp(), "linear.npz")
>>> _ = save_golden(path, m, np.ones((3, 2), np.float32))
>>> g = load_golden(path)
>>> g.framework, [r.name for r in g.layers], g.meta["dtype"]
('jax', [''], 'float32')
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np

from parity.models.capture import Capture, Record, capture_jax, capture_torch, random_cotangent

__all__ = ["SCHEMA", "load_golden", "save_golden", "versions"]

SCHEMA = "parity-golden/1"


def versions() -> dict[str, str]:
    """Versions of the libraries a run depends on (those importable).

    >>> sorted(versions())[:2]
    ['flax', 'jax']
    """
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("jax", "flax", "torch", "jaxloss"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            pass
    return out


def is_torch_model(model: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def capture(model: Any, args: Any, *, grads: bool = True, seed: int = 0, cotangent: Any = None) -> Capture:
    """Capture a model of either framework (a ``torch.nn.Module`` or an NNX module)."""
    args = list(args) if isinstance(args, (tuple, list)) else [args]
    cot = cotangent if cotangent is not None else (lambda shapes: random_cotangent(shapes, seed)) if grads else None
    run = capture_torch if is_torch_model(model) else capture_jax
    return run(model, args, cotangent=cot)


def save_golden(path: str, model: Any, args: Any, *, grads: bool = True, seed: int = 0) -> Capture:
    """Run ``model`` (JAX or torch) on ``args`` and save everything to ``path`` (``.npz``); returns the capture.

    >>> import os, tempfile, numpy as np, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> save_golden(path, torch.nn.Linear(2, 1), np.ones((1, 2), np.float32)).framework
    'torch'
    """
    import parity.precisions

    cap = capture(model, args, grads=grads, seed=seed)
    cap.meta = {"settings": parity.precisions.settings()}
    write_capture(path, cap)
    return cap


def write_capture(path: str, cap: Capture) -> None:
    arrays: dict[str, np.ndarray] = {}

    def put(prefix: str, values: list[np.ndarray]) -> None:
        for i, v in enumerate(values):
            arrays[f"{prefix}/{i}"] = np.asarray(v)

    put("in", cap.inputs)
    put("out", cap.output)
    put("cot", cap.cotangent or [])
    for k, r in enumerate(cap.layers):
        put(f"layer/{k}", r.outputs)
        if r.key in cap.grads:
            put(f"grad/{k}", cap.grads[r.key])
    for group in ("params", "state", "param_grads"):
        d: Mapping[Any, np.ndarray] = getattr(cap, group)
        put(group, list(d.values()))
    meta = {
        "schema": SCHEMA,
        "framework": cap.framework,
        "dtype": cap.dtype,
        "versions": versions(),
        **cap.meta,
        "layers": [[r.name, r.call, len(r.outputs), r.key in cap.grads] for r in cap.layers],
        "params": [list(k) for k in cap.params],
        "state": [list(k) for k in cap.state],
        "param_grads": [list(k) for k in cap.param_grads],
        "n": {"in": len(cap.inputs), "out": len(cap.output), "cot": len(cap.cotangent or [])},
        "has_cotangent": cap.cotangent is not None,
    }
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_golden(path: str) -> Capture:
    """Read a golden file back as a :class:`Capture` (``meta`` holds its metadata).

    Raises:
        ValueError: the file is not a parity golden file.

    >>> import os, tempfile, numpy as np, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> _ = save_golden(path, torch.nn.Linear(2, 1), np.ones((1, 2), np.float32))
    >>> sorted(load_golden(path).param_grads)
    [('', 'bias'), ('', 'weight')]
    """
    with np.load(path, allow_pickle=False) as z:
        if "__meta__" not in z.files:
            raise ValueError(f"{path}: not a parity golden file (no __meta__ entry)")
        meta = json.loads(str(z["__meta__"]))
        if meta.get("schema") != SCHEMA:
            raise ValueError(f"{path}: golden schema {meta.get('schema')!r}, expected {SCHEMA!r}")
        data = {k: z[k] for k in z.files}

    def get(prefix: str, n: int) -> list[np.ndarray]:
        return [data[f"{prefix}/{i}"] for i in range(n)]

    layers, grads = [], {}
    for k, (name, call, n, has_grad) in enumerate(meta["layers"]):
        r = Record(name, call, get(f"layer/{k}", n))
        layers.append(r)
        if has_grad:
            grads[r.key] = get(f"grad/{k}", n)

    def named(group: str) -> dict[tuple[str, str], np.ndarray]:
        keys = [tuple(k) for k in meta[group]]
        return dict(zip(keys, get(group, len(keys))))  # type: ignore[arg-type]

    return Capture(
        framework=meta["framework"],
        inputs=get("in", meta["n"]["in"]),
        output=get("out", meta["n"]["out"]),
        layers=layers,
        params=named("params"),
        state=named("state"),
        grads=grads,
        param_grads=named("param_grads"),
        cotangent=get("cot", meta["n"]["cot"]) if meta["has_cotangent"] else None,
        meta=meta,
    )
