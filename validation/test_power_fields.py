r"""Power checks of the ``fields`` (eqs 13, 45, 48) and ``orthogonality`` (eqs 14, 49) families.

The project standard asks every family of checks to show that it rejects a slightly wrong theory
(``paper_notes/s03_statistics.md``, "How the suite decides").  These checks reuse the samples,
replicates, standard errors and thresholds of :mod:`test_eq13_psd` and :mod:`test_eq14_orthogonality`
(their module-level caches: in a full ``pytest validation`` run nothing is simulated twice) and
record a perturbed theory, named ``quantity[what·factor]``, which must *disagree*.  Each record
counts in its family's ``max_checks`` (fields 751 + 27 ≤ 900, orthogonality 95 + 5 ≤ 100).

fields (random, Student t with 63 dof, |z| > 5.57)
    * pooled variances (eqs 45, 48): σ_y²·(1 + δ).  δ = 1 % where the SE allows it (eq 48, 1-D);
      the continuous cases (eq 45) have a relative SE of ≈ 0.3 % (1-D) and 1.7 % (2-D) — the
      variance of one smooth field (ℓ_x = 6 px) over 128 px has few degrees of freedom — so
      there the smallest δ with ≥ 99 % power is ≈ 3 % and 15 %.
    * per-bin spectrum, S·(1 + δ): the documented per-bin detectable error, δ = 6.5 % (15 % for
      the 2-D continuous case C5, whose radial bins hold few frequencies).
    * per-bin spectrum, eq 13 / the exact discretised form evaluated with σ_ε·(1 + δ): a change
      of *shape* (eq 45 does not depend on σ_ε at all, so the variance check cannot see it);
      δ = 3 % (continuous 1-D), 5 % (C5), 10 % (discretised, where σ_ε = 0.3 moves S little).
    A spectrum power check records one bin: the one with the largest expected shift
    |ΔS_b|/SE_b (chosen from the theory difference and the SE, not from the estimate), and
    asserts that its predicted power is ≥ 0.99; the note gives max |z| over all bins and how
    many bins reject.

orthogonality (deterministic, "se" = :func:`~warptheory.orthogonality.discretisation_spread`)
    The weak form ⟨h, P g⟩/n^d at the finest grid against ∫ h g · limit · 1.01 (gram_limit for
    KKᵀ, 1/|J∘f⁻¹| for the mean-preserving KᵀK and for unwarp∘warp, eq 49).  The check rejects
    iff |z| > 4.89; no probability is involved.  For the non-mean-preserving kernels (cos,
    sqrt_tri) the spread at n ≤ 16384 is ≈ 1.1–1.5 % of the value, so a 1 % error is not
    resolvable: the record for cos KᵀK uses gram_limit·1.08, the smallest round factor that
    the finest grid resolves (gram_limit·1.01 gives z ≈ −0.6).
"""
from __future__ import annotations

import numpy as np
import pytest

import test_eq13_psd as psd_checks
import test_eq14_orthogonality as orth_checks
from warptheory import fields, psd
from warptheory.orthogonality import discretisation_spread
from warptheory.stats import TARGET_POWER, batch_means, power

DOF = psd_checks.REPLICATES - 1

# σ_y²·factor.  Smallest round factor with ≥ 99 % power at the default sample size (asserted below).
VARIANCE_FACTOR = {"C1": 1.03, "C2": 1.03, "C3": 1.03, "C4": 1.03, "C5": 1.15,
                   "D1": 1.01, "D2": 1.01, "D3": 1.01, "D4": 1.02}
# S·factor on every bin: the documented per-bin detectable error (6.5 %); C5's bins are noisier.
SPECTRUM_FACTOR = {name: 1.065 for name in psd_checks.CASES} | {"C5": 1.15}
# theory evaluated with σ_ε·factor.
SIGMA_FACTOR = {"C1": 1.03, "C2": 1.03, "C3": 1.03, "C4": 1.03, "C5": 1.05,
                "D1": 1.10, "D2": 1.10, "D3": 1.10, "D4": 1.10}


@pytest.fixture(scope="module")
def fields_fam(report):
    report.register_family(psd_checks.FAMILY, alpha=psd_checks.ALPHA, max_checks=psd_checks.MAX_CHECKS)
    return report


@pytest.fixture(scope="module")
def orth_fam(report):
    report.register_family(orth_checks.FAMILY, alpha=orth_checks.ALPHA, max_checks=orth_checks.MAX_CHECKS)
    return report


def _form(name):
    return "eq13" if psd_checks.CASES[name][0] == "continuous" else "exact"


def _spectrum_theory(name, sigma_eps):
    """Binned theory of ``name`` (the form its agreeing check uses) with σ_ε replaced."""
    regime, ndim, L, _, kind, ell, _, kernel = psd_checks.CASES[name]
    shape = (L,) * ndim
    rho = fields.periodic_correlation(kind, shape, ell)
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, psd_checks.X_LENGTH, ndim=ndim)
        oversample = 2
        rho_fine = fields.periodic_correlation(kind, shape, ell, oversample=oversample)
        S = psd.alias_to_lattice(psd.eq13_modes(S_modes, L, rho_fine, sigma_eps, oversample), L)
    else:
        S = psd.discretised_spectrum(kernel, shape, sigma_eps, rho, 1.0, form="exact")
    labels, nbins = psd.spectrum_bins(shape)
    return psd.bin_spectrum(S, labels, nbins)


def _variance_theory(name):
    regime, ndim, L, _, _, _, sigma, kernel = psd_checks.CASES[name]
    if regime == "continuous":
        _, S_modes = fields.mode_spectrum("gaussian", L, psd_checks.X_LENGTH, ndim=ndim)
        return "45", psd.sigma_y2_continuous(S_modes.sum())
    return "48", psd.sigma_y2_white(kernel, sigma, ndim)


@pytest.mark.parametrize("name", list(psd_checks.CASES))
def test_fields_variance_power(fields_fam, sample_factor, name):
    """Eqs 45/48: the pooled-variance check rejects σ_y²·factor with ≥ 99 % predicted power."""
    _, var = psd_checks._simulate(name, sample_factor)
    est, se = batch_means(var)
    equation, truth = _variance_theory(name)
    factor = VARIANCE_FACTOR[name]
    thr = fields_fam.threshold(psd_checks.FAMILY, DOF)
    expected = power(factor - 1.0, truth, se, thr, DOF)
    chk = fields_fam.check(equation, f"sigma_y2[theory·{factor:g}]", "paper", psd_checks._params(name),
                           truth * factor, est, se, family=psd_checks.FAMILY, dof=DOF,
                           note=f"power check: must disagree; predicted power {expected:.4f}")
    print(f"[power eq {equation}] {name}: σ_y²·{factor:g} z={chk.z:.2f}, predicted power {expected:.4f}")
    assert expected >= TARGET_POWER, (name, factor, expected)
    assert chk.verdict == "disagrees", chk


def _record_spectrum_power(report, sample_factor, name, perturbed, truth, label, factor_note):
    binned, _ = psd_checks._simulate(name, sample_factor)
    est, se = batch_means(binned)
    keep = truth > psd_checks.NEGLIGIBLE * truth.max()  # the bins the agreeing check records
    bins = np.nonzero(keep)[0]
    shift = np.abs(perturbed - truth)[bins] / se[bins]
    b = int(bins[np.argmax(shift)])
    thr = report.threshold(psd_checks.FAMILY, DOF)
    expected = power((perturbed[b] - truth[b]) / truth[b], truth[b], se[b], thr, DOF)
    z_all = (est - perturbed)[bins] / se[bins]
    note = (f"power check: must disagree; {factor_note}; bin of largest |ΔS|/SE, predicted power "
            f"{expected:.4f}; over all {bins.size} bins max|z|={np.max(np.abs(z_all)):.2f}, "
            f"{int(np.sum(np.abs(z_all) > thr))} reject")
    chk = report.check("13", f"spectrum_bin[{label}]", "paper" if _form(name) == "eq13" else "exact",
                       dict(psd_checks._params(name), bin=b), perturbed[b], est[b], se[b],
                       family=psd_checks.FAMILY, dof=DOF, note=note)
    print(f"[power eq 13] {name} {label}: z={chk.z:.2f}; {note}")
    assert expected >= TARGET_POWER, (name, label, expected)
    assert chk.verdict == "disagrees", chk


def _truth(name):
    truth = _spectrum_theory(name, psd_checks.CASES[name][6])
    # the re-implementation above must be the agreeing check's theory, bit for bit
    np.testing.assert_array_equal(truth, psd_checks._theory(name, _form(name)))
    return truth


@pytest.mark.parametrize("name", list(psd_checks.CASES))
def test_fields_spectrum_scale_power(fields_fam, sample_factor, name):
    """Eq 13 / exact discretised form: every bin ×factor is rejected in the most sensitive bin."""
    truth = _truth(name)
    factor = SPECTRUM_FACTOR[name]
    _record_spectrum_power(fields_fam, sample_factor, name, truth * factor, truth, f"theory·{factor:g}", f"S·{factor:g}")


@pytest.mark.parametrize("name", list(psd_checks.CASES))
def test_fields_spectrum_sigma_power(fields_fam, sample_factor, name):
    """Eq 13 / exact discretised form with σ_ε·factor: a wrong spectral shape is rejected."""
    truth = _truth(name)
    factor = SIGMA_FACTOR[name]
    perturbed = _spectrum_theory(name, psd_checks.CASES[name][6] * factor)
    _record_spectrum_power(fields_fam, sample_factor, name, perturbed, truth, f"σ_ε·{factor:g}",
                           f"σ_ε = {psd_checks.CASES[name][6] * factor:g} instead of {psd_checks.CASES[name][6]:g}")


# (equation, kernel, product, d, operator, form, factor): the limit of the agreeing weak-form check ×factor.
ORTHOGONALITY_CASES = [
    ("14", "tri", "KKt", 1, "matrix", "exact", 1.01),
    ("14", "tri", "KtK", 1, "matrix", "paper", 1.01),
    ("14", "tri", "KKt", 2, "matrix", "exact", 1.01),
    ("49", "tri", "KtK", 1, "engine", "paper", 1.01),
    ("14", "cos", "KtK", 1, "matrix", "exact", 1.08),  # 1.01 is below this kernel's resolution (z ≈ -0.6)
]


@pytest.mark.parametrize("equation,kernel,product,ndim,op,form,factor", ORTHOGONALITY_CASES,
                         ids=[f"eq{c[0]}-{c[1]}-{c[2]}-d{c[3]}-{c[5]}x{c[6]:g}" for c in ORTHOGONALITY_CASES])
def test_orthogonality_power(orth_fam, equation, kernel, product, ndim, op, form, factor):
    """Weak form at the finest grid against limit·factor, with the agreeing check's 'se'."""
    study = orth_checks._study(kernel, product, ndim, op)
    values = study[form]["weak_value"]
    truth = float(study[form]["weak_theory"][-1])
    estimate = float(values[-1])
    se = max(discretisation_spread(values), 1e-13)  # as in test_eq14_orthogonality._record
    thr = orth_fam.threshold(orth_checks.FAMILY)
    smallest = (abs(estimate - truth) + thr * se) / abs(truth)  # relative error this grid resolves
    limit = "gram_limit" if form == "exact" else "1/|J|"
    params = {"kernel": kernel, "product": product, "d": ndim, "sense": "weak",
              "ns": "/".join(map(str, study["ns"]))}
    note = (f"power check: must disagree; deterministic; z of the true limit "
            f"{(estimate - truth) / se:.2f}; smallest resolvable relative error {smallest:.3g}")
    chk = orth_fam.check(equation, f"{product} weak[{limit}·{factor:g}]", form, params, truth * factor, estimate,
                         se, family=orth_checks.FAMILY, scale=1.0, note=note)
    print(f"[power eq {equation}] {kernel} {product} d={ndim} {op} {limit}·{factor:g}: z={chk.z:.2f}; {note}")
    assert chk.verdict == "disagrees", chk
