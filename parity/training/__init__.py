"""A user's own training run, Flax NNX against its torch original: the first divergent step, and why.

::

    from jaxloss import parity
    report = parity.compare_training(jax_step, torch_step, (flax_model, nnx_optimizer),
                                     (torch_model, torch_optimizer), batches,
                                     losses=(jax_loss, torch_loss), reference=True)
    report.passed            # every step within tolerance (and at least one step ran)
    report.first_divergence  # None, or .step, .kind ("loss" | "grad" | "update"), .name, .layer, .detail
    print(report)            # the verdict, the first divergence, then one row per step

Layout: :mod:`~jaxloss.parity.training.run` (the lockstep run), :mod:`~jaxloss.parity.training.records`
(the records and the one step rule), :mod:`~jaxloss.parity.training.diagnosis` (why a step diverged),
:mod:`~jaxloss.parity.training.table` (the per-step table and plot). ``python -m jaxloss.parity.twin``
is this comparison on the project's own models.
"""

from jaxloss.parity.training.records import (
           Divergence,
           StepStart,
           TrainingReport,
           TrainingStep,
           judge_step,
           within_reference,
)
from jaxloss.parity.training.run import compare_training
from jaxloss.parity.training.table import format_table, plot_steps

__all__ = ["Divergence", "StepStart", "TrainingReport", "TrainingStep", "compare_training", "format_table",
           "judge_step", "plot_steps", "within_reference"]
