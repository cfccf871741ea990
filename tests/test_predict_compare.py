"""``onebit predict MODEL --compare RUN_DIR``: the runtime beside the run's PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import onebit.runtime as rt
from onebit.cli import main

from _cli_helpers import tiny_recipe


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    recipe = tiny_recipe(tmp, data={"train_subset": 256, "test_subset": 64},
                         trainer={"max_steps": 3})
    assert main(["train", "--config", str(recipe), "name=run"]) == 0
    run = tmp / "runs" / "run"
    out = tmp / "model.onebit"
    assert main(["export", str(run), str(out)]) == 0
    return run, out


def _torch_logits(run: Path, x: np.ndarray) -> np.ndarray:
    from onebit.train.artifacts import load_weights_file
    from onebit.train.build import build_model, load_weights_

    state, config = load_weights_file(run)
    model, _ = build_model(config)
    load_weights_(model, state, str(run))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def test_compare_prints_identical_predictions_and_logit_difference(tiny_run, tmp_path, capsys):
    run, out = tiny_run
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    capsys.readouterr()
    argv = ["predict", str(out), "--images", str(tmp_path / "x.npy"), "--batch-size", "16"]
    assert main(argv + ["--compare", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["compare"]
    model = rt.load(out)
    x = model.preprocess(images)
    ours, ref = model(x), _torch_logits(run, x)
    assert res["images"] == 50
    assert res["identical_predictions"] == int((ours.argmax(1) == ref.argmax(1)).sum())
    assert res["max_logit_difference"] == pytest.approx(float(np.abs(ours - ref).max()), abs=1e-7)
    assert res["identical_predictions"] == 50 and res["max_logit_difference"] < 1e-3
    assert main(argv + ["--compare", str(run)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "50/50 identical predictions, largest logit difference" in line


def test_compare_counts_a_different_model(tiny_run, tmp_path, capsys):
    """Against another run's weights the numbers move: the check can fail."""
    run, out = tiny_run
    state_path = run / "model.safetensors"
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(state_path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(state_path))
    other = tmp_path / "other"
    other.mkdir()
    gen = torch.Generator().manual_seed(1)
    save_file({k: (v + torch.randn(v.shape, generator=gen)) if v.is_floating_point() else v
               for k, v in state.items()}, str(other / "model.safetensors"), metadata=meta)
    from onebit.train.artifacts import write_file_digest

    write_file_digest(other / "model.safetensors")  # a weights file written by hand: its checksum
    images = np.random.default_rng(1).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    capsys.readouterr()
    assert main(["predict", str(out), "--images", str(tmp_path / "x.npy"), "--json",
                 "--compare", str(other)]) == 0
    res = json.loads(capsys.readouterr().out)["compare"]
    assert res["max_logit_difference"] > 1e-2


def test_compare_user_errors(tiny_run, tmp_path, capsys):
    _, out = tiny_run
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    assert main(["predict", str(out), "--images", str(tmp_path / "x.npy"), "--compare",
                 str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compare" in err[0]
