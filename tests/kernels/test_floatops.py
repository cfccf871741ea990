"""onebit.kernels' float NHWC ops (direct conv2d, max / average pooling): the AVX2 kernels against
the plain reference and against torch.nn.functional, and the runtime's use of them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onebit import kernels as K
from onebit.runtime import float_ops

RNG = np.random.default_rng(11)
ISAS = ["reference"] + (["avx2"] if K.isa_available("avx2") else [])


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def t_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def t_out(y: torch.Tensor) -> np.ndarray:
    return nhwc(y.numpy())


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


# ---- direct conv2d --------------------------------------------------------------------------

CONV_CASES = [  # n, h, w, c_in, c_out, k, stride, padding, dilation, bias, pad_value
    (1, 23, 19, 3, 64, 7, 2, 3, 1, True, 0.0),   # the stem, at an odd size
    (2, 9, 12, 3, 37, 3, 1, 1, 1, False, 0.0),
    (3, 8, 7, 1, 5, 5, 1, 2, 1, True, 0.0),
    (1, 10, 11, 4, 70, (3, 5), (2, 1), (1, 2), 1, True, 0.0),
    (2, 12, 13, 2, 13, 3, 2, 0, 2, False, 0.0),
    (1, 11, 9, 3, 24, 3, (1, 3), 2, (2, 3), True, 0.0),
    (2, 7, 6, 3, 9, 2, 3, 1, 1, True, -1.0),
    (1, 5, 5, 8, 33, 1, 1, 0, 1, True, 0.0),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _torch_conv(x, w, b, stride, padding, dilation, pad_value):
    xt = t_nchw(x)
    ph, pw = _pair(padding)
    if pad_value != 0.0:
        xt = F.pad(xt, (pw, pw, ph, ph), value=pad_value)
        padding = 0
    return t_out(F.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                          stride=stride, padding=padding, dilation=dilation))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch_and_reference(case):
    n, h, w_, c, co, k, stride, padding, dilation, with_bias, pad_value = case
    kh, kw = _pair(k)
    x = RNG.standard_normal((n, h, w_, c)).astype(np.float32)
    w = RNG.standard_normal((co, c, kh, kw)).astype(np.float32)
    b = RNG.standard_normal(co).astype(np.float32) if with_bias else None
    expect = _torch_conv(x, w, b, stride, padding, dilation, pad_value)
    prepared = K.prepare_float_conv_weight(w)
    outs = {}
    for isa in ISAS:
        with K.use_isa(isa):
            outs[isa] = K.conv2d_f32(x, prepared, b, stride=stride, padding=padding,
                                     dilation=dilation, pad_value=pad_value, num_threads=2)
        assert outs[isa].shape == expect.shape
        tol = 2e-6 * kh * kw * c * (1 + np.abs(expect).max())
        np.testing.assert_allclose(outs[isa], expect, rtol=0, atol=tol)
    if len(outs) == 2:
        np.testing.assert_allclose(outs["avx2"], outs["reference"], rtol=0, atol=tol)


def test_conv2d_threads_and_raw_weight_agree():
    x = RNG.standard_normal((2, 31, 17, 3)).astype(np.float32)
    w = RNG.standard_normal((20, 3, 7, 7)).astype(np.float32)
    one = K.conv2d_f32(x, w, stride=2, padding=3, num_threads=1)
    two = K.conv2d_f32(x, K.prepare_float_conv_weight(w), stride=2, padding=3, num_threads=2)
    np.testing.assert_array_equal(bits(one), bits(two))  # same tiles, only rows split


# ---- pooling --------------------------------------------------------------------------------

def _pool_input(n, h, w, c, ties):
    if ties:  # few distinct values, signed zeros and a NaN: exercises the max rule's tie-breaks
        vals = np.array([-0.0, 0.0, 1.0, -1.0, 2.0], dtype=np.float32)
        x = vals[RNG.integers(0, len(vals), (n, h, w, c))]
        x.flat[RNG.integers(0, x.size)] = np.nan
        return x
    return RNG.standard_normal((n, h, w, c)).astype(np.float32)


MAX_GEOMS = [  # k, stride, padding, dilation
    (3, 2, 1, 1), (3, 1, 0, 1), (2, 2, 0, 1), (3, 2, 0, 1), ((3, 2), (2, 1), (1, 1), 1),
    (3, 3, 1, 2), (2, 1, 1, 1), (4, 3, 2, 1), (3, 2, 1, (1, 2)),
]


@pytest.mark.parametrize("geom", MAX_GEOMS)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_maxpool2d_bit_exact(geom, ceil_mode):
    k, s, p, d = geom
    for n, h, w, c, ties in ((1, 13, 11, 19, False), (3, 8, 9, 64, True), (2, 7, 10, 5, True)):
        x = _pool_input(n, h, w, c, ties)
        expect_t = t_out(F.max_pool2d(t_nchw(x), k, s, p, d, ceil_mode=ceil_mode))
        for isa in ISAS:
            with K.use_isa(isa):
                y = K.maxpool2d_f32(x, k, s, p, d, ceil_mode, num_threads=2)
            assert y.shape == expect_t.shape
            if not ties:  # torch's own tie and NaN handling is its own business
                np.testing.assert_array_equal(bits(y), bits(expect_t))
            else:
                np.testing.assert_array_equal(y, expect_t)  # NaN == NaN here, -0 == 0


@pytest.mark.parametrize("geom", MAX_GEOMS)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_runtime_maxpool_kernel_equals_numpy_bits(geom, ceil_mode, monkeypatch):
    k, s, p, d = (_pair(v) for v in geom)
    x = _pool_input(2, 9, 12, 21, True)
    fast = float_ops.maxpool2d(x, k, s, p, d, ceil_mode, 2)
    monkeypatch.setattr(float_ops, "_torch_window", lambda *a: False)  # the NumPy fallback
    slow = float_ops.maxpool2d(x, k, s, p, d, ceil_mode, 2)
    np.testing.assert_array_equal(bits(fast), bits(slow))


AVG_GEOMS = [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (2, 1), (1, 0)), (2, 3, 1), (5, 2, 2)]


@pytest.mark.parametrize("geom", AVG_GEOMS)
@pytest.mark.parametrize("ceil_mode, include, divisor",
                         list(itertools.product([False, True], [True, False], [None, 3])))
def test_avgpool2d_matches_torch(geom, ceil_mode, include, divisor):
    k, s, p = geom
    for n, h, w, c in ((1, 13, 11, 19), (3, 8, 9, 64), (2, 7, 10, 5)):
        x = _pool_input(n, h, w, c, False)
        expect = t_out(F.avg_pool2d(t_nchw(x), k, s, p, ceil_mode, include, divisor))
        outs = []
        for isa in ISAS:
            with K.use_isa(isa):
                outs.append(K.avgpool2d_f32(x, k, s, p, ceil_mode, include, divisor,
                                            num_threads=2))
            assert outs[-1].shape == expect.shape
            np.testing.assert_allclose(outs[-1], expect, rtol=1e-6, atol=1e-6)
        for y in outs[1:]:  # the same additions in the same order, one division
            np.testing.assert_array_equal(bits(y), bits(outs[0]))


def test_runtime_avgpool_and_conv_use_kernels_like_numpy(monkeypatch):
    x = RNG.standard_normal((2, 14, 15, 3)).astype(np.float32)
    w = RNG.standard_normal((16, 3, 7, 7)).astype(np.float32)
    b = RNG.standard_normal(16).astype(np.float32)
    direct = float_ops.direct_conv_weight(w, 1)
    assert direct is not None and float_ops.direct_conv_weight(w, 3) is None
    wmat = float_ops.conv_weight_matrix(w)[None]
    fast = K.conv2d_f32(x, direct, b, stride=2, padding=3, num_threads=1)
    slow = float_ops.conv2d(x, wmat, b, (7, 7), (2, 2), (3, 3), (1, 1), 1, 0.0)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-4)
    y = RNG.standard_normal((1, 9, 9, 10)).astype(np.float32)
    fast = float_ops.avgpool2d(y, (3, 3), (2, 2), (1, 1), True, False, None, 1)
    monkeypatch.setattr(float_ops, "_torch_window", lambda *a: False)
    slow = float_ops.avgpool2d(y, (3, 3), (2, 2), (1, 1), True, False, None, 1)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-7)


# ---- bad input ------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    x = np.zeros((1, 8, 8, 3), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        K.conv2d_f32(x.astype(np.float64), w)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.maxpool2d_f32(x.tolist(), 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.avgpool2d_f32(x[:, ::2], 2)
    with pytest.raises(ValueError, match="4-D"):
        K.maxpool2d_f32(x[0], 2)
    with pytest.raises(ValueError, match="C_in = 3"):
        K.conv2d_f32(x, np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="bias must have shape"):
        K.conv2d_f32(x, w, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="too small"):
        K.conv2d_f32(x, np.zeros((4, 3, 9, 9), np.float32))
    with pytest.raises(ValueError, match="at most half"):
        K.maxpool2d_f32(x, 2, 1, 2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        K.avgpool2d_f32(x, 2, 0)
    with pytest.raises(ValueError, match="divisor_override must be >= 1"):
        K.avgpool2d_f32(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        K.maxpool2d_f32(x, 2, ceil_mode="yes")
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        K.maxpool2d_f32(x, 2, num_threads=0)


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_nchw_input_and_fused_maxpool_are_bit_identical(seed):
    """layout="nchw" equals the NHWC call on the transposed input, and a fused max pool equals
    maxpool2d_f32 of the stored conv output, bit for bit, for every ISA and thread count (random
    stems and 1x1 convs, pad values, pool windows with padding, dilation and ceil_mode)."""
    rng = np.random.default_rng(100 + seed)
    c = int(rng.integers(1, 5)) if seed % 3 else int(rng.integers(5, 40))
    k = int(rng.integers(1, 8)) if seed % 3 else 1
    s, p = int(rng.integers(1, 3)), int(rng.integers(0, k // 2 + 1))
    h, w_ = int(rng.integers(k, 24)), int(rng.integers(k, 24))
    co = int(rng.integers(1, 70))
    x = rng.standard_normal((int(rng.integers(1, 3)), c, h, w_)).astype(np.float32)
    w = rng.standard_normal((co, c, k, k)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32) if seed % 2 else None
    pad_value = float(rng.choice([0.0, 1.0, -0.5]))
    geo = dict(stride=s, padding=p, pad_value=pad_value)
    oh, ow = (h + 2 * p - k) // s + 1, (w_ + 2 * p - k) // s + 1
    pk = (int(rng.integers(1, min(3, oh) + 1)), int(rng.integers(1, min(3, ow) + 1)))
    pool = K.MaxPoolWindow(pk, (int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                           (int(rng.integers(0, pk[0] // 2 + 1)), int(rng.integers(0, pk[1] // 2 + 1))),
                           1, bool(seed % 4 == 1))
    for isa in ISAS:
        with K.use_isa(isa):
            y = K.conv2d_f32(nhwc(x), w, b, **geo)
            expect = K.maxpool2d_f32(y, pool.kernel_size, pool.stride, pool.padding,
                                     pool.dilation, pool.ceil_mode)
            for threads in (1, 2, 3):
                got = K.conv2d_f32(x, w, b, layout="nchw", num_threads=threads, **geo)
                assert np.array_equal(got.view(np.uint32), y.view(np.uint32)), (isa, threads)
                for xin, layout in ((x, "nchw"), (nhwc(x), "nhwc")):
                    got = K.conv2d_f32(xin, w, b, layout=layout, maxpool=pool,
                                       num_threads=threads, **geo)
                    assert np.array_equal(got.view(np.uint32), expect.view(np.uint32)), \
                        (isa, threads, layout)


def test_conv2d_layout_and_maxpool_errors():
    x = np.zeros((1, 3, 8, 8), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="'nhwc' or 'nchw'"):
        K.conv2d_f32(x, w, layout="chw")
    with pytest.raises(ValueError, match=r"C_in = 8 channels of x \(NHWC\)"):
        K.conv2d_f32(x, w)
    with pytest.raises(ValueError, match="C-contiguous NCHW"):
        K.conv2d_f32(np.asfortranarray(x), w, layout="nchw")
    with pytest.raises(TypeError, match="MaxPoolWindow"):
        K.conv2d_f32(x, w, layout="nchw", maxpool={"kernel_size": 2})
    with pytest.raises(ValueError, match="at most half"):
        K.conv2d_f32(x, w, layout="nchw", maxpool=K.MaxPoolWindow(2, 1, 2))
