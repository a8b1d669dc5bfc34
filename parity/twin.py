"""Cross-framework twin run: the shipped train step and its torch twin, trained in lockstep.

``python -m jaxloss.parity.twin --model seed-cnn --steps 50 --out DIR``

The Flax side is what ``python -m jaxloss.train`` runs: the model, optimizer with schedule and loss
built by :mod:`jaxloss.train.recipe` from a :class:`jaxloss.train.config.TrainConfig` (the same flags as
``python -m jaxloss.train``: ``--optimizer --lr --momentum --lr-schedule --loss --gamma`` ...),
stepped by the compiled :func:`jaxloss.train.step.make_train_step`. The torch side is the same
network in plain ``torch.nn`` (:mod:`jaxloss.train.torch_models`), ``torch.optim`` with its
scheduler and torch's criterion of the same name, fed as :data:`jaxloss.train.losses.LOSSES` says.
Both start from the same weights (the torch twin's fresh torch-default initialisation,
converted with :func:`jaxloss.train.convert.torch_to_flax`) and see the same batches in the same
order. After every step the run records the two losses, their difference and
the largest parameter difference (Flax weights in torch layout against torch's), and the
largest BatchNorm running-statistics difference. It prints a table and writes
``twin.md`` (the table), ``twin.json`` (every number and the configuration) and
``twin.png`` (the differences per step, log scale, with the tolerance) to ``--out``.

Data: synthetic CIFAR-shaped batches, no augmentation and no download. Each class has a
fixed random image template; an example is its class template plus unit Gaussian noise,
labels uniform. ``--steps`` distinct batches are drawn from ``--seed`` with NumPy, so
the run is reproducible and the loss goes down (there is something to learn).

Tolerance. *Strict*: the loss and every parameter element within ``atol + rtol * |torch|``
(parity's float32 table, :mod:`jaxloss.parity.tolerances`; ``--rtol`` / ``--atol`` change it).
That holds for the first steps only: float32 training is chaotic enough that rounding
differences grow, and a discrete event (a max-pool window whose two largest inputs are
within rounding of each other, a ReLU input within rounding of 0) moves a gradient by far
more than rounding. So the run also trains a float64 copy of the torch model (the
*reference*, ``--no-reference`` skips it) and measures torch's own float32 error on the
same trajectory. A step is *within float32 tolerance* when it is strict, or when the
Flax-torch difference is no larger than that error allows:
``max|p_jax - p_torch| <= atol + 2 max|p_torch - p_torch64|`` and
``|dloss| <= atol + rtol |loss| + 2 e_k`` (``e_k``: the largest ``|loss_torch -
loss_torch64|`` so far; twice because each framework rounds on its own). The table also
gives Flax's own error, ``max|p_jax - p_torch64|``, next to torch's. ``--dtype float64``
runs both frameworks in float64, where they agree to float64 rounding at every step:
the arithmetic is the same, the float32 differences are rounding. The exit status is 1
when a step is outside the tolerance.

What the rule cannot absorb is a discrete event on one side only: when Flax's float32 run
decides a near-tie differently from torch's float32 run *and* from the float64 run, Flax's
error jumps by orders of magnitude at that step while torch's does not, and the step
fails. Which run flips depends on the seed and on rounding details (e.g. which XLA:CPU
convolution is used): ResNet-18 at batch 32, seeds 0-3, 3 steps, flipped in Flax's run for
seeds 1 and 2 with XLA's default options and for seeds 0, 2 and 3 with
:func:`jaxloss.train.step.compiler_options`; the seed CNN's 50 steps (seed 0) are strict at 11
steps with the defaults and at 49 with those options. ``--dtype float64`` is the
flip-free comparison.

Diagnosis (``--no-diagnose`` skips it). At the first step outside tolerance, once per run,
:func:`diagnose` names the first parameter out of tolerance (:func:`jaxloss.parity.compare_params`) and
the first layer (:func:`jaxloss.parity.compare_models` on the two models as they were before the step,
fed that step's batch: forward order, then backward order), with whether torch's own float32
run leaves its float64 run there too, and the first layer where only Flax's float32 run leaves
float64 (by more than twice torch's error there). It is printed under the verdict and stored in
``TwinResult.diagnosis``, ``twin.json`` and ``twin.md``. ResNet-18, float32, seed 0, step 2::

    first divergence at step 2: parameter layer4.1.conv2.weight (after the step); layer layer1.1 (forward, max abs 1.2e-05); torch's own float32 run also leaves float64 there: no
    first layer where only Flax's float32 run leaves float64: layer4.1.bn2 (grad)
    layer4.1.bn2: a gradient is 0 on one side only (a ReLU / max-pool decided differently): likely a near-tie flip, not a port bug: see --dtype float64

``layer1.1`` is float32 rounding over the strict per-layer tolerance (1.1 times it, 2 of
131072 elements; Flax within tolerance of float64 there too). The flip is the ReLU closing
block ``layer4.1`` (the gradient reaching ``bn2``): its input ``bn2 + identity`` at
``[3, 67, 0, 0]`` (NCHW) is 3.4e-6 in float64, 2.5e-6 in torch's float32 run and -1.9e-6 in
Flax's, within the float32 tolerance (atol 1e-5) of each other and of the tie at 0; it is
the only ReLU decision there where Flax and torch differ, and torch agrees with float64.

BatchNorm (ResNet-18): both models are in training mode on one device, so both normalise
with the statistics of the whole batch; the Flax BatchNorm is torch-exact (unbiased
running variance, torch momentum). Under data parallelism ``python -m jaxloss.train`` computes
statistics over the global batch (SyncBatchNorm), not per device as torch DDP does; the
twin compares the single-device case, where the two agree.

Precision: ``--precision ieee`` (the default) asks both frameworks for true float32
matmuls/convolutions (:func:`jaxloss.parity.precision`; the step is compiled with
``'highest'``), ``tf32`` for TF32 on both, ``default`` leaves each framework's own default.

Programmatic use: :func:`run_twin` returns a :class:`TwinResult` with one :class:`TwinStep`
per step, the verdict, and for the first step outside tolerance a :class:`TwinFailure`
holding both models as they were *before* that step and its batch, ready for a layer-by-layer
comparison (``parity.compare_models(f.flax_model, f.torch_model, f.jax_args, f.torch_args)``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from jaxloss.parity.cli import path_problem, remove_reports, stop_if_interrupted
from jaxloss.parity.precisions import precision as precision_mode
from jaxloss.parity.tolerances import check_tolerance, tolerance_flag, tolerance_for
from jaxloss.train.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Parser, fail, run_main
from jaxloss.train.config import ConfigError, TrainConfig, validate
from jaxloss.parity.weights import flax_state_dict, torch_to_flax
from jaxloss.train.losses import make_loss
from jaxloss.train.recipe import build_model, build_optimizer
from jaxloss.train.signals import SigintFlag
from jaxloss.train.step import make_train_step
from jaxloss.train.torch_models import TorchResNet18, TorchSeedCNN

__all__ = [
    "TwinConfig",
    "TwinDiagnosis",
    "TwinFailure",
    "TwinResult",
    "TwinStep",
    "check_config",
    "diagnose",
    "loss_pair",
    "main",
    "run_twin",
    "write_report",
]

PROG = "python -m jaxloss.parity.twin"
# The TrainConfig fields the twin shares with ``python -m jaxloss.train`` (same flags, same defaults).
SHARED_FIELDS = (
    "model", "activation", "cifar_stem", "batch_size", "epochs", "optimizer", "lr", "momentum", "dampening",
    "nesterov", "weight_decay", "betas", "eps", "amsgrad", "lr_schedule", "lr_step_size", "lr_gamma",
    "lr_min", "seed", "loss", "label_smoothing", "gamma", "alpha", "margin", "p", "delta", "beta", "out",
)  # fmt: skip
_JAX_PRECISION = {"ieee": "highest", "tf32": "tensorfloat32", "default": None}


# --------------------------------------------------------------------------- configuration
@dataclass
class TwinConfig:
    """A twin run: the training recipe (``train``) plus what only the twin has.

    >>> from jaxloss.parity.twin import TwinConfig
    >>> cfg = TwinConfig()
    >>> cfg.resolved_steps(), cfg.train.optimizer, cfg.train.effective_momentum, cfg.precision
    (50, 'sgd', 0.9, 'ieee')
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    steps: int | None = None  # None: 50 for seed-cnn, 10 for resnet18
    steps_per_epoch: int = 5  # the schedules step once per this many steps
    image_size: int = 32
    num_classes: int = 10
    dtype: str = "float32"  # float32 | float64 (float64 turns jax_enable_x64 on for the run)
    precision: str = "ieee"  # parity.precision mode: ieee | tf32 | default
    reference: bool = True  # also train a float64 torch copy: torch's own float32 error
    diagnose: bool = True  # at the first step outside tolerance: which parameter and layer diverged first
    rtol: float | None = None  # None: parity's tolerance for dtype
    atol: float | None = None

    def resolved_steps(self) -> int:
        return self.steps if self.steps is not None else (50 if self.train.model == "seed-cnn" else 10)


@dataclass
class TwinStep:
    """One step's numbers: both losses, the differences, and the bounds that decided it.

    >>> from jaxloss.parity.twin import TwinStep
    >>> s = TwinStep(step=1, loss_jax=2.3, loss_torch=2.3, loss_diff=0.0, param_diff=1e-8, param_rel_diff=1e-7,
    ...              buffer_diff=0.0, strict=True, within_tolerance=True)
    >>> s.within_tolerance
    True
    """

    step: int
    loss_jax: float
    loss_torch: float
    loss_diff: float  # |loss_jax - loss_torch|
    param_diff: float  # max |p_jax - p_torch| over every parameter element
    param_rel_diff: float  # max over tensors of max|dp| / max|p_torch|
    buffer_diff: float  # max |running stat difference| (0 without BatchNorm)
    strict: bool  # loss and every element within atol + rtol * |torch|
    loss_bound: float = 0.0  # the largest |dloss| the rule allows at this step
    param_bound: float = 0.0  # the largest max|dparam| the rule allows (strict: atol + rtol max|p|)
    ref_loss_diff: float | None = None  # |loss_torch - loss_torch64|: torch's own rounding error
    ref_param_diff: float | None = None  # max |p_torch - p_torch64|
    jax_ref_loss_diff: float | None = None  # |loss_jax - loss_torch64|: Flax's own rounding error
    jax_ref_param_diff: float | None = None  # max |p_jax - p_torch64|
    within_tolerance: bool = False


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

    ``parameter``: the first parameter (or BatchNorm statistic) out of tolerance, in torch's
    naming: before the step in forward order when the models already differed then
    (``parameter_when == "before"``), else after it in backward order, the order the
    update computes them (the first one the step moved apart). ``layer`` / ``kind``: the
    first layer out of tolerance when both models, as they were before the step, run on the
    step's batch (:func:`jaxloss.parity.compare_models`: forward order, then backward order; kind
    ``"forward"`` or ``"grad"``); ``None`` when every layer agrees (the update itself
    diverged). ``*_torch_ref_passed``: whether torch's float32 run is within tolerance of its
    float64 run there (``None`` without the reference run). In a deep float32 network the
    first layer out of tolerance can be rounding that torch's own run shares; so, with the
    reference, ``flax_only_layer`` / ``flax_only_kind`` name the first layer out of tolerance
    where Flax's float32 run is out of tolerance of the float64 run and torch's is not, Flax's
    error there more than twice torch's (the step rule of :func:`run_twin`, per layer), and
    ``routing`` says whether there the worst element is exactly 0 on one side only: a
    gradient that a ReLU or a max-pool routed differently, the signature of a near-tie flip
    (``--dtype float64`` tells it from a port bug).

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
    report: Any = field(default=None, repr=False, compare=False)  # the parity.models.ModelReport

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


def _flax_alone(d: Any) -> bool:
    """Out of tolerance, and Flax's float32 run leaves float64 where torch's does not, by more than twice torch's
    own error there (the twin's step rule, per layer: two runs as accurate as torch's are up to twice its error apart)."""
    return (not d.passed and d.torch_ref_passed is True and d.jax_ref_passed is False
            and (d.jax_ref_abs or 0.0) > 2 * (d.torch_ref_abs or 0.0))  # fmt: skip


def diagnose(failure: TwinFailure, after: Sequence[Any] = (), *, rtol: float | None = None,
             atol: float | None = None) -> TwinDiagnosis:  # fmt: skip
    """Name the parameter and the layer where ``failure``'s step diverged (see :class:`TwinDiagnosis`).

    ``after``: the parameter comparison of the models after the step
    (:func:`jaxloss.parity.compare_params`), used when they agreed before it.

    >>> from jaxloss.parity.twin import run_twin, diagnose
    >>> r = run_twin(steps=1, batch_size=2, reference=False, rtol=0.0, atol=1e-30, diagnose=False)  # no slack
    >>> d = diagnose(r.first_failure, rtol=0.0, atol=1e-30)
    >>> d.step, d.parameter, d.layer, d.kind  # equal weights, then float32 rounding in the first convolution
    (1, None, 'conv1 (torch model.0)', 'forward')
    """
    from jaxloss import parity
    from jaxloss.parity.models.twins import order_mapping

    mapping = order_mapping(failure.flax_model, failure.torch_model)
    tol = {"rtol": rtol, "atol": atol}
    before = _compare_params_now(failure.flax_model, failure.torch_model, failure.reference_model, rtol, atol)
    p, when = next((d for d in before if not d.passed), None), "before"
    if p is None:
        p, when = next((d for d in reversed(list(after)) if not d.passed), None), "after"
    report = parity.compare_models(failure.flax_model, failure.torch_model, failure.jax_args, failure.torch_args,
                                   mapping=mapping, reference=failure.reference_model, **tol)  # fmt: skip
    d = report.first_divergence
    own = next((x for x in report.layers if _flax_alone(x)), None)
    return TwinDiagnosis(
        step=failure.step,
        parameter=f"{p.torch_name}.{p.tensor}" if p else None,
        parameter_when=when if p else None,
        parameter_torch_ref_passed=p.torch_ref_passed if p else None,
        layer=d.name if d else None,
        kind=d.kind if d else None,
        layer_max_abs_err=d.max_abs_err if d else None,
        torch_ref_passed=d.torch_ref_passed if d else None,
        flax_only_layer=own.name if own else None,
        flax_only_kind=own.kind if own else None,
        routing=bool(own and own.n_bad and (own.jax_at_worst == 0) != (own.torch_at_worst == 0)),
        report=report,
    )


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
    steps: list[TwinStep]
    device: str
    seconds: float
    first_failure: TwinFailure | None = None
    diagnosis: TwinDiagnosis | None = None  # of first_failure (None: every step passed, or --no-diagnose)

    @property
    def passed(self) -> bool:
        return all(s.within_tolerance for s in self.steps)

    @property
    def max_loss_diff(self) -> float:
        return max(s.loss_diff for s in self.steps)

    @property
    def max_param_diff(self) -> float:
        return max(s.param_diff for s in self.steps)

    @property
    def max_buffer_diff(self) -> float:
        return max(s.buffer_diff for s in self.steps)


# --------------------------------------------------------------------------- losses
def _torch_focal_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
                      alpha: Any = None, gamma: float = 2.0) -> torch.Tensor:  # fmt: skip
    """jaxloss.focal_loss in torch ops: -alpha_y (1 - p_y)^gamma log p_y, mean over the batch."""
    logp_t = F.log_softmax(input, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -((-torch.expm1(logp_t)) ** gamma) * logp_t
    if alpha is not None:
        loss = loss * (alpha[target] if isinstance(alpha, torch.Tensor) and alpha.ndim else alpha)
    return {"mean": loss.mean, "sum": loss.sum}.get(reduction, lambda: loss)()


def _torch_sigmoid_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "none",
                              alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:  # fmt: skip
    """torchvision.ops.sigmoid_focal_loss in plain torch (torchvision does not import here)."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    loss = ce * ((1 - (p * targets + (1 - p) * (1 - targets))) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"mean": loss.mean, "sum": loss.sum}.get(reduction, lambda: loss)()


_TORCH_ONLY_FUNCTIONS = {"FocalLoss": _torch_focal_loss, "SigmoidFocalLoss": _torch_sigmoid_focal_loss}


def loss_pair(
    name: str, num_classes: int, **options: Any
) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    """``(jax_loss(logits, labels), torch_loss(logits, labels), target_kind)`` for a loss of :data:`jaxloss.train.losses.LOSSES`.

    The JAX side is the training loss (:func:`jaxloss.train.losses.make_loss`); the torch side is
    torch's criterion of the same name, fed as the table says. List-valued options
    (``alpha=[...]``) become arrays / tensors.

    >>> import jax.numpy as jnp, torch
    >>> from jaxloss.parity.twin import loss_pair
    >>> jl, tl, kind = loss_pair("kl_div", 3)
    >>> z, y = [[0.1, 0.2, 0.3]], [2]
    >>> kind, round(float(jl(jnp.array(z), jnp.array(y))), 4) == round(float(tl(torch.tensor(z), torch.tensor(y))), 4)
    ('onehot', True)
    """
    arrays = {k: v for k, v in options.items() if isinstance(v, (list, tuple))}
    plain = {k: v for k, v in options.items() if k not in arrays}
    loss = make_loss(name, **plain)
    spec = loss.spec
    if arrays:  # array options (class weights) bypass the scalar table check, on both sides
        loss = dataclasses.replace(loss, options=tuple(sorted({**dict(loss.options), **arrays}.items())))

    def jax_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
        opts = {k: jnp.asarray(v, logits.dtype) if k in arrays else v for k, v in loss.options}
        return dataclasses.replace(loss, options=tuple(opts.items()))(logits, y)

    def torch_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opts = {k: torch.tensor(v, dtype=logits.dtype) if k in arrays else v for k, v in loss.options}
        x = {"logits": lambda z: z, "log_softmax": lambda z: F.log_softmax(z, dim=1),
             "softmax": lambda z: F.softmax(z, dim=1), "sigmoid": torch.sigmoid}[spec.input](logits)  # fmt: skip
        if spec.target == "index":
            t = y
        elif spec.target == "multilabel_index":
            t = torch.full(logits.shape, -1, dtype=torch.long)
            t[:, 0] = y
        else:
            t = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
            t = 2 * t - 1 if spec.target == "pm1" else t
        fn = _TORCH_ONLY_FUNCTIONS.get(spec.criterion)
        if fn is not None:
            return fn(x, t, reduction=spec.reduction, **opts)
        return getattr(torch.nn, spec.criterion)(reduction=spec.reduction, **opts)(x, t)

    return jax_loss, torch_loss, "index" if spec.target == "index" else "onehot"


# --------------------------------------------------------------------------- data
def synthetic_batches(
    steps: int, batch_size: int, image_size: int, num_classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``steps`` batches ``(x NHWC float32, y int64)``: class template + N(0, 1) noise.

    >>> from jaxloss.parity.twin import synthetic_batches
    >>> [(x.shape, y.shape) for x, y in synthetic_batches(1, 2, 4, 3, 0)]
    [((2, 4, 4, 3), (2,))]
    """
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(num_classes, image_size, image_size, 3)).astype(np.float32)
    batches = []
    for _ in range(steps):
        y = rng.integers(0, num_classes, size=batch_size)
        x = templates[y] + rng.normal(size=(batch_size, image_size, image_size, 3)).astype(np.float32)
        batches.append((x.astype(np.float32), y.astype(np.int64)))
    return batches


# --------------------------------------------------------------------------- the two sides
def _torch_optimizer(cfg: TwinConfig, params: Any) -> tuple[torch.optim.Optimizer, Any]:
    t = cfg.train
    if t.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.effective_momentum,
                                                     dampening=t.dampening, nesterov=t.nesterov,
                                                     weight_decay=t.weight_decay or 0.0)  # fmt: skip
    else:
        cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
        kw = {} if t.weight_decay is None else {"weight_decay": t.weight_decay}
        opt = cls(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, amsgrad=t.amsgrad, **kw)
    sched = None
    if t.lr_schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, t.lr_step_size, t.lr_gamma)
    elif t.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, t.epochs, t.lr_min)
    return opt, sched


def _models(cfg: TwinConfig) -> tuple[nnx.Module, torch.nn.Module]:
    t = cfg.train
    torch.manual_seed(t.seed)
    if t.model == "seed-cnn":
        tm: torch.nn.Module = TorchSeedCNN(cfg.num_classes, activation=t.activation)
    else:
        tm = TorchResNet18(cfg.num_classes, cifar_stem=t.cifar_stem)
    fm = build_model(t, cfg.num_classes, initialise=False)  # the weights come from torch's twin
    torch_to_flax(tm, fm)
    tm.train()
    fm.train()
    return fm, tm


def _torch_layout(fm: nnx.Module, tm: torch.nn.Module) -> tuple[dict[str, np.ndarray], set[str]]:
    """Flax state in torch layout (float64 NumPy) and the names that are parameters (not buffers)."""
    ours = flax_state_dict(fm, tm)
    return {k: v.astype(np.float64) for k, v in ours.items() if np.issubdtype(v.dtype, np.floating)}, {
        n for n, _ in tm.named_parameters()
    }


def _torch_state(tm: torch.nn.Module) -> dict[str, np.ndarray]:
    return {
        k: v.detach().cpu().to(torch.float64).numpy()
        for k, v in tm.state_dict().items()
        if v.is_floating_point()
    }


def _diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys: set[str]) -> float:
    return max((float(np.abs(a[k] - b[k]).max()) for k in keys if a[k].size), default=0.0)


def _compare_params_now(fm: nnx.Module, tm: torch.nn.Module, ref: torch.nn.Module | None, rtol: float | None,
                        atol: float | None) -> list[Any]:  # fmt: skip
    """The parameter comparison of the live models (:func:`jaxloss.parity.compare_params`, paired as the twins are)."""
    from jaxloss import parity
    from jaxloss.parity.models.twins import order_mapping

    return parity.compare_params(fm, tm, mapping=order_mapping(fm, tm), reference=ref, rtol=rtol, atol=atol)


def _set_x64(on: bool) -> bool:
    before = bool(jax.config.read("jax_enable_x64"))
    if on != before:
        jax.config.update("jax_enable_x64", on)
    return before


def check_config(cfg: TwinConfig) -> None:
    """Raise :class:`jaxloss.train.config.ConfigError` for a setting the run cannot take (before any model is built).

    >>> from jaxloss.parity.twin import TwinConfig, check_config
    >>> check_config(TwinConfig(steps=0))
    Traceback (most recent call last):
    ...
    jaxloss.train.config.ConfigError: steps must be a positive integer, got 0
    """
    validate(cfg.train)
    for name in ("steps", "steps_per_epoch", "image_size", "num_classes"):
        v = cfg.resolved_steps() if name == "steps" else getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ConfigError(name, f"must be a positive integer, got {v!r}")
    if cfg.train.model == "seed-cnn" and cfg.image_size != 32:
        raise ConfigError("image_size", f"must be 32 for model seed-cnn (its first Linear takes 64*4*4 features), got {cfg.image_size}")
    if cfg.train.batch_size < 2:
        raise ConfigError("batch_size", f"must be at least 2 (BatchNorm needs two values per channel), got {cfg.train.batch_size}")
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError("dtype", f"must be float32 or float64, got {cfg.dtype!r}")
    if cfg.precision not in _JAX_PRECISION:
        raise ConfigError("precision", f"must be one of {', '.join(_JAX_PRECISION)}, got {cfg.precision!r}")
    for name in ("rtol", "atol"):
        if getattr(cfg, name) is not None:
            try:
                check_tolerance(name, getattr(cfg, name))
            except ValueError:
                raise ConfigError(name, f"must be a finite number >= 0, got {getattr(cfg, name)!r}") from None


def _step_bounds(rec: TwinStep, scale: float, atol: float, rtol: float, envelope: float | None) -> None:
    """Fill in the bounds of the rule that decides ``rec`` (see :func:`run_twin`)."""
    rec.loss_bound = atol + rtol * abs(rec.loss_torch)
    rec.param_bound = atol + rtol * scale
    if envelope is not None and rec.ref_param_diff is not None:
        rec.loss_bound += 2 * envelope
        rec.param_bound = max(rec.param_bound, atol + 2 * rec.ref_param_diff)


def run_twin(cfg: TwinConfig | None = None, *, on_step: Callable[[TwinStep], None] | None = None,
             **overrides: Any) -> TwinResult:
    """Train both twins ``cfg.resolved_steps()`` steps in lockstep; per-step differences.

    ``overrides`` set fields of ``cfg`` or of ``cfg.train`` by name; ``on_step`` is called
    with each finished step (the command line stops there on Ctrl-C). A step is *within
    tolerance* when it passes the strict check (the loss and every parameter element within
    ``atol + rtol * |torch|``, parity's table for ``dtype``) or, with the float64 reference,
    when the Flax-torch difference is no larger than the rounding error torch makes by
    itself: ``max|dparam| <= atol + 2 * max|p_torch - p_torch64|`` and ``|dloss| <= atol +
    rtol |loss| + 2 * e_k``, ``e_k`` the largest ``|loss_torch - loss_torch64|`` of steps
    1..k. (Twice: each framework rounds on its own, so two runs as accurate as torch's are
    up to twice its error apart.)

    >>> from jaxloss.parity.twin import run_twin
    >>> r = run_twin(steps=1, batch_size=2, reference=False)  # the seed CNN, one SGD step each side
    >>> r.passed, len(r.steps), r.first_failure is None
    (True, 1, True)
    """
    cfg = copy.deepcopy(cfg or TwinConfig())
    for k, v in overrides.items():
        target = cfg if hasattr(cfg, k) else cfg.train if hasattr(cfg.train, k) else None
        if target is None:
            raise TypeError(f"unknown twin option {k!r}")
        setattr(target, k, v)
    cfg.train.precision = "tf32" if cfg.precision == "tf32" else "fp32"  # the Flax model's compute dtype
    check_config(cfg)
    tol = tolerance_for(cfg.dtype)
    rtol = tol.rtol if cfg.rtol is None else cfg.rtol
    atol = tol.atol if cfg.atol is None else cfg.atol
    steps = cfg.resolved_steps()
    use_ref = cfg.reference and cfg.dtype == "float32"
    start = time.perf_counter()
    failure: TwinFailure | None = None
    after: list[Any] = []

    x64_before = _set_x64(True) if cfg.dtype == "float64" else None
    try:
        with precision_mode(cfg.precision):
            jdtype, tdtype = jnp.dtype(cfg.dtype), getattr(torch, cfg.dtype)
            fm, tm = _models(cfg)
            ref = copy.deepcopy(tm).double() if use_ref else None
            tm.to(tdtype)
            if cfg.dtype != "float32":
                # on the host: an on-device astype would compile one program per parameter shape
                floats = lambda a: jnp.asarray(np.asarray(a, jdtype)) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
                nnx.update(fm, jax.tree.map(floats, nnx.state(fm)))
            options = cfg.train.loss_options
            _, torch_loss, _ = loss_pair(cfg.train.loss, cfg.num_classes, **options)
            tx, _ = build_optimizer(cfg.train, cfg.steps_per_epoch)
            followers = [(tm, *_torch_optimizer(cfg, tm.parameters()))]
            if ref is not None:
                followers.append((ref, *_torch_optimizer(cfg, ref.parameters())))
            graphdef, params, rest = nnx.split(fm, nnx.Param, ...)
            opt_state = tx.init(params)
            sums = jnp.zeros(3, jdtype)
            loss = make_loss(cfg.train.loss, **options)
            train_step = make_train_step(graphdef, tx, loss, matmul_precision=_JAX_PRECISION[cfg.precision])
            batches = synthetic_batches(steps, cfg.train.batch_size, cfg.image_size, cfg.num_classes, cfg.train.seed)
            records: list[TwinStep] = []
            ref_loss_envelope = 0.0
            for i, (x, y) in enumerate(batches):
                before = None
                if failure is None:  # what the first failing step started from (copies: the step donates)
                    before = (jax.tree.map(np.array, (params, rest)), copy.deepcopy(tm), copy.deepcopy(ref))  # host copies
                params, rest, opt_state, sums, jloss = train_step(
                    params, rest, opt_state, sums, jnp.asarray(x, jdtype), jnp.asarray(y, jnp.int32)
                )
                t_losses = []
                for model, opt, sched in followers:
                    dtype = next(model.parameters()).dtype
                    opt.zero_grad(set_to_none=True)
                    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dtype)
                    t_loss = torch_loss(model(xt), torch.from_numpy(y))
                    t_loss.backward()
                    opt.step()
                    if sched is not None and (i + 1) % cfg.steps_per_epoch == 0:
                        sched.step()
                    t_losses.append(float(t_loss.detach()))
                nnx.update(fm, params, rest)
                ours, pnames = _torch_layout(fm, tm)
                theirs = _torch_state(tm)
                lj, lt = float(jloss), t_losses[0]
                ldiff = abs(lj - lt)
                strict = ldiff <= atol + rtol * abs(lt) and all(
                    bool(np.all(np.abs(ours[k] - theirs[k]) <= atol + rtol * np.abs(theirs[k]))) for k in ours
                )
                rec = TwinStep(
                    step=i + 1, loss_jax=lj, loss_torch=lt, loss_diff=ldiff,
                    param_diff=_diff(ours, theirs, pnames),
                    param_rel_diff=max((float(np.abs(ours[k] - theirs[k]).max() / (np.abs(theirs[k]).max() or 1.0))
                                        for k in pnames), default=0.0),
                    buffer_diff=_diff(ours, theirs, set(ours) - pnames), strict=bool(strict),
                )  # fmt: skip
                rec.within_tolerance = rec.strict
                envelope = None
                if ref is not None:
                    exact = _torch_state(ref)
                    rec.ref_loss_diff = abs(lt - t_losses[1])
                    rec.ref_param_diff = _diff(theirs, exact, pnames)
                    rec.jax_ref_loss_diff = abs(lj - t_losses[1])
                    rec.jax_ref_param_diff = _diff(ours, exact, pnames)
                    ref_loss_envelope = max(ref_loss_envelope, rec.ref_loss_diff)
                    envelope = ref_loss_envelope
                    rec.within_tolerance = rec.strict or (
                        rec.param_diff <= atol + 2 * rec.ref_param_diff
                        and ldiff <= atol + rtol * abs(lt) + 2 * ref_loss_envelope
                    )
                _step_bounds(rec, max((float(np.abs(theirs[k]).max()) for k in pnames), default=0.0), atol, rtol,
                             envelope)  # fmt: skip
                records.append(rec)
                if on_step is not None:
                    on_step(rec)
                if failure is None and not rec.within_tolerance and before is not None:
                    (p0, r0), tm0, ref0 = before
                    failure = TwinFailure(rec.step, nnx.merge(graphdef, *jax.tree.map(jnp.asarray, (p0, r0))), tm0, x, y,
                                          ref0)  # fmt: skip
                    if cfg.diagnose:  # the parameters as the step left them, for the diagnosis
                        after = _compare_params_now(fm, tm, ref, rtol, atol)
            diagnosis = diagnose(failure, after, rtol=rtol, atol=atol) if failure is not None and cfg.diagnose else None
    finally:
        if x64_before is not None:
            _set_x64(x64_before)
    config = {**cfg.train.to_json(), **{k: v for k, v in asdict(cfg).items() if k != "train"}, "steps": steps,
              "momentum": cfg.train.effective_momentum}  # fmt: skip
    return TwinResult(config, rtol, atol, records, jax.devices()[0].device_kind, time.perf_counter() - start,
                      failure, diagnosis)  # fmt: skip


# --------------------------------------------------------------------------- report
def _e(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def format_table(result: TwinResult, markdown: bool = False, width: int | None = None) -> str:
    """Per-step table. ``ref`` columns: torch float32 vs torch float64 (torch's own rounding
    error) and Flax float32 vs torch float64 (Flax's), when the reference ran. For a terminal
    ``width`` columns wide (default: :func:`jaxloss.parity.report.console_width`) the columns on the
    right are left out until a line fits; ``twin.md`` has them all."""
    from jaxloss.parity.report import Column, _fit, console_width

    has_ref = any(s.ref_param_diff is not None for s in result.steps)
    # the verdict first, then the differences; on a narrow terminal the columns on the right go first
    cols: list[tuple[str, Callable[[TwinStep], str]]] = [
        ("step", lambda s: str(s.step)),
        ("ok", lambda s: "yes" if s.within_tolerance else "NO"),
        ("strict", lambda s: "yes" if s.strict else "no"),
        ("loss (jax)", lambda s: f"{s.loss_jax:.7f}"),
        ("loss (torch)", lambda s: f"{s.loss_torch:.7f}"),
        ("|dloss|", lambda s: _e(s.loss_diff)),
        ("max |dparam|", lambda s: _e(s.param_diff)),
    ]
    if has_ref:
        cols += [("torch |dparam| vs f64", lambda s: _e(s.ref_param_diff)),
                 ("flax |dparam| vs f64", lambda s: _e(s.jax_ref_param_diff))]  # fmt: skip
    cols += [("max |dstat|", lambda s: _e(s.buffer_diff)), ("max rel dparam", lambda s: _e(s.param_rel_diff))]
    if has_ref:
        cols += [("torch |dloss| vs f64", lambda s: _e(s.ref_loss_diff)),
                 ("flax |dloss| vs f64", lambda s: _e(s.jax_ref_loss_diff))]  # fmt: skip
    head = [h for h, _ in cols]
    rows = [[cell(s) for _, cell in cols] for s in result.steps]
    if markdown:
        lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |", "|" + "---|" * len(head)]  # a bare | ends a cell
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    columns = [Column(str(j), h) for j, h in enumerate(head)]
    cells = [{str(j): v for j, v in enumerate(r)} for r in [head, *rows]]
    return "\n".join(_fit(cells, columns, width or console_width()))


def summary(result: TwinResult) -> str:
    """One paragraph: the run, the largest differences, torch's own float32 error and the verdict."""
    c = result.config
    opt = f"{c['optimizer']} (lr {c['lr']}"
    opt += f", momentum {c['momentum']})" if c["optimizer"] == "sgd" else ")"
    text = (
        f"twin run: {c['model']} / {opt} / {c['loss']}, {c['steps']} steps of batch {c['batch_size']} in "
        f"{c['dtype']} (precision {c['precision']}) on {result.device}: max |dloss| {result.max_loss_diff:.2e}, "
        f"max |dparam| {result.max_param_diff:.2e}, max |dstat| {result.max_buffer_diff:.2e}"
    )
    refs = [s for s in result.steps if s.ref_param_diff is not None]
    if refs:
        text += (
            f"; torch's own float32 error (vs float64): max |dloss| {max(s.ref_loss_diff for s in refs):.2e}, "  # type: ignore[type-var]
            f"max |dparam| {max(s.ref_param_diff for s in refs):.2e}; Flax's: max |dloss| "  # type: ignore[type-var]
            f"{max(s.jax_ref_loss_diff for s in refs):.2e}, max |dparam| {max(s.jax_ref_param_diff for s in refs):.2e}"  # type: ignore[type-var]
        )
    n, strict = len(result.steps), sum(s.strict for s in result.steps)
    within = sum(s.within_tolerance for s in result.steps)
    verdict = "within" if result.passed else "OUTSIDE"
    where = "at every step" if result.passed else f"at {n - within} step(s), first step {_first_failing(result)}"
    text += (
        f"; {verdict} {c['dtype']} tolerance {where} ({within}/{n} steps within; strict rtol "
        f"{result.rtol:g} / atol {result.atol:g}: {strict}/{n}"
    )
    if refs and strict < within:
        text += "; the other steps: no farther apart than twice torch's own float32 error vs float64"
    text += ")"
    if result.diagnosis is not None:
        text += "\n" + result.diagnosis.line()
    return text


def difference_kind(result: TwinResult) -> str:
    """What kind of difference a failed run shows, from its dtype and its diagnosis (a phrase)."""
    d = result.diagnosis
    if result.config.get("dtype") == "float64":
        return "a real divergence: float64 leaves no room for rounding"
    if d is None:
        return "not located (the diagnosis did not run)"
    if d.flax_only_layer and d.routing:
        return f"a ReLU / max-pool near-tie decided differently at {d.flax_only_layer} (float32 rounding)"
    if d.flax_only_layer:
        return f"Flax's float32 run alone leaves float64 at {d.flax_only_layer} (torch's does not): likely a porting difference"
    if (d.torch_ref_passed if d.layer else d.parameter_torch_ref_passed) is False:
        return "float32 rounding: torch's own float32 run leaves float64 there too"
    return "see the diagnosis below"


def verdict_line(result: TwinResult, exact_command: str = "") -> str:
    """The first line: passed, or how many steps failed, what kind of difference it is, and the
    command that compares exactly (float64)."""
    n, within = len(result.steps), sum(s.within_tolerance for s in result.steps)
    dtype = result.config.get("dtype", "")
    if result.passed:
        return f"PASSED: {n} of {n} steps within {dtype} tolerance"
    text = (f"FAILED: {n - within} of {n} steps outside {dtype} tolerance (first: step {_first_failing(result)}): "
            f"{difference_kind(result)}")
    if exact_command and dtype != "float64":
        text += f". Exact comparison: {exact_command}"
    return text


def _first_failing(result: TwinResult) -> int | None:
    return next((s.step for s in result.steps if not s.within_tolerance), None)


def _log_series(ax: Any, steps: list[int], values: list[float], floor: float, **kw: Any) -> None:
    """Nonzero values on the log axis; exact zeros as hollow markers on the axis floor, labelled so."""
    v = np.asarray(values, dtype=float)
    s = np.asarray(steps)
    line = ax.semilogy(s, np.where(v > 0, v, np.nan), **kw)[0]
    if np.any(v == 0):
        ax.semilogy(s[v == 0], np.full(int((v == 0).sum()), floor), ls="none", marker="v", mfc="none",
                    color=line.get_color(), label=f"{kw.get('label', '')} = 0 exactly")  # fmt: skip


def plot(result: TwinResult, path: Path) -> None:
    """``twin.png``: the two loss curves, and the differences per step against the band that decides pass/fail."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = result.steps
    steps = [s.step for s in st]
    positive = [v for s in st for v in (s.loss_diff, s.param_diff, s.param_bound, s.buffer_diff) if v > 0]
    floor = min(positive) / 10 if positive else 1e-16
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    ax0.plot(steps, [s.loss_jax for s in st], label="Flax / optax (the shipped step)")
    ax0.plot(steps, [s.loss_torch for s in st], "--", label="torch")
    ax0.set(xlabel="step", ylabel="loss", title="training loss")
    ax0.legend(loc="upper left", bbox_to_anchor=(0.0, -0.15), ncol=2, fontsize="small")
    ax1.fill_between(steps, floor, [s.param_bound for s in st], color="tab:green", alpha=0.15, step="mid",
                     label="allowed max |dparam| (pass/fail band)")  # fmt: skip
    ax1.plot(steps, [s.loss_bound for s in st], color="tab:blue", lw=0.8, ls=":", label="allowed |dloss|")
    _log_series(ax1, steps, [s.loss_diff for s in st], floor, marker="o", ms=3, color="tab:blue", label="|dloss|")
    _log_series(ax1, steps, [s.param_diff for s in st], floor, marker="s", ms=3, color="tab:orange",
                label="max |dparam|")  # fmt: skip
    if any(s.ref_param_diff is not None for s in st):
        _log_series(ax1, steps, [s.ref_param_diff or 0.0 for s in st], floor, color="k", ls="--", lw=1,
                    label="max |dparam| torch f32 vs f64")  # fmt: skip
    if any(s.buffer_diff for s in st):
        _log_series(ax1, steps, [s.buffer_diff for s in st], floor, marker="^", ms=3, color="tab:red",
                    label="max |dBN stat|")  # fmt: skip
    failing = [s.step for s in st if not s.within_tolerance]
    for k in failing:
        ax1.axvline(k, color="red", alpha=0.3, lw=1)
    ax1.set_ylim(bottom=floor / 2)
    n, within = len(st), sum(s.within_tolerance for s in st)
    ax1.set(xlabel="step", ylabel="absolute difference Flax - torch",
            title=f"{within}/{n} steps within tolerance" + (f"; first outside: step {failing[0]}" if failing else ""))  # fmt: skip
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    c = result.config
    opt = f"{c['optimizer']} lr {c['lr']:g}"
    if c["optimizer"] == "sgd" and c["momentum"]:
        opt += f" momentum {c['momentum']:g}"
    verdict = "PASSED" if result.passed else f"{n - within} of {n} steps outside tolerance: {difference_kind(result)}"
    fig.suptitle(f"twin run: {c['model']}, {opt}, {c['loss']}, batch {c['batch_size']}, {c['dtype']}\n{verdict}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: TwinResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``twin.md``, ``twin.json`` and ``twin.png`` into ``out``; returns their paths.

    >>> import tempfile
    >>> from jaxloss.parity.twin import TwinResult, TwinStep, write_report
    >>> step = TwinStep(1, 2.3, 2.3, 0.0, 1e-8, 1e-7, 0.0, True, param_bound=1e-5, loss_bound=1e-5,
    ...                 within_tolerance=True)
    >>> config = {"model": "seed-cnn", "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "loss": "cross_entropy",
    ...           "steps": 1, "batch_size": 2, "dtype": "float32", "precision": "ieee"}
    >>> sorted(write_report(TwinResult(config, 1.3e-6, 1e-5, [step], "cpu", 1.0), tempfile.mkdtemp()))
    ['json', 'md', 'png']
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "twin.md", "json": out_dir / "twin.json", "png": out_dir / "twin.png"}
    paths["md"].write_text(f"{summary(result).replace(chr(10), chr(10) * 2)}\n\n{format_table(result, markdown=True)}\n")
    payload = {
        "config": result.config,
        "rtol": result.rtol,
        "atol": result.atol,
        "device": result.device,
        "seconds": result.seconds,
        "passed": result.passed,
        "first_failing_step": _first_failing(result),
        "max_loss_diff": result.max_loss_diff,
        "max_param_diff": result.max_param_diff,
        "max_buffer_diff": result.max_buffer_diff,
        "steps": [asdict(s) for s in result.steps],
        "diagnosis": result.diagnosis.to_json() if result.diagnosis is not None else None,
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(result, paths["png"])
    return paths


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The twin's flags: ``python -m jaxloss.train``'s for the shared settings, plus the twin's own."""
    from jaxloss.train.__main__ import add_config_arguments

    p = Parser(
        prog=PROG,
        description="Train the shipped Flax train step and its torch twin in lockstep on synthetic batches; "
        "report the differences.",
    )
    add_config_arguments(p.add_argument_group("the training recipe (as python -m jaxloss.train)"), SHARED_FIELDS,
                         defaults={"out": None})  # fmt: skip
    g = p.add_argument_group("the twin")
    g.add_argument("--steps", type=int, default=None, help="default: 50 (seed-cnn), 10 (resnet18)")
    g.add_argument("--steps-per-epoch", type=int, default=5, help="schedules step once per this many steps (default: %(default)s)")
    g.add_argument("--image-size", type=int, default=32, help="square image side; seed-cnn needs 32 (default: %(default)s)")
    g.add_argument("--num-classes", type=int, default=10, help="(default: %(default)s)")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="float64 runs both frameworks in double precision, the exactness check (default: %(default)s)")
    g.add_argument("--precision", choices=list(_JAX_PRECISION), default="ieee",
                   help="float32 matmul/convolution precision of both frameworks (parity.precision; default: %(default)s)")
    g.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the float64 torch reference run (torch's own float32 error)")
    g.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                   help="skip the layer-by-layer diagnosis of the first step outside tolerance (parity.compare_models)")
    g.add_argument("--rtol", type=tolerance_flag, default=None, help="default: parity.tolerances for --dtype")
    g.add_argument("--atol", type=tolerance_flag, default=None, help="default: parity.tolerances for --dtype")
    return p  # fmt: skip


def config_from_args(argv: Sequence[str] | None = None) -> TwinConfig:
    """The :class:`TwinConfig` of a command line.

    >>> from jaxloss.parity.twin import config_from_args
    >>> cfg = config_from_args(["--model", "resnet18", "--momentum", "0.5", "--dtype", "float64"])
    >>> cfg.train.model, cfg.train.momentum, cfg.dtype, cfg.resolved_steps()
    ('resnet18', 0.5, 'float64', 10)
    """
    args = vars(build_parser().parse_args(argv))
    from jaxloss.train.__main__ import config_values

    shared = config_values({k: args.pop(k) for k in SHARED_FIELDS})
    out = shared.pop("out")
    return TwinConfig(train=TrainConfig(**shared, out=out or TrainConfig().out), **args)


REPORT_FILES = ("twin.md", "twin.json", "twin.png")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxloss.parity.twin``: 0 when every step is within tolerance, 1 when not, 2 for a bad flag
    or an ``--out`` that cannot be written, 130 when interrupted (Ctrl-C, taken between steps; the
    previous run's report in ``--out`` is removed when the run starts).

    >>> from jaxloss.parity.twin import main
    >>> main(["--batch-size", "1"])  # one line on stderr, status 2
    2
    """
    return run_main(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    from jaxloss.train.__main__ import error

    args_out = build_parser().parse_args(argv).out
    cfg = config_from_args(argv)
    try:
        check_config(cfg)
    except ConfigError as e:
        error(PROG, e)
        return EXIT_USAGE
    problem = path_problem("--out", args_out, "folder")
    if problem:
        fail(PROG, problem)
    remove_reports(args_out, REPORT_FILES)
    with SigintFlag() as sigint:
        print(f"{PROG}: {cfg.resolved_steps()} steps of {cfg.train.model}, {cfg.dtype}", flush=True)
        result = run_twin(cfg, on_step=lambda _: stop_if_interrupted(sigint))
        stop_if_interrupted(sigint)
    print(verdict_line(result, _exact_command(sys.argv[1:] if argv is None else list(argv))))
    print(format_table(result))
    print(summary(result))
    if args_out:
        paths = write_report(result, args_out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK if result.passed else EXIT_FAILED


def _exact_command(argv: list[str]) -> str:
    """This command line in float64 (the comparison without float32 rounding)."""
    words, skip = [], False
    for w in argv:
        if skip or w == "--dtype" or w.startswith("--dtype="):
            skip = w == "--dtype" and not skip
            continue
        words.append(w)
    return " ".join([PROG, *words, "--dtype", "float64"])


if __name__ == "__main__":
    sys.exit(main())
