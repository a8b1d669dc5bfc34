"""Cross entropy value+grad against optax: the passes over the logits in the compiled HLO, and the time.

``jaxloss.cross_entropy`` (default options, mean) and optax's
``softmax_cross_entropy_with_integer_labels(...).mean()``, value and gradient wrt the logits,
``(N, C)`` float32 with integer targets. The HLO count lists the top-level instructions of
the compiled entry computation that read or write an ``(N, C)`` array (each a pass over the
matrix); the timing calls the two alternately in one process (``--pairs`` times) and reports
the median wall time, the minimum CPU time of the process, and optax's time over jaxloss's,
per pair (above 1: jaxloss faster); jaxloss's passes are also timed one by one (the backward
loop given the max and log-sum-exp, computed beforehand: its floor).

    python -m benchmarks.ce_passes [--n 32768] [--c 1000] [--pairs 10]
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def matrix_passes(hlo: str, n: int, c: int) -> list[str]:
    r"""The instructions of ``hlo``'s entry computation that read or write an ``f32[n,c]`` array, each
    as ``name (kind)``: ``write`` when it makes an ``(n, c)`` array, else what its body does with
    the matrix (``reduce``: a pass that reads all of it; ``gather``: a few elements per row).

    >>> from benchmarks.ce_passes import matrix_passes
    >>> text = ("%body (a: f32[4,3]) -> f32[4] {\n  ROOT %r = f32[4]{0} reduce(%a, %z)\n}\n"
    ...         "ENTRY %e {\n  %p = f32[4,3]{1,0} parameter(0)\n  %f = f32[4]{0} fusion(%p), calls=%body\n}")
    >>> matrix_passes(text, 4, 3)
    ['f (reduce)']
    """
    entry = hlo[hlo.index("ENTRY") :]
    shape = f"f32[{n},{c}]"
    big = set(re.findall(rf"%([\w.-]+) = {re.escape(shape)}", entry))
    out = []
    for line in entry.splitlines()[1:]:
        m = re.match(r"\s*(?:ROOT )?%([\w.-]+) = (\S+) (\w[\w-]*)\(([^)]*)\)(.*)", line)
        if not m or m.group(3) in ("parameter", "constant", "tuple", "bitcast", "get-tuple-element"):
            continue
        name, out_shape, op, operands, rest = m.groups()
        if not (
            out_shape.startswith(shape) or any(o.strip().lstrip("%") in big for o in operands.split(","))
        ):
            continue
        body = op
        called = re.search(r"calls=%([\w.-]+)", rest)
        if called:
            start = hlo.find(f"%{called.group(1)} ")
            body = hlo[start : hlo.find("\n}", start)]
        kind = (
            "write"
            if out_shape.startswith(shape)
            else next(
                (
                    k
                    for k in ("reduce", "gather", "dynamic-slice", "dot")
                    if f" {k}(" in f" {body}" or f"{k}(" in body
                ),
                op,
            )
        )
        out.append(f"{name} ({kind})")
    return out


def functions(x: Any) -> dict[str, Callable[..., Any]]:
    """``{name: jitted f(logits, labels)}``: jaxloss's and optax's cross-entropy value_and_grad, and
    jaxloss's passes over ``x`` one at a time, each given what the ones before it computed
    (``x`` bound: they take the labels only)."""
    import jax
    import jax.numpy as jnp
    import optax

    import jaxloss

    m = jnp.max(x, axis=1, keepdims=True)
    lse = jnp.log(jnp.sum(jnp.exp(x - m), axis=1, keepdims=True))
    return {
        "jaxloss": jax.jit(jax.value_and_grad(lambda x, y: jaxloss.cross_entropy(x, y))),
        "optax": jax.jit(
            jax.value_and_grad(lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean())
        ),
        # jaxloss's passes one by one, same arithmetic: the row max, log(sum(exp(x - max))) given the
        # max, and the backward loop given both and the per-row coefficient (1/N): its floor.
        "pass: max": functools.partial(jax.jit(lambda x, y: jnp.max(x, axis=1)), x),
        "pass: log-sum-exp": functools.partial(
            jax.jit(lambda x, m, y: jnp.log(jnp.sum(jnp.exp(x - m), 1))), x, m
        ),
        "pass: backward loop": functools.partial(jax.jit(_backward_floor), x, m, lse),
    }


def _backward_floor(x: Any, m: Any, lse: Any, y: Any) -> Any:
    """``exp((x - m) - lse) / N - onehot / N``: jaxloss's backward loop with ``m`` and ``lse`` given."""
    import jax.numpy as jnp

    c = 1.0 / x.shape[0]
    return jnp.exp((x - m) - lse) * c - jnp.where(jnp.arange(x.shape[1])[None] == y[:, None], c, 0.0)


def main(argv: list[str]) -> int:
    import jax
    import jax.numpy as jnp

    p = argparse.ArgumentParser(prog="python -m benchmarks.ce_passes", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32768)
    p.add_argument("--c", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=10)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((args.n, args.c), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, args.c, args.n).astype(np.int32))
    fns = functions(x)
    for name, f in fns.items():
        if name.startswith("pass"):
            jax.block_until_ready(f(y))
            continue
        passes = matrix_passes(f.lower(x, y).compile().as_text(), args.n, args.c)
        print(f"{name}: {len(passes)} instructions touch the {args.n}x{args.c} matrix: {', '.join(passes)}")
        jax.block_until_ready(f(x, y))
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for i in range(args.pairs):
        for name in list(fns)[:: 1 if i % 2 == 0 else -1]:  # alternate who goes first
            w0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fns[name](y) if name.startswith("pass") else fns[name](x, y))
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    for name, v in times.items():
        print(
            f"{name}: wall {1e3 * np.median([w for w, _ in v]):.1f} ms (median), CPU {1e3 * min(c for _, c in v):.1f} ms (min)"
        )
    ratio = [o[0] / j[0] for j, o in zip(times["jaxloss"], times["optax"], strict=True)]
    q1, med, q3 = np.quantile(ratio, [0.25, 0.5, 0.75])
    print(f"optax/jaxloss time per pair: median {med:.3f} (quartiles {q1:.3f}-{q3:.3f}); "
          f"CPU min {min(c for _, c in times['optax']) / min(c for _, c in times['jaxloss']):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
