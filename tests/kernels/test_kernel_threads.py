"""Thread counts and concurrent callers: results never depend on either."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import onebit.kernels as K
from _binary_helpers import random_pm1


def _case(seed: int):
    rng = np.random.default_rng(seed)
    x, w = random_pm1(rng, (2, 96, 10, 10)), random_pm1(rng, (70, 96, 3, 3))
    return K.pack_nchw(x), K.pack_conv_weight(w)


def test_thread_counts_agree() -> None:
    xp, wp = _case(0)
    ref = K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=1)
    for t in (2, 3, 7, 16):
        np.testing.assert_array_equal(K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=t), ref)


def test_default_thread_count_is_settable() -> None:
    before = K.default_num_threads()
    try:
        K.set_default_num_threads(3)
        assert K.default_num_threads() == 3
        xp, wp = _case(1)
        np.testing.assert_array_equal(K.bconv2d(xp, wp, in_channels=96, padding=1),
                                      K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=1))
    finally:
        K.set_default_num_threads(0)
    assert K.default_num_threads() == before


def test_concurrent_callers_get_their_own_results() -> None:
    cases = [_case(s) for s in range(4)]
    expect = [K.bconv2d(xp, wp, in_channels=96, padding=1, output="bits",
                        thresholds=np.zeros(70, np.float32), num_threads=1) for xp, wp in cases]
    errors: list[str] = []

    def work(i: int) -> None:
        xp, wp = cases[i]
        for _ in range(20):
            got = K.bconv2d(xp, wp, in_channels=96, padding=1, output="bits",
                            thresholds=np.zeros(70, np.float32), num_threads=2)
            if not np.array_equal(got, expect[i]):
                errors.append(f"caller {i} got a wrong result")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _child_conv(seed: int) -> bytes:
    xp, wp = _case(seed)
    return K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=2).tobytes()


def test_forked_child_can_use_the_thread_pool() -> None:
    """A child forked after the pool started (DataLoader workers, multiprocessing) gets a new one."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    xp, wp = _case(2)
    expect = K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=2)  # the parent's pool runs
    with mp.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_child_conv, (2,)).get(timeout=60)
    assert got == expect.tobytes()


def test_worker_spin_setting() -> None:
    """set_worker_spin_us changes how long idle workers spin, never a result; it is validated
    and None restores the default; ONEBIT_WORKER_SPIN_US sets the initial value."""
    assert K.worker_spin_us() is None
    xp, wp = _case(3)
    ref = K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=1)
    try:
        for us in (0, 2000, None):
            K.set_worker_spin_us(us)
            assert K.worker_spin_us() == us
            for _ in range(3):
                np.testing.assert_array_equal(
                    K.bconv2d(xp, wp, in_channels=96, padding=1, num_threads=2), ref)
                time.sleep(0.005)  # the workers sleep (or still spin) before the next call
        with pytest.raises(TypeError, match="int or None"):
            K.set_worker_spin_us(1.5)
        with pytest.raises(TypeError, match="int or None"):
            K.set_worker_spin_us(True)
        with pytest.raises(ValueError, match="at most a minute"):
            K.set_worker_spin_us(-1)
    finally:
        K.set_worker_spin_us(None)
    code = "import onebit.kernels as K; print(K.worker_spin_us())"
    for env, want in (("2500", "2500"), ("", "None"), ("-3", "None"), ("abc", "None")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "ONEBIT_WORKER_SPIN_US": env},
                             check=True).stdout.strip()
        assert out == want, (env, out)
