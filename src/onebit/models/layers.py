"""Small building helpers shared by the model families (plain float torch modules).

Convolutions followed by BatchNorm have no bias (BN's shift replaces it). Activations are
``nn.ReLU`` modules, one instance per use, never the functional form, so that a method can find
and replace every activation (``binarize_`` swaps them for sign-like quantizers).
"""

from __future__ import annotations

from torch import nn

__all__ = ["conv1x1", "conv3x3", "conv_bn_act", "linear_bn_act", "scaled", "make_activation"]

_ACTIVATIONS = {"relu": nn.ReLU, "hardtanh": nn.Hardtanh}


def make_activation(name: str) -> nn.Module:
    """``"relu"`` -> ``nn.ReLU()``; ``"hardtanh"`` -> ``nn.Hardtanh()`` (clip(x, -1, 1), the
    activation Bi-Real Net pretrains its real-valued network with)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def scaled(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1; ``width`` must be a positive number."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    return max(1, int(round(channels * width)))


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def conv_bn_act(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                activation: str = "relu") -> list[nn.Module]:
    """``[Conv2d (no bias), BatchNorm2d, activation]``."""
    return [nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_ch), make_activation(activation)]


def linear_bn_act(in_features: int, out_features: int, activation: str = "relu") -> list[nn.Module]:
    """``[Linear (no bias), BatchNorm1d, activation]``."""
    return [nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features),
            make_activation(activation)]
