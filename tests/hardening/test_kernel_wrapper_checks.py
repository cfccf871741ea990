"""The public kernel wrappers refuse every invalid value with a clear error, before allocating."""

from __future__ import annotations

import numpy as np
import pytest

import onebit.kernels as K


def _conv_operands(cin: int = 8, cout: int = 4):
    rng = np.random.default_rng(0)
    x = K.pack_nchw(rng.standard_normal((1, cin, 5, 5)).astype(np.float32))
    w = K.pack_conv_weight(rng.standard_normal((cout, cin, 3, 3)).astype(np.float32))
    return x, w


@pytest.mark.parametrize("flip", [[2, 0, 0, 0], [0.5, 0, 0, 0], [-1, 0, 0, 0]])
def test_flip_must_be_boolean(flip):
    x, w = _conv_operands()
    with pytest.raises(ValueError, match="flip must hold booleans"):
        K.bconv2d(x, w, in_channels=8, output="bits", thresholds=np.zeros(4), flip=flip)


def test_flip_accepts_bools_and_zero_one():
    x, w = _conv_operands()
    a = K.bconv2d(x, w, in_channels=8, output="bits", thresholds=np.zeros(4),
                  flip=[True, False, True, False])
    b = K.bconv2d(x, w, in_channels=8, output="bits", thresholds=np.zeros(4), flip=[1, 0, 1, 0])
    np.testing.assert_array_equal(a, b)


def test_nan_thresholds_refused():
    x, w = _conv_operands()
    with pytest.raises(ValueError, match="thresholds contains NaN"):
        K.bconv2d(x, w, in_channels=8, output="bits", thresholds=[0, np.nan, 0, 0])
    a = K.pack_bits(np.ones((2, 40), np.float32))
    with pytest.raises(ValueError, match="thresholds contains NaN"):
        K.bgemm(a, a, 40, output="bits", thresholds=[np.nan, 0])
    # infinities are legitimate (sign_thresholds makes them for a zero scale)
    K.bgemm(a, a, 40, output="bits", thresholds=[np.inf, -np.inf])


@pytest.mark.parametrize("value", [True, False, 1.0, "2"])
def test_set_default_num_threads_refuses_non_int(value):
    before = K.default_num_threads()
    with pytest.raises(TypeError, match="num_threads must be an int"):
        K.set_default_num_threads(value)
    assert K.default_num_threads() == before


def test_set_default_num_threads_range():
    with pytest.raises(ValueError, match="32 bits"):
        K.set_default_num_threads(2**40)


def test_num_threads_range():
    x, w = _conv_operands()
    with pytest.raises(ValueError, match="num_threads must be <="):
        K.bconv2d(x, w, in_channels=8, num_threads=2**40)


@pytest.mark.parametrize("padding", [2**20, 2**30])
def test_huge_padding_is_a_clear_error_before_allocating(padding):
    x, w = _conv_operands()
    with pytest.raises(ValueError, match="would need .* of memory; use less padding"):
        K.bconv2d(x, w, in_channels=8, padding=padding)
    xq = np.zeros((1, 4, 4, 3), np.int8)
    wq = np.zeros((2, 3, 3, 3), np.int8)
    with pytest.raises(ValueError, match="would need .* of memory; use less padding"):
        K.adder_int8(xq, wq, padding=padding)
    xf = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="would need .* of memory; use less padding"):
        K.adder_conv2d_f32(xf, np.zeros((2, 3, 3, 3), np.float32), padding=padding)
    with pytest.raises(ValueError, match="would need .* of memory; use less padding"):
        K.conv2d_f32(np.zeros((1, 4, 4, 3), np.float32), np.zeros((2, 3, 3, 3), np.float32),
                     padding=padding)


def test_geometry_beyond_int32_refused():
    x, w = _conv_operands()
    with pytest.raises(ValueError, match="padding must be <= 2\\^31 - 1"):
        K.bconv2d(x, w, in_channels=8, padding=2**40)
    with pytest.raises(ValueError, match="stride must be <= 2\\^31 - 1"):
        K.adder_int8(np.zeros((1, 4, 4, 3), np.int8), np.zeros((2, 3, 3, 3), np.int8),
                     stride=2**40)
    with pytest.raises(ValueError, match="stride must be <= 2\\^31 - 1"):
        K.maxpool2d_f32(np.zeros((1, 4, 4, 3), np.float32), 2, stride=2**40)
