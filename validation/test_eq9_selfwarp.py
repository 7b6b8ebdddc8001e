"""Eq 9 (§3.1): the SelfWarp weight-gradient variance σ²_∂w and its dependence on σ_x².

Setup (``paper_notes/s03_statistics.md``, "Eq 9"): d = 2, x with N = 4 channels, IID
N(0, σ_x²); ε = a centred k×k (k = 3) periodic convolution of x (or of the batch-normalised
x) from N to d channels, weight rows rescaled to a prescribed norm; y = warp(x, ε) with
``tri``/``cos``; ∇_y L IID N(0, 1).  σ²_∂w is the per-position second moment of the weight
gradient summed over the d·k² weights reading one input channel (the full gradient of one
weight over P positions has second moment P/(d k²) of it, because ∇_y L has zero mean).

* ε from an independent copy of x (the paper's assumption): the exact form agrees; the
  paper's d N k² σ_x⁴ σ²_∂y Φ'_{2,1} Φ_{2,1}^{d-1} misses the (κ−1) = 2 term from
  x_{n,v+a} being one of the taps (≈ +2/(N k²) = 5.6 % here): strict xfail.
* ε = conv(x) (the real SelfWarp): the independence assumption fails; the measured effect
  is recorded (estimate vs the exact independent-ε form).
* slope of log σ²_∂w against log σ_x² at fixed σ_w: ≈ 2 (minus the drift of Φ_{2,1} as
  σ_ε grows with σ_x) without normalisation, exactly 1 with it.
"""
import math

import numpy as np
import pytest

from warptheory import moments
from warptheory.montecarlo import SelfWarpCase, run_selfwarp
from warptheory.stats import FAMILY_BUDGET, batch_means, required_se, z_threshold

REPLICATES = 64
ALPHA = FAMILY_BUDGET["selfwarp"]
MAX_CHECKS = 16
BATCHES_FULL = 18  # sized from a pilot: rel. SE 0.14 % at 12 batches gave power 0.96; 18 → ≥ 0.99
BATCHES_SLOPE = 1
SLOPE_SIGMA_X2 = (0.25, 1.0, 4.0)


def _register(report):
    report.register_family("selfwarp", alpha=ALPHA, max_checks=MAX_CHECKS)


def _theory(case, form):
    return moments.selfwarp(case.kernel, case.effective_sigma_eps(), sigma_x=case.sigma_x, sigma_dy=case.sigma_dy,
                            channels=case.channels, d=case.d, k=case.k, form=form,
                            normalized=case.normalized).second_moment


def _params(case):
    p = case.params()
    return {k: p[k] for k in ("kernel", "sigma_eps", "sigma_x", "sigma_dy", "channels", "d", "k", "normalized",
                              "independent")}


_cache = {}


def _run(case, batches, seed):
    key = (case, batches, seed)
    if key not in _cache:
        _cache[key] = batch_means(run_selfwarp(case, replicates=REPLICATES, batches=batches, seed=seed))
    return _cache[key]


_PAPER_XFAIL = pytest.mark.xfail(strict=True, reason="eq 9 drops the (κ−1) term of x_{n,v+a} being a tap of "
                                                     "∇_ε L (+2/(N k²) for Gaussian x)")


@pytest.mark.parametrize("kernel", ["tri"])
@pytest.mark.parametrize("form", ["exact", pytest.param("paper", marks=_PAPER_XFAIL)])
def test_eq9_selfwarp_independent_eps(report, sample_factor, kernel, form):
    _register(report)
    case = SelfWarpCase(kernel, independent=True, size=32, batch=4)
    est, se = _run(case, BATCHES_FULL * sample_factor, 901)
    chk = report.check("9", "sigma2_dw", form, _params(case), _theory(case, form), est, se, family="selfwarp",
                       dof=REPLICATES - 1, scale=_theory(case, "exact"))
    assert chk.verdict == "agrees", chk
    assert chk.power_1pct >= 0.99, chk


@pytest.mark.parametrize("factor", [1.01, 0.99], ids=["plus1pct", "minus1pct"])
def test_eq9_power_rejects_one_percent(report, sample_factor, factor):
    """Power check of the selfwarp family: the same run rejects the exact form moved by ±1 %."""
    _register(report)
    case = SelfWarpCase("tri", independent=True, size=32, batch=4)
    est, se = _run(case, BATCHES_FULL * sample_factor, 901)  # the run of the eq-9 check above
    perturbed = _theory(case, "exact") * factor
    chk = report.check("9", f"sigma2_dw[theory·{factor:g}]", "exact", _params(case), perturbed, est, se,
                       family="selfwarp", dof=REPLICATES - 1, note="power check: must disagree")
    assert chk.verdict == "disagrees", chk


@pytest.mark.parametrize("kernel", ["tri"])
def test_eq9_selfwarp_eps_from_x(report, sample_factor, kernel):
    """The real SelfWarp: ε = conv(x).  Recorded against the independent-ε exact form."""
    _register(report)
    case = SelfWarpCase(kernel, independent=False, size=32, batch=4)
    est, se = _run(case, BATCHES_FULL * sample_factor, 902)
    th = _theory(case, "exact")
    chk = report.check("9", "sigma2_dw[eps=conv(x)]", "exact", _params(case), th, est, se, family="selfwarp",
                       dof=REPLICATES - 1, note=f"dependence effect {est / th - 1:+.4f} ± {se / th:.4f}")
    # The effect of ε depending on x is what this measures; it is reported, and it must be
    # small (the paper's independence approximation is good to a few per cent here).
    assert abs(est / th - 1) < 0.05, chk


def _slope(points):
    """Weighted least squares of log S on log σ_x²: slope and its SE."""
    lx = np.log([p[0] for p in points])
    ly = np.log([p[1] for p in points])
    w = 1.0 / np.square([p[2] / p[1] for p in points])
    xm = np.sum(w * lx) / np.sum(w)
    sxx = np.sum(w * (lx - xm) ** 2)
    slope = np.sum(w * (lx - xm) * ly) / sxx
    return float(slope), float(1.0 / math.sqrt(sxx))


_SLOPE_XFAIL = pytest.mark.xfail(strict=True, reason="ε = conv(x): the dependence effect changes with σ_ε, so the "
                                                     "plain slope (≈1.961 measured) is below the independent-ε 1.988")


@pytest.mark.parametrize("normalized", [pytest.param(False, marks=_SLOPE_XFAIL), True], ids=["plain", "normalised"])
def test_eq9_selfwarp_loglog_slope(report, sample_factor, normalized):
    """Fixed σ_w (σ_ε = 0.5 at σ_x = 1): slope in σ_x² is ≈ 2 plain and 1 with a normalisation layer."""
    _register(report)
    sigma_w = 0.5 / math.sqrt(4 * 9)
    pts, theo = [], []
    for j, sx2 in enumerate(SLOPE_SIGMA_X2):
        case = SelfWarpCase("tri", sigma_x=math.sqrt(sx2), fixed_sigma_w=sigma_w, normalized=normalized,
                            size=32, batch=4)
        est, se = _run(case, BATCHES_SLOPE * sample_factor, 910 + j + 10 * normalized)
        pts.append((sx2, est, se))
        theo.append((sx2, _theory(case, "exact"), 1.0))
    slope, slope_se = _slope(pts)
    theory_slope, _ = _slope(theo)
    chk = report.check("9", "loglog_slope_sigma_x2" + ("[normalised]" if normalized else ""), "exact",
                       {"kernel": "tri", "d": 2, "channels": 4, "k": 3, "sigma_w": sigma_w,
                        "sigma_x2": list(SLOPE_SIGMA_X2), "normalized": normalized},
                       theory_slope, slope, slope_se, family="selfwarp", dof=REPLICATES - 1)
    if normalized:
        assert theory_slope == pytest.approx(1.0, abs=1e-12)
    assert chk.verdict == "agrees", chk
