"""The README's library example (model, optimizer, loss and step from your own script) runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("flax")

README = Path(__file__).resolve().parents[1] / "README.md"


def _training_example() -> str:
    section = README.read_text().split("## Training:", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Training section has one library example"
    return blocks[0]


def test_the_readme_training_example_runs_and_learns():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_training_example(), str(README), "exec"), {"__name__": "readme_example"})
    losses = [float(m) for m in re.findall(r"epoch \d: loss (\d+\.\d+)", out.getvalue())]
    assert len(losses) == 3, out.getvalue()
    assert losses[-1] < losses[0]  # it trains
