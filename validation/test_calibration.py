r"""Calibration of the suite's own statistics, its planted mutations, and the suite-level z law.

Family ``calibration`` (share 5e-5, :data:`MAX_CHECKS` records, normal thresholds): the null study
of :mod:`warptheory.calibration` runs ``batch_means``, ``standardised_difference`` (the core of
``make_check``), ``z_threshold`` and ``power`` with the suite's R = 64 on estimators with known
truth and within-replicate correlation (``paper_notes/s03_statistics.md``, "Calibration").  Per
estimator, seven records, each tested at the family threshold (|z| ≤ 4.6):

* realised rejection rate of the true theory at nominal 1e-2 and 1e-3, coverage of the 95 %
  interval, and the rejection rate of a theory shifted so that ``power()`` predicts 0.5 —
  binomial counts, z from the exact binomial tail (normal equivalent of the two-sided p-value);
* the three smooth goodness-of-fit components He₁, He₂, He₄ of the normal scores of z under
  ``reference_law`` (location, scale, tail weight), each N(0, 1) under the null.

Planted mutations (kept as tests; each must make at least one record disagree): the SE ×0.75
and ×1.25 in ``batch_means``, and the normal quantile in place of Student t — in
``reference_law`` (thresholds, power and the z law) and in ``z_threshold`` alone.  Expected
signals at 1e5 experiments: SE ×0.75 and ×1.25 move He₂ by +170 and −80 standard errors; the
normal quantile moves the rate at nominal 1e-2 to 1.24e-2 (+7.5 SE), the 95 % non-coverage to
5.4 % (+6.4 SE) and, through the reference law, He₂ by +7.3 SE — each beyond the |z| ≤ 4.6
threshold with ≥ 96 % probability, jointly with ≥ 99.8 %.

Family ``suite`` (share 5e-5, one record, :func:`test_suite_z_law`, run last): the realised z of
every exact-form record of this run, as normal scores under each record's reference law,
against N(0, 1): a Wald test of their mean and of the mean of (s² − 1)/√2 with a covariance
robust to records that share samples (clustered by the run's seed), F(2, C − 2) over C runs.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from _parallel import OneEngineThreadEach
from warptheory import calibration as cal
from warptheory import stats
from warptheory.stats import FAMILY_BUDGET, make_check

FAMILY = "calibration"
RECORDS_PER_ESTIMATOR = 7
MAX_CHECKS = RECORDS_PER_ESTIMATOR * len(cal.TRUTH)
ALPHA = FAMILY_BUDGET[FAMILY]
_DATA: dict = {}


def _threshold():
    return stats.z_threshold(ALPHA, MAX_CHECKS)


def _replicates(report, estimator):
    if estimator not in _DATA:
        seed = report.case_seed("calibration", estimator, cal.EXPERIMENTS[estimator], cal.REPLICATES,
                                cal.SITES[estimator], cal.MU_X, cal.SIGMA_EPS)
        with OneEngineThreadEach() as pool:
            vals = cal.null_replicates(estimator, cal.EXPERIMENTS[estimator], seed=seed, executor=pool)
        _DATA[estimator] = (vals, seed)
    return _DATA[estimator]


def _binomial(quantity, nominal, rate, n, params, threshold, seed, note):
    """A count against its nominal rate; z is the normal equivalent of the exact two-sided binomial p-value."""
    st = stats._st()
    count = int(round(rate * n))
    p = min(1.0, 2.0 * min(st.binom.cdf(count, n, nominal), st.binom.sf(count - 1, n, nominal)))
    z = float(st.norm.isf(p / 2.0)) * math.copysign(1.0, rate - nominal)
    se = abs(rate - nominal) / abs(z) if z != 0 and math.isfinite(z) else math.sqrt(nominal * (1 - nominal) / n)
    if not math.isfinite(z):
        se = 0.0
    return make_check("calibration", quantity, "exact", params, nominal, rate, se, threshold=threshold,
                      family=FAMILY, scale=nominal, expected="agrees", seed=seed,
                      note=note + "; z from the exact binomial p-value")


def calibration_checks(result, threshold, seed=""):
    """The records of one estimator's null study (:class:`warptheory.calibration.CalibrationResult`)."""
    n = result.experiments
    params = {"estimator": result.estimator, "experiments": n, "R": result.replicates}
    out = []
    for nominal in cal.NOMINAL_RATES:
        out.append(_binomial(f"rejection rate at nominal {nominal:g}", nominal, result.rates[nominal], n, params,
                             threshold, seed, f"{int(round(result.rates[nominal] * n))} of {n} true theories "
                                              f"rejected"))
    out.append(_binomial(f"non-coverage of the {100 * cal.COVERAGE_LEVEL:g} % interval", 1 - cal.COVERAGE_LEVEL,
                         1 - result.coverage, n, params, threshold, seed, f"coverage {result.coverage:.5f}"))
    out.append(_binomial("rejection rate of a shifted theory", result.shift_predicted, result.shift_rate, n,
                         dict(params, shift_in_se=round(result.shift, 6)), threshold, seed,
                         f"power() predicts {result.shift_predicted:.4f} at nominal 1e-2"))
    for name, comp in zip(("He1 (location)", "He2 (scale)", "He4 (tail weight)"), result.smooth):
        out.append(make_check("calibration", f"z law smooth component {name}", "exact", params, 0.0,
                              comp / math.sqrt(n), 1.0 / math.sqrt(n), threshold=threshold, family=FAMILY,
                              scale=1.0, expected="agrees", seed=seed,
                              note="mean Hermite polynomial of the normal scores of z under reference_law; "
                                   "N(0, 1/E) under the null"))
    return out


@pytest.mark.parametrize("estimator", list(cal.TRUTH))
def test_calibration_null_study(report, estimator):
    """The machinery's nominal rates, coverage, z law and power hold on estimators with known truth."""
    report.register_family(FAMILY, alpha=ALPHA, max_checks=MAX_CHECKS)
    vals, seed = _replicates(report, estimator)
    result = cal.calibrate(vals, cal.TRUTH[estimator], cal.SCALE[estimator], estimator)
    checks = calibration_checks(result, report.threshold(FAMILY), stats._seed_text(seed))
    for chk in checks:  # recorded through the report so that they count against the family's budget
        report.check(chk.equation, chk.quantity, chk.form, chk.params, chk.theory, chk.estimate, chk.se,
                     family=FAMILY, scale=chk.scale, expected="agrees", seed=seed, note=chk.note)
    bad = [c for c in checks if c.verdict != "agrees"]
    assert not bad, bad


def _mutated_verdicts(report, monkeypatch, estimator, mutate):
    vals, _ = _replicates(report, estimator)
    mutate(monkeypatch)
    result = cal.calibrate(vals, cal.TRUTH[estimator], cal.SCALE[estimator], estimator)
    monkeypatch.undo()
    return calibration_checks(result, _threshold())


def _se_times(factor):
    original = stats.batch_means

    def mutate(mp):
        def scaled(values):
            mean, se = original(values)
            return mean, se * factor
        mp.setattr(stats, "batch_means", scaled)
    return mutate


def _normal_reference(mp):
    mp.setattr(stats, "reference_law", lambda dof=None: stats._st().norm)


def _normal_threshold_only(mp):
    original = stats.z_threshold
    mp.setattr(stats, "z_threshold", lambda alpha, n_checks, dof=None: original(alpha, n_checks, None))


MUTATIONS = {
    "se_x0.75": _se_times(0.75),
    "se_x1.25": _se_times(1.25),
    "normal_reference_law": _normal_reference,
    "normal_quantile_in_z_threshold": _normal_threshold_only,
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_calibration_fails_under_planted_mutation(report, monkeypatch, mutation):
    """Planted mutation of the machinery: the calibration of the ``mean`` estimator must disagree somewhere."""
    checks = _mutated_verdicts(report, monkeypatch, "mean", MUTATIONS[mutation])
    worst = max(checks, key=lambda c: abs(c.z))
    assert any(c.verdict == "disagrees" for c in checks), (mutation, worst)


# ----------------------------------------------------------------------------------- suite level
SUITE_FAMILY = "suite"


def _normal_scores(checks):
    st = stats._st()
    out = []
    for c in checks:
        law = stats.reference_law(c.dof)
        u = law.cdf(c.z) if c.z < 0 else law.sf(c.z)
        s = st.norm.ppf(u) if c.z < 0 else st.norm.isf(u)
        out.append(float(s))
    return np.array(out)


def suite_z_law(records):
    """(statistic, p-value, n records, C runs, mean s, mean s²) of the exact-form z of ``records``.

    Records that assert agreement, statistical, exact form, not a power check, outside the
    calibration family.  Normal scores s; h = (s, (s² − 1)/√2); cluster sums by seed (a record
    without a seed is its own cluster); Hotelling T² = n h̄ᵀ V⁻¹ h̄ with V the cluster-robust
    covariance; F = (C − 2)/(2(C − 1)) T² ~ F(2, C − 2).
    """
    recs = [c for c in records if c.kind == "statistical" and c.form in ("exact", "paper=exact")
            and c.expected == "agrees" and not c.is_power_check and c.family not in ("calibration", "suite")
            and c.z is not None and math.isfinite(c.z)]
    if len(recs) < 3:
        return None
    s = _normal_scores(recs)
    h = np.stack([s, (s**2 - 1.0) / math.sqrt(2.0)], axis=1)
    keys = [c.seed or f"record-{i}" for i, c in enumerate(recs)]
    clusters: dict = {}
    for k, row in zip(keys, h):
        clusters[k] = clusters.get(k, 0.0) + row
    sums = np.array(list(clusters.values()))
    n, n_clusters = len(recs), len(sums)
    if n_clusters < 4:
        return None
    mean = h.mean(axis=0)
    cov = sums.T @ sums / n**2  # covariance of the mean under the null (E h = 0), clusters independent
    t2 = float(mean @ np.linalg.solve(cov, mean))
    f = (n_clusters - 2) / (2.0 * (n_clusters - 1)) * t2
    p = float(stats._st().f.sf(f, 2, n_clusters - 2))
    return f, p, n, n_clusters, float(s.mean()), float(np.mean(s**2))


@pytest.mark.suite_level
def test_suite_z_law(report):
    """All exact-form z of this run follow their reference law (one record, family ``suite``)."""
    report.register_family(SUITE_FAMILY, alpha=FAMILY_BUDGET[SUITE_FAMILY], max_checks=1)
    res = suite_z_law(report.records)
    if res is None:
        pytest.skip("fewer than 3 exact-form records or 4 independent runs in this session: nothing to test")
    f, p, n, n_clusters, mean_s, mean_s2 = res
    z_equiv = float(stats._st().norm.isf(p / 2.0))
    chk = report.check("suite", "exact-form z: normal-score mean and dispersion (Wald, normal equivalent)",
                       "exact", {"records": n, "runs": n_clusters}, 0.0, z_equiv, 1.0, family=SUITE_FAMILY,
                       scale=1.0, expected="agrees",
                       note=f"mean s = {mean_s:+.4f}, mean s² = {mean_s2:.4f} over {n} records in {n_clusters} "
                            f"independent runs; F(2, {n_clusters - 2}) = {f:.3f}, p = {p:.3g}")
    assert chk.verdict == "agrees", chk
