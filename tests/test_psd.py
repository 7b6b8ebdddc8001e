"""Unit tests of warptheory.psd (eq 13, eqs 41, 45–48)."""
import math

import numpy as np
import pytest

from warptheory import fields, phi_ab, psd


@pytest.mark.parametrize("kind,ell", [("gaussian", 6.0), ("exponential", 3.0), ("white", 1.0)])
def test_eq13_alpha_sum_equals_direct_route(kind, ell):
    L = 32
    _, S = fields.mode_spectrum("gaussian", L, 5.0)
    direct = psd.continuous_spectrum(S, L, fields.periodic_correlation(kind, (L,), ell), 0.8)
    rho_fine = fields.periodic_correlation(kind, (L,), ell, oversample=2)
    alpha_sum = psd.alias_to_lattice(psd.eq13_modes(S, L, rho_fine, 0.8, 2), L)
    assert np.allclose(alpha_sum, direct, rtol=0, atol=1e-13 * direct.max())
    assert math.isclose(direct.mean(), S.sum(), rel_tol=1e-13)  # eq 45 by Parseval


def test_eq41_literal_misses_the_alpha0_taylor_term():
    L = 16
    _, S = fields.mode_spectrum("gaussian", L, 4.0)
    rho = fields.periodic_correlation("gaussian", (L,), 4.0, oversample=1)
    full = psd.eq13_modes(S, L, rho, 0.5, 1)
    literal = psd.eq13_modes(S, L, rho, 0.5, 1, taylor_zero_term=False)
    K = (S.size - 1) // 2
    m = np.arange(-K, K + 1)
    missing = np.zeros(L)
    np.add.at(missing, m % L, S * np.exp(-4 * math.pi**2 * 0.25 * (m / L) ** 2))
    assert np.allclose(full - literal, missing, atol=1e-15)


@pytest.mark.parametrize("kernel", ["tri", "cos", "hann", "sqrt_tri"])
@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_pair_expectation_at_lag0_is_phi21(kernel, sigma):
    # Trapezoid C_j table: O(h²) for continuous kernels, O(h^1.5) for sqrt_tri (see CELL_STEP).
    assert abs(psd.pair_expectation(kernel, sigma, 0, 1.0) - phi_ab(kernel, sigma, 2, 1)) < 1e-5


def test_pair_expectation_large_sigma_is_stationary_term():
    # The j ≠ 0 terms are damped by exp(-π² j² σ² (1+ρ)): e^{-39} at σ = 2.
    for lag, rho in [(0, 0.2), (1, 0.5)]:
        a = psd.pair_expectation("tri", 2.0, lag, rho)
        b = psd.pair_expectation("tri", 2.0, lag, rho, terms="stationary")
        assert abs(a - b) < 1e-12


def test_discretised_spectrum_variance_is_eq48_for_any_rho():
    L = 32
    for kind in ("white", "gaussian"):
        rho = fields.periodic_correlation(kind, (L,), 3.0)
        S = psd.discretised_spectrum("tri", (L,), 0.3, rho)
        assert abs(S.mean() - psd.sigma_y2_white("tri", 0.3, 1)) < 1e-5


def test_eq47_route_differs_from_phi21():
    # σ → 0: eq 47 gives ∫φ² = 2/3 for tri, while Φ_{2,1} = 1 - O(σ) → 1.
    assert abs(psd.sigma_y2_eq47("tri", 1e-3, 1) - 2 / 3) < 1e-4
    assert abs(psd.sigma_y2_white("tri", 1e-3, 1) - 1.0) < 1e-2


def test_bins_and_periodogram():
    labels, nb = psd.spectrum_bins((8,))
    assert labels.tolist() == [0, 1, 2, 3, 4, 3, 2, 1] and nb == 5
    y = np.random.default_rng(0).standard_normal((3, 8, 8))
    P = psd.periodogram(y)
    assert np.allclose(P.mean(axis=(1, 2)), (y**2).mean(axis=(1, 2)))  # Parseval


def test_bad_input():
    with pytest.raises(ValueError, match="rho_eps"):
        psd.discretised_spectrum("tri", (16,), 0.3, np.zeros(16))
    with pytest.raises(ValueError, match="form"):
        psd.discretised_spectrum("tri", (16,), 0.3, np.eye(1, 16)[0], form="eq13")
    with pytest.raises(ValueError, match="sigma_eps"):
        psd.pair_expectation("tri", -1.0, 0, 1.0)


@pytest.mark.parametrize("ndim", [1, 2])
def test_eq13_transfer_sums_to_the_spectrum(ndim):
    """Σ_m S_m H[m] (per-mode transfer) is eq 13's lattice spectrum, and each H[m] carries its mode's power."""
    L = 16
    _, S = fields.mode_spectrum("gaussian", L, 4.0, ndim=ndim)
    rho = fields.periodic_correlation("gaussian", (L,) * ndim, 3.0, oversample=2)
    H = psd.eq13_transfer(S.shape, L, rho, 0.7, 2)
    spectrum = psd.alias_to_lattice(psd.eq13_modes(S, L, rho, 0.7, 2), L)
    assert np.allclose(np.tensordot(S, H, axes=ndim), spectrum, rtol=0, atol=1e-14 * spectrum.max())
    # eq 45 mode by mode: the warp preserves each mode's power, so every H[m] averages to 1 over the lattice
    assert np.allclose(H.reshape(S.size, -1).mean(axis=1), 1.0, atol=1e-12)
