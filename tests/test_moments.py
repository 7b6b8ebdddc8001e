"""Tests of warptheory.moments: identities, the paper/exact relation, and independent routes."""
import math

import numpy as np
import pytest

from warptheory import moments, phi_ab


def test_forward_forms_coincide():
    for k in ("tri", "cos", "hann", "sqrt_tri"):
        p = moments.forward(k, 0.4, mu_x=1.3, sigma_x=0.7, d=2, form="paper")
        e = moments.forward(k, 0.4, mu_x=1.3, sigma_x=0.7, d=2, form="exact")
        assert p == moments.Moments(e.mean, e.second_moment, e.variance, "5", "paper")


def test_backward_x_exact_reduces_to_paper_without_mean():
    p = moments.backward_x("hann", 0.8, mu_dy=0.0, sigma_dy=1.5, d=3, form="paper")
    e = moments.backward_x("hann", 0.8, mu_dy=0.0, sigma_dy=1.5, d=3, form="exact")
    assert e.second_moment == pytest.approx(p.second_moment, rel=1e-14)


def test_backward_x_exact_limits():
    # σ_ε → 0: the warp is the identity, so ∇_x L = ∇_y L and E[q²] = μ² + σ²
    e = moments.backward_x("tri", 0.0, mu_dy=1.0, sigma_dy=2.0, d=2, form="exact")
    assert e.second_moment == pytest.approx(5.0, rel=1e-14)


def test_gamma_by_monte_carlo_route():
    # Γ = Σ_m (E φ(m+ε))², with E φ(m+ε) estimated by plain sampling (independent route)
    rng = np.random.default_rng(3)
    eps = 0.6 * rng.standard_normal(400_000)
    from warptheory import get_kernel

    k = get_kernel("cos")
    est = sum(np.mean(k.value(m + eps)) ** 2 for m in range(-8, 9))
    assert moments.gamma("cos", 0.6) == pytest.approx(est, rel=5e-3)  # MC SE of each mean ≈ 1e-3 relative
    assert moments.gamma("cos", 0.6) < phi_ab("cos", 0.6, 2, 1)


@pytest.mark.parametrize("sigma", [0.3, 0.7, 3.0])
def test_gamma_periodic_folding(sigma):
    """Period 2 folds the offsets onto two sites; for tri the folded mean weight of the even site is the
    expectation of a triangle wave, w₀ = ½ + (4/π²) Σ_{j odd} e^{−j²π²σ²/2}/j², and Γ = w₀² + (1 − w₀)².

    Catches: folding by the wrong period, or not adding the weights of one site before squaring
    (Γ would be the unfolded 0.57 at σ = 0.3 instead of 0.77).
    """
    w0 = 0.5 + 4 / math.pi**2 * sum(math.exp(-(j**2) * math.pi**2 * sigma**2 / 2) / j**2 for j in range(1, 200, 2))
    assert moments.gamma("tri", sigma, period=2) == pytest.approx(w0**2 + (1 - w0) ** 2, abs=1e-12)


def test_backward_eps_mean_zero_and_sqrt_tri_infinite():
    r = moments.backward_eps("cos", 0.3, mu_x=1.0, sigma_x=1.0, mu_dy=1.0, sigma_dy=1.0, channels=3, d=2)
    assert abs(r.mean) < 1e-12
    r = moments.backward_eps("sqrt_tri", 0.3, mu_x=0.0, sigma_x=1.0, mu_dy=0.0, sigma_dy=1.0, channels=1, d=1)
    assert r.second_moment == math.inf


def test_backward_eps_cross_term_scales_with_n_squared():
    """With σ_x = σ_∂y = 0 the second moment is N μ_x² · N μ_∂y² Φ'₁₂: quadratic in N.

    cos is not mean-preserving, so Σ_n φ'(ε − n) ≠ 0 and Φ'₁₂ > 0 (hann's is 0: both sides would be
    rounding).  Catches: the N of the N(N−1) channel cross terms dropped (f(4) = 4 f(1)).
    """
    f = lambda n: moments.backward_eps("cos", 0.4, mu_x=1.0, sigma_x=0.0, mu_dy=1.0, sigma_dy=0.0,  # noqa: E731
                                       channels=n, d=1).second_moment
    # independent route for Φ'₁₂: plain sampling of (Σ_n φ'(ε − n))²
    from warptheory import get_kernel
    eps = 0.4 * np.random.default_rng(7).standard_normal(400_000)
    k = get_kernel("cos")
    sampled = np.mean(sum(k.derivative(eps - n) for n in range(-5, 6)) ** 2)
    assert f(1) == pytest.approx(sampled, rel=1e-2)  # MC relative SE ≈ 2e-3
    assert f(1) > 0.1
    assert f(4) == pytest.approx(16 * f(1), rel=1e-13)


def test_selfwarp_exact_exceeds_paper_by_kurtosis_term():
    p = moments.selfwarp("tri", 0.1, sigma_x=1.0, sigma_dy=1.0, channels=4, d=2, k=3, form="paper")
    e = moments.selfwarp("tri", 0.1, sigma_x=1.0, sigma_dy=1.0, channels=4, d=2, k=3, form="exact")
    # small σ_ε: the window holds all of Φ, so the ratio is 1 + (κ-1)/(N k²)
    assert e.second_moment / p.second_moment == pytest.approx(1 + 2 / 36, rel=1e-6)


@pytest.mark.parametrize("kw,name", [({"sigma_eps": -1.0}, "sigma_eps"), ({"d": 0}, "d"), ({"form": "x"}, "form")])
def test_bad_input(kw, name):
    args = dict(sigma_eps=0.3, mu_x=0.0, sigma_x=1.0, d=1, form="paper")
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        moments.forward("tri", **args)
