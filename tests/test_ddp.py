"""Distributed data parallel training: two CPU processes (gloo) through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    """``onebit train ... trainer.devices=2 trainer.strategy=ddp`` on CPU: Lightning launches a
    second process, each rank trains on its own shard of the data, gradients are all-reduced, so
    both ranks end with the same parameters (hashed on each rank and gathered), which moved away
    from the initial ones."""
    cfg = {
        "name": "ddp",
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "method": {"name": "bnn"},
        "data": {"name": "synthetic", "batch_size": 16, "val_size": 0, "train_subset": 256,
                 "test_subset": 64},
        "trainer": {"max_epochs": 1, "max_steps": 3, "devices": 2, "strategy": "ddp",
                    "accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1,
                    "threads": 1},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": False},
    }
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, "-m", "onebit", "train", "--config", str(recipe)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "runs" / "ddp" / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 3
    assert results["batches_per_epoch"] == 256 // 2 // 16  # each rank sees its own half
    rank0, rank1 = results["rank_param_digests"]
    assert rank0 == rank1 == results["final_param_digest"]
    assert rank0 != results["initial_param_digest"]
