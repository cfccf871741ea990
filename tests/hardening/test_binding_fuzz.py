"""Hypothesis fuzz over the arguments of ``onebit._kernels`` (the compiled module, without the
wrappers' checks): every call either runs within its arrays or raises ValueError / TypeError.

Sizes come from edge values (0, 1, word boundaries, 2^31 - 1, 2^31, 2^32, 2^62, ...) and arrays are
small, so a call gets through only if the bindings' overflow-checked sizes match the arrays; a
wrapped-around product would have let a kernel write far past them (a crash, not a failure).
Paddings stay small or are refused outright, so no call asks for a huge but valid scratch buffer.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onebit import _kernels as K

SIZES = st.one_of(st.integers(-1, 40),
                  st.sampled_from([63, 64, 65, 2**31 - 1, 2**31, 2**32, 2**37, 2**46, 2**62,
                                   2**63 - 1, -(2**63)]))
PADS = st.one_of(st.integers(-1, 3), st.sampled_from([2**31, 2**40, 2**62, 2**63 - 1]))
THREADS = st.sampled_from([1, 2, 0, -1])
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


def _arr(dtype, n: int) -> np.ndarray:
    a = np.zeros(n, dtype)
    if dtype == np.float32:
        a[::3] = -1.0
    return a


def _call(fn, *args) -> None:
    try:
        fn(*args)
    except (ValueError, TypeError):
        pass


@SETTINGS
@given(outer=SIZES, n=SIZES, inner=SIZES, nx=st.integers(0, 70), nw=st.integers(0, 8))
def test_pack_unpack(outer, n, inner, nx, nw):
    _call(K.pack_bits, _arr(np.float32, nx), outer, n, inner, _arr(np.uint32, nw))
    _call(K.unpack_bits, _arr(np.uint32, nw), outer, n, inner, _arr(np.float32, nx))


@SETTINGS
@given(m=SIZES, n=SIZES, k=SIZES, na=st.integers(0, 8), nb=st.integers(0, 8),
       nout=st.integers(0, 16), output=st.sampled_from(["int32", "float", "bits", "x"]),
       vec=st.integers(0, 5), threads=THREADS)
def test_bgemm(m, n, k, na, nb, nout, output, vec, threads):
    out = _arr({"int32": np.int32, "bits": np.uint32}.get(output, np.float32), nout)
    thresholds = _arr(np.float32, vec) if output == "bits" else None
    _call(K.bgemm, _arr(np.uint32, na), _arr(np.uint32, nb), m, n, k, output, None, None, None,
          thresholds, None, None, None, out, threads)
    try:
        rows = K.PreparedRows(_arr(np.uint32, nb), n, k)
    except (ValueError, TypeError):
        return
    _call(K.bgemm_prepared, _arr(np.uint32, na), rows, m, n, k, output, None, None, None,
          thresholds, None, None, None, out, threads)


@SETTINGS
@given(batch=SIZES, h=SIZES, w=SIZES, cin=SIZES, cout=SIZES, kh=SIZES, kw=SIZES, sh=SIZES,
       sw=SIZES, pads=st.tuples(PADS, PADS, PADS, PADS), pad_value=st.integers(-1, 3),
       nx=st.integers(0, 40), nw=st.integers(0, 20), nout=st.integers(0, 40), threads=THREADS)
def test_bconv2d(batch, h, w, cin, cout, kh, kw, sh, sw, pads, pad_value, nx, nw, nout, threads):
    args = (batch, h, w, cin, cout, kh, kw, sh, sw, *pads, pad_value, "int32", None, None, None,
            None, None, None, None, _arr(np.int32, nout), threads)
    _call(K.bconv2d, _arr(np.uint32, nx), _arr(np.uint32, nw), *args)
    try:
        filters = K.PreparedFilters(_arr(np.uint32, nw), cout, kh, kw, cin)
    except (ValueError, TypeError):
        return
    _call(K.bconv2d_prepared, _arr(np.uint32, nx), filters, *args)


_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4))


@SETTINGS
@given(xs=_SHAPES, ws=_SHAPES, ys=_SHAPES, strides=st.tuples(SIZES, SIZES),
       pads=st.tuples(PADS, PADS), pad_value=st.integers(-200, 200), threads=THREADS)
def test_adder(xs, ws, ys, strides, pads, pad_value, threads):
    x8, w8 = np.zeros(xs, np.int8), np.zeros(ws, np.int8)
    mult, bias = np.ones(ws[0], np.float32), np.zeros(ws[0], np.float32)
    _call(K.adder_int8_conv2d, x8, w8, pad_value, mult, bias, np.zeros(ys, np.float32),
          *strides, *pads, threads)
    xf, wf = np.zeros(xs, np.float32), np.zeros(ws, np.float32)
    _call(K.adder_conv2d_forward, xf, wf, np.zeros(ys, np.float32), *strides, *pads, threads)
    _call(K.adder_conv2d_backward, xf, wf, np.zeros(ys, np.float32), np.zeros(xs, np.float32),
          np.zeros(ws, np.float32), *strides, *pads, threads)


@SETTINGS
@given(xs=_SHAPES, ws=_SHAPES, ys=_SHAPES, kernel=st.tuples(SIZES, SIZES),
       strides=st.tuples(SIZES, SIZES), pads=st.tuples(PADS, PADS),
       dilation=st.tuples(SIZES, SIZES), ceil=st.booleans(), divisor=SIZES, threads=THREADS)
def test_float_ops(xs, ws, ys, kernel, strides, pads, dilation, ceil, divisor, threads):
    x, y = np.zeros(xs, np.float32), np.zeros(ys, np.float32)
    _call(K.float_maxpool2d, x, y, *kernel, *strides, *pads, *dilation, ceil, threads)
    _call(K.float_avgpool2d, x, y, *kernel, *strides, *pads, ceil, True, divisor, threads)
    filters = K.PreparedFloatConv(np.zeros(ws, np.float32))
    _call(K.float_conv2d, x, filters, None, 0.0, y, *strides, *pads, *dilation, threads)
