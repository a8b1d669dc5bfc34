"""The README's quick starts run as written (its commands are checked by their CLIs' own tests).

The losses and proof examples run in full. The training example runs with ``train.train``
replaced by a stand-in that validates the configuration it is given: the real run of that
configuration (the seed CNN on digits) is ``tests/test_train_loop.py``'s, and a minute of
training here would add nothing but time.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
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
    from jaxloss import train
    from jaxloss.train.config import validate

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


def readme_commands() -> list[list[str]]:
    """``[module, *args]`` of every ``python -m`` line in the README's bash blocks (comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            # the one-line install-and-run commands end in their python -m call
            m = re.search(r"python -m (\S+)((?:\s+[^#\s&]\S*)*)", line.split("#", 1)[0])
            if m and m[1] != "pytest":
                commands.append([m[1], *m[2].split()])
    return commands


def test_the_readme_shows_each_cli():
    modules = {c[0] for c in readme_commands()}
    assert {"jaxloss.parity", "jaxloss.parity.models", "jaxloss.parity.twin", "jaxloss.train"} <= modules, modules


# Prints each CLI's --help, in one interpreter so the modules share their imports.
HELP_OF_EACH = """
import contextlib, io, json, runpy, sys
helps = {}
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            assert e.code in (0, None), (module, e.code)
    helps[module] = out.getvalue()
print(json.dumps(helps))
"""


def test_the_readme_commands_use_flags_their_cli_has():
    # Each flag a README command passes is one its CLI's --help lists: a renamed flag fails here
    # (the CLIs' own tests run the commands end to end).
    import json

    root = README.parent
    commands = readme_commands()
    modules = sorted({c[0] for c in commands})
    proc = subprocess.run(
        [sys.executable, "-c", HELP_OF_EACH, *modules],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    helps = json.loads(proc.stdout.strip().splitlines()[-1])
    missing = [
        f"python -m {c[0]} {flag}"
        for c in commands
        for flag in (a.split("=", 1)[0] for a in c[1:] if a.startswith("--"))
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[c[0]])
    ]
    assert not missing, f"the README passes flags its CLIs' --help does not list: {missing}"
