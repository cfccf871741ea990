"""The LightningModule: a (binarized) model, its method, the optimizer, the schedule, the metrics.

Per step: cross-entropy ``L = CE(model(x), y)`` plus the method's own loss term if it has one
(``method.regularizer(model)``: BiPer's ``tau * mean(sin^2(omega0 w))`` when ``method.tau > 0``,
Vargas et al. 2024); after every optimizer step the latent weights of the binary layers are
clipped to [-1, 1] when the method asks for it (``method.latent_clip``; BinaryConnect, Courbariaux
et al. 2015: the straight-through gradient ``1[|w| <= 1]`` vanishes outside).

Per epoch it logs ``train_loss`` / ``train_acc`` / ``val_loss`` / ``val_acc`` and the weight flip
ratio of the binary layers, ``flip_ratio = #{i : sign(Q(w_i)) changed during the epoch} / #w``
(``Q`` the layer's weight quantizer, evaluated deterministically).

It also logs the weight quantization error of the binary layers beside it,
``quant_error = sum_layers sum_i (s_c * Q(w)_i - f(w_i))^2 / #w`` (see :func:`quantization_error`):
the mean squared difference between the binary weight a layer computes with and the real-valued
function that binary weight approximates.

Batches arrive as uint8 ``[B, H, W, C]``; ``on_after_batch_transfer`` converts them on the device
to float ``[B, C, H, W]``, augments training batches (random crop with padding, horizontal flip;
:mod:`onebit.data.transforms`) with a generator seeded by ``(seed, global_step, rank)`` and
normalises ``(x / 255 - mean) / std``. Torch's global random state and the sign snapshot of the
epoch are saved in every checkpoint, so a run resumed mid-epoch replays the uninterrupted one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from onebit.data.transforms import RandomCrop, RandomHorizontalFlip
from onebit.optim import clip_latent_weights_, param_groups
from onebit.train.build import binary_weight_layers, build_model
from onebit.train.data import OnebitDataModule
from onebit.train.recipe import Stage, resolve_stage

__all__ = ["OnebitModule", "LRSchedule", "flip_ratio", "quantization_error", "quantization_target"]


def flip_ratio(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Fraction of binary weights whose sign differs between two snapshots (``Q(w) < 0`` masks
    per layer, as :meth:`OnebitModule.binary_signs` returns)."""
    if set(before) != set(after):
        raise ValueError("flip_ratio: the snapshots cover different layers")
    flipped = sum(int((after[k] != before[k].to(after[k].device)).sum()) for k in after)
    total = sum(v.numel() for v in after.values())
    return flipped / total if total else 0.0


def _eval_quantized_weight(layer: torch.nn.Module) -> torch.Tensor:
    """``Q(w)`` of a binary layer with its weight quantizer in eval mode (deterministic), the
    quantizer's mode restored afterwards."""
    wq = layer.weight_quantizer
    was = wq.training
    wq.eval()
    try:
        return layer.quantized_weight() if hasattr(layer, "quantized_weight") else wq(layer.weight)
    finally:
        wq.train(was)


def quantization_target(layer: torch.nn.Module) -> torch.Tensor:
    """The real-valued function of the latent weight ``w`` that a binary layer's weight
    approximates: ``sin(omega0 * w)`` for BiPer's periodic sign (the square wave
    ``sign(sin(omega0 w))`` approximates the sine of stage 1), ``w`` itself for the sign family
    (``sign``, ``approx_sign``, ``stochastic_sign``, ``scaled_sign``, ``magnitude_aware_sign``)."""
    wq = layer.weight_quantizer
    if hasattr(wq, "omega0"):
        return torch.sin(float(wq.omega0) * layer.weight)
    return layer.weight


@torch.no_grad()
def quantization_error(model: torch.nn.Module) -> float | None:
    """Mean squared weight quantization error over every binary layer of ``model``:
    ``sum_layers sum_i (s_c * Q(w)_i - f(w_i))^2 / #weights``, with ``Q`` the layer's weight
    quantizer in eval mode (its scale ``alpha`` included, e.g. ``mean|W_c| sign(W)`` for XNOR-Net
    and Bi-Real), ``s_c`` the layer's learnable output scale of channel ``c`` if it has one (1
    otherwise; BiPer's ``gamma``) and ``f`` :func:`quantization_target`. For BiPer this is the
    ``E[(sin(omega0 w) - gamma sign(sin(omega0 w)))^2]`` of its omega0 analysis. None without
    binary layers."""
    sq, count = 0.0, 0
    for layer in binary_weight_layers(model).values():
        q = _eval_quantized_weight(layer)
        scale = getattr(layer, "scale", None)
        if isinstance(scale, torch.Tensor):
            q = q * scale.reshape(-1, *([1] * (q.dim() - 1)))
        sq += float(((q.float() - quantization_target(layer).float()) ** 2).sum())
        count += q.numel()
    return sq / count if count else None


class LRSchedule:
    """Multiplier of the base learning rate at optimizer step ``t`` (a ``LambdaLR`` lambda).

    ``warmup`` steps rise linearly from ``1/warmup`` to 1; then ``constant``: 1; ``cosine``:
    ``r + (1 - r) * (1 + cos(pi * p)) / 2``; ``linear``: ``1 - (1 - r) * p`` (Bi-Real's decay),
    with ``p`` the fraction of the post-warmup steps done and ``r = min_lr_ratio``; ``step``:
    ``gamma ** #{milestones passed}`` (milestones in epochs).
    """

    def __init__(self, name: str, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
                 min_lr_ratio: float = 0.0, milestones: list | None = None, gamma: float = 0.1):
        self.name = name
        self.total = max(1, int(total_steps))
        self.spe = max(1, int(steps_per_epoch))
        self.warmup = int(round(warmup_epochs * self.spe))
        self.r = float(min_lr_ratio)
        self.milestones = [int(round(float(m) * self.spe)) for m in (milestones or [])]
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.name == "cosine":
            return self.r + (1.0 - self.r) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.name == "linear":
            return 1.0 - (1.0 - self.r) * p
        raise ValueError(f"unknown schedule {self.name!r}; use constant, cosine, linear or step")


class OnebitModule(L.LightningModule):
    """Train a stage's model binarized by its method.

    ``config`` is a :class:`~onebit.train.recipe.Stage` or a stage's config dict (resolved here);
    ``self.stage`` is the typed stage, ``self.config`` its dict (saved as the hyperparameter
    ``config``, so ``OnebitModule.load_from_checkpoint`` rebuilds it)."""

    def __init__(self, config: Stage | dict[str, Any]):
        super().__init__()
        stage = config if isinstance(config, Stage) else resolve_stage(config)
        self.stage = stage
        self.config = stage.config
        self.save_hyperparameters({"config": stage.config})
        meta = stage.data.meta
        self.model, self.method = build_model(stage)
        self.register_buffer("mean", torch.tensor(meta.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(meta.std).view(1, -1, 1, 1), persistent=False)
        self.crop_padding = stage.data.augment.crop_padding
        self.hflip = stage.data.augment.hflip
        self.clip_latent = bool(getattr(self.method, "latent_clip", False))
        self._signs: dict[str, torch.Tensor] | None = None
        self.last_flip_ratio: float | None = None
        self.last_quant_error: float | None = None
        self._time_base = 0.0
        self._t0: float | None = None
        self._rng_to_restore: dict[str, Any] | None = None

    # ------------------------------------------------------------------ data on the device
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def prepare_batch(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """uint8 ``[B, H, W, C]`` -> normalised float ``[B, C, H, W]`` (augmented if asked)."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if augment and (self.crop_padding or self.hflip):
            g = torch.Generator()
            rank = self.trainer.global_rank if self._trainer is not None else 0
            g.manual_seed((self.stage.seed * 1_000_003 + self.global_step) * 4099 + rank)
            if self.crop_padding:
                x = RandomCrop(tuple(x.shape[-2:]), padding=self.crop_padding, generator=g)(x)
            if self.hflip:
                x = RandomHorizontalFlip(generator=g)(x)
        return ((x - self.mean.to(x.device)) / self.std.to(x.device)).contiguous()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if x.dtype != torch.uint8:
            return batch
        training = self._trainer is not None and self.trainer.training
        return self.prepare_batch(x, augment=training), y

    # ------------------------------------------------------------------ steps
    def _loss_acc(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y)
        acc = (logits.argmax(1) == y).float().mean()
        return logits, loss, acc

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        _, loss, acc = self._loss_acc(batch)
        sync = self._trainer is not None and self.trainer.world_size > 1
        total = loss
        reg = self.method.regularizer(self.model) if hasattr(self.method, "regularizer") else None
        if reg is not None:
            total = loss + reg
            self.log("train_reg", reg, on_step=False, on_epoch=True, sync_dist=sync)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=sync)
        self.log("train_acc", acc, on_step=False, on_epoch=True, prog_bar=True, sync_dist=sync)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True,
                     on_epoch=False)
        return total

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, loss, acc = self._loss_acc(batch)
        n = batch[1].shape[0]
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val_acc", acc, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        _, loss, acc = self._loss_acc(batch)
        n = batch[1].shape[0]
        self.log("test_loss", loss, on_epoch=True, sync_dist=True, batch_size=n)
        self.log("test_acc", acc, on_epoch=True, sync_dist=True, batch_size=n)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.clip_latent:
            clip_latent_weights_(self.model)

    # ------------------------------------------------------------------ flip ratio, quant. error
    @torch.no_grad()
    def binary_signs(self) -> dict[str, torch.Tensor]:
        """``Q(w) < 0`` per binary layer, with the quantizer in eval mode (deterministic)."""
        out = {}
        for name, layer in binary_weight_layers(self.model).items():
            q = _eval_quantized_weight(layer)
            out[name] = q < 0
        return out

    def on_train_epoch_start(self) -> None:
        self._signs = self.binary_signs()

    def on_train_epoch_end(self) -> None:
        if not self._signs:
            return
        self.last_flip_ratio = flip_ratio(self._signs, self.binary_signs())
        # identical on every rank (DDP keeps the weights equal); the mean over ranks is the value
        sync = self.trainer.world_size > 1
        self.log("flip_ratio", self.last_flip_ratio, on_epoch=True, sync_dist=sync)
        self.last_quant_error = quantization_error(self.model)
        if self.last_quant_error is not None:
            self.log("quant_error", self.last_quant_error, on_epoch=True, sync_dist=sync)

    # ------------------------------------------------------------------ time, RNG, checkpoints
    def elapsed_train_s(self) -> float:
        """Training wall time so far, summed over interrupted and resumed parts."""
        running = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self._time_base + running

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["cpu"])
            if torch.cuda.is_available() and self._rng_to_restore.get("cuda"):
                torch.cuda.set_rng_state_all(self._rng_to_restore["cuda"])
            self._rng_to_restore = None

    def on_train_end(self) -> None:
        self._time_base = self.elapsed_train_s()
        self._t0 = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["onebit"] = {
            "version": 1,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "signs": {k: v.cpu() for k, v in (self._signs or {}).items()},
            "train_time_s": self.elapsed_train_s(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("onebit")
        if not state:
            return
        self._rng_to_restore = {"cpu": state["rng_cpu"], "cuda": state.get("rng_cuda") or []}
        self._signs = dict(state.get("signs") or {}) or None
        self._time_base = float(state.get("train_time_s", 0.0))

    # ------------------------------------------------------------------ optimizer
    def _stepping_batches(self) -> tuple[int, int]:
        """``(total optimizer steps, steps per epoch)`` of the run.

        Computed from the DataModule rather than with ``trainer.estimated_stepping_batches``,
        which builds the training loader before a checkpoint is restored and so keeps Lightning
        from restoring the loader's mid-epoch position on resume.
        """
        trainer = self.trainer
        dm = trainer.datamodule
        acc = trainer.accumulate_grad_batches
        if not isinstance(dm, OnebitDataModule):
            total = int(trainer.estimated_stepping_batches)
            return total, math.ceil(trainer.num_training_batches / acc)
        n = dm.num_train_batches(trainer.world_size)
        limit = trainer.limit_train_batches
        n = min(n, int(limit)) if isinstance(limit, int) else int(n * float(limit))
        spe = max(1, math.ceil(n / acc))
        total = spe * max(1, trainer.max_epochs or 1)
        if trainer.max_steps and trainer.max_steps > 0:
            total = min(total, trainer.max_steps) if trainer.max_epochs not in (None, -1) \
                else trainer.max_steps
        return total, spe

    def configure_optimizers(self) -> Any:
        o = self.stage.optim
        if o.binary_weight_decay is None:
            groups = self.method.param_groups(self.model, o.weight_decay)
        else:
            groups = param_groups(self.model, weight_decay=o.weight_decay,
                                  binary_weight_decay=o.binary_weight_decay)
        if o.name == "sgd":
            opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
        else:
            cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
            opt = cls(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
        total, spe = self._stepping_batches()
        s = self.stage.schedule
        lam = LRSchedule(s.name, total, spe, s.warmup_epochs, s.min_lr_ratio, list(s.milestones),
                         s.gamma)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
