"""jaxloss.train.optim against torch.optim: every optimizer and option, step for step, and both schedules.

Each case runs the same gradients through torch.optim (``p.grad`` set by hand) and through
the optax transform for several steps and compares the parameters after every step: in
float64 (to float64 rounding: the arithmetic is the same, operation for operation) and in
float32 (to a few float32 ULPs of the parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from jaxloss.train.optim import cosine_annealing, make_optimizer, step_lr

SHAPES = [(3, 4), (5,), (2, 3, 3)]
STEPS = 6

CASES = {
    "sgd": ("sgd", {}),
    "sgd-momentum": ("sgd", {"momentum": 0.9}),
    "sgd-dampening": ("sgd", {"momentum": 0.9, "dampening": 0.3}),
    "sgd-nesterov": ("sgd", {"momentum": 0.8, "nesterov": True}),
    "sgd-weight-decay": ("sgd", {"weight_decay": 0.05}),
    "sgd-all": ("sgd", {"momentum": 0.7, "dampening": 0.2, "weight_decay": 0.01}),
    "sgd-nesterov-wd": ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adam": ("adam", {}),
    "adam-wd": ("adam", {"weight_decay": 0.1}),
    "adam-amsgrad": ("adam", {"amsgrad": True}),
    "adam-betas-eps": ("adam", {"betas": (0.3, 0.9), "eps": 1e-3}),  # lerp weight 0.7: torch's other branch
    "adam-beta1-zero": ("adam", {"betas": (0.0, 0.99)}),
    "adamw": ("adamw", {"weight_decay": 1e-2}),
    "adamw-amsgrad": ("adamw", {"weight_decay": 0.1, "amsgrad": True}),
    "adamw-default-decay": ("adamw", {}),  # torch.optim.AdamW default weight_decay 1e-2
}

TORCH_OPT = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

# float32: the same operations in the same order, but XLA and ATen may fuse (FMA) or
# vectorise differently: a few ULPs of the parameter per step.
TOL = {"float64": {"rtol": 1e-13, "atol": 1e-15}, "float32": {"rtol": 4e-6, "atol": 1e-7}}


def _data(dtype: str, seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    # gradients of varied scale per step; some steps shrink, so amsgrad's max matters
    grads = [
        [(rng.normal(size=s) * (2.0 if k % 3 == 0 else 0.1)).astype(dtype) for s in SHAPES]
        for k in range(STEPS)
    ]
    return params, grads


def _run_both(name, kw, lr, dtype, torch_sched=None, steps_per_epoch=1):
    params, grads = _data(dtype)
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    topt = TORCH_OPT[name](tparams, lr=lr if not callable(lr) else lr.base, **kw)
    sched = torch_sched(topt) if torch_sched else None
    tx = make_optimizer(name, lr if not callable(lr) else lr.fn, **kw)
    jparams = [jnp.asarray(p) for p in params]
    state = tx.init(jparams)
    update = jax.jit(tx.update)
    out = []
    for k, g in enumerate(grads):
        for tp, gk in zip(tparams, g):
            tp.grad = torch.tensor(gk)
        topt.step()
        if sched is not None and (k + 1) % steps_per_epoch == 0:
            sched.step()
        updates, state = update([jnp.asarray(x) for x in g], state, jparams)
        jparams = optax.apply_updates(jparams, updates)
        out.append(([np.asarray(p) for p in jparams], [tp.detach().numpy().copy() for tp in tparams]))
    return out


def _assert_steps_close(out, dtype, what):
    tol = TOL[dtype]
    for k, (ours, theirs) in enumerate(out, start=1):
        for i, (a, e) in enumerate(zip(ours, theirs)):
            assert a.dtype == np.dtype(dtype), f"{what}: parameter {i} became {a.dtype}"
            np.testing.assert_allclose(a, e, err_msg=f"{what}: step {k}, parameter {i}", **tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch_step_for_step(case, dtype):
    name, kw = CASES[case]
    out = _run_both(name, kw, 0.05, dtype)
    _assert_steps_close(out, dtype, case)
    # the parameters really moved (a no-op optimizer would pass nothing above but this)
    assert not np.allclose(out[-1][0][0], _data(dtype)[0][0])


def test_dampening_first_step_is_undamped():
    """torch's first momentum step copies the gradient (no (1 - dampening) factor)."""
    tx = make_optimizer("sgd", 1.0, momentum=0.9, dampening=0.5)
    p = jnp.zeros(3, jnp.float32)
    g = jnp.ones(3, jnp.float32)
    u1, state = tx.update(g, tx.init(p), p)
    u2, _ = tx.update(g, state, p)
    np.testing.assert_allclose(np.asarray(u1), -1.0)
    np.testing.assert_allclose(np.asarray(u2), -(0.9 * 1.0 + 0.5 * 1.0))


def test_amsgrad_uses_raw_second_moment_unlike_optax():
    """torch maxes the raw second moment; optax.amsgrad the bias-corrected one: they differ."""
    name, kw = CASES["adam-amsgrad"]
    ours = _run_both(name, kw, 0.05, "float64")[-1][0]
    params, grads = _data("float64")
    tx = optax.amsgrad(0.05)

    @jax.jit  # one compiled step (eager, optax's update compiles each of its operations apart)
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    p = [jnp.asarray(x) for x in params]
    s = tx.init(p)
    for g in grads:
        p, s = step(p, s, [jnp.asarray(x) for x in g])
    assert not np.allclose(np.asarray(p[0]), ours[0], rtol=1e-6, atol=0)


class _Sched:
    """A learning-rate schedule and the base value torch's optimizer is built with."""

    def __init__(self, base, fn):
        self.base, self.fn = base, fn

    def __call__(self, count):
        return self.fn(count)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sgd_with_step_lr_matches_torch(dtype):
    spe = 2
    lr = _Sched(0.1, step_lr(0.1, step_size=1, gamma=0.5, steps_per_epoch=spe))
    out = _run_both(
        "sgd",
        {"momentum": 0.9, "weight_decay": 1e-3},
        lr,
        dtype,
        torch_sched=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5),
        steps_per_epoch=spe,
    )
    _assert_steps_close(out, dtype, "sgd+StepLR")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adamw_with_cosine_matches_torch(dtype):
    spe = 1
    lr = _Sched(0.05, cosine_annealing(0.05, t_max=3, eta_min=0.001, steps_per_epoch=spe))
    out = _run_both(
        "adamw",
        {"weight_decay": 0.05, "amsgrad": True},
        lr,
        dtype,
        torch_sched=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3, eta_min=0.001),
        steps_per_epoch=spe,
    )
    _assert_steps_close(out, dtype, "adamw+cosine")


def _torch_lrs(make_sched, epochs, base=0.1):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = make_sched(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.asarray(lrs)


@pytest.mark.parametrize("step_size,gamma", [(1, 0.5), (3, 0.1), (2, 0.97)])
def test_step_lr_equals_torch(step_size, gamma):
    spe, epochs = 3, 20
    want = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size, gamma), epochs)
    sched = jax.jit(step_lr(0.1, step_size, gamma, spe))
    got = np.asarray([sched(jnp.asarray(c, jnp.int32)) for c in range(epochs * spe)])
    np.testing.assert_allclose(got, np.repeat(want, spe), rtol=1e-15, atol=0)  # conftest: x64 on


@pytest.mark.parametrize("t_max,eta_min", [(5, 0.0), (4, 0.01), (1, 0.0)])
def test_cosine_annealing_equals_torch_past_t_max(t_max, eta_min):
    spe, epochs = 2, 3 * t_max + 4  # past T_max: torch's schedule rises again (period 2 T_max)
    want = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), epochs
    )
    sched = jax.jit(cosine_annealing(0.1, t_max, eta_min, steps_per_epoch=spe))
    got = np.asarray([sched(jnp.asarray(c, jnp.int32)) for c in range(epochs * spe)])
    np.testing.assert_allclose(got, np.repeat(want, spe), rtol=1e-12, atol=1e-15)


def test_schedules_in_float32_mode_round_once():
    """Without x64 the table is float32: torch's float64 value rounded once (as torch casts alpha)."""
    sched = cosine_annealing(0.1, 7, 0.0, steps_per_epoch=1)
    want = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7), 8)
    with jax.enable_x64(False):
        got = np.asarray([sched(jnp.asarray(c, jnp.int32)) for c in range(8)])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_optimizer_state_is_a_pytree_for_checkpoints():
    tx = make_optimizer("adamw", 1e-3, weight_decay=1e-2, amsgrad=True)
    state = tx.init({"w": jnp.ones((2, 2), jnp.float32)})
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves) and len(leaves) == 4  # count, m, v, v_max


@pytest.mark.parametrize(
    "name,kw,message",
    [
        ("sgd", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
        ("sgd", {"momentum": 0.9, "dampening": 0.1, "nesterov": True}, "Nesterov momentum requires"),
        ("sgd", {"momentum": -0.1}, "Invalid momentum value: -0.1"),
        ("sgd", {"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
        ("adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        ("adam", {"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ("adam", {"momentum": 0.9}, "optimizer 'adam' has no option momentum"),
        ("sgd", {"amsgrad": True}, "optimizer 'sgd' has no option amsgrad"),
        ("rmsprop", {}, "unknown optimizer 'rmsprop'"),
    ],
)
def test_invalid_options_raise_like_torch(name, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_optimizer(name, 0.1, **kw)


def test_negative_learning_rate_and_missing_params():
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        make_optimizer("sgd", -0.1)
    tx = make_optimizer("sgd", 0.1, weight_decay=0.1)
    p = jnp.ones(2)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(p, tx.init(p))
