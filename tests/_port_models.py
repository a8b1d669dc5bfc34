"""Users' models ported from PyTorch to Flax NNX, as a user writes them: the shared test models of
tests/test_port_*.py (a transformer encoder layer, an LSTM classifier, a U-Net block, a depthwise
conv block, a GRU). Names equal torch's, so ``load_torch_weights`` needs no mapping.

Each ``*_pair(dtype, bug=None)`` returns ``(flax_model, torch_model, jax_input, torch_input)`` with
torch's weights loaded into the port; ``bug`` plants one porting mistake (the names in ``BUGS``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from jaxloss import parity

D_MODEL, HEADS, VOCAB, PAD = 8, 2, 12, 0


# --------------------------------------------------------------------------- transformer encoder layer
def _scaled_attention(q: Any, k: Any, v: Any, **kw: Any) -> Any:
    """A planted bug: attention logits scaled by 1/head_dim instead of 1/sqrt(head_dim)."""
    w = jax.nn.softmax(jnp.einsum("...qhd,...khd->...hqk", q / q.shape[-1], k), axis=-1)
    return jnp.einsum("...hqk,...khd->...qhd", w, v)


class EncoderLayer(nnx.Module):
    """torch's ``nn.TransformerEncoderLayer(batch_first=True, norm_first=True, activation=relu)``."""

    def __init__(self, d: int, heads: int, ff: int, *, eps: float = 1e-5, bug: str | None = None, rngs: nnx.Rngs) -> None:
        attn = {"attention_fn": _scaled_attention} if bug == "attention scale" else {}
        self.self_attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs, **attn)
        self.linear1, self.linear2 = nnx.Linear(d, ff, rngs=rngs), nnx.Linear(ff, d, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d, epsilon=1e-6 if bug == "layernorm eps" else eps, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, epsilon=eps, rngs=rngs)
        self.residual = bug != "missing residual"

    def __call__(self, x: Any) -> Any:
        a = self.self_attn(self.norm1(x))
        x = x + a if self.residual else a
        return x + self.linear2(jax.nn.relu(self.linear1(self.norm2(x))))


def encoder_pair(dtype: str = "float32", bug: str | None = None) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    tm = torch.nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=D_MODEL, dropout=0.0, batch_first=True,
                                          norm_first=True)
    fm = EncoderLayer(D_MODEL, HEADS, D_MODEL, bug=bug, rngs=nnx.Rngs(0))
    x = np.random.default_rng(1).normal(size=(2, 5, D_MODEL))
    return _finish(fm, tm, x, x, dtype, bug)


# --------------------------------------------------------------------------- LSTM classifier
class TorchLSTMClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 6, padding_idx=PAD)
        self.lstm = torch.nn.LSTM(6, 8, batch_first=True)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, tokens: Any) -> Any:
        out, _ = self.lstm(self.embed(tokens))
        return self.fc(out[:, -1])


class PaddedEmbed(nnx.Embed):
    """``nn.Embedding(padding_idx=...)``: the padding row gets no gradient."""

    def __init__(self, *args: Any, padding_idx: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.padding_idx = padding_idx

    def __call__(self, tokens: Any) -> Any:
        e = super().__call__(tokens)
        return jnp.where((tokens == self.padding_idx)[..., None], jax.lax.stop_gradient(e), e)


class LSTMClassifier(nnx.Module):
    def __init__(self, *, bug: str | None = None, rngs: nnx.Rngs) -> None:
        plain = bug == "padding_idx not ported"
        self.embed = nnx.Embed(VOCAB, 6, rngs=rngs) if plain else PaddedEmbed(VOCAB, 6, padding_idx=PAD, rngs=rngs)
        self.lstm = nnx.RNN(nnx.LSTMCell(6, 8, rngs=rngs), rngs=rngs)
        self.fc = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, tokens: Any) -> Any:
        return self.fc(self.lstm(self.embed(tokens))[:, -1])


def lstm_pair(dtype: str = "float32", bug: str | None = None) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    tm, fm = TorchLSTMClassifier(), LSTMClassifier(bug=bug, rngs=nnx.Rngs(0))
    tokens = np.array([[3, 5, 1, 0, 0], [2, 2, 7, 11, 0]])
    return _finish(fm, tm, tokens, tokens, dtype, bug)


# --------------------------------------------------------------------------- U-Net block
class TorchUNetBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.mid = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(8, 8, 2, stride=2)  # square 8 -> 8: the Conv rule's shapes fit too
        self.out = torch.nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: Any) -> Any:
        skip = torch.relu(self.down(x))
        u = self.up(torch.relu(self.mid(torch.nn.functional.max_pool2d(skip, 2))))
        return self.out(torch.cat([u, skip], dim=1))


class UNetBlock(nnx.Module):
    def __init__(self, *, transpose_kernel: bool = False, bug: str | None = None, rngs: nnx.Rngs) -> None:
        self.down = nnx.Conv(4, 8, (3, 3), padding=1, rngs=rngs)
        self.mid = nnx.Conv(8, 8, (3, 3), padding=1, rngs=rngs)
        self.up = nnx.ConvTranspose(8, 8, (2, 2), strides=(2, 2), padding="VALID", transpose_kernel=transpose_kernel, rngs=rngs)
        self.out = nnx.Conv(16, 4, (3, 3), padding=1, rngs=rngs)
        self.swap = bug == "skip order swapped"

    def __call__(self, x: Any) -> Any:
        skip = jax.nn.relu(self.down(x))
        u = self.up(jax.nn.relu(self.mid(nnx.max_pool(skip, (2, 2), (2, 2)))))
        return self.out(jnp.concatenate([skip, u] if self.swap else [u, skip], axis=-1))


def unet_pair(dtype: str = "float32", bug: str | None = None, transpose_kernel: bool = False) -> tuple[Any, ...]:
    torch.manual_seed(0)
    tm, fm = TorchUNetBlock(), UNetBlock(transpose_kernel=transpose_kernel, bug=bug, rngs=nnx.Rngs(0))
    x = np.random.default_rng(1).normal(size=(2, 4, 6, 6))
    return _finish(fm, tm, x.transpose(0, 2, 3, 1), x, dtype, bug)


# --------------------------------------------------------------------------- depthwise conv block
class TorchDepthwise(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pw = torch.nn.Conv2d(8, 16, 1)

    def forward(self, x: Any) -> Any:
        return self.pw(torch.relu(self.bn(self.dw(x))))


class Depthwise(nnx.Module):
    def __init__(self, *, bug: str | None = None, rngs: nnx.Rngs) -> None:
        groups = 1 if bug == "groups wrong" else 8
        self.dw = nnx.Conv(8, 8, (3, 3), padding=1, feature_group_count=groups, use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(8, use_running_average=True, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.pw = nnx.Conv(8, 16, (1, 1), rngs=rngs)

    def __call__(self, x: Any) -> Any:
        return self.pw(jax.nn.relu(self.bn(self.dw(x))))


def depthwise_pair(dtype: str = "float32", bug: str | None = None) -> tuple[Any, ...]:
    torch.manual_seed(0)
    tm, fm = TorchDepthwise(), Depthwise(bug=bug, rngs=nnx.Rngs(0))
    with torch.no_grad():  # running statistics that are not the init's 0 and 1
        tm.bn.running_mean.uniform_(-0.5, 0.5), tm.bn.running_var.uniform_(0.5, 2.0)
    tm.eval()
    x = np.random.default_rng(1).normal(size=(2, 8, 5, 5))
    return _finish(fm, tm, x.transpose(0, 2, 3, 1), x, dtype, bug)


# --------------------------------------------------------------------------- GRU
class TorchGRU(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(5, 7, batch_first=True)

    def forward(self, x: Any) -> Any:
        return self.gru(x)[0]


class GRU(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.gru = nnx.RNN(nnx.GRUCell(5, 7, rngs=rngs), rngs=rngs)

    def __call__(self, x: Any) -> Any:
        return self.gru(x)


def gru_pair(dtype: str = "float32", bug: str | None = None, zero_b_hn: bool = True) -> tuple[Any, ...]:
    torch.manual_seed(0)
    tm, fm = TorchGRU(), GRU(rngs=nnx.Rngs(0))
    if zero_b_hn:  # NNX's GRUCell has no hidden n-gate bias: the one line of glue a GRU port needs
        with torch.no_grad():
            tm.gru.bias_hh_l0[14:] = 0
    x = np.random.default_rng(1).normal(size=(2, 4, 5))
    return _finish(fm, tm, x, x, dtype, bug)


# --------------------------------------------------------------------------- shared
def _finish(fm: Any, tm: Any, jx: np.ndarray, tx: np.ndarray, dtype: str, bug: str | None) -> tuple[Any, ...]:
    if dtype == "float64":  # before loading: bias_ih + bias_hh summed in float32 would be 3e-9 off float64
        tm.double()
        fm = parity.to_float64(fm)
    if bug != "groups wrong":
        parity.load_torch_weights(fm, tm)
    if np.issubdtype(jx.dtype, np.floating):
        jx, tx = jx.astype(dtype), tx.astype(dtype)
    _plant_after_load(fm, bug)
    return fm, tm, jx, tx


def _plant_after_load(fm: Any, bug: str | None) -> None:
    """Bugs in the weights rather than the code: a hand-port that transposed or mixed up tensors."""
    if bug == "transposed linear weight":
        fm.linear1.kernel[...] = fm.linear1.kernel[...].T
    elif bug == "lstm gates swapped":
        c = fm.lstm.cell
        (c.ii.kernel[...], c.if_.kernel[...]) = (c.if_.kernel[...], c.ii.kernel[...])
        (c.hi.kernel[...], c.hf.kernel[...]) = (c.hf.kernel[...], c.hi.kernel[...])
        (c.hi.bias[...], c.hf.bias[...]) = (c.hf.bias[...], c.hi.bias[...])


PAIRS = {"encoder": encoder_pair, "lstm": lstm_pair, "unet": unet_pair, "depthwise": depthwise_pair, "gru": gru_pair}
# planted bug -> (model, the layer compare_models must name first)
BUGS = {
    "transposed linear weight": ("encoder", "linear1"),
    "layernorm eps": ("encoder", "norm1"),
    "attention scale": ("encoder", "self_attn"),
    "missing residual": ("encoder", "norm2"),
    "lstm gates swapped": ("lstm", "lstm"),
    "padding_idx not ported": ("lstm", "embed"),
    "skip order swapped": ("unet", "out"),
}
