"""What :func:`jaxloss.parity.compare_training` records: one :class:`TrainingStep` per step, the
:class:`Divergence` at the first step out of tolerance, the :class:`TrainingReport`, and the one
rule that decides a step (:func:`judge_step`).

The rule. *Strict*: the loss and every parameter / buffer element within ``atol + rtol |torch|``
(the dtype's tolerance from :mod:`jaxloss.parity.tolerances` unless given). Float32 training is
chaotic enough that rounding grows past that after a few steps, so with a float64 run of the
torch side (the *reference*) a step also passes when Flax stays as close to float64 as torch's
own float32 run does::

    max|p_jax - p_torch| <= atol + 2 max|p_torch - p_torch64|
    |loss_jax - loss_torch| <= atol + rtol |loss_torch| + 2 e_k

``e_k``: the largest ``|loss_torch - loss_torch64|`` of steps 1..k. Twice, because each framework
rounds on its own: two runs as accurate as torch's are up to twice its error apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Divergence", "StepStart", "TrainingReport", "TrainingStep", "judge_step", "within_reference"]


def within_reference(diff: float, torch_ref_err: float, atol: float) -> bool:
    """Whether a Flax-torch difference is no larger than two float32 runs as accurate as torch's can be apart.

    ``torch_ref_err``: torch's own float32 error against its float64 run at the same point.

    >>> within_reference(3e-6, 2e-6, 1e-5), within_reference(1e-3, 1e-6, 1e-5)
    (True, False)
    """
    return diff <= atol + 2 * torch_ref_err


@dataclass
class TrainingStep:
    """One step's numbers: both losses, the differences, and the bounds that decided it.

    Steps count from 1 (step ``k`` is the update made with the ``k``-th batch; its losses are
    the ones the two steps returned, computed before that update). ``param_diff``:
    ``max |p_jax - p_torch|`` over every parameter element after the step (layouts aligned, as
    :func:`jaxloss.parity.compare_params` pairs them); ``buffer_diff`` the same over buffers
    (BatchNorm statistics). The ``ref_*`` fields exist with the float64 reference run.

    >>> s = TrainingStep(step=1, loss_jax=2.3, loss_torch=2.3, loss_diff=0.0, param_diff=1e-8,
    ...                  param_rel_diff=1e-7, buffer_diff=0.0, strict=True, within_tolerance=True)
    >>> s.passed
    True
    """

    step: int
    loss_jax: float
    loss_torch: float
    loss_diff: float  # |loss_jax - loss_torch|
    param_diff: float  # max |p_jax - p_torch| over every parameter element
    param_rel_diff: float  # max over tensors of max|dp| / max|p_torch|
    buffer_diff: float  # max |buffer difference| (0 without buffers)
    strict: bool  # loss and every element within atol + rtol * |torch|
    loss_bound: float = 0.0  # the largest |dloss| the rule allows at this step
    param_bound: float = 0.0  # the largest max|dparam| the rule allows (strict: atol + rtol max|p|)
    ref_loss_diff: float | None = None  # |loss_torch - loss_torch64|: torch's own rounding error
    ref_param_diff: float | None = None  # max |p_torch - p_torch64|
    jax_ref_loss_diff: float | None = None  # |loss_jax - loss_torch64|: Flax's own rounding error
    jax_ref_param_diff: float | None = None  # max |p_jax - p_torch64|
    within_tolerance: bool = False

    @property
    def passed(self) -> bool:
        return self.within_tolerance


def judge_step(rec: TrainingStep, scale: float, rtol: float, atol: float, envelope: float | None) -> None:
    """Decide ``rec`` by the rule of the module docstring and fill in its bounds.

    ``scale``: the largest ``|p_torch|``; ``envelope``: ``e_k`` (``None`` without the reference run).

    >>> r = TrainingStep(1, 2.0, 2.0, 3e-5, 4e-5, 0.0, 0.0, strict=False, ref_param_diff=3e-5)
    >>> judge_step(r, 1.0, rtol=1.3e-6, atol=1e-5, envelope=2e-5); r.within_tolerance, round(r.param_bound, 9)
    (True, 7e-05)
    """
    rec.loss_bound = atol + rtol * abs(rec.loss_torch)
    rec.param_bound = atol + rtol * scale
    rec.within_tolerance = rec.strict
    if envelope is not None and rec.ref_param_diff is not None:
        rec.loss_bound += 2 * envelope
        rec.param_bound = max(rec.param_bound, atol + 2 * rec.ref_param_diff)
        rec.within_tolerance = rec.strict or (
            within_reference(rec.param_diff, rec.ref_param_diff, atol) and rec.loss_diff <= rec.loss_bound
        )
    if not (math.isfinite(rec.loss_diff) and math.isfinite(rec.param_diff)):  # NaN compares False: never a pass
        rec.within_tolerance = rec.strict = False


@dataclass
class StepStart:
    """The two models as they were before a step (copies), the float64 torch copy's, and the step's batch.

    >>> StepStart(None, None, None, (1,), (2,)).torch_batch
    (2,)
    """

    jax_model: Any
    torch_model: Any
    reference_model: Any
    jax_batch: tuple[Any, ...]
    torch_batch: tuple[Any, ...]


@dataclass
class Divergence:
    """The first step out of tolerance, and why.

    ``kind``: ``"loss"`` (the two steps' losses differ: the forward pass or the loss function),
    ``"grad"`` (equal losses, different gradients: a backward-only difference) or ``"update"``
    (equal gradients, parameters apart after the step: the optimizer or its schedule). Without
    ``losses=`` the gradients are not computed, so ``"update"`` then means only "the parameters
    moved apart" (``detail`` says so). ``name``: the parameter (torch's name): for ``"grad"`` the first
    whose gradient differs (backward order), else the first out of tolerance (``param``), before
    the step when the models already differed then (``when == "before"``), else after it, in
    backward order. ``layer``: the first layer out of tolerance when
    :func:`jaxloss.parity.compare_models` runs both pre-step models on the batch (``None``: every
    layer agrees, or no ``losses``). ``update_ratio``: for ``"update"``, Flax's update over
    torch's at the parameter's worst element. ``flax_only`` / ``routing``: with the reference,
    the first layer where Flax's float32 run alone leaves float64 (by more than twice torch's
    error) and whether there a gradient is exactly 0 on one side only (a ReLU / max-pool near-tie
    decided differently). ``start``: what the step started from (:class:`StepStart`).

    >>> print(Divergence(3, "update", "fc.weight", detail="the optimizer or its schedule").line())
    first divergence at step 3 (update): parameter fc.weight; the optimizer or its schedule
    """

    step: int
    kind: str
    name: str | None
    layer: Any = None  # a LayerDiff, or None
    detail: str = ""
    when: str | None = None  # "before" | "after" the step
    param: Any = field(default=None, repr=False)  # the LayerDiff of the parameter out of tolerance (``when``)
    grad: Any = field(default=None, repr=False)  # for "grad": the LayerDiff of the gradient that differs
    update_ratio: float | None = None
    report: Any = field(default=None, repr=False)  # the ModelReport of the pre-step models
    flax_only: Any = None  # a LayerDiff
    routing: bool = False
    start: StepStart | None = field(default=None, repr=False)

    def line(self) -> str:
        """One line: the step, the kind, the parameter and the layer."""
        text = f"first divergence at step {self.step} ({self.kind})"
        if self.name:
            text += f": parameter {self.name}" + (f" ({self.when} the step)" if self.when == "before" and self.kind != "grad" else "")
        if self.layer is not None:
            text += f"; layer {self.layer.name} ({self.layer.kind}, max abs {self.layer.max_abs_err:.2g})"
        return text + (f"; {self.detail}" if self.detail else "")

    def to_json(self) -> dict[str, Any]:
        from jaxloss.parity.result import jsonable

        return jsonable({"step": self.step, "kind": self.kind, "name": self.name, "when": self.when,
                         "layer": self.layer.name if self.layer is not None else None, "detail": self.detail,
                         "update_ratio": self.update_ratio, "line": self.line()})  # fmt: skip


@dataclass
class TrainingReport:
    """The run: per-step records, the verdict and the first divergence.

    ``passed``: at least one step ran and every step is within tolerance (``message`` says why
    not when nothing was compared). ``print(report)``: the verdict, the first divergence, then the
    per-step table.

    >>> ok = TrainingStep(1, 2.3, 2.3, 0.0, 1e-8, 1e-7, 0.0, True, within_tolerance=True)
    >>> TrainingReport([ok], 1.3e-6, 1e-5, "float32").passed, TrainingReport([], 1.3e-6, 1e-5, "float32").passed
    (True, False)
    """

    steps: list[TrainingStep]
    rtol: float
    atol: float
    dtype: str
    first_divergence: Divergence | None = None
    reference: bool = False
    message: str = ""  # why nothing was compared
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.steps) and not self.message and all(s.within_tolerance for s in self.steps)

    def verdict(self) -> str:
        """``PASSED: 5 of 5 steps within float32 tolerance`` or how many failed and where first."""
        n, within = len(self.steps), sum(s.within_tolerance for s in self.steps)
        if not n or self.message:
            return f"FAILED: {self.message or 'no step ran (batches was empty)'}"
        if self.passed:
            return f"PASSED: {n} of {n} steps within {self.dtype} tolerance"
        first = next(s.step for s in self.steps if not s.within_tolerance)
        return f"FAILED: {n - within} of {n} steps outside {self.dtype} tolerance (first: step {first})"

    def __str__(self) -> str:
        from jaxloss.parity.training.table import format_table

        lines = [self.verdict()]
        if self.first_divergence is not None:
            lines.append(self.first_divergence.line())
        if self.steps:
            lines.append(format_table(self.steps))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "dtype": self.dtype, "rtol": self.rtol, "atol": self.atol,
                "reference": self.reference, "message": self.message, "steps": [asdict(s) for s in self.steps],
                "first_divergence": self.first_divergence.to_json() if self.first_divergence else None}  # fmt: skip
