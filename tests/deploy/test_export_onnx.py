"""ONNX and QONNX export: the exported files, run by ONNX Runtime and by qonnx's executor, equal
the onebit runtime and the PyTorch model for every binary method."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import ExportError, convert, export_onnx, export_qonnx
from onebit.deploy.qonnx import graph_to_qonnx
from onebit.nn import QuantConv2d

from _deploy_helpers import (binarized,
                             randomize_batchnorm_, torch_logits)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# (model, options, input shape, method); XNOR-Net with and without the K map
CASES = [
    ("fmnist_cnn", {"in_channels": 1, "width": 0.25, "hidden": 16}, (1, 28, 28), "bnn", {}),
    ("resnet20", {"width": 0.25}, (3, 16, 16), "xnor", {}),
    ("resnet20", {"width": 0.25}, (3, 16, 16), "xnor", {"k_map": False}),
    ("vgg_small", {"width": 0.125}, (3, 16, 16), "xnor", {"pad_value": 1.0}),
    ("resnet20", {"width": 0.25}, (3, 16, 16), "bireal", {}),
    ("resnet18", {"width": 0.125}, (3, 16, 16), "biper", {}),
    ("mlp", {"in_channels": 1, "hidden": 48, "depth": 2}, (1, 28, 28), "bwn", {}),
    ("fmnist_cnn", {"in_channels": 1, "width": 0.25, "hidden": 16}, (1, 28, 28), "bwn", {}),
]
IDS = [f"{c[0]}-{c[3]}{'-' + '-'.join(f'{k}={v}' for k, v in c[4].items()) if c[4] else ''}"
       for c in CASES]


def _model(name, options, method, method_options):
    if method_options:
        from onebit.methods import get_method
        method = get_method(method, **method_options)
    return binarized(name, method, **options)


def assert_close_logits(out: np.ndarray, ref: np.ndarray) -> None:
    """Identical argmax, and logits within 1e-4 of the logit scale.

    The bound: binary convs and dense layers are exact integer sums in every engine (+/-1 terms,
    fewer than 2^24 of them) and their affine is applied in the same float32 order; what differs
    is the summation order of the float layers (stem, classifier, BatchNorm left unfolded) and
    of the K map's channel mean, a few float32 ulps (~1e-7 relative) per layer. 1e-4 of the
    logit scale covers that through the depth of these models; a wrong scale, threshold, sign
    convention or padding value moves logits by orders of magnitude more.
    """
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol)


def run_ort(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def run_qonnx(path, x: np.ndarray) -> np.ndarray:
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path))
    name = model.graph.input[0].name
    model.set_tensor_shape(name, list(x.shape))  # the dynamic batch, fixed for this run
    model = model.transform(InferShapes())
    return execute_onnx(model, {name: x})[model.graph.output[0].name]


def _inputs(shape, n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("name, options, shape, method, method_options", CASES, ids=IDS)
def test_qonnx_equals_runtime_and_torch(name, options, shape, method, method_options, tmp_path):
    pytest.importorskip("qonnx")
    model = _model(name, options, method, method_options)
    graph = convert(model, example_input_shape=shape)
    path = tmp_path / "m.onnx"
    export_qonnx(graph, path)
    x = _inputs(shape)
    out = run_qonnx(path, x)
    assert_close_logits(out, rt.Model(graph)(x))
    assert_close_logits(out, torch_logits(model, x))
    ops = [(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node]
    quant = [op for domain, op in ops if domain == "qonnx.custom_op.general"]
    assert "BipolarQuant" in quant
    binary_activations = method in ("bnn", "xnor", "bireal", "biper")
    if binary_activations:  # the sign of the activations feeds a Conv or Gemm
        assert quant.count("BipolarQuant") >= 2
    if method == "xnor" and method_options.get("k_map", True):
        assert ("", "ReduceMean") in ops and ("", "AveragePool") in ops
    if method == "xnor" and method_options.get("pad_value"):
        assert ("", "Pad") in ops


@pytest.mark.parametrize("name, options, shape, method, method_options", CASES, ids=IDS)
def test_onnx_equals_torch_in_onnxruntime(name, options, shape, method, method_options, tmp_path):
    model = _model(name, options, method, method_options)
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path, example_input_shape=shape)
    assert all(n.domain == "" for n in proto.graph.node)  # standard ONNX only
    for batch in (1, 5):  # dynamic batch
        x = _inputs(shape, batch, seed=batch)
        assert_close_logits(run_ort(path, x), torch_logits(model, x))


def test_dynamic_batch_axis(tmp_path):
    model = _model(*[CASES[0][i] for i in (0, 1, 3, 4)])
    proto = export_qonnx(model, tmp_path / "m.onnx", example_input_shape=(1, 28, 28),
                         class_names=[str(i) for i in range(10)])
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["method"] == "bnn" and meta["class_names"].startswith('["0", "1"')


def _kbit_net(bits: int) -> nn.Module:
    torch.manual_seed(bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
            QuantConv2d(8, 8, 3, padding=1, input_quantizer={"name": "kbit", "bits": bits},
                        weight_quantizer={"name": "scaled_sign"}),
            nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(32, 4))
    randomize_batchnorm_(model, torch.Generator().manual_seed(1))
    return model.eval()


@pytest.mark.parametrize("bits", [2, 3])
def test_kbit_activations_are_quant_nodes(bits, tmp_path):
    pytest.importorskip("qonnx")
    model = _kbit_net(bits)
    graph = convert(model, example_input_shape=(3, 8, 8))
    assert "kbit" in {n.op for n in graph.nodes}
    proto = export_qonnx(graph, tmp_path / "q.onnx")
    quants = [n for n in proto.graph.node if n.op_type == "Quant"]
    assert len(quants) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in quants[0].attribute}
    assert attrs == {"signed": 0, "narrow": 0, "rounding_mode": b"HALF_UP"}
    bitwidth = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}[
        quants[0].input[3]]
    assert float(bitwidth) == bits
    # inputs on the level boundaries (ties round half up) and beyond the clip range
    x = _inputs((3, 8, 8), 3) * 2
    x[0, 0, 0, :] = np.linspace(-1.5, 1.5, 8)
    want = rt.Model(graph)(x)
    assert_close_logits(run_qonnx(tmp_path / "q.onnx", x), want)
    export_onnx(graph, tmp_path / "f.onnx")
    assert_close_logits(run_ort(tmp_path / "f.onnx", x), torch_logits(model, x))


@pytest.mark.parametrize("export", [export_onnx, export_qonnx])
def test_addernet_is_a_clear_error(export, tmp_path):
    model = binarized("lenet5_bn", "addernet", in_channels=1)
    with pytest.raises(ExportError, match=r"AdderNet \(adder_conv2d\) has no (Q?ONNX) operator.*"
                                          r"\.onebit"):
        export(model, tmp_path / "m.onnx", example_input_shape=(1, 28, 28))
    assert not (tmp_path / "m.onnx").exists()


def _elementwise_graph(op: str, **attrs) -> rt.Graph:
    return rt.Graph(nodes=[rt.graph.Node(op, ["input"], "y", attrs)], tensors={},
                    input_shape=(24,), output="y")


TIES = np.array([[-2.0, -1.0, -2 / 3, -0.5, -1 / 3, -0.0, 0.0, 1e-30, -1e-30, 1 / 3, 0.5, 2 / 3,
                  1.0, 3.0, -1 / 7, 1 / 7, 3 / 7, -3 / 7, 0.2, -0.2, 0.6, -0.6, 1 - 1e-7,
                  -1 + 1e-7]], np.float32)


@pytest.mark.parametrize("op, attrs", [("sign", {"output": "float"}), ("kbit", {"bits": 1}),
                                       ("kbit", {"bits": 2}), ("kbit", {"bits": 3}),
                                       ("kbit", {"bits": 4})])
def test_quantizers_equal_the_runtime_bit_for_bit(op, attrs, tmp_path):
    """On level boundaries (k-bit rounds half up), signed zeros and values beyond [-1, 1]."""
    graph = _elementwise_graph(op, **attrs)
    want = rt.Model(graph)(TIES)
    export_onnx(graph, tmp_path / "f.onnx")
    np.testing.assert_array_equal(run_ort(tmp_path / "f.onnx", TIES), want)
    pytest.importorskip("qonnx")
    export_qonnx(graph, tmp_path / "q.onnx")
    np.testing.assert_array_equal(run_qonnx(tmp_path / "q.onnx", TIES), want)


@pytest.mark.parametrize("method", ["bnn", "xnor", "bireal", "biper"])
def test_qonnx_datatypes_make_binary_layers_integer(method):
    """qonnx's own datatype inference (the first step of FINN's flow) sees BIPOLAR activations
    and weights in every binary layer, so its Conv / Gemm accumulators are integers."""
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.util.cleanup import cleanup_model

    name, options, shape = ("resnet20", {"width": 0.25}, (3, 16, 16)) if method != "bnn" else \
        CASES[0][:3]
    graph = convert(binarized(name, method, **options), example_input_shape=shape)
    binary = sum(n.op in ("bconv2d", "blinear") for n in graph.nodes)
    model = cleanup_model(ModelWrapper(graph_to_qonnx(graph))).transform(InferDataTypes())
    integer = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")
               and model.get_tensor_datatype(n.output[0]).name.startswith("INT")]
    assert binary > 0 and len(integer) == binary

