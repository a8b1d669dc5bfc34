"""The torch-gradient helpers of jaxloss._core against torch's own ops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxloss import _core


@pytest.mark.parametrize("bound", [0, 0.0, 1.5])
@pytest.mark.parametrize("which", ["min", "max"])
def test_clamp_matches_torch_value_and_gradient_at_ties_and_nan(bound, which):
    x = np.array([-2.0, 0.0, 1.5, 3.0, np.nan])
    jfn = _core.clamp_min if which == "min" else _core.clamp_max
    tfn = torch.clamp_min if which == "min" else torch.clamp_max
    tx = torch.tensor(x, requires_grad=True)
    tout = tfn(tx, bound)
    tout.sum().backward()
    jout = jfn(jnp.asarray(x), bound)
    jgrad = jax.grad(lambda v: jnp.sum(jfn(v, bound)))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(jout), tout.detach().numpy())
    np.testing.assert_array_equal(np.asarray(jgrad), tx.grad.numpy())


def test_abs_gradient_is_sign():
    x = np.array([-1.0, 0.0, 2.0])
    tx = torch.tensor(x, requires_grad=True)
    tx.abs().sum().backward()
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: jnp.sum(_core.abs(v)))(jnp.asarray(x))), tx.grad.numpy())


def test_abs_derivative_is_sign_at_every_order():
    # Differentiating the primal output of abs's jvp rule again (forward over forward, as in
    # jax.hessian) must also give torch's sign(0) = 0, not jnp.abs's slope 1.
    inner = lambda v: jax.jvp(_core.abs, (v,), (jnp.ones_like(v),))[0]  # noqa: E731
    _, tangent = jax.jvp(inner, (jnp.zeros(3),), (jnp.ones(3),))
    np.testing.assert_array_equal(np.asarray(tangent), np.zeros(3))
