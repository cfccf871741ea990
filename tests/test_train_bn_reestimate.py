"""Bi-Real's last stage: BatchNorm statistics re-estimated with the weights frozen at their binary
values, over un-augmented training images; checked against a direct computation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from onebit.train import artifacts, train
from onebit.train.build import binary_weight_layers
from onebit.train.config import validate
from onebit.train.data import SYNTHETIC, OnebitDataModule
from onebit.train.module import OnebitModule

BATCH = 32


def _config(tmp_path: Path, batches: int | None) -> dict:
    return {
        "name": "bn",
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "method": {"name": "bireal"},
        "data": {"name": "synthetic", "batch_size": BATCH, "val_size": 128, "train_subset": 512,
                 "test_subset": 128, "augment": {"crop_padding": 4, "hflip": True}},
        "optim": {"weight_decay": 0.0},
        "trainer": {"max_epochs": 1, "max_steps": 4, "ckpt_every_n_steps": 0,
                    "progress_bar": False},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": False},
        "stages": [{"name": "binary"},
                   {"name": "bn", "kind": "bn_reestimate", "bn_reestimate": {"batches": batches}}],
    }


def _load(path: Path) -> nn.Module:
    state, config = artifacts.load_weights_file(path)
    module = OnebitModule(config)
    module.model.load_state_dict(state)
    return module.model


@torch.no_grad()
def _direct_statistics(model: nn.Module, images: torch.Tensor) -> dict[str, tuple]:
    """Freeze the binary weights at sign(w), then per BatchNorm layer the mean over batches of its
    input's per-batch channel mean and unbiased variance (every BatchNorm normalising with the
    batch's statistics, the rest in eval mode): the cumulative average the stage must hold."""
    for layer in binary_weight_layers(model).values():
        layer.weight.copy_(torch.where(layer.weight >= 0, 1.0, -1.0))
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    seen: dict[str, list] = {n: [] for n in bns}
    hooks = []
    for name, bn in bns.items():
        def record(mod, inp, name=name):
            x = inp[0].transpose(0, 1).flatten(1)  # [C, everything else]
            seen[name].append((x.mean(1), x.var(1, unbiased=True)))
        hooks.append(bn.register_forward_pre_hook(record))
        bn.momentum = 0.0  # normalise with batch statistics, leave the running ones alone
    model.eval()
    for bn in bns.values():
        bn.train()
    mean, std = torch.tensor(SYNTHETIC["mean"]), torch.tensor(SYNTHETIC["std"])
    for i in range(0, len(images) - BATCH + 1, BATCH):
        x = images[i: i + BATCH].permute(0, 3, 1, 2).float() / 255.0
        model((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1))
    for h in hooks:
        h.remove()
    return {n: (torch.stack([m for m, _ in v]).mean(0), torch.stack([v_ for _, v_ in v]).mean(0))
            for n, v in seen.items()}


@pytest.mark.parametrize("batches", [5, None])
def test_bn_stage_holds_the_statistics_of_unaugmented_training_images(tmp_path, batches):
    train(validate(_config(tmp_path, batches)))
    run = tmp_path / "runs" / "bn" / "stages"
    before = _load(run / "1-binary" / "model.safetensors")
    after = _load(run / "2-bn" / "model.safetensors")
    result = json.loads((run / "2-bn" / "results.json").read_text())

    dm = OnebitDataModule.from_config(validate(_config(tmp_path, batches)))
    dm.setup("fit")
    images = dm._train[0]  # the training part (validation held out), in the loader's fixed order
    n = len(images) // BATCH if batches is None else batches
    assert result["bn_batches"] == n and result["steps"] == 0
    expected = _direct_statistics(before, images[: n * BATCH])

    got = {k: m for k, m in after.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert set(got) == set(expected) and len(got) >= 2
    for name, (mean, var) in expected.items():
        assert torch.allclose(got[name].running_mean, mean, rtol=1e-4, atol=1e-4), name
        assert torch.allclose(got[name].running_var, var, rtol=1e-4, atol=1e-4), name
        assert int(got[name].num_batches_tracked) == n
    # weights frozen at the binary values of the trained stage
    for name, layer in binary_weight_layers(after).items():
        assert torch.equal(layer.weight, dict(before.named_modules())[name].weight)
