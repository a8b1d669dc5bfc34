"""The model tables (train.registry.MODELS, parity.models.twins.TORCH_TWINS): a new model is two entries.

A toy model registered in both tables, here and nowhere else, goes through every path that
builds a model (the train command line's flags, ``TrainConfig`` validation, ``recipe.build_model``,
``build_pair`` and its comparison against torch); a Flax model without a twin is refused by name.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from jaxloss.parity.models import twins
from jaxloss.train import registry

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Toy(nnx.Module):
    """Conv 3->4 (3x3, padding 1), optional ReLU, global mean, Linear 4->num_classes."""

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = 10, activation: str | None = None, dtype=None) -> None:
        self.conv = nnx.Conv(3, 4, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, rngs=rngs)
        self.fc = nnx.Linear(4, num_classes, dtype=dtype, rngs=rngs)
        self.activation = activation

    def __call__(self, x):  # type: ignore[no-untyped-def]
        h = self.conv(x)
        h = jnp.maximum(h, 0) if self.activation == "relu" else h
        return self.fc(h.mean(axis=(1, 2)))

    def torch_order(self) -> list[nnx.Module]:
        return [self.conv, self.fc]


class _TorchToy(nn.Module):
    def __init__(self, num_classes: int = 10, activation: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = torch.relu(h) if self.activation == "relu" else h
        return self.fc(h.mean(dim=(2, 3)))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> str:
    """'toy' in the Flax table only (each test adds the twin if it wants one); both restored after."""
    monkeypatch.setitem(registry.MODELS, "toy", registry.ModelSpec(_Toy, options=("activation",), default_image_size=6))
    return "toy"


def test_a_model_in_both_tables_goes_through_every_path(toy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from jaxloss import parity
    from jaxloss.train.__main__ import config_from_args
    from jaxloss.train.config import validate
    from jaxloss.train.recipe import build_model

    monkeypatch.setitem(twins.TORCH_TWINS, toy, _TorchToy)
    # the command line's --model takes it (argparse reads the live table), with its option
    cfg = validate(config_from_args(["--model", toy, "--activation", "relu"]))
    model = build_model(cfg, num_classes=3, initialise=False)  # shapes only: nothing compiled
    assert type(model) is _Toy and model.activation == "relu" and model.fc.out_features == 3
    # build_pair: its own twin, not ResNet-18's, with the same weights: the comparison passes in float64
    fm, tm, mapping = twins.build_pair(toy, "float64", num_classes=3, activation="relu")
    assert type(fm) is _Toy and type(tm) is _TorchToy and tm.activation == "relu"
    assert mapping == {"conv": "conv", "fc": "fc"}
    xj, xt = twins.images(2, 6, "float64")
    report = parity.compare_models(fm, tm, xj, xt, mapping=mapping, grads=False)
    assert report.passed and report.compared, report.verdict()
    # the ReLU is there on both sides: some pre-activations are negative, so dropping it would change the logits
    assert (np.asarray(fm.conv(jnp.asarray(xj))) < 0).any()
    assert twins.twin_problem(toy) is None
    assert twins.batchnorm_values(toy, 2, 6) is None  # no batchnorm_stride: no BatchNorm


def test_a_flax_model_without_a_twin_is_refused_by_name(toy: str, capsys: pytest.CaptureFixture[str]) -> None:
    from jaxloss.parity.models.__main__ import main as models_main
    from jaxloss.train.config import TrainConfig, validate

    validate(TrainConfig(model=toy))  # trainable: it is in the Flax table
    with pytest.raises(ValueError, match="model 'toy' has no torch twin .*TORCH_TWINS has seed-cnn, resnet18"):
        twins.build_pair(toy)
    with pytest.raises(ValueError, match="has no torch twin"):
        twins.build_torch(toy, num_classes=10)
    with pytest.raises(SystemExit) as e:
        models_main(["--model", toy])
    assert e.value.code == 2 and "--model: model 'toy' has no torch twin" in capsys.readouterr().err


def test_an_unknown_model_is_an_error_listing_the_known_ones() -> None:
    from jaxloss.train.config import ConfigError, TrainConfig, validate
    from jaxloss.train.models import build_model

    with pytest.raises(ValueError, match="unknown model 'vgg'; known: seed-cnn, resnet18$"):
        build_model("vgg", rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="model must be one of seed-cnn, resnet18, got 'vgg'"):
        validate(TrainConfig(model="vgg"))
    assert twins.twin_problem("vgg") == "unknown model 'vgg'; known: seed-cnn, resnet18"
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        twins.build_pair("vgg")


def test_model_options_only_where_the_table_says() -> None:
    from jaxloss.train.config import ConfigError, TrainConfig, validate

    assert registry.model_kwargs("resnet18", cifar_stem=True, activation=None) == {"cifar_stem": True}
    with pytest.raises(registry.OptionError, match="^activation applies to model seed-cnn only$"):
        registry.model_kwargs("resnet18", activation="relu")
    with pytest.raises(ConfigError, match="^cifar_stem applies to model resnet18 only$"):
        validate(TrainConfig(model="seed-cnn", cifar_stem=True))
    with pytest.raises(ValueError, match="not model options"):
        registry.ModelSpec("x:Y", options=("depth",))
    # the BatchNorm stride, by hand: 16 -> 8 (conv1) -> 4 (max-pool) -> 2 -> 1 -> 1 (layer2..4);
    # the CIFAR stem keeps 16 until layer2: 8, 4, 2
    assert twins.batchnorm_values("resnet18", 4, 16) == 4 * 1 * 1
    assert twins.batchnorm_values("resnet18", 4, 16, cifar_stem=True) == 4 * 2 * 2
