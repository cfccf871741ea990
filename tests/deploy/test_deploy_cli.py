"""onebit export / predict / bench through onebit.cli.main: files in, one line out, exit codes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import onebit.runtime as rt
from onebit.cli import main
from onebit.data.idx import write_idx



@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic-data BNN checkpoint (random weights) and its export."""
    from onebit.train.artifacts import save_weights
    from onebit.train.build import build_model
    from onebit.train.config import deep_merge, defaults, validate

    tmp = tmp_path_factory.mktemp("cli")
    cfg = validate(deep_merge(defaults(), {
        "data": {"name": "synthetic"}, "method": {"name": "bnn"},
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 16}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = build_model(cfg)
    weights = tmp / "model.safetensors"
    save_weights(model, cfg, weights)
    out = tmp / "model.onebit"
    assert main(["export", str(weights), str(out)]) == 0
    return weights, out


def test_export_writes_a_loadable_file(exported, capsys):
    _, out = exported
    graph = rt.load_graph(out)
    assert graph.method == "bnn" and graph.input_shape == (1, 28, 28)
    assert graph.normalization == {"mean": [0.5], "std": [0.25]}
    assert any(n.op == "bconv2d" for n in graph.nodes)


def test_predict_reports_accuracy_and_predictions(exported, tmp_path, capsys):
    _, out = exported
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    model = rt.load(out)
    expected = model.predict(model.preprocess(images))
    labels = np.where(np.arange(40) % 2 == 0, expected, (expected + 1) % 10).astype(np.uint8)
    write_idx(tmp_path / "x.idx", images)
    np.save(tmp_path / "y.npy", labels)
    capsys.readouterr()
    assert main(["predict", str(out), "--images", str(tmp_path / "x.idx"), "--labels",
                 str(tmp_path / "y.npy"), "--batch-size", "16"]) == 0
    assert "accuracy 50.00% on 40 images" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", images)
    assert main(["predict", str(out), "--images", str(tmp_path / "x.npy"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["predictions"] == expected.tolist()
    # float input is taken as the model's (already normalised) input
    np.save(tmp_path / "xf.npy", model.preprocess(images[:5]))
    assert main(["predict", str(out), "--images", str(tmp_path / "xf.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"] == expected[:5].tolist()


@pytest.mark.parametrize("args, message", [
    (["predict", "{missing}", "--images", "{images}"], "no such .onebit file"),
    (["predict", "{corrupt}", "--images", "{images}"], "checksum mismatch"),
    (["predict", "{model}", "--images", "{missing}"], "--images file .* not found"),
    (["predict", "{model}", "--images", "{wrong}"], "do not fit the model's input"),
    (["predict", "{model}", "--images", "{images}", "--labels", "{short}"], "--labels has 3"),
    (["export", "{missing}", "{out}"], "not found"),
    (["predict", "{model}", "--images", "{images}", "--threads", "0"], "positive integer"),
])
def test_user_errors_print_one_line_and_exit_2(exported, tmp_path, capsys, args, message):
    _, model = exported
    corrupt = tmp_path / "corrupt.onebit"
    raw = bytearray(model.read_bytes())
    raw[-1] ^= 1
    corrupt.write_bytes(bytes(raw))
    np.save(tmp_path / "images.npy", np.zeros((4, 28, 28), np.uint8))
    np.save(tmp_path / "wrong.npy", np.zeros((4, 32, 32), np.uint8))
    np.save(tmp_path / "short.npy", np.zeros(3, np.uint8))
    paths = {"missing": tmp_path / "absent", "corrupt": corrupt, "model": model,
             "images": tmp_path / "images.npy", "wrong": tmp_path / "wrong.npy",
             "short": tmp_path / "short.npy", "out": tmp_path / "o.onebit"}
    assert main([a.format(**{k: str(v) for k, v in paths.items()}) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onebit: error: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_bench_prints_latencies_and_sizes(exported, capsys):
    _, out = exported
    assert main(["bench", str(out), "--threads", "1", "--batch-sizes", "2", "--repeats", "2",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [(r["batch"], r["threads"]) for r in res["rows"]] == [(2, 1)]
    assert res["rows"][0]["runtime_ms"] > 0 and res["rows"][0]["torch_float_ms"] > 0
    assert res["file_bytes"] == out.stat().st_size
    assert res["file_bytes"] < res["float32_weight_bytes"]
