"""Analyses of onebit models and methods.

``onebit.analysis.biper``: BiPer's closed-form quantization error, its Monte Carlo check and the
omega0 recommendation from a Laplace fit of the latent weights (NumPy only). ``onebit.analysis.summary``: per-layer precisions, memory and MACs of a torch model; its
names are imported on first access, so ``import onebit.analysis`` never needs torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from onebit.analysis.biper import (
    BIPER_RELATIVE_QE_LIMIT,
    biper_best_gamma,
    biper_expected_abs_sin,
    biper_expected_sin2,
    biper_min_quantization_error,
    biper_quantization_error,
    biper_quantization_error_mc,
    biper_relative_quantization_error,
    fit_laplace_scale,
    laplace_stratified_sample,
    recommend_omega0,
)

# name -> module that defines it (imported lazily: it needs torch)
_LAZY = {"summarize": "onebit.analysis.summary", "xnor_speedup": "onebit.analysis.summary"}

__all__ = [
    "BIPER_RELATIVE_QE_LIMIT",
    "biper_best_gamma",
    "biper_expected_abs_sin",
    "biper_expected_sin2",
    "biper_min_quantization_error",
    "biper_quantization_error",
    "biper_quantization_error_mc",
    "biper_relative_quantization_error",
    "fit_laplace_scale",
    "laplace_stratified_sample",
    "recommend_omega0",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onebit.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
