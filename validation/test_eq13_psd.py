r"""Monte-Carlo validation of the warped-field spectrum: eq 13 (§4.1), eqs 41, 45–48 (supplementary §10–11).

Family ``fields`` (share 4.5e-4, Bonferroni over :data:`MAX_CHECKS` records, Student-t threshold with
``REPLICATES - 1`` dof).  Estimates are averages over ``REPLICATES`` independent replicates
(``batch_means``); seeds are SHA-256 hashes of the whole case.

Regimes (``paper_notes/s10_12_random_fields.md``):

(i) continuous — x a smooth band-limited Gaussian field (ℓ_x = 6 px, modes far below Nyquist)
    evaluated *exactly* at v + ε_v; eq 13 is evaluated on the periodic domain (cell = domain) and
    aliased onto the pixels; with that reading it is exact (``paper=exact``).
(ii) discretised — x white on the lattice, warped by the engine (eq 2, periodic padding);
    compared with our exact form (all Fourier terms of the pair expectation) and with the paper's
    eq 46 (stationary interpolant).

Control variates (exact, no fitted coefficient).  A smooth field has few degrees of freedom, so
most of the scatter of its periodogram is the realisation's own mode powers |a_m|².  Given them,
the periodogram's expectation over the offsets is T = Σ_m |a_m|² H[m] (:func:`warptheory.psd.eq13_transfer`;
the cross terms vanish because ε is stationary), and E[T] = Σ_m S_m H[m] exactly because the sampler
draws E|a_m|² = S_m.  The continuous estimates are therefore P̄ − (T̄ − E T): unbiased whatever
the theory under test, with a fraction of the variance.  Likewise E[ȳ² | x] = Σ_Δ r̂_x(Δ) Π_k G(Δ_k)
for the discretised regime (r̂_x the realised autocovariance of x over Δ ∈ {−1, 0, 1}^d,
G(Δ) = E Σ_s φ(s+ε)φ(s+Δ+ε) = ``pair_expectation(kernel, σ_ε, Δ, 1)``) and E[ȳ² | a] = Σ|a_m|²
in the continuous one (eq 45 holds mode by mode).  In the continuous regime every x is warped twice,
by ε and by −ε (antithetic offsets, the same law): the part of the estimates odd in ε cancels,
which is most of what remains of the variance's noise (eq 45: C1 0.15 % → 0.02 %, C5 1.8 % → 0.7 %
resolution).

Records per spectrum:

* ``spectrum_bin`` — one per frequency bin whose theory is above 1e-10 of the peak.  Their
  resolution (the relative error each detects with 99 % power) is in every record; a single bin
  does not resolve 1 %;
* ``whitened mean`` — the frequency-weighted mean of P̂_k/S_k (theory 1): a scale error of the whole
  spectrum, every frequency alike; its resolution is in the record (0.8 % … 15 %), and where it
  resolves 1 % the theory ×1.01 is recorded and must be rejected;
* ``σ_ε score`` — Σ_k w_k (P̂_k/S_k − 1)/Σ w_k², w_k = ∂ln S_k/∂ln σ_ε (theory 0): the spectrum's
  shape, which is how a wrong warp or offset law shows; where it resolves σ_ε·1.01 that theory is
  recorded and must be rejected (the discretised regime at σ_ε = 0.3 barely moves with σ_ε);
* eq 45 (continuous): ȳ² − x̄² on the same realisation, + σ_x² (theory σ_x²); eq 48 (discretised):
  the control-variate estimate of σ_y² against σ_x²Φ₂₁ᵈ, which depends on the kernel and σ_ε; both
  with ≥ 99 % power at 1 % and the theory ×1.01 rejected — the pooled, power-weighted statistic of
  each spectrum.

Paper forms known to be wrong (eq 41 literal, eq 46, eq 47's route to eq 48) have pooled records
that must disagree; their per-bin records are kept in the report without an assertion.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from _parallel import map_threads
from warptheory import fields, psd
from warptheory.stats import FAMILY_BUDGET, batch_means
from warptheory.warping import warp

FAMILY = "fields"
ALPHA = FAMILY_BUDGET[FAMILY]
MAX_CHECKS = 1100
REPLICATES = 64
DOF = REPLICATES - 1
NEGLIGIBLE = 1e-10
SIGMA_STEP = 0.01  # relative step of the σ_ε derivative and of the σ_ε power check

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
    "D4": ("discretised", 2, 64, 8, "gaussian", 3.0, 0.3, "tri"),
}
X_LENGTH = 6.0  # continuous regime: correlation length of x, pixels
OVERSAMPLE = 2
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


def _bins(name):
    _, ndim, L = CASES[name][:3]
    labels, nbins = psd.spectrum_bins((L,) * ndim)
    return labels, nbins, np.bincount(labels.ravel(), minlength=nbins).astype(np.float64)


def _transfer(name, sigma):
    """Eq 13 per mode of x, binned: (modes..., nbins); ``sigma`` replaces σ_ε."""
    _, ndim, L, _, kind, ell, _, _ = CASES[name]
    _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
    rho_fine = fields.periodic_correlation(kind, (L,) * ndim, ell, oversample=OVERSAMPLE)
    labels, nbins, _ = _bins(name)
    H = psd.eq13_transfer(S_modes.shape, L, rho_fine, sigma, OVERSAMPLE)
    return psd.bin_spectrum(H, labels, nbins)


def _pair_sums(kernel, sigma):
    """G(Δ) for Δ = −1, 0, 1: E[Σ_s φ(s+ε)φ(s+Δ+ε)] (G(0) = Φ₂₁ to the table accuracy)."""
    return {delta: psd.pair_expectation(kernel, sigma, delta, 1.0) for delta in (-1, 0, 1)}


def _simulate(report, name, factor):
    """Per-replicate sums of one case (cached per session): see the module docstring."""
    key = (name, factor)
    if key in _CACHE:
        return _CACHE[key]
    regime, ndim, L, per_rep, kind, ell, sigma, kernel = CASES[name]
    shape = (L,) * ndim
    count = per_rep * factor
    seed = report.case_seed("fields", name, CASES[name], X_LENGTH, REPLICATES, count)
    eps_spec = fields.lattice_spectrum(kind, shape, ell, variance=sigma**2)
    labels, nbins, _ = _bins(name)
    grid = np.stack(np.meshgrid(*([np.arange(L, dtype=np.float64)] * ndim), indexing="ij")).reshape(ndim, -1)
    axes = tuple(range(1, ndim + 1))
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
    deltas = list(np.ndindex(*(3,) * ndim))  # Δ + 1 ∈ {0, 1, 2}^d
    chunk = max(1, min(count, 4096 // (L ** (ndim - 1))))

    def replicate(child):
        rng = np.random.default_rng(child)
        acc, acc_var, done = np.zeros(nbins), 0.0, 0
        acc_modes = np.zeros(S_modes.shape) if regime == "continuous" else None
        acc_cov = np.zeros(len(deltas))
        while done < count:
            b = min(chunk, count - done)
            if regime == "continuous":
                # antithetic offsets: each x is warped by ε and by −ε (the same law), which cancels the
                # part of the variance odd in ε — the offset × input interaction no control removes
                half = np.stack([fields.lattice_field(eps_spec, b // 2, rng) for _ in range(ndim)], axis=1)
                eps = np.concatenate([half, -half])
                coef = fields.sample_modes(S_modes, b // 2, rng)
                coef = np.concatenate([coef, coef])
                points = grid[None] + eps.reshape(b, ndim, -1)
                y = fields.evaluate_modes(coef, points, L).reshape((b,) + shape)
                acc_modes += np.sum(np.abs(coef) ** 2, axis=0)
            else:
                eps = np.stack([fields.lattice_field(eps_spec, b, rng) for _ in range(ndim)], axis=1)
                x = rng.standard_normal((b, 1) + shape)
                y = warp(x, eps, kernel=kernel, padding="periodic")[:, 0]
                for j, dlt in enumerate(deltas):
                    shifted = np.roll(x[:, 0], tuple(1 - v for v in dlt), axis=axes)
                    acc_cov[j] += float(np.sum(x[:, 0] * shifted)) / x[0, 0].size
            P = psd.periodogram(y)
            acc += psd.bin_spectrum(P, labels, nbins).sum(axis=0)
            acc_var += float(np.sum(y**2)) / y[0].size
            done += b
        return acc / count, acc_var / count, (acc_modes / count if regime == "continuous" else acc_cov / count)

    reps = map_threads(replicate, np.random.SeedSequence(seed).spawn(REPLICATES))
    out = {"binned": [r[0] for r in reps], "var_y": [r[1] for r in reps], "seed": seed}
    out["mode_power" if regime == "continuous" else "autocov"] = [r[2] for r in reps]
    for k in ("binned", "var_y", "mode_power", "autocov"):
        if k in out:
            out[k] = np.array(out[k])
    out["deltas"] = deltas
    _CACHE[key] = out
    return out


def _theory(name, form, sigma=None):
    """Binned lattice spectrum of ``name``: "eq13"/"eq41" (continuous) or "exact"/"eq46" (discretised)."""
    regime, ndim, L, _, kind, ell, sigma0, kernel = CASES[name]
    sigma = sigma0 if sigma is None else sigma
    shape = (L,) * ndim
    labels, nbins, _ = _bins(name)
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
        rho_fine = fields.periodic_correlation(kind, shape, ell, oversample=OVERSAMPLE)
        S = psd.alias_to_lattice(
            psd.eq13_modes(S_modes, L, rho_fine, sigma, OVERSAMPLE, taylor_zero_term=(form != "eq41")), L)
    else:
        rho = fields.periodic_correlation(kind, shape, ell)
        S = psd.discretised_spectrum(kernel, shape, sigma, rho, 1.0, form=form)
    return psd.bin_spectrum(S, labels, nbins)


def _theory_cached(name, form, sigma=None):
    key = ("theory", name, form, sigma)
    if key not in _CACHE:
        _CACHE[key] = _theory(name, form, sigma)
    return _CACHE[key]


def spectrum_replicates(report, name, factor):
    """Per-replicate binned spectrum estimates (R, nbins): control-variate corrected in the continuous regime."""
    sim = _simulate(report, name, factor)
    if CASES[name][0] != "continuous":
        return sim["binned"], sim["seed"]
    key = ("transfer", name)
    if key not in _CACHE:
        _CACHE[key] = _transfer(name, CASES[name][6])
    H = _CACHE[key]
    _, S_modes = fields.mode_spectrum("gaussian", CASES[name][2], X_LENGTH, ndim=CASES[name][1])
    modes_axes = tuple(range(S_modes.ndim))
    cond = np.tensordot(sim["mode_power"], H, axes=(tuple(range(1, S_modes.ndim + 1)), modes_axes))
    expected = np.tensordot(S_modes, H, axes=(modes_axes, modes_axes))
    return sim["binned"] - (cond - expected[None]), sim["seed"]


def variance_replicates(report, name, factor):
    """Per-replicate control-variate estimates of σ_y² (continuous: ȳ² − x̄²(realised) + σ_x²)."""
    sim = _simulate(report, name, factor)
    regime, ndim, L, _, _, _, sigma, kernel = CASES[name]
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, X_LENGTH, ndim=ndim)
        realised = sim["mode_power"].reshape(REPLICATES, -1).sum(axis=1)
        return sim["var_y"] - (realised - S_modes.sum()), S_modes.sum(), sim["seed"]
    G = _pair_sums(kernel, sigma)
    coef = np.array([np.prod([G[v - 1] for v in dlt]) for dlt in sim["deltas"]])
    cond = sim["autocov"] @ coef
    expected = coef[sim["deltas"].index((1,) * ndim)]  # E r̂(Δ) = δ_Δ0 for unit white x
    return sim["var_y"] - (cond - expected), expected, sim["seed"]


@pytest.fixture(scope="module")
def fam(report):
    report.register_family(FAMILY, alpha=ALPHA, max_checks=MAX_CHECKS)
    return report


def _kept(theory):
    return theory > NEGLIGIBLE * theory.max()


def _whitened(reps, theory, counts):
    keep = _kept(theory)
    c = counts[keep]
    return (reps[:, keep] / theory[keep]) @ c / c.sum()


def _score(reps, theory, counts, weights):
    keep = _kept(theory)
    c, w = counts[keep], weights[keep]
    return ((reps[:, keep] / theory[keep]) - 1.0) @ (c * w) / np.sum(c * w * w)


def _record_bins(report, name, equation, form, label, theory, factor, expected):
    reps, seed = spectrum_replicates(report, name, factor)
    est, se = batch_means(reps)
    keep = _kept(theory)
    z = (est - theory)[keep] / se[keep]
    note = (f"{label}; spectrum max|z|={np.max(np.abs(z)):.2f}, "
            f"median bin relative SE={np.median(se[keep] / theory[keep]):.3g}")
    checks = []
    for b in np.nonzero(keep)[0]:
        checks.append(report.check(equation, "spectrum_bin", form, dict(_params(name), bin=int(b)), theory[b], est[b],
                                   se[b], family=FAMILY, dof=DOF, note=note, expected=expected, seed=seed))
    return checks


def _record_pooled(report, name, equation, form, label, theory, factor, expected):
    """Whitened mean (theory 1) against ``theory``; returns the check."""
    reps, seed = spectrum_replicates(report, name, factor)
    _, _, counts = _bins(name)
    est, se = batch_means(_whitened(reps, theory, counts))
    return report.check(equation, "whitened mean", form, _params(name), 1.0, est, se, family=FAMILY, dof=DOF,
                        scale=1.0, expected=expected, seed=seed,
                        note=f"{label}; frequency-weighted mean of P̂_k/S_k over the kept bins")


def _main_form(name):
    return "eq13" if CASES[name][0] == "continuous" else "exact"


def _record_form(name):
    return "paper=exact" if CASES[name][0] == "continuous" else "exact"


# ----------------------------------------------------------------------------------- per-bin spectra
@pytest.mark.parametrize("name", list(CASES))
def test_eq13_spectrum_bins(fam, sample_factor, name):
    """Eq 13 (continuous, cell = domain) / our exact discretised form, bin by bin.

    Catches: a wrong α-sum or cell integral in eq13_modes, a wrong pair expectation, a warp engine
    that samples the wrong positions (each moves many bins by more than their SE).
    """
    label = "eq 13 (cell = periodic domain)" if CASES[name][0] == "continuous" else \
        "discretised exact (pair expectation, all j)"
    checks = _record_bins(fam, name, "13", _record_form(name), label, _theory_cached(name, _main_form(name)),
                          sample_factor, "agrees")
    bad = [c for c in checks if c.verdict != "agrees"]
    assert not bad, f"{len(bad)} of {len(checks)} bins disagree; first: {bad[0]}"


@pytest.mark.parametrize("name", list(CASES))
def test_eq13_whitened_mean(fam, sample_factor, name):
    """Pooled over the spectrum, every frequency alike: E[P̂_k/S_k] = 1.

    Catches: a scale error of the spectrum (L^N, the aliasing sum) or of its high-frequency tail,
    which the power-weighted pooled statistic (the variance, eqs 45/48) hardly sees.  Its resolution
    is in the record (the high-frequency bins of a smooth field carry most of the noise); where it
    resolves 1 %, the theory ×1.01 is recorded and must be rejected.
    """
    theory = _theory_cached(name, _main_form(name))
    chk = _record_pooled(fam, name, "13", _record_form(name), "scale", theory, sample_factor, "agrees")
    assert chk.verdict == "agrees", chk
    if chk.power_1pct >= 0.99:
        power = fam.check("13", "whitened mean[theory·1.01]", _record_form(name), _params(name), 1.01, chk.estimate,
                          chk.se, family=FAMILY, dof=DOF, scale=1.0, expected="disagrees", seed=chk.seed,
                          note="power check: must disagree")
        assert power.verdict == "disagrees", power


def _score_weights(name):
    key = ("weights", name)
    if key not in _CACHE:
        sigma = CASES[name][6]
        hi = _theory_cached(name, _main_form(name), sigma * (1 + SIGMA_STEP))
        lo = _theory_cached(name, _main_form(name), sigma * (1 - SIGMA_STEP))
        with np.errstate(divide="ignore", invalid="ignore"):
            w = (np.log(hi) - np.log(lo)) / (math.log1p(SIGMA_STEP) - math.log1p(-SIGMA_STEP))
        _CACHE[key] = np.nan_to_num(w)
    return _CACHE[key]


@pytest.mark.parametrize("name", list(CASES))
def test_eq13_sigma_score(fam, sample_factor, name):
    """The spectrum's shape in the direction of σ_ε: Σ w_k(P̂_k/S_k − 1)/Σ w_k² = 0.

    Catches: a wrong offset law (σ_ε, ρ_ε) or warp in the simulation or the theory: under σ_ε·(1+δ) the
    statistic is ≈ δ.  Power check: the theory with σ_ε ×1.01.
    """
    theory = _theory_cached(name, _main_form(name))
    w = _score_weights(name)
    reps, seed = spectrum_replicates(fam, name, sample_factor)
    _, _, counts = _bins(name)
    est, se = batch_means(_score(reps, theory, counts, w))
    chk = fam.check("13", "σ_ε score", _record_form(name), _params(name), 0.0, est, se, family=FAMILY, dof=DOF,
                    scale=1.0, expected="agrees", seed=seed,
                    note="Σ w_k (P̂_k/S_k − 1)/Σ w_k², w = ∂ln S/∂ln σ_ε; ≈ δ under σ_ε·(1+δ); "
                         "scale 1 = a 100 % σ_ε error, so the resolution is in units of relative σ_ε")
    assert chk.verdict == "agrees", chk
    if chk.resolution <= SIGMA_STEP:
        shifted = _theory_cached(name, _main_form(name), CASES[name][6] * (1 + SIGMA_STEP))
        keep = _kept(theory)
        c = counts[keep]
        predicted = float(np.sum(c * w[keep] * (shifted[keep] / theory[keep] - 1.0)) / np.sum(c * w[keep] ** 2))
        power = fam.check("13", "σ_ε score[σ_ε·1.01]", _record_form(name), _params(name), predicted, est, se,
                          family=FAMILY, dof=DOF, scale=1.0, seed=seed, expected="disagrees",
                          note=f"power check: the theory with σ_ε ×1.01 predicts {predicted:+.5f}")
        assert power.verdict == "disagrees", power


# ----------------------------------------------------------------------------------- paper forms known to be wrong
def test_eq41_literal_taylor_sum(fam, sample_factor):
    """Eq 41 as derived lacks the m = 0 Taylor term (the paper says so): the pooled statistic must disagree."""
    theory = _theory_cached("C1", "eq41")
    _record_bins(fam, "C1", "13", "paper", "eq 41 literal (Taylor sum from m = 1)", theory, sample_factor, "")
    chk = _record_pooled(fam, "C1", "13", "paper", "eq 41 literal", theory, sample_factor, "disagrees")
    assert chk.verdict == "disagrees", chk


@pytest.mark.parametrize("name", DISCRETISED)
def test_eq46_stationary_interpolant(fam, sample_factor, name):
    """Eq 46 treats the interpolated lattice field x*φ as stationary; it is cyclostationary (only the j = 0 term)."""
    theory = _theory_cached(name, "eq46")
    _record_bins(fam, name, "13", "paper", "eq 46 (stationary interpolant, j = 0 term)", theory, sample_factor, "")
    chk = _record_pooled(fam, name, "13", "paper", "eq 46", theory, sample_factor, "disagrees")
    assert chk.verdict == "disagrees", chk


# ----------------------------------------------------------------------------------- variances
def _record_variance(report, name, sample_factor):
    vals, expected_cv, seed = variance_replicates(report, name, sample_factor)
    regime, ndim, _, _, _, _, sigma, kernel = CASES[name]
    est, se = batch_means(vals)
    if regime == "continuous":
        equation, truth = "45", psd.sigma_y2_continuous(expected_cv)
        note = "σ_y² − (x̄²(realised) − σ_x²): eq 45 holds mode by mode, so the realisation's own energy is an exact control"
    else:
        equation, truth = "48", psd.sigma_y2_white(kernel, sigma, ndim)
        note = ("ȳ² − (Σ_Δ r̂_x(Δ)ΠG(Δ_k) − E[·]): x's realised autocovariance as an exact control; "
                f"theory σ_x²Φ₂₁ᵈ = {truth:.6g}")
    return equation, truth, est, se, seed, note


#: Variance records that do not reach 99 % power at 1 % in the default run (resolution in the record
#: and in the README).  None since the antithetic offsets (C5: 1.9 % → 0.7 %).
VARIANCE_RESOLUTION_LIMITED: set = set()


@pytest.mark.parametrize("name", list(CASES))
def test_eq45_eq48_variance(fam, sample_factor, name):
    """Eq 45 (continuous: σ_y² = σ_x²) and eq 48 (discretised: σ_y² = σ_x²Φ₂₁ᵈ, any ρ_ε), with ≥ 99 % power at 1 %.

    Catches: for eq 48, a wrong kernel or offset s.d. in the warp (Φ₂₁ moves); for eq 45, any loss of
    variance by the warp (e.g. interpolating x instead of evaluating it).  Power check: theory ×1.01.
    """
    equation, truth, est, se, seed, note = _record_variance(fam, name, sample_factor)
    chk = fam.check(equation, "sigma_y2", "paper=exact", _params(name), truth, est, se, family=FAMILY, dof=DOF,
                    expected="agrees", seed=seed, note=note)
    assert chk.verdict == "agrees", chk
    if name not in VARIANCE_RESOLUTION_LIMITED:
        assert chk.power_1pct >= 0.99, chk
    if chk.power_1pct >= 0.99:
        power = fam.check(equation, "sigma_y2[theory·1.01]", "paper=exact", _params(name), truth * 1.01, est, se,
                          family=FAMILY, dof=DOF, expected="disagrees", seed=seed, note="power check: must disagree")
        assert power.verdict == "disagrees", power


def test_eq47_route_variance(fam, sample_factor):
    """Eq 47's route, σ_x²[(φ*φ*N(0,2σ_ε²))(0)]^d, is not Φ₂₁ᵈ: eq 48 states the right value but does not follow from eq 47."""
    name = "D2"
    equation, _, est, se, seed, note = _record_variance(fam, name, sample_factor)
    _, ndim, _, _, _, _, sigma, kernel = CASES[name]
    chk = fam.check("48", "sigma_y2 via eq 47", "paper", _params(name), psd.sigma_y2_eq47(kernel, sigma, ndim), est,
                    se, family=FAMILY, dof=DOF, expected="disagrees", seed=seed, note=note)
    assert chk.verdict == "disagrees", chk
