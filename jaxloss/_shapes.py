"""Shapes and reductions: torch's broadcasting (with its error message) and ``'none' | 'mean' | 'sum'``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax.numpy as jnp

from jaxloss._dtypes import Array

Reduction = Literal["none", "mean", "sum"]


def check_reduction(reduction: str, allowed: Sequence[str] = ("none", "mean", "sum")) -> None:
    """Raise torch's error for an unknown ``reduction``."""
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def shape_str(shape: Sequence[int]) -> str:
    """Format a shape the way torch prints it in error messages: ``[2, 3]``."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """NumPy/torch broadcasting of two shapes, failing with torch's ``infer_size`` message.

    ``a`` and ``b`` are "tensor a" and "tensor b" in the message, as torch names the
    operands of the binary op that fails (pass them in that op's order). Like torch,
    the right-most mismatching dimension is reported.
    """
    a, b = tuple(int(d) for d in a), tuple(int(d) for d in b)
    ndim = max(len(a), len(b))
    pa, pb = (1,) * (ndim - len(a)) + a, (1,) * (ndim - len(b)) + b
    for i in range(ndim - 1, -1, -1):
        if pa[i] != pb[i] and pa[i] != 1 and pb[i] != 1:
            raise ValueError(
                f"The size of tensor a ({pa[i]}) must match the size of tensor b ({pb[i]}) "
                f"at non-singleton dimension {i}"
            )
    return tuple(db if da == 1 else da for da, db in zip(pa, pb))


def check_broadcast_into(shape: Sequence[int], broadcast: Sequence[int]) -> None:
    """torch's in-place / ``out=`` rule: an operand may not enlarge the output's ``shape``."""
    if tuple(broadcast) != tuple(shape):
        raise ValueError(
            f"output with shape {shape_str(shape)} doesn't match the broadcast shape {shape_str(broadcast)}"
        )


def reduce(loss: Array, reduction: str) -> Array:
    """Apply torch's ``'none' | 'mean' | 'sum'`` to an elementwise loss."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss)
    raise ValueError(f"{reduction} is not a valid value for reduction")
