"""Dice and DiceCE value+gradient on a 3-D segmentation volume: jaxloss.monai (jitted) against
MONAI eager, MONAI under ``torch.compile`` and optax's ``dice_loss``, in one run.

Input: float32 logits ``(B, C, H, W, D)`` (default ``(8, 4, 128, 128, 64)``) and a
``(B, 1, H, W, D)`` int64 label map; the losses are MONAI's ``DiceLoss(to_onehot_y=True,
softmax=True)`` and ``DiceCELoss(to_onehot_y=True, softmax=True)``, value and value+gradient
with respect to the logits. optax's ``dice_loss`` computes the same Dice as MONAI's (its
``smooth`` in numerator and denominator is MONAI's ``smooth_nr = smooth_dr = 2 * smooth``,
per-sample sums with ``axis``), but channels-last and on a one-hot target: it is timed on
pre-transposed logits and a precomputed float32 one-hot target (work it does not do here),
and its value is checked against jaxloss's before timing.

Timing: the implementations of a loss run in turn, ``--rounds`` times (the order rotating);
the table gives medians of wall time and of this process's CPU time (all threads), the
latter less sensitive to other processes sharing the cores; the load average is printed.

The *limit* is the bytes a value+gradient must move at the device's streaming rate
(:mod:`benchmarks.bandwidth`, measured in the same process): read the logits and the labels,
write the gradient. ``limit fraction`` = limit seconds / measured seconds.

    python -m benchmarks.seg [--shape 8 4 128 128 64] [--no-compile] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxloss.monai as jm
from benchmarks.bandwidth import measure
from benchmarks.losses import Case, jax_fns, torch_fns
from benchmarks.timing import block, machine_header, markdown_table


def _monai(cls_name: str) -> Any:
    import monai.losses

    criterion = getattr(monai.losses, cls_name)(to_onehot_y=True, softmax=True)

    def call(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return criterion(input, target)

    return call


def _optax_dice(logits_last: jax.Array, onehot_last: jax.Array) -> jax.Array:
    """MONAI's Dice in optax: smooth = 1e-5 / 2 in numerator and denominator, per sample."""
    spatial = tuple(range(1, logits_last.ndim - 1))
    return optax.losses.dice_loss(logits_last, onehot_last, smooth=0.5e-5, axis=spatial, reduction="mean").mean()


def _optax_fns(x: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    """optax's Dice on channels-last logits and a one-hot target, after checking it is MONAI's."""
    last = jnp.asarray(np.moveaxis(x, 1, -1))
    onehot = jax.nn.one_hot(jnp.asarray(labels[:, 0]), x.shape[1], dtype=jnp.float32)
    value, vgrad = jax.jit(_optax_dice), jax.jit(jax.value_and_grad(_optax_dice))
    ours = float(jm.dice_loss(jnp.asarray(x), jnp.asarray(labels), to_onehot_y=True, softmax=True))
    theirs = float(value(last, onehot))
    if abs(theirs - ours) > 1e-5 * max(1.0, abs(ours)):
        raise AssertionError(f"optax's Dice {theirs} is not MONAI's {ours} here")
    return (lambda: block(value(last, onehot))), (lambda: block(vgrad(last, onehot)))


def _timed(fn: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of one call: CPU time is this process's, all threads, so it shows
    the work done even when other processes share the cores (the wall time then grows)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(fns: dict[str, tuple[Any, Any]], rounds: int) -> dict[str, list[float]]:
    """Median (value wall, value CPU, value+grad wall, value+grad CPU) seconds per
    implementation, the implementations run in turn in each round (the order rotating), so
    a change of load on the shared machine falls on all of them alike."""
    names = list(fns)
    for value, vgrad in fns.values():  # compile / warm up
        value(), vgrad(), value(), vgrad()
    samples: dict[str, list[tuple[float, ...]]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            value, vgrad = fns[k]
            samples[k].append(_timed(value) + _timed(vgrad))
    return {k: [float(np.median([s[i] for s in v])) for i in range(4)] for k, v in samples.items()}


def run(shape: tuple[int, ...], compile_torch: bool, rounds: int) -> list[list[Any]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    labels = rng.integers(0, shape[1], size=(shape[0], 1, *shape[2:])).astype(np.int64)
    case = Case({"input": x, "target": labels})
    bw = measure(int(x.nbytes), device="cpu")["limit_bytes_per_s"]
    moved = x.nbytes + labels.nbytes + x.nbytes  # read logits and labels, write the gradient
    limit = moved / bw
    rows = []
    for name, fn, cls_name in (("Dice", jm.dice_loss, "DiceLoss"), ("DiceCE", jm.dice_ce_loss, "DiceCELoss")):
        fns = {"jaxloss": jax_fns(fn, Case(case.arrays, {"to_onehot_y": True, "softmax": True}))}
        fns["MONAI eager"] = torch_fns(_monai(cls_name), case)
        if compile_torch:
            try:
                compiled = torch_fns(torch.compile(_monai(cls_name)), case)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    compiled[1]()
                fns["MONAI torch.compile"] = compiled
            except (RuntimeError, ImportError, OSError) as e:  # inductor needs a C++ toolchain on CPU
                print(f"torch.compile failed: {type(e).__name__}: {str(e)[:200]}")
        if name == "Dice":
            fns["optax dice_loss"] = _optax_fns(x, labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = interleaved(fns, rounds)
        base = t["MONAI eager"]
        for impl, (value, value_cpu, vgrad, vgrad_cpu) in t.items():
            rows.append([name, impl, f"{value * 1e3:.0f}", f"{vgrad * 1e3:.0f}", f"{vgrad_cpu * 1e3:.0f}",
                         f"{base[0] / value:.2f}x", f"{base[2] / vgrad:.2f}x", f"{base[3] / vgrad_cpu:.2f}x",
                         f"{limit / vgrad:.2f}"])
    return rows


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs="+", default=[8, 4, 128, 128, 64])
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians of these)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    load_before = os.getloadavg()[0]
    rows = run(tuple(args.shape), not args.no_compile, args.rounds)
    table = markdown_table(
        ["loss", "implementation", "value ms", "value+grad ms", "value+grad CPU ms", "value vs MONAI",
         "value+grad vs MONAI", "value+grad CPU vs MONAI", "limit fraction (value+grad)"],
        rows,
    )
    load = f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    out = (f"{machine_header()}\n\nshape {tuple(args.shape)} float32, int64 labels; {args.rounds} interleaved "
           f"rounds, medians; {load}\n\n{table}")
    print(out)
    return out


if __name__ == "__main__":
    main()
