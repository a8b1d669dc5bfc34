"""Cross-framework twin run: the Flax model and its torch twin trained in lockstep.

``python -m train.twin --model seed-cnn --steps 50 --optimizer sgd --momentum 0.9 --out DIR``

Both frameworks start from the same weights (the torch twin's fresh torch-default
initialisation, converted with :func:`train.convert.torch_to_flax`), see the same
batches in the same order, compute the same loss (a jaxloss function and its torch
counterpart) and step the same optimizer (:func:`train.optim.make_optimizer` against
``torch.optim``). After every step the run records the two losses, their difference and
the largest parameter difference (Flax weights in torch layout against torch's), and the
largest BatchNorm running-statistics difference. It prints a table and writes
``twin.md`` (the table), ``twin.json`` (every number and the configuration) and
``twin.png`` (the differences per step, log scale, with the tolerance) to ``--out``.

Data: synthetic CIFAR-shaped batches, no augmentation and no download. Each class has a
fixed random image template; an example is its class template plus unit Gaussian noise,
labels uniform. ``--steps`` distinct batches are drawn from ``--seed`` with NumPy, so
the run is reproducible and the loss goes down (there is something to learn).

Tolerance. *Strict*: the loss and every parameter element within ``atol + rtol * |torch|``
(parity's float32 table, :mod:`parity.tolerances`; ``--rtol`` / ``--atol`` change it).
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
:func:`train.step.compiler_options`; the seed CNN's 50 steps (seed 0) are strict at 11
steps with the defaults and at 49 with those options. ``--dtype float64`` is the
flip-free comparison.

BatchNorm (ResNet-18): both models are in training mode on one device, so both normalise
with the statistics of the whole batch; the Flax BatchNorm is torch-exact (unbiased
running variance, torch momentum). Under data parallelism ``python -m train`` computes
statistics over the global batch (SyncBatchNorm), not per device as torch DDP does; the
twin compares the single-device case, where the two agree.

On a GPU the run asks for full float32 matmuls/convolutions in both frameworks (no
TF32), else the comparison would measure TF32 rounding.
"""

from __future__ import annotations

import argparse
import ast
import copy
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

import jaxloss
from parity.tolerances import tolerance_for
from train import optim
from train.convert import flax_state_dict, torch_to_flax
from train.models import build_model
from train.step import make_train_step
from train.torch_models import TorchResNet18, TorchSeedCNN

__all__ = [
    "TwinConfig",
    "TwinResult",
    "TwinStep",
    "check_config",
    "loss_pair",
    "main",
    "run_twin",
    "write_report",
]


# --------------------------------------------------------------------------- configuration
@dataclass
class TwinConfig:
    model: str = "seed-cnn"
    steps: int | None = None  # None: 50 for seed-cnn, 10 for resnet18
    batch_size: int = 32
    image_size: int = 32
    num_classes: int = 10
    activation: str | None = None
    cifar_stem: bool = False
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None  # None: torch's default (1e-2 for adamw, else 0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    schedule: str = "none"  # none | step | cosine
    steps_per_epoch: int = 5
    step_size: int = 2
    lr_gamma: float = 0.5  # StepLR gamma
    t_max: int = 4
    eta_min: float = 0.0
    loss: str = "cross_entropy"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float32"  # float32 | float64 (float64 turns jax_enable_x64 on)
    reference: bool = True  # also train a float64 torch copy: torch's own float32 error
    rtol: float | None = None  # None: parity's tolerance for dtype
    atol: float | None = None

    def resolved_steps(self) -> int:
        return self.steps if self.steps is not None else (50 if self.model == "seed-cnn" else 10)


@dataclass
class TwinStep:
    step: int
    loss_jax: float
    loss_torch: float
    loss_diff: float  # |loss_jax - loss_torch|
    param_diff: float  # max |p_jax - p_torch| over every parameter element
    param_rel_diff: float  # max over tensors of max|dp| / max|p_torch|
    buffer_diff: float  # max |running stat difference| (0 without BatchNorm)
    strict: bool  # loss and every element within atol + rtol * |torch|
    ref_loss_diff: float | None = None  # |loss_torch - loss_torch64|: torch's own rounding error
    ref_param_diff: float | None = None  # max |p_torch - p_torch64|
    jax_ref_loss_diff: float | None = None  # |loss_jax - loss_torch64|: Flax's own rounding error
    jax_ref_param_diff: float | None = None  # max |p_jax - p_torch64|
    within_tolerance: bool = False


@dataclass
class TwinResult:
    config: dict[str, Any]
    rtol: float
    atol: float
    steps: list[TwinStep]
    device: str
    seconds: float

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
_INDEX_TARGET = {"cross_entropy", "nll_loss", "focal_loss", "multi_margin_loss"}
_ONEHOT_TARGET = {
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy_with_logits",
    "multilabel_soft_margin_loss",
    "soft_margin_loss",
    "kl_div",
}
LOSS_NAMES = tuple(sorted(_INDEX_TARGET | _ONEHOT_TARGET))


def _torch_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    alpha: torch.Tensor | float | None = None,
    gamma: float = 2.0,
) -> torch.Tensor:
    """jaxloss.focal_loss in torch ops: -w_y alpha_y (1 - p_y)^gamma log p_y; 'mean' divides by sum w_y."""
    logp = F.log_softmax(input, dim=1)
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -((-torch.expm1(logp_t)) ** gamma) * logp_t
    if alpha is not None:
        loss = loss * (alpha[safe] if isinstance(alpha, torch.Tensor) and alpha.ndim else alpha)
    w = (weight[safe] if weight is not None else torch.ones_like(loss)) * valid
    loss = loss * w
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    return loss.sum() / w.sum()


def loss_pair(
    name: str, num_classes: int, **kwargs: Any
) -> tuple[
    Callable[[jax.Array, jax.Array], jax.Array], Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str
]:
    """``(jax_loss(logits, labels), torch_loss(logits, labels), target_kind)`` for a loss name.

    Class-index losses (cross_entropy, nll_loss on log_softmax, focal_loss, multi_margin_loss)
    get the labels; the others get one-hot float targets (soft_margin_loss: +-1,
    kl_div: log_softmax input against the one-hot distribution). ``kwargs`` go to both.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"twin loss must be one of {', '.join(LOSS_NAMES)}; got {name!r}")
    jfn = getattr(jaxloss, name)
    tfn = _torch_focal_loss if name == "focal_loss" else getattr(F, name)
    log_input = name in ("nll_loss", "kl_div")
    # list-valued options (weight=[...], alpha=[...]) become arrays / tensors
    jkw = {k: jnp.asarray(v, jnp.float32) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items()}
    tkw = {
        k: torch.tensor(v, dtype=torch.float32) if isinstance(v, (list, tuple)) else v
        for k, v in kwargs.items()
    }

    def arrays_like(kw: dict[str, Any], dtype: Any, cast: Callable[[Any, Any], Any]) -> dict[str, Any]:
        return {k: cast(v, dtype) if hasattr(v, "dtype") else v for k, v in kw.items()}

    def to_target_jax(y: jax.Array, dtype: Any) -> jax.Array:
        if name in _INDEX_TARGET:
            return y
        t = jax.nn.one_hot(y, num_classes, dtype=dtype)
        return 2 * t - 1 if name == "soft_margin_loss" else t

    def to_target_torch(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if name in _INDEX_TARGET:
            return y
        t = F.one_hot(y, num_classes).to(dtype)
        return 2 * t - 1 if name == "soft_margin_loss" else t

    def jax_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
        x = jax.nn.log_softmax(logits, axis=1) if log_input else logits
        return jfn(
            x, to_target_jax(y, logits.dtype), **arrays_like(jkw, logits.dtype, lambda v, d: v.astype(d))
        )

    def torch_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.log_softmax(logits, dim=1) if log_input else logits
        return tfn(
            x, to_target_torch(y, logits.dtype), **arrays_like(tkw, logits.dtype, lambda v, d: v.to(d))
        )

    return jax_loss, torch_loss, "index" if name in _INDEX_TARGET else "onehot"


# --------------------------------------------------------------------------- data
def synthetic_batches(
    steps: int, batch_size: int, image_size: int, num_classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``steps`` batches ``(x NHWC float32, y int64)``: class template + N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(num_classes, image_size, image_size, 3)).astype(np.float32)
    batches = []
    for _ in range(steps):
        y = rng.integers(0, num_classes, size=batch_size)
        x = templates[y] + rng.normal(size=(batch_size, image_size, image_size, 3)).astype(np.float32)
        batches.append((x.astype(np.float32), y.astype(np.int64)))
    return batches


# --------------------------------------------------------------------------- the two sides
def _schedule(cfg: TwinConfig) -> Any:
    if cfg.schedule == "none":
        return cfg.lr
    if cfg.schedule == "step":
        return optim.step_lr(cfg.lr, cfg.step_size, cfg.lr_gamma, cfg.steps_per_epoch)
    if cfg.schedule == "cosine":
        return optim.cosine_annealing(cfg.lr, cfg.t_max, cfg.eta_min, cfg.steps_per_epoch)
    raise ValueError(f"schedule must be none, step or cosine; got {cfg.schedule!r}")


def _optimizer_options(cfg: TwinConfig) -> dict[str, Any]:
    wd = optim.DEFAULT_WEIGHT_DECAY.get(cfg.optimizer, 0.0) if cfg.weight_decay is None else cfg.weight_decay
    if cfg.optimizer == "sgd":
        return {
            "momentum": cfg.momentum,
            "dampening": cfg.dampening,
            "nesterov": cfg.nesterov,
            "weight_decay": wd,
        }
    return {"betas": tuple(cfg.betas), "eps": cfg.eps, "weight_decay": wd, "amsgrad": cfg.amsgrad}


def _torch_optimizer(cfg: TwinConfig, params: Any) -> tuple[torch.optim.Optimizer, Any]:
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    opt = cls(params, lr=cfg.lr, **_optimizer_options(cfg))
    sched = None
    if cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.lr_gamma)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.t_max, cfg.eta_min)
    return opt, sched


def _models(cfg: TwinConfig) -> tuple[nnx.Module, torch.nn.Module]:
    torch.manual_seed(cfg.seed)
    if cfg.model == "seed-cnn":
        tm: torch.nn.Module = TorchSeedCNN(cfg.num_classes, activation=cfg.activation)
        kw: dict[str, Any] = {"activation": cfg.activation}
    elif cfg.model == "resnet18":
        tm = TorchResNet18(cfg.num_classes, cifar_stem=cfg.cifar_stem)
        kw = {"cifar_stem": cfg.cifar_stem}
    else:
        raise ValueError(f"unknown model {cfg.model!r}")
    fm = build_model(cfg.model, rngs=nnx.Rngs(cfg.seed), num_classes=cfg.num_classes, **kw)
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


def _set_x64(on: bool) -> bool:
    before = bool(jax.config.read("jax_enable_x64"))
    if on != before:
        jax.config.update("jax_enable_x64", on)
    return before


def check_config(cfg: TwinConfig) -> None:
    """Raise ValueError for an option the run cannot take (before any model is built)."""
    if cfg.model not in ("seed-cnn", "resnet18"):
        raise ValueError(f"unknown model {cfg.model!r}; choose seed-cnn or resnet18")
    if cfg.model == "seed-cnn" and cfg.image_size != 32:
        raise ValueError("seed-cnn needs --image-size 32 (its first Linear takes 64*4*4 features)")
    if cfg.resolved_steps() < 1 or cfg.batch_size < 2:
        raise ValueError("steps must be >= 1 and batch size >= 2 (BatchNorm needs two values per channel)")
    if cfg.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {cfg.dtype!r}")
    _schedule(cfg)
    optim.make_optimizer(cfg.optimizer, cfg.lr, **_optimizer_options(cfg))
    loss_pair(cfg.loss, cfg.num_classes, **cfg.loss_kwargs)


def run_twin(cfg: TwinConfig | None = None, **overrides: Any) -> TwinResult:
    """Train both twins ``cfg.resolved_steps()`` steps in lockstep; per-step differences.

    A step is *within tolerance* when it passes the strict check (the loss and every
    parameter element within ``atol + rtol * |torch|``, parity's table for ``dtype``) or,
    with the float64 reference, when the Flax-torch difference is no larger than the
    rounding error torch makes by itself: ``max|dparam| <= atol + 2 * max|p_torch -
    p_torch64|`` and ``|dloss| <= atol + rtol |loss| + 2 * e_k``, ``e_k`` the largest
    ``|loss_torch - loss_torch64|`` of steps 1..k. (Twice: each framework rounds on its
    own, so two runs as accurate as torch's are up to twice its error apart.)
    """
    cfg = cfg or TwinConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown twin option {k!r}")
        setattr(cfg, k, v)
    check_config(cfg)
    tol = tolerance_for(cfg.dtype)
    rtol = tol.rtol if cfg.rtol is None else cfg.rtol
    atol = tol.atol if cfg.atol is None else cfg.atol
    steps = cfg.resolved_steps()
    use_ref = cfg.reference and cfg.dtype == "float32"
    start = time.perf_counter()

    x64_before = _set_x64(True) if cfg.dtype == "float64" else None
    prev_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with jax.default_matmul_precision("highest"):
            jdtype, tdtype = jnp.dtype(cfg.dtype), getattr(torch, cfg.dtype)
            fm, tm = _models(cfg)
            ref = copy.deepcopy(tm).double() if use_ref else None
            tm.to(tdtype)
            if cfg.dtype != "float32":
                floats = lambda a: a.astype(jdtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
                nnx.update(fm, jax.tree.map(floats, nnx.state(fm)))
            jax_loss, torch_loss, _ = loss_pair(cfg.loss, cfg.num_classes, **cfg.loss_kwargs)
            tx = optim.make_optimizer(cfg.optimizer, _schedule(cfg), **_optimizer_options(cfg))
            followers = [(tm, *_torch_optimizer(cfg, tm.parameters()))]
            if ref is not None:
                followers.append((ref, *_torch_optimizer(cfg, ref.parameters())))
            graphdef, params, rest = nnx.split(fm, nnx.Param, ...)
            opt_state = tx.init(params)
            train_step = make_train_step(graphdef, tx, jax_loss)
            batches = synthetic_batches(steps, cfg.batch_size, cfg.image_size, cfg.num_classes, cfg.seed)
            records: list[TwinStep] = []
            ref_loss_envelope = 0.0
            for i, (x, y) in enumerate(batches):
                params, rest, opt_state, loss = train_step(
                    params, rest, opt_state, jnp.asarray(x, jdtype), jnp.asarray(y, jnp.int32)
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
                lj, lt = float(loss), t_losses[0]
                ldiff = abs(lj - lt)
                strict = ldiff <= atol + rtol * abs(lt) and all(
                    bool(np.all(np.abs(ours[k] - theirs[k]) <= atol + rtol * np.abs(theirs[k]))) for k in ours
                )
                rec = TwinStep(
                    step=i + 1,
                    loss_jax=lj,
                    loss_torch=lt,
                    loss_diff=ldiff,
                    param_diff=_diff(ours, theirs, pnames),
                    param_rel_diff=max(
                        (
                            float(np.abs(ours[k] - theirs[k]).max() / (np.abs(theirs[k]).max() or 1.0))
                            for k in pnames
                        ),
                        default=0.0,
                    ),
                    buffer_diff=_diff(ours, theirs, set(ours) - pnames),
                    strict=bool(strict),
                )
                rec.within_tolerance = rec.strict
                if ref is not None:
                    exact = _torch_state(ref)
                    rec.ref_loss_diff = abs(lt - t_losses[1])
                    rec.ref_param_diff = _diff(theirs, exact, pnames)
                    rec.jax_ref_loss_diff = abs(lj - t_losses[1])
                    rec.jax_ref_param_diff = _diff(ours, exact, pnames)
                    ref_loss_envelope = max(ref_loss_envelope, rec.ref_loss_diff)
                    rec.within_tolerance = rec.strict or (
                        rec.param_diff <= atol + 2 * rec.ref_param_diff
                        and ldiff <= atol + rtol * abs(lt) + 2 * ref_loss_envelope
                    )
                records.append(rec)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev_tf32
        if x64_before is not None:
            _set_x64(x64_before)
    config = asdict(cfg)
    config["steps"] = steps
    return TwinResult(config, rtol, atol, records, jax.devices()[0].device_kind, time.perf_counter() - start)


# --------------------------------------------------------------------------- report
def _e(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def format_table(result: TwinResult, markdown: bool = False) -> str:
    """Per-step table. ``ref`` columns: torch float32 vs torch float64 (torch's own rounding
    error) and Flax float32 vs torch float64 (Flax's), when the reference ran."""
    has_ref = any(s.ref_param_diff is not None for s in result.steps)
    head = ["step", "loss (jax)", "loss (torch)", "|dloss|", "max |dparam|", "max rel dparam", "max |dstat|"]
    if has_ref:
        head += [
            "torch |dloss| vs f64",
            "flax |dloss| vs f64",
            "torch |dparam| vs f64",
            "flax |dparam| vs f64",
        ]
    head += ["strict", "ok"]
    rows = []
    for s in result.steps:
        row = [
            str(s.step),
            f"{s.loss_jax:.7f}",
            f"{s.loss_torch:.7f}",
            _e(s.loss_diff),
            _e(s.param_diff),
            _e(s.param_rel_diff),
            _e(s.buffer_diff),
        ]
        if has_ref:
            row += [
                _e(s.ref_loss_diff),
                _e(s.jax_ref_loss_diff),
                _e(s.ref_param_diff),
                _e(s.jax_ref_param_diff),
            ]
        row += ["yes" if s.strict else "no", "yes" if s.within_tolerance else "NO"]
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def summary(result: TwinResult) -> str:
    c = result.config
    verdict = "within" if result.passed else "OUTSIDE"
    opt = f"{c['optimizer']} (lr {c['lr']}"
    opt += f", momentum {c['momentum']})" if c["optimizer"] == "sgd" else ")"
    text = (
        f"twin run: {c['model']} / {opt} / {c['loss']}, {c['steps']} steps of batch {c['batch_size']} in "
        f"{c['dtype']} on {result.device}: max |dloss| {result.max_loss_diff:.2e}, max |dparam| "
        f"{result.max_param_diff:.2e}, max |dstat| {result.max_buffer_diff:.2e}"
    )
    refs = [s for s in result.steps if s.ref_param_diff is not None]
    if refs:
        text += (
            f"; torch's own float32 error (vs float64): max |dloss| {max(s.ref_loss_diff for s in refs):.2e}, "
            f"max |dparam| {max(s.ref_param_diff for s in refs):.2e}; Flax's: max |dloss| "
            f"{max(s.jax_ref_loss_diff for s in refs):.2e}, max |dparam| {max(s.jax_ref_param_diff for s in refs):.2e}"
        )
    strict = sum(s.strict for s in result.steps)
    within = sum(s.within_tolerance for s in result.steps)
    where = "at every step" if result.passed else "at some steps"
    text += (
        f"; {verdict} {c['dtype']} tolerance {where} ({within}/{len(result.steps)} steps within; strict rtol "
        f"{result.rtol:g} / atol {result.atol:g}: {strict}/{len(result.steps)}"
    )
    if refs and strict < within:
        text += "; the other steps: no farther apart than twice torch's own float32 error vs float64"
    text += ")"
    return text


def plot(result: TwinResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s.step for s in result.steps]
    tiny = 1e-12  # log scale: show exact zeros at the bottom
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.plot(steps, [s.loss_jax for s in result.steps], label="Flax / optax")
    ax0.plot(steps, [s.loss_torch for s in result.steps], "--", label="torch")
    ax0.set(xlabel="step", ylabel="loss", title="training loss")
    ax0.legend()
    ax1.semilogy(steps, [max(s.loss_diff, tiny) for s in result.steps], "o-", ms=3, label="|dloss|")
    ax1.semilogy(steps, [max(s.param_diff, tiny) for s in result.steps], "s-", ms=3, label="max |dparam|")
    if any(s.ref_param_diff is not None for s in result.steps):
        ax1.semilogy(
            steps,
            [max(s.ref_param_diff or 0.0, tiny) for s in result.steps],
            "k--",
            lw=1,
            label="max |dparam| torch f32 vs torch f64",
        )
        ax1.semilogy(
            steps,
            [max(s.jax_ref_param_diff or 0.0, tiny) for s in result.steps],
            ":",
            color="tab:purple",
            lw=1.5,
            label="max |dparam| Flax f32 vs torch f64",
        )
    if any(s.buffer_diff for s in result.steps):
        ax1.semilogy(
            steps, [max(s.buffer_diff, tiny) for s in result.steps], "^-", ms=3, label="max |dBN stat|"
        )
    ax1.axhline(result.atol, color="gray", ls=":", label=f"atol {result.atol:g}")
    strict = sum(s.strict for s in result.steps)
    ax1.set(
        xlabel="step",
        ylabel="absolute difference (0 drawn at 1e-12)",
        title=f"Flax - torch (strict rtol {result.rtol:g} / atol {result.atol:g}: {strict}/{len(steps)} steps)",
    )
    ax1.legend(fontsize="small")
    c = result.config
    opt = f"{c['optimizer']} lr {c['lr']:g}"
    if c["optimizer"] == "sgd" and c["momentum"]:
        opt += f" momentum {c['momentum']:g}"
    fig.suptitle(
        f"twin run: {c['model']}, {opt}, {c['loss']}, batch {c['batch_size']}, {c['dtype']}, "
        f"{'passed' if result.passed else 'FAILED'}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: TwinResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``twin.md``, ``twin.json`` and ``twin.png`` into ``out``; returns their paths."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "twin.md", "json": out_dir / "twin.json", "png": out_dir / "twin.png"}
    paths["md"].write_text(f"{summary(result)}\n\n{format_table(result, markdown=True)}\n")
    payload = {
        "config": result.config,
        "rtol": result.rtol,
        "atol": result.atol,
        "device": result.device,
        "seconds": result.seconds,
        "passed": result.passed,
        "max_loss_diff": result.max_loss_diff,
        "max_param_diff": result.max_param_diff,
        "max_buffer_diff": result.max_buffer_diff,
        "steps": [asdict(s) for s in result.steps],
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(result, paths["png"])
    return paths


# --------------------------------------------------------------------------- CLI
def _loss_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--loss-arg takes KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.twin",
        description="Train the Flax model and its torch twin in lockstep on synthetic batches; report the differences.",
    )
    p.add_argument("--model", choices=["seed-cnn", "resnet18"], default="seed-cnn")
    p.add_argument("--steps", type=int, default=None, help="default: 50 (seed-cnn), 10 (resnet18)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32, help="square image side (seed-cnn needs 32)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--activation", choices=["none", "relu"], default="none", help="seed-cnn only")
    p.add_argument("--cifar-stem", action="store_true", help="resnet18: 3x3 stride-1 stem, no max-pool")
    p.add_argument("--optimizer", choices=list(optim.OPTIMIZER_NAMES), default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--dampening", type=float, default=0.0)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument(
        "--weight-decay", type=float, default=None, help="default 0 (sgd, adam), 1e-2 (adamw, as torch)"
    )
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--amsgrad", action="store_true")
    p.add_argument("--schedule", choices=["none", "step", "cosine"], default="none")
    p.add_argument("--steps-per-epoch", type=int, default=5, help="schedulers step once per this many steps")
    p.add_argument("--step-size", type=int, default=2, help="StepLR step_size (epochs)")
    p.add_argument("--lr-gamma", type=float, default=0.5, help="StepLR gamma")
    p.add_argument("--t-max", type=int, default=4, help="CosineAnnealingLR T_max (epochs)")
    p.add_argument("--eta-min", type=float, default=0.0)
    p.add_argument("--loss", choices=list(LOSS_NAMES), default="cross_entropy")
    p.add_argument("--label-smoothing", type=float, default=None, help="cross_entropy's label_smoothing")
    p.add_argument("--gamma", type=float, default=None, help="focal_loss's gamma")
    p.add_argument(
        "--loss-arg",
        type=_loss_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for the loss (repeatable), e.g. gamma=2.0",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="float64 runs both frameworks in double precision (exactness check)",
    )
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the float64 torch reference run (torch's own float32 error)",
    )
    p.add_argument("--rtol", type=float, default=None)
    p.add_argument("--atol", type=float, default=None)
    p.add_argument("--out", default=None, help="directory for twin.md, twin.json, twin.png")
    return p


def config_from_args(args: argparse.Namespace) -> TwinConfig:
    loss_kwargs = dict(args.loss_arg)
    if args.label_smoothing is not None:
        loss_kwargs["label_smoothing"] = args.label_smoothing
    if args.gamma is not None:
        loss_kwargs["gamma"] = args.gamma
    return TwinConfig(
        model=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.image_size,
        num_classes=args.num_classes,
        activation=None if args.activation == "none" else args.activation,
        cifar_stem=args.cifar_stem,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        dampening=args.dampening,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        betas=tuple(args.betas),
        eps=args.eps,
        amsgrad=args.amsgrad,
        schedule=args.schedule,
        steps_per_epoch=args.steps_per_epoch,
        step_size=args.step_size,
        lr_gamma=args.lr_gamma,
        t_max=args.t_max,
        eta_min=args.eta_min,
        loss=args.loss,
        loss_kwargs=loss_kwargs,
        seed=args.seed,
        dtype=args.dtype,
        reference=not args.no_reference,
        rtol=args.rtol,
        atol=args.atol,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    try:
        check_config(cfg)
    except ValueError as e:
        print(f"python -m train.twin: error: {e}", file=sys.stderr)
        return 2
    result = run_twin(cfg)
    print(format_table(result))
    print(summary(result))
    if args.out:
        paths = write_report(result, args.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
