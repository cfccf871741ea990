"""The plots people read: the run curves (one stage or all stages of a run on one step axis) and
the results chart of benchmarks/results.py (legend, units, labels clear of the marks)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg", force=True)
from matplotlib.figure import Figure  # noqa: E402

from onebit.train import artifacts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def saved_figures(monkeypatch):
    """Figures passed to savefig (still written), to inspect what was drawn."""
    figures: list[Figure] = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def _metrics(path: Path, steps: int, acc: float) -> Path:
    rows = ["epoch,step,train_loss_step,train_acc,val_acc,lr"]
    rows += [f"0,{s},{2.0 - 0.1 * s},,,0.001" for s in range(steps)]
    rows.append(f"0,{steps - 1},,{acc},{acc - 0.05},")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def test_stage_series_puts_stages_one_after_another(tmp_path):
    a = _metrics(tmp_path / "1-a" / "metrics.csv", 4, 0.5)
    b = _metrics(tmp_path / "2-b" / "metrics.csv", 3, 0.7)
    empty = tmp_path / "3-bn" / "metrics.csv"          # a stage that logs nothing
    series, spans = artifacts._stage_series([("a", a), ("b", b), ("bn", empty)])
    assert spans == [("a", 0, 3), ("b", 4, 6)]
    steps = [s for s, _ in series["train_loss_step"]]
    assert steps[:4] == [0, 1, 2, 3] and steps[5:] == [4, 5, 6]
    assert steps[4] == 3.5 and math.isnan(series["train_loss_step"][4][1])  # line break
    assert [v for _, v in series["val_acc"] if not math.isnan(v)] == [0.45, pytest.approx(0.65)]


def test_combined_curves_in_percent_with_stage_boundaries(tmp_path, saved_figures):
    parts = [("pretrain", _metrics(tmp_path / "1" / "metrics.csv", 4, 0.5)),
             ("binary", _metrics(tmp_path / "2" / "metrics.csv", 3, 0.7))]
    out = tmp_path / "curves.png"
    assert artifacts.plot_curves(parts, out, "run: all stages") and out.stat().st_size > 0
    axes = {ax.get_title(): ax for ax in saved_figures[-1].axes if ax.get_title()}
    acc = axes["accuracy"]
    assert acc.get_ylabel() == "accuracy (%)"
    val = next(line for line in acc.get_lines() if line.get_label() == "validation")
    assert [y for y in val.get_ydata() if not math.isnan(y)] == pytest.approx([45.0, 65.0])
    for ax in axes.values():                             # boundary between step 3 and 4
        assert 3.5 in [line.get_xdata()[0] for line in ax.get_lines()
                       if line.get_linestyle() == "--"]
        assert ax.get_xlim()[0] < 0 and ax.get_xlim()[1] > 6 and ax.get_xlabel()
    assert artifacts.plot_curves([("x", tmp_path / "missing.csv")], out) is False


def test_single_stage_curves_have_no_stage_marks(tmp_path, saved_figures):
    out = tmp_path / "curves.png"
    assert artifacts.plot_curves(_metrics(tmp_path / "metrics.csv", 5, 0.9), out)
    for ax in saved_figures[-1].axes:
        if ax.get_title():
            assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_multi_stage_run_writes_combined_curves(tmp_path):
    from onebit.train import train
    from onebit.train.config import validate

    cfg = {
        "name": "two", "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
        "data": {"name": "synthetic", "batch_size": 32, "val_size": 128, "eval_batch_size": 256,
                 "train_subset": 256, "test_subset": 64},
        "trainer": {"max_epochs": 1, "max_steps": 3, "progress_bar": False,
                    "log_every_n_steps": 1},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False, "plots": True},
        "stages": [{"name": "sine", "method": {"name": "biper", "stage": 1}},
                   {"name": "square", "method": {"name": "biper", "stage": 2}}],
    }
    train(validate(cfg))
    run = tmp_path / "runs" / "two"
    assert (run / "curves.png").stat().st_size > 0
    assert (run / "stages" / "1-sine" / "curves.png").is_file()


def _results_module():
    spec = importlib.util.spec_from_file_location("results", REPO / "benchmarks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(method, acc, gap, target, verdict, epochs=4, stages=1):
    return {"method": method, "model": "m", "dataset": "d", "acc": acc, "gap": gap,
            "target": target, "verdict": verdict, "float32_bytes": 2**20, "packed_bytes": 4096,
            "epochs": epochs, "wall_time_s": 61, "stages": stages, "path": None}


ROWS = [_row("float", 90.0, None, None, "-"), _row("addernet", 89.7, 0.3, 0.5, "met"),
        _row("bireal", 86.0, 4.0, 2.0, "missed", 5, 3), _row("bwn", 90.1, -0.1, None, "-")]


def test_results_table_round_trips():
    results = _results_module()
    rows = results.rows_from_markdown(results.markdown(ROWS, "cmd"))
    keys = ("method", "model", "dataset", "acc", "gap", "target", "verdict", "epochs", "stages")
    assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in ROWS]


def test_results_plot_legend_units_and_clear_labels(tmp_path, saved_figures):
    results = _results_module()
    out = tmp_path / "results.png"
    assert results.plot(ROWS, out) and out.stat().st_size > 0
    fig = saved_figures[-1]
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert "accuracy points" in ax.get_xlabel() and "90.00%" in ax.get_title()
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend == ["target met", "target missed", "no target", "target: largest accepted gap"]
    labels = {t.get_text().split()[0]: t for t in ax.texts}
    assert set(labels) == {"+0.30", "+4.00", "-0.10"}
    # every label starts right of its bar end and its target mark
    for (gap, target) in ((0.3, 0.5), (4.0, 2.0), (-0.1, None)):
        x = labels[f"{gap:+.2f}"].get_position()[0]
        assert x > max(0.0, gap, target or 0.0)
    assert ax.get_xlim()[0] < -0.1 and ax.get_xlim()[1] > 4.0        # bars start at 0, all shown
    assert results.plot([_row("xnor", 80.0, None, 3.0, "no float run")], out) is False


def test_committed_tables_redraw(tmp_path):
    results = _results_module()
    for name in ("results.md", "results_12ep.md"):
        png = tmp_path / name.replace(".md", ".png")
        assert results.main(["--from-table", str(REPO / "benchmarks" / "out" / name),
                             "--plot", str(png)]) == 0
        assert png.stat().st_size > 0
