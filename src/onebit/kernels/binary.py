"""Binary GEMM and binary conv2d over packed sign bits, with fused output transforms (NumPy API).

Operands are packed with :mod:`onebit.kernels.bitpack` (bit 1 = -1, LSB first in uint32 words,
tail bits 0). The kernels compute integer accumulators ``acc = sum a * b`` over {+1, -1} values
(``n - 2 * popcount(a XOR b)`` with the true length ``n``), then one output transform:

* ``"int32"``: ``acc`` itself.
* ``"float"``: ``((float32(acc) * k_map[pos]) * multiplier[c]) + bias[c]`` in float32 (absent
  terms are skipped): BatchNorm, the XNOR / BWN scale alpha or BiPer's scale folded in by the caller.
* ``"bits"``: packed like the input, so binary layers chain without unpacking. With ``v`` the
  float value above (or ``float32(acc)`` when ``k_map``, ``multiplier`` and ``bias`` are all
  absent), the output bit of channel ``c`` is 1 (-1) iff ``v < thresholds[c]``, or iff
  ``v > thresholds[c]`` where ``flip[c]`` is true; equality gives 0 (+1), as ``sign(0) = +1``.
  :func:`sign_thresholds` turns ``sign(scale * acc + shift)`` (a BatchNorm folded to a per-channel
  affine map) into exact ``thresholds`` and ``flip``.

Zero padding in :func:`bconv2d` gives exactly what ``F.conv2d`` gives on the zero-padded +/-1
tensor: the kernels read padded taps as +1 and subtract, per border position and channel, what
those taps added (the correction of Larq Compute Engine's design). Padding with +1 or -1 is exact
as well. The compiled kernels run the best ISA of this CPU (see :func:`onebit.kernels.active_isa`)
on ``num_threads`` threads and release the GIL; calls from several threads at once are safe.

References: the XNOR-popcount dot product and the K map of XNOR-Net (Rastegari et al., ECCV 2016,
arXiv:1603.05279); BNN (Courbariaux, Hubara et al., 2016, arXiv:1602.02830); the AVX2 nibble-table
popcount (Mula, Kurz, Lemire, "Faster population counts using AVX2 instructions", 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onebit import _kernels
from onebit.kernels._checks import (
    check_geometry,
    check_memory,
    check_tail_bits,
    flip_vector,
    no_nan,
    optional_vector,
    pair,
    require_array,
    require_int,
    resolve_threads,
    words_for,
)

__all__ = [
    "PreparedConvWeight",
    "PreparedGemmWeight",
    "bconv2d",
    "bconv2d_output_shape",
    "bgemm",
    "conv_padding",
    "prepare_conv_weight",
    "prepare_gemm_weight",
    "sign_thresholds",
]

_OUTPUTS = ("int32", "float", "bits")
#: pad_value -> the kernels' PadValue code (csrc/bconv2d/params.h)
PAD_CODES = {0.0: 0, 1.0: 1, -1.0: 2}


def conv_padding(padding: Any, in_hw: tuple[int, int], kernel_hw: tuple[int, int],
                 stride_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Resolve ``padding`` to ``(top, bottom, left, right)``.

    Accepts an int (all sides), ``(pad_h, pad_w)`` (PyTorch's meaning), ``(top, bottom, left,
    right)``, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)``, the total
    ``max((out - 1) * stride + k - in, 0)`` split with the extra pixel at the bottom/right, as
    TensorFlow and PyTorch do).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            pads = []
            for size, k, s in zip(in_hw, kernel_hw, stride_hw):
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return pads[0], pads[1], pads[2], pads[3]
        raise ValueError(f"padding must be an int, a pair, a 4-tuple, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, Sequence) and len(padding) == 4:
        t, b, l, r = (require_int(p, "padding", 0) for p in padding)
        return t, b, l, r
    ph, pw = pair(padding, "padding", 0)
    return ph, ph, pw, pw


def _conv_geometry(in_hw: tuple[int, int], kernel_hw: tuple[int, int], stride: Any,
                   padding: Any, pad_value: Any) -> tuple[int, int, int, int, int, int, int]:
    """``(sh, sw, top, bottom, left, right, pad_code)`` of a binary conv, each checked."""
    try:
        pad_code = PAD_CODES[float(pad_value)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"pad_value must be 0.0, 1.0 or -1.0, got {pad_value!r}") from None
    (h, wd), (kh, kw) = in_hw, kernel_hw
    sh, sw = pair(stride, "stride", 1)
    top, bottom, left, right = conv_padding(padding, (h, wd), (kh, kw), (sh, sw))
    check_geometry({"stride": max(sh, sw), "padding": max(top, bottom, left, right)})
    if h + top + bottom < kh or wd + left + right < kw:
        raise ValueError(f"the {kh}x{kw} kernel is larger than the padded {h}x{wd} input "
                         f"(padding {top, bottom, left, right})")
    return sh, sw, top, bottom, left, right, pad_code


def bconv2d_output_shape(x_shape: Sequence[int], w_shape: Sequence[int], *, stride: Any = 1,
                         padding: Any = 0, output: str = "int32") -> tuple[int, int, int, int]:
    """Shape of :func:`bconv2d`'s result for packed shapes ``x_shape`` (NHWC) and ``w_shape``."""
    n, h, w, _ = x_shape
    cout, kh, kw, _ = w_shape
    sh, sw = pair(stride, "stride", 1)
    top, bottom, left, right = conv_padding(padding, (h, w), (kh, kw), (sh, sw))
    ho = (h + top + bottom - kh) // sh + 1
    wo = (w + left + right - kw) // sw + 1
    return int(n), int(ho), int(wo), int(words_for(cout) if output == "bits" else cout)


def sign_thresholds(scale: Any, shift: Any) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds and flips for ``output="bits"`` that compute ``sign(scale * acc + shift)``.

    For each channel, with real arithmetic on the integer accumulator ``acc`` and ``sign(0) = +1``:
    ``scale > 0``: -1 iff ``acc < -shift / scale``, i.e. iff ``acc < ceil(-shift / scale)``;
    ``scale < 0``: -1 iff ``acc > floor(-shift / scale)`` (``flip`` set);
    ``scale == 0``: the sign of ``shift`` everywhere (threshold +inf or -inf).
    The thresholds are integers (as float32), so the comparison is exact. A BatchNorm
    ``gamma * (acc - mean) / sqrt(var + eps) + beta`` has ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - scale * mean`` (fold any alpha / K scale > 0 into ``scale`` first).
    """
    s = np.asarray(scale, dtype=np.float64).ravel()
    t = np.asarray(shift, dtype=np.float64).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scale and shift must have the same length, got {s.shape} and {t.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
        raise ValueError("scale and shift must be finite")
    thr = np.empty_like(s)
    pos, neg, zero = s > 0, s < 0, s == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = -t / s
    thr[pos] = np.ceil(tau[pos])
    thr[neg] = np.floor(tau[neg])
    thr[zero] = np.where(t[zero] < 0, np.inf, -np.inf)
    limit = float(1 << 24)  # |acc| < 2^24: clamping keeps the comparison and float32 exact
    finite = np.isfinite(thr)
    thr[finite] = np.clip(thr[finite], -limit, limit)
    return thr.astype(np.float32), neg.copy()


def _transform_args(output: str, channels: int, rows_shape: tuple[int, ...], k_map: Any,
                    multiplier: Any, bias: Any, thresholds: Any, flip: Any) -> dict[str, Any]:
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, _OUTPUTS))}, got {output!r}")
    if output == "int32" and any(v is not None for v in (k_map, multiplier, bias)):
        raise ValueError("k_map, multiplier and bias apply to output='float' or 'bits', not 'int32'")
    if output != "bits" and (thresholds is not None or flip is not None):
        raise ValueError("thresholds and flip apply only to output='bits'")
    if output == "bits" and thresholds is None:
        raise ValueError("output='bits' needs thresholds (see onebit.kernels.sign_thresholds)")
    km = None
    if k_map is not None:
        km = require_array(k_map, "k_map", np.float32, contiguous=False)
        if km.shape != rows_shape:
            raise ValueError(f"k_map must have shape {rows_shape} (one value per output position), "
                             f"got {km.shape}")
        km = np.ascontiguousarray(km).reshape(-1)
    fl = flip_vector(flip, channels)
    return {
        "k_map": km,
        "multiplier": optional_vector(multiplier, "multiplier", channels),
        "bias": optional_vector(bias, "bias", channels),
        "thresholds": no_nan(optional_vector(thresholds, "thresholds", channels), "thresholds"),
        "flip": None if fl is None else fl.view(np.uint8),
    }


def _alloc(output: str, shape: tuple[int, ...], channels: int, hint: str) -> np.ndarray:
    last = words_for(channels) if output == "bits" else channels
    check_memory(shape + (last,), 4, "the output", hint)
    if output == "int32":
        return np.empty(shape + (channels,), dtype=np.int32)
    if output == "float":
        return np.empty(shape + (channels,), dtype=np.float32)
    return np.empty(shape + (words_for(channels),), dtype=np.uint32)


class PreparedConvWeight:
    """Packed conv filters prepared once for :func:`bconv2d` (see :func:`prepare_conv_weight`).

    Holds the filters in the layout of the kernel that the active ISA runs for them, and the
    per-tap sums of the zero-padding correction, so that repeated calls skip that work. If the ISA
    is switched afterwards (``use_isa``), calls still give the same results, from the plain copy.
    """

    def __init__(self, w_packed: np.ndarray, *, in_channels: int) -> None:
        w = require_array(w_packed, "w_packed", np.uint32, ndim=4)
        cin = require_int(in_channels, "in_channels", 1)
        if w.shape[3] != words_for(cin):
            raise ValueError(f"w_packed must have {words_for(cin)} words per tap for in_channels = "
                             f"{cin}, got shape {w.shape}")
        check_tail_bits(w[..., -1], cin, "w_packed")
        self.shape: tuple[int, int, int, int] = tuple(int(d) for d in w.shape)  # type: ignore[assignment]
        self.in_channels = cin
        self._impl = _kernels.PreparedFilters(w, w.shape[0], w.shape[1], w.shape[2], cin)

    @property
    def isa(self) -> str:
        """The ISA the filters were prepared for."""
        return self._impl.isa

    @property
    def kernel(self) -> str:
        """The popcount kernel that runs these filters (``"reference"`` for the reference ISA)."""
        return self._impl.kernel

    @property
    def choice(self) -> str:
        """How :attr:`kernel` was chosen: ``"rule"`` (by filter length, the default),
        ``"measured"`` (:meth:`tune`) or ``"forced"`` (:meth:`use_kernel`)."""
        return self._impl.choice

    def candidates(self) -> list[str]:
        """The kernels that can run these filters on this CPU, the rule's choice first (on an
        AVX-512 CPU the AVX2 family's kernels are candidates too)."""
        return list(self._impl.candidates())

    def use_kernel(self, name: str) -> None:
        """Run these filters with the candidate kernel ``name`` (results are identical)."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        try:
            self._impl.use_kernel(name)
        except ValueError:
            raise ValueError(f"kernel {name!r} cannot run these filters here; candidates: "
                             f"{', '.join(self.candidates()) or 'none (reference ISA)'}") from None

    def tune(self, in_hw: tuple[int, int], *, stride: Any = 1, padding: Any = 0,
             pad_value: float = 0.0, batch: int = 1, num_threads: int | None = None,
             reps: int = 3) -> dict[str, float]:
        """Time one convolution of this geometry with every candidate kernel and keep the
        fastest; return each candidate's seconds (best of ``reps`` calls after a warm-up).

        With a single candidate nothing runs and its time is reported as 0. Every candidate
        gives identical results, so tuning changes only speed. An inference runtime calls this
        once per layer at load time with the layer's real input size.
        """
        h, w = pair(in_hw, "in_hw", 1)
        sh, sw, top, bottom, left, right, pad_code = _conv_geometry(
            (h, w), (self.shape[1], self.shape[2]), stride, padding, pad_value)
        times = self._impl.tune(require_int(batch, "batch", 1), h, w, sh, sw, top, bottom, left,
                                right, pad_code, resolve_threads(num_threads),
                                require_int(reps, "reps", 1))
        return {name: float(t) for name, t in times}

    def __repr__(self) -> str:
        return (f"PreparedConvWeight(shape={self.shape}, in_channels={self.in_channels}, "
                f"isa={self.isa!r}, kernel={self.kernel!r}, choice={self.choice!r})")


def prepare_conv_weight(w_packed: np.ndarray, *, in_channels: int) -> PreparedConvWeight:
    """Prepare packed filters ``[C_out, kh, kw, ceil(C_in / 32)]`` once for repeated :func:`bconv2d`
    calls (an inference runtime does this at load time); pass the result as ``w_packed``."""
    return PreparedConvWeight(w_packed, in_channels=in_channels)


class PreparedGemmWeight:
    """The rows of :func:`bgemm`'s second operand prepared once (see :func:`prepare_gemm_weight`).

    Holds them in the layout of the kernel that the active ISA runs for them, so that repeated
    products skip the packing; under another ISA (``use_isa``) the plain copy gives the same
    results.
    """

    def __init__(self, b_packed: np.ndarray, k: int) -> None:
        b = require_array(b_packed, "b_packed", np.uint32, ndim=2)
        k = require_int(k, "k", 1)
        if b.shape[1] != words_for(k):
            raise ValueError(f"b_packed must have ceil(k / 32) = {words_for(k)} words per row for "
                             f"k = {k}, got {b.shape}")
        check_tail_bits(b[:, -1], k, "b_packed")
        self.shape: tuple[int, int] = (int(b.shape[0]), int(b.shape[1]))
        self.k = k
        self._impl = _kernels.PreparedRows(b, b.shape[0], k)

    @property
    def isa(self) -> str:
        """The kernel family the rows were prepared for."""
        return self._impl.isa

    def __repr__(self) -> str:
        return f"PreparedGemmWeight(shape={self.shape}, k={self.k}, isa={self.isa!r})"


def prepare_gemm_weight(b_packed: np.ndarray, k: int) -> PreparedGemmWeight:
    """Prepare ``b_packed`` (uint32 ``[N, ceil(k / 32)]``, e.g. a binary dense layer's weights)
    once for repeated :func:`bgemm` calls; pass the result as ``b_packed``."""
    return PreparedGemmWeight(b_packed, k)


def bgemm(a_packed: np.ndarray, b_packed: np.ndarray | PreparedGemmWeight, k: int, *,
          output: str = "int32",
          multiplier: Any = None, bias: Any = None, row_scale: Any = None, thresholds: Any = None,
          flip: Any = None, num_threads: int | None = None) -> np.ndarray:
    """Binary matrix product: ``out[i, j] = k - 2 * popcount(a[i] XOR b[j])``.

    ``a_packed`` is uint32 ``[M, ceil(k / 32)]`` and ``b_packed`` ``[N, ceil(k / 32)]`` (rows are
    packed {+1, -1} vectors of length ``k``, e.g. activations and the weights of a dense layer:
    ``x @ w.T`` of the signs), or the latter prepared once with :func:`prepare_gemm_weight`. Returns int32 ``[M, N]`` dot products, or the ``"float"`` / ``"bits"``
    transform of the module docstring (``row_scale`` ``[M]`` plays the part of ``k_map``).
    """
    a = require_array(a_packed, "a_packed", np.uint32, ndim=2)
    k = require_int(k, "k", 1)
    check_geometry({"k": k})
    kw = words_for(k)
    prepared = b_packed if isinstance(b_packed, PreparedGemmWeight) else None
    if prepared is not None:
        if prepared.k != k:
            raise ValueError(f"the prepared rows are for k = {prepared.k}, got k = {k}")
        b_shape = prepared.shape
    else:
        b = require_array(b_packed, "b_packed", np.uint32, ndim=2)
        b_shape = b.shape
    if a.shape[1] != kw or b_shape[1] != kw:
        raise ValueError(f"a_packed and b_packed must both have ceil(k / 32) = {kw} words per row for "
                         f"k = {k}, got {a.shape} and {tuple(b_shape)}")
    check_tail_bits(a[:, -1], k, "a_packed")
    if prepared is None:
        check_tail_bits(b[:, -1], k, "b_packed")
    m, n = a.shape[0], b_shape[0]
    extra = _transform_args(output, n, (m,), row_scale, multiplier, bias, thresholds, flip)
    out = _alloc(output, (m,), n, "check the operands' shapes")
    run = _kernels.bgemm if prepared is None else _kernels.bgemm_prepared
    run(a, b if prepared is None else prepared._impl, m, n, k, output, extra["k_map"],
        extra["multiplier"], extra["bias"], extra["thresholds"], extra["flip"], None, None, out,
        resolve_threads(num_threads))
    return out


def bconv2d(x_packed: np.ndarray, w_packed: np.ndarray | PreparedConvWeight, *, in_channels: int, stride: Any = 1,
            padding: Any = 0, pad_value: float = 0.0, output: str = "int32", multiplier: Any = None,
            bias: Any = None, k_map: Any = None, thresholds: Any = None, flip: Any = None,
            residual: Any = None, return_sign_bits: bool = False,
            num_threads: int | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Binary 2-D convolution (cross-correlation, as ``F.conv2d``) over packed NHWC activations.

    Args:
        x_packed: uint32 ``[N, H, W, ceil(C_in / 32)]`` (:func:`pack_nchw` or ``pack_bits`` of NHWC).
        w_packed: uint32 ``[C_out, kh, kw, ceil(C_in / 32)]`` (:func:`pack_conv_weight`), or
            the same prepared once with :func:`prepare_conv_weight` (faster for repeated calls).
        in_channels: the true ``C_in`` (the packed words hold up to 32 per word).
        stride: int or ``(sh, sw)``.
        padding: int, ``(ph, pw)``, ``(top, bottom, left, right)``, ``"valid"`` or ``"same"``.
        pad_value: 0.0 (padded taps add 0, exactly ``F.conv2d`` on the zero-padded +/-1 tensor),
            +1.0 or -1.0 (every padded channel is that value).
        output: ``"int32"`` -> ``[N, Ho, Wo, C_out]`` accumulators ``acc``; ``"float"`` ->
            float32 ``[N, Ho, Wo, C_out]``; ``"bits"`` -> uint32 ``[N, Ho, Wo, ceil(C_out / 32)]``
            (see the module docstring for the exact formulas and comparisons).
        multiplier: ``[C_out]`` per-channel scale (float / bits).
        bias: ``[C_out]`` per-channel offset (float / bits).
        k_map: float32 ``[N, Ho, Wo]``: XNOR-Net's K map, multiplied per output position.
        thresholds: ``[C_out]`` (bits only; :func:`sign_thresholds` builds them).
        flip: ``[C_out]`` (bits only; :func:`sign_thresholds` builds them).
        residual: float32 ``[N, Ho, Wo, C_out]`` added last to the float output (a residual
            block's shortcut: ``y = (acc * multiplier + bias) + residual``, one rounding per
            operation, exactly what adding the two arrays afterwards gives).
        return_sign_bits: float output only: also return the signs of ``y`` packed as
            ``pack_bits(y)`` (uint32 ``[N, Ho, Wo, ceil(C_out / 32)]``, bit 1 iff ``y < 0``), the
            input of a following binary layer, from the same pass: ``(y, bits)``.
        num_threads: threads to use (default :func:`onebit.kernels.default_num_threads`).

    ``acc = sum_{ky, kx, c} x[n, oy*sh - top + ky, ox*sw - left + kx, c] * w[o, ky, kx, c]`` over
    +/-1 values, with padded positions worth ``pad_value``; ``|acc| <= kh * kw * C_in``.
    """
    x = require_array(x_packed, "x_packed", np.uint32, ndim=4)
    cin = require_int(in_channels, "in_channels", 1)
    cw = words_for(cin)
    if x.shape[3] != cw:
        raise ValueError(f"in_channels = {cin} needs ceil({cin} / 32) = {cw} words per pixel, but "
                         f"x_packed has {x.shape[3]} (shape {x.shape})")
    check_tail_bits(x[..., -1], cin, "x_packed")
    prepared = w_packed if isinstance(w_packed, PreparedConvWeight) else None
    if prepared is not None:
        if prepared.in_channels != cin:
            raise ValueError(f"the prepared weights are for in_channels = {prepared.in_channels}, "
                             f"got in_channels = {cin}")
        w_shape = prepared.shape
    else:
        w = require_array(w_packed, "w_packed", np.uint32, ndim=4)
        if w.shape[3] != cw:
            raise ValueError(f"w_packed must have {cw} words per tap for in_channels = {cin}, got "
                             f"shape {w.shape} (pack [C_out, C_in, kh, kw] weights with "
                             "pack_conv_weight)")
        check_tail_bits(w[..., -1], cin, "w_packed")
        w_shape = w.shape
    n, h, wd, _ = x.shape
    cout, kh, kw, _ = w_shape
    sh, sw, top, bottom, left, right, pad_code = _conv_geometry((h, wd), (kh, kw), stride, padding,
                                                                pad_value)
    if kh * kw * cin >= 1 << 24:
        raise ValueError("kh * kw * in_channels must be < 2^24")
    ho = (h + top + bottom - kh) // sh + 1
    wo = (wd + left + right - kw) // sw + 1
    extra = _transform_args(output, cout, (n, ho, wo), k_map, multiplier, bias, thresholds, flip)
    res = sign = None
    if residual is not None or return_sign_bits:
        if output != "float":
            raise ValueError("residual and return_sign_bits apply only to output='float'")
        if residual is not None:
            res = require_array(residual, "residual", np.float32)
            if res.shape != (n, ho, wo, cout):
                raise ValueError(f"residual must have the output's shape {(n, ho, wo, cout)}, got "
                                 f"{res.shape}")
        if return_sign_bits:
            sign = np.empty((n, ho, wo, words_for(cout)), dtype=np.uint32)
    out = _alloc(output, (n, ho, wo), cout, "use less padding or a larger stride")
    run = _kernels.bconv2d if prepared is None else _kernels.bconv2d_prepared
    run(x, w if prepared is None else prepared._impl, n, h, wd, cin, cout, kh, kw, sh, sw, top, bottom,
        left, right, pad_code, output, extra["k_map"], extra["multiplier"], extra["bias"],
        extra["thresholds"], extra["flip"], res, sign, out, resolve_threads(num_threads))
    return (out, sign) if return_sign_bits else out
