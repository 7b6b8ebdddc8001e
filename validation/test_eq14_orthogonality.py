r"""Eq 14 (warping as an orthogonal transform, §4.2) and eq 49 (unwarping, supplementary §12): deterministic limits.

No probability is involved, so no z and no α: each record is a limit found by refinement
(``paper_notes/s04_continuous.md``).  A smooth bijective warp is fixed in continuous coordinates
(:func:`warptheory.orthogonality.smooth_warp`, J ∈ [0.25, 1.75]); the grid is refined by 2 five
times in 1-D (n = 1024 … 16384) and three times in 2-D (n = 32 … 256); at every n the products are
applied by the engine with the warp shifted by ``PHASES`` sub-pixel amounts per axis and averaged
(:func:`~warptheory.orthogonality.phase_averaged_study`): this removes the oscillation with the
sample phase that makes a single grid converge at order ½, so the sequence is smooth in n.
:func:`warptheory.stats.extrapolate` gives the Richardson limit, the observed order and an error
bound (3 × the extrapolation correction, and 3 × its change over the previous triple); the verdict
is ``|limit − theory| ≤ bound`` and every record asserting agreement must resolve 1 %
((bound + |limit − theory|)/theory ≤ 0.01).

Senses and forms:

* ``weak``: ⟨h, P g⟩/n^d against ∫ h g · prediction; ``paper`` = the continuum 1/|J| (eq 14),
  ``exact`` = :func:`~warptheory.orthogonality.gram_limit`; one ``paper=exact`` record where they
  coincide (KᵀK of the mean-preserving kernels tri, hann, rect).  Eq 14 computes it as the Gram
  form ⟨Kh, Kg⟩ / ⟨Kᵀh, Kᵀg⟩, eq 49 as ⟨h, unwarp(warp(g))⟩.  Power: the same limit against the
  theory ×1.01 must disagree.
* ``pointwise``: sup over pixels of |row sum − 1/|J|| on one grid phase — the literal statement;
  it does not converge for any kernel (the limit of the sup stays ≈ 0.4–2), so the paper's record
  must disagree.
"""
from __future__ import annotations

import pytest

from warptheory.kernels import BUILTIN_KERNELS
from warptheory.orthogonality import phase_averaged_study, smooth_warp
from warptheory.stats import extrapolate

FAMILY = "orthogonality (deterministic)"
NS = {1: (1024, 2048, 4096, 8192, 16384), 2: (32, 64, 128, 256)}
#: Sub-pixel shifts per axis.  The residual of a phase average is the kernel's harmonic at the number
#: of shifts; KᵀK converges at order 1 and needs the finer average in 2-D (cos, sqrt_tri: with 8 the
#: bound is 1.2 % of the limit, with 16 it is 0.2–1 %), KKᵀ's bound is 0.003–0.15 % with 8.
PHASES = {(1, "KKt"): 32, (1, "KtK"): 32, (2, "KKt"): 8, (2, "KtK"): 16}
#: relative rounding floor of a sum over n^d terms of O(1) (float64)
FLOOR = 1e-12
RESOLUTION = 0.01
_CACHE: dict = {}


def _study(kernel, product, ndim, operator):
    key = (kernel, product, ndim, operator)
    if key not in _CACHE:
        # row sums on one phase: KKᵀ for eq 14, unwarp∘warp (KᵀK) for eq 49 — not twice
        pointwise = ndim == 1 and (product, operator) in (("KKt", "gram"), ("KtK", "compose"))
        senses = ("weak", "single_phase") if pointwise else ("weak",)
        _CACHE[key] = phase_averaged_study(kernel, smooth_warp(ndim), NS[ndim], product, phases=PHASES[ndim, product],
                                           operator=operator, senses=senses)
    return _CACHE[key]


def _params(kernel, product, ndim, sense):
    return {"kernel": kernel, "product": product, "d": ndim, "sense": sense,
            "n": "/".join(map(str, NS[ndim])), "phases": PHASES[ndim, product] ** ndim if sense == "weak" else 1}


def _weak_records(report, equation, kernel, product, ndim, operator):
    study = _study(kernel, product, ndim, operator)
    values = study["weak"]
    limit = extrapolate(NS[ndim], values, floor=FLOOR * abs(values[-1]))
    paper, exact = study["weak_theory"]["paper"], study["weak_theory"]["exact"]
    same = abs(paper - exact) <= 1e-12 * abs(exact)
    params = _params(kernel, product, ndim, "weak")
    quantity = f"{product} weak" + (" (unwarp∘warp)" if operator == "compose" else "")
    note = (f"values {', '.join(f'{v:.9g}' for v in values)}; {limit.method}, order {limit.order:.2f}")
    out = []
    if same:
        out.append(report.limit(equation, quantity, "paper=exact", params, exact, limit, family=FAMILY,
                                expected="agrees", note=note))
    else:
        out.append(report.limit(equation, quantity, "exact", params, exact, limit, family=FAMILY,
                                expected="agrees", note=note))
        out.append(report.limit(equation, quantity, "paper", params, paper, limit, family=FAMILY,
                                expected="disagrees", note=note))
    out.append(report.limit(equation, f"{quantity}[limit·1.01]", "exact", params, 1.01 * exact, limit,
                            family=FAMILY, expected="disagrees", note="power check: must disagree"))
    return out


def _assert(checks):
    for chk in checks:
        assert chk.verdict == chk.expected, chk
        if chk.expected == "agrees":
            assert chk.resolution <= RESOLUTION, f"bound does not resolve 1 %: {chk}"


def _weak_cases(ndim):
    return [pytest.param(k, p, id=f"{k}-{p}-d{ndim}") for k in BUILTIN_KERNELS for p in ("KKt", "KtK")]


@pytest.mark.parametrize("kernel,product", _weak_cases(1))
def test_eq14_weak_limit_1d(report, kernel, product):
    """Catches: a wrong gram_limit (e.g. the KᵀK sum Σ(φ*φ)(m) dropped to 1) or a wrong engine product."""
    _assert(_weak_records(report, "14", kernel, product, 1, "gram"))


@pytest.mark.parametrize("kernel,product", _weak_cases(2))
def test_eq14_weak_limit_2d(report, kernel, product):
    """Catches: gram_limit's lattice sum over Am in 2-D (e.g. the determinant or a transposed A)."""
    _assert(_weak_records(report, "14", kernel, product, 2, "gram"))


@pytest.mark.parametrize("kernel", BUILTIN_KERNELS)
def test_eq49_unwarp_warp_weak_limit(report, kernel):
    """unwarp(warp(x)) = KᵀK x by the engine's composition: against x/|J∘f⁻¹| and gram_limit.

    Catches: unwarp not the transpose of warp (its limit would differ from the Gram form's).
    """
    _assert(_weak_records(report, "49", kernel, "KtK", 1, "compose"))


@pytest.mark.parametrize("kernel,product,equation,operator",
                         [pytest.param(k, "KKt", "14", "gram", id=f"{k}-KKt") for k in BUILTIN_KERNELS]
                         + [pytest.param(k, "KtK", "49", "compose", id=f"{k}-unwarp-warp") for k in BUILTIN_KERNELS])
def test_pointwise_row_sums_do_not_converge(report, kernel, product, equation, operator):
    """The literal pointwise statement: sup |row sum − 1/|J|| has a positive limit on one grid phase."""
    study = _study(kernel, product, 1, operator)
    values = study["single_phase"]["paper"]
    limit = extrapolate(NS[1], values, floor=FLOOR)
    chk = report.limit(equation, f"{product} pointwise sup error" + (" (unwarp∘warp)" if operator == "compose" else ""),
                       "paper", _params(kernel, product, 1, "pointwise"), 0.0, limit, family=FAMILY,
                       scale=1.0, expected="disagrees",
                       note=f"values {', '.join(f'{v:.4g}' for v in values)}; the row sums oscillate with the "
                            f"sample phase and converge nowhere pointwise")
    assert chk.verdict == "disagrees", chk
