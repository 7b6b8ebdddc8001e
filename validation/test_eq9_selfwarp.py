"""Eq 9 (§3.1): the SelfWarp weight-gradient variance σ²_∂w, its σ_x² dependence and the normalisation remedy.

Setup (``paper_notes/s03_statistics.md``, "Eq 9"): d = 2, x with N = 4 channels, IID N(0, σ_x²);
ε = a centred 3×3 periodic convolution of x (or of the batch-normalised x) from N to d channels,
weight rows rescaled to a prescribed norm; y = warp(x, ε) with ``tri``; ∇_y L IID N(0, 1).  σ²_∂w
is the per-position second moment of the weight gradient summed over the d·k² weights reading
one input channel.  Every run is paired (:mod:`_selfwarp`): the same x, weights and an independent
copy x' give σ²_∂w for ε = conv(x) (the real SelfWarp) and ε = conv(x') (the paper's assumption).

* ε independent of x: the exact form agrees; the paper's d N k² σ_x⁴ σ²_∂y Φ'₂₁Φ₂₁^{d−1} misses the
  (κ−1) term of x_{n,v+a} being one of the taps (≈ +2/(N k²) = 5.6 %) and must disagree.
  Power: the exact form ×1.01 and ×0.99 must disagree.
* ε = conv(x): the paired difference measures what the independence assumption costs.
* normalisation (x̃ = BN(x) feeds the convolution): at σ_x² = 4 the absolute value is the derived
  σ_x²·[…] (one σ_x² removed) — a wrong or missing normalisation moves it by a factor 4.
* slope of log σ²_∂w against log σ_x² at fixed σ_w (σ_ε ∝ σ_x): the exact form's slope (Φ₂₁ drifts
  with σ_ε; fitted with the Monte-Carlo points' weights) agrees; the paper's "quadratic" 2 is not
  what the SelfWarp does.
"""
import math

import numpy as np
import pytest

import _selfwarp
from warptheory import moments
from warptheory.montecarlo import SelfWarpCase
from warptheory.stats import FAMILY_BUDGET, batch_means

REPLICATES = 64
DOF = REPLICATES - 1
ALPHA = FAMILY_BUDGET["selfwarp"]
MAX_CHECKS = 16
# Paired Rao–Blackwell runs: relative s.d. per replicate 1.44 % at 4 batches (measured), so 12 batches
# give SE ≈ 0.10 % and a 99 %-power resolution ≈ 0.8 % (1 % needs SE ≤ 0.13 %).
BATCHES_FULL = 12
BATCHES_SLOPE = 1
SLOPE_SIGMA_X2 = (0.25, 1.0, 4.0)
NORMALISED_SIGMA_X2 = 4.0
MAIN = SelfWarpCase("tri", size=32, batch=4)
NORMALISED = SelfWarpCase("tri", sigma_x=math.sqrt(NORMALISED_SIGMA_X2), normalized=True, size=32, batch=4)
_cache = {}


@pytest.fixture(scope="module")
def fam(report):
    report.register_family("selfwarp", alpha=ALPHA, max_checks=MAX_CHECKS)
    return report


def _theory(case, form):
    return moments.selfwarp(case.kernel, case.effective_sigma_eps(), sigma_x=case.sigma_x, sigma_dy=case.sigma_dy,
                            channels=case.channels, d=case.d, k=case.k, form=form,
                            normalized=case.normalized).second_moment


def _params(case):
    p = case.params()
    return {k: p[k] for k in ("kernel", "sigma_eps", "sigma_x", "sigma_dy", "channels", "d", "k", "normalized")}


def _run(report, case, batches):
    key = (case, batches)
    if key not in _cache:
        seed = report.case_seed("selfwarp paired", case, REPLICATES, batches)
        _cache[key] = (_selfwarp.paired_run(case, replicates=REPLICATES, batches=batches, seed=seed), seed)
    return _cache[key]


def _independent(report, case, sample_factor):
    vals, seed = _run(report, case, BATCHES_FULL * sample_factor)
    est, se = batch_means(vals[:, _selfwarp.INDEPENDENT])
    return est, se, seed


@pytest.mark.parametrize("case", [MAIN, NORMALISED], ids=["plain", "normalised"])
def test_eq9_selfwarp_independent_eps(fam, sample_factor, case):
    """σ²_∂w with ε independent of x: exact form agrees (≥ 99 % power at 1 %), paper form disagrees.

    Catches: a dropped kurtosis term, a wrong window energy W/W', and (normalised case at σ_x² = 4) a
    normalisation that does not remove one σ_x² (the value moves by ×4).
    """
    est, se, seed = _independent(fam, case, sample_factor)
    exact, paper = _theory(case, "exact"), _theory(case, "paper")
    chk = fam.check("9", "sigma2_dw", "exact", _params(case), exact, est, se, family="selfwarp", dof=DOF,
                    expected="agrees", seed=seed)
    assert chk.verdict == "agrees", chk
    assert chk.power_1pct >= 0.99, chk
    bad = fam.check("9", "sigma2_dw", "paper", _params(case), paper, est, se, family="selfwarp", dof=DOF,
                    scale=exact, expected="disagrees", seed=seed,
                    note="eq 9 drops the (κ−1) term of x_{n,v+a} being a tap of ∇_ε L (+2/(N k²) for Gaussian x)")
    assert bad.verdict == "disagrees", bad


@pytest.mark.parametrize("factor", [1.01, 0.99], ids=["plus1pct", "minus1pct"])
def test_eq9_power_rejects_one_percent(fam, sample_factor, factor):
    """Power check of the selfwarp family: the same run rejects the exact form moved by ±1 %."""
    est, se, seed = _independent(fam, MAIN, sample_factor)
    chk = fam.check("9", f"sigma2_dw[theory·{factor:g}]", "exact", _params(MAIN), _theory(MAIN, "exact") * factor, est,
                    se, family="selfwarp", dof=DOF, expected="disagrees", seed=seed, note="power check: must disagree")
    assert chk.verdict == "disagrees", chk


@pytest.mark.parametrize("case", [MAIN, NORMALISED], ids=["plain", "normalised"])
def test_eq9_selfwarp_eps_from_x(fam, sample_factor, case):
    """The real SelfWarp, ε = conv(x): paired relative difference to ε independent of x (the paper's assumption: 0).

    Catches: an estimator that ignores how ε is produced (the difference would be exactly 0).
    """
    vals, seed = _run(fam, case, BATCHES_FULL * sample_factor)
    exact = _theory(case, "exact")
    diff = (vals[:, _selfwarp.DEPENDENT] - vals[:, _selfwarp.INDEPENDENT]) / exact
    est, se = batch_means(diff)
    chk = fam.check("9", "sigma2_dw(ε=conv x) − sigma2_dw(ε ⟂ x), relative", "paper", _params(case), 0.0, est, se,
                    family="selfwarp", dof=DOF, scale=1.0, expected="disagrees", seed=seed,
                    note=f"dependence effect {100 * est:+.3f} % ± {100 * se:.3f} % of σ²_∂w: the paper assumes ε "
                         f"independent of x")
    assert chk.verdict == "disagrees", chk


def _slope(points, weights=None):
    """Weighted least squares of log S on log σ_x²: slope and its SE.

    Weights 1/(SE/S)² of the Monte-Carlo points; a theory curve must be fitted with the same weights
    (``weights``), because log S is not linear in log σ_x² (Φ₂₁ drifts with σ_ε) and the fitted slope
    of a curve depends on them.
    """
    lx = np.log([p[0] for p in points])
    ly = np.log([p[1] for p in points])
    w = 1.0 / np.square([p[2] / p[1] for p in points]) if weights is None else np.asarray(weights)
    xm = np.sum(w * lx) / np.sum(w)
    sxx = np.sum(w * (lx - xm) ** 2)
    slope = np.sum(w * (lx - xm) * ly) / sxx
    return float(slope), float(1.0 / math.sqrt(sxx))


def _slope_cases():
    sigma_w = 0.5 / math.sqrt(4 * 9)  # σ_ε = 0.5 at σ_x = 1
    return sigma_w, [SelfWarpCase("tri", sigma_x=math.sqrt(s), fixed_sigma_w=sigma_w, size=32, batch=4)
                     for s in SLOPE_SIGMA_X2]


def test_eq9_selfwarp_loglog_slope(fam, sample_factor):
    """Fixed σ_w: slope of log σ²_∂w in log σ_x² — exact (independent ε) agrees; the real SelfWarp's is not the paper's 2.

    Catches: a σ_x scaling error in the exact form or the sampler (the slope would move by ≥ 1).
    """
    sigma_w, cases = _slope_cases()
    indep, dep, theo, seeds = [], [], [], []
    for sx2, case in zip(SLOPE_SIGMA_X2, cases):
        vals, seed = _run(fam, case, BATCHES_SLOPE * sample_factor)
        for col, out in ((_selfwarp.INDEPENDENT, indep), (_selfwarp.DEPENDENT, dep)):
            est, se = batch_means(vals[:, col])
            out.append((sx2, est, se))
        theo.append((sx2, _theory(case, "exact"), 1.0))
        seeds.append(seed)
    params = {"kernel": "tri", "d": 2, "channels": 4, "k": 3, "sigma_w": sigma_w, "sigma_x2": list(SLOPE_SIGMA_X2)}
    theory_slope, _ = _slope(theo, weights=[(est / se) ** 2 for _, est, se in indep])
    slope, slope_se = _slope(indep)
    chk = fam.check("9", "loglog_slope_sigma_x2 (ε ⟂ x)", "exact", params, theory_slope, slope, slope_se,
                    family="selfwarp", dof=DOF, expected="agrees", seed=seeds[1],
                    note="σ_ε ∝ σ_x at fixed σ_w, so Φ₂₁ drifts and the exact slope is below 2")
    assert chk.verdict == "agrees", chk
    slope_dep, se_dep = _slope(dep)
    paper = fam.check("9", "loglog_slope_sigma_x2 (ε = conv x)", "paper", params, 2.0, slope_dep, se_dep,
                      family="selfwarp", dof=DOF, expected="disagrees", seed=seeds[1],
                      note=f"§3.1: 'depends quadratically on σ_x²'; the exact slope is {theory_slope:.4f} because "
                           f"Φ₂₁ drifts as σ_ε grows with σ_x; ε depending on x moves it by {slope_dep - slope:+.4f}")
    assert paper.verdict == "disagrees", paper
