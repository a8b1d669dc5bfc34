"""Time every jaxloss function against torch eager (and torch.compile, optax) in one run.

For each loss, float32, value and value+gradient, at a small size (dispatch
latency, batch 32) and a large one (~16M elements: memory- or exp-bound). The
*limit* is measured in the same process: the larger of a streaming pass (read the
input once, write a gradient-sized buffer once: NumPy ``copyto`` into a
preallocated array) and, for losses that need an exponential per element
(softmax / sigmoid / log-sum-exp types), one ``exp`` over every element into a
preallocated buffer.

A second floor, the *fresh-output pass*, is what any JAX (or torch) function pays that
returns a new gradient-sized array: one jitted elementwise pass over the input into a
newly allocated output. Arrays over 32 MiB are ``mmap``-ed by glibc on every allocation,
so this pass includes first-touch page faults that the preallocated limit does not.

    python -m benchmarks.losses [--size small|large|both] [--loss NAME ...] [--compile]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F

import jaxloss
from benchmarks.timing import block, markdown_table, median_seconds

LARGE = 1 << 24  # elements of the main input at the large size


@dataclass
class Case:
    """One benchmark input: arrays (NumPy, float32 or int), options, differentiable names."""

    arrays: dict[str, np.ndarray]
    kwargs: dict[str, Any] = field(default_factory=dict)
    diff: tuple[str, ...] = ("input",)
    exp_bound: bool = False  # needs one exp per element of the main input
    optax_fn: Callable[..., Any] | None = None  # same loss in optax, called with the same arrays
    torch_fn: Callable[..., Any] | None = None  # default: torch.nn.functional.<name>


def _rows_cols(size: str, cols: int, large: int = LARGE) -> tuple[int, int]:
    return (32, cols) if size == "small" else (large // cols, cols)


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _mean(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *a, **k: jnp.mean(f(*a, **k))


def make_case(name: str, size: str, rng: np.random.Generator, large: int = LARGE) -> Case:
    """The inputs of ``name`` at ``size`` ('small' | 'large': about ``large`` elements)."""
    n, c = _rows_cols(size, 1024 if name in ("cross_entropy", "nll_loss", "focal_loss", "kl_div") else 256, large)
    x = _f32(rng.normal(size=(n, c)))
    y = _f32(rng.normal(size=(n, c)))
    cls = rng.integers(0, c, size=(n,)).astype(np.int32)
    prob = _f32(rng.uniform(0.02, 0.98, size=(n, c)))
    sign = _f32(rng.choice([-1.0, 1.0], size=(n, c)))
    if name in ("l1_loss", "smooth_l1_loss"):
        return Case({"input": x, "target": y})
    if name == "mse_loss":
        return Case({"input": x, "target": y}, optax_fn=lambda input, target: jnp.mean(optax.losses.squared_error(input, target)))
    if name == "huber_loss":
        return Case({"input": x, "target": y}, optax_fn=lambda input, target: jnp.mean(optax.losses.huber_loss(input, target)))
    if name == "poisson_nll_loss":
        return Case({"input": x, "target": _f32(rng.poisson(2.0, size=(n, c)))}, exp_bound=True)
    if name == "gaussian_nll_loss":
        return Case({"input": x, "target": y, "var": prob}, diff=("input", "var"))
    if name == "cross_entropy":
        return Case(
            {"input": x, "target": cls},
            exp_bound=True,
            optax_fn=lambda input, target: jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(input, target)),
        )
    if name == "focal_loss":
        # torch has no focal loss: the torch column is the same formula in torch ops.
        def torch_focal(input: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
            logp = F.log_softmax(input, 1).gather(1, target[:, None].long())[:, 0]
            return (-((1 - logp.exp()) ** gamma) * logp).mean()

        return Case({"input": x, "target": cls}, exp_bound=True, torch_fn=torch_focal)
    if name == "nll_loss":
        return Case({"input": _f32(jax.nn.log_softmax(jnp.asarray(x), 1)), "target": cls})
    if name == "binary_cross_entropy":
        return Case({"input": prob, "target": _f32(rng.uniform(size=(n, c)))})
    if name == "binary_cross_entropy_with_logits":
        return Case(
            {"input": x, "target": prob},
            exp_bound=True,
            optax_fn=lambda input, target: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(input, target)),
        )
    if name == "sigmoid_focal_loss":
        def torch_sigmoid_focal(inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
            p = torch.sigmoid(inputs)
            ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
            p_t = p * targets + (1 - p) * (1 - targets)
            loss = ce * ((1 - p_t) ** 2) * (0.25 * targets + 0.75 * (1 - targets))
            return loss.mean()

        return Case(
            {"inputs": x, "targets": prob},
            {"reduction": "mean"},
            diff=("inputs",),
            exp_bound=True,
            optax_fn=lambda inputs, targets, reduction: jnp.mean(optax.losses.sigmoid_focal_loss(inputs, targets, alpha=0.25)),
            torch_fn=torch_sigmoid_focal,
        )
    if name == "soft_margin_loss":
        return Case({"input": x, "target": sign}, exp_bound=True)
    if name == "multilabel_soft_margin_loss":
        return Case({"input": x, "target": _f32(rng.integers(0, 2, size=(n, c)))}, exp_bound=True)
    if name == "kl_div":
        logq = _f32(jax.nn.log_softmax(jnp.asarray(x), 1))
        logp = _f32(jax.nn.log_softmax(jnp.asarray(y), 1))
        return Case(
            {"input": logq, "target": logp},
            {"reduction": "batchmean", "log_target": True},
            diff=("input", "target"),
            exp_bound=True,
            optax_fn=lambda input, target, reduction, log_target: jnp.mean(
                optax.losses.kl_divergence_with_log_targets(input, target)
            ),
        )
    if name == "multilabel_margin_loss":
        # few labels per row (torch's CPU kernel is O(C * labels) per row)
        n2, c2 = _rows_cols(size, 64, large)
        t = np.full((n2, c2), -1, np.int32)
        t[:, :4] = np.stack([rng.choice(c2, 4, replace=False) for _ in range(min(n2, 64))] * (n2 // min(n2, 64)))
        return Case({"input": _f32(rng.normal(size=(n2, c2))), "target": t})
    if name == "multi_margin_loss":
        return Case({"input": x, "target": cls})
    if name in ("margin_ranking_loss",):
        m = n * c
        return Case({"input1": x.reshape(m), "input2": y.reshape(m), "target": sign.reshape(m)}, diff=("input1", "input2"))
    if name == "hinge_embedding_loss":
        return Case({"input": x, "target": sign})
    if name == "cosine_embedding_loss":
        return Case({"input1": x, "input2": y, "target": sign[:, 0]}, diff=("input1", "input2"))
    if name in ("triplet_margin_loss", "triplet_margin_with_distance_loss"):
        z = _f32(rng.normal(size=(n, c)))
        opt = None
        if name == "triplet_margin_loss":
            opt = lambda anchor, positive, negative: jnp.mean(optax.losses.triplet_margin_loss(anchor, positive, negative))  # noqa: E731
        return Case({"anchor": x, "positive": y, "negative": z}, diff=("anchor", "positive", "negative"), optax_fn=opt)
    if name == "pairwise_distance":
        return Case({"x1": x, "x2": y}, diff=("x1", "x2"))
    if name == "cosine_similarity":
        return Case(
            {"x1": x, "x2": y},
            diff=("x1", "x2"),
            optax_fn=lambda x1, x2: optax.losses.cosine_similarity(x1, x2, epsilon=1e-8),
        )
    if name == "ctc_loss":
        t_len, batch, n_cls, s_len = (50, 32, 20, 10) if size == "small" else (400, 64, 256, 60)
        logits = _f32(rng.normal(size=(t_len, batch, n_cls)))
        log_probs = _f32(jax.nn.log_softmax(jnp.asarray(logits), -1))
        targets = rng.integers(1, n_cls, size=(batch, s_len)).astype(np.int32)
        in_len = np.full((batch,), t_len, np.int32)
        tg_len = rng.integers(s_len // 2, s_len + 1, size=(batch,)).astype(np.int32)

        def optax_ctc(log_probs: jax.Array, targets: jax.Array, input_lengths: jax.Array, target_lengths: jax.Array) -> jax.Array:
            # optax: (B, T, K) logits with paddings; log_softmax of log-probs is the identity.
            lp = jnp.swapaxes(log_probs, 0, 1)
            tpad = (jnp.arange(s_len)[None] >= target_lengths[:, None]).astype(lp.dtype)
            per_seq = optax.losses.ctc_loss(lp, jnp.zeros(lp.shape[:2], lp.dtype), targets, tpad)
            return jnp.mean(per_seq / jnp.maximum(target_lengths, 1))

        return Case(
            {"log_probs": log_probs, "targets": targets, "input_lengths": in_len, "target_lengths": tg_len},
            diff=("log_probs",),
            exp_bound=True,
            optax_fn=optax_ctc,
        )
    raise KeyError(name)


NAMES = [
    "l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss", "poisson_nll_loss", "gaussian_nll_loss",
    "cross_entropy", "nll_loss", "focal_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "kl_div", "multilabel_margin_loss",
    "multi_margin_loss", "margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss",
    "triplet_margin_loss", "triplet_margin_with_distance_loss", "pairwise_distance", "cosine_similarity", "ctc_loss",
]  # fmt: skip


def _limit_seconds(case: Case) -> float:
    main = next(a for a in case.arrays.values() if np.issubdtype(a.dtype, np.floating))
    out = np.empty_like(main)
    stream = median_seconds(lambda: np.copyto(out, main))
    if not case.exp_bound:
        return stream
    return max(stream, median_seconds(lambda: np.exp(main, out=out)))


def _fresh_output_seconds(case: Case) -> float:
    """One jitted elementwise pass over the main input into a newly allocated output."""
    main = jnp.asarray(next(a for a in case.arrays.values() if np.issubdtype(a.dtype, np.floating)))
    negate = jax.jit(jnp.negative)
    return median_seconds(lambda: block(negate(main)))


def jax_fns(fn: Callable[..., Any], case: Case, blocking: bool = True) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``value()`` and ``vgrad()`` of the jitted JAX function on the default device; they block
    until the result is ready unless ``blocking=False`` (asynchronous devices)."""
    names = list(case.arrays)
    arrays = {k: jnp.asarray(v) for k, v in case.arrays.items()}
    diff_idx = tuple(names.index(d) for d in case.diff)

    def scalar(*vals: jax.Array) -> jax.Array:
        return jnp.sum(fn(*vals, **case.kwargs))

    value = jax.jit(lambda *v: fn(*v, **case.kwargs))
    vgrad = jax.jit(jax.value_and_grad(scalar, argnums=diff_idx))
    vals = [arrays[k] for k in names]
    if not blocking:
        return (lambda: value(*vals)), (lambda: vgrad(*vals))
    return (lambda: block(value(*vals))), (lambda: block(vgrad(*vals)))


def torch_fns(fn: Callable[..., Any], case: Case, device: str = "cpu") -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``value()`` and ``vgrad()`` of the torch function on ``device``; they return without synchronizing."""

    def tensors(grad: bool) -> list[torch.Tensor]:
        out = []
        for k, v in case.arrays.items():
            t = torch.from_numpy(v.astype(np.int64) if np.issubdtype(v.dtype, np.integer) else v.copy()).to(device)
            out.append(t.requires_grad_(grad and k in case.diff))
        return out

    plain, with_grad = tensors(False), tensors(True)
    diff_tensors = [t for t in with_grad if t.requires_grad]

    def value() -> Any:
        with torch.no_grad():
            return fn(*plain, **case.kwargs)

    def vgrad() -> Any:
        loss = fn(*with_grad, **case.kwargs).sum()
        return torch.autograd.grad(loss, diff_tensors)

    return value, vgrad


def bench_loss(name: str, size: str, compile_torch: bool, rng: np.random.Generator) -> dict[str, Any]:
    case = make_case(name, size, rng)
    row: dict[str, Any] = {"loss": name, "size": size, "elements": int(next(iter(case.arrays.values())).size)}
    jv, jg = jax_fns(getattr(jaxloss, name), case)
    row["jax_value"], row["jax_vgrad"] = median_seconds(jv), median_seconds(jg)
    tfn = case.torch_fn or getattr(F, name)
    tv, tg = torch_fns(tfn, case)
    row["torch_value"], row["torch_vgrad"] = median_seconds(tv), median_seconds(tg)
    if compile_torch:
        try:
            cv, cg = torch_fns(torch.compile(tfn), case)
            row["compile_vgrad"] = median_seconds(cg, warmup=2)
        except Exception as e:  # torch.compile unavailable for this loss / platform
            row["compile_vgrad"] = float("nan")
            row["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    if case.optax_fn is not None:
        ov, og = jax_fns(case.optax_fn, case)
        row["optax_value"], row["optax_vgrad"] = median_seconds(ov), median_seconds(og)
    if size == "large":
        row["limit"] = _limit_seconds(case)
        row["fresh"] = _fresh_output_seconds(case)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["loss", "size", "jax v+g ms", "torch v+g ms", "speed-up vs torch (v)", "speed-up vs torch (v+g)"]
    compiled = any("compile_vgrad" in r for r in rows)
    if compiled:
        headers.append("speed-up vs torch.compile (v+g)")
    headers += ["jax/optax (v+g)", "jax/limit (v+g)", "jax/fresh-output pass (v+g)"]
    out = []
    for r in rows:
        line = [
            r["loss"], r["size"], 1e3 * r["jax_vgrad"], 1e3 * r["torch_vgrad"],
            r["torch_value"] / r["jax_value"], r["torch_vgrad"] / r["jax_vgrad"],
        ]  # fmt: skip
        if compiled:
            line.append(r["compile_vgrad"] / r["jax_vgrad"] if "compile_vgrad" in r else "-")
        line.append(r["jax_vgrad"] / r["optax_vgrad"] if "optax_vgrad" in r else "-")
        line.append(r["jax_vgrad"] / r["limit"] if "limit" in r else "-")
        line.append(r["jax_vgrad"] / r["fresh"] if "fresh" in r else "-")
        out.append(line)
    return markdown_table(headers, out)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["small", "large", "both"], default="both")
    p.add_argument("--loss", nargs="*", default=NAMES)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = p.parse_args(argv)
    sizes = ["small", "large"] if args.size == "both" else [args.size]
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        for name in args.loss:
            row = bench_loss(name, size, args.compile, rng)
            rows.append(row)
            print(
                f"{name:36s} {size:5s} jax v+g {1e3 * row['jax_vgrad']:9.3f} ms  torch v+g {1e3 * row['torch_vgrad']:9.3f} ms"
                + (f"  limit {1e3 * row['limit']:8.3f} ms" if "limit" in row else "")
                + (f"  fresh-output pass {1e3 * row['fresh']:8.3f} ms" if "fresh" in row else ""),
                flush=True,
            )
    md = table(rows)
    print(md)
    return md


if __name__ == "__main__":
    main()
