"""A trained run's PyTorch model and its dataset's splits, for the accuracy benchmarks."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TrainedRun", "load_run"]


@dataclass
class TrainedRun:
    model: Any  # the torch model in eval mode
    input_size: tuple[int, ...]
    normalization: dict[str, list[float]]
    class_names: list[str]
    train_x: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_run(run: str | Path, data_dir: str | None, script: str) -> TrainedRun:
    """The run's ``model.safetensors`` rebuilt from its config, and the dataset's train images
    and test split; exits with status 2 and one line naming ``script`` if the run has none."""
    from onebit.data import DATASETS, load_dataset
    from onebit.train.artifacts import load_weights_file
    from onebit.train.build import build_model, dataset_meta, load_weights_

    weights = Path(run) / "model.safetensors"
    if not weights.is_file():
        print(f"{script}: {weights} not found; train a recipe first", file=sys.stderr)
        raise SystemExit(2)
    state, config = load_weights_file(weights)
    model, _ = build_model(config)
    load_weights_(model, state, str(weights))
    model.eval()
    meta = dataset_meta(config)
    train_x, _ = load_dataset(meta.name, "train", data_dir=data_dir)
    test_x, test_y = load_dataset(meta.name, "test", data_dir=data_dir)
    return TrainedRun(model, tuple(meta.input_size), {"mean": list(meta.mean), "std": list(meta.std)},
                      list(DATASETS[meta.name].class_names), train_x, test_x, test_y)
