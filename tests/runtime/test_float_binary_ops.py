"""The runtime's NumPy ops against PyTorch's (and onebit's training) definitions, NHWC <-> NCHW."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onebit.deploy.passes import thresholds
from onebit.nn.functional import adder_conv2d, xnor_k_map
from onebit.quantizers import KBit
from onebit.runtime import binary_ops, float_ops

RNG = np.random.default_rng(7)


def nhwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))


def nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


def _x(n: int, c: int, h: int, w: int) -> torch.Tensor:
    return torch.from_numpy(RNG.standard_normal((n, c, h, w)).astype(np.float32))


@pytest.mark.parametrize("k, stride, padding, dilation, groups, pad_value", [
    (3, 1, 1, 1, 1, 0.0), (3, 2, 1, 1, 1, 0.0), ((1, 3), (2, 1), (0, 1), 1, 1, 0.0),
    (3, 1, 2, 2, 1, 0.0), (3, 1, 1, 1, 4, 0.0), (1, 2, 0, 1, 1, 0.0), (5, 1, 2, 1, 2, -1.0),
    (2, 3, 1, 1, 1, 1.0), (7, 2, 3, 1, 1, 0.0),
])
def test_conv2d_matches_torch(k, stride, padding, dilation, groups, pad_value):
    x = _x(2, 8, 11, 9)
    w = torch.from_numpy(RNG.standard_normal((12, 8 // groups) + ((k, k) if isinstance(k, int)
                                                                  else k)).astype(np.float32))
    b = torch.from_numpy(RNG.standard_normal(12).astype(np.float32))
    p = (padding, padding) if isinstance(padding, int) else padding
    ref = F.conv2d(F.pad(x, (p[1], p[1], p[0], p[0]), value=pad_value), w, b, stride, 0, dilation,
                   groups)
    wmat = np.stack([float_ops.conv_weight_matrix(g.numpy()) for g in w.chunk(groups)])
    pair = (lambda v: (v, v) if isinstance(v, int) else v)
    out = float_ops.conv2d(nhwc(x), wmat, b.numpy(), tuple(w.shape[2:]), pair(stride), p,
                           pair(dilation), groups, pad_value)
    np.testing.assert_allclose(nchw(out), ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k, s, p, d, ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, False),
                                              (3, 2, 1, 1, True), (2, 2, 0, 1, True),
                                              (3, 1, 1, 2, False), ((2, 3), (1, 2), (1, 1), 1,
                                                                    True)])
def test_maxpool_matches_torch(k, s, p, d, ceil):
    x = _x(2, 5, 9, 7)
    ref = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
    pair = (lambda v: (v, v) if isinstance(v, int) else v)
    out = float_ops.maxpool2d(nhwc(x), pair(k), pair(s), pair(p), pair(d), ceil)
    np.testing.assert_array_equal(nchw(out), ref.numpy())


@pytest.mark.parametrize("k, s, p, ceil, include, divisor", list(itertools.product(
    [2, 3], [1, 2], [0, 1], [False, True], [False, True], [None])) + [(3, 2, 1, True, True, 5)])
def test_avgpool_matches_torch(k, s, p, ceil, include, divisor):
    x = _x(2, 4, 9, 8)
    ref = F.avg_pool2d(x, k, s, p, ceil, include, divisor)
    out = float_ops.avgpool2d(nhwc(x), (k, k), (s, s), (p, p), ceil, include, divisor)
    np.testing.assert_allclose(nchw(out), ref.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (2, 5), (4, 3), (9, 8), (12, 11)])
def test_adaptive_pools_match_torch(size):
    x = _x(2, 3, 9, 8)
    out = float_ops.adaptive_pool2d(nhwc(x), size, "avg")
    np.testing.assert_allclose(nchw(out), F.adaptive_avg_pool2d(x, size).numpy(), rtol=1e-6,
                               atol=1e-6)
    out = float_ops.adaptive_pool2d(nhwc(x), size, "max")
    np.testing.assert_array_equal(nchw(out), F.adaptive_max_pool2d(x, size).numpy())


def test_flatten_is_channel_major():
    x = _x(2, 3, 4, 5)
    np.testing.assert_array_equal(float_ops.flatten(nhwc(x)), torch.flatten(x, 1).numpy())


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_kbit_matches_training_quantizer(bits):
    x = torch.cat([torch.linspace(-1.5, 1.5, 1001), torch.tensor([0.0, -0.0, 1 / 3, -1 / 3])])
    np.testing.assert_array_equal(float_ops.kbit(x.numpy(), bits), KBit(bits)(x).numpy())


@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (3, 2, 0), (1, 1, 0), (2, 2, 1)])
def test_adder_conv_matches_training_op(k, s, p):
    x, w = _x(2, 6, 7, 7), _x(5, 6, k, k)
    ref = adder_conv2d(x, w, s, p)
    out = float_ops.adder_conv2d(nhwc(x), w.numpy(), (s, s), (p, p), None)
    np.testing.assert_allclose(nchw(out), ref.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (5, 2, 2)])
def test_xnor_k_map_matches_training(k, s, p):
    x = _x(2, 7, 9, 9)
    ref = xnor_k_map(x, k, s, p)[:, 0]
    out = binary_ops.xnor_k_map(nhwc(x), (k, k), (s, s), (p, p))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-6, atol=1e-7)


def test_pack_and_unpack_signs_follow_the_bit_convention():
    x = np.array([[1.0, -2.0, 0.0, -0.0] + [-1.0] * 30], np.float32)  # 34 values: 2 words
    bits = binary_ops.pack_signs(x)
    assert bits.dtype == np.uint32 and bits.shape == (1, 2)
    assert bits[0, 0] == (0b10 | (0xFFFFFFFF << 4 & 0xFFFFFFFF)) and bits[0, 1] == 0b11
    np.testing.assert_array_equal(binary_ops.unpack_signs(bits, 34), np.where(x >= 0, 1, -1))


def test_thresholds_equal_sign_of_the_affine_map_for_every_accumulator():
    """For every integer acc in [-n, n]: bit 1 (-1) exactly where acc * m + b < 0."""
    n = 45
    mult = np.array([0.5, -0.5, 0.0, 0.0, 1e-3, -3.0, 0.25, 2.0, -0.125])
    bias = np.array([0.75, 0.75, 1.0, -1.0, 0.5, -7.5, -1.0, 1e6, 0.0])
    t, flip = thresholds(mult, bias, n)
    assert t.dtype == np.int32 and flip.dtype == np.uint8
    acc = np.arange(-n, n + 1)[:, None]
    negative = acc * mult + bias < 0
    predicted = np.where(flip.astype(bool), acc > t, acc < t)
    np.testing.assert_array_equal(predicted, negative)
    assert np.all(np.abs(t) <= n + 1)


def _pool_reference(x: np.ndarray, k, s, p, reduce, pad) -> np.ndarray:
    """A plain loop over the padded NHWC input: the window op of every output position."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=pad)
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    out = np.empty((x.shape[0], ho, wo, x.shape[3]), np.float64)
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = reduce(xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(1, 2))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_fallbacks_take_non_square_windows(dtype):
    """The NumPy paths (windows the kernels refuse: padding over half the kernel, or a float64
    input) with non-square kernels, strides and a divisor override, against a plain loop."""
    x = np.random.default_rng(4).standard_normal((2, 9, 7, 3)).astype(dtype)
    k, s, p = (3, 1), (2, 1), (2, 0)  # padding 2 > half of 3: the fallback
    got = float_ops.maxpool2d(x, k, s, p, (1, 1), False)
    np.testing.assert_array_equal(got, _pool_reference(x, k, s, p, np.max, -np.inf))
    got = float_ops.avgpool2d(x, k, s, p, False, True, None)
    np.testing.assert_allclose(got, _pool_reference(x, k, s, p, np.sum, 0.0) / 3, rtol=1e-6)
    got = float_ops.avgpool2d(x, k, s, p, False, True, 2)
    np.testing.assert_allclose(got, _pool_reference(x, k, s, p, np.sum, 0.0) / 2, rtol=1e-6)
    k, s, p = (1, 3), (1, 1), (0, 2)  # the same along the width
    got = float_ops.avgpool2d(x, k, s, p, False, True, None)
    np.testing.assert_allclose(got, _pool_reference(x, k, s, p, np.sum, 0.0) / 3, rtol=1e-6)
    k, s, p = (1, 3), (1, 2), (0, 1)  # a kernel the pool kernels take, on float64: the fallback
    got = float_ops.avgpool2d(x, k, s, p, False, True, 2)
    np.testing.assert_allclose(got, _pool_reference(x, k, s, p, np.sum, 0.0) / 2, rtol=1e-6)
    got = float_ops.maxpool2d(x, k, s, p, (1, 1), False)
    np.testing.assert_array_equal(got, _pool_reference(x, k, s, p, np.max, -np.inf))


@pytest.mark.parametrize("size", [(4, 4), (3, 7), (1, 1), (2, 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_pools_where_one_axis_divides(size, dtype):
    """Output sizes where one axis divides the input and the other leaves a remainder of 1 (the
    kernel path must not take them), and the NumPy path (float64) with a size of 1."""
    x = torch.from_numpy(np.random.default_rng(6).standard_normal((2, 3, 9, 8)).astype(dtype))
    got = float_ops.adaptive_pool2d(nhwc(x), size, "avg")
    assert got.shape == (2, *size, 3)
    np.testing.assert_allclose(nchw(got), F.adaptive_avg_pool2d(x, size).numpy(), rtol=1e-6,
                               atol=1e-6)
    got = float_ops.adaptive_pool2d(nhwc(x), size, "max")  # float32 out, as the runtime's values
    np.testing.assert_array_equal(nchw(got),
                                  F.adaptive_max_pool2d(x, size).numpy().astype(np.float32))


def test_flatten_of_a_vector_is_itself():
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert float_ops.flatten(v) is v
