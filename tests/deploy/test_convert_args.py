"""convert's argument checks: the example input shape and the normalization (one value for
every channel, or one per channel), each edge accepted or refused as documented."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onebit.deploy import convert


def _cnn(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()


@pytest.mark.parametrize("shape", [(3, 0, 6), (3, 6, -1), (True, 6, 6), (3, 6), (3.0, 6, 6), "3x6x6"])
def test_example_input_shape_must_be_positive_ints(shape):
    with pytest.raises(ValueError, match="example_input_shape must be"):
        convert(_cnn(), example_input_shape=shape)


def test_one_normalization_value_serves_every_channel():
    g = convert(_cnn(), example_input_shape=(3, 6, 6), normalization=([0.5], [0.25]))
    assert g.normalization == {"mean": [0.5] * 3, "std": [0.25] * 3}
    g = convert(_cnn(), example_input_shape=(3, 6, 6), normalization={"mean": 0.5, "std": 2.0})
    assert g.normalization == {"mean": [0.5] * 3, "std": [2.0] * 3}
    g = convert(_cnn(2), example_input_shape=(2, 6, 6), normalization=([0.5], [0.25]))
    assert g.normalization == {"mean": [0.5] * 2, "std": [0.25] * 2}
    g = convert(_cnn(1), example_input_shape=(1, 6, 6), normalization=(0.5, 0.25))
    assert g.normalization == {"mean": [0.5], "std": [0.25]}
    g = convert(_cnn(), example_input_shape=(3, 6, 6),
                normalization=([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]))
    assert g.normalization == {"mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 3.0]}


@pytest.mark.parametrize("norm", [
    ([0.1, 0.2], [1.0]),            # two means for three channels, one std
    ([0.1], [1.0, 2.0]),            # one mean, two stds
    ([0.1, 0.2], [1.0, 2.0]),       # two of each
    ([0.1, 0.2, 0.3], [1.0, 2.0]),  # three means, two stds
    ([0.1, 0.2, 0.3], [1.0, 2.0, 3.0, 4.0]),
    ([0.1, 0.2, 0.3],),             # not a (mean, std) pair
    ([0.1], [1.0], [2.0]),
    ([0.1], [0.0]),                 # a zero std
    ([0.1], [float("inf")]),
])
def test_normalization_that_does_not_fit_the_channels_is_refused(norm):
    pair = len(norm) == 2
    with pytest.raises(ValueError, match="finite means" if pair else "normalization must be"):
        convert(_cnn(), example_input_shape=(3, 6, 6), normalization=norm)
