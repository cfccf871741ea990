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

Choosing omega0. Relative to the signal's power, the error at the best gamma,
``r(s) = (E[sin^2] - E|sin|^2) / E[sin^2]``, falls from 1/2 (``s -> 0``: the sine is linear and
its sign keeps only the magnitude's mean) towards ``1 - 8 / pi^2 ~ 0.189`` (``s -> inf``: a
uniform phase) and depends on omega0 and b only through ``s = omega0 b``. Beyond the knee a larger
omega0 gains almost nothing while it scales the stage-2 gradient ``omega0 cos(omega0 w)`` up and
flips more signs per step. :func:`recommend_omega0` returns the smallest omega0 whose ``r`` is
within ``tolerance`` (relative, default 5%) of the limit for the Laplace scale ``b`` fitted to the
latent weights (:func:`fit_laplace_scale`): ``omega0 = s_tol / b``, ``s_tol ~ 3.0`` at 5%.
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
    "fit_laplace_scale",
    "biper_relative_quantization_error",
    "BIPER_RELATIVE_QE_LIMIT",
    "recommend_omega0",
]

#: ``lim_{s -> inf} r(s) = 1 - 8 / pi^2``: (1/2 - (2/pi)^2) / (1/2).
BIPER_RELATIVE_QE_LIMIT = 1.0 - 8.0 / np.pi**2


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


def fit_laplace_scale(weights) -> float:
    """Maximum-likelihood scale of ``Laplace(0, b)`` for the given weights: ``b = mean |w|``
    (location fixed at 0, as the quantization-error analysis assumes). Accepts any array-like or
    a list of arrays (pooled)."""
    if isinstance(weights, (list, tuple)):
        parts = [np.abs(np.asarray(w, dtype=np.float64)).ravel() for w in weights]
        w = np.concatenate(parts) if parts else np.zeros(0)
    else:
        w = np.abs(np.asarray(weights, dtype=np.float64)).ravel()
    if w.size == 0 or not np.all(np.isfinite(w)):
        raise ValueError("fit_laplace_scale needs at least one finite weight")
    return float(w.mean())


def biper_relative_quantization_error(omega0, b) -> np.ndarray:
    """``r = QE(gamma*) / E[sin^2(omega0 w)] = 1 - E|sin|^2 / E[sin^2]`` for ``w ~ Laplace(0, b)``
    (1/2 in the limit ``omega0 b -> 0``)."""
    s = _scale(omega0, b)
    e2 = biper_expected_sin2(omega0, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1.0 - biper_expected_abs_sin(omega0, b) ** 2 / e2
    return np.where(s > 0, r, 0.5)


def recommend_omega0(b: float, tolerance: float = 0.05) -> float:
    """The smallest omega0 with ``r(omega0 b) <= (1 + tolerance) * (1 - 8/pi^2)`` (see the module
    docstring), found by bisection on ``s = omega0 b`` (``r`` decreases in ``s``)."""
    b = float(b)
    if not (b > 0 and np.isfinite(b)):
        raise ValueError(f"b must be a finite number > 0; got {b}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1); got {tolerance}")
    target = (1.0 + tolerance) * BIPER_RELATIVE_QE_LIMIT
    lo, hi = 1e-6, 1.0
    while float(biper_relative_quantization_error(hi, 1.0)) > target:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(biper_relative_quantization_error(mid, 1.0)) > target:
            lo = mid
        else:
            hi = mid
    return hi / b
