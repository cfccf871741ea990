"""Training with Lightning: recipes (YAML configs with overrides), the LightningModule and
DataModule, atomic mid-epoch checkpoints with exact resumption, multi-stage recipes, results.

Example::

    from onebit.train import apply_overrides, load_config, resolve, train
    cfg = apply_overrides(load_config("bnn_fmnist_cnn_fashion_mnist"),  # a packaged recipe
                          ["trainer.max_epochs=1"])
    recipe = resolve(cfg)         # checked once: typed stages (model, method, data, optim, ...)
    results = train(recipe)       # writes runs/<name>/...; results["test_acc"]

The command line does the same: ``onebit train --config <recipe>.yaml trainer.max_epochs=1``.
"""

from __future__ import annotations

from onebit.train.config import ConfigError, apply_overrides, load_config, resolve_stages, validate
from onebit.train.data import OnebitDataModule, ResumableBatches
from onebit.train.module import OnebitModule
from onebit.train.recipe import Recipe, Stage, resolve
from onebit.train.runner import evaluate_checkpoint, run_dir_of, train

__all__ = [
    "ConfigError",
    "OnebitDataModule",
    "OnebitModule",
    "Recipe",
    "ResumableBatches",
    "apply_overrides",
    "evaluate_checkpoint",
    "load_config",
    "resolve",
    "resolve_stages",
    "run_dir_of",
    "Stage",
    "train",
    "validate",
]
