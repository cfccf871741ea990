"""Collect finished runs' ``results.json`` into a Markdown table and a PNG plot for the README.

For every (model, dataset) the float run is the baseline; each method's row shows its test
accuracy, the gap to float in points (float minus method), the target and whether it is met
(AdderNet within 0.5 points of float, BiPer and Bi-Real within 2, XNOR-Net within 3, BNN within 5),
the model size at float32 and packed (binary weights at 1 bit), epochs and wall time.

    python benchmarks/results.py                      # runs/ -> runs/results.md, runs/results.png
    python benchmarks/results.py runs/ --out README_results.md --plot results.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "collect", "compare", "markdown", "plot", "main"]

#: method -> the largest accepted gap to the float baseline, in accuracy points
TARGETS: dict[str, float] = {"addernet": 0.5, "biper": 2.0, "bireal": 2.0, "xnor": 3.0, "bnn": 5.0}

#: table order of the methods
ORDER = ("float", "addernet", "biper", "bireal", "xnor", "bwn", "binaryconnect", "bnn")


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Every run's ``results.json`` found at or directly below ``paths`` (newest run wins when a
    method, model and dataset appear twice)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif (p / "results.json").is_file():
            files.append(p / "results.json")
        else:
            files.extend(sorted(p.glob("*/results.json")))
    for f in files:
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"results.py: skipping {f}: {exc}", file=sys.stderr)
            continue
        if not {"method", "model", "dataset", "test_acc"} <= set(r):
            continue
        r["_path"] = str(f.parent)
        key = (r["method"], r["model"], r["dataset"])
        if key not in found or str(r.get("finished_at", "")) >= str(found[key].get("finished_at", "")):
            found[key] = r
    return list(found.values())


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run with the gap to its float baseline and the target verdict."""
    floats = {(r["model"], r["dataset"]): r for r in runs if r["method"] == "float"}
    rows = []
    for r in runs:
        base = floats.get((r["model"], r["dataset"]))
        acc = 100.0 * r["test_acc"]
        gap = None if base is None or r["method"] == "float" else 100.0 * base["test_acc"] - acc
        target = TARGETS.get(r["method"])
        verdict = "-"
        if target is not None:
            verdict = "no float run" if gap is None else ("met" if gap <= target else "missed")
        rows.append({"method": r["method"], "model": r["model"], "dataset": r["dataset"],
                     "acc": acc, "gap": gap, "target": target, "verdict": verdict,
                     "float32_bytes": r.get("size_float32_bytes"),
                     "packed_bytes": r.get("size_packed_bytes"),
                     "epochs": r.get("epochs"), "wall_time_s": r.get("wall_time_s"),
                     "stages": len(r.get("stages") or []) or 1, "path": r.get("_path")})
    rank = {m: i for i, m in enumerate(ORDER)}
    rows.sort(key=lambda x: (x["dataset"], x["model"], rank.get(x["method"], len(ORDER)), x["method"]))
    return rows


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _time(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def markdown(rows: list[dict[str, Any]], command: str = "") -> str:
    """The comparison as Markdown tables, one per (model, dataset)."""
    out: list[str] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    for (model, dataset), items in groups.items():
        out.append(f"### {model} on {dataset}\n")
        out.append("| method | test acc. (%) | gap to float (points) | target | size float32 / packed "
                   "| epochs | wall time |")
        out.append("|---|---:|---:|---|---|---:|---:|")
        for r in items:
            gap = "-" if r["gap"] is None else f"{r['gap']:+.2f}"
            target = "-" if r["target"] is None else f"<= {r['target']:g}: {r['verdict']}"
            size = f"{_size(r['float32_bytes'])} / {_size(r['packed_bytes'])}"
            epochs = "-" if r["epochs"] is None else f"{r['epochs']:g}"
            if r["stages"] > 1:
                epochs += f" ({r['stages']} stages)"
            out.append(f"| {r['method']} | {r['acc']:.2f} | {gap} | {target} | {size} | {epochs} "
                       f"| {_time(r['wall_time_s'])} |")
        out.append("")
    if command:
        out.append(f"Generated by `{command}`.")
    return "\n".join(out).rstrip() + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """Bar chart of test accuracy per method, with the float baseline and each target line."""
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax, ((model, dataset), items) in zip(axes.flat, groups.items()):
        names = [r["method"] for r in items]
        accs = [r["acc"] for r in items]
        colors = ["tab:gray" if r["method"] == "float" else
                  {"met": "tab:green", "missed": "tab:red"}.get(r["verdict"], "tab:blue")
                  for r in items]
        ax.bar(names, accs, color=colors)
        base = next((r["acc"] for r in items if r["method"] == "float"), None)
        if base is not None:
            ax.axhline(base, color="black", linewidth=0.8, linestyle="--", label="float")
            for i, r in enumerate(items):
                if r["target"] is not None:
                    ax.plot([i - 0.4, i + 0.4], [base - r["target"]] * 2, color="black",
                            linewidth=1.5)
        low = min(accs) - 5
        ax.set_ylim(max(0.0, low), min(100.0, max(accs) + 2))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{model} / {dataset} (bar: target = float - tolerance)", fontsize=9)
        ax.tick_params(axis="x", rotation=30)
        for i, a in enumerate(accs):
            ax.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", default=["runs"], help="run directories or their parent")
    p.add_argument("--out", help="Markdown file (default: <first runs dir>/results.md)")
    p.add_argument("--plot", help="PNG file (default: <first runs dir>/results.png)")
    args = p.parse_args(argv)
    paths = [Path(r) for r in args.runs]
    runs = collect(paths)
    if not runs:
        print(f"results.py: no results.json under {', '.join(map(str, paths))}; train some recipes "
              "first (benchmarks/run_fmnist.sh)", file=sys.stderr)
        return 2
    rows = compare(runs)
    root = paths[0] if paths[0].is_dir() else paths[0].parent
    out = Path(args.out) if args.out else root / "results.md"
    png = Path(args.plot) if args.plot else root / "results.png"
    command = "python benchmarks/results.py " + " ".join(args.runs)
    text = markdown(rows, command)
    out.write_text(text)
    plot(rows, png)
    print(text, end="")
    print(f"\nwrote {out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
