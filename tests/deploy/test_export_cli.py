"""``onebit export RUN_DIR OUT --format onnx|qonnx``: the written file runs and equals the
.onebit export; AdderNet is one line on stderr and exit code 2."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import onebit.runtime as rt
from onebit.cli import main


onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _checkpoint(tmp_path, method: str, model: dict):
    from onebit.train.artifacts import save_weights
    from onebit.train.build import build_model
    from onebit.train.config import deep_merge, defaults, validate

    cfg = validate(deep_merge(defaults(), {"data": {"name": "synthetic"},
                                           "method": {"name": method}, "model": model}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net, _ = build_model(cfg)
    weights = tmp_path / "model.safetensors"
    save_weights(net, cfg, weights)
    return weights


@pytest.mark.parametrize("fmt", ["onnx", "qonnx"])
def test_export_format_writes_a_file_equal_to_the_onebit_export(fmt, tmp_path, capsys):
    weights = _checkpoint(tmp_path, "bnn", {"name": "fmnist_cnn", "width": 0.25, "hidden": 16})
    assert main(["export", str(weights), str(tmp_path / "m.onebit")]) == 0
    out = tmp_path / f"m.{fmt}.onnx"
    assert main(["export", str(weights), str(out), "--format", fmt]) == 0
    assert f"{fmt}," in capsys.readouterr().out
    proto = onnx.load(str(out))
    domains = {n.domain for n in proto.graph.node}
    assert domains == ({"", "qonnx.custom_op.general"} if fmt == "qonnx" else {""})
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["method"] == "bnn" and '"std": [0.25]' in meta["normalization"]
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    want = rt.load(tmp_path / "m.onebit")(x)
    if fmt == "qonnx":
        pytest.importorskip("qonnx")
        from test_export_onnx import run_qonnx
        got = run_qonnx(out, x)
    else:
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_export_addernet_as_onnx_is_one_line_exit_2(tmp_path, capsys):
    weights = _checkpoint(tmp_path, "addernet", {"name": "lenet5_bn"})
    assert main(["export", str(weights), str(tmp_path / "a.onnx"), "--format", "qonnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onebit: error: ") and err.count("\n") == 1
    assert "AdderNet (adder_conv2d) has no QONNX operator" in err and ".onebit" in err
