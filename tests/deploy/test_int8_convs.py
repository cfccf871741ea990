"""convert(first_layer="int8"): the float convs reading the model's input run in int8
(conv2d_int8); the runtime equals that op's torch reference, and the stem's output stays within
the bound derived from the quantization steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import onebit.runtime as rt
from onebit.deploy import convert
from onebit.deploy.int8_convs import quantize_float_convs
from onebit.deploy.torch_graph import GraphTorchModule
from onebit.kernels.int8conv import calibrate_activations, quantize_conv_weight
from onebit.runtime.graph import Graph, Node

from _deploy_helpers import binarized


@pytest.fixture(scope="module")
def bireal():
    return binarized("birealnet18", "bireal", num_classes=5, width=0.25)


def _cal(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_only_the_stem_is_quantized_and_runtime_equals_its_reference(bireal, tmp_path) -> None:
    plain = convert(bireal, example_input_shape=(3, 32, 32))
    g = convert(bireal, example_input_shape=(3, 32, 32), first_layer="int8", calibration=_cal())
    ops = [n.op for n in g.nodes]
    assert ops[0] == "conv2d_int8" and ops.count("conv2d_int8") == 1
    assert ops[1:] == [n.op for n in plain.nodes][1:]
    act = calibrate_activations(_cal())
    a = g.nodes[0].attrs
    assert (a["act_scale"], a["act_zero_point"], a["act_bits"]) == (act.scale, act.zero_point, 8)
    rt.save_graph(g, tmp_path / "m.onebit")
    model = rt.load(tmp_path / "m.onebit", num_threads=1)
    x = _cal(3, seed=5)
    y = model(x)
    with torch.no_grad():
        ref = GraphTorchModule(g)(torch.from_numpy(x)).numpy()
    scale = np.abs(ref).max()
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * scale)


def test_stem_output_within_the_quantization_bound() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 3, 7, 7)).astype(np.float32) * 0.1
    b = rng.standard_normal(16).astype(np.float32)
    nodes = [Node("conv2d", ["input"], "y", {"in_channels": 3, "out_channels": 16,
                                              "kernel": [7, 7], "stride": [2, 2],
                                              "padding": [3, 3], "dilation": [1, 1], "groups": 1,
                                              "pad_value": 0.0},
                  {"weight": "w", "bias": "b"}, "stem")]
    g = Graph(nodes=nodes, tensors={"w": w, "b": b}, input_shape=(3, 20, 20), output="y")
    cal = rng.standard_normal((4, 3, 20, 20)).astype(np.float32)
    q = quantize_float_convs(g, cal)
    x = cal[:2]  # inside the calibrated range
    y = rt.Model(q, num_threads=1)(x)
    y_float = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                       torch.from_numpy(b).double(), 2, 3).numpy()
    act = calibrate_activations(cal)
    _, s_w = quantize_conv_weight(w)
    # |y - y_float| <= scale * sum|w| + s_w / 2 * sum|x_hat| over the window (+ float rounding);
    # scale, not scale / 2: the range's ends are within half a step of the data
    x_hat = np.clip(np.abs(x), 0, None) + act.scale
    sum_abs_x = F.conv2d(torch.from_numpy(x_hat).double(),
                         torch.ones((1, 3, 7, 7), dtype=torch.float64), None, 2, 3).numpy()
    bound = (act.scale * np.abs(w).reshape(16, -1).sum(1)[None, :, None, None]
             + s_w[None, :, None, None] / 2 * sum_abs_x) * (1 + 1e-5) + 1e-5
    err = np.abs(y - y_float)
    assert (err <= bound).all(), float((err - bound).max())
    assert err.max() > 0  # it is quantized


def test_errors(bireal) -> None:
    with pytest.raises(ValueError, match="need calibration"):
        convert(bireal, example_input_shape=(3, 32, 32), first_layer="int8")
    with pytest.raises(ValueError, match="used only with"):
        convert(bireal, example_input_shape=(3, 32, 32), calibration=_cal())
    with pytest.raises(ValueError, match="first_layer must be"):
        convert(bireal, example_input_shape=(3, 32, 32), first_layer="int4")
    with pytest.raises(ValueError, match="calibration must be"):
        convert(bireal, example_input_shape=(3, 32, 32), first_layer="int8",
                calibration=np.zeros((2, 1, 32, 32), np.float32))
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(ValueError, match="no float conv"):
        convert(mlp, example_input_shape=(1, 8, 8), first_layer="int8",
                calibration=np.zeros((2, 1, 8, 8), np.float32))


def test_all_float_convs(bireal) -> None:
    """float_convs='int8': the stem and the 1x1 downsampling shortcuts, each calibrated on the
    values that reach it (checked against the float graph's own activations)."""
    cal = _cal()
    plain = convert(bireal, example_input_shape=(3, 32, 32))
    g = convert(bireal, example_input_shape=(3, 32, 32), float_convs="int8", calibration=cal)
    convs = [n for n in plain.nodes if n.op == "conv2d"]
    q = [n for n in g.nodes if n.op == "conv2d_int8"]
    assert len(convs) == len(q) == 4 and not any(n.op == "conv2d" for n in g.nodes)
    # the shortcut conv's input is an avgpool output: its range from the float graph's values
    inputs = {n.output: n.inputs[0] for n in convs}
    sub = Graph(nodes=[n for n in plain.nodes[:plain.nodes.index(convs[1])]],
                tensors=plain.tensors, input_shape=plain.input_shape,
                output=inputs[convs[1].output])
    v = rt.Model(sub, num_threads=1)(cal)
    act = calibrate_activations(v)
    assert (q[1].attrs["act_scale"], q[1].attrs["act_zero_point"]) == (act.scale, act.zero_point)
    x = _cal(2, seed=9)
    with torch.no_grad():
        ref = GraphTorchModule(g)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt.Model(g, num_threads=1)(x), ref, rtol=0,
                               atol=1e-5 * np.abs(ref).max())
