"""regression.py against torch.nn.functional: values and gradients."""

import numpy as np
import pytest
import torch.nn.functional as F

import jaxloss
from tests.torch_compare import check

DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_l1_loss(dtype, reduction, weighted):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5))
    y = rng.normal(size=(4, 5))
    y[0, :2] = x[0, :2]  # ties: gradient sign(0) = 0 in torch
    arrays = {"input": x, "target": y}
    if weighted:
        arrays["weight"] = rng.uniform(0.1, 2.0, size=(4, 5))
    check(jaxloss.l1_loss, F.l1_loss, arrays, {"reduction": reduction}, grad=list(arrays), dtype=dtype,
          positional=["input", "target"])


def test_l1_loss_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        jaxloss.l1_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        jaxloss.l1_loss(x, x, weight=np.ones((3,), np.float32))
