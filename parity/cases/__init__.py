"""The case grid: one module per loss family, each loss a builder plus a grid and a fuzzing space.

Where to look for a loss's cases:

============================================================  ==========================
losses                                                        module
============================================================  ==========================
l1, mse, huber, smooth_l1, poisson_nll, gaussian_nll          :mod:`jaxloss.parity.cases.regression`
cross_entropy, nll_loss, focal_loss                           :mod:`jaxloss.parity.cases.classification`
linear_cross_entropy                                          :mod:`jaxloss.parity.cases.linear`
binary_cross_entropy(_with_logits), soft_margin,
multilabel_soft_margin, sigmoid_focal_loss                    :mod:`jaxloss.parity.cases.binary`
kl_div                                                        :mod:`jaxloss.parity.cases.divergence`
multilabel_margin, multi_margin, margin_ranking, hinge         :mod:`jaxloss.parity.cases.margin`
pairwise_distance, cosine_similarity                          :mod:`jaxloss.parity.cases.distance`
cosine_embedding, triplet_margin(_with_distance)              :mod:`jaxloss.parity.cases.embedding`
ctc_loss                                                      :mod:`jaxloss.parity.cases.ctc`
generalized / distance / complete_box_iou_loss (torchvision)  :mod:`jaxloss.parity.cases.boxes`
smp.* (segmentation_models_pytorch's losses, jaxloss.smp)     :mod:`jaxloss.parity.cases.smp`
``torch.nn.*Loss`` modules through ``jaxloss.from_torch``     :mod:`jaxloss.parity.cases.modules`
============================================================  ==========================

A loss is declared with :func:`loss`: a *builder* turns a *spec* (a dict of
choices: shape kind, reduction, options, value regime, seed) into a
:class:`Case` holding float64 NumPy data. The ``grid`` lists the specs of the
systematic grid (each an override of ``defaults``); the ``space`` gives, for
each spec key, the choices the fuzzer draws from, simplest first (the shrinker
walks towards the front of each list). A case runs in each dtype of
``Case.dtypes`` (float64 unless the grid entry says otherwise: each loss's core
cases and value regimes run in all four dtypes, its option variations in
float64): the float64 data are rounded to the dtype, so jaxloss, torch and the
float64 reference all see the same numbers. Second derivatives are compared
in float64, for the core entries (those run in several dtypes) and entries with
``"hvp": True``.

Where torch itself is inexact, a case carries a :class:`TorchInexact` (the reason,
the dtypes, the float64 reference): in those dtypes it is judged against the
float64 truth instead of torch, and the reason appears in the report.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ALL_DTYPES = ("float64", "float32", "bfloat16", "float16")
F64 = ("float64",)
FAMILIES = ("regression", "classification", "linear", "binary", "divergence", "margin", "distance", "embedding", "ctc", "boxes", "modules", "monai", "smp")
# Families whose reference cannot be had here (e.g. smp's wheel: no cache, no network): family ->
# the reason and the command that fixes it. Filled by the family module instead of registering
# cases; the grid prints each as SKIPPED, never leaves it out silently.
SKIPPED: dict[str, str] = {}


class Invalid(Exception):
    """Raised by a builder for a spec that makes no valid case (the fuzzer draws again)."""


@dataclasses.dataclass(frozen=True)
class TorchInexact:
    """A known torch inexactness: in ``dtypes``, judge jaxloss against the float64 truth, not torch.

    The one mechanism for documented deviations. Where torch's own result is wrong
    (overflow, catastrophic cancellation, a clamp that underflows in half precision, a
    NaN where the limit exists), comparing with torch would either fail or require a
    looser tolerance; instead every array of the case is judged against a float64
    reference (``compare(..., judge="reference")``, with the dtype's usual tolerance;
    the reference is rounded once to the dtype), and ``reason`` is shown next to the
    case in every report. The same deviation must be listed in the jaxloss module's
    "Documented deviations" docstring and tested there.

    Attributes:
        reason: why torch is inexact here and what jaxloss returns instead.
        dtypes: the dtypes where torch is inexact (elsewhere the case is judged against torch).
        reference: float64 reference in torch ops (default: the case's torch function
            run on float64 inputs, right whenever float64 torch is exact).
        reference_expr: the reference as a Python expression, for reproducers.
    """

    reason: str
    dtypes: tuple[str, ...] = ALL_DTYPES
    reference: Callable[..., Any] | None = None
    reference_expr: str = ""


@dataclasses.dataclass
class Case:
    """One comparison: arguments (float64 master data) and how to judge them."""

    loss: str
    name: str
    args: tuple[Any, ...]  # positional values: NumPy arrays, scalars...
    kwargs: dict[str, Any]
    arg_names: tuple[str, ...]  # names of the positional parameters (for reports and coverage)
    grad: tuple[str, ...] = ()  # parameters to differentiate (names)
    dtypes: tuple[str, ...] = F64  # grid entries widen it (``"dtypes": ALL_DTYPES``)
    hvp: bool = True  # compare second derivatives (in float64, where torch can)
    torch_inexact: TorchInexact | None = None  # documented deviation: judged against float64
    jax_fn: Callable[..., Any] | None = None  # default: jaxloss.<loss>
    torch_fn: Callable[..., Any] | None = None  # default: torch.nn.functional.<loss>
    reference: Callable[..., Any] | None = None  # float64 reference (default: torch_fn)
    # dtype -> (float64 reference, its expression), where the truth depends on the compared dtype
    # (the library rounds an input-derived intermediate to it: smp's smoothed BCE target)
    reference_in: Callable[[str], tuple[Callable[..., Any], str]] | None = None
    jax_expr: str = ""  # Python expressions naming the three, for reproducers
    torch_expr: str = ""
    reference_expr: str = ""
    make: Callable[[str], tuple[Callable[..., Any], Callable[..., Any]]] | None = None  # dtype -> fns (modules)
    make_expr: Callable[[str], tuple[str, str]] | None = None
    covers: tuple[str, ...] = ()  # parameters exercised besides args / kwargs
    fuzz_dtypes: tuple[str, ...] | None = None  # a documented precision limit: dtypes the fuzzer may use
    note: str = ""
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.loss}/{self.name}"

    def params(self) -> set[str]:
        """Public parameters this case passes explicitly."""
        return set(self.arg_names[: len(self.args)]) | set(self.kwargs) | set(self.covers)

    def deviation(self, dtype: str) -> TorchInexact | None:
        """The documented torch inexactness that applies in ``dtype`` (None: judged against torch)."""
        t = self.torch_inexact
        return t if t is not None and dtype in t.dtypes else None

    def judge(self, dtype: str) -> str:
        """``'reference'`` where a :class:`TorchInexact` applies, else ``'torch'``."""
        return "reference" if self.deviation(dtype) else "torch"

    def reference_for(self, dtype: str) -> tuple[Callable[..., Any] | None, str]:
        """The float64 reference and its expression (``None``: torch_fn in float64)."""
        t = self.deviation(dtype)
        if t is not None and t.reference is not None:
            return t.reference, t.reference_expr
        if self.reference_in is not None:
            return self.reference_in(dtype)
        return self.reference, self.reference_expr

    def grad_argnums(self) -> tuple[int | str, ...]:
        pos = {n: i for i, n in enumerate(self.arg_names[: len(self.args)])}
        return tuple(pos.get(g, g) for g in self.grad)


@dataclasses.dataclass
class Loss:
    """A loss under test: its builder, public parameters, grid and fuzzing space."""

    name: str
    family: str
    params: tuple[str, ...]
    build: Callable[[dict[str, Any]], Case]
    defaults: dict[str, Any]
    grid: list[dict[str, Any]]
    space: dict[str, list[Any]]
    torch_name: str = ""  # e.g. "F.cross_entropy", "torch-op reference"

    def spec(self, overrides: dict[str, Any]) -> dict[str, Any]:
        s = dict(self.defaults)
        s.update({k: v for k, v in overrides.items() if k not in ("dtypes", "id")})
        return s

    def case(self, overrides: dict[str, Any]) -> Case:
        """Build one case from a grid entry or fuzz spec (``dtypes`` / ``id`` keys honoured)."""
        spec = self.spec(overrides)
        c = self.build(spec)
        c.spec = spec
        if "dtypes" in overrides:
            c.dtypes = tuple(overrides["dtypes"])
        # second order: for the core entries (run in several dtypes) or when asked; it
        # roughly doubles a case's compile time, so option variations skip it
        c.hvp = c.hvp and bool(overrides.get("hvp", len(c.dtypes) > 1))
        c.name = overrides.get("id") or _spec_name(overrides)
        return c

    def grid_cases(self) -> list[Case]:
        cases = [self.case(o) for o in self.grid]
        seen: dict[str, int] = {}
        for c in cases:  # unique names
            n = seen.get(c.name, 0)
            seen[c.name] = n + 1
            if n:
                c.name = f"{c.name}#{n}"
        return cases


def _spec_name(overrides: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in overrides.items() if k not in ("dtypes", "id", "seed")]
    return ",".join(parts) or "default"


REGISTRY: dict[str, Loss] = {}


def loss(
    name: str,
    family: str,
    params: Sequence[str],
    defaults: dict[str, Any],
    grid: list[dict[str, Any]],
    space: dict[str, list[Any]],
    torch_name: str = "",
) -> Callable[[Callable[[dict[str, Any]], Case]], Callable[[dict[str, Any]], Case]]:
    """Register a builder ``spec -> Case`` for the loss ``name``."""

    def register(build: Callable[[dict[str, Any]], Case]) -> Callable[[dict[str, Any]], Case]:
        REGISTRY[name] = Loss(name, family, tuple(params), build, dict(defaults), list(grid), dict(space), torch_name or f"F.{name}")
        return build

    return register


def load() -> dict[str, Loss]:
    """Import every family module (registering its losses); returns the registry."""
    for fam in FAMILIES:
        importlib.import_module(f"jaxloss.parity.cases.{fam}")
    return REGISTRY


# --------------------------------------------------------------------------- data helpers
def rng_for(spec: dict[str, Any], salt: str = "") -> np.random.Generator:
    """The generator of a spec's values: seeded by ``spec['seed']`` and a salt."""
    import zlib

    return np.random.default_rng([int(spec.get("seed", 0)), zlib.crc32(salt.encode())])


def traced_option(name: str, option: str) -> Callable[..., Any]:
    """``jaxloss.<name>`` with the numeric ``option`` passed as a JAX array (a traced value
    inside jit) in the input's compute dtype, instead of a Python number."""

    def call(*args: Any, **kwargs: Any) -> Any:
        import jax.numpy as jnp

        import jaxloss

        work = jnp.promote_types(jnp.result_type(args[0]), jnp.float32)
        kwargs[option] = jnp.asarray(kwargs[option], work)
        return getattr(jaxloss, name)(*args, **kwargs)

    return call


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True) if x.size else x
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    return np.exp(log_softmax(x, axis))


def signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape)
