"""pack_bits / unpack_bits and the layout helpers against a plain NumPy reference, every ISA."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onebit.kernels as K
from _binary_helpers import all_isas, np_pack, random_pm1

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("isa", all_isas())
@SETTINGS
@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=3), axis_seed=st.integers(0, 10),
       seed=st.integers(0, 2**31))
def test_pack_matches_numpy_reference(isa: str, shape: list[int], axis_seed: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    axis = axis_seed % len(shape) - len(shape) * (axis_seed % 2)  # both positive and negative axes
    with K.use_isa(isa):
        packed = K.pack_bits(x, axis=axis)
        back = K.unpack_bits(packed, x.shape[axis], axis=axis)
    expect = np_pack(x, axis)
    assert packed.dtype == np.uint32 and packed.shape == expect.shape
    np.testing.assert_array_equal(packed, expect)
    np.testing.assert_array_equal(back, np.where(x < 0, -1.0, 1.0).astype(np.float32))


@pytest.mark.parametrize("isa", all_isas())
@pytest.mark.parametrize("n", [1, 31, 32, 33, 63, 64, 65, 255, 257, 600])
def test_odd_lengths_have_zero_tail_bits(isa: str, n: int) -> None:
    x = -np.ones((3, n), dtype=np.float32)  # every value negative: all n bits set
    with K.use_isa(isa):
        packed = K.pack_bits(x)
    assert packed.shape == (3, (n + 31) // 32)
    total = sum(bin(int(w)).count("1") for w in packed[0])
    assert total == n
    if n % 32:
        assert int(packed[0, -1]) == (1 << (n % 32)) - 1


@pytest.mark.parametrize("isa", all_isas())
def test_special_values_follow_sign_zero_is_plus_one(isa: str) -> None:
    x = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-45, 2.0, -3.0] * 4,
                 dtype=np.float32)
    with K.use_isa(isa):
        packed = K.pack_bits(x)
    np.testing.assert_array_equal(packed, np_pack(x))
    bits = [(int(packed[i // 32]) >> (i % 32)) & 1 for i in range(10)]
    assert bits == [0, 0, 0, 0, 0, 1, 0, 1, 0, 1]


def test_docstring_example() -> None:
    assert K.pack_bits(np.array([1.0, -2.0, 0.0, -0.5], np.float32)).tolist() == [10]
    assert K.packed_words(33) == 2


def test_pack_conv_weight_layout() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 40, 3, 2)).astype(np.float32)
    packed = K.pack_conv_weight(w)
    assert packed.shape == (5, 3, 2, 2)
    for o, ky, kx in [(0, 0, 0), (4, 2, 1), (2, 1, 0)]:
        np.testing.assert_array_equal(packed[o, ky, kx], np_pack(w[o, :, ky, kx]))
    # a non-contiguous view packs the same as its copy
    np.testing.assert_array_equal(K.pack_conv_weight(w[:, :, ::-1]),
                                  K.pack_conv_weight(np.ascontiguousarray(w[:, :, ::-1])))


def test_nchw_roundtrip() -> None:
    rng = np.random.default_rng(4)
    x = random_pm1(rng, (2, 70, 3, 5))
    packed = K.pack_nchw(x)
    assert packed.shape == (2, 3, 5, 3)
    np.testing.assert_array_equal(packed, np_pack(x.transpose(0, 2, 3, 1)))
    np.testing.assert_array_equal(K.unpack_nhwc(packed, 70), x)
