"""Analyses of onebit models and methods (NumPy only at import time).

``onebit.analysis.biper``: BiPer's closed-form quantization error and its Monte Carlo check.
"""

from __future__ import annotations

from onebit.analysis.biper import (
    biper_best_gamma,
    biper_expected_abs_sin,
    biper_expected_sin2,
    biper_min_quantization_error,
    biper_quantization_error,
    biper_quantization_error_mc,
    laplace_stratified_sample,
)

__all__ = [
    "biper_best_gamma",
    "biper_expected_abs_sin",
    "biper_expected_sin2",
    "biper_min_quantization_error",
    "biper_quantization_error",
    "biper_quantization_error_mc",
    "laplace_stratified_sample",
]
