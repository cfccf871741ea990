"""Exact parity at ties: BatchNorm outputs at, or within float rounding of, a sign threshold and
NaN inputs get the same sign in the PyTorch model (eval mode) and in the packed runtime.

The models end in a binary layer without bias, scale or BatchNorm, whose output is ``acc *
alpha`` on both sides (one float32 product), so any flipped intermediate sign changes the output
and the outputs are compared bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit import quantizers
from onebit.deploy import convert
from onebit.deploy.passes import exact_thresholds
from onebit.nn import QuantConv2d, QuantLinear
from onebit.runtime import float_ops

SIGN = {"name": "sign"}


def _tie_batchnorm_(bn: nn.modules.batchnorm._BatchNorm, alpha: torch.Tensor, ks: list[int],
                    gen: torch.Generator) -> None:
    """Running means at ``k * alpha`` (k an accumulator value the inputs reach) nudged by -3..3
    float32 ulps, variances, gammas (a third negative) and betas of a few ulps: BatchNorm outputs
    at or within rounding of 0 exactly where the accumulator is k."""
    c = bn.num_features
    k = torch.tensor([ks[i % len(ks)] for i in range(c)], dtype=torch.float32)
    mean = (k * alpha).to(torch.float32)
    ulps = torch.randint(-3, 4, (c,), generator=gen).to(torch.float32)
    mean = mean + ulps * torch.finfo(torch.float32).eps * mean.abs().clamp_min(1e-3)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.1)
    gamma = torch.rand(c, generator=gen) + 0.3
    bn.weight.data.copy_(torch.where(torch.arange(c) % 3 == 2, -gamma, gamma))
    tiny = torch.randint(-2, 3, (c,), generator=gen).to(torch.float32) * 1e-7
    bn.bias.data.copy_(tiny)


def _binary_mlp(seed: int, weight_q: str) -> nn.Sequential:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            QuantLinear(16, 48, bias=False, input_quantizer=SIGN, weight_quantizer=weight_q),
            nn.BatchNorm1d(48), nn.Hardtanh(),
            QuantLinear(48, 10, bias=False, input_quantizer=SIGN, weight_quantizer=weight_q),
        ).eval()
    alpha = model[0].binary_weight()[1]
    _tie_batchnorm_(model[1], alpha, [-4, -2, 0, 2, 4], torch.Generator().manual_seed(seed))
    return model


def _binary_cnn(seed: int, weight_q: str, pad_value: float) -> nn.Sequential:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            QuantConv2d(4, 24, 3, padding=1, bias=False, input_quantizer=SIGN,
                        weight_quantizer=weight_q, pad_value=pad_value),
            nn.BatchNorm2d(24),
            QuantConv2d(24, 8, 3, padding=1, bias=False, input_quantizer=SIGN,
                        weight_quantizer=weight_q, pad_value=pad_value),
        ).eval()
    alpha = model[0].binary_weight()[1]
    _tie_batchnorm_(model[1], alpha, [-6, -3, -2, -1, 0, 1, 2, 3, 6],
                    torch.Generator().manual_seed(seed))
    return model


def _bits_thresholds(graph: rt.Graph) -> list[str]:
    return [n.name for n in graph.nodes if n.op in ("bconv2d", "blinear")
            and n.attrs.get("output") == "bits"]


def _torch(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("weight_q", ["sign", "scaled_sign"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_ties_bit_identical(seed: int, weight_q: str) -> None:
    model = _binary_mlp(seed, weight_q)
    x = np.random.default_rng(seed).standard_normal((512, 16)).astype(np.float32)
    graph = convert(model, example_input_shape=(16,))
    assert _bits_thresholds(graph)  # the BN -> sign hand-off runs on packed bits
    ref = _torch(model, x)
    # the set-up does produce ties: BatchNorm outputs within a few ulps of 0
    with torch.no_grad():
        z = model[1](model[0](torch.from_numpy(x)))
    assert int((z.abs() < 1e-5).sum()) > 100
    np.testing.assert_array_equal(rt.Model(graph)(x), ref)


@pytest.mark.parametrize("pad_value", [0.0, -1.0])
@pytest.mark.parametrize("weight_q", ["sign", "scaled_sign"])
def test_conv_ties_bit_identical(weight_q: str, pad_value: float) -> None:
    model = _binary_cnn(3, weight_q, pad_value)
    x = np.random.default_rng(3).standard_normal((16, 4, 7, 7)).astype(np.float32)
    graph = convert(model, example_input_shape=(4, 7, 7))
    assert _bits_thresholds(graph)
    with torch.no_grad():
        z = model[1](model[0](torch.from_numpy(x)))
    assert int((z.abs() < 1e-5).sum()) > 100
    np.testing.assert_array_equal(rt.Model(graph)(x), _torch(model, x))


def test_exact_thresholds_match_torch_decision_per_accumulator() -> None:
    """The thresholds reproduce torch's sign for every integer accumulator, including the one
    where the float64 fold and float32 evaluation disagree (the set-up makes such channels)."""
    model = _binary_mlp(5, "scaled_sign")
    layer, bn = model[0], model[1]
    n = 16
    t, flip = exact_thresholds(layer, [bn], n)
    acc = torch.arange(-n, n + 1, dtype=torch.float32)
    with torch.no_grad():
        z = bn(layer.output_affine(acc.view(-1, 1).expand(-1, 48).contiguous(),
                                   layer.binary_weight()[1]))
    torch_neg = (z < 0).T.numpy()
    a = np.arange(-n, n + 1)[None, :]
    runtime_neg = np.where(flip[:, None].astype(bool), a > t[:, None], a < t[:, None])
    np.testing.assert_array_equal(runtime_neg, torch_neg)


def test_nan_binarizes_to_plus_one_everywhere() -> None:
    """One rule: sign(NaN) = +1 in the torch quantizers, the packed bits and the runtime's float
    ``sign`` and ``kbit(1)`` ops."""
    nan = torch.tensor([float("nan"), -1.0, 0.0, -0.0, 2.0])
    expected = torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0])
    for name in ("sign", "approx_sign", "stochastic_sign", "kbit"):
        q = quantizers.get(name, bits=1) if name == "kbit" else quantizers.get(name)
        assert torch.equal(q.eval()(nan.clone()), expected), name
    assert torch.equal(quantizers.binary_sign(nan), expected)
    np.testing.assert_array_equal(float_ops.kbit(nan.numpy(), 1), expected.numpy())
    bits = rt.binary_ops.pack_signs(nan.numpy()[None])
    np.testing.assert_array_equal(rt.binary_ops.unpack_signs(bits, 5)[0], expected.numpy())


def test_nan_inputs_bit_identical_packed_and_float_sign() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = nn.Sequential(
            QuantLinear(8, 6, bias=False, input_quantizer=SIGN, weight_quantizer="sign")).eval()
        floaty = nn.Sequential(quantizers.get("sign"), nn.Linear(8, 6, bias=False)).eval()
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    x[np.random.default_rng(1).random(x.shape) < 0.3] = np.nan
    for model in (packed, floaty):
        graph = convert(model, example_input_shape=(8,))
        ops = [n.op for n in graph.nodes]
        assert ("blinear" in ops) if model is packed else ("sign" in ops)
        out, ref = rt.Model(graph)(x), _torch(model, x)
        assert not np.isnan(ref).any()
        if model is packed:
            np.testing.assert_array_equal(out, ref)
        else:  # float products summed in another order: the signs are what must agree
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
