"""Build what a stage describes: the model (binarized by its method), and load weights into it.

The names and options are checked once, when the recipe is resolved (:mod:`onebit.train.recipe`);
:func:`check_buildable` runs those checks on a plain config dict, so a misspelt recipe fails
before any data is read, with a :class:`~onebit.train.config.ConfigError` that lists what exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from onebit.optim import binary_weight_layers as _optim_binary_weight_layers
from onebit.train.config import ConfigError
from onebit.train.recipe import _hint  # noqa: F401  (the command line's name suggestions)
from onebit.train.recipe import DatasetMeta, Stage, dataset_meta, resolve_stage

__all__ = [
    "DatasetMeta",
    "dataset_meta",
    "check_buildable",
    "build_model",
    "binary_weight_layers",
    "load_weights_",
]

def check_buildable(cfg: dict[str, Any]) -> None:
    """Check the dataset, model and method names and options of ``cfg`` (one stage's full
    config) without building anything heavy (the method object is cheap and is built to
    validate its options)."""
    resolve_stage(cfg)


def build_model(stage: Stage | dict[str, Any]) -> tuple[nn.Module, Any]:
    """``models.create`` + ``binarize_`` as the stage says; returns ``(model, method)``.

    ``stage`` is a :class:`~onebit.train.recipe.Stage` or a stage's config dict (resolved, and so
    checked, here). ``relu_to_hardtanh: true`` replaces every ``nn.ReLU`` module of the float
    model by ``nn.Hardtanh`` (``clip(x, -1, 1)``) before the method is applied: the real-valued
    pretraining of Bi-Real Net, for architectures without an ``activation`` option.
    """
    # native kernels (onebit.nn): onebit.train imports without the compiled extension
    from onebit import binarize_
    from onebit.models import create

    if not isinstance(stage, Stage):
        stage = resolve_stage(stage)
    meta, spec = stage.data.meta, stage.model
    try:
        model = create(spec.name, num_classes=meta.num_classes, in_channels=meta.input_size[0],
                       **spec.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {spec.name}: {exc}") from None
    if spec.relu_to_hardtanh:
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is nn.ReLU:
                    setattr(parent, child_name, nn.Hardtanh())
    method = stage.method.create()
    model = binarize_(model, method)
    return model, method


def binary_weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose weight quantizer is binary (``weight_quantizer.is_binary``), by module name."""
    return dict(_optim_binary_weight_layers(model))


def load_weights_(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load ``state`` into ``model`` for a stage that starts from another stage's weights.

    Every tensor of ``state`` must find a parameter/buffer of the same shape (a different
    architecture is an error); entries of the model missing from ``state`` are allowed only when
    they are new method parameters (quantizer scales etc.) and are returned so the caller can
    report them.
    """
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ConfigError(f"{source}: weights {', '.join(unexpected[:5])}{'...' if len(unexpected) > 5 else ''} "
                          "do not exist in this stage's model; init_from must come from the same "
                          "architecture (model.*)")
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise ConfigError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects "
                              f"{tuple(own[key].shape)}; init_from must come from the same "
                              "architecture (model.*)")
    missing = sorted(set(own) - set(state))
    model.load_state_dict(state, strict=False)
    return missing


def config_fields(obj: Any) -> dict[str, Any]:
    """A method dataclass as a plain dict (for results.json)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            out[f.name] = v if isinstance(v, (int, float, str, bool, type(None), list, tuple)) else repr(v)
        return out
    return {"repr": repr(obj)}

