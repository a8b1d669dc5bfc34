"""Where a port diverges: a Flax NNX model against its PyTorch original, layer by layer.

::

    from jaxloss import parity
    report = parity.compare_models(jax_model, torch_model, x_nhwc, x_nchw)
    report.passed            # every compared layer within tolerance
    report.first_divergence  # None, or the first LayerDiff out of tolerance
    print(report)            # verdict, then one line per compared tensor

Every submodule call's output is captured on both sides (torch forward hooks; on the JAX
side the modules' ``__call__`` is wrapped while the model is traced by ``jax.jit``: see
:mod:`jaxloss.parity.models.capture`). Layers pair up when the NNX attribute path equals the torch
module name (``"layer1.0.bn1"``), else through ``mapping={jax_path: torch_name}``; layouts
(NHWC/NCHW activations, HWIO/OIHW and (in, out)/(out, in) weights) are aligned when the shapes
say so (:mod:`jaxloss.parity.models.layout` has the rule for ambiguous shapes). With ``grads=True`` a
vector-Jacobian product with the same random cotangent runs on both sides: the gradient
reaching every layer and every parameter's gradient are compared too, so a backward-only bug is
named at its layer with kind ``"grad"``. The parameters and buffers are compared before the run
(``report.params``) and the buffers a layer updates (BatchNorm's running statistics) after it.

Per layer (:class:`LayerDiff`): max / mean / p99 absolute and relative error, ULPs, the
fraction of the tolerance used, the worst element, the first NaN or infinity on each side, and
with ``reference`` (a float64 copy of the torch model, or ``True`` to make one) which side is
closer to the float64 truth and whether torch's own float32 run is within tolerance of it.

Golden files (:mod:`jaxloss.parity.models.golden`): ``save_golden(path, model, args)`` stores one
side's inputs, outputs, intermediates, gradients and parameters in an ``.npz`` file with JSON
metadata; ``compare_golden(model, args, path)`` compares a live model (either framework)
against it later, e.g. JAX on a GPU against torch on a CPU, or today's code against last
month's.

The lockstep twin. At a training step where the Flax and torch models disagree::

    diffs = parity.compare_params(flax_model, torch_model,           # by name, layouts aligned
                                  reference=torch_model_f64)         # the float64 torch run's weights
    first_param = next((d for d in diffs if not d.passed), None)     # first parameter out of tolerance
    first_param.torch_ref_passed  # False: torch's float32 weights have left its float64 run too
    report = parity.compare_models(flax_model, torch_model, x_nhwc, x_nchw,
                                   reference=torch_model_f64)        # float64 copy at the same step
    report.first_divergence                                          # first layer out of tolerance
    report.first_divergence.torch_ref_passed  # False: torch's float32 run leaves float64 there too

Command line: ``python -m jaxloss.parity.models --model seed-cnn|resnet18`` (see :mod:`jaxloss.parity.models.__main__`).

>>> import numpy as np, torch
>>> from flax import nnx
>>> from jaxloss import parity
>>> jm = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
>>> tm = torch.nn.Linear(3, 2)
>>> with torch.no_grad():
...     _ = tm.weight.copy_(torch.tensor(np.asarray(jm.kernel[...]).T)), tm.bias.zero_()
>>> x = np.ones((4, 3), np.float32)
>>> r = parity.compare_models(jm, tm, x, x)
>>> r.passed, [(d.kind, d.tensor) for d in r.layers]
(True, [('forward', 'output'), ('grad', 'output'), ('grad', 'weight'), ('grad', 'bias')])
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxloss.parity.models.capture import (Capture, LeafSpecs, Record, capture_jax, capture_torch, jax_module_names, jax_output_specs,
                                           module_kinds, random_cotangent)
from jaxloss.parity.models.diff import LayerDiff, ModelReport, Tol, check_tols, compare_captures, pair_leaves
from jaxloss.parity.models.float64 import exact_attention, to_float64
from jaxloss.parity.models.golden import capture, is_torch_model, load_golden, save_golden
from jaxloss.parity.models.layout import align, channels_last, channels_last_perm, check_same_inputs, to_jax_layout

__all__ = ["LayerDiff", "ModelReport", "compare_golden", "compare_models", "compare_params", "exact_attention", "load_golden",
           "save_golden", "to_float64"]


def _as_args(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _np_args(args: tuple[Any, ...]) -> list[np.ndarray]:
    out = []
    for a in args:
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        out.append(np.asarray(a))
    return out


def _check_models(jax_model: Any, torch_model: Any, reference: Any = None) -> None:
    """``TypeError`` naming the argument that is not the model it must be."""
    from flax import nnx

    if not isinstance(jax_model, nnx.Module):
        raise TypeError(f"jax_model must be a flax.nnx.Module, got {type(jax_model).__name__}")
    if not is_torch_model(torch_model):
        raise TypeError(f"torch_model must be a torch.nn.Module, got {type(torch_model).__name__}")
    if not (reference is None or isinstance(reference, bool) or is_torch_model(reference)):
        raise TypeError(f"reference must be None, True, False or a float64 torch.nn.Module, got {type(reference).__name__}")


def _meta(dtype: str, reference: bool) -> dict[str, Any]:
    import jaxloss.parity.precisions  # noqa: F401
    from jaxloss import parity

    return {"dtype": dtype, "reference": reference, "settings": parity.precisions.settings()}


def compare_models(
    jax_model: Any,
    torch_model: Any,
    jax_args: Any,
    torch_args: Any,
    *,
    mapping: Mapping[str, str] | None = None,
    grads: bool = True,
    rtol: Tol = None,
    atol: Tol = None,
    reference: Any = None,
    seed: int = 0,
    fail_fast: bool = False,
    outputs: Mapping[str, Sequence[tuple[int | str, int | str]]] | None = None,
) -> ModelReport:
    """Run both models on their inputs and compare every layer (see the module docstring).

    Args:
        jax_model: a Flax NNX module; ``torch_model`` a ``torch.nn.Module``. Neither is changed
            (BatchNorm statistics are updated on copies and compared).
        jax_args, torch_args: the inputs each side takes (one array or a tuple), each in its
            framework's own layout.
        mapping: ``{jax_path: torch_name}`` for layers whose names differ, and / or
            ``{"jax_path.variable": "torch_name.tensor[k]"}`` for single tensors
            (:mod:`jaxloss.parity.weights`: the same pairing as ``load_torch_weights``).
            Parameters and their gradients pair by the layer rules of
            :mod:`jaxloss.parity.models.rules` (Conv with groups, ConvTranspose, attention's
            packed ``in_proj_weight``, LSTM / GRU gates...), each compared in torch's layout.
        outputs: ``{jax_path: [(jax_leaf, torch_leaf), ...]}``: which leaves of a layer's tuple /
            dict output to compare (``""``: the model's), each a position (``int``, ``None`` leaves
            counted) or a path (``"[1][0]"``, ``"['logits']"``). Default: by key for dicts, else by
            position; leaves one side lacks, and ``None`` leaves, are listed in
            ``report.not_compared`` (torch attention's weights, an LSTM's ``(h, c)``); the
            model-level cotangent is 0 on them.
        grads: also compare the gradient reaching each layer and every parameter gradient
            (one vector-Jacobian product, the same standard normal cotangent on both sides,
            drawn from ``seed``).
        rtol, atol: a number for every layer, or ``{jax_path: number}`` for some; default: the
            dtype's tolerance from :mod:`jaxloss.parity.tolerances`.
        reference: ``None``, a float64 copy of ``torch_model`` (e.g. at the same training
            step), or ``True`` to make one: fills each layer's ``closer`` / ``torch_ref_passed``.
        fail_fast: stop at the first layer out of tolerance (no backward pass when the forward
            already differs).

    Returns:
        A :class:`ModelReport`; a mismatch is never raised, it is reported (nothing compared:
        failed). Raises ``ValueError`` for a ``mapping`` or a per-layer tolerance naming a layer
        the models do not have, a tolerance that is not a finite number >= 0, or inputs of
        different shapes on the two sides (another batch size); ``TypeError`` for a model that
        is not one.

    >>> import numpy as np, torch
    >>> from flax import nnx
    >>> from jaxloss.parity.models import compare_models
    >>> jm, tm = nnx.Linear(2, 2, rngs=nnx.Rngs(0)), torch.nn.Linear(2, 2)
    >>> r = compare_models(jm, tm, np.ones((1, 2), np.float32), np.ones((1, 2), np.float32), grads=False)
    >>> r.passed, r.first_divergence.jax_path, r.first_divergence.kind
    (False, '', 'forward')
    """
    _check_models(jax_model, torch_model, reference)
    check_tols(rtol, atol)
    j_in, t_in = _np_args(_as_args(jax_args)), _np_args(_as_args(torch_args))
    check_same_inputs(j_in, t_in, "jax_args and torch_args")
    leaf_pairs: list[tuple[int, int]] = []
    choice = (outputs or {}).get("")

    def torch_cot(specs: LeafSpecs) -> list[np.ndarray]:
        """Standard normal on the torch output leaves that pair with a JAX one, 0 on the others."""
        j_specs = jax_output_specs(jax_model, j_in)
        leaf_pairs[:] = pair_leaves(Record("", 0, [np.zeros(0)] * len(j_specs), j_specs.paths, j_specs.slots),
                                    Record("", 0, [np.zeros(0)] * len(specs), specs.paths, specs.slots), choice)[0]
        cot = random_cotangent(specs, seed)
        keep = {tk for _, tk in leaf_pairs}
        return [c if k in keep else np.zeros_like(c) for k, c in enumerate(cot)]

    tc = capture_torch(torch_model, t_in, cotangent=torch_cot if grads else None)
    jc = capture_jax(jax_model, j_in, cotangent=_jax_cotangent(tc, channels_last(j_in, t_in), leaf_pairs) if grads else None)
    ref = _reference_capture(torch_model, reference, torch_args, tc)
    report = compare_captures(jc, tc, mapping=mapping, rtol=rtol, atol=atol, ref=ref, fail_fast=fail_fast, outputs=outputs)
    report.meta = _meta(tc.dtype, ref is not None)
    return report


def _jax_cotangent(tc: Capture, cl: bool, leaf_pairs: Sequence[tuple[int, int]] | None = None) -> Any:
    """The torch side's cotangent, in the JAX output's layout and dtype (``leaf_pairs``: which
    torch leaf each JAX output leaf pairs with; an unpaired one gets 0)."""

    def make(shapes: list[tuple[tuple[int, ...], Any]]) -> list[np.ndarray]:
        cot = tc.cotangent or []
        partner = dict(leaf_pairs) if leaf_pairs is not None else {k: k for k in range(len(cot))}
        out = [to_jax_layout(cot[partner[k]], s, cl).astype(d) if k in partner else np.zeros(s, d) for k, (s, d) in enumerate(shapes)]
        # a leaf paired with one of another shape: 0 here (the comparison reports the mismatch)
        return [c if c.shape == tuple(s) else np.zeros(s, d) for c, (s, d) in zip(out, shapes)]

    return make


def _reference_capture(torch_model: Any, reference: Any, torch_args: Any, tc: Capture) -> Capture | None:
    """The float64 run of the torch model (same inputs and cotangent, cast to float64)."""
    if reference is None or reference is False:
        return None
    ref_model = copy.deepcopy(torch_model).double() if reference is True else reference
    args = [a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a for a in _np_args(_as_args(torch_args))]
    cot = [c.astype(np.float64) for c in tc.cotangent] if tc.cotangent is not None else None
    return capture_torch(ref_model, args, cotangent=cot)


def compare_params(jax_model: Any, torch_model: Any, *, mapping: Mapping[str, str] | None = None,
                   rtol: Tol = None, atol: Tol = None, reference: Any = None) -> list[LayerDiff]:
    """Compare the parameters and buffers of the two models by name, layouts aligned (kind ``"param"``).

    Modules pair as in :func:`compare_models` (equal names, else ``mapping``); a variable pairs
    with a torch tensor by :data:`jaxloss.parity.models.layout.TENSOR_NAMES` (``kernel`` -> ``weight``...).
    In module order of ``jax_model``; no model is run. ``reference``: a float64 copy of the
    torch model at the same training step (each diff then says whether torch's float32
    weights have left it too: ``torch_ref_passed``).

    >>> import numpy as np, torch
    >>> from flax import nnx
    >>> from jaxloss.parity.models import compare_params
    >>> jm, tm = nnx.Linear(3, 2, rngs=nnx.Rngs(0)), torch.nn.Linear(3, 2)
    >>> [(d.tensor, d.passed) for d in compare_params(jm, tm)]
    [('weight', False), ('bias', False)]
    """
    from flax import nnx

    from jaxloss.parity.models.capture import _jax_tensors, _split

    def torch_side(model: Any) -> Capture:
        named = list(model.named_parameters()) + list(model.named_buffers())
        return Capture("torch", [], [], [], {_split(n): p.detach().cpu().numpy() for n, p in named}, {})

    _check_models(jax_model, torch_model, reference)
    check_tols(rtol, atol)
    names = jax_module_names(jax_model)
    jc = Capture("jax", [], [], [], {k: np.asarray(v) for k, v in _jax_tensors(jax_model, names, nnx.Variable).items()}, {},
                 meta={"modules": module_kinds(jax_model)})
    ref = torch_side(reference) if reference is not None and reference is not False else None
    report = compare_captures(jc, torch_side(torch_model), mapping=mapping, rtol=rtol, atol=atol, ref=ref)
    if not report.params:  # an empty list would read as "all passed"
        return [LayerDiff.failed("", "", "param", "nothing compared: no parameter or buffer pairs up by name (pass mapping=)")]
    return report.params


def compare_golden(model: Any, args: Any, path: str, *, mapping: Mapping[str, str] | None = None, rtol: Tol = None,
                   atol: Tol = None, fail_fast: bool = False) -> ModelReport:
    """Compare a live model (JAX or torch) against a golden file saved by :func:`save_golden`.

    ``args``: the model's inputs, or ``None`` for the golden file's own (converted from
    channels-first to channels-last, or back, when the golden file comes from the other
    framework). The golden cotangent is used, so gradients compare too. Across frameworks
    the report reads JAX against torch, whichever side is the file; within one framework, the
    live run against the file.

    Raises:
        ValueError: the file is not a readable golden file (:func:`load_golden`), ``args`` or the
            file's cotangent do not fit (a golden file of another batch size or model), or a
            tolerance is invalid; ``TypeError``: ``model`` is not a model.

    >>> import os, tempfile, numpy as np
    >>> from flax import nnx
    >>> from jaxloss import parity
    >>> m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    >>> path = os.path.join(tempfile.mkdtemp(), "g.npz")
    >>> _ = parity.save_golden(path, m, np.ones((3, 2), np.float32))
    >>> parity.compare_golden(m, None, path).passed
    True
    """
    from flax import nnx

    if not (is_torch_model(model) or isinstance(model, nnx.Module)):
        raise TypeError(f"model must be a torch.nn.Module or a flax.nnx.Module, got {type(model).__name__}")
    check_tols(rtol, atol)
    g = load_golden(path)
    live_fw = "torch" if is_torch_model(model) else "jax"
    cross = live_fw != g.framework
    if args is None:
        args = [_to_framework(a, live_fw) if cross else a for a in g.inputs]
    live_in = _np_args(_as_args(args))
    j_in, t_in = (live_in, g.inputs) if live_fw == "jax" else (g.inputs, live_in)
    if cross:
        check_same_inputs(j_in, t_in, f"args and the golden file {path}")
    elif [a.shape for a in live_in] != [a.shape for a in g.inputs]:
        raise ValueError(f"args and the golden file {path} do not hold the same inputs: shapes {[a.shape for a in live_in]} "
                         f"and {[a.shape for a in g.inputs]} (another batch size?)")
    cl = channels_last(j_in, t_in) if cross else False
    cot = None
    if g.cotangent is not None:
        def cot(shapes: list[tuple[tuple[int, ...], Any]]) -> list[np.ndarray]:
            if not cross:
                return [c.astype(d) for c, (_, d) in zip(g.cotangent or [], shapes)]
            if live_fw == "jax":
                return [to_jax_layout(c, s, cl).astype(d) for c, (s, d) in zip(g.cotangent or [], shapes)]
            return [align(c, s, cl).astype(d) for c, (s, d) in zip(g.cotangent or [], shapes)]
    live = capture(model, live_in, cotangent=cot, grads=cot is not None)
    jc, tc = (live, g) if live_fw == "jax" or not cross else (g, live)
    report = compare_captures(jc, tc, mapping=mapping, rtol=rtol, atol=atol, fail_fast=fail_fast)
    report.meta = {**_meta(tc.dtype, False), "golden": {k: g.meta.get(k) for k in ("framework", "versions", "dtype", "settings")}}
    return report


def _to_framework(a: np.ndarray, framework: str) -> np.ndarray:
    """A golden input for the other framework: channels-first <-> channels-last (rank >= 3 floats)."""
    if a.ndim < 3 or not np.issubdtype(a.dtype, np.floating):
        return a
    perm = channels_last_perm(a.ndim)
    return a.transpose(perm) if framework == "jax" else a.transpose(np.argsort(perm))
