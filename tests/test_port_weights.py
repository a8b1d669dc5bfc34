"""parity.load_torch_weights / export_torch_weights: users' models from PyTorch into Flax NNX and back.

The ported models are in tests/_port_models.py (names equal torch's: no mapping). Each
conversion is checked against torch itself (the same forward output), never against numbers
copied from the loader.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax import nnx

from jaxloss import parity
from tests import _port_models as P


def _abstract(make: object) -> nnx.Module:
    """A port built without running its initialisers (their compilation is most of these tests' time)."""
    return nnx.eval_shape(make)  # type: ignore[arg-type]


def _torch_out(tm: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return tm(torch.tensor(x)).numpy()


@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_conv_transpose_both_nnx_conventions_equal_torch(transpose_kernel: bool) -> None:
    # stride 2, padding 1, output_padding 1: torch's output size; NNX pads k - 1 - p before, k - 1 - p + 1 after
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose1d(3, 5, 3, stride=2, padding=1, output_padding=1)
    fm = nnx.ConvTranspose(3, 5, (3,), strides=(2,), padding=((1, 2),), transpose_kernel=transpose_kernel, rngs=nnx.Rngs(0))
    report = parity.load_torch_weights(fm, tm)
    assert ("spatially flipped" in report.copied[0].how) is not transpose_kernel
    x = np.random.default_rng(0).normal(size=(2, 3, 6)).astype(np.float32)
    got = np.asarray(fm(x.transpose(0, 2, 1))).transpose(0, 2, 1)
    np.testing.assert_allclose(got, _torch_out(tm, x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # one eager forward per port: about 30 s of op compilations on one core
def test_every_port_loads_with_no_glue_and_equals_torch() -> None:
    for name, pair in P.PAIRS.items():
        fm, tm, jx, tx = pair("float32")  # loads with parity.load_torch_weights(fm, tm), no mapping
        got = np.asarray(fm(jx))
        got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got
        np.testing.assert_allclose(got, _torch_out(tm, tx), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow  # builds all five ports (their initialisers compile: ~20 s on one idle core)
def test_export_round_trip() -> None:
    """torch -> NNX -> torch -> NNX: every tensor back as it was (a summed LSTM / GRU bias comes back
    as its sum in bias_ih, zeros in bias_hh), and the NNX model reloads to the same values."""
    import jax

    for name, pair in P.PAIRS.items():
        fm, tm, _, _ = pair("float32")
        sd, back = tm.state_dict(), parity.export_torch_weights(fm, tm)
        assert list(back) == list(sd), name
        for k, v in sd.items():
            want = v.numpy()
            if "bias_ih" in k:  # the GRU's b_hn (rows 14:) has no NNX place: not in the sum
                other = sd[k.replace("bias_ih", "bias_hh")].numpy()
                want = want + (other if "lstm" in k else other * np.repeat([1.0, 1.0, 0.0], 7).astype(np.float32))
            elif "bias_hh" in k:
                want = np.zeros_like(want)
            np.testing.assert_array_equal(back[k].numpy(), want, err_msg=f"{name} {k}")
        again = nnx.clone(fm)
        nnx.update(again, jax.tree.map(np.zeros_like, nnx.state(again, nnx.Param)))
        parity.load_torch_weights(again, back)
        for a, b in zip(jax.tree.leaves(nnx.state(again, nnx.Param)), jax.tree.leaves(nnx.state(fm, nnx.Param))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def test_export_without_torch_model_names_tensors_as_torch() -> None:
    fm, tm = _abstract(lambda: P.LSTMClassifier(rngs=nnx.Rngs(0))), P.TorchLSTMClassifier()
    parity.load_torch_weights(fm, tm)  # an abstract port loads, and is concrete after
    sd = parity.export_torch_weights(fm)
    assert sorted(sd) == sorted(tm.state_dict())
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in tm.state_dict().items()}


def test_report_lists_each_variable_and_its_conversion() -> None:
    fm, tm = _abstract(lambda: P.LSTMClassifier(rngs=nnx.Rngs(0))), P.TorchLSTMClassifier()
    text = str(parity.load_torch_weights(fm, tm))
    assert "lstm.cell.if_.kernel (6, 8)  <-  lstm.weight_ih_l0[1] (8, 6)  gate f of weight_ih" in text
    assert "lstm.cell.ho.bias (8,)" in text and "lstm.bias_ih_l0[3]+lstm.bias_hh_l0[3]" in text
    # the gates land where torch keeps them: NNX's f-gate kernel is rows H..2H of weight_ih_l0, transposed
    np.testing.assert_array_equal(np.asarray(fm.lstm.cell.if_.kernel[...]), tm.lstm.weight_ih_l0.detach().numpy()[8:16].T)


def test_num_batches_tracked_is_not_an_error() -> None:
    fm, tm = _abstract(lambda: P.Depthwise(rngs=nnx.Rngs(0))), P.TorchDepthwise()
    report = parity.load_torch_weights(fm, tm)
    assert report.ignored == ["bn.num_batches_tracked"] and not report.unpaired_torch


def test_strict_lists_what_is_unpaired_on_each_side_in_one_error() -> None:
    fm = _abstract(lambda: P.LSTMClassifier(rngs=nnx.Rngs(0)))
    tm = P.TorchLSTMClassifier()
    tm.extra = torch.nn.Linear(2, 2)
    fm.fc2 = _abstract(lambda: nnx.Linear(3, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"unpaired: NNX variables \['fc2.bias', 'fc2.kernel'\].*torch tensors \['extra.weight', 'extra.bias'\]"):
        parity.load_torch_weights(fm, tm)
    report = parity.load_torch_weights(fm, tm, strict=False)
    assert report.unpaired_jax == ["fc2.bias", "fc2.kernel"] and report.unpaired_torch == ["extra.weight", "extra.bias"]


def test_gru_hidden_n_gate_bias_must_be_zero() -> None:
    fm, tm = _abstract(lambda: P.GRU(rngs=nnx.Rngs(0))), P.TorchGRU()  # torch's init: b_hn != 0
    with pytest.raises(ValueError, match=r"torch gru.bias_hh_l0\[2\] is non-zero and NNX has no place for it"):
        parity.load_torch_weights(fm, tm)
    with torch.no_grad():
        tm.gru.bias_hh_l0[14:] = 0
    assert "gru.bias_hh_l0[2]" in parity.load_torch_weights(fm, tm).ignored


def test_mapping_pairs_modules_and_single_tensors() -> None:
    class Renamed(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.tokens = nnx.Embed(P.VOCAB, 6, rngs=rngs)
            self.rnn = nnx.RNN(nnx.LSTMCell(6, 8, rngs=rngs), rngs=rngs)
            self.head = nnx.Linear(8, 3, rngs=rngs)

    fm, tm = _abstract(lambda: Renamed(nnx.Rngs(0))), P.TorchLSTMClassifier()
    mapping = {"tokens": "embed", "rnn": "lstm", "head": "fc"}
    parity.load_torch_weights(fm, tm, mapping=mapping)
    np.testing.assert_array_equal(np.asarray(fm.rnn.cell.ig.kernel[...]), tm.lstm.weight_ih_l0.detach().numpy()[16:24].T)
    # a tensor-level entry overrides the rule: here, deliberately, gate g's kernel from gate o's rows
    parity.load_torch_weights(fm, tm, mapping={**mapping, "rnn.cell.ig.kernel": "lstm.weight_ih_l0[3]"})
    np.testing.assert_array_equal(np.asarray(fm.rnn.cell.ig.kernel[...]), tm.lstm.weight_ih_l0.detach().numpy()[24:32].T)
    with pytest.raises(ValueError, match="mapping: unknown JAX paths"):
        parity.load_torch_weights(fm, tm, mapping={"nope": "fc"})


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(TypeError, match="flax_model must be a flax.nnx.Module"):
        parity.load_torch_weights(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="torch_model_or_state_dict must be a torch.nn.Module or a state_dict"):
        parity.load_torch_weights(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 3)
