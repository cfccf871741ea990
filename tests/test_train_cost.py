"""Long recipes state their cost: the run estimate after the first steps, one line per epoch."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from onebit.train import train
from onebit.train.config import validate
from onebit.train.cost import EVAL_COST, CostReport, StageWork, format_duration


def _work(**kw) -> StageWork:
    base = dict(name="main", kind="train", train_images=320, batch_size=32, max_epochs=2,
                max_steps=-1, limit_train_batches=None, val_images=64, test_images=100,
                bn_images=0)
    return StageWork(**{**base, **kw})


def test_stage_work_counts_steps_and_images():
    w = _work()
    assert w.steps() == (20, 10) and w.steps(world_size=2) == (10, 5)
    assert _work(max_steps=7).steps() == (7, 10) and _work(limit_train_batches=3).steps() == (6, 3)
    assert _work(limit_train_batches=0.5).steps() == (10, 5)
    # training images left + evaluated images (validation per epoch left, test) at EVAL_COST
    assert w.units() == pytest.approx(20 * 32 + EVAL_COST * (2 * 64 + 100))
    assert w.units(steps_done=12) == pytest.approx(8 * 32 + EVAL_COST * (64 + 100))
    bn = _work(kind="bn_reestimate", bn_images=128)
    assert bn.steps() == (0, 0) and bn.units() == pytest.approx(EVAL_COST * (128 + 100))
    assert _work(done_s=5.0).units() == 0.0
    assert format_duration(42) == "42 s" and format_duration(570) == "9.5 min"
    assert format_duration(3 * 3600) == "3.0 h"


def test_estimate_is_the_measured_rate_times_the_work_left():
    """A clock that advances 1 s per training step (32 images): the estimate after 3 timed steps
    is the time spent plus 1/32 s for every image of work left, over every stage."""
    now = [100.0]
    lines: list[str] = []
    plan = [_work(name="pre", done_s=7.0), _work(), _work(name="bn", kind="bn_reestimate",
                                                        bn_images=128)]
    cb = CostReport(plan, 1, epoch_lines=True, measure_steps=3, echo=lines.append,
                    clock=lambda: now[0])
    trainer = SimpleNamespace(global_step=0, world_size=1, is_global_zero=True, current_epoch=0,
                              max_epochs=2, callback_metrics={})
    cb.on_train_start(trainer, None)
    cb.on_train_epoch_start(trainer, None)
    now[0] += 5.0  # the first step pays for set-up: not timed
    for step in range(1, 5):
        trainer.global_step = step
        cb.on_train_batch_end(trainer, None, None, None, step - 1)
        if step < 4:
            assert cb.s_per_image is None and not lines
        now[0] += 1.0
    assert cb.s_per_image == pytest.approx(1 / 32)
    left = (16 * 32 + EVAL_COST * (2 * 64 + 100) + EVAL_COST * (128 + 100)) / 32
    # 7 s of the finished stage + 8 s in this stage so far (5 + 3 x 1 s) + the work left
    assert cb.estimate_s == pytest.approx(7.0 + 8.0 + left)
    assert len(lines) == 1 and lines[0].startswith(
        f"onebit: run estimate ~{format_duration(cb.estimate_s)} for 3 stages (31.2 ms per "
        "training image over 3 steps; this stage ~")
    trainer.global_step, trainer.current_epoch = 10, 0
    cb.on_train_epoch_end(trainer, None)
    assert lines[1].startswith("epoch 1/2 [main]: no metrics (") and lines[1].endswith(" left)")


def test_an_epoch_resumed_midway_is_timed_from_the_resume():
    """Lightning starts no epoch when it resumes inside one: the epoch line then counts from
    the (re)start of training, never a negative or zero time."""
    now = [50.0]
    lines: list[str] = []
    cb = CostReport([_work()], 0, epoch_lines=True, echo=lines.append, clock=lambda: now[0])
    trainer = SimpleNamespace(global_step=12, world_size=1, is_global_zero=True, current_epoch=1,
                              max_epochs=2, callback_metrics={})
    cb.on_train_start(trainer, None)
    now[0] += 42.0
    cb.on_train_epoch_end(trainer, None)
    assert lines == ["epoch 2/2: no metrics (42 s)"]


def test_time_left_follows_the_latest_epochs_pace():
    """The first steps ran 10x slower than the rest (a busy machine, a paused process): after the
    epoch, the time left comes from that epoch's own pace, not from the first steps."""
    now = [0.0]
    lines: list[str] = []
    w = _work(max_epochs=3, val_images=0, test_images=0)     # 10 steps of 32 images per epoch
    cb = CostReport([w], 0, epoch_lines=True, measure_steps=2, echo=lines.append,
                    clock=lambda: now[0])
    trainer = SimpleNamespace(global_step=0, world_size=1, is_global_zero=True, current_epoch=0,
                              max_epochs=3, callback_metrics={})
    cb.on_train_start(trainer, None)
    cb.on_train_epoch_start(trainer, None)
    for step in range(1, 11):
        now[0] += 10.0 if step <= 3 else 1.0
        trainer.global_step = step
        cb.on_train_batch_end(trainer, None, None, None, step - 1)
    assert cb.s_per_image == pytest.approx(10.0 / 32)       # from steps 2-3: the slow start
    cb.on_train_epoch_end(trainer, None)
    assert cb.s_per_image == pytest.approx(37.0 / 320)      # the whole epoch: 37 s, 320 images
    assert lines[-1].endswith(f"(37 s; ~{format_duration(37.0 * 2)} left)")


def _run(tmp_path: Path, capsys, progress_bar: bool) -> tuple[dict, list[str]]:
    cfg = {
        "name": "cost", "method": {"name": "bnn"},
        "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "data": {"name": "synthetic", "batch_size": 32, "val_size": 128, "train_subset": 512,
                 "test_subset": 128},
        "trainer": {"max_epochs": 2, "ckpt_every_n_steps": 0, "progress_bar": progress_bar,
                    "log_every_n_steps": 4},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": False},
        "stages": [{"name": "first", "trainer": {"max_epochs": 1}}, {"name": "second"}],
    }
    capsys.readouterr()
    results = train(validate(cfg))
    return results, capsys.readouterr().out.splitlines()


def test_cli_run_prints_the_estimate_and_epoch_lines(tmp_path, capsys):
    results, out = _run(tmp_path, capsys, progress_bar=False)
    estimates = [line for line in out if line.startswith("onebit: run estimate ~")]
    assert len(estimates) == 2 and all("for 2 stages" in e for e in estimates)
    epochs = [line for line in out if re.match(r"epoch \d/\d \[", line)]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/1 [first]", "epoch 1/2 [second]",
                                                "epoch 2/2 [second]"]
    assert all("train_loss " in e and "val_acc " in e and "left)" in e for e in epochs)
    est = results["run_estimate_s"]  # made in the last stage, after the first one finished
    assert est is not None and math.isfinite(est) and est > results["stages"][0]["wall_time_s"]


def test_progress_bar_on_prints_no_epoch_lines(tmp_path, capsys):
    _, out = _run(tmp_path, capsys, progress_bar=True)
    assert sum("onebit: run estimate ~" in line for line in out) == 2
    assert not any(re.match(r"epoch \d/\d \[", line) for line in out)
