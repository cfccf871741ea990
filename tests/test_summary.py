"""onebit.analysis.summary: parameter, memory and MAC counts against hand computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onebit.analysis.summary import render, summarize, xnor_speedup
from onebit.nn import AdderConv2d, QuantConv2d, QuantLinear


def test_xnor_speedup_formula():
    assert xnor_speedup(256, 9) == pytest.approx(62.27, abs=0.005)  # the paper's 3x3, c = 256
    assert xnor_speedup(2, 9) == pytest.approx(64 * 18 / (18 + 64))
    with pytest.raises(ValueError):
        xnor_speedup(0, 9)


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=True),                       # float, 5x5 -> 5x5
        nn.BatchNorm2d(4),
        QuantConv2d(4, 6, 3, stride=2, padding=1, bias=False,           # binary x binary, -> 3x3
                    input_quantizer="sign", weight_quantizer="sign"),
        QuantConv2d(6, 6, 1, groups=2, bias=False, weight_quantizer="sign"),  # real input
        nn.Flatten(),
        QuantLinear(54, 5, bias=True, input_quantizer="sign", weight_quantizer="sign"),
    )


def test_counts_match_hand_computation():
    s = summarize(_net(), (2, 5, 5))
    rows = {r.name: r for r in s.rows}
    assert list(rows) == ["0", "1", "2", "3", "5"]
    conv0, bn, bconv, bwconv, fc = (rows[k] for k in ("0", "1", "2", "3", "5"))
    # float conv: 4 x 5 x 5 outputs, each 2 * 3 * 3 MACs
    assert (conv0.input_bits, conv0.weight_bits) == (32, 32)
    assert conv0.float_macs == 4 * 25 * 18 and conv0.binary_macs == 0
    assert conv0.params == 72 + 4 and conv0.binary_params == 0
    # BatchNorm: weight, bias and the two running statistics (deployment needs them)
    assert bn.params == 16 and bn.trainable_params == 8 and bn.input_bits is None
    assert bn.memory_bytes == 16 * 4
    # binary conv, stride 2: 6 x 3 x 3 outputs, each 4 * 9 binary MACs; weights at 1 bit
    assert bconv.output_shape == (6, 3, 3)
    assert bconv.binary_macs == 6 * 9 * 36 and bconv.float_macs == 0
    assert bconv.binary_params == 216 and bconv.memory_bytes == 216 / 8
    assert bconv.xnor_speedup == pytest.approx(xnor_speedup(4, 9))
    # binary weights on a real input (groups 2): float MACs, weights still 1 bit
    assert (bwconv.input_bits, bwconv.weight_bits) == (32, 1)
    assert bwconv.float_macs == 6 * 9 * 3 and bwconv.binary_macs == 0
    assert bwconv.binary_params == 18 and bwconv.xnor_speedup is None
    # linear 54 -> 5, binary; its bias stays float
    assert fc.binary_macs == 270 and fc.binary_params == 270 and fc.float_params == 5
    assert fc.memory_bytes == 270 / 8 + 5 * 4

    t = s.totals
    assert t.params == 76 + 16 + 216 + 18 + 275
    assert t.binary_params == 216 + 18 + 270
    assert t.float32_bytes == 4 * t.params
    assert t.packed_bytes == pytest.approx((216 + 18 + 270) / 8 + 4 * (76 + 16 + 5))
    assert t.compression == pytest.approx(t.float32_bytes / t.packed_bytes)
    assert t.binary_macs == 1944 + 270 and t.float_macs == 1800 + 162
    assert t.binary_mac_share == pytest.approx(2214 / (2214 + 1962))


def test_adder_layers_count_additions_not_macs():
    net = nn.Sequential(AdderConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
    s = summarize(net, (3, 4, 4))
    adder = s.rows[0]
    assert adder.adds == 8 * 16 * 27 and adder.binary_macs == adder.float_macs == 0
    assert adder.weight_bits == 32 and s.totals.adds == adder.adds
    assert "AdderNet" in render(s)


def test_render_and_training_mode_are_preserved():
    net = _net().train()
    bn = net[1]
    before = bn.running_mean.clone()
    s = summarize(net, (2, 5, 5))
    assert net.training and torch.equal(bn.running_mean, before)  # traced in eval mode
    text = s.render()
    for needle in ("QuantConv2d", "1-bit MACs", "compression", "% binary", "Total"):
        assert needle in text
    assert len(text.splitlines()) == len(s.rows) + 10  # 7 frame lines, 3 totals lines
    d = s.to_dict()
    assert d["totals"]["binary_params"] == s.totals.binary_params and len(d["rows"]) == 5


def test_binarized_model_zoo_model():
    from onebit import binarize_
    from onebit.models import create

    model = binarize_(create("fmnist_cnn", in_channels=1), "bnn")
    s = summarize(model)  # default_input_size
    convs = [r for r in s.rows if r.kind == "QuantConv2d"]
    assert convs[0].input_bits == 32 and convs[0].binary_macs == 0  # BNN's first input is real
    assert all(r.binary_macs > 0 for r in convs[1:])
    assert s.totals.binary_params == sum(m.weight.numel() for m in model.modules()
                                         if isinstance(m, (QuantConv2d, QuantLinear)))
    with pytest.raises(ValueError, match="input_size"):
        summarize(nn.Sequential(nn.Linear(2, 2)))
