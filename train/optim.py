"""torch.optim's SGD, Adam and AdamW and its StepLR / CosineAnnealingLR, as optax objects.

Each optimizer is one ``optax.GradientTransformation`` that reproduces torch's update
rule operation for operation (same order of operations, same first-step special cases,
same scalar constants), so a Flax model trained with it follows the torch model trained
with ``torch.optim`` step for step, to float32 rounding. optax's own transforms do not:
``optax.sgd`` has no ``dampening`` (and torch's first step skips it),
``optax.amsgrad`` takes the maximum of the *bias-corrected* second moment where torch
takes it of the raw one, and ``optax.adamw`` defaults to weight decay 1e-4 (torch 1e-2).

The learning rate may be a float or an ``optax.Schedule``; a schedule is called with the
number of updates already applied (0 for the first), like optax's. Use :func:`step_lr`
and :func:`cosine_annealing` for torch's schedulers stepped once per epoch::

    tx = make_optimizer("sgd", step_lr(0.1, step_size=30, gamma=0.1, steps_per_epoch=391),
                        momentum=0.9, weight_decay=5e-4)
    # == torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4)
    #    + StepLR(opt, 30, 0.1), with sched.step() after each epoch's 391 opt.step()s

The updates are meant for ``optax.apply_updates`` (``params + updates``); like torch's
optimizers they need the parameters (``tx.update(grads, state, params)``) whenever
weight decay is on.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "DEFAULT_WEIGHT_DECAY",
    "OPTIMIZER_NAMES",
    "AdamState",
    "SGDState",
    "adam",
    "cosine_annealing",
    "make_optimizer",
    "sgd",
    "step_lr",
]

OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}  # torch.optim's defaults
LearningRate = float | optax.Schedule


# --------------------------------------------------------------------------- helpers
def _learning_rate(learning_rate: LearningRate, count: jax.Array) -> Any:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _scalar(value: Any, like: jax.Array) -> Any:
    """A Python float stays weakly typed; an array scalar is cast to ``like``'s dtype.

    torch casts a Python-float ``alpha``/``value`` to the tensor's compute dtype; this
    does the same for schedule values (float64 when x64 is on).
    """
    return value if isinstance(value, (int, float)) else jnp.asarray(value, like.dtype)


def _check_nonnegative(what: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not value >= 0.0:
        raise ValueError(f"Invalid {what}: {value}")


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name} with weight_decay needs the parameters: call tx.update(grads, state, params)"
        )


def _where_first(first: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.where(first, a, b)


# --------------------------------------------------------------------------- SGD
class SGDState(NamedTuple):
    """``count``: updates applied so far; ``momentum_buffer``: torch's ``momentum_buffer`` (None without momentum).

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.optim import sgd
    >>> state = sgd(0.1, momentum=0.9).init({"w": jnp.zeros(2)})
    >>> type(state).__name__, int(state.count)
    ('SGDState', 0)
    """

    count: jax.Array
    momentum_buffer: Any


def sgd(
    learning_rate: LearningRate,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """``torch.optim.SGD`` (``maximize=False``), step-exact.

    Per parameter, with ``g`` its gradient::

        g = g + weight_decay * p                      # coupled (L2) decay
        if momentum:
            buf = g                                   # first step: no dampening
            buf = momentum * buf + (1 - dampening) * g  # later steps
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g

    >>> import jax.numpy as jnp, optax
    >>> from jaxloss.train.optim import sgd
    >>> tx = sgd(0.1, momentum=0.9)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    >>> [round(float(p), 4) for p in optax.apply_updates(params, updates)["w"]]
    [0.9, 0.9]
    """
    _check_nonnegative("learning rate", learning_rate)
    _check_nonnegative("momentum value", momentum)
    _check_nonnegative("weight_decay value", weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def init(params: Any) -> SGDState:
        buf = jax.tree.map(jnp.zeros_like, params) if momentum != 0 else None
        return SGDState(count=jnp.zeros([], jnp.int32), momentum_buffer=buf)

    def update(grads: Any, state: SGDState, params: Any = None) -> tuple[Any, SGDState]:
        if weight_decay != 0:
            _need_params(params, "SGD")
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        buf = state.momentum_buffer
        if momentum != 0:
            first = state.count == 0
            buf = jax.tree.map(
                lambda b, g: _where_first(first, g, b * momentum + (1 - dampening) * g), buf, grads
            )
            if nesterov:
                grads = jax.tree.map(lambda g, b: g + momentum * b, grads, buf)
            else:
                grads = buf
        lr = _learning_rate(learning_rate, state.count)
        updates = jax.tree.map(lambda g: -_scalar(lr, g) * g, grads)
        return updates, SGDState(count=optax.safe_increment(state.count), momentum_buffer=buf)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Adam / AdamW
class AdamState(NamedTuple):
    """torch's Adam state: ``count`` (torch's ``step``), ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq`` (None unless amsgrad).

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.optim import adam
    >>> state = adam(1e-3).init({"w": jnp.zeros(2)})
    >>> type(state).__name__, state.max_exp_avg_sq is None
    ('AdamState', True)
    """

    count: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any


def _lerp(start: jax.Array, end: jax.Array, weight: float) -> jax.Array:
    """``torch.lerp`` with a scalar weight, torch's two-branch formula."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def _one_minus_pow(beta: float, step: jax.Array) -> jax.Array:
    """``1 - beta**step`` without float32 cancellation (torch computes it in float64)."""
    dtype = jnp.result_type(float)  # float64 when x64 is on, else float32
    if beta == 0.0:
        return jnp.ones([], dtype)
    return -jnp.expm1(step.astype(dtype) * math.log(beta))


def adam(
    learning_rate: LearningRate,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam`` (``decoupled_weight_decay=True``: ``torch.optim.AdamW``), step-exact.

    Per parameter, at step ``t = 1, 2, ...``::

        p = p * (1 - lr * weight_decay)               # AdamW (decoupled)
        g = g + weight_decay * p                      # Adam (coupled, L2)
        m = lerp(m, g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                         # amsgrad: max of the *raw* v
        denom = sqrt(v or v_max) / sqrt(1 - beta2**t) + eps
        p = p - lr / (1 - beta1**t) * m / denom

    >>> import jax.numpy as jnp
    >>> from jaxloss.train.optim import adam
    >>> tx = adam(0.1)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    >>> [round(float(u), 4) for u in updates["w"]]  # the first Adam step moves by lr
    [-0.1, -0.1]
    """
    beta1, beta2 = betas
    _check_nonnegative("learning rate", learning_rate)
    _check_nonnegative("epsilon value", eps)
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    _check_nonnegative("weight_decay value", weight_decay)
    name = "AdamW" if decoupled_weight_decay else "Adam"

    def init(params: Any) -> AdamState:
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return AdamState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=zeros(),
            exp_avg_sq=zeros(),
            max_exp_avg_sq=zeros() if amsgrad else None,
        )

    def update(grads: Any, state: AdamState, params: Any = None) -> tuple[Any, AdamState]:
        lr = _learning_rate(learning_rate, state.count)
        step = optax.safe_increment(state.count)
        if weight_decay != 0:
            _need_params(params, name)
            if not decoupled_weight_decay:
                grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        exp_avg = jax.tree.map(lambda m, g: _lerp(m, g, 1 - beta1), state.exp_avg, grads)
        exp_avg_sq = jax.tree.map(lambda v, g: v * beta2 + (1 - beta2) * g * g, state.exp_avg_sq, grads)
        second = exp_avg_sq
        max_sq = state.max_exp_avg_sq
        if amsgrad:
            max_sq = jax.tree.map(jnp.maximum, max_sq, exp_avg_sq)
            second = max_sq
        bc1 = _one_minus_pow(beta1, step)
        bc2_sqrt = jnp.sqrt(_one_minus_pow(beta2, step))
        step_size = jnp.asarray(lr) / bc1  # in torch: Python floats (float64)

        def param_update(m: jax.Array, v: jax.Array) -> jax.Array:
            denom = jnp.sqrt(v) / bc2_sqrt.astype(v.dtype) + eps
            return -step_size.astype(m.dtype) * (m / denom)

        updates = jax.tree.map(param_update, exp_avg, second)
        if decoupled_weight_decay and weight_decay != 0:
            # torch: p.mul_(1 - lr * wd), then the Adam step on the decayed p.
            def decay(u: jax.Array, p: jax.Array) -> jax.Array:
                factor = jnp.asarray(1 - jnp.asarray(lr) * weight_decay).astype(p.dtype)
                return (p * factor - p) + u

            updates = jax.tree.map(decay, updates, params)
        return updates, AdamState(count=step, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, max_exp_avg_sq=max_sq)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the factory
def make_optimizer(
    name: str,
    learning_rate: LearningRate,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
    """``'sgd'`` | ``'adam'`` | ``'adamw'``: torch.optim.SGD / Adam / AdamW with these options.

    Every default is torch's, so ``make_optimizer("adamw", 1e-3)`` is
    ``torch.optim.AdamW(params, lr=1e-3)``: ``weight_decay=None`` means torch's default
    for the optimizer, 0 for SGD and Adam (coupled L2 decay), 1e-2 for AdamW (decoupled).
    Options that the chosen optimizer does not have (``momentum``/``dampening``/``nesterov``
    for Adam(W); ``betas``/``eps``/``amsgrad`` for SGD) must stay at their defaults, else
    ValueError, as torch raises TypeError for an unknown keyword.

    >>> from jaxloss.train.optim import make_optimizer
    >>> tx = make_optimizer("adamw", 1e-3)  # torch.optim.AdamW(params, lr=1e-3), weight_decay 1e-2
    >>> make_optimizer("adam", 1e-3, momentum=0.9)
    Traceback (most recent call last):
    ...
    ValueError: optimizer 'adam' has no option momentum
    """
    key = name.lower()
    if weight_decay is None:
        weight_decay = DEFAULT_WEIGHT_DECAY.get(key, 0.0)
    if key == "sgd":
        unused = {"betas": (betas, (0.9, 0.999)), "eps": (eps, 1e-8), "amsgrad": (amsgrad, False)}
    elif key in ("adam", "adamw"):
        unused = {"momentum": (momentum, 0.0), "dampening": (dampening, 0.0), "nesterov": (nesterov, False)}
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    bad = [
        k for k, (v, default) in unused.items() if tuple(np.atleast_1d(v)) != tuple(np.atleast_1d(default))
    ]
    if bad:
        raise ValueError(f"optimizer {key!r} has no option {', '.join(bad)}")
    if key == "sgd":
        return sgd(
            learning_rate,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )
    return adam(
        learning_rate,
        betas=tuple(betas),  # type: ignore[arg-type]
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        decoupled_weight_decay=key == "adamw",
    )


# --------------------------------------------------------------------------- schedules
def _epoch(count: Any, steps_per_epoch: int) -> jax.Array:
    return jnp.asarray(count) // steps_per_epoch


def _check_steps_per_epoch(steps_per_epoch: int) -> None:
    if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")


# Torch's chainable schedulers multiply / recurse on group['lr'] in float64; the tables
# below replay that recursion in Python floats, so each epoch's value equals torch's to
# float64 rounding before the one cast to the parameters' dtype (as torch casts alpha).
_STEP_LR_TABLE = 4096


def step_lr(base_lr: float, step_size: int, gamma: float, steps_per_epoch: int = 1) -> optax.Schedule:
    """``torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)`` with ``sched.step()`` once per epoch.

    The learning rate of optimizer step ``count`` (0-based) is torch's
    ``base_lr * gamma ** (epoch // step_size)`` with ``epoch = count // steps_per_epoch``.

    >>> from jaxloss.train.optim import step_lr
    >>> s = step_lr(0.1, step_size=2, gamma=0.5, steps_per_epoch=1)
    >>> [round(float(s(i)), 4) for i in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    _check_steps_per_epoch(steps_per_epoch)
    if int(step_size) != step_size or step_size < 1:
        raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
    lrs = [float(base_lr)]
    for _ in range(_STEP_LR_TABLE - 1):  # torch: lr *= gamma every step_size epochs
        lrs.append(lrs[-1] * gamma)
    table = np.asarray(lrs)

    def schedule(count: Any) -> jax.Array:
        k = _epoch(count, steps_per_epoch) // step_size
        tab = jnp.asarray(table)
        far = base_lr * jnp.power(jnp.asarray(gamma, tab.dtype), k.astype(tab.dtype))
        return jnp.where(k < _STEP_LR_TABLE, tab[jnp.minimum(k, _STEP_LR_TABLE - 1)], far)

    return schedule


def _torch_cosine_lrs(base_lr: float, t_max: int, eta_min: float, epochs: int) -> list[float]:
    """``CosineAnnealingLR.get_lr()``'s recursion, epoch 0 .. epochs-1, in Python floats."""
    lrs = [float(base_lr)]
    for e in range(1, epochs):
        lr = lrs[-1]
        if (e - 1 - t_max) % (2 * t_max) == 0:
            lrs.append(lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2)
        else:
            lrs.append(
                (1 + math.cos(math.pi * e / t_max))
                / (1 + math.cos(math.pi * (e - 1) / t_max))
                * (lr - eta_min)
                + eta_min
            )
    return lrs


def cosine_annealing(
    base_lr: float, t_max: int, eta_min: float = 0.0, steps_per_epoch: int = 1
) -> optax.Schedule:
    """``torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min)``, stepped once per epoch.

    Epoch ``e = count // steps_per_epoch`` gets ``eta_min + (base_lr - eta_min) * (1 +
    cos(pi * e / t_max)) / 2``, computed by torch's own recursion for the first
    ``2 * t_max`` epochs; after ``t_max`` the rate rises again (torch's schedule is periodic
    with period ``2 * t_max``, it does not stay at ``eta_min``).

    >>> from jaxloss.train.optim import cosine_annealing
    >>> s = cosine_annealing(0.1, 2)
    >>> [round(float(s(i)), 4) for i in range(3)]
    [0.1, 0.05, 0.0]
    """
    _check_steps_per_epoch(steps_per_epoch)
    if int(t_max) != t_max or t_max < 1:
        raise ValueError(f"t_max must be a positive integer, got {t_max!r}")
    table = np.asarray(_torch_cosine_lrs(base_lr, t_max, eta_min, 2 * t_max))

    def schedule(count: Any) -> jax.Array:
        e = _epoch(count, steps_per_epoch) % (2 * t_max)
        return jnp.asarray(table)[e]

    return schedule
