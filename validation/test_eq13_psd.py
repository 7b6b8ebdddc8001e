r"""Monte-Carlo validation of the warped-field spectrum: eq 13 (§4.1), eqs 41, 45–48 (supplementary §10–11).

Family ``fields`` (false-alarm share 5e-4, Bonferroni over :data:`MAX_CHECKS` records, Student-t
threshold with ``REPLICATES - 1`` dof).  One record per spectrum bin; the bin estimate is the
averaged periodogram, its SE from ``REPLICATES`` independent replicates (``batch_means``).

Regimes (``paper_notes/s10_12_random_fields.md``):

(i) continuous — x a smooth band-limited Gaussian field (ℓ_x = 6 px, modes far below Nyquist)
    evaluated *exactly* at v + ε_v, so there is no interpolation kernel; eq 13 is evaluated on
    the periodic domain (the cell of the α-sum is the domain) and aliased onto the pixels.
(ii) discretised — x white on the lattice, warped by the engine (eq 2, periodic padding);
    compared with our exact form (all Fourier terms of the pair expectation) and with the
    paper's eq 46, which treats the interpolated x as a stationary field.

Bins whose theory is below 1e-10 of the spectrum's peak are not recorded: the theory comes from an
FFT of the covariance, whose absolute rounding error (~1e-16 of the peak) would dominate there.

Power: with 16384 one-dimensional samples the per-bin relative SE is ≈ 0.8 %; at the threshold
≈ 5.6 a per-bin relative error of ≈ 6.5 % is detected with 99 % power.  The pooled variance of
eq 48 (white lattice x) has a relative SE of ≈ 0.1 % (1-D; 0.23 % in 2-D), so 1 % (2 %) is
detected; that of eq 45 (one smooth field, ℓ_x = 6 px, per sample) ≈ 0.3 % (1-D) and 1.7 %
(2-D), so only ≈ 3 % and 15 % are.  ``validation/test_power_fields.py`` records these perturbed
theories, and eq 13 with σ_ε·1.03–1.10, and asserts they disagree.  ``--thorough`` multiplies
the samples by 100.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from warptheory import fields, psd
from warptheory.stats import batch_means
from warptheory.warping import warp

FAMILY = "fields"
ALPHA = 5e-4
MAX_CHECKS = 900
REPLICATES = 64
NEGLIGIBLE = 1e-10

# name: (regime, ndim, L, samples per replicate, eps kind, eps length, sigma_eps, kernel)
CASES = {
    "C1": ("continuous", 1, 128, 256, "gaussian", 8.0, 0.5, None),
    "C2": ("continuous", 1, 128, 256, "gaussian", 8.0, 2.0, None),
    "C3": ("continuous", 1, 128, 256, "exponential", 4.0, 1.0, None),
    "C4": ("continuous", 1, 128, 256, "white", 1.0, 1.0, None),
    "C5": ("continuous", 2, 64, 4, "gaussian", 6.0, 1.0, None),
    "D1": ("discretised", 1, 128, 256, "gaussian", 4.0, 0.3, "tri"),
    "D2": ("discretised", 1, 128, 256, "white", 1.0, 0.3, "tri"),
    "D3": ("discretised", 1, 128, 256, "exponential", 2.0, 0.3, "cos"),
    "D4": ("discretised", 2, 64, 4, "gaussian", 3.0, 0.3, "tri"),
}
X_LENGTH = 6.0  # continuous regime: correlation length of x, pixels
CONTINUOUS = [c for c in CASES if CASES[c][0] == "continuous"]
DISCRETISED = [c for c in CASES if CASES[c][0] == "discretised"]
_CACHE: dict = {}


def _params(name):
    regime, ndim, L, _, kind, ell, sigma, kernel = CASES[name]
    p = {"case": name, "regime": regime, "d": ndim, "L": L, "eps": kind, "sigma_eps": sigma}
    if kind != "white":
        p["ell_eps"] = ell
    if kernel:
        p["kernel"] = kernel
        p["x"] = "white"
    else:
        p["x"] = f"gaussian ell={X_LENGTH:g}"
    return p


def _simulate(name, factor):
    """Per-replicate binned periodograms and variances of one case (cached per session)."""
    key = (name, factor)
    if key in _CACHE:
        return _CACHE[key]
    regime, ndim, L, per_rep, kind, ell, sigma, kernel = CASES[name]
    shape = (L,) * ndim
    rng = np.random.default_rng(sum(map(ord, name)) * 7919)  # fixed seed per case: reproducible report
    eps_spec = fields.lattice_spectrum(kind, shape, ell, variance=sigma**2)
    labels, nbins = psd.spectrum_bins(shape)
    grid = np.stack(np.meshgrid(*([np.arange(L, dtype=np.float64)] * ndim), indexing="ij")).reshape(ndim, -1)
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
    binned, var = [], []
    count = per_rep * factor
    chunk = max(1, min(count, 4096 // (L ** (ndim - 1))))
    for _ in range(REPLICATES):
        acc, acc_var, done = np.zeros(nbins), 0.0, 0
        while done < count:
            b = min(chunk, count - done)
            eps = np.stack([fields.lattice_field(eps_spec, b, rng) for _ in range(ndim)], axis=1)
            if regime == "continuous":
                coef = fields.sample_modes(S_modes, b, rng)
                points = grid[None] + eps.reshape(b, ndim, -1)
                y = fields.evaluate_modes(coef, points, L).reshape((b,) + shape)
            else:
                x = rng.standard_normal((b, 1) + shape)
                y = warp(x, eps, kernel=kernel, padding="periodic")[:, 0]
            P = psd.periodogram(y)
            acc += psd.bin_spectrum(P, labels, nbins).sum(axis=0)
            acc_var += float(np.sum(y**2)) / y[0].size
            done += b
        binned.append(acc / count)
        var.append(acc_var / count)
    out = (np.array(binned), np.array(var))
    _CACHE[key] = out
    return out


def _theory(name, form):
    regime, ndim, L, _, kind, ell, sigma, kernel = CASES[name]
    shape = (L,) * ndim
    rho = fields.periodic_correlation(kind, shape, ell)
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
        P = 2
        rho_fine = fields.periodic_correlation(kind, shape, ell, oversample=P)
        S = psd.alias_to_lattice(
            psd.eq13_modes(S_modes, L, rho_fine, sigma, P, taylor_zero_term=(form != "eq41")), L)
    else:
        S = psd.discretised_spectrum(kernel, shape, sigma, rho, 1.0, form=form)
    labels, nbins = psd.spectrum_bins(shape)
    return psd.bin_spectrum(S, labels, nbins)


@pytest.fixture(scope="module")
def fam(report):
    report.register_family(FAMILY, alpha=ALPHA, max_checks=MAX_CHECKS)
    return report


def _record_spectrum(report, name, equation, form, form_label, theory, factor):
    binned, _ = _simulate(name, factor)
    est, se = batch_means(binned)
    keep = theory > NEGLIGIBLE * theory.max()
    z = (est - theory)[keep] / se[keep]
    rel_l2 = float(np.linalg.norm((est - theory)[keep]) / np.linalg.norm(theory[keep]))
    note = (f"{form_label}; spectrum max|z|={np.max(np.abs(z)):.2f}, relative L2 error={rel_l2:.3g}, "
            f"median bin relative SE={np.median(se[keep] / theory[keep]):.3g}")
    checks = []
    for b in np.nonzero(keep)[0]:
        params = dict(_params(name), bin=int(b))
        checks.append(report.check(equation, "spectrum_bin", form, params, theory[b], est[b], se[b],
                                   family=FAMILY, dof=REPLICATES - 1, note=note))
    print(f"[eq {equation} {form_label}] {name}: {note}")
    bad = [c for c in checks if c.verdict != "agrees"]
    assert not bad, f"{len(bad)} of {len(checks)} bins disagree ({note}); first: {bad[0]}"


@pytest.mark.parametrize("name", CONTINUOUS)
def test_eq13_continuous_spectrum(fam, sample_factor, name):
    """Eq 13 on the periodic domain, continuous regime: the printed formula."""
    _record_spectrum(fam, name, "13", "paper", "eq 13 (cell = periodic domain)", _theory(name, "eq13"),
                     sample_factor)


@pytest.mark.xfail(strict=True, reason="eq 41 as derived lacks the m = 0 Taylor term (the paper says so); "
                   "it loses S_x(ξ)e^{-r} from the α = 0 term")
def test_eq41_literal_taylor_sum(fam, sample_factor):
    _record_spectrum(fam, "C1", "13", "paper", "eq 41 literal (Taylor sum from m = 1)", _theory("C1", "eq41"),
                     sample_factor)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_eq45_variance_preserved(fam, sample_factor, name):
    """Eq 45: without discretisation σ_y² = σ_x²."""
    _, var = _simulate(name, sample_factor)
    est, se = batch_means(var)
    ndim, L = CASES[name][1], CASES[name][2]
    _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
    chk = fam.check("45", "sigma_y2", "paper", _params(name), psd.sigma_y2_continuous(S_modes.sum()), est, se,
                    family=FAMILY, dof=REPLICATES - 1)
    assert chk.verdict == "agrees", chk


@pytest.mark.parametrize("name", DISCRETISED)
def test_eq13_discretised_exact(fam, sample_factor, name):
    """Discretised regime, our exact form: all Fourier terms of the pair expectation."""
    _record_spectrum(fam, name, "13", "exact", "discretised exact (pair expectation, all j)",
                     _theory(name, "exact"), sample_factor)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="eq 46 treats the interpolated lattice field "
                                            "x*φ as stationary; it is cyclostationary (only the j = 0 term)"))
    for n in DISCRETISED])
def test_eq46_stationary_interpolant(fam, sample_factor, name):
    _record_spectrum(fam, name, "13", "paper", "eq 46 (stationary interpolant, j = 0 term)",
                     _theory(name, "eq46"), sample_factor)


@pytest.mark.parametrize("name", DISCRETISED)
def test_eq48_white_variance(fam, sample_factor, name):
    """Eq 48: σ_y² = σ_x² Φ_{2,1}^d for white lattice x (holds for any ρ_ε)."""
    _, var = _simulate(name, sample_factor)
    est, se = batch_means(var)
    _, ndim, _, _, _, _, sigma, kernel = CASES[name]
    chk = fam.check("48", "sigma_y2", "paper", _params(name), psd.sigma_y2_white(kernel, sigma, ndim), est, se,
                    family=FAMILY, dof=REPLICATES - 1)
    assert chk.verdict == "agrees", chk


@pytest.mark.xfail(strict=True, reason="eq 47's route, σ_x²[(φ*φ*N(0,2σ_ε²))(0)]^d, is not Φ_{2,1}^d: "
                   "eq 48 states the right value but does not follow from eq 47")
def test_eq47_route_variance(fam, sample_factor):
    name = "D2"
    _, var = _simulate(name, sample_factor)
    est, se = batch_means(var)
    _, ndim, _, _, _, _, sigma, kernel = CASES[name]
    chk = fam.check("48", "sigma_y2 via eq 47", "paper", _params(name), psd.sigma_y2_eq47(kernel, sigma, ndim),
                    est, se, family=FAMILY, dof=REPLICATES - 1)
    assert chk.verdict == "agrees", chk
