"""Deployment: convert a trained PyTorch model into a ``.onebit`` file the torch-free runtime runs.

>>> from onebit.deploy import convert, save
>>> graph = convert(model, class_names=names)       # doctest: +SKIP
>>> save(graph, "model.onebit")                      # doctest: +SKIP
>>> import onebit.runtime as rt
>>> rt.load("model.onebit")(x)                       # doctest: +SKIP
"""

from onebit.deploy.convert import convert
from onebit.deploy.format import load_graph, save
from onebit.deploy.trace import ConversionError
from onebit.runtime.errors import FormatError
from onebit.runtime.graph import Graph as InferenceGraph

__all__ = ["ConversionError", "FormatError", "InferenceGraph", "convert", "load_graph", "save"]
