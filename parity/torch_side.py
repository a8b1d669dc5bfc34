"""The torch side of a comparison: value, gradients (VJP with a given cotangent) and double backward.

>>> import numpy as np, jax, torch
>>> leaves, treedef = jax.tree_util.tree_flatten(((np.ones(2),), {}))
>>> out, grads, _, errors = torch_run(lambda x: x * 3, leaves, treedef, [0], [np.ones(2)], None, "cpu")
>>> grads[0].tolist(), errors
([3.0, 3.0], {})
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxloss.parity.convert import to_torch
from jaxloss.parity.result import describe

__all__ = ["torch_run"]


def torch_run(
    torch_fn: Callable[..., Any],
    leaves: list[Any],
    treedef: Any,
    diff_pos: list[int],
    cot: list[np.ndarray] | None,
    tan: list[np.ndarray] | None,
    device: str,
    dtype: str | None = None,
) -> tuple[Any, list[Any] | None, list[Any] | None, dict[str, str]]:
    """Run torch: ``(outputs, grads, hvps, errors)``; ``dtype`` recasts floating inputs
    (the float64 reference). ``errors`` maps ``'value' | 'grad' | 'hvp'`` to a traceback.

    >>> import numpy as np, jax
    >>> leaves, treedef = jax.tree_util.tree_flatten(((np.ones(2),), {}))
    >>> torch_run(lambda x: (x ** 2).sum(), leaves, treedef, [0], [np.ones(())], None, "cpu")[1][0].tolist()
    [2.0, 2.0]
    """
    import torch

    errors: dict[str, str] = {}
    want_grad = bool(diff_pos) and cot is not None
    tleaves = [
        to_torch(x, device, dtype=dtype, requires_grad=want_grad and i in diff_pos) for i, x in enumerate(leaves)
    ]
    args, kwargs = jax.tree_util.tree_unflatten(treedef, tleaves)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch_fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported, never raised
        errors["value"] = describe(e)
        return None, None, None, errors
    outs = jax.tree_util.tree_leaves(out)
    if not want_grad:
        return out, None, None, errors
    inputs = [tleaves[p] for p in diff_pos]
    try:
        gouts = [to_torch(c, device, dtype=dtype) for c in cot]  # type: ignore[union-attr]
        pairs = [(o, g.to(o.dtype)) for o, g in zip(outs, gouts) if getattr(o, "requires_grad", False)]
        if pairs:
            grads = torch.autograd.grad(
                [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True, create_graph=tan is not None
            )
        else:
            grads = tuple(None for _ in inputs)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    except Exception as e:  # noqa: BLE001
        errors["grad"] = describe(e)
        return out, None, None, errors
    if tan is None:
        return out, [g.detach() for g in grads], None, errors
    try:
        tvs = [to_torch(t, device, dtype=dtype) for t in tan]
        live = [(g, v.to(g.dtype)) for g, v in zip(grads, tvs) if g.requires_grad]
        if live:
            hvps = torch.autograd.grad([g for g, _ in live], inputs, [v for _, v in live], allow_unused=True)
        else:
            hvps = tuple(None for _ in inputs)
        hvps = [torch.zeros_like(x) if h is None else h.detach() for x, h in zip(inputs, hvps)]
    except Exception as e:  # noqa: BLE001
        errors["hvp"] = describe(e)
        hvps = None
    return out, [g.detach() for g in grads], hvps, errors
