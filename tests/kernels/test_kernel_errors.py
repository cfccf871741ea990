"""Bad input to the binary kernels raises clear errors that name the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import onebit.kernels as K


@pytest.fixture()
def conv_args():
    rng = np.random.default_rng(0)
    x = K.pack_nchw(rng.standard_normal((1, 40, 5, 5)).astype(np.float32))
    w = K.pack_conv_weight(rng.standard_normal((8, 40, 3, 3)).astype(np.float32))
    return x, w


def test_pack_bits_errors() -> None:
    with pytest.raises(TypeError, match="float32"):
        K.pack_bits(np.zeros(4, np.float64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.pack_bits([1.0, -1.0])
    with pytest.raises(ValueError, match="C-contiguous"):
        K.pack_bits(np.zeros((4, 6), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="zero-sized"):
        K.pack_bits(np.zeros((3, 0), np.float32))
    with pytest.raises(ValueError, match="axis"):
        K.pack_bits(np.zeros((3, 4), np.float32), axis=2)
    with pytest.raises(ValueError, match="ceil"):
        K.unpack_bits(np.zeros((3, 2), np.uint32), 70)
    with pytest.raises(TypeError, match="uint32"):
        K.unpack_bits(np.zeros((3, 2), np.int32), 40)
    with pytest.raises(ValueError, match=">= 1"):
        K.unpack_bits(np.zeros((3, 2), np.uint32), 0)
    with pytest.raises(ValueError, match="4-D"):
        K.pack_conv_weight(np.zeros((3, 3, 3), np.float32))


def test_bconv2d_shape_and_dtype_errors(conv_args) -> None:
    x, w = conv_args
    with pytest.raises(ValueError, match="in_channels = 70 needs"):
        K.bconv2d(x, w, in_channels=70)
    with pytest.raises(ValueError, match="nonzero bits past"):
        K.bconv2d(x, w, in_channels=33)  # 40 channels' bits do not fit 33
    with pytest.raises(TypeError, match="uint32"):
        K.bconv2d(x.astype(np.int64), w, in_channels=40)
    with pytest.raises(ValueError, match="4-D"):
        K.bconv2d(x[0], w, in_channels=40)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.bconv2d(np.asfortranarray(x), w, in_channels=40)
    with pytest.raises(ValueError, match="zero-sized"):
        K.bconv2d(x[:0], w, in_channels=40)
    w_wrong = np.zeros((8, 3, 3, 1), np.uint32)
    with pytest.raises(ValueError, match="pack_conv_weight"):
        K.bconv2d(x, w_wrong, in_channels=40)
    with pytest.raises(ValueError, match="larger than the padded"):
        K.bconv2d(np.ascontiguousarray(x[:, :2, :2]), w, in_channels=40)


def test_bconv2d_argument_errors(conv_args) -> None:
    x, w = conv_args
    with pytest.raises(ValueError, match="pad_value must be"):
        K.bconv2d(x, w, in_channels=40, pad_value=0.5)
    with pytest.raises(ValueError, match="padding must be"):
        K.bconv2d(x, w, in_channels=40, padding="full")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        K.bconv2d(x, w, in_channels=40, stride=0)
    with pytest.raises(ValueError, match="output must be one of"):
        K.bconv2d(x, w, in_channels=40, output="int8")
    with pytest.raises(ValueError, match="needs thresholds"):
        K.bconv2d(x, w, in_channels=40, output="bits")
    with pytest.raises(ValueError, match="not 'int32'"):
        K.bconv2d(x, w, in_channels=40, multiplier=np.ones(8, np.float32))
    with pytest.raises(ValueError, match="only to output='bits'"):
        K.bconv2d(x, w, in_channels=40, output="float", thresholds=np.zeros(8))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        K.bconv2d(x, w, in_channels=40, output="float", bias=np.zeros(7))
    with pytest.raises(ValueError, match="k_map must have shape"):
        K.bconv2d(x, w, in_channels=40, output="float", k_map=np.ones((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        K.bconv2d(x, w, in_channels=40, num_threads=0)
    with pytest.raises(TypeError, match="num_threads must be an int"):
        K.bconv2d(x, w, in_channels=40, num_threads="2")


def test_prepared_weight_errors(conv_args) -> None:
    x, w = conv_args
    prepared = K.prepare_conv_weight(w, in_channels=40)
    assert prepared.shape == w.shape and "in_channels=40" in repr(prepared)
    with pytest.raises(ValueError, match="prepared weights are for in_channels = 40"):
        K.bconv2d(np.zeros((1, 5, 5, 2), np.uint32), prepared, in_channels=39)
    with pytest.raises(ValueError, match="words per tap"):
        K.prepare_conv_weight(w, in_channels=70)
    with pytest.raises(TypeError, match="uint32"):
        K.prepare_conv_weight(w.astype(np.int32), in_channels=40)


def test_bgemm_errors() -> None:
    a = np.zeros((4, 2), np.uint32)
    with pytest.raises(ValueError, match="ceil"):
        K.bgemm(a, np.zeros((3, 3), np.uint32), 40)
    with pytest.raises(ValueError, match="2-D"):
        K.bgemm(a[None], a, 40)
    with pytest.raises(TypeError, match="k must be an int"):
        K.bgemm(a, a, 40.0)
    bad = a.copy()
    bad[0, 1] = 1 << 20  # bit 52 of a 40-bit row
    with pytest.raises(ValueError, match="nonzero bits past"):
        K.bgemm(bad, a, 40)


def test_conv_padding_forms() -> None:
    assert K.conv_padding(1, (5, 5), (3, 3), (1, 1)) == (1, 1, 1, 1)
    assert K.conv_padding((1, 2), (5, 5), (3, 3), (1, 1)) == (1, 1, 2, 2)
    assert K.conv_padding((0, 1, 2, 3), (5, 5), (3, 3), (1, 1)) == (0, 1, 2, 3)
    assert K.conv_padding("valid", (5, 5), (3, 3), (1, 1)) == (0, 0, 0, 0)
    # TensorFlow / PyTorch "same": 6 -> 3 with stride 2 and a 3x3 kernel pads 0 top, 1 bottom
    assert K.conv_padding("same", (6, 6), (3, 3), (2, 2)) == (0, 1, 0, 1)
    assert K.conv_padding("same", (5, 5), (4, 4), (1, 1)) == (1, 2, 1, 2)
