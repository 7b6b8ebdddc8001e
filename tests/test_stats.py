"""Tests of warptheory.stats: thresholds, batch means, power, the report."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from warptheory.stats import (FAMILY_BUDGET, SUITE_FALSE_ALARM_BUDGET, ValidationReport, batch_means, make_check,
                              power, required_se, z_threshold)


def test_budget_shares_sum_to_suite_budget():
    assert sum(FAMILY_BUDGET.values()) == pytest.approx(SUITE_FALSE_ALARM_BUDGET, rel=1e-12)
    assert SUITE_FALSE_ALARM_BUDGET <= 1e-3


@settings(max_examples=30)
@given(alpha=st.floats(1e-6, 0.5), n=st.integers(1, 10_000))
def test_threshold_tail_probability_is_alpha_over_2n(alpha, n):
    thr = z_threshold(alpha, n)
    # independent route: the normal survival function at the threshold
    assert 2 * n * sst.norm.sf(thr) == pytest.approx(alpha, rel=1e-9)
    assert z_threshold(alpha, n, dof=20) > thr


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, "0.1"])
def test_threshold_rejects_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        z_threshold(bad, 10)


def test_batch_means_matches_definition_and_rejects_one_replicate():
    v = np.array([1.0, 3.0, 2.0, 6.0])
    m, se = batch_means(v)
    assert m == pytest.approx(3.0)
    assert se == pytest.approx(np.std(v, ddof=1) / 2.0)
    with pytest.raises(ValueError, match="replicate_values"):
        batch_means([1.0])


def test_power_equals_rejection_probability_by_simulation():
    thr, se, rel, scale = 2.0, 1.0, 0.02, 100.0  # shift 2 SE
    rng = np.random.default_rng(1)
    z = rng.standard_normal(200_000) + rel * scale / se
    assert power(rel, scale, se, thr) == pytest.approx(np.mean(np.abs(z) > thr), abs=0.005)


def test_required_se_gives_target_power():
    thr = z_threshold(3e-4, 400)
    se = required_se(2.0, thr)
    assert power(0.01, 2.0, se, thr) == pytest.approx(0.99, abs=1e-6)


def test_check_verdicts_and_zero_se():
    c = make_check("5", "mean", "exact", {}, 1.0, 1.0 + 6e-3, 1e-3, threshold=5.0)
    assert c.verdict == "disagrees" and c.z == pytest.approx(6.0)
    c = make_check("8", "mean", "exact", {}, 0.0, 0.0, 0.0, threshold=5.0)
    assert c.verdict == "agrees" and c.z == 0.0
    with pytest.raises(ValueError, match="form"):
        make_check("5", "mean", "approx", {}, 1.0, 1.0, 0.1, threshold=5.0)


def test_report_budget_enforcement_and_files(tmp_path):
    rep = ValidationReport()
    rep.register_family("iid", alpha=2e-4, max_checks=2)
    rep.register_family("iid", alpha=2e-4, max_checks=2)  # idempotent
    with pytest.raises(ValueError, match="at most"):
        rep.register_family("fields", alpha=6e-4, max_checks=5)
    with pytest.raises(ValueError, match="no share"):
        rep.register_family("mine", alpha=1e-5, max_checks=5)
    rep.check("5", "mean", "exact", {"kernel": "tri"}, 1.0, 1.0, 0.01, family="iid")
    rep.check("7", "second_moment", "paper", {"kernel": "tri"}, 1.0, math.inf, 0.01, family="iid")
    with pytest.raises(RuntimeError, match="max_checks"):
        rep.check("5", "mean", "exact", {}, 1.0, 1.0, 0.01, family="iid")
    md, js = rep.write(tmp_path)
    data = json.loads(js.read_text())
    rec = data["records"][0]
    for key in ("equation", "quantity", "form", "params", "theory", "estimate", "se", "z", "verdict"):
        assert key in rec
    assert rec["equation"] == "5" and rec["verdict"] == "agrees"
    assert "| 7 |" in md.read_text()


def test_report_by_equation_and_notes(tmp_path):
    """The per-equation summary separates power checks, and shared notes are listed once."""
    from warptheory.stats import ValidationReport

    rep = ValidationReport()
    rep.register_family("iid", alpha=2e-4, max_checks=10)
    rep.check("7", "dx.second_moment", "exact", {"case": "A"}, 1.0, 1.0005, 0.001, family="iid", note="n1")
    rep.check("7", "dx.second_moment", "paper", {"case": "A"}, 0.9, 1.0005, 0.001, family="iid", note="n1")
    rep.check("7", "dx.second_moment[Φ_{2,1}·1.01]", "exact", {"case": "A"}, 1.01, 1.0005, 0.001, family="iid")
    table = rep.by_equation()
    assert "7   exact        1       1      0" in table
    assert "disagrees (1 of 1)" in table
    assert "rejects the perturbed theory" in table
    assert rep.notes() == [("7", "exact", 1, "A", "n1"), ("7", "paper", 1, "A", "n1")]
    md, _ = rep.write(tmp_path)
    text = md.read_text()
    assert "## By equation" in text and "## Notes" in text and "| 7 | paper | 1 | A | n1 |" in text
