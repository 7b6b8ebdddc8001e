"""Φ_{a,b} and Φ'_{a,b} (eq 6, 23, 24): accuracy against 40-digit references, laws, limits, input checks."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import warptheory as wt
from warptheory.kernels import BUILTIN_KERNELS, T, get_kernel, kernel_from_sympy, on_support
from warptheory.phifunctions import phi_quadrature, phi_table

REFERENCE = json.loads((Path(__file__).parent / "data" / "phi_reference.json").read_text())

# The accuracy target.  Float64 evaluation of a Fourier/Chebyshev series of O(1)
# terms lands at a few ulps (~1e-15); 1e-13 leaves room for the O(10) magnitudes of Φ'_{3,3}.
RTOL = 1e-13
# Expectations that vanish exactly (odd integrands, Σφ' ≡ 0) are compared in absolute terms:
# the float integrand is rounding noise of O(1e-16) squared or summed.
ATOL_ZERO = 1e-13


def _reference_cases():
    for rec in REFERENCE["values"]:
        yield pytest.param(rec, id=f"{rec['kernel']}-a{rec['a']}b{rec['b']}{'-d' if rec['derivative'] else ''}-s{rec['sigma']}")


@pytest.mark.parametrize("kernel", BUILTIN_KERNELS)
def test_phi_matches_40_digit_reference(kernel):
    """Every built-in kernel, a, b ∈ {1,2,3}, Φ and Φ', σ from 0 (limit) through 1e-6 … 1e3."""
    import mpmath

    records = [r for r in REFERENCE["values"] if r["kernel"] == kernel]
    assert len(records) == 2 * 9 * 17 or kernel == "sqrt_tri"
    worst = 0.0
    for rec in records:
        ref = mpmath.mpf(rec["value"])
        got = wt.phi_ab(kernel, float(rec["sigma"]), rec["a"], rec["b"], rec["derivative"])
        if abs(ref) < 1e-20:
            assert abs(got) <= ATOL_ZERO, rec
            continue
        rel = abs((mpmath.mpf(got) - ref) / ref)
        worst = max(worst, float(rel))
        assert rel <= RTOL, (rec, got, float(rel))
    print(f"{kernel}: worst relative error {worst:.2e} over {len(records)} reference values")


def test_reference_covers_the_sigma_range():
    sigmas = {float(r["sigma"]) for r in REFERENCE["values"]}
    assert 0.0 in sigmas and min(s for s in sigmas if s > 0) <= 1e-6 and max(sigmas) >= 1e3


@pytest.mark.parametrize("rec", REFERENCE["special"], ids=lambda r: f"{r['kernel']}-a{r['a']}b{r['b']}")
def test_nonexistent_expectations_are_reported(rec):
    """sqrt_tri has φ'(±1∓) = ∓∞: Φ'_{a,b} diverges (+inf) or is undefined (nan, odd integrand)."""
    got = wt.phi_ab(rec["kernel"], [0.0, 0.01, 1.0], rec["a"], rec["b"], rec["derivative"])
    if rec["value"] == "inf":
        assert np.all(np.isposinf(got))
    else:
        assert np.all(np.isnan(got))


def test_sqrt_tri_gradient_variance_is_infinite():
    """The square-root (variance-preserving) partner of tri has an infinite Φ'_{2,1}."""
    assert math.isinf(wt.phi("sqrt_tri", 0.5).dphi21)
    assert wt.phi("sqrt_tri", 0.5).dphi11 == 0.0


# --------------------------------------------------------------------- paper's closed forms
@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.3, 1.0, 3.0])
def test_eq23_tri_series(sigma):
    """Eq 23 summed directly (it converges fast for σ ≥ 0.05)."""
    n = np.arange(1, 2000)
    eq23 = 2 / 3 + 2 * np.sum(np.exp(-2 * np.pi**2 * n**2 * sigma**2) / (np.pi**2 * n**2))
    assert abs(wt.phi_ab("tri", sigma, 2, 1) - eq23) <= 1e-14
    r = wt.phi("tri", sigma)
    assert r.phi11 == pytest.approx(1, abs=1e-15) and r.phi12 == pytest.approx(1, abs=1e-15)
    assert r.dphi11 == 0.0 and r.dphi12 == 0.0 and r.dphi21 == pytest.approx(2.0, rel=1e-15)


@pytest.mark.parametrize("sigma", [0.0, 1e-6, 0.02, 0.3, 7.0])
def test_eq24_cos_constants(sigma):
    r = wt.phi("cos", sigma)
    assert r.phi21 == pytest.approx(1.0, rel=1e-14)
    assert r.dphi21 == pytest.approx(math.pi**2 / 4, rel=1e-14)


def test_tri_small_sigma_expansion():
    """For σ ≪ 1, (1-|ε|)² + ε² averaged over N(0,σ²) is 1 - 2σ√(2/π) + 2σ² (no wrap-around)."""
    for s in (1e-6, 1e-4, 1e-2, 0.04):
        assert wt.phi_ab("tri", s, 2, 1) == pytest.approx(1 - 2 * s * math.sqrt(2 / math.pi) + 2 * s * s, rel=1e-14)


# --------------------------------------------------------------------- the face
def test_phi_record_scalar_and_array():
    r = wt.phi("tri", 0.3)
    assert isinstance(r.phi21, float) and isinstance(r.sigma, float)
    assert "phi21=0.70100027658823" in repr(r)
    sig = np.array([[0.1, 0.2], [0.3, 0.4]])
    ra = wt.phi("hann", sig)
    for field in ("phi11", "phi12", "phi21", "dphi11", "dphi12", "dphi21"):
        assert getattr(ra, field).shape == sig.shape
    assert ra.phi21[1, 0] == wt.phi("hann", 0.3).phi21
    with pytest.raises(AttributeError):
        r.phi11 = 2.0  # immutable
    assert r.order(3, 2) == wt.phi_ab("tri", 0.3, 3, 2)
    assert r.order(2, 1, derivative=True) == r.dphi21


def test_phi_accepts_kernel_objects_and_user_kernels():
    user = kernel_from_sympy(get_kernel("cos").expr, name="my_cos")
    for s in (0.0, 0.01, 0.3, 10.0):
        assert wt.phi(user, s).phi12 == wt.phi("cos", s).phi12  # same expression: identical


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel="tri", sigma=-0.1), "sigma"),
        (dict(kernel="tri", sigma=float("nan")), "sigma"),
        (dict(kernel="tri", sigma=float("inf")), "sigma"),
        (dict(kernel="tri", sigma=[0.1, -1.0]), "sigma"),
        (dict(kernel="tri", sigma="0.3"), "sigma"),
        (dict(kernel="tri", sigma=True), "sigma"),
        (dict(kernel="tri", sigma=1 + 2j), "sigma"),
        (dict(kernel="bicubic", sigma=0.3), "tri, cos, rect, hann, sqrt_tri"),
    ],
)
def test_bad_input_raises_valueerror_naming_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wt.phi(**kwargs)


@pytest.mark.parametrize(
    "a, b, name",
    [(0, 1, "a"), (1, 0, "b"), (-1, 2, "a"), (1.5, 1, "a"), (2.0, 1, "a"), (True, 1, "a"), ("2", 1, "a"), (None, 1, "a"), (1, np.float64(2), "b")],
)
def test_orders_must_be_positive_integers(a, b, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        wt.phi_ab("tri", 0.3, a, b)


# --------------------------------------------------------------------- properties (hypothesis)
kernels = st.sampled_from(BUILTIN_KERNELS)
sigmas = st.one_of(
    st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
    st.floats(min_value=-6, max_value=3).map(lambda e: 10.0**e),
)


@settings(max_examples=60, deadline=None)
@given(kernel=kernels, sigma=sigmas)
def test_mean_preserving_kernels_have_unit_phi11_phi12(kernel, sigma):
    k = get_kernel(kernel)
    r = wt.phi(k, sigma)
    if k.mean_preserving:
        assert r.phi11 == pytest.approx(1.0, abs=1e-14)
        assert r.phi12 == pytest.approx(1.0, abs=1e-14)
    if k.variance_preserving:
        assert r.phi21 == pytest.approx(1.0, abs=1e-14)


@settings(max_examples=60, deadline=None)
@given(kernel=kernels, sigma=sigmas)
def test_even_kernels_have_zero_dphi11(kernel, sigma):
    """φ even ⇒ φ' odd ⇒ Σ_n φ'(ε-n) is odd in ε and its Gaussian mean vanishes."""
    assert wt.phi_ab(kernel, sigma, 1, 1, derivative=True) == 0.0


@settings(max_examples=40, deadline=None)
@given(kernel=kernels, a=st.integers(1, 3), b=st.integers(1, 3), derivative=st.booleans())
def test_sigma_limits(kernel, a, b, derivative):
    """σ → 0: the (symmetrised) value at the integers; σ → ∞: the mean of h over one cell."""
    k = get_kernel(kernel)
    table = phi_table(k, a, b, derivative)
    if table.mode in ("inf", "nan"):
        return
    psi = k.derivative if derivative else k.value
    # Cell average by an independent midpoint rule in θ with s = sin²(πθ/2) (endpoint-safe).
    m = 200_000
    theta = (np.arange(m) + 0.5) / m
    s = np.sin(0.5 * np.pi * theta) ** 2
    h = (psi(s) ** a + psi(s - 1) ** a) ** b
    cell_mean = float(np.mean(h * 0.5 * np.pi * np.sin(np.pi * theta)))
    # The midpoint sum of an odd integrand with 1/√s ends (sqrt_tri's φ') cancels to ~1e-12 only.
    assert wt.phi_ab(k, 1e3, a, b, derivative) == pytest.approx(cell_mean, rel=1e-8, abs=1e-10)
    if table.mode == "zero":
        assert wt.phi_ab(k, 0.0, a, b, derivative) == 0.0
        return
    # At the integers: one-sided values at ±tiny, averaged (they differ where φ' jumps).
    tiny = 1e-12
    right = (psi(np.array([tiny])) ** a + psi(np.array([tiny - 1])) ** a) ** b
    left = (psi(np.array([-tiny])) ** a + psi(np.array([1 - tiny])) ** a) ** b
    expected0 = float(0.5 * (right + left)[0])
    # sqrt_tri moves by √tiny = 1e-6 between 0 and tiny; the smooth kernels by O(tiny).
    rel = 1e-5 if kernel == "sqrt_tri" else 1e-9
    assert wt.phi_ab(k, 0.0, a, b, derivative) == pytest.approx(expected0, rel=rel, abs=1e-12)
    # Continuity at σ = 0: Φ(σ) - Φ(0) is O(σ) here, O(√σ) for sqrt_tri.
    assert wt.phi_ab(k, 1e-12, a, b, derivative) == pytest.approx(expected0, rel=max(rel, 1e-9), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(kernel=kernels, sigma=st.sampled_from([1e-4, 0.01, 0.03, 0.049]), a=st.integers(1, 3), b=st.integers(1, 3))
def test_convergence_is_monotone_in_quadrature_order(kernel, sigma, a, b):
    """Doubling the Gauss order never increases the error against the 80-point rule, beyond rounding.

    Once two orders have converged their difference is rounding noise: each result is a
    float64 sum of at most 80 weighted terms, whose rounding error is bounded by
    80·eps·Σ|terms| (recursive summation), and Σ|terms| ≈ |Φ| here.  The floor is that
    bound; a 1e-15 floor (≈ 5 eps) failed on converged values, e.g. sqrt_tri σ = 1e-4,
    a = 1, b = 2: errors [6.2e-15, 4.4e-16, 2.2e-15, 3.3e-15] at orders 5..40."""
    best = wt.phi_ab(kernel, sigma, a, b, order=80)
    errors = [abs(wt.phi_ab(kernel, sigma, a, b, order=n) - best) for n in (5, 10, 20, 40)]
    floor = 80 * np.finfo(np.float64).eps * max(1.0, abs(best))
    for coarse, fine in zip(errors, errors[1:]):
        assert fine <= coarse + floor, errors


@settings(max_examples=25, deadline=None)
@given(kernel=kernels, sigma=st.floats(0.01, 20.0), a=st.integers(1, 3), b=st.integers(1, 3), derivative=st.booleans())
def test_series_agrees_with_direct_quadrature(kernel, sigma, a, b, derivative):
    """The series route against plain composite Gauss–Legendre over ε (a separate code path)."""
    if phi_table(kernel, a, b, derivative).mode in ("inf", "nan"):
        return
    fast = wt.phi_ab(kernel, sigma, a, b, derivative)
    quad = phi_quadrature(kernel, sigma, a, b, derivative, order=30)
    assert fast == pytest.approx(quad, rel=1e-12, abs=1e-12)


def test_user_kernel_written_differently_matches_builtin():
    """tri written with Max: same function, different expression tree and code."""
    user = kernel_from_sympy(sp.Max(0, 1 - sp.Abs(T)), name="tri_max")
    assert user.mean_preserving and not user.variance_preserving
    sig = np.array([0.0, 1e-5, 0.02, 0.3, 4.0])
    for a, b, d in [(1, 1, False), (2, 1, False), (3, 2, False), (2, 1, True)]:
        np.testing.assert_allclose(wt.phi_ab(user, sig, a, b, d), wt.phi_ab("tri", sig, a, b, d), rtol=1e-15, atol=1e-15)


def test_user_kernel_same_expression_is_bitwise_identical():
    user = kernel_from_sympy(get_kernel("hann").expr, name="my_hann")
    sig = np.logspace(-6, 3, 50)
    for a, b in [(1, 1), (2, 1), (2, 3)]:
        for d in (False, True):
            assert np.array_equal(wt.phi_ab(user, sig, a, b, d), wt.phi_ab("hann", sig, a, b, d))


def test_user_kernel_with_interior_breakpoint():
    """A piecewise-linear kernel that jumps at ±1/2 (mean-preserving: φ(s) + φ(1-s) = 1)."""
    half = sp.Rational(1, 2)
    a_ = sp.Abs(T)
    expr = sp.Piecewise((1 - a_ / 2, a_ < half), (half, sp.Eq(a_, half)), ((1 - a_) / 2, a_ <= 1), (0, True))
    k = kernel_from_sympy(expr, name="knotted")
    assert k.mean_preserving and 0.5 in k.breakpoints
    for s in (0.06, 0.3, 2.0):
        assert wt.phi_ab(k, s, 2, 1) == pytest.approx(phi_quadrature(k, s, 2, 1, order=30), rel=1e-12)


def test_stored_quartic_rule_regenerates():
    from warptheory._quartic_rule import compute_quartic_gauss_rule, quartic_gauss_rule

    v, w = quartic_gauss_rule(40)
    v2, w2 = compute_quartic_gauss_rule(40)
    np.testing.assert_allclose(v, v2, rtol=1e-15)
    np.testing.assert_allclose(w, w2, rtol=1e-13)


def test_array_speed_smoke():
    """Vectorised evaluation runs on 1e5 σ values and agrees with scalar calls (speed is in bench/)."""
    sig = np.logspace(-6, 3, 100_000)
    out = wt.phi_ab("cos", sig, 1, 2)
    idx = [0, 12345, 50000, 99999]
    assert [out[i] for i in idx] == [wt.phi_ab("cos", float(sig[i]), 1, 2) for i in idx]
