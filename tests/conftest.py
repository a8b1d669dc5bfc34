"""Test-wide settings: float64 on (so float64 cases really run in float64) and
torch on one thread per process (the suite runs under pytest-xdist)."""

import jax

jax.config.update("jax_enable_x64", True)

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the torch-free install test imports no torch
    pass
