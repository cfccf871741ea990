"""What a run will cost: an estimate of the whole run's time after its first steps, epoch lines.

The work of every stage is known before it runs (:func:`stage_work`): training images (optimizer
steps times batch size), images evaluated (validation after every epoch, the test split at the
end, the training images of a BatchNorm re-estimation). :class:`CostReport` times the first
``measure_steps`` optimizer steps of a training stage (the very first step is left out: it pays
for one-off set-up) and prints one line::

    onebit: run estimate ~14 min for 3 stages (0.61 ms per training image; this stage ~9.5 min)

with ``estimate = spent + s * (train images left + eval_cost * images evaluated left)``, ``s`` the
measured seconds per training image and ``eval_cost = 1/3`` (a forward pass without the backward).
Stages already finished count with their wall time (``StageWork.done_s``). With
the progress bar off it also prints one line per epoch (losses, accuracies, the epoch's time and
the time left); from then on ``s`` is the pace of the latest epoch, so that a slow start or a
paused process does not skew the time left for the rest of the run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from lightning.pytorch.callbacks import Callback

__all__ = ["EVAL_COST", "StageWork", "stage_work", "format_duration", "CostReport"]

#: time of one evaluated image relative to one training image (forward only, no backward)
EVAL_COST = 1.0 / 3.0


@dataclass(frozen=True)
class StageWork:
    """The images one stage processes, over all processes together."""

    name: str
    kind: str
    train_images: int       # per epoch, before sharding over processes
    batch_size: int
    max_epochs: int
    max_steps: int
    limit_train_batches: int | float | None
    val_images: int         # per epoch
    test_images: int
    bn_images: int          # BatchNorm re-estimation (kind bn_reestimate)
    done_s: float | None = None  # wall time of a stage finished before (resumed runs)

    def steps(self, world_size: int = 1) -> tuple[int, int]:
        """``(total optimizer steps, steps per epoch)`` per process, as the trainer will run."""
        if self.kind != "train":
            return 0, 0
        per_rank = self.train_images // max(1, world_size)
        n = per_rank // self.batch_size
        limit = self.limit_train_batches
        if isinstance(limit, int) and not isinstance(limit, bool):
            n = min(n, limit)
        elif isinstance(limit, float):
            n = int(n * limit)
        spe = max(1, n)
        total = spe * self.max_epochs
        if self.max_steps > 0:
            total = min(total, self.max_steps)
        return total, spe

    def units(self, world_size: int = 1, steps_done: int = 0) -> float:
        """Work left, in training images per process (evaluated images weighted by EVAL_COST)."""
        if self.done_s is not None:
            return 0.0
        world = max(1, world_size)
        total, spe = self.steps(world)
        epochs = math.ceil(total / spe) if spe else 0
        epochs_done = steps_done // spe if spe else 0
        train = (total - steps_done) * self.batch_size
        evaluated = self.val_images * (epochs - epochs_done) + self.test_images + self.bn_images
        return train + EVAL_COST * evaluated / world


def stage_work(stage: Any, sizes: dict[str, int], done_s: float | None = None) -> StageWork:
    """The work of ``stage`` (a :class:`~onebit.train.recipe.Stage`) whose data has ``sizes``
    images (``OnebitDataModule.split_sizes()``)."""
    t, d = stage.trainer, stage.data
    val = sizes["val"]
    if isinstance(t.limit_val_batches, int):
        val = min(val, t.limit_val_batches * d.eval_batch_size)
    elif isinstance(t.limit_val_batches, float):
        val = int(val * t.limit_val_batches)
    test = sizes["test"]
    if isinstance(t.limit_test_batches, int):
        test = min(test, t.limit_test_batches * d.eval_batch_size)
    bn = 0
    if stage.kind == "bn_reestimate":
        full = sizes["train"] // d.batch_size * d.batch_size
        bn = full if stage.bn_batches is None else min(full, stage.bn_batches * d.batch_size)
    return StageWork(name=stage.name, kind=stage.kind, train_images=sizes["train"],
                     batch_size=d.batch_size, max_epochs=t.max_epochs, max_steps=t.max_steps,
                     limit_train_batches=t.limit_train_batches,
                     val_images=val if d.val_size > 0 else 0, test_images=test, bn_images=bn,
                     done_s=done_s)


def format_duration(seconds: float) -> str:
    """``42 s``, ``9.5 min``, ``2.3 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class CostReport(Callback):
    """Prints the run's time estimate once its first steps are timed, and (``epoch_lines``) one
    line per epoch. ``plan`` lists every stage's :class:`StageWork`, ``index`` the stage this
    trainer runs; stages already done carry their wall time (``StageWork.done_s``)."""

    def __init__(self, plan: list[StageWork], index: int, epoch_lines: bool = False,
                 measure_steps: int = 10, echo: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.plan, self.index = plan, index
        self.epoch_lines, self.measure_steps = bool(epoch_lines), max(1, int(measure_steps))
        self.echo = echo or _echo
        self.clock = clock
        self.s_per_image: float | None = None
        self.estimate_s: float | None = None
        self._start_step = 0
        self._t_first: float | None = None
        self._t_stage: float | None = None
        self._t_epoch: float | None = None
        self._epoch_step: int | None = None

    # ------------------------------------------------------------------ the estimate
    def remaining_s(self, world_size: int, steps_done: int) -> float:
        """Seconds left for this stage (from ``steps_done``) and every later one."""
        if self.s_per_image is None:
            raise RuntimeError("CostReport: no step timed yet")
        units = self.plan[self.index].units(world_size, steps_done)
        units += sum(w.units(world_size) for w in self.plan[self.index + 1:])
        return self.s_per_image * units

    def _spent_before(self) -> float:
        return sum(w.done_s or 0.0 for w in self.plan)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start_step = int(trainer.global_step)
        self._t_stage = self.clock()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._t_epoch = self.clock()
        self._epoch_step = int(trainer.global_step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.s_per_image is not None:
            return
        now, step = self.clock(), int(trainer.global_step)
        done = step - self._start_step
        if done < 1:
            return
        if self._t_first is None:
            self._t_first = now
        work = self.plan[self.index]
        finished = step >= work.steps(trainer.world_size)[0]
        if done - 1 < self.measure_steps and not finished:
            return
        if done == 1:  # the stage has a single step: time it whole
            timed, elapsed = 1, now - (self._t_stage or now)
        else:
            timed, elapsed = done - 1, now - self._t_first
        self.s_per_image = elapsed / (timed * work.batch_size)
        in_stage = now - (self._t_stage or now)
        this_stage = in_stage + self.s_per_image * work.units(trainer.world_size, step)
        self.estimate_s = self._spent_before() + in_stage + self.remaining_s(trainer.world_size, step)
        if trainer.is_global_zero:
            n = len(self.plan)
            self.echo(f"onebit: run estimate ~{format_duration(self.estimate_s)} for {n} "
                      f"stage{'s' if n > 1 else ''} ({1e3 * self.s_per_image:.3g} ms per "
                      f"training image over {timed} step{'s' if timed > 1 else ''}"
                      + (f"; this stage ~{format_duration(this_stage)}" if n > 1 else "") + ")")

    # ------------------------------------------------------------------ epoch lines
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.epoch_lines:
            return
        # every rank reads the metrics: metrics logged with sync_dist reduce over the ranks here
        m = {k: float(v) for k, v in trainer.callback_metrics.items()
             if hasattr(v, "numel") and v.numel() == 1}
        if not trainer.is_global_zero:
            return
        names = {"train_loss_epoch": "train_loss", "train_acc": "train_acc", "val_loss": "val_loss",
                 "val_acc": "val_acc"}
        parts = [f"{short} {m[key]:.4f}" for key, short in names.items() if key in m]
        # a run resumed in the middle of an epoch gets no epoch start: time it from the resume
        start = self._t_epoch if self._t_epoch is not None else self._t_stage
        took = max(0.0, self.clock() - start) if start is not None else 0.0
        left = ""
        step = int(trainer.global_step)
        first = self._epoch_step if self._epoch_step is not None else self._start_step
        work = self.plan[self.index]
        done = work.units(trainer.world_size, first) - work.units(trainer.world_size, step)
        if self.s_per_image is not None and took > 0 and done > 0:
            # the time left follows the latest epoch's pace (the first steps' estimate may have
            # caught a slow start, a paused process or a busy machine)
            self.s_per_image = took / done
        if self.s_per_image is not None:
            rest = self.remaining_s(trainer.world_size, step)
            left = f"; ~{format_duration(rest)} left"
        stage = f" [{self.plan[self.index].name}]" if len(self.plan) > 1 else ""
        self.echo(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}{stage}: "
                  f"{', '.join(parts) or 'no metrics'} ({format_duration(took)}{left})")


def _echo(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)
