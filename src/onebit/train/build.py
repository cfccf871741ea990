"""Build what a config describes: the dataset's shape, the model (binarized by its method), weights.

Every name is checked up front against the registries (``list_models``, ``list_methods``,
``list_datasets``) and every option against the builder's signature, so a misspelt recipe fails
before any data is read, with a :class:`~onebit.train.config.ConfigError` that lists what exists.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from onebit.train.config import ConfigError
from onebit.train.data import SYNTHETIC

__all__ = [
    "DatasetMeta",
    "dataset_meta",
    "check_buildable",
    "build_model",
    "binary_weight_layers",
    "load_weights_",
]


@dataclass(frozen=True)
class DatasetMeta:
    """What a model needs to know about its data: classes, input size ``(C, H, W)``, statistics."""

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dataset_meta(cfg: dict[str, Any]) -> DatasetMeta:
    """Classes, input size and normalisation of ``cfg['data']['name']`` (no file is read)."""
    name = cfg["data"]["name"]
    if name == "synthetic":
        spec = SYNTHETIC
        return DatasetMeta("synthetic", spec["num_classes"], spec["input_size"], spec["mean"],
                           spec["std"])
    from onebit.data import DATASETS, list_datasets
    from onebit.data.catalog import canonical_name

    try:
        key = canonical_name(name)
    except (TypeError, ValueError):
        known = list_datasets() + ["synthetic"]
        raise ConfigError(f"unknown dataset {name!r}{_hint(str(name).lower(), known)}; known "
                          f"datasets: {', '.join(known)} (set data.name=...)") from None
    info = DATASETS[key]
    return DatasetMeta(info.name, info.num_classes, info.input_size, tuple(info.mean),
                       tuple(info.std))


def _split(section: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return section["name"], {k: v for k, v in section.items() if k != "name"}


def _method_kwargs_check(name: str, kwargs: dict[str, Any]) -> Any:
    from onebit.methods import get_method, list_methods

    known = list_methods()
    if name not in known:
        raise ConfigError(f"unknown method {name!r}{_hint(name, known)}; known methods: "
                          f"{', '.join(known)} (set method.name=...)")
    try:
        return get_method(name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"method {name}: {exc} (fix the method.* keys of the recipe)") from None
    except ValueError as exc:
        raise ConfigError(f"method {name}: {exc}") from None


def check_buildable(cfg: dict[str, Any]) -> None:
    """Check the dataset, model and method names and options of ``cfg`` without building anything
    heavy (the method object is cheap and is built to validate its options)."""
    dataset_meta(cfg)
    from onebit.models import list_models, model_info

    mname, mkw = _split(cfg["model"])
    known = list_models()
    if mname not in known:
        raise ConfigError(f"unknown model {mname!r}{_hint(mname, known)}; known models: "
                          f"{', '.join(known)} (set model.name=...)")
    options = model_info(mname).options
    unknown = sorted(set(mkw) - set(options))
    if unknown:
        accepted = ", ".join(f"model.{k}" for k in options) or "none"
        raise ConfigError(f"model {mname} has no option(s) {', '.join(unknown)}; its options: "
                          f"{accepted}")
    _method_kwargs_check(*_split(cfg["method"]))
    aug = cfg["data"]["augment"]
    allowed = {"crop_padding", "hflip"}
    bad = sorted(set(aug) - allowed)
    if bad:
        raise ConfigError(f"unknown data.augment key(s) {', '.join(bad)}; known: "
                          f"{', '.join(sorted(allowed))}")


def build_model(cfg: dict[str, Any]) -> tuple[nn.Module, Any]:
    """``models.create`` + ``binarize_`` as ``cfg`` says; returns ``(model, method)``.

    ``relu_to_hardtanh: true`` replaces every ``nn.ReLU`` module of the float model by
    ``nn.Hardtanh`` (``clip(x, -1, 1)``) before the method is applied: the real-valued pretraining
    of Bi-Real Net, for architectures without an ``activation`` option.
    """
    from onebit import binarize_
    from onebit.models import create

    check_buildable(cfg)
    meta = dataset_meta(cfg)
    mname, mkw = _split(cfg["model"])
    try:
        model = create(mname, num_classes=meta.num_classes, in_channels=meta.input_size[0], **mkw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {mname}: {exc}") from None
    if cfg.get("relu_to_hardtanh"):
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is nn.ReLU:
                    setattr(parent, child_name, nn.Hardtanh())
    method = _method_kwargs_check(*_split(cfg["method"]))
    model = binarize_(model, method)
    return model, method


def binary_weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose weight quantizer is binary (``weight_quantizer.is_binary``), by module name."""
    from onebit.optim import binary_weight_layers as layers

    return dict(layers(model))


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

