"""ImageNet-style models (224x224 inputs): Bi-Real Net 18/34 and XNOR-Net's AlexNet with BN.

Both end in adaptive pooling, so smaller inputs (e.g. 32x32 or 64x64) also run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from onebit.methods import mark_float_
from onebit.models.layers import (
    conv1x1,
    conv3x3,
    conv_bn_act,
    linear_bn_act,
    make_activation,
    scaled,
)
from onebit.models.registry import register_model

__all__ = ["AlexNet", "BiRealBlock", "BiRealNet", "alexnet", "birealnet18", "birealnet34"]


class BiRealBlock(nn.Module):
    """One Bi-Real Net unit: ``out = bn(conv(act(x))) + shortcut(x)``, a real-valued shortcut
    around every 3x3 convolution.

    ``act`` is the activation a method binarises (``sign`` with ApproxSign's gradient in Bi-Real
    Net; ``nn.ReLU`` or ``nn.Hardtanh`` in the float model). ``shortcut`` is ``nn.Identity`` when
    the shape is kept, else ``AvgPool2d(2) -> Conv1x1 -> BatchNorm2d`` (the paper's downsampling
    shortcut; the 1x1 convolution is marked with :func:`onebit.methods.mark_float_`, so it stays
    full precision under every method).
    Ref: Liu et al., "Bi-Real Net", ECCV 2018, Sec. 3.1 and Fig. 2.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, activation: str = "relu"):
        super().__init__()
        self.act = make_activation(activation)
        self.conv = conv3x3(in_ch, out_ch, stride)
        self.bn = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            # ceil_mode keeps odd sizes in step with the strided 3x3 conv (same result on even)
            pool: list[nn.Module] = ([nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)]
                                     if stride != 1 else [])
            self.shortcut: nn.Module = nn.Sequential(*pool, mark_float_(conv1x1(in_ch, out_ch)),
                                                     nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.act(x))) + self.shortcut(x)


class BiRealNet(nn.Module):
    """Stem (Conv7x7/2-BN-MaxPool3x3/2, full precision, or the given ``stem``) -> stages of
    :class:`BiRealBlock` (the
    first unit of every stage but the first has stride 2 and doubles the channels) -> global
    average pool -> FC (full precision)."""

    def __init__(self, units: Sequence[int], channels: Sequence[int], num_classes: int,
                 in_channels: int, activation: str = "relu", stem: nn.Module | None = None):
        super().__init__()
        # ``stem`` replaces the ImageNet stem (e.g. a CIFAR 3x3 conv and BatchNorm)
        self.stem = stem if stem is not None else nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        prev = channels[0]
        for i, (ch, n) in enumerate(zip(channels, units)):
            stride = 1 if i == 0 else 2
            stage = [BiRealBlock(prev, ch, stride, activation)]
            stage += [BiRealBlock(ch, ch, 1, activation) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            prev = ch
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


def _birealnet(units, num_classes, in_channels, width, activation):
    channels = [scaled(c, width) for c in (64, 128, 256, 512)]
    return BiRealNet(units, channels, num_classes, in_channels, activation)


@register_model(default_input_size=(3, 224, 224))
def birealnet18(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                activation: str = "relu") -> nn.Module:
    """Bi-Real Net 18: ResNet-18 with a shortcut around each of its 16 3x3 convolutions
    (4 units per stage). ``activation`` is ``"relu"`` or ``"hardtanh"`` (the clip(x, -1, 1) the
    paper pretrains the real-valued network with). Paper: 56.4% ImageNet top-1 at 1 bit.
    Ref: Liu et al., "Bi-Real Net", ECCV 2018.
    """
    return _birealnet((4, 4, 4, 4), num_classes, in_channels, width, activation)


@register_model(default_input_size=(3, 224, 224))
def birealnet34(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
                activation: str = "relu") -> nn.Module:
    """Bi-Real Net 34: ResNet-34 with a shortcut around each of its 32 3x3 convolutions
    (6-8-12-6 units per stage). Paper: 62.2% ImageNet top-1 at 1 bit.
    Ref: Liu et al., "Bi-Real Net", ECCV 2018.
    """
    return _birealnet((6, 8, 12, 6), num_classes, in_channels, width, activation)


class AlexNet(nn.Module):
    """``features`` (``nn.Sequential``, Conv-BN-ReLU[-MaxPool]) -> adaptive pool 6x6 ->
    ``classifier`` (``nn.Sequential``: Flatten, 2 x [Linear-BN-ReLU(-Dropout)], Linear)."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model(default_input_size=(3, 224, 224))
def alexnet(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
            dropout: float = 0.0) -> nn.Module:
    """AlexNet with BatchNorm, as XNOR-Net trains it on ImageNet (single tower, no LRN).

    Conv11x11/4(96)-BN-ReLU-MP3/2 -> Conv5x5(256)-BN-ReLU-MP3/2 -> Conv3x3(384)-BN-ReLU ->
    Conv3x3(384)-BN-ReLU -> Conv3x3(256)-BN-ReLU-MP3/2 -> FC4096-BN-ReLU -> FC4096-BN-ReLU -> FC.
    The first convolution has padding 2 so 224x224 gives the 6x6x256 maps FC6 expects.
    ``width`` scales every channel and hidden-unit count; ``dropout > 0`` adds dropout after the
    hidden FC layers. Paper (1000 classes): float 56.6, BWN 56.8, XNOR 44.2 % top-1.
    Ref: Krizhevsky et al. 2012; Rastegari et al., "XNOR-Net", ECCV 2016, Sec. 4.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"alexnet: dropout must lie in [0, 1), got {dropout!r}")
    c1, c2, c3, c4, c5 = (scaled(c, width) for c in (96, 256, 384, 384, 256))
    fc = scaled(4096, width)
    features = nn.Sequential(
        *conv_bn_act(in_channels, c1, 11, stride=4, padding=2), nn.MaxPool2d(3, stride=2),
        *conv_bn_act(c1, c2, 5, padding=2), nn.MaxPool2d(3, stride=2),
        *conv_bn_act(c2, c3, 3, padding=1),
        *conv_bn_act(c3, c4, 3, padding=1),
        *conv_bn_act(c4, c5, 3, padding=1), nn.MaxPool2d(3, stride=2),
    )
    head: list[nn.Module] = [nn.Flatten()]
    fan_in = c5 * 36
    for _ in range(2):
        head += linear_bn_act(fan_in, fc)
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        fan_in = fc
    head.append(nn.Linear(fan_in, num_classes))
    return AlexNet(features, nn.Sequential(*head))
