r"""Statistical machinery of the Monte-Carlo validation: checks, thresholds, standard errors, power.

Every comparison of a theory with a Monte-Carlo estimate becomes one :class:`Check`:
the estimate, its standard error (from independent replicates, :func:`batch_means`),
the standardised difference :math:`z = (\hat m - m)/\mathrm{SE}` and a verdict against a
threshold that follows from a stated false-alarm budget (:func:`z_threshold`).
A limit found by grid refinement (deterministic, no probability involved) is a
:class:`Check` of kind ``"deterministic"`` instead: extrapolated limit, observed order and
error bound (:func:`extrapolate`), verdict ``|limit − theory| ≤ bound``, no z and no α.
See ``paper_notes/s03_statistics.md`` ("How the suite decides").

False-alarm budget
------------------
The whole ``pytest validation`` suite may raise a false alarm (a "disagrees" verdict for a
theory that is right) with probability at most :data:`SUITE_FALSE_ALARM_BUDGET` = 1e-3.
The budget is split into families (:data:`FAMILY_BUDGET`); a family of at most ``m``
checks with share α uses the two-sided Bonferroni threshold
:math:`|z| > t^{-1}_{\nu}(1 - \alpha/(2m))` (Student t with ν = replicates − 1 degrees of
freedom, since the SE is itself estimated; the normal quantile when ν is not given).
Bonferroni needs no independence between checks, so checks that share samples are fine.

Power
-----
A relative error δ of a moment with scale ``s`` shifts the expected z by
:math:`\delta s/\mathrm{SE}`.  The check detects it with probability (noncentral t)
:func:`power`; the suite sizes its samples so that
:math:`0.01\,s/\mathrm{SE} \ge z_{thr} + z_{0.99}` (:func:`required_se`), which gives
≥ 99 % power against a 1 % error.  Every record carries its ``resolution``: the relative
error it detects with 99 % power (:func:`resolution`).

Seeds
-----
:func:`case_seed` hashes the whole case (every parameter, and what the run is for) with
SHA-256 into a 128-bit root for :class:`numpy.random.SeedSequence`, so distinct cases never
replay the same numbers; :class:`SeedBook` refuses two distinct cases with one seed.

>>> round(z_threshold(0.05, 1), 6)   # one two-sided check at 5 %
1.959964
>>> z_threshold(1e-3, 100) > z_threshold(1e-3, 10)   # more checks, stricter
True
>>> m, se = batch_means([1.0, 2.0, 3.0, 4.0])
>>> m, round(se, 12)
(2.5, 0.645497224368)
>>> case_seed({"kernel": "tri", "sigma_eps": 0.5}) == case_seed({"sigma_eps": 0.5, "kernel": "tri"})
True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np


def _st():
    """scipy.stats, imported on first use: it costs ~0.6 s, half of ``import warptheory``."""
    from scipy import stats

    return stats


__all__ = [
    "Check",
    "Limit",
    "SideBySide",
    "SUITE_FALSE_ALARM_BUDGET",
    "FAMILY_BUDGET",
    "TARGET_POWER",
    "DETECTABLE_RELATIVE_ERROR",
    "FORMS",
    "reference_law",
    "z_threshold",
    "batch_means",
    "standardised_difference",
    "make_check",
    "power",
    "required_se",
    "resolution",
    "extrapolate",
    "make_limit",
    "case_seed",
    "SeedBook",
    "ValidationReport",
]

#: Probability that the whole default validation suite reports any false disagreement.
SUITE_FALSE_ALARM_BUDGET = 1e-3

#: Share of the suite budget per family of statistical checks.  They sum to at most the
#: suite budget.  ``iid``: eqs 5, 7, 8 (grid, hypothesis draws, the sqrt_tri tail index);
#: ``selfwarp``: eq 9; ``calibration``: the null study of the machinery itself;
#: ``fields``: random-field spectra (eqs 13, 45, 48); ``suite``: the one suite-level
#: goodness-of-fit record of all exact-form z; ``stability``: §3.1 SelfWarp gains (issue 13).
#: Deterministic limits (eqs 14, 49) are not statistical and take no share.
FAMILY_BUDGET = {
    "iid": 3e-4,
    "selfwarp": 5e-5,
    "calibration": 5e-5,
    "fields": 4.5e-4,
    "suite": 5e-5,
    "stability": 1e-4,
}
assert sum(FAMILY_BUDGET.values()) <= SUITE_FALSE_ALARM_BUDGET * (1 + 1e-12)

#: Power the default run must have against :data:`DETECTABLE_RELATIVE_ERROR`.
TARGET_POWER = 0.99
#: Relative error of a moment that the default run must detect.
DETECTABLE_RELATIVE_ERROR = 0.01

#: ``paper``: the formula as printed; ``exact``: our derivation where it differs;
#: ``paper=exact``: one record for a claim whose printed form is the exact one.
#: Model forms, recorded beside them and asserted only where a test says so: ``per-block product`` (§3.1
#: depth: gains composed block by block), ``gamma-tau`` (§3.1: the first version's Gamma law of τ).
FORMS = ("paper", "exact", "paper=exact", "per-block product", "gamma-tau")
#: forms that state our derivation: asserted to agree unless a record says otherwise
EXACT_FORMS = ("exact", "paper=exact")


@dataclass(frozen=True)
class Check:
    """One theory-versus-Monte-Carlo comparison, or one deterministic limit.

    Attributes
    ----------
    equation : str
        Paper equation number, e.g. ``"7"``.
    quantity : str
        What is compared, e.g. ``"second_moment"``; a power check (a theory perturbed on
        purpose, which must be rejected) has ``[…·1.01]`` in it.
    form : str
        ``"paper"``, ``"exact"`` or ``"paper=exact"`` (:data:`FORMS`).
    params : dict
        JSON-able parameters, named as the :mod:`warptheory.moments` arguments.
    theory, estimate : float
        Prediction and Monte-Carlo estimate (deterministic: extrapolated limit).
    se, z : float or None
        Standard error and (estimate − theory)/se; None for a deterministic limit.
    verdict : str
        ``"agrees"`` if ``|z| <= threshold`` (deterministic: ``|estimate − theory| <= bound``),
        else ``"disagrees"``.
    threshold : float or None
        The |z| threshold of the check's family; None for a deterministic limit.
    family : str
        Budget family (:data:`FAMILY_BUDGET`), or the label of a deterministic group.
    dof : int or None
        Degrees of freedom of the SE (replicates − 1); None: treated as normal.
    power_1pct : float or None
        Probability that this check detects a 1 % relative error of ``scale``.
    scale : float
        Magnitude a relative error refers to (``|theory|`` unless given, e.g. the
        standard deviation for a mean whose theory is 0).
    note : str
    kind : str
        ``"statistical"`` or ``"deterministic"``.
    claim : str
        The paper claim the record belongs to (defaults to the equation); the one-screen
        summary and ``report.md`` are organised by claim.
    expected : str
        What the test asserts: ``"agrees"``, ``"disagrees"`` (a paper form that is known to
        be wrong, or a power check), or ``""`` (recorded without an assertion).
    resolution : float
        Relative error of ``scale`` this record detects: with 99 % power for a statistical
        record (:func:`resolution`), for certain for a deterministic one
        ((bound + |estimate − theory|)/scale).
    seed : str
        Hex of the case seed of the Monte-Carlo run (records that share it share samples).
    bound, order : float or None
        Deterministic limits only: error bound of ``estimate`` and observed convergence order.
    refinements : dict or None
        Deterministic limits only: ``{"n": [...], "value": [...]}``, the refinement sequence.
    """

    equation: str
    quantity: str
    form: str
    params: dict
    theory: float
    estimate: float
    se: float | None
    z: float | None
    verdict: str
    threshold: float | None
    family: str = ""
    dof: int | None = None
    power_1pct: float | None = float("nan")
    scale: float = float("nan")
    note: str = field(default="")
    kind: str = "statistical"
    claim: str = ""
    expected: str = ""
    resolution: float = float("nan")
    seed: str = ""
    bound: float | None = None
    order: float | None = None
    refinements: dict | None = None

    @property
    def is_power_check(self) -> bool:
        """A check that must reject: a deliberately perturbed theory (``quantity`` carries
        ``[…·factor]``) or a control (a record of the exact form expected to disagree)."""
        return "·" in self.quantity or (self.expected == "disagrees" and self.form in EXACT_FORMS)

    def as_record(self) -> dict:
        """JSON-able dict (non-finite floats become strings "inf", "-inf", "nan")."""
        rec = asdict(self)
        for key, value in rec.items():
            if isinstance(value, float) and not math.isfinite(value):
                rec[key] = repr(value)
        return rec


def reference_law(dof: int | None = None):
    """The law z follows under a true theory: Student t with ``dof`` degrees of freedom, or N(0, 1).

    The one place that decides it: :func:`z_threshold`, :func:`power` and the calibration's
    goodness-of-fit all read it.

    >>> reference_law(None).name, reference_law(63).dist.name
    ('norm', 't')
    """
    st = _st()
    if dof is None:
        return st.norm
    if isinstance(dof, bool) or not isinstance(dof, (int, np.integer)) or dof < 1:
        raise ValueError(f"dof: expected a positive integer or None, got {dof!r}")
    return st.t(int(dof))


def z_threshold(alpha: float, n_checks: int, dof: int | None = None) -> float:
    r"""Two-sided Bonferroni threshold :math:`q(1 - \alpha/(2 n))` for ``n_checks`` checks.

    Parameters
    ----------
    alpha : float
        Family-wise false-alarm probability, 0 < alpha < 1.
    n_checks : int
        Maximal number of checks in the family, ≥ 1.
    dof : int, optional
        Degrees of freedom of the estimated SE; the Student-t quantile is used if
        given (the normal one otherwise), :func:`reference_law`.

    >>> round(z_threshold(1e-3, 1000), 4)
    4.8916
    >>> z_threshold(1e-3, 1000, dof=31) > z_threshold(1e-3, 1000)
    True
    """
    if not (isinstance(alpha, (float, int)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha: expected a probability in (0, 1), got {alpha!r}")
    if isinstance(n_checks, bool) or not isinstance(n_checks, (int, np.integer)) or n_checks < 1:
        raise ValueError(f"n_checks: expected a positive integer, got {n_checks!r}")
    return float(reference_law(dof).isf(alpha / (2.0 * n_checks)))


def batch_means(replicate_values) -> tuple[float, float]:
    r"""Mean of independent replicate estimates and its standard error.

    Each replicate is an estimate from its own independent samples, so the replicate
    values are IID even when samples within a replicate are correlated (outputs of a
    warp share inputs).  SE = sample standard deviation / √R.

    Parameters
    ----------
    replicate_values : array_like, shape (R,) or (R, ...)
        One estimate per replicate (along axis 0), R ≥ 2.

    Returns
    -------
    mean, se : float or ndarray

    >>> batch_means([2.0, 2.0, 2.0])
    (2.0, 0.0)
    """
    vals = np.asarray(replicate_values, dtype=np.float64)
    if vals.ndim == 0 or vals.shape[0] < 2:
        raise ValueError(f"replicate_values: expected at least 2 replicates along axis 0, got shape {vals.shape}")
    mean = vals.mean(axis=0)
    se = vals.std(axis=0, ddof=1) / math.sqrt(vals.shape[0])
    if mean.ndim == 0:
        return float(mean), float(se)
    return mean, se


def standardised_difference(theory, estimate, se):
    r"""z = (estimate − theory)/se, elementwise; the core of :func:`make_check`.

    A zero SE (an exactly deterministic quantity, e.g. ∇ε for ``rect``) gives z = 0 if the
    estimate equals the theory and ±∞ otherwise; an infinite theory gives ∓∞.

    >>> float(standardised_difference(1.0, 1.5, 0.25))
    2.0
    """
    theory, estimate, se = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (theory, estimate, se)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (estimate - theory) / se
    zero = se == 0.0
    z = np.where(zero, np.where(estimate == theory, 0.0, np.copysign(np.inf, estimate - theory)), z)
    z = np.where(~np.isfinite(theory) & ~zero, -np.copysign(np.inf, theory), z)
    return z if z.ndim else float(z)


def power(relative_error: float, scale: float, se: float, threshold: float, dof: int | None = None) -> float:
    r"""Probability that a check with this SE flags a true error ``relative_error * scale``.

    Noncentral t with noncentrality δ/SE (normal if ``dof`` is None).

    >>> round(power(0.01, 1.0, 0.01 / (3.0 + 2.3263478740408408), 3.0), 3)
    0.99
    """
    if se == 0.0:
        return 1.0
    if not (math.isfinite(se) and math.isfinite(scale)):
        return float("nan")
    nc = abs(relative_error * scale) / se
    if dof is None or reference_law(dof) is _st().norm:
        return float(_st().norm.sf(threshold - nc) + _st().norm.cdf(-threshold - nc))
    upper = float(_st().nct.sf(threshold, dof, nc))
    # the lower tail is astronomically small here; scipy's nct.cdf can return nan for it
    lower = float(_st().nct.cdf(-threshold, dof, nc))
    return upper + (lower if math.isfinite(lower) else 0.0)


_Z_TARGET = 2.3263478740408408  # normal quantile of TARGET_POWER = 0.99


def required_se(scale: float, threshold: float, relative_error: float = DETECTABLE_RELATIVE_ERROR,
                target_power: float = TARGET_POWER) -> float:
    r"""Largest SE giving ``target_power`` against ``relative_error``: δ/(z_thr + z_power).

    This is the sizing rule of the suite: :math:`|\delta|/\mathrm{SE} \ge z_{thr} + z_{0.99}`.

    >>> round(required_se(1.0, 5.0), 6)
    0.001365
    """
    return abs(relative_error * scale) / (threshold + float(_st().norm.isf(1.0 - target_power)))


def resolution(se: float, scale: float, threshold: float, dof: int | None = None) -> float:
    r"""Relative error of ``scale`` detected with 99 % power: :math:`(z_{thr} + z_{0.99}\sqrt{1 + z_{thr}^2/2\nu})\,\mathrm{SE}/s`.

    The square root is the standard normal approximation of the noncentral t (exact for ν = ∞;
    within 0.2 % of the noncentral-t root for ν = 63 and thresholds 4.5–5.6).

    >>> round(resolution(0.001, 1.0, 5.0), 6)   # normal: (5 + 2.326)·0.001
    0.007326
    """
    if not (scale > 0 and math.isfinite(scale)) or not math.isfinite(se):
        return float("nan")
    widen = 1.0 if dof is None else math.sqrt(1.0 + threshold**2 / (2.0 * dof))
    return (threshold + _Z_TARGET * widen) * se / scale


def make_check(equation, quantity, form, params, theory, estimate, se, *, threshold, family="",
               dof=None, scale=None, note="", claim="", expected="", seed="") -> Check:
    """Build a statistical :class:`Check`, computing z, the verdict, the power and the resolution.

    A zero SE (a quantity that is exactly deterministic, e.g. ∇ε for ``rect``) agrees
    only if the estimate equals the theory exactly.
    """
    _check_form(form)
    _check_expected(expected)
    theory, estimate, se = float(theory), float(estimate), float(se)
    if se < 0 or math.isnan(se):
        raise ValueError(f"se: expected a non-negative number, got {se!r}")
    z = float(standardised_difference(theory, estimate, se))
    verdict = "agrees" if abs(z) <= threshold else "disagrees"
    scale = abs(theory) if scale is None else abs(float(scale))
    return Check(
        equation=str(equation), quantity=str(quantity), form=form, params=dict(params),
        theory=theory, estimate=estimate, se=se, z=z, verdict=verdict,
        threshold=float(threshold), family=family, dof=dof,
        power_1pct=power(DETECTABLE_RELATIVE_ERROR, scale, se, threshold, dof), scale=scale, note=note,
        kind="statistical", claim=str(claim or equation), expected=expected,
        resolution=resolution(se, scale, threshold, dof), seed=str(seed),
    )


def _check_form(form):
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")


def _check_expected(expected):
    if expected not in ("", "agrees", "disagrees"):
        raise ValueError(f"expected: expected '', 'agrees' or 'disagrees', got {expected!r}")


# --------------------------------------------------------------------------- deterministic limits
@dataclass(frozen=True)
class Limit:
    """A limit found by refinement: the extrapolated value, its error bound and the observed order.

    ``method`` is ``"richardson"`` (monotone convergence at an observed order, extrapolated),
    ``"converged"`` (the last differences are at the rounding floor) or ``"spread"``
    (no monotone convergence: the finest value, bounded by the spread of the last values).
    """

    ns: tuple
    values: tuple
    estimate: float
    bound: float
    order: float
    method: str


def extrapolate(ns, values, *, safety: float = 3.0, floor: float = 0.0) -> Limit:
    r"""Richardson extrapolation of a refinement sequence with an error bound (≥ 3 refinements).

    Model :math:`v(n) = L + C n^{-p}` on grids ``ns`` with a constant ratio r.  The observed
    order is :math:`p = \log(|d_{-2}|/|d_{-1}|)/\log r` from the last two differences
    :math:`d`; the limit :math:`L = v_N + d_{-1}/(r^p - 1)`; the bound is ``safety`` times that
    correction (the grid-convergence-index rule with a factor 3 instead of 1.25), and, with ≥ 4
    refinements, at least ``safety`` times the change of L from the previous triple.  Without
    monotone convergence (differences changing sign or not shrinking) the estimate is the finest
    value and the bound ``safety`` times its largest distance to the two coarser ones.
    ``floor`` (rounding of the computed values) is added to every bound.

    >>> lim = extrapolate([1, 2, 4, 8], [1 + 1/1, 1 + 1/2, 1 + 1/4, 1 + 1/8])   # 1 + 1/n
    >>> round(lim.estimate, 12), round(lim.order, 12), round(lim.bound, 12)   # bound: 3 × the correction 1/8
    (1.0, 1.0, 0.375)
    """
    ns = np.asarray(ns, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != ns.shape or v.size < 3:
        raise ValueError("values: expected at least three refinements, one per grid in ns")
    ratios = ns[1:] / ns[:-1]
    if np.any(ratios <= 1) or np.ptp(ratios) > 1e-12 * ratios[0]:
        raise ValueError(f"ns: expected grids refined by a constant ratio > 1, got {ns.tolist()}")
    r = float(ratios[0])
    d = np.diff(v)
    meta = dict(ns=tuple(int(n) for n in ns), values=tuple(float(x) for x in v))
    if np.all(np.abs(d[-2:]) <= floor):
        return Limit(estimate=float(v[-1]), bound=safety * floor + floor, order=float("nan"), method="converged",
                     **meta)

    def triple(d1, d2, last):
        if d1 == 0 or d2 == 0 or np.sign(d1) != np.sign(d2) or abs(d2) >= abs(d1):
            return None
        p = math.log(abs(d1) / abs(d2)) / math.log(r)
        return p, last + d2 / (r**p - 1.0)

    cur = triple(d[-2], d[-1], v[-1])
    if cur is not None:
        p, est = cur
        bound = safety * abs(est - v[-1])
        if v.size >= 4:
            prev = triple(d[-3], d[-2], v[-2])
            if prev is None:
                bound = max(bound, safety * float(np.max(np.abs(v[-1] - v[-3:-1]))))
            else:
                bound = max(bound, safety * abs(est - prev[1]))
        return Limit(estimate=float(est), bound=float(bound + floor), order=float(p), method="richardson", **meta)
    spread = float(np.max(np.abs(v[-1] - v[-3:-1])))
    with np.errstate(divide="ignore"):
        e = np.abs(d[-2:])
        p = float(math.log(e[0] / e[1]) / math.log(r)) if np.all(e > 0) else float("nan")
    return Limit(estimate=float(v[-1]), bound=float(safety * spread + floor), order=p, method="spread", **meta)


def make_limit(equation, quantity, form, params, theory, limit: Limit, *, family="", scale=None, note="",
               claim="", expected="") -> Check:
    """Build a deterministic :class:`Check` from a :class:`Limit`: verdict ``|L − theory| ≤ bound``, no z, no α."""
    _check_form(form)
    _check_expected(expected)
    theory = float(theory)
    diff = abs(limit.estimate - theory)
    verdict = "agrees" if diff <= limit.bound else "disagrees"
    scale = abs(theory) if scale is None else abs(float(scale))
    res = (limit.bound + diff) / scale if scale > 0 else float("nan")
    return Check(
        equation=str(equation), quantity=str(quantity), form=form, params=dict(params), theory=theory,
        estimate=float(limit.estimate), se=None, z=None, verdict=verdict, threshold=None, family=family,
        dof=None, power_1pct=None, scale=scale, note=note, kind="deterministic", claim=str(claim or equation),
        expected=expected, resolution=res, bound=float(limit.bound), order=float(limit.order),
        refinements={"n": list(limit.ns), "value": list(limit.values), "method": limit.method},
    )


# --------------------------------------------------------------------------- side by side with the paper
@dataclass(frozen=True)
class SideBySide:
    """A theory prediction beside a categorical result of the paper (e.g. Table 1's "diverges"/accuracy).

    Not a comparison with Monte-Carlo: no estimate, no standard error, no z, no threshold, and no
    share of the false-alarm budget.  The prediction is turned into a stated ``call`` by a rule the
    test names (e.g. "explodes" = growth above 10³ × the plain network's); ``agrees`` says whether the
    call matches the paper's column and ``words`` says so in a sentence.  ``report.md`` renders the
    rows of one ``table`` as a table under their ``claim``; ``report.json`` keeps them apart from the
    checks, under ``"side_by_side"``.

    Attributes
    ----------
    claim, table, row : str
        The paper claim, the title of the side-by-side table, the row's label (e.g. ``"T1.3"``).
    case : str
        The configuration in the paper's words.
    paper : str
        The paper's entry, verbatim (``"diverges"``, ``"93.620%"``).
    values : dict
        Predicted numbers by name, in column order (non-finite values become strings in JSON).
    call, words : str
        The prediction's category, and the verdict in words.
    agrees : bool
    params : dict
        JSON-able arguments of the prediction.

    >>> row = SideBySide("§3.1", "Table 1", "T1.1", "γ=1", "diverges", {"growth": 1e54}, "explodes",
    ...                  "agree: explodes at initialisation", True)
    >>> row.as_record()["values"], row.kind
    ({'growth': 1e+54}, 'side-by-side')
    """

    claim: str
    table: str
    row: str
    case: str
    paper: str
    values: dict
    call: str
    words: str
    agrees: bool
    params: dict = field(default_factory=dict)
    kind: str = "side-by-side"

    def as_record(self) -> dict:
        """JSON-able dict (non-finite values become strings, as in :meth:`Check.as_record`)."""
        rec = asdict(self)
        rec["values"] = {k: repr(v) if isinstance(v, float) and not math.isfinite(v) else v
                         for k, v in self.values.items()}
        return rec


# --------------------------------------------------------------------------- seeds
def _canonical(obj):
    """A JSON-able, order-independent image of a case: dataclasses, kernels, arrays, tuples."""
    from .kernels import Kernel

    if isinstance(obj, Kernel):  # by name and expression (its compiled callables are not data)
        return {"__kernel__": obj.name, "expr": str(getattr(obj, "expr", ""))}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__,
                **{f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__array__": obj.dtype.str, "shape": list(obj.shape), "data": _canonical(obj.ravel().tolist())}
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return {"__float__": float(obj).hex()}
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"case: cannot make a stable seed from a {type(obj).__name__} ({obj!r})")


def case_seed(*parts) -> int:
    r"""128-bit seed from a stable hash (SHA-256) of the whole case, for :class:`numpy.random.SeedSequence`.

    ``parts`` are the case (a dataclass such as ``IIDCase``, a dict of parameters, strings
    naming the purpose — ``"pilot"``, ``"main"`` — and numbers).  Every field takes part,
    floats by their exact bits, dict keys in sorted order; kernels by name and expression.

    >>> case_seed("iid", {"kernel": "tri", "sigma_eps": 0.05}) != case_seed("iid", {"kernel": "tri", "sigma_eps": 0.5})
    True
    >>> 0 <= case_seed("x") < 2**128
    True
    """
    text = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


class SeedBook:
    """Seeds of one session: :meth:`seed` hashes a case and refuses a seed already given to another case.

    >>> book = SeedBook()
    >>> book.seed("a", 1) == book.seed("a", 1)   # the same case, the same seed
    True
    >>> len(book.cases)
    1
    """

    def __init__(self, hasher=None):
        self._hasher = case_seed if hasher is None else hasher
        self.cases: dict[int, str] = {}

    def seed(self, *parts) -> int:
        key = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
        value = self._hasher(*parts)
        known = self.cases.setdefault(value, key)
        if known != key:
            raise RuntimeError(f"seed {value:#x} was already given to another case: {known} and {key}")
        return value


# --------------------------------------------------------------------------- the session report
@dataclass
class Claim:
    """A paper claim the report is organised by (equation or section).

    ``title``: what the paper says, in words; ``note``: the paper_notes page (relative to the
    repository); ``figure``: a figure under ``figures/`` or None; ``order``: sort key.
    """

    key: str
    title: str
    note: str = ""
    figure: str | None = None
    order: float = 1e9


class ValidationReport:
    """Collects the :class:`Check` records of a validation session and writes the report.

    Families must be registered before their first check, with their false-alarm share
    and the maximal number of checks they may record (the Bonferroni denominator).  A
    family that records more checks than declared raises, because its threshold would
    no longer hold the budget.  Deterministic limits (:meth:`limit`) need no family share.

    >>> rep = ValidationReport()
    >>> rep.register_family("iid", alpha=3e-4, max_checks=10)
    >>> chk = rep.check("5", "mean", "exact", {"kernel": "tri"}, 1.0, 1.001, 0.001, family="iid")
    >>> chk.verdict, len(rep.records)
    ('agrees', 1)
    """

    def __init__(self, budget: dict | None = None, total: float = SUITE_FALSE_ALARM_BUDGET):
        self.budget = dict(FAMILY_BUDGET if budget is None else budget)
        self.total = total
        self.families: dict[str, tuple[float, int]] = {}
        self.counts: dict[str, int] = {}
        self.records: list[Check] = []
        self.claims: dict[str, Claim] = {}
        self.seeds = SeedBook()
        self.side_by_side: list[SideBySide] = []  # no share of the budget

    def register_family(self, name: str, *, alpha: float, max_checks: int) -> None:
        """Declare a family; idempotent for identical arguments."""
        if name in self.families:
            if self.families[name] != (alpha, max_checks):
                raise ValueError(
                    f"family {name!r} already registered with alpha, max_checks = {self.families[name]}, "
                    f"got {(alpha, max_checks)}"
                )
            return
        share = self.budget.get(name)
        if share is None:
            raise ValueError(f"name: family {name!r} has no share of the false-alarm budget; "
                             f"known families: {sorted(self.budget)}")
        if not 0.0 < alpha <= share * (1 + 1e-12):
            raise ValueError(f"alpha: family {name!r} may use at most {share:g} of the budget, got {alpha!r}")
        z_threshold(alpha, max_checks)  # validates both arguments
        used = sum(a for a, _ in self.families.values()) + alpha
        if used > self.total * (1 + 1e-12):
            raise ValueError(f"alpha: families would use {used:g} > suite budget {self.total:g}")
        self.families[name] = (alpha, max_checks)
        self.counts[name] = 0

    def register_claim(self, key: str, *, title: str, note: str = "", figure: str | None = None,
                       order: float | None = None) -> None:
        """Declare a paper claim (idempotent); records join it through ``claim=`` (default: the equation)."""
        key = str(key)
        if order is None:
            head = key.split()[0].lstrip("§")
            order = float(head) if head.replace(".", "", 1).isdigit() else 1e9
        self.claims[key] = Claim(key=key, title=title, note=note, figure=figure, order=order)

    def case_seed(self, *parts) -> int:
        """:func:`case_seed` of ``parts``, refused if another case of this session already has it."""
        return self.seeds.seed(*parts)

    def threshold(self, family: str, dof: int | None = None) -> float:
        """|z| threshold of ``family`` for an SE with ``dof`` degrees of freedom."""
        if family not in self.families:
            raise ValueError(f"family: {family!r} is not registered (call register_family first)")
        alpha, max_checks = self.families[family]
        return z_threshold(alpha, max_checks, dof)

    def check(self, equation, quantity, form, params, theory, estimate, se, *, family,
              dof=None, scale=None, note="", claim="", expected="", seed="") -> Check:
        """Record one comparison; returns the :class:`Check` (verdict from the family threshold).

        ``claim`` files it under a paper claim (default: the equation); ``expected`` states
        what the test asserts (``"agrees"``/``"disagrees"``); ``seed`` (the case seed, an int
        or hex) names the Monte-Carlo run, so records that share samples are known.
        """
        thr = self.threshold(family, dof)
        if self.counts[family] >= self.families[family][1]:
            raise RuntimeError(
                f"family {family!r} exceeded its declared max_checks={self.families[family][1]}; "
                "raise max_checks (which tightens the threshold) instead of recording more"
            )
        chk = make_check(equation, quantity, form, params, theory, estimate, se, threshold=thr,
                         family=family, dof=dof, scale=scale, note=note, claim=claim, expected=expected,
                         seed=_seed_text(seed))
        self.counts[family] += 1
        self.records.append(chk)
        return chk

    def limit(self, equation, quantity, form, params, theory, limit: Limit, *, family="", scale=None, note="",
              claim="", expected="") -> Check:
        """Record one deterministic limit (:func:`make_limit`); it takes no share of the budget."""
        chk = make_limit(equation, quantity, form, params, theory, limit, family=family, scale=scale, note=note,
                         claim=claim, expected=expected)
        self.records.append(chk)
        return chk

    def compare(self, claim, table, row, case, paper, values, call, words, *, agrees, params=None) -> SideBySide:
        """Record one :class:`SideBySide` row (a prediction beside the paper's categorical column); no budget.

        A row recorded twice in one table raises: the table would show it twice.
        """
        rec = SideBySide(claim=str(claim), table=str(table), row=str(row), case=str(case), paper=str(paper),
                         values={str(k): float(v) for k, v in dict(values).items()}, call=str(call),
                         words=str(words), agrees=bool(agrees), params=dict(params or {}))
        if any((r.table, r.row) == (rec.table, rec.row) for r in self.side_by_side):
            raise ValueError(f"row: {rec.row!r} is already in the side-by-side table {rec.table!r}")
        self.side_by_side.append(rec)
        return rec

    # ------------------------------------------------------------------ output
    def table(self) -> str:
        """Plain-text table: equation, quantity, form, parameters, theory, estimate ± SE (or bound), z, verdict."""
        from .report import check_table

        return check_table(self.records)

    def by_equation(self) -> str:
        """One row per (equation, form): how many checks agree, the largest |z|, the verdict.

        Power checks (a deliberately perturbed theory, quantity ``...[…·1.01]``) are listed
        apart: for them "disagrees" is the expected, wanted outcome.
        """
        from .report import by_equation

        return by_equation(self.records)

    def notes(self) -> list:
        """(equation, form, number of checks, case, note) for every distinct note, in record order."""
        groups: dict = {}
        for c in self.records:
            if c.note:
                key = (c.equation, c.form, c.note)
                case = c.params.get("case", "")
                count, _ = groups.get(key, (0, case))
                groups[key] = (count + 1, case)
        return [(eq, form, n, case, note) for (eq, form, note), (n, case) in groups.items()]

    def summary(self) -> str:
        n_dis = sum(c.verdict == "disagrees" for c in self.records)
        fams = ", ".join(f"{f}: {self.counts[f]}/{m} checks, α={a:g}, |z|≤{z_threshold(a, m):.2f} (normal)"
                         for f, (a, m) in self.families.items())
        return f"{len(self.records)} checks, {n_dis} disagree. Families: {fams}"

    def screen(self, paths=()) -> str:
        """The one-screen terminal summary, claim by claim (:func:`warptheory.report.screen`)."""
        from .report import screen

        return screen(self, paths)

    def write(self, report_dir, repo_root=None) -> list:
        """Write ``report.md`` (errata-style, claim by claim) and ``report.json`` into ``report_dir``."""
        from .report import write

        return write(self, report_dir, repo_root)


def _seed_text(seed) -> str:
    if seed in ("", None):
        return ""
    return f"{int(seed):032x}" if isinstance(seed, (int, np.integer)) else str(seed)


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
