"""parity.compare_models on users' ports (tests/_port_models.py): faithful ports pass in float64
and in float32 (judged with torch's own float64 run), and each planted porting bug is named at
its layer. The default tier checks the pieces (a square ConvTranspose, output-leaf pairing, the
dtype rule, to_float64); the full model grid is in the slow tier (about 3 minutes on one core).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxloss import parity
from jaxloss.parity.models.capture import Record
from jaxloss.parity.models.diff import pair_leaves
from tests import _port_models as P


def test_square_conv_transpose_is_not_read_as_a_conv() -> None:
    # 8 -> 8 with a 2x2 kernel: the kernel's shape fits the Conv rule too; the rule is chosen by the module's type
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(8, 8, 2, stride=2)
    fm = nnx.ConvTranspose(8, 8, (2, 2), strides=(2, 2), padding="VALID", rngs=nnx.Rngs(0))
    parity.load_torch_weights(fm, tm)
    x = np.random.default_rng(0).normal(size=(1, 8, 3, 3)).astype(np.float32)
    r = parity.compare_models(fm, tm, x.transpose(0, 2, 3, 1), x)
    assert r.passed, r
    assert [d.tensor for d in r.params] == ["weight", "bias"] and all(d.max_abs_err == 0 for d in r.params)


def test_output_leaves_pair_by_position_and_key() -> None:
    a = np.zeros(2)
    lstm_t = Record("lstm", 0, [a, a, a], ["[0]", "[1][0]", "[1][1]"])
    assert pair_leaves(Record("lstm", 0, [a]), lstm_t) == ([(0, 0)], ["lstm output[1][0] (torch only)", "lstm output[1][1] (torch only)"])
    attn_t = Record("attn", 0, [a], ["[0]"], ["[0]", "[1]"])  # need_weights=False: (out, None)
    assert pair_leaves(Record("attn", 0, [a]), attn_t) == ([(0, 0)], ["attn output[1] (torch only)"])
    d_j = Record("", 0, [a, a], ["['aux']", "['logits']"])
    d_t = Record("", 0, [a, a], ["['logits']", "['extra']"])
    assert pair_leaves(d_j, d_t) == ([(1, 0)], ["(model) output['aux'] (JAX only)", "(model) output['extra'] (torch only)"])
    # NNX RNN(return_carry=True) gives ((c, h), out), torch's LSTM (out, (h, c)): chosen by path
    carry_j = Record("lstm", 0, [a, a, a], ["[0][0]", "[0][1]", "[1]"])
    assert pair_leaves(carry_j, lstm_t, [("[1]", "[0]"), ("[0][1]", 1), (0, "[1][1]")])[0] == [(2, 0), (1, 1), (0, 2)]
    with pytest.raises(ValueError, match="the torch output has no array leaf '\\[2\\]'"):
        pair_leaves(carry_j, lstm_t, [(0, "[2]")])


def test_float32_buffer_against_float64_torch_is_compared_by_value() -> None:
    fm, tm = nnx.eval_shape(lambda: P.Depthwise(rngs=nnx.Rngs(0))), P.TorchDepthwise()  # no initialiser runs
    with torch.no_grad():
        tm.bn.running_var.uniform_(0.5, 2.0)
    parity.load_torch_weights(fm, tm)
    tm.double()  # NNX keeps float32 statistics
    diffs = {d.tensor: d for d in parity.compare_params(fm, tm)}
    var = diffs["running_var"]
    assert var.passed and "dtype float32 vs torch's float64: compared by value" in var.message
    with torch.no_grad():  # a real difference is still one
        tm.bn.running_var[0] *= 1 + 1e-4  # 10x float32's tolerance (rtol 1.3e-6, atol 1e-5)
    assert not {d.tensor: d for d in parity.compare_params(fm, tm)}["running_var"].passed


def test_to_float64_and_exact_attention() -> None:
    m = parity.to_float64(nnx.Sequential(nnx.Embed(5, 4, rngs=nnx.Rngs(0)),
                                         nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(0))))
    assert m.layers[1].attention_fn is parity.exact_attention
    assert {np.asarray(v).dtype for v in jax.tree.leaves(nnx.state(m, nnx.Param))} == {np.dtype("float64")}
    # nnx.dot_product_attention (the default) computes in float32 for float64 inputs; exact_attention does not
    q = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 2, 3)))
    w = np.exp(np.einsum("bqhd,bkhd->bhqk", np.asarray(q), np.asarray(q)) / np.sqrt(3))
    want = np.einsum("bhqk,bkhd->bqhd", w / w.sum(-1, keepdims=True), np.asarray(q))
    assert np.abs(np.asarray(nnx.dot_product_attention(q, q, q)) - want).max() > 1e-9
    assert np.abs(np.asarray(parity.exact_attention(q, q, q)) - want).max() < 1e-14


def test_gru_float64_faithful_then_b_hn_named() -> None:
    fm, tm, jx, tx = P.gru_pair("float64")
    r = parity.compare_models(fm, tm, jx, tx)
    assert r.passed, r
    assert "gru.cell.dense_h" in r.not_seen  # run inside nnx.scan: said so, not silently missing
    grads = {(d.jax_path, d.tensor) for d in r.layers if d.kind == "grad"}
    assert ("gru.cell.dense_i", "bias_ih_l0") in grads and ("gru.cell.dense_h", "weight_hh_l0") in grads
    with torch.no_grad():
        tm.gru.bias_hh_l0[14:] = 0.1
    r = parity.compare_models(fm, tm, jx, tx, grads=False)
    p = r.first_param_divergence
    assert (p.jax_path, p.tensor) == ("gru", "bias_hh_l0[2]") and "non-zero" in p.message


@pytest.mark.slow
@pytest.mark.parametrize("model", list(P.PAIRS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_faithful_port_passes(model: str, dtype: str) -> None:
    fm, tm, jx, tx = P.PAIRS[model](dtype)
    r = parity.compare_models(fm, tm, jx, tx, reference=dtype == "float32")
    assert r.passed, r
    kinds = {d.kind for d in r.layers}
    assert kinds == {"forward", "grad"} and len(r.params) >= 3


@pytest.mark.slow
def test_faithful_ports_list_what_they_cannot_compare() -> None:
    r = parity.compare_models(*P.encoder_pair("float64"))
    assert r.not_called == ["self_attn.out_proj"] and r.not_compared == ["self_attn output[1] (torch only)"]
    names = {(d.jax_path, d.tensor) for d in r.layers if d.kind == "grad"}
    assert {("self_attn.query", "in_proj_weight[0]"), ("self_attn.value", "in_proj_bias[2]"), ("self_attn.out", "weight")} <= names
    r = parity.compare_models(*P.lstm_pair("float64"))
    assert r.not_compared == ["lstm output[1][0] (torch only)", "lstm output[1][1] (torch only)"]
    assert "lstm.cell.ii" in r.not_seen


@pytest.mark.slow
@pytest.mark.parametrize("bug", list(P.BUGS))
def test_planted_bug_is_named_at_its_layer(bug: str) -> None:
    model, layer = P.BUGS[bug]
    fm, tm, jx, tx = P.PAIRS[model]("float64", bug)
    r = parity.compare_models(fm, tm, jx, tx)
    assert not r.passed
    assert r.first_divergence.jax_path == layer, r
    if bug == "padding_idx not ported":  # forward equal (the padding row is 0): the gradient says it
        assert (r.first_divergence.kind, r.first_divergence.tensor) == ("grad", "weight")
    if bug == "lstm gates swapped":  # inside the LSTM: the gate's own parameter is named
        p = r.first_param_divergence
        assert (p.jax_path, p.tensor) == ("lstm.cell.ii", "weight_ih_l0[0]"), r


def test_groups_wrong_is_named_by_the_loader() -> None:
    fm, tm = nnx.eval_shape(lambda: P.Depthwise(bug="groups wrong", rngs=nnx.Rngs(0))), P.TorchDepthwise()
    with pytest.raises(ValueError, match=r"torch dw.weight \(8, 1, 3, 3\) cannot be NNX dw.kernel"):
        parity.load_torch_weights(fm, tm)


@pytest.mark.slow
def test_outputs_chooses_leaves_of_a_carry_returning_rnn() -> None:
    """NNX ``RNN(return_carry=True)`` returns ``((c, h), out)``, torch's LSTM ``(out, (h, c))``: by
    position they would pair c with out; ``outputs=`` pairs them by path, gradients included."""
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 4, batch_first=True).double()
    fm = parity.to_float64(nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)), return_carry=True, rngs=nnx.Rngs(0)))
    parity.load_torch_weights(fm, tm)
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    r = parity.compare_models(fm, tm, x, x)  # by position: c against out
    assert not r.passed and "shape" in r.first_divergence.message
    choice = {"": [("[1]", "[0]"), ("[0][1]", "[1][0]"), ("[0][0]", "[1][1]")]}
    r = parity.compare_models(fm, tm, x, x, outputs=choice)
    assert r.passed, r
    assert {d.tensor for d in r.layers if d.jax_path == "" and d.kind == "grad"} >= {"output[0]", "output[1][0]", "output[1][1]"}
