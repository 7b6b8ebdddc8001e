"""Closed forms (warptheory.symbolic) against the numeric path and deterministic quadrature (eqs 23–24)."""
import math

import pytest
import sympy as sp

import warptheory as wt
from warptheory.phifunctions import phi_quadrature
from warptheory.symbolic import K, SIGMA, phi_series

FAST_CASES = [  # (kernel, a, b, derivative): sympy integrates these in well under a second
    ("tri", 2, 1, False),
    ("tri", 3, 2, False),
    ("tri", 2, 2, True),
    ("cos", 1, 1, False),
    ("cos", 1, 2, False),
    ("cos", 1, 2, True),
    ("cos", 2, 1, True),
    ("hann", 2, 1, False),
    ("hann", 2, 1, True),
    ("rect", 2, 1, False),
]


def test_eq23_reproduced_exactly():
    series = phi_series("tri", 2, 1)
    expected = sp.Rational(2, 3) + 2 * sp.Sum(sp.exp(-2 * sp.pi**2 * K**2 * SIGMA**2) / (sp.pi**2 * K**2), (K, 1, sp.oo))
    assert sp.simplify(series.expr - expected) == 0
    assert phi_series("tri", 1, 1).expr == 1 and phi_series("tri", 1, 2).expr == 1
    assert phi_series("tri", 1, 1, True).expr == 0 and phi_series("tri", 1, 2, True).expr == 0
    assert phi_series("tri", 2, 1, True).expr == 2


def test_eq24_constants_exactly():
    assert phi_series("cos", 2, 1).expr == 1
    assert phi_series("cos", 2, 1, derivative=True).expr == sp.pi**2 / 4


@pytest.mark.parametrize("kernel, a, b, derivative", FAST_CASES)
@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.7, 3.0])
def test_symbolic_numeric_and_quadrature_agree(kernel, a, b, derivative, sigma):
    exact = float(phi_series(kernel, a, b, derivative).evaluate(sigma, terms=400))
    numeric = wt.phi_ab(kernel, sigma, a, b, derivative)
    quad = phi_quadrature(kernel, sigma, a, b, derivative, order=30)
    scale = max(1.0, abs(exact))
    # 400 terms truncate at e^{-2π²·400²·0.05²} ≈ 0; float64 paths carry ~1e-15 of scale.
    assert numeric == pytest.approx(exact, rel=1e-13, abs=1e-14 * scale)
    assert quad == pytest.approx(exact, rel=1e-12, abs=1e-13 * scale)


@pytest.mark.slow
def test_sqrt_tri_series_agrees():
    """sympy leaves C_k of sqrt_tri as an integral; mpmath evaluates it."""
    series = phi_series("sqrt_tri", 1, 1)
    assert series.c0 == sp.Rational(4, 3)
    assert float(series.evaluate(0.3, terms=40)) == pytest.approx(wt.phi_ab("sqrt_tri", 0.3, 1, 1), rel=1e-13)


def test_divergent_series_reported():
    series = phi_series("sqrt_tri", 2, 1, derivative=True)
    assert series.c0 == sp.oo and series.expr == sp.oo
    assert math.isinf(float(series.evaluate(0.5)))
