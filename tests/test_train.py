"""onebit.train: config and overrides, schedules, the resumable loader, the LightningModule hooks,
end-to-end runs on the built-in synthetic dataset, kill -9 + resume, multi-stage recipes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from onebit.train import artifacts
from onebit.train.config import (
    ConfigError,
    apply_overrides,
    load_config,
    parse_override,
    resolve_stages,
    validate,
)
from onebit.train.data import EpochSampler, OnebitDataModule, ResumableBatches
from onebit.train.module import LRSchedule, OnebitModule, flip_ratio

REPO = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **extra) -> dict:
    """A run that takes seconds: a quarter-width fmnist_cnn on 384 synthetic training images."""
    cfg = {
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "method": {"name": "bnn"},
        "data": {"name": "synthetic", "batch_size": 32, "val_size": 128, "eval_batch_size": 256,
                 "train_subset": 512, "test_subset": 128},
        "trainer": {"max_epochs": 1, "ckpt_every_n_steps": 5, "progress_bar": False,
                    "log_every_n_steps": 2},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": False},
    }
    for key, value in extra.items():
        cfg[key] = value
    return cfg


def write_config(tmp_path: Path, cfg: dict, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------------------------------------
# config


def test_load_config_fills_defaults_and_names_run_after_file(tmp_path):
    cfg = load_config(write_config(tmp_path, {"method": {"name": "xnor"}}, "my_recipe"))
    assert cfg["name"] == "my_recipe"
    assert cfg["method"] == {"name": "xnor"}
    assert cfg["optim"]["lr"] == 1e-3 and cfg["trainer"]["max_epochs"] == 10
    assert cfg["data"]["name"] == "fashion_mnist"


def test_overrides_parse_values_as_yaml(tmp_path):
    cfg = load_config(write_config(tmp_path, {}))
    out = apply_overrides(cfg, ["optim.lr=0.05", "trainer.max_epochs=3", "data.data_dir=null",
                                "optim.betas=[0.8, 0.99]", "method.name=biper",
                                "method.omega0=30", "data.augment.hflip=true"])
    assert out["optim"]["lr"] == 0.05 and isinstance(out["trainer"]["max_epochs"], int)
    assert out["data"]["data_dir"] is None and out["optim"]["betas"] == [0.8, 0.99]
    assert out["method"] == {"name": "biper", "omega0": 30}
    assert out["data"]["augment"] == {"hflip": True}
    assert cfg["optim"]["lr"] == 1e-3  # the input is not modified
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=0.1", ["unknown config key 'optim.lrr'", "did you mean 'lr'", "weight_decay"]),
    ("trainer.max_epochs=abc", ["trainer.max_epochs", "expected int"]),
    ("trainer.max_epochs=true", ["wrong type", "expected int"]),
    ("optim.name=rmsprop", ["not allowed", "adam, adamw, sgd"]),
    ("data.batch_size=0", ["out of range", ">= 1"]),
    ("trainer.max_epochs=null", ["may not be null"]),
    ("nosuchsection.x=1", ["unknown config key 'nosuchsection'"]),
    ("optim.lr", ["key.sub=value"]),
    ("optim.lr.x=1", ["is a value, not a section"]),
    ("stages.0.optim.lr=1", ["has no stages"]),
])
def test_bad_overrides_name_the_fix(tmp_path, override, words):
    cfg = load_config(write_config(tmp_path, {}))
    with pytest.raises(ConfigError) as info:
        apply_overrides(cfg, [override])
    for word in words:
        assert word in str(info.value)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_stage_resolution_and_override_scope(tmp_path):
    cfg = load_config(write_config(tmp_path, {
        "optim": {"lr": 0.01},
        "stages": [{"name": "s1", "method": {"name": "biper", "stage": 1}, "trainer": {"max_epochs": 4}},
                   {"name": "s2", "method": {"name": "biper", "stage": 2}, "optim": {"lr": 0.002}}],
    }))
    out = apply_overrides(cfg, ["trainer.max_epochs=1", "stages.1.optim.lr=0.003"])
    s1, s2 = resolve_stages(out)
    # a top-level override reaches every stage, even one that set the key itself
    assert s1["trainer"]["max_epochs"] == 1 and s2["trainer"]["max_epochs"] == 1
    assert s1["optim"]["lr"] == 0.01 and s2["optim"]["lr"] == 0.003
    assert s1["init_from"] is None and s2["init_from"] == "previous"
    assert s1["method"] == {"name": "biper", "stage": 1} and s1["name"] == "s1"
    with pytest.raises(ConfigError, match="stages.0.optim.bogus"):
        validate({"stages": [{"optim": {"bogus": 1}}]})
    with pytest.raises(ConfigError, match="no previous stage"):
        resolve_stages(validate({"stages": [{"init_from": "previous"}]}))


def test_check_buildable_rejects_unknown_names_and_options(tmp_path):
    from onebit.train.build import check_buildable

    base = validate(tiny_config(tmp_path))
    check_buildable(base)
    cases = [("model.name=resnet99", "known models"), ("method.name=bnnn", "did you mean 'bnn'"),
             ("data.name=imagenet", "known datasets"), ("model.depth=3", "its options"),
             ("method.omega0=3", "it accepts"), ("data.augment.rotate=1", "crop_padding, hflip")]
    for override, words in cases:
        with pytest.raises(ConfigError, match=words):
            check_buildable(apply_overrides(base, [override]))


# ---------------------------------------------------------------------------------------------
# schedule, sampler, loader


def test_lr_schedule_formulas():
    cos = LRSchedule("cosine", total_steps=110, steps_per_epoch=10, warmup_epochs=1, min_lr_ratio=0.1)
    assert [cos(t) for t in (0, 4, 9)] == [0.1, 0.5, 1.0]  # linear warmup (t + 1) / warmup
    assert cos(10) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cos(110) == pytest.approx(0.1)
    lin = LRSchedule("linear", total_steps=100, steps_per_epoch=10)
    assert lin(25) == pytest.approx(0.75) and lin(100) == pytest.approx(0.0)
    step = LRSchedule("step", total_steps=100, steps_per_epoch=10, milestones=[2, 5], gamma=0.1)
    assert [step(t) for t in (19, 20, 49, 50)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    assert LRSchedule("constant", 10, 5)(7) == 1.0


def test_epoch_sampler_is_seeded_per_epoch_and_shards_disjointly():
    a, b = EpochSampler(103, seed=5), EpochSampler(103, seed=5)
    a.set_epoch(2), b.set_epoch(2)
    assert torch.equal(a.indices(), b.indices())
    b.set_epoch(3)
    assert not torch.equal(a.indices(), b.indices())
    shards = []
    for rank in range(3):
        s = EpochSampler(103, seed=5, rank=rank, world_size=3)
        s.set_epoch(2)
        shards.append(s.indices())
    assert all(len(s) == 34 for s in shards)
    union = torch.cat(shards)
    assert len(set(union.tolist())) == 102  # disjoint, one sample (the tail) dropped
    perm = a.indices()
    assert torch.equal(shards[1], perm[1:102:3])


def test_resumable_batches_restart_after_the_last_batch_handed_out():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 2, 2, 1).contiguous()
    labels = torch.arange(50)

    def loader():
        return ResumableBatches(images, labels, 8, EpochSampler(50, seed=1), drop_last=True)

    full = loader()
    full.sampler.set_epoch(4)
    order = [y.tolist() for _, y in full]
    assert len(order) == len(full) == 6
    first = loader()
    first.sampler.set_epoch(4)
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 4 and state["consumed"] == 2
    resumed = loader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(4)
    assert [y.tolist() for _, y in resumed] == order[2:]
    resumed.sampler.set_epoch(5)  # the next epoch starts from its beginning
    assert len(list(resumed)) == 6
    workers = ResumableBatches(images, labels, 8, EpochSampler(50, seed=1), num_workers=1)
    workers.load_state_dict(state)
    workers.sampler.set_epoch(4)
    assert [y.tolist() for _, y in workers] == order[2:]  # worker processes: same batches
    assert workers.state_dict()["consumed"] == 6
    other = ResumableBatches(images, labels, 16, EpochSampler(50, seed=1))
    with pytest.raises(ValueError, match="another data order"):
        other.load_state_dict(state)


def test_datamodule_split_and_batch_format():
    dm = OnebitDataModule("synthetic", batch_size=16, val_size=100, train_subset=500, test_subset=50)
    dm.setup()
    assert len(dm._train[0]) == 400 and len(dm._val[0]) == 100 and len(dm._test[0]) == 50
    assert dm.num_train_batches() == 25 and dm.num_train_batches(world_size=2) == 12
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 28, 28, 1) and y.dtype == torch.int64
    seen = set(dm._train[1].tolist()) | set(dm._val[1].tolist())
    assert seen <= set(range(10))


# ---------------------------------------------------------------------------------------------
# the LightningModule


def test_prepare_batch_normalises_and_augments_deterministically(tmp_path):
    cfg = validate(tiny_config(tmp_path, method={"name": "float"}))
    module = OnebitModule(cfg)
    images = torch.randint(0, 256, (4, 28, 28, 1), dtype=torch.uint8)
    x = module.prepare_batch(images)
    expected = (images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected)
    cfg["data"]["augment"] = {"crop_padding": 3, "hflip": True}
    module = OnebitModule(cfg)
    a, b = module.prepare_batch(images, augment=True), module.prepare_batch(images, augment=True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_flip_ratio_counts_sign_changes_of_binary_weights(tmp_path):
    module = OnebitModule(validate(tiny_config(tmp_path)))
    before = module.binary_signs()
    layers = dict(module.model.named_modules())
    assert set(before) == {n for n, m in layers.items() if getattr(m, "weight_quantizer", None)}
    name = sorted(before)[1]
    with torch.no_grad():
        w = layers[name].weight.view(-1)
        w[:10] = torch.where(w[:10] < 0, 0.5, -0.5)
    after = module.binary_signs()
    total = sum(v.numel() for v in before.values())
    assert flip_ratio(before, after) == pytest.approx(10 / total)
    assert flip_ratio(before, before) == 0.0


def _fit_steps(module, steps: int) -> None:
    import lightning as L

    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    dm = OnebitDataModule.from_config(module.config)
    trainer.fit(module, datamodule=dm)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*", "ignore:.*on_after_batch_transfer.*")
@pytest.mark.parametrize("method, clipped", [("bnn", True), ("bwn", True), ("bireal", False)])
def test_latent_weights_clipped_after_every_step_when_the_method_asks(tmp_path, method, clipped):
    module = OnebitModule(validate(tiny_config(tmp_path, method={"name": method})))
    from onebit.train.build import binary_weight_layers

    layers = binary_weight_layers(module.model)
    with torch.no_grad():
        for layer in layers.values():
            layer.weight.mul_(0).add_(3.0)  # far outside [-1, 1]
    assert module.clip_latent is clipped
    _fit_steps(module, 2)
    biggest = max(float(layer.weight.detach().abs().max()) for layer in layers.values())
    assert (biggest <= 1.0) if clipped else (biggest > 2.0)


# ---------------------------------------------------------------------------------------------
# end to end


def test_train_writes_run_directory_and_scores_like_eval(tmp_path):
    from onebit.train import evaluate_checkpoint, train

    cfg = validate(tiny_config(tmp_path, name="e2e"))
    cfg["output"]["plots"] = True
    results = train(cfg)
    run = tmp_path / "runs" / "e2e"
    for f in ("config.yaml", "results.json", "metrics.csv", "model.safetensors", "curves.png",
              "checkpoints/last.ckpt"):
        assert (run / f).is_file(), f
    saved = json.loads((run / "results.json").read_text())
    assert saved["test_acc"] == results["test_acc"] and 0.0 <= results["test_acc"] <= 1.0
    assert saved["steps"] == 12 and saved["epochs"] == 1.0 and saved["batches_per_epoch"] == 12
    assert saved["method"] == "bnn" and saved["dataset"] == "synthetic"
    assert saved["size_packed_bytes"] < saved["size_float32_bytes"] / 10
    assert saved["final_weight_digest"] != saved["initial_weight_digest"]
    assert 0.0 <= saved["flip_ratio_last_epoch"] <= 1.0
    series = artifacts.read_metrics(run / "metrics.csv")
    assert {"train_loss_step", "val_acc", "flip_ratio", "train_acc"} <= set(series)
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "e2e"
    for target in (run, run / "model.safetensors", run / "checkpoints" / "last.ckpt"):
        assert evaluate_checkpoint(str(target))["test_acc"] == results["test_acc"]
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg)


_DRIVER = textwrap.dedent("""
    import os, signal, sys
    import onebit.train.callbacks as cb

    kill_at, seen, real_replace = int(sys.argv[1]), [0], os.replace

    class _OS:  # os, except that the kill_at-th checkpoint rename never happens: SIGKILL instead
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            if str(dst).endswith("last.ckpt"):
                seen[0] += 1
                if seen[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)

    if kill_at:
        cb.os = _OS()
    from onebit.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_sigkill_mid_epoch_then_resume_replays_the_uninterrupted_run(tmp_path, capsys):
    """kill -9 while the 5th checkpoint is being written (step 12; the last complete one is step
    9, mid-epoch 1): the resumed run makes the same 16 optimizer steps and ends bit-identical."""
    from onebit.cli import main
    from onebit.train import train

    cfg = tiny_config(tmp_path, name="killed")
    # 128 training images in batches of 16: 8 batches per epoch; checkpoints at 3, 6, 8, 9, 12...
    cfg["data"].update(batch_size=16, train_subset=256)
    cfg["trainer"].update(max_epochs=2, ckpt_every_n_steps=3, log_every_n_steps=1)
    recipe = write_config(tmp_path, cfg)
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    proc = subprocess.run([sys.executable, str(driver), "5", "train", "--config", str(recipe)],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run = tmp_path / "runs" / "killed"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 9  # the torn 5th save left the 4th intact
    assert (run / "checkpoints" / ".last.ckpt.tmp").is_file()
    assert not (run / "results.json").exists()

    assert main(["train", "--config", str(recipe), "--resume"]) == 0
    resumed = json.loads((run / "results.json").read_text())
    baseline = train(validate({**cfg, "name": "baseline"}))
    assert resumed["steps"] == baseline["steps"] == 16
    assert resumed["final_weight_digest"] == baseline["final_weight_digest"]
    assert resumed["test_acc"] == baseline["test_acc"]
    steps = [s for s, _ in artifacts.read_metrics(run / "metrics.csv")["train_loss_step"]]
    assert steps == list(range(16))  # every step logged once, across the kill


def test_bireal_three_stage_recipe_chains_weights(tmp_path):
    from onebit.train import train

    cfg = tiny_config(tmp_path, name="bireal")
    cfg["trainer"]["max_steps"] = 3
    cfg["stages"] = [
        {"name": "pretrain", "method": {"name": "float"}, "relu_to_hardtanh": True},
        {"name": "binary", "method": {"name": "bireal"}, "optim": {"weight_decay": 0.0}},
        {"name": "bn", "kind": "bn_reestimate", "method": {"name": "bireal"},
         "bn_reestimate": {"batches": 4}},
    ]
    results = train(validate(cfg))
    run = tmp_path / "runs" / "bireal"
    stage = [json.loads((run / "stages" / d / "results.json").read_text())
             for d in ("1-pretrain", "2-binary", "3-bn")]
    assert [s["steps"] for s in stage] == [3, 3, 0] and results["steps"] == 6
    assert stage[1]["initial_weight_digest"] == stage[0]["final_weight_digest"]
    assert stage[2]["initial_weight_digest"] == stage[1]["final_weight_digest"]
    assert stage[2]["final_param_digest"] != stage[1]["final_param_digest"]  # frozen to +-1
    assert results["test_acc"] == stage[2]["test_acc"] and len(results["stages"]) == 3
    state, config = artifacts.load_weights_file(run / "model.safetensors")
    assert config["kind"] == "bn_reestimate"
    module = OnebitModule(config)
    module.model.load_state_dict(state)
    from onebit.train.build import binary_weight_layers

    for layer in binary_weight_layers(module.model).values():
        assert set(layer.weight.unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(layer.quantized_weight(), layer.weight)  # alpha = 1: plain sign


def test_reestimated_batchnorm_holds_the_mean_over_all_batches():
    from onebit.nn import QuantConv2d
    from onebit.train.runner import freeze_binary_weights_, reestimate_batchnorm_

    torch.manual_seed(0)
    conv = QuantConv2d(2, 3, 3, padding=1, bias=False, weight_quantizer="magnitude_aware_sign")
    bn = nn.BatchNorm2d(3)
    bn.running_mean.fill_(7.0)

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(conv, bn)

        def prepare_batch(self, images):
            return images

    holder = Holder()
    assert freeze_binary_weights_(holder.model) == 1
    assert set(conv.weight.unique().tolist()) == {-1.0, 1.0}
    batches = [(torch.randn(4, 2, 5, 5), torch.zeros(4)) for _ in range(3)]
    used = reestimate_batchnorm_(holder, batches, batches=3, device=torch.device("cpu"),
                                 progress=False)
    assert used == 3 and not holder.model.training
    with torch.no_grad():
        outs = [nn.functional.conv2d(x, conv.weight, padding=1) for x, _ in batches]
    mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.transpose(0, 1).flatten(1).var(1) for o in outs]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == 0.1  # restored


@pytest.mark.parametrize("recipe", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid(recipe):
    from onebit.train.build import check_buildable

    cfg = load_config(recipe)
    stages = resolve_stages(cfg)
    for stage in stages:
        check_buildable(stage)
    final = stages[-1]
    # configs/<method>_<model>_<dataset>.yaml
    assert recipe.stem == f"{final['method']['name']}_{final['model']['name']}_{final['data']['name']}"


def test_results_table_marks_targets(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("results", REPO / "benchmarks" / "results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)

    def run(name, method, acc, finished="2026-01-01", **kw):
        d = tmp_path / name
        d.mkdir()
        r = {"method": method, "model": "m", "dataset": "d", "test_acc": acc, "epochs": 3,
             "wall_time_s": 3725, "size_float32_bytes": 4096, "size_packed_bytes": 1024,
             "finished_at": finished, **kw}
        (d / "results.json").write_text(json.dumps(r))

    run("f", "float", 0.90)
    run("a", "addernet", 0.896)        # 0.4 points behind: met (<= 0.5)
    run("x", "xnor", 0.865)            # 3.5 points: missed (<= 3)
    run("b_old", "bnn", 0.80, "2025")  # superseded by the newer bnn run
    run("b", "bnn", 0.86, "2026-02-01", stages=[{}, {}])
    run("w", "bwn", 0.95)              # no target
    rows = {r["method"]: r for r in results.compare(results.collect([tmp_path]))}
    assert rows["addernet"]["gap"] == pytest.approx(0.4) and rows["addernet"]["verdict"] == "met"
    assert rows["xnor"]["verdict"] == "missed" and rows["bnn"]["acc"] == pytest.approx(86.0)
    assert rows["bnn"]["verdict"] == "met" and rows["bwn"]["verdict"] == "-"
    assert rows["float"]["gap"] is None
    assert results.main([str(tmp_path)]) == 0
    table = (tmp_path / "results.md").read_text()
    assert "| addernet | 89.60 | +0.40 | <= 0.5: met | 4.0 KiB / 1.0 KiB | 3 | 1:02:05 |" in table
    assert "3 (2 stages)" in table and (tmp_path / "results.png").stat().st_size > 0
    assert table.index("| float |") < table.index("| addernet |") < table.index("| bnn |")
