"""Int8 direct conv2d, NHWC, for a network's float stem (few input channels) and other float
convs where it beats :func:`onebit.kernels.conv2d_f32`.

**Quantization.** Activations: per tensor, unsigned ``bits``-bit integers with a zero point
(:class:`ActivationQuant`, from :func:`calibrate_activations`),

``q = clamp(rint(x * (1 / scale)) + zero_point, 0, 2**bits - 1)``

(float32 arithmetic, the clamp done before rounding, half to even; NaN gives 0). The real 0 is
exactly ``zero_point``, so zero padding pads with ``zero_point``. Weights: int8 symmetric per
output channel (:func:`quantize_conv_weight`), ``wq = clip(rint(w / s_w), -m, m)``,
``s_w = max|w| / m``, ``m = 2**(weight_bits - 1) - 1``. The kernel accumulates
``acc = sum q * wq`` exactly in int32 and writes

``y = fma(float(acc - zero_point * sum(wq[o])), out_scale[o], bias[o])`` (then ``max(y, 0)``
with ``relu``), ``out_scale[o] = scale * s_w[o] * multiplier[o]``,

i.e. ``y ~= multiplier * conv2d(x, w) + bias`` (a folded BatchNorm is a multiplier and a bias).

**Speed and the int16 bound.** The AVX2 kernel multiplies with ``vpmaddubsw`` (u8 x s8, two
products summed into a saturating int16), adds ``pairs`` such sums in int16, then widens with
``vpmaddwd``. No int16 sum can saturate when ``2 * pairs * (2**bits - 1) * max|wq| <= 32767``,
so the kernel is exact; the prepared filters choose ``pairs``
(:attr:`PreparedInt8ConvWeight.pairs`) accordingly and refuse what would overflow:

- 8-bit activations, 7-bit weights (the defaults): ``2 * 255 * 63 = 32130``, ``pairs = 1``;
- 7-bit activations, 7-bit weights: ``4 * 127 * 63 = 32004``, ``pairs = 2``: fewer multiply
  instructions per MAC, 1.2-1.3x faster on the 7x7/2 stem (Zen 3), at half the activation
  resolution;
- 8-bit activations with 8-bit weights: ``2 * 255 * 127 > 32767``, refused.

The plain reference kernel (``ONEBIT_KERNELS=reference`` or ``use_isa("reference")``) gives
bit-identical results (the same integer sums, then the same float operations).

**Error against the float conv.** For inputs inside the calibrated range
``[scale * -zero_point, scale * (2**bits - 1 - zero_point)]``, ``|x - x_hat| <= scale / 2`` and
``|w - w_hat| <= s_w / 2``, so per output

``|y - y_float| <= |multiplier| * (scale / 2 * sum|w| + s_w / 2 * sum|x_hat|)``

over the window's taps (padding taps are exact zeros), plus float32 rounding. Inputs outside the
range are clipped to it; the calibration data lies within half a step of it (the zero point is
rounded), so there ``|x - x_hat| <= scale``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from onebit import _kernels
from onebit.kernels._checks import require_array, resolve_threads
from onebit.kernels.floatops import MaxPoolWindow, conv_geometry, conv_input, fused_pool

__all__ = [
    "ActivationQuant",
    "PreparedInt8ConvWeight",
    "calibrate_activations",
    "conv2d_int8",
    "prepare_conv2d_int8",
    "quantize_activations",
    "quantize_conv_weight",
]

_INT16_MAX = 32767
_TINY_SCALE = float(np.finfo(np.float32).tiny) * 4  # 1 / scale stays finite


def _bits(bits: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not lo <= bits <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {bits!r}")
    return int(bits)


@dataclass(frozen=True)
class ActivationQuant:
    """Per-tensor activation quantization: ``q = clamp(rint(x / scale) + zero_point, 0, qmax)``
    with ``qmax = 2**bits - 1``; ``x_hat = scale * (q - zero_point)``."""

    scale: float
    zero_point: int
    bits: int = 8

    def __post_init__(self) -> None:
        bits = _bits(self.bits, "bits", 1, 8)
        scale = float(np.float32(self.scale))
        if not (np.isfinite(scale) and scale >= _TINY_SCALE):
            raise ValueError(f"scale must be a positive finite float32 >= {_TINY_SCALE:.3g}, "
                             f"got {self.scale!r}")
        zp = self.zero_point
        if isinstance(zp, bool) or not isinstance(zp, numbers.Integral) or \
                not 0 <= zp <= 2 ** bits - 1:
            raise ValueError(f"zero_point must be an int in [0, {2 ** bits - 1}] for {bits}-bit "
                             f"activations, got {zp!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", int(zp))
        object.__setattr__(self, "bits", bits)

    @property
    def qmax(self) -> int:
        """The largest quantized value, ``2**bits - 1``."""
        return 2 ** self.bits - 1

    @property
    def range(self) -> tuple[float, float]:
        """The real interval represented without clipping: ``scale * (0 - zero_point)`` to
        ``scale * (qmax - zero_point)``."""
        return self.scale * -self.zero_point, self.scale * (self.qmax - self.zero_point)


def calibrate_activations(batches: np.ndarray | Iterable[np.ndarray],
                          bits: int = 8) -> ActivationQuant:
    """Activation quantization from calibration data by min/max.

    ``lo = min(0, min over all batches)``, ``hi = max(0, max over all batches)`` (the range always
    holds 0, so zero padding is exact), ``scale = (hi - lo) / (2**bits - 1)`` (1.0 when all
    values are 0) and ``zero_point = rint(-lo / scale)``. Every calibration value then lies in
    :attr:`ActivationQuant.range` up to half a step at the ends. ``batches``: one array or an
    iterable of arrays of any shape (e.g. the stem's input images).
    """
    bits = _bits(bits, "bits", 1, 8)
    arrays = [batches] if isinstance(batches, np.ndarray) else list(batches)
    if not arrays:
        raise ValueError("calibrate_activations needs at least one batch of calibration data")
    lo = hi = 0.0
    for k, b in enumerate(arrays):
        a = np.asarray(b)
        if a.size == 0 or not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"calibration batch {k} must be a non-empty numeric array")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"calibration batch {k} holds NaN or infinite values")
        lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    qmax = 2 ** bits - 1
    scale = (hi - lo) / qmax
    if scale == 0.0:
        return ActivationQuant(1.0, 0, bits)
    scale = max(float(np.float32(scale)), _TINY_SCALE)
    zp = int(np.clip(np.rint(-lo / scale), 0, qmax))
    return ActivationQuant(scale, zp, bits)


def quantize_activations(x: np.ndarray, act: ActivationQuant) -> np.ndarray:
    """The kernel's quantizer on its own: uint8 array of ``x``'s shape (any float32 array)."""
    xa = require_array(x, "x", np.float32, contiguous=False)
    flat = np.ascontiguousarray(xa).reshape(-1)
    q = np.empty(flat.shape, dtype=np.uint8)
    _kernels.int8_quantize(flat, q, act.scale, act.zero_point, act.qmax)
    return q.reshape(xa.shape)


def quantize_conv_weight(weight: np.ndarray, bits: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel weight quantization: returns ``(wq, s_w)``, ``wq`` int8 of
    ``weight``'s shape with ``|wq| <= m = 2**(bits - 1) - 1`` and ``s_w`` float64 ``[C_out]``,
    ``s_w = max|w| / m`` over the channel (1.0 for an all-zero channel)."""
    bits = _bits(bits, "weight_bits", 2, 8)
    w = require_array(weight, "weight", np.float32, contiguous=False)
    if w.ndim < 2:
        raise ValueError(f"weight must be [C_out, ...], got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight holds NaN or infinite values")
    m = 2 ** (bits - 1) - 1
    w64 = w.astype(np.float64).reshape(w.shape[0], -1)
    amax = np.abs(w64).max(axis=1)
    s_w = np.where(amax > 0, amax / m, 1.0)
    wq = np.clip(np.rint(w64 / s_w[:, None]), -m, m).astype(np.int8).reshape(w.shape)
    return wq, s_w


class PreparedInt8ConvWeight:
    """Int8 conv filters ``[C_out, C_in, kh, kw]`` with their output transform, prepared once for
    :func:`conv2d_int8` (see :func:`prepare_conv2d_int8`).

    Attributes: ``shape``, ``act`` (the :class:`ActivationQuant` the input is quantized with),
    ``weight_bits``, ``weight_q`` (int8), ``weight_scale`` (``s_w``, float64), ``out_scale`` and
    ``bias`` (float32, what the kernel applies) and ``pairs`` (the int16 sums added before
    widening, 1 or 2; see the module docstring).
    """

    def __init__(self, weight: np.ndarray, act: ActivationQuant, bias: np.ndarray | None = None,
                 multiplier: np.ndarray | None = None, weight_bits: int = 7) -> None:
        if not isinstance(act, ActivationQuant):
            raise TypeError("act must be an onebit.kernels.ActivationQuant (e.g. from "
                            f"calibrate_activations), got {type(act).__name__}")
        w = require_array(weight, "weight", np.float32, ndim=4, contiguous=False)
        wq, s_w = quantize_conv_weight(w, weight_bits)
        cout = w.shape[0]
        wmax = max(1, int(np.abs(wq.astype(np.int32)).max()))
        if 2 * act.qmax * wmax > _INT16_MAX:
            raise ValueError(f"{act.bits}-bit activations with {weight_bits}-bit weights can "
                             f"overflow the kernel's int16 sums (2 * {act.qmax} * {wmax} > 32767); "
                             "use weight_bits <= 7 or 7-bit activations")
        mult = np.ones(cout) if multiplier is None else self._vector(multiplier, "multiplier", cout)
        b = None if bias is None else self._vector(bias, "bias", cout).astype(np.float32)
        self.shape: tuple[int, int, int, int] = (int(w.shape[0]), int(w.shape[1]),
                                                 int(w.shape[2]), int(w.shape[3]))
        self.act = act
        self.weight_bits = int(weight_bits)
        self.weight_q = wq
        self.weight_scale = s_w
        self.out_scale = (act.scale * s_w * mult).astype(np.float32)
        self.bias = np.zeros(cout, np.float32) if b is None else b
        self._impl = _kernels.PreparedInt8Conv(np.ascontiguousarray(wq), self.out_scale, b,
                                               act.scale, act.zero_point, act.qmax)
        self.pairs = int(self._impl.pairs)

    @staticmethod
    def _vector(v: Any, name: str, n: int) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) (one value per output channel), "
                             f"got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds NaN or infinite values")
        return a

    def __repr__(self) -> str:
        return (f"PreparedInt8ConvWeight(shape={self.shape}, act={self.act}, "
                f"weight_bits={self.weight_bits}, pairs={self.pairs})")


def prepare_conv2d_int8(weight: np.ndarray, act: ActivationQuant, *,
                        bias: np.ndarray | None = None, multiplier: np.ndarray | None = None,
                        weight_bits: int = 7) -> PreparedInt8ConvWeight:
    """Prepare float32 filters ``[C_out, C_in, kh, kw]`` (PyTorch's layout) once for
    :func:`conv2d_int8`: per-channel int8 weights (``weight_bits``, default 7), the activation
    quantization ``act`` and the output transform ``y = multiplier * conv + bias`` (both
    ``[C_out]`` or None) folded in."""
    return PreparedInt8ConvWeight(weight, act, bias, multiplier, weight_bits)


def conv2d_int8(x: np.ndarray, prepared: PreparedInt8ConvWeight, *, stride: Any = 1,
                padding: Any = 0, dilation: Any = 1, relu: bool = False, layout: str = "nhwc",
                maxpool: MaxPoolWindow | None = None,
                num_threads: int | None = None) -> np.ndarray:
    """Int8 conv2d: ``y ~= multiplier * conv2d(x, weight) + bias`` (then ReLU if ``relu``, then
    ``maxpool`` if given), output NHWC.

    Args:
        x: float32 ``[N, H, W, C_in]`` (quantized inside with ``prepared.act``), or uint8
            already quantized with it (values ``<= prepared.act.qmax``); C-contiguous. With
            ``layout="nchw"``, ``[N, C_in, H, W]`` instead (e.g. a model's input, read without
            a transposed copy).
        prepared: a :class:`PreparedInt8ConvWeight`.
        stride, padding, dilation: an int or an ``(h, w)`` pair (zero padding, symmetric).
        relu: apply ``max(y, 0)``.
        layout: ``"nhwc"`` or ``"nchw"``, the layout of ``x`` (the output is always NHWC).
        maxpool: a :class:`MaxPoolWindow` fused after the conv (and the ReLU), or None.
        num_threads: threads to use (default: :func:`onebit.kernels.default_num_threads`).

    Returns float32 ``[N, H_out, W_out, C_out]`` (PyTorch's output size rules).
    """
    if not isinstance(prepared, PreparedInt8ConvWeight):
        raise TypeError("prepared must be a PreparedInt8ConvWeight from prepare_conv2d_int8, got "
                        f"{type(prepared).__name__}")
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    nchw = layout == "nchw"
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        xa = require_array(x, "x", np.uint8, ndim=4, contiguous=False)
        if not xa.flags.c_contiguous:
            raise ValueError("x must be C-contiguous (use np.ascontiguousarray(x))")
        if prepared.act.qmax < 255 and int(xa.max()) > prepared.act.qmax:
            raise ValueError(f"the uint8 input reaches {int(xa.max())} but the filters were "
                             f"prepared for {prepared.act.bits}-bit activations (<= "
                             f"{prepared.act.qmax}); quantize with quantize_activations(x, "
                             "prepared.act)")
        run = _kernels.int8_conv2d_u8
    else:
        xa, _ = conv_input(x, layout)
        run = _kernels.int8_conv2d
    if xa.size == 0:
        raise ValueError(f"x must not be empty, got shape {xa.shape}")
    shape = (xa.shape[0], xa.shape[2], xa.shape[3], xa.shape[1]) if nchw else xa.shape
    cout, cin, kh, kw = prepared.shape
    if cin != shape[3]:
        raise ValueError(f"the filters are [C_out, C_in, kh, kw] = {prepared.shape} but x "
                         f"({layout.upper()}) has {shape[3]} channels")
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = conv_geometry(shape, (kh, kw), stride, padding,
                                                           dilation)
    if shape[0] * oh * ow * cout > 2 ** 40 or (shape[1] + 2 * ph) * (shape[2] + 2 * pw) \
            * cin * shape[0] > 2 ** 40:
        raise ValueError(f"the output ({shape[0]}, {oh}, {ow}, {cout}) or the padded input is "
                         "too large; use less padding or a smaller input")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu must be a bool, got {type(relu).__name__}")
    pool, (oh, ow) = fused_pool(maxpool, (oh, ow))
    threads = num_threads if type(num_threads) is int and num_threads >= 1 else \
        resolve_threads(num_threads)
    out = np.empty((shape[0], oh, ow, cout), dtype=np.float32)
    run(xa, prepared._impl, out, sh, sw, ph, pw, dh, dw, bool(relu), threads, nchw, pool)
    return out
