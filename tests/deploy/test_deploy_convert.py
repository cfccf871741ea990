"""convert -> save -> load -> run equals the PyTorch model in eval mode, for every method on small
models; the graph has the folds and packings the passes promise; unconvertible models fail with
the module path in the message."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import ConversionError, convert, save
from onebit.deploy.torch_graph import GraphTorchModule
from onebit.methods import binarize_
from onebit.nn import QuantConv2d, QuantLinear, XNORBlock

from _deploy_helpers import (assert_matches_torch, binarized, bnn_sequential,
                             randomize_batchnorm_, torch_logits)

METHODS = ["float", "bnn", "binaryconnect", "bwn", "xnor", "bireal", "biper", "addernet"]

#: (model, options, input shape, methods) - small widths keep the whole file well under a minute
CASES = [
    ("fmnist_cnn", {"in_channels": 1, "width": 0.25, "hidden": 32}, (1, 28, 28), METHODS),
    ("mlp", {"in_channels": 1, "hidden": 48, "depth": 2}, (1, 28, 28),
     ["bnn", "binaryconnect", "bwn", "xnor", "bireal", "biper"]),
    ("lenet5_bn", {"in_channels": 1}, (1, 28, 28), ["addernet", "bnn"]),
    ("resnet20", {"width": 0.25}, (3, 16, 16), ["bnn", "xnor", "bireal", "addernet"]),
    ("resnet18", {"width": 0.125}, (3, 16, 16), ["biper"]),
    ("vgg_small", {"width": 0.125}, (3, 16, 16), ["bnn", "xnor"]),
    ("birealnet18", {"width": 0.125}, (3, 32, 32), ["bireal", "biper"]),
    ("alexnet", {"width": 0.125}, (3, 67, 67), ["xnor"]),
]


def _run_saved(graph: rt.Graph, tmp_path: Path, x: np.ndarray) -> np.ndarray:
    path = tmp_path / "m.onebit"
    save(graph, path)
    return rt.load(path)(x)


@pytest.mark.parametrize("name, options, shape, method", [
    (name, options, shape, method) for name, options, shape, methods in CASES
    for method in methods])
def test_every_method_matches_torch(name, options, shape, method, tmp_path):
    model = binarized(name, method, **options)
    graph = convert(model, example_input_shape=shape)
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    assert_matches_torch(model, _run_saved(graph, tmp_path, x), x)
    assert graph.method == method
    ops = {n.op for n in graph.nodes}
    assert "channel_affine" not in ops or method in ("xnor", "bnn")  # BN before a sign may stay
    binary_weights = {"bnn", "binaryconnect", "bwn", "xnor", "bireal", "biper"}
    if method in binary_weights:
        assert any("weight_bits" in n.tensors for n in graph.nodes)
    if method in {"bnn", "xnor", "bireal", "biper"}:
        assert ops & {"bconv2d", "blinear"}
    if method == "addernet":
        assert "adder_conv2d" in ops


def test_default_input_shape_comes_from_the_registry():
    model = binarized("fmnist_cnn", "bireal", in_channels=1, width=0.25, hidden=16)
    assert convert(model).input_shape == (1, 28, 28)


def test_bnn_mlp_chains_packed_bits_and_folds_batchnorm():
    model = binarized("mlp", "bnn", in_channels=1, hidden=64, depth=3)
    graph = convert(model)
    ops = [n.op for n in graph.nodes]
    assert ops == ["flatten", "linear", "blinear", "blinear", "blinear"]
    assert [n.attrs["output"] for n in graph.nodes if n.op == "blinear"] == ["bits", "bits",
                                                                             "float"]
    first = graph.nodes[1]
    assert "weight_bits" in first.tensors  # BNN binarizes the first layer's weights too
    # with random BN a third of the scales are negative: their thresholds compare the other way
    flips = np.concatenate([graph.tensors[n.tensors["flip"]] for n in graph.nodes
                            if n.tensors.get("flip")])
    assert 0 < flips.sum() < flips.size
    x = np.random.default_rng(1).standard_normal((16, 1, 28, 28)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


@pytest.mark.parametrize("pad_value", [0.0, -1.0, 1.0])
def test_binary_padding_values(pad_value, tmp_path):
    model = bnn_sequential(pad_value=pad_value, seed=3)
    graph = convert(model, example_input_shape=(3, 8, 8))
    assert {n.attrs["pad_value"] for n in graph.nodes if n.op == "bconv2d"} == {pad_value}
    x = np.random.default_rng(2).standard_normal((8, 3, 8, 8)).astype(np.float32)
    assert_matches_torch(model, _run_saved(graph, tmp_path, x), x)


def test_weights_are_stored_one_bit_each():
    graph = convert(bnn_sequential(), example_input_shape=(3, 8, 8))
    conv = [n for n in graph.nodes if n.op == "bconv2d"]
    assert graph.tensors[conv[0].tensors["weight_bits"]].shape == (40, 3, 3, 1)  # 8 ch -> 1 word
    assert graph.tensors[conv[1].tensors["weight_bits"]].shape == (16, 3, 3, 2)  # 40 ch -> 2
    assert conv[0].attrs["output"] == "bits" and conv[1].attrs["output"] == "float"


def test_xnor_block_keeps_the_k_map():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), XNORBlock(16, 24, 3, padding=1, pool=2),
                          XNORBlock(24, 8, 3, padding=1, k_map=False), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 3))
    randomize_batchnorm_(model, torch.Generator().manual_seed(0))
    model.eval()
    graph = convert(model, example_input_shape=(3, 8, 8))
    assert [n.attrs["xnor_k"] for n in graph.nodes if n.op == "bconv2d"] == [True, False]
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


def test_batchnorm_folds_through_max_pool_when_scales_are_positive():
    sign = {"name": "sign"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            QuantConv2d(3, 8, 3, padding=1, weight_quantizer=sign), nn.MaxPool2d(2),
            nn.BatchNorm2d(8), nn.Hardtanh(),
            QuantConv2d(8, 4, 3, padding=1, input_quantizer=sign, weight_quantizer=sign))
    randomize_batchnorm_(model, torch.Generator().manual_seed(0), negative=False)
    model.eval()
    graph = convert(model, example_input_shape=(3, 8, 8))
    assert [n.op for n in graph.nodes] == ["conv2d", "maxpool2d", "bconv2d"]
    x = np.random.default_rng(4).standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


def test_clip_moves_below_max_pool_and_vanishes_before_sign():
    sign = {"name": "sign"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.Hardtanh(), nn.MaxPool2d(2),
            QuantConv2d(8, 4, 3, padding=1, input_quantizer=sign, weight_quantizer=sign))
    graph = convert(model.eval(), example_input_shape=(3, 8, 8))
    assert [n.op for n in graph.nodes] == ["conv2d", "maxpool2d", "bconv2d"]
    x = np.random.default_rng(5).standard_normal((4, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt.Model(graph)(x).reshape(ref.shape), ref, atol=1e-5)


def test_biper_stage_two_scale_is_folded():
    model = binarized("fmnist_cnn", "biper", in_channels=1, width=0.25, hidden=16)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "scale", None) is not None:
                m.scale.uniform_(-2, 2)  # negative scales flip thresholds too
    graph = convert(model)
    x = np.random.default_rng(6).standard_normal((8, 1, 28, 28)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


def test_metadata_is_stored():
    model = binarized("fmnist_cnn", "bnn", in_channels=1, width=0.25, hidden=16)
    names = [f"class {i}" for i in range(10)]
    graph = convert(model, class_names=names, normalization=([0.2860], [0.3530]))
    assert graph.class_names == names
    assert graph.normalization == {"mean": [0.2860], "std": [0.3530]}
    assert graph.method == "bnn"
    with pytest.raises(ValueError, match="3 class_names for a model with output shape"):
        convert(model, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="1 finite means and 1 positive stds"):
        convert(model, normalization={"mean": [0.1, 0.2], "std": [1.0, 1.0]})


def test_sequential_subclass_with_an_input_check_converts():
    model = binarized("mlp", "bireal", in_channels=1, hidden=32, depth=2)
    assert type(model).forward is not nn.Sequential.forward  # its forward checks the shape
    graph = convert(model)
    assert [n.op for n in graph.nodes] == ["flatten", "linear", "blinear", "linear"]


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else -self.conv(x)


class _Cat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


class _CheckingSequential(nn.Sequential):
    def forward(self, x):
        if x.shape[1] != 3:
            raise ValueError("bad input")
        return super().forward(x) * 2  # more than its children: must not convert silently


@pytest.mark.parametrize("model, pattern", [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU()), r"1 \(GELU\): no onebit op for this module"),
    (_Untraceable(), "cannot trace _Untraceable"),
    (_Cat(), "cat.* has no onebit op"),
    (_CheckingSequential(nn.Conv2d(3, 4, 3), nn.ReLU()), "differs from running its children"),
    (nn.Sequential(nn.Conv2d(3, 4, 2, padding="same")), r"0 \(Conv2d\): asymmetric padding"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")),
     "padding_mode='reflect' is not supported"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
     r"1 \(BatchNorm2d\): BatchNorm without running statistics"),
    (nn.Sequential(QuantConv2d(3, 4, 3, input_quantizer="scaled_sign")),
     "input_quantizer: activation quantizer 'scaled_sign' is neither"),
    (nn.Sequential(QuantConv2d(3, 4, 3, input_scaling="xnor_k")),
     "input_scaling='xnor_k' needs a sign input quantizer"),
    (nn.Sequential(QuantConv2d(3, 4, 3, weight_quantizer="sign", input_quantizer="sign",
                               input_scaling="xnor_k", groups=1, dilation=2)),
     "XNOR's K map needs a binary convolution"),
])
def test_unconvertible_models_name_the_layer(model, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConversionError, match=pattern):
            convert(model.eval(), example_input_shape=(3, 8, 8))


def test_bad_arguments():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="pass example_input_shape"):
        convert(model)
    with pytest.raises(ValueError, match="without the batch axis"):
        convert(model, example_input_shape=(1, 3, 8, 8))
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        convert(lambda x: x, example_input_shape=(3, 8, 8))


def test_convert_restores_training_mode():
    model = bnn_sequential().train()
    convert(model, example_input_shape=(3, 8, 8))
    assert all(m.training for m in model.modules())


def test_quantized_linear_with_output_scale():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(nn.Flatten(), QuantLinear(12, 7, input_quantizer="approx_sign",
                                                        weight_quantizer="periodic_sign",
                                                        output_scale=True), nn.BatchNorm1d(7))
    randomize_batchnorm_(model, torch.Generator().manual_seed(2))
    model.eval()
    graph = convert(model, example_input_shape=(3, 2, 2))
    assert [n.op for n in graph.nodes] == ["flatten", "blinear"]
    x = np.random.default_rng(7).standard_normal((5, 3, 2, 2)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


def test_binarize_then_convert_keeps_first_layer_input_real():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 16, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binarize_(model, "bnn")
    randomize_batchnorm_(model, torch.Generator().manual_seed(1))
    graph = convert(model.eval(), example_input_shape=(3, 4, 4))
    assert [n.op for n in graph.nodes] == ["conv2d", "bconv2d", "flatten", "blinear"]
    x = np.random.default_rng(8).standard_normal((6, 3, 4, 4)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


@pytest.mark.parametrize("name, method, options, shape", [
    ("fmnist_cnn", "xnor", {"in_channels": 1, "width": 0.25, "hidden": 16}, (1, 28, 28)),
    ("mlp", "bnn", {"in_channels": 1, "hidden": 40, "depth": 2}, (1, 28, 28)),
    ("resnet20", "bireal", {"width": 0.25}, (3, 16, 16)),
    ("lenet5_bn", "addernet", {"in_channels": 1}, (1, 28, 28)),
])
def test_graph_as_torch_module_agrees_with_the_runtime(name, method, options, shape):
    model = binarized(name, method, **options)
    graph = convert(model, example_input_shape=shape)
    x = np.random.default_rng(9).standard_normal((3, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = GraphTorchModule(graph)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt.Model(graph)(x), ref, rtol=0,
                               atol=1e-4 * max(1.0, float(np.abs(ref).max())))


def test_adder_int8_stays_within_the_rounding_bound(tmp_path):
    """One AdderNet layer: |y_int8 - y_float| <= K * s (times the folded BN scale) per output,
    K = C * kh * kw (onebit.deploy.adder_int8.adder_int8_error_bound); the int8 graph survives save/load."""
    from onebit.nn import AdderConv2d
    from onebit.deploy.adder_int8 import adder_int8_error_bound

    torch.manual_seed(0)
    model = nn.Sequential(AdderConv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6))
    randomize_batchnorm_(model, torch.Generator().manual_seed(0))
    model.eval()
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, 4, 7, 7)).astype(np.float32)
    graph = convert(model, example_input_shape=(4, 7, 7), adder_calibration=x)
    (node,) = graph.nodes
    assert node.op == "adder_int8" and graph.tensors[node.tensors["weight_q"]].dtype == np.int8
    out = _run_saved(graph, tmp_path, x)
    ref = torch_logits(model, x)
    bn = model[1]
    bn_scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    bound = adder_int8_error_bound(4 * 9, node.attrs["scale"], np.abs(bn_scale))
    assert np.all(np.abs(out - ref) <= np.asarray(bound).reshape(1, -1, 1, 1) * (1 + 1e-4) + 1e-4)


def test_adder_int8_clips_outlying_filters_exactly(tmp_path):
    """Filters far outside the activation range are clipped to it with an exact bias correction
    (|X - F| = |X - A| + (F - A) for |X| <= A < F): the scale follows the inputs (max|X| / 127),
    and the int8 layer stays within K * s of the float layer."""
    from onebit.nn import AdderConv2d
    from onebit.deploy.adder_int8 import adder_int8_error_bound

    torch.manual_seed(1)
    model = nn.Sequential(AdderConv2d(3, 5, 3, padding=1)).eval()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = 40.0
        model[0].weight[2, 1, 1, 1] = -55.0
        model[0].weight[4] += 30.0  # a whole filter beyond the inputs
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (6, 3, 8, 8)).astype(np.float32)
    graph = convert(model, example_input_shape=(3, 8, 8), adder_calibration=x)
    (node,) = graph.nodes
    scale = node.attrs["scale"]
    assert scale == pytest.approx(float(np.abs(x).max()) / 127, rel=1e-6)
    out, ref = _run_saved(graph, tmp_path, x), torch_logits(model, x)
    bound = adder_int8_error_bound(3 * 9, scale)
    assert np.abs(out - ref).max() <= bound * (1 + 1e-4) + 1e-4
    assert np.abs(ref).max() > 100 * bound  # the outliers dominate the outputs


def test_adder_int8_network_keeps_its_predictions():
    model = binarized("lenet5_bn", "addernet", in_channels=1)
    rng = np.random.default_rng(11)
    graph = convert(model, adder_calibration=rng.standard_normal((32, 1, 28, 28)).astype(
        np.float32))
    assert [n.op for n in graph.nodes].count("adder_int8") == 2
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    out, ref = rt.Model(graph)(x), torch_logits(model, x)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.95
    assert np.abs(out - ref).max() <= 1e-2 * np.abs(ref).max()
    with torch.no_grad():
        emulated = GraphTorchModule(graph)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, emulated, rtol=0, atol=1e-5 * np.abs(ref).max())
    with pytest.raises(ValueError, match="has no AdderNet layer"):
        convert(binarized("lenet5_bn", "bnn", in_channels=1), adder_calibration=x)
