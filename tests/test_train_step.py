"""jaxloss.train.step: the XLA:CPU compiler options a training step compiles with, and their fallback."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss.train import step


def _conv_and_bias_grad(x: jax.Array, w: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = lax.conv_general_dilated(x, w, (1, 1), [(2, 2), (2, 2)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y, jnp.sum(g, axis=(0, 1, 2))  # a bias gradient: the sum over N, H, W


def _entry_hlo(options: dict[str, str]) -> str:
    """The compiled entry computation at the seed CNN's first-layer shapes (XLA picks libraries by size)."""
    f32 = jnp.float32
    x, w, g = (jax.ShapeDtypeStruct(s, f32) for s in [(128, 32, 32, 3), (5, 5, 3, 32), (128, 32, 32, 32)])
    hlo = jax.jit(_conv_and_bias_grad).lower(x, w, g).compile(options).as_text()
    return hlo[hlo.index("ENTRY") :]


def test_cpu_options_keep_convolutions_in_xla_and_reductions_in_ynnpack():
    opts = step.compiler_options("cpu")
    assert opts == step.CPU_COMPILER_OPTIONS
    hlo = _entry_hlo(opts)
    assert " convolution(" in hlo, hlo  # XLA's own convolution instruction
    assert hlo.count("__ynn_fusion") == 1, hlo  # only the reduction went to YNNPACK
    # with XLA's defaults the convolution is a YNNPACK fusion too: the option is what changes it
    default = _entry_hlo({})
    assert " convolution(" not in default and default.count("__ynn_fusion") == 2, default


def test_other_platforms_compile_with_defaults():
    assert step.compiler_options("gpu") == {} and step.compiler_options("tpu") == {}


def test_an_option_xla_does_not_know_is_dropped_not_fatal(monkeypatch):
    monkeypatch.setattr(step, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option_for_this_test": "1"})
    step._cpu_options_accepted.cache_clear()
    try:
        assert step.compiler_options("cpu") == {}
    finally:
        step._cpu_options_accepted.cache_clear()


def test_precision_settings_reach_the_compiled_step():
    """fp32 traces every matmul/convolution at HIGHEST (true float32 on GPUs too), tf32 at TF32's HIGH."""
    import optax
    from flax import nnx

    from jaxloss.train.config import MATMUL_PRECISION
    from jaxloss.train.losses import make_loss

    graphdef, params, rest = nnx.split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Param, ...)
    tx = optax.sgd(0.1)
    args = (params, rest, tx.init(params), jnp.zeros(3, jnp.float32), jnp.ones((4, 3), jnp.float32), jnp.zeros(4, jnp.int32))

    def dots(precision: str) -> set[str]:
        fn = step.make_train_step(graphdef, tx, make_loss("cross_entropy"), matmul_precision=MATMUL_PRECISION[precision])
        text = fn.lower(*args).as_text()
        return {line.split("precision = ")[1].split("]")[0] for line in text.splitlines() if "dot_general" in line}

    assert dots("fp32") == {"[HIGHEST, HIGHEST"}
    assert dots("tf32") == {"[HIGH, HIGH"}
    assert all("HIGHEST" not in d for d in dots("bf16"))  # bf16: XLA's default for the bfloat16 compute
