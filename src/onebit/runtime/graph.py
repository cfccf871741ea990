"""The inference graph: a list of ops over named values, plus the tensors they use.

This is what :func:`onebit.deploy.convert` produces, what a ``.onebit`` file stores and what the
runtime executes. It is torch-free. Shapes are logical and exclude the batch: ``(C, H, W)`` for
feature maps (the runtime stores them NHWC), ``(F,)`` for vectors. A value is either ``"float"``
(float32) or ``"bits"`` (+1/-1 packed 1 bit each along the channels: bit 1 for -1, LSB first in
uint32 words, tail bits 0).

The ops, their attributes and tensors are listed in :mod:`onebit.runtime.ops`;
:mod:`onebit.runtime.schema` validates a graph (every op name, attribute type and range, tensor
reference, dtype and shape, and that each value is defined before use) before anything runs it.
This module also turns a graph into the JSON document a ``.onebit`` file stores, and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onebit.runtime.errors import FormatError
from onebit.runtime.node import Node, ValueInfo
from onebit.runtime.checks import MAX_NODES
from onebit.runtime.schema import check_input_shape, validate_graph

__all__ = [
    "Graph",
    "Node",
    "ValueInfo",
    "graph_and_infos_from_document",
    "graph_from_document",
    "graph_to_document",
]


@dataclass
class Graph:
    """A converted model: ``nodes`` in execution order over values named by strings.

    ``input_shape`` is the per-sample shape of the float32 NCHW input (``(C, H, W)``, or ``(F,)``
    for vector models); ``metadata`` holds ``method``, ``class_names``, ``normalization``
    (``{"mean": [...], "std": [...]}`` per input channel, applied to pixels scaled to [0, 1]) and
    ``onebit_version``.
    """

    nodes: list[Node]
    tensors: dict[str, np.ndarray]
    input_shape: tuple[int, ...]
    output: str
    input: str = "input"
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> dict[str, ValueInfo]:
        """Check the whole graph; return the :class:`ValueInfo` of every value.

        Raises :class:`~onebit.runtime.FormatError` naming the node and field at fault.
        """
        return validate_graph(self)

    @property
    def class_names(self) -> list[str] | None:
        return self.metadata.get("class_names")

    @property
    def normalization(self) -> dict[str, list[float]] | None:
        return self.metadata.get("normalization")

    @property
    def method(self) -> str | None:
        return self.metadata.get("method")

    def summary(self) -> str:
        """One line per op: op, module path, output shape and kind, tensor bytes."""
        infos = self.validate()
        lines = [f"input {self.input}: float {self.input_shape}"]
        for node in self.nodes:
            info = infos[node.output]
            nbytes = sum(self.tensors[t].nbytes for t in node.tensors.values())
            lines.append(f"{node.op:<20} {node.name or '-':<30} -> {info.kind} {info.shape}"
                         f"  {nbytes} B")
        return "\n".join(lines)

    def tensor_bytes(self) -> int:
        """Bytes of all tensors (the bulk of the file size)."""
        return int(sum(t.nbytes for t in self.tensors.values()))


def graph_to_document(graph: Graph) -> dict[str, Any]:
    """The JSON-able document a ``.onebit`` file stores for ``graph`` (validated first)."""
    validate_graph(graph)
    return {"input": {"name": graph.input, "shape": list(graph.input_shape)},
            "output": graph.output, "metadata": dict(graph.metadata),
            "nodes": [n.to_json() for n in graph.nodes]}


def graph_from_document(document: Any, tensors: dict[str, np.ndarray]) -> Graph:
    """Build and validate a :class:`Graph` from a file's document and tensors."""
    return graph_and_infos_from_document(document, tensors)[0]


def graph_and_infos_from_document(document: Any, tensors: dict[str, np.ndarray]
                                  ) -> tuple[Graph, dict[str, ValueInfo]]:
    """:func:`graph_from_document`, also returning what :meth:`Graph.validate` returns (the
    graph is validated once, here)."""
    if not isinstance(document, dict):
        raise FormatError("onebit document must be an object")
    unknown = set(document) - {"format", "format_version", "input", "output", "metadata", "nodes"}
    if unknown:
        raise FormatError(f"unknown document field(s) {sorted(unknown)}")
    inp, nodes = document.get("input"), document.get("nodes")
    if not isinstance(inp, dict) or set(inp) != {"name", "shape"}:
        raise FormatError("document 'input' must be {\"name\": ..., \"shape\": [...]}")
    if not isinstance(nodes, list) or not 0 < len(nodes) <= MAX_NODES:
        raise FormatError(f"document 'nodes' must be a list of 1 to {MAX_NODES} nodes")
    parsed = []
    keys = {"op", "name", "inputs", "output", "attrs", "tensors"}
    for index, raw in enumerate(nodes):
        if not isinstance(raw, dict) or set(raw) != keys:
            raise FormatError(f"node {index} must be an object with exactly the keys "
                              f"{sorted(keys)}")
        parsed.append(Node(op=raw["op"], inputs=raw["inputs"], output=raw["output"],
                           attrs=raw["attrs"], tensors=raw["tensors"], name=raw["name"]))
    shape = check_input_shape(inp["shape"])
    graph = Graph(nodes=parsed, tensors=dict(tensors), input_shape=shape,
                  output=document.get("output"), input=inp["name"],
                  metadata=document.get("metadata", {}))
    infos = validate_graph(graph)
    used = {key for n in parsed for key in n.tensors.values()}
    unused = set(tensors) - used
    if unused:
        raise FormatError(f"the file holds tensors no node uses: {sorted(unused)[:5]}")
    return graph, infos
