"""Training configuration: the schema, YAML loading, ``key.sub=value`` overrides and stage resolution.

A recipe is a YAML file whose fields mirror :data:`SCHEMA`; every field has a default, so a recipe
names only what differs. A multi-stage recipe (Bi-Real, BiPer) lists ``stages``: each entry is a
partial config merged over the top-level fields, and stage ``i`` starts from the weights stage
``i - 1`` ended with (``init_from: previous``).

Overrides ``a.b.c=value`` parse ``value`` as YAML (``0.1`` is a float, ``null`` is None, ``[1, 2]``
a list). An override of a top-level field applies to the base *and to every stage* (so
``trainer.max_steps=5`` shortens every stage); ``stages.1.optim.lr=0.01`` targets one stage.
Unknown keys, wrong types and values out of range raise :class:`ConfigError` whose message names
the fix (the known keys, the expected type, the allowed values).

``model`` and ``method`` are open sections: besides ``name`` they take the keyword arguments of
``onebit.models.create`` and ``onebit.methods.get_method``; those are checked against the model's
and method's signatures when the recipe is resolved into typed stages
(:func:`onebit.train.recipe.resolve`).
``data.augment`` is open too (the keyword arguments of the batch augmentation).
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onebit.errors import OnebitError
from onebit.recipes import find_recipe

#: The built-in ``synthetic`` dataset (``data.name: synthetic``): tiny, generated, no files, for
#: smoke tests of the whole pipeline. Each class has a fixed random prototype image; a sample is
#: its class prototype plus noise, so a small network learns it within a few dozen steps.
SYNTHETIC: dict[str, Any] = {
    "num_classes": 10,
    "input_size": (1, 28, 28),
    "num_train": 2048,
    "num_test": 512,
    "mean": (0.5,),
    "std": (0.25,),
}

__all__ = [
    "ConfigError",
    "Field",
    "SCHEMA",
    "OPEN_SECTIONS",
    "defaults",
    "load_config",
    "parse_override",
    "apply_overrides",
    "validate",
    "resolve_stages",
    "dump_yaml",
]


class ConfigError(OnebitError, ValueError):
    """A user error in a recipe, an override or a command-line argument; the message names the fix."""


@dataclass(frozen=True)
class Field:
    """One leaf of the schema: its default, the accepted Python types, and optional checks."""

    default: Any
    types: tuple[type, ...]
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    help: str = ""


def _f(default: Any, *types: type, nullable: bool = False, choices=None, minimum=None, help: str = ""):
    return Field(default, types, nullable, tuple(choices) if choices else None, minimum, help)


_NUM = (int, float)
_LIMIT = (int, float)  # Lightning's limit_*_batches: an int (batches) or a float (fraction)

#: The full schema; a nested dict whose leaves are :class:`Field`.
SCHEMA: dict[str, Any] = {
    "name": _f(None, str, nullable=True, help="run name; default: the recipe file's stem"),
    "seed": _f(0, int, help="seed of the weights, the data order and the augmentation"),
    "kind": _f("train", str, choices=("train", "bn_reestimate"),
               help="train: optimise; bn_reestimate: freeze weights at their binary values and "
                    "re-estimate BatchNorm statistics (Bi-Real's last stage)"),
    "init_from": _f(None, str, nullable=True,
                    help="'previous' (the previous stage's weights) or a model.safetensors/.ckpt path"),
    "relu_to_hardtanh": _f(False, bool,
                           help="replace every nn.ReLU of the float model by nn.Hardtanh "
                                "(clip(x, -1, 1)) before the method applies: Bi-Real's real-valued "
                                "pretraining, for architectures without an activation option"),
    "model": {"name": _f("fmnist_cnn", str, help="a name from onebit.models.list_models()")},
    "method": {"name": _f("float", str, help="a name from onebit.methods.list_methods()")},
    "data": {
        "name": _f("fashion_mnist", str, help="a name from onebit.data.list_datasets()"),
        "data_dir": _f(None, str, nullable=True, help="directory of the dataset files"),
        "download": _f(True, bool),
        "batch_size": _f(128, int, minimum=1, help="per device"),
        "eval_batch_size": _f(512, int, minimum=1),
        "num_workers": _f(0, int, minimum=0),
        "val_size": _f(5000, int, minimum=0, help="training images held out for validation"),
        "train_subset": _f(None, int, nullable=True, minimum=1,
                           help="use only the first N training images (quick runs)"),
        "test_subset": _f(None, int, nullable=True, minimum=1),
        "drop_last": _f(True, bool, help="drop the last incomplete training batch of an epoch"),
        "augment": {},
    },
    "optim": {
        "name": _f("adam", str, choices=("adam", "adamw", "sgd")),
        "lr": _f(1e-3, *_NUM, minimum=0.0),
        "weight_decay": _f(0.0, *_NUM, minimum=0.0, help="on float weights (not BN, not biases)"),
        "binary_weight_decay": _f(None, *_NUM, nullable=True, minimum=0.0,
                                  help="on latent binary weights; null: the method's choice "
                                       "(Bi-Real: 0), else weight_decay"),
        "momentum": _f(0.9, *_NUM, minimum=0.0, help="sgd only"),
        "nesterov": _f(False, bool),
        "betas": _f([0.9, 0.999], list, help="adam/adamw"),
        "eps": _f(1e-8, *_NUM, minimum=0.0),
        "gradient_clip_val": _f(None, *_NUM, nullable=True, minimum=0.0),
    },
    "schedule": {
        "name": _f("cosine", str, choices=("constant", "cosine", "linear", "step")),
        "warmup_epochs": _f(0.0, *_NUM, minimum=0.0),
        "min_lr_ratio": _f(0.0, *_NUM, minimum=0.0, help="final lr / base lr (cosine, linear)"),
        "milestones": _f([], list, help="step: epochs at which lr is multiplied by gamma"),
        "gamma": _f(0.1, *_NUM, minimum=0.0),
    },
    "bn_reestimate": {
        "batches": _f(200, int, nullable=True, minimum=1,
                      help="full training batches (no augmentation) used to re-estimate "
                           "BatchNorm; null: the whole training set"),
    },
    "trainer": {
        "max_epochs": _f(10, int, minimum=1),
        "max_steps": _f(-1, int, help="-1: no limit (max_epochs decides)"),
        "limit_train_batches": _f(None, *_LIMIT, nullable=True, minimum=0),
        "limit_val_batches": _f(None, *_LIMIT, nullable=True, minimum=0),
        "limit_test_batches": _f(None, *_LIMIT, nullable=True, minimum=0),
        "accelerator": _f("cpu", str, choices=("cpu", "gpu", "cuda", "mps", "auto")),
        "devices": _f(1, int, str, help="number of devices, or 'auto'"),
        "num_nodes": _f(1, int, minimum=1),
        "strategy": _f("auto", str, help="Lightning strategy: auto, ddp, ddp_spawn, ..."),
        "precision": _f("auto", str, choices=("auto", "32-true", "bf16-mixed", "16-mixed")),
        "ckpt_every_n_steps": _f(50, int, minimum=0,
                                 help="also checkpoint every N optimizer steps (0: epoch ends only)"),
        "log_every_n_steps": _f(20, int, minimum=1),
        "progress_bar": _f(True, bool),
        "deterministic": _f(False, bool),
        "threads": _f(None, int, nullable=True, minimum=1, help="torch CPU threads"),
    },
    "output": {
        "dir": _f("runs", str, help="parent of the run directory"),
        "tensorboard": _f(True, bool),
        "plots": _f(True, bool),
    },
    "stages": _f([], list, help="multi-stage recipes: partial configs run in order"),
}

#: Sections that accept keys beyond the schema (checked when the model/method/augmentation is built).
OPEN_SECTIONS = ("model", "method", "data.augment")


def _is_leaf(node: Any) -> bool:
    return isinstance(node, Field)


def defaults(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config with every field at its default."""
    schema = SCHEMA if schema is None else schema
    return {k: (copy.deepcopy(v.default) if _is_leaf(v) else defaults(v)) for k, v in schema.items()}


def _known(node: dict[str, Any]) -> str:
    return ", ".join(sorted(node))


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(path: str, field: Field, value: Any) -> Any:
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"{path} may not be null; expected {_typename(field)}")
    ok = isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)
    if not ok:
        raise ConfigError(f"{path}={value!r} has the wrong type; expected {_typename(field)}")
    if float in field.types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if int not in field.types else value
    if field.choices is not None and value not in field.choices:
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of {', '.join(map(str, field.choices))}")
    if field.minimum is not None and isinstance(value, (int, float)) and value < field.minimum:
        raise ConfigError(f"{path}={value!r} is out of range; it must be >= {field.minimum}")
    return value


def _typename(field: Field) -> str:
    names = " or ".join(t.__name__ for t in field.types)
    return names + (" or null" if field.nullable else "")


def _validate_node(node: dict[str, Any], schema: dict[str, Any], prefix: str, partial: bool) -> dict:
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of keys to values")
    out: dict[str, Any] = {}
    open_section = re.sub(r"^stages\.\d+\.", "", prefix.rstrip(".")) in OPEN_SECTIONS
    for key, value in node.items():
        path = prefix + str(key)
        if key not in schema:
            if open_section:
                out[key] = value
                continue
            raise ConfigError(
                f"unknown config key {path!r}{_suggest(str(key), schema)}; "
                f"known keys{' under ' + prefix.rstrip('.') if prefix else ''}: {_known(schema)}"
            )
        sub = schema[key]
        if _is_leaf(sub):
            out[key] = _check_value(path, sub, value)
        else:
            out[key] = _validate_node(value, sub, path + ".", partial)
    if not partial:
        for key, sub in schema.items():
            if key not in out:
                out[key] = copy.deepcopy(sub.default) if _is_leaf(sub) else defaults(sub)
    return out


def validate(cfg: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """Check ``cfg`` against :data:`SCHEMA`; fill defaults unless ``partial``; validate the stages."""
    out = _validate_node(cfg, SCHEMA, "", partial)
    stages = out.get("stages", [])
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ConfigError(f"stages.{i} must be a mapping (a partial config)")
        if "stages" in stage:
            raise ConfigError(f"stages.{i} may not contain stages of its own")
        stages[i] = _validate_node(stage, SCHEMA, f"stages.{i}.", partial=True)
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively by ``update`` (new dicts; lists and scalars are replaced)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe, validate it and fill defaults; ``name`` defaults to the file's stem.

    ``path`` is a file, or the bare name of a recipe shipped in the package (:mod:`onebit.recipes`,
    e.g. ``bireal_fmnist_cnn_fashion_mnist``); a file of that name in the working directory wins.
    """
    path = Path(path)
    if not path.is_file():
        packaged = find_recipe(str(path))
        if packaged is None:
            raise ConfigError(f"config file {str(path)!r} not found; give a path to a recipe "
                              "(e.g. configs/<recipe>.yaml) or the name of a packaged recipe "
                              "(`onebit list recipes`)")
        path = packaged
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys (got {type(raw).__name__})")
    cfg = validate(raw)
    if cfg["name"] is None:
        cfg["name"] = path.stem
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'optim.lr=0.01'`` -> ``(['optim', 'lr'], 0.01)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value (e.g. optim.lr=0.01)")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override {text!r} has an empty key; write key.sub=value (e.g. optim.lr=0.01)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML; quote strings") from None
    return parts, value


def _set_path(cfg: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(parts[: i + 1]))
            continue
        if part not in node:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, ".".join(parts))
        node[idx] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, path: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise ConfigError(f"{path}: {part!r} is not a list index (0..{len(node) - 1})") from None
    if not 0 <= idx < len(node):
        raise ConfigError(f"{path}: index {idx} is out of range; the list has {len(node)} entries")
    return idx


def _list_item(node: list, part: str, path: str) -> Any:
    return node[_list_index(node, part, path)]


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a validated config and validate the result.

    Top-level overrides also apply to every stage (see the module docstring); ``stages.i.key=value``
    applies to stage ``i`` only.
    """
    out = copy.deepcopy(cfg)
    global_updates: dict[str, Any] = {}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] == "stages" and len(parts) > 1:
            if not out["stages"]:
                raise ConfigError(f"override {text!r}: this recipe has no stages; drop the 'stages.i.' prefix")
            _set_path(out, parts, value, text)
        else:
            _set_path(out, parts, value, text)
            if parts[0] not in ("stages", "name"):
                _set_path(global_updates, parts, value, text)
    out = validate(out)
    if global_updates and out["stages"]:
        for i, stage in enumerate(out["stages"]):
            out["stages"][i] = _validate_node(deep_merge(stage, global_updates), SCHEMA,
                                              f"stages.{i}.", partial=True)
    return out


def resolve_stages(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The full config of each stage (one entry for a single-stage recipe).

    Each stage is the top-level config merged with the stage's partial config; stage names default
    to ``stage<i>``; a stage after the first starts from the previous one unless it says otherwise.
    """
    base = {k: v for k, v in cfg.items() if k != "stages"}
    if not cfg.get("stages"):
        return [validate(base)]
    out = []
    for i, stage in enumerate(cfg["stages"]):
        merged = deep_merge(base, stage)
        merged["name"] = str(stage.get("name") or f"stage{i + 1}")
        if i > 0 and "init_from" not in stage:
            merged["init_from"] = "previous"
        if i == 0 and merged.get("init_from") == "previous":
            raise ConfigError("stages.0.init_from='previous' has no previous stage; use a path or null")
        out.append(validate(merged))
    return out


def dump_yaml(cfg: dict[str, Any]) -> str:
    """The config as YAML text (key order kept)."""
    clean = {k: v for k, v in cfg.items() if not k.startswith("_")}
    return yaml.safe_dump(clean, sort_keys=False, default_flow_style=None)
