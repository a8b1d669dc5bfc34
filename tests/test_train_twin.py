"""jaxloss.parity.twin: short lockstep runs of Flax/optax against torch/torch.optim stay together.

The full runs (50 SeedCNN steps, 10 ResNet-18 steps) are ``python -m jaxloss.parity.twin``; these
are their short versions, small enough for the suite.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jaxloss.parity.twin import TwinConfig, loss_pair, main, run_twin
from jaxloss.train.config import ConfigError, TrainConfig

from tests._train_cache import compilation_cache  # noqa: F401  (fixture)


@pytest.mark.usefixtures("compilation_cache")
def test_seed_cnn_sgd_momentum_cli_writes_report(tmp_path, capsys):
    rc = main(
        [
            "--model",
            "seed-cnn",
            "--steps",
            "5",
            "--batch-size",
            "8",
            "--optimizer",
            "sgd",
            "--momentum",
            "0.9",
            "--lr",
            "0.05",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "twin.json").read_text())
    assert report["passed"] and len(report["steps"]) == 5
    steps = report["steps"]
    # early steps agree to float32 rounding, element by element
    assert all(s["strict"] for s in steps[:3]), steps
    assert max(s["loss_diff"] for s in steps) < 1e-5
    assert max(s["param_diff"] for s in steps) < 1e-5
    assert (tmp_path / "twin.png").stat().st_size > 10_000
    assert (tmp_path / "twin.md").read_text().count("\n|") >= 6
    assert "max |dparam|" in out and "within float32 tolerance" in out


@pytest.mark.slow  # the suite's longest test (~35 CPU s): float64 ResNet-18 steps in both frameworks
def test_resnet18_train_mode_batchnorm_twin():
    """ResNet-18 (torchvision stem, 32x32, SGD momentum) with train-mode BatchNorm, 2 steps, float64.

    Element by element in float64. A float32 run of this network is not comparable element
    by element after its first update: a ReLU or max-pool decision whose float64 margin is
    below float32 rounding goes either way in either framework, and one flipped decision moves
    whole weight tensors (measured: of seeds 0-3, two flip in step 1 or 2 with XLA:CPU's
    default options and three with train.step's; torch's own float32 run flips against its
    float64 run too). The float32 first step is checked in tests/test_train_models.py.
    """
    cfg = TwinConfig(
        TrainConfig(model="resnet18", batch_size=8, optimizer="sgd", momentum=0.9, lr=0.01),
        steps=2, image_size=32, dtype="float64", reference=False,
    )  # fmt: skip
    r = run_twin(cfg)
    assert r.passed and all(s.strict for s in r.steps), [vars(s) for s in r.steps]
    assert r.max_loss_diff < 1e-12 and r.max_param_diff < 1e-12, [vars(s) for s in r.steps]
    assert r.max_buffer_diff < 1e-12  # BatchNorm running statistics


@pytest.mark.slow  # the float64 seed-CNN step compiled with AdamW+AMSGrad in both frameworks (~6.7 CPU s)
def test_float64_twin_is_exact_with_adamw_amsgrad_and_cosine():
    """In float64 both frameworks do the same arithmetic: the runs agree to float64 rounding.

    Slow tier: its pieces stay default in cheaper tests: the twin's float64 run passing
    (tests/test_twin_diagnosis.py's faithful run), AdamW+AMSGrad with the cosine schedule against
    torch.optim step for step (tests/test_train_optim.py), the twin's CLI (the test above)."""
    r = run_twin(
        TwinConfig(
            TrainConfig(model="seed-cnn", batch_size=4, optimizer="adamw", lr=1e-3, amsgrad=True,
                        lr_schedule="cosine", epochs=2, loss="cross_entropy", label_smoothing=0.1),
            steps=4, steps_per_epoch=1, dtype="float64",
        )
    )
    assert r.passed
    assert r.max_param_diff < 1e-12 and r.max_loss_diff < 1e-12
    assert jax.config.read("jax_enable_x64")  # conftest's setting is restored


LOSS_CASES = [
    ("cross_entropy", {"label_smoothing": 0.2}),
    ("nll_loss", {}),
    ("focal_loss", {"gamma": 2.0, "alpha": [0.5] * 5}),
    ("mse_loss", {}),
    ("multi_margin_loss", {}),
    ("soft_margin_loss", {}),
    ("kl_div", {}),
    ("binary_cross_entropy", {}),
    ("sigmoid_focal_loss", {"gamma": 2.0}),
    ("multilabel_margin_loss", {}),
    ("poisson_nll_loss", {}),
]


def test_loss_pair_values_and_gradients_agree():
    """Each case's JAX value and gradient (float64) against torch's; the JAX side of every case in one
    compiled program (eager: each case's operations and their gradients compiled apart); a failure
    lists every disagreeing case."""
    pairs = {f"{name}{kw}": loss_pair(name, 5, **kw)[:2] for name, kw in LOSS_CASES}
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5))
    y = rng.integers(0, 5, size=6)
    ours = jax.jit(lambda z, t: {k: jax.value_and_grad(jl)(z, t) for k, (jl, _) in pairs.items()})(
        jnp.asarray(logits), jnp.asarray(y)
    )
    bad = []
    for case, (_, tl) in pairs.items():
        lt = torch.tensor(logits, requires_grad=True)
        vt = tl(lt, torch.tensor(y))
        vt.backward()
        vj, gj = ours[case]
        try:
            np.testing.assert_allclose(float(vj), float(vt.detach()), rtol=1e-12, err_msg="value")
            np.testing.assert_allclose(np.asarray(gj), lt.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg="gradient")
        except AssertionError as e:
            bad.append(f"{case}: {e}")
    assert len(pairs) == len(LOSS_CASES) and not bad, "\n".join(bad)


def test_bad_options_are_reported():
    with pytest.raises(ConfigError, match="^loss ctc_loss is not a classification loss"):
        loss_pair("ctc_loss", 10)
    assert main(["--model", "seed-cnn", "--image-size", "16", "--steps", "1"]) == 2
    assert main(["--batch-size", "0"]) == 2
    with pytest.raises(TypeError, match="unknown twin option"):
        run_twin(TwinConfig(), stepz=3)


@pytest.mark.usefixtures("compilation_cache")
def test_the_first_failure_keeps_both_models_as_they_were_before_that_step():
    """With a zero tolerance float32 rounding fails step 1; the result holds what that step started from."""
    from jaxloss.parity.weights import flax_state_dict

    # the CLI test's recipe and batch: with the compilation cache the step is compiled once for both;
    # no diagnosis (its per-layer comparison compiles the model's probes: test_twin_diagnosis runs it)
    r = run_twin(TwinConfig(TrainConfig(batch_size=8, lr=0.05), steps=2, reference=False, rtol=0.0, atol=0.0,
                            diagnose=False))
    assert not r.passed and r.first_failure is not None and r.first_failure.step == 1
    f = r.first_failure
    ours = flax_state_dict(f.flax_model, f.torch_model)
    theirs = {k: v.detach().numpy() for k, v in f.torch_model.state_dict().items()}
    for k, value in theirs.items():  # the converted initial weights: identical before the first update
        np.testing.assert_array_equal(ours[k], value)
    assert f.jax_args[0].shape == (8, 32, 32, 3) and tuple(f.torch_args[0].shape) == (8, 3, 32, 32)
    jl = f.flax_model(*f.jax_args)
    tl = f.torch_model(*f.torch_args)
    np.testing.assert_allclose(np.asarray(jl), tl.detach().numpy(), rtol=1e-4, atol=1e-4)  # re-runnable


def _rounding_failure():
    """A float32 run with 4 of 5 steps outside tolerance, diagnosed as rounding torch's own run shares."""
    from jaxloss.parity.twin import TwinDiagnosis, TwinResult, TwinStep

    steps = [TwinStep(k, 2.3, 2.3, 1e-6, 1e-4, 1e-3, 1e-5, k == 1, param_bound=1e-5, loss_bound=1e-5,
                      within_tolerance=k == 1, ref_loss_diff=1e-6, jax_ref_loss_diff=2e-6, ref_param_diff=3e-5,
                      jax_ref_param_diff=4e-5) for k in range(1, 6)]  # fmt: skip
    diagnosis = TwinDiagnosis(2, "layer4.0.bn1.weight", "after", False, "layer4.0.bn1", "grad", 1e-4, False)
    config = {"model": "resnet18", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "loss": "cross_entropy",
              "steps": 5, "batch_size": 4, "dtype": "float32", "precision": "ieee"}  # fmt: skip
    return TwinResult(config, 1.3e-6, 1e-5, steps, "cpu", 1.0, None, diagnosis)


def test_the_twin_leads_with_what_kind_of_difference_and_fits_the_terminal(tmp_path, monkeypatch):
    """Not a bare "FAILED (4 of 5 steps outside tolerance)" with the explanation at the bottom: the
    first line and the plot title say it is float32 rounding, and the float64 command compares exactly."""
    import matplotlib.figure
    from jaxloss.parity.twin import _exact_command, format_table, plot, verdict_line

    result = _rounding_failure()
    line = verdict_line(result, _exact_command(["--model", "resnet18", "--dtype", "float32", "--steps", "5"]))
    assert line == ("FAILED: 4 of 5 steps outside float32 tolerance (first: step 2): float32 rounding: torch's own "
                    "float32 run leaves float64 there too. Exact comparison: python -m jaxloss.parity.twin --model resnet18 "
                    "--steps 5 --dtype float64")  # fmt: skip
    for width in (120, 80):
        table = format_table(result, width=width).splitlines()
        assert max(map(len, table)) <= width and table[0].split()[:2] == ["step", "ok"]
    assert r"flax \|dparam\| vs f64" in format_table(result, markdown=True)  # every column in twin.md
    titles = []
    real = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda self, t, **kw: titles.append(t) or real(self, t, **kw))
    plot(result, tmp_path / "twin.png")
    assert titles[0].endswith("4 of 5 steps outside tolerance: float32 rounding: torch's own float32 run leaves float64 there too")
