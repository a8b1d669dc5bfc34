"""One jit-compiled training step over ``nnx.split`` state, and the XLA:CPU options it compiles with.

:func:`make_train_step` is *the* train step (forward, backward, optax update, running metric
sums) and :func:`make_eval_step` the eval step: :mod:`jaxloss.train.loop` trains with them,
:mod:`jaxloss.parity.twin` runs the same compiled function against torch, and
``benchmarks.train_step`` times it. Batches reach them already on the device, gathered and
augmented by :mod:`jaxloss.train.feed`.

Why XLA:CPU needs options here
    XLA:CPU (jaxlib 0.10.2) hands convolutions and elementwise fusions to YNNPACK by default
    (the debug option ``xla_cpu_experimental_ynn_fusion_type``). For the seed CNN's 5x5
    convolutions YNNPACK is 2-6x slower than XLA's own (Eigen) convolution: batch 128, the
    first layer's forward pass takes 83 ms with YNNPACK and 13.5 ms without, and the whole
    train step goes from ~1.7x torch eager's time to about torch's. YNNPACK's *reductions*
    are the fast ones, though: without them XLA:CPU rewrites the bias gradients (sums over
    N, H, W) into a two-stage reduce-window that takes 10 ms for one 128x32x32x32 sum
    against 0.5 ms in YNNPACK, and YNNPACK's is the more accurate of the two (relative error
    8e-8 against 3e-6 from float64). So training steps compile with YNNPACK for reductions
    only (:data:`CPU_COMPILER_OPTIONS`). The figures and the probes that found this are in
    ``benchmarks/RESULTS.md``. Other platforms compile with XLA's defaults.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = ["CPU_COMPILER_OPTIONS", "compiler_options", "make_eval_step", "make_train_step"]

CPU_COMPILER_OPTIONS: dict[str, str] = {
    # YNNPACK for reductions; convolutions, dots and elementwise fusions by XLA itself.
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE",
}


@functools.cache
def _cpu_options_accepted() -> bool:
    """Whether the installed XLA knows every option of :data:`CPU_COMPILER_OPTIONS`.

    The option is experimental: a jaxlib that drops or renames it must not break training,
    only lose the speed-up.
    """
    try:
        jax.jit(jnp.sum).lower(jnp.zeros(2, jnp.float32)).compile(dict(CPU_COMPILER_OPTIONS))
    except Exception:  # noqa: BLE001 - XLA reports an unknown option as a generic runtime error
        return False
    return True


def compiler_options(platform: str | None = None) -> dict[str, str]:
    """The compiler options a training step is compiled with on ``platform``.

    Args:
        platform: ``'cpu'``, ``'gpu'``, ``'tpu'``...; ``None`` means the default device's.

    Returns:
        :data:`CPU_COMPILER_OPTIONS` on CPU when the installed XLA accepts them, else ``{}``
        (a fresh dict: callers may change it).

    >>> from jaxloss.train.step import compiler_options
    >>> compiler_options("gpu")
    {}
    """
    platform = jax.devices()[0].platform if platform is None else platform
    if platform == "cpu" and _cpu_options_accepted():
        return dict(CPU_COMPILER_OPTIONS)
    return {}


def _float_logits(logits: jax.Array) -> jax.Array:
    """Logits in at least float32 (bf16 compute gives bf16 logits; float64 stays float64)."""
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def _precision(matmul_precision: str | None) -> Any:
    """The context the step is traced in: dots and convolutions take their precision from it."""
    return contextlib.nullcontext() if matmul_precision is None else jax.default_matmul_precision(matmul_precision)


def make_train_step(
    graphdef: Any,
    tx: optax.GradientTransformation,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    matmul_precision: str | None = None,
) -> Any:
    """The train step: ``step(params, rest, opt_state, sums, x, y) -> (params, rest, opt_state, sums, loss)``.

    One forward/backward pass and optax update over ``nnx.split(model, nnx.Param, ...)``
    state, ``jax.jit`` compiled with :func:`compiler_options`, the first four buffers
    donated (``nnx.jit`` would re-walk the object graph every call). ``rest`` carries the
    BatchNorm statistics; the model runs in whatever train/eval mode ``graphdef`` holds.
    ``sums`` is the running ``[sum of loss * n, correct, n]`` the loop reports from (a
    zero vector to start). The logits and the loss are computed in at least float32.
    :mod:`jaxloss.train.loop`, :mod:`jaxloss.parity.twin` and the benchmark call this function.

    Args:
        graphdef: the model's static graph from ``nnx.split``.
        tx: the optax optimizer; ``opt_state`` is ``tx.init(params)``.
        loss_fn: ``loss_fn(logits, labels) -> scalar``.
        matmul_precision: JAX precision the step's matmuls/convolutions are traced with
            (``'highest'``, ``'tensorfloat32'``...; ``None``: the caller's default).

    >>> import jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> from jaxloss.train.losses import make_loss
    >>> from jaxloss.train.step import make_train_step
    >>> model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    >>> graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    >>> tx = optax.sgd(0.1)
    >>> step = make_train_step(graphdef, tx, make_loss("cross_entropy"), matmul_precision="highest")
    >>> params, rest, opt_state, sums, loss = step(
    ...     params, rest, tx.init(params), jnp.zeros(3), jnp.ones((4, 3)), jnp.array([0, 1, 0, 1]))
    >>> loss.dtype, [float(v) for v in sums[1:]] == [float(sums[1]), 4.0]
    (dtype('float32'), True)
    """

    def step(params: Any, rest: Any, opt_state: Any, sums: jax.Array, x: jax.Array, y: jax.Array) -> Any:
        with _precision(matmul_precision):

            def objective(p: Any) -> tuple[jax.Array, Any]:
                model = nnx.merge(graphdef, p, rest, copy=True)  # fresh Variables: BatchNorm mutates inside grad
                logits = _float_logits(model(x))
                return loss_fn(logits, y).astype(logits.dtype), (logits, nnx.state(model, nnx.Not(nnx.Param)))

            (loss, (logits, new_rest)), grads = jax.value_and_grad(objective, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        n = y.shape[0]
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
        sums = sums + jnp.stack([loss * n, correct, n]).astype(sums.dtype)
        return params, new_rest, opt_state, sums, loss

    return jax.jit(step, donate_argnums=(0, 1, 2, 3), compiler_options=compiler_options())


def make_eval_step(
    graphdef: Any, loss: Any, *, matmul_precision: str | None = None
) -> Any:
    """The eval step: ``step(params, rest, sums, x, y, mask) -> sums + [sum loss, sum correct, sum mask]``.

    ``graphdef`` is the model in eval mode (BatchNorm uses its running statistics);
    ``loss.per_example(logits, y)`` gives the (N,) losses; ``mask`` (N,) is 1 for real
    examples and 0 for padding. Compiled like :func:`make_train_step`.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxloss.train.losses import make_loss
    >>> from jaxloss.train.step import make_eval_step
    >>> graphdef, params, rest = nnx.split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Param, ...)
    >>> step = make_eval_step(graphdef, make_loss("cross_entropy"))
    >>> sums = step(params, rest, jnp.zeros(3), jnp.ones((4, 3)), jnp.array([0, 1, 0, 1]), jnp.array([1., 1., 1., 0.]))
    >>> float(sums[2])
    3.0
    """

    def step(params: Any, rest: Any, sums: jax.Array, x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
        with _precision(matmul_precision):
            logits = _float_logits(nnx.merge(graphdef, params, rest)(x))
            per = loss.per_example(logits, y).astype(sums.dtype)
        correct = (jnp.argmax(logits, axis=-1) == y).astype(sums.dtype)
        mask = mask.astype(sums.dtype)
        return sums + jnp.stack([jnp.sum(per * mask), jnp.sum(correct * mask), jnp.sum(mask)])

    return jax.jit(step, donate_argnums=(2,), compiler_options=compiler_options())
