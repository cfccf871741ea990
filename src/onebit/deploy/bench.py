"""Latency of a ``.onebit`` model in the runtime beside the same graph in PyTorch float32.

``bench(path, batch_sizes, threads)`` measures, for every thread count, in a fresh process whose
BLAS thread variables (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) equal
that count, so that NumPy's float matmuls (stem, classifier), onebit's kernels and PyTorch all
use the same number of threads. Inside it the runtime and PyTorch run alternately and the medians
of the repeats are reported. The float baseline is :class:`GraphTorchModule` with
``exact=False``: the same architecture with every binary layer a float32 conv / matmul of its
real input, run by PyTorch's float kernels.

Child entry point (used by :func:`bench`): ``python -m onebit.deploy.bench MODEL.onebit
--threads T --batch-sizes 1 8 --repeats 20`` prints one JSON list of rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import onebit.runtime as rt

__all__ = ["alternating_times", "bench", "median_times", "thread_env"]


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a child process limited to ``threads`` BLAS / OpenMP threads."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def alternating_times(fns: Sequence[Callable[[], Any]], repeats: int,
                      warmup: int = 2, settle_s: float = 0.0) -> list[list[float]]:
    """Seconds of each of ``repeats`` calls of each function, the functions called alternately
    (so that a busy moment of a shared machine hits all of them alike). ``settle_s`` pauses
    before each call, so that worker threads still spinning after the previous function's call
    (OpenMP's, ONNX Runtime's) go idle instead of taking a core from the next one."""
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for f, t in zip(fns, times):
            if settle_s > 0:
                time.sleep(settle_s)
            start = time.perf_counter()
            f()
            t.append(time.perf_counter() - start)
    return times


def median_times(fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function over ``repeats`` alternating calls."""
    return [statistics.median(t) for t in alternating_times(fns, repeats, warmup)]


def _have_torch() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # an import hook that refuses torch
        return False


def _child(path: str, threads: int, batch_sizes: Sequence[int], repeats: int) -> list[dict]:
    model = rt.load(path, num_threads=threads)
    rng = np.random.default_rng(0)
    rows = []
    if not _have_torch():  # the runtime-only install: time the runtime alone
        for batch in batch_sizes:
            x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
            (t_rt,) = median_times([lambda: model(x)], repeats)
            rows.append({"batch": batch, "threads": threads, "runtime_ms": 1e3 * t_rt,
                         "torch_float_ms": None, "speedup": None})
        return rows
    import torch  # optional here: the runtime-only install times the runtime alone

    # torch only here: `onebit bench` runs without it
    from onebit.deploy.torch_graph import GraphTorchModule

    torch.set_num_threads(threads)
    reference = GraphTorchModule(model.graph, exact=False).eval()
    for batch in batch_sizes:
        x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
        xt = torch.from_numpy(x)

        def run_torch() -> None:
            with torch.inference_mode():
                reference(xt)

        t_rt, t_torch = median_times([lambda: model(x), run_torch], repeats)
        rows.append({"batch": batch, "threads": threads, "runtime_ms": 1e3 * t_rt,
                     "torch_float_ms": 1e3 * t_torch, "speedup": t_torch / t_rt})
    return rows


def bench(path: str | os.PathLike[str], batch_sizes: Sequence[int] = (1, 8),
          threads: Sequence[int] = (1, 2), repeats: int = 20) -> dict[str, Any]:
    """Time ``path`` for every batch size and thread count; returns rows and file sizes. Without
    PyTorch the rows have no float32 timings and ``float32_weight_bytes`` is None."""
    graph = rt.load_graph(path)
    rows: list[dict] = []
    for t in threads:
        cmd = [sys.executable, "-m", "onebit.deploy.bench", os.fspath(path), "--threads", str(t),
               "--repeats", str(repeats), "--batch-sizes", *map(str, batch_sizes)]
        done = subprocess.run(cmd, env=thread_env(t), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"benchmark child failed: {done.stderr.strip().splitlines()[-1:]}")
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    return {"model": os.fspath(path), "method": graph.method,
            "input_shape": list(graph.input_shape), "file_bytes": Path(path).stat().st_size,
            "float32_weight_bytes": _float32_weight_bytes(graph) if _have_torch() else None,
            "rows": rows}


def _float32_weight_bytes(graph: Any) -> int:
    # torch only here: `onebit bench` runs without it
    from onebit.deploy.torch_graph import GraphTorchModule

    return int(GraphTorchModule(graph).float32_weight_bytes())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="time one .onebit model at one thread count (child)")
    p.add_argument("model")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    print(json.dumps(_child(args.model, args.threads, args.batch_sizes, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
