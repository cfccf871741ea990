"""The ResNet-20 comparison over seeds: a Markdown table (mean and spread of each method's test
accuracy, gap to the float ResNet-20, the issue's targets, the papers' order) and a PNG plot.

Reads ``<runs>/seed*/<method>_resnet20_fashion_mnist/results.json`` (benchmarks/run_resnet20.sh
writes them). Every method is compared with the float ``resnet20`` run of the same budget;
Bi-Real and BiPer train ResNet-20 in Bi-Real form (``model.block: bireal``: the same 0.27 M
parameters, a shortcut around every binary conv). A method with fewer seeds than the others is marked.

    python benchmarks/resnet20.py                 # runs/resnet20 -> runs/resnet20/results.md, .png
    python benchmarks/resnet20.py runs/resnet20 --out benchmarks/out/resnet20.md \\
        --plot benchmarks/out/resnet20.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import _time  # noqa: E402  (h:mm:ss, as in the fmnist table)

__all__ = ["TARGETS", "PAPER_ORDER", "collect", "summarize", "order_check", "markdown", "plot",
           "main"]

#: method -> the largest accepted gap to float ResNet-20, in accuracy points
TARGETS: dict[str, float] = {"addernet": 0.5, "biper": 1.5, "bireal": 2.0, "xnor": 3.0, "bnn": 5.0}
#: the papers' order of the binary methods (first >= second > third > fourth)
PAPER_ORDER = ("biper", "bireal", "xnor", "bnn")
ORDER = ("float", "addernet", "biper", "bireal", "xnor", "bwn", "bnn")


def collect(root: Path) -> list[dict[str, Any]]:
    """Every finished ResNet-20 run below ``root`` (any depth), one per (method, seed): the
    newest wins when a method and seed were trained twice."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for f in sorted(root.glob("**/results.json")):
        if "stages" in f.parent.parts[len(root.parts):]:
            continue                      # a stage of a multi-stage run, not a run
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"resnet20.py: skipping {f}: {exc}", file=sys.stderr)
            continue
        if r.get("dataset") != "fashion_mnist" or "resnet20" not in str(r.get("model")):
            continue
        r["_path"] = str(f.parent)
        r["_block"] = _block(f.parent)
        key = (r["method"], r.get("seed", 0))
        if key not in runs or str(r.get("finished_at", "")) >= str(runs[key].get("finished_at", "")):
            runs[key] = r
    return list(runs.values())


def _block(run_dir: Path) -> str:
    """The run's ``model.block`` from its config.yaml (``basic`` when not set)."""
    try:
        import yaml

        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ImportError, ValueError):
        return "basic"
    return str(((cfg.get("model") or {}).get("block")) or "basic")


def _stage_acc(run: dict[str, Any], kind: str, name: str | None = None) -> float | None:
    for s in run.get("stages") or []:
        if s.get("kind") == kind and (name is None or s.get("name") == name):
            return 100.0 * s["test_acc"]
    return None


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: seeds, mean / min / max / standard deviation of the test accuracy, the
    gap of the mean to the float mean, the target verdict; for Bi-Real the accuracy before and
    after BatchNorm re-estimation (mean over seeds), for BiPer the sine stage's accuracy."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    float_mean = None
    if "float" in by_method:
        float_mean = statistics.fmean(100.0 * r["test_acc"] for r in by_method["float"])
    rows = []
    for method, items in by_method.items():
        accs = [100.0 * r["test_acc"] for r in sorted(items, key=lambda r: r.get("seed", 0))]
        mean = statistics.fmean(accs)
        gap = None if float_mean is None or method == "float" else float_mean - mean
        target = TARGETS.get(method)
        verdict = "-"
        if target is not None:
            # judged at the precision the table prints (float sums are not exact)
            verdict = "no float run" if gap is None else ("met" if round(gap, 2) <= target else "missed")
        row = {"method": method, "model": f"{items[0]['model']} ({items[0].get('_block', 'basic')})",
               "seeds": sorted(r.get("seed", 0) for r in items), "accs": accs, "mean": mean,
               "min": min(accs), "max": max(accs),
               "std": statistics.stdev(accs) if len(accs) > 1 else None,
               "gap": gap, "target": target, "verdict": verdict,
               "epochs": items[0].get("epochs"), "stages": len(items[0].get("stages") or []) or 1,
               "wall_time_s": (statistics.fmean(r["wall_time_s"] for r in items)
                               if all(r.get("wall_time_s") for r in items) else None),
               "packed_bytes": items[0].get("size_packed_bytes"),
               "float32_bytes": items[0].get("size_float32_bytes")}
        before = [_stage_acc(r, "train", "binary") for r in items]
        after = [_stage_acc(r, "bn_reestimate") for r in items]
        if all(b is not None for b in before) and all(a is not None for a in after):
            row["bn_before"], row["bn_after"] = before, after
        sine = [_stage_acc(r, "train", "sine") for r in items]
        if all(s is not None for s in sine):
            row["sine_stage"] = sine
        rows.append(row)
    rank = {m: i for i, m in enumerate(ORDER)}
    rows.sort(key=lambda x: (rank.get(x["method"], len(ORDER)), x["method"]))
    return rows


def order_check(rows: list[dict[str, Any]]) -> str:
    """Whether the mean accuracies follow the papers' order BiPer >= Bi-Real > XNOR-Net > BNN,
    over the methods present."""
    means = {r["method"]: r["mean"] for r in rows}
    present = [m for m in PAPER_ORDER if m in means]
    if len(present) < 2:
        return "papers' order BiPer >= Bi-Real > XNOR-Net > BNN: too few methods trained to check"
    broken = []
    for a, b in zip(present, present[1:]):
        ok = means[a] >= means[b] if (a, b) == ("biper", "bireal") else means[a] > means[b]
        if not ok:
            broken.append(f"{a} {means[a]:.2f} vs {b} {means[b]:.2f}")
    chain = " > ".join(f"{m} {means[m]:.2f}" for m in present)
    missing = [m for m in PAPER_ORDER if m not in means]
    tail = f" (not yet trained: {', '.join(missing)})" if missing else ""
    if broken:
        return f"papers' order BiPer >= Bi-Real > XNOR-Net > BNN: broken ({'; '.join(broken)}){tail}"
    return f"papers' order BiPer >= Bi-Real > XNOR-Net > BNN: holds ({chain}){tail}"


def markdown(rows: list[dict[str, Any]], command: str = "") -> str:
    """The table, the order check and the per-stage notes as Markdown."""
    most = max((len(r["seeds"]) for r in rows), default=0)
    out = ["| method | model | seeds | test acc. mean (%) | min - max | gap to float (points) "
           "| target | epochs | wall time per run |",
           "|---|---|---|---:|---|---:|---|---:|---:|"]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"])) + (" (fewer seeds)" if len(r["seeds"]) < most else "")
        gap = "-" if r["gap"] is None else f"{r['gap']:+.2f}"
        target = "-" if r["target"] is None else f"<= {r['target']:g}: {r['verdict']}"
        epochs = "-" if r["epochs"] is None else f"{r['epochs']:g}"
        if r["stages"] > 1:
            epochs += f" ({r['stages']} stages)"
        out.append(f"| {r['method']} | {r['model']} | {seeds} | {r['mean']:.2f} "
                   f"| {r['min']:.2f} - {r['max']:.2f} | {gap} | {target} | {epochs} "
                   f"| {_time(r['wall_time_s'])} |")
    out += ["", order_check(rows) + ".", ""]
    for r in rows:
        if "bn_before" in r:
            pairs = ", ".join(f"{b:.2f} -> {a:.2f}" for b, a in zip(r["bn_before"], r["bn_after"]))
            never = all(a >= b for b, a in zip(r["bn_before"], r["bn_after"]))
            out.append(f"- {r['method']}: BatchNorm re-estimation, test accuracy before -> after "
                       f"per seed: {pairs} ({'never lower' if never else 'LOWER in some seed'}).")
        if "sine_stage" in r:
            out.append(f"- {r['method']}: after the sine stage (real sin(omega0 w) weights) "
                       f"{', '.join(f'{s:.2f}' for s in r['sine_stage'])}; after the square wave "
                       f"{', '.join(f'{a:.2f}' for a in r['accs'])}.")
    if command:
        out += ["", f"Generated by `{command}`."]
    return "\n".join(out).rstrip() + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str = "") -> bool:
    """Each method's mean gap to float ResNet-20 (bars), the seeds' range (error bars) and the
    target (black marks)."""
    rows = [r for r in rows if r["gap"] is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    colors = {"met": "tab:green", "missed": "tab:red"}
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    gaps = [r["gap"] for r in rows]
    # error bars: the spread of the seeds' gaps (float mean minus each seed)
    lo = [r["max"] - r["mean"] for r in rows]
    hi = [r["mean"] - r["min"] for r in rows]
    ax.barh(ys, gaps, xerr=[lo, hi], color=[colors.get(r["verdict"], "tab:blue") for r in rows],
            height=0.6, capsize=3, zorder=2)
    ax.axvline(0, color="black", linewidth=0.8, zorder=3)
    right = max([0.0, *(g + h for g, h in zip(gaps, hi)), *(r["target"] or 0 for r in rows)])
    for y, r in zip(ys, rows):
        if r["target"] is not None:
            ax.plot([r["target"]] * 2, [y - 0.42, y + 0.42], color="black", linewidth=2.2, zorder=4)
        ax.text(right * 1.04 + 0.05, y, f"{r['gap']:+.2f} pts ({r['mean']:.2f}%, n={len(r['seeds'])})",
                va="center", fontsize=8.5)
    ax.set_yticks(ys, [r["method"] for r in rows])
    ax.set_xlim(min(0.0, *gaps) - 0.3, right * 1.45 + 1.0)
    ax.grid(axis="x", alpha=0.3, zorder=0)
    ax.set_xlabel("gap to float ResNet-20 (accuracy points, mean over seeds; bars: min-max; "
                  "black: target)", fontsize=9)
    ax.set_title(title or "ResNet-20 on Fashion-MNIST, 10 epochs per method", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="?", default="runs/resnet20", help="parent of the seed directories")
    p.add_argument("--out", help="Markdown file (default: <runs>/results.md)")
    p.add_argument("--plot", help="PNG file (default: <runs>/results.png)")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    root = Path(args.runs)
    runs = collect(root)
    if not runs:
        print(f"resnet20.py: no ResNet-20 results.json under {root}; run "
              "benchmarks/run_resnet20.sh first", file=sys.stderr)
        return 2
    rows = summarize(runs)
    out = Path(args.out) if args.out else root / "results.md"
    png = Path(args.plot) if args.plot else root / "results.png"
    cmd = "python benchmarks/resnet20.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(rows, cmd.strip())
    out.write_text(text)
    plot(rows, png, args.title)
    print(text, end="")
    print(f"\nwrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
