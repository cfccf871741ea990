"""Saving and loading ``.onebit`` files from the training side (the reader itself is torch-free and
lives in :mod:`onebit.runtime`, see :mod:`onebit.runtime.container` for the layout)."""

from __future__ import annotations

import os

from onebit.runtime.graph import Graph
from onebit.runtime.model import load_graph, save_graph

__all__ = ["load_graph", "save"]


def save(graph: Graph, path: str | os.PathLike[str]) -> int:
    """Write ``graph`` (from :func:`onebit.deploy.convert`) to ``path``; return the file size.

    The file is a safetensors file (tensors little-endian, no pickle) whose metadata holds the
    graph, the format version, the method, input shape, normalisation, class names and onebit's
    version, with a SHA-256 over everything. Written atomically (temporary file + rename).
    """
    return save_graph(graph, path)
