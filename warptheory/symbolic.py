r"""Closed forms of Φ_{a,b} as Gaussian-damped Fourier series (eqs 6, 23, 24) in sympy.

The integrand :math:`h(s) = (\sum_n \psi(s-n)^a)^b` of eq 6 is 1-periodic and even, so

.. math::

    \Phi_{a,b}(\sigma) = C_0 + 2\sum_{k\ge1} C_k\, e^{-2\pi^2 k^2 \sigma^2},
    \qquad C_k = \int_0^1 h(s) \cos(2\pi k s)\, ds ,

the form of eq 23.  On (0, 1) only the two taps :math:`\psi(s)` and :math:`\psi(s-1)` are
non-zero, so :math:`C_k` is an elementary integral that sympy evaluates with a symbolic
integer k.  For ``tri`` this reproduces eq 23, for ``cos`` eq 24's constants
(``paper_notes/s09_discretization.md``).

Examples
--------
Eq 23 exactly:

>>> import sympy as sp
>>> series = phi_series("tri", 2, 1)
>>> series.c0, sp.simplify(series.ck - 1 / (sp.pi**2 * K**2))
(2/3, 0)

Eq 24: the cos kernel preserves variance and has Φ'_{2,1} = π²/4:

>>> phi_series("cos", 2, 1).expr, phi_series("cos", 2, 1, derivative=True).expr
(1, pi**2/4)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .kernels import T, Kernel, get_kernel

__all__ = ["PhiSeries", "phi_series", "K", "S", "SIGMA"]

#: Fourier index, position in the cell, and offset standard deviation.
K = sp.Symbol("k", integer=True, positive=True)
S = sp.Symbol("s", real=True)
SIGMA = sp.Symbol("sigma", nonnegative=True)


@dataclass(frozen=True)
class PhiSeries:
    """Φ_{a,b}(σ) = c0 + 2 Σ_{k≥1} ck(k) exp(-2π²k²σ²) with exact coefficients."""

    kernel: str
    a: int
    b: int
    derivative: bool
    c0: sp.Expr
    ck: sp.Expr
    pieces: tuple  # ((lo, hi, h_expr_in_S), ...) covering (0, 1)

    @property
    def expr(self) -> sp.Expr:
        """The series as a sympy expression in :data:`SIGMA` (a closed form when ck = 0)."""
        if not self.c0.is_finite or sp.simplify(self.ck) == 0:
            return sp.simplify(self.c0)
        return self.c0 + 2 * sp.Sum(self.ck * sp.exp(-2 * sp.pi**2 * K**2 * SIGMA**2), (K, 1, sp.oo))

    def evaluate(self, sigma: float, terms: int = 200, dps: int = 30):
        """Evaluate at σ > 0 with ``terms`` Fourier terms in mpmath at ``dps`` digits."""
        import mpmath

        if not self.c0.is_finite:
            if self.c0 == sp.oo:
                return mpmath.inf
            return -mpmath.inf if self.c0 == -sp.oo else mpmath.nan
        ck = sp.lambdify(K, self.ck, modules="mpmath")
        with mpmath.workdps(dps):
            c0 = mpmath.mpf(sp.N(self.c0, dps + 5))
            s = mpmath.mpf(sigma)
            total = mpmath.fsum(ck(k) * mpmath.exp(-2 * mpmath.pi**2 * k**2 * s**2) for k in range(1, terms + 1))
            return c0 + 2 * total


def _resolve_on(expr: sp.Expr, arg: sp.Expr, sample: float) -> sp.Expr:
    """φ(arg) as an analytic expression valid where arg has the sign/branch it has at ``sample``."""
    e = sp.piecewise_fold(expr.subs(T, arg))
    e = e.replace(
        lambda node: isinstance(node, sp.Piecewise),
        lambda node: next(branch for branch, cond in node.args if bool(cond.subs(S, sample))),
    )
    e = e.replace(lambda node: isinstance(node, sp.Abs), lambda node: node.args[0] * sp.sign(node.args[0].subs(S, sample)))
    e = e.replace(lambda node: isinstance(node, sp.sign), lambda node: sp.sign(node.args[0].subs(S, sample)))
    return sp.simplify(e)


@lru_cache(maxsize=128)
def _series_cached(kernel: Kernel, a: int, b: int, derivative: bool) -> PhiSeries:
    psi = kernel.derivative_expr if derivative else kernel.expr
    inner = sorted({sp.nsimplify(bp) % 1 for bp in kernel.breakpoints} - {0})
    edges = [sp.Integer(0), *inner, sp.Integer(1)]
    pieces = []
    c0 = sp.Integer(0)
    ck = sp.Integer(0)
    for lo, hi in zip(edges[:-1], edges[1:]):
        mid = float((lo + hi) / 2)
        h = (_resolve_on(psi, S, mid) ** a + _resolve_on(psi, S - 1, mid) ** a) ** b
        h = sp.expand(sp.simplify(h))
        pieces.append((lo, hi, h))
        c0 += sp.integrate(h, (S, lo, hi))
    c0 = sp.simplify(c0)
    if not c0.is_finite:
        # A divergent cell average means a divergent expectation for every σ (sqrt_tri's φ').
        return PhiSeries(kernel.name, a, b, derivative, c0, sp.nan, tuple(pieces))
    for lo, hi, h in pieces:
        ck += sp.integrate(h * sp.cos(2 * sp.pi * K * S), (S, lo, hi))
    return PhiSeries(kernel.name, a, b, derivative, c0, sp.simplify(ck), tuple(pieces))


def phi_series(kernel, a: int, b: int, derivative: bool = False) -> PhiSeries:
    """Exact Gaussian-damped Fourier series of Φ_{a,b} (or Φ'_{a,b}); eqs 6 and 23–24.

    Parameters
    ----------
    kernel : str or Kernel
        A built-in name or a :class:`~warptheory.kernels.Kernel`.
    a, b : int
        Positive integer orders.
    derivative : bool
        Φ' instead of Φ.

    Returns
    -------
    PhiSeries
        ``c0``, ``ck`` (in the integer symbol :data:`K`) and ``expr`` (in :data:`SIGMA`).

    Examples
    --------
    The σ → ∞ limit of Φ_{1,2} for ``cos`` is the mean of (cos + sin)² over a cell, 1 + 2/π:

    >>> sp.simplify(phi_series("cos", 1, 2).c0 - (1 + 2 / sp.pi))
    0
    """
    from .phifunctions import _check_order

    kernel = get_kernel(kernel)
    return _series_cached(kernel, _check_order(a, "a"), _check_order(b, "b"), bool(derivative))
