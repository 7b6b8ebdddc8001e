"""Eq 5 (suppl. eqs 19–20): moments of the warp output y, paper and exact forms, against Monte-Carlo.

Also the hypothesis-drawn parameter sets, which check eqs 5, 7 and 8 together on one run.
"""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _iid_grid as grid
from warptheory.montecarlo import IIDCase


@pytest.mark.parametrize("case_id,form", grid.grid_params("y"))
def test_eq5_forward_moments(report, sample_factor, case_id, form):
    checks = grid.run_checks(report, case_id, grid.CASES[case_id], "5", "y", form, sample_factor)
    grid.assert_checks(checks)


HYPOTHESIS_EXAMPLES = 5


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(
    kernel=st.sampled_from(["tri", "cos", "hann", "rect"]),
    d=st.integers(1, 3),
    channels=st.integers(1, 4),
    sigma_eps=st.floats(0.05, 2.0),
    mu_x=st.sampled_from([0.0, 0.5, -1.5]),
    mu_dy=st.sampled_from([0.0, 1.0, -0.5]),
    sigma_x=st.floats(0.5, 2.0),
)
def test_eq5_eq7_eq8_hypothesis_draws(report, sample_factor, kernel, d, channels, sigma_eps, mu_x, mu_dy, sigma_x):
    """Exact forms of eqs 5, 7, 8 agree with Monte-Carlo on drawn parameter sets."""
    size = grid._size_for(sigma_eps, d)
    case = IIDCase(kernel, d=d, channels=channels, sigma_eps=round(sigma_eps, 3), mu_x=mu_x, sigma_x=round(sigma_x, 3),
                   mu_dy=mu_dy, sigma_dy=1.0, size=size, batch=grid.BATCH[d])
    cid = f"hyp-{kernel}-d{d}-N{channels}-s{case.sigma_eps:g}-mx{mu_x:g}-mg{mu_dy:g}-sx{case.sigma_x:g}"
    for eq, q in (("5", "y"), ("7", "dx"), ("8", "deps")):
        checks = grid.run_checks(report, cid, case, eq, q, "exact", sample_factor)
        grid.assert_checks(checks)
