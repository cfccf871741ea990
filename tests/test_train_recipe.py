"""A recipe is resolved once into typed stages, and the trainer reads only those."""

from __future__ import annotations

import dataclasses

import pytest

import onebit.train.recipe as recipe_mod
from onebit.train import train
from onebit.train.config import ConfigError, apply_overrides, load_config, validate
from onebit.train.recipe import Augment, Recipe, Stage, resolve


def _tiny(tmp_path) -> dict:
    return {
        "name": "typed",
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "data": {"name": "synthetic", "batch_size": 32, "val_size": 128, "train_subset": 256,
                 "test_subset": 64, "augment": {"hflip": True}},
        "optim": {"lr": 0.01},
        "trainer": {"max_epochs": 1, "max_steps": 2, "ckpt_every_n_steps": 0,
                    "progress_bar": False},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": False},
        "stages": [{"name": "real", "method": {"name": "float"}, "relu_to_hardtanh": True},
                   {"name": "bin", "method": {"name": "biper", "stage": 2, "omega0": 15.0},
                    "optim": {"name": "sgd", "lr": 0.003}}],
    }


def test_resolve_gives_typed_stages(tmp_path):
    r = resolve(validate(_tiny(tmp_path)))
    assert isinstance(r, Recipe) and r.run_dir == tmp_path / "runs" / "typed"
    real, binary = r.stages
    assert isinstance(binary, Stage) and [s.name for s in r.stages] == ["real", "bin"]
    assert real.init_from is None and binary.init_from == "previous"
    assert real.model.relu_to_hardtanh and not binary.model.relu_to_hardtanh
    assert binary.method.name == "biper" and binary.method.options == {"stage": 2, "omega0": 15.0}
    assert binary.method.create().omega0 == 15.0
    assert binary.optim.name == "sgd" and binary.optim.lr == 0.003 and real.optim.lr == 0.01
    assert binary.optim.betas == (0.9, 0.999) and binary.schedule.name == "cosine"
    assert binary.data.augment == Augment(crop_padding=0, hflip=True)
    assert binary.data.meta.num_classes == 10 and binary.data.meta.input_size == (1, 28, 28)
    assert binary.trainer.max_steps == 2 and binary.output.plots is False
    assert binary.config["method"]["omega0"] == 15.0  # the plain dict stays for saving
    with pytest.raises(dataclasses.FrozenInstanceError):
        binary.optim.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("override, words", [
    ("stages.1.method.name=bnnn", "did you mean 'bnn'"),
    ("stages.0.model.depth=3", "its options"),
    ("data.name=imagenet", "known datasets"),
    ("stages.1.method.omega0=-1", "omega0 must be"),
    ("data.augment.rotate=1", "crop_padding, hflip"),
])
def test_resolve_reports_bad_recipes_as_before(tmp_path, override, words):
    cfg = apply_overrides(validate(_tiny(tmp_path)), [override])
    with pytest.raises(ConfigError, match=words):
        resolve(cfg)


def test_every_packaged_recipe_resolves():
    from onebit.recipes import list_recipes

    for name in list_recipes():
        r = resolve(load_config(name))
        final = r.stages[-1]
        assert name == f"{final.method.name}_{final.model.name}_{final.data.name}"


def test_a_run_checks_each_stage_once(tmp_path, monkeypatch):
    calls = {"meta": 0, "method": 0, "model": 0}

    def counting(key, fn):
        def wrapped(*a, **kw):
            calls[key] += 1
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(recipe_mod, "dataset_meta", counting("meta", recipe_mod.dataset_meta))
    monkeypatch.setattr(recipe_mod, "_check_method", counting("method", recipe_mod._check_method))
    monkeypatch.setattr(recipe_mod, "_check_model", counting("model", recipe_mod._check_model))
    results = train(validate(_tiny(tmp_path)))
    assert results["steps"] == 4 and len(results["stages"]) == 2
    assert calls == {"meta": 2, "method": 2, "model": 2}
