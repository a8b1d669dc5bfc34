"""The dependency direction: jaxloss needs jax alone; torch/flax only where promised."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_dependencies_are_jax_only():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0] for d in meta["dependencies"]] == ["jax"]
    assert any(d.startswith("torch") for d in meta["optional-dependencies"]["parity"])


def test_jaxloss_imports_and_runs_without_torch_or_flax():
    # Make `import torch` / `import flax` fail inside a fresh interpreter, then use the library.
    code = (
        "import sys\n"
        "for m in ('torch', 'flax', 'optax', 'numpy.testing'): sys.modules[m] = None\n"
        "import jax.numpy as jnp, jaxloss, jaxloss.nn, jaxloss.checked\n"
        "x = jnp.ones((2, 3)); t = jnp.zeros((2,), jnp.int32)\n"
        "print(float(jaxloss.cross_entropy(x, t)), float(jaxloss.nn.L1Loss()(x, x)))\n"
        "assert not any(m.startswith(('torch', 'flax')) for m in sys.modules if sys.modules[m] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "0.0"


def test_py_typed_markers_ship():
    for pkg in ("jaxloss", "parity", "train"):
        assert (ROOT / pkg / "py.typed").exists()
