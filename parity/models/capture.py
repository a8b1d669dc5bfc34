"""Running one model and recording every layer: a :class:`Capture` per framework.

A capture holds, in execution order, the output of every submodule call (a module called
twice has two records), and with gradients the gradient reaching each of those outputs
(the vector-Jacobian product of the model output with a given cotangent), every parameter's
gradient, the parameters and buffers before the call and the buffers after it (BatchNorm's
running statistics). The models themselves are left as they were.

JAX (:func:`capture_jax`): the model is split into its parameters and the rest of its state
and merged again inside one ``jax.jit``-compiled function. While that function is traced,
the ``__call__`` of every module class in the model is wrapped (and unwrapped afterwards):
the wrapper records each call's output and adds a zero *probe* array to it. The recorded
outputs are returned from the jitted function, and the gradient reaching a layer is the
gradient with respect to its probe. Module calls are recorded when they return, so a
container comes after its children, as torch's forward hooks fire.

torch (:func:`capture_torch`): a forward hook on every module records a copy of its output
(a copy: an in-place ReLU after it would change the tensor) and returns ``output + probe``
(a zero tensor requiring grad), so ``torch.autograd.grad`` with respect to the probes gives
the gradient reaching each layer. Buffers are restored after the run.

>>> import numpy as np
>>> from flax import nnx
>>> m = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 1, rngs=nnx.Rngs(1)))
>>> cap = capture_jax(m, (np.ones((4, 2), np.float32),), cotangent=[np.ones((4, 1), np.float32)])
>>> [(r.name, r.outputs[0].shape) for r in cap.layers]
[('0', (4, 3)), ('1', (4, 1)), ('', (4, 1))]
>>> cap.grads[("0", 0)][0].shape, sorted(cap.param_grads)
((4, 3), [('0', 'bias'), ('0', 'kernel'), ('1', 'bias'), ('1', 'kernel')])
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["Capture", "LeafSpecs", "Record", "capture_jax", "capture_torch", "check_cotangent", "jax_output_specs", "leaf_slots", "module_kinds",
           "random_cotangent"]

TensorKey = tuple[str, str]  # (module name, tensor name)
CallKey = tuple[str, int]  # (module name, call index)


@dataclasses.dataclass
class Record:
    """One module call: its name, which call of that module it was (0, 1...), its floating array
    outputs; ``paths``: where each sits in the output (``""`` a bare array, ``"[1][0]"``,
    ``"['logits']"``); ``slots``: every leaf's path in order, ``None`` leaves included (torch
    attention's ``(out, None)``), for pairing outputs by position.

    >>> import numpy as np
    >>> r = Record("conv1", 1, [np.zeros(2)])
    >>> r.key, r.paths, r.slots
    (('conv1', 1), [''], [''])
    """

    name: str
    call: int
    outputs: list[np.ndarray]
    paths: list[str] = dataclasses.field(default_factory=list)
    slots: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.outputs):
            self.paths = [""] if len(self.outputs) == 1 else [f"[{k}]" for k in range(len(self.outputs))]
        if not self.slots:
            self.slots = list(self.paths)

    @property
    def key(self) -> CallKey:
        return (self.name, self.call)


class LeafSpecs(list):  # type: ignore[type-arg]
    """The ``(shape, dtype)`` of each floating output leaf (what a cotangent function receives),
    with ``paths`` and ``slots`` as in :class:`Record`.

    >>> LeafSpecs([((2,), "float32")], [""], [""]).paths
    ['']
    """

    def __init__(self, specs: Sequence[tuple[tuple[int, ...], Any]], paths: Sequence[str], slots: Sequence[str]) -> None:
        super().__init__(specs)
        self.paths, self.slots = list(paths), list(slots)


@dataclasses.dataclass
class Capture:
    """One model run on one framework, as NumPy arrays in that framework's own layout.

    >>> import numpy as np
    >>> Capture("jax", [], [np.zeros(2, np.float32)], [], {("fc", "kernel"): np.zeros(1)}, {}).dtype
    'float32'
    """

    framework: str  # "jax" | "torch"
    inputs: list[np.ndarray]
    output: list[np.ndarray]
    layers: list[Record]
    params: dict[TensorKey, np.ndarray]  # parameters and buffers before the call
    state: dict[TensorKey, np.ndarray]  # buffers after the call (parameters excluded)
    grads: dict[CallKey, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    param_grads: dict[TensorKey, np.ndarray] = dataclasses.field(default_factory=dict)
    cotangent: list[np.ndarray] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dtype(self) -> str:
        """The floating dtype of the model output (the comparison's dtype)."""
        floats = [a for a in self.output if np.issubdtype(a.dtype, np.floating)]
        return str(floats[0].dtype) if floats else "float64"


def random_cotangent(shapes: Sequence[tuple[tuple[int, ...], Any]], seed: int = 0) -> list[np.ndarray]:
    """Standard normal arrays of the given ``(shape, dtype)``s, reproducible from ``seed``.

    >>> [c.shape for c in random_cotangent([((2, 3), np.float32)])]
    [(2, 3)]
    """
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size=s).astype(d) for s, d in shapes]


def _float_leaves(tree: Any, is_array: Callable[[Any], bool]) -> list[Any]:
    """The floating array leaves of a module output (a tensor / array, or a tuple, list or dict of them)."""
    return [x for _, x in leaf_slots(tree, is_array) if x is not None]


def leaf_slots(tree: Any, is_array: Callable[[Any], bool], path: str = "") -> list[tuple[str, Any]]:
    """``[(path, leaf)]`` of a module output: its floating arrays and its ``None`` leaves (other
    leaves, e.g. integer arrays, are left out).

    >>> import numpy as np
    >>> [(p, None if x is None else x.shape) for p, x in leaf_slots((np.zeros(2), {"h": np.zeros(3)}, None), lambda x: isinstance(x, np.ndarray))]
    [('[0]', (2,)), ("[1]['h']", (3,)), ('[2]', None)]
    """
    if is_array(tree):
        return [(path, tree)]
    if tree is None:
        return [(path, None)]
    if isinstance(tree, dict):
        return [x for k, v in tree.items() for x in leaf_slots(v, is_array, f"{path}[{k!r}]")]
    if isinstance(tree, (tuple, list)):
        return [x for k, v in enumerate(tree) for x in leaf_slots(v, is_array, f"{path}[{k}]")]
    return []


def _replace_leaves(tree: Any, is_array: Callable[[Any], bool], new: Iterator[Any]) -> Any:
    if is_array(tree):
        return next(new)
    if isinstance(tree, dict):
        return {k: _replace_leaves(v, is_array, new) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        out = [_replace_leaves(v, is_array, new) for v in tree]
        return type(tree)(out) if isinstance(tree, list) else tuple(out) if type(tree) is tuple else type(tree)(*out)
    return tree


# --------------------------------------------------------------------------- JAX
def jax_module_names(model: Any) -> dict[int, str]:
    """``id(module) -> dotted path`` for every module of an NNX model (``""``: the model).

    The ``layers`` attribute of an ``nnx.Sequential`` is left out of the path
    (``layer1.0.conv1``, as torch names an ``nn.Sequential``'s children).

    >>> from flax import nnx
    >>> m = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    >>> sorted(jax_module_names(m).values())
    ['', '0', 'layers']
    """
    from flax import nnx

    modules = dict(nnx.iter_modules(model))
    names: dict[int, str] = {}
    for path, mod in modules.items():
        parts = []
        for k, part in enumerate(path):
            parent = modules.get(tuple(path[:k]))
            if part == "layers" and isinstance(parent, nnx.Sequential) and k < len(path) - 1:
                continue
            parts.append(str(part))
        names.setdefault(id(mod), ".".join(parts))
    return names


def _jax_tensors(model: Any, names: dict[int, str], which: Any) -> dict[TensorKey, Any]:
    """``(module path, variable name) -> value`` of the variables of type ``which`` each module holds directly."""
    from flax import nnx

    out: dict[TensorKey, Any] = {}
    for _, mod in nnx.iter_modules(model):
        for attr, v in vars(mod).items():
            if isinstance(v, nnx.Variable) and isinstance(v, which) and not isinstance(v, nnx.RngState):
                out.setdefault((names[id(mod)], attr), v[...])
    return out


class _Recorder:
    """Wraps the ``__call__`` of the model's module classes while the model runs (see module docstring)."""

    def __init__(self, names: dict[int, str], probes: Sequence[Any] | None) -> None:
        self.names = names
        self.probes = list(probes) if probes is not None else None
        self.records: list[tuple[str, int, list[Any]]] = []
        self.layout: list[tuple[list[str], list[str]]] = []  # (paths, slots) of each record
        self.calls: dict[str, int] = {}
        self.active: set[int] = set()

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        import jax.numpy as jnp

        def is_array(x: Any) -> bool:
            return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.floating)

        def wrapper(module: Any, *args: Any, **kwargs: Any) -> Any:
            key = id(module)
            if key not in self.names or key in self.active:  # not ours, or a super().__call__ inside a wrapped call
                return original(module, *args, **kwargs)
            self.active.add(key)
            try:
                out = original(module, *args, **kwargs)
            finally:
                self.active.discard(key)
            name = self.names[key]
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
            slots = leaf_slots(out, is_array)
            leaves = [x for _, x in slots if x is not None]
            self.records.append((name, call, leaves))
            self.layout.append(([p for p, x in slots if x is not None], [p for p, _ in slots]))
            if self.probes is None or not leaves:
                return out
            start = sum(len(r[2]) for r in self.records[:-1])
            added = iter([x + p.astype(x.dtype) for x, p in zip(leaves, self.probes[start : start + len(leaves)])])
            return _replace_leaves(out, is_array, added)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        return wrapper

    @contextlib.contextmanager
    def installed(self, model: Any) -> Iterator[None]:
        from flax import nnx

        classes = list(dict.fromkeys(type(m) for _, m in nnx.iter_modules(model)))
        saved = [(cls, cls.__dict__.get("__call__")) for cls in classes]
        try:
            for cls in classes:
                cls.__call__ = self._wrap(cls.__call__)
            yield
        finally:
            for cls, orig in reversed(saved):
                if orig is None:
                    delattr(cls, "__call__")
                else:
                    cls.__call__ = orig


def capture_jax(
    model: Any,
    args: Sequence[Any],
    *,
    cotangent: Sequence[np.ndarray] | Callable[[list[tuple[tuple[int, ...], Any]]], list[np.ndarray]] | None = None,
) -> Capture:
    """Run an NNX model on ``args`` inside ``jax.jit`` and record every module call.

    ``cotangent``: ``None`` (forward only), the model output's cotangent (one array per
    floating output leaf), or a function of the output leaves' ``(shape, dtype)`` returning it.
    The model is not changed (BatchNorm statistics are updated on a copy: see ``Capture.state``).

    >>> import numpy as np
    >>> from flax import nnx
    >>> cap = capture_jax(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), [np.ones((1, 2), np.float32)])
    >>> [(r.name, r.outputs[0].shape) for r in cap.layers], sorted(cap.params)
    ([('', (1, 3))], [('', 'bias'), ('', 'kernel')])
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    jargs = [jnp.asarray(a) for a in args]

    keys: list[CallKey] = []  # filled while tracing (strings cannot leave a traced function)
    layout: list[tuple[list[str], list[str]]] = []
    out_layout: list[list[str]] = [[], []]

    def forward(params: Any, probes: Any, jargs: Any) -> Any:
        m = nnx.merge(graphdef, params, rest, copy=True)
        names = jax_module_names(m)
        rec = _Recorder(names, probes)
        with rec.installed(m):
            out = m(*jargs)
        is_arr = lambda x: hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
        state = _jax_tensors(m, names, nnx.Variable)
        state = {k: v for k, v in state.items() if k not in _param_keys(m, names)}
        keys[:] = [r[:2] for r in rec.records]
        layout[:] = rec.layout
        slots = leaf_slots(out, is_arr)
        out_layout[:] = [[p for p, x in slots if x is not None], [p for p, _ in slots]]
        return [x for _, x in slots if x is not None], ([r[2] for r in rec.records], state)

    # shapes first (abstract evaluation): which calls happen and what each returns
    out_struct, (act_struct, _) = jax.eval_shape(lambda p, a: forward(p, None, a), params, jargs)
    probe_struct = [jax.ShapeDtypeStruct(x.shape, x.dtype) for leaves in act_struct for x in leaves]
    out_shapes = LeafSpecs([(tuple(s.shape), s.dtype) for s in out_struct], *out_layout)
    cot = cotangent(out_shapes) if callable(cotangent) else cotangent
    check_cotangent(cot, out_shapes, "jax")

    @jax.jit
    def run(params: Any, jargs: Any, cot: Any) -> Any:
        probes = [jnp.zeros(s.shape, s.dtype) for s in probe_struct]
        if cot is None:
            out, (acts, state) = forward(params, probes, jargs)
            return out, acts, state, None, None
        out, vjp, (acts, state) = jax.vjp(lambda p, q: forward(p, q, jargs), params, probes, has_aux=True)
        pgrads, probe_grads = vjp([jnp.asarray(c, s[1]) for c, s in zip(cot, out_shapes)])
        return out, acts, state, pgrads, probe_grads

    out, acts, state, pgrads, probe_grads = jax.device_get(run(params, jargs, None if cot is None else list(cot)))
    ref = nnx.merge(graphdef, params, rest)
    names = jax_module_names(ref)
    layers = [Record(n, c, [np.asarray(x) for x in leaves], *lay) for (n, c), leaves, lay in zip(keys, acts, layout)]
    cap = Capture(
        framework="jax",
        inputs=[np.asarray(a) for a in jargs],
        output=[np.asarray(o) for o in out],
        layers=layers,
        params={k: np.asarray(v) for k, v in _jax_tensors(ref, names, nnx.Variable).items()},
        state={k: np.asarray(v) for k, v in state.items()},
        cotangent=None if cot is None else [np.asarray(c) for c in cot],
        meta={"modules": module_kinds(ref)},
    )
    if cot is not None:
        flat = iter(probe_grads)
        for r in layers:
            cap.grads[r.key] = [np.asarray(next(flat)) for _ in r.outputs]
        gmodel = nnx.merge(graphdef, pgrads, rest)
        cap.param_grads = {k: np.asarray(v) for k, v in _jax_tensors(gmodel, jax_module_names(gmodel), nnx.Param).items()}
    return cap


def check_cotangent(cot: Sequence[Any] | None, out_shapes: Sequence[tuple[tuple[int, ...], Any]], framework: str) -> None:
    """``ValueError`` naming the shapes when a given cotangent does not fit the model's output (a
    golden file, or the other side, of another batch size or model), before the backward pass
    fails inside the framework with an internal error.

    >>> check_cotangent([np.ones((4, 10))], [((2, 10), np.float32)], "jax")
    Traceback (most recent call last):
    ...
    ValueError: the jax model's output has shapes [(2, 10)], the cotangent [(4, 10)]: inputs of another batch size, or another model?
    """
    if cot is None:
        return
    want = [tuple(s) for s, _ in out_shapes]
    got = [tuple(np.shape(c)) for c in cot]
    if want != got:
        raise ValueError(f"the {framework} model's output has shapes {want}, the cotangent {got}: "
                         "inputs of another batch size, or another model?")


def jax_output_specs(model: Any, args: Sequence[Any]) -> LeafSpecs:
    """The ``(shape, dtype)`` of an NNX model's floating output leaves, with their paths and
    slots (:class:`Record`), from an abstract evaluation (nothing is computed; the model is
    not changed).

    >>> import numpy as np
    >>> from flax import nnx
    >>> s = jax_output_specs(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), [np.ones((1, 2), np.float32)])
    >>> list(s), s.paths
    ([((1, 3), dtype('float32'))], [''])
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)
    is_arr = lambda x: hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
    layout: list[list[str]] = [[], []]

    def run(state: Any, args: Any) -> Any:
        out = nnx.merge(graphdef, state, copy=True)(*args)
        slots = leaf_slots(out, is_arr)
        layout[:] = [[p for p, x in slots if x is not None], [p for p, _ in slots]]
        return [x for _, x in slots if x is not None]

    struct = jax.eval_shape(run, state, [jnp.asarray(a) for a in args])
    return LeafSpecs([(tuple(x.shape), x.dtype) for x in struct], *layout)


def module_kinds(model: Any) -> dict[str, dict[str, Any]]:
    """``{path: rule description}`` of every module of an NNX model (:func:`jaxloss.parity.models.rules.describe`).

    >>> from flax import nnx
    >>> module_kinds(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    {'': {'kind': 'linear'}}
    """
    from flax import nnx

    from jaxloss.parity.models.rules import describe

    names = jax_module_names(model)
    return {names[id(m)]: describe(m) for _, m in nnx.iter_modules(model)}


def _param_keys(model: Any, names: dict[int, str]) -> set[TensorKey]:
    from flax import nnx

    return set(_jax_tensors(model, names, nnx.Param))


# --------------------------------------------------------------------------- torch
def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def capture_torch(
    model: Any,
    args: Sequence[Any],
    *,
    cotangent: Sequence[np.ndarray] | Callable[[list[tuple[tuple[int, ...], Any]]], list[np.ndarray]] | None = None,
) -> Capture:
    """Run a ``torch.nn.Module`` on ``args`` (NumPy arrays or tensors) and record every module call.

    ``cotangent`` as in :func:`capture_jax`. Gradients go through ``torch.autograd.grad``
    (nothing accumulates in ``.grad``); buffers (BatchNorm statistics) are restored afterwards.

    >>> import numpy as np, torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(inplace=True))
    >>> cap = capture_torch(m, [np.ones((1, 2), np.float32)], cotangent=[np.ones((1, 3), np.float32)])
    >>> [r.name for r in cap.layers], cap.grads[("0", 0)][0].shape
    (['0', '1', ''], (1, 3))
    """
    import torch

    device = next(iter(model.parameters()), torch.zeros(())).device
    targs = [torch.as_tensor(np.asarray(a)).to(device) if not isinstance(a, torch.Tensor) else a for a in args]
    is_t = lambda x: isinstance(x, torch.Tensor) and x.is_floating_point()
    names = {id(m): n for n, m in model.named_modules()}
    want_grad = cotangent is not None
    records: list[Record] = []
    probes: list[Any] = []
    calls: dict[str, int] = {}

    def hook(mod: Any, _inp: Any, out: Any) -> Any:
        name = names[id(mod)]
        call = calls.get(name, 0)
        calls[name] = call + 1
        slots = leaf_slots(out, is_t)
        leaves = [x for _, x in slots if x is not None]
        records.append(Record(name, call, [_np(x) for x in leaves], [p for p, x in slots if x is not None], [p for p, _ in slots]))
        if not want_grad or not leaves:
            return None
        new = []
        for x in leaves:
            p = torch.zeros_like(x, requires_grad=True)
            probes.append(p)
            new.append(x + p)
        return _replace_leaves(out, is_t, iter(new))

    params = {_split(n): _np(p) for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    saved = {n: b.detach().clone() for n, b in buffers.items()}
    params.update({_split(n): _np(b) for n, b in buffers.items()})
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.set_grad_enabled(want_grad):
            out = model(*targs)
        out_slots = leaf_slots(out, is_t)
        outs = [x for _, x in out_slots if x is not None]
        cap = Capture(
            framework="torch",
            inputs=[_np(a) for a in targs],
            output=[_np(o) for o in outs],
            layers=records,
            params=params,
            state={_split(n): _np(b) for n, b in buffers.items()},
            meta={"module_names": list(names.values())},
        )
        if want_grad:
            shapes = LeafSpecs([(tuple(o.shape), _np(o).dtype) for o in outs], [p for p, x in out_slots if x is not None],
                               [p for p, _ in out_slots])
            cot = list(cotangent(shapes) if callable(cotangent) else cotangent)  # type: ignore[arg-type,operator]
            check_cotangent(cot, shapes, "torch")
            named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            wrt = probes + [p for _, p in named]
            grads = torch.autograd.grad(
                outs, wrt, [torch.as_tensor(np.asarray(c)).to(o) for c, o in zip(cot, outs)], allow_unused=True
            )
            grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]
            flat = iter(grads[: len(probes)])
            for r in records:
                cap.grads[r.key] = [_np(next(flat)) for _ in r.outputs]
            cap.param_grads = {_split(n): _np(g) for (n, _), g in zip(named, grads[len(probes) :])}
            cap.cotangent = [np.asarray(c) for c in cot]
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, b in buffers.items():
                b.copy_(saved[n])
    return cap


def _split(name: str) -> TensorKey:
    """``'layer1.0.bn1.running_mean'`` -> ``('layer1.0.bn1', 'running_mean')``."""
    module, _, tensor = name.rpartition(".")
    return (module, tensor)
