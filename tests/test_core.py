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


def test_abs_second_order_matches_torch_at_zero():
    # d/dw of (|x| * w)' wrt x: torch gives sign(x) (0 at x == 0) at every order.
    x = np.array([-1.0, 0.0, 2.0])
    w = np.array([0.5, 2.0, 3.0])
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    (gx,) = torch.autograd.grad((tx.abs() * tw).sum(), tx, create_graph=True)
    (gw,) = torch.autograd.grad(gx.sum(), tw)
    jgx = lambda w_: jax.grad(lambda v: jnp.sum(_core.abs(v) * w_))(jnp.asarray(x))  # noqa: E731
    jgw = jax.grad(lambda w_: jnp.sum(jgx(w_)))(jnp.asarray(w))
    np.testing.assert_array_equal(np.asarray(jgw), gw.numpy())
