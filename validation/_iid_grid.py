"""The IID grid of eqs 5, 7, 8 and the shared, cached Monte-Carlo runs (``paper_notes/s03_statistics.md``).

One Monte-Carlo run per case produces y, ∇_x L and ∇_ε L together; the eq-5, eq-7 and
eq-8 test modules read the same cached run.  Sample sizes follow the sizing rule of
:mod:`warptheory.stats`: a pilot run (its own seed, not reused) estimates the SE per batch,
the main run gets ``SIZING_MARGIN`` × the batches that make every checked moment's
SE ≤ 0.01·scale/(t_thr + z_0.99), i.e. ≥ 99 % power against a 1 % relative error, and a
top-up run (its own seed) is merged replicate by replicate where the main run's SE still
falls short.  Records: one ``paper=exact`` record per moment where the printed formula is the
exact one; otherwise an ``exact`` record (must agree) and a ``paper`` record (must disagree
whenever the run resolves the difference between the forms).
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from _parallel import OneEngineThreadEach
from warptheory import moments
from warptheory.kernels import T, kernel_from_sympy, on_support
from warptheory.montecarlo import IIDCase, IIDResult, run_iid
from warptheory.stats import FAMILY_BUDGET, required_se, resolution, z_threshold

REPLICATES = 64
PILOT_BATCHES = 1
# The pilot SE is estimated from 63 degrees of freedom (relative s.d. ≈ 9 %): 1.5 × the batches it
# asks for, then a top-up run (its own seed) wherever the main run's SE still gives < 99 % power.
SIZING_MARGIN = 1.5
TOPUP_MARGIN = 1.2
MAX_BATCHES = 400  # a runtime guard; if it binds, the power assertion fails (visibly)
#: images per batch: one engine call carries this many, so its fixed cost is spread over them
BATCH = {1: 16, 2: 16, 3: 4}

IID_ALPHA = FAMILY_BUDGET["iid"]
# 21 grid cases × 12 records + hypothesis draws (≤ 8 examples × 12); headroom included.
IID_MAX_CHECKS = 400

#: user kernel: cubic Hermite (smoothstep) 1 - 3t² + 2|t|³, mean-preserving
SMOOTHSTEP = kernel_from_sympy(on_support(1 - 3 * T**2 + 2 * sp.Abs(T) ** 3), name="smoothstep",
                               description="user kernel: cubic Hermite 1 - 3t² + 2|t|³")

KERNELS = ("tri", "cos", "hann", "sqrt_tri", "rect", SMOOTHSTEP)


def _kname(k):
    return k if isinstance(k, str) else k.name


def _size_for(sigma_eps, d):
    # The exact eq-7 form folds Γ with the period, and eqs 5/8 need only two distinct taps
    # (period ≥ 2), so the period is a cost choice, not an accuracy one.
    return {1: 1024, 2: 48, 3: 16}[d]


def _cases():
    out = {}
    specs = [  # (d, N, σ_ε, μ_x, σ_x, μ_dy, σ_dy)
        (1, 1, 0.05, 0.0, 1.0, 0.0, 1.0),
        (2, 3, 0.5, 1.0, 0.5, 1.0, 1.0),
        (3, 2, 2.0, 0.5, 1.0, -1.0, 0.5),
    ]
    for kern in KERNELS:
        for d, n, s, mux, sx, mug, sg in specs:
            batch = BATCH[d]
            case = IIDCase(kern, d=d, channels=n, sigma_eps=s, mu_x=mux, sigma_x=sx, mu_dy=mug, sigma_dy=sg,
                           size=_size_for(s, d), batch=batch)
            out[f"{_kname(kern)}-d{d}-N{n}-s{s:g}"] = case
    out["tri-d2-uniform"] = IIDCase("tri", d=2, channels=2, sigma_eps=1.0, mu_x=1.0, sigma_x=2.0, mu_dy=0.5,
                                    sigma_dy=1.0, x_dist="uniform", size=48, batch=BATCH[2])
    out["cos-d1-laplace"] = IIDCase("cos", d=1, channels=4, sigma_eps=0.2, mu_x=-1.0, sigma_x=1.0, mu_dy=1.0,
                                    sigma_dy=2.0, x_dist="laplace", size=1024, batch=BATCH[1])
    out["tri-d2-zeros"] = IIDCase("tri", d=2, channels=2, sigma_eps=0.3, mu_x=1.0, sigma_x=1.0, mu_dy=1.0,
                                  sigma_dy=1.0, padding="zeros", size=64, batch=BATCH[2])
    return out


CASES = _cases()


def theory(case: IIDCase, form: str) -> dict:
    """Predicted moments of y, ∇_x L, ∇_ε L for ``case`` in ``form``."""
    kw = dict(kernel=case.kernel, sigma_eps=case.sigma_eps, d=case.d, form=form)
    period = case.size if case.padding == "periodic" else None
    return {
        "y": moments.forward(mu_x=case.mu_x, sigma_x=case.sigma_x, **kw),
        "dx": moments.backward_x(mu_dy=case.mu_dy, sigma_dy=case.sigma_dy, period=period, **kw),
        "deps": moments.backward_eps(mu_x=case.mu_x, sigma_x=case.sigma_x, mu_dy=case.mu_dy,
                                     sigma_dy=case.sigma_dy, channels=case.channels, **kw),
    }


def scale(pred, moment: str) -> float:
    """Magnitude a 1 % error refers to: |theory|, or the s.d. for a mean predicted to be 0."""
    if moment == "mean" and pred.mean == 0.0:
        return math.sqrt(pred.second_moment)
    return abs(getattr(pred, moment))


def checked(case: IIDCase, quantity: str) -> bool:
    """False where a moment of ``quantity`` is infinite (∇_ε L for sqrt_tri): no z-test is valid."""
    return math.isfinite(theory(case, "exact")[quantity].second_moment)


def threshold() -> float:
    return z_threshold(IID_ALPHA, IID_MAX_CHECKS, REPLICATES - 1)


_RESULTS: dict = {}


def _run(case, batches, seed):
    with OneEngineThreadEach() as pool:
        return run_iid(case, replicates=REPLICATES, batches=batches, seed=seed, executor=pool)


def _worst_need(res, case, batches):
    """Batches that give every checked moment the SE of 99 % power at 1 % (from this run's SE)."""
    thr, pred, need = threshold(), theory(case, "exact"), 0.0
    for q in ("y", "dx", "deps"):
        if not checked(case, q):
            continue
        for mom in ("mean", "second_moment"):
            _, se, _ = res.estimate(q, mom)
            target = required_se(scale(pred[q], mom), thr)
            if se > 0 and target > 0:
                need = max(need, (se / target) ** 2 * batches)
    return need


def _combine(a: IIDResult, batches_a: int, b: IIDResult, batches_b: int) -> IIDResult:
    """Replicate r of the combined run: the batch-weighted mean of replicate r of both (still 64 IID values)."""
    w = batches_a / (batches_a + batches_b)
    reps = {q: w * a.replicates[q] + (1 - w) * b.replicates[q] for q in a.replicates}
    samples = {q: a.samples_per_replicate[q] + b.samples_per_replicate[q] for q in a.samples_per_replicate}
    return IIDResult(case=a.case, replicates=reps, samples_per_replicate=samples)


def result(report, case_id: str, sample_factor: int = 1, case: IIDCase | None = None):
    """Cached, power-sized Monte-Carlo run of a grid case (or of ``case`` under ``case_id``); returns (run, seed).

    Pilot (1 batch per replicate), main run (``SIZING_MARGIN`` × the batches the pilot asks for)
    and, where the main run's SE still misses 99 % power at 1 %, a top-up run whose replicates are
    merged into the main ones.  Seeds: :meth:`~warptheory.stats.ValidationReport.case_seed` of the
    whole case and the run's purpose, so no two cases or runs share numbers.
    """
    case = CASES[case_id] if case is None else case
    key = (case_id, sample_factor, case)
    if key in _RESULTS:
        return _RESULTS[key]
    pilot = _run(case, PILOT_BATCHES, report.case_seed("iid", case, "pilot", REPLICATES, PILOT_BATCHES))
    need = max(1.0, _worst_need(pilot, case, PILOT_BATCHES))
    batches = int(min(MAX_BATCHES, math.ceil(need * SIZING_MARGIN))) * sample_factor
    seed = report.case_seed("iid", case, "main", REPLICATES, batches)
    res = _run(case, batches, seed)
    extra = int(math.ceil(_worst_need(res, case, batches) * TOPUP_MARGIN)) - batches
    if extra > 0 and batches + extra <= MAX_BATCHES * sample_factor:
        top = _run(case, extra, report.case_seed("iid", case, "top-up", REPLICATES, batches, extra))
        res = _combine(res, batches, top, extra)
    _RESULTS[key] = (res, seed)
    return res, seed


def forms_coincide(case: IIDCase, quantity: str, moment: str) -> bool:
    """True where the paper's formula for ``moment`` is the exact one (to rounding): one "paper=exact" record."""
    p = getattr(theory(case, "paper")[quantity], moment)
    e = getattr(theory(case, "exact")[quantity], moment)
    return abs(p - e) <= 1e-12 * max(scale(theory(case, "exact")[quantity], moment), 1e-300)


def params(case: IIDCase, equation: str) -> dict:
    p = case.params()
    keep = {"5": ("mu_x", "sigma_x", "x_dist"), "7": ("mu_dy", "sigma_dy"),
            "8": ("mu_x", "sigma_x", "mu_dy", "sigma_dy", "channels", "x_dist")}[equation]
    base = {"kernel": p["kernel"], "sigma_eps": p["sigma_eps"], "d": p["d"]}
    base.update({k: p[k] for k in keep})
    if case.padding != "periodic":
        base["padding"] = case.padding
    return base


def run_checks(report, case_id, case, equation, quantity, form, sample_factor):
    """Record the checks of one quantity in ``form``; returns them.

    ``form="exact"``: per moment one record, ``"paper=exact"`` where the printed formula is the
    exact one, else ``"exact"``; each must agree.  ``form="paper"``: a record per moment where
    the forms differ, expected to disagree whenever this run can separate them (the difference
    exceeds the record's 99 %-power resolution); a difference below the resolution is recorded
    with its resolution and no assertion.
    """
    report.register_family("iid", alpha=IID_ALPHA, max_checks=IID_MAX_CHECKS)
    res, seed = result(report, case_id, sample_factor, None if case_id in CASES else case)
    out = []
    for mom in ("mean", "second_moment"):
        same = forms_coincide(case, quantity, mom)
        if form == "paper" and same:
            continue
        est, se, dof = res.estimate(quantity, mom)
        exact = getattr(theory(case, "exact")[quantity], mom)
        sc = scale(theory(case, "exact")[quantity], mom)
        note = ""
        if form == "exact":
            rec_form, value, expected = ("paper=exact" if same else "exact"), exact, "agrees"
        else:
            rec_form, value = "paper", getattr(theory(case, "paper")[quantity], mom)
            gap = abs(value - exact) / sc
            separable = gap >= resolution(se, sc, threshold(), dof)
            expected = "disagrees" if separable else ""
            note = (f"paper and exact differ by {100 * gap:.3g} % of the scale; this run resolves "
                    f"{100 * resolution(se, sc, threshold(), dof):.2g} %"
                    + ("" if separable else ": not separable at this sample size, no verdict asserted"))
        out.append(report.check(equation, f"{quantity}.{mom}", rec_form, params(case, equation), value, est, se,
                                family="iid", dof=dof, scale=sc, expected=expected, seed=seed, note=note))
    return out


def grid_params(quantity):
    """pytest params (case_id, form): "exact" for every case; "paper" where a moment's forms differ."""
    import pytest

    out = []
    for cid, case in CASES.items():
        if not checked(case, quantity):
            continue
        out.append(pytest.param(cid, "exact", id=f"{cid}-exact"))
        if not all(forms_coincide(case, quantity, m) for m in ("mean", "second_moment")):
            out.append(pytest.param(cid, "paper", id=f"{cid}-paper"))
    return out


def assert_checks(checks):
    """Every record's verdict is the one it expects; records asserting agreement have ≥ 99 % power at 1 %."""
    for chk in checks:
        if chk.expected:
            assert chk.verdict == chk.expected, chk
        if chk.expected == "agrees":
            assert chk.power_1pct >= 0.99, f"under-sized sample: {chk}"
