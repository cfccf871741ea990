"""Building blocks in the layer orders the papers prescribe."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from onebit.nn.layers import LatentClipWarning, QuantConv2d

__all__ = ["XNORBlock", "BiRealBlock"]


class XNORBlock(nn.Module):
    """XNOR-Net block: ``BatchNorm -> BinActiv -> BinConv -> [ReLU] -> [Pool]`` (Rastegari et al.
    2016, fig. 3; the ReLU, which the paper allows after BinConv, with ``relu=True``).

    The BatchNorm normalises the real input, the binary convolution takes ``sign`` of it
    (``input_quantizer``, straight-through with ``1[|x| <= 1]``) and ``alpha * sign(W)`` weights
    (``weight_quantizer``), optionally scaled by the ``K`` map (``k_map=True``); pooling comes
    after the convolution so it never sees binary values. ``pool`` is None, an int (the kernel and
    stride of an ``nn.MaxPool2d``) or any module. ``binary_grad=True`` binarizes the gradient
    flowing back into the convolution (XNOR-Net's binary gradients).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        *,
        pool: int | nn.Module | None = None,
        k_map: bool = True,
        pad_value: float = 0.0,
        input_quantizer: Any = "sign",
        weight_quantizer: Any = "scaled_sign",
        relu: bool = False,
        binary_grad: bool = False,
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = QuantConv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=False,
            input_quantizer=input_quantizer, weight_quantizer=weight_quantizer,
            input_scaling="xnor_k" if k_map else None, pad_value=pad_value,
            binary_grad=binary_grad,
        )
        self.relu = nn.ReLU() if relu else nn.Identity()
        if isinstance(pool, int) and not isinstance(pool, bool):
            pool = nn.MaxPool2d(pool)
        elif pool is not None and not isinstance(pool, nn.Module):
            raise TypeError(f"pool must be None, an int (max-pool size) or an nn.Module; got {pool!r}")
        self.pool = pool if pool is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv(self.bn(x))))


class BiRealBlock(nn.Module):
    """Bi-Real Net unit: ``x -> sign -> 1-bit 3x3 conv -> BatchNorm -> + shortcut(x)``
    (Liu et al. 2018, fig. 1).

    The shortcut is the identity when shape is kept; with ``stride=2`` it is ``AvgPool2d(2) ->
    float 1x1 conv -> BatchNorm``, with only a channel change ``float 1x1 conv -> BatchNorm``.
    ``input_quantizer`` defaults to ApproxSign, ``weight_quantizer`` to the magnitude-aware sign.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        pad_value: float = 0.0,
        input_quantizer: Any = "approx_sign",
        weight_quantizer: Any = "magnitude_aware_sign",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"BiRealBlock supports stride 1 or 2; got {stride!r}")
        with warnings.catch_warnings():
            # Bi-Real trains its magnitude-aware binary weights without latent clipping by design
            warnings.simplefilter("ignore", LatentClipWarning)
            self.conv = QuantConv2d(
                in_channels, out_channels, 3, stride, 1, bias=False,
                input_quantizer=input_quantizer, weight_quantizer=weight_quantizer,
                pad_value=pad_value,
            )
        self.bn = nn.BatchNorm2d(out_channels)
        layers: list[nn.Module] = []
        if stride == 2:
            layers.append(nn.AvgPool2d(2, ceil_mode=True))
        if stride == 2 or in_channels != out_channels:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.shortcut = nn.Sequential(*layers) if layers else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.shortcut(x)
