"""AdderNet kernels for inference (NumPy API, torch-free): int8 SAD and the float forward.

**Int8** (:func:`adder_int8`). AdderNet's output ``Y = -sum |X - F|`` (Chen et al., "AdderNet: Do
We Really Need Multiplications in Deep Learning?", CVPR 2020) needs no multiplication, and with one
scale ``s`` shared by inputs and filters (``X ~ s * X_q``, ``F ~ s * F_q``, int8) every term stays
exact up to that scale: ``|X - F| ~ s * |X_q - F_q|``. The kernel computes, per output position and
filter, the exact integer ``sad = sum_{i,j,c} |X_q - F_q|`` with (V)PSADBW (both operands XORed
with 0x80 so that unsigned |a - b| equals the signed one; 32 differences per AVX2 instruction,
register-blocked 2 positions x 4 filters) and writes ``fma(-sad, multiplier[t], bias[t])`` in
float32. ``multiplier = s`` gives ``-sum |X - F|``; a BatchNorm folds into ``multiplier`` and
``bias`` (see :func:`onebit.deploy.adder_int8.quantize_adder_layer`, which also calibrates
``s``).

Padding: AdderNet pads X with zeros, so a padded tap contributes ``|0 - F|``, not nothing. The
kernel reads a padded position as ``pad_value_q`` in every channel (0 = the quantized zero of a
symmetric scale), exactly like the float layer's zero padding.

**Float** (:func:`adder_conv2d_f32`): the forward of the training op, for running an unquantized
AdderNet without torch. Both run the best ISA of this CPU (``ONEBIT_KERNELS=reference`` or
:func:`onebit.kernels.use_isa` selects the plain reference twins) on ``num_threads`` threads and
release the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = ["adder_conv2d_f32", "adder_int8", "adder_output_shape"]


def _out_hw(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int) -> tuple[int, int]:
    check_geometry({"stride": max(sh, sw), "padding": max(ph, pw)})
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"the {h}x{w} input padded by ({ph}, {pw}) is too small for the "
                         f"{kh}x{kw} kernel; use a larger input or more padding")
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _threads(num_threads: Any) -> int:
    if type(num_threads) is int and num_threads >= 1:
        return num_threads
    return resolve_threads(num_threads)


_BROADCAST_CACHE: dict[tuple[float, int], np.ndarray] = {}


def _channel_vector(value: Any, name: str, length: int) -> np.ndarray:
    """A number (broadcast) or ``[length]`` numbers as a contiguous float32 vector."""
    if type(value) in (int, float):
        key = (float(value), length)
        vec = _BROADCAST_CACHE.get(key)
        if vec is None:  # read-only and reused: a layer passes the same scalar on every call
            vec = np.full(length, value, dtype=np.float32)
            vec.flags.writeable = False
            if len(_BROADCAST_CACHE) < 256:
                _BROADCAST_CACHE[key] = vec
        return vec
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or a 1-D array of {length} numbers: {exc}") from None
    if arr.ndim == 0:
        return np.full(length, arr, dtype=np.float32)
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) (one value per output channel) or be "
                         f"a number, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def adder_output_shape(in_hw: Sequence[int], kernel_hw: Sequence[int], stride: Any = 1,
                       padding: Any = 0) -> tuple[int, int]:
    """``(H_out, W_out) = ((H + 2 p - k) // s + 1, ...)``; raises ValueError if the kernel does not
    fit the padded input."""
    sh, sw = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    return _out_hw(int(in_hw[0]), int(in_hw[1]), int(kernel_hw[0]), int(kernel_hw[1]), sh, sw, ph,
                   pw)


def adder_int8(x_q: np.ndarray, w_q: np.ndarray, *, stride: Any = 1, padding: Any = 0,
               pad_value_q: int = 0, multiplier: Any = 1.0, bias: Any = None,
               num_threads: int | None = None) -> np.ndarray:
    """Int8 AdderNet layer: ``y[n, oh, ow, t] = fma(-sad, multiplier[t], bias[t])`` (float32, NHWC).

    Args:
        x_q: int8 ``[N, H, W, C]`` (NHWC), the quantized input ``round(X / s)``.
        w_q: int8 ``[C_out, kh, kw, C]``, the quantized filters ``round(F / s)`` (same ``s``).
        stride: an int or an ``(h, w)`` pair, as the float layer's.
        padding: an int or an ``(h, w)`` pair, as the float layer's.
        pad_value_q: int8 value a padded position holds in every channel (0 for AdderNet).
        multiplier: scalar or ``[C_out]`` float32; ``s`` (times a folded BatchNorm scale).
        bias: ``None`` or scalar or ``[C_out]`` float32 added after the multiplication.
        num_threads: threads to use (default: :func:`onebit.kernels.default_num_threads`).

    ``sad = sum_{i,j,c} |x_q[n, oh*sh - ph + i, ow*sw - pw + j, c] - w_q[t, i, j, c]|`` is exact.
    """
    x = require_array(x_q, "x_q", np.int8, ndim=4)
    w = require_array(w_q, "w_q", np.int8, ndim=4)
    if w.shape[3] != x.shape[3]:
        raise ValueError(f"w_q must be [C_out, kh, kw, C] with the C = {x.shape[3]} channels of x_q "
                         f"(NHWC), got {w.shape}; transpose NCHW filters with w.transpose(0, 2, 3, 1)")
    sh, sw = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    pad = pad_value_q if type(pad_value_q) is int else require_int(pad_value_q, "pad_value_q", -128)
    if not -128 <= pad <= 127:
        raise ValueError(f"pad_value_q must be an int8 value in [-128, 127], got {pad}")
    cout = w.shape[0]
    oh, ow = _out_hw(x.shape[1], x.shape[2], w.shape[1], w.shape[2], sh, sw, ph, pw)
    if multiplier is None:
        raise ValueError("multiplier must be a number or a [C_out] array (the shared scale s)")
    mult = _channel_vector(multiplier, "multiplier", cout)
    b = _channel_vector(0.0 if bias is None else bias, "bias", cout)
    # the kernel lays the padded input out as bytes before it runs
    check_memory((x.shape[0], x.shape[1] + 2 * ph, x.shape[2] + 2 * pw, x.shape[3]), 1,
                 "the padded input", "use less padding")
    check_memory((x.shape[0], oh, ow, cout), 4, "the output", "use less padding or a larger stride")
    out = np.empty((x.shape[0], oh, ow, cout), dtype=np.float32)
    _kernels.adder_int8_conv2d(x, w, pad, mult, b, out, sh, sw, ph, pw, _threads(num_threads))
    return out


def adder_conv2d_f32(x: np.ndarray, weight: np.ndarray, *, stride: Any = 1, padding: Any = 0,
                     num_threads: int | None = None) -> np.ndarray:
    """Float AdderNet forward, NCHW: ``y[n, t, oh, ow] = -sum_{c,i,j} |x_pad - weight[t, c, i, j]|``.

    ``x`` float32 ``[N, C, H, W]``, ``weight`` float32 ``[C_out, C, kh, kw]``, zero padding (a padded
    tap adds ``|0 - F|``). Returns float32 ``[N, C_out, H_out, W_out]``.
    """
    xa = require_array(x, "x", np.float32, ndim=4)
    wa = require_array(weight, "weight", np.float32, ndim=4)
    if wa.shape[1] != xa.shape[1]:
        raise ValueError(f"weight must be [C_out, C, kh, kw] with the C = {xa.shape[1]} channels of "
                         f"x (NCHW), got {wa.shape}")
    sh, sw = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    oh, ow = _out_hw(xa.shape[2], xa.shape[3], wa.shape[2], wa.shape[3], sh, sw, ph, pw)
    check_memory((xa.shape[0], wa.shape[0], oh, ow), 4, "the output",
                 "use less padding or a larger stride")
    out = np.empty((xa.shape[0], wa.shape[0], oh, ow), dtype=np.float32)
    _kernels.adder_conv2d_forward(xa, wa, out, sh, sw, ph, pw, _threads(num_threads))
    return out
