"""Images/s of one training step: the shipped Flax step against its PyTorch twin, eager and compiled.

The one train-step benchmark, used by ``python -m benchmarks`` (CPU, RESULTS.md) and by the
``train_step`` section of ``python -m benchmarks.gpu``. The JAX side is built exactly as
``python -m jaxloss.train`` builds a run: :mod:`jaxloss.train.recipe` (model, optimizer, loss from a
:class:`jaxloss.train.config.TrainConfig` with its defaults: SGD momentum 0.9, cross entropy, float32)
and :func:`jaxloss.train.step.make_train_step` called with the running metric sums, as
:mod:`jaxloss.train.loop` calls it. The torch side is the twin (:mod:`jaxloss.parity.torch_models`,
``torch.optim.SGD`` with the same settings, ``F.cross_entropy``), eager and, with
``--variants ...,compile``, ``torch.compile`` of forward + loss. The models are those of both
tables (:data:`jaxloss.train.registry.MODELS` with a twin in :data:`jaxloss.parity.models.twins.TORCH_TWINS`).

One process per (framework, model, batch), so that each has the device and its own peak
memory to itself; each prints one JSON row per result. Both frameworks run in
:func:`benchmarks.timing.benchmark_precision` (true float32, ``jax_enable_x64`` off).

* step: one CIFAR-shaped random batch held on the device; median seconds per step with
  ``--steps`` steps queued per timing and at least ``--reps`` timings
  (:func:`benchmarks.timing.in_flight_seconds`); peak MiB: the rise of resident memory during
  the timed steps.
* epoch (``--epoch-images N``, the largest batch only): one pass over N images held on the
  device, wall time from the first step to the last result.

A configuration that fails gives an ``error`` row (and the command exits 1), never a gap.

    python -m benchmarks.train_step [--models seed-cnn resnet18] [--batch-sizes 128 512] [--steps 1 --reps 10]
    python -m benchmarks.train_step --device cuda --variants jit,eager,compile --steps 10 --reps 3 --epoch-images 50000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from jaxloss.train.cli import Parser, fail, positive_int, run_main

from benchmarks.timing import in_flight_seconds, markdown_table, peak_rss_mib, reset_peak_rss, rss_mib

PROG = "python -m benchmarks.train_step"
IMAGE = (32, 32, 3)
CLASSES = 10
VARIANTS = {"jit": "jax", "eager": "torch", "compile": "torch"}  # variant -> framework


# ----------------------------------------------------------------------------- the two steps
def _config(model: str, batch: int) -> Any:
    """``python -m jaxloss.train``'s configuration for ``model`` at ``batch`` (every other field its default)."""
    from jaxloss.train.config import TrainConfig

    return TrainConfig(model=model, batch_size=batch)


def jax_step(model: str, batch: int) -> Callable[[Any, Any], Any]:
    """``step(x, y) -> loss``: :func:`jaxloss.train.step.make_train_step` on :mod:`jaxloss.train.recipe`'s objects, as train.loop runs it.

    >>> import numpy as np
    >>> from benchmarks.train_step import jax_step
    >>> step = jax_step("seed-cnn", 2)
    >>> float(step(np.zeros((2, 32, 32, 3), np.float32), np.array([0, 1], np.int32))) > 0
    True
    """
    import jax.numpy as jnp
    from flax import nnx
    from jaxloss.train.config import MATMUL_PRECISION
    from jaxloss.train.recipe import build_loss, build_model, build_optimizer
    from jaxloss.train.step import make_train_step

    cfg = _config(model, batch)
    net = build_model(cfg)
    net.train()
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    tx, _ = build_optimizer(cfg, steps_per_epoch=1)
    step = make_train_step(graphdef, tx, build_loss(cfg), matmul_precision=MATMUL_PRECISION[cfg.precision])
    state = [params, rest, tx.init(params), jnp.zeros(3, jnp.float32)]  # params, rest, opt_state, sums

    def call(x: Any, y: Any) -> Any:
        *state[:], loss = step(*state, x, y)  # the buffers are donated: keep only the new ones
        return loss

    return call


def _torch_model(cfg: Any) -> Any:
    """The torch twin of ``cfg.model`` (as :mod:`jaxloss.parity.twin` builds it)."""
    from jaxloss.parity.models.twins import build_torch

    return build_torch(cfg.model, num_classes=CLASSES, **cfg.model_options)  # ValueError for a model without a twin


def torch_step(
    model: str, batch: int, device: str, compiled: bool, backend: str
) -> Callable[[Any, Any], Any]:
    """``step(x, y) -> loss``: the torch twin with ``torch.optim.SGD`` as the recipe sets it; ``compiled``: forward + loss under ``torch.compile``.

    >>> import torch
    >>> from benchmarks.train_step import torch_step
    >>> step = torch_step("seed-cnn", 2, "cpu", compiled=False, backend="eager")
    >>> float(step(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1])).detach()) > 0
    True
    """
    import torch
    import torch.nn.functional as F

    cfg = _config(model, batch)
    torch.manual_seed(cfg.seed)
    net = _torch_model(cfg).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.effective_momentum, dampening=cfg.dampening,
                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay or 0.0)  # fmt: skip

    def forward_loss(x: Any, y: Any) -> Any:
        return F.cross_entropy(net(x), y)

    fl = torch.compile(forward_loss, backend=backend, dynamic=False) if compiled else forward_loss

    def call(x: Any, y: Any) -> Any:
        opt.zero_grad(set_to_none=True)
        loss = fl(x, y)
        loss.backward()
        opt.step()
        return loss

    return call


# ----------------------------------------------------------------------------- one process: one configuration
def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` CIFAR-shaped random images and labels; beyond 1024 images, the first 1024 repeated
    (the speed does not depend on the values, and 50 000 fresh normals cost seconds)."""
    rng = np.random.default_rng(seed)
    m = min(n, 1024)
    x = rng.standard_normal(size=(m, *IMAGE), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=(m,)).astype(np.int32)
    reps = -(-n // m)
    return np.tile(x, (reps, 1, 1, 1))[:n], np.tile(y, reps)[:n]


def _variant_parts(variant: str, model: str, batch: int, device: str, backend: str) -> tuple[Any, Any, Any]:
    """``(step, to_device, finish)`` of one variant."""
    if VARIANTS[variant] == "jax":
        import jax

        return (
            jax_step(model, batch),
            lambda xs, ys: (jax.device_put(xs), jax.device_put(ys)),
            jax.block_until_ready,
        )
    import torch

    from benchmarks.bandwidth import torch_sync

    torch.backends.cudnn.benchmark = True  # as a tuned torch training script has it (XLA autotunes always)

    def to_device(xs: np.ndarray, ys: np.ndarray) -> tuple[Any, Any]:
        x = torch.from_numpy(np.ascontiguousarray(xs.transpose(0, 3, 1, 2))).to(device)
        return x, torch.from_numpy(ys.astype(np.int64)).to(device)

    return torch_step(model, batch, device, variant == "compile", backend), to_device, torch_sync(device)


def measure(variant: str, model: str, batch: int, *, steps: int, reps: int, epoch_images: int, device: str,
            backend: str) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The rows of one configuration: its step row, then its epoch row when ``epoch_images``."""
    key = {"framework": VARIANTS[variant], "variant": variant, "model": model, "batch": batch}
    step, to_device, finish = _variant_parts(variant, model, batch, device, backend)
    x, y = to_device(*_data(batch))
    t0 = time.perf_counter()
    finish(step(x, y))
    first = time.perf_counter() - t0
    base = rss_mib()
    reset_peak_rss()  # the peak of the timed steps only, not of compilation / warm-up
    sec = in_flight_seconds(
        lambda: step(x, y), finish, in_flight=steps, min_reps=reps, min_time=0.0, warmup=1
    )
    yield {**key, "step_ms": 1e3 * sec, "images_per_s": batch / sec, "first_step_s": first,
           "peak_mib": max(0.0, peak_rss_mib() - base)}  # fmt: skip
    if epoch_images:
        xs, ys = _data(max(batch, epoch_images // batch * batch), seed=1)
        x_all, y_all = to_device(xs, ys)
        t0 = time.perf_counter()
        out = None
        for i in range(0, len(xs), batch):
            out = step(x_all[i : i + batch], y_all[i : i + batch])
        finish(out)
        sec = time.perf_counter() - t0
        yield {**key, "epoch_images": len(xs), "epoch_s": sec, "images_per_s": len(xs) / sec}


def error_row(variant: str, model: str, batch: int, what: str) -> dict[str, Any]:
    """The row of a configuration that produced no measurement, saying why.

    >>> from benchmarks.train_step import error_row
    >>> error_row("jit", "seed-cnn", 8, "TypeError: step() takes 5 arguments")["error"]
    'TypeError: step() takes 5 arguments'
    """
    return {"framework": VARIANTS[variant], "variant": variant, "model": model, "batch": batch, "error": what}


def _child(args: Any) -> int:
    """One (framework, model, batch) in this process: a JSON row per result or error; 1 if any error."""
    from benchmarks.timing import benchmark_precision

    model, batch = args.model, args.batch
    failed = False
    with benchmark_precision() as settings:
        print(json.dumps({"settings": settings}), flush=True)
        for variant in args.child_variants:
            try:
                for row in measure(variant, model, batch, steps=args.steps, reps=args.reps,
                                   epoch_images=args.epoch_images, device=args.device, backend=args.compile_backend):  # fmt: skip
                    print(json.dumps(row), flush=True)
            except Exception as e:  # noqa: BLE001 - one failing variant (torch.compile on a platform...) must not hide the next
                text = str(e).splitlines()[0][:300] if str(e) else ""
                print(json.dumps(error_row(variant, model, batch, f"{type(e).__name__}: {text}")), flush=True)
                failed = True
    return 1 if failed else 0


# ----------------------------------------------------------------------------- one process: both frameworks, alternately
ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one ``fn()`` (which blocks until done)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def pair_row(model: str, batch: int, threads: int, jax_s: list[tuple[float, float]],
             torch_s: list[tuple[float, float]]) -> dict[str, Any]:  # fmt: skip
    """The row of ``len(jax_s)`` interleaved (wall, CPU) pairs: medians, and the torch/jax wall-time ratio
    of each pair as median and quartiles (the JAX step's speed over torch eager's).

    >>> from benchmarks.train_step import pair_row
    >>> r = pair_row("m", 8, 1, [(1.0, 1.0), (2.0, 2.0), (1.0, 1.0)], [(2.0, 1.0), (2.0, 2.0), (3.0, 3.0)])
    >>> r["jax_ms"], r["torch_ms"], r["speed_median"], r["speed_q25"], r["speed_q75"]
    (1000.0, 2000.0, 2.0, 1.5, 2.5)
    """
    ratios = [t[0] / j[0] for j, t in zip(jax_s, torch_s, strict=True)]
    med = lambda v: 1e3 * float(np.median(v))
    return {"mode": "pairs", "model": model, "batch": batch, "threads": threads, "pairs": len(ratios),
            "jax_ms": med([w for w, _ in jax_s]), "torch_ms": med([w for w, _ in torch_s]),
            "jax_cpu_ms": med([c for _, c in jax_s]), "torch_cpu_ms": med([c for _, c in torch_s]),
            "speed_median": float(np.median(ratios)), "speed_q25": float(np.quantile(ratios, 0.25)),
            "speed_q75": float(np.quantile(ratios, 0.75)), "load": os.getloadavg()[0]}  # fmt: skip


def measure_pairs(model: str, batch: int, pairs: int, threads: int) -> dict[str, Any]:
    """The JAX step and the torch eager twin called alternately, ``pairs`` times, on one CPU batch.

    On a shared machine both sides see the same load within a pair, so the per-pair ratio is
    steadier than two separate runs' medians. ``threads=1``: torch's intra-op threads set to 1
    here, XLA's by the caller (:data:`ONE_THREAD_XLA_FLAGS` must be in ``XLA_FLAGS`` before JAX starts).
    """
    import jax
    import torch

    if threads:
        torch.set_num_threads(threads)
    xs, ys = _data(batch)
    jx, jy = jax.device_put(xs), jax.device_put(ys)
    tx_, ty = (
        torch.from_numpy(np.ascontiguousarray(xs.transpose(0, 3, 1, 2))),
        torch.from_numpy(ys.astype(np.int64)),
    )
    js, ts = jax_step(model, batch), torch_step(model, batch, "cpu", compiled=False, backend="eager")
    run_jax, run_torch = (lambda: jax.block_until_ready(js(jx, jy))), (lambda: float(ts(tx_, ty)))
    for _ in range(2):  # compile, warm up
        run_jax(), run_torch()
    jax_s, torch_s = [], []
    for i in range(pairs):  # alternate which side goes first, so neither always follows the other
        first, second = (run_jax, run_torch) if i % 2 == 0 else (run_torch, run_jax)
        a, b = _timed(first), _timed(second)
        jax_s.append(a if i % 2 == 0 else b)
        torch_s.append(b if i % 2 == 0 else a)
    return pair_row(model, batch, threads, jax_s, torch_s)


PAIR_COLUMNS = ["model", "batch", "threads", "pairs", "jax ms", "torch ms", "jax/torch speed (median per pair)",
                "quartiles", "jax CPU ms", "torch CPU ms", "load"]  # fmt: skip


def pairs_markdown(rows: list[dict[str, Any]]) -> str:
    """The table of :func:`measure_pairs` rows.

    >>> from benchmarks.train_step import pair_row, pairs_markdown
    >>> "| m | 8 | 1 | 1 | 1e+03 | 2e+03 | 2 | 2-2 |" in pairs_markdown([pair_row("m", 8, 1, [(1.0, 1.0)], [(2.0, 1.0)])])
    True
    """
    table = [[r["model"], r["batch"], r["threads"] or "default", r["pairs"], r["jax_ms"], r["torch_ms"],
              r["speed_median"], f"{r['speed_q25']:.3g}-{r['speed_q75']:.3g}", r["jax_cpu_ms"], r["torch_cpu_ms"],
              r["load"]] for r in rows if r.get("mode") == "pairs"]  # fmt: skip
    return (
        "JAX step against the torch eager twin, called alternately in one process on a CPU batch (float32, "
        "`ieee`); ms: median wall time per step; speed: torch's wall time over JAX's in each pair, median and "
        "quartiles; CPU ms: user + system time of the process per step (all threads); load: 1-minute load "
        "average at the end.\n\n" + markdown_table(PAIR_COLUMNS, table)
    )


# ----------------------------------------------------------------------------- the parent: every configuration
def forward_bytes_per_image(model: str) -> int:
    """Bytes of every intermediate of ``model``'s forward pass for one image (traced, nothing computed).

    A training step keeps them for the backward pass and makes their gradients: twice this per
    image is a lower bound of what a batch needs, whatever the framework.

    >>> from benchmarks.train_step import forward_bytes_per_image
    >>> forward_bytes_per_image("seed-cnn") > 32 * 32 * 32 * 4  # the first convolution's output alone
    True
    """
    import jax
    from flax import nnx
    from jaxloss.train.models import build_model

    net = nnx.eval_shape(lambda: build_model(model, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(net)
    # two images, halved below: train-mode BatchNorm refuses one value per channel (ResNet-18's 1x1 layer4)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(
        state, jax.ShapeDtypeStruct((2, *IMAGE), np.float32)
    )

    def total(jp: Any) -> int:
        n = 0
        for eqn in jp.eqns:
            subs = [p for p in eqn.params.values() if hasattr(p, "jaxpr") or hasattr(p, "eqns")]
            if subs:
                n += sum(total(getattr(s, "jaxpr", s)) for s in subs)
            else:
                n += sum(
                    math.prod(v.aval.shape) * v.aval.dtype.itemsize
                    for v in eqn.outvars
                    if hasattr(v.aval, "shape")
                )
        return n

    return total(jaxpr.jaxpr) // 2


def _available_bytes() -> int | None:
    """The host memory available now (``MemAvailable``), or None where ``/proc/meminfo`` is absent."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_batch_sizes(models: list[str], batch_sizes: list[int], device: str) -> str | None:
    """Why the largest batch cannot fit in host memory (a step on the CPU), or None.

    The bound is :func:`forward_bytes_per_image` twice per image: a batch over it would be
    killed by the kernel's out-of-memory killer (exit 137) after minutes, with no row.

    >>> from benchmarks.train_step import check_batch_sizes
    >>> check_batch_sizes(["seed-cnn"], [8], "cpu") is None
    True
    >>> check_batch_sizes(["seed-cnn"], [10_000_000], "cpu").startswith("--batch-sizes 10000000:")
    True
    """
    available = _available_bytes()
    if device != "cpu" or available is None:
        return None  # on a GPU an out-of-memory step raises: an error row, not a silent kill
    batch = max(batch_sizes)
    for model in models:
        need = 2 * batch * forward_bytes_per_image(model)
        if need > available:
            return (f"--batch-sizes {batch}: a {model} step needs at least {need / 2**30:.1f} GiB of memory "
                    f"(its activations and their gradients), {available / 2**30:.1f} GiB are available")  # fmt: skip
    return None


def _child_command(fw: str, variants: list[str], model: str, batch: int, opts: dict[str, Any]) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--child", fw, model, str(batch),
           "--variants", ",".join(v for v in variants if VARIANTS[v] == fw)]  # fmt: skip
    for flag in ("steps", "reps", "epoch_images", "device", "compile_backend"):
        cmd += ["--" + flag.replace("_", "-"), str(opts[flag])]
    return cmd


def _child_env(fw: str, device: str) -> dict[str, str]:
    env = dict(os.environ)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    if (
        fw == "jax"
    ):  # JAX alone in its process: its default (preallocating) allocator, as a training script has it
        env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    return env


def run(models: list[str], batch_sizes: list[int], variants: list[str], opts: dict[str, Any],
        left: Callable[[], float] = lambda: 86400.0) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Every configuration, one process each; yields each row as it comes (``settings`` rows too).

    A process that exits without its rows, or past ``left()`` seconds, yields an ``error`` row
    (``"timeout": True`` for the latter), so that no configuration is silently missing.
    """
    from benchmarks.gpu_process import run_group

    for model in models:
        for fw in ("jax", "torch"):
            mine = [v for v in variants if VARIANTS[v] == fw]
            for batch in sorted(batch_sizes, reverse=True):  # the largest first: the targets are there
                if not mine:
                    continue
                epoch = opts["epoch_images"] if batch == max(batch_sizes) else 0
                cmd = _child_command(fw, mine, model, batch, {**opts, "epoch_images": epoch})
                rc, out, err = run_group(cmd, max(1.0, left()), env=_child_env(fw, opts["device"]))
                rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                yield from rows
                done = {r.get("variant") for r in rows if "images_per_s" in r or "error" in r}
                for v in (v for v in mine if v not in done):
                    why = (f"ran past the time left ({max(1.0, left()):.0f} s)" if rc is None
                           else f"exit {rc}{' (killed: out of memory?)' if rc in (-9, 137) else ''}: {err.strip()[-300:]}")  # fmt: skip
                    yield {**error_row(v, model, batch, why), **({"timeout": True} if rc is None else {})}


# ----------------------------------------------------------------------------- the table
def images_per_s(
    rows: list[dict[str, Any]], variant: str, model: str, batch: int, epoch: bool = False
) -> float | None:
    """The images/s of one step (or epoch) row, None where the run has none.

    >>> from benchmarks.train_step import images_per_s
    >>> images_per_s([{"variant": "jit", "model": "m", "batch": 8, "images_per_s": 5.0}], "jit", "m", 8)
    5.0
    """
    for r in rows:
        if (r.get("variant"), r.get("model"), r.get("batch")) == (variant, model, batch) and (
            "epoch_s" in r
        ) == epoch:
            return r.get("images_per_s")
    return None


TABLE_COLUMNS = ["model", "batch", "jax", "torch eager", "torch.compile", "jax/eager", "jax/compile",
                 "jax peak MiB", "torch peak MiB"]  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    """The train-step tables: images/s per variant and the JAX/torch ratios, the epochs, the errors.

    >>> from benchmarks.train_step import markdown
    >>> rows = [{"variant": "jit", "model": "seed-cnn", "batch": 512, "images_per_s": 300.0, "peak_mib": 10.0},
    ...         {"variant": "eager", "model": "seed-cnn", "batch": 512, "images_per_s": 200.0, "peak_mib": 20.0}]
    >>> "| seed-cnn | 512 | 300 | 200 | - | 1.5 | - | 10 | 20 |" in markdown(rows)
    True
    """
    keys = sorted({(r["model"], r["batch"]) for r in rows if "batch" in r and "epoch_s" not in r})
    table = []
    for model, batch in keys:
        j, e, c = (images_per_s(rows, v, model, batch) for v in ("jit", "eager", "compile"))
        peak = {
            r["variant"]: r["peak_mib"]
            for r in rows
            if (r.get("model"), r.get("batch")) == (model, batch) and "peak_mib" in r
        }
        table.append([model, batch, j or "-", e or "-", c or "-", j / e if j and e else "-", j / c if j and c else "-",
                      peak.get("jit", "-"), peak.get("eager", "-")])  # fmt: skip
    epochs = []
    for model in sorted({m for m, _ in keys}):
        batch = max(b for m, b in keys if m == model)
        vals = [images_per_s(rows, v, model, batch, epoch=True) for v in ("jit", "eager", "compile")]
        if any(vals):
            epochs.append([model, batch] + [v or "-" for v in vals])
    errors = [f"- {r['variant']} {r['model']} {r['batch']}: {r['error']}" for r in rows if "error" in r]
    text = (
        "Images/s of one training step, float32 (`ieee`): `python -m jaxloss.train`'s recipe (SGD momentum 0.9, cross "
        "entropy) through `train.step.make_train_step` against the torch twin; CIFAR-shaped random batch on the "
        "device, median. Peak MiB: rise of resident memory during the timed steps.\n\n"
        + markdown_table(TABLE_COLUMNS, table)
    )
    if epochs:
        text += "\n\nOne epoch over device-held CIFAR-shaped data, images/s:\n\n" + markdown_table(
            ["model", "batch", "jax", "torch eager", "torch.compile"], epochs
        )
    return text + ("\n\nErrors:\n" + "\n".join(errors) if errors else "")


# ----------------------------------------------------------------------------- command line
def _variant_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of {', '.join(VARIANTS)}, got {text!r}"
        )
    return names


def parser() -> Parser:
    from jaxloss.parity.models.twins import TORCH_TWINS

    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=TORCH_TWINS, default=list(TORCH_TWINS))
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[128, 512], metavar="N")
    p.add_argument("--variants", type=_variant_list, default=["jit", "eager"],
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default: jit,eager)")  # fmt: skip
    p.add_argument(
        "--steps", type=positive_int, default=1, help="steps queued per timing (default 1: each synced)"
    )
    p.add_argument("--reps", type=positive_int, default=10, help="timings, at least (default 10)")
    p.add_argument(
        "--epoch-images", type=int, default=0, help="time one epoch of this many images (largest batch)"
    )
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (torch's device; JAX keeps to the CPU with cpu)"
    )
    p.add_argument(
        "--compile-backend", default="inductor", help="torch.compile's backend ('eager': trace only)"
    )
    p.add_argument(
        "--pairs",
        type=positive_int,
        default=0,
        metavar="N",
        help="instead: N interleaved JAX / torch eager steps in one process per model and batch (CPU)",
    )
    p.add_argument(
        "--threads",
        type=int,
        choices=(0, 1),
        default=0,
        help="with --pairs: 1 limits XLA and torch to one thread each, on one core (0: their defaults)",
    )
    p.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    return p


def _parse(argv: list[str] | None) -> Any:
    p = parser()
    args = p.parse_args(argv)
    if args.epoch_images < 0:
        fail(PROG, f"--epoch-images must be >= 0, got {args.epoch_images}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        fail(PROG, f"--device must be cpu or cuda, got {args.device!r}")
    if args.pairs and args.device != "cpu":
        fail(PROG, f"--pairs runs on the CPU only, got --device {args.device!r}")
    if not args.child:
        why = check_batch_sizes(args.models, args.batch_sizes, args.device)
        if why:
            fail(PROG, why)
    return args


def _report(args: Any) -> tuple[str, list[dict[str, Any]]]:
    """Run every configuration of the parsed ``args``: ``(Markdown, rows)``; each row is printed as it comes."""
    opts = {k: getattr(args, k) for k in ("steps", "reps", "epoch_images", "device", "compile_backend")}
    rows = []
    for row in run(args.models, args.batch_sizes, args.variants, opts):
        if "settings" not in row:
            print(json.dumps(row), flush=True)
            rows.append(row)
    return markdown(rows), rows


def main(argv: list[str] | None = None) -> str:
    """The Markdown of every configuration (``python -m benchmarks``); raises if any configuration failed."""
    md, rows = _report(_parse(argv))
    print(md)
    errors = [r for r in rows if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} train-step configuration(s) failed: {errors[0]['error']}")
    return md


def _pairs_env(threads: int) -> dict[str, str]:
    """The environment of a ``--pairs`` child: the CPU, and XLA on one thread when ``threads == 1``."""
    env = _child_env("jax", "cpu")
    if threads == 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {ONE_THREAD_XLA_FLAGS}".strip()
    return env


def run_pairs(args: Any) -> list[dict[str, Any]]:
    """Every (model, batch) of ``args`` through :func:`measure_pairs`, one process each; error rows where one failed."""
    from benchmarks.gpu_process import run_group

    rows = []
    for model in args.models:
        for batch in args.batch_sizes:
            cmd = [sys.executable, "-m", "benchmarks.train_step", "--child", "pairs", model, str(batch),
                   "--pairs", str(args.pairs), "--threads", str(args.threads)]  # fmt: skip
            rc, out, err = run_group(cmd, 3600.0, env=_pairs_env(args.threads))
            got = [json.loads(line) for line in out.splitlines() if line.startswith('{"mode"')]
            rows += got or [
                {**error_row("jit", model, batch, f"exit {rc}: {err.strip()[-300:]}"), "mode": "pairs"}
            ]
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _cli(argv: list[str] | None) -> int:
    args = _parse(argv)
    if args.child and args.child[0] == "pairs":
        from benchmarks.timing import benchmark_precision

        if args.threads == 1 and hasattr(os, "sched_setaffinity"):
            # one core for both, before XLA starts its thread pool: its flags make each op
            # single-threaded, but its executor still runs independent ops on the pool's threads
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

        with benchmark_precision():
            print(
                json.dumps(measure_pairs(args.child[1], int(args.child[2]), args.pairs, args.threads)),
                flush=True,
            )
        return 0
    if args.pairs:
        rows = run_pairs(args)
        print(pairs_markdown(rows))
        errors = [r["error"] for r in rows if "error" in r]
        print("\n".join(f"error: {e}" for e in errors))
        return 1 if errors else 0
    if args.child:
        fw, args.model, batch = args.child
        args.batch = int(batch)
        args.child_variants = [v for v in args.variants if VARIANTS[v] == fw]
        return _child(args)
    md, rows = _report(args)
    print(md)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, _cli, sys.argv[1:]))
