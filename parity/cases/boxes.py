"""Box losses of torchvision.ops: generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss.

The torch side is ``torchvision.ops.<name>`` where torchvision imports, else its formula
written in torch ops (:func:`jaxloss.parity.references.torchvision_box_loss`; torchvision does
not import beside CPU torch). The three share one grid and one fuzzing space:

* shapes: batched ``(6, 4)``, unbatched ``(4,)``, K-dim ``(2, 3, 4)``, ``boxes2``
  broadcast ``(4,)`` into ``boxes1`` ``(6, 4)`` (torchvision allows that direction only),
  empty ``(0, 4)`` ('mean' is 0, not NaN);
* values: random boxes (some overlapping, some disjoint), overlapping pairs, identical
  pairs (every ``min`` / ``max`` a tie: the gradient splits half and half), boxes on an
  integer lattice (touching edges, shared corners, zero-area intersections), degenerate
  boxes (zero width or height, inverted corners: CIoU's ``atan(0 / 0)`` is NaN in value
  and gradient on both sides), large coordinates (areas ~1e6), integer ``boxes1``
  with floating ``boxes2`` (``boxes1`` converted to float32 as torchvision does, so
  ``boxes2`` runs in float32 / float16 / bfloat16: float64 ``boxes2`` is refused, see
  :mod:`jaxloss.boxes`; the floating ``boxes2`` gives the comparison its dtype and
  tolerance, both results are float32);
* ``eps``: default, ``1e-3``, ``0`` and ``1`` (CIoU: only ``alpha``'s denominator).

Half-precision boxes give float32 losses on both sides (torchvision's ``_upcast_non_float``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxloss.parity import references
from jaxloss.parity.cases import ALL_DTYPES, Case, Invalid, loss, rng_for

N = 6
SHAPES = {
    "batched": ((N, 4), (N, 4)),
    "unbatched": ((4,), (4,)),
    "kdim": ((2, 3, 4), (2, 3, 4)),
    "broadcast": ((N, 4), (4,)),
    "empty": ((0, 4), (0, 4)),
}
# integer boxes1 are float32 for torchvision: boxes2 may not be float64 (see jaxloss.boxes)
_INTEGER_DTYPES = ("float32", "float16", "bfloat16")
VALUES = ["normal", "overlapping", "identical", "lattice", "degenerate", "large", "integer"]

GRID: list[dict[str, Any]] = [
    {"dtypes": ALL_DTYPES},
    {"reduction": "mean", "dtypes": ALL_DTYPES},
    {"reduction": "sum"},
    {"values": "overlapping", "dtypes": ALL_DTYPES},
    {"values": "identical", "dtypes": ALL_DTYPES},
    {"values": "lattice", "dtypes": ALL_DTYPES},
    {"values": "degenerate", "dtypes": ("float64", "float32")},
    {"values": "large", "dtypes": ("float64", "float32", "bfloat16")},
    # sides of ~1e-21: h * h underflows in float32 (CIoU's atan(w / h) gradient, torch's (w / h) / h)
    {"values": "tiny", "reduction": "sum", "dtypes": ("float64", "float32")},
    {"values": "integer", "dtypes": _INTEGER_DTYPES},
    {"values": "integer", "reduction": "mean", "dtypes": ("float32",)},
    {"eps": 1e-3, "reduction": "sum"},
    {"eps": 0.0},
    {"eps": 1.0, "values": "overlapping"},
    {"shape": "unbatched"},
    {"shape": "kdim", "reduction": "mean"},
    {"shape": "broadcast", "dtypes": ("float64", "float32")},
    {"shape": "empty", "reduction": "mean"},
    {"shape": "empty", "reduction": "sum"},
    {"shape": "empty"},
]
SPACE: dict[str, list[Any]] = {
    "shape": list(SHAPES),
    "reduction": ["none", "mean", "sum"],
    "eps": [None, 1e-3, 0.0, 1.0],
    "values": VALUES,
    "seed": [0, 1, 2, 3],
}
DEFAULTS: dict[str, Any] = {"shape": "batched", "reduction": "none", "eps": None, "values": "normal", "seed": 0}


def _random_boxes(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Boxes ``(..., 4)`` with positive width and height: corner ~ N(0, 2), size ~ U(0.2, 3)."""
    corner = rng.normal(size=shape[:-1] + (2,)) * 2.0
    size = rng.uniform(0.2, 3.0, size=shape[:-1] + (2,))
    return np.concatenate([corner, corner + size], axis=-1) * scale


def _box_pair(s: dict[str, Any], salt: str) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes1, boxes2)`` for a spec (float64; ``boxes1`` int64 for ``values='integer'``)."""
    rng = rng_for(s, salt)
    s1, s2 = SHAPES[s["shape"]]
    v = s["values"]
    if v in ("lattice", "integer"):
        def lattice(shape: tuple[int, ...]) -> np.ndarray:
            corner = rng.integers(-2, 3, size=shape[:-1] + (2,))
            return np.concatenate([corner, corner + rng.integers(1, 4, size=shape[:-1] + (2,))], axis=-1)

        b1, b2 = lattice(s1), lattice(s2)
        return (b1 if v == "integer" else b1.astype(np.float64)), b2.astype(np.float64)
    scale = {"large": 1e3, "tiny": 1e-21}.get(v, 1.0)
    b1, b2 = _random_boxes(rng, s1, scale), _random_boxes(rng, s2, scale)
    if v == "overlapping":  # boxes2 a jittered copy of boxes1
        b2 = np.broadcast_to(b1, s1)[(0,) * (len(s1) - len(s2))] + rng.normal(size=s2) * 0.3
    elif v == "identical":
        b2 = np.broadcast_to(b1, s1)[(0,) * (len(s1) - len(s2))].copy()
    elif v == "degenerate":
        flat = b1.reshape(-1, 4)
        if flat.shape[0] < 3:
            raise Invalid("degenerate boxes need 3 boxes")
        flat[0, 2] = flat[0, 0]  # zero width
        flat[1, 3] = flat[1, 1]  # zero height
        flat[2, [0, 2]] = flat[2, [2, 0]]  # x2 < x1
    return b1, b2


def _build(name: str, s: dict[str, Any]) -> Case:
    b1, b2 = _box_pair(s, name)
    kw: dict[str, Any] = {"reduction": s["reduction"]}
    if s["eps"] is not None:
        kw["eps"] = s["eps"]
    if s["eps"] == 0.0 and s["values"] in ("identical", "degenerate"):
        raise Invalid("eps=0 with zero-area unions or enclosing boxes: 0 / 0")
    integer = s["values"] == "integer"
    torch_fn, torch_expr = references.torchvision_box_loss(name)
    return Case(
        name,
        "",
        (b1, b2),
        kw,
        ("boxes1", "boxes2"),
        grad=("boxes2",) if integer else ("boxes1", "boxes2"),
        fuzz_dtypes=_INTEGER_DTYPES if integer else None,
        torch_fn=torch_fn,
        torch_expr=torch_expr,
        note="torchvision's formula in torch ops (torchvision not installed)" if "parity" in torch_expr else "",
    )


def _register(name: str) -> None:
    torch_expr = references.torchvision_box_loss(name)[1]
    loss(name, "boxes", ("boxes1", "boxes2", "reduction", "eps"), DEFAULTS, GRID, SPACE, torch_name=torch_expr)(
        lambda s: _build(name, s)
    )


for _name in references.BOX_LOSSES:
    _register(_name)
