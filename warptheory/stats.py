r"""Statistical machinery of the Monte-Carlo validation: checks, thresholds, standard errors, power.

Every comparison of a theory with a Monte-Carlo estimate becomes one :class:`Check`:
the estimate, its standard error (from independent replicates, :func:`batch_means`),
the standardised difference :math:`z = (\hat m - m)/\mathrm{SE}` and a verdict against a
threshold that follows from a stated false-alarm budget (:func:`z_threshold`).
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
≥ 99 % power against a 1 % error.

>>> round(z_threshold(0.05, 1), 6)   # one two-sided check at 5 %
1.959964
>>> z_threshold(1e-3, 100) > z_threshold(1e-3, 10)   # more checks, stricter
True
>>> m, se = batch_means([1.0, 2.0, 3.0, 4.0])
>>> m, round(se, 12)
(2.5, 0.645497224368)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np


def _st():
    """scipy.stats, imported on first use: it costs ~0.6 s, half of ``import warptheory``."""
    from scipy import stats

    return stats


__all__ = [
    "Check",
    "SUITE_FALSE_ALARM_BUDGET",
    "FAMILY_BUDGET",
    "TARGET_POWER",
    "DETECTABLE_RELATIVE_ERROR",
    "z_threshold",
    "batch_means",
    "make_check",
    "power",
    "required_se",
    "ValidationReport",
]

#: Probability that the whole default validation suite reports any false disagreement.
SUITE_FALSE_ALARM_BUDGET = 1e-3

#: Share of the suite budget per family of checks.  They sum to the suite budget.
#: ``iid``: eqs 5, 7, 8 (grid and hypothesis draws); ``selfwarp``: eq 9;
#: ``power``: the null half of the power/calibration checks; ``fields``: random-field
#: spectra (eqs 13, 45, 48, issue 5); ``orthogonality``: eqs 14, 49 (issue 5);
#: ``stability``: SelfWarp gains at initialisation, §3.1 (issue 13; taken from ``iid``).
FAMILY_BUDGET = {
    "iid": 2e-4,
    "selfwarp": 5e-5,
    "power": 5e-5,
    "fields": 5e-4,
    "orthogonality": 1e-4,
    "stability": 1e-4,
}
assert abs(sum(FAMILY_BUDGET.values()) - SUITE_FALSE_ALARM_BUDGET) < 1e-15

#: Power the default run must have against :data:`DETECTABLE_RELATIVE_ERROR`.
TARGET_POWER = 0.99
#: Relative error of a moment that the default run must detect.
DETECTABLE_RELATIVE_ERROR = 0.01


@dataclass(frozen=True)
class Check:
    """One theory-versus-Monte-Carlo comparison.

    Attributes
    ----------
    equation : str
        Paper equation number, e.g. ``"7"``.
    quantity : str
        What is compared, e.g. ``"second_moment"``.
    form : str
        ``"paper"`` (formula as printed) or ``"exact"`` (our derivation).
    params : dict
        JSON-able parameters, named as the :mod:`warptheory.moments` arguments.
    theory, estimate, se, z : float
        Prediction, Monte-Carlo estimate, its standard error, (estimate − theory)/se.
    verdict : str
        ``"agrees"`` if ``|z| <= threshold``, else ``"disagrees"``.
    threshold : float
        The |z| threshold of the check's family.
    family : str
        Budget family (:data:`FAMILY_BUDGET`).
    dof : int or None
        Degrees of freedom of the SE (replicates − 1); None: treated as normal.
    power_1pct : float
        Probability that this check detects a 1 % relative error of ``scale``.
    scale : float
        Magnitude a relative error refers to (``|theory|`` unless given, e.g. the
        standard deviation for a mean whose theory is 0).
    """

    equation: str
    quantity: str
    form: str
    params: dict
    theory: float
    estimate: float
    se: float
    z: float
    verdict: str
    threshold: float
    family: str = ""
    dof: int | None = None
    power_1pct: float = float("nan")
    scale: float = float("nan")
    note: str = field(default="")

    def as_record(self) -> dict:
        """JSON-able dict (non-finite floats become strings "inf", "-inf", "nan")."""
        rec = asdict(self)
        for key, value in rec.items():
            if isinstance(value, float) and not math.isfinite(value):
                rec[key] = repr(value)
        return rec


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
        given (the normal one otherwise).

    >>> round(z_threshold(1e-3, 1000), 4)
    4.8916
    >>> z_threshold(1e-3, 1000, dof=31) > z_threshold(1e-3, 1000)
    True
    """
    if not (isinstance(alpha, (float, int)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha: expected a probability in (0, 1), got {alpha!r}")
    if isinstance(n_checks, bool) or not isinstance(n_checks, (int, np.integer)) or n_checks < 1:
        raise ValueError(f"n_checks: expected a positive integer, got {n_checks!r}")
    tail = alpha / (2.0 * n_checks)
    if dof is None:
        return float(_st().norm.isf(tail))
    if isinstance(dof, bool) or not isinstance(dof, (int, np.integer)) or dof < 1:
        raise ValueError(f"dof: expected a positive integer or None, got {dof!r}")
    return float(_st().t.isf(tail, dof))


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
    if dof is None:
        return float(_st().norm.sf(threshold - nc) + _st().norm.cdf(-threshold - nc))
    upper = float(_st().nct.sf(threshold, dof, nc))
    # the lower tail is astronomically small here; scipy's nct.cdf can return nan for it
    lower = float(_st().nct.cdf(-threshold, dof, nc))
    return upper + (lower if math.isfinite(lower) else 0.0)


def required_se(scale: float, threshold: float, relative_error: float = DETECTABLE_RELATIVE_ERROR,
                target_power: float = TARGET_POWER) -> float:
    r"""Largest SE giving ``target_power`` against ``relative_error``: δ/(z_thr + z_power).

    This is the sizing rule of the suite: :math:`|\delta|/\mathrm{SE} \ge z_{thr} + z_{0.99}`.

    >>> round(required_se(1.0, 5.0), 6)
    0.001365
    """
    return abs(relative_error * scale) / (threshold + float(_st().norm.isf(1.0 - target_power)))


def make_check(equation, quantity, form, params, theory, estimate, se, *, threshold, family="",
               dof=None, scale=None, note="") -> Check:
    """Build a :class:`Check`, computing z, the verdict and the power.

    A zero SE (a quantity that is exactly deterministic, e.g. ∇ε for ``rect``) agrees
    only if the estimate equals the theory exactly.
    """
    if form not in ("paper", "exact"):
        raise ValueError(f"form: expected 'paper' or 'exact', got {form!r}")
    theory, estimate, se = float(theory), float(estimate), float(se)
    if se < 0 or math.isnan(se):
        raise ValueError(f"se: expected a non-negative number, got {se!r}")
    if se == 0.0:
        z = 0.0 if estimate == theory else math.copysign(math.inf, estimate - theory)
    elif not math.isfinite(theory):
        z = -math.copysign(math.inf, theory)
    else:
        z = (estimate - theory) / se
    verdict = "agrees" if abs(z) <= threshold else "disagrees"
    scale = abs(theory) if scale is None else abs(float(scale))
    return Check(
        equation=str(equation), quantity=str(quantity), form=form, params=dict(params),
        theory=theory, estimate=estimate, se=se, z=float(z), verdict=verdict,
        threshold=float(threshold), family=family, dof=dof,
        power_1pct=power(DETECTABLE_RELATIVE_ERROR, scale, se, threshold, dof), scale=scale, note=note,
    )


class ValidationReport:
    """Collects the :class:`Check` records of a validation session and writes the report.

    Families must be registered before their first check, with their false-alarm share
    and the maximal number of checks they may record (the Bonferroni denominator).  A
    family that records more checks than declared raises, because its threshold would
    no longer hold the budget.

    >>> rep = ValidationReport()
    >>> rep.register_family("iid", alpha=2e-4, max_checks=10)
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

    def threshold(self, family: str, dof: int | None = None) -> float:
        """|z| threshold of ``family`` for an SE with ``dof`` degrees of freedom."""
        if family not in self.families:
            raise ValueError(f"family: {family!r} is not registered (call register_family first)")
        alpha, max_checks = self.families[family]
        return z_threshold(alpha, max_checks, dof)

    def check(self, equation, quantity, form, params, theory, estimate, se, *, family,
              dof=None, scale=None, note="") -> Check:
        """Record one comparison; returns the :class:`Check` (verdict from the family threshold)."""
        thr = self.threshold(family, dof)
        if self.counts[family] >= self.families[family][1]:
            raise RuntimeError(
                f"family {family!r} exceeded its declared max_checks={self.families[family][1]}; "
                "raise max_checks (which tightens the threshold) instead of recording more"
            )
        chk = make_check(equation, quantity, form, params, theory, estimate, se, threshold=thr,
                         family=family, dof=dof, scale=scale, note=note)
        self.counts[family] += 1
        self.records.append(chk)
        return chk

    # ------------------------------------------------------------------ output
    def table(self) -> str:
        """Plain-text table: equation, quantity, form, parameters, theory, estimate ± SE, z, verdict."""
        head = ["eq", "quantity", "form", "parameters", "theory", "estimate ± SE", "z", "verdict"]
        rows = [head]
        for c in self.records:
            rows.append([
                c.equation, c.quantity, c.form, _params_text(c.params), f"{c.theory:.6g}",
                f"{c.estimate:.6g} ± {c.se:.2g}", f"{c.z:+.2f}", c.verdict,
            ])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def by_equation(self) -> str:
        """One row per (equation, form): how many checks agree, the largest |z|, the verdict.

        Power checks (a deliberately perturbed theory, quantity ``...[…·1.01]``) are listed
        apart: for them "disagrees" is the expected, wanted outcome.
        """
        def key(eq):
            head = eq.split()[0]
            return (0, int(head), eq) if head.isdigit() else (1, 0, eq)

        groups: dict = {}
        for c in self.records:
            kind = "power check" if "·" in c.quantity else c.form
            groups.setdefault((c.equation, kind), []).append(c)
        head = ["eq", "form", "checks", "agree", "disagree", "max |z|", "verdict"]
        rows = [head]
        for (eq, kind), checks in sorted(groups.items(), key=lambda item: (key(item[0][0]), item[0][1])):
            n_agree = sum(c.verdict == "agrees" for c in checks)
            n_dis = len(checks) - n_agree
            zmax = max(abs(c.z) for c in checks)
            if kind == "power check":
                verdict = "rejects the perturbed theory" if n_dis == len(checks) else "LOW POWER"
            else:
                verdict = "agrees" if n_dis == 0 else f"disagrees ({n_dis} of {len(checks)})"
            rows.append([eq, kind, str(len(checks)), str(n_agree), str(n_dis), f"{zmax:.2f}", verdict])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def notes(self) -> list:
        """(equation, form, number of checks, case, note) for every distinct note, in record order.

        A spectrum records one check per frequency bin; its max |z| and relative L2 error
        (issue 5) live in the note that all its bins share.
        """
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

    def write(self, report_dir) -> list:
        """Write ``report.md`` and ``report.json`` into ``report_dir``; returns the paths."""
        import json
        import pathlib

        out = pathlib.Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "suite_false_alarm_budget": self.total,
            "families": {f: {"alpha": a, "max_checks": m, "recorded": self.counts[f]}
                         for f, (a, m) in self.families.items()},
            "records": [c.as_record() for c in self.records],
        }
        jpath = out / "report.json"
        jpath.write_text(json.dumps(payload, indent=1, allow_nan=False))
        mpath = out / "report.md"
        md = ["# Validation report", "", self.summary(), "", "## By equation", "", "```", self.by_equation(), "```",
              "", "## Every check", "",
              "| eq | quantity | form | parameters | theory | estimate ± SE | z | verdict |",
              "|---|---|---|---|---|---|---|---|"]
        for c in self.records:
            md.append(f"| {c.equation} | {c.quantity} | {c.form} | {_params_text(c.params)} | {c.theory:.6g} | "
                      f"{c.estimate:.6g} ± {c.se:.2g} | {c.z:+.2f} | {c.verdict} |")
        notes = self.notes()
        if notes:
            md += ["", "## Notes (one per group of checks that share it: spectra summaries, setups)", "",
                   "| eq | form | checks | case | note |", "|---|---|---|---|---|"]
            md += [f"| {eq} | {form} | {n} | {case} | {note} |" for eq, form, n, case, note in notes]
        mpath.write_text("\n".join(md) + "\n")
        return [mpath, jpath]


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
