"""BiPer quantization error: closed form against Monte Carlo and quadrature; best gamma."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from onebit.analysis import biper as B

S_GRID = [0.02, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 40.0]  # omega0 * b


@pytest.mark.parametrize("omega0", [20.0, 5.0])
def test_closed_form_matches_monte_carlo(omega0):
    for s in S_GRID:
        b = s / omega0
        gammas = np.array([0.0, 0.3, float(B.biper_best_gamma(omega0, b)), 1.0])
        cf = B.biper_quantization_error(omega0, b, gammas)
        mc = B.biper_quantization_error_mc(omega0, b, gammas, n=1 << 18, seed=int(s * 100))
        assert np.all(np.abs(cf - mc) < 1e-3), (s, cf, mc)


def test_monte_carlo_helper_is_a_plain_expectation():
    # the helper's moment form equals the direct mean of the squared error on the same samples
    w = B.laplace_stratified_sample(1 << 14, 0.05, seed=3)
    s = np.sin(20 * w)
    direct = np.mean((s - 0.6 * np.where(s >= 0, 1.0, -1.0)) ** 2)
    assert np.isclose(B.biper_quantization_error_mc(20, 0.05, 0.6, n=1 << 14, seed=3), direct)
    # the sampler is Laplace(0, b): mean 0, E|w| = b, var 2 b^2
    w = B.laplace_stratified_sample(1 << 16, 0.3, seed=1)
    assert abs(w.mean()) < 1e-3 and abs(np.abs(w).mean() - 0.3) < 1e-3 and abs(w.var() - 0.18) < 2e-3


def test_moments_match_quadrature():
    for s in S_GRID[:-1]:
        # E f(w) for w ~ Laplace(0, 1/1) scaled: integrate f(s t) e^{-|t|}/2 over t
        t = np.linspace(-40, 40, 800_001)
        dens = 0.5 * np.exp(-np.abs(t))
        e_abs = np.trapezoid(np.abs(np.sin(s * t)) * dens, t)
        e_sq = np.trapezoid(np.sin(s * t) ** 2 * dens, t)
        assert np.isclose(B.biper_expected_abs_sin(s, 1.0), e_abs, atol=1e-6), s
        assert np.isclose(B.biper_expected_sin2(s, 1.0), e_sq, atol=1e-6), s


def test_exponential_form_equals_stable_form():
    s = np.array([0.3, 0.7, 1.0, 3.0, 12.0])
    e = np.exp(np.pi / s)
    paper = s * (e + 1) / ((s**2 + 1) * (e - 1))
    np.testing.assert_allclose(B.biper_expected_abs_sin(s, 1.0), paper, rtol=1e-12)
    qe = 2 * s**2 / (4 * s**2 + 1) - 2 * 0.4 * paper + 0.4**2
    np.testing.assert_allclose(B.biper_quantization_error(s, 1.0, 0.4), qe, rtol=1e-12)


def test_best_gamma_minimises_the_error():
    gam = np.linspace(0, 1, 10001)
    for s in S_GRID:
        qe = B.biper_quantization_error(s, 1.0, gam)
        best = B.biper_best_gamma(s, 1.0)
        assert abs(gam[np.argmin(qe)] - best) <= 1e-4
        assert np.isclose(B.biper_quantization_error(s, 1.0, best), B.biper_min_quantization_error(s, 1.0))
        assert B.biper_min_quantization_error(s, 1.0) >= 0


def test_vectorised_limits_and_errors():
    omega0 = np.array([[10.0], [20.0]])
    b = np.array([0.01, 0.05, 0.1])
    qe = B.biper_quantization_error(omega0, b, 0.5)
    assert qe.shape == (2, 3)
    assert np.isclose(qe[1, 0], B.biper_quantization_error(20.0, 0.01, 0.5))
    # s -> 0: every weight is 0, sign(0) = +1, error gamma^2; tiny s does not overflow
    assert B.biper_quantization_error(0.0, 1.0, 0.7) == pytest.approx(0.49)
    with np.errstate(all="raise"):
        assert np.isfinite(B.biper_expected_abs_sin(1e-5, 1.0))
    # large s: E|sin| -> 2/pi, E sin^2 -> 1/2
    assert np.isclose(B.biper_expected_abs_sin(1e4, 1.0), 2 / np.pi, atol=1e-4)
    assert np.isclose(B.biper_expected_sin2(1e4, 1.0), 0.5, atol=1e-6)
    with pytest.raises(ValueError):
        B.biper_quantization_error(-1.0, 0.1, 0.5)


def test_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import onebit.analysis.biper as b, onebit.analysis\n"
        "print(float(b.biper_best_gamma(20.0, 0.05)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout) - float(B.biper_best_gamma(20.0, 0.05))) < 1e-12
