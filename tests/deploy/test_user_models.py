"""Models users bring: ResNets built the way timm / torchvision build them (basic and bottleneck
blocks, resnet-d's deep stem and average-pool shortcut) convert after ``binarize_`` and equal
PyTorch in the runtime; constructs convert cannot express raise a ConversionError naming the
module path, its type, what is unsupported and what to do. timm's own models are tested where
timm imports (it needs torchvision)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import ConversionError, convert
from onebit.methods import binarize_

from _deploy_helpers import (assert_matches_torch,
                             randomize_batchnorm_)


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, c, stride, avg_down=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, c, stride, avg_down)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, c, stride, avg_down=False):
        super().__init__()
        out = c * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, out, stride, avg_down)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.act(self.bn3(self.conv3(x)) + shortcut)


def _shortcut(cin, out, stride, avg_down):
    if stride == 1 and cin == out:
        return None
    if avg_down:  # resnet-d: average pool, then a 1x1 conv at stride 1
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 \
            else nn.Identity()
        return nn.Sequential(pool, nn.Conv2d(cin, out, 1, bias=False), nn.BatchNorm2d(out))
    return nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class ResNet(nn.Module):
    """timm's ResNet layout (conv1/bn1/act1/maxpool, layer1-4, global pool, fc), narrow."""

    def __init__(self, block, layers, width=8, deep_stem=False, num_classes=10):
        super().__init__()
        if deep_stem:  # resnet-d
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, width // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                nn.ReLU(), nn.Conv2d(width // 2, width // 2, 3, 1, 1, bias=False),
                nn.BatchNorm2d(width // 2), nn.ReLU(),
                nn.Conv2d(width // 2, width, 3, 1, 1, bias=False))
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = width, []
        for i, n in enumerate(layers):
            blocks = []
            for j in range(n):
                c = width * 2 ** i
                blocks.append(block(cin, c, 2 if j == 0 and i > 0 else 1, avg_down=deep_stem))
                cin = c * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.global_pool(x), 1))


RESNETS = {
    "resnet18": lambda: ResNet(Basic, [2, 2, 2, 2]),
    "resnet34": lambda: ResNet(Basic, [3, 4, 6, 3]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3], width=4),
    "resnet18d": lambda: ResNet(Basic, [2, 2, 2, 2], deep_stem=True),
}


def _binarized(model: nn.Module, method: str, seed: int = 0, **kw) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binarize_(model, method, **kw)
    randomize_batchnorm_(model, torch.Generator().manual_seed(seed))
    return model.eval()


@pytest.mark.parametrize("arch", sorted(RESNETS))
@pytest.mark.parametrize("method", ["xnor", "bireal"])
def test_torch_built_resnets_convert_and_match(arch, method):
    torch.manual_seed(0)
    model = _binarized(RESNETS[arch](), method)
    graph = convert(model, example_input_shape=(3, 32, 32))
    assert {"bconv2d"} <= {n.op for n in graph.nodes}
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet18d"])
def test_timm_resnets_convert_and_match(arch):
    timm = pytest.importorskip("timm")  # needs torchvision
    torch.manual_seed(0)
    model = _binarized(timm.create_model(arch, pretrained=False, num_classes=10), "xnor")
    graph = convert(model, example_input_shape=(3, 64, 64))
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x.flatten(2).transpose(1, 2)).chunk(3, -1)
        return ((q @ k.transpose(1, 2)).softmax(-1) @ v).transpose(1, 2).reshape(b, c, h, w)


class ChannelSplit(nn.Module):  # reads x.shape in forward, as MobileNet/EfficientNet blocks do
    def forward(self, x):
        return x[:, : x.shape[1] // 2].relu()


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x, attn_mask=None):
        return self.body(x)


def _net(block: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Sequential(block), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16 if not isinstance(block, ChannelSplit) else 8, 10))


ERRORS = [
    ("depthwise", lambda: _net(nn.Conv2d(16, 16, 3, padding=1, groups=16)),
     r"^6\.0 \(QuantConv2d\): XNOR's K map needs a binary convolution, and a depthwise conv .*"
     r"mark_float_\(model\.get_submodule\('6\.0'\)\)"),
    ("grouped", lambda: _net(nn.Conv2d(16, 16, 3, padding=1, groups=4)),
     r"^6\.0 \(QuantConv2d\): .* grouped \(groups=4\) conv .*keep this layer float"),
    ("squeeze-excitation", lambda: _net(SE(16)),
     r"^6\.0 \(SE\): squeeze-excitation / gating .* replace the block"),
    ("attention", lambda: _net(Attention(16)),
     r"^6\.0 \(Attention\): attention .*convolutional and dense networks only"),
    ("shape read in forward", lambda: _net(ChannelSplit()),
     r"^6\.0 \(ChannelSplit\): Python-level use of a tensor \(getattr.*tensor ops only"),
    ("activation", lambda: _net(nn.Hardswish()),
     r"^6\.0 \(Hardswish\): no onebit op for this module \(the activation Hardswish\); use ReLU"),
    ("second input", TwoInputs, r"attn_mask: the model takes a second input 'attn_mask'.*wrap it"),
]


@pytest.mark.parametrize("build, pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_unsupported_constructs_name_module_type_and_fix(build, pattern):
    torch.manual_seed(0)
    model = _binarized(build(), "xnor")
    with pytest.raises(ConversionError) as info:
        convert(model, example_input_shape=(3, 8, 8))
    assert re.search(pattern, str(info.value)), str(info.value)


def test_the_suggested_fix_converts():
    """Marking the depthwise conv float, as the message says, makes the model convert."""
    from onebit.methods import mark_float_

    torch.manual_seed(0)
    model = _net(nn.Conv2d(16, 16, 3, padding=1, groups=16))
    mark_float_(model.get_submodule("6.0"))
    model = _binarized(model, "xnor")
    graph = convert(model, example_input_shape=(3, 8, 8))
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_matches_torch(model, rt.Model(graph)(x), x)


@pytest.mark.parametrize("arch, pattern", [
    ("mobilenetv3_small_050", r"\((SqueezeExcite|Hardswish|.*)\): "),
    ("efficientnet_b0", r"\(\w+\): "),
    ("vit_tiny_patch16_224", r"attention|second input"),
])
def test_timm_models_convert_cannot_express_name_the_module(arch, pattern):
    timm = pytest.importorskip("timm")
    model = _binarized(timm.create_model(arch, pretrained=False, num_classes=10), "xnor")
    with pytest.raises(ConversionError) as info:
        convert(model, example_input_shape=(3, 224, 224) if "vit" in arch else (3, 64, 64))
    assert "getattr_1" not in str(info.value) and re.search(pattern, str(info.value))
