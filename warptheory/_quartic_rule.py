"""Gauss rule for the weight exp(-v**4) on [0, inf), used by Φ at small σ.

Why this weight: with ε = σ√2·v², the half-line Gaussian integral becomes
∫ 2v H(σ√2 v²) exp(-v⁴) dv, whose integrand is analytic in v even when the kernel has
square-root behaviour at the lattice points (sqrt_tri).  The nodes come from the
modified Chebyshev algorithm on the exact moments Γ((k+1)/4)/4 in mpmath at high
precision, then Golub–Welsch at 34 digits.  The orders the package uses are stored in
``data/quartic_rule.json``.
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["quartic_gauss_rule", "compute_quartic_gauss_rule"]

_STORED = Path(__file__).with_name("data") / "quartic_rule.json"


@lru_cache(maxsize=None)
def quartic_gauss_rule(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss rule for ∫_0^∞ f(v) exp(-v⁴) dv.

    Read from ``data/quartic_rule.json`` (written by :func:`compute_quartic_gauss_rule`;
    ``tests/test_phifunctions.py`` regenerates and compares) or computed for other n.

    >>> v, w = quartic_gauss_rule(20)
    >>> import math
    >>> abs(float(w.sum()) - math.gamma(1.25)) < 1e-15   # ∫ exp(-v⁴) dv = Γ(5/4)
    True
    """
    stored = json.loads(_STORED.read_text()) if _STORED.exists() else {}
    if str(n) in stored:
        entry = stored[str(n)]
        return np.array(entry["nodes"]), np.array(entry["weights"])
    return compute_quartic_gauss_rule(n)


def compute_quartic_gauss_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Compute the rule from scratch (≈2 s for n = 40)."""
    import mpmath

    with mpmath.workdps(40 + 4 * n):
        moments = [mpmath.gamma(mpmath.mpf(k + 1) / 4) / 4 for k in range(2 * n)]
        # Chebyshev algorithm (Gautschi 2004, §2.1.7) from ordinary moments.
        alpha = [mpmath.mpf(0)] * n
        beta = [mpmath.mpf(0)] * n
        sigma_prev = [mpmath.mpf(0)] * (2 * n)
        sigma = list(moments)
        alpha[0] = moments[1] / moments[0]
        beta[0] = moments[0]
        for k in range(1, n):
            sigma_new = [mpmath.mpf(0)] * (2 * n)
            for l in range(k, 2 * n - k):
                sigma_new[l] = sigma[l + 1] - alpha[k - 1] * sigma[l] - beta[k - 1] * sigma_prev[l]
            alpha[k] = sigma_new[k + 1] / sigma_new[k] - sigma[k] / sigma[k - 1]
            beta[k] = sigma_new[k] / sigma[k - 1]
            sigma_prev, sigma = sigma, sigma_new
    # The moment map is ill-conditioned (hence 40 + 4n digits above); the tridiagonal
    # eigenproblem is not, so 34 digits give float64 nodes and weights to the last bit.
    with mpmath.workdps(34):
        jacobi = mpmath.zeros(n, n)
        for i in range(n):
            jacobi[i, i] = alpha[i]
            if i + 1 < n:
                jacobi[i, i + 1] = jacobi[i + 1, i] = mpmath.sqrt(beta[i + 1])
        eigvals, eigvecs = mpmath.eigsy(jacobi)
        nodes = np.array([float(eigvals[i]) for i in range(n)])
        weights = np.array([float(beta[0] * eigvecs[0, i] ** 2) for i in range(n)])
    order = np.argsort(nodes)
    return nodes[order], weights[order]


if __name__ == "__main__":  # python -m warptheory._quartic_rule  regenerates the stored rules
    data = {}
    for order in (5, 10, 20, 40, 80):
        nodes, weights = compute_quartic_gauss_rule(order)
        data[str(order)] = {"nodes": nodes.tolist(), "weights": weights.tolist()}
    _STORED.write_text(json.dumps(data))
