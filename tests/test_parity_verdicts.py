"""Issue 16: no parity verdict is PASSED by accident.

Invalid tolerances and arguments are refused with an error naming them, nothing compared is a
failure, two different errors are not agreement, golden files are untrusted input. Models are
tiny Linear pairs (a comparison takes well under a second); expected values come from the
formula ``|a - e| <= atol + rtol |e|``, never from the code under test.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jaxloss.parity.models.golden import load_golden, save_golden

import jaxloss
from jaxloss import parity

X = np.linspace(0.5, 2.0, 6).reshape(2, 3)
Y = np.zeros((2, 3))
BAD_TOLERANCES = [-1, -1e-9, math.inf, math.nan, True, "1e-3"]


def _linear_pair(weight_offset: float = 0.0):
    """A Flax and a torch Linear(3, 2) with the same weights, the torch one ``weight_offset`` off in one element."""
    jm = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    tm = torch.nn.Linear(3, 2)
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(np.asarray(jm.kernel[...]).T))
        tm.bias.zero_()
        tm.weight[0, 0] += weight_offset
    return jm, tm


def _x(batch: int = 2) -> np.ndarray:
    return np.linspace(-1, 1, batch * 3, dtype=np.float32).reshape(batch, 3)


# --------------------------------------------------------------------------- tolerances
@pytest.mark.parametrize("bad", BAD_TOLERANCES)
def test_compare_and_assert_close_refuse_an_invalid_tolerance(bad):
    for name in ("rtol", "atol"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, **{name: bad})
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            parity.assert_close(jaxloss.l1_loss, F.l1_loss, X, Y, **{name: bad})


def test_compare_tolerance_override_judges_by_the_formula():
    # JAX 1e-3 (relative) off torch: |a - e| = 1e-3 |e|, so rtol 2e-3 passes it, 5e-4 does not
    off = lambda a, b: jaxloss.l1_loss(a, b) * 1.001
    assert parity.compare(off, F.l1_loss, X, Y, rtol=2e-3, atol=0).passed
    assert not parity.compare(off, F.l1_loss, X, Y, rtol=5e-4, atol=0).passed
    assert not parity.compare(off, F.l1_loss, X, Y).passed  # float64's own 1e-7


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan])
def test_model_comparisons_refuse_an_invalid_tolerance(bad, tmp_path):
    jm, tm = _linear_pair(1e-3)
    path = str(tmp_path / "g.npz")
    save_golden(path, tm, _x())
    for name in ("rtol", "atol"):
        for tol in (bad, {"": bad}):  # global, and per layer
            with pytest.raises(ValueError, match=f"{name}.* must be a finite number >= 0"):
                parity.compare_models(jm, tm, _x(), _x(), **{name: tol})
            with pytest.raises(ValueError, match=f"{name}.* must be a finite number >= 0"):
                parity.compare_params(jm, tm, **{name: tol})
            with pytest.raises(ValueError, match=f"{name}.* must be a finite number >= 0"):
                parity.compare_golden(jm, None, path, **{name: tol})


def test_a_weight_1e3_off_fails_and_a_negative_rtol_cannot_hide_it():
    jm, tm = _linear_pair(1e-3)
    assert not parity.compare_models(jm, tm, _x(), _x()).passed
    assert not parity.compare_params(jm, tm)[0].passed
    with pytest.raises(ValueError):
        parity.compare_models(jm, tm, _x(), _x(), rtol=-1, atol=-1e-9)
    same_jm, same_tm = _linear_pair()
    assert parity.compare_models(same_jm, same_tm, _x(), _x()).passed  # identical models pass


def test_per_layer_tolerance_naming_no_layer_is_an_error():
    jm, tm = _linear_pair()
    with pytest.raises(ValueError, match=r"rtol names layers the model does not have: \['fc9'\]"):
        parity.compare_models(jm, tm, _x(), _x(), rtol={"fc9": 1e-3})
    with pytest.raises(ValueError, match=r"atol names layers the model does not have: \['fc9'\]"):
        parity.compare_params(jm, tm, atol={"fc9": 1e-3})
    assert parity.compare_models(jm, tm, _x(), _x(), rtol={"": 1e-3}).passed  # the model itself is layer ''


# --------------------------------------------------------------------------- nothing compared
@pytest.mark.parametrize("empty", [None, (), {}], ids=["None", "tuple", "dict"])
def test_nothing_compared_is_a_failure(empty):
    r = parity.compare(lambda a: empty, lambda a: empty, X)
    assert r.status == "failed" and not r.comparisons
    assert any("nothing compared" in n for n in r.notes), r
    with pytest.raises(AssertionError, match="nothing compared"):
        parity.assert_close(lambda a: empty, lambda a: empty, X)


def test_both_sides_raising_passes_only_for_the_same_kind_of_error():
    with pytest.raises(AssertionError, match="different kinds of error"):
        parity.assert_close(lambda a: 1 / 0, lambda a: a.undefined_attr, X)

    def value_error(a):
        raise ValueError("Expected 2D input")

    def runtime_error(a):
        raise RuntimeError("Expected 2D input")

    def type_error(a):
        raise TypeError("bad")

    assert parity.compare(value_error, runtime_error, X).passed  # ATen's RuntimeError is jaxloss's ValueError
    assert parity.compare(type_error, type_error, X).passed
    r = parity.compare(type_error, runtime_error, X)
    assert r.status == "failed" and "TypeError" in r.notes[-1] and "RuntimeError" in r.notes[-1]


def _write_capture(path, layers_named=None):
    """A golden file of a torch Linear whose layers (and parameters) are renamed, or all dropped."""
    from jaxloss.parity.models.capture import Record
    from jaxloss.parity.models.golden import capture, write_capture

    cap = capture(torch.nn.Linear(3, 2), [_x()])
    if layers_named is None:
        cap.layers, cap.grads, cap.params, cap.state, cap.param_grads = [], {}, {}, {}, {}
    else:
        cap.layers = [Record(layers_named, r.call, r.outputs) for r in cap.layers]
        cap.grads = {(layers_named, c): v for (_, c), v in cap.grads.items()}
        cap.params = {(layers_named, t): v for (_, t), v in cap.params.items()}
        cap.param_grads = {(layers_named, t): v for (_, t), v in cap.param_grads.items()}
    write_capture(path, cap)


@pytest.mark.parametrize("layers", [None, "elsewhere"], ids=["no-layers", "names-match-nothing"])
def test_golden_file_comparing_nothing_fails(layers, tmp_path):
    path = str(tmp_path / "g.npz")
    _write_capture(path, layers)
    r = parity.compare_golden(torch.nn.Linear(3, 2), None, path)
    assert not r.passed and r.compared == 0
    assert r.verdict().startswith("FAILED: nothing compared (0 layer tensors, 0 parameters)")


def test_compare_params_with_no_pair_fails():
    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 2)

    diffs = parity.compare_params(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), Other())
    assert len(diffs) == 1 and not diffs[0].passed and "nothing compared" in diffs[0].message


# --------------------------------------------------------------------------- bad arguments
def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"judge must be one of 'torch', 'reference', got 'bogus'"):
        parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, judge="bogus")
    with pytest.raises(ValueError, match=r"device must be one of 'cpu', 'gpu', got 'tpu'"):
        parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, device="tpu")
    jm, tm = _linear_pair()
    with pytest.raises(TypeError, match="torch_model must be a torch.nn.Module, got str"):
        parity.compare_models(jm, "not a model", _x(), _x())
    with pytest.raises(TypeError, match="jax_model must be a flax.nnx.Module, got Linear"):
        parity.compare_params(tm, tm)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module or a flax.nnx.Module"):
        parity.compare_golden(object(), None, "unused.npz")


def test_gpu_without_a_gpu_is_a_clear_error():
    from jaxloss.parity.jax_side import gpu_available

    if gpu_available():
        pytest.skip("a GPU is there")
    with pytest.raises(ValueError, match="device='gpu' needs CUDA torch and JAX's GPU backend"):
        parity.compare(jaxloss.l1_loss, F.l1_loss, X, Y, device="gpu")


def test_batch_sizes_that_differ_are_named_with_their_shapes(tmp_path):
    jm, tm = _linear_pair()
    with pytest.raises(ValueError, match=r"shapes \[\(2, 3\)\] and \[\(4, 3\)\] \(another batch size\?\)"):
        parity.compare_models(jm, tm, _x(2), _x(4))
    path = str(tmp_path / "g.npz")
    save_golden(path, tm, _x(4))
    for model, x in ((jm, _x(2)), (tm, _x(2))):  # across and within frameworks
        with pytest.raises(ValueError, match=r"shapes \[\(2, 3\)\] and \[\(4, 3\)\]"):
            parity.compare_golden(model, x, path)
    other = str(tmp_path / "other.npz")
    save_golden(other, torch.nn.Linear(3, 5), _x(2))  # another model: 5 outputs, not 2
    with pytest.raises(ValueError, match=r"output has shapes \[\(2, 2\)\], the cotangent \[\(2, 5\)\]"):
        parity.compare_golden(jm, None, other)


# --------------------------------------------------------------------------- golden files are untrusted input
def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _npz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(f"{name}.npy", data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def golden_entries(tmp_path_factory):
    """The entries (``.npy`` bytes by name) and metadata of a valid golden file."""
    path = str(tmp_path_factory.mktemp("golden") / "g.npz")
    save_golden(path, torch.nn.Linear(3, 2), _x())
    with np.load(path) as z:
        entries = {k: _npy(z[k]) for k in z.files}
        meta = json.loads(str(z["__meta__"]))
    return entries, meta, open(path, "rb").read()


def _malformed(entries, meta, raw):
    """Malformed golden files, each as bytes, by what is wrong with it."""
    def with_meta(m):
        return _npz({**entries, "__meta__": _npy(np.array(m if isinstance(m, str) else json.dumps(m)))})

    lying = _npy(np.zeros(2)).replace(b"(2,)", b"(500000000000,)")  # claims 4 TB
    return {
        "truncated": raw[: len(raw) // 2],
        "not-a-zip": b"hello",
        "empty": b"",
        "meta-not-json": with_meta("{not json"),
        "meta-nested-deep": with_meta("[" * 100_000 + "]" * 100_000),
        "meta-not-object": with_meta([1]),
        "meta-layers-malformed": with_meta({**meta, "layers": [[1, 2]]}),
        "meta-counts-missing": with_meta({k: v for k, v in meta.items() if k != "n"}),
        "meta-framework-unknown": with_meta({**meta, "framework": "tf"}),
        "entry-missing": _npz({k: v for k, v in entries.items() if k != "out/0"}),
        "header-lies-about-size": _npz({**entries, "in/0": lying}),
        "pickled-object-array": _npz({**entries, "out/0": _npy(np.array([{"a": 1}], dtype=object))}),
        "meta-pickled": _npz({**entries, "__meta__": _npy(np.array([meta], dtype=object))}),
    }


def test_every_malformed_golden_file_is_one_value_error_naming_it(golden_entries, tmp_path):
    for what, data in _malformed(*golden_entries).items():
        path = tmp_path / f"{what}.npz"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=f"{path}: not a parity golden file") as e:
            load_golden(str(path))
        assert type(e.value) is ValueError, what


def test_only_the_entries_a_golden_file_names_are_read(golden_entries, tmp_path):
    entries, _, _ = golden_entries
    lying = _npy(np.zeros(2)).replace(b"(2,)", b"(500000000000,)")
    path = tmp_path / "extra.npz"
    path.write_bytes(_npz({**entries, "unused": lying}))  # np.load of every entry would fail on it
    assert load_golden(str(path)).framework == "torch"


# --------------------------------------------------------------------------- command lines
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _refused(main, args: list[str]) -> str:
    """Run a CLI's ``main`` in this process; it must exit 2 with one line on stderr, returned."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2, err.getvalue()
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("prog", ["jaxloss.parity.models", "jaxloss.parity.twin"])
@pytest.mark.parametrize("flag", ["--rtol=-1", "--atol=-1e-9", "--rtol=inf", "--atol=nan"])
def test_cli_tolerance_flags_are_checked(prog, flag):
    from jaxloss.parity.models.__main__ import _parse
    from jaxloss.parity.twin import build_parser

    parse = _parse if prog == "jaxloss.parity.models" else build_parser().parse_args
    name, value = flag.split("=")
    assert _refused(parse, [flag]) == f"python -m {prog}: error: argument {name}: must be a finite number >= 0, got {value} (see --help)"


def test_cli_paths_are_refused_up_front(tmp_path):
    from jaxloss.parity.__main__ import main as parity_main
    from jaxloss.parity.models.__main__ import main as models_main
    from jaxloss.parity.twin import main as twin_main

    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("x")
    cases = [
        (models_main, ["--save", str(folder)], f"python -m jaxloss.parity.models: error: --save {folder}: is a folder, expected a file"),
        (models_main, ["--against", str(folder)], f"python -m jaxloss.parity.models: error: --against {folder}: is a folder"),
        (models_main, ["--out", str(file)], f"python -m jaxloss.parity.models: error: --out {file}: not a folder"),
        (twin_main, ["--out", str(file)], f"python -m jaxloss.parity.twin: error: --out {file}: not a folder"),
        (twin_main, ["--out", "/proc/parity-out"], "python -m jaxloss.parity.twin: error: --out /proc/parity-out: not a folder"),
        (parity_main, ["--out", str(file)], f"python -m jaxloss.parity: error: --out {file}: not a folder"),
        (parity_main, ["--xla-cache", str(file)], f"python -m jaxloss.parity: error: --xla-cache {file}: not a folder"),
    ]
    for main, args, line in cases:
        assert _refused(main, args).startswith(line), args


def test_cli_malformed_golden_file_is_bad_input_not_a_divergence(tmp_path):
    from jaxloss.parity.models.__main__ import main

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert _refused(main, ["--against", str(bad)]) == (
        f"python -m jaxloss.parity.models: error: {bad}: not a parity golden file (not a zip archive: File is not a zip file)")


def _interrupt(args: list[str], cwd, started: str, timeout: float = 240) -> tuple[int, str, str]:
    """Run a CLI, send SIGINT once ``started`` is on its stdout; ``(rc, stdout, stderr)``."""
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if started in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(timeout), f"never printed {started!r}: {''.join(lines)}"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    return rc, "".join(lines), proc.stderr.read()


@pytest.mark.parametrize("prog, args, reports", [
    ("jaxloss.parity", ["--loss", "l1_loss", "--dtype", "float64", "-j", "1", "--no-xla-cache"], ["report.json", "report.md", "report.html"]),
    # the models' and the twin's runs in a subprocess (~5 and ~12 CPU s: torch, flax, their models) are
    # slow-tier; the in-process tests below keep each CLI's Ctrl-C path (flag, safe point, old reports
    # removed, status 130 and one line) in the default tier
    pytest.param("jaxloss.parity.models", ["--no-reference"], ["report.json", "report.md", "report.html", "layers.png"],
                 marks=pytest.mark.slow),
    pytest.param("jaxloss.parity.twin", ["--steps", "3", "--batch-size", "2", "--no-reference", "--no-diagnose"],
                 ["twin.md", "twin.json", "twin.png"], marks=pytest.mark.slow),
], ids=["parity", "jaxloss.parity.models", "jaxloss.parity.twin"])
def test_ctrl_c_is_exit_130_one_line_and_no_report_left_looking_current(prog, args, reports, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in reports:  # the previous run's report
        (out / name).write_text("an old report")
    rc, stdout, stderr = _interrupt(["-m", prog, *args, "--out", str(out)], tmp_path, f"python -m {prog}: ")
    assert rc == 130, (stdout[-2000:], stderr[-3000:])
    assert stdout.strip().splitlines()[-1] == f"python -m {prog}: interrupted", stdout
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert not [n for n in reports if (out / n).exists()], os.listdir(out)


def test_twin_ctrl_c_between_steps_is_exit_130_and_no_old_report(tmp_path, monkeypatch, capsys):
    """The twin CLI's Ctrl-C path without its models: a stand-in run sends SIGINT to this process, then
    reaches the CLI's safe point (``on_step``), as the real run does after each step; before that SIGINT
    the old reports are gone, after it no report is written and the status is 130."""
    import jaxloss.parity.twin.cli as twin_cli
    from jaxloss.parity.twin.report import REPORT_FILES

    for name in REPORT_FILES:  # the previous run's report
        (tmp_path / name).write_text("an old report")
    seen = []

    def run_twin(cfg, on_step):  # type: ignore[no-untyped-def]
        seen.append(sorted(os.listdir(tmp_path)))
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends: the CLI's flag takes it
        on_step(1)
        raise AssertionError("on_step did not stop the run")

    monkeypatch.setattr(twin_cli, "run_twin", run_twin)
    assert twin_cli.main(["--steps", "3", "--batch-size", "2", "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "python -m jaxloss.parity.twin: interrupted", out
    assert seen == [[]] and os.listdir(tmp_path) == []


def test_models_ctrl_c_after_the_start_is_exit_130_and_no_old_report(tmp_path, monkeypatch, capsys):
    """python -m jaxloss.parity.models's Ctrl-C path without its models: SIGINT arrives while the pair is
    built (after the start line), the next safe point stops the run before any comparison or report."""
    from jaxloss.parity.models import twins
    from jaxloss.parity.models.__main__ import REPORT_FILES, main

    for name in REPORT_FILES:  # the previous run's report
        (tmp_path / name).write_text("an old report")
    seen = []

    def build_pair(*args, **kw):  # type: ignore[no-untyped-def]
        seen.append(sorted(os.listdir(tmp_path)))
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends: the CLI's flag takes it
        return None, None, None  # never used: the run stops at the next safe point

    monkeypatch.setattr(twins, "build_pair", build_pair)
    assert main(["--no-reference", "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "python -m jaxloss.parity.models: interrupted", out
    assert seen == [[]] and os.listdir(tmp_path) == []
