"""Tiny CIFAR-10 data sets in the exact on-disk formats, for the tests (never shipped in ``train``)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxloss.train.data import _LAYOUTS, CIFAR10_CLASSES, IMAGE_BYTES, md5sum

__all__ = ["fake_cifar_archive", "write_fake_cifar"]


def write_fake_cifar(
    directory: str | os.PathLike[str],
    n_per_batch: int = 20,
    *,
    fmt: str = "py",
    seed: int = 0,
    image_fn: Callable[[np.random.Generator, np.ndarray], np.ndarray] | None = None,
) -> dict[str, str]:
    """Write a tiny CIFAR-10 in the exact on-disk format into ``directory/<layout folder>``.

    Labels cycle through 0..9; images are random uint8 (or ``image_fn(rng, labels)`` -> (N, 32, 32, 3)
    uint8). Python layout: protocol-2 pickles of ``{b'batch_label', b'labels', b'data',
    b'filenames'}`` like the official files. Returns ``{file name: md5}`` of what was written, to
    pass as ``load_cifar10(..., checksums=...)``.
    """
    layout = _LAYOUTS[fmt]
    folder = Path(directory) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sums = {}
    for b, name in enumerate(layout.train + layout.test):
        labels = (np.arange(n_per_batch) + b) % 10
        if image_fn is None:
            images = rng.integers(0, 256, size=(n_per_batch, 32, 32, 3), dtype=np.uint8)
        else:
            images = np.asarray(image_fn(rng, labels), dtype=np.uint8)
        flat = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(n_per_batch, IMAGE_BYTES))
        path = folder / name
        if fmt == "py":
            d = {
                b"batch_label": f"batch {b + 1} of 6".encode(),
                b"labels": [int(v) for v in labels],
                b"data": flat,
                b"filenames": [f"img_{b}_{i}.png".encode() for i in range(n_per_batch)],
            }
            path.write_bytes(pickle.dumps(d, protocol=2))
        else:
            rec = np.concatenate([labels.astype(np.uint8)[:, None], flat], axis=1)
            path.write_bytes(rec.tobytes())
        sums[name] = md5sum(path)
    meta = folder / layout.meta
    if fmt == "py":
        names = [c.encode() for c in CIFAR10_CLASSES]
        meta.write_bytes(
            pickle.dumps(
                {b"num_cases_per_batch": n_per_batch, b"label_names": names, b"num_vis": IMAGE_BYTES},
                protocol=2,
            )
        )
    else:
        meta.write_text("\n".join(CIFAR10_CLASSES) + "\n\n", encoding="ascii")
    sums[layout.meta] = md5sum(meta)
    return sums


def fake_cifar_archive(directory: str | os.PathLike[str], n_per_batch: int = 10, *, fmt: str = "py") -> bytes:
    """A ``.tar.gz`` (bytes) of :func:`write_fake_cifar` output, laid out like the official archive."""
    layout = _LAYOUTS[fmt]
    src = Path(directory)
    write_fake_cifar(src, n_per_batch, fmt=fmt)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / layout.folder, arcname=layout.folder)
    return buf.getvalue()
