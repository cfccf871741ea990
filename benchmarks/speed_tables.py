"""The README's speed tables, as Markdown, from the JSON the benchmark scripts wrote.

    python benchmarks/speed_tables.py [--kernels benchmarks/out/kernels.json]
                                      [--models benchmarks/out/models.json]
                                      [--kernels-other-isa benchmarks/out/zen4/kernels_avx2.json]

Prints the machine line of each run, the binary conv2d table (kernels.py: PyTorch fp32 conv2d vs
onebit, G binary MAC/s beside the tile limit of the same run, the kernel each layer ran) and the
whole-model table (models.py: PyTorch fp32, ONNX Runtime fp32 and int8, onebit), so that the
README shows exactly what the scripts measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _machine(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, {m['isa_class']} (flags: {' '.join(m['flags'])}); "
            f"onebit kernels: {m['onebit_isa']}")


def kernels_table(res: dict) -> str:
    lim = res["tile_limit"]
    lines = [f"Machine: {_machine(res['machine'])}. Tile limit in this run (binary GEMM "
             f"{lim['shape']}, 1 thread, best block): {lim['g_binary_macs_of_min']:.0f} G binary "
             "MAC/s per thread.", "",
             "| layer | threads | PyTorch fp32 ms | onebit ms | speed-up | G binary MAC/s "
             "| % of tile limit | kernel |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['shape']} | {r['threads']} | {r['torch_ms']:.3f} | {r['onebit_ms']:.3f} "
                     f"| {r['speedup']:.2f}x | {r['g_binary_macs']:.1f} "
                     f"| {r['pct_of_tile_limit']:.0f}% | {r['onebit_kernel']} |")
    geo = ", ".join(f"{v:.2f}x at {t} thread{'s' if t != '1' else ''}"
                    for t, v in res["geomean_speedup_3x3"].items())
    lines += ["", f"Geometric mean speed-up over the 3x3 shapes: {geo}."]
    return "\n".join(lines)


def isa_table(best: dict, other: dict) -> str:
    """The same layers under two ISAs of one CPU (kernels.py, the second run with
    ONEBIT_KERNELS=avx2): 1-thread medians and the ratio, so that no shape is slower under the
    wider ISA unnoticed."""
    isa_b, isa_o = best["machine"]["onebit_isa"], other["machine"]["onebit_isa"]
    mine = {r["shape"]: r for r in other["rows"] if r["threads"] == 1}
    lines = [f"| layer | {isa_o} ms | {isa_b} ms | {isa_b} speed-up | {isa_b} kernel |",
             "|---|---:|---:|---:|---|"]
    for r in best["rows"]:
        if r["threads"] == 1 and r["shape"] in mine:
            o = mine[r["shape"]]
            lines.append(f"| {r['shape']} | {o['onebit_ms']:.3f} | {r['onebit_ms']:.3f} "
                         f"| {o['onebit_ms'] / r['onebit_ms']:.2f}x | {r['onebit_kernel']} |")
    return "\n".join(lines)


def models_table(res: dict) -> str:
    rivals = [r for r in ("int8", "fp32") if any("speedup_vs_" + r in x for x in res["rows"])]
    head = "| model | batch | threads | median ms | vs PyTorch fp32 |" + "".join(
        f" vs ONNX Runtime {r} |" for r in rivals)
    lines = [f"Machine: {_machine(res['machine'])}.", "", head,
             "|---|---:|---:|---:|---:|" + "---:|" * len(rivals)]
    for r in res["rows"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['ms']:.2f} "
                     f"| {r['speedup_vs_torch']:.2f}x |"
                     + "".join(f" {r['speedup_vs_' + v]:.2f}x |" for v in rivals))
    if res.get("skipped"):
        lines += ["", f"Note: {res['skipped']}."]
    sizes = res["bytes"]
    base = sizes["PyTorch float32 ResNet-18 (weights)"]
    lines += ["", "File sizes: " + "; ".join(f"{k} {v / 1e6:.1f} MB ({v / base:.3f}x)"
                                             for k, v in sizes.items()) + "."]
    by_t = {}
    for r in res["rows"]:
        by_t[(r["model"], r["batch"], r["threads"])] = r["ms"]
    scal = [f"{m} batch {b}: {by_t[(m, b, 1)] / by_t[(m, b, 2)]:.2f}x"
            for (m, b, t) in by_t if t == 2 and (m, b, 1) in by_t and "onebit" not in m
            and not m.startswith(("PyTorch", "ONNX"))]
    if scal:
        lines += ["", "Two threads against one (medians): " + "; ".join(scal) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernels", type=Path, default=OUT / "kernels.json")
    p.add_argument("--models", type=Path, default=OUT / "models.json")
    p.add_argument("--kernels-other-isa", type=Path, default=None,
                   help="kernels.py JSON of the same CPU under another ISA (ONEBIT_KERNELS=avx2)")
    a = p.parse_args(argv)
    kernels = json.loads(a.kernels.read_text())
    print(kernels_table(kernels))
    print()
    if a.kernels_other_isa:
        print(isa_table(kernels, json.loads(a.kernels_other_isa.read_text())))
        print()
    print(models_table(json.loads(a.models.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
