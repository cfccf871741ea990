"""Per-layer kernel choice of prepared conv filters: every candidate kernel gives the reference's
result bit for bit, tuning keeps the fastest candidate it measured, and the choice is recorded."""

from __future__ import annotations

import numpy as np
import pytest

import onebit.kernels as K
from _binary_helpers import optimized_isas, random_pm1

# (in_hw, C_in, C_out, k, stride, pad): filter rows of 18 words (3x3 over 64 channels: the tail
# kernel and the plain one), of 1-2 words (1x1 over <= 64 channels: three kernels), of 4 words,
# of 36 words (3x3 over 128 channels).
SHAPES = [((9, 7), 64, 12, 3, 1, 1), ((8, 8), 40, 9, 1, 2, 0), ((6, 5), 128, 8, 1, 1, 0),
          ((5, 6), 128, 7, 3, 2, 1), ((7, 7), 33, 5, 3, 1, 1)]


def _layer(rng, shape):
    (h, w), cin, cout, k, stride, pad = shape
    x = K.pack_nchw(random_pm1(rng, (2, cin, h, w)))
    wt = K.pack_conv_weight(random_pm1(rng, (cout, cin, k, k)))
    return x, wt, dict(in_channels=cin, stride=stride, padding=pad)


@pytest.mark.parametrize("isa", optimized_isas())
@pytest.mark.parametrize("shape", SHAPES)
def test_every_candidate_matches_the_reference(isa: str, shape) -> None:
    rng = np.random.default_rng(hash(shape) % 2**32)
    x, wt, kw = _layer(rng, shape)
    cout = wt.shape[0]
    mult = rng.standard_normal(cout).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    with K.use_isa("reference"):
        want_i = K.bconv2d(x, wt, **kw)
        want_f = K.bconv2d(x, wt, output="float", multiplier=mult, bias=bias, **kw)
    with K.use_isa(isa):
        p = K.prepare_conv_weight(wt, in_channels=kw["in_channels"])
        cands = p.candidates()
        assert cands and cands[0] == p.kernel and p.choice == "rule"
        for name in cands:
            p.use_kernel(name)
            assert p.kernel == name and p.choice == "forced"
            np.testing.assert_array_equal(K.bconv2d(x, p, **kw), want_i, err_msg=name)
            got_f = K.bconv2d(x, p, output="float", multiplier=mult, bias=bias, **kw)
            np.testing.assert_array_equal(got_f, want_f, err_msg=name)


@pytest.mark.parametrize("isa", optimized_isas())
def test_tune_keeps_the_fastest_measured_candidate(isa: str) -> None:
    rng = np.random.default_rng(3)
    shape = ((12, 12), 64, 16, 3, 1, 1)
    x, wt, kw = _layer(rng, shape)
    with K.use_isa("reference"):
        want = K.bconv2d(x, wt, **kw)
    with K.use_isa(isa):
        p = K.prepare_conv_weight(wt, in_channels=64)
        times = p.tune((12, 12), stride=1, padding=1, reps=2)
        assert list(times) == p.candidates()
        if len(times) > 1:
            assert all(t > 0 for t in times.values())
            assert p.kernel == min(times, key=times.get) and p.choice == "measured"
        else:
            assert times == {p.kernel: 0.0} and p.choice == "rule"
        np.testing.assert_array_equal(K.bconv2d(x, p, **kw), want)


def test_candidates_name_only_kernels_the_cpu_runs() -> None:
    rng = np.random.default_rng(4)
    wt = K.pack_conv_weight(random_pm1(rng, (4, 64, 3, 3)))
    with K.use_isa("reference"):
        p = K.prepare_conv_weight(wt, in_channels=64)
        assert p.candidates() == [] and p.kernel == "reference"
        assert p.tune((5, 5), padding=1) == {}
    if "avx2" in optimized_isas():
        with K.use_isa("avx2"):
            p = K.prepare_conv_weight(wt, in_channels=64)
            assert set(p.candidates()) == {"avx2-mula-3x4-tail2", "avx2-mula-3x4"}
    if "avx512" in optimized_isas():
        with K.use_isa("avx512"):
            p = K.prepare_conv_weight(wt, in_channels=64)
            assert p.candidates()[0].startswith("avx512")
            assert any(c.startswith("avx2") for c in p.candidates())


def test_choice_errors() -> None:
    rng = np.random.default_rng(5)
    wt = K.pack_conv_weight(random_pm1(rng, (4, 8, 3, 3)))
    p = K.prepare_conv_weight(wt, in_channels=8)
    with pytest.raises(ValueError, match="cannot run these filters"):
        p.use_kernel("no-such-kernel")
    with pytest.raises(TypeError):
        p.use_kernel(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="larger than the padded"):
        p.tune((1, 1))
    with pytest.raises(ValueError, match="pad_value"):
        p.tune((4, 4), pad_value=0.5)
    with pytest.raises(ValueError):
        p.tune((4, 4), reps=0)
