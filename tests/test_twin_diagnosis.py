"""jaxloss.parity.twin's diagnosis: at the first step outside tolerance the twin names the parameter
and the layer that diverged (parity.compare_models on the models before that step).

Bugs are planted on the torch side of the twin (after the weights were converted to Flax), so
the Flax model is the faithful one and the twin must point at the planted layer.
"""

from __future__ import annotations

import json

import jaxloss.parity.twin.run as twin_run  # the run builds its models through twin_run.models
import pytest
import torch
from jaxloss.parity.twin import main, run_twin

from tests._train_cache import compilation_cache  # noqa: F401  (fixture)
from tests.test_parity_models import _ScaleGrad  # identity forward, gradient times 1.5

pytestmark = pytest.mark.usefixtures("compilation_cache")
SMALL = {"model": "seed-cnn", "batch_size": 4}  # seed CNN: model.0 conv1, model.2 conv2, model.4 conv3, model.7 fc1


def _plant(monkeypatch, bug):
    """Make the twin's torch model carry ``bug(torch_model)``, planted after the conversion to Flax."""
    models = twin_run.models

    def planted(cfg):
        fm, tm = models(cfg)
        bug(tm)
        return fm, tm

    monkeypatch.setattr(twin_run, "models", planted)


def _scale_conv2_grad(tm):
    tm.model[2].register_forward_hook(lambda m, i, o: _ScaleGrad.apply(o))


def _perturb_conv3_weight(tm):
    with torch.no_grad():
        tm.model[4].weight[0, 0, 0, 0] += 1e-3


def test_backward_only_bug_named_at_its_layer_with_kind_grad(monkeypatch):
    """float64 (exact, so no near-tie can decide anything): conv2's gradient, then its parameters after the step."""
    _plant(monkeypatch, _scale_conv2_grad)
    r = run_twin(steps=2, dtype="float64", **SMALL)
    d = r.diagnosis
    assert not r.passed and d is not None and d.step == 1
    assert (d.report.first_divergence.jax_path, d.kind) == ("conv2", "grad"), d.report.verdict()
    assert all(x.passed for x in d.report.layers if x.kind == "forward")
    assert d.parameter_when == "after" and d.parameter.startswith("model.2."), d.parameter  # conv2 moved first
    assert d.torch_ref_passed is None  # float64: no reference run
    assert "layer conv2 (torch model.2)" in d.line() and "(grad, max abs" in d.line(), d.line()


@pytest.mark.slow  # float32 twin plus its float64 reference and diagnosis (~9 CPU s): the slow tier; the default
# tier keeps the float64 diagnosis above, and tests/test_train_twin.py runs the twin's CLI
def test_forward_bug_named_at_its_parameter_and_layer_cli(monkeypatch, tmp_path, capsys):
    """float32 with the float64 reference (which carries the same weight): the perturbed weight is the
    parameter, its layer the first forward divergence, and torch's float32 run is within tolerance there."""
    _plant(monkeypatch, _perturb_conv3_weight)
    assert main(["--model", "seed-cnn", "--batch-size", "4", "--steps", "2", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    line = ("first divergence at step 1: parameter model.4.weight (before the step); layer conv3 (torch model.4) "
            "(forward, max abs")  # fmt: skip
    assert line in out and "float64 there: no\n" in out + "\n", out
    d = json.loads((tmp_path / "twin.json").read_text())["diagnosis"]
    assert (d["parameter"], d["layer"], d["kind"]) == ("model.4.weight", "conv3 (torch model.4)", "forward")
    assert d["torch_ref_passed"] is True and d["parameter_torch_ref_passed"] is True
    assert (d["flax_only_layer"], d["flax_only_kind"], d["routing"]) == ("conv3 (torch model.4)", "forward", False)
    assert "near-tie" not in out
    assert d["report"]["first_divergence"]["jax_path"] == "conv3"
    assert line in (tmp_path / "twin.md").read_text()


def test_no_diagnose_skips_it(monkeypatch):
    _plant(monkeypatch, _perturb_conv3_weight)
    r = run_twin(steps=1, dtype="float64", diagnose=False, **SMALL)
    assert not r.passed and r.first_failure is not None and r.diagnosis is None


def test_faithful_float64_run_has_no_diagnosis():
    r = run_twin(steps=2, dtype="float64", **SMALL)
    assert r.passed and r.first_failure is None and r.diagnosis is None
