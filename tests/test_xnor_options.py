"""XNOR-Net's optional parts: beta for dense layers, k-bit inputs, ReLU after BinConv, binary
gradients, against their formulas and through convert and the runtime; BiPer's omega0 advice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.models as M
import onebit.runtime as rt
from onebit.analysis import biper as B
from onebit.analysis.summary import summarize
from onebit.deploy import ConversionError, convert
from onebit.methods import XNORNet, binarize_, get_method
from onebit.nn import QuantConv2d, QuantLinear, XNORBlock
from onebit.nn.layers import binary_gradient
from onebit.quantizers import binary_sign

SIGN = {"name": "sign"}


def _xnor_cnn(seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    model = M.create("fmnist_cnn", width=0.25, hidden=32, in_channels=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binarize_(model, {"name": "xnor", **options})
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model.eval()


def _runtime_matches(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> rt.Graph:
    graph = convert(model, example_input_shape=shape)
    x = np.random.default_rng(seed).standard_normal((32, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = rt.Model(graph)(x)
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    return graph


# -- beta -----------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
def test_beta_scales_each_row_by_its_mean_abs_input(training):
    torch.manual_seed(0)
    layer = QuantLinear(12, 5, bias=True, input_quantizer=SIGN, weight_quantizer="scaled_sign",
                        input_scaling="xnor_beta").train(training)
    x = torch.randn(7, 12)
    alpha = layer.weight.abs().mean(1)
    expected = (binary_sign(x) @ (alpha[:, None] * binary_sign(layer.weight)).T) \
        * x.abs().sum(1, keepdim=True) / 12 + layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


def test_beta_gradient_reaches_the_real_input():
    torch.manual_seed(1)
    layer = QuantLinear(6, 3, bias=False, input_quantizer=SIGN, weight_quantizer="scaled_sign",
                        input_scaling="xnor_beta")
    x = (torch.rand(4, 6) * 0.8 + 0.1) * torch.where(torch.rand(4, 6) < 0.5, -1.0, 1.0)
    x.requires_grad_(True)
    layer(x).sum().backward()
    wq = layer.quantized_weight().detach()
    acc = binary_sign(x.detach()) @ wq.T  # [4, 3]
    beta = x.detach().abs().mean(1, keepdim=True)
    # d/dx of sum(acc * beta): STE through sign (|x| <= 1) times beta, plus acc's row sum * sign(x)/n
    expected = beta * wq.sum(0) + acc.sum(1, keepdim=True) * torch.sign(x.detach()) / 6
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-6)


def test_beta_deploys_as_blinear_xnor_k():
    model = _xnor_cnn(beta=True)
    graph = _runtime_matches(model, (1, 28, 28))
    assert [n.attrs.get("xnor_k") for n in graph.nodes if n.op == "blinear"] == [True]


def test_beta_without_it_leaves_the_file_unchanged():
    graph = convert(_xnor_cnn(), example_input_shape=(1, 28, 28))
    assert all("xnor_k" not in n.attrs for n in graph.nodes if n.op == "blinear")


def test_beta_on_a_float_input_does_not_convert():
    layer = QuantLinear(8, 4, weight_quantizer="scaled_sign", input_scaling="xnor_beta").eval()
    with pytest.raises(ConversionError, match="xnor_beta"):
        convert(nn.Sequential(layer), example_input_shape=(8,))
    with pytest.raises(ValueError, match="input_scaling"):
        QuantLinear(8, 4, input_scaling="xnor_k")


# -- k-bit inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3])
def test_input_bits_quantize_inputs_and_deploy(bits):
    method = get_method({"name": "xnor", "input_bits": bits, "k_map": False})
    assert method.input_quantizer() == {"name": "kbit", "bits": bits}
    model = _xnor_cnn(input_bits=bits, k_map=False)
    q = next(m for m in model.modules() if isinstance(m, QuantConv2d)).input_quantizer
    x = torch.linspace(-1.5, 1.5, 61)
    levels = 2**bits - 1
    expected = 2 * (torch.floor(levels * (x.clamp(-1, 1) + 1) / 2 + 0.5) / levels - 0.5)
    assert torch.equal(q(x), expected)
    graph = _runtime_matches(model, (1, 28, 28))
    assert any(n.op == "kbit" and n.attrs["bits"] == bits for n in graph.nodes)


def test_input_bits_rejects_k_map_and_bad_values():
    with pytest.raises(ValueError, match="k_map"):
        XNORNet(input_bits=2)
    with pytest.raises(ValueError, match="input_bits"):
        XNORNet(input_bits=0, k_map=False)


# -- ReLU after BinConv -----------------------------------------------------------------------
def test_relu_after_binconv_in_block_and_method():
    torch.manual_seed(0)
    block = XNORBlock(4, 6, 3, padding=1, relu=True).eval()
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), torch.relu(block.conv(block.bn(x))))
    assert isinstance(XNORBlock(4, 6).relu, nn.Identity)  # off by default
    model = _xnor_cnn(relu=True)
    relus = [n for n, m in model.named_modules() if type(m) is nn.ReLU]
    convs = [n for n, m in model.named_modules() if isinstance(m, QuantConv2d)
             and m.input_quantizer is not None]
    assert relus and len(relus) == len(convs)
    assert not any(type(m) is nn.ReLU for m in _xnor_cnn().modules())
    graph = _runtime_matches(model, (1, 28, 28))
    assert sum(n.op == "relu" for n in graph.nodes) == len(relus)


# -- binary gradients -----------------------------------------------------------------------
def test_binary_gradient_formula():
    g = torch.tensor([[0.5, -2.0, 0.0], [1e-3, -1e-3, 1.0]])
    y = torch.zeros_like(g, requires_grad=True)
    binary_gradient(y).backward(g)
    assert torch.equal(y.grad, torch.sign(g) * 2.0)


def test_binary_gradients_option_binarizes_the_output_gradient_in_training_only():
    torch.manual_seed(0)
    kwargs = dict(input_quantizer=SIGN, weight_quantizer="scaled_sign", bias=False)
    plain = QuantConv2d(3, 4, 3, **kwargs)
    binary = QuantConv2d(3, 4, 3, binary_grad=True, **kwargs)
    binary.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 6, 6)
    g = torch.randn(2, 4, 4, 4)
    plain(x).backward(torch.sign(g) * g.abs().max())
    binary(x).backward(g)
    torch.testing.assert_close(binary.weight.grad, plain.weight.grad)
    assert torch.equal(binary(x), plain(x))
    method = get_method({"name": "xnor", "binary_gradients": True})
    assert method.conv_options()["binary_grad"] and method.linear_options()["binary_grad"]
    model = _xnor_cnn(binary_gradients=True)
    assert all(m.binary_grad for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear)))
    assert not any(m.binary_grad for m in _xnor_cnn().modules()
                   if isinstance(m, (QuantConv2d, QuantLinear)))
    _runtime_matches(model, (1, 28, 28))
    binary.eval()
    x.requires_grad_(True)
    binary(x).backward(g)  # eval mode: the plain gradient
    assert not torch.equal(x.grad, torch.zeros_like(x))


# -- BiPer omega0 ---------------------------------------------------------------------------
def test_laplace_fit_recovers_the_scale():
    w = B.laplace_stratified_sample(200_000, 0.07, seed=3)
    assert B.fit_laplace_scale(w) == pytest.approx(0.07, rel=1e-3)
    assert B.fit_laplace_scale([w[:10], w[10:]]) == pytest.approx(B.fit_laplace_scale(w))
    with pytest.raises(ValueError):
        B.fit_laplace_scale([])


def test_relative_error_and_recommendation():
    s = np.logspace(-3, 3, 400)
    r = B.biper_relative_quantization_error(s, 1.0)
    assert np.all(np.diff(r) <= 1e-12) and r[0] == pytest.approx(0.5, abs=1e-3)
    assert r[-1] == pytest.approx(B.BIPER_RELATIVE_QE_LIMIT, abs=1e-4)
    # against the Monte Carlo moments: QE(gamma*) / E[sin^2]
    w = B.laplace_stratified_sample(1 << 18, 0.1, seed=1)
    sin = np.sin(20.0 * w)
    mc = 1 - np.mean(np.abs(sin)) ** 2 / np.mean(sin**2)
    assert float(B.biper_relative_quantization_error(20.0, 0.1)) == pytest.approx(mc, rel=2e-3)
    for b, tol in [(0.15, 0.05), (0.02, 0.05), (0.15, 0.01)]:
        w0 = B.recommend_omega0(b, tol)
        target = (1 + tol) * B.BIPER_RELATIVE_QE_LIMIT
        assert float(B.biper_relative_quantization_error(w0, b)) == pytest.approx(target, rel=1e-9)
        assert float(B.biper_relative_quantization_error(0.99 * w0, b)) > target
    assert B.recommend_omega0(0.15) == pytest.approx(B.recommend_omega0(1.0) / 0.15)


def test_summary_reports_omega0_for_biper_only():
    torch.manual_seed(0)
    model = M.create("fmnist_cnn", width=0.25, hidden=32, in_channels=1)
    binarize_(model, {"name": "biper", "omega0": 20.0})
    s = summarize(model, (1, 28, 28))
    ws = [m.weight.detach().numpy() for m in model.modules()
          if getattr(getattr(m, "weight_quantizer", None), "name", "") == "periodic_sign"]
    b = float(np.mean(np.abs(np.concatenate([w.ravel() for w in ws]))))
    assert s.biper["b"] == pytest.approx(b) and s.biper["omega0"] == 20.0
    assert s.biper["recommended_omega0"] == pytest.approx(B.recommend_omega0(b))
    assert "recommended omega0" in s.render() and s.to_dict()["biper"] == s.biper
    assert summarize(_xnor_cnn(), (1, 28, 28)).biper is None
