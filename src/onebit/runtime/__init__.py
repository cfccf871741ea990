"""onebit's torch-free runtime: load a ``.onebit`` file and run it with NumPy and onebit's kernels.

>>> import onebit.runtime as rt
>>> model = rt.load("model.onebit", num_threads=1)   # doctest: +SKIP
>>> logits = model(x)            # x: float32 NCHW batch, normalised like in training
>>> labels = model.predict(x)    # argmax

Nothing here imports torch. A malformed, truncated or hostile file raises :class:`FormatError`
(a ``ValueError``) with a message naming what is wrong; the loader never runs code from a file.
"""

from onebit.runtime.container import FORMAT_VERSION
from onebit.runtime.errors import FormatError
from onebit.runtime.graph import Graph, Node, ValueInfo
from onebit.runtime.model import Model, load, load_graph, save_graph
from onebit.runtime.ops import OPS, OpSpec

__all__ = [
    "FORMAT_VERSION",
    "OPS",
    "OpSpec",
    "FormatError",
    "Graph",
    "Model",
    "Node",
    "ValueInfo",
    "load",
    "load_graph",
    "save_graph",
]
