"""One jit-compiled training step over ``nnx.split`` state, and the XLA:CPU options it compiles with.

:func:`make_train_step` is the plain step (forward, backward, optax update) that the PyTorch
twin (:mod:`train.twin`) and the train-step benchmark run; :mod:`train.loop` builds a richer
step (on-device batch gathering and augmentation, metric sums) and compiles it with the same
:func:`compiler_options`.

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

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = ["CPU_COMPILER_OPTIONS", "compiler_options", "make_train_step"]

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
    """
    platform = jax.devices()[0].platform if platform is None else platform
    if platform == "cpu" and _cpu_options_accepted():
        return dict(CPU_COMPILER_OPTIONS)
    return {}


def make_train_step(
    graphdef: Any, tx: optax.GradientTransformation, loss_fn: Callable[[jax.Array, jax.Array], jax.Array]
) -> Callable[..., Any]:
    """``step(params, rest, opt_state, x, y) -> (params, rest, opt_state, loss)``, jitted, buffers donated.

    ``jax.jit`` over the ``nnx.split(model, nnx.Param, ...)`` state (``nnx.jit`` would re-walk
    the object graph every call), compiled with :func:`compiler_options`. ``rest`` carries
    the BatchNorm statistics; the model runs in whatever train/eval mode ``graphdef`` holds.

    Args:
        graphdef: the model's static graph from ``nnx.split``.
        tx: the optax optimizer; ``opt_state`` is ``tx.init(params)``.
        loss_fn: ``loss_fn(logits, y) -> scalar``.
    """

    def step(params: Any, rest: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> Any:
        def objective(p: Any) -> tuple[jax.Array, Any]:
            model = nnx.merge(graphdef, p, rest, copy=True)  # fresh Variables: BatchNorm mutates inside grad
            loss = loss_fn(model(x), y)
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        (loss, new_rest), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_rest, opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2), compiler_options=compiler_options())
