"""The dependency direction: jaxloss needs jax alone; torch/flax only where promised."""

import json
import subprocess
import sys
import tomllib

import pytest

from tests._extras import ROOT, run_with_only


def test_core_dependencies_are_jax_only():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0] for d in meta["dependencies"]] == ["jax"]
    assert any(d.startswith("torch") for d in meta["optional-dependencies"]["parity"])


def test_py_typed_markers_ship():
    for pkg in ("jaxloss", "parity", "train"):  # folders; installed as jaxloss, jaxloss.parity, jaxloss.train
        assert (ROOT / pkg / "py.typed").exists()



def test_the_install_names_are_jaxloss_parity_and_jaxloss_train():
    """The folders parity/ and train/ install under jaxloss (a top-level `train` collides with users'
    train.py), and every package folder is listed, so none is left out of the wheel."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {"jaxloss": "jaxloss", "jaxloss.parity": "parity", "jaxloss.train": "train"}
    folders = {f"jaxloss.{p.parent.relative_to(ROOT).as_posix().replace('/', '.')}".replace("jaxloss.jaxloss", "jaxloss")
               for pkg in ("jaxloss", "parity", "train") for p in (ROOT / pkg).rglob("__init__.py")}  # fmt: skip
    assert set(tool["packages"]) == folders


def test_the_old_top_level_names_say_the_new_ones(tmp_path):
    """From a checkout, `import parity` would find the folder: it refuses, naming jaxloss.parity."""
    for name in ("parity", "train"):
        out = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=ROOT, check=False)
        assert out.returncode == 1 and f"from jaxloss import {name}" in out.stderr, out.stderr[-500:]
        assert f"python -m jaxloss.{name}" in out.stderr

# --------------------------------------------------------------------------- each extra on its own, as pip installs it
def _jaxloss_modules() -> list[str]:
    return sorted(f"jaxloss.{p.stem}" for p in (ROOT / "jaxloss").glob("*.py") if p.stem != "__init__")


def test_every_jaxloss_module_imports_with_jax_alone(tmp_path):
    """``pip install jaxloss``: every module but the Flax one imports and runs (torch, flax and optax
    hidden, numpy.testing blocked too: the library needs none of them); that one says it needs flax;
    no torch or flax module was loaded. (One interpreter for what were two tests: ~1.4 CPU s each.)"""
    modules = [m for m in _jaxloss_modules() if m != "jaxloss.nn_modules"]
    code = (
        "import sys\n"
        "sys.modules['numpy.testing'] = None\n"
        "import importlib, jax.numpy as jnp, jaxloss, jaxloss.checked\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "x = jnp.ones((2, 3)); t = jnp.zeros((2,), jnp.int32)\n"
        "print(float(jaxloss.cross_entropy(x, t)), float(jaxloss.nn.L1Loss()(x, x)))\n"
        "assert not any(m.startswith(('torch', 'flax')) for m in sys.modules if sys.modules[m] is not None)\n"
        "try:\n    import jaxloss.nn_modules\nexcept ModuleNotFoundError as e:\n    print('needs', e.name)\n"
    )
    out = run_with_only((), ["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1:] == ["0.0", "needs", "flax"], out.stdout
    assert len(modules) >= 15  # the glob found the package


def _imports_every_module_and_helps(packages: list[str], cli: str) -> str:
    """A program that imports every module of ``packages`` (``__main__`` aside: importing it runs it),
    then pyplot (the reports' plots), then prints ``cli``'s ``--help``; its last line counts the modules."""
    return (
        "import contextlib, importlib, pkgutil\n"
        f"packages = [importlib.import_module(p) for p in {packages!r}]\n"
        "mods = [m.name for p in packages for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')\n"
        "        if not m.name.endswith('__main__')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot\n"
        f"with contextlib.suppress(SystemExit): importlib.import_module({cli!r}).main(['--help'])\n"
        "print(len(mods))\n"
    )


def test_the_parity_extra_imports_every_parity_and_train_module(tmp_path):
    """``pip install 'jaxloss[parity]'``: every module of jaxloss.parity and of the training stack it uses
    imports (none reaches for a package the extra does not install), and the twin CLI answers --help.
    The README main job itself runs in the slow tier (next test)."""
    code = _imports_every_module_and_helps(["jaxloss.parity", "jaxloss.train"], "jaxloss.parity.twin")
    out = run_with_only(("parity",), ["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--steps" in out.stdout and int(out.stdout.split()[-1]) >= 60, out.stdout[-2000:]  # the walk found them


@pytest.mark.slow  # the README main job end to end in a fresh interpreter (~21 CPU s); the test above keeps the imports
def test_the_parity_extra_runs_the_readme_main_job(tmp_path):
    """``pip install 'jaxloss[parity]' && python -m jaxloss.parity``: a loss selection with the flax-built
    nn.* module case, plus the model section a whole-grid run adds (its plot in the HTML report)."""
    out = run_with_only(("parity",), ["-m", "jaxloss.parity", "--loss", "nn.AdaptiveLogSoftmaxWithLoss", "--dtype", "float64",
                                      "--models", "seed-cnn", "-j", "1", "--no-xla-cache", "--out", "rep"], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["summary"]["cases"] >= 1 and report["summary"]["errors"] == 0
    assert "seed-cnn" in (tmp_path / "rep" / "report.html").read_text()
    twin = run_with_only(("parity",), ["-m", "jaxloss.parity.twin", "--help"], tmp_path)  # imports the training stack
    assert twin.returncode == 0 and "--steps" in twin.stdout, twin.stderr[-3000:]


def test_without_flax_the_parity_cli_says_what_to_install_before_running(tmp_path):
    out = run_with_only(("parity",), ["-m", "jaxloss.parity", "--loss", "l1_loss", "--out", "rep"], tmp_path, also_block=("flax",))
    assert out.returncode == 2
    assert out.stderr == "python -m jaxloss.parity: error: the parity report needs flax: pip install 'jaxloss[parity]'\n"
    assert out.stdout == "" and not (tmp_path / "rep" / "report.json").exists()


def test_without_flax_no_case_is_left_out_of_the_count(tmp_path):
    """The two nn.* modules with parameters need flax: their cases are errors naming it, not missing."""
    code = (
        "from jaxloss.parity import runner\n"
        "jobs = runner.grid_jobs(['nn.LinearCrossEntropyLoss'], ['float64'])\n"
        "for r in runner.run_jobs(jobs): print(r.id, r.status, r.result.notes)\n"
    )
    out = run_with_only(("parity",), ["-c", code], tmp_path, also_block=("flax",))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("nn.LinearCrossEntropyLoss/from_torch[float64] error"), out.stdout
    assert "No module named 'flax'" in out.stdout


def test_the_train_extra_imports_every_train_module_and_helps(tmp_path):
    """``pip install 'jaxloss[train]'``: every module of jaxloss.train imports with that extra alone and
    ``python -m jaxloss.train --help`` answers; the tiny run is in the slow tier (next test), and
    tests/test_train_loop.py runs the CLI with every package installed."""
    out = run_with_only(("train",), ["-c", _imports_every_module_and_helps(["jaxloss.train"], "jaxloss.train.__main__")],
                        tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--batch-size" in out.stdout and int(out.stdout.split()[-1]) >= 15, out.stdout[-2000:]


@pytest.mark.slow  # a training run in a fresh interpreter (~13 CPU s); the test above keeps the imports and --help
def test_the_train_extra_runs_python_m_train(tmp_path):
    """``pip install 'jaxloss[train]'``: --help, and a tiny run with its plot and checkpoint."""
    help_out = run_with_only(("train",), ["-m", "jaxloss.train", "--help"], tmp_path)
    assert help_out.returncode == 0 and "--batch-size" in help_out.stdout, help_out.stderr
    out = run_with_only(("train",), ["-m", "jaxloss.train", "--epochs", "1", "--subset", "64", "--batch-size", "32",
                                     "--eval-batch-size", "64", "--no-progress", "--out", "run"], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.jsonl").exists() and (tmp_path / "run" / "curves.png").exists()
