"""The int8 direct conv (onebit.kernels.conv2d_int8) against the float direct conv
(onebit.kernels.conv2d_f32) and PyTorch's fp32 conv2d, 1 thread, batch 1, side by side.

Shapes: the ImageNet stem (224x224x3, 7x7/2, pad 3 -> 64), a CIFAR-size stem (32x32x3, 3x3/1,
pad 1 -> 64), and 1x1 convs over many channels (the float shortcuts of a binary ResNet).
int8 runs with 8-bit activations (pairs = 1) and with 7-bit activations (pairs = 2); both include
quantizing the float32 input. Times: blocks of back-to-back calls, implementations taking turns
(benchmarks/_timing.py); medians and minima in ms, and each one's speed-up over conv2d_f32. With
--cpu-time the blocks are timed with the process's CPU time instead of the wall clock: on a
machine shared with other work, time slices lost to other processes then do not count (cache
and SMT interference still do).

    python benchmarks/int8conv.py [--samples 15] [--cpu-time]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import header  # noqa: E402

from _timing import block_times, summarize  # noqa: E402

from onebit import kernels as K  # noqa: E402

SHAPES = [  # name, h, w, c_in, c_out, k, stride, padding
    ("stem 224x224x3 7x7/2 -> 64", 224, 224, 3, 64, 7, 2, 3),
    ("stem 32x32x3 3x3/1 -> 64", 32, 32, 3, 64, 3, 1, 1),
    ("1x1 28x28x64 -> 128", 28, 28, 64, 128, 1, 1, 0),
    ("1x1 14x14x128 -> 256", 14, 14, 128, 256, 1, 1, 0),
    ("1x1 7x7x256 -> 512", 7, 7, 256, 512, 1, 1, 0),
]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_block_times(fns, samples: int, block_s: float) -> list[list[float]]:
    """block_times' scheme (alternating blocks, one untimed call first), timed in CPU seconds."""
    counts = []
    for f in fns:
        f()
        t0 = time.process_time()
        f()
        counts.append(max(1, min(2000, round(block_s / max(time.process_time() - t0, 1e-6)))))
    times: list[list[float]] = [[] for _ in fns]
    for rep in range(samples):
        for j in range(len(fns)):
            i = (rep + j) % len(fns)
            fns[i]()
            t0 = time.process_time()
            for _ in range(counts[i]):
                fns[i]()
            times[i].append((time.process_time() - t0) / counts[i])
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--block-s", type=float, default=0.03)
    ap.add_argument("--cpu-time", action="store_true", help="time blocks in process CPU time")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(header())
    print(f"torch {torch.__version__}; 1 thread, batch 1; "
          f"{'CPU' if args.cpu_time else 'wall-clock'} time")
    print(f"{'shape':30s} {'impl':22s} {'median ms':>10s} {'min ms':>8s} {'f32/this':>9s}")
    for name, h, w, c, co, k, s, p in SHAPES:
        x = rng.standard_normal((1, h, w, c)).astype(np.float32)
        wt = (rng.standard_normal((co, c, k, k)) * 0.2).astype(np.float32)
        bias = rng.standard_normal(co).astype(np.float32)
        pf = K.prepare_float_conv_weight(wt)
        p8 = K.prepare_conv2d_int8(wt, K.calibrate_activations(x, bits=8), bias=bias)
        p7 = K.prepare_conv2d_int8(wt, K.calibrate_activations(x, bits=7), bias=bias)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        wt_t, bt = torch.from_numpy(wt), torch.from_numpy(bias)
        impls = {
            "onebit conv2d_f32": lambda: K.conv2d_f32(x, pf, bias, stride=s, padding=p,
                                                      num_threads=1),
            f"int8 8-bit (pairs {p8.pairs})": lambda: K.conv2d_int8(x, p8, stride=s, padding=p,
                                                                    num_threads=1),
            f"int8 7-bit (pairs {p7.pairs})": lambda: K.conv2d_int8(x, p7, stride=s, padding=p,
                                                                    num_threads=1),
            "torch F.conv2d fp32": lambda: F.conv2d(xt, wt_t, bt, stride=s, padding=p),
        }
        with torch.inference_mode():
            timer = cpu_block_times if args.cpu_time else block_times
            stats = summarize(timer(list(impls.values()), args.samples, args.block_s))
        base = stats[0][0]
        for (impl, _), (med, mn) in zip(impls.items(), stats):
            print(f"{name:30s} {impl:22s} {med * 1e3:10.3f} {mn * 1e3:8.3f} {base / med:9.2f}")


if __name__ == "__main__":
    main()
