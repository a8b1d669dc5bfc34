"""Why a training step diverged: the parameter, the kind (loss, gradient or update) and the layer.

Every pairing is :func:`jaxloss.parity.compare_params`'s (names, ``mapping``, layouts). Gradients
and updates are compared through it too: a copy of each model whose parameters hold the
gradients (or ``p_after - p_before``) is compared as parameters are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from jaxloss.parity.training.records import Divergence, StepStart, within_reference

__all__ = ["clone_jax", "param_diffs", "split_params"]  # diagnose: compare_training's, documented there


def clone_jax(model: Any) -> Any:
    """An independent copy of an NNX model, its arrays copied to the host first (a jitted step may donate them).

    >>> from flax import nnx
    >>> m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    >>> c = clone_jax(m)
    >>> c is m, bool((c.kernel[...] == m.kernel[...]).all())
    (False, True)
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)
    host = jax.tree.map(np.array, state)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, host))


def param_diffs(jax_model: Any, torch_model: Any, mapping: Mapping[str, str] | None, rtol: float, atol: float,
                reference: Any = None) -> list[Any]:  # fmt: skip
    """:func:`jaxloss.parity.compare_params` of the live models (module order).

    >>> import torch
    >>> from flax import nnx
    >>> [(d.tensor, d.passed) for d in param_diffs(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), torch.nn.Linear(3, 2), None, 1e-7, 1e-7)]
    [('weight', False), ('bias', False)]
    """
    from jaxloss.parity.models import compare_params

    return compare_params(jax_model, torch_model, mapping=mapping, rtol=rtol, atol=atol, reference=reference)


def torch_name(d: Any) -> str:
    """The torch state_dict name of a parameter's :class:`LayerDiff` (``model.2.weight``)."""
    return f"{d.torch_name}.{d.tensor}" if d.torch_name else d.tensor


def split_params(diffs: Sequence[Any], torch_model: Any) -> tuple[list[Any], list[Any]]:
    """``(parameters, buffers)``: the diffs of torch parameters and the rest (a pair nothing compared stays a parameter).

    >>> import torch
    >>> from flax import nnx
    >>> jm, tm = nnx.BatchNorm(2, rngs=nnx.Rngs(0)), torch.nn.BatchNorm1d(2)
    >>> [[d.tensor for d in side] for side in split_params(param_diffs(jm, tm, None, 1e-5, 1e-5), tm)]
    [['weight', 'bias'], ['running_mean', 'running_var']]
    """
    names = {n for n, _ in torch_model.named_parameters()}
    params = [d for d in diffs if torch_name(d) in names or not d.size]
    return params, [d for d in diffs if d not in params]


def _apart(d: Any, atol: float) -> bool:
    """Out of tolerance, and (with the float64 reference) farther than torch's own float32 run allows."""
    if d.passed:
        return False
    if d.jax_ref_abs is None or d.torch_ref_abs is None:
        return True
    return not within_reference(d.max_abs_err, d.torch_ref_abs, atol)


def first_apart(diffs: Sequence[Any], atol: float, backward: bool = False) -> Any:
    """The first diff out of tolerance (preferring one beyond torch's own float32 error), in module order
    or, ``backward``, in the order the backward pass reaches them."""
    order = list(reversed(diffs)) if backward else list(diffs)
    return next((d for d in order if _apart(d, atol)), None) or next((d for d in order if not d.passed), None)


def flax_alone(d: Any) -> bool:
    """Out of tolerance, and Flax's float32 run leaves float64 where torch's does not, by more than twice torch's
    own error there (the step rule, per layer)."""
    return (not d.passed and d.torch_ref_passed is True and d.jax_ref_passed is False
            and not within_reference(d.jax_ref_abs or 0.0, d.torch_ref_abs or 0.0, 0.0))  # fmt: skip


def _jax_grad_model(model: Any, loss: Callable[..., Any], batch: tuple[Any, ...]) -> Any:
    """A copy of ``model`` whose parameters hold ``d loss / d parameter`` on ``batch``."""
    from flax import nnx

    m = clone_jax(model)
    grads = nnx.jit(lambda m, *b: nnx.grad(loss)(m, *b))(m, *batch)  # one program, not one per operation
    g = clone_jax(model)
    nnx.update(g, grads)
    return g


def _torch_grad_model(model: Any, loss: Callable[..., Any], batch: tuple[Any, ...]) -> Any:
    """A copy of ``model`` whose parameters hold their gradients on ``batch`` (0 where none reaches)."""
    import torch

    m = copy.deepcopy(model)
    for p in m.parameters():
        p.grad = None
    loss(m, *batch).backward()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
    return m


def _jax_update_model(before: Any, after: Any) -> Any:
    """A copy of ``after`` whose parameters hold ``after - before``."""
    import jax
    from flax import nnx

    u = clone_jax(after)
    nnx.update(u, jax.tree.map(lambda a, b: a - b, nnx.state(after, nnx.Param), nnx.state(before, nnx.Param)))
    return u


def _torch_update_model(before: Any, after: Any) -> Any:
    import torch

    u = copy.deepcopy(after)
    with torch.no_grad():
        for p, b in zip(u.parameters(), before.parameters(), strict=True):
            p.sub_(b)
    return u


def _float64(batch: tuple[Any, ...]) -> tuple[Any, ...]:
    import torch

    return tuple(t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in batch)


def diagnose(start: StepStart, step: int, after: Sequence[Any], jax_model: Any, torch_model: Any, *,
             losses: tuple[Callable[..., Any], Callable[..., Any]] | None, loss_apart: bool,
             mapping: Mapping[str, str] | None, rtol: float, atol: float, inputs: int = 1) -> Divergence:  # fmt: skip
    """The :class:`Divergence` of step ``step`` (see its docstring).

    ``start``: the models before the step; ``after``: the parameter diffs after it;
    ``jax_model`` / ``torch_model``: the live models (after the step); ``loss_apart``: whether the
    step's losses were out of tolerance; ``inputs``: how many leading batch elements the models
    take (the rest are targets).
    """
    from jaxloss.parity.models import compare_models

    ref = start.reference_model
    before, _ = split_params(param_diffs(start.jax_model, start.torch_model, mapping, rtol, atol, ref), start.torch_model)
    params_after, _ = split_params(after, torch_model)
    p, when = first_apart(before, atol), "before"
    if p is None:
        p, when = first_apart(params_after, atol, backward=True), "after"
    div = Divergence(step, "loss" if loss_apart else "update", torch_name(p) if p is not None else None,
                     when=when if p is not None else None, param=p, start=start)  # fmt: skip
    if p is not None and not p.size:  # nothing paired: the message says why
        div.detail = p.message
        return div
    if losses is None:
        div.detail = ("the losses differ" if loss_apart else
                      "the parameters moved apart (pass losses= to tell a gradient from an optimizer difference)")
        return div
    jargs, targs = start.jax_batch[:inputs], start.torch_batch[:inputs]
    report = compare_models(start.jax_model, start.torch_model, jargs, targs, mapping=mapping, rtol=rtol, atol=atol,
                            reference=ref)  # fmt: skip
    div.report, div.layer = report, report.first_divergence
    div.flax_only = next((x for x in report.layers if flax_alone(x)), None)
    own = div.flax_only
    div.routing = bool(own is not None and own.n_bad and (own.jax_at_worst == 0) != (own.torch_at_worst == 0))
    if loss_apart:
        div.detail = ("the forward pass differs" if div.layer is not None and div.layer.kind == "forward"
                      else "every layer agrees on the batch: the loss function differs")  # fmt: skip
        return div
    jl, tl = losses
    jg = _jax_grad_model(start.jax_model, jl, start.jax_batch)
    tg = _torch_grad_model(start.torch_model, tl, start.torch_batch)
    rg = _torch_grad_model(ref, tl, _float64(start.torch_batch)) if ref is not None else None
    grads, _ = split_params(param_diffs(jg, tg, mapping, rtol, atol, rg), tg)
    g = first_apart(grads, atol, backward=True)
    if g is not None:
        div.kind, div.name, div.grad = "grad", torch_name(g), g
        div.detail = f"the gradients differ (max abs {g.max_abs_err:.2g}): a backward-only difference"
        if div.layer is not None and div.layer.kind == "forward":
            div.detail += f"; the forward pass differs first at {div.layer.name}"
        return div
    div.layer = None  # equal gradients: no layer is to blame
    if p is not None and when == "after":
        updates, _ = split_params(param_diffs(_jax_update_model(start.jax_model, jax_model),
                                              _torch_update_model(start.torch_model, torch_model), mapping, rtol, atol), torch_model)  # fmt: skip
        u = next((d for d in updates if torch_name(d) == div.name), None)
        if u is not None and u.torch_at_worst:
            div.update_ratio = float(u.jax_at_worst) / float(u.torch_at_worst)
    ratio = f"; Flax's update / torch's = {div.update_ratio:.4g} at its worst element" if div.update_ratio is not None else ""
    div.detail = f"equal gradients, different updates: the optimizer or its schedule{ratio}"
    return div
