"""On-device data augmentation in JAX: torchvision's CIFAR recipe, reproducible from a PRNG key.

``augment_batch(key, images)`` is ``RandomCrop(32, padding=4)`` (zero padding, offsets 0..8
uniform) + ``RandomHorizontalFlip()`` + ``ToTensor()`` + ``Normalize(mean, std)`` applied to a
uint8 NHWC batch, each image with its own key (``jax.random.split(key, N)``) under ``jax.vmap``,
jit-compiled. The same key gives the same batch on any device count: the per-image keys do not
depend on how the batch is sharded. Inside the training step it is traced into the step's own
program (no extra dispatch).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxloss.train.data import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["augment_batch", "augment_image", "normalize", "random_crop", "random_hflip"]


def normalize(
    images: jax.Array, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD
) -> jax.Array:
    """uint8 (or [0, 255] float) images (..., C) -> float32 ``(x / 255 - mean) / std``.

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.augment import normalize
    >>> normalize(jnp.full((1, 2, 2, 3), 255, jnp.uint8), (0.5,) * 3, (0.5,) * 3)[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """
    x = images.astype(jnp.float32) / jnp.float32(255.0)
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_crop(key: jax.Array, image: jax.Array, padding: int = 4) -> jax.Array:
    """One HWC image: zero-pad by ``padding`` on each side, then crop back to H x W at a uniform offset.

    >>> import jax, jax.numpy as jnp
    >>> from jaxloss.train.augment import random_crop
    >>> random_crop(jax.random.key(0), jnp.ones((8, 8, 3), jnp.uint8), padding=2).shape
    (8, 8, 3)
    """
    if padding == 0:
        return image
    h, w, c = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    off = jax.random.randint(key, (2,), 0, 2 * padding + 1)
    return jax.lax.dynamic_slice(padded, (off[0], off[1], 0), (h, w, c))


def random_hflip(key: jax.Array, image: jax.Array) -> jax.Array:
    """One HWC image, mirrored left-right with probability 1/2.

    >>> import jax, jax.numpy as jnp
    >>> from jaxloss.train.augment import random_hflip
    >>> image = jnp.arange(4.0).reshape(1, 4, 1)
    >>> random_hflip(jax.random.key(0), image).ravel().tolist() in ([0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0])
    True
    """
    return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def augment_image(key: jax.Array, image: jax.Array, *, padding: int = 4, flip: bool = True) -> jax.Array:
    """Crop then (optionally) flip one uint8 HWC image; the dtype is kept.

    >>> import jax, jax.numpy as jnp
    >>> from jaxloss.train.augment import augment_image
    >>> out = augment_image(jax.random.key(0), jnp.ones((8, 8, 3), jnp.uint8))
    >>> out.shape, out.dtype
    ((8, 8, 3), dtype('uint8'))
    """
    k_crop, k_flip = jax.random.split(key)
    image = random_crop(k_crop, image, padding)
    return random_hflip(k_flip, image) if flip else image


@partial(jax.jit, static_argnames=("padding", "flip", "mean", "std"))
def augment_batch(
    key: jax.Array,
    images: jax.Array,
    *,
    padding: int = 4,
    flip: bool = True,
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
) -> jax.Array:
    """uint8 NHWC batch -> augmented, normalised float32 NHWC batch (one key per image).

    >>> import jax, jax.numpy as jnp
    >>> from jaxloss.train.augment import augment_batch
    >>> augment_batch(jax.random.key(0), jnp.ones((2, 8, 8, 3), jnp.uint8)).dtype
    dtype('float32')
    """
    keys = jax.random.split(key, images.shape[0])
    out = jax.vmap(partial(augment_image, padding=padding, flip=flip))(keys, images)
    return normalize(out, mean, std)
