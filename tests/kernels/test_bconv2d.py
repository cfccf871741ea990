"""bconv2d: the reference equals F.conv2d on the +/-1 tensors exactly; every optimized ISA equals
the reference bit for bit (int32, float with K map, packed bits), for random shapes, strides,
paddings (zero, +1, -1), batches and thread counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onebit.kernels as K
from _binary_helpers import all_isas, np_pack, optimized_isas, random_pm1

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_cases(draw, max_channels: int = 600):
    kh = draw(st.integers(1, 3))
    kw = draw(st.sampled_from([kh, 1, 2, 3, 4]))
    case = {
        "n": draw(st.integers(1, 4)),
        "cin": draw(st.one_of(st.integers(1, 80), st.integers(1, max_channels))),
        "cout": draw(st.integers(1, 70)),
        "kh": kh,
        "kw": kw,
        "stride": draw(st.sampled_from([1, 2, (1, 2), (2, 1)])),
        "pad_value": draw(st.sampled_from([0.0, 1.0, -1.0])),
        "seed": draw(st.integers(0, 2**31)),
    }
    case["h"] = draw(st.integers(kh, kh + 6))
    case["w"] = draw(st.integers(kw, kw + 6))
    case["padding"] = draw(st.one_of(
        st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
        st.tuples(*[st.integers(0, 3)] * 4), st.sampled_from(["same", "valid"])))
    return case


def _torch_conv(x: np.ndarray, w: np.ndarray, stride, pads, pad_value: float) -> np.ndarray:
    top, bottom, left, right = pads
    xt = F.pad(torch.from_numpy(x), (left, right, top, bottom), value=pad_value)
    out = F.conv2d(xt, torch.from_numpy(w), stride=stride)
    return out.numpy().transpose(0, 2, 3, 1)


def _data(case):
    rng = np.random.default_rng(case["seed"])
    x = random_pm1(rng, (case["n"], case["cin"], case["h"], case["w"]))
    w = random_pm1(rng, (case["cout"], case["cin"], case["kh"], case["kw"]))
    return rng, x, w


@SETTINGS
@given(case=conv_cases())
def test_reference_equals_torch_conv2d(case) -> None:
    _, x, w = _data(case)
    stride = case["stride"]
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    pads = K.conv_padding(case["padding"], (case["h"], case["w"]), (case["kh"], case["kw"]), (sh, sw))
    with K.use_isa("reference"):
        out = K.bconv2d(K.pack_nchw(x), K.pack_conv_weight(w), in_channels=case["cin"], stride=stride,
                        padding=case["padding"], pad_value=case["pad_value"])
    expect = _torch_conv(x, w, (sh, sw), pads, case["pad_value"])
    assert out.shape == expect.shape
    np.testing.assert_array_equal(out, expect.astype(np.int32))


@pytest.mark.skipif(not optimized_isas(), reason="no optimized kernel family on this CPU")
@SETTINGS
@given(case=conv_cases(), threads=st.integers(1, 3))
def test_optimized_equal_reference_bit_for_bit(case, threads: int) -> None:
    rng, x, w = _data(case)
    xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
    common = {"in_channels": case["cin"], "stride": case["stride"], "padding": case["padding"],
              "pad_value": case["pad_value"]}
    out_shape = K.bconv2d_output_shape(xp.shape, wp.shape, stride=case["stride"],
                                       padding=case["padding"])
    cout = case["cout"]
    k_map = rng.uniform(0.1, 2.0, out_shape[:3]).astype(np.float32)
    mult = rng.uniform(-2, 2, cout).astype(np.float32)
    bias = rng.uniform(-3, 3, cout).astype(np.float32)
    n_taps = case["kh"] * case["kw"] * case["cin"]
    thr = rng.integers(-n_taps, n_taps + 1, cout).astype(np.float32)
    flip = rng.random(cout) < 0.5
    variants = [
        {"output": "int32"},
        {"output": "float", "multiplier": mult, "bias": bias, "k_map": k_map},
        {"output": "bits", "thresholds": thr, "flip": flip},
        {"output": "bits", "thresholds": thr * 0.5, "multiplier": mult, "k_map": k_map},
    ]
    with K.use_isa("reference"):
        refs = [K.bconv2d(xp, wp, **common, **v) for v in variants]
    for isa in optimized_isas():
        with K.use_isa(isa):
            prepared = K.prepare_conv_weight(wp, in_channels=case["cin"])
            assert prepared.isa == isa
            for v, ref in zip(variants, refs):
                got = K.bconv2d(xp, wp, **common, **v, num_threads=threads)
                assert got.dtype == ref.dtype and got.shape == ref.shape
                np.testing.assert_array_equal(got, ref, err_msg=f"{isa} {v['output']}")
                got = K.bconv2d(xp, prepared, **common, **v, num_threads=threads)
                np.testing.assert_array_equal(got, ref, err_msg=f"{isa} {v['output']} prepared")
        with K.use_isa("reference"):  # prepared for another ISA: the plain copy gives the same
            np.testing.assert_array_equal(K.bconv2d(xp, prepared, **common), refs[0])


@pytest.mark.parametrize("isa", all_isas())
def test_float_output_formula(isa: str) -> None:
    rng = np.random.default_rng(5)
    x, w = random_pm1(rng, (2, 45, 6, 5)), random_pm1(rng, (7, 45, 3, 3))
    xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
    k_map = rng.uniform(0.1, 2.0, (2, 6, 5)).astype(np.float32)
    mult = rng.uniform(-2, 2, 7).astype(np.float32)
    bias = rng.uniform(-3, 3, 7).astype(np.float32)
    with K.use_isa(isa):
        acc = K.bconv2d(xp, wp, in_channels=45, padding=1)
        f = K.bconv2d(xp, wp, in_channels=45, padding=1, output="float", multiplier=mult, bias=bias,
                      k_map=k_map)
    np.testing.assert_array_equal(acc, _torch_conv(x, w, 1, (1, 1, 1, 1), 0.0).astype(np.int32))
    expect = (acc.astype(np.float32) * k_map[..., None]) * mult + bias
    np.testing.assert_allclose(f, expect, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("isa", all_isas())
def test_bits_output_folds_batchnorm_sign_exactly(isa: str) -> None:
    """sign(scale * acc + shift) with sign(0) = +1, including ties and negative / zero scales."""
    rng = np.random.default_rng(6)
    cout = 40
    x, w = random_pm1(rng, (1, 64, 7, 7)), random_pm1(rng, (cout, 64, 3, 3))
    xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
    with K.use_isa(isa):
        acc = K.bconv2d(xp, wp, in_channels=64, padding=1).astype(np.float64)
    # dyadic scales and shifts keep scale * acc + shift exact in float64; shifts hit ties too
    scale = rng.integers(-8, 9, cout) / 4.0
    scale[:3] = 0.0
    shift = -scale * acc[0, 3, 3, :] + rng.choice([-0.25, 0.0, 0.25], cout)
    shift[:3] = [-1.0, 0.0, 2.0]
    thr, flip = K.sign_thresholds(scale, shift)
    with K.use_isa(isa):
        bits = K.bconv2d(xp, wp, in_channels=64, padding=1, output="bits", thresholds=thr, flip=flip)
    y = scale * acc + shift
    np.testing.assert_array_equal(bits, np_pack(np.where(y < 0, -1.0, 1.0)))
    assert (y == 0).any()  # the ties were exercised


@pytest.mark.parametrize("isa", all_isas())
def test_resnet_shape_against_torch(isa: str) -> None:
    rng = np.random.default_rng(8)
    x, w = random_pm1(rng, (1, 256, 14, 14)), random_pm1(rng, (24, 256, 3, 3))
    with K.use_isa(isa):
        out = K.bconv2d(K.pack_nchw(x), K.pack_conv_weight(w), in_channels=256, stride=2, padding=1)
    np.testing.assert_array_equal(out, _torch_conv(x, w, 2, (1, 1, 1, 1), 0.0).astype(np.int32))


def test_bits_output_chains_into_next_layer() -> None:
    """A bits output is a valid packed input: two layers without unpacking equal the float path."""
    rng = np.random.default_rng(9)
    x = random_pm1(rng, (2, 33, 8, 8))
    w1, w2 = random_pm1(rng, (50, 33, 3, 3)), random_pm1(rng, (10, 50, 3, 3))
    thr = rng.integers(-20, 21, 50).astype(np.float32)
    h = K.bconv2d(K.pack_nchw(x), K.pack_conv_weight(w1), in_channels=33, padding=1, output="bits",
                  thresholds=thr)
    out = K.bconv2d(h, K.pack_conv_weight(w2), in_channels=50, padding=1)
    a1 = _torch_conv(x, w1, 1, (1, 1, 1, 1), 0.0)
    h_float = np.where(a1 < thr, -1.0, 1.0).astype(np.float32).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out, _torch_conv(np.ascontiguousarray(h_float), w2, 1,
                                                   (1, 1, 1, 1), 0.0).astype(np.int32))


@pytest.mark.parametrize("isa", all_isas())
@pytest.mark.parametrize("cin,k,stride", [(1, 1, 1), (31, 1, 2), (64, 1, 2), (100, 1, 1), (128, 1, 2),
                                          (129, 1, 1), (32, 2, 1), (40, 2, 2)])
def test_short_filters_against_torch(isa: str, cin: int, k: int, stride: int) -> None:
    """Filters of at most 4 words (1x1 convs over <= 128 channels) take a kernel of their own."""
    rng = np.random.default_rng(cin * 10 + k)
    x, w = random_pm1(rng, (2, cin, 9, 7)), random_pm1(rng, (37, cin, k, k))
    with K.use_isa(isa):
        out = K.bconv2d(K.pack_nchw(x), K.pack_conv_weight(w), in_channels=cin, stride=stride,
                        padding=k // 2, num_threads=2)
    pads = (k // 2,) * 4
    np.testing.assert_array_equal(out, _torch_conv(x, w, stride, pads, 0.0).astype(np.int32))


@pytest.mark.skipif(not optimized_isas(), reason="no optimized kernel family on this CPU")
@pytest.mark.parametrize("cin", [32, 64, 96, 128, 320])
@pytest.mark.parametrize("stride", [1, 2])
def test_resnet_like_layers_equal_torch(cin: int, stride: int) -> None:
    """3x3 convs whose filter rows end in a one- or two-word tail (32, 64, 320 channels: 9, 18,
    90 words) or fill whole chunks (96, 128 channels), zero padding, on every optimized ISA."""
    rng = np.random.default_rng(cin + stride)
    x = random_pm1(rng, (2, cin, 9, 8))
    w = random_pm1(rng, (37, cin, 3, 3))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride,
                                     padding=1).numpy().transpose(0, 2, 3, 1)
    xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
    for isa in optimized_isas():
        with K.use_isa(isa):
            for weights in (wp, K.prepare_conv_weight(wp, in_channels=cin)):
                got = K.bconv2d(xp, weights, in_channels=cin, stride=stride, padding=1,
                                num_threads=2)
                np.testing.assert_array_equal(got, ref.astype(np.int32), err_msg=isa)


@pytest.mark.parametrize("isa", all_isas())
@pytest.mark.parametrize("cout", [5, 64, 70])
def test_residual_and_sign_bits_equal_separate_ops(isa: str, cout: int) -> None:
    """A residual block in one pass: float output + residual, and the packed signs of the sum,
    equal to the float output, then a NumPy add, then pack_bits, bit for bit."""
    rng = np.random.default_rng(cout)
    x = random_pm1(rng, (2, 40, 7, 6))
    w = random_pm1(rng, (cout, 40, 3, 3))
    xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
    mult = rng.uniform(-0.02, 0.02, cout).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, cout).astype(np.float32)
    residual = rng.standard_normal((2, 7, 6, cout)).astype(np.float32)
    residual[0, 0, 0, :3] = [0.0, -0.0, -1e-30]  # signs of zero / tiny values
    with K.use_isa(isa):
        y = K.bconv2d(xp, wp, in_channels=40, padding=1, output="float", multiplier=mult,
                      bias=bias)
        expect = y + residual
        got, bits = K.bconv2d(xp, K.prepare_conv_weight(wp, in_channels=40), in_channels=40,
                              padding=1, output="float", multiplier=mult, bias=bias,
                              residual=residual, return_sign_bits=True, num_threads=2)
        only_bits = K.bconv2d(xp, wp, in_channels=40, padding=1, output="float",
                              multiplier=mult, bias=bias, return_sign_bits=True)[1]
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(bits, K.pack_bits(expect))
    np.testing.assert_array_equal(only_bits, K.pack_bits(y))


def test_residual_errors() -> None:
    rng = np.random.default_rng(0)
    xp = K.pack_nchw(random_pm1(rng, (1, 8, 4, 4)))
    wp = K.pack_conv_weight(random_pm1(rng, (3, 8, 3, 3)))
    with pytest.raises(ValueError, match="only to output='float'"):
        K.bconv2d(xp, wp, in_channels=8, residual=np.zeros((1, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        K.bconv2d(xp, wp, in_channels=8, output="float", residual=np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="residual must have dtype float32"):
        K.bconv2d(xp, wp, in_channels=8, output="float", residual=np.zeros((1, 2, 2, 3)))
