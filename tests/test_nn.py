"""jaxloss.nn criteria and jaxloss.from_torch against the torch.nn modules."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxloss
import jaxloss.nn as jnn
from tests.torch_compare import assert_close

rng = np.random.default_rng(0)
N, C = 4, 5


def _x(*shape):
    return rng.normal(size=shape)


def _prob(*shape):
    return rng.uniform(0.05, 0.95, size=shape)


def _sign(*shape):
    return rng.choice([-1.0, 1.0], size=shape)


_classes = rng.integers(0, C, size=(N,))
_ml_target = np.array([[3, 0, -1, 1, 2], [1, 2, 3, -1, 0], [0, -1, 0, 0, 0], [4, 3, 2, 1, 0]])
_T, _S = 12, 4
_log_probs = torch.randn(_T, N, C, dtype=torch.float64).log_softmax(2).numpy()

# torch class name -> (constructor kwargs, forward inputs)
CASES = {
    "L1Loss": ({"reduction": "sum"}, (_x(N, C), _x(N, C))),
    "MSELoss": ({}, (_x(N, C), _x(N, C))),
    "HuberLoss": ({"delta": 0.5, "reduction": "none"}, (_x(N, C), _x(N, C))),
    "SmoothL1Loss": ({"beta": 0.3}, (_x(N, C), _x(N, C))),
    "PoissonNLLLoss": ({"log_input": False, "full": True}, (_prob(N, C) * 3, rng.poisson(2.0, (N, C)).astype(float))),
    "GaussianNLLLoss": ({"full": True, "reduction": "sum"}, (_x(N, C), _x(N, C), _prob(N, C))),
    "NLLLoss": ({"weight": torch.rand(C, dtype=torch.float64), "ignore_index": 1},
                (torch.randn(N, C, dtype=torch.float64).log_softmax(1).numpy(), _classes)),
    "NLLLoss2d": ({}, (torch.randn(N, C, 2, 2, dtype=torch.float64).log_softmax(1).numpy(), rng.integers(0, C, (N, 2, 2)))),
    "CrossEntropyLoss": ({"weight": torch.rand(C, dtype=torch.float64), "label_smoothing": 0.1}, (_x(N, C), _classes)),
    "BCELoss": ({"weight": torch.rand(C, dtype=torch.float64)}, (_prob(N, C), _prob(N, C))),
    "BCEWithLogitsLoss": ({"pos_weight": torch.rand(C, dtype=torch.float64) + 0.5}, (_x(N, C), _prob(N, C))),
    "SoftMarginLoss": ({}, (_x(N, C), _sign(N, C))),
    "MultiLabelSoftMarginLoss": ({"weight": torch.rand(C, dtype=torch.float64)}, (_x(N, C), rng.integers(0, 2, (N, C)).astype(float))),
    "KLDivLoss": ({"reduction": "batchmean", "log_target": True},
                  (torch.randn(N, C, dtype=torch.float64).log_softmax(1).numpy(), torch.randn(N, C, dtype=torch.float64).log_softmax(1).numpy())),
    "MultiLabelMarginLoss": ({}, (_x(N, C), _ml_target)),
    "MultiMarginLoss": ({"p": 2, "margin": 0.7, "weight": torch.rand(C, dtype=torch.float64)}, (_x(N, C), _classes)),
    "MarginRankingLoss": ({"margin": 0.2}, (_x(N), _x(N), _sign(N))),
    "HingeEmbeddingLoss": ({"margin": 0.8}, (_x(N, C), _sign(N, C))),
    "CosineEmbeddingLoss": ({"margin": 0.1}, (_x(N, C), _x(N, C), _sign(N))),
    "TripletMarginLoss": ({"margin": 0.5, "p": 1.0, "swap": True}, (_x(N, C), _x(N, C), _x(N, C))),
    "TripletMarginWithDistanceLoss": ({"margin": 0.5, "swap": True}, (_x(N, C), _x(N, C), _x(N, C))),
    "CTCLoss": ({"blank": 0, "reduction": "sum"},
                (_log_probs, rng.integers(1, C, (N, _S)), np.full((N,), _T), np.array([4, 3, 2, 4]))),
}


def _torch(x):
    return torch.tensor(x) if isinstance(x, np.ndarray) else x


def test_from_torch_matches_torch_module():
    """Each module of CASES converted, against torch's; the JAX forward of all of them in one
    compiled program (eager: one program per module). Every module is checked, then the
    failing ones are listed."""
    names = sorted(CASES)
    tmods = {name: getattr(torch.nn, name)(**CASES[name][0]) for name in names}
    jmods = {name: jaxloss.from_torch(tmod) for name, tmod in tmods.items()}
    assert [type(jmods[name]).__name__ for name in names] == names
    actual = jax.jit(lambda inputs: {name: jmods[name](*inputs[name]) for name in names})(
        {name: [jnp.asarray(x) for x in CASES[name][1]] for name in names})
    failed = []
    for name in names:
        expected = tmods[name](*[_torch(x) for x in CASES[name][1]])
        try:
            assert_close(actual[name], expected, "float64", name)
        except AssertionError as e:
            failed.append(str(e))
    assert not failed, f"{len(failed)} of {len(names)} modules fail:\n" + "\n".join(failed)


@pytest.mark.parametrize("name", sorted(CASES))
def test_class_built_directly_equals_from_torch(name):
    kwargs, _ = CASES[name]
    converted = jaxloss.from_torch(getattr(torch.nn, name)(**kwargs))
    direct = getattr(jnn, name)(**{k: jnp.asarray(v.numpy()) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})
    for f in dataclasses.fields(direct):
        a, b = getattr(direct, f.name), getattr(converted, f.name)
        if isinstance(a, jax.Array):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:
            assert a == b, f.name


def test_criteria_are_pytrees_usable_under_jit():
    crit = jnn.CrossEntropyLoss(weight=jnp.arange(1.0, 6.0), label_smoothing=0.2)
    leaves, _ = jax.tree_util.tree_flatten(crit)
    assert len(leaves) == 2  # weight and label_smoothing; reduction and ignore_index are static
    x, t = jnp.asarray(_x(N, C)), jnp.asarray(_classes)
    step = jax.jit(lambda c: c(x, t))
    np.testing.assert_allclose(step(crit), crit(x, t), rtol=1e-12)
    other = dataclasses.replace(crit, label_smoothing=0.3)  # a numeric option: traced, no recompile
    np.testing.assert_allclose(step(other), other(x, t), rtol=1e-12)
    assert step._cache_size() == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        crit.reduction = "sum"


def test_every_torch_loss_class_has_a_twin():
    torch_names = {n for n in dir(torch.nn) if n.endswith("Loss") or n == "NLLLoss2d" or n == "AdaptiveLogSoftmaxWithLoss"}
    missing = {n for n in torch_names if not hasattr(jnn, n)}
    assert not missing, missing


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        jnn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="only p == 1 and p == 2 supported"):
        jnn.MultiMarginLoss(p=3)
    assert jnn.KLDivLoss(reduction="batchmean").reduction == "batchmean"
    with pytest.raises(TypeError, match="not a torch.nn loss module"):
        jaxloss.from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="cannot be converted automatically"):
        jaxloss.from_torch(torch.nn.TripletMarginWithDistanceLoss(distance_function=lambda a, b: (a - b).abs().sum(1)))


def test_triplet_with_torch_pairwise_distance_converts():
    t = torch.nn.TripletMarginWithDistanceLoss(distance_function=torch.nn.functional.pairwise_distance)
    assert jaxloss.from_torch(t).distance_function is jaxloss.pairwise_distance


# ----------------------------------------------------------------- modules with parameters
def test_adaptive_log_softmax_with_loss_matches_torch():
    from flax import nnx

    torch.manual_seed(0)
    t = torch.nn.AdaptiveLogSoftmaxWithLoss(16, 20, [4, 10], div_value=2.0, head_bias=True).double()
    j = jaxloss.from_torch(t)
    x = rng.normal(size=(7, 16))
    y = np.array([0, 3, 4, 9, 10, 19, 5])
    y_bad = np.array([0, 1, 2, 3, 4, 5, 20])

    @nnx.jit  # every JAX call of the test in one compiled program (eager: one program per call)
    def run(model, x, y, y_bad):
        out = model(x, y)
        grads = nnx.grad(lambda m: m(x, y).loss)(model)  # the loss's gradient wrt the head weight
        return (out.output, out.loss, model.log_prob(x), model.predict(x), model(x[0], y[0]).output,
                model(x, y_bad).loss, grads.head_weight[...])  # fmt: skip

    output, loss, log_prob, predict, unbatched, bad_loss, grad_head = run(j, jnp.asarray(x), jnp.asarray(y),
                                                                          jnp.asarray(y_bad))  # fmt: skip
    tout = t(torch.tensor(x), torch.tensor(y))
    assert_close(output, tout.output, "float64", "output")
    assert_close(loss, tout.loss, "float64", "loss")
    assert_close(log_prob, t.log_prob(torch.tensor(x)), "float64", "log_prob")
    np.testing.assert_array_equal(np.asarray(predict), t.predict(torch.tensor(x)).numpy())
    assert_close(unbatched, t(torch.tensor(x[0]), torch.tensor(y[0])).output, "float64", "unbatched")
    tout.loss.backward()
    assert_close(grad_head, t.head.weight.grad, "float64", "grad head.weight")
    # an out-of-range target must not give a plausible number
    assert np.isnan(np.asarray(bad_loss))


def test_adaptive_log_softmax_bad_cutoffs():
    from flax import nnx

    with pytest.raises(ValueError, match="cutoffs should be a sequence of unique"):
        jnn.AdaptiveLogSoftmaxWithLoss(8, 10, [5, 3], rngs=nnx.Rngs(0))


@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_module_matches_torch(bias):
    torch.manual_seed(0)
    w = torch.rand(7, dtype=torch.float64)
    t = torch.nn.LinearCrossEntropyLoss(6, 7, bias=bias, weight=w, label_smoothing=0.1, dtype=torch.float64)
    j = jaxloss.from_torch(t)
    x = rng.normal(size=(9, 6))
    y = rng.integers(0, 7, size=(9,))
    y[2] = -100
    assert_close(j(jnp.asarray(x), jnp.asarray(y)), t(torch.tensor(x), torch.tensor(y)), "float64", "LinearCrossEntropyLoss")


def test_triplet_with_torch_distance_modules_convert():
    x = [_x(N, C) for _ in range(3)]
    for dist in (torch.nn.PairwiseDistance(p=1.0), torch.nn.CosineSimilarity(dim=1)):
        t = torch.nn.TripletMarginWithDistanceLoss(distance_function=dist, margin=0.3)
        j = jaxloss.from_torch(t)
        assert_close(j(*[jnp.asarray(a) for a in x]), t(*[torch.tensor(a) for a in x]), "float64", type(dist).__name__)
