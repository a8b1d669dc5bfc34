"""parity: proof that every jaxloss function equals its torch twin.

Command line (see :mod:`jaxloss.parity.__main__`)::

    python -m jaxloss.parity                      # the whole case grid, report in parity-report/
    python -m jaxloss.parity --loss cross_entropy --dtype float32
    python -m jaxloss.parity --fuzz 200 --seed 1  # random cases; failures shrunk to reproducers

Python::

    from jaxloss import parity
    r = parity.compare(jaxloss.l1_loss, torch.nn.functional.l1_loss, x, y, grad_argnums=(0,))
    r.passed, print(r)
    parity.assert_close(...)              # the same, raising AssertionError (pytest)
    parity.compare_many([parity.CompareRequest(...), ...])  # several, one compiled JAX program
    parity.compare_models(flax_model, torch_model, x_nhwc, x_nchw)  # where a ported model diverges
    parity.load_torch_weights(flax_model, torch_model)  # a torch model's weights into its NNX port (parity.weights)
    parity.export_torch_weights(flax_model, torch_model)  # and back, as a state_dict
    parity.to_float64(flax_model)         # the float64 twin of an NNX model
    parity.compare_training(jax_step, torch_step, (flax_model, opt), (torch_model, opt), batches)  # a training run
    with parity.precision("ieee"): ...    # true float32 in JAX and torch together (parity.precisions)

Second derivatives are compared as torch's double backward computes them (the
gradient of ``<gradient, v>``, i.e. ``v^T H``). Where torch itself is inexact, a
case declares a :class:`jaxloss.parity.cases.TorchInexact` and is judged against the
float64 truth instead (the reason is printed in every report).

Layout: :mod:`jaxloss.parity.compare` (the comparison engine), :mod:`jaxloss.parity.tolerances`
(the one tolerance table, ULP helpers), :mod:`jaxloss.parity.cases` (the case grid, one
module per loss family, and the fuzzing spaces), :mod:`jaxloss.parity.references`
(torch-op references for what torch lacks), :mod:`jaxloss.parity.runner` (grid / fuzz
runs, shrinking, reproducers), :mod:`jaxloss.parity.report` (JSON, Markdown, HTML),
:mod:`jaxloss.parity.models` (model comparison layer by layer, golden files; ``python -m jaxloss.parity.models``),
:mod:`jaxloss.parity.precisions` (the float32 precision of both frameworks: :func:`jaxloss.parity.precision`).

Importing this package turns on ``jax_enable_x64``.
"""

from typing import Any

if __name__.split(".")[0] != "jaxloss":  # imported from a checkout as a top-level package
    raise ImportError(
        f"this package is installed as 'jaxloss.{__name__}' (the top-level name '{__name__}' collides with "
        f"users' own {__name__}.py): use 'from jaxloss import {__name__}' and 'python -m jaxloss.{__name__}'"
    )

from jaxloss.parity.compare import CompareRequest, Comparison, Result, assert_close, compare, compare_many
from jaxloss.parity.precisions import precision
from jaxloss.parity.tolerances import TOLERANCES, Tolerance, tolerance_for, ulp, ulp_error

__all__ = [
    "TOLERANCES",
    "CompareRequest",
    "Comparison",
    "LayerDiff",
    "LoadReport",
    "ModelReport",
    "Result",
    "Tolerance",
    "TrainingReport",
    "assert_close",
    "compare",
    "compare_golden",
    "compare_many",
    "compare_models",
    "compare_params",
    "compare_training",
    "exact_attention",
    "export_torch_weights",
    "load_torch_weights",
    "precision",
    "save_golden",
    "to_float64",
    "tolerance_for",
    "ulp",
    "ulp_error",
]

_MODELS = ("LayerDiff", "ModelReport", "compare_models", "compare_params", "compare_golden", "save_golden", "to_float64",
           "exact_attention")
_WEIGHTS = ("LoadReport", "load_torch_weights", "export_torch_weights")
_TRAINING = ("compare_training", "TrainingReport")  # imports Flax too: loaded on first use


def __getattr__(name: str) -> Any:
    """The model comparison (:mod:`jaxloss.parity.models`, which imports Flax) is loaded on first use."""
    if name in _MODELS:
        import jaxloss.parity.models  # noqa: F401
        from jaxloss import parity

        return getattr(parity.models, name)
    if name in _WEIGHTS:
        import jaxloss.parity.weights  # noqa: F401
        from jaxloss import parity

        return getattr(parity.weights, name)
    if name in _TRAINING:
        import jaxloss.parity.training  # noqa: F401
        from jaxloss import parity

        return getattr(parity.training, name)
    raise AttributeError(f"module 'parity' has no attribute {name!r}")
