"""The one place that builds a run's model, optimizer (with its schedule) and loss from a :class:`TrainConfig`.

:mod:`jaxloss.train.loop`, :mod:`jaxloss.parity.twin` and ``benchmarks.train_step`` all build through here,
so the twin proves the objects that training runs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxloss.train import optim
from jaxloss.train.config import TrainConfig
from jaxloss.train.losses import Loss, make_loss
from jaxloss.train.models import build_model as _build

__all__ = ["build_loss", "build_model", "build_optimizer", "build_schedule"]


def build_model(cfg: TrainConfig, num_classes: int = 10, *, initialise: bool = True) -> nnx.Module:
    """``cfg.model`` (:data:`jaxloss.train.registry.MODELS`) with its model options, initialised from
    ``cfg.seed``, in ``cfg.precision``'s compute dtype.

    The parameters are those of ``train.models.build_model(name, rngs=nnx.Rngs(seed))``,
    initialised by one compiled program (eagerly, every initializer compiles on its own).
    ``initialise=False`` gives zeros of the right shapes instead, for weights that are
    loaded next (the twin converts torch's): nothing is compiled.

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.recipe import build_model
    >>> model = build_model(TrainConfig(model="seed-cnn"))
    >>> type(model).__name__, model.torch_order()[0].kernel.value.shape
    ('SeedCNN', (5, 5, 3, 32))
    """
    kw: dict[str, Any] = dict(cfg.model_options)  # the table's model options that are set
    if cfg.precision == "bf16":
        kw["dtype"] = jnp.bfloat16

    def build(seed: Any) -> nnx.Module:
        return _build(cfg.model, rngs=nnx.Rngs(jax.random.key(seed)), num_classes=num_classes, **kw)

    graphdef, abstract = nnx.split(nnx.eval_shape(build, 0))
    if not initialise:
        # host zeros put on the device: no program compiled per parameter shape
        return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.asarray(np.zeros(a.shape, a.dtype)), abstract))
    state = jax.jit(lambda seed: nnx.state(build(seed)))(np.int32(cfg.seed))
    return nnx.merge(graphdef, state)


def build_schedule(cfg: TrainConfig, steps_per_epoch: int) -> float | optax.Schedule:
    """The learning rate per optimizer step: constant, or torch's StepLR / CosineAnnealingLR per epoch.

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.recipe import build_schedule
    >>> s = build_schedule(TrainConfig(lr=0.1, lr_schedule="step", lr_step_size=1, lr_gamma=0.5), 10)
    >>> [round(float(s(i)), 4) for i in (0, 9, 10, 20)]
    [0.1, 0.1, 0.05, 0.025]
    """
    if cfg.lr_schedule == "step":
        return optim.step_lr(cfg.lr, cfg.lr_step_size, cfg.lr_gamma, steps_per_epoch)
    if cfg.lr_schedule == "cosine":
        return optim.cosine_annealing(cfg.lr, cfg.epochs, eta_min=cfg.lr_min, steps_per_epoch=steps_per_epoch)
    return cfg.lr


def build_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> tuple[optax.GradientTransformation, Any]:
    """``(tx, schedule)``: torch.optim's SGD / Adam / AdamW with ``cfg``'s options and schedule.

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.recipe import build_optimizer
    >>> tx, lr = build_optimizer(TrainConfig(), steps_per_epoch=10)
    >>> lr
    0.01
    """
    schedule = build_schedule(cfg, steps_per_epoch)
    if cfg.optimizer == "sgd":
        kw: dict[str, Any] = {"momentum": cfg.effective_momentum, "dampening": cfg.dampening, "nesterov": cfg.nesterov}
    else:
        kw = {"betas": tuple(cfg.betas), "eps": cfg.eps, "amsgrad": cfg.amsgrad}
    return optim.make_optimizer(cfg.optimizer, schedule, weight_decay=cfg.weight_decay, **kw), schedule


def build_loss(cfg: TrainConfig) -> Loss:
    """The run's loss (:func:`jaxloss.train.losses.make_loss` with ``cfg``'s options).

    >>> from jaxloss.train.config import TrainConfig
    >>> from jaxloss.train.recipe import build_loss
    >>> build_loss(TrainConfig(loss="focal_loss", gamma=2.0)).criterion()
    FocalLoss(weight=None, ignore_index=-100, reduction='mean', alpha=None, gamma=2.0)
    """
    return make_loss(cfg.loss, **cfg.loss_options)
