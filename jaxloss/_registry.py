"""The registration of every jaxloss loss: :func:`loss_function`, its dtype rules and the class twins.

Conventions every loss module follows (read this before writing a loss; the steps are in
``docs/development.md``, "Adding a loss"):

* A public loss is a plain Python function decorated with :func:`loss_function`,
  the one place for the rules every loss shares: before tracing it checks
  ``reduction``, the boolean options (real ``bool`` only), the numeric options
  (torch's range checks for Python numbers) and the array arguments (no lists,
  no bool / complex, integers only where torch computes them), then calls the
  jit-compiled function. It records the un-jitted function so that
  :mod:`jaxloss.checked` can re-trace it under ``checkify``. A public loss never
  calls another *public* (jitted) loss: it composes the private helpers of its
  module, of :mod:`jaxloss._softmax` or of the shared modules. (A jitted function
  traced once in checked mode would cache a trace containing ``checkify.check``.)
* Array arguments and numeric options (``margin``, ``delta``, ``eps``,
  ``label_smoothing``...) are traced: a new value does not recompile, and a
  traced value (a schedule inside a jitted step) works. Options that select
  shapes or code paths (``reduction``, ``ignore_index``, ``axis``, booleans, ``p``
  of the norms, callables) are static Python values, validated before tracing.
* Every loss declares its dtype rule: low-precision inputs (float16 / bfloat16)
  are computed in float32, torch's "opmath" type for these dtypes on CPU and GPU,
  and the result is cast back, as ``loss_function(opmath=...)`` says
  (:class:`Opmath`, :class:`Upcast`, or a function of the arguments choosing one);
  the body computes in the working dtype it receives and never casts for that
  itself. No float64 constant may leak into float32 code: use Python scalars
  (weakly typed) or ``jnp.asarray(c, dtype=x.dtype)``.
* The class twin (``torch.nn.CrossEntropyLoss``'s ``jaxloss.nn.CrossEntropyLoss``) is
  declared by the same registration (``module=``, ``forward=``...) and built by
  :func:`module_class` in the namespace module; :func:`jaxloss.from_torch` reads
  its table from the registrations' ``torch=`` names (:func:`twins`).
* Trace-time errors (shape, dtype, option value) raise ``ValueError`` or
  ``TypeError`` with a message naming the argument, in torch's wording where
  torch has one. Value errors jit cannot raise (a class index out of range, a
  probability outside [0, 1], a negative variance, a traced option out of its
  range) poison the result with NaN, in value *and* gradient
  (:func:`jaxloss._checked.poison`), and are recorded with
  :func:`jaxloss._checked.value_check`, which raises torch's message in
  :mod:`jaxloss.checked`.
* Gradients at kinks follow torch's autograd formulas, not JAX's defaults: e.g.
  ``clamp_min(x, m)`` passes the gradient where ``x >= m`` (JAX's ``maximum``
  splits it 0.5/0.5 at a tie). Use :func:`jaxloss._jvp.clamp_min`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss._checked import poison, poison_gradient, value_check
from jaxloss._dtypes import Array, dtype_of, opmath_dtype, real_dtype, result_float_dtype

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
    promoted dtype of ``result`` (default: of ``promote``; a complex one gives its real dtype,
    as torch's distances and moduli are real). An argument that is ``None`` is skipped, and so
    is an integer one unless the loss computes integers (``integer_inputs``, or a ``"real"`` /
    ``"label"`` argument): the body's own dtype checks still see it. Casting at exactly these
    two points rounds the gradient once, as torch does.

    Two rarer rules of torch: ``promote_with`` (a dtype) joins both promotions, as torch's
    default float32 does where it turns a Python number into a tensor (``gaussian_nll_loss``'s
    scalar variance with an integer input); ``store`` names the arguments whose promoted dtype
    (its opmath) torch writes an intermediate in before reducing it, rounding it there
    (``huber_loss``: the elementwise loss in ``input``'s dtype): the body marks that point with
    :func:`stored`.

    A rule that depends on the call (class indices or probabilities) is a function of the
    arguments by name returning an ``Opmath``, given as ``loss_function(opmath=rule)``.

    Example:
        >>> import jax.numpy as jnp
        >>> seen = []
        >>> def loss(input, target):
        ...     seen.append(input.dtype.name)
        ...     return input - target
        >>> body = Opmath(promote=("input", "target")).wrap(loss, frozenset())
        >>> out = body(input=jnp.ones(2, jnp.float16), target=jnp.zeros(2, jnp.float16))
        >>> seen, out.dtype.name  # the body computes in float32, the result is float16
        (['float32'], 'float16')
    """

    promote: tuple[str, ...]
    cast: tuple[str, ...] = ()
    result: tuple[str, ...] | None = None
    store: tuple[str, ...] | None = None
    promote_with: Any = None

    def _promoted(self, values: dict[str, Any], names: tuple[str, ...]) -> Any:
        present = [values[n] for n in names if values[n] is not None]
        if self.promote_with is not None:
            present.append(jnp.dtype(self.promote_with))
        return result_float_dtype(*present)

    def wrap(self, fn: Callable[..., Any], integers: frozenset[str]) -> Callable[..., Any]:
        """``fn`` with its arguments upcast and its result cast back; ``integers``: the
        arguments converted even when integer."""

        def body(**values: Any) -> Any:
            work = opmath_dtype(self._promoted(values, self.promote))
            dtype = real_dtype(self._promoted(values, self.promote if self.result is None else self.result))
            store = None if self.store is None else opmath_dtype(self._promoted(values, self.store))
            for name in (*self.promote, *self.cast):
                value = values[name]
                if value is None:
                    continue
                value = jnp.asarray(value)
                if jnp.issubdtype(value.dtype, jnp.floating) or name in integers:
                    values[name] = value.astype(work)
            token = _STORE.set(store)
            try:
                out = fn(**values)
            finally:
                _STORE.reset(token)
            return jax.tree.map(lambda y: y.astype(dtype) if jnp.issubdtype(y.dtype, jnp.floating) else y, out)

        return body


_STORE: contextvars.ContextVar[Any] = contextvars.ContextVar("jaxloss_store", default=None)


def stored(x: Array) -> Array:
    """``x`` rounded to the dtype torch writes it in (the ``store`` of the loss's :class:`Opmath`);
    ``x`` unchanged where the loss declares none."""
    dtype = _STORE.get()
    return x if dtype is None else x.astype(dtype)


@dataclasses.dataclass(frozen=True)
class Upcast:
    """torchvision's dtype rule (``_upcast_non_float``): each argument of ``args`` that is
    neither float32 nor float64 (an integer, float16 or bfloat16 array) is converted to
    float32, and the result keeps the dtype it is computed in. Bool and complex arguments are
    left to the body's checks.

    Example:
        >>> import jax.numpy as jnp
        >>> body = Upcast(("boxes",)).wrap(lambda boxes: boxes.sum(), frozenset())
        >>> [body(boxes=jnp.ones(4, t)).dtype.name for t in (jnp.float16, jnp.bfloat16, int, jnp.float32)]
        ['float32', 'float32', 'float32', 'float32']
    """

    args: tuple[str, ...]

    def wrap(self, fn: Callable[..., Any], integers: frozenset[str]) -> Callable[..., Any]:
        """``fn`` with the ``args`` upcast (``integers`` is not used: every integer is)."""
        keep = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))

        def body(**values: Any) -> Any:
            for name in self.args:
                value = jnp.asarray(values[name])
                real = jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)
                if real and value.dtype not in keep:
                    values[name] = value.astype(jnp.float32)
            return fn(**values)

        return body


@dataclasses.dataclass(frozen=True)
class InBody:
    """The dtype rule of a loss ported from a library other than torch (MONAI, smp): no round trip
    by the registration; the body casts where that library's code casts (``.float()`` on some
    intermediates, a float32 result), which is not torch's opmath round trip. ``why`` says where.

    Example:
        >>> body = InBody("smp: y_true.float()").wrap(lambda x: x * 2, frozenset())
        >>> body(x=1.5)
        3.0
    """

    why: str

    def wrap(self, fn: Callable[..., Any], integers: frozenset[str]) -> Callable[..., Any]:
        return fn


# What ``loss_function(opmath=...)`` takes: the dtype rule, or a function of the arguments
# (by name) choosing it per call.
DtypeRule = Opmath | Upcast | InBody | Callable[[dict[str, Any]], Opmath | Upcast]


def _with_dtype_rule(rule: DtypeRule | None, fn: Callable[..., Any], integers: frozenset[str]) -> Callable[..., Any]:
    if rule is None:
        return fn
    if isinstance(rule, (Opmath, Upcast, InBody)):
        return rule.wrap(fn, integers)

    def body(**values: Any) -> Any:
        return rule(values).wrap(fn, integers)(**values)

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
    opmath: DtypeRule | None = None
    complex_inputs: bool = False
    check_options: Callable[[dict[str, Any]], None] | None = None
    namespace: str = "jaxloss"
    module: str | None = None  # the name of the class twin (see module_class)
    forward: tuple[str, ...] = ("input", "target")
    fields: tuple[str, ...] = ()  # the class's constructor arguments, in order
    kw_only: bool = False
    torch: str | None = None  # the original's class, "package.Name" (jaxloss.from_torch)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate a call's Python-level arguments; return them all by name, ready to trace."""
        values = self._by_name(args, kwargs)
        if self.reductions is not None:
            self._check_reduction(values["reduction"], self.reductions)
        for name in self.bools:
            self._check_bool(name, values[name])
        for name, option in self.numbers.items():
            values[name] = _check_number(self.name, name, option, values[name])
        self._check_arrays(values)
        for name in self._traced_names:  # jit would fail on a string with JAX's generic message
            if isinstance(values[name], str):
                raise TypeError(f"{self.name}(): argument '{name}' must be an array or a number, not str")
        if self.check_options is not None:
            self.check_options(values)
        if self.precheck is not None:
            self.precheck(values)
        return values

    def check_constructor(self, options: dict[str, Any]) -> None:
        """What :meth:`bind` checks of the options alone, for the class twin's constructor
        (``options``: the class's fields). A loss that checks ``reduction`` itself
        (``reductions=None``) gets torch's usual three values and message here."""
        if "reduction" in options:
            self._check_reduction(options["reduction"], self.reductions or ("none", "mean", "sum"))
        for name in self.bools:
            if name in options:
                self._check_bool(name, options[name])
        for name, option in self.numbers.items():
            value = options.get(name)
            # Python numbers only: a pytree unflattened under a transformation holds tracers.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                _check_number(self.name, name, option, value)
        for name in self.arrays:
            if isinstance(options.get(name), (list, tuple, str, dict)):
                raise TypeError(f"{self.name}(): argument '{name}' must be an array, not {_type_name(options[name])}")
        if self.check_options is not None:
            self.check_options({**self._defaults, **options})

    def _check_reduction(self, reduction: Any, allowed: tuple[str, ...]) -> None:
        message = self.reduction_message if self.reductions is not None else "{} is not a valid value for reduction"
        if not isinstance(reduction, str) or reduction not in allowed:
            raise ValueError(message.format(reduction))

    def _check_bool(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{self.name}(): argument '{name}' must be bool, not {_type_name(value)}")

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
        fn = _with_dtype_rule(self.opmath, self.fn, self._integer_names)

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


# namespace ("jaxloss", "jaxloss.monai"...) -> function name -> spec
_REGISTRY: dict[str, dict[str, LossSpec]] = {}


def _namespace(module_name: str) -> str:
    """The public namespace of a loss defined in ``module_name``: the package itself, or the
    package holding the module (``jaxloss.regression`` -> ``jaxloss``)."""
    module = sys.modules.get(module_name)
    if module is not None and hasattr(module, "__path__"):
        return module_name
    return module_name.rpartition(".")[0] or module_name


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
    check_options: Callable[[dict[str, Any]], None] | None = None,
    opmath: DtypeRule | None = None,
    complex_inputs: bool = False,
    module: str | None = None,
    forward: Sequence[str] = ("input", "target"),
    fields: Sequence[str] | None = None,
    kw_only: bool = False,
    torch: str | None = None,
) -> Callable[[F], F]:
    """Register a public loss and jit-compile it: the one place for the rules all losses share.

    Before tracing, the returned function validates what a trace cannot: ``reduction``
    (against ``reductions``, torch's ``reduction_message``; ``reductions=None`` when the loss
    has none or checks it itself), the boolean options ``bools`` (real ``bool`` only, torch's
    ``argument 'swap' must be bool``), the numeric options ``numbers`` (traced; Python numbers
    range-checked with torch's message) and the array arguments ``arrays`` (lists, complex and
    bool rejected, see :data:`ArrayKind`), then calls ``check_options`` and ``precheck`` (if
    given) with the arguments by name for the loss's own checks of Python values
    (``check_options`` reads the options alone, so the class twin's constructor runs it too).
    ``opmath`` (see :class:`Opmath`) does the half-precision round trip around the traced body.
    ``complex_inputs``: the ``"float"`` arrays may be complex (where torch computes them, e.g.
    ``l1_loss``). ``static_argnames`` are the options that select
    shapes or code paths (``reduction``, ``ignore_index``, ``p``...); ``bools`` are static too.

    The class twin (built by :func:`module_class` in the namespace module): ``module`` is its
    name, ``forward`` the arguments its ``__call__`` takes, ``fields`` its constructor
    arguments in order (default: every other parameter, in signature order; a parameter left
    out keeps the function's default), ``kw_only`` makes them keyword-only (torch's
    ``GaussianNLLLoss(*, full, eps, reduction)``), and ``torch`` names the original class
    (``"torch.nn.L1Loss"``) that :func:`jaxloss.from_torch` converts to it.

    The un-jitted function stays reachable through :func:`registered` for checked mode.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        params = tuple(signature.parameters)
        unknown = [n for n in (*forward, *(fields or ())) if n not in params]
        if unknown and module is not None:
            raise TypeError(f"loss_function({fn.__name__}): forward / fields name no parameter: {unknown}")
        spec = LossSpec(
            name=fn.__name__,
            fn=fn,
            signature=signature,
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
            check_options=check_options,
            namespace=_namespace(fn.__module__),
            module=module,
            forward=tuple(forward),
            fields=tuple(n for n in params if n not in forward) if fields is None else tuple(fields),
            kw_only=kw_only,
            torch=torch,
        )
        names = _REGISTRY.setdefault(spec.namespace, {})
        if spec.name in names and names[spec.name].fn.__module__ != fn.__module__:
            raise ValueError(f"loss_function: {spec.namespace} already has a loss named {spec.name!r}")
        names[spec.name] = spec
        run = spec.jit()

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return run(spec.bind(args, kwargs))

        call._cache_size = run._cache_size  # type: ignore[attr-defined]
        call.lower = lambda *a, **k: run.lower(spec.bind(a, k))  # type: ignore[attr-defined]
        call.spec = spec  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return decorate


def registered(namespace: str = "jaxloss") -> dict[str, LossSpec]:
    """The registered public losses of ``namespace`` (``jaxloss``: the torch ones) by name."""
    return dict(_REGISTRY.get(namespace, {}))


def all_registered() -> dict[str, LossSpec]:
    """Every registered loss of every namespace, by qualified name (``jaxloss.l1_loss``)."""
    return {f"{ns}.{name}": spec for ns, names in _REGISTRY.items() for name, spec in names.items()}


# --------------------------------------------------------------------------- class twins
# the original's class ("torch.nn.L1Loss") -> its generated twin, for jaxloss.from_torch
_TWINS: dict[str, type] = {}


class LossModule:
    """Base of the generated class twins (see :func:`module_class`): a frozen dataclass whose
    constructor checks the options as the function does, and whose call is the function's."""

    _spec: ClassVar[LossSpec]

    def __post_init__(self) -> None:
        self._spec.check_constructor({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})  # type: ignore[arg-type]


def module_class(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    doc: str | None = None,
    base: type | None = None,
    torch: str | None = None,
    namespace: str | None = None,
) -> type:
    """The class twin of the registered loss ``fn``, as its registration declares it.

    A frozen dataclass named ``module`` (or ``name``) with one field per constructor option
    (``fields``, the function's defaults; an option without a default is a required argument,
    so the options without one must come first unless ``kw_only``), registered as a pytree: the array and numeric
    options are leaves (a new ``margin`` does not recompile a jitted step), the others are
    static. The constructor validates the options as the function does on Python values
    (``reduction``, booleans, numeric ranges, ``check_options``), with the same messages;
    ``instance(*forward)`` is exactly ``fn(*forward, **options)``. ``__module__`` is the
    calling module (the namespace, e.g. ``jaxloss.nn``), or ``namespace``.

    ``doc`` replaces the generated docstring; ``base`` (a class twin of the same loss) makes
    an alias class that subclasses it (torch's ``NLLLoss2d``); ``torch`` overrides the
    registration's original class name for :func:`jaxloss.from_torch`.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxloss
        >>> from jaxloss._registry import module_class
        >>> HuberLoss = module_class(jaxloss.huber_loss)
        >>> criterion = HuberLoss(delta=0.5)
        >>> criterion
        HuberLoss(reduction='mean', delta=0.5)
        >>> x, y = jnp.array([0.0, 2.0]), jnp.zeros(2)
        >>> bool(criterion(x, y) == jaxloss.huber_loss(x, y, delta=0.5))
        True
    """
    spec: LossSpec | None = getattr(fn, "spec", None)
    if spec is None:
        raise TypeError(f"module_class: {fn!r} is not a function registered with loss_function")
    cls_name = name or spec.module
    if cls_name is None:
        raise TypeError(f"module_class: the registration of {spec.name} declares no module= class name")
    where = namespace or sys._getframe(1).f_globals.get("__name__", spec.namespace)
    params = spec.signature.parameters
    if base is None:
        fields = [(n, params[n].annotation, _field(params[n], spec.kw_only)) for n in spec.fields]
        bases: tuple[type, ...] = (LossModule,)
    else:
        if getattr(base, "_spec", None) is not spec:
            raise TypeError(f"module_class: base {base.__name__} is not a class twin of {spec.name}")
        fields, bases = [], (base,)
    cls = dataclasses.make_dataclass(
        cls_name,
        fields,
        bases=bases,
        frozen=True,
        namespace={"_spec": spec, "__call__": _call_method(fn, spec), "__module__": where},
    )
    cls.__qualname__ = cls_name
    cls.__doc__ = inspect.cleandoc(doc) if doc is not None else _class_doc(cls_name, spec, where)
    data = [n for n in spec.fields if n in spec.arrays or n in spec.numbers]
    meta = [n for n in spec.fields if n not in data]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    original = torch or (spec.torch if base is None else None)
    if original is not None:
        _TWINS.setdefault(original, cls)  # the namespace's class, imported first, stays the twin
    return cls


def _field(param: inspect.Parameter, kw_only: bool) -> Any:
    """The dataclass field of one constructor option: the function's default, or none (a
    required argument, as smp's ``mode``: the constructor then raises Python's ``missing 1
    required positional argument``, as the original's ``__init__`` does)."""
    if param.default is inspect.Parameter.empty:
        return dataclasses.field(kw_only=kw_only)
    return dataclasses.field(default=param.default, kw_only=kw_only)


def twins() -> dict[str, type]:
    """Every generated class twin by its original's class (``"torch.nn.L1Loss"``)."""
    return dict(_TWINS)


def _call_method(fn: Callable[..., Any], spec: LossSpec) -> Callable[..., Any]:
    """``__call__(self, *forward)``: the function with the instance's options."""
    forward, fields = spec.forward, spec.fields

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(forward):
            raise TypeError(f"{type(self).__name__}() takes {len(forward)} arguments ({', '.join(forward)}), got {len(args)}")
        values = dict(zip(forward, args))
        for key in kwargs:
            if key not in forward or key in values:
                raise TypeError(f"{type(self).__name__}() got an unexpected or repeated argument {key!r}")
        values.update(kwargs)
        return fn(**values, **{n: getattr(self, n) for n in fields})

    params = spec.signature.parameters
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __call__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [self_param, *(params[n].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in forward)],
        return_annotation=spec.signature.return_annotation,
    )
    __call__.__doc__ = f"``{spec.name}({', '.join(forward)}, **options)`` with this instance's options."
    return __call__


def _class_doc(cls_name: str, spec: LossSpec, where: str) -> str:
    """The generated docstring: the function's summary, the fields and the call."""
    summary = (inspect.getdoc(spec.fn) or "").split("\n\n")[0].strip()
    original = f"``{spec.torch}``: " if spec.torch else ""
    options = ", ".join(spec.fields) if spec.fields else "none"
    return (
        f"{original}{summary}\n\n"
        f"The class twin of :func:`{spec.namespace}.{spec.name}`: ``{cls_name}(**options)({', '.join(spec.forward)})`` "
        f"is ``{spec.namespace}.{spec.name}({', '.join(spec.forward)}, **options)``. Options: {options}."
    )
