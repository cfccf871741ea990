"""Int8 AdderNet layers: one scale shared by inputs and filters, calibrated from a few batches.

With ``X ~ s * X_q`` and ``F ~ s * F_q`` (int8, symmetric, ``q = clamp(round(v / s), -127, 127)``)
AdderNet's output needs no rescaling per term: ``-sum |X - F| ~ -s * sum |X_q - F_q|``, and the
integer sum is what :func:`onebit.kernels.adder_int8` computes exactly. (One scale for both is
what makes ``|X - F|`` exact up to ``s``; separate scales would need a multiplication per term.)

Calibration (:func:`calibrate_adder_scale`): ``s = max(max|F|, a) / 127`` where ``a`` is the
largest ``|X|`` seen in the calibration batches (``method="max"``) or its ``percentile``-th
percentile (``method="percentile"``, which clips rare outliers of X to gain resolution); with
``weight=None`` the scale covers the inputs alone. Trained adder filters often drift far outside
the input range; ``quantize_adder_layer(..., clip_filters=True)`` then clips them to
``A = 127 s`` *exactly*: for ``|x| <= A < f``, ``|x - f| = |x - A| + (f - A)`` (likewise below
``-A``), so each output channel moves ``sum (|F| - A)_+`` into its bias and no output changes.

Error bound (:func:`adder_int8_error_bound`): rounding moves each value by at most ``s / 2``, so
each term obeys ``| |x - f| - s |x_q - f_q| | <= |x - s x_q| + |f - s f_q| <= s``, and an output
summing ``K = C * kh * kw`` terms is off by at most ``K * s`` (times ``|gamma / sigma|`` once a
BatchNorm is folded), for inputs inside the calibrated range ``|x| <= 127.5 s``. Padded taps hold
exactly 0 (``pad_value_q = 0``), as in the float layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from onebit.kernels._checks import pair
from onebit.kernels.adder import adder_int8

__all__ = [
    "QMAX",
    "QuantizedAdder",
    "adder_int8_error_bound",
    "calibrate_adder_scale",
    "quantize_adder_input",
    "quantize_adder_layer",
]

#: Largest int8 magnitude used (symmetric range [-127, 127]).
QMAX = 127
_METHODS = ("max", "percentile")


def _as_numpy(v: Any, name: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(v).__name__}")


def calibrate_adder_scale(
    weight: Any,
    activations: Any,
    *,
    method: str = "max",
    percentile: float = 99.99,
) -> float:
    """Shared int8 scale of one AdderNet layer: ``s = max(max|F|, a) / 127``.

    Args:
        weight: the layer's filters (tensor or array, any shape), or None for a scale that
            covers the inputs alone (use with ``quantize_adder_layer(..., clip_filters=True)``).
        activations: the layer's input on a few calibration batches: one tensor/array or an
            iterable of them (e.g. collected with a forward hook).
        method: ``"max"`` (``a = max |X|``) or ``"percentile"`` (``a`` = the ``percentile``-th
            percentile of ``|X|`` over all calibration values).
        percentile: in (0, 100], used by ``method="percentile"``.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(_METHODS)}")
    if not 0.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    w = None if weight is None else np.abs(_as_numpy(weight, "weight").astype(np.float64,
                                                                             copy=False))
    batches = [activations] if isinstance(activations, (torch.Tensor, np.ndarray)) else activations
    if not isinstance(batches, Iterable):
        raise TypeError("activations must be a tensor/array or an iterable of them")
    mags = [np.abs(_as_numpy(b, "activations").astype(np.float64, copy=False)).ravel()
            for b in batches]
    if not mags or sum(m.size for m in mags) == 0:
        raise ValueError("calibrate_adder_scale needs at least one non-empty activation batch")
    values = np.concatenate(mags)
    a = float(values.max()) if method == "max" else float(np.percentile(values, percentile))
    top = max(float(w.max()) if w is not None and w.size else 0.0, a)
    if not np.isfinite(top):
        raise ValueError("weight or activations contain inf/NaN; cannot calibrate a scale")
    if top == 0.0:
        raise ValueError("weight and activations are all zero; there is no range to calibrate")
    return top / QMAX


def quantize_adder_input(x: Any, scale: float) -> np.ndarray:
    """``clamp(round(x / scale), -127, 127)`` as int8, NCHW input -> NHWC (the kernel's layout)."""
    xa = _as_numpy(x, "x")
    if xa.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {xa.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    q = np.clip(np.rint(xa.astype(np.float32) / np.float32(scale)), -QMAX, QMAX).astype(np.int8)
    return np.ascontiguousarray(q.transpose(0, 2, 3, 1))


def adder_int8_error_bound(fan_in: int, scale: float, multiplier: Any = None) -> Any:
    """Largest ``|y_int8 - y_float|`` for inputs within ``|x| <= 127.5 * scale``: ``fan_in * scale``
    times ``|multiplier| / scale`` (per channel) when a BatchNorm is folded in, else ``fan_in * scale``.
    """
    if multiplier is None:
        return fan_in * scale
    return fan_in * np.abs(np.asarray(multiplier, dtype=np.float64))


@dataclass(frozen=True)
class QuantizedAdder:
    """An AdderNet layer in int8 form (inputs of :func:`onebit.kernels.adder_int8`).

    ``y = fma(-sum |x_q - weight_q|, multiplier, bias)``, NHWC; ``multiplier = scale`` without a
    BatchNorm (``y ~ -sum |X - F|``). ``fan_in`` = ``C * kh * kw``.
    """

    weight_q: np.ndarray  # int8 [C_out, kh, kw, C]
    scale: float
    multiplier: np.ndarray  # float32 [C_out]
    bias: np.ndarray  # float32 [C_out]
    stride: tuple[int, int]
    padding: tuple[int, int]
    pad_value_q: int = 0

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight_q.shape[1:]))

    def quantize_input(self, x: Any) -> np.ndarray:
        """NCHW float input -> int8 NHWC with this layer's scale."""
        return quantize_adder_input(x, self.scale)

    def error_bound(self) -> Any:
        """Per-channel bound on ``|y_int8 - y_float|`` (see the module docstring)."""
        return adder_int8_error_bound(self.fan_in, self.scale, self.multiplier / self.scale)

    def __call__(self, x_q: np.ndarray, *, num_threads: int | None = None) -> np.ndarray:
        return adder_int8(x_q, self.weight_q, stride=self.stride, padding=self.padding,
                          pad_value_q=self.pad_value_q, multiplier=self.multiplier,
                          bias=self.bias, num_threads=num_threads)


def quantize_adder_layer(
    layer: torch.nn.Module,
    scale: float,
    *,
    batchnorm: torch.nn.BatchNorm2d | None = None,
    clip_filters: bool = False,
) -> QuantizedAdder:
    """Int8 form of an AdderNet layer, optionally with the following BatchNorm folded in.

    Args:
        layer: an :class:`onebit.nn.AdderConv2d` (any module with ``weight`` ``[C_out, C, kh, kw]``,
            ``stride``, ``padding`` and an optional ``bias``).
        scale: the shared scale, e.g. from :func:`calibrate_adder_scale`; it must cover the
            filters (``max|F| <= 127.5 * scale``), which are never clipped.
        clip_filters: clip filters beyond ``A = 127 * scale`` to ``+/-A`` and add the exact
            correction ``-sum (|F| - A)_+`` per output channel to the bias (module docstring);
            without it a scale too small for the filters is an error.
        batchnorm: an eval-mode ``BatchNorm2d`` applied to the layer's output, folded as
            ``multiplier = scale * gamma / sigma`` and ``bias = beta + gamma * (b - mean) / sigma``
            with ``sigma = sqrt(running_var + eps)`` (``b``: the layer's bias or 0).
    """
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise TypeError("layer must have a 4-D weight [C_out, C, kh, kw] (an onebit.nn.AdderConv2d)")
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    w = weight.detach().cpu().double().numpy()
    excess = np.zeros(w.shape[0])
    if clip_filters:
        bound = QMAX * float(scale)
        excess = np.clip(np.abs(w) - bound, 0.0, None).sum(axis=(1, 2, 3))
        w = np.clip(w, -bound, bound)
    ratio = w / scale
    if np.abs(ratio).max() > QMAX + 0.5:
        raise ValueError(
            f"scale {scale:g} is too small for the filters (max|F| = {np.abs(w).max():g} needs "
            f"scale >= {np.abs(w).max() / (QMAX + 0.5):g}); calibrate with calibrate_adder_scale"
        )
    w_q = np.clip(np.rint(ratio), -QMAX, QMAX).astype(np.int8)
    cout = w.shape[0]
    b = np.zeros(cout)
    if getattr(layer, "bias", None) is not None:
        b = layer.bias.detach().cpu().double().numpy()
    mult = np.full(cout, float(scale))
    b = b - excess  # Y = -sum |X - clip(F)| - excess  (clip_filters; excess is 0 otherwise)
    shift = b.copy()
    if batchnorm is not None:
        if batchnorm.num_features != cout or batchnorm.running_mean is None:
            raise ValueError(
                f"batchnorm must be a BatchNorm2d({cout}) with running statistics, got {batchnorm}"
            )
        sigma = np.sqrt(batchnorm.running_var.detach().cpu().double().numpy() + batchnorm.eps)
        gamma = (batchnorm.weight.detach().cpu().double().numpy() if batchnorm.affine
                 else np.ones(cout))
        beta = (batchnorm.bias.detach().cpu().double().numpy() if batchnorm.affine
                else np.zeros(cout))
        mean = batchnorm.running_mean.detach().cpu().double().numpy()
        mult = mult * gamma / sigma
        shift = beta + gamma * (b - mean) / sigma
    return QuantizedAdder(
        weight_q=np.ascontiguousarray(w_q.transpose(0, 2, 3, 1)),
        scale=float(scale),
        multiplier=mult.astype(np.float32),
        bias=shift.astype(np.float32),
        stride=pair(getattr(layer, "stride", 1), "layer.stride", 1),
        padding=pair(getattr(layer, "padding", 0), "layer.padding", 0),
    )
