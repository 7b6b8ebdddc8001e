"""The IID grid of eqs 5, 7, 8 and the shared, cached Monte-Carlo runs (``paper_notes/s03_statistics.md``).

One Monte-Carlo run per case produces y, ∇_x L and ∇_ε L together; the eq-5, eq-7 and
eq-8 test modules read the same cached run.  Sample sizes follow the sizing rule of
:mod:`warptheory.stats`: a pilot run (its own seeds, not reused) estimates the SE per batch,
and the main run gets ``SIZING_MARGIN`` × the batches that make every checked moment's
SE ≤ 0.01·scale/(t_thr + z_0.99), i.e. ≥ 99 % power against a 1 % relative error.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy as sp

from warptheory import moments
from warptheory.kernels import T, kernel_from_sympy, on_support
from warptheory.montecarlo import IIDCase, run_iid
from warptheory.stats import FAMILY_BUDGET, required_se, z_threshold

REPLICATES = 64
PILOT_BATCHES = 1
# The pilot SE and the final SE are both estimated from 63 degrees of freedom (relative
# s.d. ≈ 9 % each); a factor 2 on the sample count keeps the final power ≥ 0.99 with margin.
SIZING_MARGIN = 2.0
MAX_BATCHES = 400  # a runtime guard; if it binds, the power assertion fails (visibly)

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
            batch = {1: 4, 2: 4, 3: 1}[d]
            case = IIDCase(kern, d=d, channels=n, sigma_eps=s, mu_x=mux, sigma_x=sx, mu_dy=mug, sigma_dy=sg,
                           size=_size_for(s, d), batch=batch)
            out[f"{_kname(kern)}-d{d}-N{n}-s{s:g}"] = case
    out["tri-d2-uniform"] = IIDCase("tri", d=2, channels=2, sigma_eps=1.0, mu_x=1.0, sigma_x=2.0, mu_dy=0.5,
                                    sigma_dy=1.0, x_dist="uniform", size=48, batch=4)
    out["cos-d1-laplace"] = IIDCase("cos", d=1, channels=4, sigma_eps=0.2, mu_x=-1.0, sigma_x=1.0, mu_dy=1.0,
                                    sigma_dy=2.0, x_dist="laplace", size=1024, batch=4)
    out["tri-d2-zeros"] = IIDCase("tri", d=2, channels=2, sigma_eps=0.3, mu_x=1.0, sigma_x=1.0, mu_dy=1.0,
                                  sigma_dy=1.0, padding="zeros", size=64, batch=4)
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


@lru_cache(maxsize=None)
def result(case_id: str, sample_factor: int = 1, case: IIDCase | None = None):
    """Cached, power-sized Monte-Carlo run of a grid case (or of ``case`` under ``case_id``)."""
    case = CASES[case_id] if case is None else case
    seed = int.from_bytes(case_id.encode(), "little") % (2**63)
    pilot = run_iid(case, replicates=REPLICATES, batches=PILOT_BATCHES, seed=seed + 1)
    thr = threshold()
    pred = theory(case, "exact")
    need = 1.0
    for q in ("y", "dx", "deps"):
        if not checked(case, q):
            continue
        for mom in ("mean", "second_moment"):
            _, se, _ = pilot.estimate(q, mom)
            target = required_se(scale(pred[q], mom), thr)
            if se > 0 and target > 0:
                need = max(need, (se / target) ** 2 * PILOT_BATCHES)
    batches = int(min(MAX_BATCHES, math.ceil(need * SIZING_MARGIN))) * sample_factor
    return run_iid(case, replicates=REPLICATES, batches=batches, seed=seed)


def paper_expectation(case: IIDCase, quantity: str, moment: str) -> str:
    """"same" where the paper form equals the exact form, "differs" where it is off by ≥ 5 %."""
    p = getattr(theory(case, "paper")[quantity], moment)
    e = getattr(theory(case, "exact")[quantity], moment)
    sc = scale(theory(case, "exact")[quantity], moment)
    if abs(p - e) <= 1e-12 * max(sc, 1e-300):
        return "same"
    if abs(p - e) >= 0.05 * sc:
        return "differs"
    return "marginal"


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
    """Record the mean and second-moment checks of one quantity; returns the checks."""
    report.register_family("iid", alpha=IID_ALPHA, max_checks=IID_MAX_CHECKS)
    res = result(case_id, sample_factor, None if case_id in CASES else case)
    pred = theory(case, form)
    out = []
    for mom in ("mean", "second_moment"):
        est, se, dof = res.estimate(quantity, mom)
        sc = scale(theory(case, "exact")[quantity], mom)
        out.append(report.check(equation, f"{quantity}.{mom}", form, params(case, equation),
                                getattr(pred[quantity], mom), est, se, family="iid", dof=dof, scale=sc))
    return out


def grid_params(quantity):
    """pytest params (case_id, form) with strict xfail where the paper form is expected to disagree."""
    import pytest

    out = []
    for cid, case in CASES.items():
        if not checked(case, quantity):
            continue
        out.append(pytest.param(cid, "exact", id=f"{cid}-exact"))
        kinds = {paper_expectation(case, quantity, m) for m in ("mean", "second_moment")}
        if "differs" in kinds:
            marks = pytest.mark.xfail(strict=True, reason="paper form drops the independent-offset cross terms "
                                                          "(see paper_notes/s03_statistics.md, eq 22)")
            out.append(pytest.param(cid, "paper", id=f"{cid}-paper", marks=marks))
        elif kinds == {"same"}:
            out.append(pytest.param(cid, "paper", id=f"{cid}-paper"))
        else:
            out.append(pytest.param(cid, "paper-marginal", id=f"{cid}-paper-marginal"))
    return out


def assert_checks(checks, form):
    """Exact / coinciding forms must agree and have the required power; marginal paper forms are recorded only."""
    if form == "paper-marginal":
        return
    for chk in checks:
        assert chk.verdict == "agrees", chk
        assert chk.power_1pct >= 0.99, f"under-sized sample: {chk}"
