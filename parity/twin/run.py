"""``run_twin``: :func:`jaxloss.parity.compare_training` on the project's models, the shipped step against torch."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import jax
from jaxloss.parity.models.twins import order_mapping
from jaxloss.parity.precisions import precision as precision_mode
from jaxloss.parity.training import TrainingStep, compare_training
from jaxloss.parity.twin.config import TwinConfig, check_config
from jaxloss.parity.twin.results import TwinDiagnosis, TwinFailure, TwinResult
from jaxloss.parity.twin.sides import batch_pairs, jax_side, models, synthetic_batches, torch_side

__all__ = ["run_twin"]


def _set_x64(on: bool) -> bool:
    before = bool(jax.config.read("jax_enable_x64"))
    if on != before:
        jax.config.update("jax_enable_x64", on)
    return before


def _configure(cfg: TwinConfig | None, overrides: dict[str, Any]) -> TwinConfig:
    """A copy of ``cfg`` with ``overrides`` set on it or on its ``train`` recipe, checked."""
    cfg = copy.deepcopy(cfg or TwinConfig())
    for k, v in overrides.items():
        target = cfg if hasattr(cfg, k) else cfg.train if hasattr(cfg.train, k) else None
        if target is None:
            raise TypeError(f"unknown twin option {k!r}")
        setattr(target, k, v)
    cfg.train.precision = "tf32" if cfg.precision == "tf32" else "fp32"  # the Flax model's compute dtype
    check_config(cfg)
    return cfg


def run_twin(cfg: TwinConfig | None = None, *, on_step: Callable[[TrainingStep], None] | None = None,
             **overrides: Any) -> TwinResult:
    """Train both twins ``cfg.resolved_steps()`` steps in lockstep; per-step differences.

    ``overrides`` set fields of ``cfg`` or of ``cfg.train`` by name; ``on_step`` is called
    with each finished step (the command line stops there on Ctrl-C). The run is
    :func:`jaxloss.parity.compare_training` with the shipped compiled step
    (:func:`jaxloss.parity.twin.sides.jax_side`) and torch's (:func:`~jaxloss.parity.twin.sides.torch_side`),
    the layers paired by :func:`jaxloss.parity.models.twins.order_mapping`, with the float64 torch
    reference when ``cfg.reference`` (float32) and the training losses for the diagnosis when
    ``cfg.diagnose``; its step rule decides each step (:mod:`jaxloss.parity.training.records`).

    >>> from jaxloss.parity.twin import run_twin
    >>> r = run_twin(steps=1, batch_size=2, reference=False)  # the seed CNN, one SGD step each side
    >>> r.passed, len(r.steps), r.first_failure is None
    (True, 1, True)
    """
    cfg = _configure(cfg, overrides)
    steps = cfg.resolved_steps()
    batches = synthetic_batches(steps, cfg.train.batch_size, cfg.image_size, cfg.num_classes, cfg.train.seed)
    x64_before = _set_x64(True) if cfg.dtype == "float64" else None
    try:
        with precision_mode(cfg.precision):
            fm, tm = models(cfg)
            ref = copy.deepcopy(tm).double() if cfg.reference and cfg.dtype == "float32" else None
            jax_step, jopt, jax_loss = jax_side(cfg, fm)
            torch_step, (topt, *ropt), torch_loss = torch_side(cfg, tm, *([ref] if ref is not None else []))
            report = compare_training(
                jax_step, torch_step, (fm, jopt), (tm, topt), batch_pairs(batches, cfg.dtype),
                losses=(jax_loss, torch_loss) if cfg.diagnose else None, rtol=cfg.rtol, atol=cfg.atol,
                reference=(ref, ropt[0]) if ref is not None else False, mapping=order_mapping(fm, tm), on_step=on_step,
            )  # fmt: skip
    finally:
        if x64_before is not None:
            _set_x64(x64_before)
    div = report.first_divergence
    failure = diagnosis = None
    if div is not None and div.start is not None:
        x, y = batches[div.step - 1]
        s = div.start
        failure = TwinFailure(div.step, s.jax_model, s.torch_model, x, y, s.reference_model)
        diagnosis = TwinDiagnosis.from_divergence(div) if cfg.diagnose else None
    config = {**cfg.train.to_json(), **{k: v for k, v in asdict(cfg).items() if k != "train"}, "steps": steps,
              "momentum": cfg.train.effective_momentum}  # fmt: skip
    return TwinResult(config, report.rtol, report.atol, report.steps, jax.devices()[0].device_kind, report.seconds,
                      failure, diagnosis, report)  # fmt: skip
