"""jaxloss.train.conv: the im2col path for tiny CPU maps computes lax.conv_general_dilated's function."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jaxloss.parity.tolerances import tolerance_for
from jaxloss.train.conv import IM2COL_MAX_OUTPUT_POSITIONS, conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, stride, pad):
    return lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)], dimension_numbers=DN)


def _ours(x, w, stride, pad):
    return conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)], dimension_numbers=DN)


# (H, Cin, Cout, kernel, stride, padding): ResNet-18's last two stages and edge cases
CASES = (
    (4, 8, 16, 3, 2, 1),  # 4x4 -> 2x2, stride 2
    (2, 16, 16, 3, 1, 1),  # 2x2 -> 2x2
    (2, 16, 32, 3, 2, 1),  # 2x2 -> 1x1: taps reading only padding are left out
    (1, 32, 32, 3, 1, 1),  # 1x1 -> 1x1: the centre tap only
    (2, 16, 32, 1, 2, 0),  # 1x1 downsample
    (3, 4, 5, 3, 1, 0),  # no padding, 1x1 output
    (2, 3, 4, 2, 1, 1),  # even kernel, 3x3 output (9 positions: lax path)
)


def _case_id(case):
    return "H{}_{}to{}_k{}s{}p{}".format(*case)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _value_and_grads(conv, cases, arrays):
    """``[(y, d_input, d_kernel)]`` of each case (``arrays``: its ``(x, w, cotangent)``), every case in
    one compiled program per path and dtype (a program per case costs more to compile than the cases)."""
    out = []
    for (_, _, _, _, s, p), (x, w, cot) in zip(cases, arrays, strict=True):
        y, vjp = jax.vjp(lambda x, w, s=s, p=p: conv(x, w, s, p), x, w)
        out.append((y, *vjp(cot)))
    return out


def _arrays(case, dtype):
    h, cin, cout, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = jnp.asarray(rng.normal(size=(5, h, h, cin)), dtype)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), dtype)
    cot = jnp.asarray(rng.normal(size=jax.eval_shape(lambda x, w: _lax(x, w, s, p), x, w).shape), dtype)
    return x, w, cot


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_lax_in_value_and_both_gradients(dtype):
    with jax.enable_x64(dtype == "float64"):
        arrays = [_arrays(c, dtype) for c in CASES]
        ref = _value_and_grads(_lax, CASES, arrays)
        got = _value_and_grads(_ours, CASES, arrays)
    tol = tolerance_for(dtype)
    for case, g, r in zip(CASES, got, ref, strict=True):
        for name, a, b in zip(("value", "d_input", "d_kernel"), g, r, strict=True):
            where = f"{_case_id(case)} {name}"
            assert a.dtype == b.dtype and a.shape == b.shape, where
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol.rtol, atol=tol.atol, err_msg=where)


def _has_convolution(conv, h, k, s, p):
    x, w = jax.ShapeDtypeStruct((2, h, h, 8), jnp.float32), jax.ShapeDtypeStruct((k, k, 8, 8), jnp.float32)
    grad = jax.grad(lambda x, w: jnp.sum(conv(x, w, s, p) ** 2), argnums=(0, 1))
    return "convolution(" in jax.jit(grad).lower(x, w).as_text(dialect="hlo")


def test_path_depends_on_output_map_size():
    assert IM2COL_MAX_OUTPUT_POSITIONS == 4
    assert not _has_convolution(_ours, 2, 3, 1, 1)  # 2x2 output: matmuls only, forward and backward
    assert not _has_convolution(_ours, 4, 3, 2, 1)  # 4x4 -> 2x2
    assert _has_convolution(_ours, 3, 3, 1, 1)  # 3x3 output: lax
    assert _has_convolution(_lax, 2, 3, 1, 1)  # (the probe can see a convolution)


def test_dilation_groups_and_string_padding_go_to_lax():
    x, w = jnp.ones((1, 2, 2, 4)), jnp.ones((3, 3, 2, 4))
    y = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref))
    w1 = jnp.ones((3, 3, 4, 4))
    y = conv_general_dilated(x, w1, (1, 1), [(2, 2), (2, 2)], rhs_dilation=(2, 2), dimension_numbers=DN)
    ref = lax.conv_general_dilated(x, w1, (1, 1), [(2, 2), (2, 2)], rhs_dilation=(2, 2), dimension_numbers=DN)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref))
