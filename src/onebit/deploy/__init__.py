"""Deployment: convert a trained PyTorch model into a ``.onebit`` file the torch-free runtime runs.

>>> from onebit.deploy import convert, save
>>> graph = convert(model, class_names=names)       # doctest: +SKIP
>>> save(graph, "model.onebit")                      # doctest: +SKIP
>>> import onebit.runtime as rt
>>> rt.load("model.onebit")(x)                       # doctest: +SKIP

``export_qonnx(model, path)`` and ``export_onnx(model, path)`` write the same graph as QONNX
(BipolarQuant / Quant nodes, for FPGA flows such as FINN) or as standard ONNX (the float
simulation); both need the ``interop`` extra.

Names are imported on first use, so that ``onebit.deploy.cli`` (whose ``predict`` needs only the
runtime) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it
_LAZY = {
    "ConversionError": "onebit.deploy.trace",
    "ExportError": "onebit.deploy.onnx_export",
    "FormatError": "onebit.runtime.errors",
    "GraphTorchModule": "onebit.deploy.torch_graph",
    "InferenceGraph": "onebit.runtime.graph",
    "convert": "onebit.deploy.convert",
    "export_onnx": "onebit.deploy.onnx_export",
    "export_qonnx": "onebit.deploy.qonnx",
    "load_graph": "onebit.deploy.format",
    "save": "onebit.deploy.format",
}
_RENAMED = {"InferenceGraph": "Graph"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onebit.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
