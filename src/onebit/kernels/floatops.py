"""Float32 NHWC kernels for the torch-free runtime: a direct conv2d for few input channels (a
network's float stem), max pooling and average pooling.

**Direct conv2d** (:func:`conv2d_f32`): cross-correlation as ``torch.nn.functional.conv2d``
(groups 1) on NHWC tensors,

``y[n, oh, ow, o] = bias[o] + sum_{i, j, c} x_pad[n, oh*sh - ph + i*dh, ow*sw - pw + j*dw, c]
* w[o, c, i, j]``

with ``x_pad`` reading ``pad_value`` (0: zero padding) outside the input. The AVX2 + FMA kernel
keeps a register tile of 3 output pixels x 32 output channels in 12 accumulators and, for each
tap, loads 4 filter vectors and broadcasts 3 input values, so no im2col matrix is built; it is
meant for few input channels (the RGB stem: 7x7/2, 3 -> 64), where a GEMM's K dimension is short
and the im2col copy costs as much as the product. Filters are prepared once
(:func:`prepare_float_conv_weight`). Summation: bias first, then the taps in (i, j, c) order, with
FMA (the reference twin rounds each product); results match PyTorch to float rounding.

**Pools** (:func:`maxpool2d_f32`, :func:`avgpool2d_f32`): ``torch.nn.MaxPool2d`` /
``torch.nn.AvgPool2d`` semantics (padding, dilation for max, ``ceil_mode``,
``count_include_pad``, ``divisor_override``), vectorized over channels. The max is
``max(a, b) = a if isnan(a) else (a if a > b else b)`` (NumPy's ``np.maximum``) folded over each
window row left to right, then over the rows top to bottom, so it is bit-identical to NumPy's
separable max. The average sums ``s = 0; s += x`` over the in-bounds taps, rows top to bottom and
each row left to right, then divides by the divisor (PyTorch's CPU order).

All run on ``num_threads`` threads (default :func:`onebit.kernels.default_num_threads`),
parallel over output rows, release the GIL, and use the plain reference kernels under
``ONEBIT_KERNELS=reference`` or ``use_isa("reference")``. No gradient: inference only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onebit import _kernels
from onebit.kernels._checks import (
    check_geometry,
    check_memory,
    pair,
    require_array,
    require_int,
    resolve_threads,
)

__all__ = [
    "MaxPoolWindow",
    "PreparedFloatConvWeight",
    "avgpool2d_f32",
    "conv2d_f32",
    "maxpool2d_f32",
    "pool_output_shape",
    "prepare_float_conv_weight",
]


def _threads(num_threads: Any) -> int:
    if type(num_threads) is int and num_threads >= 1:
        return num_threads
    return resolve_threads(num_threads)


def _window_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    num = size + 2 * p - (d * (k - 1) + 1)
    if num < 0:
        return 0
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _nhwc(x: Any, name: str = "x") -> np.ndarray:
    if isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype == np.float32 and \
            x.flags.c_contiguous and x.size:
        return x
    arr = require_array(x, name, np.float32, ndim=4, contiguous=False)
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous NHWC (use np.ascontiguousarray({name}); "
                         f"for an NCHW array use np.ascontiguousarray({name}.transpose(0, 2, 3, 1)))")
    return arr


class PreparedFloatConvWeight:
    """Float conv filters ``[C_out, C_in, kh, kw]`` prepared once for :func:`conv2d_f32`.

    Holds the plain copy the reference kernel reads and the blocked copy (32 output channels per
    block) the AVX2 kernel reads, so switching the ISA later (``use_isa``) still works.
    """

    def __init__(self, weight: np.ndarray) -> None:
        w = require_array(weight, "weight", np.float32, ndim=4, contiguous=False)
        self.shape: tuple[int, int, int, int] = tuple(int(d) for d in w.shape)  # type: ignore[assignment]
        self._impl = _kernels.PreparedFloatConv(np.ascontiguousarray(w))

    def __repr__(self) -> str:
        return f"PreparedFloatConvWeight(shape={self.shape})"


def prepare_float_conv_weight(weight: np.ndarray) -> PreparedFloatConvWeight:
    """Prepare float32 filters ``[C_out, C_in, kh, kw]`` (PyTorch's layout) once for repeated
    :func:`conv2d_f32` calls (a runtime does this at load time)."""
    return PreparedFloatConvWeight(weight)


def conv_geometry(x_shape: tuple[int, ...], kernel_hw: tuple[int, int], stride: Any,
                  padding: Any, dilation: Any) -> tuple[tuple[int, int], ...]:
    """``(stride, padding, dilation, (oh, ow))`` of a direct NHWC conv over ``x_shape``, each
    checked (ValueError naming the fix), PyTorch's output size rule with symmetric padding."""
    kh, kw = kernel_hw
    sh, sw = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dh, dw = pair(dilation, "dilation", 1)
    check_geometry({"stride": max(sh, sw), "padding": max(ph, pw), "dilation": max(dh, dw)})
    oh = _window_out(x_shape[1], kh, sh, ph, dh, False)
    ow = _window_out(x_shape[2], kw, sw, pw, dw, False)
    if oh < 1 or ow < 1:
        raise ValueError(f"the {x_shape[1]}x{x_shape[2]} input padded by ({ph}, {pw}) is too "
                         f"small for the {kh}x{kw} kernel (dilation ({dh}, {dw})); use a larger "
                         "input or more padding")
    return (sh, sw), (ph, pw), (dh, dw), (oh, ow)


@dataclass(frozen=True)
class MaxPoolWindow:
    """A max pool that :func:`conv2d_f32` or :func:`onebit.kernels.conv2d_int8` applies to its
    output before storing it:
    ``torch.nn.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode)`` (``stride`` None:
    the kernel size). The result is bit-identical to :func:`onebit.kernels.maxpool2d_f32` of the
    conv's output, without the whole conv output ever being written (each thread keeps the few
    conv rows its windows read)."""

    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False


def fused_pool(maxpool: Any, conv_hw: tuple[int, int]) -> tuple[tuple | None, tuple[int, int]]:
    """A conv's fused max pool as the kernels take it, ``(kh, kw, sh, sw, ph, pw, dh, dw,
    ceil_mode)`` (None without one), and the output's ``(H, W)``: the pool's over the conv's
    ``conv_hw``, or ``conv_hw`` itself. Checked (TypeError / ValueError naming the fix)."""
    if maxpool is None:
        return None, conv_hw
    if not isinstance(maxpool, MaxPoolWindow):
        raise TypeError("maxpool must be an onebit.kernels.MaxPoolWindow or None, got "
                        f"{type(maxpool).__name__}")
    m = maxpool
    *window, oh, ow = pool_window(conv_hw, m.kernel_size, m.stride, m.padding, m.dilation,
                                  m.ceil_mode)
    return (*window, bool(m.ceil_mode)), (oh, ow)


def conv_input(x: Any, layout: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A float32 conv input in ``layout`` ("nhwc" or "nchw"), checked, and its (N, H, W, C)."""
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    if layout == "nhwc":
        xa = _nhwc(x)
        return xa, tuple(xa.shape)
    xa = require_array(x, "x", np.float32, ndim=4, contiguous=False)
    if not xa.flags.c_contiguous:
        raise ValueError("x must be C-contiguous NCHW (use np.ascontiguousarray(x))")
    if xa.size == 0:
        raise ValueError(f"x must not be empty, got shape {xa.shape}")
    return xa, (xa.shape[0], xa.shape[2], xa.shape[3], xa.shape[1])


def conv2d_f32(x: np.ndarray, weight: np.ndarray | PreparedFloatConvWeight,
               bias: np.ndarray | None = None, *, stride: Any = 1, padding: Any = 0,
               dilation: Any = 1, pad_value: float = 0.0, layout: str = "nhwc",
               maxpool: Any = None, num_threads: int | None = None) -> np.ndarray:
    """Direct float conv2d: ``y = conv2d(x, weight, bias)`` as PyTorch's (groups 1), then
    ``maxpool`` if given; output NHWC.

    Args:
        x: float32 ``[N, H, W, C_in]``, C-contiguous (``[N, C_in, H, W]`` with
            ``layout="nchw"``, e.g. a model's input, read without a transposed copy).
        weight: float32 ``[C_out, C_in, kh, kw]`` or a :class:`PreparedFloatConvWeight`.
        bias: ``None`` or float32 ``[C_out]``.
        stride: an int or an ``(h, w)`` pair.
        padding: an int or an ``(h, w)`` pair (symmetric).
        dilation: an int or an ``(h, w)`` pair.
        pad_value: the value padded positions hold (0 is PyTorch's zero padding).
        layout: ``"nhwc"`` or ``"nchw"``, the layout of ``x``.
        maxpool: an :class:`onebit.kernels.MaxPoolWindow` applied to the output before it is
            stored (bit-identical to :func:`maxpool2d_f32` of the output), or None.
        num_threads: threads to use (default: :func:`onebit.kernels.default_num_threads`).

    Returns float32 ``[N, H_out, W_out, C_out]``, ``H_out = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``
    (the pool's output size with ``maxpool``).
    Fast for few input channels (the kernel has no im2col; K = kh * kw * C_in per output).
    """
    xa, shape = conv_input(x, layout)
    pw_ = weight if isinstance(weight, PreparedFloatConvWeight) else PreparedFloatConvWeight(weight)
    cout, cin, kh, kw = pw_.shape
    if cin != shape[3]:
        raise ValueError(f"weight must be [C_out, C_in, kh, kw] with the C_in = {shape[3]} "
                         f"channels of x ({layout.upper()}), got {pw_.shape}")
    (sh, sw), (ph, pwd), (dh, dw), (oh, ow) = conv_geometry(shape, (kh, kw), stride, padding,
                                                            dilation)
    b = None
    if bias is not None:
        b = require_array(bias, "bias", np.float32, ndim=1, contiguous=False)
        if b.shape != (cout,):
            raise ValueError(f"bias must have shape ({cout},) (one value per output channel), "
                             f"got {b.shape}")
        b = np.ascontiguousarray(b)
    try:
        pad = float(pad_value)
    except (TypeError, ValueError):
        raise TypeError(f"pad_value must be a number, got {type(pad_value).__name__}") from None
    check_memory((shape[0], oh, ow, cout), 4, "the output", "use less padding or a larger stride")
    pool, (oh, ow) = fused_pool(maxpool, (oh, ow))
    out = np.empty((shape[0], oh, ow, cout), dtype=np.float32)
    _kernels.float_conv2d(xa, pw_._impl, b, pad, out, sh, sw, ph, pwd, dh, dw,
                          _threads(num_threads), layout == "nchw", pool)
    return out


def _pool_args(x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
               ceil_mode: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    xa = _nhwc(x)
    return xa, pool_window(xa.shape[1:3], kernel_size, stride, padding, dilation, ceil_mode)


def pool_window(in_hw: tuple[int, int], kernel_size: Any, stride: Any, padding: Any,
                dilation: Any, ceil_mode: Any) -> tuple[int, ...]:
    """A pool's window over an ``in_hw`` input, checked (PyTorch's rules, ValueError naming the
    fix): ``(kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)``; ``stride`` None is the kernel size."""
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dh, dw = pair(dilation, "dilation", 1)
    check_geometry({"kernel_size": max(kh, kw), "stride": max(sh, sw), "padding": max(ph, pw),
                    "dilation": max(dh, dw)})
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    if 2 * ph > dh * (kh - 1) + 1 or 2 * pw > dw * (kw - 1) + 1:
        raise ValueError(f"padding ({ph}, {pw}) must be at most half the effective kernel size "
                         f"({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1}), as in PyTorch; use less "
                         "padding")
    h, w = int(in_hw[0]), int(in_hw[1])
    oh = _window_out(h, kh, sh, ph, dh, bool(ceil_mode))
    ow = _window_out(w, kw, sw, pw, dw, bool(ceil_mode))
    if oh < 1 or ow < 1:
        raise ValueError(f"the {h}x{w} input padded by ({ph}, {pw}) is too "
                         f"small for the {kh}x{kw} window; use a larger input or more padding")
    return kh, kw, sh, sw, ph, pw, dh, dw, oh, ow


def pool_output_shape(in_hw: tuple[int, int], kernel_size: Any, stride: Any = None,
                      padding: Any = 0, dilation: Any = 1,
                      ceil_mode: bool = False) -> tuple[int, int]:
    """``(H_out, W_out)`` of a pool, PyTorch's rule (``ceil_mode`` included; stride defaults to
    the kernel size); may be ``<= 0`` when the window does not fit."""
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dh, dw = pair(dilation, "dilation", 1)
    return (_window_out(int(in_hw[0]), kh, sh, ph, dh, bool(ceil_mode)),
            _window_out(int(in_hw[1]), kw, sw, pw, dw, bool(ceil_mode)))


def maxpool2d_f32(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                  dilation: Any = 1, ceil_mode: bool = False, *,
                  num_threads: int | None = None) -> np.ndarray:
    """``torch.nn.MaxPool2d`` on NHWC float32: ``y[n, oh, ow, c] = max`` over the window's
    in-bounds taps (padding is -inf and never wins). ``stride`` defaults to ``kernel_size``;
    ``padding`` must be at most half the effective kernel ``dilation * (k - 1) + 1``.

    NaN propagates; the result is bit-identical to folding ``np.maximum`` over each window row,
    then over the rows. Returns float32 ``[N, H_out, W_out, C]``.
    """
    xa, (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow) = _pool_args(x, kernel_size, stride, padding,
                                                              dilation, ceil_mode)
    out = np.empty((xa.shape[0], oh, ow, xa.shape[3]), dtype=np.float32)
    _kernels.float_maxpool2d(xa, out, kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode),
                             _threads(num_threads))
    return out


def avgpool2d_f32(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                  ceil_mode: bool = False, count_include_pad: bool = True,
                  divisor_override: int | None = None, *,
                  num_threads: int | None = None) -> np.ndarray:
    """``torch.nn.AvgPool2d`` on NHWC float32: ``y = (sum of the window's in-bounds taps) /
    divisor``, the divisor being ``divisor_override`` if given, else the window size clipped to
    the padded input (``count_include_pad=True``) or to the input (``False``).

    The sum runs ``s = 0; s += x`` over rows top to bottom, each row left to right (PyTorch's CPU
    order), then one division. Returns float32 ``[N, H_out, W_out, C]``.
    """
    xa, (kh, kw, sh, sw, ph, pw, _, _, oh, ow) = _pool_args(x, kernel_size, stride, padding, 1,
                                                            ceil_mode)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {type(count_include_pad).__name__}")
    divisor = 0 if divisor_override is None else require_int(divisor_override,
                                                             "divisor_override", 1)
    out = np.empty((xa.shape[0], oh, ow, xa.shape[3]), dtype=np.float32)
    _kernels.float_avgpool2d(xa, out, kh, kw, sh, sw, ph, pw, bool(ceil_mode),
                             bool(count_include_pad), divisor, _threads(num_threads))
    return out
