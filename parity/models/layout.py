"""Pairing JAX and torch tensors: names (NNX path <-> torch name) and memory layouts.

Names
    A JAX module is named by its dotted NNX attribute path (``"conv1"``, ``"layer1.0.bn1"``;
    the ``layers`` list inside an ``nnx.Sequential`` is left out, so the path reads like
    torch's ``named_modules()`` name of the same layer). The model itself is ``""``.
    A variable of a module pairs with a torch parameter or buffer through
    :data:`TENSOR_NAMES` (``kernel`` -> ``weight``, ``mean`` -> ``running_mean``...), else
    by the same name.

Layouts (the rule, when shapes could be read two ways)
    Activations: a JAX array is taken as-is when its shape equals torch's; as channels-last
    (NHWC vs torch's NCHW, any rank >= 3) when its shape equals torch's with the channel
    axis moved last. When both readings fit (e.g. ``C == H == W``) the layout of the
    model's *inputs* decides: channels-last if the JAX inputs were, as-is otherwise.
    Parameters: a ``kernel`` is in NNX's convention, inputs before outputs
    (``(in, out)`` for Linear, ``(*spatial, in, out)`` for Conv), torch's is
    ``(out, in, *spatial)``; this conventional change is tried first, so a square Linear
    kernel is always transposed. Other variables are taken as-is when the shape fits, else
    the same change is tried.

>>> import numpy as np
>>> a = np.zeros((2, 5, 6, 3))                      # NHWC
>>> align(a, (2, 3, 5, 6), channels_last=True).shape  # to torch's NCHW
(2, 3, 5, 6)
>>> align_param(np.zeros((4, 3)), "kernel", (3, 4)).shape  # Linear (in, out) -> (out, in)
(3, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["TENSOR_NAMES", "align", "align_param", "channels_last", "channels_last_perm", "check_same_inputs", "to_jax_layout",
           "torch_tensor_name"]

# NNX variable name -> torch parameter / buffer name (nnx.Linear, nnx.Conv, nnx.BatchNorm,
# nnx.LayerNorm, nnx.Embed; train.models.BatchNorm2d)
TENSOR_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "embedding": "weight",
    "mean": "running_mean",
    "var": "running_var",
}


def torch_tensor_name(jax_name: str, torch_names: Sequence[str]) -> str | None:
    """The torch tensor of a module that an NNX variable pairs with (``None``: no partner).

    >>> torch_tensor_name("kernel", ["weight", "bias"]), torch_tensor_name("bias", ["weight"])
    ('weight', None)
    """
    for cand in (TENSOR_NAMES.get(jax_name), jax_name):
        if cand is not None and cand in torch_names:
            return cand
    return None


def channels_last_perm(ndim: int) -> tuple[int, ...]:
    """The axes that take a channels-first array (N, C, *spatial) to channels-last (N, *spatial, C).

    >>> channels_last_perm(4)
    (0, 2, 3, 1)
    """
    return (0, *range(2, ndim), 1)


def align(a: np.ndarray, torch_shape: Sequence[int], channels_last: bool) -> np.ndarray:
    """A JAX activation (or gradient) in torch's layout; unchanged when no reading fits
    (the comparison then reports the shape mismatch). See the module docstring for the rule.

    >>> import numpy as np
    >>> align(np.zeros((1, 4, 4, 4)), (1, 4, 4, 4), channels_last=True).shape  # ambiguous: the inputs decide
    (1, 4, 4, 4)
    """
    torch_shape = tuple(torch_shape)
    same = tuple(a.shape) == torch_shape
    if not same and _squeezed(a.shape) == _squeezed(torch_shape):  # torch's LSTM h: (layers=1, N, H) vs NNX's (N, H)
        return a.reshape(torch_shape)
    if a.ndim < 3:
        return a
    inv = np.argsort(channels_last_perm(a.ndim))  # channels-last -> channels-first
    moved = tuple(a.shape[i] for i in inv) == torch_shape
    if moved and (channels_last or not same):
        return a.transpose(inv)
    return a


def to_jax_layout(t: np.ndarray, jax_shape: Sequence[int], channels_last: bool) -> np.ndarray:
    """The inverse of :func:`align`: a torch-layout array in the JAX array's layout.

    >>> to_jax_layout(np.zeros((2, 3, 5, 6)), (2, 5, 6, 3), channels_last=True).shape
    (2, 5, 6, 3)
    """
    jax_shape = tuple(jax_shape)
    if tuple(t.shape) != jax_shape and _squeezed(t.shape) == _squeezed(jax_shape):
        return t.reshape(jax_shape)
    if t.ndim < 3:
        return t
    perm = channels_last_perm(t.ndim)
    moved = tuple(t.shape[i] for i in perm) == jax_shape
    if moved and (channels_last or tuple(t.shape) != jax_shape):
        return t.transpose(perm)
    return t


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if s != 1)


def channels_last(jax_inputs: Sequence[np.ndarray], torch_inputs: Sequence[np.ndarray]) -> bool:
    """Whether some JAX input is the torch input with its channel axis moved last (decides ambiguous shapes).

    >>> channels_last([np.zeros((1, 4, 4, 3))], [np.zeros((1, 3, 4, 4))])
    True
    """
    for a, b in zip(jax_inputs, torch_inputs):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim >= 3 and a.shape != b.shape and tuple(b.shape[i] for i in channels_last_perm(b.ndim)) == a.shape:
            return True
    return False


def check_same_inputs(jax_inputs: Sequence[np.ndarray], torch_inputs: Sequence[np.ndarray], what: str) -> None:
    """``ValueError`` naming the shapes unless each JAX input is the torch one, or it with the channel
    axis moved last (``what`` names the two sides in the message).

    >>> check_same_inputs([np.zeros((2, 4, 4, 3))], [np.zeros((4, 3, 4, 4))], "jax_args and torch_args")
    Traceback (most recent call last):
    ...
    ValueError: jax_args and torch_args do not hold the same inputs: shapes [(2, 4, 4, 3)] and [(4, 3, 4, 4)] (another batch size?)
    """
    def fits(a: np.ndarray, b: np.ndarray) -> bool:
        moved = b.ndim >= 3 and tuple(b.shape[i] for i in channels_last_perm(b.ndim)) == a.shape
        return a.shape == b.shape or moved

    js, ts = [np.asarray(a) for a in jax_inputs], [np.asarray(b) for b in torch_inputs]
    if len(js) != len(ts) or not all(fits(a, b) for a, b in zip(js, ts)):
        raise ValueError(f"{what} do not hold the same inputs: shapes {[a.shape for a in js]} and {[b.shape for b in ts]} "
                         "(another batch size?)")


def _kernel_perm(ndim: int) -> tuple[int, ...]:
    """NNX kernel (*spatial, in, out) -> torch weight (out, in, *spatial)."""
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def align_param(a: np.ndarray, jax_name: str, torch_shape: Sequence[int]) -> np.ndarray:
    """An NNX variable's value in torch's layout (see the module docstring for the rule).

    >>> import numpy as np
    >>> align_param(np.zeros((5, 5, 3, 8)), "kernel", (8, 3, 5, 5)).shape  # HWIO -> OIHW
    (8, 3, 5, 5)
    """
    torch_shape = tuple(torch_shape)
    if a.ndim < 2:
        return a
    candidates = [_kernel_perm(a.ndim), tuple(range(a.ndim))]
    if jax_name != "kernel":
        candidates.reverse()
    for perm in candidates:
        if tuple(a.shape[i] for i in perm) == torch_shape:
            return a.transpose(perm)
    return a
