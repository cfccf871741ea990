"""The two records an inference graph is made of: a :class:`Node` (one op) and the
:class:`ValueInfo` of a value (its kind and per-sample shape). Plain data, no checks: the ops and
their rules are in :mod:`onebit.runtime.ops`, the graph in :mod:`onebit.runtime.graph`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "ValueInfo"]


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
