"""The weight quantization error logged beside the flip ratio, against a direct computation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from onebit.nn import QuantConv2d, QuantLinear
from onebit.train import artifacts, train
from onebit.train.config import validate
from onebit.train.module import OnebitModule, quantization_error


def _sgn(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quantization_error_per_family_matches_the_formula():
    torch.manual_seed(0)
    bnn = QuantConv2d(3, 4, 3, weight_quantizer="sign")
    bireal = QuantConv2d(3, 5, 3, weight_quantizer="magnitude_aware_sign")
    xnor = QuantLinear(6, 7, weight_quantizer="scaled_sign")
    biper = QuantConv2d(3, 4, 3, weight_quantizer={"name": "periodic_sign", "omega0": 20.0},
                        output_scale=True)
    float_conv = nn.Conv2d(3, 4, 3)  # not binary: not counted
    with torch.no_grad():
        biper.scale.uniform_(0.3, 0.9)
    model = nn.ModuleList([bnn, bireal, xnor, biper, float_conv])

    def alpha(w):
        return w.abs().flatten(1).mean(1).reshape(-1, *([1] * (w.dim() - 1)))

    w = [m.weight.detach() for m in (bnn, bireal, xnor, biper)]
    s = torch.sin(20.0 * w[3])
    sq = [((_sgn(w[0]) - w[0]) ** 2).sum(),
          ((alpha(w[1]) * _sgn(w[1]) - w[1]) ** 2).sum(),
          ((alpha(w[2]) * _sgn(w[2]) - w[2]) ** 2).sum(),
          ((biper.scale.detach().view(-1, 1, 1, 1) * _sgn(s) - s) ** 2).sum()]
    expected = float(sum(sq)) / sum(x.numel() for x in w)
    assert quantization_error(model) == pytest.approx(expected, rel=1e-6)
    # one layer alone: BiPer's E[(sin(w0 w) - gamma sign(sin(w0 w)))^2]
    assert quantization_error(nn.ModuleList([biper])) == pytest.approx(
        float(sq[3]) / w[3].numel(), rel=1e-6)
    assert quantization_error(nn.Sequential(float_conv)) is None


@pytest.mark.parametrize("method", [{"name": "biper", "stage": 2}, {"name": "xnor"}])
def test_quant_error_logged_in_metrics_csv(tmp_path: Path, method):
    cfg = {
        "name": "qe", "method": method,
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "data": {"name": "synthetic", "batch_size": 32, "val_size": 128, "train_subset": 512,
                 "test_subset": 128},
        "trainer": {"max_epochs": 2, "max_steps": 16, "ckpt_every_n_steps": 0,
                    "progress_bar": False, "log_every_n_steps": 4},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": False},
    }
    results = train(validate(cfg))
    run = tmp_path / "runs" / "qe"
    series = artifacts.read_metrics(run / "metrics.csv")
    assert len(series["quant_error"]) == 2 and len(series["flip_ratio"]) == 2
    assert "quant_error" in (run / "metrics.csv").read_text().splitlines()[0]
    state, config = artifacts.load_weights_file(run / "model.safetensors")
    module = OnebitModule(config)
    module.model.load_state_dict(state)
    direct = quantization_error(module.model)
    assert direct is not None and math.isfinite(direct) and direct > 0
    assert series["quant_error"][-1][1] == pytest.approx(direct, rel=1e-5)
    assert results["quant_error_last_epoch"] == pytest.approx(direct, rel=1e-6)
