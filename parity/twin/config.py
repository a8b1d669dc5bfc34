"""The twin's configuration: the training recipe (:class:`jaxloss.train.config.TrainConfig`) plus what only the twin has."""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxloss.parity.tolerances import check_tolerance
from jaxloss.train.config import ConfigError, TrainConfig, validate

__all__ = ["JAX_PRECISION", "PROG", "SHARED_FIELDS", "TwinConfig", "check_config"]

PROG = "python -m jaxloss.parity.twin"
# The TrainConfig fields the twin shares with ``python -m jaxloss.train`` (same flags, same defaults).
SHARED_FIELDS = (
    "model", "activation", "cifar_stem", "batch_size", "epochs", "optimizer", "lr", "momentum", "dampening",
    "nesterov", "weight_decay", "betas", "eps", "amsgrad", "lr_schedule", "lr_step_size", "lr_gamma",
    "lr_min", "seed", "loss", "label_smoothing", "gamma", "alpha", "margin", "p", "delta", "beta", "out",
)  # fmt: skip
# parity.precision mode -> the matmul precision the compiled step asks for
JAX_PRECISION = {"ieee": "highest", "tf32": "tensorfloat32", "default": None}


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
    if cfg.precision not in JAX_PRECISION:
        raise ConfigError("precision", f"must be one of {', '.join(JAX_PRECISION)}, got {cfg.precision!r}")
    for name in ("rtol", "atol"):
        if getattr(cfg, name) is not None:
            try:
                check_tolerance(name, getattr(cfg, name))
            except ValueError:
                raise ConfigError(name, f"must be a finite number >= 0, got {getattr(cfg, name)!r}") from None
