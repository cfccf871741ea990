"""The inference graph: a list of ops over named values, plus the tensors they use.

This is what :func:`onebit.deploy.convert` produces, what a ``.onebit`` file stores and what the
runtime executes. It is torch-free. Shapes are logical and exclude the batch: ``(C, H, W)`` for
feature maps (the runtime stores them NHWC), ``(F,)`` for vectors. A value is either ``"float"``
(float32) or ``"bits"`` (+1/-1 packed 1 bit each along the channels: bit 1 for -1, LSB first in
uint32 words, tail bits 0).

The ops, their attributes and tensors are listed in :mod:`onebit.runtime.schema`, which also
validates a graph (every op name, attribute type and range, tensor reference, dtype and shape, and
that each value is defined before use) before anything runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Graph", "Node", "ValueInfo"]


@dataclass
class Node:
    """One op: ``output = op(*inputs; attrs, tensors)``.

    ``tensors`` maps a role (``"weight"``, ``"bias"``, ...) to a key of :attr:`Graph.tensors`;
    ``name`` is where the op came from (the module path in the trained model), used in messages.
    """

    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs),
                "output": self.output, "attrs": dict(self.attrs), "tensors": dict(self.tensors)}


@dataclass(frozen=True)
class ValueInfo:
    """What flows along a value: ``kind`` ("float" or "bits") and the logical per-sample shape."""

    kind: str
    shape: tuple[int, ...]


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
        from onebit.runtime.schema import validate_graph

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
