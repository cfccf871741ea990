"""Collect finished runs' ``results.json`` into a Markdown table and a PNG plot for the README.

For every (model, dataset) the float run is the baseline; each method's row shows its test
accuracy, the gap to float in points (float minus method), the target and whether it is met
(AdderNet within 0.5 points of float, BiPer and Bi-Real within 2, XNOR-Net within 3, BNN within 5),
the model size at float32 and packed (binary weights at 1 bit), epochs and wall time.

    python benchmarks/results.py                      # runs/ -> runs/results.md, runs/results.png
    python benchmarks/results.py runs/ --out README_results.md --plot results.png
    python benchmarks/results.py --from-table benchmarks/out/results.md   # redraw the PNG only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "collect", "compare", "main", "markdown", "plot", "rows_from_markdown"]

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


def rows_from_markdown(text: str) -> list[dict[str, Any]]:
    """The rows of a table :func:`markdown` wrote (``benchmarks/out/results*.md``), so that the
    plot can be redrawn from the committed table without the run directories."""
    rows: list[dict[str, Any]] = []
    model = dataset = ""
    for line in text.splitlines():
        if line.startswith("### ") and " on " in line:
            model, dataset = line[4:].strip().split(" on ", 1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 6 or cells[0] in ("method", "---"):
            continue
        method, acc, gap, target = cells[:4]
        tol, _, verdict = target.partition(": ")
        epochs, _, stages = cells[5].partition(" (")
        rows.append({"method": method, "model": model, "dataset": dataset, "acc": float(acc),
                     "gap": None if gap == "-" else float(gap),
                     "target": None if target == "-" else float(tol.removeprefix("<= ")),
                     "verdict": verdict or "-", "float32_bytes": None, "packed_bytes": None,
                     "epochs": None if epochs == "-" else float(epochs), "wall_time_s": None,
                     "stages": int(stages.split()[0]) if stages else 1, "path": None})
    return rows


#: bar colour per verdict, with its legend text
_VERDICT_STYLE = {"met": ("tab:green", "target met"), "missed": ("tab:red", "target missed"),
                  "-": ("tab:blue", "no target"), "no float run": ("tab:blue", "no target")}


def plot(rows: list[dict[str, Any]], path: Path, title: str = "") -> bool:
    """One panel per (model, dataset): each method's gap to the float baseline in accuracy points
    (float minus method, so longer is worse; bars start at 0, the float model), coloured by whether
    the method meets its target, with the target tolerance marked and the test accuracy written
    beside each bar."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["gap"] is not None:
            groups.setdefault((r["model"], r["dataset"]), []).append(r)
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    floats = {(r["model"], r["dataset"]): r for r in rows if r["method"] == "float"}
    height = max(len(items) for items in groups.values())
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.3 + 0.45 * height * len(groups) + 0.9),
                             squeeze=False)
    for ax, ((model, dataset), items) in zip(axes.flat, groups.items()):
        base = floats[(model, dataset)]
        ys = list(range(len(items)))[::-1]                     # first method on top
        gaps = [r["gap"] for r in items]
        colors = [_VERDICT_STYLE.get(r["verdict"], _VERDICT_STYLE["-"])[0] for r in items]
        ax.barh(ys, gaps, color=colors, height=0.6, zorder=2)
        ax.axvline(0, color="black", linewidth=0.8, zorder=3)
        right = max([0.0, *gaps, *(r["target"] for r in items if r["target"] is not None)])
        left = min([0.0, *gaps])
        span = right - left or 1.0
        for y, r in zip(ys, items):
            if r["target"] is not None:
                ax.plot([r["target"]] * 2, [y - 0.42, y + 0.42], color="black", linewidth=2.2,
                        zorder=4)
            # the label starts right of everything drawn on its row: bar end, target mark, 0
            x = max(0.0, r["gap"], r["target"] if r["target"] is not None else 0.0) + 0.02 * span
            ax.text(x, y, f"{r['gap']:+.2f} pts (acc. {r['acc']:.2f}%)", va="center", fontsize=8.5,
                    zorder=5)
        ax.set_yticks(ys, [r["method"] for r in items])
        ax.set_xlim(left - 0.05 * span, right + 0.42 * span)
        ax.set_ylim(-0.7, len(items) - 0.3)
        ax.grid(axis="x", alpha=0.3, zorder=0)
        epochs = f" after {base['epochs']:g} epochs" if base.get("epochs") else ""
        ax.set_title(f"{model} on {dataset} (float baseline: {base['acc']:.2f}% test accuracy"
                     f"{epochs})",
                     fontsize=10)
        ax.set_xlabel("gap to the float baseline (accuracy points; float minus method, "
                      "lower is better)", fontsize=9)
    verdicts = {r["verdict"] for items in groups.values() for r in items}
    handles = [Patch(color=c, label=t) for v, (c, t) in _VERDICT_STYLE.items()
               if v in verdicts and v != "no float run"]
    handles.append(Line2D([], [], color="black", linewidth=2.2, linestyle="none", marker="|",
                          markersize=12, markeredgewidth=2.2, label="target: largest accepted gap"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", default=["runs"], help="run directories or their parent")
    p.add_argument("--out", help="Markdown file (default: <first runs dir>/results.md)")
    p.add_argument("--plot", help="PNG file (default: <first runs dir>/results.png)")
    p.add_argument("--from-table", metavar="MD",
                   help="redraw the plot from a table this script wrote (no run directories "
                        "needed); the PNG goes to --plot, default MD with .png")
    p.add_argument("--title", default="", help="a title above the plot")
    args = p.parse_args(argv)
    if args.from_table:
        table = Path(args.from_table)
        png = Path(args.plot) if args.plot else table.with_suffix(".png")
        if not table.is_file() or not plot(rows_from_markdown(table.read_text()), png, args.title):
            print(f"results.py: no results table with a float baseline in {table}",
                  file=sys.stderr)
            return 2
        print(f"wrote {png}")
        return 0
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
    plot(rows, png, args.title)
    print(text, end="")
    print(f"\nwrote {out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
