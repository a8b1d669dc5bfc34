"""The training page's library example (model, optimizer, loss and step from your own script) runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("flax")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "train.md"
SECTION = "### Your own loop"


def _training_example() -> str:
    section = PAGE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"the {SECTION!r} section of docs/train.md has one library example"
    return blocks[0]


def test_the_docs_training_example_runs_and_learns():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_training_example(), str(PAGE), "exec"), {"__name__": "docs_example"})
    losses = [float(m) for m in re.findall(r"epoch \d: loss (\d+\.\d+)", out.getvalue())]
    assert len(losses) == 3, out.getvalue()
    assert losses[-1] < losses[0]  # it trains
