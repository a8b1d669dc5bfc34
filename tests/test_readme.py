"""The README's quick starts run as written (its commands are checked by their CLIs' own tests).

The losses and proof examples run in full. The training example runs with ``train.train``
replaced by a stand-in that validates the configuration it is given: the real run of that
configuration (the seed CNN on digits) is ``tests/test_train_loop.py``'s, and a minute of
training here would add nothing but time.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start(job: str) -> str:
    """The one ``python`` block under ``### <job>`` in the README's quick start."""
    text = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    section = text.split(f"### {job}\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"the README's {job} quick start has one python block"
    return blocks[0]


def run(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(README), "exec"), {"__name__": "readme_example"})
    return out.getvalue()


def test_the_losses_quick_start_prints_torchs_values():
    torch = pytest.importorskip("torch")
    printed = run(quick_start("Losses"))
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    target = torch.tensor([0, 2])
    expected = [
        torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1).item(),
        torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 1.0]))(logits, target).item(),
    ]
    values = [float(v) for v in re.findall(r"-?\d+\.\d+", printed)]
    assert values == pytest.approx(expected, rel=1e-5), printed


def test_the_proof_quick_start_passes():
    pytest.importorskip("torch")
    printed = run(quick_start("Proof"))
    assert printed.startswith("parity.Result(passed,"), printed  # a failure prints FAILED there


def test_the_training_quick_start_builds_a_valid_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    pytest.importorskip("flax")
    import train
    from train.config import validate

    seen = []

    def stand_in(cfg, **kwargs):
        validate(cfg)  # raises ConfigError on a field the CLI would refuse
        seen.append(cfg)
        return SimpleNamespace(history=[{"epoch": cfg.epochs}])

    monkeypatch.setattr(train, "train", stand_in)
    monkeypatch.chdir(tmp_path)
    printed = run(quick_start("Training"))
    assert len(seen) == 1 and seen[0].dataset == "digits" and seen[0].epochs == 1, seen
    assert "'epoch': 1" in printed
