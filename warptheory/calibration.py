r"""Calibration of the validation machinery: a null study on estimators with known truth.

The suite's verdicts rest on :mod:`warptheory.stats`: replicate standard errors
(:func:`~warptheory.stats.batch_means`), Student-t Bonferroni thresholds
(:func:`~warptheory.stats.z_threshold`), z (:func:`~warptheory.stats.standardised_difference`,
the core of :func:`~warptheory.stats.make_check`) and power (:func:`~warptheory.stats.power`).
This module runs exactly that machinery — the same functions, the suite's replicate count
R = 64 — on many independent experiments whose truth is known exactly, and measures what the
nominal numbers promise (``paper_notes/s03_statistics.md``, "Calibration"):

* rejection rates of a true theory at nominal 1e-2 and 1e-3, and coverage of the 95 %
  interval (binomial counts against the nominal rate),
* a goodness-of-fit of z against its reference law (:func:`~warptheory.stats.reference_law`):
  a Neyman smooth test on the normal scores :math:`s = \Phi^{-1}(F(z))` with the even Hermite
  components :math:`He_2, He_4` (scale and tail weight) and :math:`He_1` (location),
  :math:`\chi^2_3` under the null,
* the rejection rate of a theory shifted by a known amount against :func:`power`'s prediction.

Estimators (each experiment: R replicates, each replicate one small periodic 1-D warp of
:data:`SITES` pixels, so the samples inside a replicate share inputs and are correlated, as in
the real Monte-Carlo):

``mean``
    the mean of a bilinear (``tri``) warp output of x ~ N(μ, 1): truth μ exactly, because the
    ``tri`` weights of every output sum to 1 whatever the offsets (partition of unity);
``second_moment``
    the mean of y_v² − y'_v², y and y' two ``tri`` warps of the same x with independent
    offsets: the pair is exchangeable, so the truth is 0 exactly whatever Φ₂₁ is, and the
    replicate values are symmetric, like the near-normal replicate means of the real suite
    (scale 1 + μ² for power).

The inputs are drawn with numpy (one :class:`numpy.random.SeedSequence` child per chunk of
experiments) and the replicate values computed by a jitted loop, so the study is reproducible
and takes a few seconds.  :func:`calibrate` returns the numbers; ``validation/test_calibration.py``
turns them into records with declared thresholds and keeps the planted mutations (SE ×0.75,
SE ×1.25, the normal quantile in place of Student t) that must make it fail.

>>> vals = null_replicates("mean", 300, seed=1)
>>> vals.shape
(64, 300)
>>> r = calibrate(vals, TRUTH["mean"], SCALE["mean"], "mean")
>>> 0.8 < r.coverage <= 1.0
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from . import stats

__all__ = ["REPLICATES", "SITES", "EXPERIMENTS", "SIGMA_EPS", "MU_X", "TRUTH", "SCALE", "null_replicates", "calibrate",
           "CalibrationResult", "NOMINAL_RATES", "COVERAGE_LEVEL", "SHIFT_POWER"]

#: Replicates per experiment: the suite's R (``_iid_grid.REPLICATES``, ``test_eq9``, ``test_eq13``).
REPLICATES = 64
#: Pixels of the periodic 1-D lattice of one replicate (its samples share inputs).  The
#: second-moment estimator averages more of them: its replicate values then have a kurtosis
#: ≈ 1 (0.05 for the mean), near-normal like the replicate means of the real suite, which
#: average 10⁴–10⁶ samples.  (With 8 sites its kurtosis, 4.3, makes the t-test measurably
#: conservative: rate 6e-4 at nominal 1e-3 over 1e5 experiments — the t law is a
#: near-normal-replicates approximation, which the suite's sample sizes satisfy.)
SITES = {"mean": 8, "second_moment": 32}
#: Experiments per estimator in the suite's calibration: enough to resolve the Student-t /
#: normal difference at R = 64 (rate 1.24e-2 instead of 1e-2: 7.5 SE at 1e5 experiments).
EXPERIMENTS = {"mean": 100_000, "second_moment": 10_000}
#: Offset s.d. (pixels) and input mean of the estimators.
SIGMA_EPS = 0.7
MU_X = 0.5
#: Exact truth and scale (what a 1 % error refers to) of each estimator.
TRUTH = {"mean": MU_X, "second_moment": 0.0}
SCALE = {"mean": MU_X, "second_moment": 1.0 + MU_X**2}
#: Nominal two-sided rejection rates whose realised rate is measured.
NOMINAL_RATES = (1e-2, 1e-3)
#: Nominal coverage of the interval estimate ± t_{1-α/2}·SE.
COVERAGE_LEVEL = 0.95
#: Predicted power of the shifted theory (the shift is chosen to give it at nominal 1e-2).
SHIFT_POWER = 0.5
_CHUNK = 2048  # experiments per seeded chunk


@numba.njit(cache=True, nogil=True)
def _tri_warp_row(x, eps, r, v):
    sites = x.shape[1]
    p = v + eps[r, v]
    f = math.floor(p)
    t = p - f
    i0 = int(f) % sites
    return (1.0 - t) * x[r, i0] + t * x[r, (i0 + 1) % sites]


@numba.njit(cache=True, nogil=True)
def _mean_values(x, eps, out):
    """Per replicate row: the mean of the tri warp of x."""
    sites = x.shape[1]
    for r in range(x.shape[0]):
        acc = 0.0
        for v in range(sites):
            acc += _tri_warp_row(x, eps, r, v)
        out[r] = acc / sites


@numba.njit(cache=True, nogil=True)
def _second_moment_values(x, eps, eps2, out):
    """Per replicate row: the mean of y² − y'² for two independent tri warps of the same x."""
    sites = x.shape[1]
    for r in range(x.shape[0]):
        acc = 0.0
        for v in range(sites):
            y = _tri_warp_row(x, eps, r, v)
            y2 = _tri_warp_row(x, eps2, r, v)
            acc += y * y - y2 * y2
        out[r] = acc / sites


def _chunk_values(estimator, child, rows, sites):
    rng = np.random.default_rng(child)
    x = MU_X + rng.standard_normal((rows, sites))
    eps = SIGMA_EPS * rng.standard_normal((rows, sites))
    vals = np.empty(rows)
    if estimator == "mean":
        _mean_values(x, eps, vals)
    else:
        _second_moment_values(x, eps, SIGMA_EPS * rng.standard_normal((rows, sites)), vals)
    return vals


def null_replicates(estimator: str, n_experiments: int, *, seed: int, replicates: int = REPLICATES,
                    sites: int | None = None, executor=None) -> np.ndarray:
    """Replicate values (R, E) of ``estimator`` ("mean" or "second_moment") over E experiments.

    Experiments come in chunks of 2048, chunk ``j`` drawn from the ``j``-th child of
    ``SeedSequence(seed)``; the same arguments give the same numbers bitwise, with or without an
    ``executor`` (a :class:`concurrent.futures.Executor` that runs the chunks).
    """
    if estimator not in TRUTH:
        raise ValueError(f"estimator: expected one of {sorted(TRUTH)}, got {estimator!r}")
    if isinstance(n_experiments, bool) or not isinstance(n_experiments, (int, np.integer)) or n_experiments < 1:
        raise ValueError(f"n_experiments: expected a positive integer, got {n_experiments!r}")
    sites = SITES[estimator] if sites is None else int(sites)
    n_chunks = -(-n_experiments // _CHUNK)
    bounds = [(j * _CHUNK, min(n_experiments, (j + 1) * _CHUNK)) for j in range(n_chunks)]
    children = np.random.SeedSequence(seed).spawn(n_chunks)
    args = [(estimator, child, (hi - lo) * replicates, sites) for child, (lo, hi) in zip(children, bounds)]
    if executor is None:
        chunks = [_chunk_values(*a) for a in args]
    else:
        chunks = [f.result() for f in [executor.submit(_chunk_values, *a) for a in args]]
    out = np.empty((replicates, n_experiments))
    for vals, (lo, hi) in zip(chunks, bounds):
        out[:, lo:hi] = vals.reshape(hi - lo, replicates).T  # rows are experiment-major
    return out


@dataclass(frozen=True)
class CalibrationResult:
    """What one estimator's null study measured.

    ``rates``: {nominal: realised rejection rate of the true theory}; ``coverage``: realised
    coverage of the 95 % interval; ``smooth``: the components (He₁, He₂, He₄ of the normal
    scores, each N(0, 1) under the null) and ``smooth_chi2`` their squared sum (χ²₃);
    ``shift_rate`` and ``shift_predicted``: rejection rate of a theory shifted by ``shift``
    (in units of the replicate s.d./√R) at nominal 1e-2, against :func:`power`.
    """

    estimator: str
    experiments: int
    replicates: int
    rates: dict
    coverage: float
    smooth: tuple
    smooth_chi2: float
    shift: float
    shift_rate: float
    shift_predicted: float


def _smooth_components(z, dof):
    """He₁, He₂/√2, He₄/√24 of the normal scores of z under the reference law, each ×√E."""
    st = stats._st()
    law = stats.reference_law(dof)
    # normal scores through the survival function on each side keeps the tails exact
    u_low = np.clip(law.cdf(np.minimum(z, 0.0)), 1e-300, 0.5)
    u_up = np.clip(law.sf(np.maximum(z, 0.0)), 1e-300, 0.5)
    s = np.where(z < 0, st.norm.ppf(u_low), st.norm.isf(u_up))
    n = s.size
    he1 = s
    he2 = (s**2 - 1.0) / math.sqrt(2.0)
    he4 = (s**4 - 6.0 * s**2 + 3.0) / math.sqrt(24.0)
    return tuple(float(np.sum(h) / math.sqrt(n)) for h in (he1, he2, he4))


def calibrate(replicate_values, truth: float, scale: float, estimator: str = "") -> CalibrationResult:
    """Run the suite's machinery on ``replicate_values`` (R, E) of an estimator whose truth is ``truth``."""
    vals = np.asarray(replicate_values, dtype=np.float64)
    n_rep, n_exp = vals.shape
    dof = n_rep - 1
    est, se = stats.batch_means(vals)
    z = np.asarray(stats.standardised_difference(truth, est, se), dtype=np.float64)
    rates = {a: float(np.mean(np.abs(z) > stats.z_threshold(a, 1, dof))) for a in NOMINAL_RATES}
    coverage = float(np.mean(np.abs(z) <= stats.z_threshold(1.0 - COVERAGE_LEVEL, 1, dof)))
    comps = _smooth_components(z, dof)
    # shifted theory: δ such that power() predicts SHIFT_POWER at nominal 1e-2, with the SE the
    # experiments have (the pooled replicate s.d. over all experiments, known to ~0.1 %)
    se_true = float(np.sqrt(np.mean(np.var(vals, axis=0, ddof=1))) / math.sqrt(n_rep))
    thr = stats.z_threshold(NOMINAL_RATES[0], 1, dof)
    lo, hi = 0.0, 20.0
    for _ in range(60):  # bisection on the noncentrality: power is monotone in it
        mid = 0.5 * (lo + hi)
        if stats.power(1.0, mid * se_true, se_true, thr, dof) < SHIFT_POWER:
            lo = mid
        else:
            hi = mid
    shift = 0.5 * (lo + hi)
    predicted = stats.power(1.0, shift * se_true, se_true, thr, dof)
    z_shift = np.asarray(stats.standardised_difference(truth + shift * se_true, est, se), dtype=np.float64)
    shift_rate = float(np.mean(np.abs(z_shift) > thr))
    return CalibrationResult(estimator=estimator, experiments=n_exp, replicates=n_rep, rates=rates,
                             coverage=coverage, smooth=comps, smooth_chi2=float(sum(c * c for c in comps)),
                             shift=shift, shift_rate=shift_rate, shift_predicted=float(predicted))
