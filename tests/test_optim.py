"""Latent-weight clipping, parameter groups, BiPer's loss term and tau schedule."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from onebit.methods import binarize_
from onebit.nn import LatentClipWarning, QuantConv2d, QuantLinear
from onebit.optim import (
    LatentClip,
    binary_weight_layers,
    biper_regularizer,
    biper_tau,
    clip_latent_weights_,
    param_groups,
)


def mixed_model() -> nn.Sequential:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LatentClipWarning)
        return nn.Sequential(
            nn.Conv2d(1, 3, 3),                                              # float
            QuantConv2d(3, 4, 3, weight_quantizer="sign"),                   # clipped
            QuantConv2d(4, 4, 1, weight_quantizer="magnitude_aware_sign"),   # binary, not clipped
            QuantConv2d(4, 4, 1, weight_quantizer="periodic_sign", output_scale=True),  # binary
            nn.BatchNorm2d(4), nn.Flatten(),
            QuantLinear(4 * 4 * 4, 5, weight_quantizer={"name": "periodic_sign", "stage": 1}),  # real
            QuantLinear(5, 2, weight_quantizer="scaled_sign"),               # clipped
        )


def test_clip_latent_weights_only_where_the_quantizer_needs_it():
    m = mixed_model()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(50)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert clip_latent_weights_(m) == 2
    for k, v in m.state_dict().items():
        if k in ("1.weight", "7.weight"):
            assert torch.equal(v, before[k].clamp(-1, 1)) and v.abs().max() <= 1
            assert before[k].abs().max() > 1
        else:
            assert torch.equal(v, before[k]), k


def test_latent_clip_hook_runs_after_every_step():
    m = mixed_model()
    opt = torch.optim.SGD(m.parameters(), lr=100.0)
    handle = LatentClip(m).attach(opt)
    x = torch.randn(2, 1, 8, 8)
    for _ in range(2):
        opt.zero_grad()
        m(x).pow(2).sum().backward()
        opt.step()
        assert m[1].weight.abs().max() <= 1 and m[7].weight.abs().max() <= 1
    assert m[2].weight.abs().max() > 1  # unclipped quantizer left alone
    handle.remove()
    with torch.no_grad():
        m[1].weight.mul_(100)
    opt.step()
    assert m[1].weight.abs().max() > 1
    assert LatentClip(m)() == 2 and m[1].weight.abs().max() <= 1


def test_param_groups_split_binary_latent_weights():
    m = mixed_model()
    m[0].bias.requires_grad_(False)
    groups = param_groups(m, weight_decay=1e-4, binary_weight_decay=0.0)
    by = {g["name"]: g for g in groups}
    assert by["binary_weights"]["weight_decay"] == 0.0 and by["other"]["weight_decay"] == 1e-4
    binary = {id(m[i].weight) for i in (1, 2, 3, 7)}
    assert {id(p) for p in by["binary_weights"]["params"]} == binary
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert {id(p) for p in by["other"]["params"]} == trainable - binary
    assert id(m[0].bias) not in {id(p) for g in groups for p in g["params"]}
    assert [n for n, _ in binary_weight_layers(m)] == ["1", "2", "3", "7"]
    torch.optim.AdamW(groups, lr=1e-3)  # accepted by a torch optimizer
    only_float = param_groups(nn.Linear(2, 2), 0.1)
    assert [g["name"] for g in only_float] == ["other"]


def test_biper_regularizer_value_and_gradient():
    m = mixed_model()
    tau = 0.037
    reg = biper_regularizer(m, tau)
    layers = [m[3], m[6]]  # both periodic layers (stage 2 and stage 1)
    expect = sum(tau * (0.5 - 0.5 * torch.cos(2 * l.weight_quantizer.omega0 * l.weight)).mean() for l in layers)
    torch.testing.assert_close(reg, expect)
    reg.backward()
    for l in layers:
        w0 = l.weight_quantizer.omega0
        torch.testing.assert_close(l.weight.grad, tau * w0 * torch.sin(2 * w0 * l.weight.detach()) / l.weight.numel())
    with pytest.raises(ValueError, match="periodic"):
        biper_regularizer(nn.Linear(2, 2), 0.1)


def test_biper_tau_schedule():
    assert math.isclose(biper_tau(0, 100, 0.01, 0.05), 0.01)
    assert math.isclose(biper_tau(100, 100, 0.01, 0.05), 0.05)
    mid = biper_tau(50, 100, 0.01, 0.05)
    a = 0.04 / (math.e - 1)
    assert math.isclose(mid, a * math.exp(0.5) + 0.01 - a)
    with pytest.raises(ValueError):
        biper_tau(1, 0, 0.0, 1.0)


def test_bnn_training_step_keeps_latent_weights_in_range():
    torch.manual_seed(1)
    model = binarize_(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), "bnn")
    opt = torch.optim.Adam(param_groups(model, 0.0), lr=0.5)
    LatentClip(model).attach(opt)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(16, 6)), torch.randint(0, 3, (16,))).backward()
        opt.step()
    assert all(l.weight.abs().max() <= 1 for l in (model[0], model[2][0]))  # [2] = (linear, BN)
