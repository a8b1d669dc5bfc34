"""jaxloss.train.pooling.max_pool2d against torch.nn.functional.max_pool2d: values and gradients
bit for bit (ties go to the first maximum of a window), shapes, padding, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jaxloss.train.pooling import max_pool2d

CASES = [
    # (N, H, W, C, kernel, stride, padding)
    (2, 8, 8, 3, 2, 2, 0),  # the seed CNN's pools
    (2, 9, 7, 3, 2, 2, 0),  # odd sizes: the last row / column is dropped
    (2, 8, 8, 3, 3, 2, 1),  # ResNet's stem pool (overlapping windows, -inf padding)
    (1, 7, 6, 2, 3, 1, 1),  # stride 1
    (1, 6, 6, 2, 3, 3, 0),
]


def _torch(x: np.ndarray, g: np.ndarray, k: int, s: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    out = F.max_pool2d(t, k, s, p)
    (out * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()
    return out.detach().numpy().transpose(0, 2, 3, 1), t.grad.numpy().transpose(0, 2, 3, 1)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _value_and_grad(x, g, k, s, p):  # type: ignore[no-untyped-def]
    """The pool and its input gradient for the cotangent ``g``: one compiled program per window and
    shape (shared by the tie and no-tie inputs), not one per operation as eagerly."""
    out, vjp = jax.vjp(lambda a: max_pool2d(a, k, s, p), x)
    return out, vjp(g)[0]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,h,w,c,k,s,p", CASES)
def test_value_and_gradient_equal_torch_bitwise(n, h, w, c, k, s, p, dtype, ties):
    rng = np.random.default_rng(0)
    # small integers make many ties inside windows: torch sends the gradient to the first one
    x = (rng.integers(0, 3, size=(n, h, w, c)) if ties else rng.normal(size=(n, h, w, c))).astype(dtype)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    g = rng.normal(size=(n, ho, wo, c)).astype(dtype)
    want_v, want_g = _torch(x, g, k, s, p)
    got_v, got_g = map(np.asarray, _value_and_grad(jnp.asarray(x), jnp.asarray(g), k, s, p))
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(got_g, want_g)


def test_matches_reduce_window_value_and_jit_vmap():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 10, 10, 4)).astype(np.float32))
    want = jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )
    f = jax.jit(lambda a: max_pool2d(a, 3, 2, 1))
    np.testing.assert_array_equal(np.asarray(f(x)), np.asarray(want))
    batched = jax.vmap(lambda a: max_pool2d(a[None], 3, 2, 1)[0])(x)
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(want))


def test_second_order_through_the_backward_pass():
    # the backward pass is linear in the cotangent: grad-of-grad wrt the cotangent is defined
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 4, 4, 1)))
    hv = jax.grad(lambda g: jnp.sum(jax.vjp(lambda a: max_pool2d(a, 2), x)[1](g)[0] ** 2))(
        jnp.ones((1, 2, 2, 1))
    )
    np.testing.assert_array_equal(np.asarray(hv), 2.0)


@pytest.mark.parametrize(
    "shape,kw,message",
    [
        ((2, 8, 8), {"kernel_size": 2}, "rank 4"),
        (
            (1, 8, 8, 1),
            {"kernel_size": 3, "padding": 2},
            "pad should be at most half of effective kernel size",
        ),
        ((1, 2, 2, 1), {"kernel_size": 3}, "smaller than the 3x3 window"),
        ((1, 8, 8, 1), {"kernel_size": 0}, "must be positive"),
    ],
)
def test_bad_arguments(shape, kw, message):
    with pytest.raises(ValueError, match=message):
        max_pool2d(jnp.zeros(shape), **kw)
