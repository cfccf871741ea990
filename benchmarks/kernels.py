"""Binary conv2d (onebit.kernels.bconv2d) against PyTorch's float32 conv2d on ResNet-18 /
Bi-Real-18 layer shapes at batch 1, at 1 and 2 threads, side by side in one run.

Usage:
    python benchmarks/kernels.py [--repeats 30] [--threads 1 2] [--out results.json]

For every shape, the kernels at every thread count run in blocks of back-to-back calls (about
20 ms each, after one untimed call), all taking turns block by block in one loop, with
torch.set_num_threads and num_threads set alike; a sample is a block's mean time per call, and the medians (and minima) of
the samples are reported (see benchmarks/_timing.py for why blocks, not single calls). onebit's input is already
packed (as when binary layers chain with output="bits"), its filters are prepared once
(prepare_conv_weight, as an inference runtime does at load time; "onebit ms (raw w)" times the
same call with plain packed filters, packing them on every call), and its output is float32
with a folded BatchNorm (output="float", multiplier and bias), the form a Bi-Real block adds to
its shortcut.
"G bMAC/s" counts binary multiply-accumulates: out_pixels * C_out * kh * kw * C_in / time;
"% tile" sets it beside the tile limit measured in the same run (times the thread count): a
binary GEMM with deep rows (96 x 64 outputs, K = 16384 bits, prepared B, int32 output), where
packing and the output transform are a few percent of the work and the popcount tile runs at its
own speed; its best block is taken as the limit. Each layer's
filters are tuned once (``PreparedConvWeight.tune``: the fastest candidate kernel on that
geometry, as the runtime does at load time); the kernel that ran is printed per layer.
The geometric mean of the speed-up is taken over the 3x3 shapes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import onebit.kernels as K

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, header  # noqa: E402
from _timing import block_times, summarize  # noqa: E402

# (name, H=W, C_in, C_out, kernel, stride)
SHAPES = [
    ("56x56x64 3x3 s1", 56, 64, 64, 3, 1),
    ("28x28x128 3x3 s1", 28, 128, 128, 3, 1),
    ("14x14x256 3x3 s1", 14, 256, 256, 3, 1),
    ("7x7x512 3x3 s1", 7, 512, 512, 3, 1),
    ("56x56x64 3x3 s2 ->128", 56, 64, 128, 3, 2),
    ("28x28x128 3x3 s2 ->256", 28, 128, 256, 3, 2),
    ("14x14x256 3x3 s2 ->512", 14, 256, 512, 3, 2),
    ("56x56x64 1x1 s2 ->128", 56, 64, 128, 1, 2),
    ("28x28x128 1x1 s2 ->256", 28, 128, 256, 1, 2),
    ("14x14x256 1x1 s2 ->512", 14, 256, 512, 1, 2),
]


def effective_cores(seconds: float = 0.05) -> float:
    """How many cores this process gets now: the same single-threaded onebit work run in two
    Python threads at once (the kernels release the GIL) against one after the other. About 2.0
    on an idle 2-core machine; near 1.0 when other processes keep a core busy, and then no
    2-thread figure of this run can show a speed-up."""
    import threading

    rng = np.random.default_rng(1)
    xp = K.pack_nchw(np.where(rng.random((1, 256, 14, 14)) < 0.5, -1.0, 1.0).astype(np.float32))
    wp = K.pack_conv_weight(np.where(rng.random((256, 256, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32))
    t0 = time.perf_counter()
    K.bconv2d(xp, wp, in_channels=256, padding=1, num_threads=1)
    reps = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))

    def job() -> None:
        for _ in range(reps):
            K.bconv2d(xp, wp, in_channels=256, padding=1, num_threads=1)

    t0 = time.perf_counter()
    job()
    one = time.perf_counter() - t0
    workers = [threading.Thread(target=job) for _ in range(2)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 2 * one / (time.perf_counter() - t0)


def tile_limit(repeats: int) -> dict:
    """G binary MAC/s of the popcount tile alone (1 thread): a deep binary GEMM, see above."""
    rng = np.random.default_rng(2)
    m, n, k = 96, 64, 16384
    a = K.pack_bits(np.where(rng.random((m, k)) < 0.5, -1.0, 1.0).astype(np.float32))
    b = K.prepare_gemm_weight(
        K.pack_bits(np.where(rng.random((n, k)) < 0.5, -1.0, 1.0).astype(np.float32)), k)
    (med, low), = summarize(block_times([lambda: K.bgemm(a, b, k, num_threads=1)], repeats))
    return {"shape": f"{m}x{n}x{k}", "g_binary_macs": m * n * k / med / 1e9,
            "g_binary_macs_of_min": m * n * k / low / 1e9}


def run(repeats: int, threads: list[int], shape_filter: str | None) -> dict:
    import torch
    import torch.nn.functional as F

    cores_before = effective_cores()
    rng = np.random.default_rng(0)
    rows = []
    for name, hw, cin, cout, k, stride in SHAPES:
        if shape_filter and shape_filter not in name:
            continue
        pad = k // 2
        x = np.where(rng.random((1, cin, hw, hw)) < 0.5, -1.0, 1.0).astype(np.float32)
        w = np.where(rng.random((cout, cin, k, k)) < 0.5, -1.0, 1.0).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
        prepared = K.prepare_conv_weight(wp, in_channels=cin)
        prepared.tune((hw, hw), stride=stride, padding=pad, num_threads=1)
        mult = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        bias = rng.uniform(-1, 1, cout).astype(np.float32)
        # the two must agree before anything is timed
        ref = F.conv2d(xt, wt, stride=stride, padding=pad).numpy().transpose(0, 2, 3, 1)
        got = K.bconv2d(xp, wp, in_channels=cin, stride=stride, padding=pad)
        if not np.array_equal(got, ref.astype(np.int32)):
            raise SystemExit(f"{name}: onebit and PyTorch disagree; not benchmarking a wrong kernel")
        ho = ref.shape[1]
        macs = ho * ho * cout * k * k * cin
        # every thread count's kernels take turns in one loop, so that the 2-thread / 1-thread
        # ratios compare the same moments of a shared machine
        fns, setups = [], []
        for t in threads:
            def onebit(weights, t=t):
                return K.bconv2d(xp, weights, in_channels=cin, stride=stride, padding=pad,
                                 output="float", multiplier=mult, bias=bias, num_threads=t)

            def use(t=t):
                torch.set_num_threads(t)

            fns += [lambda: F.conv2d(xt, wt, stride=stride, padding=pad),
                    lambda onebit=onebit: onebit(prepared), lambda onebit=onebit: onebit(wp)]
            setups += [use, use, use]
        with torch.no_grad():
            stats = summarize(block_times(fns, repeats, setups=setups))
        for i, t in enumerate(threads):
            (t_torch, m_torch), (t_onebit, m_onebit), (t_raw, _) = stats[3 * i:3 * i + 3]
            rows.append({
                "shape": name, "threads": t, "torch_ms": t_torch * 1e3, "onebit_ms": t_onebit * 1e3,
                "onebit_raw_w_ms": t_raw * 1e3, "speedup": t_torch / t_onebit,
                "torch_min_ms": m_torch * 1e3, "onebit_min_ms": m_onebit * 1e3,
                "speedup_of_minima": m_torch / m_onebit,
                "g_binary_macs": macs / t_onebit / 1e9, "kernel": k, "macs": macs,
                "onebit_kernel": prepared.kernel, "kernel_choice": prepared.choice,
            })
    geo, geo_min = {}, {}
    for t in threads:
        sel = [r for r in rows if r["threads"] == t and r["kernel"] == 3]
        if sel:
            geo[str(t)] = math.exp(sum(math.log(r["speedup"]) for r in sel) / len(sel))
            geo_min[str(t)] = math.exp(sum(math.log(r["speedup_of_minima"]) for r in sel) / len(sel))
    scaling, scaling_med = {}, {}
    if 1 in threads and 2 in threads:
        one = {r["shape"]: r["onebit_min_ms"] for r in rows if r["threads"] == 1}
        scaling = {r["shape"]: one[r["shape"]] / r["onebit_min_ms"] for r in rows if r["threads"] == 2}
        one_med = {r["shape"]: r["onebit_ms"] for r in rows if r["threads"] == 1}
        scaling_med = {r["shape"]: one_med[r["shape"]] / r["onebit_ms"] for r in rows
                       if r["threads"] == 2}
    limit = tile_limit(repeats)
    for r in rows:  # against the limit of as many cores (its best block: noise only adds time)
        r["pct_of_tile_limit"] = 100 * r["g_binary_macs"] / (r["threads"]
                                                               * limit["g_binary_macs_of_min"])
    return {
        "machine": describe(),
        "tile_limit": limit,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "isa": K.active_isa(),
        "effective_cores": [round(cores_before, 2), round(effective_cores(), 2)],
        "repeats": repeats,
        "rows": rows,
        "geomean_speedup_3x3": geo,
        "geomean_speedup_3x3_of_minima": geo_min,
        "onebit_2_thread_scaling": scaling,
        "onebit_2_thread_scaling_of_medians": scaling_med,
    }


def print_table(res: dict) -> None:
    print(header(res["machine"]))
    lim = res["tile_limit"]
    print(f"tile limit (binary GEMM {lim['shape']}, 1 thread): {lim['g_binary_macs_of_min']:.1f} "
          f"G bMAC/s (best block; median {lim['g_binary_macs']:.1f}); % tile: of that limit per "
          "thread")
    print(f"onebit ISA: {res['isa']}, torch {res['torch']}, medians of {res['repeats']} blocks of back-to-back calls; "
          f"cores available to this process before / after: {res['effective_cores'][0]:.2f} / "
          f"{res['effective_cores'][1]:.2f}")
    head = (f"{'shape':<24} {'thr':>3} {'torch ms':>9} {'onebit ms':>10} {'(raw w)':>8} "
            f"{'ratio':>6} {'G bMAC/s':>9} {'% tile':>7} {'ratio of minima':>16}  kernel")
    print(head)
    print("-" * len(head))
    for r in res["rows"]:
        print(f"{r['shape']:<24} {r['threads']:>3} {r['torch_ms']:>9.3f} {r['onebit_ms']:>10.3f} "
              f"{r['onebit_raw_w_ms']:>8.3f} {r['speedup']:>6.2f} {r['g_binary_macs']:>9.1f} "
              f"{r['pct_of_tile_limit']:>6.0f}% {r['speedup_of_minima']:>16.2f}  "
              f"{r['onebit_kernel']} ({r['kernel_choice']})")
    for t, g in res["geomean_speedup_3x3"].items():
        print(f"geometric mean speed-up over 3x3 shapes, {t} thread(s): {g:.2f}x (medians), "
              f"{res['geomean_speedup_3x3_of_minima'][t]:.2f}x (minima)")
    if res["onebit_2_thread_scaling"]:
        s = ", ".join(f"{k.split()[0]} {k.split()[1]} {k.split()[2]}: {v:.2f}x"
                      for k, v in res["onebit_2_thread_scaling"].items())
        print(f"onebit 2 threads vs 1 (minima): {s}")
        s = ", ".join(f"{k.split()[0]} {k.split()[1]} {k.split()[2]}: {v:.2f}x"
                      for k, v in res["onebit_2_thread_scaling_of_medians"].items())
        print(f"onebit 2 threads vs 1 (medians): {s}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=30, help="timed blocks per kernel")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--shapes", default=None, help="only shapes whose name contains this text")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("benchmarks/kernels.py compares with PyTorch, which is not installed", file=sys.stderr)
        return 1
    res = run(args.repeats, args.threads, args.shapes)
    print_table(res)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
