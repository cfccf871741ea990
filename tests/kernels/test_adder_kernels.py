"""AdderNet kernels (NumPy API): the int8 SAD kernel bit-exact against its reference twin and a
plain NumPy int64 SAD, the float forward against a float64 NumPy reference, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onebit.kernels as K

ISAS = ["reference"] + [n for n in ("avx2", "avx512") if K.isa_available(n)]
U = 2.0**-24


def np_sad(x, w, stride, padding, pad_value):
    """sum_{i,j,c} |x_pad - w| in int64, NHWC -> [N, OH, OW, C_out]."""
    (sh, sw), (ph, pw) = stride, padding
    cout, kh, kw, _ = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (ph, ph), (pw, pw), (0, 0)),
                constant_values=pad_value)
    oh = (xp.shape[1] - kh) // sh + 1
    ow = (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, cout), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            out += np.abs(patch[..., None, :] - w[:, i, j].astype(np.int64)).sum(-1)
    return out


def run_int8(isa, x, w, stride, padding, pad_value, mult, bias, threads):
    with K.use_isa(isa):
        return K.adder_int8(x, w, stride=stride, padding=padding, pad_value_q=pad_value,
                            multiplier=mult, bias=bias, num_threads=threads)


INT8_SHAPES = [
    # N, H, W, C, C_out, kh, kw, stride, padding
    (1, 14, 14, 64, 9, 3, 3, (1, 1), (1, 1)),
    (2, 7, 5, 3, 4, 3, 3, (1, 1), (1, 1)),
    (1, 9, 9, 33, 7, 3, 3, (2, 2), (1, 1)),
    (3, 6, 6, 32, 5, 1, 1, (1, 1), (0, 0)),
    (1, 4, 4, 5, 3, 5, 5, (1, 1), (2, 2)),
    (2, 8, 11, 17, 13, 3, 2, (2, 1), (0, 1)),
    (1, 3, 3, 200, 2, 3, 3, (1, 1), (0, 0)),
    (1, 9, 10, 64, 37, 3, 3, (1, 1), (1, 1)),  # AVX-512: filter tiles of 16, the last partly padding
    (1, 4, 5, 300, 19, 3, 3, (1, 1), (1, 1)),  # AVX-512: rows of 2700 bytes in three slices
]


@pytest.mark.parametrize("shape", INT8_SHAPES, ids=lambda s: "x".join(map(str, s[:7])))
@pytest.mark.parametrize("pad_value", [0, -128, 127])
def test_int8_sad_is_exact_on_every_isa(shape, pad_value):
    n, h, w, c, cout, kh, kw, s, p = shape
    rng = np.random.default_rng(c * 1000 + cout)
    x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int8)  # full range, -128 included
    wq = rng.integers(-128, 128, (cout, kh, kw, c), dtype=np.int8)
    sad = np_sad(x, wq, s, p, pad_value)
    for isa in ISAS:
        for threads in (1, 2):
            y = run_int8(isa, x, wq, s, p, pad_value, 1.0, None, threads)
            np.testing.assert_array_equal(y, -sad.astype(np.float32), err_msg=f"{isa}/{threads}")


@pytest.mark.parametrize("shape", INT8_SHAPES[:4], ids=lambda s: "x".join(map(str, s[:7])))
def test_int8_output_transform_is_bit_identical_across_isas(shape):
    n, h, w, c, cout, kh, kw, s, p = shape
    rng = np.random.default_rng(7)
    x = rng.integers(-127, 128, (n, h, w, c), dtype=np.int8)
    wq = rng.integers(-127, 128, (cout, kh, kw, c), dtype=np.int8)
    mult = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    outs = [run_int8(isa, x, wq, s, p, 0, mult, bias, 2) for isa in ISAS]
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])
    # fma(-sad, m, b) rounds once: the float64 value rounded to float32 is within half an ulp
    exact = -np_sad(x, wq, s, p, 0) * mult.astype(np.float64) + bias
    np.testing.assert_allclose(outs[0], exact, rtol=U, atol=1e-30)


@pytest.mark.parametrize("isa", ISAS[1:])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), hw=st.integers(1, 12), c=st.integers(1, 70),
       cout=st.one_of(st.integers(1, 14), st.integers(15, 40)),
       k=st.sampled_from([1, 2, 3]), s=st.integers(1, 2), p=st.integers(0, 2),
       pad_value=st.integers(-128, 127), threads=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_int8_random_shapes_match_reference(isa, n, hw, c, cout, k, s, p, pad_value, threads, seed):
    if hw + 2 * p < k:
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, hw, hw, c), dtype=np.int8)
    wq = rng.integers(-128, 128, (cout, k, k, c), dtype=np.int8)
    ref = run_int8("reference", x, wq, (s, s), (p, p), pad_value, 1.0, None, 1)
    got = run_int8(isa, x, wq, (s, s), (p, p), pad_value, 1.0, None, threads)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(ref, -np_sad(x, wq, (s, s), (p, p), pad_value))


def np_adder_f64(x, w, stride, padding):
    """float64 forward and the sum of |terms| per output, NCHW."""
    (sh, sw), (ph, pw) = stride, padding
    cout, c, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], cout, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            y += np.abs(patch[:, None] - w[None, :, :, i, j, None, None]).sum(2)
    return -y, y


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(2, 5, 9, 9, 7, 3, (1, 1), (1, 1)),
                                   (1, 16, 8, 10, 12, 3, (2, 2), (0, 1)),
                                   (3, 3, 5, 5, 4, 1, (1, 1), (0, 0))])
def test_float_forward_matches_float64(isa, shape):
    n, c, h, w, cout, k, s, p = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((cout, c, k, k)).astype(np.float32)
    with K.use_isa(isa):
        y = K.adder_conv2d_f32(x, wt, stride=s, padding=p, num_threads=2)
    ref, mag = np_adder_f64(x, wt, s, p)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= (c * k * k + 8) * U * mag)


def test_output_shape():
    assert K.adder_output_shape((14, 14), (3, 3), 1, 1) == (14, 14)
    assert K.adder_output_shape((15, 16), (3, 2), (2, 1), (0, 1)) == (7, 17)
    with pytest.raises(ValueError, match="too small"):
        K.adder_output_shape((2, 2), (3, 3))


X8 = np.zeros((1, 5, 5, 4), np.int8)
W8 = np.zeros((2, 3, 3, 4), np.int8)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((X8.astype(np.float32), W8), {}, TypeError, "dtype int8"),
        ((X8, W8.astype(np.uint8)), {}, TypeError, "dtype int8"),
        ((X8[:, ::2], W8), {}, ValueError, "C-contiguous"),
        ((X8[0], W8), {}, ValueError, "4-D"),
        ((X8, np.zeros((2, 3, 3, 5), np.int8)), {}, ValueError, "transpose"),
        ((X8, W8), {"pad_value_q": 128}, ValueError, "pad_value_q"),
        ((X8, W8), {"pad_value_q": -129}, ValueError, "pad_value_q"),
        ((X8, W8), {"multiplier": [1.0, 2.0, 3.0]}, ValueError, r"multiplier must have shape \(2,\)"),
        ((X8, W8), {"bias": np.ones(3)}, ValueError, "bias"),
        ((X8, W8), {"multiplier": None}, ValueError, "multiplier"),
        ((X8, W8), {"stride": 0}, ValueError, "stride"),
        ((X8, W8), {"padding": (1, 2, 3)}, ValueError, "padding"),
        ((X8, W8), {"num_threads": 0}, ValueError, "num_threads"),
        ((np.ascontiguousarray(X8[:, :2, :2]), W8), {}, ValueError, "too small"),
        ((list(X8), W8), {}, TypeError, "numpy.ndarray"),
    ],
)
def test_int8_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        K.adder_int8(*args, **kwargs)


def test_float_bad_arguments():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(TypeError, match="float32"):
        K.adder_conv2d_f32(x.astype(np.float64), np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        K.adder_conv2d_f32(x, np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.adder_conv2d_f32(x.transpose(0, 1, 3, 2), np.zeros((2, 3, 3, 3), np.float32))
