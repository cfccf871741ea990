"""The C++ AdderNet op (onebit.nn.adder_autograd.compiled_adder_conv2d) and the int8 helpers of
onebit.deploy.adder_int8.

The float32 op (every kernel family of this CPU) is checked against a float64 unfold reference
written here, with the rounding bound of float32 summation: for an output summing ``n`` terms,
``|op - ref| <= (n + 8) * 2^-24 * sum |term|``. The int8 layer is checked against the float layer
with the quantization bound ``fan_in * scale`` derived in onebit.deploy.adder_int8.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onebit.kernels as K
import onebit.nn.functional as OF
from onebit.deploy.adder_int8 import (
    adder_int8_error_bound,
    calibrate_adder_scale,
    quantize_adder_input,
    quantize_adder_layer,
)
from onebit.nn import AdderConv2d
from onebit.nn.adder_autograd import compiled_adder_conv2d

adder_conv2d = functools.partial(compiled_adder_conv2d, eta=None)  # the raw filter gradient

U = 2.0**-24
ISAS = ["reference"] + [n for n in ("avx2", "avx512") if K.isa_available(n)]


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def reference(x, w, g, stride, padding):
    """float64 unfold formulation: Y, dX, dF and, for each, the sum of |terms| (error scale)."""
    x, w, g = x.double(), w.double(), g.double()
    n, c, h, wd = x.shape
    cout, _, kh, kw = w.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # [N, K, P]
    wc = w.reshape(cout, -1)[None, :, :, None]  # [1, Co, K, 1]
    gc = g.reshape(n, cout, 1, -1)  # [N, Co, 1, P]
    diff = cols[:, None] - wc  # X - F: [N, Co, K, P]
    y = -diff.abs().sum(2).reshape(g.shape)
    clip = (-diff).clamp(-1, 1)
    fold = dict(output_size=(h, wd), kernel_size=(kh, kw), padding=padding, stride=stride)
    dx = F.fold((clip * gc).sum(1), **fold)
    dx_mag = F.fold((clip.abs() * gc.abs()).sum(1), **fold)
    dw = (diff * gc).sum((0, 3)).reshape(w.shape)
    # dF is computed as G X^T - F sum G: the magnitudes of both products count
    dw_mag = (cols[:, None].abs() * gc.abs()).sum((0, 3)) + wc[0, :, :, 0].abs() * g.abs().sum(
        (0, 2, 3)
    )[:, None]
    return y, dx, dw, -y, dx_mag, dw_mag.reshape(w.shape)


def assert_within(actual, expected, magnitude, n_terms, what):
    err = (actual.detach().double() - expected).abs()
    bound = (n_terms + 8) * U * magnitude + 1e-30
    worst = float((err / bound).max())
    assert worst <= 1.0, f"{what}: error {float(err.max()):.3g} exceeds the float32 bound (x{worst:.2f})"


def check_against_reference(x, w, stride, padding, isa, threads=2):
    g = torch.randn(
        x.shape[0], w.shape[0],
        (x.shape[2] + 2 * padding[0] - w.shape[2]) // stride[0] + 1,
        (x.shape[3] + 2 * padding[1] - w.shape[3]) // stride[1] + 1,
    )
    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)
    with K.use_isa(isa), torch_threads(threads):
        y = adder_conv2d(xr, wr, stride, padding)
        y.backward(g)
    y_ref, dx_ref, dw_ref, y_mag, dx_mag, dw_mag = reference(x, w, g, stride, padding)
    cout, c, kh, kw = w.shape
    assert y.shape == y_ref.shape and y.dtype == torch.float32
    assert_within(y, y_ref, y_mag, c * kh * kw, "forward")
    assert_within(xr.grad, dx_ref, dx_mag, cout * kh * kw, "grad_input")
    assert_within(wr.grad, dw_ref, dw_mag, g[:, 0].numel(), "grad_weight")


SHAPES = [
    # N, C, H, W, C_out, (kh, kw), stride, padding
    (1, 3, 7, 7, 5, (3, 3), (1, 1), (1, 1)),
    (2, 5, 8, 6, 7, (3, 3), (2, 2), (1, 1)),
    (3, 16, 9, 9, 9, (3, 3), (2, 2), (0, 0)),
    (2, 17, 6, 6, 13, (3, 3), (1, 1), (1, 1)),
    (1, 8, 5, 5, 4, (1, 1), (1, 1), (0, 0)),
    (2, 4, 11, 12, 6, (5, 5), (2, 2), (2, 2)),
    (1, 3, 24, 25, 5, (3, 3), (1, 1), (1, 1)),  # several packed chunks per image
    (3, 6, 7, 9, 4, (3, 2), (1, 2), (0, 1)),  # asymmetric kernel, stride and padding
    (1, 1, 3, 3, 1, (3, 3), (1, 1), (0, 0)),  # a single output
    (2, 2, 2, 2, 3, (3, 3), (1, 1), (1, 1)),  # every output touches padding
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:5])))
def test_matches_unfold_reference(isa, shape):
    n, c, h, w, cout, k, s, p = shape
    gen = torch.Generator().manual_seed(hash(shape) % 1000)
    x = torch.randn(n, c, h, w, generator=gen)
    wt = torch.randn(cout, c, *k, generator=gen)
    check_against_reference(x, wt, s, p, isa)


@pytest.mark.parametrize("isa", ISAS[1:])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 3), c=st.integers(1, 20), hw=st.integers(3, 13), cout=st.integers(1, 19),
    k=st.sampled_from([1, 3]), s=st.integers(1, 2), p=st.integers(0, 1),
    threads=st.integers(1, 3), seed=st.integers(0, 2**31),
)
def test_random_shapes(isa, n, c, hw, cout, k, s, p, threads, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, hw, hw, generator=gen) * 2
    w = torch.randn(cout, c, k, k, generator=gen)
    check_against_reference(x, w, (s, s), (p, p), isa, threads)


def test_clip_boundary_and_large_offsets():
    """Inputs far from the filters (all clips saturate) and values that sit on the clip edge."""
    x = torch.full((2, 3, 6, 6), 5.0)
    x[:, :, ::2] = -5.0
    w = torch.randn(4, 3, 3, 3)
    w[0] = 1.0  # F - X = -4 / 6: both clip edges; zero padding gives F - 0 = 1 exactly
    check_against_reference(x, w, (1, 1), (1, 1), ISAS[-1])


def test_autograd_float32_op_against_float64_reference_with_eta():
    """The adaptive scaling on top of the raw gradient agrees with onebit.nn's torch path."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 8, 8, generator=gen)
    w = torch.randn(5, 6, 3, 3, generator=gen)
    g = torch.randn(2, 5, 4, 4, generator=gen)
    x32, w32 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    adder_conv2d(x32, w32, 2, 1, eta=0.2).backward(g)
    x64, w64 = x.double().requires_grad_(True), w.double().requires_grad_(True)
    OF.adder_conv2d_reference(x64, w64, 2, 1, 0.2).backward(g.double())
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w32.grad.double(), w64.grad, rtol=1e-5, atol=1e-5)
    # eta * sqrt(numel) is the norm of the scaled gradient
    assert math.isclose(float(w32.grad.norm()), 0.2 * math.sqrt(w.numel()), rel_tol=1e-5)


def test_only_requested_gradients_are_computed():
    x = torch.randn(1, 3, 5, 5)
    w = torch.randn(2, 3, 3, 3, requires_grad=True)
    adder_conv2d(x, w, 1, 1).sum().backward()
    assert x.grad is None and w.grad is not None
    x.requires_grad_(True)
    w2 = w.detach()
    adder_conv2d(x, w2, 1, 1).sum().backward()
    assert x.grad is not None and w2.grad is None


def test_non_contiguous_inputs_equal_contiguous():
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(2, 8, 9, 9, generator=gen)
    w = torch.randn(4, 8, 3, 3, generator=gen)
    views = [base.to(memory_format=torch.channels_last), base[:, ::2], base.transpose(2, 3)]
    for v in views:
        vc = v.contiguous()
        ww = w[:, : v.shape[1]]
        assert torch.equal(adder_conv2d(v, ww, 1, 1), adder_conv2d(vc, ww, 1, 1))


def test_deterministic_and_thread_count_independent():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 7, 10, 10, generator=gen)
    w = torch.randn(6, 7, 3, 3, generator=gen)
    g = torch.randn(3, 6, 10, 10, generator=gen)
    results = {}
    for threads in (1, 2, 2, 3):
        xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        with torch_threads(threads):
            y = adder_conv2d(xr, wr, 1, 1)
            y.backward(g)
        out = (y.detach(), xr.grad, wr.grad)
        if threads in results:  # same thread count: bit-identical
            assert all(torch.equal(a, b) for a, b in zip(out, results[threads]))
        results[threads] = out
    assert all(torch.equal(a, b) for a, b in zip(results[1], results[3]))
    # threads split positions (forward) or input channels (backward): every sum runs in the
    # same order whatever the thread count
    assert all(torch.equal(a, b) for a, b in zip(results[1], results[2]))


def test_hook_routes_cpu_float32_to_the_compiled_op():
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = OF.adder_conv2d(x, w, 1, 1, 0.2)
    assert type(y.grad_fn).__name__ == "_AdderConv2dOpBackward"
    y64 = OF.adder_conv2d(x.double(), w.double(), 1, 1, 0.2)
    assert type(y64.grad_fn).__name__ != "_AdderConv2dOpBackward"  # torch fallback
    torch.testing.assert_close(y.double(), y64, rtol=1e-6, atol=1e-4)
    layer = AdderConv2d(3, 4, 3, padding=1)
    assert type(layer(x).grad_fn).__name__ == "_AdderConv2dOpBackward"


@pytest.mark.parametrize(
    "x, w, kwargs, exc, match",
    [
        (torch.randn(1, 3, 5, 5, dtype=torch.float64), torch.randn(2, 3, 3, 3), {}, TypeError,
         "float32 CPU"),
        (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3).half(), {}, TypeError, "float32 CPU"),
        (torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3), {}, ValueError, r"\[N, C, H, W\]"),
        (torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3), {}, ValueError, "4 channels"),
        (torch.randn(1, 3, 2, 2), torch.randn(2, 3, 3, 3), {}, ValueError, "more padding"),
        (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3), {"stride": 0}, ValueError, "stride"),
        (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3), {"padding": -1}, ValueError, "padding"),
        (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3), {"stride": 1.5}, TypeError, "stride"),
        (torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3), {"eta": -1.0}, ValueError, "eta"),
        (torch.randn(0, 3, 5, 5), torch.randn(2, 3, 3, 3), {}, ValueError, "empty"),
    ],
)
def test_bad_arguments_raise_clear_errors(x, w, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        adder_conv2d(x, w, **kwargs)


# ---------------------------------------------------------------- int8 layer vs float layer


def float_layer_nhwc(layer, x):
    with torch.no_grad():
        return layer(x).permute(0, 2, 3, 1).numpy().astype(np.float64)


@pytest.mark.parametrize("shape", [(2, 16, 8, 8, 12, 3, 1, 1), (1, 7, 9, 9, 5, 3, 2, 1),
                                   (3, 32, 6, 6, 8, 1, 1, 0)])
def test_int8_layer_within_quantization_bound(shape):
    n, c, h, w, cout, k, s, p = shape
    torch.manual_seed(3)
    layer = AdderConv2d(c, cout, k, stride=s, padding=p, eta=None)
    calib = [torch.randn(n, c, h, w) for _ in range(3)]
    scale = calibrate_adder_scale(layer.weight, calib, method="max")
    q = quantize_adder_layer(layer, scale)
    x = calib[1]  # within the calibrated range
    y_q = q(q.quantize_input(x)).astype(np.float64)
    y_f = float_layer_nhwc(layer, x)
    err = np.abs(y_q - y_f)
    bound = adder_int8_error_bound(c * k * k, scale)
    assert err.max() <= bound * (1 + 1e-6) + 1e-3
    # the bound is a worst case; the typical error is far smaller, and far above float rounding
    assert 1e-6 * bound < err.mean() < 0.25 * bound


def test_int8_layer_with_folded_batchnorm_and_bias():
    torch.manual_seed(4)
    layer = AdderConv2d(8, 6, 3, padding=1, bias=True, eta=None)
    with torch.no_grad():
        layer.bias.normal_()
    bn = torch.nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.normal_()  # some negative gammas
        bn.bias.normal_()
        bn.running_mean.normal_(-40.0, 5.0)
        bn.running_var.uniform_(10.0, 50.0)
    x = torch.randn(2, 8, 7, 7)
    scale = calibrate_adder_scale(layer.weight, x)
    q = quantize_adder_layer(layer, scale, batchnorm=bn)
    y_q = q(q.quantize_input(x)).astype(np.float64)
    with torch.no_grad():
        y_f = bn(layer(x)).permute(0, 2, 3, 1).numpy().astype(np.float64)
    bound = q.error_bound()  # per channel: fan_in * |gamma / sigma| * scale
    assert np.all(np.abs(y_q - y_f) <= bound * (1 + 1e-5) + 1e-4)


def test_padding_contributes_like_zero_input():
    """Padded taps read pad_value_q = 0, i.e. |0 - F| as in the float layer's zero padding."""
    layer = AdderConv2d(2, 3, 3, padding=1, eta=None)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-5, 6, layer.weight.shape).float() * 0.5)
    x = torch.randint(-4, 5, (1, 2, 4, 4)).float() * 0.5
    q = quantize_adder_layer(layer, 0.5)  # every value is a multiple of the scale: exact
    np.testing.assert_array_equal(q(q.quantize_input(x)), float_layer_nhwc(layer, x))


def test_clip_filters_is_exact_for_inputs_in_range():
    """Filters beyond A = 127 s are clipped with the bias correction -sum (|F| - A)_+: on
    inputs and filters that are multiples of s (|x| <= A) the int8 layer is still exact."""
    layer = AdderConv2d(2, 3, 3, padding=1, eta=None)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-5, 6, layer.weight.shape).float() * 0.5)
        layer.weight[0, 0, 0, 0] = 90.0  # far beyond A = 127 * 0.5 = 63.5
        layer.weight[2, 1, 2, 1] = -200.5
    x = torch.randint(-127, 128, (2, 2, 5, 5)).float() * 0.5
    with pytest.raises(ValueError, match="too small for the filters"):
        quantize_adder_layer(layer, 0.5)
    q = quantize_adder_layer(layer, 0.5, clip_filters=True)
    assert int(np.abs(q.weight_q.astype(np.int32)).max()) == 127
    assert q.bias[0] == pytest.approx(-(90.0 - 63.5)) and q.bias[1] == 0.0
    np.testing.assert_array_equal(q(q.quantize_input(x)), float_layer_nhwc(layer, x))
    assert calibrate_adder_scale(None, x) == pytest.approx(63.5 / 127)


def test_calibration_methods():
    w = torch.tensor([0.5, -1.0])
    acts = [torch.tensor([[0.1, -3.0]]), np.array([2.0, 100.0], dtype=np.float32)]
    assert calibrate_adder_scale(w, acts) == pytest.approx(100.0 / 127)
    pct = calibrate_adder_scale(w, acts, method="percentile", percentile=50.0)
    assert pct == pytest.approx(max(1.0, float(np.percentile([0.1, 3.0, 2.0, 100.0], 50))) / 127)
    assert calibrate_adder_scale(torch.tensor([9.0]), torch.zeros(3)) == pytest.approx(9.0 / 127)
    with pytest.raises(ValueError, match="known: max, percentile"):
        calibrate_adder_scale(w, acts, method="mse")
    with pytest.raises(ValueError, match="at least one"):
        calibrate_adder_scale(w, [])
    with pytest.raises(ValueError, match="percentile"):
        calibrate_adder_scale(w, acts, method="percentile", percentile=0)


def test_quantize_errors():
    layer = AdderConv2d(2, 3, 3, eta=None)
    with pytest.raises(ValueError, match="too small for the filters"):
        quantize_adder_layer(layer, 1e-4)
    with pytest.raises(ValueError, match="scale must be"):
        quantize_adder_layer(layer, -1.0)
    with pytest.raises(ValueError, match="BatchNorm2d\\(3\\)"):
        quantize_adder_layer(layer, 1.0, batchnorm=torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        quantize_adder_input(torch.zeros(2, 3), 1.0)


def test_adder_conv2d_defaults_and_non_square_inputs():
    """Defaults are stride 1, no padding and the paper's eta = 0.2 (the filter gradient scaled
    to eta * sqrt(numel) in L2 norm); H != W keeps each axis's own size; empty tensors are
    refused on the C++ path."""
    from onebit.nn.functional import adder_conv2d, adder_conv2d_reference

    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 5)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = adder_conv2d(x, w)
    assert y.shape == (2, 4, 5, 3)
    torch.testing.assert_close(adder_conv2d_reference(x.double(), w.detach().double()).float(),
                               y.detach(), rtol=1e-5, atol=1e-4)
    y.sum().backward()
    torch.testing.assert_close(w.grad.norm(), torch.tensor(0.2 * w.numel() ** 0.5))
    assert adder_conv2d(x, w.detach(), stride=2, padding=1).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="empty tensor"):
        adder_conv2d(torch.randn(0, 3, 7, 5), w.detach())
