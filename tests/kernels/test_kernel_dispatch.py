"""Choosing the kernel family: use_isa, ONEBIT_KERNELS, and unavailable / unknown ISAs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import onebit.kernels as K
from _binary_helpers import all_isas, np_pack, random_pm1


@pytest.mark.parametrize("isa", all_isas())
def test_use_isa_switches_and_restores(isa: str) -> None:
    before = K.active_isa()
    with K.use_isa(isa):
        assert K.active_isa() == isa
    assert K.active_isa() == before


def test_unavailable_and_unknown_isas_raise() -> None:
    with pytest.raises(ValueError, match="known: reference, avx2, avx512, neon"):
        K.isa_available("sse9")
    missing = [n for n in ("avx2", "avx512", "neon") if not K.isa_available(n)]
    assert missing, "no CPU has all of AVX2, AVX-512 and NEON"
    with pytest.raises(ValueError, match="cannot run"):
        with K.use_isa(missing[0]):
            pass


def test_every_isa_gives_the_same_conv() -> None:
    rng = np.random.default_rng(0)
    x, w = random_pm1(rng, (2, 100, 9, 9)), random_pm1(rng, (33, 100, 3, 3))
    xp, wp = K.pack_nchw(x), K.pack_conv_weight(w)
    results = []
    for isa in all_isas():
        with K.use_isa(isa):
            results.append(K.bconv2d(xp, wp, in_channels=100, stride=2, padding=1, num_threads=2))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_environment_variable_forces_reference() -> None:
    code = (
        "import numpy as np, onebit.kernels as K\n"
        "print(K.active_isa())\n"
        "a = np.ones((3, 2), np.uint32)\n"
        "print(K.bgemm(a, a, 40).tolist())\n"
    )
    env = dict(os.environ, ONEBIT_KERNELS="reference")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "reference"
    assert lines[1] == str([[40] * 3] * 3)


def test_bgemm_dispatch_matches_numpy_for_each_isa() -> None:
    rng = np.random.default_rng(1)
    a, b = random_pm1(rng, (9, 130)), random_pm1(rng, (17, 130))
    expect = a.astype(np.int64) @ b.astype(np.int64).T
    for isa in all_isas():
        with K.use_isa(isa):
            np.testing.assert_array_equal(K.bgemm(np_pack(a), np_pack(b), 130), expect)
