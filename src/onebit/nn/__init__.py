"""onebit's layers: quantized Conv2d/Linear, the AdderNet convolution and paper-order blocks."""

from __future__ import annotations

from onebit.nn import functional
from onebit.nn.adder import AdderConv2d
from onebit.nn.blocks import BiRealBlock, XNORBlock
from onebit.nn.layers import INPUT_SCALINGS, LatentClipWarning, QuantConv2d, QuantLinear

__all__ = [
    "AdderConv2d",
    "BiRealBlock",
    "INPUT_SCALINGS",
    "LatentClipWarning",
    "QuantConv2d",
    "QuantLinear",
    "XNORBlock",
    "functional",
]
