"""The onebit command line: one-line user errors with exit status 2, train / eval / summary / list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onebit.cli import main

from _cli_helpers import one_line_error, tiny_recipe


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return tiny_recipe(tmp_path)


@pytest.mark.parametrize("override, words", [
    ("model.name=resnet99", ["unknown model 'resnet99'", "fmnist_cnn", "model.name="]),
    ("method.name=xnr", ["unknown method 'xnr'", "did you mean 'xnor'", "bireal"]),
    ("data.name=imagenet", ["unknown dataset 'imagenet'", "fashion_mnist", "data.name="]),
    ("optim.lrr=0.1", ["unknown config key 'optim.lrr'", "did you mean 'lr'"]),
    ("optim.lr=fast", ["optim.lr='fast'", "expected int or float"]),
    ("trainer.accelerator=tpu", ["not allowed", "cpu, gpu"]),
    ("model.depth=2", ["no option(s) depth", "model.width"]),
    ("notakeyvalue", ["'notakeyvalue'", "key.sub=value"]),
    ("--bogus-flag", ["--bogus-flag", "key.sub=value"]),
])
def test_bad_names_and_overrides(capsys, recipe, override, words):
    one_line_error(capsys, ["train", "--config", str(recipe), override], *words)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_gpu_requested_without_gpu(capsys, recipe):
    one_line_error(capsys, ["train", "--config", str(recipe), "--accelerator", "gpu"],
                   "no CUDA GPU", "--accelerator cpu")


def test_missing_or_unusable_config(capsys, tmp_path, recipe):
    one_line_error(capsys, ["train", "--config", str(tmp_path / "nope.yaml")], "not found", "configs")
    one_line_error(capsys, ["train"], "--config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_epochs: [1, 2]}\n")
    one_line_error(capsys, ["train", "--config", str(bad)], "trainer.max_epochs", "expected int")
    one_line_error(capsys, ["train", "--config", str(recipe), "--resume"], "nothing to resume")
    one_line_error(capsys, ["train", "--resume", str(tmp_path)], "not a run directory")
    one_line_error(capsys, ["bogus"], "invalid choice")
    one_line_error(capsys, ["summary", "fmnist_cnn", "--method", "bnnn"], "did you mean 'bnn'")
    one_line_error(capsys, ["eval", str(tmp_path / "none.ckpt")], "not found")


def test_missing_and_corrupt_data(capsys, tmp_path, recipe, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ONEBIT_DATA_DIR", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    args = ["train", "--config", str(recipe), "data.name=mnist", "data.download=false",
            "--data-dir", str(data)]
    assert main(args) == 2  # the missing-data message keeps its line breaks: one place a line
    err = capsys.readouterr().err
    assert err.startswith("onebit: error: MNIST (mnist) not found") and "Traceback" not in err
    assert "\n  Looked in:\n" in err and f"    {data}  (" in err and "--data-dir" in err
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing was started
    (data / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 12)
    one_line_error(capsys, args, "checksum mismatch", "get it again")


def test_train_eval_print_config_and_resume_rules(capsys, tmp_path, recipe):
    assert main(["train", "--config", str(recipe), "--print-config", "optim.lr=0.25"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.25 and printed["name"] == "tiny"

    assert main(["train", "--config", str(recipe), "name=cli"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "cli"
    results = json.loads((run / "results.json").read_text())
    assert f"test accuracy {100 * results['test_acc']:.2f}%" in out and results["steps"] == 2

    assert main(["eval", str(run), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["test_acc"] == results["test_acc"] and scored["test_samples"] == 128
    assert main(["eval", str(run / "checkpoints" / "last.ckpt"), "--limit", "64"]) == 0
    assert "64 images of synthetic" in capsys.readouterr().out

    one_line_error(capsys, ["train", "--config", str(recipe), "name=cli"], "--resume", "--overwrite")
    one_line_error(capsys, ["train", "--config", str(recipe), "name=cli", "optim.lr=0.5",
                            "--resume"], "differs", "optim.lr")
    # resuming a finished run changes nothing
    assert main(["train", "--resume", str(run)]) == 0
    again = json.loads((run / "results.json").read_text())
    assert again["steps"] == 2 and again["final_weight_digest"] == results["final_weight_digest"]
    assert (run / "metrics.csv").is_file() and not list(run.glob("metrics.part*"))


def test_summary_and_list(capsys):
    assert main(["summary", "fmnist_cnn", "--method", "xnor"]) == 0
    out = capsys.readouterr().out
    assert "QuantConv2d" in out and "compression" in out and "x" in out
    assert main(["summary", "lenet5_bn", "--input-size", "1", "32", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == [1, 32, 32]
    assert main(["list", "methods"]) == 0
    assert "biper" in capsys.readouterr().out.split()


def test_python_dash_m_reports_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "onebit", "train", "--config",
                           str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "not found" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "onebit", "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "summary" in proc.stdout
