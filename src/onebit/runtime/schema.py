"""Validation of an inference graph before anything runs it: every node against its op's entry in
:data:`onebit.runtime.ops.OPS` (op name, arity, attributes, tensors, dtypes, shapes), every value
defined before use and assigned once, the input shape, the output and the metadata.

:func:`validate_graph` is the one check; it returns the :class:`~onebit.runtime.node.ValueInfo` of
every value, which the executor and the planner take instead of checking again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from onebit.runtime.checks import (
    FLOAT32_MAX,
    MAX_CHANNELS,
    MAX_NODES,
    MAX_SPATIAL,
    MAX_VALUE_ELEMENTS,
    NAME_LIMIT,
    Check,
)
from onebit.runtime.errors import FormatError
from onebit.runtime.node import ValueInfo
from onebit.runtime.ops import OPS

if TYPE_CHECKING:  # annotations only: graph.py imports this module
    from onebit.runtime.graph import Graph

__all__ = ["check_input_shape", "validate_graph"]


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= NAME_LIMIT:
        raise FormatError(f"{what} must be a non-empty string of at most {NAME_LIMIT} "
                          f"characters, got {value!r:.80}")
    return value


def check_input_shape(shape: Any) -> tuple[int, ...]:
    if (not isinstance(shape, (list, tuple)) or len(shape) not in (1, 3)
            or not all(type(d) is int and 1 <= d <= MAX_SPATIAL * 32 for d in shape)):
        raise FormatError(f"input shape must be [C, H, W] or [F] of positive integers, got "
                          f"{shape!r:.80}")
    if math.prod(shape) > MAX_VALUE_ELEMENTS:
        raise FormatError(f"input shape {list(shape)} exceeds {MAX_VALUE_ELEMENTS} elements")
    return tuple(shape)


def _check_metadata(meta: Any, out: ValueInfo) -> None:
    if not isinstance(meta, dict):
        raise FormatError("metadata must be an object")
    unknown = set(meta) - {"method", "class_names", "normalization", "onebit_version"}
    if unknown:
        raise FormatError(f"unknown metadata field(s) {sorted(unknown)}")
    for key in ("method", "onebit_version"):
        v = meta.get(key)
        if v is not None and (not isinstance(v, str) or len(v) > 64):
            raise FormatError(f"metadata {key!r} must be a short string or null, got {v!r:.80}")
    names = meta.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= NAME_LIMIT
                                                  for n in names):
            raise FormatError("class_names must be a list of strings")
        if out.shape != (len(names),):
            raise FormatError(f"{len(names)} class_names but the model outputs shape {out.shape}")
    norm = meta.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
            raise FormatError("normalization must be {\"mean\": [...], \"std\": [...]}")
        for key in ("mean", "std"):
            v = norm[key]
            if (not isinstance(v, list) or not v or len(v) > MAX_CHANNELS or not all(
                    type(x) in (int, float) and abs(x) <= FLOAT32_MAX for x in v)):
                raise FormatError(f"normalization {key} must be a list of finite numbers")
        if len(norm["mean"]) != len(norm["std"]) or any(s <= 0 for s in norm["std"]):
            raise FormatError("normalization needs as many positive std values as means")


def validate_graph(graph: Graph) -> dict[str, ValueInfo]:
    """Check every node of ``graph`` in order; return the :class:`ValueInfo` of each value."""
    if not isinstance(graph.nodes, list) or not 0 < len(graph.nodes) <= MAX_NODES:
        raise FormatError(f"a graph needs 1 to {MAX_NODES} nodes")
    shape = check_input_shape(graph.input_shape)
    infos: dict[str, ValueInfo] = {_check_name(graph.input, "input name"): ValueInfo("float",
                                                                                      shape)}
    for index, node in enumerate(graph.nodes):
        spec = OPS.get(node.op) if isinstance(node.op, str) else None
        if spec is None:
            raise FormatError(f"node {index}: unknown op {node.op!r:.80}; known ops: "
                              f"{', '.join(sorted(OPS))}")
        if not isinstance(node.name, str) or len(node.name) > 1000:
            raise FormatError(f"node {index} ({node.op}): name must be a string of at most 1000 "
                              "characters")
        check = Check(graph.tensors, index, node, spec.attrs + spec.optional, spec.roles)
        if not isinstance(node.attrs, dict) or not isinstance(node.tensors, dict) or not all(
                isinstance(v, str) for v in node.tensors.values()):
            raise check.fail("attrs must be an object and tensors an object of tensor names")
        if not isinstance(node.inputs, list) or len(node.inputs) != spec.arity:
            raise check.fail(f"takes {spec.arity} input(s), got {node.inputs!r:.80}")
        args = []
        for name in node.inputs:
            if not isinstance(name, str) or name not in infos:
                raise check.fail(f"input {name!r:.80} is not defined by an earlier node")
            args.append(infos[name])
        out = _check_name(node.output, f"{check.where}: output name")
        if out in infos:
            raise check.fail(f"output {out!r} is already defined (values are assigned once)")
        info = spec.check(check, args)
        check.done()
        if any(d < 1 for d in info.shape) or math.prod(info.shape) > MAX_VALUE_ELEMENTS:
            raise check.fail(f"output shape {info.shape} is empty or exceeds "
                             f"{MAX_VALUE_ELEMENTS} elements")
        infos[out] = info
    if not isinstance(graph.output, str) or graph.output not in infos:
        raise FormatError(f"graph output {graph.output!r:.80} is not defined by any node")
    if infos[graph.output].kind != "float":
        raise FormatError("graph output must be a float value")
    _check_metadata(graph.metadata, infos[graph.output])
    return infos
