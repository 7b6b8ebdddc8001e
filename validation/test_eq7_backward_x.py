"""Eq 7 (suppl. eqs 21–22): moments of ∇_x L, paper and exact forms, against Monte-Carlo.

The paper's second moment uses Φ_{1,2}^d for the mean part, as if every output reaching an
input shared one offset; they do not (eq 22 itself has ε_r and ε_s), and the exact form
(:func:`warptheory.moments.backward_x`) replaces μ²Φ_{1,2}^d by μ²(Φ_{2,1}^d + Φ_{1,1}^{2d} − Γ^d).
Where μ_dy ≠ 0 the paper form is an expected, strict, disagreement.
"""
import pytest

import _iid_grid as grid


@pytest.mark.parametrize("case_id,form", grid.grid_params("dx"))
def test_eq7_backward_x_moments(report, sample_factor, case_id, form):
    checks = grid.run_checks(report, case_id, grid.CASES[case_id], "7", "dx", form, sample_factor)
    grid.assert_checks(checks)
