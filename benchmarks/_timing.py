"""Timing shared by the benchmark scripts: blocks of back-to-back calls, implementations taking
turns.

A single call of a sub-millisecond kernel timed after a pause mostly measures how fast the
machine wakes up (a sleeping core, an idle vCPU, a parked worker thread): on a shared virtual
machine that adds 0.1-0.4 ms to any call, whatever it computes. The steady state (a model
running layer after layer, a stream of requests) is what a kernel's speed means, so each sample
here is the mean time per call over a block of consecutive calls lasting about ``block_s``,
after one untimed call that takes the wake-up cost. The functions alternate block by block (the
first one rotating), so that a busy moment of a shared machine hits all of them alike, and each
block starts after a ``settle_s`` pause so that threads still spinning after the previous block
(PyTorch's OpenMP workers, onebit's pool) have gone idle and do not steal cores from the next.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["block_times", "summarize"]


def block_times(fns: Sequence[Callable[[], Any]], samples: int, block_s: float = 0.02,
                settle_s: float = 0.005, max_calls: int = 2000,
                setups: Sequence[Callable[[], Any] | None] | None = None) -> list[list[float]]:
    """Seconds per call of each function, one value per block, ``samples`` blocks each.
    ``setups[i]`` (if given) runs untimed before every block of ``fns[i]`` (e.g. setting
    PyTorch's thread count, so that several thread counts can take turns in one loop)."""
    setups = list(setups) if setups is not None else [None] * len(fns)
    counts = []
    for f, setup in zip(fns, setups):
        if setup is not None:
            setup()
        f()
        f()  # warm-up: caches, scratch buffers, thread pools
        t0 = time.perf_counter()
        f()
        one = time.perf_counter() - t0
        counts.append(max(1, min(max_calls, round(block_s / max(one, 1e-7)))))
    times: list[list[float]] = [[] for _ in fns]
    for rep in range(samples):
        for j in range(len(fns)):
            i = (rep + j) % len(fns)
            f, n = fns[i], counts[i]
            if setups[i] is not None:
                setups[i]()
            time.sleep(settle_s)
            f()  # untimed: pays the wake-up after the pause
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            times[i].append((time.perf_counter() - t0) / n)
    return times


def summarize(times: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """(median, minimum) of each function's samples."""
    return [(statistics.median(t), min(t)) for t in times]
