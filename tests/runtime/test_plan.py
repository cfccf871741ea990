"""The runtime's fusions (onebit.runtime.plan): which steps fuse, and that fused and unfused
execution give identical results, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import convert
from onebit.runtime.graph import Graph, Node
from onebit.runtime.plan import BITS_SUFFIX, plan

from _deploy_helpers import binarized


@pytest.fixture(scope="module")
def bireal_graph() -> Graph:
    model = binarized("birealnet18", "bireal", num_classes=7, width=0.25)
    return convert(model, example_input_shape=(3, 32, 32))


def test_bireal_blocks_fuse_and_give_identical_results(bireal_graph: Graph) -> None:
    fused, plain = rt.Model(bireal_graph), rt.Model(bireal_graph, fuse=False)
    assert len(plain.steps) == len(bireal_graph.nodes) and not any(s.fused for s in plain.steps)
    convs = [n for n in bireal_graph.nodes if n.op == "bconv2d"]
    steps = [s for s in fused.steps if s.fused]
    # every one of the 16 binary convs is followed by its block's shortcut add
    assert len(convs) == 16 and len(steps) == 16
    assert [s.nodes[0].op for s in steps] == ["bconv2d"] * 16
    assert all(s.nodes[1].op == "add" for s in steps)
    # all but the last block hand packed signs to the next binary conv
    with_bits = [s for s in fused.steps if s.sign_bits]
    assert len(with_bits) == 15
    readers = [s for s in fused.steps if s.inputs and s.inputs[0].endswith(BITS_SUFFIX)]
    assert len(readers) == 15
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    for threads in (1, 2):
        fused.num_threads = plain.num_threads = threads
        np.testing.assert_array_equal(fused(x), plain(x))


def test_downsampling_shortcut_computed_after_the_conv(bireal_graph: Graph) -> None:
    """At a stride-2 block the residual (avgpool + 1x1 conv) comes after the binary conv in the
    graph: the fused step runs where the add was, after the residual exists."""
    steps = plan(bireal_graph, bireal_graph.validate())
    made = {bireal_graph.input}
    for s in steps:
        assert all(name in made for name in s.inputs), s
        made.update(s.outputs)
    downsampling = [s for s in steps if s.fused and s.nodes[0].attrs["stride"] == [2, 2]]
    assert len(downsampling) == 3


def test_xnor_convs_keep_their_float_input() -> None:
    """XNOR-Net's K map needs the float input: no sign bits are handed to those convs."""
    graph = convert(binarized("resnet20", "xnor", num_classes=5), example_input_shape=(3, 16, 16))
    steps = plan(graph, graph.validate())
    for s in steps:
        if s.nodes[0].op == "bconv2d" and s.nodes[0].attrs["xnor_k"]:
            assert not s.inputs[0].endswith(BITS_SUFFIX)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(rt.Model(graph)(x), rt.Model(graph, fuse=False)(x))


def test_no_fusion_when_the_conv_output_has_other_readers(bireal_graph: Graph) -> None:
    """A conv whose float output is read by anything besides the add stays a step of its own."""
    nodes = list(bireal_graph.nodes)
    i = next(k for k, n in enumerate(nodes) if n.op == "bconv2d")
    extra = Node(op="relu", inputs=[nodes[i].output], output="extra_reader", attrs={}, tensors={})
    j = next(k for k in range(i + 1, len(nodes)) if nodes[i].output in nodes[k].inputs)
    nodes.insert(j + 1, extra)
    graph = Graph(nodes=nodes, input=bireal_graph.input, output=bireal_graph.output,
                  input_shape=bireal_graph.input_shape, tensors=bireal_graph.tensors,
                  metadata=bireal_graph.metadata)
    steps = plan(graph, graph.validate())
    assert not any(s.fused and s.nodes[0] is nodes[i] for s in steps)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(rt.Model(graph)(x), rt.Model(graph, fuse=False)(x))


def test_sign_bits_name_never_collides(bireal_graph: Graph) -> None:
    """A graph that already uses the name ``<value>#bits`` gets a longer one for the signs."""
    nodes = list(bireal_graph.nodes)
    conv = next(n for n in nodes if n.op == "bconv2d")
    add = next(n for n in nodes if conv.output in n.inputs)
    taken = add.output + BITS_SUFFIX  # the name the first block's signs would get
    old = nodes[0].output  # the stem conv's value gets that name
    renamed = []
    for n in nodes:
        inputs = [taken if v == old else v for v in n.inputs]
        out = taken if n.output == old else n.output
        renamed.append(Node(op=n.op, inputs=inputs, output=out, attrs=n.attrs, tensors=n.tensors,
                            name=n.name))
    graph = Graph(nodes=renamed, input=bireal_graph.input, output=bireal_graph.output,
                  input_shape=bireal_graph.input_shape, tensors=bireal_graph.tensors,
                  metadata=bireal_graph.metadata)
    steps = plan(graph, graph.validate())
    outputs = [name for s in steps for name in s.outputs]
    assert len(outputs) == len(set(outputs)) and taken + "#" in outputs
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(rt.Model(graph)(x), rt.Model(graph, fuse=False)(x))


def test_int8_stem_reads_nchw_and_absorbs_its_max_pool(bireal_graph: Graph) -> None:
    """With the float convs in int8, the stem step reads the caller's NCHW batch and applies the
    max pool after it; the step's output is the pool's value, and the results equal the node by
    node run bit for bit (batch 1 and 3, 1 and 2 threads)."""
    model = binarized("birealnet18", "bireal", num_classes=7, width=0.25)
    cal = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    graph = convert(model, example_input_shape=(3, 32, 32), float_convs="int8", calibration=cal)
    steps = plan(graph, graph.validate())
    stem, pool = graph.nodes[0], graph.nodes[1]
    assert (stem.op, pool.op) == ("conv2d_int8", "maxpool2d")
    assert steps[0].nodes == (stem, pool) and steps[0].absorbed is pool and not steps[0].fused
    assert steps[0].nchw and steps[0].inputs == (graph.input,)
    assert steps[0].outputs == (pool.output,)
    assert not any(s.nchw for s in steps[1:])
    # the 1x1 int8 shortcuts have no max pool after them: steps of their own, NHWC
    assert all(s.absorbed is None for s in steps[1:])
    fused, plain = rt.Model(graph), rt.Model(graph, fuse=False)
    assert not any(s.nchw or s.absorbed for s in plain.steps)
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        for threads in (1, 2):
            fused.num_threads = plain.num_threads = threads
            np.testing.assert_array_equal(fused(x), plain(x))


def test_no_absorb_when_the_pool_is_not_the_only_reader(bireal_graph: Graph) -> None:
    """A conv output read by something besides its max pool is stored: no absorbed reader (the
    stem still reads NCHW)."""
    model = binarized("birealnet18", "bireal", num_classes=7, width=0.25)
    cal = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    graph = convert(model, example_input_shape=(3, 32, 32), float_convs="int8", calibration=cal)
    nodes = list(graph.nodes)
    extra = Node(op="relu", inputs=[nodes[0].output], output="extra_reader", attrs={}, tensors={})
    nodes.insert(2, extra)
    g2 = Graph(nodes=nodes, input=graph.input, output=graph.output,
               input_shape=graph.input_shape, tensors=graph.tensors, metadata=graph.metadata)
    steps = plan(g2, g2.validate())
    assert steps[0].nodes == (nodes[0],) and steps[0].nchw
    x = np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(rt.Model(g2)(x), rt.Model(g2, fuse=False)(x))


def test_direct_float_conv_reads_nchw_and_absorbs_its_max_pool(bireal_graph: Graph) -> None:
    """The float stem on the direct kernel (few input channels) reads NCHW and applies its max
    pool; a float conv on im2col (3x3 over 8 channels) keeps its pool as a step of its own."""
    steps = plan(bireal_graph, bireal_graph.validate())
    stem, pool = bireal_graph.nodes[0], bireal_graph.nodes[1]
    assert (stem.op, pool.op) == ("conv2d", "maxpool2d")
    assert steps[0].nodes == (stem, pool) and steps[0].nchw and steps[0].absorbed is pool
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                        nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(8 * 4 * 4, 5)).eval()
    graph = convert(net, example_input_shape=(3, 16, 16))
    steps = plan(graph, graph.validate())
    assert [tuple(n.op for n in s.nodes) for s in steps[:3]] == [
        ("conv2d", "maxpool2d"), ("conv2d",), ("maxpool2d",)]
    assert steps[0].nchw and not steps[1].nchw
    fused, plain = rt.Model(graph), rt.Model(graph, fuse=False)
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 3, 16, 16)).astype(np.float32)
        for threads in (1, 2):
            fused.num_threads = plain.num_threads = threads
            np.testing.assert_array_equal(fused(x), plain(x))
        with torch.no_grad():
            np.testing.assert_allclose(fused(x), net(torch.from_numpy(x)).numpy(), rtol=1e-5,
                                       atol=1e-5)
