r"""Φ_{a,b}(σ) and Φ'_{a,b}(σ) of eq 6, for any kernel and any orders, to machine precision.

.. math::

    \Phi_{a,b}(\sigma) = \mathbb{E}\Big[\Big(\sum_n \varphi(\varepsilon - n)^a\Big)^b\Big], \qquad
    \Phi'_{a,b}(\sigma) = \mathbb{E}\Big[\Big(\sum_n \varphi'(\varepsilon - n)^a\Big)^b\Big], \qquad
    \varepsilon \sim \mathcal N(0, \sigma^2).

The integrand :math:`h(\varepsilon) = (\sum_n \psi(\varepsilon-n)^a)^b` (ψ = φ or φ') is
1-periodic, so two representations cover every σ (``paper_notes/s09_discretization.md``):

* σ ≥ 0.05 — the Gaussian-damped Fourier series of eq 23,
  :math:`\Phi = C_0 + 2\sum_{k\ge1} C_k e^{-2\pi^2 k^2 \sigma^2}`, with
  :math:`C_k = \int_0^1 h(s)\cos(2\pi k s)\,ds`; 40 terms reach :math:`e^{-79}`.
  The coefficients are computed once per (kernel, a, b, derivative) by Gauss–Legendre in
  θ with :math:`s = \sin^2(\pi\theta/2)`, which makes square-root endpoint behaviour analytic.
* σ < 0.05 — where that series converges slowly — the half-line form
  :math:`\Phi = \tfrac{2}{\sqrt\pi}\int_0^\infty 2v\,H(\sigma\sqrt2\,v^2)\,e^{-v^4}\,dv` with the
  even part :math:`H(x) = (h(x)+h(-x))/2`, integrated by a Gauss rule for the weight
  :math:`e^{-v^4}` and tabulated as a Chebyshev series in :math:`r = \sqrt\sigma`.

σ = 0 returns the limit :math:`(h(0^+) + h(0^-))/2`.  Expectations that do not exist are
reported as such: ``inf`` for a positive non-integrable integrand (Φ'_{2,1} of ``sqrt_tri``,
whose slope is infinite at the support edge) and ``nan`` for an odd one.

Examples
--------
Eq 23 (bilinear) and eq 24 (cos) constants, and the σ → 0 limit:

>>> import math
>>> phi_ab("tri", 0.0, 2, 1)
1.0
>>> abs(phi_ab("tri", 1e3, 2, 1) - 2 / 3) < 1e-15            # C_0 = 2/3
True
>>> abs(phi_ab("cos", 0.7, 2, 1, derivative=True) - math.pi**2 / 4) < 1e-14
True
>>> r = phi("tri", 0.5)
>>> r.phi11 == r.phi12 == 1.0 or abs(r.phi11 - 1) < 1e-15
True
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._docs import docfiller
from ._quartic_rule import quartic_gauss_rule
from .kernels import Kernel, get_kernel

__all__ = ["phi", "phi_ab", "PhiValues", "phi_table", "phi_quadrature"]

SIGMA_SWITCH = 0.05  # below: Chebyshev table in sqrt(σ); above: Fourier series
# Where Φ → 0 as σ → 0 the Fourier sum cancels (O(10) terms giving O(0.01)), so those tables
# switch later; the half-line rule stays exact to e^{-1/(2σ²)} = e^{-50} at σ = 0.1.
SIGMA_SWITCH_VANISHING = 0.1
FOURIER_TERMS = 40  # exp(-2π²·40²·0.05²) = e^{-79}
CHEB_DEGREE = 64
DEFAULT_ORDER = 40  # Gauss nodes of the e^{-v⁴} rule; Gauss–Legendre panels use 2× this

_SHARED_DOC = {
    "kernel": """kernel : str or Kernel
        A built-in name (``tri``, ``cos``, ``rect``, ``hann``, ``sqrt_tri``) or a
        :class:`~warptheory.kernels.Kernel`.""",
    "sigma": """sigma : float or array_like
        Standard deviation σ ≥ 0 of the offsets ε ~ N(0, σ²); finite.  σ = 0 gives the limit.""",
}


_fill_doc = docfiller(_SHARED_DOC)


# ----------------------------------------------------------------------------- validation
def _check_order(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _check_sigma(sigma) -> tuple[np.ndarray, bool]:
    if isinstance(sigma, (bool, np.bool_)):
        raise ValueError(f"sigma: expected a real number or array of them, got {sigma!r}")
    arr = np.asarray(sigma)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ValueError(f"sigma: expected real numbers, got dtype {arr.dtype} ({sigma!r:.60})")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        first = arr[bad].flat[0]
        raise ValueError(f"sigma: expected finite values ≥ 0, got {first!r}")
    return arr, arr.ndim == 0


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class PhiTable:
    """Precomputed representation of one Φ_{a,b} (or Φ'_{a,b}) for fast evaluation.

    ``mode`` is ``"series"`` (Fourier + Chebyshev), ``"zero"`` (odd integrand),
    ``"inf"`` or ``"nan"`` (no expectation), or ``"direct"`` (bounded-below but
    unbounded integrand: the Gauss rule is applied per σ).
    """

    kernel: str
    a: int
    b: int
    derivative: bool
    mode: str
    limit0: float
    fourier: np.ndarray
    chebyshev: np.ndarray
    order: int
    small_sigma_power: float = 0.0  # Φ ~ σ^power as σ → 0; the table holds Φ/σ^power
    switch: float = SIGMA_SWITCH  # Chebyshev table below, Fourier series above

    @property
    def limit_infinity(self) -> float:
        """σ → ∞ limit: the average of the periodised integrand over [0, 1) (= C_0)."""
        if self.mode in ("inf", "nan"):
            return math.inf if self.mode == "inf" else math.nan
        return float(self.fourier[0]) if self.mode != "zero" else 0.0


def _h_values(kernel: Kernel, s: np.ndarray, a: int, b: int, derivative: bool) -> np.ndarray:
    """h(s) = (Σ_n ψ(s-n)^a)^b for any real s, ψ = φ or φ' (right derivative at kinks)."""
    psi = kernel.derivative if derivative else kernel.value
    frac = s - np.floor(s)
    with np.errstate(invalid="ignore", over="ignore"):
        g = psi(frac) ** a + psi(frac - 1.0) ** a
        return g**b


def _even_part(kernel, x, a, b, derivative):
    return 0.5 * (_h_values(kernel, x, a, b, derivative) + _h_values(kernel, -x, a, b, derivative))


def _growth_exponent(kernel: Kernel, a: int, b: int, derivative: bool) -> float:
    """Exponent p of |h| ~ x^p as x → 0± (p < 0: unbounded), from 60-digit evaluations."""
    import mpmath

    psi = kernel.derivative_mp if derivative else kernel.value_mp
    worst = 0.0
    with mpmath.workdps(60):
        for sign in (1, -1):
            vals = []
            for x in (mpmath.mpf("1e-30"), mpmath.mpf("1e-40")):
                s = sign * x
                s = s if s > 0 else 1 + s  # periodic image in (0, 1)
                vals.append(abs((psi(s) ** a + psi(s - 1) ** a) ** b))
            if vals[1] <= 1:  # bounded near the lattice point (rounding noise is no growth)
                continue
            p = float(mpmath.log(vals[1] / vals[0]) / mpmath.log(mpmath.mpf("1e-10")))
            worst = min(worst, p)
    return worst


def _limit_zero(kernel: Kernel, a: int, b: int, derivative: bool) -> float:
    import mpmath

    psi = kernel.derivative_mp if derivative else kernel.value_mp
    with mpmath.workdps(60):
        tiny = mpmath.mpf("1e-45")
        right = (psi(tiny) ** a + psi(tiny - 1) ** a) ** b
        left = (psi(1 - tiny) ** a + psi(-tiny) ** a) ** b
        return float((right + left) / 2)


def _vanishing_order(kernel: Kernel, a: int, b: int, derivative: bool) -> float:
    """q in H(x) ~ c x^q as x → 0+ (0 when H(0+) ≠ 0), a multiple of 1/2.

    Φ(σ) then behaves like σ^q, and tabulating Φ/σ^q keeps the relative accuracy at tiny σ.
    """
    import mpmath

    psi = kernel.derivative_mp if derivative else kernel.value_mp
    with mpmath.workdps(60):
        def even_part(x):
            right = (psi(x) ** a + psi(x - 1) ** a) ** b
            left = (psi(1 - x) ** a + psi(-x) ** a) ** b
            return abs(right + left) / 2

        # Close enough to 0 that O(x²) corrections to the power law are 1e-12, far enough
        # that x^6 stays above the 60-digit noise of an integrand that is identically 0.
        x1, x2 = mpmath.mpf("1e-6"), mpmath.mpf("1e-8")
        h1, h2 = even_part(x1), even_part(x2)
        if h1 < mpmath.mpf("1e-55") or h2 < mpmath.mpf("1e-55"):
            return 0.0
        q = float(mpmath.log(h1 / h2) / mpmath.log(x1 / x2))
    q_half = round(2 * q) / 2
    return q_half if q_half > 0 and abs(q - q_half) < 1e-6 else 0.0


def _inner_breakpoints(kernel: Kernel) -> list[float]:
    pts = {bp % 1.0 for bp in kernel.breakpoints}
    return sorted(p for p in pts if 0.0 < p < 1.0)


def _fourier_coefficients(kernel: Kernel, a: int, b: int, derivative: bool, order: int) -> np.ndarray:
    # s = sin²(πθ/2) maps θ ∈ [0, 1] onto s ∈ [0, 1] with ds = (π/2) sin(πθ) dθ, which
    # cancels square-root (and 1/√s) behaviour at the lattice points.
    theta_breaks = [0.0] + [2.0 / math.pi * math.asin(math.sqrt(p)) for p in _inner_breakpoints(kernel)] + [1.0]
    panel_count = max(4, len(theta_breaks) - 1)
    edges = np.unique(np.concatenate([np.linspace(0.0, 1.0, panel_count + 1), theta_breaks]))
    gl_x, gl_w = np.polynomial.legendre.leggauss(2 * order)
    lo, hi = edges[:-1, None], edges[1:, None]
    theta = (0.5 * (hi - lo) * gl_x + 0.5 * (hi + lo)).ravel()
    weights = (0.5 * (hi - lo) * gl_w).ravel()
    s = np.sin(0.5 * math.pi * theta) ** 2
    jac = 0.5 * math.pi * np.sin(math.pi * theta)
    hv = _h_values(kernel, s, a, b, derivative) * jac * weights
    k = np.arange(FOURIER_TERMS + 1)
    return np.cos(2.0 * math.pi * np.outer(k, s)) @ hv


def _direct_small_sigma(kernel: Kernel, sigma: np.ndarray, a: int, b: int, derivative: bool, order: int) -> np.ndarray:
    """(2/√π) Σ_i w_i 2 v_i H(σ√2 v_i²): the e^{-v⁴} Gauss rule, valid for σ ≤ 0.05."""
    v, w = quartic_gauss_rule(order)
    x = np.sqrt(2.0) * np.outer(sigma, v * v)
    H = _even_part(kernel, x, a, b, derivative)
    return (2.0 / math.sqrt(math.pi)) * (H @ (2.0 * v * w))


def _direct_small_sigma_mp(kernel: Kernel, sigma: np.ndarray, a: int, b: int, derivative: bool, order: int) -> np.ndarray:
    """The same Gauss rule in 30-digit arithmetic.

    Needed where Φ vanishes as σ → 0: the tap at s - 1 sits near the support edge, and
    forming 1 - x in float64 costs an absolute 1e-16, i.e. a relative 1e-16/x of a value
    that itself is O(x) (hann's φ' near ±1).
    """
    import mpmath

    v, w = quartic_gauss_rule(order)
    psi = kernel.derivative_mp if derivative else kernel.value_mp
    out = np.empty(len(sigma))
    with mpmath.workdps(30):
        root2 = mpmath.sqrt(2)
        for i, s in enumerate(sigma):
            total = mpmath.mpf(0)
            for vi, wi in zip(v, w):
                x = mpmath.mpf(s) * root2 * mpmath.mpf(vi) ** 2
                x -= mpmath.floor(x)  # h is 1-periodic; x ≥ 1 only at nodes of weight < e^{-50}
                right = (psi(x) ** a + psi(x - 1) ** a) ** b
                left = (psi(1 - x) ** a + psi(-x) ** a) ** b
                total += (right + left) * mpmath.mpf(vi) * mpmath.mpf(wi)
            out[i] = float(total * 2 / mpmath.sqrt(mpmath.pi))
    return out


def _chebyshev_table(kernel, a, b, derivative, order, power: float, switch: float) -> np.ndarray:
    """Chebyshev coefficients of Φ(r²)/r^{2·power} in r = √σ on [0, √switch]."""
    m = CHEB_DEGREE + 1
    nodes = np.cos(math.pi * (np.arange(m) + 0.5) / m)  # first kind: r = 0 is never a node
    r = 0.5 * math.sqrt(switch) * (nodes + 1.0)
    direct = _direct_small_sigma_mp if power > 0 else _direct_small_sigma
    vals = direct(kernel, r * r, a, b, derivative, order) / r ** (2.0 * power)
    # Reduce j(2i+1) modulo 4m before scaling: cos of a ~200 rad argument loses 1e-14.
    phase = np.outer(np.arange(m), 2 * np.arange(m) + 1) % (4 * m)
    coeffs = (2.0 / m) * (np.cos(math.pi * phase / (2 * m)) @ vals)
    coeffs[0] *= 0.5
    # Drop the tail once it is rounding noise: every dropped term adds error, none adds accuracy.
    scale = np.max(np.abs(coeffs))
    significant = np.nonzero(np.abs(coeffs) > 4e-17 * max(scale, 1e-300))[0]
    return coeffs[: significant[-1] + 1] if significant.size else coeffs[:1]


@lru_cache(maxsize=512)
def _table_cached(kernel: Kernel, a: int, b: int, derivative: bool, order: int) -> PhiTable:
    empty = np.zeros(0)
    odd = derivative and (a * b) % 2 == 1  # φ' is odd, so h(-s) = -h(s)
    p = _growth_exponent(kernel, a, b, derivative)
    integrable = p > -1.0 + 1e-6
    if not integrable:
        mode = "nan" if odd else "inf"
        return PhiTable(kernel.name, a, b, derivative, mode, math.nan if odd else math.inf, empty, empty, order)
    if odd:
        return PhiTable(kernel.name, a, b, derivative, "zero", 0.0, empty, empty, order)
    limit0 = _limit_zero(kernel, a, b, derivative)
    fourier = _fourier_coefficients(kernel, a, b, derivative, order)
    if p < -1e-6:  # integrable but unbounded: not analytic in √σ, no Chebyshev table
        return PhiTable(kernel.name, a, b, derivative, "direct", math.inf, fourier, empty, order)
    power = _vanishing_order(kernel, a, b, derivative)
    switch = SIGMA_SWITCH_VANISHING if power > 0 and not _inner_breakpoints(kernel) else SIGMA_SWITCH
    cheb = _chebyshev_table(kernel, a, b, derivative, order, power, switch)
    return PhiTable(kernel.name, a, b, derivative, "series", limit0, fourier, cheb, order, power, switch)


def phi_table(kernel, a: int, b: int, derivative: bool = False, *, order: int = DEFAULT_ORDER) -> PhiTable:
    """The precomputed :class:`PhiTable` behind :func:`phi_ab` (cached per arguments)."""
    kernel = get_kernel(kernel)
    a = _check_order(a, "a")
    b = _check_order(b, "b")
    order = _check_order(order, "order")
    if not isinstance(derivative, (bool, np.bool_)):
        raise ValueError(f"derivative: expected True or False, got {derivative!r}")
    return _table_cached(kernel, a, b, bool(derivative), order)


# ----------------------------------------------------------------------------- evaluation
_EVALUATE = None


def _evaluate_table(table: PhiTable, sigma: np.ndarray, kernel: Kernel) -> np.ndarray:
    global _EVALUATE
    flat = np.ascontiguousarray(sigma.ravel())
    if table.mode == "zero":
        return np.zeros_like(sigma)
    if table.mode == "inf":
        return np.full_like(sigma, math.inf)
    if table.mode == "nan":
        return np.full_like(sigma, math.nan)
    if table.mode == "direct":
        out = np.empty_like(flat)
        small = flat < SIGMA_SWITCH
        out[small] = _direct_small_sigma(kernel, flat[small], table.a, table.b, table.derivative, table.order)
        out[flat == 0.0] = table.limit0
        big = ~small
        k = np.arange(1, FOURIER_TERMS + 1)
        damp = np.exp(-2.0 * math.pi**2 * np.outer(flat[big] ** 2, k**2))
        out[big] = table.fourier[0] + 2.0 * damp @ table.fourier[1:]
        return out.reshape(sigma.shape)
    if _EVALUATE is None:
        from ._phi_numba import evaluate_series

        _EVALUATE = evaluate_series
    out = np.empty_like(flat)
    _EVALUATE(flat, table.fourier, table.chebyshev, table.switch, table.limit0, 2.0 * table.small_sigma_power, out)
    return out.reshape(sigma.shape)


@_fill_doc
def phi_ab(kernel, sigma, a: int, b: int, derivative: bool = False, *, order: int = DEFAULT_ORDER):
    r"""Φ_{a,b}(σ) or Φ'_{a,b}(σ) of eq 6 (``paper_notes/s09_discretization.md``).

    Parameters
    ----------
    {kernel}
    {sigma}
    a, b : int
        Positive integer orders: Φ_{a,b} = E[(Σ_n ψ(ε-n)^a)^b].
    derivative : bool
        ``True`` for Φ' (ψ = φ', the right derivative at kinks), ``False`` for Φ (ψ = φ).
    order : int, optional
        Gauss order of the quadratures that build the series (default 40; 2× this
        Gauss–Legendre nodes per panel for the Fourier coefficients).

    Returns
    -------
    float or ndarray
        A float for scalar ``sigma``, otherwise an array shaped like ``sigma``;
        ``inf``/``nan`` where the expectation is infinite/undefined.

    Raises
    ------
    ValueError
        Negative, NaN or infinite σ; ``a``/``b`` not a positive integer; unknown kernel.

    Examples
    --------
    Mean-preserving kernels have Φ_{1,1} = Φ_{1,2} = 1; the σ → ∞ limit of Φ_{2,1} for
    ``tri`` is the average of (1-s)² + s² over [0, 1), i.e. 2/3 (eq 23):

    >>> import numpy as np
    >>> bool(np.allclose(phi_ab("hann", [0.1, 1.0, 5.0], 1, 2), 1.0, rtol=1e-14))
    True
    >>> abs(phi_ab("tri", 50.0, 2, 1) - 2 / 3) < 1e-15
    True
    """
    kernel = get_kernel(kernel)
    arr, scalar = _check_sigma(sigma)
    table = phi_table(kernel, a, b, derivative, order=order)
    out = _evaluate_table(table, arr.reshape(-1) if scalar else arr, kernel)
    return float(out[0]) if scalar else out


_FIELDS = (("phi11", 1, 1, False), ("phi12", 1, 2, False), ("phi21", 2, 1, False),
           ("dphi11", 1, 1, True), ("dphi12", 1, 2, True), ("dphi21", 2, 1, True))


@dataclass(frozen=True)
class PhiValues:
    """Φ_{1,1}, Φ_{1,2}, Φ_{2,1} and Φ'_{1,1}, Φ'_{1,2}, Φ'_{2,1} at one σ (or an array of σ).

    The six fields are those eqs 5, 7 and 8 use.  Any other order is available with
    :meth:`order`; the record is immutable.
    """

    kernel: str
    sigma: object
    phi11: object
    phi12: object
    phi21: object
    dphi11: object
    dphi12: object
    dphi21: object
    _kernel_obj: Kernel = None

    def order(self, a: int, b: int, derivative: bool = False):
        """Φ_{a,b} (or Φ'_{a,b} with ``derivative=True``) at this record's σ.

        >>> r = phi("cos", 0.3)
        >>> r.order(2, 1) == r.phi21
        True
        """
        return phi_ab(self._kernel_obj, self.sigma, a, b, derivative)

    def __repr__(self) -> str:
        def fmt(v):
            if np.ndim(v) == 0:
                return f"{float(v):.16g}"
            return np.array2string(np.asarray(v), precision=6, threshold=6)

        body = ", ".join(f"{name}={fmt(getattr(self, name))}" for name, *_ in _FIELDS)
        return f"PhiValues(kernel={self.kernel!r}, sigma={fmt(self.sigma)}, {body})"


@_fill_doc
def phi(kernel, sigma) -> PhiValues:
    r"""The six Φ values of eqs 5–8 for ``kernel`` at ``sigma`` (eq 6).

    Parameters
    ----------
    {kernel}
    {sigma}

    Returns
    -------
    PhiValues
        Fields ``phi11 phi12 phi21 dphi11 dphi12 dphi21``: floats for scalar σ, arrays
        shaped like σ otherwise.  ``.order(a, b, derivative)`` gives any other order.

    Examples
    --------
    The variance-preserving ``cos`` kernel has Φ_{2,1} = 1 and Φ'_{2,1} = π²/4 (eq 24):

    >>> import math
    >>> r = phi("cos", 0.25)
    >>> abs(r.phi21 - 1) < 1e-14, abs(r.dphi21 - math.pi**2 / 4) < 1e-13
    (True, True)
    """
    k = get_kernel(kernel)
    arr, scalar = _check_sigma(sigma)
    values = {name: phi_ab(k, sigma, a, b, d) for name, a, b, d in _FIELDS}
    sig = float(arr) if scalar else arr
    return PhiValues(kernel=k.name, sigma=sig, _kernel_obj=k, **values)


def phi_quadrature(kernel, sigma: float, a: int, b: int, derivative: bool = False, *, order: int = 20) -> float:
    """Φ by plain composite Gauss–Legendre over ε, the deterministic quadrature check.

    Independent of the series route: ∫ h(ε) N(ε; 0, σ²) dε over [-12σ-1, 12σ+1], split at
    every lattice point and kernel breakpoint (and at ±σ·2^j around 0, to resolve a narrow
    Gaussian), each panel with ``order`` nodes in θ where ε = lo + (hi-lo)·sin²(πθ/2).  It is
    meant for moderate panel counts (σ ≲ 100).

    >>> abs(phi_quadrature("tri", 0.4, 2, 1) - phi_ab("tri", 0.4, 2, 1)) < 1e-13
    True
    """
    kernel = get_kernel(kernel)
    arr, scalar = _check_sigma(sigma)
    if not scalar:
        raise ValueError("sigma: phi_quadrature takes a scalar")
    s = float(arr)
    a = _check_order(a, "a")
    b = _check_order(b, "b")
    order = _check_order(order, "order")
    if s == 0.0:
        return phi_table(kernel, a, b, derivative).limit0
    half = 12.0 * s + 1.0
    lo_int, hi_int = math.floor(-half), math.ceil(half)
    inner = _inner_breakpoints(kernel)
    edges = set(range(lo_int, hi_int + 1))
    for n in range(lo_int, hi_int):
        edges.update(n + p for p in inner)
    j = 0
    while s * 2.0**j < 0.5:
        edges.update((s * 2.0**j, -s * 2.0**j))
        j += 1
    edges = np.array(sorted(edges))
    gl_x, gl_w = np.polynomial.legendre.leggauss(order)
    # Map each node to both ends of its panel with s = sin²: singular ends become analytic.
    theta = 0.5 * (gl_x + 1.0)
    u = np.sin(0.5 * math.pi * theta) ** 2
    du = 0.25 * math.pi * np.sin(math.pi * theta) * gl_w
    lo, hi = edges[:-1, None], edges[1:, None]
    eps = lo + (hi - lo) * u
    weight = (hi - lo) * du
    dens = np.exp(-0.5 * (eps / s) ** 2) / (s * math.sqrt(2.0 * math.pi))
    return float(np.sum(_h_values(kernel, eps, a, b, bool(derivative)) * dens * weight))
