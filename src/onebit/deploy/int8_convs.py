"""Float convs in int8: the stem (the convs that read a graph's input) or every float conv,
computed by :func:`onebit.kernels.conv2d_int8` (``conv2d_int8`` nodes) instead of in float32.

A binary network keeps its first layer float (every method's paper does); at 224x224 that one
conv is a fifth of Bi-Real-18's time in the runtime. Quantized, it runs about twice as fast: the
input per tensor to ``act_bits`` unsigned levels with a zero point (calibrated by min/max on
sample inputs, so zero padding stays exact), the folded weights per output channel to
``weight_bits`` (7 by default, so the AVX2 kernel's int16 pair sums cannot saturate), the
integer sum exact in int32 and dequantized once. The error against the float conv is bounded
per output (see :mod:`onebit.kernels.int8conv`); what it costs in accuracy is measured by
``benchmarks/int8_accuracy.py``. Bi-Real's 1x1 downsampling shortcuts are float convs too
(``scope="all"``), 1.5-2x faster in int8.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from onebit.kernels.int8conv import calibrate_activations
from onebit.runtime.graph import Graph, Node
from onebit.runtime.model import Model

__all__ = ["quantize_float_convs"]


def _eligible(node: Node, graph: Graph, scope: str) -> bool:
    a = node.attrs
    return (node.op == "conv2d" and a.get("groups") == 1
            and float(a.get("pad_value", 0.0)) == 0.0 and "weight" in node.tensors
            and (scope == "all" or node.inputs == [graph.input]))


def _input_ranges(graph: Graph, targets: list[Node], x: np.ndarray) -> dict[str, np.ndarray]:
    """The calibration batch's values at each target conv's input, from the graph itself run by
    the runtime node by node (only min and max are used)."""
    model = Model(graph, num_threads=None, fuse=False, tune=False)
    wanted = {id(n) for n in targets}
    seen: dict[str, np.ndarray] = {}
    values = {graph.input: model._check_input(x)}
    for step, (fn, inputs, outputs), free in zip(model.steps, model._steps, model._free):
        node = step.nodes[0]
        if id(node) in wanted:
            v = values[inputs[0]]
            seen[node.output] = np.array([v.min(), v.max()], dtype=np.float32)
        result = fn([values[name] for name in inputs], None)
        values.update(zip(outputs, result) if len(outputs) > 1 else [(outputs[0], result)])
        for name in free:  # as the executor does: only the live values stay in memory
            del values[name]
    return seen


def quantize_float_convs(graph: Graph, calibration: np.ndarray, *, scope: str = "stem",
                         act_bits: int = 8, weight_bits: int = 7) -> Graph:
    """A copy of ``graph`` whose float convs run in int8 (``conv2d_int8`` nodes).

    Args:
        graph: a converted graph (:func:`onebit.deploy.convert`).
        calibration: float32 ``[N, C, H, W]`` model inputs (normalised as the model takes them).
            Each quantized conv's input scale and zero point come from the min and max of the
            values reaching it when the graph runs on this batch.
        scope: ``"stem"``: the convs that read the model's input; ``"all"``: every float conv
            with groups 1 and zero padding (e.g. also Bi-Real's 1x1 downsampling shortcuts).
        act_bits: input levels, ``2**act_bits`` (2..8); weight_bits: 2..7, with
            ``2 * (2**act_bits - 1) * (2**(weight_bits - 1) - 1) <= 32767``.

    Raises ValueError when no conv qualifies or the calibration batch does not fit the input.
    """
    if scope not in ("stem", "all"):
        raise ValueError(f"scope must be 'stem' or 'all', got {scope!r}")
    x = np.asarray(calibration, dtype=np.float32)
    if len(graph.input_shape) != 3 or x.ndim != 4 or tuple(x.shape[1:]) != graph.input_shape:
        raise ValueError("calibration must be a float batch [N, "
                         f"{', '.join(map(str, graph.input_shape))}] of model inputs, got shape "
                         f"{x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("calibration holds NaN or infinite values")
    targets = [n for n in graph.nodes if _eligible(n, graph, scope)]
    if not targets:
        raise ValueError("no float conv (groups 1, zero padding) "
                         + ("reads the model's input, so there is no stem to quantize"
                            if scope == "stem" else "to quantize"))
    ranges = _input_ranges(graph, targets, x)
    nodes = []
    for node in graph.nodes:
        if node in targets:
            act = calibrate_activations(ranges[node.output], bits=act_bits)
            attrs = {k: v for k, v in node.attrs.items() if k not in ("groups", "pad_value")}
            attrs.update(act_scale=float(act.scale), act_zero_point=int(act.zero_point),
                         act_bits=int(act.bits), weight_bits=int(weight_bits))
            tensors = {r: k for r, k in node.tensors.items() if r in ("weight", "bias")}
            node = Node("conv2d_int8", list(node.inputs), node.output, attrs, tensors, node.name)
        nodes.append(node)
    out = replace(graph, nodes=nodes)
    out.validate()
    return out
