"""Power and calibration of the validation machinery (``paper_notes/s03_statistics.md``, "How the suite decides").

* The same checks that accept the theory reject it perturbed by 1 % (Φ_{2,1}·1.01,
  Φ'_{2,1}·1.01, a 1 % larger second moment) on the default-size grid runs.
* Calibration: over many small independent experiments the z-test's rejection rate is
  the nominal 5 % for the true theory and the noncentral-t prediction for a shifted one,
  so the thresholds and the power formula mean what they say.
"""
import math

import numpy as np
import pytest
from scipy import stats as st

import _iid_grid as grid
from warptheory import moments, phi_ab
from warptheory.montecarlo import _warp_all
from warptheory.stats import FAMILY_BUDGET

MAX_CHECKS = 10


def _register(report):
    report.register_family("power", alpha=FAMILY_BUDGET["power"], max_checks=MAX_CHECKS)
    report.register_family("iid", alpha=grid.IID_ALPHA, max_checks=grid.IID_MAX_CHECKS)


CASE_ID = "tri-d1-N1-s0.05"  # μ = 0, d = 1: each second moment is one Φ term, so Φ·1.01 is a 1 % error


@pytest.mark.parametrize("equation,quantity", [("5", "y"), ("7", "dx"), ("8", "deps")])
def test_power_rejects_one_percent_perturbation(report, sample_factor, equation, quantity):
    _register(report)
    case = grid.CASES[CASE_ID]
    res = grid.result(CASE_ID, sample_factor)
    est, se, dof = res.estimate(quantity, "second_moment")
    s = case.sigma_eps
    if quantity == "deps":
        perturbed = case.channels * case.sigma_x**2 * case.sigma_dy**2 * 1.01 * phi_ab("tri", s, 2, 1, True)
        label = "Φ'_{2,1}·1.01"
    else:
        sd = case.sigma_x if quantity == "y" else case.sigma_dy
        perturbed = sd**2 * 1.01 * phi_ab("tri", s, 2, 1)
        label = "Φ_{2,1}·1.01"
    exact = grid.theory(case, "exact")[quantity].second_moment
    assert perturbed == pytest.approx(1.01 * exact, rel=1e-12)
    chk = report.check(equation, f"{quantity}.second_moment[{label}]", "exact", grid.params(case, equation),
                       perturbed, est, se, family="iid", dof=dof, note="power check: must disagree")
    assert chk.verdict == "disagrees", chk


N_EXPERIMENTS = 400
REPS = 16
SAMPLES = 256


def _experiments(seed):
    """Per experiment, R replicate estimates of E[y²] for tri, d = 1, σ_ε = 0.5, x ~ N(0,1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_EXPERIMENTS * REPS, 1, SAMPLES))
    eps = 0.5 * rng.standard_normal((N_EXPERIMENTS * REPS, 1, SAMPLES))
    y = _warp_all(x, eps, np.zeros_like(x), "tri", "periodic", None)[0]
    return np.mean(y**2, axis=(1, 2)).reshape(N_EXPERIMENTS, REPS)


def test_power_calibration_null_and_shift(report):
    _register(report)
    reps = _experiments(424242)
    truth = moments.forward("tri", 0.5, mu_x=0.0, sigma_x=1.0, d=1).second_moment
    means = reps.mean(axis=1)
    ses = reps.std(axis=1, ddof=1) / math.sqrt(REPS)
    crit = st.t.isf(0.025, REPS - 1)
    # null: the true theory is rejected at the nominal 5 %
    rate0 = float(np.mean(np.abs((means - truth) / ses) > crit))
    c0 = report.check("calibration", "null_rejection_rate_5pct", "exact", {"experiments": N_EXPERIMENTS, "R": REPS},
                      0.05, rate0, math.sqrt(0.05 * 0.95 / N_EXPERIMENTS), family="power")
    # shift: a theory off by δ is rejected at the noncentral-t rate, δ set for a predicted ~50 %
    se_true = float(np.std(reps, ddof=1) / math.sqrt(REPS))
    delta = crit * se_true
    predicted = float(st.nct.sf(crit, REPS - 1, delta / se_true) + st.nct.cdf(-crit, REPS - 1, delta / se_true))
    rate1 = float(np.mean(np.abs((means - (truth + delta)) / ses) > crit))
    c1 = report.check("calibration", "shift_rejection_rate", "exact",
                      {"experiments": N_EXPERIMENTS, "R": REPS, "shift_over_se": crit},
                      predicted, rate1, math.sqrt(predicted * (1 - predicted) / N_EXPERIMENTS), family="power")
    assert c0.verdict == "agrees", c0
    assert c1.verdict == "agrees", c1
