"""Batches on the device: the epoch's shuffled, augmented training batches and the padded test batches.

The data set lives on the device as uint8 (replicated); each batch is gathered there by
index, augmented (:mod:`jaxloss.train.augment`) and normalised by one small compiled program, so
nothing but the dispatch crosses from the host per step. The batch comes out sharded over
the mesh's ``'data'`` axis and goes straight into :func:`jaxloss.train.step.make_train_step`.

Randomness: the shuffle is numpy's PCG64 seeded with ``(seed, epoch)``
(:func:`permutation`), the augmentation of step ``i`` uses ``key(seed)`` folded with a
constant, the epoch and ``i``. Nothing random is carried from step to step, so a resumed
run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from jaxloss.train.augment import augment_batch, normalize

__all__ = ["make_eval_batch", "make_train_batch", "padded_test_set", "permutation"]

_AUGMENT = 0x61756700  # folded into key(seed) for augmentation, apart from nnx.Rngs(seed)'s streams


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The epoch's shuffle of ``n`` examples, the same on every host.

    >>> from jaxloss.train.feed import permutation
    >>> permutation(0, 0, 5).tolist() == permutation(0, 0, 5).tolist(), sorted(permutation(0, 1, 5).tolist())
    (True, [0, 1, 2, 3, 4])
    """
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def padded_test_set(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(x, y, mask, n_batches)``: the test set padded to whole batches; ``mask`` is 0 on the padding.

    >>> import numpy as np
    >>> from jaxloss.train.feed import padded_test_set
    >>> x, y, mask, n = padded_test_set(np.ones((5, 2, 2, 3), np.uint8), np.arange(5), 4)
    >>> x.shape, mask.tolist(), n
    ((8, 2, 2, 3), [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], 2)
    """
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y.astype(np.int32), np.zeros(pad, np.int32)])
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return x, y, mask, n_batches


def make_train_batch(
    *,
    batch_size: int,
    augment: bool,
    flip: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    sharding: NamedSharding | None = None,
) -> Any:
    """``batch(x_all, y_all, perm, seed, epoch, i) -> (x, y)``: training batch ``i`` of the epoch, jitted.

    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxloss.train.feed import make_train_batch
    >>> batch = make_train_batch(batch_size=2, augment=True, flip=True, mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> x, y = batch(jnp.zeros((4, 8, 8, 3), jnp.uint8), jnp.arange(4), jnp.array([3, 2, 1, 0]),
    ...              np.int32(0), np.int32(0), np.int32(1))
    >>> x.shape, x.dtype, y.tolist()
    ((2, 8, 8, 3), dtype('float32'), [1, 0])
    """

    def batch(x_all: jax.Array, y_all: jax.Array, perm: jax.Array, seed: jax.Array, epoch: jax.Array,
              i: jax.Array) -> tuple[jax.Array, jax.Array]:  # fmt: skip
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
        if sharding is not None:
            idx = jax.lax.with_sharding_constraint(idx, sharding)
        images, labels = x_all[idx], y_all[idx]
        if augment:
            key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _AUGMENT), epoch), i)
            x = augment_batch(key, images, padding=4, flip=flip, mean=mean, std=std)
        else:
            x = normalize(images, mean, std)
        if sharding is not None:
            x, labels = jax.lax.with_sharding_constraint((x, labels), sharding)
        return x, labels

    return jax.jit(batch)


def make_eval_batch(
    *, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...], sharding: NamedSharding | None = None
) -> Any:
    """``batch(x_all, y_all, mask_all, i) -> (x, y, mask)``: test batch ``i``, normalised, jitted.

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.feed import make_eval_batch
    >>> batch = make_eval_batch(batch_size=2, mean=(0.0,) * 3, std=(1.0,) * 3)
    >>> x, y, m = batch(jnp.full((4, 2, 2, 3), 255, jnp.uint8), jnp.arange(4), jnp.ones(4), 1)
    >>> float(x.max()), y.tolist()
    (1.0, [2, 3])
    """

    def batch(x_all: jax.Array, y_all: jax.Array, mask_all: jax.Array, i: jax.Array) -> Any:
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, i * batch_size, batch_size)  # noqa: E731
        out = normalize(sl(x_all), mean, std), sl(y_all), sl(mask_all)
        return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)

    return jax.jit(batch)
