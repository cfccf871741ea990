"""The runtime's per-layer kernel choice: tuning at load picks among kernels that give identical
results, and every binary conv's choice is recorded."""

from __future__ import annotations

import numpy as np
import pytest

import onebit.kernels as K
import onebit.runtime as rt
from onebit.deploy import convert
from onebit.runtime.graph import Graph

from _deploy_helpers import binarized


@pytest.fixture(scope="module")
def bireal_graph() -> Graph:
    # width 1.0 at 32x32: 64-channel 3x3 layers (18-word filter rows: two AVX2 candidates)
    model = binarized("birealnet18", "bireal", num_classes=5, width=1.0)
    return convert(model, example_input_shape=(3, 32, 32))


def test_tuned_and_rule_models_agree_bit_for_bit(bireal_graph: Graph) -> None:
    tuned, rule = rt.Model(bireal_graph), rt.Model(bireal_graph, tune=False)
    convs = [n.name for n in bireal_graph.nodes if n.op == "bconv2d"]
    for model, expect in ((tuned, {"measured", "rule"}), (rule, {"rule"})):
        choices = model.kernel_choices()
        assert [c["node"] for c in choices] == convs
        assert {c["choice"] for c in choices} <= expect
    if K.active_isa() != "reference":
        measured = [c for c in tuned.kernel_choices() if c["choice"] == "measured"]
        assert measured, "the 64-channel 3x3 layers have more than one candidate kernel"
        for c in measured:
            assert len(c["times_ms"]) >= 2
            assert c["kernel"] == min(c["times_ms"], key=c["times_ms"].get)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(tuned(x), rule(x))


def test_forced_kernels_agree_with_the_reference(bireal_graph: Graph) -> None:
    """Every candidate of every layer, forced in turn, gives the rule's logits bit for bit (the
    candidates themselves equal the reference kernels: tests/kernels/test_kernel_choice.py)."""
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = rt.Model(bireal_graph, tune=False)(x)
    model = rt.Model(bireal_graph, tune=False)
    layers = [fn for _, fn in model._binary]
    width = max(len(fn.args.weight_bits.candidates()) for fn in layers)
    for i in range(width):
        for fn in layers:
            cands = fn.args.weight_bits.candidates()
            if cands:
                fn.args.weight_bits.use_kernel(cands[i % len(cands)])
        np.testing.assert_array_equal(model(x), want)


def test_load_passes_tune(tmp_path, bireal_graph: Graph) -> None:
    path = tmp_path / "m.onebit"
    rt.save_graph(bireal_graph, path)
    assert {c["choice"] for c in rt.load(path, tune=False).kernel_choices()} == {"rule"}
    with pytest.raises(TypeError, match="tune"):
        rt.load(path, tune="yes")
