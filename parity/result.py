"""What a comparison found: :class:`Comparison` (one array) and :class:`Result` (one call).

>>> r = Result("passed", "float32", outputs=[Comparison("value", "float32", True, shape=(2,), size=2, max_abs=1e-7)])
>>> r.passed, r.worst("outputs", "max_abs"), r.to_json()["outputs"][0]["shape"]
(True, 1e-07, [2])
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from typing import Any

import numpy as np

__all__ = ["Comparison", "ErrorText", "Result", "describe", "error_kind", "first_line", "is_smaller", "jsonable", "same_error",
           "same_error_kind"]


@dataclasses.dataclass
class Comparison:
    """One compared array: an output, a gradient or a second-order product (``v^T H``).

    >>> Comparison("value", "float64", False, message="shape [2] != torch's [3]").line()
    "FAIL value                  shape [2] != torch's [3]"
    """

    name: str  # "value", "value[1]", "grad input", "hvp target['a']"
    dtype: str
    passed: bool
    shape: tuple[int, ...] = ()
    max_abs: float = 0.0  # worst |jax - torch|
    max_rel: float = 0.0  # worst |jax - torch| / |torch| (where |torch| > atol)
    max_ulp: float = 0.0  # worst error in ULPs of ``dtype`` at torch's value (likewise)
    usage: float = 0.0  # worst |jax - torch| / (atol + rtol |torch|); <= 1 passes
    n_bad: int = 0
    size: int = 0
    worst_index: tuple[int, ...] = ()
    jax_at_worst: float | None = None
    torch_at_worst: float | None = None
    judged: str = "torch"  # "torch" or "reference" (float64 reference decided)
    jax_ref_abs: float | None = None  # worst |jax - float64 reference|
    torch_ref_abs: float | None = None  # worst |torch - float64 reference|
    jax_ref_ulp: float | None = None
    torch_ref_ulp: float | None = None
    torch_ref_passed: bool | None = None  # torch within tolerance of the float64 reference
    jax_ref_passed: bool | None = None  # JAX within tolerance of the float64 reference
    message: str = ""

    @property
    def closer(self) -> str | None:
        """``'jax'``, ``'torch'`` or ``'tie'``: which is nearer the float64 reference."""
        if self.jax_ref_abs is None or self.torch_ref_abs is None:
            return None
        j, t = self.jax_ref_abs, self.torch_ref_abs
        if same_error(j, t):
            return "tie"
        return "jax" if is_smaller(j, t) else "torch"

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        if self.message and not self.size:
            return f"{mark} {self.name:<22} {self.message}"
        s = (
            f"{mark} {self.name:<22} {self.dtype:<8} {list(self.shape)!s:<12} abs {_g(self.max_abs)}"
            f"  rel {_g(self.max_rel)}  ulp {_g(self.max_ulp)}  tol-use {_g(self.usage)}"
        )
        if self.n_bad:
            s += f"  {self.n_bad}/{self.size} bad, worst at {list(self.worst_index)}: jax={self.jax_at_worst!r} torch={self.torch_at_worst!r}"
        if self.closer is not None:
            s += f"  | vs f64: jax {_g(self.jax_ref_abs)} torch {_g(self.torch_ref_abs)} (closer: {self.closer})"
        if self.judged == "reference":
            s += "  [judged against float64 reference]"
        if self.message:
            s += f"  ({self.message})"
        return s

    def to_json(self) -> dict[str, Any]:
        return jsonable({**dataclasses.asdict(self), "closer": self.closer})


@dataclasses.dataclass
class Result:
    """The outcome of :func:`compare`.

    ``status`` is ``"passed"``, ``"failed"`` (a comparison failed, or one side
    raised where the other did not), ``"not_implemented"`` (the JAX side raised
    ``NotImplementedError``) or ``"error"`` (the comparison could not be set up:
    e.g. ``grad_argnums`` names a non-array argument).

    >>> r = Result("failed", "float64", outputs=[Comparison("value", "float64", False)])
    >>> r.passed, [c.name for c in r.failures]
    (False, ['value'])
    """

    status: str
    dtype: str = ""
    outputs: list[Comparison] = dataclasses.field(default_factory=list)
    grads: list[Comparison] = dataclasses.field(default_factory=list)
    hvps: list[Comparison] = dataclasses.field(default_factory=list)
    jax_error: str | None = None
    torch_error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def comparisons(self) -> list[Comparison]:
        return self.outputs + self.grads + self.hvps

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    def worst(self, kind: str, attr: str = "usage", against_torch_only: bool = False) -> float:
        """Worst ``attr`` over ``kind`` = ``'outputs'``, ``'grads'`` or ``'hvps'`` (0 if none);
        ``against_torch_only`` leaves out the arrays judged against the float64 reference (whose
        distance to torch is a documented deviation, not an error)."""
        vals = [getattr(c, attr) for c in getattr(self, kind) if c.size and not (against_torch_only and c.judged == "reference")]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        return max(vals, default=0.0)

    def __repr__(self) -> str:
        head = f"parity.Result({self.status}, dtype={self.dtype or '?'}"
        head += f", {len(self.outputs)} outputs, {len(self.grads)} grads, {len(self.hvps)} hvps)"
        lines = [head]
        if self.jax_error:
            lines.append(f"  jax raised:   {first_line(self.jax_error)}")
        if self.torch_error:
            lines.append(f"  torch raised: {first_line(self.torch_error)}")
        lines += ["  " + c.line() for c in self.comparisons]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = __repr__

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "dtype": self.dtype,
            "outputs": [c.to_json() for c in self.outputs],
            "grads": [c.to_json() for c in self.grads],
            "hvps": [c.to_json() for c in self.hvps],
            "jax_error": self.jax_error,
            "torch_error": self.torch_error,
            "notes": list(self.notes),
        }


def _g(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2g}" if x else "0"


def first_line(s: str) -> str:
    """The first line of an error text.

    >>> first_line("ValueError: bad" + chr(10) + "  traceback...")
    'ValueError: bad'
    """
    return s.strip().splitlines()[0] if s.strip() else s


class ErrorText(str):
    """The text of an exception (:func:`describe`), carrying its :func:`error_kind` as ``kind``.

    It is a ``str`` (reports and JSON take it as text); the kind travels with it, so two sides
    that both raised can be compared by kind, not by message.

    >>> from jaxloss.parity.result import ErrorText, describe
    >>> text = describe(KeyError("w"))
    >>> isinstance(text, ErrorText), isinstance(text, str), text.kind
    (True, True, 'KeyError')
    """

    kind: str = ""


def describe(e: BaseException) -> ErrorText:
    """``'TypeError: message'`` (first line), then a short traceback; ``.kind`` is :func:`error_kind`.

    >>> text = describe(ValueError("bad input"))
    >>> text.splitlines()[0], text.kind
    ('ValueError: bad input', 'ValueError')
    """
    msg = str(e).strip().splitlines()
    head = f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")
    text = ErrorText(head + "\n" + "".join(traceback.format_exception(e, limit=-3)))
    text.kind = error_kind(e)
    return text


def error_kind(e: BaseException) -> str:
    """The nearest built-in exception class of ``e``: what kind of error it is, whoever defined it.

    >>> class DimensionError(IndexError, ValueError): ...
    >>> error_kind(DimensionError()), error_kind(ZeroDivisionError())
    ('IndexError', 'ZeroDivisionError')
    """
    return next(c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins")


# The errors of one invalid input, by torch's kind: jaxloss copies torch's message, but raises
# ValueError where ATen raises its generic RuntimeError (jaxloss checks at trace time, where a
# RuntimeError would mean a broken program) and where a library checks with a bare ``assert``
# (smp: jaxloss's check must not vanish under ``python -O``); every other kind must be the same.
TORCH_TO_JAXLOSS_ERRORS: dict[str, tuple[str, ...]] = {"RuntimeError": ("RuntimeError", "ValueError"),
                                                       "AssertionError": ("AssertionError", "ValueError")}


def same_error_kind(jax_error: str, torch_error: str) -> bool:
    """Whether two errors (texts from :func:`describe`) are the same kind of error: both raising
    passes a comparison only then (:data:`TORCH_TO_JAXLOSS_ERRORS`).

    >>> same_error_kind(describe(ValueError("bad")), describe(RuntimeError("bad")))
    True
    >>> same_error_kind(describe(ValueError("bad")), describe(AssertionError("bad")))  # smp's bare asserts
    True
    >>> same_error_kind(describe(ZeroDivisionError()), describe(AttributeError("x")))
    False
    """
    j, t = getattr(jax_error, "kind", ""), getattr(torch_error, "kind", "")
    return bool(j) and j in TORCH_TO_JAXLOSS_ERRORS.get(t, (t,))


def same_error(a: float, b: float) -> bool:
    """Equal errors (NaN equals NaN).

    >>> same_error(float("nan"), float("nan")), same_error(1.0, 2.0)
    (True, False)
    """
    return a == b or (math.isnan(a) and math.isnan(b))


def is_smaller(a: float, b: float) -> bool:
    """``a < b`` for errors, NaN the largest.

    >>> is_smaller(1.0, float("nan")), is_smaller(float("nan"), 1.0)
    (True, False)
    """
    if math.isnan(b):
        return not math.isnan(a)
    return a < b


def jsonable(x: Any) -> Any:
    """``x`` with non-finite floats as the strings ``'inf'`` / ``'nan'``, tuples as lists and other
    unknown leaves as their ``repr``: the one JSON sanitiser of the parity reports.

    >>> jsonable({"a": (1.0, float("inf")), "b": None})
    {'a': [1.0, 'inf'], 'b': None}
    """
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return jsonable(x.item())
    return repr(x)
