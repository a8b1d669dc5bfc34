"""jaxloss.smp's Dice, Jaccard and Lovasz against segmentation_models_pytorch's, value + gradient.

``(8, 4, 128, 128)`` float32 logits, multiclass targets (Lovasz: also the binary hinge on the
``(8, 1, 128, 128)`` slice): jaxloss jitted against smp's loss code run eagerly in torch
(:mod:`jaxloss.parity.smp_reference`: the installed package or smp's wheel), both on the CPU, in
one process, with the ratio ``smp time / jaxloss time``. :func:`rows` is importable (a combined
segmentation benchmark can append these rows to its own table).

    python -m benchmarks.seg_smp [--append benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.timing import block, machine_header, markdown_table, median_seconds

SHAPE = (8, 4, 128, 128)
HEADERS = ["loss", "mode", "shape", "jaxloss jit ms", "smp eager ms", "smp / jaxloss"]


def _cases() -> list[tuple[str, str, str, dict[str, Any], bool]]:
    """``(jaxloss name, smp class, mode, options, binary slice)``."""
    return [
        ("dice_loss", "DiceLoss", "multiclass", {}, False),
        ("jaccard_loss", "JaccardLoss", "multiclass", {}, False),
        ("lovasz_loss", "LovaszLoss", "multiclass", {}, False),
        ("lovasz_loss", "LovaszLoss", "binary", {}, True),
    ]


def _jax_step(name: str, mode: str, options: dict[str, Any]) -> Callable[..., Any]:
    from jaxloss import smp

    fn = getattr(smp, name)
    return jax.jit(jax.value_and_grad(lambda x, y: fn(x, y, mode, **options)))


def _torch_step(cls: str, mode: str, options: dict[str, Any]) -> Callable[..., Any]:
    from jaxloss.parity import smp_reference

    loss = getattr(smp_reference.load(), cls)(mode, **options)

    def step(x: torch.Tensor, y: torch.Tensor) -> Any:
        x = x.detach().requires_grad_(True)
        value = loss(x, y)
        (grad,) = torch.autograd.grad(value, [x])
        return value, grad

    return step


def rows(shape: tuple[int, ...] = SHAPE) -> list[list[Any]]:
    """One row per case: milliseconds per value+gradient call and the ratio."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=shape).astype(np.float32)
    labels = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
    out = []
    for name, cls, mode, options, binary in _cases():
        x = logits[:, :1] if binary else logits
        y = (labels > 0).astype(np.int64)[:, None] if binary else labels
        jstep, tstep = _jax_step(name, mode, options), _torch_step(cls, mode, options)
        xj, yj, xt, yt = jnp.asarray(x), jnp.asarray(y), torch.from_numpy(x), torch.from_numpy(y)
        value_j, _ = jstep(xj, yj)
        value_t, _ = tstep(xt, yt)
        if not np.isclose(float(value_j), float(value_t), rtol=1e-4, atol=1e-6):
            raise AssertionError(f"{name} {mode}: jaxloss {float(value_j)} != smp {float(value_t)}")
        t_jax = median_seconds(lambda: block(jstep(xj, yj)))  # noqa: B023 - called before the loop moves on
        t_torch = median_seconds(lambda: tstep(xt, yt))  # noqa: B023
        out.append([name, mode, "x".join(map(str, x.shape)), t_jax * 1e3, t_torch * 1e3, t_torch / t_jax])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.seg_smp", description=__doc__.split("\n")[0])
    ap.add_argument("--append", metavar="FILE", help="append the dated table to FILE (e.g. benchmarks/RESULTS.md)")
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", False)  # a user's program: importing parity turned it on
    torch.set_num_threads(max(1, torch.get_num_threads()))
    table = markdown_table(HEADERS, rows())
    text = (f"\n## jaxloss.smp against segmentation_models_pytorch (CPU, value + gradient, float32)\n\n"
            f"{machine_header()}\n{table}\n")
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
