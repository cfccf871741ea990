"""onebit: train 1-bit and multiplication-free neural networks in PyTorch; run them fast on CPUs.

The training API (``binarize_``, the method classes) needs torch and is imported lazily, so that
``import onebit.runtime`` and ``import onebit.kernels`` work where only NumPy is installed.
"""

from __future__ import annotations

import importlib
from typing import Any



def _version() -> str:
    """The installed distribution's version (one source: the package metadata, set in
    pyproject.toml); ``0+unknown`` when onebit runs from a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onebit")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

# name -> module that defines it (imported on first access)
_LAZY = {
    "binarize_": "onebit.methods",
    "BNN": "onebit.methods",
    "BinaryConnect": "onebit.methods",
    "BWN": "onebit.methods",
    "XNORNet": "onebit.methods",
    "BiReal": "onebit.methods",
    "BiPer": "onebit.methods",
    "AdderNet": "onebit.methods",
    "FloatBaseline": "onebit.methods",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onebit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
