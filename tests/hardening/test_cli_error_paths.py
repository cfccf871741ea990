"""Every CLI error path: one line on stderr, exit status 2, no traceback (a traceback only with
--debug); checkpoints verified against their SHA-256 and read without pickle's code execution;
predict --labels checked; --version."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onebit.cli import main
from onebit.data.idx import write_idx
from onebit.train import artifacts

from _cli_helpers import one_line_error, tiny_recipe

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-step run: (recipe, run directory)."""
    tmp = tmp_path_factory.mktemp("run")
    recipe = tiny_recipe(tmp, model={"hidden": 16}, data={"val_size": 64, "train_subset": 128,
                                                          "test_subset": 64})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--config", str(recipe)]) == 0
    return recipe, tmp / "runs" / "tiny"


@pytest.fixture
def run_copy(trained, tmp_path) -> tuple[Path, Path]:
    """A copy of the finished run to damage: (recipe, run directory)."""
    import shutil

    recipe, run = trained
    cfg = yaml.safe_load(recipe.read_text())
    cfg["output"]["dir"] = str(tmp_path / "runs")
    copy_recipe = tmp_path / "tiny.yaml"
    copy_recipe.write_text(yaml.safe_dump(cfg))
    shutil.copytree(run, tmp_path / "runs" / "tiny")
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "config.yaml").read_text())
    saved["output"]["dir"] = str(tmp_path / "runs")  # the run now lives here
    (tmp_path / "runs" / "tiny" / "config.yaml").write_text(yaml.safe_dump(saved))
    (tmp_path / "runs" / "tiny" / "results.json").unlink()  # so that --resume has work to do
    return copy_recipe, tmp_path / "runs" / "tiny"


# ---------------------------------------------------------------------------------- checksums

def test_every_checkpoint_has_a_matching_sha256(trained):
    _, run = trained
    for name in ("checkpoints/last.ckpt", "model.safetensors"):
        path = run / name
        side = path.with_name(path.name + ".sha256")
        digest, fname = side.read_text().split()
        assert fname == path.name and digest == artifacts.file_sha256(path)
        artifacts.verify_file_digest(path)


def _flip_tensor_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    first = next(iter(ckpt["state_dict"].values()))
    needle = first.numpy().tobytes()[:16]
    at = bytes(raw).find(needle)
    assert at > 0, "tensor data not found in the checkpoint"
    raw[at + 3] ^= 0x10  # one bit inside the first tensor's data: still a loadable checkpoint
    path.write_bytes(bytes(raw))
    torch.load(path, map_location="cpu", weights_only=True)


def test_bit_flip_in_checkpoint_is_refused_on_resume_eval_and_export(capsys, run_copy, tmp_path):
    recipe, run = run_copy
    ckpt = run / "checkpoints" / "last.ckpt"
    _flip_tensor_byte(ckpt)
    one_line_error(capsys, ["train", "--resume", str(run)], str(ckpt),
             "checksum mismatch", "--ignore-checksum")
    one_line_error(capsys, ["eval", str(ckpt)], str(ckpt), "checksum mismatch")
    one_line_error(capsys, ["export", str(ckpt), str(tmp_path / "m.onebit")], "checksum mismatch")
    assert not (tmp_path / "m.onebit").exists()
    weights = run / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 1
    weights.write_bytes(bytes(raw))
    one_line_error(capsys, ["export", str(weights), str(tmp_path / "m.onebit")], str(weights),
             "checksum mismatch")
    # the explicit override
    assert main(["export", str(ckpt), str(tmp_path / "m.onebit"), "--ignore-checksum"]) == 0
    assert main(["eval", str(ckpt), "--ignore-checksum", "--limit", "32"]) == 0


def test_missing_checksum_file_is_refused(capsys, run_copy):
    _, run = run_copy
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.with_name("last.ckpt.sha256").unlink()
    one_line_error(capsys, ["eval", str(ckpt)], "no checksum file", "--ignore-checksum")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize("digest", ["stale", "rewritten"])
def test_resume_on_a_damaged_checkpoint_is_one_line(capsys, run_copy, damage, digest):
    recipe, run = run_copy
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = ckpt.read_bytes()
    ckpt.write_bytes({"truncated": raw[:len(raw) // 2], "empty": b"",
                      "garbage": os.urandom(4096)}[damage])
    if digest == "rewritten":  # a digest that matches: the reader itself must fail cleanly
        artifacts.write_file_digest(ckpt)
    line = one_line_error(capsys, ["train", "--resume", str(run)], str(ckpt))
    assert ("checksum mismatch" if digest == "stale" else "not a readable checkpoint") in line


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_payload_never_runs_even_when_torch_is_told_to_allow_it(capsys, run_copy,
                                                                       monkeypatch, tmp_path):
    recipe, run = run_copy
    ckpt = run / "checkpoints" / "last.ckpt"
    marker = tmp_path / "payload_ran"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["evil"] = _Payload(str(marker))
    torch.save(state, ckpt)
    artifacts.write_file_digest(ckpt)  # its digest matches: only weights_only protects
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    for argv in (["train", "--resume", str(run)], ["eval", str(ckpt)],
                 ["export", str(ckpt), str(tmp_path / "m.onebit")]):
        line = one_line_error(capsys, argv, "not a readable checkpoint")
        assert not marker.exists(), (argv, line)


def test_digest_protocol_accepts_old_or_new_file_while_renaming(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old")
    artifacts.write_file_digest(path)
    tmp = tmp_path / ".last.ckpt.tmp"
    tmp.write_bytes(b"new")
    artifacts.begin_file_digest(path, artifacts.file_sha256(tmp))
    artifacts.verify_file_digest(path)  # killed before the rename: the old file still passes
    os.replace(tmp, path)
    artifacts.verify_file_digest(path)  # killed after it: the new one passes
    artifacts.write_file_digest(path)
    path.write_bytes(b"old")
    with pytest.raises(artifacts.ConfigError, match="checksum mismatch"):
        artifacts.verify_file_digest(path)


# ------------------------------------------------------------------------------ other paths

def test_export_into_a_missing_directory(capsys, trained):
    _, run = trained
    one_line_error(capsys, ["export", str(run), "/nonexistent_dir/out.onebit"], "/nonexistent_dir",
             "does not exist")


def test_eval_of_an_onebit_file_points_to_predict(capsys, tmp_path):
    model = tmp_path / "m.onebit"
    model.write_bytes(b"x")
    one_line_error(capsys, ["eval", str(model)], "onebit predict")


@pytest.mark.parametrize("override, words", [
    ("model.name=resnet99", ["unknown model 'resnet99'"]),
    ("method.name=xnr", ["unknown method 'xnr'"]),
    ("name=../escape", ["run name '../escape'"]),
    ("name=a/b", ["run name 'a/b'"]),
])
def test_print_config_refuses_what_training_would(capsys, tmp_path, override, words):
    recipe = tiny_recipe(tmp_path)
    one_line_error(capsys, ["train", "--config", str(recipe), "--print-config", override], *words)
    assert not (tmp_path / "escape").exists()


def test_debug_shows_the_traceback(tmp_path):
    from onebit.train.config import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "train", "--config", str(tmp_path / "absent.yaml")])
    with pytest.raises(ConfigError):
        main(["train", "--config", str(tmp_path / "absent.yaml"), "--debug"])


def test_unexpected_error_is_one_line_too(capsys, monkeypatch):
    import onebit.cli as cli

    def boom(args):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(cli, "_cmd_list", boom)
    line = one_line_error(capsys, ["list", "models"], "RuntimeError", "kaboom second line", "--debug")
    assert line


def test_version(capsys):
    import onebit

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"onebit {onebit.__version__}"
    from importlib.metadata import version

    assert onebit.__version__ == version("onebit")


# ------------------------------------------------------------------------------ predict labels

@pytest.fixture(scope="module")
def small_model(trained, tmp_path_factory) -> Path:
    _, run = trained
    out = tmp_path_factory.mktemp("m") / "m.onebit"
    assert main(["export", str(run), str(out)]) == 0
    return out


def test_labels_file_is_checked(capsys, small_model, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.idx", images)
    x = str(tmp_path / "x.idx")
    # the images file given as labels
    one_line_error(capsys, ["predict", str(small_model), "--images", x, "--labels", x],
             "IDX image file", "00000803")
    (tmp_path / "junk").write_bytes(b"hello world")
    one_line_error(capsys, ["predict", str(small_model), "--images", x, "--labels",
                      str(tmp_path / "junk")], "not an IDX label file")
    write_idx(tmp_path / "y_short.idx", np.zeros(19, np.uint8))
    one_line_error(capsys, ["predict", str(small_model), "--images", x, "--labels",
                      str(tmp_path / "y_short.idx")], "19 labels for 20 images")
    labels = np.zeros(20, np.uint8)
    labels[3] = 10
    write_idx(tmp_path / "y_range.idx", labels)
    one_line_error(capsys, ["predict", str(small_model), "--images", x, "--labels",
                      str(tmp_path / "y_range.idx")], "[0, 10]", "10 classes")
    np.save(tmp_path / "y_float.npy", np.zeros(20, np.float32))
    one_line_error(capsys, ["predict", str(small_model), "--images", x, "--labels",
                      str(tmp_path / "y_float.npy")], "integer class indices")
    # --limit takes the first labels of a full-length file
    write_idx(tmp_path / "y.idx", np.arange(20, dtype=np.uint8) % 10)
    assert main(["predict", str(small_model), "--images", x, "--labels",
                 str(tmp_path / "y.idx"), "--limit", "5"]) == 0
    assert "on 5 images" in capsys.readouterr().out


def test_inspect_prints_the_graph(capsys, small_model):
    import onebit.runtime as rt

    assert main(["inspect", str(small_model)]) == 0
    out = capsys.readouterr().out
    graph = rt.load_graph(small_model)
    assert f"{len(graph.nodes)} ops" in out and "method bnn" in out
    for node in graph.nodes:
        assert node.op in out
    assert main(["inspect", str(small_model), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [n["op"] for n in doc["nodes"]] == [n.op for n in graph.nodes]
    assert doc["file_bytes"] == small_model.stat().st_size
    one_line_error(capsys, ["inspect", str(small_model.with_name("absent.onebit"))], "absent.onebit")
