"""Edge cases of onebit.optim: what counts as a binary layer, the default weight decay of binary
latent weights, and BiPer's tau schedule over a single epoch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from onebit.nn import QuantConv2d, QuantLinear
from onebit.optim import binary_weight_layers, biper_tau, param_groups


class _Halve(nn.Module):
    """A weight quantizer module with no ``is_binary`` attribute (a plain nn.Module)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w / 2


def test_a_quantizer_without_is_binary_is_not_binary():
    model = nn.Sequential(QuantLinear(3, 2, weight_quantizer=_Halve()),
                          QuantLinear(2, 2, weight_quantizer="identity"))
    assert list(binary_weight_layers(model)) == []
    groups = param_groups(model, 0.1)
    assert [g["name"] for g in groups] == ["other"]


@pytest.mark.filterwarnings("ignore::onebit.nn.LatentClipWarning")
def test_binary_latent_weights_default_to_no_weight_decay():
    model = nn.Sequential(QuantConv2d(1, 2, 3, weight_quantizer="sign"), nn.Flatten(),
                          nn.Linear(2, 1))
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    assert groups["binary_weights"]["weight_decay"] == 0.0
    assert groups["other"]["weight_decay"] == 0.1
    assert [id(p) for p in groups["binary_weights"]["params"]] == [id(model[0].weight)]


def test_biper_tau_over_one_epoch():
    assert biper_tau(0, 1, 0.037, 0.0468) == pytest.approx(0.037)
    assert biper_tau(1, 1, 0.037, 0.0468) == pytest.approx(0.0468)
    mid = biper_tau(1, 2, 0.0, 1.0)
    assert mid == pytest.approx((math.exp(0.5) - 1) / (math.e - 1))
    with pytest.raises(ValueError, match="epochs"):
        biper_tau(0, 0, 0.0, 1.0)
