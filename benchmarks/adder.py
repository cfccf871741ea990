"""AdderNet layers side by side in one run: PyTorch's float32 conv2d, the official-style unfold
adder, onebit's C++ float adder op (training) and onebit's int8 SAD kernel (inference).

Usage:
    python benchmarks/adder.py [--threads 2] [--repeats 5] [--mem-cap-gb 2] [--only 14x14]
                               [--out results.json]

Training (batch 32 for the CIFAR ResNet-20 shapes, 8 for the ImageNet ResNet-18 shapes, on
``--threads`` threads, torch and onebit alike): time of the forward pass and of a training step
(forward + backward, both gradients) and the peak extra memory of the step, for
  * ``conv``     torch.nn.functional.conv2d (the multiply-accumulate layer AdderNet replaces),
  * ``unfold``   the official code's formulation, which builds the whole C_out x (C_in*k*k) x
                 (N*H_out*W_out) difference tensor (onebit.nn.functional.adder_conv2d_reference);
                 skipped when that tensor alone would exceed --mem-cap-gb,
  * ``onebit``   onebit.nn.adder_autograd.compiled_adder_conv2d (C++ forward/backward, the
                 paper's gradients).
Peak extra memory is the peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the
resident set before the step, measured after a warm-up step in a child process where glibc
returns freed blocks to the system at once (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_): it
counts torch tensors and the C++ scratch alike. Inputs and weights exist before; the output and
the gradients count.

Inference (batch 1, 1 thread): conv2d float32, onebit's float adder forward and the int8 adder
(``onebit.kernels.adder_int8``, input already int8 NHWC, output float32 NHWC with the scale
folded in), with the int8 output checked against the float one within the bound ``K * scale``.
On an AVX-512 CPU the int8 adder also runs capped at the AVX2 tiles (``use_isa("avx2")``),
alternating with the AVX-512 dispatch in a loop of their own, and the table gives the speed-up.

Clocks: with one thread the table shows the process CPU time of each call (what the call itself
costs, unaffected by other processes taking the core away on a shared machine); with more
threads the wall time. The JSON holds both. Implementations run interleaved within each repeat
and the medians are reported.

Targets: training step <= 3x conv2d's time and <= 2x its peak extra memory; int8 inference
>= 3x faster than conv2d on the 14x14x256 3x3 layer at 1 thread. Every ratio is measured in the
same run; the machine is shared, so expect +-10-25 % noise between runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, header  # noqa: E402

import onebit.kernels as K
from onebit.nn.functional import adder_conv2d_reference
from onebit.deploy.adder_int8 import calibrate_adder_scale, quantize_adder_input
from onebit.nn.adder_autograd import compiled_adder_conv2d

# Peak memory is measured in a child process in which glibc returns every freed block to the
# system at once (so the resident set follows what is live); timings run in this process with
# the allocator's defaults.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}

# (name, H=W, C_in, C_out, kernel, stride, training batch)
SHAPES = [
    ("R20 32x32x16 3x3", 32, 16, 16, 3, 1, 32),
    ("R20 32x32x16 3x3 s2 ->32", 32, 16, 32, 3, 2, 32),
    ("R20 16x16x32 3x3", 16, 32, 32, 3, 1, 32),
    ("R20 16x16x32 3x3 s2 ->64", 16, 32, 64, 3, 2, 32),
    ("R20 8x8x64 3x3", 8, 64, 64, 3, 1, 32),
    ("R18 56x56x64 3x3", 56, 64, 64, 3, 1, 8),
    ("R18 28x28x128 3x3", 28, 128, 128, 3, 1, 8),
    ("R18 14x14x256 3x3", 14, 256, 256, 3, 1, 8),
    ("R18 7x7x512 3x3", 7, 512, 512, 3, 1, 8),
    ("R18 28x28x128 1x1 s2 ->256", 28, 128, 256, 1, 2, 8),
]


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def peak_extra_mb(fn, reset=None) -> float:
    """Peak resident memory fn() adds over what is resident before it (MB); reset() first frees
    what an earlier call left (gradients)."""
    if reset is not None:
        reset()
    gc.collect()
    base = _status_kb("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    fn()
    peak = _status_kb("VmHWM:")
    return max(0.0, (peak - base) / 1024)


def interleaved_medians(fns: dict, repeats: int, budget_s: float = 30.0) -> dict:
    """Median wall time and median process CPU time (ms) of each fn: {key: (wall, cpu)}. The fns
    run in turn within every repeat (so that all see the same load on a shared machine), after
    one warm-up each; fewer repeats when a round is slow."""
    t0 = time.perf_counter()
    for fn in fns.values():
        fn()
    first = time.perf_counter() - t0
    n = max(1, min(repeats, int(budget_s / max(first, 1e-6))))
    wall: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for _ in range(n):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]) * 1e3, statistics.median(cpu[k]) * 1e3) for k in fns}


def _setup(name: str):
    """Tensors and implementations of one layer (identical in the parent and the child)."""
    _, hw, cin, cout, k, stride, batch = next(sh for sh in SHAPES if sh[0] == name)
    pad = k // 2
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cin, hw, hw, generator=gen)
    w = torch.randn(cout, cin, k, k, generator=gen)
    ho = (hw + 2 * pad - k) // stride + 1
    g = torch.randn(batch, cout, ho, ho, generator=gen)
    diff_gb = cout * cin * k * k * batch * ho * ho * 4 / 2**30
    impls = {
        "conv": lambda a, b: F.conv2d(a, b, stride=stride, padding=pad),
        "onebit": lambda a, b: compiled_adder_conv2d(a, b, stride, pad, eta=None),
        "unfold": lambda a, b: adder_conv2d_reference(a, b, stride, pad, None),
    }
    return x, w, g, impls, diff_gb


def _step_fns(x, w, g, fn):
    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            fn(xr, wr)

    def reset():
        xr.grad = wr.grad = None

    def step():
        reset()
        fn(xr, wr).backward(g)

    return fwd, step, reset


def memory_child(name: str, cap_gb: float) -> dict:
    """Peak extra memory of one training step per implementation (run with _MALLOC_ENV)."""
    x, w, g, impls, diff_gb = _setup(name)
    out = {}
    for key, fn in impls.items():
        if key == "unfold" and diff_gb > cap_gb:
            continue
        _, step, reset = _step_fns(x, w, g, fn)
        step()  # warm-up: one-time allocations (thread pools, caches) are not the step's
        out[f"{key}_step_peak_mb"] = peak_extra_mb(step, reset)
        reset()
    return out


def _memory_in_child(name: str, cap_gb: float) -> dict:
    env = {**os.environ, **_MALLOC_ENV, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name,
           "--mem-cap-gb", str(cap_gb), "--threads", str(torch.get_num_threads())]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def training_row(name, batch, repeats, cap_gb) -> dict:
    x, w, g, impls, diff_gb = _setup(name)
    stride, pad = next((sh[5], sh[4] // 2) for sh in SHAPES if sh[0] == name)
    row = {"layer": name, "batch": batch, "unfold_diff_tensor_gb": round(diff_gb, 3)}
    if diff_gb > cap_gb:
        del impls["unfold"]
        row["unfold_skipped"] = f"difference tensor {diff_gb:.1f} GB > cap {cap_gb} GB"
    fwds, steps = {}, {}
    for key, fn in impls.items():
        fwds[key], steps[key], _ = _step_fns(x, w, g, fn)
    for kind, fns in (("fwd", fwds), ("step", steps)):
        fast = {k: f for k, f in fns.items() if k != "unfold"}
        timed = interleaved_medians(fast, repeats)
        if "unfold" in fns:  # 10-100x slower: timed once after a warm-up
            timed.update(interleaved_medians({"unfold": fns["unfold"]}, 1))
        for key, (wall_ms, cpu_ms) in timed.items():
            row[f"{key}_{kind}_ms"] = wall_ms
            row[f"{key}_{kind}_cpu_ms"] = cpu_ms
    row.update(_memory_in_child(name, cap_gb))
    # One thread: process CPU time (robust to other processes on a shared machine); more threads:
    # wall time (CPU time would count threads that spin while they wait).
    clock = "_cpu_ms" if torch.get_num_threads() == 1 else "_ms"
    row["clock"] = "cpu" if clock == "_cpu_ms" else "wall"
    row["step_time_vs_conv"] = row["onebit_step" + clock] / row["conv_step" + clock]
    row["step_mem_vs_conv"] = row["onebit_step_peak_mb"] / max(row["conv_step_peak_mb"], 1e-3)
    if "unfold_step_ms" in row:
        row["step_speedup_vs_unfold"] = row["unfold_step" + clock] / row["onebit_step" + clock]
    # the timed op agrees with the unfold formulation on one image
    with torch.no_grad():
        ref = adder_conv2d_reference(x[:1].double(), w.double(), stride, pad, None)
        got = compiled_adder_conv2d(x[:1], w, stride, pad, eta=None)
    row["max_rel_err_vs_float64"] = float(((got - ref).abs() / ref.abs().clamp_min(1)).max())
    return row


def inference_row(name, hw, cin, cout, k, stride, repeats) -> dict:
    pad = k // 2
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, cin, hw, hw, generator=gen)
    w = torch.randn(cout, cin, k, k, generator=gen) * 0.5
    scale = calibrate_adder_scale(w, x)
    x_q = quantize_adder_input(x, scale)
    w_q = np.clip(np.rint(w.numpy() / scale), -127, 127).astype(np.int8).transpose(0, 2, 3, 1).copy()
    xn, wn = x.numpy(), w.numpy()

    def int8_capped_at_avx2() -> None:
        with K.use_isa("avx2"):
            K.adder_int8(x_q, w_q, stride=stride, padding=pad, multiplier=scale, num_threads=1)

    fns = {
        "conv": lambda: F.conv2d(x, w, stride=stride, padding=pad),
        "f32": lambda: K.adder_conv2d_f32(xn, wn, stride=stride, padding=pad, num_threads=1),
        "int8": lambda: K.adder_int8(x_q, w_q, stride=stride, padding=pad, multiplier=scale,
                                     num_threads=1),
    }
    with torch.no_grad():
        ms = interleaved_medians(fns, repeats * 4)
    (conv_wall, conv_ms), (f32_wall, f32_ms), (i8_wall, i8_ms) = ms["conv"], ms["f32"], ms["int8"]
    extra = {}
    if K.active_isa() == "avx512":
        # the AVX-512 and the AVX2 tiles on the same CPU, alternating in a loop of their own (so
        # that both find the same data in cache: in the loop above the first int8 call of each
        # round follows the float adder, which evicts it)
        isa = interleaved_medians({"avx512": fns["int8"], "avx2": int8_capped_at_avx2},
                                  repeats * 4)
        extra = {"adder_int8_avx512_ms": isa["avx512"][1], "adder_int8_avx2_ms": isa["avx2"][1],
                 "avx512_speedup_vs_avx2": isa["avx2"][1] / isa["avx512"][1]}
    y_q = K.adder_int8(x_q, w_q, stride=stride, padding=pad, multiplier=scale, num_threads=1)
    y_f = K.adder_conv2d_f32(xn, wn, stride=stride, padding=pad).transpose(0, 2, 3, 1)
    fan_in = cin * k * k
    ho = (hw + 2 * pad - k) // stride + 1
    abs_diffs = ho * ho * cout * fan_in
    return {
        **extra,
        "layer": name,
        "conv_ms": conv_ms,  # process CPU time (1 thread), median
        "adder_f32_ms": f32_ms,
        "adder_int8_ms": i8_ms,
        "conv_wall_ms": conv_wall,
        "adder_f32_wall_ms": f32_wall,
        "adder_int8_wall_ms": i8_wall,
        "int8_speedup_vs_conv_wall": conv_wall / i8_wall,
        "int8_speedup_vs_conv": conv_ms / i8_ms,
        "int8_G_absdiff_per_s": abs_diffs / i8_ms / 1e6,
        "int8_max_err_over_bound": float(np.abs(y_q - y_f).max() / (fan_in * scale)),
    }


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for the training section (default: all cores)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mem-cap-gb", type=float, default=2.0,
                    help="skip the unfold adder when its difference tensor exceeds this")
    ap.add_argument("--only", default=None, help="run only layers whose name contains this")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child is not None:  # internal: peak memory of one layer, printed as JSON
        torch.set_num_threads(args.threads)
        print(json.dumps(memory_child(args.memory_child, args.mem_cap_gb)))
        return 0
    shapes = [s for s in SHAPES if args.only is None or args.only in s[0]]

    machine = describe()
    print(header(machine))
    result = {
        "machine": {**machine, "platform": platform.platform(), "torch": torch.__version__},
        "training_threads": args.threads,
        "training": [],
        "inference": [],
    }
    if not args.skip_training:
        torch.set_num_threads(args.threads)
        clock = "process CPU time" if args.threads == 1 else "wall time"
        print(f"Training step (forward + backward), {args.threads} thread(s); medians of {clock} "
              "in ms, peak extra memory in MB")
        head = (f"{'layer':28s} {'N':>3s} | {'conv fwd':>8s} {'step':>8s} {'MB':>6s} | "
                f"{'unfold fwd':>10s} {'step':>8s} {'MB':>7s} | {'onebit fwd':>10s} {'step':>8s} "
                f"{'MB':>6s} | {'t/conv':>6s} {'m/conv':>6s}")
        print(head)
        print("-" * len(head))
        for name, hw, cin, cout, k, s, batch in shapes:
            r = training_row(name, batch, args.repeats, args.mem_cap_gb)
            result["training"].append(r)
            c = "_cpu_ms" if r["clock"] == "cpu" else "_ms"
            print(f"{name:28s} {batch:3d} | {r['conv_fwd' + c]:8.2f} {r['conv_step' + c]:8.2f} "
                  f"{r['conv_step_peak_mb']:6.1f} | {_fmt(r.get('unfold_fwd' + c), '10.1f')} "
                  f"{_fmt(r.get('unfold_step' + c), '8.1f')} "
                  f"{_fmt(r.get('unfold_step_peak_mb'), '7.0f')} | {r['onebit_fwd' + c]:10.2f} "
                  f"{r['onebit_step' + c]:8.2f} {r['onebit_step_peak_mb']:6.1f} | "
                  f"{r['step_time_vs_conv']:6.2f} {r['step_mem_vs_conv']:6.2f}", flush=True)
            if "unfold_skipped" in r:
                print(f"{'':28s}     unfold skipped: {r['unfold_skipped']}")
    if args.skip_inference:
        shapes = []
    else:
        print("\nInference, batch 1, 1 thread; medians of process CPU time in ms")
    torch.set_num_threads(1)
    capped = K.active_isa() == "avx512"
    head = (f"{'layer':28s} | {'conv f32':>8s} | {'adder f32':>9s} | {'adder int8':>10s} "
            f"{'G|a-b|/s':>9s} | {'int8 vs conv':>12s} | {'err/bound':>9s}"
            + (f" | {'int8 avx512':>11s} {'int8 avx2':>9s} {'avx512 vs avx2':>14s}" if capped
               else ""))
    if shapes:
        print(head)
        print("-" * len(head))
    for name, hw, cin, cout, k, s, _ in shapes:
        r = inference_row(name, hw, cin, cout, k, s, args.repeats)
        result["inference"].append(r)
        print(f"{name:28s} | {r['conv_ms']:8.3f} | {r['adder_f32_ms']:9.3f} | "
              f"{r['adder_int8_ms']:10.3f} {r['int8_G_absdiff_per_s']:9.1f} | "
              f"{r['int8_speedup_vs_conv']:11.2f}x | {r['int8_max_err_over_bound']:9.3f}"
              + (f" | {r['adder_int8_avx512_ms']:11.3f} {r['adder_int8_avx2_ms']:9.3f} "
                 f"{r['avx512_speedup_vs_avx2']:13.2f}x"
                 if "adder_int8_avx2_ms" in r else ""), flush=True)
    summary = {}
    if result["training"]:
        t = [r["step_time_vs_conv"] for r in result["training"]]
        m = [r["step_mem_vs_conv"] for r in result["training"]]
        summary["step_time_vs_conv_max"] = max(t)
        summary["step_time_vs_conv_geomean"] = float(np.exp(np.mean(np.log(t))))
        summary["step_mem_vs_conv_max"] = max(m)
        print(f"\ntraining step vs conv2d: time x{summary['step_time_vs_conv_geomean']:.2f} "
              f"(geomean), x{max(t):.2f} (worst; target <= 3); peak extra memory x{max(m):.2f} "
              "(worst; target <= 2)")
    for r in result["inference"]:
        if r["layer"].startswith("R18 14x14x256"):
            summary["int8_speedup_14x14x256"] = r["int8_speedup_vs_conv"]
            print(f"int8 inference, 14x14x256 3x3, 1 thread: x{r['int8_speedup_vs_conv']:.2f} "
                  "faster than conv2d float32 (target >= 3)")
    result["summary"] = summary
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
    else:
        print("\n" + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
