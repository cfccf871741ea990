"""bgemm against the dot products of the unpacked +/-1 matrices, every ISA and output kind."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onebit.kernels as K
from _binary_helpers import all_isas, np_pack, random_pm1

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _operands(seed: int, m: int, n: int, k: int):
    rng = np.random.default_rng(seed)
    a, b = random_pm1(rng, (m, k)), random_pm1(rng, (n, k))
    return rng, a, b, (a.astype(np.int64) @ b.astype(np.int64).T)


@pytest.mark.parametrize("isa", all_isas())
@SETTINGS
@given(m=st.integers(1, 40), n=st.integers(1, 70), k=st.integers(1, 700), threads=st.integers(1, 3),
       seed=st.integers(0, 2**31))
def test_bgemm_int32_equals_matmul(isa: str, m: int, n: int, k: int, threads: int, seed: int) -> None:
    _, a, b, expect = _operands(seed, m, n, k)
    with K.use_isa(isa):
        out = K.bgemm(np_pack(a), np_pack(b), k, num_threads=threads)
    assert out.dtype == np.int32 and out.shape == (m, n)
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("isa", all_isas())
@SETTINGS
@given(m=st.integers(1, 20), n=st.integers(1, 100), k=st.integers(1, 300), seed=st.integers(0, 2**31))
def test_bgemm_float_and_bits_outputs(isa: str, m: int, n: int, k: int, seed: int) -> None:
    rng, a, b, acc = _operands(seed, m, n, k)
    mult = rng.uniform(-2, 2, n).astype(np.float32)
    bias = rng.uniform(-5, 5, n).astype(np.float32)
    row = rng.uniform(0.1, 2, m).astype(np.float32)
    thr = rng.integers(-k, k + 1, n).astype(np.float32)
    flip = rng.random(n) < 0.5
    pa, pb = np_pack(a), np_pack(b)
    with K.use_isa(isa):
        f = K.bgemm(pa, pb, k, output="float", multiplier=mult, bias=bias, row_scale=row)
        bits = K.bgemm(pa, pb, k, output="bits", thresholds=thr, flip=flip, num_threads=2)
    expect_f = (acc.astype(np.float32) * row[:, None]) * mult + bias
    np.testing.assert_allclose(f, expect_f, rtol=1e-6, atol=1e-5)
    neg = np.where(flip, acc > thr, acc < thr)
    np.testing.assert_array_equal(bits, np_pack(np.where(neg, -1.0, 1.0)))


@pytest.mark.parametrize("isa", all_isas())
@pytest.mark.parametrize("k", [64 * 31, 64 * 31 + 64, 64 * 62 + 32, 8 * 32 * 31 + 64])
def test_largest_popcounts_do_not_overflow(isa: str, k: int) -> None:
    """Rows of A equal to rows of B and to their negation: every bit matches or differs, the
    largest counts the byte counters of a tile see (8 per byte per 64-bit word)."""
    rng = np.random.default_rng(k)
    b = random_pm1(rng, (19, k))
    a = np.concatenate([b[:5], -b[5:10], random_pm1(rng, (3, k))])
    acc = a.astype(np.int64) @ b.astype(np.int64).T
    assert acc[0, 0] == k and acc[5, 5] == -k
    with K.use_isa(isa):
        np.testing.assert_array_equal(K.bgemm(np_pack(a), np_pack(b), k, num_threads=2), acc)


@pytest.mark.parametrize("m", [1, 3, 40])
def test_prepared_rows(m: int) -> None:
    _, a, b, acc = _operands(m + 100, m, 70, 333)
    pa, pb = np_pack(a), np_pack(b)
    for isa in all_isas():
        with K.use_isa(isa):
            prepared = K.prepare_gemm_weight(pb, 333)
            assert prepared.isa == isa and prepared.shape == pb.shape
            np.testing.assert_array_equal(K.bgemm(pa, prepared, 333, num_threads=2), acc)
        with K.use_isa("reference"):  # prepared for another ISA: the plain copy serves
            np.testing.assert_array_equal(K.bgemm(pa, prepared, 333), acc)
    with pytest.raises(ValueError, match="prepared rows are for k = 333"):
        K.bgemm(np_pack(a[:, :300]), prepared, 300)


def test_optimized_variants_equal_reference_bit_for_bit() -> None:
    rng, a, b, _ = _operands(11, 37, 75, 517)
    mult = rng.uniform(-2, 2, 75).astype(np.float32)
    bias = rng.uniform(-5, 5, 75).astype(np.float32)
    pa, pb = np_pack(a), np_pack(b)
    with K.use_isa("reference"):
        ref = K.bgemm(pa, pb, 517, output="float", multiplier=mult, bias=bias)
    for isa in all_isas()[1:]:
        with K.use_isa(isa):
            got = K.bgemm(pa, pb, 517, output="float", multiplier=mult, bias=bias, num_threads=2)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("isa", all_isas())
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_few_rows_of_a(isa: str, m: int) -> None:
    """Batch-1 dense layers (at most 4 rows of A) read B in place: same results, every output kind."""
    _, a, b, acc = _operands(m, m, 133, 1000)
    thr = np.arange(-66, 67).astype(np.float32)
    with K.use_isa(isa):
        out = K.bgemm(np_pack(a), np_pack(b), 1000, num_threads=2)
        bits = K.bgemm(np_pack(a), np_pack(b), 1000, output="bits", thresholds=thr)
    np.testing.assert_array_equal(out, acc)
    np.testing.assert_array_equal(bits, np_pack(np.where(acc < thr, -1.0, 1.0)))


@pytest.mark.parametrize("isa", all_isas())
@pytest.mark.parametrize("k", [1, 33, 64, 65, 128, 129, 160, 256, 257, 288, 289, 320, 513, 544,
                               576, 577, 600, 640, 8 * 32 * 31 + 64, 8 * 32 * 33 + 32])
def test_every_row_length_class(isa: str, k: int) -> None:
    """Row lengths of every class the tiles treat apart: short rows (<= 2, 3-4 words), rows of
    8q + 1 or 8q + 2 words, odd rows (padded to 64 bits), the rest, incl. rows past 31 64-bit
    words and past 31 chunks (where the byte counters are widened mid-row); B rows not a
    multiple of 4 or 8. (tests/kernels/test_kernel_choice.py runs every candidate tile.)"""
    rng, a, b, acc = _operands(k, 17, 23, k)
    pa, pb = np_pack(a), np_pack(b)
    with K.use_isa(isa):
        np.testing.assert_array_equal(K.bgemm(pa, pb, k, num_threads=2), acc)
        np.testing.assert_array_equal(K.bgemm(pa, K.prepare_gemm_weight(pb, k), k), acc)
