"""``compare_training``: a user's own JAX and torch training steps, run in lockstep and compared after every step."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from jaxloss.parity.training.diagnosis import clone_jax, diagnose, param_diffs, split_params
from jaxloss.parity.training.records import StepStart, TrainingReport, TrainingStep, judge_step

__all__ = ["compare_training"]


def _pair(value: Any, name: str, what: str) -> tuple[Any, Any]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"{name} must be a pair {what}, got {type(value).__name__}")
    return value[0], value[1]


def _check(jax_step: Any, torch_step: Any, jax_side: Any, torch_side: Any, steps: Any, losses: Any,
           rtol: Any, atol: Any, reference: Any, inputs: Any) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """``TypeError`` / ``ValueError`` naming the argument that is not what it must be."""
    from flax import nnx
    from jaxloss.parity.models.golden import is_torch_model
    from jaxloss.parity.tolerances import check_tolerance

    for name, f in (("jax_step", jax_step), ("torch_step", torch_step)):
        if not callable(f):
            raise TypeError(f"{name} must be a callable (model, optimizer, *batch) -> loss, got {type(f).__name__}")
    jm, jopt = _pair(jax_side, "jax_side", "(flax_model, nnx_optimizer)")
    tm, topt = _pair(torch_side, "torch_side", "(torch_model, torch_optimizer)")
    if not isinstance(jm, nnx.Module):
        raise TypeError(f"jax_side[0] must be a flax.nnx.Module, got {type(jm).__name__}")
    if not is_torch_model(tm):
        raise TypeError(f"torch_side[0] must be a torch.nn.Module, got {type(tm).__name__}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be None or a positive integer, got {steps!r}")
    if losses is not None:
        for side, f in zip(("jax", "torch"), _pair(losses, "losses", "(jax_loss, torch_loss)")):
            if not callable(f):
                raise TypeError(f"losses must hold two callables loss(model, *batch) -> scalar; the {side} one is a "
                                f"{type(f).__name__}")  # fmt: skip
    for name, v in (("rtol", rtol), ("atol", atol)):
        if v is not None:
            check_tolerance(name, v)
    if not (isinstance(reference, bool) or (isinstance(reference, (tuple, list)) and len(reference) == 2
                                            and is_torch_model(reference[0]))):  # fmt: skip
        raise TypeError(f"reference must be True, False or a pair (torch_model_float64, its optimizer), got "
                        f"{type(reference).__name__}")  # fmt: skip
    if isinstance(inputs, bool) or not isinstance(inputs, int) or inputs < 1:
        raise ValueError(f"inputs must be a positive integer (how many leading batch elements the models take), got {inputs!r}")
    return jm, jopt, tm, topt


def _dtype(torch_model: Any) -> str:
    p = next((p for p in torch_model.parameters() if p.is_floating_point()), None)
    return str(p.dtype).removeprefix("torch.") if p is not None else "float32"


def _float64_side(tm: Any, topt: Any) -> tuple[Any, Any]:
    """A float64 copy of the torch model and its optimizer (one deepcopy, so the optimizer holds the copy's parameters)."""
    import torch

    ref, opt = copy.deepcopy((tm, topt))
    ref.double()  # in place: the optimizer's parameters are the same objects
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "step":
                state[k] = v.double()
    return ref, opt


def _as_batch(b: Any, name: str, k: int) -> tuple[Any, ...]:
    return tuple(b) if isinstance(b, (tuple, list)) else (b,)


def _float64(batch: tuple[Any, ...]) -> tuple[Any, ...]:
    import torch

    return tuple(t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in batch)


def _scalar(v: Any, name: str, k: int) -> float:
    try:
        return float(v.detach()) if hasattr(v, "detach") else float(np.asarray(v))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must return the step's loss as a scalar; at step {k} it returned {type(v).__name__}") from e


def _torch_scale(tm: Any) -> dict[str, float]:
    return {n: float(p.detach().abs().max()) if p.numel() else 0.0 for n, p in tm.named_parameters()}


def compare_training(
    jax_step: Callable[..., Any],
    torch_step: Callable[..., Any],
    jax_side: tuple[Any, Any],
    torch_side: tuple[Any, Any],
    batches: Iterable[tuple[Any, Any]],
    *,
    steps: int | None = None,
    losses: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    reference: Any = False,
    mapping: Mapping[str, str] | None = None,
    inputs: int = 1,
    on_step: Callable[[TrainingStep], None] | None = None,
) -> TrainingReport:
    """Run a Flax NNX training step and its torch original in lockstep; compare after every step.

    Args:
        jax_step: ``jax_step(model, optimizer, *jax_batch) -> loss``, the user's own step (an
            ``nnx.Optimizer`` update, ``@nnx.jit`` or not), updating both in place.
        torch_step: ``torch_step(model, optimizer, *torch_batch) -> loss``
            (``zero_grad`` / ``backward`` / ``step``), likewise.
        jax_side, torch_side: ``(flax_model, nnx_optimizer)`` and ``(torch_model, torch_optimizer)``,
            starting from the same weights.
        batches: ``(jax_batch, torch_batch)`` pairs, each a tuple of arrays in its own layout.
        steps: stop after this many (default: every batch).
        losses: ``(jax_loss, torch_loss)``, each ``loss(model, *batch) -> scalar``: at the first
            step out of tolerance the gradients are compared on copies of the pre-step models,
            which tells a gradient difference (``"grad"``) from an optimizer one (``"update"``).
        rtol, atol: default: :func:`jaxloss.parity.tolerance_for` the torch model's dtype.
        reference: float32 only. ``True`` trains a float64 copy of the torch side in lockstep
            (or pass that copy: ``(torch_model64, its_optimizer)``); a step then also passes while
            Flax is no farther from float64 than torch's own float32 run allows
            (:mod:`jaxloss.parity.training.records`). The copy's optimizer must reach any
            schedule through itself: ``torch_step`` gets the copy's optimizer. Ignored in float64.
        mapping: ``{jax_path: torch_name}`` for layers whose names differ (as :func:`compare_params`).
        inputs: how many leading batch elements the models take (the rest are targets), for the
            layer-by-layer comparison of the diverged step.
        on_step: called with each finished :class:`TrainingStep` (e.g. to stop on Ctrl-C).

    Returns:
        A :class:`TrainingReport`: ``passed``, ``first_divergence`` (``None`` or a
        :class:`Divergence`: ``.step``, ``.kind``, ``.name``, ``.layer``, ``.detail``), ``steps``.
        No step, or no parameter paired: not passed, with the reason. Steps count from 1.

    Raises:
        TypeError / ValueError naming the argument that is not what it must be.

    >>> import numpy as np, optax, torch
    >>> from flax import nnx
    >>> from jaxloss import parity
    >>> jm = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    >>> tm = torch.nn.Linear(3, 1)
    >>> with torch.no_grad():
    ...     _ = tm.weight.copy_(torch.tensor(np.asarray(jm.kernel[...]).T)), tm.bias.copy_(torch.tensor(np.asarray(jm.bias[...])))
    >>> def jax_step(m, opt, x, y):
    ...     loss, g = nnx.value_and_grad(lambda m: ((m(x) - y) ** 2).mean())(m)
    ...     opt.update(m, g)
    ...     return loss
    >>> def torch_step(m, opt, x, y):
    ...     opt.zero_grad(); loss = ((m(x) - y) ** 2).mean(); loss.backward(); opt.step()
    ...     return loss
    >>> x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    >>> batches = [((x, y), (torch.tensor(x), torch.tensor(y)))] * 3
    >>> r = parity.compare_training(jax_step, torch_step, (jm, nnx.Optimizer(jm, optax.sgd(0.1), wrt=nnx.Param)),
    ...                             (tm, torch.optim.SGD(tm.parameters(), lr=0.1)), batches)
    >>> r.passed, len(r.steps), r.first_divergence
    (True, 3, None)
    """
    from jaxloss.parity.tolerances import tolerance_for

    jm, jopt, tm, topt = _check(jax_step, torch_step, jax_side, torch_side, steps, losses, rtol, atol, reference, inputs)
    start_time = time.perf_counter()
    dtype = _dtype(tm)
    tol = tolerance_for(dtype)
    rtol = tol.rtol if rtol is None else float(rtol)
    atol = tol.atol if atol is None else float(atol)
    use_ref = reference is not False and dtype == "float32"
    ref, ropt = (_float64_side(tm, topt) if reference is True else tuple(reference)) if use_ref else (None, None)
    records: list[TrainingStep] = []
    divergence = None
    envelope = 0.0
    message = ""
    try:
        iterator = iter(batches)
    except TypeError:
        raise TypeError(f"batches must be an iterable of (jax_batch, torch_batch) pairs, got {type(batches).__name__}") from None
    for k, pair in enumerate(iterator, 1):
        if steps is not None and k > steps:
            break
        jb, tb = (_as_batch(b, n, k) for b, n in zip(_pair(pair, f"batches[{k - 1}]", "(jax_batch, torch_batch)"),
                                                     ("jax_batch", "torch_batch")))  # fmt: skip
        start = None
        if divergence is None:  # what the first diverging step started from
            start = StepStart(clone_jax(jm), copy.deepcopy(tm), copy.deepcopy(ref) if ref is not None else None, jb, tb)
        lj = _scalar(jax_step(jm, jopt, *jb), "jax_step", k)
        lt = _scalar(torch_step(tm, topt, *tb), "torch_step", k)
        lr = _scalar(torch_step(ref, ropt, *_float64(tb)), "torch_step (float64 reference)", k) if ref is not None else None
        diffs = param_diffs(jm, tm, mapping, rtol, atol, ref)
        params, buffers = split_params(diffs, tm)
        if not any(d.size for d in params):  # nothing paired: never a pass
            message = params[0].message if params and params[0].message else "no parameter was compared"
        scale = _torch_scale(tm)
        from jaxloss.parity.training.diagnosis import torch_name

        ldiff = abs(lj - lt)
        rec = TrainingStep(
            step=k, loss_jax=lj, loss_torch=lt, loss_diff=ldiff,
            param_diff=max((d.max_abs_err for d in params if d.size), default=0.0),
            param_rel_diff=max((d.max_abs_err / (scale.get(torch_name(d)) or 1.0) for d in params if d.size), default=0.0),
            buffer_diff=max((d.max_abs_err for d in buffers if d.size), default=0.0),
            strict=bool(ldiff <= atol + rtol * abs(lt) and all(d.passed for d in diffs)) and not message,
        )  # fmt: skip
        if lr is not None:
            rec.ref_loss_diff, rec.jax_ref_loss_diff = abs(lt - lr), abs(lj - lr)
            rec.ref_param_diff = max((d.torch_ref_abs or 0.0 for d in params if d.size), default=0.0)
            rec.jax_ref_param_diff = max((d.jax_ref_abs or 0.0 for d in params if d.size), default=0.0)
            envelope = max(envelope, rec.ref_loss_diff)
        judge_step(rec, max(scale.values(), default=0.0), rtol, atol, envelope if lr is not None else None)
        if message:
            rec.within_tolerance = False
        records.append(rec)
        if on_step is not None:
            on_step(rec)
        if divergence is None and not rec.within_tolerance and start is not None:
            loss_apart = not (ldiff <= rec.loss_bound) or not math.isfinite(ldiff)
            divergence = diagnose(start, k, diffs, jm, tm, losses=losses, loss_apart=loss_apart, mapping=mapping,
                                  rtol=rtol, atol=atol, inputs=inputs)  # fmt: skip
        if message:
            break
    if not records and not message:
        message = "no step ran: batches was empty" if steps is None or steps else "no step ran"
    return TrainingReport(records, rtol, atol, dtype, divergence, ref is not None, message,
                          time.perf_counter() - start_time)  # fmt: skip
