"""Large losses on one device against torch eager, as a multiple of the bandwidth limit; torchvision parity.

The cases are :mod:`benchmarks.losses`' (same inputs, same torch twins), at ``--elements`` per
main input; both frameworks are timed with calls queued (:func:`benchmarks.timing.in_flight_seconds`).
The *limit* of a loss's value+gradient is the time the device needs to read every input once
and write every gradient once at the bandwidth :mod:`benchmarks.bandwidth` measured in the same
run; ``jax_vgrad_over_limit`` is the measured time over that (1 = at the limit; issue 12 asks
for at most 2).

Run by ``python -m benchmarks.gpu`` (sections ``losses`` and ``torchvision``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import bandwidth, losses
from benchmarks.timing import in_flight_seconds, markdown_table

QUICK_NAMES = ["cross_entropy", "mse_loss"]


def moved_bytes(case: losses.Case) -> tuple[int, int]:
    """Bytes the value (read every input) and the value+gradient (and write each gradient) must move.

    >>> import numpy as np
    >>> from benchmarks.gpu_losses import moved_bytes
    >>> from benchmarks.losses import make_case
    >>> moved_bytes(make_case("mse_loss", "large", np.random.default_rng(0), large=1024))
    (8192, 12288)
    """
    read = sum(a.nbytes for a in case.arrays.values())
    return read, read + sum(case.arrays[d].nbytes for d in case.diff)


def _bench(
    name: str, device: str, elements: int, limit_bps: float, rng: np.random.Generator
) -> dict[str, Any]:
    """One loss: JAX and torch eager value and value+gradient seconds, and the ratios."""
    import jax
    import torch.nn.functional as F

    import jaxloss

    case = losses.make_case(name, "large", rng, large=elements)
    jv, jg = losses.jax_fns(getattr(jaxloss, name), case, blocking=False)
    tv, tg = losses.torch_fns(case.torch_fn or getattr(F, name), case, device)
    sync = bandwidth.torch_sync(device)
    kw = {"in_flight": 5, "min_reps": 3, "min_time": 0.1, "warmup": 1}
    row: dict[str, Any] = {"loss": name, "elements": int(next(iter(case.arrays.values())).size)}
    row["jax_value"] = in_flight_seconds(jv, jax.block_until_ready, **kw)
    row["jax_vgrad"] = in_flight_seconds(jg, jax.block_until_ready, **kw)
    row["torch_value"] = in_flight_seconds(tv, sync, **kw)
    row["torch_vgrad"] = in_flight_seconds(tg, sync, **kw)
    row["bytes_value"], row["bytes_vgrad"] = moved_bytes(case)
    row["jax_vgrad_over_limit"] = row["jax_vgrad"] / (row["bytes_vgrad"] / limit_bps)
    row["torch_vgrad_over_limit"] = row["torch_vgrad"] / (row["bytes_vgrad"] / limit_bps)
    return row


def _bench_linear_cross_entropy(device: str, quick: bool) -> dict[str, Any]:
    """jaxloss.linear_cross_entropy against torch's where torch has it (torch >= 2.12)."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    import jaxloss

    if not hasattr(F, "linear_cross_entropy"):
        return {
            "loss": "linear_cross_entropy",
            "skipped": f"torch {torch.__version__} has no torch.nn.functional.linear_cross_entropy",
        }
    n, hidden, vocab = (64, 32, 128) if quick else (8192, 1024, 32768)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, hidden)).astype(np.float32)
    w = (rng.normal(size=(vocab, hidden)) / np.sqrt(hidden)).astype(np.float32)
    t = rng.integers(0, vocab, size=(n,))
    jg = jax.jit(jax.value_and_grad(lambda a, b, c: jaxloss.linear_cross_entropy(a, b, c), argnums=(0, 1)))
    xj, wj, tj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(t.astype(np.int32))
    xt, wt = (torch.from_numpy(a).to(device).requires_grad_() for a in (x, w))
    tt = torch.from_numpy(t).to(device)
    kw = {"in_flight": 3, "min_reps": 3, "min_time": 0.1, "warmup": 1}
    row: dict[str, Any] = {"loss": "linear_cross_entropy", "shape": f"N={n} hidden={hidden} vocab={vocab}"}
    row["jax_vgrad"] = in_flight_seconds(lambda: jg(xj, wj, tj), jax.block_until_ready, **kw)
    row["torch_vgrad"] = in_flight_seconds(lambda: torch.autograd.grad(F.linear_cross_entropy(xt, wt, tt), (xt, wt)),
                                           bandwidth.torch_sync(device), **kw)  # fmt: skip
    return row


def run(
    row: Callable[[dict[str, Any]], None],
    note: Callable[[str], None],
    record: dict[str, Any],
    *,
    quick: bool,
    device: str,
    left: Callable[[], float],
) -> None:
    """Measure the bandwidth, then each loss (one row each, written as it comes) while ``left()`` allows.

    >>> from benchmarks.gpu_losses import run
    >>> rows, notes, record = [], [], {}
    >>> run(rows.append, notes.append, record, quick=True, device="cpu", left=lambda: 0.0)
    >>> rows, notes
    ([], ['no time left: nothing measured'])
    """
    if left() < 8:
        note("no time left: nothing measured")
        return
    bw = bandwidth.measure((1 << 20) if quick else (1 << 30), device)
    record["bandwidth"] = bw
    elements = (1 << 12) if quick else losses.LARGE
    rng = np.random.default_rng(0)
    for name in QUICK_NAMES if quick else losses.NAMES:
        if left() < 8:
            note(f"time ran out before {name}")
            break
        try:
            row(_bench(name, device, elements, bw["limit_bytes_per_s"], rng))
        except Exception as e:  # noqa: BLE001 - one loss failing on a platform must not hide the rest
            row(
                {
                    "loss": name,
                    "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                }
            )
    row(_bench_linear_cross_entropy(device, quick))


def markdown(record: dict[str, Any]) -> str:
    """The losses table with the bandwidth header.

    >>> from benchmarks.gpu_losses import markdown
    >>> print(markdown({"rows": [{"loss": "x", "skipped": "torch has none"}]}).splitlines()[0])
    Bandwidth limit: not measured
    """
    bw = record.get("bandwidth", {})
    head = "Bandwidth limit: " + (
        f"{bw['limit_bytes_per_s'] / 1e9:.0f} GB/s (best of "
        + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in bw["rates"].items())
        + " GB/s)"
        if bw
        else "not measured"
    )
    table = []
    for r in record.get("rows", []):
        if "error" in r or "skipped" in r:
            table.append([r["loss"], "-", "-", "-", "-", "-", r.get("error") or r.get("skipped")])
        elif "jax_vgrad_over_limit" in r:
            table.append([r["loss"], 1e3 * r["jax_vgrad"], 1e3 * r["torch_vgrad"], r["torch_value"] / r["jax_value"],
                          r["torch_vgrad"] / r["jax_vgrad"], r["jax_vgrad_over_limit"], ""])  # fmt: skip
        else:
            table.append(
                [
                    r["loss"],
                    1e3 * r["jax_vgrad"],
                    1e3 * r["torch_vgrad"],
                    "-",
                    r["torch_vgrad"] / r["jax_vgrad"],
                    "-",
                    r.get("shape", ""),
                ]
            )
    return (
        head
        + "\n\nFloat32 (`ieee`), value+gradient (v+g), calls queued; jax/limit: time over the time to read every input and "
        "write every gradient once at the limit (target <= 2).\n\n"
        + markdown_table(
            [
                "loss",
                "jax v+g ms",
                "torch v+g ms",
                "speed-up vs torch (v)",
                "speed-up vs torch (v+g)",
                "jax/limit (v+g)",
                "note",
            ],
            table,
        )
    )


TORCHVISION_BOX_LOSSES = ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss")


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 10, size=(n, 2))
    wh = rng.uniform(0.5, 5, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def torchvision_rows(
    tvops: Any, row: Callable[[dict[str, Any]], None], note: Callable[[str], None], device: str
) -> None:
    """jaxloss against the real ``torchvision.ops`` losses, value, gradient and second order, float32 and float64.

    A loss missing on either side gives a ``skipped`` row naming the side.

    >>> import types
    >>> from benchmarks.gpu_losses import torchvision_rows
    >>> rows = []
    >>> torchvision_rows(types.SimpleNamespace(__name__="torchvision.ops"), rows.append, print, device="cpu")
    >>> rows[0]
    {'loss': 'sigmoid_focal_loss', 'skipped': 'torchvision torchvision.ops has no sigmoid_focal_loss'}
    """
    import jaxloss
    from jaxloss import parity
    from jaxloss.parity.precisions import precision

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 10)) * 3
    targets = (rng.uniform(size=(64, 10)) < 0.3).astype(np.float64)
    boxes1, boxes2 = _boxes(rng, 64), _boxes(rng, 64)
    cases: list[tuple[str, tuple[np.ndarray, ...], dict[str, Any]]] = [
        ("sigmoid_focal_loss", (logits, targets), {"reduction": "mean"}),
        ("sigmoid_focal_loss", (logits, targets), {"alpha": -1, "gamma": 0.5, "reduction": "none"}),
    ]
    cases += [(name, (boxes1, boxes2), {"reduction": "mean"}) for name in TORCHVISION_BOX_LOSSES]
    for name, args, kwargs in cases:
        jfn, tfn = getattr(jaxloss, name, None), getattr(tvops, name, None)
        if jfn is None or tfn is None:
            row(
                {
                    "loss": name,
                    "skipped": "jaxloss has no " + name
                    if jfn is None
                    else f"torchvision {tvops.__name__} has no {name}",
                }
            )
            continue
        for dtype in ("float32", "float64"):
            with precision("ieee"):
                r = parity.compare(
                    jfn,
                    tfn,
                    *[a.astype(dtype) for a in args],
                    grad_argnums=(0,),
                    hvp=True,
                    device=device,
                    **kwargs,
                )
            row(
                {
                    "loss": name,
                    "kwargs": kwargs,
                    "dtype": dtype,
                    "passed": bool(r.passed),
                    "detail": str(r)[:1200],
                }
            )
