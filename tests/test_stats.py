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
    for key in ("equation", "quantity", "form", "params", "theory", "estimate", "se", "z", "verdict", "resolution",
                "kind", "claim", "seed"):
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
    assert "## eq 7" in text and "n1" in text and "## Every check" in text


# ----------------------------------------------------------------------------- issue 10 machinery
from warptheory.stats import (Limit, SeedBook, case_seed, extrapolate, make_limit, reference_law,  # noqa: E402
                              resolution, standardised_difference)


def test_power_student_t_branch_matches_simulation():
    """The Student-t branch of power(): t = (δ + σZ)/(σ √(χ²_ν/ν)), rejection |t| > threshold."""
    rng = np.random.default_rng(11)
    dof, thr, shift = 15, 3.0, 3.5  # shift in units of the true SE
    z = rng.standard_normal(400_000) + shift
    s = np.sqrt(rng.chisquare(dof, z.size) / dof)
    simulated = np.mean(np.abs(z / s) > thr)
    assert power(shift, 1.0, 1.0, thr, dof) == pytest.approx(simulated, abs=3e-3)
    assert power(shift, 1.0, 1.0, thr, dof) < power(shift, 1.0, 1.0, thr)  # an estimated SE costs power


def test_reference_law_drives_the_threshold(monkeypatch):
    import warptheory.stats as S
    t_thr = z_threshold(1e-2, 1, 63)
    monkeypatch.setattr(S, "reference_law", lambda dof=None: sst.norm)
    assert S.z_threshold(1e-2, 1, 63) == pytest.approx(sst.norm.isf(5e-3))
    assert S.z_threshold(1e-2, 1, 63) < t_thr
    with pytest.raises(ValueError, match="dof"):
        reference_law(0)


def test_resolution_is_the_99_percent_power_error():
    thr, dof, se = z_threshold(5e-5, 16, 63), 63, 1e-3
    delta = resolution(se, 1.0, thr, dof)
    assert power(delta, 1.0, se, thr, dof) == pytest.approx(0.99, abs=2e-3)


def test_standardised_difference_vectorised_and_edge_cases():
    z = standardised_difference(np.array([1.0, 1.0, 0.0, np.inf]), np.array([1.5, 1.0, 2.0, 1.0]),
                                np.array([0.25, 0.0, 0.0, 1.0]))
    assert z.tolist() == [2.0, 0.0, math.inf, -math.inf]


def test_extrapolate_recovers_limit_order_and_bounds_the_error():
    ns = [100, 200, 400, 800]
    vals = [3.0 + 2.0 / n + 5.0 / n**2 for n in ns]
    lim = extrapolate(ns, vals)
    assert lim.method == "richardson" and lim.order == pytest.approx(1.0, abs=0.05)
    assert abs(lim.estimate - 3.0) <= 0.02 * lim.bound  # Richardson is far better than its bound
    assert lim.bound == pytest.approx(3 * abs(lim.estimate - vals[-1]), rel=1e-9)  # 3 × the correction
    # a sequence that does not converge keeps a positive limit with a bound from its spread
    osc = extrapolate([1, 2, 4, 8], [0.41, 0.40, 0.42, 0.41])
    assert osc.method == "spread" and osc.estimate == 0.41 and osc.bound == pytest.approx(3 * 0.01)
    with pytest.raises(ValueError, match="three"):
        extrapolate([1, 2], [1.0, 1.0])
    with pytest.raises(ValueError, match="ratio"):
        extrapolate([1, 2, 5], [1.0, 1.0, 1.0])


def test_deterministic_record_has_bound_and_order_but_no_z():
    lim = Limit(ns=(1, 2, 4), values=(1.1, 1.05, 1.025), estimate=1.0, bound=1e-3, order=1.0, method="richardson")
    ok = make_limit("14", "KKt weak", "exact", {}, 1.0005, lim)
    bad = make_limit("14", "KKt weak", "paper", {}, 1.01, lim)
    assert ok.verdict == "agrees" and bad.verdict == "disagrees"
    assert ok.z is None and ok.threshold is None and ok.se is None and ok.kind == "deterministic"
    assert ok.bound == 1e-3 and ok.order == 1.0 and ok.resolution == pytest.approx(1.5e-3 / 1.0005)
    rec = ok.as_record()
    assert rec["z"] is None and rec["refinements"]["n"] == [1, 2, 4]


def test_case_seed_uses_every_parameter_and_is_order_independent():
    base = {"kernel": "tri", "d": 2, "sigma_eps": 0.5, "mu_x": 1.0}
    assert case_seed(base) == case_seed(dict(reversed(list(base.items()))))
    seeds = {case_seed(dict(base, **{k: v})) for k, v in
             (("kernel", "cos"), ("d", 3), ("sigma_eps", 0.5000000001), ("mu_x", -1.0), ("extra", None))}
    assert len(seeds) == 5 and case_seed(base) not in seeds
    # the old seeding kept only the first ~8 characters of a case id: ids sharing them collided
    assert case_seed("tri-d1-N1-s0.05") != case_seed("tri-d1-N1-s0.5")
    assert case_seed("pilot", base) != case_seed("main", base)


@settings(max_examples=60, deadline=None)
@given(a=st.dictionaries(st.sampled_from("abcdef"), st.floats(allow_nan=False) | st.integers() | st.text(max_size=3),
                         max_size=4),
       b=st.dictionaries(st.sampled_from("abcdef"), st.floats(allow_nan=False) | st.integers() | st.text(max_size=3),
                         max_size=4))
def test_distinct_cases_never_share_a_seed(a, b):
    same = json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr) and \
        all(type(a[k]) is type(b[k]) for k in a)
    assert (case_seed(a) == case_seed(b)) == same


def test_seed_book_refuses_a_collision():
    book = SeedBook(hasher=lambda *parts: 42)  # a broken hash: every case gets 42
    assert book.seed("case A") == 42
    assert book.seed("case A") == 42  # the same case again is fine
    with pytest.raises(RuntimeError, match="already given"):
        book.seed("case B")


def test_paper_equals_exact_form_and_expected_verdicts():
    c = make_check("5", "y.mean", "paper=exact", {}, 1.0, 1.0, 0.1, threshold=5.0, expected="agrees")
    assert c.form == "paper=exact" and c.claim == "5" and c.expected == "agrees"
    with pytest.raises(ValueError, match="expected"):
        make_check("5", "y.mean", "exact", {}, 1.0, 1.0, 0.1, threshold=5.0, expected="maybe")
    control = make_check("8", "tail[tri: control]", "exact", {}, 2.0, 5.0, 0.1, threshold=5.0, expected="disagrees")
    assert control.is_power_check
