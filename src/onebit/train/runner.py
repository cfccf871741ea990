"""Run a recipe: every stage with Lightning, checkpoints, resumption, results, curves; evaluation.

Run directory ``<output.dir>/<name>/``::

    config.yaml          the resolved recipe (overrides applied)
    results.json         test accuracy, model size, epochs, steps, wall time, ... (final stage)
    model.safetensors    final weights + config (single-stage runs; else in the last stage)
    metrics.csv, tb/     Lightning's CSV and TensorBoard logs
    curves.png           loss / accuracy / flip-ratio curves (multi-stage: all stages)
    checkpoints/last.ckpt   written atomically every ``trainer.ckpt_every_n_steps`` steps and
                            every epoch; ``resume=True`` continues from it
    stages/<i>-<name>/   the same per stage, for multi-stage recipes

After the first optimizer steps a line estimates the whole run's time (every stage); with
``trainer.progress_bar: false`` one line per epoch follows (:mod:`onebit.train.cost`).

Stages run in order; stage ``i`` starts from stage ``i - 1``'s ``model.safetensors``
(``init_from: previous``). A finished stage (its ``results.json`` exists) is skipped on resume.
A ``bn_reestimate`` stage (Bi-Real, Liu et al. 2018, Sec. 3.3) sets every binary layer's latent
weights to their binary values ``w := sign(Q(w))`` (then ``Q(w) = w``: deployment uses a plain
sign), resets the BatchNorm statistics and re-estimates them as cumulative averages over
``bn_reestimate.batches`` full, un-augmented training batches in a fixed order (null: the whole
training set) with every weight fixed (a learning rate of 0); it makes no optimizer step.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

import onebit
from onebit.analysis.summary import summarize
from onebit.train import artifacts
from onebit.train.build import binary_weight_layers, load_weights_
from onebit.train.callbacks import AtomicCheckpoint
from onebit.train.config import ConfigError, dump_yaml
from onebit.train.cost import CostReport, stage_work
from onebit.train.data import OnebitDataModule
from onebit.train.module import OnebitModule
from onebit.train.recipe import Recipe, Stage, resolve, resolve_stage

__all__ = ["run_dir_of", "train", "evaluate_checkpoint", "evaluate_model", "freeze_binary_weights_",
           "reestimate_batchnorm_"]

log = logging.getLogger("onebit.train")

#: keys that may differ between a run and its resumption (they change nothing in the math)
RESUME_FREE_KEYS = ("trainer.progress_bar", "trainer.threads", "trainer.accelerator",
                    "trainer.log_every_n_steps", "data.num_workers", "data.data_dir")


#: Lightning warnings that do not apply to onebit's loaders and logs
_QUIET = (".*does not have many workers.*", ".*overridden `on_after_batch_transfer`.*",
          ".*exists and is not empty.*", ".*LeafSpec.*")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoTips())


def run_dir_of(cfg: dict[str, Any] | Recipe) -> Path:
    """``<output.dir>/<name>`` of a config or a resolved recipe."""
    if isinstance(cfg, Recipe):
        return cfg.run_dir
    return Path(cfg["output"]["dir"]) / cfg["name"]


def _rank() -> int:
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _device_for(stage: Stage) -> torch.device:
    acc = stage.trainer.accelerator
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if acc == "mps":
        return torch.device("mps")
    return torch.device("cpu")


def _check_accelerator(stage: Stage) -> None:
    acc = stage.trainer.accelerator
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but torch sees no CUDA GPU "
                          "(torch.cuda.is_available() is False); use --accelerator cpu")
    if acc == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps but MPS is not available; use --accelerator cpu")


def _precision(stage: Stage) -> str:
    """``auto``: bf16 autocast only for the float baseline on a GPU that supports it (sign and
    straight-through masks of binary layers, and AdderNet's L1 sums, stay in float32)."""
    p = stage.trainer.precision
    if p != "auto":
        return p
    if (_device_for(stage).type == "cuda" and stage.method.name == "float"
            and torch.cuda.is_bf16_supported()):
        return "bf16-mixed"
    return "32-true"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    fa, fb = _flatten(a), _flatten(b)
    keys = sorted(set(fa) | set(fb))
    return [k for k in keys if fa.get(k) != fb.get(k) and k not in RESUME_FREE_KEYS]


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_model(module: Any, loader: Any, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``module`` (an OnebitModule) over ``loader``."""
    module = module.to(device).eval()
    correct, total, loss_sum = 0, 0, 0.0
    for images, labels in loader:
        x = module.prepare_batch(images.to(device))
        y = labels.to(device)
        logits = module.model(x).float()
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    if total == 0:
        raise ConfigError("the test split is empty; check data.test_subset")
    return {"acc": correct / total, "loss": loss_sum / total, "samples": total}


def _module_from_state(state: dict[str, torch.Tensor], stage: Stage):
    module = OnebitModule(stage)
    missing = load_weights_(module.model, state, "checkpoint")
    if missing:
        raise ConfigError(f"checkpoint lacks {', '.join(missing[:5])}; it does not match its own "
                          "config (written by another onebit version?)")
    return module


def evaluate_checkpoint(path: str, data_dir: str | None = None, accelerator: str = "cpu",
                        batch_size: int | None = None, test_subset: int | None = None
                        ) -> dict[str, Any]:
    """Score a run directory, ``model.safetensors`` or ``.ckpt`` on its dataset's test split."""
    state, config = artifacts.load_weights_file(path)
    config = dict(config)
    config["data"] = dict(config["data"])
    config["trainer"] = dict(config["trainer"], accelerator=accelerator)
    if data_dir is not None:
        config["data"]["data_dir"] = data_dir
    if batch_size is not None:
        config["data"]["eval_batch_size"] = batch_size
    if test_subset is not None:
        config["data"]["test_subset"] = test_subset
    stage = resolve_stage(config)
    _check_accelerator(stage)
    module = _module_from_state(state, stage)
    dm = OnebitDataModule.from_config(stage)
    dm.setup("test")
    res = evaluate_model(module, dm.test_dataloader(), _device_for(stage))
    return {"checkpoint": str(path), "method": stage.method.name,
            "model": stage.model.name, "dataset": stage.data.name,
            "test_acc": res["acc"], "test_loss": res["loss"], "test_samples": res["samples"]}


# ----------------------------------------------------------------------------------------------
# BatchNorm re-estimation


@torch.no_grad()
def freeze_binary_weights_(model: nn.Module) -> int:
    """Set the latent weights of every binary layer to ``sign(Q(w))`` and check ``Q`` maps them to
    themselves (so the layer computes with plain signs). Returns the number of layers changed."""
    layers = binary_weight_layers(model)
    for name, layer in layers.items():
        wq = layer.weight_quantizer
        was = wq.training
        wq.eval()
        try:
            q = layer.quantized_weight()
            b = torch.where(q < 0, -torch.ones_like(q), torch.ones_like(q))
            layer.weight.copy_(b)
            if not torch.equal(layer.quantized_weight(), b):
                raise ConfigError(f"bn_reestimate: the weight quantizer of {name} "
                                  f"({getattr(wq, 'name', type(wq).__name__)}) does not map +-1 to "
                                  "itself, so weights cannot be frozen at their binary values; "
                                  "drop the bn_reestimate stage for this method")
        finally:
            wq.train(was)
    return len(layers)


@torch.no_grad()
def reestimate_batchnorm_(module: Any, loader: Any, batches: int | None, device: torch.device,
                          progress: bool = True) -> int:
    """Reset every BatchNorm's statistics and re-estimate them as cumulative averages (momentum
    None: the mean over batches of each batch's mean and unbiased variance) over the first
    ``batches`` batches of ``loader`` (None: all) with all weights fixed; returns batches used.

    The rest of the model is in eval mode; the BatchNorm layers normalise each batch with its own
    statistics while they accumulate (as in training). ``module.prepare_batch`` is called without
    augmentation."""
    from tqdm.auto import tqdm

    model = module.model.to(device)
    module.to(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ConfigError("bn_reestimate: the model has no BatchNorm layer to re-estimate")
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.eval()
    for bn in bns:
        bn.train()
    n = len(loader) if batches is None else min(batches, len(loader))
    used = 0
    for images, _ in tqdm(loader, total=n, desc="BatchNorm re-estimation", disable=not progress,
                          leave=False):
        if used >= n:
            break
        model(module.prepare_batch(images.to(device)))
        used += 1
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.eval()
    return used


# ----------------------------------------------------------------------------------------------
# training


def _loggers(stage: Stage, stage_dir: Path) -> list:
    out = [CSVLogger(save_dir=str(stage_dir), name="", version="")]
    if stage.output.tensorboard:
        try:
            # inside the try: tensorboard is optional
            from lightning.pytorch.loggers import TensorBoardLogger

            out.append(TensorBoardLogger(save_dir=str(stage_dir), name="tb", version="",
                                         default_hp_metric=False))
        except ModuleNotFoundError:  # tensorboard is optional
            log.warning("tensorboard is not installed; writing CSV metrics only")
    return out


def _trainer(stage: Stage, stage_dir: Path, callbacks: list):
    t = stage.trainer
    kw: dict[str, Any] = {}
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        if getattr(t, key) is not None:
            kw[key] = getattr(t, key)
    if stage.data.val_size == 0:
        kw["limit_val_batches"] = 0
    accelerator = "gpu" if t.accelerator == "cuda" else t.accelerator
    return L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=accelerator,
        devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=_precision(stage), logger=_loggers(stage, stage_dir), callbacks=callbacks,
        enable_checkpointing=True, enable_progress_bar=t.progress_bar,
        enable_model_summary=False, log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=0, deterministic=t.deterministic,
        gradient_clip_val=stage.optim.gradient_clip_val, default_root_dir=str(stage_dir), **kw,
    )


def _gather_digests(trainer: Any, digest: str) -> list[str]:
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return [digest]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, digest)
    return [str(d) for d in out]


def _barrier(trainer: Any) -> None:
    if trainer is not None and trainer.world_size > 1:
        trainer.strategy.barrier("onebit.stage_end")


def _datamodule(stage: Stage, cache: dict[str, Any]) -> Any:
    """The stage's DataModule with its data read (or downloaded), shared by stages with the same
    data settings; a missing dataset fails here, before a run directory is created."""
    key = (stage.data, stage.seed)  # frozen dataclasses: equal settings share the data
    if key not in cache:
        dm = OnebitDataModule.from_config(stage)
        dm.setup()
        cache[key] = dm
    return cache[key]


def _run_stage(stage: Stage, stage_dir: Path, init: tuple[dict, str] | None, resume: bool,
               dm: Any, cost: Any) -> dict[str, Any] | None:
    L.seed_everything(stage.seed, workers=True, verbose=False)
    if stage.trainer.threads:
        torch.set_num_threads(stage.trainer.threads)
    module = OnebitModule(stage)
    new_params: list[str] = []
    if init is not None:
        new_params = load_weights_(module.model, init[0], init[1])
    device = _device_for(stage)
    trainer = None
    digests: list[str] = []
    initial_digest = artifacts.state_digest(module.model)
    initial_params = artifacts.state_digest(module.model, params_only=True)
    if stage.kind == "bn_reestimate":
        t0 = time.perf_counter()
        frozen = freeze_binary_weights_(module.model)
        used = reestimate_batchnorm_(module, dm.plain_train_loader(drop_last=True),
                                     stage.bn_batches, device,
                                     progress=stage.trainer.progress_bar)
        wall, steps, epochs = time.perf_counter() - t0, 0, 0.0
        extra = {"bn_batches": used, "binary_layers_frozen": frozen}
    else:
        ckpt_cb = AtomicCheckpoint(stage_dir / "checkpoints", stage.trainer.ckpt_every_n_steps)
        trainer = _trainer(stage, stage_dir, [ckpt_cb, cost])
        ckpt_path = str(ckpt_cb.last_path) if resume and ckpt_cb.last_path.is_file() else None
        if ckpt_path:
            artifacts.load_checkpoint(ckpt_path)  # checksum and readability: a one-line error
        if ckpt_path and trainer.is_global_zero:
            artifacts.set_aside_metrics(stage_dir)
        with warnings.catch_warnings():
            for pattern in _QUIET:
                warnings.filterwarnings("ignore", pattern)
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.finalize("success")
            artifacts.merge_metrics(stage_dir)
        digests = _gather_digests(trainer, artifacts.state_digest(module.model, params_only=True))
        if not trainer.is_global_zero:
            _barrier(trainer)
            return None
        wall, steps = module.elapsed_train_s(), int(trainer.global_step)
        per_epoch = max(1, trainer.num_training_batches)
        epochs = round(steps / per_epoch, 4)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        extra = {"epochs_completed": int(trainer.current_epoch), "batches_per_epoch": per_epoch,
                 "val_acc": metrics.get("val_acc"), "val_loss": metrics.get("val_loss"),
                 "train_acc_last_epoch": metrics.get("train_acc"),
                 "flip_ratio_last_epoch": module.last_flip_ratio,
                 "quant_error_last_epoch": module.last_quant_error,
                 "run_estimate_s": cost.estimate_s, "checkpoint_saves": ckpt_cb.saves, "world_size": trainer.world_size,
                 "precision": str(trainer.precision)}
        if trainer.world_size > 1:
            extra["rank_param_digests"] = digests
    test = evaluate_model(module, dm.test_dataloader(), device)
    artifacts.save_weights(module.model, stage.config, stage_dir / "model.safetensors")
    meta = stage.data.meta
    summary = summarize(module.model.cpu(), meta.input_size)
    totals = summary.totals
    results = {
        "name": stage.name, "kind": stage.kind,
        "method": stage.method.name, "method_options": dict(stage.method.options),
        "model": stage.model.name, "model_options": dict(stage.model.options),
        "dataset": meta.name,
        "test_acc": test["acc"], "test_loss": test["loss"], "test_samples": test["samples"],
        "params": totals.params, "binary_params": totals.binary_params,
        "size_float32_bytes": totals.float32_bytes, "size_packed_bytes": totals.packed_bytes,
        "compression": totals.compression, "binary_mac_share": totals.binary_mac_share,
        "epochs": epochs, "steps": steps, "max_epochs": stage.trainer.max_epochs,
        "wall_time_s": round(wall, 3),
        "time_per_epoch_s": round(wall / epochs, 3) if epochs else None,
        "seed": stage.seed, "device": str(device),
        "initial_weight_digest": initial_digest,
        "final_weight_digest": artifacts.state_digest(module.model),
        "initial_param_digest": initial_params,
        "final_param_digest": artifacts.state_digest(module.model, params_only=True),
        "new_params_at_init": new_params,
        "onebit_version": _version(), "torch_version": torch.__version__,
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    artifacts.write_json(stage_dir / "results.json", results)
    if stage.output.plots and stage.kind == "train":
        artifacts.plot_curves(stage_dir / "metrics.csv", stage_dir / "curves.png",
                              f"{stage.name}: {stage.method.name} / {stage.model.name}")
    _barrier(trainer)
    return results


def _version() -> str:
    return onebit.__version__


def _prepare_run_dir(cfg: dict[str, Any], run_dir: Path, resume: bool, overwrite: bool) -> None:
    saved_path = run_dir / "config.yaml"
    if resume:
        if not saved_path.is_file():
            raise ConfigError(f"nothing to resume in {run_dir} (no config.yaml); start the run "
                              "without --resume")
        saved = yaml.safe_load(saved_path.read_text())
        diff = _config_diff(saved, {k: v for k, v in cfg.items()})
        if diff:
            raise ConfigError(f"the config differs from the run being resumed in {', '.join(diff[:6])}; "
                              f"resume with the same recipe and overrides (or `onebit train "
                              f"--resume {run_dir}`)")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"run directory {run_dir} already exists; pass --resume to continue "
                              "it, --overwrite to start over, or name=<other> for a new run")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def train(cfg: dict[str, Any] | Recipe, resume: bool = False, overwrite: bool = False
          ) -> dict[str, Any] | None:
    """Run every stage of ``cfg`` (a validated config, resolved here once, or a
    :class:`~onebit.train.recipe.Recipe`); returns the run's results (None on ranks other than 0
    of a distributed run). See the module docstring for the run directory."""
    recipe = cfg if isinstance(cfg, Recipe) else resolve(cfg)
    cfg = recipe.config
    stages = recipe.stages
    for st in stages:
        _check_accelerator(st)
    run_dir = recipe.run_dir
    rank0 = _rank() == 0
    data: dict[str, Any] = {}
    for st in stages:
        _datamodule(st, data)
    if rank0:
        _prepare_run_dir(cfg, run_dir, resume, overwrite)
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    plan = [stage_work(st, _datamodule(st, data).split_sizes()) for st in stages]

    def cost(i: int) -> CostReport:
        return CostReport(plan, i, epoch_lines=not stages[i].trainer.progress_bar)

    if len(stages) == 1:
        results = _run_stage(stages[0], run_dir, _init_state(stages[0], None), resume,
                             _datamodule(stages[0], data), cost(0))
        return results
    done: list[dict[str, Any]] = []
    prev_weights: Path | None = None
    for i, st in enumerate(stages):
        sdir = run_dir / "stages" / f"{i + 1}-{st.name}"
        if rank0:
            sdir.mkdir(parents=True, exist_ok=True)
        finished = sdir / "results.json"
        if resume and finished.is_file() and (sdir / "model.safetensors").is_file():
            import json

            done.append(json.loads(finished.read_text()))
            prev_weights = sdir / "model.safetensors"
            plan[i] = dataclasses.replace(plan[i], done_s=float(done[-1].get("wall_time_s") or 0))
            continue
        t0 = time.perf_counter()
        res = _run_stage(st, sdir, _init_state(st, prev_weights), resume, _datamodule(st, data),
                         cost(i))
        plan[i] = dataclasses.replace(plan[i], done_s=time.perf_counter() - t0)
        prev_weights = sdir / "model.safetensors"
        if res is None:
            continue
        done.append(res)
    if not rank0:
        return None
    final = dict(done[-1])
    final.update({
        "name": recipe.name,
        "stages": [{k: r.get(k) for k in ("name", "kind", "method", "method_options", "test_acc",
                                           "epochs", "steps", "wall_time_s")} for r in done],
        "epochs": round(sum(r.get("epochs") or 0 for r in done), 4),
        "steps": sum(r.get("steps") or 0 for r in done),
        "wall_time_s": round(sum(r.get("wall_time_s") or 0 for r in done), 3),
    })
    final["time_per_epoch_s"] = (round(final["wall_time_s"] / final["epochs"], 3)
                                 if final["epochs"] else None)
    artifacts.write_json(run_dir / "results.json", final)
    if stages[-1].output.plots:  # every stage's curves on one step axis
        artifacts.plot_curves([(st.name, run_dir / "stages" / f"{i + 1}-{st.name}" /
                                "metrics.csv") for i, st in enumerate(stages)],
                              run_dir / "curves.png", f"{recipe.name}: all stages")
    last = run_dir / "stages" / f"{len(stages)}-{stages[-1].name}"
    digest = artifacts.file_sha256(last / "model.safetensors")  # the source's: a bad copy fails
    artifacts.begin_file_digest(run_dir / "model.safetensors", digest)
    shutil.copyfile(last / "model.safetensors", run_dir / "model.safetensors")
    artifacts.write_file_digest(run_dir / "model.safetensors", digest)
    return final


def _init_state(stage: Stage, prev: Path | None) -> tuple[dict, str] | None:
    src = stage.init_from
    if src is None:
        return None
    if src == "previous":
        if prev is None or not prev.is_file():
            raise ConfigError(f"stage {stage.name}: init_from=previous but the previous stage left "
                              "no model.safetensors")
        path = prev
    else:
        path = Path(src)
    state, _ = artifacts.load_weights_file(path)
    return state, str(path)
