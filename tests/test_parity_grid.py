"""The case grid (coverage, structure), a small grid run, the fuzzer and its shrinker."""

import dataclasses
import inspect

import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as F
from jaxloss.parity import cases as pc
from jaxloss.parity import runner

import jaxloss

REG = runner.registry()
FUNCTIONAL = [n for n in jaxloss.__all__ if n not in ("Reduction", "checked", "from_torch", "monai", "nn", "smp")]


def test_every_jaxloss_function_has_cases():
    assert sorted(n for n in REG if "." not in n) == sorted(FUNCTIONAL)  # nn.*, monai.*: namespaces
    assert len(FUNCTIONAL) == 29


@pytest.mark.parametrize("name", sorted(REG))
def test_every_public_parameter_and_reduction_is_covered(name):
    loss = REG[name]
    grid = loss.grid_cases()
    covered = set().union(*(c.params() for c in grid))
    assert set(loss.params) <= covered, set(loss.params) - covered
    if "reduction" in loss.params and not name.startswith("nn."):
        used = {c.kwargs.get("reduction", "mean") for c in grid}
        want = {"none", "mean", "sum"} | ({"batchmean"} if name == "kl_div" else set())
        want -= {"none"} if name == "monai.dice_ce_loss" else set()  # MONAI's DiceCELoss has no 'none'
        assert want <= used, want - used
    assert len({c.name for c in grid}) == len(grid)


@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONAL if hasattr(F, n)))
def test_params_match_torch_signature(name):
    try:
        sig = inspect.signature(getattr(F, name))
        torch_params = [p for p in sig.parameters if p not in ("size_average", "reduce", "options")]
    except ValueError:  # builtins (pairwise_distance, cosine_similarity)
        return
    if name == "linear_cross_entropy":
        torch_params.append("chunk_size")
    if name in ("cross_entropy", "nll_loss"):
        torch_params.append("axis")  # jaxloss's class axis, after torch's parameters
    assert list(REG[name].params) == torch_params


@pytest.mark.parametrize("name", FUNCTIONAL)
def test_params_match_jaxloss_signature(name):
    try:
        params = list(inspect.signature(getattr(jaxloss, name)).parameters)
    except (TypeError, ValueError):
        return
    if params[:1] == ["args"]:  # a placeholder still raising NotImplementedError
        return
    assert list(REG[name].params) == params


def test_grid_has_every_dtype_shape_kind_and_deviation():
    dts = {j[2] for j in runner.grid_jobs()}
    assert dts == {"float64", "float32", "float16", "bfloat16"}
    deviating = {n for n, L in REG.items() for c in L.grid_cases() if c.torch_inexact is not None}
    assert {"binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss", "ctc_loss"} <= deviating
    for name in ("cross_entropy", "nll_loss", "l1_loss", "binary_cross_entropy", "kl_div"):
        specs = [c.spec for c in REG[name].grid_cases()]
        assert {"unbatched", "empty"} <= {s["shape"] for s in specs}, name
        assert any(s["shape"] in ("kdim", "k1") for s in specs), name
    ce = [c.spec for c in REG["cross_entropy"].grid_cases()]
    assert {"some", "all"} <= {s["ignore"] for s in ce} and {"index", "probs"} <= {s["target"] for s in ce}


def test_builders_are_deterministic():
    for name in ("cross_entropy", "ctc_loss", "gaussian_nll_loss"):
        a, b = REG[name].case(REG[name].grid[3]), REG[name].case(REG[name].grid[3])
        for x, y in zip(a.args, b.args):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("names", [
    FUNCTIONAL[::4],
    # every function (~8.5 CPU s, each compiles its case): slow tier; each loss's own test file compares
    # it with torch in the default tier, this checks the runner around them
    pytest.param(FUNCTIONAL, marks=pytest.mark.slow),
], ids=["every-4th", "all"])
def test_small_grid_subset_runs_clean(names):
    """The first case of jaxloss functions in float32 (and l1_loss in bfloat16): nothing fails or errors."""
    jobs = [(n, REG[n].grid[0], "float32") for n in names]
    jobs += runner.grid_jobs(["l1_loss"], ["bfloat16"])
    results = runner.run_jobs(jobs, workers=1)
    bad = [(r.id, r.result.notes, r.result.jax_error, r.result.torch_error) for r in results if r.status in ("failed", "error")]
    assert not bad, bad
    assert all(r.status in ("passed", "not_implemented") for r in results)
    assert any(r.loss == "l1_loss" and r.status == "passed" for r in results)


def test_fuzz_specs_are_reproducible():
    a = runner.fuzz_specs(25, seed=3)
    assert a == runner.fuzz_specs(25, seed=3)
    assert a != runner.fuzz_specs(25, seed=4)
    assert len(a) == 25 and len({j[0] for j in a}) > 5


@pytest.fixture
def fake_loss(monkeypatch):
    """A registered loss whose JAX side is wrong only for n >= 3 (and right otherwise)."""

    def wrong(x, reduction="mean", scale=1.0):
        out = jnp.sum(x) * scale if reduction != "none" else x * scale
        return out + (x.shape[0] >= 3) * 0.5

    def torch_side(x, reduction="mean", scale=1.0):
        return x.sum() * scale if reduction != "none" else x * scale

    def build(s):
        x = pc.rng_for(s, "fake").normal(size=(s["n"], 2)) * s["magnitude"]
        kw = {"reduction": s["reduction"]}
        if s["scale"] != 1.0:
            kw["scale"] = s["scale"]
        return pc.Case("fake_loss", "", (x,), kw, ("x",), grad=("x",), jax_fn=wrong, torch_fn=torch_side,
                       jax_expr="wrong", torch_expr="torch_side")

    monkeypatch.setitem(pc.REGISTRY, "fake_loss", pc.Loss(
        "fake_loss", "test", ("x", "reduction", "scale"), build,
        {"n": 1, "reduction": "mean", "scale": 1.0, "magnitude": 1.0, "seed": 0},
        [{}],
        {"n": [1, 2, 3, 5, 8], "reduction": ["mean", "none", "sum"], "scale": [1.0, 2.0], "magnitude": [1.0, 1e-3], "seed": [0, 1]},
    ))
    return wrong, torch_side


def test_shrinker_finds_the_minimal_failing_spec(fake_loss):
    job = ("fake_loss", {"n": 8, "reduction": "sum", "scale": 2.0, "magnitude": 1e-3, "seed": 12345}, "float16")
    (_name, spec, dtype), result = runner.shrink(job)
    assert result.status == "failed"
    assert spec == {"n": 3, "reduction": "mean", "scale": 1.0, "magnitude": 1.0, "seed": 0}
    assert dtype == "float64"
    lines = result.reproducer.splitlines()
    assert len(lines) <= 4 and lines[-1].startswith("print(parity.compare(wrong, torch_side, x, reduction='mean'")
    wrong, torch_side = fake_loss
    ns = {"wrong": wrong, "torch_side": torch_side}
    exec(result.reproducer.replace("print(", "_r = ("), ns)  # noqa: S102  (the reproducer is the code under test)
    assert ns["_r"].status == "failed"


def test_shrinker_leaves_a_passing_job_alone(fake_loss):
    job = ("fake_loss", {"n": 2, "reduction": "sum", "scale": 2.0, "magnitude": 1.0, "seed": 7}, "float32")
    (_name, spec, dtype), result = runner.shrink(job)
    assert result.status == "passed" and spec == job[1] and dtype == "float32"


def test_torch_inexact_cases_are_judged_against_float64_only_where_declared():
    applied = set()
    for name, L in REG.items():
        for c in L.grid_cases():
            t = c.torch_inexact
            if t is None:
                assert all(c.judge(dt) == "torch" for dt in pc.ALL_DTYPES)
                continue
            assert len(t.reason) > 40, (c.id, t.reason)  # a reason a reader can check
            for dt in c.dtypes:
                assert c.judge(dt) == ("reference" if dt in t.dtypes else "torch")
                applied |= {(name, t.reason)} if dt in t.dtypes else set()
    declared = {(n, c.torch_inexact.reason) for n, L in REG.items() for c in L.grid_cases() if c.torch_inexact}
    assert applied == declared  # every declared deviation is exercised by the grid in a dtype it covers
    # BCE at probabilities exactly 0 / 1: torch is inexact in float16 only
    edge = REG["binary_cross_entropy"].case({"values": "edge", "dtypes": pc.ALL_DTYPES})
    assert [dt for dt in edge.dtypes if edge.judge(dt) == "reference"] == ["float16"]
    r = runner.run_case(edge, "float16")
    assert r.status == "passed" and r.judge == "reference" and "underflows" in r.deviation
    assert all(c["judged"] == "reference" for k in ("outputs", "grads") for c in r.result.to_json()[k])
    r64 = runner.run_case(edge, "float64")  # second order included: torch's double backward contraction
    assert r64.status == "passed" and r64.judge == "torch" and not r64.deviation and r64.result.hvps


def test_merged_batch_equals_one_program_per_case():
    jobs = runner.grid_jobs(["huber_loss"], ["float64"])[:5] + runner.grid_jobs(["kl_div"], ["float32"])[:3]
    items = [(REG[n].case(o), dt) for n, o, dt in jobs]
    merged = runner.run_cases(items, merge=True)
    alone = runner.run_cases(items, merge=False)
    assert [r.status for r in merged] == ["passed"] * len(jobs)
    for a, b in zip(merged, alone):
        assert a.id == b.id and a.result.to_json() == b.result.to_json(), a.id


def test_a_failing_case_in_a_batch_does_not_affect_the_others():
    good = [REG["l1_loss"].case(o) for o in REG["l1_loss"].grid[:3]]
    bad = REG["l1_loss"].case({"id": "raises"})

    def raising(*a, **k):
        raise RuntimeError("boom at trace time")

    bad.jax_fn = raising
    results = runner.run_cases([(good[0], "float64"), (bad, "float64"), (good[1], "float64"), (good[2], "float32")])
    assert [r.status for r in results] == ["passed", "failed", "passed", "passed"]
    assert "boom at trace time" in results[1].result.jax_error and results[1].reproducer


def test_empty_batch_margin_losses_are_judged_against_torchs_per_sample_losses():
    # torch 2.13 returns uninitialized memory for these (a TorchInexact); jaxloss: 0 / NaN
    for name in ("multilabel_margin_loss", "multi_margin_loss"):
        for red in ("sum", "mean"):
            c = REG[name].case({"shape": "empty", "reduction": red})
            assert c.judge("float64") == "reference" and c.judge("float32") == "reference"
            r = runner.run_case(c, "float64")
            assert r.status == "passed" and "uninitialized memory" in r.deviation, r.result
        assert REG[name].case({"shape": "empty", "reduction": "none"}).torch_inexact is None


def test_reproducer_literals_keep_shapes_and_special_values():
    import ml_dtypes

    for a in (np.zeros((0, 5)), np.zeros((2, 0, 3), np.float32), np.array([1.5, np.nan, -np.inf]),
              np.arange(6, dtype=np.int64).reshape(2, 3), np.array([0.5, 2.0]).astype(ml_dtypes.bfloat16)):
        back = eval(runner._literal(a), {"np": np, "ml_dtypes": ml_dtypes})
        assert back.shape == a.shape and back.dtype == a.dtype
        np.testing.assert_array_equal(back, a)


def _grid_entry(loss: str, **match):
    """The first grid entry of ``loss`` holding every item of ``match`` (asserted to exist: the
    test below must not lose its case when a grid changes)."""
    entries = [g for g in REG[loss].grid if all(g.get(k, object()) == v for k, v in match.items())]
    assert entries, f"{loss}: no grid entry with {match}"
    return entries[0]


# The MONAI and smp cases whose sides are built, not named: a JAX side with other_act (a
# functools.partial), MONAI's class on channels-last arrays, smp's focal loss scattered back to
# every element, smp's soft CE at smooth_factor 0, smp's Lovasz judged against its own float64
# code. Their reproducers once read "monai.losses.DiceLoss(**options)(input, target) with
# other_act=torch.tanh": prose, a NameError when run.
_BUILT_SIDES = [
    ("monai.masked_dice_loss", {"other_act": "tanh", "layout": "last"}),
    ("monai.dice_ce_loss", {"other_act": "tanh"}),
    ("smp.focal_loss", {"mode": "binary", "ignore": True}),
    ("smp.soft_cross_entropy_loss", {}),
    ("smp.lovasz_loss", {"mode": "binary"}),
]


@pytest.mark.parametrize(("loss", "match"), _BUILT_SIDES, ids=[f"{l}-{'-'.join(m) or 'default'}" for l, m in _BUILT_SIDES])
def test_monai_and_smp_reproducers_run_and_pass(loss, match):
    from jaxloss.parity import smp_reference

    why = smp_reference.available() if loss.startswith("smp.") else None  # may try a download: once
    if why is not None:
        pytest.skip(f"smp's losses cannot be had: {why}")
    case = REG[loss].case(_grid_entry(loss, **match))
    dtype = case.dtypes[0]
    code = runner.reproducer(case, dtype)
    assert code.splitlines()[-1].startswith("print(parity.compare(")
    ns: dict = {}
    exec(code.replace("print(", "_r = ("), ns)  # noqa: S102  (the reproducer is the code under test)
    assert ns["_r"].status == "passed", (code, ns["_r"])


def test_fuzzer_respects_a_cases_documented_precision_limit():
    jobs = runner.fuzz_specs(300, seed=1, losses=["ctc_loss"])
    assert {dt for _, _, dt in jobs} == {"float64", "float32"}
    assert [s for _, s, dt in jobs if s["values"] == "peaked"]  # drawn, but only in float64
    assert not [s for _, s, dt in jobs if s["values"] == "peaked" and dt != "float64"]
    for _, s, _ in jobs:  # unbatched targets: exactly target_length labels (torch rejects padding)
        if s["layout"] == "unbatched":
            c = REG["ctc_loss"].case(s)
            assert np.shape(c.args[1]) == (int(np.asarray(c.args[3]).reshape(-1)[0]),)


def test_ctc_reference_keeps_torchs_nan_for_infeasible_samples():
    # --fuzz 2000 --seed 11: -inf log-probabilities made sample 0 infeasible (loss inf); torch and
    # jaxloss give a NaN gradient over its input frames, the reference gave 0 (fixed there).
    spec = {"mode": "direct", "layout": "padded", "reduction": "mean", "blank": "last", "zero_infinity": False,
            "lengths": "varied", "values": "neg-inf", "seed": 284548999}
    c = REG["ctc_loss"].case(spec)
    assert c.judge("float64") == "reference"
    r = runner.run_case(c, "float64")
    assert r.status == "passed", r.result
    r0 = runner.run_case(REG["ctc_loss"].case({**spec, "zero_infinity": True}), "float64")  # then 0, no NaN
    assert r0.status == "passed", r0.result


def space_coverage(loss):
    """The public parameters the fuzzer's cases of ``loss`` can pass, and the space's dead choices:
    each choice of each key, on the defaults, alone or with up to two other keys' choices (a label
    map needs ``to_onehot_y``, MONAI's -1 sentinel labels also ``ignore_index=-1``), must build a
    case; the union of those cases' parameters."""
    covered, dead = set(), []
    pairs = [(k, v) for k, choices in loss.space.items() for v in choices]
    for key, choice in pairs:
        others = [p for p in pairs if p[0] != key]
        tries = [{}, *({k: v} for k, v in others),
                 *({a[0]: a[1], b[0]: b[1]} for i, a in enumerate(others) for b in others[i + 1:] if a[0] != b[0])]
        for extra in tries:
            try:
                case = loss.case({key: choice, **extra})
            except pc.Invalid:
                continue
            covered |= case.params()
            break
        else:
            dead.append((key, choice))
    return covered, dead


@pytest.mark.parametrize("name", sorted(n for n in REG if n.startswith(("monai.", "smp."))))
def test_every_seg_loss_fuzzing_space_draws_each_public_option(name):
    loss = REG[name]
    covered, dead = space_coverage(loss)
    assert not dead, f"choices that never make a case: {dead}"
    assert set(loss.params) <= covered, f"options the fuzzer never draws: {set(loss.params) - covered}"
    # the check can fail: the space without its option sets / its activations loses their options
    planted = dataclasses.replace(loss, space={k: v[:1] for k, v in loss.space.items()})
    assert set(loss.params) - space_coverage(planted)[0]
