"""``python -m jaxloss.train`` and ``python -m jaxloss.parity.twin`` command lines: one vocabulary, every bad flag refused up front.

Every bad value is one line on stderr naming the flag, and exit status 2, before any data
is loaded or anything compiled (these tests would take minutes otherwise, and leave no
output files).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from pathlib import Path

import pytest

from jaxloss.train.__main__ import _parser, config_from_args, main
from jaxloss.train.config import TrainConfig


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--epochs", "-1"], "--epochs must be a positive integer, got -1"),
        (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--batch-size", "-32"], "--batch-size must be a positive integer, got -32"),
        (["--eval-batch-size", "0"], "--eval-batch-size must be a positive integer, got 0"),
        (["--subset", "-5"], "--subset must be a positive integer, got -5"),
        (["--checkpoint-every", "-1"], "--checkpoint-every must be a non-negative integer, got -1"),
        (["--lr", "-0.1"], "--lr must be a number in [0, inf], got -0.1"),
        (["--momentum", "0.5", "--optimizer", "adam"], "--momentum applies to optimizer sgd only, not adam"),
        (["--resume", "--overwrite"], "--overwrite and resume exclude each other"),
        (["--activation", "relu", "--model", "resnet18"], "--activation applies to model seed-cnn only"),
        (["--gamma", "2"], "--gamma does not apply to loss cross_entropy (its options: label_smoothing)"),
        (["--loss", "ctc_loss"], "--loss ctc_loss is not a classification loss"),
        (["--num-processes", "2"], "--coordinator-address num_processes and process_id go together"),
        (["--coordinator-address", "garbage", "--num-processes", "2", "--process-id", "1"],
         "--coordinator-address must be HOST:PORT (process 0's host name or address, and a port in 1..65535), got 'garbage'"),
        (["--coordinator-address", "", "--num-processes", "2", "--process-id", "1"],  # not one silent process
         "--coordinator-address must be HOST:PORT (process 0's host name or address, and a port in 1..65535), got ''"),
        (["--coordinator-address", "h0:99999", "--num-processes", "2", "--process-id", "1"],  # hung before
         "--coordinator-address must be HOST:PORT (process 0's host name or address, and a port in 1..65535), got 'h0:99999'"),
        (["--distributed-timeout", "0"], "--distributed-timeout must be a positive integer, got 0"),
    ],
)
def test_bad_flags_are_one_clear_line_and_status_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m jaxloss.train: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_out_or_checkpoint_dir_that_is_a_file_fails_before_training(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["--out", str(a_file)]) == 2
    assert capsys.readouterr().err == f"python -m jaxloss.train: error: --out {a_file} is a file, not a folder\n"
    assert main(["--out", str(tmp_path / "run"), "--checkpoint-dir", str(a_file)]) == 2
    assert f"--checkpoint-dir {a_file} is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_unwritable_out_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a folder cannot be made inside a file, even by root
    assert main(["--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m jaxloss.train: error: --out {blocker / 'run'} is not writable (") and err.count("\n") == 1


def test_without_flax_one_line_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "flax", None)  # as if flax were not installed
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert capsys.readouterr().err == "python -m jaxloss.train: error: training needs flax: pip install 'jaxloss[train]'\n"


def test_every_field_is_one_flag_with_its_default_in_help():
    actions = {a.dest: a for a in _parser()._actions if a.dest != "help"}
    assert set(actions) == {f.name for f in dataclasses.fields(TrainConfig)}  # 1:1 with the config
    text = _parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("negate"):  # --no-augment / --no-progress / --no-plot: on by default
            assert f.metadata["negate"] in text
        elif f.default is None:  # the help says what unset means
            assert "(default: " in actions[f.name].help and "%(default)s" not in actions[f.name].help, f.name
        else:
            assert actions[f.name].help.endswith("(default: %(default)s)"), f.name
    assert "--batch-size BATCH_SIZE\n                        global batch, split over the devices (default: 32)" in text
    assert config_from_args([]) == TrainConfig()  # no flags: the config's defaults, the seed's recipe


def test_the_default_is_the_seeds_recipe_on_the_offline_set():
    cfg = config_from_args([])
    assert (cfg.model, cfg.dataset, cfg.optimizer, cfg.lr, cfg.effective_momentum, cfg.batch_size) == (
        "seed-cnn", "digits", "sgd", 0.01, 0.9, 32)  # fmt: skip
    assert (cfg.augment, cfg.loss, cfg.precision, cfg.activation) == (True, "cross_entropy", "fp32", None)


def test_the_twin_takes_the_same_flags_for_the_same_settings():
    pytest.importorskip("torch")
    from jaxloss.parity.twin import SHARED_FIELDS, build_parser

    train_flags = {o for a in _parser()._actions for o in a.option_strings}
    twin = {a.dest: a for a in build_parser()._actions}
    for name in SHARED_FIELDS:
        assert set(twin[name].option_strings) <= train_flags, name
        if name != "out":
            assert twin[name].default == getattr(TrainConfig(), name), name  # the same defaults too


def test_help_says_each_default_once_in_plain_text():
    """No "(default: 0.9, the seed's) (default: None)", no reST markup, and a --no-... flag
    described by what it does (turns the feature off)."""
    text = _parser().format_help()
    flat = " ".join(text.split())
    assert "(default: None)" not in flat
    for action in _parser()._actions:
        assert (action.help or "").count("(default: ") <= 1, action.help
    assert "``" not in text and ":mod:" not in text and "::" not in text
    for negated in ("--no-augment", "--no-progress", "--no-plot"):
        assert f"{negated} turn off the " in flat, negated


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(),
        TrainConfig(download=True, augment=False, plot=False, optimizer="adamw", betas=(0.8, 0.9), amsgrad=True,
                    loss="focal_loss", gamma=2.0, out="my runs/first", subset=64, num_devices=1),
    ],
)
def test_the_header_is_a_command_line_that_pastes_back_to_the_same_run(cfg):
    """``--download False`` cannot be pasted back: the header's command parses to the same config."""
    from jaxloss.train.outputs import header

    line = header(cfg, {"devices": "1 x cpu"}).splitlines()[0]
    assert line.startswith("command: python -m jaxloss.train ")
    words = shlex.split(line.removeprefix("command: "))
    again = config_from_args(words[3:])
    expected = dataclasses.replace(cfg, momentum=cfg.effective_momentum if cfg.optimizer == "sgd" else None)
    assert again == expected
    assert " False" not in line and " True" not in line and " None" not in line


def test_a_bad_flag_value_is_one_line_and_a_typo_gets_did_you_mean(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--epochs", "ten"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert err == "python -m jaxloss.train: error: argument --epochs: invalid int value: 'ten' (see --help)\n"
    with pytest.raises(SystemExit):
        main(["--optimiser", "adam"])
    assert "did you mean --optimizer?" in capsys.readouterr().err


def test_cifar10_without_its_files_is_bad_input(tmp_path, capsys):
    """The README's convention: a missing data folder is status 2 (bad input), one line, nothing trained."""
    assert main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "nodata"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m jaxloss.train: error: CIFAR-10 not found under {tmp_path / 'nodata'}") and err.count("\n") == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_regression_loss_is_fed_softmax_against_one_hot_labels():
    """--loss mse_loss trains on the Brier score: mean over N x C of (softmax(logits) - onehot(labels))^2."""
    import jax.numpy as jnp
    import numpy as np

    from jaxloss.train.losses import make_loss

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    brier = np.mean((p - np.eye(4)[labels]) ** 2)
    loss = make_loss("mse_loss")
    np.testing.assert_allclose(float(loss(jnp.asarray(logits), jnp.asarray(labels))), brier, rtol=1e-12)
    per_example = np.asarray(loss.per_example(jnp.asarray(logits), jnp.asarray(labels)))
    np.testing.assert_allclose(per_example, ((p - np.eye(4)[labels]) ** 2).mean(axis=1), rtol=1e-12)


ROOT = Path(__file__).resolve().parents[1]


def test_one_train_step_and_train_never_imports_parity():
    """The optax update exists once (train/step.py), and the layers point one way."""
    sources = {p: p.read_text() for d in ("train", "parity", "benchmarks") for p in (ROOT / d).rglob("*.py")}
    code = {p: "\n".join(line for line in text.splitlines() if ">>>" not in line) for p, text in sources.items()}
    updates = sorted(str(p.relative_to(ROOT)) for p, text in code.items() if "apply_updates(" in text)
    assert updates == ["train/step.py"]
    importers = [str(p.relative_to(ROOT)) for p, text in sources.items()
                 if p.parts[-2] == "train" and re.search(r"^\s*(from jaxloss import parity|(from|import) jaxloss\.parity)\b", text, flags=re.M)]  # fmt: skip
    assert importers == []


def test_the_cli_modules_import_no_training_stack(tmp_path):
    """A bad flag is refused before Flax, optax or torch load (JAX itself comes with the jaxloss package)."""
    code = ("import sys, jaxloss.train, jaxloss.train.config, jaxloss.train.losses, jaxloss.train.progress\n"
            "print(sorted(m for m in ('flax', 'optax', 'orbax', 'torch') if m in sys.modules))")  # fmt: skip
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    out = __import__("subprocess").run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                       cwd=tmp_path, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr


# Small enough that the code before these checks, which trained instead, finished in seconds.
_SHORT = ["--epochs", "1", "--no-progress", "--no-plot"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--subset", "100000", "--batch-size", "512"], "--subset is larger than the training set (1438 images), got 100000"),
        (["--batch-size", "100000"], "--batch-size is larger than the training set (1438 images), got 100000"),
        (["--subset", "40", "--batch-size", "64"], "--batch-size is larger than the training set (40 images), got 64"),
    ],
)
def test_sizes_beyond_the_data_set_are_refused_naming_the_flag_and_its_size(argv, message, tmp_path, capsys):
    pytest.importorskip("flax")
    assert main([*argv, *_SHORT, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m jaxloss.train: error: {message}\n"
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_second_run_into_a_busy_checkpoint_folder_is_one_line_and_status_2(tmp_path, capsys):
    pytest.importorskip("orbax.checkpoint")
    from jaxloss.train.checkpoint import Checkpointer

    folder = tmp_path / "ck"
    with Checkpointer(folder):  # another run, writing
        rc = main(["--subset", "32", "--batch-size", "32", *_SHORT, "--out", str(tmp_path / "run"),
                   "--checkpoint-dir", str(folder)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"python -m jaxloss.train: error: --checkpoint-dir {folder} is in use by another run")
    assert err.count("\n") == 1 and not (tmp_path / "run" / "metrics.jsonl").exists()
