"""``lax.conv_general_dilated`` as ``nnx.Conv`` calls it, made fast on XLA:CPU for tiny feature maps.

XLA:CPU's convolutions (Eigen's spatial convolution, or YNNPACK's) are slow when the output
map is tiny and the channels many, above all in the backward pass, where the weight
gradient becomes a convolution with a window as large as the map and the batch as its
contraction. ResNet-18 with torchvision's stem on 32x32 images runs its last two stages on
2x2 and 1x1 maps; there, value+gradient of one 3x3 convolution took (batch 128, 2 cores,
measured with XLA's own convolution):

================================  ============  ================
convolution                       ``lax``       im2col + matmul
================================  ============  ================
4x4 -> 2x2, 128 -> 256, stride 2   83 ms          7.1 ms
2x2, 256 -> 256                   212 ms         14.2 ms
2x2 -> 1x1, 256 -> 512, stride 2  130 ms         12.5 ms
1x1, 512 -> 512                    58 ms         20.7 ms (before dropping the 8 taps that read padding only)
4x4, 128 -> 128                    11 ms         15.7 ms
================================  ============  ================

So a 2-D NHWC/HWIO convolution whose output map has at most :data:`IM2COL_MAX_OUTPUT_POSITIONS`
positions is computed on CPU as ``patches @ kernel``: the ``k*k`` strided views of the
zero-padded input are concatenated along channels (``(N, Ho, Wo, k*k*Cin)``, tiny for such
maps) and multiplied by the ``(k*k*Cin, Cout)`` kernel; JAX differentiates the slices and
the matmul into matmuls and pads, with no convolution left. A tap whose every view row or
column falls in the padding contributes exact zeros and is left out. Everything else (larger
maps, dilation, groups, other layouts, other platforms) goes to ``lax.conv_general_dilated``
unchanged. The result is the same sum in another order: float32 results differ from
``lax``'s by rounding only (the float64 twin in ``tests/test_train_twin.py`` checks that
the model still computes torch's function).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["IM2COL_MAX_OUTPUT_POSITIONS", "conv_general_dilated"]

IM2COL_MAX_OUTPUT_POSITIONS = 4  # Ho * Wo; at 4x4 (16) lax was already the faster (table above)

_NHWC = ("NHWC", "HWIO", "NHWC")


def _used_taps(size: int, kernel: int, stride: int, pad: int, out: int) -> list[int]:
    """Kernel offsets along one axis whose views read at least one real (non-padding) row."""
    return [i for i in range(kernel) if any(pad <= i + stride * o < pad + size for o in range(out))]


def _im2col_conv(
    x: jax.Array, w: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]], precision: Any
) -> jax.Array | None:
    """The convolution as ``patches @ kernel``, or ``None`` when that path does not apply.

    ``None``: the output map has more than :data:`IM2COL_MAX_OUTPUT_POSITIONS` positions (or
    none), a padding is negative, or no tap reads real input (``lax`` handles those).
    """
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    (sh, sw), ((ph0, ph1), (pw0, pw1)) = strides, padding
    ho, wo = (h + ph0 + ph1 - kh) // sh + 1, (wd + pw0 + pw1 - kw) // sw + 1
    if not 0 < ho * wo <= IM2COL_MAX_OUTPUT_POSITIONS or min(ph0, ph1, pw0, pw1) < 0:
        return None
    taps = [(i, j) for i in _used_taps(h, kh, sh, ph0, ho) for j in _used_taps(wd, kw, sw, pw0, wo)]
    if not taps:
        return None
    xp = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
    views = [
        lax.slice(xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
        for i, j in taps
    ]
    patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
    kernel = jnp.concatenate([w[i, j] for i, j in taps], axis=0)  # (len(taps) * Cin, Cout), same order
    y = jnp.dot(patches.reshape(n * ho * wo, -1), kernel, precision=precision)
    return y.reshape(n, ho, wo, o)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated`` with the same arguments; im2col + matmul for tiny CPU output maps.

    The im2col path is taken when all hold: the default backend is CPU; a 2-D convolution
    with NHWC/HWIO/NHWC dimension numbers; explicit ``(low, high)`` padding; no dilation,
    one feature and batch group, no ``preferred_element_type`` and no extra keyword (e.g.
    an ``out_sharding``) other than ``None``; and an output map of at most
    :data:`IM2COL_MAX_OUTPUT_POSITIONS` positions. Shapes: ``lhs (N, H, W, Cin)``,
    ``rhs (kh, kw, Cin, Cout)``, result ``(N, Ho, Wo, Cout)``.

    >>> import jax.numpy as jnp
    >>> from jax import lax
    >>> from jaxloss.train.conv import conv_general_dilated
    >>> x, w = jnp.ones((1, 2, 2, 3)), jnp.ones((3, 3, 3, 4))
    >>> dn = ("NHWC", "HWIO", "NHWC")
    >>> ours = conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=dn)
    >>> bool(jnp.allclose(ours, lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=dn)))
    True
    """
    simple = (
        jax.default_backend() == "cpu"
        and lhs.ndim == 4
        and rhs.ndim == 4
        and not isinstance(padding, str)
        and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and all(v is None for v in kwargs.values())
        and dimension_numbers is not None
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    )
    if simple and (y := _im2col_conv(lhs, rhs, window_strides, padding, precision)) is not None:
        return y
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )
