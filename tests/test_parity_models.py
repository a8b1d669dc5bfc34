"""parity.compare_models: planted bugs are named at their layer with the right kind, faithful pairs pass.

Each planted bug is a small change to one side of a faithful pair (the weights converted with
train.convert, so the two models start equal); the test asserts the first divergence's layer
and kind, in float64 and float32. Small inputs keep each comparison to about a second.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxloss import parity
from jaxloss.parity.weights import torch_to_flax
from jaxloss.train.models import BatchNorm2d, ResNet18, SeedCNN
from jaxloss.train.torch_models import TorchResNet18, TorchSeedCNN

SEED_MAP = {"conv1": "model.0", "conv2": "model.2", "conv3": "model.4", "fc1": "model.7", "fc2": "model.8"}
DTYPES = ["float64", "float32"]


def _to_dtype(fm, tm, dtype):
    if dtype == "float64":
        tm.double()
        floats = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a
        nnx.update(fm, jax.tree.map(floats, nnx.state(fm)))
    return fm, tm


def _seed_pair(dtype, cls=SeedCNN):
    torch.manual_seed(0)
    tm = TorchSeedCNN()
    fm = cls(rngs=nnx.Rngs(0))
    torch_to_flax(tm, fm)
    return _to_dtype(fm, tm, dtype)


def _images(n, size, dtype, seed=1):
    x = np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(dtype)
    return x.transpose(0, 2, 3, 1).copy(), x


def _compare_seed(fm, tm, dtype, **kw):
    xj, xt = _images(2, 32, dtype)
    return parity.compare_models(fm, tm, xj, xt, mapping=SEED_MAP, **kw)


def _first(report):
    d = report.first_divergence
    assert d is not None, str(report)
    return d


# --------------------------------------------------------------------------- a user-written pair, other names
class UserNet(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(3, 4, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.norm = BatchNorm2d(4)
        self.head = nnx.Linear(4, 5, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.norm(self.stem(x)))
        return self.head(h.mean(axis=(1, 2)))


class TorchUserNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


USER_MAP = {"stem": "conv", "norm": "bn", "head": "fc"}


def _user_pair(dtype):
    torch.manual_seed(0)
    tm = TorchUserNet()
    fm = UserNet(nnx.Rngs(0))
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    fm.stem.kernel[...] = jnp.asarray(sd["conv.weight"].transpose(2, 3, 1, 0))
    fm.stem.bias[...] = jnp.asarray(sd["conv.bias"])
    fm.head.kernel[...] = jnp.asarray(sd["fc.weight"].T)
    fm.head.bias[...] = jnp.asarray(sd["fc.bias"])
    return _to_dtype(fm, tm, dtype)


def _compare_user(fm, tm, dtype, **kw):
    xj, xt = _images(3, 6, dtype)
    return parity.compare_models(fm, tm, xj, xt, mapping=USER_MAP, **kw)


# --------------------------------------------------------------------------- faithful pairs
@pytest.mark.parametrize("dtype", DTYPES)
def test_faithful_seed_cnn_passes(dtype):
    fm, tm = _seed_pair(dtype)
    r = _compare_seed(fm, tm, dtype, reference=dtype == "float32")
    assert r.passed and r.first_divergence is None, str(r)
    kinds = {(d.jax_path, d.kind) for d in r.layers}
    assert {("conv1", "forward"), ("conv1", "grad"), ("fc2", "forward"), ("", "forward")} <= kinds
    assert {d.tensor for d in r.layers if d.jax_path == "conv2" and d.kind == "grad"} == {"output", "weight", "bias"}
    assert r.unpaired_torch == ["model.1", "model.3", "model.5", "model.6", "model"]  # pools, flatten, the Sequential
    if dtype == "float32":
        assert all(d.closer in ("jax", "torch", "tie") and d.torch_ref_passed for d in r.layers)


@pytest.mark.parametrize("dtype", DTYPES)
def test_faithful_user_model_with_mapping_passes(dtype):
    fm, tm = _user_pair(dtype)
    r = _compare_user(fm, tm, dtype)
    assert r.passed, str(r)
    running = [d for d in r.layers if d.jax_path == "norm" and d.kind == "forward" and d.tensor != "output"]
    assert {d.tensor for d in running} == {"running_mean", "running_var", "num_batches_tracked"}
    # the models are left as they were (statistics updated on copies)
    assert float(tm.bn.running_mean.abs().sum()) == 0.0 and float(jnp.abs(fm.norm.mean[...]).sum()) == 0.0
    with pytest.raises(ValueError, match="mapping: unknown JAX paths"):
        parity.compare_models(fm, tm, *_images(3, 6, dtype), mapping={"nope": "conv"})


@pytest.mark.slow  # ResNet-18 with a probe on every layer, float64 (~25 CPU s)
def test_faithful_resnet18_train_mode_batchnorm_passes():
    torch.manual_seed(0)
    tm = TorchResNet18(cifar_stem=True)
    fm = ResNet18(rngs=nnx.Rngs(0), cifar_stem=True)
    torch_to_flax(tm, fm)
    fm.train(), tm.train()
    fm, tm = _to_dtype(fm, tm, "float64")
    xj, xt = _images(4, 8, "float64", seed=3)  # layer4 normalises over 4 values (2 would leave it degenerate)
    r = parity.compare_models(fm, tm, xj, xt)
    assert r.passed, r.table(only_failed=True)
    paths = [d.jax_path for d in r.layers if d.kind == "forward" and d.tensor == "output"]
    assert paths[:3] == ["conv1", "bn1", "layer1.0.conv1"] and "layer4.1.bn2" in paths
    assert not r.unpaired_jax  # every NNX module has its torch namesake
    assert any(d.tensor == "running_var" and d.jax_path == "layer2.0.downsample.1" for d in r.layers)


# --------------------------------------------------------------------------- planted bugs
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_off_in_one_element(dtype):
    fm, tm = _seed_pair(dtype)
    with torch.no_grad():
        tm.model[2].weight[3, 1, 2, 2] += 1e-3
    r = _compare_seed(fm, tm, dtype)
    d = _first(r)
    assert (d.jax_path, d.torch_name, d.kind) == ("conv2", "model.2", "forward")
    assert all(x.passed for x in r.layers if x.jax_path == "conv1" and x.kind == "forward")
    p = r.first_param_divergence
    assert (p.jax_path, p.tensor, p.n_bad, p.worst_index) == ("conv2", "weight", 1, (3, 1, 2, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_off(dtype):
    fm, tm = _seed_pair(dtype)
    with torch.no_grad():
        tm.model[7].bias += 1e-3
    d = _first(_compare_seed(fm, tm, dtype))
    assert (d.jax_path, d.kind) == ("fc1", "forward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_wrong(dtype):
    fm, tm = _seed_pair(dtype)
    fm.conv3.padding = ((1, 3), (1, 3))  # same output shape, shifted window
    d = _first(_compare_seed(fm, tm, dtype))
    assert (d.jax_path, d.kind) == ("conv3", "forward")


class NHWCFlattenCNN(SeedCNN):
    """The classic porting bug: flatten the NHWC feature map as it is."""

    def __call__(self, x):
        for conv in (self.conv1, self.conv2, self.conv3):
            x = conv(x)
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        return self.fc2(self.fc1(x.reshape(x.shape[0], -1)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_order_wrong(dtype):
    fm, tm = _seed_pair(dtype, NHWCFlattenCNN)
    r = _compare_seed(fm, tm, dtype)
    d = _first(r)
    assert (d.jax_path, d.kind) == ("fc1", "forward")
    assert all(x.passed for x in r.layers if x.jax_path.startswith("conv") and x.kind == "forward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_momentum_convention_wrong(dtype):
    fm, tm = _user_pair(dtype)
    tm.bn.momentum = 0.9  # Flax's convention number in torch's formula
    r = _compare_user(fm, tm, dtype)
    d = _first(r)
    assert (d.jax_path, d.torch_name, d.kind, d.tensor) == ("norm", "bn", "forward", "running_mean")
    assert all(x.passed for x in r.layers if x.tensor == "output")  # train mode: outputs agree


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return 1.5 * g


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_only_bug(dtype):
    fm, tm = _seed_pair(dtype)
    tm.model[2].register_forward_hook(lambda m, i, o: _ScaleGrad.apply(o))
    r = _compare_seed(fm, tm, dtype)
    d = _first(r)
    assert (d.jax_path, d.kind) == ("conv2", "grad")
    assert all(x.passed for x in r.layers if x.kind == "forward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_injected_mid_network(dtype):
    fm, tm = _seed_pair(dtype)

    def poison(m, i, o):
        o = o.clone()
        o[1, 5, 2, 3] = float("nan")
        return o

    tm.model[4].register_forward_hook(poison)
    r = _compare_seed(fm, tm, dtype)
    d = _first(r)
    assert (d.jax_path, d.kind) == ("conv3", "forward")
    nf = r.first_nonfinite
    assert nf.jax_path == "conv3" and nf.torch_nonfinite == (1, 5, 2, 3) and nf.jax_nonfinite is None
    assert "first NaN/inf in torch at conv3" in r.verdict()


def test_float32_divergence_vs_torch_float64_run():
    """With a float64 reference, a port bug is told apart from float32 rounding: torch's own
    float32 run stays within tolerance of its float64 run where the port leaves it."""
    fm, tm = _seed_pair("float32")
    with torch.no_grad():
        tm.model[7].bias += 1e-3
    r = _compare_seed(fm, tm, "float32", reference=True)
    d = _first(r)
    assert d.jax_path == "fc1" and d.torch_ref_passed is True and d.jax_ref_passed is False and d.closer == "torch"
    assert d.jax_ref_abs > 100 * d.torch_ref_abs and "JAX's is not" in r.verdict()


def test_per_layer_tolerance_and_fail_fast():
    fm, tm = _seed_pair("float64")
    with torch.no_grad():
        tm.model[7].bias += 1e-3
    r = _compare_seed(fm, tm, "float64", atol={"fc1": 1e-2, "fc2": 1e-2, "": 1e-2}, rtol={"fc1": 1e-2, "fc2": 1e-2, "": 1e-2})
    assert all(d.passed for d in r.layers if d.kind == "forward"), r.table(only_failed=True)
    r = _compare_seed(fm, tm, "float64", fail_fast=True)
    assert not r.layers[-1].passed and sum(not d.passed for d in r.layers) == 1 and r.layers[-1].jax_path == "fc1"


def test_compare_params_by_name():
    fm, tm = _seed_pair("float32")
    assert all(d.passed for d in parity.compare_params(fm, tm, mapping=SEED_MAP))
    with torch.no_grad():
        tm.model[8].weight[0, 0] += 1.0
    bad = [d for d in parity.compare_params(fm, tm, mapping=SEED_MAP) if not d.passed]
    assert [(d.jax_path, d.tensor, d.worst_index) for d in bad] == [("fc2", "weight", (0, 0))]
    import copy

    (d,) = [d for d in parity.compare_params(fm, tm, mapping=SEED_MAP, reference=copy.deepcopy(tm).double()) if not d.passed]
    assert d.torch_ref_passed is True and d.closer == "torch"  # torch's weights are its float64 copy's: the port moved


def test_golden_round_trip_across_frameworks(tmp_path):
    fm, tm = _seed_pair("float32")
    xj, xt = _images(2, 32, "float32")
    path = str(tmp_path / "torch.npz")
    parity.save_golden(path, tm, xt)
    from jaxloss.parity.models.golden import load_golden

    g = load_golden(path)
    assert g.framework == "torch" and g.meta["dtype"] == "float32" and g.meta["versions"]["torch"] == torch.__version__
    assert parity.compare_golden(fm, None, path, mapping=SEED_MAP).passed  # golden inputs, transposed
    with torch.no_grad():
        tm.model[4].bias += 1e-3
    jpath = str(tmp_path / "jax.npz")
    parity.save_golden(jpath, fm, xj)
    r = parity.compare_golden(tm, xt, jpath, mapping=SEED_MAP)  # torch today against JAX's file
    assert (r.first_divergence.jax_path, r.first_divergence.kind) == ("conv3", "forward")
    same = parity.compare_golden(fm, xj, jpath)  # JAX against its own earlier run: exact
    assert same.passed and max(d.max_abs_err for d in same.layers) == 0.0


def test_cli_prints_table_writes_report_and_golden(tmp_path, capsys):
    from jaxloss.parity.models.__main__ import main

    golden = str(tmp_path / "t.npz")
    assert main(["--model", "seed-cnn", "--save", golden]) == 0
    rc = main(["--model", "seed-cnn", "--against", golden, "--out", str(tmp_path / "rep"), "--all"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PASSED" in out and "forward conv2 (torch model.2)" in out
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in html and "layer" in html
    assert (tmp_path / "rep" / "layers.png").stat().st_size > 5000
    with pytest.raises(SystemExit) as e:
        main(["--model", "seed-cnn", "--image-size", "16"])
    assert e.value.code == 2


def test_cli_without_torch_says_what_to_install(monkeypatch, capsys):
    from jaxloss.parity.models.__main__ import main

    monkeypatch.setitem(sys.modules, "torch", None)  # as in an install without the parity extra
    with pytest.raises(SystemExit) as e:
        main(["--model", "seed-cnn"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "python -m jaxloss.parity.models: error: the model comparison needs torch: pip install 'jaxloss[parity]'\n")


def test_cli_leads_with_the_verdict_and_the_exact_command(capsys):
    """A float32 failure: the first line says it is rounding (torch's own float32 run leaves float64
    too), the second gives the float64 command; the per-layer lines only with --verbose."""
    from jaxloss.parity.models.__main__ import main

    argv = ["--model", "seed-cnn", "--rtol", "0", "--atol", "0"]  # no room for float32 rounding
    assert main(argv) == 1
    start, *lines = capsys.readouterr().out.splitlines()  # the start line names the run, then the verdict
    assert start == "python -m jaxloss.parity.models: seed-cnn float32 batch 4 32x32, precision ieee", start
    assert lines[0].startswith("FAILED float32 tolerance") and "float32 rounding, not a porting error" in lines[0], lines
    assert lines[1] == ("exact comparison (float64): python -m jaxloss.parity.models --model seed-cnn --dtype float64 "
                        "--batch-size 4 --image-size 32")
    assert not any(line.startswith("FAIL ") for line in lines) and len(lines) < 10, lines
    worst = next(line for line in lines if line.startswith("worst: "))
    assert "(1 is the limit); max abs from float64: JAX " in worst and ", torch " in worst, worst
    assert main([*argv, "--verbose"]) == 1
    assert sum(line.startswith("FAIL ") for line in capsys.readouterr().out.splitlines()) > 5


def test_the_default_batch_is_not_degenerate_and_a_degenerate_one_is_named(capsys):
    """At batch 2, ResNet-18's last BatchNorms (1x1 maps at 16x16) normalise over 2 values: their output
    is +-1 whatever the input, and the float64 comparison fails on rounding noise. The default batch
    gives the 4 values of test_faithful_resnet18_train_mode_batchnorm_passes (float64, within tolerance)."""
    import argparse

    from jaxloss.parity.models.__main__ import _parse, degenerate_note
    from jaxloss.parity.models.twins import DEFAULT_BATCH, batchnorm_values

    args = _parse(["--model", "resnet18", "--dtype", "float64"])
    assert args.batch_size == DEFAULT_BATCH
    assert batchnorm_values("resnet18", DEFAULT_BATCH, 16) == batchnorm_values("resnet18", 4, 8, cifar_stem=True) == 4
    assert degenerate_note(args, 16) == ""
    note = degenerate_note(argparse.Namespace(**{**vars(args), "batch_size": 2}), 16)
    assert note.startswith("note: batch 2 at 16x16: the last BatchNorms normalise over 2 value(s) per channel")
    assert degenerate_note(_parse(["--model", "seed-cnn", "--batch-size", "1"]), 32) == ""  # no BatchNorm
