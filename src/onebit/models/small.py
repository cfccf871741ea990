"""Small models for 28x28 inputs (MNIST, Fashion-MNIST): LeNet-5-BN, the BNN MLP, fmnist_cnn.

All three also accept 32x32 inputs (the convolutional ones end in adaptive pooling; the MLP takes
``input_size``).
"""

from __future__ import annotations

from torch import nn

from onebit.models.layers import conv_bn_act, linear_bn_act, scaled
from onebit.models.registry import register_model

__all__ = ["MLP", "SmallCNN", "fmnist_cnn", "lenet5_bn", "mlp"]


class SmallCNN(nn.Module):
    """``features`` (convolutions, a ``nn.Sequential``) -> ``classifier`` (``nn.Sequential``
    starting with ``nn.Flatten``)."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(default_input_size=(1, 28, 28))
def lenet5_bn(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """LeNet-5 with BatchNorm after every hidden layer (AdderNet's MNIST "LeNet-5-BN").

    Conv5x5(6, pad 2)-BN-ReLU-MaxPool2 -> Conv5x5(16)-BN-ReLU-MaxPool2 -> Conv5x5(120)-BN-ReLU
    (LeNet's C5, a convolution, so AdderNet turns it into an adder layer) -> FC 84-BN-ReLU -> FC.
    On 28x28 C5 yields 1x1; an adaptive average pool makes other sizes work.
    Ref: LeCun et al. 1998; Chen et al., "AdderNet", CVPR 2020, Sec. 4.1.
    """
    features = nn.Sequential(
        *conv_bn_act(in_channels, 6, 5, padding=2), nn.MaxPool2d(2),
        *conv_bn_act(6, 16, 5), nn.MaxPool2d(2),
        *conv_bn_act(16, 120, 5),
        nn.AdaptiveAvgPool2d(1),
    )
    classifier = nn.Sequential(nn.Flatten(), *linear_bn_act(120, 84), nn.Linear(84, num_classes))
    return SmallCNN(features, classifier)


@register_model(default_input_size=(1, 28, 28))
def mlp(num_classes: int = 10, in_channels: int = 3, hidden: int = 4096, depth: int = 3,
        input_size: int = 28) -> nn.Module:
    """BNN's MNIST multilayer perceptron: flatten -> ``depth`` x [Linear(hidden)-BN-ReLU] -> Linear.

    The paper uses 3 hidden layers of 4096 units (0.96% MNIST error). ``input_size`` is the side
    of the square input (28 for MNIST), so the first layer has ``in_channels * input_size**2``
    inputs. Ref: Courbariaux, Hubara et al., "Binarized Neural Networks", 2016, Sec. 2.
    """
    for arg, value in (("hidden", hidden), ("depth", depth), ("input_size", input_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"mlp: {arg} must be a positive int, got {value!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = in_channels * input_size * input_size
    for _ in range(depth):
        layers += linear_bn_act(fan_in, hidden)
        fan_in = hidden
    layers.append(nn.Linear(fan_in, num_classes))
    return MLP(in_channels, input_size, layers)


class MLP(nn.Sequential):
    """An ``nn.Sequential`` (Flatten, [Linear, BN, ReLU] x depth, Linear) that checks its input
    is ``[N, in_channels, input_size, input_size]`` and says how to rebuild it otherwise."""

    def __init__(self, in_channels: int, input_size: int, layers: list[nn.Module]):
        super().__init__(*layers)
        self.in_channels = in_channels
        self.input_size = input_size

    def forward(self, x):
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"mlp was built for inputs [N, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}], got {tuple(x.shape)}; create it with "
                             "in_channels=C and input_size=S for [N, C, S, S] inputs")
        return super().forward(x)


@register_model(default_input_size=(1, 28, 28))
def fmnist_cnn(num_classes: int = 10, in_channels: int = 3, width: float = 1.0,
               hidden: int = 256) -> nn.Module:
    """A small CNN shared by every method's Fashion-MNIST results, sized so that a float epoch of
    60k images costs about a minute of CPU on one core of a Zen 3 class CPU (measure it with
    ``python benchmarks/training_epoch.py fmnist_cnn --threads 1``).

    Conv3x3(32)-BN-ReLU-MaxPool2 (the float first layer, small) -> Conv3x3(64)-BN-ReLU-MaxPool2
    -> Conv3x3(128)-BN-ReLU-MaxPool2 -> FC ``hidden``-BN-ReLU -> FC; about 7.7 M multiply-adds
    and 0.39 M parameters on 28x28. ``width`` scales every channel count. On 28x28 the features
    end at 3x3 (an adaptive pool fixes that size for other inputs).
    """
    c1, c2, c3 = scaled(32, width), scaled(64, width), scaled(128, width)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"fmnist_cnn: hidden must be a positive int, got {hidden!r}")
    features = nn.Sequential(
        *conv_bn_act(in_channels, c1, 3, padding=1), nn.MaxPool2d(2),
        *conv_bn_act(c1, c2, 3, padding=1), nn.MaxPool2d(2),
        *conv_bn_act(c2, c3, 3, padding=1), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(3),
    )
    classifier = nn.Sequential(nn.Flatten(), *linear_bn_act(c3 * 9, hidden),
                               nn.Linear(hidden, num_classes))
    return SmallCNN(features, classifier)
