"""Cross-framework twin run: the shipped train step and its torch twin, trained in lockstep.

``python -m jaxloss.parity.twin --model seed-cnn --steps 50 --out DIR``

The Flax side is what ``python -m jaxloss.train`` runs: the model, optimizer with schedule and loss
built by :mod:`jaxloss.train.recipe` from a :class:`jaxloss.train.config.TrainConfig` (the same flags as
``python -m jaxloss.train``: ``--optimizer --lr --momentum --lr-schedule --loss --gamma`` ...),
stepped by the compiled :func:`jaxloss.train.step.make_train_step`. The torch side is the same
network in plain ``torch.nn`` (:mod:`jaxloss.train.torch_models`), ``torch.optim`` with its
scheduler and torch's criterion of the same name, fed as :data:`jaxloss.train.losses.LOSSES` says.
Both start from the same weights (the torch twin's fresh torch-default initialisation,
converted with :func:`jaxloss.parity.weights.torch_to_flax`) and see the same batches in the same
order. After every step the run records the two losses, their difference and
the largest parameter difference (Flax weights in torch layout against torch's), and the
largest BatchNorm running-statistics difference. It prints a table and writes
``twin.md`` (the table), ``twin.json`` (every number and the configuration) and
``twin.png`` (the differences per step, log scale, with the tolerance) to ``--out``.

Data: synthetic CIFAR-shaped batches, no augmentation and no download. Each class has a
fixed random image template; an example is its class template plus unit Gaussian noise,
labels uniform. ``--steps`` distinct batches are drawn from ``--seed`` with NumPy, so
the run is reproducible and the loss goes down (there is something to learn).

Tolerance. *Strict*: the loss and every parameter element within ``atol + rtol * |torch|``
(parity's float32 table, :mod:`jaxloss.parity.tolerances`; ``--rtol`` / ``--atol`` change it).
That holds for the first steps only: float32 training is chaotic enough that rounding
differences grow, and a discrete event (a max-pool window whose two largest inputs are
within rounding of each other, a ReLU input within rounding of 0) moves a gradient by far
more than rounding. So the run also trains a float64 copy of the torch model (the
*reference*, ``--no-reference`` skips it) and measures torch's own float32 error on the
same trajectory. A step is *within float32 tolerance* when it is strict, or when the
Flax-torch difference is no larger than that error allows:
``max|p_jax - p_torch| <= atol + 2 max|p_torch - p_torch64|`` and
``|dloss| <= atol + rtol |loss| + 2 e_k`` (``e_k``: the largest ``|loss_torch -
loss_torch64|`` so far; twice because each framework rounds on its own). The table also
gives Flax's own error, ``max|p_jax - p_torch64|``, next to torch's. ``--dtype float64``
runs both frameworks in float64, where they agree to float64 rounding at every step:
the arithmetic is the same, the float32 differences are rounding. The exit status is 1
when a step is outside the tolerance.

What the rule cannot absorb is a discrete event on one side only: when Flax's float32 run
decides a near-tie differently from torch's float32 run *and* from the float64 run, Flax's
error jumps by orders of magnitude at that step while torch's does not, and the step
fails. Which run flips depends on the seed and on rounding details (e.g. which XLA:CPU
convolution is used): ResNet-18 at batch 32, seeds 0-3, 3 steps, flipped in Flax's run for
seeds 1 and 2 with XLA's default options and for seeds 0, 2 and 3 with
:func:`jaxloss.train.step.compiler_options`; the seed CNN's 50 steps (seed 0) are strict at 11
steps with the defaults and at 49 with those options. ``--dtype float64`` is the
flip-free comparison.

Diagnosis (``--no-diagnose`` skips it). At the first step outside tolerance, once per run,
:func:`jaxloss.parity.compare_training` (given the training losses) says whether the losses, the
gradients or the updates parted (``TwinDiagnosis.cause``) and names the first parameter out of tolerance (:func:`jaxloss.parity.compare_params`) and
the first layer (:func:`jaxloss.parity.compare_models` on the two models as they were before the step,
fed that step's batch: forward order, then backward order), with whether torch's own float32
run leaves its float64 run there too, and the first layer where only Flax's float32 run leaves
float64 (by more than twice torch's error there). It is printed under the verdict and stored in
``TwinResult.diagnosis``, ``twin.json`` and ``twin.md``. ResNet-18, float32, seed 0, step 2::

    first divergence at step 2: parameter layer4.1.conv2.weight (after the step); layer layer1.1 (forward, max abs 1.2e-05); torch's own float32 run also leaves float64 there: no
    first layer where only Flax's float32 run leaves float64: layer4.1.bn2 (grad)
    layer4.1.bn2: a gradient is 0 on one side only (a ReLU / max-pool decided differently): likely a near-tie flip, not a port bug: see --dtype float64

``layer1.1`` is float32 rounding over the strict per-layer tolerance (1.1 times it, 2 of
131072 elements; Flax within tolerance of float64 there too). The flip is the ReLU closing
block ``layer4.1`` (the gradient reaching ``bn2``): its input ``bn2 + identity`` at
``[3, 67, 0, 0]`` (NCHW) is 3.4e-6 in float64, 2.5e-6 in torch's float32 run and -1.9e-6 in
Flax's, within the float32 tolerance (atol 1e-5) of each other and of the tie at 0; it is
the only ReLU decision there where Flax and torch differ, and torch agrees with float64.

BatchNorm (ResNet-18): both models are in training mode on one device, so both normalise
with the statistics of the whole batch; the Flax BatchNorm is torch-exact (unbiased
running variance, torch momentum). Under data parallelism ``python -m jaxloss.train`` computes
statistics over the global batch (SyncBatchNorm), not per device as torch DDP does; the
twin compares the single-device case, where the two agree.

Precision: ``--precision ieee`` (the default) asks both frameworks for true float32
matmuls/convolutions (:func:`jaxloss.parity.precision`; the step is compiled with
``'highest'``), ``tf32`` for TF32 on both, ``default`` leaves each framework's own default.

Built on :func:`jaxloss.parity.compare_training` (the twin is that comparison on the project's
models; its step rule, table, plot and diagnosis are the ones a user of it gets). Layout, one job a
file: :mod:`~jaxloss.parity.twin.config` (the settings), :mod:`~jaxloss.parity.twin.losses` (the
loss pair; torch's missing criteria from :mod:`jaxloss.parity.references`),
:mod:`~jaxloss.parity.twin.sides` (models, batches, the two steps), :mod:`~jaxloss.parity.twin.run`
(the run), :mod:`~jaxloss.parity.twin.results` (what it returns), :mod:`~jaxloss.parity.twin.report`
(verdict, table, plot, files), :mod:`~jaxloss.parity.twin.cli` (the command line).

Programmatic use: :func:`run_twin` returns a :class:`TwinResult` with one :class:`TwinStep`
per step, the verdict, and for the first step outside tolerance a :class:`TwinFailure`
holding both models as they were *before* that step and its batch, ready for a layer-by-layer
comparison (``parity.compare_models(f.flax_model, f.torch_model, f.jax_args, f.torch_args)``).
"""

# re-exported for the command line's users and tests (the flags, the report pieces), not in __all__
from jaxloss.parity.twin.cli import _exact_command, build_parser, config_from_args, main  # noqa: F401
from jaxloss.parity.twin.config import PROG, SHARED_FIELDS, TwinConfig, check_config  # noqa: F401
from jaxloss.parity.twin.losses import loss_pair
from jaxloss.parity.twin.report import (  # noqa: F401
    REPORT_FILES,
    difference_kind,
    format_table,
    plot,
    summary,
    verdict_line,
    write_report,
)
from jaxloss.parity.twin.results import TwinDiagnosis, TwinFailure, TwinResult, TwinStep
from jaxloss.parity.twin.run import run_twin
from jaxloss.parity.twin.sides import synthetic_batches

__all__ = [
    "TwinConfig",
    "TwinDiagnosis",
    "TwinFailure",
    "TwinResult",
    "TwinStep",
    "check_config",
    "config_from_args",
    "loss_pair",
    "main",
    "run_twin",
    "synthetic_batches",
    "write_report",
]
