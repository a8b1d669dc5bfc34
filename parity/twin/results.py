"""What a twin run returns: the per-step records (:class:`jaxloss.parity.training.TrainingStep`), the
first failure (both models before it) and its diagnosis, read from
:func:`jaxloss.parity.compare_training`'s :class:`~jaxloss.parity.training.Divergence`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from jaxloss.parity.training import Divergence, TrainingReport, TrainingStep
from jaxloss.parity.training.diagnosis import torch_name

__all__ = ["TwinDiagnosis", "TwinFailure", "TwinResult", "TwinStep"]

TwinStep = TrainingStep  # one step of the twin: the record compare_training keeps for every user


@dataclass
class TwinFailure:
    """The first step outside tolerance: both models as they were before it, and its batch.

    ``flax_model`` (train mode) and ``torch_model`` hold the states the step started from,
    ``reference_model`` the float64 torch copy's (``None`` without the reference run);
    ``jax_args`` / ``torch_args`` are the batch each model takes (NHWC / NCHW), so the step
    can be re-run or compared layer by layer.

    >>> from jaxloss.parity.twin import TwinFailure
    >>> list(TwinFailure.__dataclass_fields__)
    ['step', 'flax_model', 'torch_model', 'x', 'y', 'reference_model']
    """

    step: int
    flax_model: nnx.Module
    torch_model: torch.nn.Module
    x: np.ndarray  # NHWC
    y: np.ndarray
    reference_model: torch.nn.Module | None = None

    @property
    def jax_args(self) -> tuple[jax.Array]:
        return (jnp.asarray(self.x),)

    @property
    def torch_args(self) -> tuple[torch.Tensor]:
        dtype = next(self.torch_model.parameters()).dtype
        return (torch.from_numpy(self.x.transpose(0, 3, 1, 2).copy()).to(dtype),)


@dataclass
class TwinDiagnosis:
    """Where the first step outside tolerance diverged: a parameter, a layer, and torch's own float32 error there.

    Read from :class:`jaxloss.parity.training.Divergence` (:meth:`from_divergence`). ``parameter``:
    the first parameter (or BatchNorm statistic) out of tolerance, in torch's naming: before
    the step in forward order when the models already differed then (``parameter_when ==
    "before"``), else after it in backward order. ``layer`` / ``kind``: the first layer out of
    tolerance when both models, as they were before the step, run on the step's batch
    (:func:`jaxloss.parity.compare_models`; kind ``"forward"`` or ``"grad"``); ``None`` when every
    layer agrees. ``*_torch_ref_passed``: whether torch's float32 run is within tolerance of its
    float64 run there (``None`` without the reference run). ``flax_only_layer`` / ``flax_only_kind``:
    the first layer where Flax's float32 run alone leaves float64; ``routing``: there a gradient
    is exactly 0 on one side only (a ReLU / max-pool near-tie decided differently).
    ``cause``: compare_training's kind (``"loss"``, ``"grad"`` or ``"update"``).

    >>> from jaxloss.parity.twin import TwinDiagnosis
    >>> d = TwinDiagnosis(3, "model.2.weight", "after", True, "conv2 (torch model.2)", "grad", 0.01, True)
    >>> print(d.line())
    first divergence at step 3: parameter model.2.weight (after the step); layer conv2 (torch model.2) (grad, max abs 0.01); torch's own float32 run also leaves float64 there: no
    """

    step: int
    parameter: str | None
    parameter_when: str | None  # "before" | "after" the step
    parameter_torch_ref_passed: bool | None
    layer: str | None
    kind: str | None
    layer_max_abs_err: float | None
    torch_ref_passed: bool | None
    flax_only_layer: str | None = None  # the first layer where Flax's float32 run alone leaves float64
    flax_only_kind: str | None = None
    routing: bool = False  # there, a gradient is exactly 0 on one side only (a ReLU / max-pool decision)
    cause: str | None = None  # compare_training's kind: loss | grad | update
    report: Any = field(default=None, repr=False, compare=False)  # the parity.models.ModelReport

    @classmethod
    def from_divergence(cls, div: Divergence) -> TwinDiagnosis:
        """The twin's reading of compare_training's divergence."""
        p, layer, own = div.param, (div.report.first_divergence if div.report is not None else None), div.flax_only
        return cls(
            step=div.step,
            parameter=torch_name(p) if p is not None and p.size else None,
            parameter_when=div.when if p is not None and p.size else None,
            parameter_torch_ref_passed=p.torch_ref_passed if p is not None else None,
            layer=layer.name if layer else None,
            kind=layer.kind if layer else None,
            layer_max_abs_err=layer.max_abs_err if layer else None,
            torch_ref_passed=layer.torch_ref_passed if layer else None,
            flax_only_layer=own.name if own else None,
            flax_only_kind=own.kind if own else None,
            routing=div.routing,
            cause=div.kind,
            report=div.report,
        )

    def line(self) -> str:
        """One line for the verdict."""
        par = f"parameter {self.parameter} ({self.parameter_when} the step)" if self.parameter else "no parameter out of tolerance"
        lay = (f"layer {self.layer} ({self.kind}, max abs {self.layer_max_abs_err:.2g})" if self.layer
               else "every layer within tolerance on the step's batch")  # fmt: skip
        ref = self.torch_ref_passed if self.layer else self.parameter_torch_ref_passed
        also = "no reference run" if ref is None else ("no" if ref else "yes")
        text = f"first divergence at step {self.step}: {par}; {lay}; torch's own float32 run also leaves float64 there: {also}"
        if self.flax_only_layer and self.flax_only_layer != self.layer:
            text += f"\nfirst layer where only Flax's float32 run leaves float64: {self.flax_only_layer} ({self.flax_only_kind})"
        if self.flax_only_layer and self.routing:
            text += (f"\n{self.flax_only_layer}: a gradient is 0 on one side only (a ReLU / max-pool decided differently): "
                     "likely a near-tie flip, not a port bug: see --dtype float64")  # fmt: skip
        return text

    def to_json(self) -> dict[str, Any]:
        own = {k: v for k, v in asdict(self).items() if k != "report"}
        return {**own, "line": self.line(), "report": self.report.to_json() if self.report is not None else None}


@dataclass
class TwinResult:
    """Per-step records, the verdict, and the first failure (``None`` when every step passed).

    >>> from jaxloss.parity.twin import TwinResult, TwinStep
    >>> ok = TwinStep(1, 2.3, 2.3, 0.0, 1e-8, 1e-7, 0.0, True, within_tolerance=True)
    >>> bad = TwinStep(2, 2.2, 2.1, 0.1, 1e-2, 1e-1, 0.0, False)
    >>> r = TwinResult({}, 1.3e-6, 1e-5, [ok, bad], "cpu", 1.0)
    >>> r.passed, r.max_loss_diff
    (False, 0.1)
    """

    config: dict[str, Any]
    rtol: float
    atol: float
    steps: list[TrainingStep]
    device: str
    seconds: float
    first_failure: TwinFailure | None = None
    diagnosis: TwinDiagnosis | None = None  # of first_failure (None: every step passed, or --no-diagnose)
    training: TrainingReport | None = field(default=None, repr=False)  # compare_training's report

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.within_tolerance for s in self.steps)

    @property
    def max_loss_diff(self) -> float:
        return max(s.loss_diff for s in self.steps)

    @property
    def max_param_diff(self) -> float:
        return max(s.param_diff for s in self.steps)

    @property
    def max_buffer_diff(self) -> float:
        return max(s.buffer_diff for s in self.steps)
