"""CIFAR-style models (32x32 inputs, 3x3 stem, no max-pool stem): VGG-Small, ResNet-20, ResNet-18.

Every model ends in adaptive pooling, so 28x28 inputs work too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from onebit.models.imagenet import BiRealNet
from onebit.models.layers import conv1x1, conv3x3, conv_bn_act, linear_bn_act, scaled
from onebit.models.registry import register_model

__all__ = ["BasicBlock", "ResNetCifar", "VGGSmall", "resnet18", "resnet20", "vgg_small"]


class VGGSmall(nn.Module):
    """``features`` (``nn.Sequential`` of Conv-BN-ReLU[-MaxPool]) -> ``classifier``."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(default_input_size=(3, 32, 32))
def vgg_small(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
              fc_hidden: Sequence[int] = ()) -> nn.Module:
    """VGG-Small: 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-FC (BNN's and AdderNet's CIFAR-10 VGG).

    Each ``C3`` is Conv3x3-BN-ReLU; max-pooling follows the ReLU. ``width`` scales the channel
    counts; ``fc_hidden=(1024, 1024)`` adds BNN's two hidden FC layers (each Linear-BN-ReLU)
    before the output layer. Adaptive average pooling to 4x4 (a no-op on 32x32) lets 28x28 work.
    Ref: Courbariaux, Hubara et al. 2016, Sec. 2.6; Zhang et al., "LQ-Nets", ECCV 2018;
    Chen et al., "AdderNet", CVPR 2020.
    """
    c1, c2, c3 = scaled(128, width), scaled(256, width), scaled(512, width)
    layers: list[nn.Module] = []
    prev = in_channels
    for ch in (c1, c2, c3):
        layers += conv_bn_act(prev, ch, 3, padding=1)
        layers += conv_bn_act(ch, ch, 3, padding=1)
        layers.append(nn.MaxPool2d(2))
        prev = ch
    layers.append(nn.AdaptiveAvgPool2d(4))
    head: list[nn.Module] = [nn.Flatten()]
    fan_in = c3 * 16
    for units in fc_hidden:
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"vgg_small: fc_hidden must hold positive ints, got {fc_hidden!r}")
        head += linear_bn_act(fan_in, units)
        fan_in = units
    head.append(nn.Linear(fan_in, num_classes))
    return VGGSmall(nn.Sequential(*layers), nn.Sequential(*head))


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``.

    ``shortcut`` is ``nn.Identity`` when the shape is kept, else Conv1x1(stride)-BN (option B of
    He et al. 2016).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(conv1x1(in_ch, out_ch, stride),
                                                     nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """CIFAR ResNet: Conv3x3 stem-BN-ReLU (no max-pool) -> stages of :class:`BasicBlock`
    (the first block of every stage but the first has stride 2) -> global average pool -> FC."""

    def __init__(self, channels: Sequence[int], blocks: Sequence[int], num_classes: int,
                 in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_act(in_channels, channels[0], 3, padding=1))
        stages = []
        prev = channels[0]
        for i, (ch, n) in enumerate(zip(channels, blocks)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(prev, ch, stride)] + [BasicBlock(ch, ch) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            prev = ch
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


@register_model(default_input_size=(3, 32, 32))
def resnet20(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
             block: str = "basic") -> nn.Module:
    """ResNet-20 for CIFAR: 16-32-64 channels, 18 3x3 convs (0.27 M parameters).

    ``block="basic"``: 3 basic blocks per stage, one shortcut per two convs (He et al.).
    ``block="bireal"``: the same convs in Bi-Real form, a real shortcut around every 3x3 conv
    (a :class:`~onebit.models.imagenet.BiRealNet` of 6 units per stage with a Conv3x3-BN stem,
    same parameter count), as the Bi-Real paper builds
    its networks and as the CIFAR ResNet-20 of BiPer's code base (IR-Net / ReCU) does.
    Ref: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2;
    Liu et al., "Bi-Real Net", ECCV 2018; Vargas et al., "BiPer", CVPR 2024.
    """
    channels = [scaled(c, width) for c in (16, 32, 64)]
    if block == "basic":
        return ResNetCifar(channels, (3, 3, 3), num_classes, in_channels)
    if block == "bireal":
        stem = nn.Sequential(conv3x3(in_channels, channels[0]), nn.BatchNorm2d(channels[0]))
        return BiRealNet((6, 6, 6), channels, num_classes, in_channels, stem=stem)
    raise ValueError(f"resnet20: block must be 'basic' or 'bireal', got {block!r}")


@register_model(default_input_size=(3, 32, 32))
def resnet18(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """ResNet-18, CIFAR style (3x3 stem, no max-pool): 64-128-256-512 channels, 2 blocks per stage.

    Ref: He et al. 2016; the CIFAR adaptation used by most 1-bit CIFAR-10 results.
    """
    channels = [scaled(c, width) for c in (64, 128, 256, 512)]
    return ResNetCifar(channels, (2, 2, 2, 2), num_classes, in_channels)
