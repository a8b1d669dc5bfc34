"""MkDocs hook: let mkdocstrings (griffe) see the installed package tree.

The repository keeps jaxloss/, parity/ and train/ side by side; they install as jaxloss,
jaxloss.parity and jaxloss.train (pyproject.toml package-dir). griffe reads source folders,
so lay that tree out with links in a temporary folder and point the Python handler at it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = {"parity": "parity", "train": "train"}  # jaxloss.<name> -> folder


def lay_out() -> Path:
    site = Path(tempfile.mkdtemp(prefix="jaxloss-docs-"))
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    pkg = site / "jaxloss"
    pkg.mkdir()
    for item in (ROOT / "jaxloss").iterdir():
        (pkg / item.name).symlink_to(item)
    for name, folder in SUBPACKAGES.items():
        (pkg / name).symlink_to(ROOT / folder)
    return site


@event_priority(100)  # before mkdocstrings reads its handler options
def on_config(config):
    handler = config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})
    handler["paths"] = [str(lay_out())]
    return config
