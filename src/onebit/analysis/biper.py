"""BiPer's quantization-error analysis (NumPy only; no torch).

For latent weights ``w ~ Laplace(0, b)`` and the square wave ``gamma * sign(sin(omega0 w))`` standing
in for ``sin(omega0 w)``, the quantization error is the mean squared error

    QE(omega0, b, gamma) = E[(sin(omega0 w) - gamma * sign(sin(omega0 w)))^2]
                         = E[sin^2] - 2 gamma E|sin| + gamma^2,

with ``s = omega0 * b``:

    E[sin^2(omega0 w)] = 2 s^2 / (4 s^2 + 1)
    E|sin(omega0 w)|   = s (e^(pi/s) + 1) / ((s^2 + 1)(e^(pi/s) - 1)) = s / ((s^2 + 1) tanh(pi / (2 s)))

(Vargas et al., "BiPer: Binary Neural Networks using a Periodic Function", CVPR 2024). QE is a
parabola in gamma, minimal at ``gamma* = E|sin|`` where it equals ``E[sin^2] - E|sin|^2``. The
``tanh`` form is used so that small ``s`` does not overflow ``e^(pi/s)``; at ``s = 0`` both moments
are 0 (all weights are 0, ``sign(0) = +1``) and QE is ``gamma^2``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "biper_expected_sin2",
    "biper_expected_abs_sin",
    "biper_quantization_error",
    "biper_best_gamma",
    "biper_min_quantization_error",
    "biper_quantization_error_mc",
    "laplace_stratified_sample",
]


def _scale(omega0, b) -> np.ndarray:
    omega0 = np.asarray(omega0, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if np.any(omega0 < 0) or np.any(b < 0) or not (np.all(np.isfinite(omega0)) and np.all(np.isfinite(b))):
        raise ValueError("omega0 and b must be finite and >= 0")
    return omega0 * b


def biper_expected_sin2(omega0, b) -> np.ndarray:
    """``E[sin^2(omega0 w)] = 2 s^2 / (4 s^2 + 1)``, ``s = omega0 b``, for ``w ~ Laplace(0, b)``."""
    s = _scale(omega0, b)
    return 2 * s**2 / (4 * s**2 + 1)


def biper_expected_abs_sin(omega0, b) -> np.ndarray:
    """``E|sin(omega0 w)| = s / ((s^2 + 1) tanh(pi / (2 s)))``, ``s = omega0 b`` (0 at s = 0)."""
    s = _scale(omega0, b)
    with np.errstate(divide="ignore"):
        t = np.tanh(np.pi / (2 * s))  # tanh(inf) = 1 at s = 0
    return s / ((s**2 + 1) * t)


def biper_quantization_error(omega0, b, gamma) -> np.ndarray:
    """The closed-form ``QE = 2 s^2/(4 s^2 + 1) - 2 gamma s (e^(pi/s) + 1)/((s^2 + 1)(e^(pi/s) - 1))
    + gamma^2``, broadcast over NumPy arrays (``s = omega0 * b``)."""
    gamma = np.asarray(gamma, dtype=np.float64)
    return biper_expected_sin2(omega0, b) - 2 * gamma * biper_expected_abs_sin(omega0, b) + gamma**2


def biper_best_gamma(omega0, b) -> np.ndarray:
    """The gamma minimising QE: ``E|sin(omega0 w)|``."""
    return biper_expected_abs_sin(omega0, b)


def biper_min_quantization_error(omega0, b) -> np.ndarray:
    """QE at the best gamma: ``E[sin^2] - E|sin|^2``."""
    return biper_expected_sin2(omega0, b) - biper_expected_abs_sin(omega0, b) ** 2


def laplace_stratified_sample(n: int, b: float, seed: int = 0) -> np.ndarray:
    """``n`` draws of ``Laplace(0, b)`` by the inverse CDF of stratified uniforms
    ``u_i = (i + U_i) / n`` (one uniform per stratum: lower variance than plain sampling)."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    rng = np.random.default_rng(seed)
    u = (np.arange(n) + rng.random(n)) / n - 0.5
    return -b * np.sign(u) * np.log1p(-2 * np.abs(u))


def biper_quantization_error_mc(
    omega0: float, b: float, gamma, n: int = 1 << 20, seed: int = 0
) -> np.ndarray:
    """Monte Carlo estimate of ``E[(sin(omega0 w) - gamma sign(sin(omega0 w)))^2]`` for
    ``w ~ Laplace(0, b)`` (``sign(0) = +1``); ``gamma`` may be an array (one estimate each)."""
    w = laplace_stratified_sample(n, float(b), seed)
    s = np.sin(float(omega0) * w)
    sgn = np.where(s >= 0, 1.0, -1.0)
    gamma = np.asarray(gamma, dtype=np.float64)
    # E[(s - g sgn)^2] = E[s^2] - 2 g E[|s|] + g^2, with the moments taken from the same samples
    return np.mean(s * s) - 2 * gamma * np.mean(s * sgn) + gamma**2
