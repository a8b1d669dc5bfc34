"""The twin's two sides: the project's model pair, the synthetic batches, and each framework's training step.

The Flax step is the shipped one, :func:`jaxloss.train.step.make_train_step` with the optimizer and
schedule of :func:`jaxloss.train.recipe.build_optimizer`; the torch step is ``torch.optim`` with its
scheduler and torch's criterion of the same name (:func:`jaxloss.parity.twin.loss_pair`). Both are
written as :func:`jaxloss.parity.compare_training` takes them: ``step(model, optimizer, x, y) -> loss``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from jaxloss.parity.twin.config import JAX_PRECISION, TwinConfig
from jaxloss.parity.twin.losses import loss_pair
from jaxloss.train.losses import make_loss
from jaxloss.train.recipe import build_optimizer
from jaxloss.train.step import make_train_step

__all__ = ["synthetic_batches"]


def synthetic_batches(
    steps: int, batch_size: int, image_size: int, num_classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``steps`` batches ``(x NHWC float32, y int64)``: class template + N(0, 1) noise.

    Each class has a fixed random image template; labels are uniform. No download, reproducible
    from ``seed``, and learnable (the loss goes down).

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


def batch_pairs(batches: list[tuple[np.ndarray, np.ndarray]], dtype: str) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """``(jax_batch, torch_batch)`` per batch: ``(x NHWC, y int32)`` and ``(x NCHW, y int64)`` in ``dtype``."""
    out = []
    for x, y in batches:
        jb = (jnp.asarray(x, jnp.dtype(dtype)), jnp.asarray(y, jnp.int32))
        tb = (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(getattr(torch, dtype)), torch.from_numpy(y))
        out.append((jb, tb))
    return out


def models(cfg: TwinConfig) -> tuple[nnx.Module, torch.nn.Module]:
    """The project's pair (:func:`jaxloss.parity.models.twins.build_pair`): torch's initialisation, converted, in ``cfg.dtype``."""
    from jaxloss.parity.models.twins import build_pair

    t = cfg.train
    kw: dict[str, Any] = {"num_classes": cfg.num_classes}
    if t.activation not in (None, "none"):
        kw["activation"] = t.activation
    if t.cifar_stem:
        kw["cifar_stem"] = True
    fm, tm, _ = build_pair(t.model, cfg.dtype, t.seed, **kw)
    return fm, tm


class JaxOptimizer:
    """The compiled step's optimizer state, as :func:`jaxloss.parity.compare_training` passes an optimizer:
    ``optax`` state and the loss sums of :func:`jaxloss.train.step.make_train_step`."""

    def __init__(self, model: nnx.Module, tx: Any, dtype: str) -> None:
        self.state = tx.init(nnx.state(model, nnx.Param))
        self.sums = jnp.zeros(3, jnp.dtype(dtype))


def jax_side(cfg: TwinConfig, model: nnx.Module) -> tuple[Callable[..., Any], JaxOptimizer, Callable[..., Any]]:
    """``(jax_step, optimizer, jax_loss)``: the shipped compiled step over ``model``'s state; ``jax_loss(model, x, y)``."""
    tx, _ = build_optimizer(cfg.train, cfg.steps_per_epoch)
    loss = make_loss(cfg.train.loss, **cfg.train.loss_options)
    graphdef = nnx.graphdef(model)
    train_step = make_train_step(graphdef, tx, loss, matmul_precision=JAX_PRECISION[cfg.precision])

    def jax_step(m: nnx.Module, opt: JaxOptimizer, x: jax.Array, y: jax.Array) -> jax.Array:
        _, params, rest = nnx.split(m, nnx.Param, ...)
        params, rest, opt.state, opt.sums, value = train_step(params, rest, opt.state, opt.sums, x, y)  # donates
        nnx.update(m, params, rest)
        return value

    return jax_step, JaxOptimizer(model, tx, cfg.dtype), lambda m, x, y: loss(m(x), y)


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


def torch_side(cfg: TwinConfig, *models: torch.nn.Module) -> tuple[Callable[..., Any], list[Any], Callable[..., Any]]:
    """``(torch_step, [optimizer per model], torch_loss)``: ``zero_grad / backward / step``, the scheduler
    stepping once per ``cfg.steps_per_epoch`` steps of its optimizer; ``torch_loss(model, x, y)``."""
    _, criterion, _ = loss_pair(cfg.train.loss, cfg.num_classes, **cfg.train.loss_options)
    schedules: dict[int, list[Any]] = {}  # id(optimizer) -> [scheduler, steps taken]
    optimizers = []
    for m in models:
        opt, sched = _torch_optimizer(cfg, m.parameters())
        schedules[id(opt)] = [sched, 0]
        optimizers.append(opt)

    def torch_step(m: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = criterion(m(x), y)
        value.backward()
        opt.step()
        entry = schedules[id(opt)]
        entry[1] += 1
        if entry[0] is not None and entry[1] % cfg.steps_per_epoch == 0:
            entry[0].step()
        return value.detach()

    return torch_step, optimizers, lambda m, x, y: criterion(m(x), y)
