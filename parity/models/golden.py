"""Golden files: one side's run saved, to compare the other side (or a later run) against.

A golden file is a NumPy ``.npz`` (no other dependency) of a :class:`jaxloss.parity.models.capture.Capture`:
inputs, output, every layer's outputs, the cotangent, the gradient reaching every layer,
parameter gradients, parameters and buffers before the run and buffers after it, each in its
framework's own layout, plus one JSON entry ``__meta__`` (schema, framework, library versions,
device and precision settings, dtype, layer names). Arrays are stored by index; the names are
in the metadata.

>>> import os, tempfile, numpy as np
>>> from flax import nnx
>>> from jaxloss.parity.models.golden import save_golden, load_golden
>>> m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
>>> path = os.path.join(tempfile.mkdtemp(), "linear.npz")
>>> _ = save_golden(path, m, np.ones((3, 2), np.float32))
>>> g = load_golden(path)
>>> g.framework, [r.name for r in g.layers], g.meta["dtype"]
('jax', [''], 'float32')
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxloss.parity.models.capture import Capture, Record, capture_jax, capture_torch, random_cotangent

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
    import jaxloss.parity.precisions  # noqa: F401
    from jaxloss import parity

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
    partial = f"{path}.partial"  # written whole, then renamed: an interrupted save leaves no truncated file
    with open(partial, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(partial, path)


def load_golden(path: str) -> Capture:
    """Read a golden file back as a :class:`Capture` (``meta`` holds its metadata).

    A golden file is untrusted input: every way it can be malformed (not a zip, truncated,
    metadata that is not the schema's, a missing entry, an array header whose size disagrees
    with its data, a pickled object array) is one ``ValueError`` naming ``path``. Only the
    entries the metadata names are read.

    Raises:
        ValueError: the file is not a (readable) parity golden file.

    >>> import os, tempfile, numpy as np, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> _ = save_golden(path, torch.nn.Linear(2, 1), np.ones((1, 2), np.float32))
    >>> sorted(load_golden(path).param_grads)
    [('', 'bias'), ('', 'weight')]
    >>> with open(path, "wb") as fh:
    ...     _ = fh.write(b"not a zip")
    >>> load_golden(path)
    Traceback (most recent call last):
    ...
    ValueError: ...t.npz: not a parity golden file (not a zip archive: File is not a zip file)
    """
    try:
        with zipfile.ZipFile(path) as z:
            meta = _read_meta(z)
            return _capture_of(meta, lambda name: _read_array(z, name))
    except GoldenError as e:
        raise ValueError(f"{path}: not a parity golden file ({e})") from None
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a parity golden file (not a zip archive: {e})") from None
    except (OSError, EOFError, zlib.error, RecursionError, MemoryError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a parity golden file (unreadable: {type(e).__name__}: {e})") from None


class GoldenError(Exception):
    """A golden file's content is not what :func:`save_golden` writes (the message says what)."""


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_array(z: zipfile.ZipFile, name: str) -> np.ndarray:
    """Entry ``name`` (``name.npy`` in the archive), its header checked against its size before
    any memory is taken for it (a header may claim terabytes), object arrays refused."""
    member = f"{name}.npy"
    try:
        info = z.getinfo(member)
    except KeyError:
        raise GoldenError(f"entry {name!r} is missing") from None
    with z.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in _HEADER_READERS:
            raise GoldenError(f"entry {name!r}: .npy format version {version} (save_golden writes 1.0)")
        shape, fortran, dtype = _HEADER_READERS[version](fh)
        if dtype.hasobject:
            raise GoldenError(f"entry {name!r} holds Python objects (pickled), refused")
        header_end = fh.tell()
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared != info.file_size - header_end:
            raise GoldenError(f"entry {name!r} claims shape {list(shape)} of {dtype} ({declared} bytes), "
                              f"but holds {info.file_size - header_end} bytes")
        data = fh.read(declared)
    array = np.frombuffer(data, dtype=dtype)
    return (array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)).copy()


def _read_meta(z: zipfile.ZipFile) -> dict[str, Any]:
    """The ``__meta__`` entry, checked against the schema :func:`write_capture` writes."""
    if "__meta__.npy" not in z.namelist():
        raise GoldenError("no __meta__ entry")
    raw = _read_array(z, "__meta__")
    if raw.shape != () or raw.dtype.kind != "U":
        raise GoldenError("__meta__ is not a string")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as e:
        raise GoldenError(f"__meta__ is not JSON: {e}") from None
    if not isinstance(meta, dict):
        raise GoldenError("__meta__ is not a JSON object")
    if meta.get("schema") != SCHEMA:
        raise GoldenError(f"golden schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    _expect(meta.get("framework") in ("jax", "torch"), "framework must be 'jax' or 'torch'")
    _expect(isinstance(meta.get("has_cotangent"), bool), "has_cotangent must be true or false")
    n = meta.get("n")
    _expect(isinstance(n, dict) and all(_count(n.get(k)) for k in ("in", "out", "cot")), "n must hold the counts in, out, cot")
    layers = meta.get("layers")
    _expect(isinstance(layers, list) and all(
        isinstance(r, list) and len(r) == 4 and isinstance(r[0], str) and _count(r[1]) and _count(r[2]) and isinstance(r[3], bool)
        for r in layers), "layers must be [name, call, outputs, has_grad] rows")
    for group in ("params", "state", "param_grads"):
        keys = meta.get(group)
        _expect(isinstance(keys, list) and all(isinstance(k, list) and len(k) == 2 and all(isinstance(x, str) for x in k)
                                               for k in keys), f"{group} must be [module, tensor] pairs")
    return meta


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise GoldenError(f"malformed __meta__: {what}")


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _capture_of(meta: dict[str, Any], read: Any) -> Capture:
    """The :class:`Capture` the (checked) metadata describes, its arrays read by ``read(name)``."""

    def get(prefix: str, n: int) -> list[np.ndarray]:
        return [read(f"{prefix}/{i}") for i in range(n)]

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
