"""Binary ops of the runtime on onebit's compiled kernels: sign packing, binary conv and dense.

Operands follow onebit's bit convention (bit 1 for -1, i.e. x < 0, so sign(0) = +1; channels LSB
first in uint32 words; tail bits 0). The kernels (:mod:`onebit.kernels`) compute the exact
integer accumulator ``acc`` (+/-1 dot product; padded taps count as ``pad_value``) and one output
transform, both described in :mod:`onebit.kernels.binary`:

* float: ``y = acc * multiplier[o] + bias[o]`` (``acc * K[n, h, w] * multiplier[o] + bias[o]``
  with XNOR-Net's map K);
* bits: bit 1 (value -1) iff ``acc < thresholds[o]``, or iff ``acc > thresholds[o]`` where
  ``flip[o]`` (a negative BatchNorm scale reverses the comparison).

Each graph node's tensors are turned into kernel arguments once (:class:`BinaryArgs`); a
binary conv step calls its kernel through a :class:`BConvKernel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onebit import _kernels, kernels
from onebit.kernels._checks import resolve_threads
from onebit.kernels.binary import PAD_CODES

__all__ = ["BConvKernel", "BinaryArgs", "blinear", "pack_signs", "unpack_signs", "xnor_k_map"]


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Pack ``sign(x)`` along the last axis: ``[..., C]`` float -> ``[..., ceil(C/32)]`` uint32."""
    return kernels.pack_bits(np.ascontiguousarray(x, dtype=np.float32), axis=-1)


def unpack_signs(bits: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_signs`: ``[..., Cw]`` uint32 -> ``[..., n]`` float32 of +/-1."""
    return kernels.unpack_bits(np.ascontiguousarray(bits), n, axis=-1)


def xnor_k_map(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> np.ndarray:
    """XNOR-Net's ``K = A (*) k``: ``A = mean_c |x|`` box-filtered with the conv's window
    (zero padding counted, i.e. divided by kh*kw everywhere). NHWC ``x`` -> ``[N, Ho, Wo]``."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    # the channel sums by einsum (NumPy's mean over a short last axis is several times slower;
    # a BLAS product would wake BLAS threads), then / C; rounding differs from torch's in order
    a = np.einsum("ij->i", np.abs(x).reshape(-1, c)) / np.float32(c)
    padded = np.zeros((n, h + 2 * ph, w + 2 * pw), dtype=np.float32)
    padded[:, ph:ph + h, pw:pw + w] = a.reshape(n, h, w)
    a = padded
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    k = np.zeros((n, ho, wo), dtype=np.float32)
    for i in range(kh):  # the box filter: kh * kw shifted slices of one channel
        for j in range(kw):
            k += a[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw]
    return k / np.float32(kh * kw)


@dataclass(frozen=True)
class BinaryArgs:
    """Kernel arguments of one bconv2d / blinear node, prepared once at load time (read-only)."""

    weight_bits: Any  # packed uint32 filters; for a conv, kernels.PreparedConvWeight
    n: int  # in_channels (conv) or in_features (dense)
    output: str
    transform: dict[str, Any]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pad_value: float = 0.0
    xnor_k: bool = False

    @classmethod
    def from_node(cls, attrs: dict[str, Any], tensors: dict[str, np.ndarray]) -> BinaryArgs:
        if attrs["output"] == "float":
            transform = {"multiplier": tensors["multiplier"], "bias": tensors["bias"]}
        else:
            transform = {"thresholds": tensors["thresholds"].astype(np.float32),
                         "flip": tensors["flip"].astype(bool)}
        conv = {}
        if "kernel" in attrs:
            conv = {"kernel": tuple(attrs["kernel"]), "stride": tuple(attrs["stride"]),
                    "padding": tuple(attrs["padding"]), "pad_value": float(attrs["pad_value"]),
                    "xnor_k": attrs["xnor_k"]}
        bits = np.ascontiguousarray(tensors["weight_bits"])
        if conv:  # filters laid out for the active kernel once, not on every call
            n = attrs["in_channels"]
            bits = kernels.prepare_conv_weight(bits, in_channels=n)
        else:
            n = attrs["in_features"]
            conv = {"xnor_k": bool(attrs.get("xnor_k", False))}
        return cls(bits, n, attrs["output"], transform, **conv)


def blinear(x: np.ndarray, args: BinaryArgs, num_threads: int | None) -> np.ndarray:
    """Binary dense layer: ``acc = sign(x) . sign(W_o)`` per output, then the output transform
    (with ``xnor_k``, XNOR-Net's ``beta = mean |x|`` of each input row scales its outputs)."""
    beta = None
    if args.xnor_k:
        beta = np.einsum("ij->i", np.abs(x)) / np.float32(x.shape[1])
    bits = x if x.dtype == np.uint32 else pack_signs(x)
    return kernels.bgemm(bits, args.weight_bits, args.n, output=args.output, row_scale=beta,
                         num_threads=num_threads, **args.transform)



class BConvKernel:
    """One compiled binary conv step: ``fn(xs, num_threads)`` with ``xs = [input]``, or
    ``[input, residual]`` for a conv fused with the residual add after it (``residual=True``);
    ``sign_bits`` also returns the packed signs of a float output (``(y, bits)``).

    The node was checked when its graph was validated, so every argument of the compiled kernel
    is resolved here once and each call goes straight to it (no per-call checks). :meth:`tune`
    picks the layer's fastest popcount kernel for its input size (identical results).
    """

    def __init__(self, args: BinaryArgs, residual: bool = False, sign_bits: bool = False) -> None:
        self.args = args
        self.residual, self.sign_bits = residual, sign_bits
        prepared = args.weight_bits
        self._impl = prepared._impl
        self.out_channels, self.kh, self.kw = prepared.shape[0], prepared.shape[1], prepared.shape[2]
        vec = (lambda v: None if v is None else np.ascontiguousarray(v, dtype=np.float32))
        t = args.transform
        self._mult, self._bias, self._th = (vec(t.get(k)) for k in ("multiplier", "bias",
                                                                    "thresholds"))
        flip = t.get("flip")
        self._flip = None if flip is None else np.ascontiguousarray(flip, dtype=np.bool_).view(np.uint8)
        self._pad_code = PAD_CODES[float(args.pad_value)]
        self._words = (self.out_channels + 31) // 32
        self.tuning: dict[str, float] = {}

    def tune(self, in_hw: tuple[int, int], num_threads: int | None) -> dict[str, float]:
        """Time the candidate kernels on this layer's geometry (batch 1) and keep the fastest."""
        a = self.args
        self.tuning = a.weight_bits.tune(in_hw, stride=a.stride, padding=a.padding,
                                         pad_value=a.pad_value, num_threads=num_threads)
        return self.tuning

    takes_out = True  # see onebit.runtime.ops.OutKernel

    def __call__(self, xs: list[np.ndarray], num_threads: int | None, into: Any = None) -> Any:
        """``into``: the step's output arrays planned by the executor ((out,) or (out, signs)),
        or None to allocate them."""
        a, x = self.args, xs[0]
        k_map = xnor_k_map(x, a.kernel, a.stride, a.padding).reshape(-1) if a.xnor_k else None
        bits = x if x.dtype == np.uint32 else pack_signs(x)
        n, h, w = bits.shape[0], bits.shape[1], bits.shape[2]
        (sh, sw), (ph, pw) = a.stride, a.padding
        ho, wo = (h + 2 * ph - self.kh) // sh + 1, (w + 2 * pw - self.kw) // sw + 1
        if into is not None:
            out = into[0]
        elif a.output == "float":
            out = np.empty((n, ho, wo, self.out_channels), dtype=np.float32)
        else:
            out = np.empty((n, ho, wo, self._words), dtype=np.uint32)
        res = np.ascontiguousarray(xs[1], dtype=np.float32) if self.residual else None
        sign = None
        if self.sign_bits:
            sign = into[1] if into is not None else np.empty((n, ho, wo, self._words),
                                                             dtype=np.uint32)
        _kernels.bconv2d_prepared(bits, self._impl, n, h, w, a.n, self.out_channels, self.kh,
                                  self.kw, sh, sw, ph, ph, pw, pw, self._pad_code, a.output, k_map,
                                  self._mult, self._bias, self._th, self._flip, res, sign, out,
                                  resolve_threads(num_threads))
        return (out, sign) if self.sign_bits else out
