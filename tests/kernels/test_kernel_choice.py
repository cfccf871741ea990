"""Per-layer kernel choice of prepared conv filters: every candidate kernel gives the reference's
result bit for bit, tuning keeps the fastest candidate it measured, and the choice is recorded."""

from __future__ import annotations

import numpy as np
import pytest

import onebit.kernels as K
from _binary_helpers import optimized_isas, random_pm1

# (in_hw, C_in, C_out, k, stride, pad): filter rows of 18 words (3x3 over 64 channels: the
# broadcast, tail and plain kernels), of 1-2 words (1x1 over <= 64 channels: four kernels), of 4
# words, of 36 words (3x3 over 128 channels), of 9 words (odd: the broadcast tile pads to 64
# bits), of 1 word, and of 72 words (3x3 over 256 channels: past 31 64-bit words, where the
# broadcast tile widens its byte counters mid-row); and one of many pixels and 70 filters (several
# row blocks, column tiles of 16 and 32 filters, the last one partly padding).
SHAPES = [((13, 11), 64, 70, 3, 1, 1), ((9, 7), 64, 12, 3, 1, 1), ((8, 8), 40, 9, 1, 2, 0),
          ((6, 5), 128, 8, 1, 1, 0), ((5, 6), 128, 7, 3, 2, 1), ((7, 7), 33, 5, 3, 1, 1), ((6, 6), 32, 11, 3, 1, 1),
          ((5, 5), 20, 9, 1, 1, 0), ((5, 4), 256, 13, 3, 1, 1)]


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


@pytest.mark.parametrize("isa", optimized_isas())
@pytest.mark.parametrize("cin", [64, 256, 512, 1000])
def test_every_candidate_counts_the_largest_popcounts(isa: str, cin: int) -> None:
    """Inputs equal to a filter and equal to its negation: every bit of a row matches (or
    differs), the largest counts a tile's byte counters see (8 per byte and 64-bit word), over
    rows up to 9 x 32 words (past the widening points of every tile)."""
    rng = np.random.default_rng(cin)
    w = random_pm1(rng, (10, cin, 3, 3))
    x = np.concatenate([w[:1], -w[:1], random_pm1(rng, (1, cin, 3, 3))])  # 3x3 images
    xp, wt = K.pack_nchw(x), K.pack_conv_weight(w)
    want = np.einsum("nchw,ochw->no", x.astype(np.int64), w.astype(np.int64))[:, None, None, :]
    assert want[0, 0, 0, 0] == 9 * cin and want[1, 0, 0, 0] == -9 * cin
    with K.use_isa(isa):
        p = K.prepare_conv_weight(wt, in_channels=cin)
        for name in p.candidates():
            p.use_kernel(name)
            np.testing.assert_array_equal(K.bconv2d(xp, p, in_channels=cin), want, err_msg=name)


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
            assert p.candidates() == ["avx2-bcast-3x8", "avx2-mula-3x4-tail2", "avx2-mula-3x4"]
    if "avx512" in optimized_isas():
        with K.use_isa("avx512"):
            p = K.prepare_conv_weight(wt, in_channels=64)
            assert p.candidates()[:3] == ["avx512-bcast-8x16", "avx512-bcast-4x32",
                                          "avx512-vpopcntdq-4x4"]
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
