"""Shared machinery of every jaxloss function.

Conventions every loss module follows (read this before writing a loss):

* A public loss is a plain Python function decorated with :func:`loss_function`,
  the one place for the rules every loss shares: before tracing it checks
  ``reduction``, the boolean options (real ``bool`` only), the numeric options
  (torch's range checks for Python numbers) and the array arguments (no lists,
  no bool / complex, integers only where torch computes them), then calls the
  jit-compiled function. It records the un-jitted function so that
  :mod:`jaxloss.checked` can re-trace it under ``checkify``. A public loss never
  calls another *public* (jitted) loss: it composes the private helpers of its
  module, of :mod:`jaxloss._softmax` or of this one. (A jitted function traced
  once in checked mode would cache a trace containing ``checkify.check``.)
* Array arguments and numeric options (``margin``, ``delta``, ``eps``,
  ``label_smoothing``...) are traced: a new value does not recompile, and a
  traced value (a schedule inside a jitted step) works. Options that select
  shapes or code paths (``reduction``, ``ignore_index``, ``axis``, booleans, ``p``
  of the norms, callables) are static Python values, validated before tracing.
* Low-precision inputs (float16 / bfloat16) are computed in float32, torch's
  "opmath" type for these dtypes on CPU and GPU, and the result is cast back to
  the input dtype: declared with ``loss_function(opmath=Opmath(...))``, so the
  body computes in the working dtype it receives. No float64 constant may leak into float32 code: use Python
  scalars (weakly typed) or ``jnp.asarray(c, dtype=x.dtype)``.
* Trace-time errors (shape, dtype, option value) raise ``ValueError`` or
  ``TypeError`` with a message naming the argument, in torch's wording where
  torch has one. Value errors jit cannot raise (a class index out of range, a
  probability outside [0, 1], a negative variance, a traced option out of its
  range) poison the result with NaN, in value *and* gradient (:func:`poison`),
  and are recorded with :func:`value_check`, which raises torch's message in
  :mod:`jaxloss.checked`.
* Gradients at kinks follow torch's autograd formulas, not JAX's defaults: e.g.
  ``clamp_min(x, m)`` passes the gradient where ``x >= m`` (JAX's ``maximum``
  splits it 0.5/0.5 at a tie). Use :func:`clamp_min`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
Reduction = Literal["none", "mean", "sum"]

F = TypeVar("F", bound=Callable[..., Any])

# Kinds of array arguments, checked by the registration before tracing:
#   "float": a number array; bool and complex are rejected, and unless the loss accepts integer
#            inputs (``integer_inputs=True``) at least one "float" argument must be floating.
#   "real":  integer or floating (weights, numeric targets); bool and complex are rejected.
#   "label": integer, floating or bool (targets compared with 1 / -1); complex is rejected.
ArrayKind = Literal["float", "real", "label"]


@dataclasses.dataclass(frozen=True)
class Number:
    """A numeric option: a traced argument (changing its value does not recompile).

    ``valid(v)`` is torch's range check, written so that it works on a Python number and on
    a JAX array alike; ``message`` is torch's error (``str.format``-ed with the value). A
    Python number is checked before tracing (``ValueError``); a traced value is checked by
    :mod:`jaxloss.checked`. ``off(v)``, if given, says when a Python value turns the option's
    term off: the loss then receives ``None`` and compiles the code without that term.
    """

    valid: Callable[[Any], Any] | None = None
    message: str = ""
    off: Callable[[Any], bool] | None = None


@dataclasses.dataclass(frozen=True)
class Opmath:
    """A loss's half-precision round trip, done by the registration (torch's "opmath").

    The working dtype is ``opmath_dtype`` of the floating dtype the ``promote`` arguments
    promote to (float32 for float16 / bfloat16). The ``promote`` and ``cast`` arguments
    (``cast``: e.g. class weights, converted without taking part in the promotion) reach the
    loss body already in the working dtype; the body's floating results are cast back to the
    promoted dtype of ``result`` (default: of ``promote``). An argument that is ``None`` is
    skipped, and so is an integer one unless the loss computes integers (``integer_inputs``, or
    a ``"real"`` / ``"label"`` argument): the body's own dtype checks still see it. Casting at
    exactly these two points rounds the gradient once, as torch does.
    """

    promote: tuple[str, ...]
    cast: tuple[str, ...] = ()
    result: tuple[str, ...] | None = None

    def wrap(self, fn: Callable[..., Any], integers: frozenset[str]) -> Callable[..., Any]:
        """``fn`` with its arguments upcast and its result cast back; ``integers``: the
        arguments converted even when integer."""

        def present(values: dict[str, Any], names: tuple[str, ...]) -> list[Any]:
            return [values[n] for n in names if values[n] is not None]

        def body(**values: Any) -> Any:
            work = opmath_dtype(result_float_dtype(*present(values, self.promote)))
            # a complex input's losses (distances, moduli) are real, as torch returns them
            dtype = real_dtype(result_float_dtype(*present(values, self.promote if self.result is None else self.result)))
            for name in (*self.promote, *self.cast):
                value = values[name]
                if value is None:
                    continue
                value = jnp.asarray(value)
                if jnp.issubdtype(value.dtype, jnp.floating) or name in integers:
                    values[name] = value.astype(work)
            out = fn(**values)
            return jax.tree.map(lambda y: y.astype(dtype) if jnp.issubdtype(y.dtype, jnp.floating) else y, out)

        return body


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What the registration knows about one public loss (see :func:`loss_function`)."""

    name: str
    fn: Callable[..., Any]  # the un-jitted function as written
    signature: inspect.Signature
    static_argnames: tuple[str, ...]
    bools: tuple[str, ...]
    numbers: Mapping[str, Number]
    arrays: Mapping[str, ArrayKind]
    integer_inputs: bool
    reductions: tuple[str, ...] | None
    reduction_message: str
    precheck: Callable[[dict[str, Any]], None] | None
    opmath: Opmath | None = None
    complex_inputs: bool = False

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate a call's Python-level arguments; return them all by name, ready to trace."""
        values = self._by_name(args, kwargs)
        if self.reductions is not None:
            reduction = values["reduction"]
            if not isinstance(reduction, str) or reduction not in self.reductions:
                raise ValueError(self.reduction_message.format(reduction))
        for name in self.bools:
            if not isinstance(values[name], bool):
                raise TypeError(f"{self.name}(): argument '{name}' must be bool, not {_type_name(values[name])}")
        for name, option in self.numbers.items():
            values[name] = _check_number(self.name, name, option, values[name])
        self._check_arrays(values)
        for name in self._traced_names:  # jit would fail on a string with JAX's generic message
            if isinstance(values[name], str):
                raise TypeError(f"{self.name}(): argument '{name}' must be an array or a number, not str")
        if self.precheck is not None:
            self.precheck(values)
        return values

    def _by_name(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Every parameter by name, defaults filled in (``inspect.Signature.bind``'s result; the
        common all-positional-or-keyword call is mapped directly, as this runs on every call)."""
        names = self._positional
        if len(args) > len(names) or not kwargs.keys() <= self._defaults.keys() | set(names[len(args):]):
            bound = self.signature.bind(*args, **kwargs)  # raises Python's TypeError
            bound.apply_defaults()
            return dict(bound.arguments)
        for name in names[len(args):]:
            if name not in kwargs and name not in self._defaults:
                self.signature.bind(*args, **kwargs)  # raises "missing a required argument"
        values = dict(self._defaults)
        values.update(zip(names, args))
        values.update(kwargs)
        return values

    @functools.cached_property
    def _traced_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.signature.parameters if n not in self.static_argnames)

    @functools.cached_property
    def _positional(self) -> tuple[str, ...]:
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return tuple(n for n, p in self.signature.parameters.items() if p.kind in kinds)

    @functools.cached_property
    def _defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.signature.parameters.items() if p.default is not inspect.Parameter.empty}

    def _check_arrays(self, values: dict[str, Any]) -> None:
        floating = []
        for name, kind in self.arrays.items():
            value = values.get(name)
            if value is None:
                continue
            if isinstance(value, (list, tuple, str, dict)):
                raise TypeError(f"{self.name}(): argument '{name}' must be an array, not {_type_name(value)}")
            dtype = dtype_of(value)
            if dtype.kind == "c" and not (kind == "float" and self.complex_inputs):
                raise TypeError(f"{self.name}(): argument '{name}' must be real, not complex ({dtype})")
            if dtype.kind == "b" and kind != "label":
                raise TypeError(f"{self.name}(): argument '{name}' must be a number array, not bool")
            if kind == "float":
                floating.append((name, dtype))
        if floating and not self.integer_inputs and all(d.kind in "iu" for _, d in floating):
            names = " and ".join(f"'{n}' ({d})" for n, d in floating)
            raise TypeError(f"{self.name}(): expected a floating point dtype, got integer {names}")

    def checked_body(self) -> Callable[..., Any]:
        """The function with the range checks of its traced options as :func:`value_check`."""
        checks = [(n, o) for n, o in self.numbers.items() if o.valid is not None]
        fn = self.fn if self.opmath is None else self.opmath.wrap(self.fn, self._integer_names)

        def body(**values: Any) -> Any:
            invalid = []
            for name, option in checks:
                value = values[name]
                if value is not None and not isinstance(value, (int, float)):  # traced: unchecked so far
                    ok = option.valid(value)
                    value_check(ok, option.message, value)
                    invalid.append(~jnp.asarray(ok))
            if not invalid:
                return fn(**values)
            # An out-of-range traced option: NaN value and gradients (torch would raise). The
            # result alone is not enough: a max / where / relu in the loss can drop its NaN
            # cotangent on the way back (a margin of -inf zeroes a hinge's gradient), so the
            # gradient of every floating argument is poisoned too, whatever the loss does.
            bad = functools.reduce(jnp.logical_or, invalid)
            values = {n: _poison_floating(v, bad, poison_gradient) if n in self._traced_names else v
                      for n, v in values.items()}
            return jax.tree.map(lambda y: _poison_floating(y, bad, poison), fn(**values))

        return body

    @functools.cached_property
    def _integer_names(self) -> frozenset[str]:
        """The array arguments whose integer values the loss computes with (not rejected)."""
        return frozenset(
            n for n in self.signature.parameters if self.arrays.get(n, "real") != "float" or self.integer_inputs
        )

    @functools.cached_property
    def _names(self) -> tuple[str, ...]:
        return tuple(self.signature.parameters)

    def jit(self) -> Callable[..., Any]:
        """The jitted :meth:`checked_body`, called with every argument by position (the
        fastest dispatch: keyword calls cost JAX's C++ dispatcher extra work) in signature order."""
        body, names = self.checked_body(), self._names

        def positional(*args: Any) -> Any:
            return body(**dict(zip(names, args)))

        static = tuple(i for i, n in enumerate(names) if n in self.static_argnames)
        jitted = jax.jit(positional, static_argnums=static)

        def run(values: dict[str, Any]) -> Any:
            return jitted(*[values[n] for n in names])

        run.lower = lambda values: jitted.lower(*[values[n] for n in names])  # type: ignore[attr-defined]
        run._cache_size = jitted._cache_size  # type: ignore[attr-defined]
        return run


def dtype_of(value: Any) -> np.dtype:
    """The dtype of an array (read, not computed) or of a Python / NumPy scalar (JAX's)."""
    dtype = getattr(value, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.dtype(jnp.result_type(value))


def _poison_floating(value: Any, bad: Array, how: Callable[[Array, Array], Array]) -> Any:
    """``how(value, bad)`` for a floating (or complex) array; anything else (Python numbers,
    integer arrays, ``None``) unchanged."""
    if isinstance(value, (jax.Array, np.ndarray)) and jnp.issubdtype(value.dtype, jnp.inexact):
        return how(jnp.asarray(value), bad)
    return value


def _type_name(value: Any) -> str:
    return "NoneType" if value is None else type(value).__name__


def _check_number(fname: str, name: str, option: Number, value: Any) -> Any:
    """A numeric option as the jitted function receives it: a weakly typed Python float
    (after torch's range check), a 0-d real array (traced, checked in checked mode), or
    ``None`` where ``option.off`` turns the term off."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        if option.valid is not None and not option.valid(value):
            raise ValueError(option.message.format(value))
        value = float(value)
        if option.off is not None and option.off(value):
            return None
        return value
    if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0:
        dtype = jnp.result_type(value)
        if jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer):
            return value
    if isinstance(value, (jax.Array, np.ndarray)):  # a tracer's type name would say nothing useful
        raise TypeError(f"{fname}(): argument '{name}' must be a scalar, got an array of shape {tuple(value.shape)}")
    raise TypeError(f"{fname}(): argument '{name}' must be float, not {_type_name(value)}")


_REGISTRY: dict[str, LossSpec] = {}


def loss_function(
    *,
    static_argnames: Sequence[str] = (),
    bools: Sequence[str] = (),
    numbers: Mapping[str, Number] | None = None,
    arrays: Mapping[str, ArrayKind] | None = None,
    integer_inputs: bool = False,
    reductions: Sequence[str] | None = ("none", "mean", "sum"),
    reduction_message: str = "{} is not a valid value for reduction",
    precheck: Callable[[dict[str, Any]], None] | None = None,
    opmath: Opmath | None = None,
    complex_inputs: bool = False,
) -> Callable[[F], F]:
    """Register a public loss and jit-compile it: the one place for the rules all losses share.

    Before tracing, the returned function validates what a trace cannot: ``reduction``
    (against ``reductions``, torch's ``reduction_message``; ``reductions=None`` when the loss
    has none or checks it itself), the boolean options ``bools`` (real ``bool`` only, torch's
    ``argument 'swap' must be bool``), the numeric options ``numbers`` (traced; Python numbers
    range-checked with torch's message) and the array arguments ``arrays`` (lists, complex and
    bool rejected, see :data:`ArrayKind`), then calls ``precheck`` (if given) with the
    arguments by name for the loss's own checks of Python values. ``opmath`` (see
    :class:`Opmath`) does the half-precision round trip around the traced body.
    ``complex_inputs``: the ``"float"`` arrays may be complex (where torch computes them, e.g.
    ``l1_loss``). ``static_argnames`` are the options that select
    shapes or code paths (``reduction``, ``ignore_index``, ``p``...); ``bools`` are static too.

    The un-jitted function stays reachable through :func:`registered` for checked mode.
    """

    def decorate(fn: F) -> F:
        spec = LossSpec(
            name=fn.__name__,
            fn=fn,
            signature=inspect.signature(fn),
            static_argnames=tuple(dict.fromkeys((*static_argnames, *bools))),
            bools=tuple(bools),
            numbers=dict(numbers or {}),
            arrays=dict(arrays or {}),
            integer_inputs=integer_inputs,
            reductions=None if reductions is None else tuple(reductions),
            reduction_message=reduction_message,
            precheck=precheck,
            opmath=opmath,
            complex_inputs=complex_inputs,
        )
        _REGISTRY[spec.name] = spec
        run = spec.jit()

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return run(spec.bind(args, kwargs))

        call._cache_size = run._cache_size  # type: ignore[attr-defined]
        call.lower = lambda *a, **k: run.lower(spec.bind(a, k))  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return decorate


def registered() -> dict[str, LossSpec]:
    """All registered public losses by name."""
    return dict(_REGISTRY)


# --------------------------------------------------------------------------- checks
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxloss_checked", default=False)


def value_check(pred: ArrayLike, message: str, *fmt_args: ArrayLike) -> None:
    """Record a run-time value check (``pred`` must be all True).

    A no-op in the default (fast) mode, where the caller must instead make the
    result NaN for an invalid value. In :mod:`jaxloss.checked` it becomes a
    ``checkify.check`` that raises ``message`` (formatted with ``fmt_args``,
    ``{}`` placeholders as in :func:`jax.experimental.checkify.check`).
    """
    if _CHECKED.get():
        checkify.check(jnp.all(pred), message, *fmt_args)


def checked_mode() -> contextvars.Token[bool]:
    """Turn checked mode on for the current trace; pass the token to ``reset``."""
    return _CHECKED.set(True)


def reset_checked_mode(token: contextvars.Token[bool]) -> None:
    _CHECKED.reset(token)


def check_reduction(reduction: str, allowed: Sequence[str] = ("none", "mean", "sum")) -> None:
    """Raise torch's error for an unknown ``reduction``."""
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def check_float(name: str, x: Array) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating point dtype, got {x.dtype}")


def check_integer(name: str, x: Array) -> None:
    """Raise ``TypeError`` unless ``x`` has an integer dtype (int32 and int64 both welcome)."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {x.dtype}")


def shape_str(shape: Sequence[int]) -> str:
    """Format a shape the way torch prints it in error messages: ``[2, 3]``."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """NumPy/torch broadcasting of two shapes, failing with torch's ``infer_size`` message.

    ``a`` and ``b`` are "tensor a" and "tensor b" in the message, as torch names the
    operands of the binary op that fails (pass them in that op's order). Like torch,
    the right-most mismatching dimension is reported.
    """
    a, b = tuple(int(d) for d in a), tuple(int(d) for d in b)
    ndim = max(len(a), len(b))
    pa, pb = (1,) * (ndim - len(a)) + a, (1,) * (ndim - len(b)) + b
    for i in range(ndim - 1, -1, -1):
        if pa[i] != pb[i] and pa[i] != 1 and pb[i] != 1:
            raise ValueError(
                f"The size of tensor a ({pa[i]}) must match the size of tensor b ({pb[i]}) "
                f"at non-singleton dimension {i}"
            )
    return tuple(db if da == 1 else da for da, db in zip(pa, pb))


def check_broadcast_into(shape: Sequence[int], broadcast: Sequence[int]) -> None:
    """torch's in-place / ``out=`` rule: an operand may not enlarge the output's ``shape``."""
    if tuple(broadcast) != tuple(shape):
        raise ValueError(
            f"output with shape {shape_str(shape)} doesn't match the broadcast shape {shape_str(broadcast)}"
        )


# --------------------------------------------------------------------------- dtypes
def result_float_dtype(*xs: Any) -> jnp.dtype:
    """The floating dtype torch's type promotion gives these arrays (or dtypes).

    An integer operand never widens a floating one (``int64 * float32 -> float32``, as in
    torch and in JAX's promotion lattice); integers alone give float32 (torch's default dtype).
    """
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(dt, jnp.float32)
    return jnp.dtype(dt)


def real_dtype(dtype: Any) -> jnp.dtype:
    """The dtype of the modulus of ``dtype``'s numbers: float32 for complex64, a real dtype unchanged."""
    return jnp.dtype(jnp.finfo(dtype).dtype)


# torch's names of dtypes, for messages in its wording ("result type Float can't be cast ...").
_TORCH_DTYPE_NAMES = {
    "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
    "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64",
    "float64": "Double", "float32": "Float", "float16": "Half", "bfloat16": "BFloat16",
}


def torch_dtype_name(dtype: Any) -> str:
    """torch's name of ``dtype`` (``Long``, ``Float``...), as its error messages print it."""
    name = jnp.dtype(dtype).name
    return _TORCH_DTYPE_NAMES.get(name, name)


def opmath_dtype(dtype: Any) -> jnp.dtype:
    """The dtype torch computes in: float32 for float16 / bfloat16, else ``dtype``."""
    dtype = jnp.dtype(dtype)
    if dtype in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        return jnp.dtype(jnp.float32)
    return dtype


# --------------------------------------------------------------------------- reductions
def reduce(loss: Array, reduction: str) -> Array:
    """Apply torch's ``'none' | 'mean' | 'sum'`` to an elementwise loss."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss)
    raise ValueError(f"{reduction} is not a valid value for reduction")


# --------------------------------------------------------------------------- torch-gradient kinks
def _bound_tangent(dbound: Any, x: Array) -> Array:
    """The tangent of a clamp bound as an array like ``x`` (zeros for int / symbolic-zero bounds)."""
    if isinstance(dbound, jax.custom_derivatives.SymbolicZero) or jnp.asarray(dbound).dtype == jax.dtypes.float0:
        return jnp.zeros_like(x)
    return jnp.broadcast_to(jnp.asarray(dbound, dtype=x.dtype), x.shape)


def _takes_bound(x: Array, minimum: ArrayLike) -> Array:
    """Where ``clamp_min(x, minimum)`` is ``minimum``: below it, and everywhere for a NaN
    ``minimum`` (torch's clamp propagates a NaN bound; ``x < nan`` alone would keep ``x``)."""
    return (x < minimum) | jnp.isnan(minimum)


@jax.custom_jvp
def clamp_min(x: Array, minimum: ArrayLike) -> Array:
    """``torch.clamp_min``: ``max(x, minimum)``, NaN stays NaN (a NaN ``x`` or ``minimum``);
    gradient 1 where ``x >= minimum`` (ties too)."""
    return jnp.where(_takes_bound(x, minimum), jnp.asarray(minimum, dtype=x.dtype), x)


@clamp_min.defjvp
def _clamp_min_jvp(primals: tuple[Array, Any], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, minimum = primals
    dx, dmin = tangents
    return clamp_min(x, minimum), jnp.where(x >= minimum, dx, _bound_tangent(dmin, x))


@jax.custom_jvp
def clamp_min_straight_through(x: Array, minimum: ArrayLike) -> Array:
    """``max(x, minimum)`` in value (NaN stays NaN, a NaN ``minimum`` too), the identity in ``x``'s gradient.

    torch clamps in place under ``no_grad`` in ``gaussian_nll_loss`` (the variance) and
    ``cosine_similarity`` (the norms), so autograd sees the identity there. A traced
    ``minimum`` gets the gradient where it is the value.
    """
    return jnp.where(_takes_bound(x, minimum), jnp.asarray(minimum, dtype=x.dtype), x)


@clamp_min_straight_through.defjvp
def _clamp_min_straight_through_jvp(primals: tuple[Array, Any], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, minimum = primals
    dx, dmin = tangents
    return clamp_min_straight_through(x, minimum), dx + jnp.where(_takes_bound(x, minimum), _bound_tangent(dmin, x), 0)


@jax.custom_jvp
def divide(x: Array, y: Array) -> Array:
    """``x / y`` with torch's gradient for ``y``: ``-g * ((x / y) / y)``.

    JAX's quotient rule forms ``y * y``, which underflows to 0 for ``|y|`` below ~1e-19 in
    float32 and makes the gradient infinite where torch's is finite (e.g. tiny boxes, whose
    ``w / h`` is moderate).
    """
    return x / y


@divide.defjvp
def _divide_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    x, y = primals
    dx, dy = tangents
    out = divide(x, y)
    # The barrier keeps XLA's simplifier from rewriting (x / y) / y back into x / (y * y).
    return out, divide(dx, y) - divide(jax.lax.optimization_barrier(out), y) * dy


def poison(x: Array, invalid: Array) -> Array:
    """``x``, NaN where ``invalid`` in value *and* in the gradient flowing back through ``x``
    (a product with NaN; a select would pass a finite gradient to the rest of ``x``)."""
    return x * jnp.where(invalid, jnp.asarray(jnp.nan, dtype=x.dtype), jnp.asarray(1, dtype=x.dtype))


@jax.custom_jvp
def poison_gradient(x: Array, invalid: Array) -> Array:
    """``x`` itself in value; its gradient (every tangent through it) NaN where ``invalid``.

    Applied to a loss's inputs, it makes their gradients NaN even where the loss's own graph
    passes none back (a hinge at ``-inf``), without a copy of the inputs in the forward pass
    (a product with NaN would copy e.g. ``linear_cross_entropy``'s weight matrix).
    """
    return x


@poison_gradient.defjvp
def _poison_gradient_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Any]) -> tuple[Array, Array]:
    x, invalid = primals
    return x, poison(tangents[0], invalid)


def first_bad(bad: Array, x: Array) -> Array:
    """The first entry of ``x`` where ``bad`` (for error messages); 0 for an empty ``x``,
    where nothing can be bad."""
    flat = jnp.ravel(x)
    if flat.size == 0:
        return jnp.zeros((), flat.dtype)
    return flat[jnp.argmax(jnp.ravel(bad))]


def nan_where(invalid: Array, x: Array) -> Array:
    """Replace entries of ``x`` by NaN where ``invalid`` (poisoning for bad values)."""
    return jnp.where(invalid, jnp.asarray(jnp.nan, dtype=x.dtype), x)


@jax.custom_jvp
def abs(x: Array) -> Array:
    """``torch.abs``: gradient ``sign(x)``, i.e. 0 at ``x == 0`` (JAX's ``jnp.abs`` gives 1 there).

    For complex ``x`` the result is real and the derivative torch's ``sgn(x) = x / |x|`` (0 at
    0): the tangent is ``Re(conj(sgn(x)) dx)``. (``jax.grad`` of a real function of a complex
    argument returns the conjugate of what torch's ``.grad`` holds: the same gradient in the
    two frameworks' conventions.)
    """
    return jnp.abs(x)


@abs.defjvp
def _abs_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    if jnp.iscomplexobj(x):
        return abs(x), jnp.real(jnp.conj(jnp.sign(x)) * dx)
    return abs(x), jnp.sign(x) * dx
