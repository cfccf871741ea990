"""The executor: a validated :class:`~onebit.runtime.graph.Graph` compiled into NumPy/kernel calls.

``Model`` prepares every op once (weight matrices for im2col, binary filters for the kernels) and
keeps only read-only state, so ``model(x)`` may run from several threads at once: each call keeps
its activations in its own local dict, frees each value after its last use, and lets elementwise
ops (add, relu, clip, BatchNorm) overwrite an activation of its own at that last use. The nodes
run as the steps of :func:`onebit.runtime.plan.plan`, which fuses a binary conv with the residual
add after it and packs signs where they are made (identical results; ``fuse=False`` turns it off).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from onebit.runtime import binary_ops, float_ops
from onebit.runtime.container import read_container, write_container
from onebit.runtime.errors import FormatError
from onebit.runtime.graph import Graph, Node, ValueInfo
from onebit.runtime.plan import Step, plan
from onebit.runtime.schema import graph_from_document, graph_to_document

__all__ = ["Model", "load", "load_graph", "save_graph"]

_Op = Callable[[list[np.ndarray], int | None], np.ndarray]


def _pairs(attrs: dict[str, Any], *keys: str) -> list[tuple[int, int]]:
    return [tuple(attrs[k]) for k in keys]


def _float_weight(graph: Graph, node: Node, nbits: int) -> np.ndarray:
    """The float weight of a conv2d/linear node: stored, or expanded from bits * scale."""
    t = node.tensors
    if "weight" in t:
        return np.asarray(graph.tensors[t["weight"]], dtype=np.float32)
    bits = graph.tensors[t["weight_bits"]]
    signs = binary_ops.unpack_signs(bits, nbits)  # [O, (kh, kw,) C]
    signs = signs * graph.tensors[t["weight_scale"]].reshape((-1,) + (1,) * (signs.ndim - 1))
    return np.moveaxis(signs, -1, 1) if signs.ndim == 4 else signs  # -> [O, C, (kh, kw)]


def _inplace(op: str, a: dict[str, Any], tensors: dict[str, np.ndarray], r: int) -> _Op | None:
    """Elementwise ops that may overwrite input ``r`` (a temporary at its last use)."""
    if op == "add":
        return lambda xs, nt: np.add(xs[r], xs[1 - r], out=xs[r])
    if op == "relu":
        return lambda xs, nt: np.maximum(xs[0], np.float32(0), out=xs[0])
    if op == "hardtanh":
        lo, hi = np.float32(a["min_val"]), np.float32(a["max_val"])
        return lambda xs, nt: np.clip(xs[0], lo, hi, out=xs[0])
    if op == "channel_affine":
        scale, shift = tensors["scale"], tensors["shift"]
        return lambda xs, nt: np.add(np.multiply(xs[0], scale, out=xs[0]), shift, out=xs[0])
    return None


def _compile_step(graph: Graph, step: Step, infos: dict[str, ValueInfo],
                  reuse: int | None) -> _Op:
    if not step.fused:
        return _compile(graph, step.nodes[0], infos, reuse, step.sign_bits)
    conv = step.nodes[0]  # (bconv2d, add): xs = [conv input, residual]
    args = binary_ops.BinaryArgs.from_node(
        conv.attrs, {role: graph.tensors[key] for role, key in conv.tensors.items()})
    bits = step.sign_bits
    return lambda xs, nt: binary_ops.bconv2d(xs[0], args, nt, residual=xs[1],
                                             return_sign_bits=bits)


def _compile(graph: Graph, node: Node, infos: dict[str, ValueInfo], reuse: int | None,
             sign_bits: bool = False) -> _Op:
    a, op = node.attrs, node.op
    tensors = {role: graph.tensors[key] for role, key in node.tensors.items()}
    if reuse is not None:
        fn = _inplace(op, a, tensors, reuse)
        if fn is not None:
            return fn
    bias = tensors.get("bias")
    if op == "conv2d":
        groups = a["groups"]
        weight = _float_weight(graph, node, a["in_channels"] // groups)
        o_g = a["out_channels"] // groups
        kernel, stride, padding, dilation = _pairs(a, "kernel", "stride", "padding", "dilation")
        pad_value = float(a["pad_value"])
        direct = float_ops.direct_conv_weight(weight, groups)
        wmat = None if direct is not None else np.stack(
            [float_ops.conv_weight_matrix(weight[g * o_g:(g + 1) * o_g]) for g in range(groups)])
        return lambda xs, nt: float_ops.conv2d(xs[0], wmat, bias, kernel, stride, padding,
                                               dilation, groups, pad_value, direct, nt)
    if op == "linear":
        w = float_ops.linear_weight(_float_weight(graph, node, a["in_features"]))
        return lambda xs, nt: float_ops.linear(xs[0], w, bias, nt)
    if op == "bconv2d":
        args = binary_ops.BinaryArgs.from_node(a, tensors)
        if sign_bits:
            return lambda xs, nt: binary_ops.bconv2d(xs[0], args, nt, return_sign_bits=True)
        return lambda xs, nt: binary_ops.bconv2d(xs[0], args, nt)
    if op == "blinear":
        args = binary_ops.BinaryArgs.from_node(a, tensors)
        return lambda xs, nt: binary_ops.blinear(xs[0], args, nt)
    if op == "adder_conv2d":
        weight = np.ascontiguousarray(tensors["weight"])
        stride, padding = _pairs(a, "stride", "padding")
        mult = tensors.get("multiplier")

        def adder(xs: list[np.ndarray], nt: int | None) -> np.ndarray:
            y = float_ops.adder_conv2d(xs[0], weight, stride, padding, nt)
            if mult is not None:
                y *= mult
            if bias is not None:
                y += bias
            return y
        return adder
    if op == "adder_int8":
        weight_q = np.ascontiguousarray(tensors["weight_q"])
        stride, padding = _pairs(a, "stride", "padding")
        scale, mult = np.float32(a["scale"]), tensors["multiplier"]
        return lambda xs, nt: float_ops.adder_int8(xs[0], weight_q, scale, stride, padding,
                                                   mult, bias, nt)
    if op == "channel_affine":
        scale, shift = tensors["scale"], tensors["shift"]
        return lambda xs, nt: xs[0] * scale + shift
    if op == "relu":
        return lambda xs, nt: np.maximum(xs[0], np.float32(0))
    if op == "hardtanh":
        lo, hi = np.float32(a["min_val"]), np.float32(a["max_val"])
        return lambda xs, nt: np.clip(xs[0], lo, hi)
    if op == "prelu":
        slope = tensors["weight"]
        return lambda xs, nt: np.where(xs[0] >= 0, xs[0], xs[0] * slope).astype(np.float32)
    if op == "sign":
        if a["output"] == "bits":
            return lambda xs, nt: binary_ops.pack_signs(xs[0])
        return lambda xs, nt: np.where(xs[0] < 0, np.float32(-1), np.float32(1))  # NaN: +1
    if op == "kbit":
        bits = a["bits"]
        return lambda xs, nt: float_ops.kbit(xs[0], bits)
    if op == "maxpool2d":
        kernel, stride, padding, dilation = _pairs(a, "kernel", "stride", "padding", "dilation")
        return lambda xs, nt: float_ops.maxpool2d(xs[0], kernel, stride, padding, dilation,
                                                  a["ceil_mode"], nt)
    if op == "avgpool2d":
        kernel, stride, padding = _pairs(a, "kernel", "stride", "padding")
        return lambda xs, nt: float_ops.avgpool2d(xs[0], kernel, stride, padding, a["ceil_mode"],
                                                  a["count_include_pad"], a["divisor_override"],
                                                  nt)
    if op in ("adaptive_avgpool2d", "adaptive_maxpool2d"):
        size, mode = tuple(a["output_size"]), op[len("adaptive_"):-len("pool2d")]
        return lambda xs, nt: float_ops.adaptive_pool2d(xs[0], size, mode)
    if op == "flatten":
        return lambda xs, nt: float_ops.flatten(xs[0])
    if op == "add":
        return lambda xs, nt: xs[0] + xs[1]
    raise FormatError(f"op {op!r} has no runtime implementation")  # schema and runtime disagree


class Model:
    """A runnable onebit model. ``model(x)`` maps a float32 NCHW batch to float32 logits.

    Build one with :func:`load` (from a ``.onebit`` file) or ``Model(graph)``. ``num_threads``
    is passed to onebit's kernels (None: their default, see
    :func:`onebit.kernels.set_default_num_threads`); NumPy's own BLAS threads are not changed.
    ``fuse`` applies the fusions of :mod:`onebit.runtime.plan` (``steps`` lists what runs).
    """

    def __init__(self, graph: Graph, num_threads: int | None = None, fuse: bool = True) -> None:
        if num_threads is not None and (type(num_threads) is not int or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        self.infos = graph.validate()
        self.graph = graph
        self.num_threads = num_threads
        self.steps = plan(graph, self.infos, fuse=fuse)
        last_use: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                last_use[name] = i
        # values each call allocates afresh (not the caller's input, not flatten's possible view)
        # and that nothing reads later (not the graph's output)
        owned = {name for s in self.steps if s.nodes[-1].op != "flatten"
                 for name in s.outputs} - {graph.output}
        reuse = [next((j for j, name in enumerate(s.inputs)
                       if name in owned and last_use[name] == i), None)
                 for i, s in enumerate(self.steps)]
        self._steps = [(_compile_step(graph, s, self.infos, r), list(s.inputs), list(s.outputs))
                       for s, r in zip(self.steps, reuse)]
        # free each value after its last reader; one nothing reads (e.g. packed signs whose
        # readers all went another way) right after it is made
        self._free = [list(dict.fromkeys(  # a step may read one value twice
            [name for name in s.inputs if last_use[name] == i and name != graph.output]
            + [name for name in s.outputs if name not in last_use and name != graph.output]))
            for i, s in enumerate(self.steps)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input_shape

    @property
    def class_names(self) -> list[str] | None:
        return self.graph.class_names

    def _check_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"input must be a float array (float32), got dtype {x.dtype}; for "
                            "uint8 images use model(model.preprocess(images))")
        shape = tuple(self.graph.input_shape)
        if x.shape == shape:
            raise ValueError(f"input has shape {x.shape}: add the batch axis, e.g. x[None] "
                             f"(expected (N, {', '.join(map(str, shape))}))")
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"input must have shape (N, {', '.join(map(str, shape))}), got "
                             f"{x.shape}")
        x = x.astype(np.float32, copy=False)
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, ``[N, classes]``) for a float NCHW batch ``x`` (already normalised)."""
        values = {self.graph.input: self._check_input(x)}
        for (fn, inputs, outputs), free in zip(self._steps, self._free):
            result = fn([values[name] for name in inputs], self.num_threads)
            if len(outputs) == 1:
                values[outputs[0]] = result
            else:
                values.update(zip(outputs, result))
            for name in free:
                del values[name]
        out = values[self.graph.output]
        if out.ndim == 4:  # a feature-map output goes back to NCHW
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices (``int64 [N]``): the argmax of the logits."""
        return np.argmax(self(x), axis=1)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Raw uint8 images (``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``) -> the float32
        NCHW input: scaled to [0, 1], then normalised with the file's mean/std if it has them."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"preprocess expects uint8 images, got {images.dtype}")
        shape = tuple(self.graph.input_shape)
        if len(shape) != 3:
            raise ValueError("preprocess needs an image model (input shape (C, H, W))")
        c = shape[0]
        if images.ndim == 3 and c == 1:
            images = images[:, None]
        elif images.ndim == 4 and images.shape[1:] != shape and images.shape[-1] == c:
            images = images.transpose(0, 3, 1, 2)
        if images.ndim != 4 or images.shape[1:] != shape:
            raise ValueError(f"images of shape {images.shape} do not fit the model's input "
                             f"{shape}")
        x = images.astype(np.float32) / np.float32(255)
        norm = self.graph.normalization
        if norm:
            mean = np.asarray(norm["mean"], np.float32).reshape(-1, 1, 1)
            std = np.asarray(norm["std"], np.float32).reshape(-1, 1, 1)
            x = (x - mean) / std
        return x


def save_graph(graph: Graph, path: str | os.PathLike[str]) -> int:
    """Validate ``graph`` and write it as a ``.onebit`` file; return the file size in bytes."""
    return write_container(path, graph_to_document(graph), graph.tensors)


def load_graph(path: str | os.PathLike[str] | bytes) -> Graph:
    """Read, check and return the graph of a ``.onebit`` file (or its bytes).

    Raises :class:`~onebit.runtime.FormatError` for anything malformed; nothing in the file runs.
    """
    document, tensors = read_container(path)
    return graph_from_document(document, tensors)


def load(path: str | os.PathLike[str] | bytes, num_threads: int | None = None,
         fuse: bool = True) -> Model:
    """Load a ``.onebit`` file into a runnable :class:`Model` (torch-free). ``fuse=False`` runs
    node by node, without the fusions of :mod:`onebit.runtime.plan` (the results are the same)."""
    return Model(load_graph(path), num_threads=num_threads, fuse=fuse)
