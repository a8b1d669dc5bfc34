"""The shared machinery: the torch-gradient helpers (jaxloss._jvp) against torch's own ops, the
rules the one ``loss_function`` registration (jaxloss._registry) applies to every loss (bad input,
traced options, the dtype rule), and the class twin ``module_class`` makes from a registration."""

import dataclasses
import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxloss
from jaxloss import _jvp, _registry, _shapes


@pytest.mark.parametrize("bound", [0, 0.0, 1.5, np.nan])
def test_clamp_matches_torch_value_and_gradient_at_ties_and_nan(bound):
    x = np.array([-2.0, 0.0, 1.5, 3.0, np.nan])
    jfn, tfn = _jvp.clamp_min, torch.clamp_min
    tx = torch.tensor(x, requires_grad=True)
    tout = tfn(tx, bound)
    tout.sum().backward()
    jout = jfn(jnp.asarray(x), bound)
    jgrad = jax.grad(lambda v: jnp.sum(jfn(v, bound)))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(jout), tout.detach().numpy())
    np.testing.assert_array_equal(np.asarray(jgrad), tx.grad.numpy())


def test_abs_gradient_is_sign():
    x = np.array([-1.0, 0.0, 2.0])
    tx = torch.tensor(x, requires_grad=True)
    tx.abs().sum().backward()
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: jnp.sum(_jvp.abs(v)))(jnp.asarray(x))), tx.grad.numpy())


def test_abs_derivative_is_sign_at_every_order():
    # Differentiating the primal output of abs's jvp rule again (forward over forward, as in
    # jax.hessian) must also give torch's sign(0) = 0, not jnp.abs's slope 1.
    inner = lambda v: jax.jvp(_jvp.abs, (v,), (jnp.ones_like(v),))[0]
    _, tangent = jax.jvp(inner, (jnp.zeros(3),), (jnp.ones(3),))
    np.testing.assert_array_equal(np.asarray(tangent), np.zeros(3))


# --------------------------------------------------------------------------- the registration's rules
F32 = jnp.ones((2, 3), jnp.float32)
I32 = jnp.ones((2, 3), jnp.int32)
B = jnp.ones((2, 3), bool)
C64 = jnp.ones((2, 3), jnp.complex64)


@pytest.mark.parametrize(
    "call",
    [
        lambda: jaxloss.l1_loss(B, B),
        lambda: jaxloss.mse_loss(1j, 0j),
        lambda: jaxloss.mse_loss(C64, C64),
        lambda: jaxloss.mse_loss(I32, I32),
        lambda: jaxloss.smooth_l1_loss(I32, I32),
        lambda: jaxloss.huber_loss(I32, I32),
        lambda: jaxloss.poisson_nll_loss(B, F32),
        lambda: jaxloss.margin_ranking_loss(F32[0], F32[0], B[0]),
        lambda: jaxloss.kl_div(F32, I32),
        lambda: jaxloss.binary_cross_entropy_with_logits(C64, C64),
        lambda: jaxloss.soft_margin_loss(F32, C64),
        lambda: jaxloss.triplet_margin_loss(B, F32, F32),
    ],
)
def test_integer_bool_and_complex_inputs_are_rejected_where_torch_rejects_them(call):
    with pytest.raises(TypeError, match="argument '|floating point|Integral inputs"):
        call()


def test_integer_inputs_torch_computes_still_work():
    # torch computes these (poisson_nll on integers, a float input with an integer target)
    assert np.isfinite(float(jaxloss.poisson_nll_loss(I32, I32)))
    assert float(jaxloss.mse_loss(F32, I32)) == 0.0
    assert float(jaxloss.hinge_embedding_loss(F32, B)) == 1.0  # a bool target is a label


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda v: jaxloss.triplet_margin_loss(F32, F32, F32, swap=v), "swap"),
        (lambda v: jaxloss.poisson_nll_loss(F32, F32, full=v), "full"),
        (lambda v: jaxloss.poisson_nll_loss(F32, F32, log_input=v), "log_input"),
        (lambda v: jaxloss.kl_div(F32, F32, log_target=v), "log_target"),
        (lambda v: jaxloss.ctc_loss(jnp.zeros((3, 1, 2)), jnp.ones((1, 1), jnp.int32), [3], [1], zero_infinity=v),
         "zero_infinity"),
    ],
)
def test_boolean_options_must_be_bool(call, name):
    with pytest.raises(TypeError, match=f"argument '{name}' must be bool, not str"):
        call("no")


@pytest.mark.parametrize(
    ("call", "name", "bad"),
    [
        (lambda v: jaxloss.huber_loss(F32, F32, delta=v), "delta", "1"),
        (lambda v: jaxloss.triplet_margin_loss(F32, F32, F32, eps=v), "eps", None),
        (lambda v: jaxloss.cross_entropy(F32, jnp.array([0, 1]), label_smoothing=v), "label_smoothing", None),
        (lambda v: jaxloss.margin_ranking_loss(F32, F32, F32, margin=v), "margin", "1"),
        (lambda v: jaxloss.gaussian_nll_loss(F32, F32, F32, eps=v), "eps", "1"),
    ],
)
def test_non_numeric_options_name_the_option(call, name, bad):
    with pytest.raises(TypeError, match=f"argument '{name}' must be float, not {type(bad).__name__}"):
        call(bad)


def test_lists_are_rejected_with_a_clear_error_and_python_scalars_work_like_arrays():
    with pytest.raises(TypeError, match="argument 'input' must be an array, not list"):
        jaxloss.mse_loss([1.0, 2.0], jnp.ones(2))
    with pytest.raises(TypeError, match="argument 'target' must be an array, not tuple"):
        jaxloss.l1_loss(jnp.ones(2), (1.0, 2.0))
    assert float(jaxloss.mse_loss(3.0, 1.0)) == 4.0


def test_python_option_ranges_keep_torchs_message():
    with pytest.raises(ValueError, match="huber_loss does not support non-positive values for delta."):
        jaxloss.huber_loss(F32, F32, delta=0.0)
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        jaxloss.cross_entropy(F32, jnp.array([0, 1]), label_smoothing=1.5)


@pytest.mark.parametrize(
    ("fn", "kwargs", "option", "values"),
    [
        (jaxloss.cross_entropy, {}, "label_smoothing", (0.1, 0.2)),
        (jaxloss.huber_loss, {}, "delta", (0.5, 2.0)),
        (jaxloss.smooth_l1_loss, {}, "beta", (0.5, 2.0)),
        (jaxloss.margin_ranking_loss, {}, "margin", (0.1, 0.7)),
        (jaxloss.focal_loss, {}, "gamma", (1.0, 3.0)),
        (jaxloss.sigmoid_focal_loss, {}, "alpha", (0.25, 0.5)),
    ],
)
def test_numeric_options_are_traced_a_new_value_does_not_recompile(fn, kwargs, option, values):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    args = {
        "cross_entropy": (x, jnp.array([0, 1, 2, 0])),
        "focal_loss": (x, jnp.array([0, 1, 2, 0])),
        "margin_ranking_loss": (x, x[::-1], jnp.sign(x)),
    }.get(fn.__name__, (x, jnp.tanh(x)))
    fn(*args, **{option: values[0]})
    size = fn._cache_size()
    out = fn(*args, **{option: values[1]})  # a new Python number
    assert fn._cache_size() == size
    fn(*args, **{option: jnp.float32(values[0])})  # an array: one more (strongly typed) entry
    size = fn._cache_size()
    out_array = fn(*args, **{option: jnp.float32(values[1])})
    assert fn._cache_size() == size
    np.testing.assert_allclose(np.asarray(out), np.asarray(out_array), rtol=1e-6)


def test_scheduled_label_smoothing_in_a_jitted_train_step_compiles_once():
    traces = []
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)
    t = jnp.array([0, 1, 2, 0])

    @jax.jit
    def step(w, smoothing):
        traces.append(1)
        return jax.grad(lambda w: jaxloss.cross_entropy(x * w, t, label_smoothing=smoothing))(w)

    grads = [step(jnp.float32(1.0), jnp.float32(s)) for s in (0.0, 0.05, 0.1)]
    assert len(traces) == 1
    for s, g in zip((0.0, 0.05, 0.1), grads):
        tx = torch.tensor(np.asarray(x), requires_grad=True)
        w = torch.tensor(1.0, requires_grad=True)
        torch.nn.functional.cross_entropy(tx * w, torch.tensor([0, 1, 2, 0]), label_smoothing=s).backward()
        np.testing.assert_allclose(float(g), float(w.grad), rtol=1e-5, atol=1e-6)


def test_traced_option_is_differentiable():
    d, t = jnp.array([0.3, 2.0]), jnp.zeros(2)
    grad = jax.grad(lambda delta: jaxloss.huber_loss(d, t, delta=delta, reduction="sum"))(1.0)
    assert float(grad) == pytest.approx(2.0 - 1.0)  # d/ddelta of delta (|d| - delta / 2) at |d| = 2


def _bad_index_grad(fn):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)), jnp.float32)
    t = jnp.array([0, 9, 1])
    value, grad = jax.value_and_grad(lambda x: fn(x, t))(x)
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize(
    "fn",
    [
        jaxloss.cross_entropy,
        jaxloss.nll_loss,
        jaxloss.focal_loss,
        lambda x, t: jaxloss.cross_entropy(x, t, label_smoothing=0.1),
        lambda x, t: jaxloss.linear_cross_entropy(x, jnp.eye(4), t),
    ],
)
def test_a_bad_class_index_makes_the_gradient_nan_too(fn):
    value, grad = _bad_index_grad(fn)
    assert np.isnan(value)
    assert np.isnan(grad[1]).any()
    assert np.isfinite(grad[[0, 2]]).all()  # the valid samples keep their gradient


def test_bce_input_outside_0_1_makes_the_gradient_nan_too():
    x = jnp.array([0.2, 1.5, 0.7])
    value, grad = jax.value_and_grad(lambda x: jaxloss.binary_cross_entropy(x, jnp.ones(3)))(x)
    assert np.isnan(float(value))
    assert np.isnan(np.asarray(grad)[1])


def test_a_traced_option_out_of_range_gives_nan_value_and_gradient():
    d = jnp.array([0.3, 2.0])
    value, grad = jax.value_and_grad(lambda d: jaxloss.huber_loss(d, jnp.zeros(2), delta=jnp.float32(-1.0)))(d)
    assert np.isnan(float(value))
    assert np.isnan(np.asarray(grad)).all()
    assert np.isfinite(float(jaxloss.huber_loss(d, jnp.zeros(2), delta=jnp.float32(1.0))))


@pytest.mark.parametrize(
    "loss",
    [
        lambda x, y: jaxloss.smooth_l1_loss(x, y, beta=0.5),
        lambda x, y: jaxloss.kl_div(x, jnp.abs(y), reduction="batchmean"),
        lambda x, y: jaxloss.binary_cross_entropy_with_logits(x, jnp.abs(y) / 4),
        lambda x, y: jaxloss.margin_ranking_loss(x[0], x[1], jnp.sign(y[0])),
        lambda x, y: jaxloss.nll_loss(x, jnp.array([0, 2, 1, 4])),
        lambda x, y: jaxloss.multi_margin_loss(x, jnp.array([0, 2, 1, 4]), weight=jnp.abs(y[0])),
        # rules that depend on the call: a Python-number variance, class probabilities
        lambda x, y: jaxloss.gaussian_nll_loss(x, y, 0.5),
        lambda x, y: jaxloss.cross_entropy(x, jnp.abs(y)),
    ],
)
@pytest.mark.parametrize("half", [jnp.float16, jnp.bfloat16])
def test_half_precision_round_trip_computes_in_float32_and_rounds_value_and_gradient_once(loss, half):
    # torch's opmath rule, done by the registration: a half-precision loss equals the float32
    # loss of the same values rounded once, and so does its gradient. (The options are built
    # with exact operations, so both sides see the same numbers.)
    rng = np.random.default_rng(3)
    x, y = (jnp.asarray(rng.normal(size=(4, 5)), half) for _ in range(2))
    x32, y32 = x.astype(jnp.float32), y.astype(jnp.float32)
    (value, grad), (value32, grad32) = jax.jit(  # both in one compiled program (eager: six)
        lambda x, y, x32, y32: (jax.value_and_grad(loss)(x, y), jax.value_and_grad(loss)(x32, y32))
    )(x, y, x32, y32)
    assert value.dtype == half and grad.dtype == half
    assert float(value) == float(value32.astype(half))
    np.testing.assert_array_equal(
        np.asarray(grad.astype(jnp.float32)), np.asarray(grad32.astype(half).astype(jnp.float32))
    )


# A traced option out of range, for every loss that range-checks one; each call takes the
# floating arrays it differentiates and the option. The hinge losses are the hard case: a
# margin of -inf or NaN makes the hinge's argument -inf / NaN, its max passes no gradient, and
# a poison on the result alone was dropped on the way back (NaN value, zero gradient).
_X = jnp.asarray(np.random.default_rng(5).normal(size=(3, 4)), jnp.float32)
_LABELS = jnp.array([0, 2, 1])
_TRACED_OUT_OF_RANGE = [
    ("triplet_margin_loss", lambda a, p, n, m: jaxloss.triplet_margin_loss(a, p, n, margin=m), 3, (-np.inf, np.nan)),
    ("triplet_margin_with_distance_loss",
     lambda a, p, n, m: jaxloss.triplet_margin_with_distance_loss(a, p, n, margin=m), 3, (-np.inf, np.nan, -1.0)),
    ("huber_loss", lambda x, y, d: jaxloss.huber_loss(x, y, delta=d), 2, (-np.inf, np.nan)),
    ("smooth_l1_loss", lambda x, y, b: jaxloss.smooth_l1_loss(x, y, beta=b), 2, (-np.inf, np.nan)),
    ("cross_entropy", lambda x, s: jaxloss.cross_entropy(x, _LABELS, label_smoothing=s), 1, (np.nan, 2.0)),
    ("focal_loss", lambda x, g: jaxloss.focal_loss(x, _LABELS, gamma=g), 1, (np.nan, -1.0)),
    # label_smoothing carries no gradient in linear_cross_entropy (its custom VJP): not checked
    ("linear_cross_entropy",
     lambda x, w, s: jaxloss.linear_cross_entropy(x, w, _LABELS, label_smoothing=s), 2, (np.nan, 1.5)),
]
_OPTION_WITHOUT_GRADIENT = {"linear_cross_entropy"}


@pytest.mark.parametrize(("name", "call", "n_arrays", "bad_values"), _TRACED_OUT_OF_RANGE, ids=lambda v: v if isinstance(v, str) else "")
def test_a_traced_option_out_of_range_makes_every_gradient_nan_under_jit(name, call, n_arrays, bad_values):
    arrays = [_X * (i + 1) for i in range(n_arrays)]
    n_grads = n_arrays + (name not in _OPTION_WITHOUT_GRADIENT)
    value_and_grads = jax.jit(jax.value_and_grad(call, argnums=tuple(range(n_grads))))
    for bad in bad_values:
        value, grads = value_and_grads(*arrays, jnp.float32(bad))
        assert np.isnan(float(value)), (name, bad)
        for i, g in enumerate(grads):
            assert np.isnan(np.asarray(g)).all(), (name, bad, i)
    value, grads = value_and_grads(*arrays, jnp.float32(0.5))  # a valid value: finite everywhere
    assert np.isfinite(float(value)) and all(np.isfinite(np.asarray(g)).all() for g in grads)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda v: jaxloss.triplet_margin_loss(_X, _X, _X, margin=v), "margin"),
        (lambda v: jaxloss.huber_loss(_X, _X, delta=v), "delta"),
        (lambda v: jaxloss.cross_entropy(_X, _LABELS, label_smoothing=v), "label_smoothing"),
    ],
)
def test_a_vector_for_a_scalar_option_names_its_shape_also_under_jit(call, name):
    message = f"argument '{name}' must be a scalar, got an array of shape \\(3,\\)"
    with pytest.raises(TypeError, match=message):
        call(jnp.ones(3))
    with pytest.raises(TypeError, match=message):
        jax.jit(call)(jnp.ones(3))


# --------------------------------------------------------------------------- the dtype rule of every loss
def test_every_registered_loss_declares_its_dtype_rule():
    specs = _registry.all_registered()
    assert len(registered := _registry.registered()) >= 29 and set(registered) <= set(jaxloss.__all__)
    undeclared = [name for name, spec in specs.items() if spec.opmath is None]
    assert not undeclared, f"declare opmath= (Opmath, Upcast or a rule) in loss_function: {undeclared}"


def test_no_loss_body_casts_to_the_opmath_dtype_by_hand():
    # The registration owns the half-precision round trip: opmath_dtype is called by the dtype
    # rules (jaxloss._registry) and defined in jaxloss._dtypes, nowhere else in the package.
    # (jaxloss.monai / jaxloss.smp declare InBody: those libraries cast at their own points, not
    # torch's round trip, and their bodies mirror them.)
    package = Path(jaxloss.__file__).parent
    callers = sorted(p.name for p in package.glob("*.py") if "opmath_dtype(" in p.read_text())
    assert callers == ["_dtypes.py", "_registry.py"], callers


def test_store_rounds_the_intermediate_to_the_declared_dtype():
    # huber_loss: a float32 input with a float64 target computes in float64 and writes the
    # elementwise loss in float32 (torch's out= dtype) before the mean, so the result is the
    # float32 mean of float32-rounded terms, not the float64 mean rounded once.
    x64 = jax.config.jax_enable_x64  # restored after: the rest of the session runs with the suite's setting
    jax.config.update("jax_enable_x64", True)
    try:
        # values where the two orders of rounding differ (either summation order of the terms agrees)
        x = np.array([0.07852498441934586, 0.7831303477287292, 0.5685364007949829, -0.8950706720352173], np.float32)
        y = np.array([0.07148085531751389, -0.09328288493890713, 0.045931089285988824, -0.0648688758794882])
        out = jaxloss.huber_loss(jnp.asarray(x), jnp.asarray(y))
        exact = 0.5 * (x.astype(np.float64) - y) ** 2  # |d| < 1: the quadratic branch
        terms = exact.astype(np.float32)
        stored_mean = (((terms[0] + terms[1]) + terms[2]) + terms[3]) / np.float32(4)
        assert out.dtype == jnp.float32
        assert float(out) == float(stored_mean) != float(np.float32(exact.mean()))
    finally:
        jax.config.update("jax_enable_x64", x64)


# --------------------------------------------------------------------------- the class twin
def _toy_loss(input, target, scale: float = 1.0, squared: bool = False, reduction: str = "mean"):
    """A test loss: ``scale * |x - y|`` (``squared``: ``scale * (x - y)^2``), reduced."""
    d = input - target
    return _shapes.reduce(scale * (d * d if squared else _jvp.abs(d)), reduction)


toy_loss = _registry.loss_function(
    static_argnames=("reduction",),
    bools=("squared",),
    numbers={"scale": _registry.Number(lambda v: v > 0, "scale must be positive, got {}")},
    arrays={"input": "float", "target": "float"},
    opmath=_registry.Opmath(promote=("input", "target")),
    module="ToyLoss",
)(_toy_loss)
ToyLoss = _registry.module_class(toy_loss)


def _triple(a, b, c, reduction: str = "sum", margin: float = 0.0):
    return _shapes.reduce(_jvp.clamp_min(a - b + c + margin, 0.0), reduction)


# torch-style: other forward arguments, a keyword-only constructor in its own order
triple = _registry.loss_function(
    static_argnames=("reduction",),
    numbers={"margin": _registry.Number()},
    opmath=_registry.Opmath(promote=("a", "b", "c")),
    module="TripleLoss",
    forward=("a", "b", "c"),
    fields=("margin", "reduction"),
    kw_only=True,
)(_triple)
TripleLoss = _registry.module_class(triple)


def test_a_registered_loss_gets_a_class_that_is_its_functional_call():
    x, y = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]]), jnp.array([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    crit = ToyLoss(scale=2.0, reduction="sum")
    # by hand: 2 * (1 + 2 + 0.5 + 1 + 2 + 0) = 13
    assert float(crit(x, y)) == 13.0 == float(toy_loss(x, y, scale=2.0, reduction="sum"))
    assert float(crit(input=x, target=y)) == 13.0
    assert repr(crit) == "ToyLoss(scale=2.0, squared=False, reduction='sum')"
    # every constructor option, in signature order, with the function's defaults
    params = inspect.signature(ToyLoss).parameters
    assert list(params) == ["scale", "squared", "reduction"]
    assert [p.default for p in params.values()] == [1.0, False, "mean"]
    assert list(inspect.signature(ToyLoss.__call__).parameters) == ["self", "input", "target"]
    assert ToyLoss.__module__ == __name__ and ToyLoss.__qualname__ == "ToyLoss"
    spec = toy_loss.spec
    assert f":func:`{spec.namespace}.{spec.name}`" in ToyLoss.__doc__ and "scale * |x - y|" in ToyLoss.__doc__
    with pytest.raises(TypeError, match="takes 2 arguments"):
        crit(x, y, y)


def test_a_class_twin_works_under_jit_grad_and_vmap_without_recompiling_for_a_new_option():
    x, y = jnp.array([1.0, -2.0, 0.5]), jnp.zeros(3)
    crit = ToyLoss(scale=3.0, squared=True)
    leaves, _ = jax.tree_util.tree_flatten(crit)
    assert [float(v) for v in leaves] == [3.0]  # the numeric option; squared and reduction are static
    step = jax.jit(jax.value_and_grad(lambda c, a: c(a, y), argnums=1))
    value, grad = step(crit, x)
    # by hand: mean(3 x^2) = (3 + 12 + 0.75) / 3 = 5.25; d/dx = 2 * 3 * x / 3 = 2x
    assert float(value) == 5.25
    np.testing.assert_array_equal(np.asarray(grad), [2.0, -4.0, 1.0])
    value, _ = step(dataclasses.replace(crit, scale=1.0), x)
    assert float(value) == 1.75 and step._cache_size() == 1
    rows = jax.vmap(lambda a: crit(a, y))(jnp.stack([x, 2 * x]))
    np.testing.assert_array_equal(np.asarray(rows), [5.25, 21.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        crit.scale = 2.0


def test_the_constructor_checks_the_options_as_the_function_does():
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        ToyLoss(reduction="avg")
    with pytest.raises(TypeError, match="argument 'squared' must be bool, not int"):
        ToyLoss(squared=1)
    with pytest.raises(ValueError, match="scale must be positive, got -1"):
        ToyLoss(scale=-1.0)
    with pytest.raises(ValueError, match="only p == 1 and p == 2 supported"):  # check_options
        jaxloss.nn.MultiMarginLoss(p=3)
    ToyLoss(scale=jnp.float32(-1.0))  # a traced value is checked where the function checks it


def test_forward_fields_and_keyword_only_follow_the_declaration():
    params = inspect.signature(TripleLoss).parameters
    assert list(params) == ["margin", "reduction"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    with pytest.raises(TypeError):
        TripleLoss(1.0)
    a, b, c = jnp.array([1.0, 0.0]), jnp.array([0.5, 2.0]), jnp.array([0.0, 1.0])
    # by hand: max(a - b + c + 0.5, 0) = [1.0, 0.0] -> sum 1.0
    assert float(TripleLoss(margin=0.5)(a, b, c)) == 1.0 == float(triple(a, b, c, margin=0.5))


def test_module_class_refuses_what_it_cannot_build():
    with pytest.raises(TypeError, match="not a function registered with loss_function"):
        _registry.module_class(lambda x: x)
    with pytest.raises(TypeError, match="declares no module= class name"):
        _registry.module_class(jaxloss.pairwise_distance)
    with pytest.raises(TypeError, match="forward / fields name no parameter"):
        _registry.loss_function(module="Bad", forward=("x", "y"))(_toy_loss)


def test_the_nn_classes_are_their_registrations():
    # Each jaxloss.nn class is made from its loss's registration, and from_torch's table is the
    # registrations' torch= names: both can only name a class the registry built.
    twins = _registry.twins()
    for name in jaxloss.nn.__all__:
        if name in ("LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss"):  # Flax modules
            continue
        cls = getattr(jaxloss.nn, name)
        spec = cls._spec
        assert cls.__module__ == "jaxloss.nn" and cls.__qualname__ == name
        assert getattr(jaxloss, spec.name).spec is spec
        fields = dataclasses.fields(cls)
        assert [f.name for f in fields] == list(spec.fields)
        assert all(f.default == spec.signature.parameters[f.name].default for f in fields), name
        assert list(inspect.signature(cls.__call__).parameters)[1:] == list(spec.forward)
        if name not in ("FocalLoss", "SigmoidFocalLoss"):  # no torch.nn class
            assert twins[f"torch.nn.{name}"] is cls
    assert issubclass(jaxloss.nn.NLLLoss2d, jaxloss.nn.NLLLoss)
