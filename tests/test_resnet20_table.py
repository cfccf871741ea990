"""benchmarks/resnet20.py: the seeds table of the ResNet-20 comparison (means, spread, gap to
float, targets, the papers' order, Bi-Real's BatchNorm re-estimation before/after)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("resnet20_table", REPO / "benchmarks" / "resnet20.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(root: Path, seed: int, method: str, acc: float, model: str = "resnet20",
           stages: list | None = None, finished: str = "2026-01-01T00:00:00") -> None:
    d = root / f"seed{seed}" / f"{method}_resnet20_fashion_mnist"
    d.mkdir(parents=True, exist_ok=True)
    r = {"method": method, "model": model, "dataset": "fashion_mnist", "test_acc": acc,
         "seed": seed, "epochs": 10.0, "wall_time_s": 60.0, "finished_at": finished}
    if stages is not None:
        r["stages"] = stages
    (d / "results.json").write_text(json.dumps(r))
    if method in ("bireal", "biper"):
        (d / "config.yaml").write_text("model: {name: resnet20, block: bireal}\n")


def test_means_gaps_targets_and_order(tmp_path, table):
    for seed, (f, bp, br, x, b) in enumerate([(0.92, 0.91, 0.905, 0.89, 0.86),
                                               (0.94, 0.92, 0.915, 0.90, 0.88)]):
        _write(tmp_path, seed, "float", f)
        _write(tmp_path, seed, "biper", bp, "resnet20")
        _write(tmp_path, seed, "bireal", br, "resnet20",
               stages=[{"kind": "train", "name": "pretrain", "test_acc": 0.9},
                       {"kind": "train", "name": "binary", "test_acc": br - 0.01},
                       {"kind": "bn_reestimate", "name": "bn", "test_acc": br}])
        _write(tmp_path, seed, "xnor", x)
        _write(tmp_path, seed, "bnn", b)
    # a stage's results.json and an older duplicate of a run are not counted
    (tmp_path / "seed0" / "bireal_resnet20_fashion_mnist" / "stages" / "2-binary").mkdir(parents=True)
    (tmp_path / "seed0" / "bireal_resnet20_fashion_mnist" / "stages" / "2-binary" / "results.json"
     ).write_text(json.dumps({"method": "bireal", "model": "resnet20",
                              "dataset": "fashion_mnist", "test_acc": 0.1, "seed": 0}))
    _write(tmp_path / "old", 0, "xnor", 0.10, finished="2025-01-01T00:00:00")
    rows = {r["method"]: r for r in table.summarize(table.collect(tmp_path))}
    assert rows["float"]["mean"] == pytest.approx(93.0)
    assert rows["float"]["model"] == "resnet20 (basic)"
    assert rows["bireal"]["model"] == "resnet20 (bireal)"
    assert rows["biper"]["mean"] == pytest.approx(91.5)
    assert rows["biper"]["gap"] == pytest.approx(1.5)
    assert rows["biper"]["verdict"] == "met"            # 1.5 <= 1.5
    assert rows["bireal"]["gap"] == pytest.approx(2.0)
    assert rows["bireal"]["verdict"] == "met"
    assert rows["xnor"]["mean"] == pytest.approx(89.5)  # the older 10% run is ignored
    assert rows["bnn"]["gap"] == pytest.approx(6.0)
    assert rows["bnn"]["verdict"] == "missed"
    assert rows["bnn"]["min"] == pytest.approx(86.0) and rows["bnn"]["max"] == pytest.approx(88.0)
    assert rows["bireal"]["bn_before"] == pytest.approx([89.5, 90.5])
    text = table.markdown(list(rows.values()))
    assert "holds" in table.order_check(list(rows.values()))
    assert "never lower" in text
    assert table.plot(list(rows.values()), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_order_broken_and_bn_lower_are_reported(tmp_path, table):
    _write(tmp_path, 0, "float", 0.92)
    _write(tmp_path, 0, "bireal", 0.85, "resnet20",
           stages=[{"kind": "train", "name": "binary", "test_acc": 0.86},
                   {"kind": "bn_reestimate", "name": "bn", "test_acc": 0.85}])
    _write(tmp_path, 0, "xnor", 0.88)
    rows = table.summarize(table.collect(tmp_path))
    check = table.order_check(rows)
    assert check.startswith("papers' order") and "broken" in check and "bireal 85.00 vs xnor 88.00" in check
    assert "not yet trained: biper, bnn" in check
    assert "LOWER in some seed" in table.markdown(rows)


def test_biper_may_tie_bireal_but_others_must_be_strict(tmp_path, table):
    for m in ("biper", "bireal"):
        _write(tmp_path, 0, m, 0.90, "resnet20")
    _write(tmp_path, 0, "xnor", 0.90)
    check = table.order_check(table.summarize(table.collect(tmp_path)))
    assert "broken (bireal 90.00 vs xnor 90.00)" in check
