"""Images/s of one training step: the shipped Flax step (:func:`train.step.make_train_step` on the model,
optimizer and loss :mod:`train.recipe` builds from ``python -m train``'s defaults: SGD momentum 0.9,
cross entropy, float32) against its PyTorch twin (eager), on CIFAR-shaped batches.
Each (framework, model, batch) runs in its own subprocess so that its peak resident memory is
its own.

    python -m benchmarks.train_step [--models seed-cnn resnet18] [--batch-sizes 128 512] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from benchmarks.timing import peak_rss_mib, reset_peak_rss, rss_mib


def _jax_step(model_name: str, batch: int) -> Any:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from train.config import MATMUL_PRECISION, TrainConfig
    from train.recipe import build_loss, build_model, build_optimizer
    from train.step import make_train_step

    cfg = TrainConfig(model=model_name, batch_size=batch)
    model = build_model(cfg)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, _ = build_optimizer(cfg, steps_per_epoch=1)
    step = make_train_step(graphdef, tx, build_loss(cfg), matmul_precision=MATMUL_PRECISION[cfg.precision])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 32, 32, 3)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, size=(batch,)).astype(np.int32))
    state = [params, rest, tx.init(params), jnp.zeros(3, jnp.float32)]

    def call() -> None:
        *state[:4], loss = step(*state, x, y)
        jax.block_until_ready(loss)

    return call


def _torch_step(model_name: str, batch: int) -> Any:
    import torch
    import torch.nn.functional as F

    from train.torch_models import TorchResNet18, TorchSeedCNN

    torch.manual_seed(0)
    model = TorchSeedCNN() if model_name == "seed-cnn" else TorchResNet18()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(batch, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, size=(batch,)))

    def call() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return call


def run_variant(framework: str, model: str, batch: int, steps: int) -> dict[str, Any]:
    call = _jax_step(model, batch) if framework == "jax" else _torch_step(model, batch)
    call()
    call()
    base = rss_mib()
    reset_peak_rss()  # the peak of the timed steps only, not of compilation / warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    return {"framework": framework, "model": model, "batch": batch, "images_per_s": batch / sec,
            "step_ms": 1e3 * sec, "peak_mib": max(0.0, peak_rss_mib() - base)}  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["seed-cnn", "resnet18"])
    p.add_argument("--batch-sizes", nargs="*", type=int, default=[128, 512])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--variant", nargs=3, metavar=("FRAMEWORK", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:
        fw, model, batch = args.variant
        print(json.dumps(run_variant(fw, model, int(batch), args.steps)))
        return ""
    lines = [
        "JAX: the shipped `train.step.make_train_step` (compiled with `train.step.compiler_options()`); torch: the eager "
        "twin. SGD(momentum=0.9) + cross_entropy, float32, CIFAR-shaped random batches; median of "
        f"{args.steps} steps after 2 warm-up steps. Peak MiB: rise of the resident memory during the timed "
        "steps above its level after warm-up (parameters, optimizer state and the batch excluded).",
        "",
        "| model | batch | jax img/s | torch img/s | jax/torch | jax peak MiB | torch peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in args.models:
        for batch in args.batch_sizes:
            res = {}
            for fw in ("jax", "torch"):
                cmd = [sys.executable, "-m", "benchmarks.train_step", "--steps", str(args.steps),
                       "--variant", fw, model, str(batch)]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError(f"{fw} {model} {batch} failed:\n{out.stderr[-3000:]}")
                res[fw] = json.loads(out.stdout.strip().splitlines()[-1])
                print(res[fw], flush=True)
            j, t = res["jax"], res["torch"]
            lines.append(
                f"| {model} | {batch} | {j['images_per_s']:.0f} | {t['images_per_s']:.0f} | "
                f"{j['images_per_s'] / t['images_per_s']:.2f} | {j['peak_mib']:.0f} | {t['peak_mib']:.0f} |"
            )
    md = "\n".join(lines)
    print(md)
    return md


if __name__ == "__main__":
    main()
