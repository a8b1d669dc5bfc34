"""ctc_loss: padded ``(N, S)`` and concatenated 1-D targets, unbatched ``(T, C)`` input,
``blank`` other than 0, empty targets, repeated labels, impossible alignments
(``zero_infinity``), -inf log-probabilities, lengths as tensors and as tuples.

torch's gradient with respect to ``log_probs`` is the gradient with respect to the
*logits* of a log-softmax (``exp(lp) - posterior``), not the derivative of the loss
it returns; jaxloss returns the true derivative (documented deviation). So:

* "logits" cases differentiate through ``log_softmax`` on both sides, where the two
  conventions agree, and are compared with torch (values and gradients);
* "direct" cases differentiate ``log_probs`` itself and are judged against
  :func:`parity.references.ctc_reference` (the alpha recursion in float64 torch ops:
  autograd's true gradient, and second order too, which torch's ``ctc_loss`` lacks).

torch's CPU ``ctc_loss`` supports float32 / float64 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parity import references
from parity.cases import Case, Invalid, log_softmax, loss, rng_for

T, N, C, S = 10, 3, 5, 4


@loss(
    "ctc_loss",
    "ctc",
    ("log_probs", "targets", "input_lengths", "target_lengths", "blank", "reduction", "zero_infinity"),
    {
        "mode": "logits",
        "layout": "padded",
        "reduction": "mean",
        "blank": 0,
        "zero_infinity": False,
        "lengths": "varied",
        "values": "normal",
        "seed": 0,
    },
    [
        {},
        {"reduction": "none"},
        {"reduction": "sum"},
        {"mode": "direct"},
        {"mode": "direct", "reduction": "none"},
        {"mode": "direct", "reduction": "sum", "layout": "concat"},
        {"layout": "concat"},
        {"layout": "concat", "reduction": "none"},
        {"layout": "unbatched"},
        {"layout": "unbatched", "mode": "direct", "reduction": "none"},
        {"blank": "last"},
        {"blank": "last", "mode": "direct", "reduction": "none"},
        {"lengths": "full"},
        {"lengths": "tuple"},
        {"lengths": "empty-target", "reduction": "none"},
        {"lengths": "empty-target", "mode": "direct"},
        {"values": "repeats", "reduction": "none"},
        {"values": "repeats", "mode": "direct"},
        {"values": "impossible", "zero_infinity": True, "reduction": "none"},
        {"values": "impossible", "zero_infinity": True},
        {"values": "impossible", "zero_infinity": True, "mode": "direct", "reduction": "sum"},
        {"values": "impossible", "zero_infinity": False, "reduction": "none"},
        {"zero_infinity": True},
        {"values": "neg-inf", "mode": "direct", "reduction": "none"},
        {"values": "neg-inf", "mode": "direct"},
        {"values": "peaked", "mode": "direct", "reduction": "none"},
    ],
    {
        "mode": ["logits", "direct"],
        "layout": ["padded", "concat", "unbatched"],
        "reduction": ["mean", "none", "sum"],
        "blank": [0, "last"],
        "zero_infinity": [False, True],
        "lengths": ["varied", "full", "tuple", "empty-target"],
        "values": ["normal", "repeats", "impossible", "neg-inf", "peaked"],
        "seed": [0, 1, 2, 3],
    },
    torch_name="F.ctc_loss (+ parity.references.ctc_reference for gradients)",
)
def ctc_loss(s: dict[str, Any]) -> Case:
    rng = rng_for(s, "ctc")
    blank = 0 if s["blank"] == 0 else C - 1
    labels = [c for c in range(C) if c != blank]
    n = 1 if s["layout"] == "unbatched" else N
    il = np.full((n,), T, dtype=np.int64) if s["lengths"] == "full" else rng.integers(T - 3, T + 1, size=(n,)).astype(np.int64)
    tl = rng.integers(1, S + 1, size=(n,)).astype(np.int64)
    if s["lengths"] == "full":
        tl[:] = S
    if s["lengths"] == "empty-target":
        tl[0] = 0
    tg = rng.choice(labels, size=(n, S)).astype(np.int64)
    if s["values"] == "repeats":  # repeated labels need a blank between them
        tg[:, 1] = tg[:, 0]
        tl = np.maximum(tl, 2)
    if s["values"] == "impossible":  # target longer than the input of sample 0
        il[0] = 2
        tl[0] = S
        if s["layout"] == "unbatched":
            pass
    scale = 8.0 if s["values"] == "peaked" else 1.0
    logits = rng.normal(size=(T, n, C)) * scale
    lp = log_softmax(logits, -1)
    if s["values"] == "neg-inf":  # some classes impossible at some steps (never the blank)
        mask = (rng.uniform(size=lp.shape) < 0.15) & (np.arange(C) != blank)
        lp = np.where(mask, -np.inf, lp)
        logits = np.where(mask, -np.inf, logits)
        if s["mode"] == "logits":
            raise Invalid("-inf logits: the log-softmax gradient is NaN on both sides; use direct")
    if s["values"] == "impossible" and not s["zero_infinity"] and s["reduction"] != "none":
        pass
    targets: Any = tg
    if s["layout"] == "concat":
        targets = np.concatenate([tg[b, : tl[b]] for b in range(n)]).astype(np.int64)
    input_lengths: Any = il
    target_lengths: Any = tl
    if s["layout"] == "unbatched":
        logits, lp, targets = logits[:, 0], lp[:, 0], tg[0]
        input_lengths, target_lengths = np.int64(il[0]), np.int64(tl[0])
    if s["lengths"] == "tuple":
        input_lengths, target_lengths = tuple(int(v) for v in il), tuple(int(v) for v in tl)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if blank:
        kw["blank"] = blank
    if s["zero_infinity"]:
        kw["zero_infinity"] = True
    # an impossible alignment without zero_infinity: inf loss, gradients NaN/inf by convention: value only
    grad = () if s["values"] == "impossible" and not s["zero_infinity"] else ("log_probs",)
    names = ("log_probs", "targets", "input_lengths", "target_lengths")
    if s["mode"] == "logits":
        return Case(
            "ctc_loss",
            "",
            (logits, targets, input_lengths, target_lengths),
            kw,
            names,
            grad=grad,
            dtypes=("float64", "float32"),
            jax_fn=references.jax_ctc_from_logits,
            torch_fn=references.torch_ctc_from_logits,
            jax_expr="parity.references.jax_ctc_from_logits",
            torch_expr="parity.references.torch_ctc_from_logits",
            note="through log_softmax (where torch's gradient convention is exact)",
        )
    return Case(
        "ctc_loss",
        "",
        (lp, targets, input_lengths, target_lengths),
        kw,
        names,
        grad=grad,
        dtypes=("float64", "float32"),
        judge="reference",
        reference=references.ctc_reference,
        reference_expr="parity.references.ctc_reference",
        note="documented deviation: torch's log_probs gradient assumes a log-softmax; judged against the float64 alpha recursion",
    )
