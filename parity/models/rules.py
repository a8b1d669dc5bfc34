"""The layer rules: which torch tensor (or piece of one) each NNX variable is, and how its layout changes.

Written once, read by :func:`jaxloss.parity.load_torch_weights` (torch -> NNX),
:func:`jaxloss.parity.export_torch_weights` (NNX -> torch) and :func:`jaxloss.parity.compare_models`
(parameters and their gradients, in torch's layout). A :class:`Link` ties one NNX variable to
one or more torch :class:`Piece` s:

* ``nnx.Linear``: torch ``weight (out, in)`` is ``kernel (in, out)``; ``bias`` as-is.
* ``nnx.Conv`` (any groups, depthwise included): ``weight (out, in/groups, *k)`` is ``kernel (*k, in/groups, out)``.
* ``nnx.ConvTranspose``: torch ``weight (in, out, *k)`` is, with ``transpose_kernel=False`` (NNX's
  default), ``kernel (*k, in, out)`` flipped along its spatial axes; with ``True``, ``(*k, out, in)``
  unflipped (both checked numerically against torch in tests/test_port_weights.py).
* ``nnx.BatchNorm``: ``weight, bias, running_mean, running_var`` are ``scale, bias, mean, var``;
  ``nnx.LayerNorm`` / ``GroupNorm`` / ``RMSNorm``: ``weight, bias`` are ``scale, bias``.
* ``nnx.Embed``: ``weight (num, features)`` is ``embedding``, same layout.
* ``nnx.MultiHeadAttention``: ``in_proj_weight (3E, E)`` (``[q; k; v]``; or ``q/k/v_proj_weight``)
  gives ``query / key / value.kernel (E, heads, head_dim)``, ``in_proj_bias`` their
  ``bias (heads, head_dim)``; ``out_proj.weight (E, E)`` is ``out.kernel (heads, head_dim, E)``.
* ``nnx.RNN`` of an ``LSTMCell``: ``weight_ih_l0 (4H, in)`` (gates ``[i; f; g; o]``) gives
  ``cell.ii / if_ / ig / io.kernel``, ``weight_hh_l0`` gives ``cell.hi / hf / hg / ho.kernel``,
  ``bias_ih_l0 + bias_hh_l0`` their biases; ``OptimizedLSTMCell``: the same, packed, in
  ``dense_i`` / ``dense_h``; ``GRUCell`` (gates ``[r; z; n]``): ``dense_i.bias = bias_ih + bias_hh``
  on r and z, and torch's ``bias_hh_l0[2]`` (b_hn) must be 0. ``nnx.Bidirectional``: ``forward_rnn``
  is ``..._l0``, ``backward_rnn`` ``..._l0_reverse``. A bare cell pairs with ``nn.LSTMCell`` /
  ``nn.GRUCell`` (no ``_l0``).
* Any other module: its variables pair by name (``kernel`` -> ``weight``, ``scale`` -> ``weight``,
  ``mean`` -> ``running_mean``...), as-is, or transposed as a kernel when the shapes say so.

``name[k]`` is the ``k``-th of the equal chunks a packed tensor splits into along its first axis
(``weight_ih_l0[1]``: the LSTM's f gate). A sum (``bias_ih_l0[0]+bias_hh_l0[0]``) is what NNX
keeps as one bias; exported, the whole value goes to the first term and the others are 0.

>>> from flax import nnx
>>> links = module_links({"fc": describe(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))}, {("fc", "kernel"): (3, 2), ("fc", "bias"): (2,)},
...                      {("fc", "weight"): (2, 3), ("fc", "bias"): (2,)}, {"fc": "fc"})
>>> [(lk.jax_name, lk.torch_name, lk.how) for lk in links]
[('fc.kernel', 'fc.weight', 'weight (out, in) -> kernel (in, out)'), ('fc.bias', 'fc.bias', 'as-is')]
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxloss.parity.models.layout import TENSOR_NAMES

__all__ = ["Link", "Piece", "describe", "module_links", "parse_piece", "split_mapping"]

Shape = tuple[int, ...]
TensorKey = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Piece:
    """A torch tensor, or chunks of it: ``index`` of ``count`` equal chunks along axis 0
    (``keep``: the chunks kept whole, the others read as 0: the GRU's ``bias_hh`` without b_hn).

    >>> import numpy as np
    >>> p = Piece("lstm", "weight_ih_l0", 1, 4)
    >>> p.name, p.take(np.arange(8.0)).tolist()
    ('lstm.weight_ih_l0[1]', [2.0, 3.0])
    """

    module: str
    tensor: str
    index: int | None = None
    count: int = 1
    keep: tuple[int, ...] | None = None

    @property
    def key(self) -> TensorKey:
        return (self.module, self.tensor)

    @property
    def short(self) -> str:
        """The tensor with its chunk, without the module (``weight_ih_l0[1]``)."""
        if self.index is not None:
            return f"{self.tensor}[{self.index}]"
        if self.keep is not None:
            return f"{self.tensor}[{','.join(map(str, self.keep))}]"
        return self.tensor

    @property
    def name(self) -> str:
        return f"{self.module}.{self.short}" if self.module else self.short

    def shape_of(self, full: Sequence[int]) -> Shape:
        """The piece's shape in a tensor of shape ``full``."""
        full = tuple(full)
        return full if self.index is None else (full[0] // self.count, *full[1:])

    def take(self, t: np.ndarray) -> np.ndarray:
        if self.index is not None:
            return np.split(t, self.count, axis=0)[self.index]
        if self.keep is not None:
            parts = np.split(t, self.count, axis=0)
            return np.concatenate([p if k in self.keep else np.zeros_like(p) for k, p in enumerate(parts)])
        return t

    def put(self, full: np.ndarray, value: np.ndarray) -> None:
        """Write ``value`` into this piece of ``full`` (in place)."""
        if self.index is None:
            full[...] = value
        else:
            n = full.shape[0] // self.count
            full[self.index * n : (self.index + 1) * n] = value


@dataclasses.dataclass(frozen=True)
class Link:
    """One NNX variable (``jax``: module path, variable name) and the torch pieces it is (summed).

    NNX value = ``flip`` (torch axes reversed), ``perm`` (torch axes in NNX order), then a reshape
    to the NNX shape; ``groups`` says which NNX axes merge into each permuted torch axis (the
    attention heads). ``jax=None``: torch pieces NNX has no place for, which must be 0.

    >>> import numpy as np
    >>> lk = Link(("fc", "kernel"), (Piece("fc", "weight"),), "t", perm=(1, 0))
    >>> lk.to_jax(np.arange(6.0).reshape(2, 3), (3, 2)).shape, lk.torch_shape((3, 2))
    ((3, 2), (2, 3))
    """

    jax: TensorKey | None
    torch: tuple[Piece, ...]
    how: str
    perm: tuple[int, ...] | None = None
    flip: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] | None = None

    @property
    def jax_name(self) -> str:
        if self.jax is None:
            return "(none)"
        m, v = self.jax
        return f"{m}.{v}" if m else v

    @property
    def torch_name(self) -> str:
        return "+".join(p.name for p in self.torch)

    @property
    def torch_short(self) -> str:
        """The torch side without the module of the first piece (``bias_ih_l0[0]+bias_hh_l0[0]``)."""
        return "+".join(p.short if p.module == self.torch[0].module else p.name for p in self.torch)

    def torch_shape(self, jax_shape: Sequence[int]) -> Shape:
        """The torch piece's shape for an NNX variable of ``jax_shape``."""
        s = tuple(jax_shape)
        merged = s if self.groups is None else tuple(math.prod(s[i] for i in g) for g in self.groups)
        if self.perm is None:
            return merged
        inv = np.argsort(self.perm)
        return tuple(merged[i] for i in inv)

    def to_jax(self, t: np.ndarray, jax_shape: Sequence[int]) -> np.ndarray:
        """The torch piece's value as the NNX variable (``ValueError`` naming both shapes if it does not fit)."""
        if tuple(t.shape) != self.torch_shape(jax_shape):
            raise ValueError(f"shape mismatch: torch {self.torch_name} {tuple(t.shape)} cannot be NNX {self.jax_name} "
                             f"{tuple(jax_shape)} ({self.how}: torch shape {self.torch_shape(jax_shape)} expected)")
        a = np.flip(t, self.flip) if self.flip else t
        a = a.transpose(self.perm) if self.perm is not None else a
        return np.array(a, order="C").reshape(tuple(jax_shape))

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        """The NNX variable's value in the torch piece's layout."""
        shape = self.torch_shape(a.shape)
        merged = shape if self.perm is None else tuple(shape[i] for i in self.perm)
        t = np.asarray(a).reshape(merged)
        if self.perm is not None:
            t = t.transpose(np.argsort(self.perm))
        return np.array(np.flip(t, self.flip) if self.flip else t, order="C")


# --------------------------------------------------------------------------- module kinds
def describe(module: Any) -> dict[str, Any]:
    """What the rules need to know about an NNX module (JSON-able: kept in captures and golden files).

    >>> from flax import nnx
    >>> describe(nnx.ConvTranspose(2, 2, (3,), rngs=nnx.Rngs(0)))
    {'kind': 'conv_transpose', 'transpose_kernel': False}
    """
    from flax import nnx

    kinds: list[tuple[type, str]] = [
        (nnx.ConvTranspose, "conv_transpose"), (nnx.Conv, "conv"), (nnx.Linear, "linear"), (nnx.Embed, "embed"),
        (nnx.BatchNorm, "norm"), (nnx.LayerNorm, "norm"), (nnx.GroupNorm, "norm"), (nnx.RMSNorm, "norm"),
        (nnx.MultiHeadAttention, "attention"), (nnx.OptimizedLSTMCell, "optimized_lstm"), (nnx.LSTMCell, "lstm"),
        (nnx.GRUCell, "gru"), (nnx.RNN, "rnn"), (nnx.Bidirectional, "bidirectional"),
    ]
    for cls, kind in kinds:
        if isinstance(module, cls):
            d: dict[str, Any] = {"kind": kind}
            if kind == "conv_transpose":
                d["transpose_kernel"] = bool(module.transpose_kernel)
            return d
    return {"kind": None}


def _lin(j: str, var: str, piece: Piece, how: str = "weight (out, in) -> kernel (in, out)", **kw: Any) -> Link:
    return Link((j, var), (piece,), how, perm=(1, 0), **kw)


def _same(j: str, var: str, piece: Piece) -> Link:
    return Link((j, var), (piece,), "as-is")


def _sub(j: str, name: str) -> str:
    return f"{j}.{name}" if j else name


def _linear(j: str, t: str, jv: set[TensorKey], tn: set[TensorKey] | None) -> list[Link]:
    out = [_lin(j, "kernel", Piece(t, "weight"))]
    if (j, "bias") in jv:
        out.append(_same(j, "bias", Piece(t, "bias")))
    return out


def _conv(j: str, t: str, jv: set[TensorKey], shapes: Mapping[TensorKey, Shape], transpose: bool | None) -> list[Link]:
    nd = len(shapes[(j, "kernel")])
    spatial = tuple(range(2, nd))
    if transpose is None:
        link = Link((j, "kernel"), (Piece(t, "weight"),), "weight (out, in/groups, *k) -> kernel (*k, in/groups, out)",
                    perm=(*spatial, 1, 0))
    elif transpose:
        link = Link((j, "kernel"), (Piece(t, "weight"),), "weight (in, out, *k) -> kernel (*k, out, in) (transpose_kernel=True)",
                    perm=(*spatial, 1, 0))
    else:
        link = Link((j, "kernel"), (Piece(t, "weight"),),
                    "weight (in, out, *k) -> kernel (*k, in, out), spatially flipped (transpose_kernel=False)",
                    perm=(*spatial, 0, 1), flip=spatial)
    out = [link]
    if (j, "bias") in jv:
        out.append(_same(j, "bias", Piece(t, "bias")))
    return out


def _norm(j: str, t: str, jv: set[TensorKey]) -> list[Link]:
    names = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    return [_same(j, v, Piece(t, names[v])) for v in names if (j, v) in jv]


def _attention(j: str, t: str, jv: set[TensorKey], tn: set[TensorKey] | None) -> list[Link]:
    packed = tn is None or (t, "in_proj_weight") in tn
    out = []
    for k, name in enumerate(("query", "key", "value")):
        jm = _sub(j, name)
        w = Piece(t, "in_proj_weight", k, 3) if packed else Piece(t, f"{name[0]}_proj_weight")
        out.append(_lin(jm, "kernel", w, "weight (E, E_in) -> kernel (E_in, heads, head_dim)", groups=((0,), (1, 2))))
        if (jm, "bias") in jv:
            out.append(Link((jm, "bias"), (Piece(t, "in_proj_bias", k, 3),), "bias (E,) -> (heads, head_dim)", groups=((0, 1),)))
    om = _sub(j, "out")
    out.append(_lin(om, "kernel", Piece(_sub(t, "out_proj"), "weight"), "weight (E, E) -> kernel (heads, head_dim, E)",
                    groups=((0, 1), (2,))))
    if (om, "bias") in jv:
        out.append(_same(om, "bias", Piece(_sub(t, "out_proj"), "bias")))
    for extra in ("bias_k", "bias_v"):  # add_bias_kv: NNX attention has no place for them
        if tn is not None and (t, extra) in tn:
            out.append(Link(None, (Piece(t, extra),), "NNX MultiHeadAttention has no add_bias_kv"))
    return out


def _cell(kind: str, j: str, t: str, sfx: str, jv: set[TensorKey]) -> list[Link]:
    wi, wh, bi, bh = (f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}")
    if kind == "lstm":
        out = []
        for k, g in enumerate(("i", "f", "g", "o")):
            ji, jh = _sub(j, "if_" if g == "f" else f"i{g}"), _sub(j, f"h{g}")
            out.append(_lin(ji, "kernel", Piece(t, wi, k, 4), f"gate {g} of weight_ih (4H, in) -> kernel (in, H)"))
            out.append(_lin(jh, "kernel", Piece(t, wh, k, 4), f"gate {g} of weight_hh (4H, H) -> kernel (H, H)"))
            out.append(Link((jh, "bias"), (Piece(t, bi, k, 4), Piece(t, bh, k, 4)), f"gate {g}: bias_ih + bias_hh"))
        return out
    if kind == "optimized_lstm":
        return [_lin(_sub(j, "dense_i"), "kernel", Piece(t, wi), "weight_ih (4H, in) -> kernel (in, 4H), gates i f g o"),
                _lin(_sub(j, "dense_h"), "kernel", Piece(t, wh), "weight_hh (4H, H) -> kernel (H, 4H)"),
                Link((_sub(j, "dense_h"), "bias"), (Piece(t, bi), Piece(t, bh)), "bias_ih + bias_hh")]
    # GRU: n = tanh(W_in x + b_in + r (W_hn h + b_hn)); NNX's GRUCell has no b_hn
    return [_lin(_sub(j, "dense_i"), "kernel", Piece(t, wi), "weight_ih (3H, in) -> kernel (in, 3H), gates r z n"),
            _lin(_sub(j, "dense_h"), "kernel", Piece(t, wh), "weight_hh (3H, H) -> kernel (H, 3H)"),
            Link((_sub(j, "dense_i"), "bias"), (Piece(t, bi), Piece(t, bh, None, 3, (0, 1))), "bias_ih + bias_hh (r, z gates)"),
            Link(None, (Piece(t, bh, 2, 3),), "b_hn: NNX GRUCell has no hidden n-gate bias")]


def _suffix(t: str, tn: set[TensorKey] | None, base: str) -> str:
    """``_l0`` (nn.LSTM / nn.GRU) or ``""`` (nn.LSTMCell / nn.GRUCell)."""
    if tn is not None and (t, "weight_ih") in tn and (t, f"weight_ih{base}") not in tn:
        return ""
    return base


def _recurrent(kind: str, j: str, t: str, descs: Mapping[str, dict[str, Any]], jv: set[TensorKey],
               tn: set[TensorKey] | None) -> list[Link]:
    if kind in ("lstm", "optimized_lstm", "gru"):
        return _cell(kind, j, t, _suffix(t, tn, "_l0"), jv)
    if kind == "rnn":
        cell = _sub(j, "cell")
        ck = descs.get(cell, {}).get("kind")
        return _cell(ck, cell, t, _suffix(t, tn, "_l0"), jv) if ck in ("lstm", "optimized_lstm", "gru") else []
    out = []  # bidirectional
    for side, sfx in (("forward_rnn", "_l0"), ("backward_rnn", "_l0_reverse")):
        cell = _sub(_sub(j, side), "cell")
        ck = descs.get(cell, {}).get("kind")
        if ck in ("lstm", "optimized_lstm", "gru"):
            out += _cell(ck, cell, t, sfx, jv)
    return out


def _generic(j: str, t: str, vars_: Sequence[str], jshapes: Mapping[TensorKey, Shape],
             tshapes: Mapping[TensorKey, Shape] | None) -> list[Link]:
    """Variables of a module without a rule: paired by name (``kernel`` -> ``weight``...), the
    layout read from the shapes (a kernel in NNX's (in, out) / (*k, in, out) order first)."""
    out = []
    for v in vars_:
        tname = TENSOR_NAMES.get(v, v)
        if tshapes is not None and (t, tname) not in tshapes:
            tname = v
            if (t, tname) not in tshapes:
                continue
        js = jshapes[(j, v)]
        nd = len(js)
        conv = (*range(2, nd), 1, 0) if nd >= 2 else None
        cands = [conv, None] if v == "kernel" else [None, conv]
        ts = tshapes.get((t, tname)) if tshapes is not None else None
        perm = next((p for p in cands if ts is None or Link(None, (), "", perm=p).torch_shape(js) == tuple(ts)), cands[0])
        out.append(Link((j, v), (Piece(t, tname),), "as-is" if perm is None else "axes (out, in, *k) -> (*k, in, out)", perm=perm))
    return out


# --------------------------------------------------------------------------- all links of a model pair
def split_mapping(mapping: Mapping[str, str] | None, jax_vars: Sequence[TensorKey]) -> tuple[dict[str, str], dict[TensorKey, str]]:
    """``(module entries, tensor entries)`` of a ``mapping``: an entry whose key names an NNX
    variable (``"lstm.cell.ii.kernel"``) is tensor-level, its value a torch tensor, optionally with
    a chunk (``"lstm.weight_ih_l0[0]"``); the others pair modules.

    >>> split_mapping({"head": "fc", "a.kernel": "b.weight"}, [("a", "kernel")])
    ({'head': 'fc'}, {('a', 'kernel'): 'b.weight'})
    """
    jv = set(jax_vars)
    mods: dict[str, str] = {}
    tens: dict[TensorKey, str] = {}
    for k, v in (mapping or {}).items():
        m, _, var = k.rpartition(".")
        if (m, var) in jv:
            tens[(m, var)] = v
        else:
            mods[k] = v
    return mods, tens


_PIECE = re.compile(r"^(?P<name>.*?)(\[(?P<index>\d+)\])?$")


def parse_piece(text: str, jax_size: int, tshapes: Mapping[TensorKey, Shape] | None) -> Piece:
    """A torch tensor named in a tensor-level mapping entry; ``[k]``: the ``k``-th chunk, the number
    of chunks read from the sizes (the torch tensor's over the NNX variable's).

    >>> parse_piece("lstm.weight_ih_l0[1]", 12, {("lstm", "weight_ih_l0"): (16, 3)})
    Piece(module='lstm', tensor='weight_ih_l0', index=1, count=4, keep=None)
    """
    m = _PIECE.match(text.strip())
    assert m is not None
    module, _, tensor = m.group("name").rpartition(".")
    if tshapes is not None and (module, tensor) not in tshapes:
        raise ValueError(f"mapping: torch tensor {m.group('name')!r} not found; torch has {sorted('.'.join(k).lstrip('.') for k in tshapes)[:12]}...")
    if m.group("index") is None:
        return Piece(module, tensor)
    size = math.prod(tshapes[(module, tensor)]) if tshapes is not None else 0
    count = size // jax_size if jax_size and size % jax_size == 0 else 0
    if count < 1 or int(m.group("index")) >= count:
        raise ValueError(f"mapping: {text!r}: the torch tensor does not split into chunks of the NNX variable's size {jax_size}")
    return Piece(module, tensor, int(m.group("index")), count)


def module_links(descs: Mapping[str, dict[str, Any]], jshapes: Mapping[TensorKey, Shape],
                 tshapes: Mapping[TensorKey, Shape] | None, pairs: Mapping[str, str],
                 tensor_mapping: Mapping[TensorKey, str] | None = None) -> list[Link]:
    """Every :class:`Link` between the NNX variables ``jshapes`` and the torch tensors ``tshapes``
    (``None``: no torch model, canonical torch names), modules paired by ``pairs`` ``{jax_path: torch_name}``.

    A module with a rule (``descs[path]["kind"]``) claims the variables of its submodules too
    (attention's ``query``, an RNN's ``cell.ii``), parents before children; the rest pair by name.
    ``tensor_mapping`` entries override. Links whose torch tensors the torch side does not have
    are left out (the caller reports the variable as unpaired).

    >>> descs = {"lstm": {"kind": "rnn"}, "lstm.cell": {"kind": "gru"}}
    >>> jshapes = {("lstm.cell.dense_i", "kernel"): (5, 21), ("lstm.cell.dense_i", "bias"): (21,),
    ...            ("lstm.cell.dense_h", "kernel"): (7, 21)}
    >>> [(lk.jax_name, lk.torch_name) for lk in module_links(descs, jshapes, None, {"lstm": "lstm"})]  # doctest: +NORMALIZE_WHITESPACE
    [('lstm.cell.dense_i.kernel', 'lstm.weight_ih_l0'), ('lstm.cell.dense_h.kernel', 'lstm.weight_hh_l0'),
     ('lstm.cell.dense_i.bias', 'lstm.bias_ih_l0+lstm.bias_hh_l0[0,1]'), ('(none)', 'lstm.bias_hh_l0[2]')]
    """
    jv = set(jshapes)
    tn = set(tshapes) if tshapes is not None else None
    claimed: dict[TensorKey, Link] = {}
    extra: list[Link] = []
    for j in sorted(pairs, key=lambda p: (p.count(".") + (p != ""), p)):
        t, kind = pairs[j], descs.get(j, {}).get("kind")
        if kind in ("linear", "embed", "norm") or kind is None:
            continue
        if kind in ("conv", "conv_transpose"):
            links = _conv(j, t, jv, jshapes, None if kind == "conv" else descs[j]["transpose_kernel"])
        elif kind == "attention":
            links = _attention(j, t, jv, tn)
        else:
            links = _recurrent(kind, j, t, descs, jv, tn)
        for lk in links:
            if lk.jax is None:
                extra.append(lk)
            elif lk.jax in jv and lk.jax not in claimed:
                claimed[lk.jax] = lk
    for j, t in pairs.items():
        kind = descs.get(j, {}).get("kind")
        own = [v for (m, v) in jshapes if m == j and (m, v) not in claimed]
        if kind == "linear" and "kernel" in own:
            links = _linear(j, t, jv, tn)
        elif kind == "embed":
            links = [_same(j, "embedding", Piece(t, "weight"))]
        elif kind == "norm":
            links = _norm(j, t, jv)
        else:
            links = _generic(j, t, own, jshapes, tshapes)
        for lk in links:
            if lk.jax in jv and lk.jax not in claimed:
                claimed[lk.jax] = lk
    for jkey, text in (tensor_mapping or {}).items():
        piece = parse_piece(text, math.prod(jshapes[jkey]), tshapes)
        base = claimed.get(jkey)
        nd = len(jshapes[jkey])
        perm = (1, 0) if nd == 2 and jkey[1] == "kernel" else (*range(2, nd), 1, 0) if nd > 2 and jkey[1] == "kernel" else None
        how = base.how if base is not None else "mapping" + ("" if perm is None else ", kernel transposed")
        claimed[jkey] = Link(jkey, (piece,), how, perm=base.perm if base else perm, flip=base.flip if base else (),
                             groups=base.groups if base else None)
    out = [lk for lk in claimed.values() if tn is None or all(p.key in tn for p in lk.torch)]
    out += [lk for lk in extra if tn is None or all(p.key in tn for p in lk.torch)]
    return out


def sub_pairs(descs: Mapping[str, dict[str, Any]], pairs: Mapping[str, str], torch_names: Sequence[str]) -> dict[str, str]:
    """Module pairs a rule implies below a paired module (attention's ``out`` is torch's
    ``out_proj``), for comparing their outputs; existing pairs are kept.

    >>> sub_pairs({"attn": {"kind": "attention"}, "attn.out": {"kind": None}}, {"attn": "self_attn"},
    ...           ["self_attn", "self_attn.out_proj"])
    {'attn': 'self_attn', 'attn.out': 'self_attn.out_proj'}
    """
    out = dict(pairs)
    for j, t in pairs.items():
        if descs.get(j, {}).get("kind") == "attention":
            jo, to = _sub(j, "out"), _sub(t, "out_proj")
            if jo in descs and to in torch_names and jo not in out and to not in out.values():
                out[jo] = to
    return out
