r"""The exact law of a sum of squares of p IID inputs, for the τ integral of :mod:`warptheory.stability`.

For x_1 … x_m IID with a symmetric density g, write the density of S_m = Σ x_i² as

.. math::

    \rho_{S_m}(t) = t^{m/2-1}\,k_m(\sqrt t),

so that k_m is bounded and smooth at 0.  Splitting the m coordinates into two groups of m₁ and m₂ and
writing their squared radii as t sin²φ and t cos²φ (polar coordinates in the plane of the two radii)
gives the combination rule (``paper_notes/s03_1_stability.md``, "The law of τ")

.. math::

    k_{m_1+m_2}(r) = 2\int_0^{\pi/2} \sin^{m_1-1}\varphi\,\cos^{m_2-1}\varphi\;
        k_{m_1}(r\sin\varphi)\,k_{m_2}(r\cos\varphi)\,d\varphi,
    \qquad k_1 = g,

whose integrand has no singularity (the t^{−1/2} of one squared coordinate is absorbed by the
polar substitution).  k_p is built by binary doubling (⌈log₂ p⌉ + popcount combinations); each k_m
is tabulated on panels in r with Chebyshev points in a cosine-mapped panel variable, which makes the
one-sided algebraic singularities of k_m at its breakpoints ((r − e)^{j/2}: for uniform x the radii
√3·√j where the sphere meets the cube's j-codimensional faces) polynomial in that variable.  Positive
k_m (Laplace, Gaussian) are interpolated in log k.  φ is split wherever r sin φ or r cos φ crosses a
panel edge of the two factors, and each piece is integrated by Gauss–Legendre in the same mapped
variable.

Against exact moments E[S_p^n] (n ≤ 6) and against mpmath convolutions the rule of :func:`tau_rule`
is accurate to ≈ 1e-10 relative (``tests/test_stability.py``); the Gaussian law through the same
recursion reproduces χ²_p.

>>> import numpy as np
>>> u, w = tau_rule("uniform", 4)
>>> bool(abs(np.sum(w) - 1) < 1e-14 and abs(np.sum(w * u ** 2) - 1) < 1e-9)   # E τ = 1
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

#: the laws of unit-variance x the rule knows: kurtosis 1.8 and 6 (those the Monte-Carlo draws), and 3
LAWS = ("uniform", "laplace", "gaussian")
_TABLE_NODES = 20  # Chebyshev points per table panel
_PIECE_NODES = 20  # Gauss–Legendre nodes per φ piece
_FIXED_PIECES = 8  # φ ∈ [0, π/2] is always split into this many pieces (and at the factors' panel edges)
_RULE_PANELS, _RULE_NODES = 8, 16  # the returned rule in u = √τ: at least 8 panels of 16 nodes
_SMOOTH_PANEL = 3.0  # panel length in r for the positive laws (log k varies on a scale ≳ 1)
_TAIL = 1e-18  # mass of S_m left beyond the last table panel (upper bound)
_RULE_TAIL = 1e-16  # mass of τ left outside the returned rule, each side

_CHEB_S = 0.5 * (1.0 - np.cos(np.pi * np.arange(_TABLE_NODES) / (_TABLE_NODES - 1)))
_BARY = np.ones(_TABLE_NODES)
_BARY[1::2] = -1.0
_BARY[[0, -1]] *= 0.5


@lru_cache(maxsize=4)
def _gauss(n):
    """Gauss–Legendre nodes in s ∈ [0, 1] mapped by s → (1 − cos πs)/2, and their weights (Jacobian included)."""
    x, w = np.polynomial.legendre.leggauss(n)
    s = 0.5 * (x + 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * s)), 0.25 * np.pi * np.sin(np.pi * s) * w


@dataclass(frozen=True)
class _Factor:
    """k_m of ρ_{S_m}(t) = t^{m/2−1} k_m(√t); ``edges``: panel edges in r (k_m is smooth between them)."""

    m: int
    edges: np.ndarray
    value: Callable


def _unit_law(law: str) -> _Factor:
    if law == "uniform":  # U(−√3, √3)
        a = math.sqrt(3.0)
        return _Factor(1, np.array([0.0, a]), lambda r: np.where(r <= a, 0.5 / a, 0.0))
    if law == "laplace":  # scale 1/√2
        return _Factor(1, np.array([0.0]), lambda r: np.exp(-math.sqrt(2.0) * r) / math.sqrt(2.0))
    if law == "gaussian":
        return _Factor(1, np.array([0.0]), lambda r: np.exp(-0.5 * r * r) / math.sqrt(2.0 * math.pi))
    raise ValueError(f"law: expected one of {LAWS}, got {law!r}")


def _radius_bound(law: str, m: int) -> float:
    """r beyond which S_m = r² has mass < 1e-18 (uniform: the support's end)."""
    from scipy import stats

    if law == "uniform":
        return math.sqrt(3.0 * m)
    if law == "laplace":  # |x|₂ ≤ |x|₁ ~ Gamma(m, rate √2)
        return float(stats.gamma(m, scale=1.0 / math.sqrt(2.0)).isf(_TAIL))
    return math.sqrt(float(stats.chi2(m).isf(_TAIL)))


def _combine_at(a: _Factor, b: _Factor, r: np.ndarray) -> np.ndarray:
    """k_{m₁+m₂}(r) by the polar combination rule, at the points ``r``."""
    r = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut_a = np.arcsin(np.clip(a.edges[None, :] / r[:, None], 0.0, 1.0))
        cut_b = np.arccos(np.clip(b.edges[None, :] / r[:, None], 0.0, 1.0))
    # fixed cuts too: sin^{m₁−1} cos^{m₂−1} peaks sharply for large m (width ≈ 1/√m)
    fixed = np.broadcast_to(np.linspace(0.0, 0.5 * np.pi, _FIXED_PIECES + 1), (r.size, _FIXED_PIECES + 1))
    cuts = np.concatenate([fixed, np.nan_to_num(cut_a), np.nan_to_num(cut_b)], axis=1)
    cuts.sort(axis=1)
    lo, length = cuts[:, :-1, None], np.diff(cuts, axis=1)[..., None]
    s, ws = _gauss(_PIECE_NODES)
    phi = lo + length * s
    sin, cos = np.sin(phi), np.cos(phi)
    radius = r[:, None, None]
    integrand = sin ** (a.m - 1) * cos ** (b.m - 1) * a.value(radius * sin) * b.value(radius * cos)
    return 2.0 * np.sum(integrand * length * ws, axis=(1, 2))


def _tabulate(edges: np.ndarray, values_at: Callable, positive: bool) -> Callable:
    """Piecewise interpolant of ``values_at`` on ``edges`` (Chebyshev points in the cosine-mapped variable)."""
    lo, length = edges[:-1], np.diff(edges)
    nodes = lo[:, None] + length[:, None] * 0.5 * (1.0 - np.cos(np.pi * _CHEB_S[None, :]))
    vals = values_at(nodes.ravel()).reshape(nodes.shape)
    if positive:  # k ≈ e^{−√2 r}·… (Laplace), e^{−r²/2}·… (Gaussian): log k is nearly a polynomial
        vals = np.log(np.maximum(vals, 1e-300))

    def value(x):
        x = np.asarray(x, dtype=float)
        flat = x.ravel()
        j = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, lo.size - 1)
        s = np.arccos(np.clip(1.0 - 2.0 * (flat - lo[j]) / length[j], -1.0, 1.0)) / np.pi
        diff = s[:, None] - _CHEB_S[None, :]
        on_node = diff == 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            c = _BARY[None, :] / diff
            out = np.sum(c * vals[j], axis=1) / np.sum(c, axis=1)
        hit = on_node.any(axis=1)
        out[hit] = vals[j[hit], on_node[hit].argmax(axis=1)]
        if positive:
            out = np.exp(out)
        out[(flat < edges[0]) | (flat > edges[-1])] = 0.0
        return out.reshape(x.shape)

    return value


def _panel_edges(law: str, m: int) -> np.ndarray:
    if law == "uniform":  # k_m is smooth between the radii √(3j) where the sphere meets the faces
        return np.sqrt(3.0 * np.arange(m + 1.0))
    r_max = _radius_bound(law, m)
    return np.linspace(0.0, r_max, max(2, math.ceil(r_max / _SMOOTH_PANEL)) + 1)


@lru_cache(maxsize=64)
def factor(law: str, m: int) -> _Factor:
    """k_m for ``law`` (tabulated for m ≥ 2), by binary doubling."""
    if m == 1:
        return _unit_law(law)
    half = m // 2
    a, b = factor(law, m - half), factor(law, half)
    edges = _panel_edges(law, m)
    return _Factor(m, edges, _tabulate(edges, lambda r: _combine_at(a, b, r), positive=law != "uniform"))


def _radius_density(law: str, p: int, r: np.ndarray) -> np.ndarray:
    """Density of R = ‖x‖ (p coordinates): 2 r^{p−1} k_p(r)."""
    return 2.0 * r ** (p - 1) * factor(law, p).value(r)


@lru_cache(maxsize=64)
def tau_rule(law: str, p: int):
    """Nodes u = √τ and weights of E_τ[·] for τ = ‖x‖²/p, x ∈ ℝ^p IID of ``law`` (unit variance).

    Gauss–Legendre panels (cosine-mapped, so the density's one-sided singularities at the uniform law's
    breakpoints √(3j/p) — panel edges — are integrated at full order) between the 1e-16 quantiles of τ.
    """
    if law not in LAWS:
        raise ValueError(f"law: expected one of {LAWS}, got {law!r}")
    # the 1e-16 quantiles, from a fine rule over the table's own panels
    edges = _panel_edges(law, p)
    s, ws = _gauss(_TABLE_NODES)
    r = (edges[:-1, None] + np.diff(edges)[:, None] * s[None, :]).ravel()
    mass = (_radius_density(law, p, r).reshape(-1, s.size) * np.diff(edges)[:, None] * ws[None, :]).ravel()
    lower, upper = np.cumsum(mass) / mass.sum(), np.cumsum(mass[::-1])[::-1] / mass.sum()
    below = np.flatnonzero(lower < _RULE_TAIL)
    above = np.flatnonzero(upper < _RULE_TAIL)
    r_lo = r[below[-1]] if below.size else edges[0]
    r_hi = r[above[0]] if above.size else edges[-1]
    if law == "uniform":
        inner = edges[(edges > r_lo) & (edges < r_hi)]
        out = np.unique(np.concatenate(([r_lo, r_hi], inner)))
        while out.size <= _RULE_PANELS:  # split the longest panel until there are enough
            i = int(np.argmax(np.diff(out)))
            out = np.insert(out, i + 1, 0.5 * (out[i] + out[i + 1]))
    else:  # panel edges near quantiles of R (the heavy Laplace tail needs short panels at the mode)
        levels = (1e-12, 1e-8, 1e-4, 0.02, 0.25, 0.5, 0.75, 0.98)
        inner = [r[np.searchsorted(lower, q)] for q in levels] + [r[np.flatnonzero(upper >= q)[-1]]
                                                                  for q in (1e-4, 1e-8, 1e-12)]
        out = np.unique(np.clip([r_lo, r_hi, *inner], r_lo, r_hi))
    s, ws = _gauss(_RULE_NODES)
    lengths = np.diff(out)[:, None]
    r = (out[:-1, None] + lengths * s[None, :]).ravel()
    w = (_radius_density(law, p, r).reshape(-1, s.size) * lengths * ws[None, :]).ravel()
    keep = w > 0.0
    return r[keep] / math.sqrt(p), w[keep] / w[keep].sum()
