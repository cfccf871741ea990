"""QuantConv2d / QuantLinear against F.conv2d / F.linear on the quantized tensors; the XNOR K map
against a loop; output scale; warnings; the paper-order blocks."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from onebit import quantizers as Q
from onebit.nn import BiRealBlock, LatentClipWarning, QuantConv2d, QuantLinear, XNORBlock
from onebit.nn.functional import xnor_k_map

DT = torch.float64


def sign(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def pad_const(x, left, right, top, bottom, value):
    """Constant padding built by hand (no F.pad): a filled canvas with x copied in."""
    n, c, h, w = x.shape
    out = torch.full((n, c, h + top + bottom, w + left + right), float(value), dtype=x.dtype)
    out[:, :, top : top + h, left : left + w] = x
    return out


CONV_CASES = [
    # in, out, kernel, stride, padding, dilation, groups, bias, H, W
    (3, 5, 3, 1, 1, 1, 1, True, 7, 6),
    (4, 6, 3, 2, 1, 1, 2, False, 9, 8),
    (5, 3, (3, 2), (2, 1), (2, 1), 1, 1, True, 8, 7),
    (3, 4, 3, 1, 2, 2, 1, False, 9, 9),
    (2, 4, 4, 1, "same", 1, 1, True, 6, 7),
    (3, 2, 1, 1, 0, 1, 1, True, 5, 5),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("pad_value", [0.0, -1.0, 1.0])
def test_quantconv_equals_conv_on_quantized_tensors(case, pad_value):
    cin, cout, k, s, p, d, g, bias, h, w = case
    torch.manual_seed(0)
    layer = QuantConv2d(cin, cout, k, s, p, d, g, bias, dtype=DT, input_quantizer="sign",
                        weight_quantizer="scaled_sign", pad_value=pad_value)
    x = torch.randn(2, cin, h, w, dtype=DT)
    ref_layer = nn.Conv2d(cin, cout, k, s, p, d, g, bias, dtype=DT)
    left, right, top, bottom = ref_layer._reversed_padding_repeated_twice
    wt = layer.weight.detach()
    alpha = wt.abs().flatten(1).mean(1).view(-1, 1, 1, 1)
    xp = pad_const(sign(x), left, right, top, bottom, pad_value)
    expect = F.conv2d(xp, alpha * sign(wt), layer.bias, s, 0, d, g)
    torch.testing.assert_close(layer(x), expect, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.quantized_weight(), alpha * sign(wt), rtol=0, atol=0)


def test_quantconv_zero_pad_matches_conv_padding():
    torch.manual_seed(1)
    layer = QuantConv2d(3, 4, 3, 1, 1, dtype=DT, input_quantizer="sign", weight_quantizer="sign")
    x = torch.randn(2, 3, 6, 6, dtype=DT)
    expect = F.conv2d(sign(x), sign(layer.weight.detach()), layer.bias, 1, 1)
    torch.testing.assert_close(layer(x), expect, rtol=1e-12, atol=1e-12)


def test_quantconv_weight_gradient_is_ste_of_conv_gradient():
    torch.manual_seed(2)
    layer = QuantConv2d(3, 4, 3, 1, 1, bias=False, dtype=DT, input_quantizer="sign",
                        weight_quantizer="sign")
    with torch.no_grad():
        layer.weight.mul_(10)  # some latent weights beyond [-1, 1]
    x = torch.randn(2, 3, 5, 5, dtype=DT)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    wq = sign(layer.weight.detach())
    dwq = torch.nn.grad.conv2d_weight(sign(x), wq.shape, g, padding=1)
    mask = (layer.weight.detach().abs() <= 1).to(DT)
    torch.testing.assert_close(layer.weight.grad, dwq * mask)
    assert (mask == 0).any() and (mask == 1).any()


def test_quantconv_padding_modes_pad_the_quantized_input():
    torch.manual_seed(3)
    for mode in ("reflect", "replicate", "circular"):
        layer = QuantConv2d(2, 3, 3, padding=1, padding_mode=mode, dtype=DT,
                            input_quantizer="sign", weight_quantizer="sign")
        x = torch.randn(1, 2, 5, 5, dtype=DT)
        xp = F.pad(sign(x), (1, 1, 1, 1), mode=mode)
        expect = F.conv2d(xp, sign(layer.weight.detach()), layer.bias)
        torch.testing.assert_close(layer(x), expect, rtol=1e-12, atol=1e-12)


def k_map_loop(x, kh, kw, stride, pads, dilation):
    """K by loops: A = mean_c |x|, zero padded, K[n, i, j] = mean of A over the (dilated) window."""
    n, c, h, w = x.shape
    left, right, top, bottom = pads
    a = torch.zeros(n, h + top + bottom, w + left + right, dtype=x.dtype)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                a[b, top + i, left + j] = sum(abs(float(x[b, ch, i, j])) for ch in range(c)) / c
    ho = (a.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (a.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    k = torch.zeros(n, 1, ho, wo, dtype=x.dtype)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                tot = 0.0
                for u in range(kh):
                    for v in range(kw):
                        tot += float(a[b, i * stride[0] + u * dilation[0], j * stride[1] + v * dilation[1]])
                k[b, 0, i, j] = tot / (kh * kw)
    return k


@pytest.mark.parametrize(
    "k, s, p, d", [(3, 1, 1, 1), ((3, 2), (2, 1), (1, 0), 1), (3, 2, 2, 2), (2, 1, "same", 1)]
)
def test_xnor_k_map_equals_loop_and_scales_the_output(k, s, p, d):
    torch.manual_seed(4)
    layer = QuantConv2d(3, 4, k, s, p, d, bias=True, dtype=DT, input_quantizer="sign",
                        weight_quantizer="scaled_sign", input_scaling="xnor_k")
    x = torch.randn(2, 3, 7, 6, dtype=DT)
    pads = layer.explicit_padding
    kh, kw = layer.kernel_size
    ref_k = k_map_loop(x, kh, kw, layer.stride, pads, layer.dilation)
    got_k = xnor_k_map(x, (kh, kw), layer.stride, pads, layer.dilation)
    torch.testing.assert_close(got_k, ref_k, rtol=1e-12, atol=1e-12)
    plain = QuantConv2d(3, 4, k, s, p, d, bias=False, dtype=DT, input_quantizer="sign",
                        weight_quantizer="scaled_sign")
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
    expect = plain(x) * ref_k + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expect, rtol=1e-12, atol=1e-12)


def test_output_scale_multiplies_before_bias_and_is_initialised_from_weights():
    torch.manual_seed(5)
    layer = QuantConv2d(3, 4, 3, padding=1, dtype=DT, input_quantizer="approx_sign",
                        weight_quantizer={"name": "periodic_sign", "omega0": 20.0, "stage": 2},
                        output_scale=True)
    w = layer.weight.detach()
    torch.testing.assert_close(layer.scale.detach(), torch.sin(20 * w).abs().flatten(1).mean(1))
    with torch.no_grad():
        layer.scale.copy_(torch.tensor([0.5, -2.0, 1.5, 3.0], dtype=DT))
    x = torch.randn(2, 3, 5, 5, dtype=DT)
    conv = F.conv2d(sign(x), sign(torch.sin(20 * w)), None, 1, 1)
    expect = conv * layer.scale.detach().view(1, -1, 1, 1) + layer.bias.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expect, rtol=1e-12, atol=1e-12)
    layer(x).sum().backward()
    assert layer.scale.grad is not None
    torch.testing.assert_close(layer.scale.grad, conv.sum((0, 2, 3)))
    # plain sign -> mean |W|, real-valued weights -> ones
    s = QuantConv2d(3, 2, 3, dtype=DT, weight_quantizer="sign", output_scale=True)
    torch.testing.assert_close(s.scale.detach(), s.weight.detach().abs().flatten(1).mean(1))
    f = QuantConv2d(3, 2, 3, dtype=DT, output_scale=True)
    assert torch.equal(f.scale.detach(), torch.ones(2, dtype=DT))


def test_quantlinear_equals_linear_on_quantized_tensors():
    torch.manual_seed(6)
    for wq in ("sign", "scaled_sign", {"name": "magnitude_aware_sign", "detach_scale": True}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LatentClipWarning)
            layer = QuantLinear(7, 5, dtype=DT, input_quantizer="sign", weight_quantizer=wq)
        x = torch.randn(4, 7, dtype=DT)
        w = layer.weight.detach()
        scaled = wq != "sign"
        wref = (w.abs().mean(1, keepdim=True) if scaled else 1.0) * sign(w)
        torch.testing.assert_close(layer(x), F.linear(sign(x), wref, layer.bias), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.quantized_weight(), wref, rtol=0, atol=0)
    sc = QuantLinear(4, 3, dtype=DT, weight_quantizer="sign", output_scale=True)
    x = torch.randn(2, 4, dtype=DT)
    expect = F.linear(x, sign(sc.weight.detach())) * sc.scale.detach() + sc.bias.detach()
    torch.testing.assert_close(sc(x), expect, rtol=1e-12, atol=1e-12)


def test_float_layers_without_quantizers_match_torch():
    torch.manual_seed(7)
    q = QuantConv2d(3, 4, 3, 2, 1, dtype=DT)
    ref = nn.Conv2d(3, 4, 3, 2, 1, dtype=DT)
    ref.load_state_dict(q.state_dict())
    x = torch.randn(2, 3, 8, 8, dtype=DT)
    torch.testing.assert_close(q(x), ref(x))
    assert torch.equal(q.quantized_weight(), q.weight)


def test_latent_clip_warning():
    with pytest.warns(LatentClipWarning, match="magnitude_aware_sign"):
        QuantConv2d(2, 2, 3, weight_quantizer="magnitude_aware_sign")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LatentClipWarning)
        QuantConv2d(2, 2, 3, weight_quantizer="sign")  # clipped: fine
        QuantConv2d(2, 2, 3, weight_quantizer="periodic_sign")  # periodic gradient: fine
        QuantLinear(2, 2, input_quantizer="approx_sign")  # activations: fine


def test_latent_clip_warning_points_at_the_callers_line():
    import inspect

    with pytest.warns(LatentClipWarning) as record:
        line = inspect.currentframe().f_lineno + 1
        QuantConv2d(2, 2, 3, weight_quantizer="magnitude_aware_sign")
    with pytest.warns(LatentClipWarning) as record2:
        line2 = inspect.currentframe().f_lineno + 1
        QuantLinear(2, 2, weight_quantizer="magnitude_aware_sign")
    assert (record[0].filename, record[0].lineno) == (__file__, line)
    assert (record2[0].filename, record2[0].lineno) == (__file__, line2)


def test_defaults_and_repr_follow_nn_conv2d():
    """QuantConv2d's defaults are nn.Conv2d's (padding 0 included); the repr names each
    quantizer and the output scale."""
    torch.manual_seed(9)
    q, ref = QuantConv2d(2, 3, 3), nn.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 5)
    assert q(x).shape == ref(x).shape == (1, 3, 3, 3)
    r = repr(QuantConv2d(2, 3, 3, input_quantizer="sign", weight_quantizer="periodic_sign",
                         output_scale=True))
    assert "input_quantizer=sign" in r and "weight_quantizer=periodic_sign" in r
    assert "output_scale=True" in r
    assert repr(QuantLinear(2, 3)) == "QuantLinear(in_features=2, out_features=3, bias=True)"
    assert repr(QuantConv2d(2, 3, 3)) == repr(nn.Conv2d(2, 3, 3)).replace("Conv2d", "QuantConv2d")
    for pad in (-1.0, 1.0):
        r = repr(QuantConv2d(2, 3, 3, input_quantizer="sign", input_scaling="xnor_k",
                             pad_value=pad))
        assert "input_scaling='xnor_k'" in r and f"pad_value={pad}" in r
    r = repr(QuantLinear(2, 3, input_quantizer="sign", input_scaling="xnor_beta"))
    assert "input_scaling='xnor_beta'" in r and "input_quantizer=sign" in r


def test_xnor_beta_is_per_input_vector_for_any_leading_shape():
    """beta = mean |x| over the features of each input vector, also with extra leading axes
    (nn.Linear's [N, *, F] inputs)."""
    torch.manual_seed(10)
    lin = QuantLinear(4, 3, bias=False, input_quantizer="sign", weight_quantizer="sign",
                      input_scaling="xnor_beta").eval()
    x = torch.randn(2, 5, 4)
    plain = torch.sign(x) @ torch.sign(lin.weight).T
    want = plain * x.abs().mean(dim=-1, keepdim=True)
    torch.testing.assert_close(lin(x), want)


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_scaling"):
        QuantConv2d(2, 2, 3, input_scaling="beta")
    with pytest.raises(ValueError, match="unknown quantizer"):
        QuantLinear(2, 2, weight_quantizer="sgn")


def test_xnor_block_order():
    torch.manual_seed(8)
    blk = XNORBlock(3, 4, 3, padding=1, pool=2).double().eval()
    with torch.no_grad():
        blk.bn.running_mean.uniform_(-0.5, 0.5)
        blk.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 6, 6, dtype=DT)
    xb = blk.bn(x).detach()
    wq = blk.conv.weight.detach()
    alpha = wq.abs().flatten(1).mean(1).view(-1, 1, 1, 1)
    kk = k_map_loop(xb, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    conv = F.conv2d(sign(xb), alpha * sign(wq), None, 1, 1) * kk
    torch.testing.assert_close(blk(x), F.max_pool2d(conv, 2), rtol=1e-12, atol=1e-12)
    assert isinstance(XNORBlock(3, 4).pool, nn.Identity)


def test_bireal_block():
    torch.manual_seed(9)
    same = BiRealBlock(4, 4).double().eval()
    x = torch.randn(2, 4, 6, 6, dtype=DT)
    torch.testing.assert_close(same(x), same.bn(same.conv(x)) + x)
    assert isinstance(same.shortcut, nn.Identity)
    down = BiRealBlock(4, 8, stride=2).double().eval()
    kinds = [type(m) for m in down.shortcut]
    assert kinds == [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d]
    assert down.shortcut[1].kernel_size == (1, 1) and not isinstance(down.shortcut[1], QuantConv2d)
    assert down(x).shape == (2, 8, 3, 3)
    assert down(torch.randn(1, 4, 7, 7, dtype=DT)).shape == (1, 8, 4, 4)
    assert isinstance(down.conv.input_quantizer, Q.ApproxSign)
    assert isinstance(down.conv.weight_quantizer, Q.MagnitudeAwareSign)


def test_block_defaults_and_shortcuts():
    x = XNORBlock(4, 6)
    assert x.conv.kernel_size == (3, 3) and x.conv.padding == (0, 0)
    assert x.conv.binary_grad is False and x.conv.bias is None
    assert isinstance(XNORBlock(4, 6, pool=nn.AvgPool2d(2)).pool, nn.AvgPool2d)
    assert isinstance(XNORBlock(4, 6, pool=2).pool, nn.MaxPool2d)
    with pytest.raises(TypeError, match="pool must be"):
        XNORBlock(4, 6, pool="max")
    same = BiRealBlock(4, 4)
    assert same.conv.pad_value == 0.0 and same.conv.bias is None
    assert isinstance(same.shortcut, nn.Identity)
    down = BiRealBlock(4, 8, stride=2)
    assert [type(m) for m in down.shortcut] == [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d]
    assert down.shortcut[1].bias is None
    widen = BiRealBlock(4, 8)
    assert [type(m) for m in widen.shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    strided = BiRealBlock(4, 4, stride=2)
    assert [type(m) for m in strided.shortcut] == [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d]


def test_xnor_k_map_defaults_and_padding_forms():
    """stride 1, no padding, dilation 1 by default; a 1x1 kernel is allowed; an int, a pair and a
    4-tuple (left, right, top, bottom) of padding all work."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, 6, 7, generator=g)
    a = x.abs().mean(dim=1, keepdim=True)
    torch.testing.assert_close(xnor_k_map(x, 1), a)
    box = xnor_k_map(x, 3)
    assert box.shape == (2, 1, 4, 5)
    torch.testing.assert_close(box, F.avg_pool2d(a, 3, stride=1))
    torch.testing.assert_close(box, xnor_k_map(x, 3, 1, 0, 1))
    padded = xnor_k_map(x, 3, padding=1)
    assert padded.shape == (2, 1, 6, 7)
    torch.testing.assert_close(padded, F.avg_pool2d(F.pad(a, (1, 1, 1, 1)), 3, stride=1))
    torch.testing.assert_close(xnor_k_map(x, 3, padding=(1, 2)),
                               F.avg_pool2d(F.pad(a, (2, 2, 1, 1)), 3, stride=1))
    torch.testing.assert_close(xnor_k_map(x, 3, padding=(0, 1, 2, 0)),
                               F.avg_pool2d(F.pad(a, (0, 1, 2, 0)), 3, stride=1))
