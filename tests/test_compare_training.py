"""parity.compare_training: a user's own Flax NNX and torch training steps in lockstep.

Small user-style pairs (an MLP with LayerNorm, a small conv net), their weights copied by hand
(:func:`_copy_weights`, until a general torch -> NNX loader exists), trained with SGD / Adam /
AdamW written as users write them (``nnx.Optimizer`` under ``@nnx.jit``; ``zero_grad`` /
``backward`` / ``step``). Faithful ports pass, in float64 strictly and in float32 against the
float64 reference; each planted difference is named at its step with its kind. Planted runs are
float64, where the two frameworks agree to rounding and any difference is the planted one.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

from jaxloss import parity
from tests._train_cache import compilation_cache  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("compilation_cache")


# --------------------------------------------------------------------------- the user's models
class FlaxMLP(nnx.Module):
    def __init__(self, dtype, rngs):
        kw = {"param_dtype": dtype, "dtype": dtype, "rngs": rngs}
        self.fc1, self.fc2 = nnx.Linear(4, 8, **kw), nnx.Linear(8, 3, **kw)
        self.norm = nnx.LayerNorm(8, epsilon=1e-5, **kw)  # torch's eps (NNX's default is 1e-6)

    def __call__(self, x):
        return self.fc2(nnx.tanh(self.norm(self.fc1(x))))


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.norm, self.fc2 = torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


class FlaxConvNet(nnx.Module):
    def __init__(self, dtype, rngs):
        kw = {"param_dtype": dtype, "dtype": dtype, "rngs": rngs}
        self.conv, self.fc = nnx.Conv(2, 4, (3, 3), padding=1, **kw), nnx.Linear(4, 3, **kw)

    def __call__(self, x):  # NHWC
        return self.fc(nnx.tanh(self.conv(x)).mean(axis=(1, 2)))


class TorchConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Linear(4, 3)

    def forward(self, x):  # NCHW
        return self.fc(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


def _copy_weights(fm, tm):
    """torch's weights into the Flax model, by module name (Linear, Conv2d, LayerNorm only)."""
    for name, mod in tm.named_modules():
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm)):
            continue
        target = fm
        for part in name.split("."):
            target = getattr(target, part)
        w = mod.weight.detach().numpy()
        if isinstance(mod, torch.nn.LayerNorm):
            target.scale.set_value(jnp.asarray(w))
        else:  # (out, in) / OIHW -> (in, out) / HWIO
            target.kernel.set_value(jnp.asarray(w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0)))
        target.bias.set_value(jnp.asarray(mod.bias.detach().numpy()))


def _pair(kind="mlp", dtype="float64"):
    torch.manual_seed(0)
    tm = (TorchMLP if kind == "mlp" else TorchConvNet)().to(getattr(torch, dtype))
    fm = (FlaxMLP if kind == "mlp" else FlaxConvNet)(np.dtype(dtype), nnx.Rngs(0))
    _copy_weights(fm, tm)
    return fm, tm


def _batches(kind="mlp", dtype="float64", n=4, repeat=False):
    """``n`` batches ``((x, y), (x_torch, y_torch))``; ``repeat``: the same batch each time (the loss must go down)."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(0 if repeat else k)
        x = rng.normal(size=(6, 4) if kind == "mlp" else (4, 5, 5, 2)).astype(dtype)
        y = rng.integers(0, 3, size=len(x))
        xt = x if kind == "mlp" else x.transpose(0, 3, 1, 2).copy()
        out.append(((x, y), (torch.from_numpy(xt), torch.from_numpy(y))))
    return out


# --------------------------------------------------------------------------- the user's losses and steps
def jax_ce(model, x, y, smoothing=0.0):
    logits = model(x)
    labels = optax.smooth_labels(nnx.one_hot(y, 3).astype(logits.dtype), smoothing)
    return optax.softmax_cross_entropy(logits, labels).mean()


def torch_ce(model, x, y):
    return F.cross_entropy(model(x), y)


def make_jax_step(loss=jax_ce):
    @nnx.jit
    def step(model, optimizer, x, y):
        value, grads = nnx.value_and_grad(lambda m: loss(m, x, y))(model)
        optimizer.update(model, grads)
        return value

    return step


def make_torch_step(loss=torch_ce, schedule=None, clip=None):
    def step(model, optimizer, x, y):
        optimizer.zero_grad()
        value = loss(model, x, y)
        value.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        return value

    return step


def _run(tx, make_topt, *, kind="mlp", dtype="float64", steps=3, jax_loss=jax_ce, torch_step=None,
         schedule=None, losses=True, repeat=False, **kw):  # fmt: skip
    fm, tm = _pair(kind, dtype)
    topt = make_topt(tm.parameters())
    sched = schedule(topt) if schedule else None
    return parity.compare_training(
        make_jax_step(jax_loss), torch_step or make_torch_step(schedule=sched), (fm, nnx.Optimizer(fm, tx, wrt=nnx.Param)),
        (tm, topt), _batches(kind, dtype, steps, repeat), losses=(jax_loss, torch_ce) if losses else None, **kw,
    )  # fmt: skip


def sgd(p):
    return torch.optim.SGD(p, lr=0.1, momentum=0.9)


def adam(p):
    return torch.optim.Adam(p, lr=0.01, eps=1e-3)


def adamw(p):
    return torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)


# --------------------------------------------------------------------------- faithful ports pass
@pytest.mark.parametrize("tx,topt", [(optax.sgd(0.1, momentum=0.9), sgd), (optax.adam(0.01, eps=1e-3), adam),
                                     (optax.adamw(0.01, weight_decay=0.1), adamw)], ids=["sgd", "adam", "adamw"])  # fmt: skip
def test_faithful_mlp_passes_in_float64(tx, topt):
    """optax's eps is added to sqrt(v_hat), as torch's: the faithful Adam uses optax's default placement."""
    r = _run(tx, topt, repeat=True)
    assert r.passed and r.first_divergence is None, str(r)
    assert len(r.steps) == 3 and all(s.strict for s in r.steps)
    assert 0 < max(s.param_diff for s in r.steps) < 1e-12  # compared (not 0 by a skipped pairing), float64-equal
    assert r.steps[-1].loss_torch < r.steps[0].loss_torch  # it trains


def test_faithful_float32_ports_pass_against_the_float64_reference():
    """float32: each step within what torch's own float32 run allows against its float64 copy."""
    for kind, tx, topt in (("mlp", optax.adamw(0.01, weight_decay=0.1), adamw), ("conv", optax.sgd(0.1, momentum=0.9), sgd)):
        r = _run(tx, topt, kind=kind, dtype="float32", steps=4, reference=True)
        assert r.passed and r.reference, str(r)
        assert all(s.ref_param_diff is not None and s.jax_ref_param_diff is not None for s in r.steps)
        assert 0 < max(s.ref_param_diff for s in r.steps) < 1e-5  # torch's float32 really left float64


# --------------------------------------------------------------------------- planted differences
class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times 1.5: a backward-only bug."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return 1.5 * g


def test_backward_only_scaling_is_a_grad_divergence_named_at_its_layer():
    fm, tm = _pair()
    tm.norm.register_forward_hook(lambda m, i, o: _ScaleGrad.apply(o))
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    r = parity.compare_training(make_jax_step(), make_torch_step(), (fm, nnx.Optimizer(fm, optax.sgd(0.1), wrt=nnx.Param)),
                                (tm, topt), _batches(n=2), losses=(jax_ce, torch_ce))  # fmt: skip
    d = r.first_divergence
    assert not r.passed and (d.step, d.kind) == (1, "grad"), str(r)
    assert d.name.startswith("norm."), d.name  # backward order: fc2's gradients agree, the LayerNorm's are the first scaled
    assert (d.layer.jax_path, d.layer.kind) == ("norm", "grad"), d.layer


def test_adam_eps_inside_the_square_root_is_an_update_divergence():
    """optax's eps_root (inside sqrt) is not torch's eps (outside): equal gradients, different updates."""
    r = _run(optax.adam(0.01, eps=0.0, eps_root=1e-3), adam)
    d = r.first_divergence
    assert not r.passed and (d.step, d.kind, d.layer) == (1, "update", None), str(r)
    assert d.update_ratio is not None and 0 < d.update_ratio < 1  # sqrt(g^2 + eps) > |g| + eps for |g| > eps: shorter steps


def test_coupled_weight_decay_against_adamw_is_an_update_divergence():
    """torch's AdamW decays the weights outside Adam; adding wd * p to the gradient first (torch's Adam) is another optimizer."""
    coupled = optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01))
    r = _run(coupled, adamw)
    d = r.first_divergence
    assert not r.passed and (d.step, d.kind) == (1, "update"), str(r)
    assert d.name in {n for n, _ in TorchMLP().named_parameters()}


def test_a_schedule_one_step_late_is_an_update_divergence_at_the_step_it_differs():
    """torch halves the rate after 2 steps (StepLR stepped each step); the port's boundary is one step late:
    steps 1-2 agree, step 3 updates twice as far on the Flax side (plain SGD: the ratio is the rates')."""
    late = optax.sgd(optax.piecewise_constant_schedule(0.1, {3: 0.5}))
    schedule = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    r = _run(late, lambda p: torch.optim.SGD(p, lr=0.1), steps=4, schedule=schedule)
    d = r.first_divergence
    assert [s.passed for s in r.steps] == [True, True, False, False], str(r)
    assert (d.step, d.kind) == (3, "update") and d.update_ratio == pytest.approx(2.0, rel=1e-6), str(r)
    on_time = _run(optax.sgd(optax.piecewise_constant_schedule(0.1, {2: 0.5})), lambda p: torch.optim.SGD(p, lr=0.1),
                   steps=4, schedule=schedule)  # fmt: skip
    assert on_time.passed, str(on_time)


def test_gradient_clipping_on_one_side_is_an_update_divergence():
    """Clipping is part of the optimizer step (optax.clip_by_global_norm is a transformation of the chain): the
    loss gradients agree and the updates do not, so it is an "update", Flax's step longer by 1 / clip factor."""
    r = _run(optax.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1), torch_step=make_torch_step(clip=1e-3))
    d = r.first_divergence
    assert not r.passed and (d.step, d.kind) == (1, "update"), str(r)
    assert d.update_ratio > 10  # the gradient's norm is far above 1e-3


def test_a_wrong_loss_is_named_at_step_1():
    """Label smoothing on the Flax side only: the losses differ and every layer agrees."""
    r = _run(optax.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1), jax_loss=lambda m, x, y: jax_ce(m, x, y, 0.1))
    d = r.first_divergence
    assert not r.passed and (d.step, d.kind) == (1, "loss") and d.layer is None, str(r)
    assert "loss function" in d.detail
    lines = str(r).splitlines()
    assert lines[0].startswith("FAILED: 3 of 3 steps") and lines[1].startswith("first divergence at step 1 (loss)")
    assert lines[2].split()[:3] == ["step", "ok", "strict"]  # then the per-step table


def test_without_losses_the_step_and_parameter_are_still_named():
    r = _run(optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)), adamw, losses=False)
    d = r.first_divergence
    assert not r.passed and d.step == 1 and d.name is not None and d.kind == "update", str(r)
    assert "pass losses=" in d.detail and d.layer is None


# --------------------------------------------------------------------------- verdicts that can fail, bad arguments
def test_nothing_compared_never_passes():
    fm, tm = _pair()
    jopt, topt = nnx.Optimizer(fm, optax.sgd(0.1), wrt=nnx.Param), torch.optim.SGD(tm.parameters(), lr=0.1)
    args = (make_jax_step(), make_torch_step(), (fm, jopt), (tm, topt))
    empty = parity.compare_training(*args, [])
    assert not empty.passed and empty.verdict() == "FAILED: no step ran: batches was empty"

    class Renamed(torch.nn.Module):  # the same network under other names: nothing pairs without mapping=
        def __init__(self):
            super().__init__()
            self.inner = tm

        def forward(self, x):
            return self.inner(x)

    wrapped = Renamed()
    r = parity.compare_training(make_jax_step(), make_torch_step(), (fm, jopt), (wrapped, torch.optim.SGD(wrapped.parameters(), lr=0.1)),
                                _batches(n=2))  # fmt: skip
    assert not r.passed and len(r.steps) == 1 and "nothing compared" in r.message, str(r)


def test_bad_arguments_name_themselves():
    fm, tm = _pair()
    jopt, topt = nnx.Optimizer(fm, optax.sgd(0.1), wrt=nnx.Param), torch.optim.SGD(tm.parameters(), lr=0.1)
    js, ts, b = make_jax_step(), make_torch_step(), _batches(n=1)
    cases = [
        ((None, ts, (fm, jopt), (tm, topt), b), {}, TypeError, "^jax_step must be a callable"),
        ((js, ts, fm, (tm, topt), b), {}, TypeError, "^jax_side must be a pair"),
        ((js, ts, (tm, jopt), (tm, topt), b), {}, TypeError, r"^jax_side\[0\] must be a flax.nnx.Module"),
        ((js, ts, (fm, jopt), (fm, topt), b), {}, TypeError, r"^torch_side\[0\] must be a torch.nn.Module"),
        ((js, ts, (fm, jopt), (tm, topt), b), {"steps": 0}, ValueError, "^steps must be None or a positive integer"),
        ((js, ts, (fm, jopt), (tm, topt), b), {"rtol": -1.0}, ValueError, "rtol"),
        ((js, ts, (fm, jopt), (tm, topt), b), {"losses": (jax_ce,)}, TypeError, "^losses must be a pair"),
        ((js, ts, (fm, jopt), (tm, topt), b), {"reference": "yes"}, TypeError, "^reference must be True, False"),
        ((js, ts, (fm, jopt), (tm, topt), 3), {}, TypeError, "^batches must be an iterable"),
    ]
    for args, kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            parity.compare_training(*args, **kw)
