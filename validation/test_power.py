"""Power of the iid family (``paper_notes/s03_statistics.md``, "How the suite decides").

The same checks that accept the theory reject it perturbed by 1 % (Φ_{2,1}·1.01, Φ'_{2,1}·1.01:
a 1 % larger second moment) on the default-size grid run.  Every other family has its power
checks next to its checks (``test_eq9_selfwarp.py``, ``test_eq13_psd.py``,
``test_eq14_orthogonality.py``, ``test_calibration.py``), and every record that asserts agreement
also asserts ``power_1pct ≥ 0.99`` (or, deterministic, a bound that resolves 1 %).
"""
import pytest

import _iid_grid as grid
from warptheory import phi_ab

CASE_ID = "tri-d1-N1-s0.05"  # μ = 0, d = 1: each second moment is one Φ term, so Φ·1.01 is a 1 % error


@pytest.mark.parametrize("equation,quantity", [("5", "y"), ("7", "dx"), ("8", "deps")])
def test_power_rejects_one_percent_perturbation(report, sample_factor, equation, quantity):
    report.register_family("iid", alpha=grid.IID_ALPHA, max_checks=grid.IID_MAX_CHECKS)
    case = grid.CASES[CASE_ID]
    res, seed = grid.result(report, CASE_ID, sample_factor)
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
    chk = report.check(equation, f"{quantity}.second_moment[{label}]", "paper=exact", grid.params(case, equation),
                       perturbed, est, se, family="iid", dof=dof, expected="disagrees", seed=seed,
                       note="power check: must disagree")
    assert chk.verdict == "disagrees", chk
