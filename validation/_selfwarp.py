"""Paired, Rao–Blackwellised Monte-Carlo of the SelfWarp weight gradient (eq 9; ``paper_notes/s03_statistics.md``).

Setup as :class:`warptheory.montecarlo.SelfWarpCase` (d = 2, N channels, a centred k×k periodic
convolution from x — or the batch-normalised x — to the d offset channels, weight rows rescaled
to a fixed norm, y = warp(x, ε), ∇_y L IID N(0, σ_∂y²)).  Two refinements of
:func:`warptheory.montecarlo.run_selfwarp`, both exact:

* **Rao–Blackwell over ∇_y L.**  ∇_ε L_i(v) = Σ_m g_m(v) A_{m,i}(v) with A_{m,i} the offset
  gradient of channel m alone for g = 1, and g independent of everything else, so
  E_g[(∇_ε L_i)²] = σ_∂y² Σ_m A_{m,i}².  The estimator uses that conditional expectation instead
  of one draw of g (one engine call with the N channels as N images).
* **Common random numbers.**  Each batch draws x, an independent copy x' and the weights once, and
  evaluates both ε = conv(x) (the real SelfWarp) and ε = conv(x') (the paper's independence
  assumption) on them.  The two estimates share x, w and the window sums, so their difference —
  the effect of ε depending on x — has a standard error ≈ 2× smaller than either estimate's.

:func:`paired_run` returns the replicate values of both, ``(R, 2)``: column 0 dependent ε, 1 independent.
"""
from __future__ import annotations

import numpy as np

from _parallel import map_threads
from warptheory.montecarlo import SelfWarpCase, _window_offsets
from warptheory.warping import warp_backward

DEPENDENT, INDEPENDENT = 0, 1


def _normalise(a, axes):
    return (a - a.mean(axis=axes, keepdims=True)) / a.std(axis=axes, keepdims=True)


def _replicate(case: SelfWarpCase, seed, batches):
    rng = np.random.default_rng(seed)
    d, n, k = case.d, case.channels, case.k
    spatial = tuple(range(2, 2 + d))
    shape_x = (case.batch, n) + (case.size,) * d
    offsets, h = _window_offsets(k, d)
    shifts = [tuple(h - ai for ai in a) for a in offsets]
    total = np.zeros(2)
    count = 0
    for _ in range(batches):
        x = case.sigma_x * rng.standard_normal(shape_x)
        copy = case.sigma_x * rng.standard_normal(shape_x)
        w = rng.standard_normal((d, n) + (k,) * d)
        if case.normalized:
            xt, var_t = _normalise(x, (0,) + spatial), 1.0
            sources = (xt, _normalise(copy, (0,) + spatial))
        else:
            xt, var_t = x, case.sigma_x**2
            sources = (x, copy)
        norm2 = np.sum(w.reshape(d, -1) ** 2, axis=1)
        target = case.sigma_eps**2 / var_t if case.fixed_sigma_w is None else n * k**d * case.fixed_sigma_w**2
        w *= np.sqrt(target / norm2).reshape((d,) + (1,) * (d + 1))
        # Σ_a x̃²_{n, v+a}: the squared inputs each weight of the window reads
        window = sum(np.roll(xt**2, shift=s, axis=spatial) for s in shifts)
        per_image = x.reshape((case.batch * n, 1) + x.shape[2:])
        ones = np.ones_like(per_image)
        for j, src in enumerate(sources):
            # ε_{i,v} = Σ_{n,a} w_{i,n,a} x̃_{n, v + a - h}  (periodic)
            eps = np.zeros((case.batch, d) + x.shape[2:])
            for a, s in zip(offsets, shifts):
                eps += np.einsum("in,bn...->bi...", w[(slice(None), slice(None)) + a], np.roll(src, shift=s, axis=spatial))
            grads = warp_backward(per_image, np.repeat(eps, n, axis=0), ones, kernel=case.kernel,
                                  padding="periodic", need_x=False)[1]
            a2 = np.sum(grads.reshape((case.batch, n, d) + x.shape[2:]) ** 2, axis=(1, 2))  # Σ_m Σ_i A²
            total[j] += case.sigma_dy**2 * float(np.sum(a2[:, None] * window))
        count += x.size
    return total / count


def paired_run(case: SelfWarpCase, *, replicates: int, batches: int, seed: int) -> np.ndarray:
    """Replicate values (R, 2) of σ²_∂w with ε dependent on x (column 0) and independent (column 1)."""
    if replicates < 2 or batches < 1:
        raise ValueError(f"replicates, batches: expected ≥ 2 and ≥ 1, got {replicates}, {batches}")
    children = np.random.SeedSequence(seed).spawn(replicates)
    return np.array(map_threads(lambda child: _replicate(case, child, batches), children))
