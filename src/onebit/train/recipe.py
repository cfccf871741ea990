"""A recipe resolved once into typed objects: the run and each stage's model, method, data,
optimizer, schedule, trainer and output settings.

:func:`resolve` takes a validated config (:mod:`onebit.train.config`: the YAML dict with overrides
applied), splits it into stages (:func:`~onebit.train.config.resolve_stages`) and checks, once per
stage, everything that can be checked before data is read: the dataset's name (and its classes,
input size and statistics, :class:`DatasetMeta`), the model's name and options against
``onebit.models``, the method's name and options by building it, the augmentation keys. Every
error is a :class:`~onebit.train.config.ConfigError` naming the fix. The trainer then reads typed
fields (``stage.optim.lr``, ``stage.data.meta.num_classes``) and never re-checks the dict;
``Stage.config`` keeps the stage's plain dict for what is written to disk (weights metadata,
``config.yaml``, Lightning's hyperparameters).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onebit.data import DATASETS, list_datasets
from onebit.data.catalog import canonical_name
from onebit.train.config import SYNTHETIC, ConfigError, resolve_stages

__all__ = [
    "AUGMENT_KEYS",
    "Augment",
    "DataSpec",
    "DatasetMeta",
    "MethodSpec",
    "ModelSpec",
    "OptimSpec",
    "OutputSpec",
    "Recipe",
    "ScheduleSpec",
    "Stage",
    "TrainerSpec",
    "dataset_meta",
    "resolve",
    "resolve_stage",
]

#: the keys ``data.augment`` accepts
AUGMENT_KEYS = ("crop_padding", "hflip")


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


@dataclass(frozen=True)
class ModelSpec:
    """``onebit.models.create(name, **options)``; the options are checked against the model's."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    relu_to_hardtanh: bool = False


@dataclass(frozen=True)
class MethodSpec:
    """``onebit.methods.get_method(name, **options)``, checked by building it once."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def create(self) -> Any:
        """A new method object (the options are known to be valid)."""
        # native kernels (onebit.nn): onebit.train imports without the compiled extension
        from onebit.methods import get_method

        return get_method(self.name, **self.options)


@dataclass(frozen=True)
class Augment:
    """Training-batch augmentation: random crop with ``crop_padding`` pixels, horizontal flip."""

    crop_padding: int = 0
    hflip: bool = False


@dataclass(frozen=True)
class DataSpec:
    name: str
    meta: DatasetMeta
    data_dir: str | None
    download: bool
    batch_size: int
    eval_batch_size: int
    num_workers: int
    val_size: int
    train_subset: int | None
    test_subset: int | None
    drop_last: bool
    augment: Augment


@dataclass(frozen=True)
class OptimSpec:
    name: str
    lr: float
    weight_decay: float
    binary_weight_decay: float | None
    momentum: float
    nesterov: bool
    betas: tuple[float, float]
    eps: float
    gradient_clip_val: float | None


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    warmup_epochs: float
    min_lr_ratio: float
    milestones: tuple[float, ...]
    gamma: float


@dataclass(frozen=True)
class TrainerSpec:
    max_epochs: int
    max_steps: int
    limit_train_batches: int | float | None
    limit_val_batches: int | float | None
    limit_test_batches: int | float | None
    accelerator: str
    devices: int | str
    num_nodes: int
    strategy: str
    precision: str
    ckpt_every_n_steps: int
    log_every_n_steps: int
    progress_bar: bool
    deterministic: bool
    threads: int | None


@dataclass(frozen=True)
class OutputSpec:
    dir: str
    tensorboard: bool
    plots: bool


@dataclass(frozen=True)
class Stage:
    """One stage of a run, every field checked; ``config`` is its plain (resolved) dict."""

    name: str
    seed: int
    kind: str                # "train" or "bn_reestimate"
    init_from: str | None    # None, "previous" or a weights path
    bn_batches: int | None   # bn_reestimate.batches (None: the whole training set)
    model: ModelSpec
    method: MethodSpec
    data: DataSpec
    optim: OptimSpec
    schedule: ScheduleSpec
    trainer: TrainerSpec
    output: OutputSpec
    config: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Recipe:
    """A run: its name, its stages in order, and the validated config it came from."""

    name: str
    output_dir: str
    stages: tuple[Stage, ...]
    config: dict[str, Any] = field(repr=False, compare=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _check_model(name: str, options: dict[str, Any]) -> None:
    # native kernels (onebit.nn): onebit.train imports without the compiled extension
    from onebit.models import list_models, model_info

    known = list_models()
    if name not in known:
        raise ConfigError(f"unknown model {name!r}{_hint(name, known)}; known models: "
                          f"{', '.join(known)} (set model.name=...)")
    accepted = model_info(name).options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listed = ", ".join(f"model.{k}" for k in accepted) or "none"
        raise ConfigError(f"model {name} has no option(s) {', '.join(unknown)}; its options: "
                          f"{listed}")


def _check_method(name: str, options: dict[str, Any]) -> None:
    # native kernels (onebit.nn): onebit.train imports without the compiled extension
    from onebit.methods import get_method, list_methods

    known = list_methods()
    if name not in known:
        raise ConfigError(f"unknown method {name!r}{_hint(name, known)}; known methods: "
                          f"{', '.join(known)} (set method.name=...)")
    try:
        get_method(name, **options)
    except TypeError as exc:
        raise ConfigError(f"method {name}: {exc} (fix the method.* keys of the recipe)") from None
    except ValueError as exc:
        raise ConfigError(f"method {name}: {exc}") from None


def _augment(aug: dict[str, Any]) -> Augment:
    bad = sorted(set(aug) - set(AUGMENT_KEYS))
    if bad:
        raise ConfigError(f"unknown data.augment key(s) {', '.join(bad)}; known: "
                          f"{', '.join(sorted(AUGMENT_KEYS))}")
    return Augment(crop_padding=int(aug.get("crop_padding", 0) or 0),
                   hflip=bool(aug.get("hflip", False)))


def resolve_stage(cfg: dict[str, Any]) -> Stage:
    """Check one stage's full config (a :func:`~onebit.train.config.resolve_stages` entry, or
    the config stored with trained weights) and return it typed."""
    meta = dataset_meta(cfg)
    mname, mkw = _split(cfg["model"])
    _check_model(mname, mkw)
    xname, xkw = _split(cfg["method"])
    _check_method(xname, xkw)
    d, o, s, t, out = cfg["data"], cfg["optim"], cfg["schedule"], cfg["trainer"], cfg["output"]
    data = DataSpec(name=d["name"], meta=meta, data_dir=d["data_dir"], download=d["download"],
                    batch_size=d["batch_size"], eval_batch_size=d["eval_batch_size"],
                    num_workers=d["num_workers"], val_size=d["val_size"],
                    train_subset=d["train_subset"], test_subset=d["test_subset"],
                    drop_last=d["drop_last"], augment=_augment(d["augment"]))
    optim = OptimSpec(name=o["name"], lr=o["lr"], weight_decay=o["weight_decay"],
                      binary_weight_decay=o["binary_weight_decay"], momentum=o["momentum"],
                      nesterov=o["nesterov"], betas=tuple(o["betas"]), eps=o["eps"],
                      gradient_clip_val=o["gradient_clip_val"])
    schedule = ScheduleSpec(name=s["name"], warmup_epochs=s["warmup_epochs"],
                            min_lr_ratio=s["min_lr_ratio"], milestones=tuple(s["milestones"]),
                            gamma=s["gamma"])
    trainer = TrainerSpec(**{k: t[k] for k in TrainerSpec.__dataclass_fields__})
    return Stage(name=cfg["name"], seed=cfg["seed"], kind=cfg["kind"], init_from=cfg["init_from"],
                 bn_batches=cfg["bn_reestimate"]["batches"],
                 model=ModelSpec(mname, mkw, bool(cfg.get("relu_to_hardtanh"))),
                 method=MethodSpec(xname, xkw), data=data, optim=optim, schedule=schedule,
                 trainer=trainer, output=OutputSpec(out["dir"], out["tensorboard"], out["plots"]),
                 config=cfg)


def resolve(cfg: dict[str, Any]) -> Recipe:
    """A validated config (:func:`~onebit.train.config.load_config` /
    :func:`~onebit.train.config.apply_overrides`) as a :class:`Recipe` of checked stages."""
    stages = tuple(resolve_stage(st) for st in resolve_stages(cfg))
    return Recipe(name=cfg["name"], output_dir=cfg["output"]["dir"], stages=stages, config=cfg)
