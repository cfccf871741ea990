"""Checkpointing that survives ``kill -9``: atomic writes, every epoch and every N optimizer steps.

:class:`AtomicCheckpoint` writes ``<dir>/last.ckpt`` through a temporary file renamed over the old
one (``os.replace`` is atomic on POSIX), so a process killed at any instant leaves either the
previous or the new checkpoint, never a torn one; its SHA-256 goes to ``last.ckpt.sha256``
(see :mod:`onebit.train.artifacts`), verified when a run resumes. It saves after every ``every_n_steps``-th
optimizer step (``on_train_batch_end``: Lightning then records the batch as done and the
resumable loader's position, see :mod:`onebit.train.data`) and at the end of every epoch (after
validation). Resuming is ``Trainer.fit(..., ckpt_path=<dir>/last.ckpt)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from onebit.train import artifacts

__all__ = ["AtomicCheckpoint", "LAST"]

LAST = "last.ckpt"


class AtomicCheckpoint(Checkpoint):
    """Save ``dirpath/last.ckpt`` atomically every ``every_n_steps`` steps and every epoch end."""

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int = 0):
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0: epoch ends only), got {every_n_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps)
        self._last_saved_step = -1
        self.saves = 0

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    def _save(self, trainer: L.Trainer) -> None:
        tmp = self.dirpath / f".{LAST}.tmp"
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: every rank calls it, rank 0 writes
        if trainer.is_global_zero:
            _fsync(tmp)
            digest = artifacts.file_sha256(tmp)
            artifacts.begin_file_digest(self.last_path, digest)
            os.replace(tmp, self.last_path)
            artifacts.write_file_digest(self.last_path, digest)
            _fsync_dir(self.dirpath)
        trainer.strategy.barrier("onebit.AtomicCheckpoint")
        self._last_saved_step = trainer.global_step
        self.saves += 1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._last_saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"every_n_steps": self.every_n_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
