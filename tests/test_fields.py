"""Unit tests of warptheory.fields (periodic Gaussian random fields, paper §4.1 / supplementary §10)."""
import numpy as np
import pytest

from warptheory import fields


@pytest.mark.parametrize("kind", fields.FIELD_KINDS)
@pytest.mark.parametrize("shape", [(32,), (16, 16)])
def test_lattice_spectrum_is_dft_of_periodic_correlation(kind, shape):
    rho = fields.periodic_correlation(kind, shape, 2.5)
    S = fields.lattice_spectrum(kind, shape, 2.5, variance=2.0)
    # Independent route: inverse DFT of the spectrum gives back 2ρ (rounding of an FFT pair).
    assert np.allclose(np.fft.ifftn(S).real, 2.0 * rho, atol=1e-13)
    assert rho[(0,) * len(shape)] == 1.0 and np.all(S >= 0)


def test_lattice_field_covariance_matches_within_se():
    rng = np.random.default_rng(1)
    S = fields.lattice_spectrum("exponential", (16,), 2.0)
    x = fields.lattice_field(S, 20000, rng)
    emp = np.mean(x * x[:, :1], axis=0)  # lag covariance against pixel 0
    rho = fields.periodic_correlation("exponential", (16,), 2.0)
    se = np.std(x * x[:, :1], axis=0, ddof=1) / np.sqrt(len(x))
    assert np.all(np.abs(emp - rho) < 5 * se)  # 16 lags: 5 SE keeps the false-alarm rate < 1e-5


def test_continuous_modes_exact_evaluation():
    rng = np.random.default_rng(2)
    _, S = fields.mode_spectrum("gaussian", 32, 4.0)
    coef = fields.sample_modes(S, 3, rng)
    grid = np.arange(32.0)[None, None].repeat(3, 0)
    on_grid = fields.evaluate_modes(coef, grid, 32)
    # On the grid the series is an inverse DFT of the (zero-padded) coefficients.
    K = (S.size - 1) // 2
    full = np.zeros((3, 32), complex)
    full[:, np.arange(-K, K + 1) % 32] = coef
    assert np.allclose(on_grid, np.fft.ifft(full, axis=1).real * 32, atol=1e-12)
    shifted = fields.evaluate_modes(coef, grid + 32.0, 32)  # periodic
    assert np.allclose(shifted, on_grid, atol=1e-11)


def test_bad_input():
    with pytest.raises(ValueError, match="kind"):
        fields.periodic_correlation("matern", (8,), 1.0)
    with pytest.raises(ValueError, match="length"):
        fields.lattice_spectrum("gaussian", (8,), -1.0)
    with pytest.raises(ValueError, match="Nyquist"):
        fields.mode_spectrum("gaussian", 16, 0.5)
    with pytest.raises(TypeError, match="rng"):
        fields.lattice_field(np.ones(8), 1, 0)
