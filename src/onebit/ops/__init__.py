"""Torch-side ops backed by onebit's compiled kernels.

``adder_conv2d``: AdderNet's convolution with the paper's gradients (C++ forward and backward,
CPU float32). ``calibrate_adder_scale`` / ``quantize_adder_layer``: the shared int8 scale of an
AdderNet layer and its int8 form for :func:`onebit.kernels.adder_int8` (what a converter calls).
"""

from __future__ import annotations

from onebit.ops.adder import adaptive_filter_grad, adder_conv2d, adder_conv2d_supported
from onebit.ops.adder_quant import (
    QuantizedAdder,
    adder_int8_error_bound,
    calibrate_adder_scale,
    quantize_adder_input,
    quantize_adder_layer,
)

__all__ = [
    "QuantizedAdder",
    "adaptive_filter_grad",
    "adder_conv2d",
    "adder_conv2d_supported",
    "adder_int8_error_bound",
    "calibrate_adder_scale",
    "quantize_adder_input",
    "quantize_adder_layer",
]
