"""Float ops of the runtime, on NHWC float32 feature maps (``[N, F]`` for vectors): NumPy, and
onebit's compiled float kernels (AdderNet, the direct conv2d, max and average pooling).

Each function is pure: it allocates its output and never writes to its inputs or to shared state,
so one model can run from several threads at once. Convolutions with few input channels (a float
stem, groups 1, ``C_in <= DIRECT_CONV_MAX_CHANNELS``) and 1x1 convolutions run onebit's direct
conv kernel (:func:`onebit.kernels.conv2d_f32`, chosen by :func:`uses_direct_conv`, called by the
runtime's conv2d op), as do dense layers (:func:`linear`); :func:`conv2d` runs the others by
im2col (a strided view of the padded input, copied in chunks of bounded size) and one matmul.
Keeping BLAS out of the common ops matters beyond speed: a multi-threaded BLAS keeps its worker
threads spinning for a while after each call, taking the cores from onebit's kernels. Pools run onebit's kernels whenever PyTorch
would accept the window (padding at most half the kernel), NumPy otherwise. PyTorch's semantics are
followed for output sizes, ``ceil_mode``, ``count_include_pad`` and adaptive windows.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from onebit import kernels

__all__ = [
    "adaptive_pool2d",
    "adder_conv2d",
    "adder_int8",
    "avgpool2d",
    "conv2d",
    "conv_weight_matrix",
    "direct_conv_weight",
    "flatten",
    "kbit",
    "maxpool2d",
    "window_out",
]

_CHUNK_ELEMENTS = 1 << 19  # im2col rows are built in chunks of ~2 MB (they stay in cache)
DIRECT_CONV_MAX_CHANNELS = 4  # conv2d runs the direct kernel up to this many input channels


def window_out(size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a window op along one axis (PyTorch's rule, ceil_mode included)."""
    num = size + 2 * p - (d * (k - 1) + 1)
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def conv_weight_matrix(weight: np.ndarray) -> np.ndarray:
    """``[O, C, kh, kw]`` -> ``[kh * kw * C, O]``, the (kh, kw, C) order of :func:`_windows`."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, o), dtype=np.float32)


def _pad(x: np.ndarray, top: int, bottom: int, left: int, right: int, value: float) -> np.ndarray:
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _padded(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            padding: tuple[int, int], dilation: tuple[int, int], pad_value: float,
            out_hw: tuple[int, int]) -> np.ndarray:
    """``x`` padded by ``padding`` (and on the bottom/right as far as ceil_mode windows reach)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    need_h, need_w = (ho - 1) * sh + dh * (kh - 1) + 1, (wo - 1) * sw + dw * (kw - 1) + 1
    h, w = x.shape[1], x.shape[2]
    return np.ascontiguousarray(
        _pad(x, ph, max(0, need_h - h - ph), pw, max(0, need_w - w - pw), pad_value))


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int], dilation: tuple[int, int], pad_value: float,
             out_hw: tuple[int, int]) -> np.ndarray:
    """A strided view of the padded input, no copy beyond the pad: ``[N, Ho, Wo, kh, kw * C]``
    when the window's columns are adjacent (dilation 1 along W: each (kw, C) run is contiguous
    memory, which makes the im2col copy fast), else ``[N, Ho, Wo, kh, kw, C]``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    xp = _padded(x, kernel, stride, padding, dilation, pad_value, out_hw)
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    if dw == 1:
        return as_strided(xp, (n, ho, wo, kh, kw * c), (s_n, sh * s_h, sw * s_w, dh * s_h, s_c),
                          writeable=False)
    view = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
    view = view[:, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw, :, ::dh, ::dw]
    return view.transpose(0, 1, 2, 4, 5, 3)


def _taps(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
          padding: tuple[int, int], dilation: tuple[int, int], pad_value: float,
          out_hw: tuple[int, int]):
    """Yield, for every kernel tap (i, j), the strided ``[N, Ho, Wo, C]`` slice it sees."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    xp = _padded(x, kernel, stride, padding, dilation, pad_value, out_hw)
    for i in range(kh):
        for j in range(kw):
            yield xp[:, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]


def _row_chunks(n: int, ho: int, row_elements: int):
    """Yield (sample, first output row, end row) chunks of bounded im2col size."""
    rows = max(1, _CHUNK_ELEMENTS // max(1, row_elements))
    for i in range(n):
        for r in range(0, ho, rows):
            yield i, r, min(ho, r + rows)


def uses_direct_conv(cin_per_group: int, kernel: tuple[int, int], groups: int) -> bool:
    """Whether :func:`conv2d` runs the direct conv kernel: groups 1 and at most
    ``DIRECT_CONV_MAX_CHANNELS`` input channels, or a 1x1 kernel of any width (the same work as
    a matmul, as fast as single-threaded BLAS and parallel on onebit's threads)."""
    return groups == 1 and (cin_per_group <= DIRECT_CONV_MAX_CHANNELS or tuple(kernel) == (1, 1))


def direct_conv_weight(weight: np.ndarray, groups: int) -> kernels.PreparedFloatConvWeight | None:
    """``weight`` ``[O, C/g, kh, kw]`` prepared for the direct conv kernel if :func:`conv2d` should
    run it (:func:`uses_direct_conv`), else ``None``."""
    if not uses_direct_conv(weight.shape[1], tuple(weight.shape[2:]), groups):
        return None
    return kernels.prepare_float_conv_weight(np.ascontiguousarray(weight, dtype=np.float32))


def conv2d(x: np.ndarray, wmat: np.ndarray | None, bias: np.ndarray | None,
           kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int], groups: int, pad_value: float) -> np.ndarray:
    """Float cross-correlation by im2col and one matmul per group, NHWC in and out; ``wmat`` is
    ``conv_weight_matrix(w)`` per group stacked as ``[groups, kh*kw*C/g, O/g]``. The input is
    padded with ``pad_value``. (The runtime runs the convs of :func:`uses_direct_conv` on
    :func:`onebit.kernels.conv2d_f32` instead.)"""
    n, h, w, c = x.shape
    kh, kw = kernel
    ho = window_out(h, kh, stride[0], padding[0], dilation[0])
    wo = window_out(w, kw, stride[1], padding[1], dilation[1])
    o_g = wmat.shape[2]
    out = np.empty((n, ho, wo, groups * o_g), dtype=np.float32)
    cg = c // groups
    for g in range(groups):
        xg = x if groups == 1 else x[..., g * cg:(g + 1) * cg]
        view = _windows(xg, kernel, stride, padding, dilation, pad_value, (ho, wo))
        k = kh * kw * cg
        for i, r0, r1 in _row_chunks(n, ho, wo * k):
            cols = view[i, r0:r1].reshape(-1, k)
            if groups == 1:  # the product goes straight into the output, bias added in cache
                rows = out[i, r0:r1].reshape(-1, o_g)
                np.matmul(cols, wmat[0], out=rows)
                if bias is not None:
                    rows += bias
            else:
                out[i, r0:r1, :, g * o_g:(g + 1) * o_g] = (cols @ wmat[g]).reshape(r1 - r0, wo,
                                                                                  o_g)
    if bias is not None and groups > 1:
        out += bias
    return out


def linear_weight(weight: np.ndarray) -> kernels.PreparedFloatConvWeight:
    """A dense layer's ``[out_features, in_features]`` weight prepared for :func:`linear`."""
    w = np.ascontiguousarray(weight, dtype=np.float32)
    return kernels.prepare_float_conv_weight(w.reshape(w.shape[0], w.shape[1], 1, 1))


def linear(x: np.ndarray, weight: kernels.PreparedFloatConvWeight, bias: np.ndarray | None,
           num_threads: int | None = None) -> np.ndarray:
    """``x @ W.T + b`` for ``x`` ``[N, F]``, as a 1x1 convolution of a 1x1 image on onebit's
    direct kernel (``weight`` from :func:`linear_weight`)."""
    n, f = x.shape
    b = None if bias is None else np.asarray(bias, dtype=np.float32)
    y = kernels.conv2d_f32(np.ascontiguousarray(x, dtype=np.float32).reshape(n, 1, 1, f), weight,
                           b, num_threads=num_threads)
    return y.reshape(n, -1)


def adder_conv2d(x: np.ndarray, weight: np.ndarray, stride: tuple[int, int],
                 padding: tuple[int, int], num_threads: int | None) -> np.ndarray:
    """AdderNet: ``Y[n, h, w, o] = -sum_{i, j, c} |X_pad[n, h*s+i, w*s+j, c] - F[o, c, i, j]|``
    (zero padding; Chen et al., CVPR 2020), NHWC in and out, on onebit's float adder kernel."""
    y = kernels.adder_conv2d_f32(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), weight,
                                 stride=stride, padding=padding, num_threads=num_threads)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def adder_int8(x: np.ndarray, weight_q: np.ndarray, scale: np.float32, stride: tuple[int, int],
               padding: tuple[int, int], multiplier: np.ndarray, bias: np.ndarray,
               num_threads: int | None) -> np.ndarray:
    """Int8 AdderNet: ``x_q = clip(rint(x / scale), -127, 127)`` (the scale the filters share),
    then ``-sum |x_q - weight_q| * multiplier + bias`` on onebit's exact int8 SAD kernel."""
    x_q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return kernels.adder_int8(x_q, weight_q, stride=stride, padding=padding,
                              multiplier=multiplier, bias=bias, num_threads=num_threads)


def _torch_window(kernel: tuple[int, int], padding: tuple[int, int],
                  dilation: tuple[int, int]) -> bool:
    """Whether PyTorch accepts the padding (at most half the effective kernel): the windows
    onebit's pool kernels take."""
    return all(2 * p <= d * (k - 1) + 1 for k, p, d in zip(kernel, padding, dilation))


def maxpool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], dilation: tuple[int, int], ceil_mode: bool,
              num_threads: int | None = None) -> np.ndarray:
    """Max over each window; padding never wins (it is -inf), as in ``torch.nn.MaxPool2d``.
    onebit's kernel and the NumPy fallback give identical bits."""
    n, h, w, c = x.shape
    if _torch_window(kernel, padding, dilation) and x.dtype == np.float32 and x.size:
        return kernels.maxpool2d_f32(np.ascontiguousarray(x), kernel, stride, padding, dilation,
                                     bool(ceil_mode), num_threads=num_threads)
    ho = window_out(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = window_out(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    xp = _padded(x, kernel, stride, padding, dilation, -np.inf, (ho, wo))
    # separable: the max over each window's columns, then over its rows (max is exact in any
    # order, so this equals the max over all kh * kw taps, with ~(kh + kw) / (kh * kw) the work)
    rows = None
    for j in range(kw):
        tap = xp[:, :, j * dw:j * dw + (wo - 1) * sw + 1:sw]
        rows = tap.copy() if rows is None else np.maximum(rows, tap, out=rows)
    out = None
    for i in range(kh):
        tap = rows[:, i * dh:i * dh + (ho - 1) * sh + 1:sh]
        out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def _avg_divisors(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float32)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float32)


def avgpool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], ceil_mode: bool, count_include_pad: bool,
              divisor_override: int | None, num_threads: int | None = None) -> np.ndarray:
    """Mean over each window with ``torch.nn.AvgPool2d``'s divisor rule (onebit's kernel sums in
    PyTorch's order; the NumPy fallback agrees to float rounding)."""
    n, h, w, c = x.shape
    if _torch_window(kernel, padding, (1, 1)) and x.dtype == np.float32 and x.size and \
            (divisor_override is None or divisor_override >= 1):
        return kernels.avgpool2d_f32(np.ascontiguousarray(x), kernel, stride, padding,
                                     bool(ceil_mode), bool(count_include_pad), divisor_override,
                                     num_threads=num_threads)
    ho = window_out(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    wo = window_out(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    total = None
    for tap in _taps(x, kernel, stride, padding, (1, 1), 0.0, (ho, wo)):
        total = tap.copy() if total is None else np.add(total, tap, out=total)
    if divisor_override is not None:
        return total / np.float32(divisor_override)
    dh = _avg_divisors(h, ho, kernel[0], stride[0], padding[0], count_include_pad)
    dw = _avg_divisors(w, wo, kernel[1], stride[1], padding[1], count_include_pad)
    return total / (dh[:, None] * dw[None, :])[None, :, :, None]


def adaptive_pool2d(x: np.ndarray, output_size: tuple[int, int], mode: str) -> np.ndarray:
    """Adaptive average or max pooling: window ``i`` spans ``[floor(i*H/oh), ceil((i+1)*H/oh))``.

    Where the windows tile the input (``H % oh == 0`` and ``W % ow == 0``, e.g. a global pool)
    they are plain pool windows and onebit's pool kernels run them (one thread: the input is
    small); otherwise both reductions are separable, so rows are reduced first, then columns
    (oh + ow slices).
    """
    n, h, w, c = x.shape
    oh, ow = output_size
    if h % oh == 0 and w % ow == 0 and x.dtype == np.float32 and x.size:
        # equal windows that tile the input: the plain pool kernels (a global average pool is
        # one 7x7 window on ResNet-18, where NumPy's two reductions cost several times more)
        window = (h // oh, w // ow)
        if mode == "avg":
            return kernels.avgpool2d_f32(np.ascontiguousarray(x), window, window, 0,
                                         num_threads=1)
        return kernels.maxpool2d_f32(np.ascontiguousarray(x), window, window, 0, num_threads=1)
    reduce = np.mean if mode == "avg" else np.max
    for axis, out in ((1, output_size[0]), (2, output_size[1])):
        size = x.shape[axis]
        if out == 1:
            x = reduce(x, axis=axis, keepdims=True)
            continue
        if size % out == 0:
            shape = x.shape[:axis] + (out, size // out) + x.shape[axis + 1:]
            x = reduce(x.reshape(shape), axis=axis + 1)
            continue
        parts = []
        for i in range(out):
            lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
            parts.append(reduce(np.take(x, np.arange(lo, hi), axis=axis), axis=axis,
                                keepdims=True))
        x = np.concatenate(parts, axis=axis)
    return np.ascontiguousarray(x, dtype=np.float32)


def flatten(x: np.ndarray) -> np.ndarray:
    """``torch.flatten(x, 1)`` of the NCHW tensor that NHWC ``x`` stores: C-major order."""
    if x.ndim == 2:
        return x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(x.shape[0], -1)


def kbit(x: np.ndarray, bits: int) -> np.ndarray:
    """k-bit uniform quantizer on [-1, 1] (XNOR-Net's extension):
    ``q_k(x) = 2 * (round((2^k - 1) * (clip(x, -1, 1) + 1) / 2) / (2^k - 1) - 1/2)``;
    ``round(v) = floor(v + 1/2)`` (half up); ``k = 1`` is ``sign`` with ``sign(0) = +1``, computed
    directly (the formula would round tiny negatives up to +1), as the training quantizer does."""
    if bits == 1:
        return np.where(x < 0, np.float32(-1), np.float32(1))  # NaN: +1, as the packed sign
    levels = np.float32(2 ** bits - 1)
    v = levels * (np.clip(x, np.float32(-1), np.float32(1)) + np.float32(1)) / np.float32(2)
    y = np.floor(v + np.float32(0.5))
    return (np.float32(2) * (y / levels - np.float32(0.5))).astype(np.float32)
