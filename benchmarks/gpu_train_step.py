"""Training-step speed on one device: the Flax model against the same torch model, eager and compiled.

One framework and one model per process (``benchmarks.gpu`` starts one per pair), so that each
has the device's memory to itself and its own peak. Every timed configuration prints one JSON
line. Both frameworks run in :func:`benchmarks.timing.benchmark_precision` (true float32, the
kernels each framework would pick, float64 off); torch with ``cudnn.benchmark`` on, as a tuned torch
training script has it (JAX's XLA autotunes its convolutions always).

* steps: SGD(momentum 0.9) + cross entropy on one CIFAR-shaped random batch held on the
  device, median step time with the steps queued (:func:`benchmarks.timing.in_flight_seconds`);
* epoch: one pass over ``--epoch-images`` CIFAR-shaped random images held on the device, in
  batches of the largest batch size, wall time from the first step to the last result.

JAX: ``train.models.build_model`` + ``train.step.make_train_step`` (jit, donated buffers) with
optax's SGD; torch: ``train.torch_models`` with ``torch.optim.SGD`` (foreach), eager and
``torch.compile`` of forward + loss (backward through AOTAutograd, optimizer eager). Only
these few names of ``train`` are used; an import that fails prints a ``skipped`` line.

    python -m benchmarks.gpu_train_step --framework jax|torch --model seed-cnn [--batch-sizes 128 512]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.timing import in_flight_seconds

IMAGE = (32, 32, 3)
CLASSES = 10


def _emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` CIFAR-shaped random images and labels; beyond 1024 images, the first 1024 repeated
    (the speed does not depend on the values, and 50 000 fresh normals cost seconds)."""
    rng = np.random.default_rng(seed)
    m = min(n, 1024)
    x = rng.standard_normal(size=(m, *IMAGE), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=(m,)).astype(np.int32)
    reps = -(-n // m)
    return np.tile(x, (reps, 1, 1, 1))[:n], np.tile(y, reps)[:n]


def _epoch_row(
    framework: str, variant: str, model: str, batch: int, images: int, sec: float
) -> dict[str, Any]:
    return {"framework": framework, "variant": variant, "model": model, "batch": batch, "epoch_images": images,
            "epoch_s": sec, "images_per_s": images / sec}  # fmt: skip


def _step_row(
    framework: str, variant: str, model: str, batch: int, sec: float, first: float
) -> dict[str, Any]:
    return {"framework": framework, "variant": variant, "model": model, "batch": batch, "step_ms": 1e3 * sec,
            "images_per_s": batch / sec, "first_step_s": first}  # fmt: skip


def _error_row(
    framework: str, variant: str, model: str, batch: int, e: Exception, what: str
) -> dict[str, Any]:
    text = str(e).splitlines()[0][:200] if str(e) else ""
    return {
        "framework": framework,
        "variant": variant,
        "model": model,
        "batch": batch,
        "error": f"{what}: {type(e).__name__}: {text}",
    }


def _measure(
    framework: str,
    variant: str,
    model: str,
    batches: list[int],
    steps: int,
    epoch_images: int,
    make_step: Callable[[int], Callable[[Any, Any], Any]],
    to_device: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]],
    finish: Callable[[Any], Any],
) -> None:
    """Largest batch first (issue 12's targets are at batch 512), its epoch right after with the
    same compiled step; one JSON line per result, an error line where a configuration fails."""
    for batch in sorted(batches, reverse=True):
        try:
            step = make_step(batch)
            x, y = to_device(*_data(batch))
            t0 = time.perf_counter()
            finish(step(x, y))
            first = time.perf_counter() - t0
            sec = in_flight_seconds(
                lambda s=step, a=x, b=y: s(a, b), finish, in_flight=steps, min_reps=3, min_time=0.5, warmup=1
            )
            _emit(_step_row(framework, variant, model, batch, sec, first))
            if batch != max(batches) or not epoch_images:
                continue
            xs, ys = _data(max(batch, epoch_images // batch * batch), seed=1)
            x_all, y_all = to_device(xs, ys)
            t0 = time.perf_counter()
            out = None
            for i in range(0, len(xs), batch):
                out = step(x_all[i : i + batch], y_all[i : i + batch])
            finish(out)
            _emit(_epoch_row(framework, variant, model, batch, len(xs), time.perf_counter() - t0))
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile failing on a platform: say so, go on
            _emit(_error_row(framework, variant, model, batch, e, "step"))


def _jax_rows(model_name: str, batches: list[int], steps: int, epoch_images: int) -> None:
    import jax
    import optax
    from flax import nnx

    import jaxloss
    from train.models import build_model
    from train.step import make_train_step

    def make_step(batch: int) -> Callable[[Any, Any], Any]:
        model = build_model(model_name, rngs=nnx.Rngs(0))
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = optax.sgd(0.01, momentum=0.9)
        step = make_train_step(graphdef, tx, jaxloss.cross_entropy)
        state = [params, rest, tx.init(params)]

        def call(x: Any, y: Any) -> Any:
            state[0], state[1], state[2], loss = step(state[0], state[1], state[2], x, y)
            return loss

        return call

    def to_device(xs: np.ndarray, ys: np.ndarray) -> tuple[Any, Any]:
        return jax.device_put(xs), jax.device_put(ys)

    _measure(
        "jax", "jit", model_name, batches, steps, epoch_images, make_step, to_device, jax.block_until_ready
    )


def _torch_rows(
    model_name: str, batches: list[int], steps: int, epoch_images: int, device: str, compile_backend: str
) -> None:
    import torch
    import torch.nn.functional as F

    from benchmarks.bandwidth import torch_sync
    from train import torch_models

    cls = getattr(torch_models, {"seed-cnn": "TorchSeedCNN", "resnet18": "TorchResNet18"}[model_name])
    torch.backends.cudnn.benchmark = True

    def to_device(xs: np.ndarray, ys: np.ndarray) -> tuple[Any, Any]:
        return torch.from_numpy(xs.transpose(0, 3, 1, 2).copy()).to(device), torch.from_numpy(
            ys.astype(np.int64)
        ).to(device)

    for variant in ("eager", "compile"):

        def make_step(batch: int, variant: str = variant) -> Callable[[Any, Any], Any]:
            torch.manual_seed(0)
            model = cls().to(device).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def forward_loss(x: Any, y: Any) -> Any:
                return F.cross_entropy(model(x), y)

            fl = (
                torch.compile(forward_loss, backend=compile_backend, dynamic=False)
                if variant == "compile"
                else forward_loss
            )

            def step(x: Any, y: Any) -> Any:
                opt.zero_grad(set_to_none=True)
                loss = fl(x, y)
                loss.backward()
                opt.step()
                return loss

            return step

        _measure(
            "torch",
            variant,
            model_name,
            batches,
            steps,
            epoch_images,
            make_step,
            to_device,
            torch_sync(device),
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=["jax", "torch"], required=True)
    p.add_argument("--model", choices=["seed-cnn", "resnet18"], required=True)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 512])
    p.add_argument("--steps", type=int, default=10, help="steps queued per timing")
    p.add_argument("--epoch-images", type=int, default=50_000)
    p.add_argument("--device", default="cuda", help="torch's device (JAX uses its default backend)")
    p.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend ('eager': trace only)"
    )
    args = p.parse_args(argv)
    from benchmarks.timing import benchmark_precision

    try:
        with benchmark_precision() as settings:
            _emit({"settings": settings})
            if args.framework == "jax":
                _jax_rows(args.model, args.batch_sizes, args.steps, args.epoch_images)
            else:
                _torch_rows(
                    args.model,
                    args.batch_sizes,
                    args.steps,
                    args.epoch_images,
                    args.device,
                    args.compile_backend,
                )
    except (
        ImportError,
        AttributeError,
    ) as e:  # train is being refactored on other branches: say what is missing
        _emit({"framework": args.framework, "model": args.model, "skipped": f"import failed: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
