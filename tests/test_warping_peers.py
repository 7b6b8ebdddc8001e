"""Parity of warptheory.warping with torch.nn.functional.grid_sample (eqs 2–4).

grid_sample(mode="bilinear", align_corners=True) is eq 2 with the ``tri`` kernel, written
in normalised coordinates: a pixel position p along an axis of size S is
``2 p / (S - 1) - 1``, and the grid's last dimension lists the axes in reverse
(x = width = our last spatial axis first).  Its autograd gives eqs 3 and 4; the grid
gradient is converted back to pixel units by the chain rule (factor 2 / (S - 1)).

torch has no periodic padding, so only "zeros" and "border" are compared.  Its "border"
clamps the *coordinate* to [0, S-1]; for a partition-of-unity kernel that reads the same
edge value as our clamped *index*, and both give a zero position gradient there.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warptheory.warping import warp, warp_backward

torch = pytest.importorskip("torch", reason="torch is needed for the grid_sample parity tests")


def to_grid(eps):
    """Pixel offsets (B, d, *S) -> grid_sample grid (B, *S, d) in align_corners=True units."""
    spatial = eps.shape[2:]
    d = len(spatial)
    positions = np.indices(spatial, dtype=np.float64)[None] + eps
    normalised = [2 * positions[:, k] / (spatial[k] - 1) - 1 for k in range(d)]
    return np.stack(normalised[::-1], axis=-1)


def torch_warp(x, eps, g, padding):
    xt = torch.tensor(x, requires_grad=True)
    grid = torch.tensor(to_grid(eps), requires_grad=True)
    y = torch.nn.functional.grid_sample(xt, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    y.backward(torch.tensor(g))
    spatial = eps.shape[2:]
    d = len(spatial)
    grad_grid = grid.grad.numpy()
    grad_eps = np.stack([grad_grid[..., d - 1 - k] * 2 / (spatial[k] - 1) for k in range(d)], axis=1)
    return y.detach().numpy(), xt.grad.numpy(), grad_eps


@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.sampled_from([2, 3]),
    padding=st.sampled_from(["zeros", "border"]),
    scale=st.sampled_from([0.4, 2.0, 6.0]),
)
def test_grid_sample_parity(seed, d, padding, scale):
    """Forward (eq 2), grad_x (eq 3) and grad_eps (eq 4) equal grid_sample's and its autograd's.

    float64 on both sides; the only difference is the round trip through normalised
    coordinates, a relative error ~1e-16·|p| in each position, so 1e-11 absolute on O(1)
    data with |p| ≲ 30 is generous.  Positions are kept off the lattice lines (kinks), where
    the two engines could legitimately pick different one-sided derivatives."""
    rng = np.random.default_rng(seed)
    spatial = tuple(int(s) for s in rng.integers(2, 7 if d == 2 else 5, size=d))
    batch, channels = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    x = rng.normal(size=(batch, channels, *spatial))
    g = rng.normal(size=x.shape)
    eps = scale * rng.normal(size=(batch, d, *spatial))
    grid = np.indices(spatial, dtype=np.float64)[None]
    frac = (grid + eps) - np.floor(grid + eps)
    eps = eps + np.where(frac < 1e-3, 2e-3, 0.0) - np.where(frac > 1 - 1e-3, 2e-3, 0.0)

    y_ref, grad_x_ref, grad_eps_ref = torch_warp(x, eps, g, padding)
    y = warp(x, eps, "tri", padding)
    grad_x, grad_eps = warp_backward(x, eps, g, "tri", padding)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(grad_x, grad_x_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(grad_eps, grad_eps_ref, rtol=1e-11, atol=1e-11)
