"""onebit.kernels.conv2d_int8: the AVX2 kernel against the reference and exact integer
arithmetic (extremes of the int16 bound included), the float result against
torch.nn.functional.conv2d within the bound derived from the quantization steps, the quantizer,
the calibration, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit import _kernels
from onebit import kernels as K

RNG = np.random.default_rng(2026)
ISAS = ["reference"] + [i for i in ("avx2", "avx512") if K.isa_available(i)]
U = 2.0 ** -24  # float32 unit roundoff


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def nchw64(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float64))


def torch_conv64(x_nhwc, w, stride, padding, dilation) -> np.ndarray:
    y = F.conv2d(nchw64(x_nhwc), torch.from_numpy(w.astype(np.float64)), stride=stride,
                 padding=padding, dilation=dilation)
    return y.numpy().transpose(0, 2, 3, 1)


def exact_acc(q, wq, zp, stride, padding, dilation) -> np.ndarray:
    """sum over taps of (q_pad - zp) * wq, with q_pad = zp outside: exact int64 (via float64 of
    small integers: every partial sum is an integer below 2^53)."""
    return torch_conv64(q.astype(np.int64) - zp, wq.astype(np.int64), stride, padding, dilation)


def raw_prepared(wq, zp, act_max, scale=1.0):
    """The C++ filters with out_scale 1 and no bias: y = acc - zp * sum_w exactly (< 2^24)."""
    return _kernels.PreparedInt8Conv(np.ascontiguousarray(wq), np.ones(wq.shape[0], np.float32),
                                     None, scale, zp, act_max)


def run_raw(xq, prepared, stride, padding, dilation, relu=False, threads=2):
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, h, w, _ = xq.shape
    cout, _, kh, kw = prepared.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.full((n, oh, ow, cout), np.nan, np.float32)
    _kernels.int8_conv2d_u8(xq, prepared, y, sh, sw, ph, pw, dh, dw, relu, threads)
    return y


# n, h, w, c_in, c_out, k, stride, padding, dilation
SHAPES = [
    (1, 23, 19, 3, 64, 7, 2, 3, 1),  # the stem, at an odd size
    (2, 9, 12, 3, 37, 3, 1, 1, 1),
    (3, 8, 7, 1, 5, 5, 1, 2, 1),
    (1, 10, 11, 4, 70, (3, 5), (2, 1), (1, 2), 1),
    (2, 12, 13, 2, 13, 3, 2, 0, 2),
    (1, 11, 9, 3, 24, 3, (1, 3), 2, (2, 3)),
    (2, 7, 6, 3, 9, 2, 3, 1, 1),
    (1, 5, 5, 1, 8, 7, 1, 6, 1),  # windows made entirely of padding
    (1, 6, 9, 64, 33, 1, 2, 0, 1),  # a 1x1 stride-2 conv over many channels
    (2, 4, 5, 13, 17, 3, 1, 1, 1),
    (1, 1, 1, 4, 16, 1, 1, 0, 1),
]


@pytest.mark.parametrize("bits", [8, 7])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_isa_equals_exact_integer_result(shape, bits):
    n, h, w_, c, co, k, stride, padding, dilation = shape
    kh, kw = _pair(k)
    qmax = 2 ** bits - 1
    zp = int(RNG.integers(0, qmax + 1))
    xq = RNG.integers(0, qmax + 1, (n, h, w_, c), dtype=np.uint8)
    wq = RNG.integers(-63, 64, (co, c, kh, kw)).astype(np.int8)
    prepared = raw_prepared(wq, zp, qmax)
    assert prepared.pairs == (2 if bits == 7 else 1)
    expect = exact_acc(xq, wq, zp, stride, padding, dilation)
    outs = []
    for isa in ISAS:
        with K.use_isa(isa):
            for threads in (1, 3):
                y = run_raw(xq, prepared, stride, padding, dilation, threads=threads)
                np.testing.assert_array_equal(y, expect.astype(np.float32), err_msg=isa)
                outs.append(y)
    for y in outs[1:]:
        assert np.array_equal(y.view(np.uint32), outs[0].view(np.uint32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_every_isa_equals_exact_integer_result(data):
    """Random geometries (C_in 1..4 mostly, any kernel, stride, dilation, padding up to whole
    windows of padding, C_out around the 8 / 16-channel blocks and the VNNI tile's 4 blocks), 7- or
    8-bit activations."""
    draw = data.draw
    c = draw(st.one_of(st.integers(1, 4), st.integers(5, 24)))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, dh * (kh - 1) + 1)), draw(st.integers(0, dw * (kw - 1) + 1))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 14))
    w_ = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 14))
    co = draw(st.one_of(st.integers(1, 40), st.integers(41, 72)))  # up to 4 zmm blocks + 1
    bits = draw(st.sampled_from([7, 8]))
    qmax = 2 ** bits - 1
    zp = draw(st.integers(0, qmax))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    xq = rng.integers(0, qmax + 1, (draw(st.integers(1, 2)), h, w_, c), dtype=np.uint8)
    wq = rng.integers(-64, 64, (co, c, kh, kw)).astype(np.int8)
    prepared = raw_prepared(wq, zp, qmax)
    expect = exact_acc(xq, wq, zp, (sh, sw), (ph, pw), (dh, dw)).astype(np.float32)
    for isa in ISAS:
        with K.use_isa(isa):
            y = run_raw(xq, prepared, (sh, sw), (ph, pw), (dh, dw))
        np.testing.assert_array_equal(y, expect, err_msg=isa)


@pytest.mark.parametrize("bits", [8, 7])
@pytest.mark.parametrize("shape", SHAPES[:7])
def test_float_path_bit_identical_across_isas_with_relu(shape, bits):
    n, h, w_, c, co, k, stride, padding, dilation = shape
    kh, kw = _pair(k)
    x = (RNG.standard_normal((n, h, w_, c)) * 2 + 0.5).astype(np.float32)
    w = RNG.standard_normal((co, c, kh, kw)).astype(np.float32)
    act = K.calibrate_activations(x, bits=bits)
    p = K.prepare_conv2d_int8(w, act, bias=RNG.standard_normal(co).astype(np.float32),
                              multiplier=RNG.uniform(-2, 2, co))
    outs = {}
    for isa in ISAS:
        with K.use_isa(isa):
            for relu in (False, True):
                outs[isa, relu] = K.conv2d_int8(x, p, stride=stride, padding=padding,
                                                dilation=dilation, relu=relu, num_threads=2)
    for isa in ISAS:
        assert np.array_equal(outs[isa, False].view(np.uint32),
                              outs["reference", False].view(np.uint32))
        assert np.array_equal(outs[isa, True].view(np.uint32),
                              outs["reference", True].view(np.uint32))
        relu_ref = np.where(outs[isa, False] > 0, outs[isa, False], np.float32(0))
        assert np.array_equal(outs[isa, True].view(np.uint32), relu_ref.view(np.uint32))
    # the float32 input quantized inside equals quantizing first, then the uint8 path
    with K.use_isa(ISAS[-1]):
        y_u8 = K.conv2d_int8(K.quantize_activations(x, act), p, stride=stride, padding=padding,
                             dilation=dilation)
    assert np.array_equal(y_u8.view(np.uint32), outs["reference", False].view(np.uint32))


@pytest.mark.parametrize("bits", [8, 7])
@pytest.mark.parametrize("shape", SHAPES)
def test_float_result_within_the_quantization_bound(shape, bits):
    """|y - y_float| <= |m| (s_x / 2 sum|w| + s_w / 2 sum|x_hat|) + rounding, for x inside the
    quantization range (x_hat, w_hat the dequantized values); and y equals m conv(x_hat, w_hat) +
    bias up to the rounding term (out_scale's float32 rounding, the fma, the int -> float)."""
    n, h, w_, c, co, k, stride, padding, dilation = shape
    kh, kw = _pair(k)
    x = RNG.uniform(-1.0, 3.0, (n, h, w_, c)).astype(np.float32)
    w = (RNG.standard_normal((co, c, kh, kw)) * 0.3).astype(np.float32)
    mult = RNG.uniform(0.5, 2.0, co) * RNG.choice([-1.0, 1.0], co)
    bias = RNG.standard_normal(co).astype(np.float32)
    act = K.calibrate_activations([x[:1], x[1:]] if n > 1 else x, bits=bits)
    lo, hi = act.range
    x = np.clip(x, np.float32(lo), np.float32(hi)).astype(np.float32)  # inside the range
    p = K.prepare_conv2d_int8(w, act, bias=bias, multiplier=mult)
    y = K.conv2d_int8(x, p, stride=stride, padding=padding, dilation=dilation)
    y_float = torch_conv64(x, w, stride, padding, dilation) * mult + bias
    x_hat = act.scale * (K.quantize_activations(x, act).astype(np.float64) - act.zero_point)
    w_hat = p.weight_q.astype(np.float64) * p.weight_scale[:, None, None, None]
    assert np.all(np.abs(x - x_hat) <= act.scale / 2 * (1 + 1e-4))
    assert np.all(np.abs(w - w_hat) <= p.weight_scale[:, None, None, None] / 2 * (1 + 1e-9))
    sum_abs_w = np.abs(w.astype(np.float64)).reshape(co, -1).sum(axis=1)
    sum_abs_xhat = torch_conv64(np.abs(x_hat), np.ones((1, c, kh, kw)), stride, padding, dilation)
    bound = np.abs(mult) * (act.scale / 2 * (1 + 1e-4) * sum_abs_w
                            + p.weight_scale / 2 * sum_abs_xhat)
    mag = np.abs(mult) * torch_conv64(np.abs(x_hat), np.abs(w_hat), stride, padding, dilation)
    rounding = 4 * U * (mag + np.abs(bias)) + 1e-30
    # tight: the kernel computes m * conv(x_hat, w_hat) + bias up to float32 rounding
    y_hat = torch_conv64(x_hat, w_hat, stride, padding, dilation) * mult + bias
    assert np.all(np.abs(y - y_hat) <= rounding), float(np.max(np.abs(y - y_hat) - rounding))
    # worst case over signs: the quantization error of the float conv
    err = np.abs(y - y_float)
    assert np.all(err <= bound + rounding), float(np.max(err - bound - rounding))
    # the bound is not vacuous: the quantization error is a sizeable part of it somewhere
    assert err.max() > 0.02 * bound.max()


@pytest.mark.parametrize("isa", ISAS)
def test_int16_extremes_are_exact(isa):
    """Activations at their maximum against weights at +-64 and 63: the largest int16 sums the
    bound allows (8-bit: 2 * 255 * 64 = 32640 per vpmaddubsw; 7-bit: 4 * 127 * 64 = 32512 per
    vpaddw), signs alternating within and between pairs."""
    shape = (2, 9, 10, 3)
    for bits, zp in ((8, 0), (8, 255), (7, 0), (7, 127)):
        qmax = 2 ** bits - 1
        for pattern in ("neg", "pos", "alternate", "random_sign"):
            kshape = (19, 3, 7, 7)
            if pattern == "neg":
                wq = np.full(kshape, -64, np.int8)
            elif pattern == "pos":
                wq = np.full(kshape, 63, np.int8)
            elif pattern == "alternate":
                wq = np.where(np.arange(np.prod(kshape)).reshape(kshape) % 4 < 2, -64, 63)
            else:
                wq = RNG.choice([-64, 63], kshape)
            wq = wq.astype(np.int8)
            xq = np.full(shape, qmax, np.uint8)
            xq[1, ::2] = RNG.choice([0, qmax], xq[1, ::2].shape)
            prepared = raw_prepared(wq, zp, qmax)
            assert prepared.pairs == (2 if bits == 7 else 1)
            with K.use_isa(isa):
                y = run_raw(xq, prepared, 2, 3, 1)
            expect = exact_acc(xq, wq, zp, 2, 3, 1)
            np.testing.assert_array_equal(y, expect.astype(np.float32),
                                          err_msg=f"bits={bits} zp={zp} {pattern}")


def test_weights_of_8_bits_need_7_bit_activations():
    wq = np.full((4, 2, 3, 3), -128, np.int8)
    with pytest.raises(ValueError, match="32767"):
        raw_prepared(wq, 0, 255)  # 2 * 255 * 128 > 32767
    p = raw_prepared(wq, 0, 127)  # 2 * 127 * 128 = 32512: one pair per widening
    assert p.pairs == 1
    xq = np.full((1, 5, 5, 2), 127, np.uint8)
    for isa in ISAS:
        with K.use_isa(isa):
            np.testing.assert_array_equal(run_raw(xq, p, 1, 1, 1),
                                          exact_acc(xq, wq, 0, 1, 1, 1).astype(np.float32))
    w = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="weight_bits <= 7"):
        K.prepare_conv2d_int8(w, K.ActivationQuant(0.1, 3, 8), weight_bits=8)
    assert K.prepare_conv2d_int8(w, K.ActivationQuant(0.1, 3, 7), weight_bits=8).pairs == 1


def _quantize_numpy(x: np.ndarray, act: K.ActivationQuant) -> np.ndarray:
    inv = np.float32(1.0) / np.float32(act.scale)
    t = x.astype(np.float32) * inv
    lo, hi = np.float32(-act.zero_point), np.float32(act.qmax - act.zero_point)
    t = np.where(t > lo, t, lo)  # NaN -> lo
    t = np.where(t < hi, t, hi)
    return (np.rint(t).astype(np.int32) + act.zero_point).astype(np.uint8)


@pytest.mark.parametrize("isa", ISAS)
def test_quantizer_matches_its_formula(isa):
    act = K.ActivationQuant(0.25, 37, 8)
    ties = (np.arange(-200, 300) * 0.125).astype(np.float32)  # many exact .5 ties
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 1e30, -1e30], np.float32)
    x = np.concatenate([ties, specials, RNG.standard_normal(1000).astype(np.float32) * 40])
    with K.use_isa(isa):
        q = K.quantize_activations(x, act)
    np.testing.assert_array_equal(q, _quantize_numpy(x, act))
    assert q[len(ties)] == 0 and q[len(ties) + 1] == 255 and q[len(ties) + 2] == 0
    assert q[len(ties) + 3] == 37  # -0.0 is the zero point
    # ties round half to even: 0.125 * 4 = 0.5 -> 0, 1.5 -> 2
    assert K.quantize_activations(np.array([0.125, 0.375], np.float32), act).tolist() == [37, 39]


def test_calibration_by_min_max():
    a = np.array([[-1.0, 0.5], [2.0, 3.0]], np.float32)
    b = np.array([-2.0, 1.0], np.float32)
    act = K.calibrate_activations([a, b], bits=8)
    assert act.scale == pytest.approx(5.0 / 255, rel=1e-6)
    assert act.zero_point == round(2.0 / (5.0 / 255))
    lo, hi = act.range
    assert lo <= -2.0 + act.scale / 2 and hi >= 3.0 - act.scale / 2
    pos = K.calibrate_activations(np.array([0.5, 4.0], np.float32), bits=7)
    assert pos.zero_point == 0 and pos.qmax == 127 and pos.scale == pytest.approx(4.0 / 127)
    neg = K.calibrate_activations(np.array([-3.0, -1.0]), bits=8)
    assert neg.zero_point == 255 and neg.range[1] == 0.0
    assert K.calibrate_activations(np.zeros(4)) == K.ActivationQuant(1.0, 0, 8)
    with pytest.raises(ValueError, match="NaN"):
        K.calibrate_activations(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="at least one"):
        K.calibrate_activations([])
    with pytest.raises(ValueError, match="bits"):
        K.calibrate_activations(a, bits=9)


def test_weight_quantization_per_channel():
    w = np.zeros((3, 1, 2, 2), np.float32)
    w[0] = [[[1.0, -0.5], [0.25, 0.0]]]
    w[1] = -7.0
    wq, s = K.quantize_conv_weight(w, bits=7)
    assert wq.dtype == np.int8 and s.tolist() == [1 / 63, 7 / 63, 1.0]
    assert wq[0].ravel().tolist() == [63, -32, 16, 0]
    assert np.all(wq[1] == -63) and np.all(wq[2] == 0)


def test_threads_agree_on_the_stem():
    x = RNG.standard_normal((1, 64, 64, 3)).astype(np.float32)
    w = RNG.standard_normal((64, 3, 7, 7)).astype(np.float32)
    p = K.prepare_conv2d_int8(w, K.calibrate_activations(x))
    y1 = K.conv2d_int8(x, p, stride=2, padding=3, num_threads=1)
    y2 = K.conv2d_int8(x, p, stride=2, padding=3, num_threads=2)
    assert y1.shape == (1, 32, 32, 64) and np.array_equal(y1.view(np.uint32), y2.view(np.uint32))


def test_errors_name_the_fix():
    w = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
    act = K.ActivationQuant(0.05, 10, 8)
    p = K.prepare_conv2d_int8(w, act)
    x = RNG.standard_normal((1, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="channels"):
        K.conv2d_int8(RNG.standard_normal((1, 8, 8, 4)).astype(np.float32), p)
    with pytest.raises(TypeError, match="float32"):
        K.conv2d_int8(x.astype(np.float64), p)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.conv2d_int8(np.asfortranarray(x), p)
    with pytest.raises(ValueError, match="too small"):
        K.conv2d_int8(np.ascontiguousarray(x[:, :2, :2]), p)
    with pytest.raises(ValueError, match=r"padding must be <= 2\^31 - 1"):
        K.conv2d_int8(x, p, padding=2 ** 40)
    with pytest.raises(ValueError, match="too large"):  # within the limit, but TiBs of output
        K.conv2d_int8(x, p, padding=2 ** 20)
    with pytest.raises(TypeError, match="PreparedInt8ConvWeight"):
        K.conv2d_int8(x, w)
    with pytest.raises(TypeError, match="relu"):
        K.conv2d_int8(x, p, relu=1)
    with pytest.raises(TypeError, match="ActivationQuant"):
        K.prepare_conv2d_int8(w, (0.05, 10))
    with pytest.raises(ValueError, match="multiplier"):
        K.prepare_conv2d_int8(w, act, multiplier=np.ones(7))
    with pytest.raises(ValueError, match="bias"):
        K.prepare_conv2d_int8(w, act, bias=np.ones((8, 1), np.float32))
    with pytest.raises(ValueError, match="zero_point"):
        K.ActivationQuant(0.1, 128, 7)
    with pytest.raises(ValueError, match="scale"):
        K.ActivationQuant(0.0, 0, 8)
    p7 = K.prepare_conv2d_int8(w, K.ActivationQuant(0.05, 10, 7))
    with pytest.raises(ValueError, match="quantize_activations"):
        K.conv2d_int8(np.full((1, 8, 8, 3), 200, np.uint8), p7)
    # the C++ side checks too
    with pytest.raises(ValueError, match="reaches 200"):
        y = np.empty((1, 6, 6, 8), np.float32)
        _kernels.int8_conv2d_u8(np.full((1, 8, 8, 3), 200, np.uint8), p7._impl, y,
                                1, 1, 0, 0, 1, 1, False, 1)
    with pytest.raises(ValueError, match="too large"):  # checked before y's shape: no overflow
        _kernels.int8_conv2d(x, p._impl, np.empty((1, 6, 6, 8), np.float32),
                             1, 1, 2 ** 40, 2 ** 62, 1, 1, False, 1)
    with pytest.raises(ValueError, match="wrong shape"):
        _kernels.int8_conv2d(x, p._impl, np.empty((1, 6, 6, 9), np.float32),
                             1, 1, 0, 0, 1, 1, False, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_nchw_input_and_fused_maxpool_are_bit_identical(data):
    """layout="nchw" equals the NHWC call on the transposed input, and a fused max pool equals
    maxpool2d_f32 of the stored conv output, bit for bit, for every ISA and thread count: random
    conv and pool windows (padding up to half the pool window, dilation, ceil_mode), batch 1-2,
    the float path (with and without ReLU) and the uint8 path."""
    draw = data.draw
    c = draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh)), draw(st.integers(0, kw))
    h = draw(st.integers(max(1, kh - 2 * ph), 20))
    w_ = draw(st.integers(max(1, kw - 2 * pw), 20))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
    pkh, pkw = draw(st.integers(1, min(4, oh))), draw(st.integers(1, min(4, ow)))
    pdh, pdw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if pdh * (pkh - 1) + 1 > oh:
        pdh = 1
    if pdw * (pkw - 1) + 1 > ow:
        pdw = 1
    pph = draw(st.integers(0, (pdh * (pkh - 1) + 1) // 2))
    ppw = draw(st.integers(0, (pdw * (pkw - 1) + 1) // 2))
    pool = K.MaxPoolWindow((pkh, pkw), (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                           (pph, ppw), (pdh, pdw), draw(st.booleans()))
    co = draw(st.one_of(st.integers(1, 20), st.integers(60, 72)))
    relu = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 2)), c, h, w_)).astype(np.float32)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    p = K.prepare_conv2d_int8(rng.standard_normal((co, c, kh, kw)).astype(np.float32),
                              K.calibrate_activations(x),
                              bias=rng.standard_normal(co).astype(np.float32))
    geo = dict(stride=(sh, sw), padding=(ph, pw))
    with K.use_isa("reference"):
        y = K.conv2d_int8(x_nhwc, p, relu=relu, **geo)
        expect = K.maxpool2d_f32(y, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                 pool.ceil_mode)
    q = K.quantize_activations(x, p.act)
    for isa in ISAS:
        with K.use_isa(isa):
            for threads in (1, 2):
                got = K.conv2d_int8(x, p, relu=relu, layout="nchw", num_threads=threads, **geo)
                assert np.array_equal(got.view(np.uint32), y.view(np.uint32)), (isa, threads)
                for xin, layout in ((x, "nchw"), (x_nhwc, "nhwc"), (q, "nchw")):
                    got = K.conv2d_int8(xin, p, relu=relu, layout=layout, maxpool=pool,
                                        num_threads=threads, **geo)
                    assert np.array_equal(got.view(np.uint32), expect.view(np.uint32)), \
                        (isa, threads, layout, xin.dtype)


def test_fused_stem_and_pool_over_threads():
    """The ResNet stem (7x7/2 conv, 3x3/2 max pool) at 64x64: every thread count gives the
    separate conv + pool's bits (threads start inside runs of pool rows, sharing conv rows)."""
    x = RNG.standard_normal((2, 3, 64, 64)).astype(np.float32)
    p = K.prepare_conv2d_int8(RNG.standard_normal((64, 3, 7, 7)).astype(np.float32),
                              K.calibrate_activations(x))
    y = K.conv2d_int8(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), p, stride=2, padding=3)
    expect = K.maxpool2d_f32(y, 3, 2, 1)
    pool = K.MaxPoolWindow(3, 2, 1)
    for threads in (1, 2, 3, 5):
        got = K.conv2d_int8(x, p, stride=2, padding=3, layout="nchw", maxpool=pool,
                            num_threads=threads)
        assert got.shape == (2, 16, 16, 64)
        assert np.array_equal(got.view(np.uint32), expect.view(np.uint32)), threads


def test_layout_and_maxpool_errors_name_the_fix():
    w = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
    p = K.prepare_conv2d_int8(w, K.ActivationQuant(0.05, 10, 8))
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="'nhwc' or 'nchw'"):
        K.conv2d_int8(x, p, layout="NCHW")
    with pytest.raises(ValueError, match=r"x \(NHWC\) has 8 channels"):
        K.conv2d_int8(x, p)
    with pytest.raises(ValueError, match="C-contiguous NCHW"):
        K.conv2d_int8(np.asfortranarray(x), p, layout="nchw")
    with pytest.raises(TypeError, match="MaxPoolWindow"):
        K.conv2d_int8(x, p, layout="nchw", maxpool=(3, 2, 1))
    with pytest.raises(ValueError, match="half the effective kernel"):
        K.conv2d_int8(x, p, layout="nchw", maxpool=K.MaxPoolWindow(3, 1, 2))
    with pytest.raises(ValueError, match="too small"):
        K.conv2d_int8(x, p, layout="nchw", maxpool=K.MaxPoolWindow(7))
    # the C++ side checks the pool too
    with pytest.raises(ValueError, match="wrong shape"):
        _kernels.int8_conv2d(x, p._impl, np.empty((1, 6, 6, 8), np.float32), 1, 1, 0, 0, 1, 1,
                             False, 1, nchw=True, maxpool=(2, 2, 2, 2, 0, 0, 1, 1, False))
    with pytest.raises(ValueError, match="padding"):
        _kernels.int8_conv2d(x, p._impl, np.empty((1, 6, 6, 8), np.float32), 1, 1, 0, 0, 1, 1,
                             False, 1, nchw=True, maxpool=(2, 2, 2, 2, 5, 0, 1, 1, False))


def test_nchw_rows_wider_than_one_chunk():
    """NCHW rows are quantized and interleaved in chunks of 512 values: a 1100-wide input (three
    chunks per channel row) equals the NHWC call, float and uint8 input alike."""
    x = RNG.standard_normal((1, 3, 4, 1100)).astype(np.float32)
    p = K.prepare_conv2d_int8(RNG.standard_normal((8, 3, 3, 3)).astype(np.float32),
                              K.calibrate_activations(x))
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    want = K.conv2d_int8(x_nhwc, p, padding=1)
    for isa in ISAS:
        with K.use_isa(isa):
            got = K.conv2d_int8(x, p, padding=1, layout="nchw")
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), isa
            q = K.quantize_activations(x, p.act)
            got = K.conv2d_int8(q, p, padding=1, layout="nchw")
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), isa
