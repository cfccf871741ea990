"""AdderConv2d: forward and both gradients (before and after the adaptive scaling) against the
unfold reference, which is itself checked against a loop and against autograd surrogates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import onebit.nn.functional as OF
from onebit.nn import AdderConv2d
from onebit.nn.functional import adder_conv2d, adder_conv2d_reference

DT = torch.float64

SHAPES = [
    # N, C_in, H, W, C_out, kernel, stride, padding
    (2, 3, 6, 5, 4, 3, 1, 0),
    (1, 5, 7, 7, 3, 3, 2, 1),
    (3, 1, 5, 6, 7, (3, 2), (1, 2), (1, 0)),
    (2, 4, 8, 8, 5, 1, 1, 0),
    (1, 3, 4, 4, 2, 4, 2, 2),
]


def make(shape, seed=0):
    n, cin, h, w, cout, k, s, p = shape
    g = torch.Generator().manual_seed(seed)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(n, cin, h, w, dtype=DT, generator=g)
    wt = torch.randn(cout, cin, kh, kw, dtype=DT, generator=g) * 0.7
    return x, wt, s, p


def run(fn, x, w, s, p, eta, g=None):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    y = fn(x, w, s, p, eta)
    g = torch.randn_like(y) if g is None else g
    gx, gw = torch.autograd.grad(y, (x, w), g)
    return y.detach(), gx, gw, g


def test_reference_forward_equals_loop():
    x, w, s, p = make((1, 2, 5, 4, 3, 3, 2, 1), seed=1)
    y = adder_conv2d_reference(x, w, s, p, None)
    xp = F.pad(x, (1, 1, 1, 1))
    n, cout, ho, wo = y.shape
    for t in range(cout):
        for i in range(ho):
            for j in range(wo):
                patch = xp[0, :, i * 2 : i * 2 + 3, j * 2 : j * 2 + 3]
                assert math.isclose(float(y[0, t, i, j]), -float((patch - w[t]).abs().sum()), abs_tol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_gradients_match_surrogates(shape):
    """Without the adaptive scaling: d/dF of -1/2 sum (X - F)^2 is X - F, and d/dX of
    -sum huber_1(X - F) is clip(F - X, -1, 1): autograd of these surrogates gives the formulas."""
    x, w, s, p = make(shape, seed=2)
    _, gx, gw, g = run(adder_conv2d_reference, x, w, s, p, None)
    kh, kw = w.shape[2:]
    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)
    cols = F.unfold(xr, (kh, kw), padding=p, stride=s)  # [N, K, P]
    diff = cols[:, None, :, :] - wr.reshape(w.shape[0], -1)[None, :, :, None]  # [N, C, K, P]
    gcol = g.reshape(g.shape[0], g.shape[1], 1, -1)
    (sw,) = torch.autograd.grad((-0.5 * diff**2 * gcol).sum(), wr, retain_graph=True)
    hub = F.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=1.0)
    (sx,) = torch.autograd.grad((-hub * gcol).sum(), xr)
    torch.testing.assert_close(gw, sw)
    torch.testing.assert_close(gx, sx)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eta", [None, 0.2, 1.0])
def test_fast_equals_reference(shape, eta):
    x, w, s, p = make(shape, seed=3)
    y, gx, gw, g = run(adder_conv2d, x, w, s, p, eta)
    yr, gxr, gwr, _ = run(adder_conv2d_reference, x, w, s, p, eta, g)
    torch.testing.assert_close(y, yr, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(gx, gxr, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(gw, gwr, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_adaptive_scaling(shape):
    x, w, s, p = make(shape, seed=4)
    _, gx0, gw0, g = run(adder_conv2d, x, w, s, p, None)
    for eta in (0.2, 0.5):
        _, gx1, gw1, _ = run(adder_conv2d, x, w, s, p, eta, g)
        factor = eta * math.sqrt(w.numel()) / gw0.norm()
        torch.testing.assert_close(gw1, gw0 * factor)
        assert math.isclose(float(gw1.norm()), eta * math.sqrt(w.numel()), rel_tol=1e-10)
        torch.testing.assert_close(gx1, gx0, rtol=0, atol=0)  # the input gradient is not scaled


def test_chunked_backward_equals_reference(monkeypatch):
    """A tiny chunk budget forces many row x channel blocks."""
    monkeypatch.setattr(OF, "ADDER_CHUNK_ELEMENTS", 37)
    x, w, s, p = make((2, 3, 6, 6, 5, 3, 1, 1), seed=5)
    _, gx, gw, g = run(adder_conv2d, x, w, s, p, 0.2)
    _, gxr, gwr, _ = run(adder_conv2d_reference, x, w, s, p, 0.2, g)
    torch.testing.assert_close(gx, gxr, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(gw, gwr, rtol=1e-10, atol=1e-10)


def test_float32_matches_float64():
    x, w, s, p = make((2, 4, 6, 6, 3, 3, 1, 1), seed=6)
    y64, gx64, gw64, g = run(adder_conv2d, x, w, s, p, 0.2)
    y32, gx32, gw32, _ = run(adder_conv2d, x.float(), w.float(), s, p, 0.2, g.float())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gx32.double(), gx64, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw32.double(), gw64, rtol=1e-4, atol=1e-4)


def test_layer_calls_functional_hook_and_adds_bias(monkeypatch):
    torch.manual_seed(7)
    layer = AdderConv2d(3, 4, 3, stride=2, padding=1, bias=True, eta=0.3).double()
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=DT))
    calls = []
    real = OF.adder_conv2d

    def spy(x, weight, stride, padding, eta):
        calls.append((tuple(x.shape), stride, padding, eta))
        return real(x, weight, stride, padding, eta)

    monkeypatch.setattr(OF, "adder_conv2d", spy)
    x = torch.randn(2, 3, 7, 7, dtype=DT)
    y = layer(x)
    assert calls == [((2, 3, 7, 7), (2, 2), (1, 1), 0.3)]
    expect = adder_conv2d_reference(x, layer.weight.detach(), 2, 1, 0.3) + layer.bias.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(y, expect)


def test_layer_init_is_standard_normal():
    torch.manual_seed(8)
    layer = AdderConv2d(64, 64, 3)
    w = layer.weight.detach()
    assert abs(float(w.mean())) < 0.02 and abs(float(w.std()) - 1.0) < 0.02
    assert layer.bias is None


def test_bad_arguments():
    x = torch.randn(1, 3, 5, 5)
    with pytest.raises(ValueError, match="channels"):
        adder_conv2d(x, torch.randn(2, 4, 3, 3))
    with pytest.raises(TypeError, match="dtype"):
        adder_conv2d(x, torch.randn(2, 3, 3, 3, dtype=DT))
    with pytest.raises(ValueError, match="too small"):
        adder_conv2d(torch.randn(1, 3, 2, 2), torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="eta"):
        AdderConv2d(3, 2, 3, eta=-1.0)
    with pytest.raises(ValueError, match="stride"):
        adder_conv2d(x, torch.randn(2, 3, 3, 3), stride=(1, 2, 3))


def test_layer_defaults_attributes_and_repr():
    layer = AdderConv2d(3, 5, 2)
    assert (layer.in_channels, layer.out_channels) == (3, 5)
    assert layer.kernel_size == (2, 2) and layer.stride == (1, 1) and layer.padding == (0, 0)
    assert layer.eta == 0.2 and layer.bias is None
    assert layer.weight.shape == (5, 3, 2, 2)
    assert layer.extra_repr() == "3, 5, kernel_size=(2, 2), stride=(1, 1), padding=(0, 0), eta=0.2"
    biased = AdderConv2d(1, 1, 1, stride=2, padding=1, bias=True, eta=None)
    assert biased.kernel_size == (1, 1) and biased.weight.shape == (1, 1, 1, 1)
    assert biased.extra_repr() == ("1, 1, kernel_size=(1, 1), stride=(2, 2), padding=(1, 1), "
                                   "eta=None, bias=True")
    # the defaults are those of the forward: an 8x8 input gives 7x7 with a 2x2 kernel
    assert layer(torch.randn(1, 3, 8, 8)).shape == (1, 5, 7, 7)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_layer_rejects_channel_counts_that_are_not_positive_ints(bad):
    with pytest.raises(ValueError, match="in_channels"):
        AdderConv2d(bad, 2, 3)
    with pytest.raises(ValueError, match="out_channels"):
        AdderConv2d(2, bad, 3)


def test_layer_eta_must_be_strictly_positive():
    with pytest.raises(ValueError, match="eta"):
        AdderConv2d(2, 2, 3, eta=0.0)
    assert AdderConv2d(2, 2, 3, eta=1e-9).eta == 1e-9


def test_reference_defaults_are_stride_1_padding_0_eta_0_2():
    x, w, _, _ = make((2, 3, 6, 5, 4, 3, 1, 0), seed=5)
    g = torch.randn(2, 4, 4, 3, dtype=DT, generator=torch.Generator().manual_seed(6))
    xa, wa = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ya = adder_conv2d_reference(xa, wa)
    ga = torch.autograd.grad(ya, (xa, wa), g)
    yb, gxb, gwb, _ = run(adder_conv2d_reference, x, w, 1, 0, 0.2, g)
    torch.testing.assert_close(ya.detach(), yb, rtol=0, atol=0)
    torch.testing.assert_close(ga[0], gxb, rtol=0, atol=0)
    torch.testing.assert_close(ga[1], gwb, rtol=0, atol=0)  # eta scales this one
