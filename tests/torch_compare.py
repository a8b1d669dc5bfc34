"""Compare a jaxloss function with its torch twin: value and gradients.

``check(jax_fn, torch_fn, arrays, kwargs, grad=("input",), dtype="float32")``
runs both on the same NumPy data, compares the value and the gradient (of the
sum of the output, i.e. a cotangent of ones) of every argument named in ``grad``,
and fails with the worst error on a mismatch. Every array is judged by
:func:`jaxloss.parity.judge.compare_arrays`, the rule of the whole parity suite (tolerances from
:mod:`jaxloss.parity.tolerances`; NaN agrees with NaN, infinities of the same sign agree).
The JAX side is one cached compiled program per function, static options and shapes where it can be
(see ``_value_and_grads``): XLA's compiler is most of the time of the loss tests.
``check_each(jax_fn, torch_fn, arrays, [kwargs, ...])`` checks a grid of options with one
program for all of them, every case, and fails once listing each failing case.
``cotangent="ramp"`` weighs the output's elements ``0.5 .. 1.5`` instead of ones, so the
gradient of each sample of a ``reduction='none'`` output is checked, not only their sum.
Second order, a grid in one program each: ``check_hvp_each`` (``H v`` by forward-over-reverse;
``check_hvp`` is its one-case form) and ``check_second_order_each`` (rows ``v^T H`` of chosen
arguments, reverse-over-reverse). ``jax_value_and_grads_each``: the JAX side of a grid alone, for a
test with its own comparison (float16 / bfloat16 against torch in two dtypes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jaxloss.parity.convert import np64
from jaxloss.parity.judge import compare_arrays

TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def to_jax(x: Any, dtype: str) -> Any:
    if isinstance(x, np.ndarray):
        if np.issubdtype(x.dtype, np.floating):
            return jnp.asarray(x, dtype=dtype)
        return jnp.asarray(x)
    return x


def to_torch(x: Any, dtype: str, requires_grad: bool = False) -> Any:
    if isinstance(x, np.ndarray):
        if np.issubdtype(x.dtype, np.floating):
            t = torch.tensor(x, dtype=TORCH_DTYPES[dtype])
            return t.requires_grad_(requires_grad)
        return torch.tensor(x)
    return x


def assert_close(actual: Any, expected: Any, dtype: str, what: str) -> None:
    """``actual`` (JAX) agrees with ``expected`` (torch) within ``dtype``'s tolerance, element by
    element (both are compared as float64: the caller chose the tolerance)."""
    a, e = np64(actual), np64(expected)
    if a.dtype.kind in "iub" and e.dtype.kind in "iub":  # int32 in JAX, int64 in torch: the values must agree
        a, e = a.astype(np.int64), e.astype(np.int64)
    c = compare_arrays(what, a, e, dtype)
    if not c.passed:
        raise AssertionError(f"{what} ({dtype}): {c.line()}")


COTANGENTS = ("ones", "ramp")


def ramp(shape: tuple[int, ...]) -> np.ndarray | float:
    """The ``"ramp"`` cotangent of an output of ``shape``: ``0.5 .. 1.5`` evenly over its elements
    in C order (``1.0`` for a scalar), distinct per element so that a gradient routed to the wrong
    sample is caught, which the all-ones cotangent of a sum cannot see.

    >>> ramp((3,)).tolist(), ramp(())
    ([0.5, 1.0, 1.5], 1.0)
    """
    size = int(np.prod(shape))
    return np.linspace(0.5, 1.5, size).reshape(shape) if shape else 1.0


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _static_key(value: Any) -> Any:
    """A hashable stand-in for a non-array argument, part of its compiled program's cache key
    (``TypeError`` for an unhashable one)."""
    hash(value)
    return type(value), value, repr(value)  # repr: 0.0 and -0.0 are equal, and so are 1 and True


_PROGRAMS: dict[Any, Callable[..., Any]] = {}


def _traced_numbers(jax_fn: Callable[..., Any], static: Mapping[str, Any]) -> dict[str, Any]:
    """The Python numbers of ``static`` that ``jax_fn``, a registered loss, traces anyway, as
    the 0-d arrays its plain call would trace: ``float(v)``, weakly typed (``jnp.asarray`` of a
    Python float is weak, as a Python float passed to ``jax.jit`` is; x64 is on, so float64).

    Left static (part of the program's key, as in a plain call): an option that ``Number.off``
    turns off (the loss then compiles without that term) and a value outside its range (the
    plain call raises torch's error before tracing; a traced one would only be poisoned)."""
    spec = getattr(jax_fn, "spec", None)
    if spec is None:
        return {}
    out = {}
    for name, value in static.items():
        option = spec.numbers.get(name)
        if option is None or isinstance(value, (bool, np.bool_)):
            continue
        if not isinstance(value, (int, float, np.integer, np.floating)):
            continue
        value = float(value)
        if option.off is not None and option.off(value):
            continue
        if option.valid is not None and not option.valid(value):
            continue
        out[name] = jnp.asarray(value)
    return out


def _untraced_float(jax_fn: Callable[..., Any], static: Mapping[str, Any]) -> bool:
    """A Python float in ``static`` that ``jax_fn`` may trace: any, for an unregistered function;
    none for a registered loss (its traced options are in :func:`_traced_numbers`' result; a
    float left over is a static option of its plain call, ``p`` of a norm, or out of range)."""
    return getattr(jax_fn, "spec", None) is None and any(isinstance(v, float) for v in static.values())


def _value_and_grads(
    jax_fn: Callable[..., Any], cases: list[tuple[Callable[..., Any], Mapping[str, Any]]], grad: list[str], dtype: str,
    cotangent: str = "ones",
) -> list[tuple[Any, tuple[Any, ...]]] | None:
    """For each ``(call, values)`` of ``cases``: ``jax_fn``'s value and the gradients of
    ``sum(value * cotangent)`` (see :func:`ramp`) with respect to ``grad``, all from ONE compiled program (a
    ``jax.value_and_grad(..., has_aux=True)`` per case inside one ``jax.jit``), or ``None`` where
    :func:`check` does better with eager ``jax.grad`` (below).

    A registered loss is a ``jax.jit``: its plain call compiles one program, and eager
    ``jax.grad`` of it two more (forward with residuals, backward). Here the plain calls are
    traced inside one program instead, their argument checks and conversions included: XLA's
    CPU compiler is most of a loss test's time, and much of a compilation is paid once per
    program, whatever its size (nine small cases compile in about a third of the time in one
    program as in nine). Array arguments are traced, and so are the numeric options a
    registered loss traces in its plain call (``delta=0.5``: see :func:`_traced_numbers`), so
    the values of a grid share one program; every other value (a string, ``None``, ``p`` of a
    norm, a boolean) reaches the loss as in a plain call and is part of the program's cache
    key, so a test with the same options and shapes reuses it. A Python float given to an
    unregistered function (which may trace it) would compile one program per value: ``None``
    for such a call, and the eager path, whose three programs a jit inside shares between values.
    """
    parts, key_parts = [], []
    for call, values in cases:
        numbers = _traced_numbers(jax_fn, {n: v for n, v in values.items() if not _is_array(v)})
        traced = [n for n, v in values.items() if _is_array(v)]
        static = {n: v for n, v in values.items() if n not in traced and n not in numbers}
        if _untraced_float(jax_fn, static):
            return None
        others = [n for n in traced if n not in grad]
        parts.append((call, static, others, list(numbers)))
        try:
            key_parts.append((call.layout, tuple(traced), tuple(numbers),  # type: ignore[attr-defined]
                              tuple((n, _static_key(v)) for n, v in static.items())))
        except TypeError:  # an unhashable option: compiled for this call only
            key_parts = None
            break
    key = (jax_fn, tuple(grad), dtype, cotangent, tuple(key_parts)) if key_parts is not None else None
    program = _PROGRAMS.get(key) if key is not None else None
    if program is None:
        acc = jnp.float64 if dtype == "float64" else jnp.float32

        def one(part: Any, gvals: tuple[Any, ...], ovals: tuple[Any, ...], nvals: tuple[Any, ...]) -> Any:
            call, static, others, number_names = part

            def scalar(gvals: tuple[Any, ...]) -> Any:
                out = call(jax_fn, {**static, **dict(zip(others, ovals)), **dict(zip(number_names, nvals)),
                                    **dict(zip(grad, gvals))})
                weights = ramp(out.shape) if cotangent == "ramp" else 1.0
                return jnp.sum(out.astype(acc) * jnp.asarray(weights, acc)), out

            (_, out), grads = jax.value_and_grad(scalar, has_aux=True)(gvals)
            return out, grads

        @jax.jit
        def program(args: tuple[Any, ...]) -> Any:
            return [one(part, *a) for part, a in zip(parts, args)]

        program.parts = parts  # type: ignore[attr-defined]
        if key is not None:
            _PROGRAMS[key] = program
    args = []
    for (_, values), (_, _, others, number_names) in zip(cases, program.parts):
        numbers = _traced_numbers(jax_fn, {n: values[n] for n in number_names})
        args.append((tuple(values[n] for n in grad), tuple(values[n] for n in others),
                     tuple(numbers[n] for n in number_names)))
    return program(tuple(args))


def jax_value_and_grads(
    jax_fn: Callable[..., Any], values: Mapping[str, Any], grad: Iterable[str], dtype: str
) -> tuple[Any, dict[str, Any]]:
    """``jax_fn(**values)`` and the gradients of its sum (accumulated in float64 for float64,
    else float32) with respect to ``grad``, by name: the JAX side of :func:`check` alone, from
    the same cached program (for a test with its own comparison, e.g. against torch in two dtypes)."""
    return jax_value_and_grads_each(jax_fn, [values], grad, dtype)[0]


def jax_value_and_grads_each(
    jax_fn: Callable[..., Any], values: Iterable[Mapping[str, Any]], grad: Iterable[str], dtype: str
) -> list[tuple[Any, dict[str, Any]]]:
    """:func:`jax_value_and_grads` of each mapping in ``values``, all from ONE compiled program
    (see :func:`_value_and_grads`): a test with its own comparison loops over a grid of options
    (``reduction``...) at the cost of about one compilation."""
    grad, values = list(grad), [dict(v) for v in values]
    both = _value_and_grads(jax_fn, [(_caller(vals, {}, ()), vals) for vals in values], grad, dtype)
    if both is None:  # an unregistered function given a Python float: eager
        acc = jnp.float64 if dtype == "float64" else jnp.float32
        both = []
        for vals in values:
            grads = jax.grad(lambda g, vals=vals: jnp.sum(jax_fn(**{**vals, **dict(zip(grad, g))}).astype(acc)))(
                tuple(vals[n] for n in grad))
            both.append((jax_fn(**vals), grads))
    return [(out, dict(zip(grad, grads))) for out, grads in both]


def _case(
    arrays: Mapping[str, Any], kwargs: Mapping[str, Any], grad: list[str], dtype: str,
    positional: Iterable[str] | None,
) -> tuple[Callable[..., Any], dict[str, Any], dict[str, Any]]:
    """One call of :func:`check`: how to call a function (``call(fn, values)``), and the values
    on the JAX side (arrays cast, ``kwargs`` added) and on the torch side (``grad`` requiring grad)."""
    kwargs = dict(kwargs)
    call = _caller(arrays, kwargs, positional)
    j_vals = {n: to_jax(arrays[n], dtype) for n in arrays}
    t_vals = {n: to_torch(arrays[n], dtype, requires_grad=n in grad) for n in arrays}
    return call, {**j_vals, **kwargs}, t_vals


def _caller(arrays: Mapping[str, Any], kwargs: Mapping[str, Any],
            positional: Iterable[str] | None) -> Callable[..., Any]:
    """``call(fn, values)``: ``fn`` called with the names of ``arrays`` positionally in order (or
    only those in ``positional``, the rest by keyword) and ``kwargs`` as keywords, each looked up
    in ``values`` first (where a grid program passes its traced options). ``call.layout`` is its
    hashable description, part of a compiled program's cache key."""
    names = list(arrays)
    pos = list(positional) if positional is not None else names

    def call(fn: Callable[..., Any], vals: Mapping[str, Any]) -> Any:
        return fn(*[vals[n] for n in pos], **{n: vals[n] for n in names if n not in pos},
                  **{n: vals.get(n, v) for n, v in kwargs.items()})

    call.layout = (tuple(pos), tuple(names), tuple(kwargs))  # type: ignore[attr-defined]
    return call


def _grid(who: str, arrays: Mapping[str, Any] | Iterable[Mapping[str, Any]],
          options: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    """A grid's options and each case's arrays (the same ``arrays`` for every case, or one
    mapping per case), refused when the two lengths differ or there is nothing to check."""
    options = [dict(o) for o in options]
    per_case = [arrays] * len(options) if isinstance(arrays, Mapping) else list(arrays)
    if len(per_case) != len(options):
        raise ValueError(f"{who}: {len(per_case)} sets of arrays for {len(options)} options")
    if not options:
        raise ValueError(f"{who}: no options to check")
    return options, per_case


def _raise_failures(failures: Mapping[int, list[str]], options: list[dict[str, Any]],
                    per_case: list[Mapping[str, Any]]) -> None:
    """One ``AssertionError`` listing each failing case of a grid (``failures``: case index ->
    its disagreements) with its index, options and array shapes; nothing when none failed."""
    if not failures:
        return
    lines = []
    for i, fails in sorted(failures.items()):
        shapes = {n: np.shape(v) for n, v in per_case[i].items() if isinstance(v, np.ndarray)}
        lines.append(f"case {i} {options[i]} {shapes}: " + "; ".join(fails))
    head = "" if len(options) == 1 else f"{len(failures)} of {len(options)} cases fail:\n"
    raise AssertionError(head + "\n".join(lines))


def _torch_second_order(t_vals: Mapping[str, Any], out: Any, first: list[str], v: Mapping[str, Any],
                        second: list[str], dtype: str) -> list[Any]:
    """torch's double backward: ``d/d(second) sum_n <d sum(out) / d first_n, v_n>`` (``t_vals``
    requiring grad for every name of ``first`` and ``second``), a zero array where the gradient
    is piecewise constant or torch answers with its symbolic zero (which cannot go to NumPy)."""
    grads = torch.autograd.grad(out.sum(), [t_vals[n] for n in first], create_graph=True)
    dot = sum((g * to_torch(v[n], dtype)).sum() for g, n in zip(grads, first))
    hv = (torch.autograd.grad(dot, [t_vals[n] for n in second], allow_unused=True) if dot.requires_grad
          else [None] * len(second))
    return [torch.zeros_like(t_vals[n]) if h is None or h._is_zerotensor() else h for n, h in zip(second, hv)]


def _compare(
    jax_fn: Callable[..., Any], torch_fn: Callable[..., Any], call: Callable[..., Any], j_vals: Mapping[str, Any],
    t_vals: Mapping[str, Any], grad: list[str], dtype: str, both: tuple[Any, tuple[Any, ...]] | None,
    cotangent: str = "ones",
) -> tuple[Any, list[str]]:
    """Torch's value and gradients for one case against JAX's (``both``, or computed eagerly
    where it is ``None``): the JAX value, and one line per disagreeing array (all of them are
    checked, the value and each gradient)."""
    t_out = call(torch_fn, t_vals)
    j_out, j_grads = both if both is not None else (call(jax_fn, j_vals), None)
    failures = []

    def judge(actual: Any, expected: Any, what: str) -> None:
        if actual.dtype != jnp.dtype(dtype):
            failures.append(f"{what} dtype {actual.dtype}, expected {dtype}")
            return
        try:
            assert_close(actual, expected, dtype, what)
        except AssertionError as e:
            failures.append(str(e))

    judge(j_out, t_out, "value")
    if grad:
        weights = torch.as_tensor(ramp(tuple(t_out.shape)) if cotangent == "ramp" else 1.0, dtype=t_out.dtype)
        t_grads = torch.autograd.grad((t_out * weights).sum(), [t_vals[n] for n in grad], allow_unused=True)
        if j_grads is None:
            acc = jnp.float64 if dtype == "float64" else jnp.float32

            def scalar(*gvals: Any) -> Any:
                vals = dict(j_vals)
                vals.update(zip(grad, gvals))
                out = call(jax_fn, vals)
                weights = ramp(out.shape) if cotangent == "ramp" else 1.0
                return jnp.sum(out.astype(acc) * jnp.asarray(weights, acc))

            j_grads = jax.grad(scalar, argnums=tuple(range(len(grad))))(*[j_vals[n] for n in grad])
        for n, jg, tg in zip(grad, j_grads, t_grads):
            judge(jg, torch.zeros_like(t_vals[n]) if tg is None else tg, f"grad wrt {n}")
    return j_out, failures


def check(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    arrays: Mapping[str, Any],
    kwargs: Mapping[str, Any] | None = None,
    grad: Iterable[str] = ("input",),
    dtype: str = "float32",
    positional: Iterable[str] | None = None,
    cotangent: str = "ones",
) -> Any:
    """Compare value and gradients; returns the jax value.

    ``arrays`` maps argument names to NumPy arrays (floating arrays are cast to
    ``dtype``) or other values; they are passed positionally in order (or only
    the names in ``positional``; the rest by keyword) with ``kwargs`` added as
    keywords. ``cotangent``: ``"ones"`` (the gradient of the sum) or ``"ramp"`` (see :func:`ramp`).
    """
    return check_each(jax_fn, torch_fn, arrays, [kwargs or {}], grad, dtype, positional, cotangent)[0]


def check_each(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    arrays: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    options: Iterable[Mapping[str, Any]],
    grad: Iterable[str] = ("input",),
    dtype: str = "float32",
    positional: Iterable[str] | None = None,
    cotangent: str = "ones",
) -> list[Any]:
    """:func:`check` of each ``kwargs`` in ``options`` (with the same ``arrays``, or each with
    its own where ``arrays`` is a list as long as ``options``), the JAX side of all of them in
    one compiled program (see :func:`_value_and_grads`): a test loops over a grid of static
    options (``reduction``, ``p``...) at the cost of about one compilation. Every case is
    checked; then one ``AssertionError`` lists each failing case (its index, options, array
    shapes and each disagreeing array with its worst error). Returns the JAX values."""
    options, per_case = _grid("check_each", arrays, options)
    if cotangent not in COTANGENTS:
        raise ValueError(f"check_each: cotangent must be one of {COTANGENTS}, got {cotangent!r}")
    grad = list(grad)
    cases = [_case(a, o, grad, dtype, positional) for a, o in zip(per_case, options)]
    # a value-only grid (grad=[]) of several cases is one program too; one such case, its plain call
    both = (_value_and_grads(jax_fn, [(c, j) for c, j, _ in cases], grad, dtype, cotangent)
            if grad or len(cases) > 1 else None)
    outs, failed = [], {}
    for i, (call, j_vals, t_vals) in enumerate(cases):
        out, failures = _compare(jax_fn, torch_fn, call, j_vals, t_vals, grad, dtype,
                                 both[i] if both is not None else None, cotangent)
        outs.append(out)
        if failures:
            failed[i] = failures
    _raise_failures(failed, options, per_case)
    return outs


def _each_program(
    tag: tuple[Any, ...], jax_fn: Callable[..., Any],
    cases: list[tuple[Callable[..., Any], Mapping[str, Any], Any, Any]],
    body: Callable[[Callable[[Mapping[str, Any]], Any], dict[str, Any], Any, Any], Any],
) -> list[Any]:
    """For each ``(call, values, extra, info)`` of ``cases``: ``body(loss, values, extra, info)``,
    where ``loss(vals)`` is ``call(jax_fn, vals)``, all of them from ONE compiled program cached as
    in :func:`_value_and_grads` (arrays, ``extra`` and a registered loss's numeric options traced,
    the rest, ``tag`` and each case's hashable ``info``, in the key). Eager, transformations of the loss's jit compile a program each
    (forward, backward, their tangents); a leftover Python float (an unregistered function's
    option) keeps that eager path, which shares them between values, case by case."""
    parts, args, key_parts = [], [], []
    cacheable, eager = True, False
    for call, values, extra, info in cases:
        numbers = _traced_numbers(jax_fn, {n: v for n, v in values.items() if not _is_array(v)})
        traced = [n for n, v in values.items() if _is_array(v)]
        static = {n: v for n, v in values.items() if n not in traced and n not in numbers}
        parts.append((call, static, traced, list(numbers), info))
        args.append((tuple(values[n] for n in traced), tuple(numbers.values()), extra))
        if cacheable:
            try:
                key_parts.append((call.layout, info, tuple(traced), tuple(numbers),  # type: ignore[attr-defined]
                                  tuple((n, _static_key(v)) for n, v in static.items())))
            except TypeError:  # an unhashable option: compiled for this call only
                cacheable = False
        eager = eager or _untraced_float(jax_fn, static)

    def one(part: Any, tvals: tuple[Any, ...], nvals: tuple[Any, ...], extra: Any) -> Any:
        call, static, traced, number_names, info = part
        values = {**static, **dict(zip(traced, tvals)), **dict(zip(number_names, nvals))}
        return body(lambda vals: call(jax_fn, vals), values, extra, info)

    if eager:  # case by case
        return [one(part, *a) for part, a in zip(parts, args)]

    def program(all_args: tuple[Any, ...]) -> list[Any]:
        return [one(part, *a) for part, a in zip(parts, all_args)]

    if not cacheable:
        return jax.jit(program)(tuple(args))
    key = (tag, jax_fn, tuple(key_parts))
    if key not in _PROGRAMS:
        _PROGRAMS[key] = jax.jit(program)
    return _PROGRAMS[key](tuple(args))


def _hvp_each(
    jax_fn: Callable[..., Any], cases: list[tuple[Callable[..., Any], Mapping[str, Any], tuple[Any, ...]]],
    wrt: list[str],
) -> list[tuple[Any, ...]]:
    """For each ``(call, values, direction)`` of ``cases``: the Hessian-vector product of
    ``sum(jax_fn(...))`` with respect to ``wrt`` along ``direction`` (``jax.jvp`` of
    ``jax.grad``), all of them from one compiled program (:func:`_each_program`)."""

    def hvp(loss: Callable[[Mapping[str, Any]], Any], base: dict[str, Any], direction: tuple[Any, ...],
            info: None) -> Any:
        def scalar(*w: Any) -> Any:
            return jnp.sum(loss({**base, **dict(zip(wrt, w))}))

        grad = jax.grad(scalar, argnums=tuple(range(len(wrt))))
        return jax.jvp(grad, tuple(base[n] for n in wrt), direction)[1]

    return _each_program(("hvp", tuple(wrt)), jax_fn, [(*c, None) for c in cases], hvp)


def check_hvp(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    arrays: Mapping[str, Any],
    kwargs: Mapping[str, Any] | None = None,
    wrt: Iterable[str] = ("input",),
    dtype: str = "float64",
    positional: Iterable[str] | None = None,
    seed: int = 1,
) -> None:
    """Hessian-vector product of ``sum(loss)``: JAX forward-over-reverse vs torch double backward.

    ``v`` is a fixed random direction (``numpy.random.default_rng(seed)``) over all ``wrt``
    arguments at once, so the mixed second derivatives are compared too.
    """
    check_hvp_each(jax_fn, torch_fn, arrays, [kwargs or {}], wrt, dtype, positional, seed)


def check_hvp_each(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    arrays: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    options: Iterable[Mapping[str, Any]],
    wrt: Iterable[str] = ("input",),
    dtype: str = "float64",
    positional: Iterable[str] | None = None,
    seed: int = 1,
) -> None:
    """:func:`check_hvp` of each ``kwargs`` in ``options`` (with the same ``arrays``, or each
    with its own where ``arrays`` is a list as long as ``options``), the JAX side of all of them
    in one compiled program (see :func:`_hvp_each`). Every case is checked; then one
    ``AssertionError`` lists each failing case (its index, options, array shapes and each
    disagreeing HVP with its worst error), as :func:`check_each`. Each case's direction is
    drawn from a fresh ``default_rng(seed)``, as a lone :func:`check_hvp` of it would draw."""
    options, per_case = _grid("check_hvp_each", arrays, options)
    wrt = list(wrt)
    cases, torch_hvps = [], []
    for arrs, kwargs in zip(per_case, options):
        names = list(arrs)
        rng = np.random.default_rng(seed)
        v = {n: rng.normal(size=np.shape(arrs[n])) for n in wrt}
        call = _caller(arrs, kwargs, positional)

        t_vals = {n: to_torch(arrs[n], dtype, requires_grad=n in wrt) for n in names}
        torch_hvps.append(_torch_second_order(t_vals, call(torch_fn, t_vals), wrt, v, wrt, dtype))
        j_vals = {n: to_jax(arrs[n], dtype) for n in names}
        cases.append((call, {**j_vals, **kwargs}, tuple(to_jax(v[n], dtype) for n in wrt)))
    failed: dict[int, list[str]] = {}
    for i, (j_hv, t_hv) in enumerate(zip(_hvp_each(jax_fn, cases, wrt), torch_hvps)):
        for n, jh, th in zip(wrt, j_hv, t_hv):
            try:
                assert_close(jh, th, dtype, f"HVP wrt {n}")
            except AssertionError as e:
                failed.setdefault(i, []).append(str(e))
    _raise_failures(failed, options, per_case)


def check_second_order_each(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    arrays: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    options: Iterable[Mapping[str, Any]],
    rows: Iterable[tuple[str, Iterable[str]]] = (("input", ()),),
    dtype: str = "float64",
    positional: Iterable[str] | None = None,
    seed: int = 0,
) -> None:
    """Rows of the Hessian of ``sum(loss)``: for each ``kwargs`` in ``options`` (with the same
    ``arrays``, or each with its own) and each ``(wrt, cross)`` of ``rows``, the derivatives
    ``d/d(wrt, *cross) <d sum(loss) / d wrt, v>`` (``v`` of ``wrt``'s shape from
    ``default_rng(seed)``), JAX reverse-over-reverse against torch's double backward
    (``autograd.grad(..., create_graph=True)`` twice). Unlike :func:`check_hvp`'s ``H v`` this is
    ``v^T H``: the two differ where the original's mixed second derivatives are not symmetric
    (``binary_cross_entropy`` at exact 0 / 1). The JAX side of every case and row is one compiled
    program (:func:`_each_program`); every one is checked, then one ``AssertionError`` lists each
    failing case, as :func:`check_each`."""
    options, per_case = _grid("check_second_order_each", arrays, options)
    rows = [(wrt, tuple(cross)) for wrt, cross in rows]
    if not rows:
        raise ValueError("check_second_order_each: no rows to check")
    cases, expected, labels = [], [], []
    for i, (arrs, kwargs) in enumerate(zip(per_case, options)):
        names = list(arrs)
        call = _caller(arrs, kwargs, positional)
        j_vals = {**{n: to_jax(arrs[n], dtype) for n in names}, **kwargs}
        for wrt, cross in rows:
            diff = [wrt, *cross]
            v = np.random.default_rng(seed).normal(size=np.shape(arrs[wrt]))
            t_vals = {n: to_torch(arrs[n], dtype, requires_grad=n in diff) for n in names}
            expected.append(_torch_second_order(t_vals, call(torch_fn, t_vals), [wrt], {wrt: v}, diff, dtype))
            cases.append((call, j_vals, to_jax(v, dtype), (wrt, cross)))
            labels.append((i, wrt, diff))

    def rows_of_hessian(loss: Callable[[Mapping[str, Any]], Any], base: dict[str, Any], v: Any,
                        info: tuple[str, tuple[str, ...]]) -> tuple[Any, ...]:
        wrt, cross = info
        diff = [wrt, *cross]

        def gv(*dvals: Any) -> Any:
            vals = {**base, **dict(zip(diff, dvals))}
            g = jax.grad(lambda w: jnp.sum(loss({**vals, wrt: w})))(vals[wrt])
            return jnp.sum(g * v)

        return jax.grad(gv, argnums=tuple(range(len(diff))))(*[base[n] for n in diff])

    results = _each_program(("second_order",), jax_fn, cases, rows_of_hessian)
    failures: dict[int, list[str]] = {}
    for (i, wrt, diff), j_hv, t_hv in zip(labels, results, expected):
        for n, jh, th in zip(diff, j_hv, t_hv):
            try:
                assert_close(jh, th, dtype, f"d/d{n} <grad_{wrt}, v>")
            except AssertionError as e:
                failures.setdefault(i, []).append(str(e))
    _raise_failures(failures, options, per_case)


def assert_same_error(
    jax_call: Callable[[], Any], torch_call: Callable[[], Any], exc: type = ValueError
) -> None:
    """Both raise, jaxloss with ``exc`` and exactly torch's message (first line)."""
    with pytest.raises(Exception) as t_err:
        torch_call()
    expected = str(t_err.value).split("\n")[0].strip()
    with pytest.raises(exc) as j_err:
        jax_call()
    assert str(j_err.value).strip() == expected


def mixed_ties(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """``(n, c)``: the first half of the rows small integers (exact ties), the rest normal."""
    return np.concatenate([rng.integers(-2, 3, size=(n // 2, c)).astype(np.float64), rng.normal(size=(n - n // 2, c))])


def low_precision_vs_float32(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    dtype: str,
    float_args: Iterable[int],
) -> None:
    """float16 / bfloat16 in, same dtype out (value and gradient), equal to torch's float32
    result on the same (rounded) values within the dtype's tolerance."""
    float_args = list(float_args)
    j_args = [jnp.asarray(a, dtype) if i in float_args else a for i, a in enumerate(args)]

    @jax.jit  # the value and the gradient in one compiled program (eager: the call, then two more)
    def value_and_grad(x: Any) -> Any:
        def scalar(x: Any) -> Any:
            out = jax_fn(*([x] + j_args[1:]), **kwargs)
            return jnp.sum(out.astype(jnp.float32)), out

        (_, out), g = jax.value_and_grad(scalar, has_aux=True)(x)
        return out, g

    out, g = value_and_grad(j_args[0])
    assert out.dtype == jnp.dtype(dtype)
    t_args = [
        torch.tensor(np.asarray(a.astype(jnp.float32)))
        if i in float_args
        else torch.tensor(a)
        if isinstance(a, np.ndarray)
        else a
        for i, a in enumerate(j_args)
    ]
    expected = torch_fn(*t_args, **kwargs).to(torch.float64)
    assert_close(out.astype(jnp.float32), expected, dtype, "low-precision value")
    assert g.dtype == jnp.dtype(dtype)
    assert np.isfinite(np.asarray(g, np.float32)).all()


def hide_torch(monkeypatch: Any) -> None:
    """Make ``import torch`` fail for the rest of a test, as in an install without the parity extra."""
    import builtins
    import sys

    real = builtins.__import__

    def no_torch(name: str, *a: Any, **k: Any) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real(name, *a, **k)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torch)
