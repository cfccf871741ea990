"""Packing float tensors into sign bits (and back), NumPy in and out.

The bit convention of all of onebit: a packed bit is 1 for a negative value (``x < 0``, i.e. -1)
and 0 otherwise (+1), so ``sign(0) = +1``; ``-0.0`` and NaN also pack as +1. Element ``i`` of the
packed axis goes to uint32 word ``i // 32``, bit ``i % 32`` (least significant bit first); the
bits past the true length in the last word are 0. A dot product of two packed {+1, -1} vectors of
length ``n`` is then ``n - 2 * popcount(a XOR b)``.
"""

from __future__ import annotations

import math

import numpy as np

from onebit import _kernels
from onebit.kernels._checks import require_array, require_int, words_for

__all__ = [
    "pack_bits",
    "pack_conv_weight",
    "pack_nchw",
    "packed_words",
    "unpack_bits",
    "unpack_nhwc",
]


def packed_words(n: int) -> int:
    """Number of uint32 words that hold ``n`` bits: ``ceil(n / 32)``."""
    return words_for(require_int(n, "n", 1))


def _view(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _axis(axis: int, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an int in [{-ndim}, {ndim - 1}], got {axis!r}")
    return axis % ndim


def pack_bits(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pack the signs of a float32 array along ``axis`` into uint32 words.

    ``out[..., i // 32, ...]`` has bit ``i % 32`` set iff ``x[..., i, ...] < 0``; the axis of length
    ``n`` becomes ``ceil(n / 32)`` words, the other axes are unchanged, and tail bits are 0.

    Example: ``pack_bits(np.array([1., -2., 0., -0.5], np.float32))`` is ``array([10], uint32)``
    (bits 1 and 3).
    """
    x = require_array(x, "x", np.float32)
    ax = _axis(axis, x.ndim)
    outer, n, inner = _view(x.shape, ax)
    out_shape = x.shape[:ax] + (words_for(n),) + x.shape[ax + 1:]
    out = np.empty(out_shape, dtype=np.uint32)
    _kernels.pack_bits(x, outer, n, inner, out)
    return out


def unpack_bits(packed: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``n`` float32 values of +1 (bit 0) or -1 (bit 1) along ``axis``.

    ``packed.shape[axis]`` must be ``ceil(n / 32)``; bits past ``n`` are ignored.
    """
    packed = require_array(packed, "packed", np.uint32)
    n = require_int(n, "n", 1)
    ax = _axis(axis, packed.ndim)
    if packed.shape[ax] != words_for(n):
        raise ValueError(f"packed.shape[{axis}] must be ceil(n / 32) = {words_for(n)} for n = {n}, "
                         f"got {packed.shape[ax]} (shape {packed.shape})")
    outer, _, inner = _view(packed.shape, ax)
    out = np.empty(packed.shape[:ax] + (n,) + packed.shape[ax + 1:], dtype=np.float32)
    _kernels.unpack_bits(packed, outer, n, inner, out)
    return out


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """Pack conv weights ``[C_out, C_in, kh, kw]`` (PyTorch layout, float32) for :func:`bconv2d`.

    Returns uint32 ``[C_out, kh, kw, ceil(C_in / 32)]``: the sign bits of each filter tap, channels
    packed along the last axis (bit 1 iff w < 0). Any memory layout of ``w`` is accepted.
    """
    w = require_array(w, "w", np.float32, ndim=4, contiguous=False)
    return pack_bits(np.ascontiguousarray(w.transpose(0, 2, 3, 1)), axis=-1)


def pack_nchw(x: np.ndarray) -> np.ndarray:
    """Pack NCHW float32 activations ``[N, C, H, W]`` into packed NHWC ``[N, H, W, ceil(C / 32)]``.

    The input layout of :func:`bconv2d`; bit 1 iff x < 0. Any memory layout of ``x`` is accepted.
    """
    x = require_array(x, "x", np.float32, ndim=4, contiguous=False)
    # packing along C first and transposing the 32x smaller words beats transposing the floats
    return np.ascontiguousarray(pack_bits(np.ascontiguousarray(x), axis=1).transpose(0, 2, 3, 1))


def unpack_nhwc(packed: np.ndarray, channels: int) -> np.ndarray:
    """Unpack packed NHWC ``[N, H, W, ceil(C / 32)]`` into NCHW float32 ``[N, C, H, W]`` of +/-1."""
    packed = require_array(packed, "packed", np.uint32, ndim=4)
    return unpack_bits(np.ascontiguousarray(packed.transpose(0, 3, 1, 2)), channels, axis=1)
