"""The float stem in int8: the float convs that read a graph's input, computed by
:func:`onebit.kernels.conv2d_int8` (``conv2d_int8`` nodes) instead of in float32.

A binary network keeps its first layer float (every method's paper does); at 224x224 that one
conv is a fifth of Bi-Real-18's time in the runtime. Quantized, it runs about twice as fast: the
input per tensor to ``act_bits`` unsigned levels with a zero point (calibrated by min/max on
sample inputs, so zero padding stays exact), the folded weights per output channel to
``weight_bits`` (7 by default, so the AVX2 kernel's int16 pair sums cannot saturate), the
integer sum exact in int32 and dequantized once. The error against the float conv is bounded
per output (see :mod:`onebit.kernels.int8conv`); what it costs in accuracy is measured by
``benchmarks/int8_stem_accuracy.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from onebit.kernels.int8conv import calibrate_activations
from onebit.runtime.graph import Graph, Node

__all__ = ["quantize_stem"]


def _eligible(node: Node, graph: Graph) -> bool:
    a = node.attrs
    return (node.op == "conv2d" and node.inputs == [graph.input] and a.get("groups") == 1
            and float(a.get("pad_value", 0.0)) == 0.0 and "weight" in node.tensors)


def quantize_stem(graph: Graph, calibration: np.ndarray, *, act_bits: int = 8,
                  weight_bits: int = 7) -> Graph:
    """A copy of ``graph`` whose float convs reading the graph's input run in int8.

    Args:
        graph: a converted graph (:func:`onebit.deploy.convert`).
        calibration: float32 ``[N, C, H, W]`` model inputs (normalised as the model takes them);
            their min and max give the input's scale and zero point.
        act_bits: input levels, ``2**act_bits`` (2..8); weight_bits: 2..7, with
            ``2 * (2**act_bits - 1) * (2**(weight_bits - 1) - 1) <= 32767``.

    Raises ValueError when no conv reads the input (nothing to quantize) or the calibration
    batch does not fit the input.
    """
    x = np.asarray(calibration, dtype=np.float32)
    if len(graph.input_shape) != 3 or x.ndim != 4 or tuple(x.shape[1:]) != graph.input_shape:
        raise ValueError(f"calibration must be a float batch [N, {', '.join(map(str, graph.input_shape))}] "
                         f"of model inputs, got shape {x.shape}")
    stems = [n for n in graph.nodes if _eligible(n, graph)]
    if not stems:
        raise ValueError("first_layer='int8': no float conv (groups 1, zero padding) reads the "
                         "model's input, so there is no stem to quantize")
    act = calibrate_activations(x, bits=act_bits)
    nodes = []
    for node in graph.nodes:
        if node in stems:
            attrs = {k: v for k, v in node.attrs.items() if k not in ("groups", "pad_value")}
            attrs.update(act_scale=float(act.scale), act_zero_point=int(act.zero_point),
                         act_bits=int(act.bits), weight_bits=int(weight_bits))
            tensors = {r: k for r, k in node.tensors.items() if r in ("weight", "bias")}
            node = Node("conv2d_int8", list(node.inputs), node.output, attrs, tensors, node.name)
        nodes.append(node)
    out = replace(graph, nodes=nodes)
    out.validate()
    return out
