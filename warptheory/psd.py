r"""Spectrum of a warped random field: eq 13, its discretised forms (eqs 45–48) and their limits.

Setting (paper §4.1, supplementary §10–11; derivations in ``paper_notes/s10_12_random_fields.md``).
:math:`y(t) = x(t + \varepsilon(t))` with :math:`x` and the :math:`N` components of
:math:`\varepsilon` independent, zero-mean, homogeneous Gaussian fields on the periodic domain
of :math:`L` pixels per side; every component of ε has variance :math:`\sigma_\varepsilon^2` and
normalised autocorrelation :math:`\rho_\varepsilon`.  Spectra returned here are *lattice
spectra*: the expected periodogram :math:`\mathbb E|\hat y_k|^2/L^N` of the output sampled on
the pixels, in FFT order — what a Monte-Carlo run measures.

Continuous regime (x a smooth field, evaluated exactly)
    Because :math:`\varepsilon(\tau+t)-\varepsilon(\tau) \sim \mathcal N(0, 2\sigma_\varepsilon^2
    (1-\rho_\varepsilon(t)) I)`,

    .. math:: R_y(t) = \sum_m S_x[m]\, e^{2\pi i m\cdot t/L}\,
              e^{-4\pi^2\sigma_\varepsilon^2 |m/L|^2 (1-\rho_\varepsilon(t))}

    exactly (:func:`continuous_spectrum`).  Eq 13 — the α-sum with the integral over the cell
    — is the Fourier series of this expression when the cell is the period of
    :math:`\rho_\varepsilon`, i.e. the periodic domain (:func:`eq13_modes`, aliased to the
    lattice by :func:`alias_to_lattice`); the two routes agree to rounding error.

Discretised regime (x white on the lattice, warped with the kernel φ, eq 2)
    :math:`R_y[n] = \sigma_x^2 \prod_k H(n_k, \rho_\varepsilon[n])` with the exact pair
    expectation

    .. math:: H(m,\rho) = \mathbb E\Big[\sum_u \varphi(m + a - u)\varphi(b - u)\Big]
              = \sum_{j\in\mathbb Z} e^{-\pi^2 j^2\sigma_\varepsilon^2(1+\rho)}\,
                \mathbb E_w\big[e^{-\pi i j w} C_j(w - m)\big],\quad
                w\sim\mathcal N(0, 2\sigma_\varepsilon^2(1-\rho)),

    :math:`C_j(c) = \int\varphi(s)\varphi(s+c)e^{-2\pi i j s}ds`
    (:func:`pair_expectation`, :func:`discretised_spectrum` with ``form="exact"``).
    The paper's eq 46 — x treated as the *stationary* field :math:`x*\varphi` with spectrum
    :math:`S_x|\hat\varphi|^2` — keeps only the :math:`j = 0` term
    (``form="eq46"``); eq 47 for white ε is the same with
    :math:`w\sim\mathcal N(0,2\sigma_\varepsilon^2)` at every lag, lag 0 included
    (``form="eq47"``).  At lag 0, :math:`H(0,1) = \Phi_{2,1}` (eq 48).

Examples
--------
Eq 48: for white x the output variance is :math:`\sigma_x^2\Phi_{2,1}^d`, whatever ρ_ε:

>>> import numpy as np
>>> from warptheory import phi_ab
>>> rho = np.zeros(32); rho[0] = 1.0
>>> S = discretised_spectrum("tri", (32,), 0.4, rho)
>>> bool(abs(S.mean() - phi_ab("tri", 0.4, 2, 1)) < 1e-6)
True
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np

from .kernels import get_kernel

__all__ = [
    "continuous_spectrum",
    "eq13_modes",
    "eq13_transfer",
    "alias_to_lattice",
    "pair_expectation",
    "discretised_spectrum",
    "sigma_y2_continuous",
    "sigma_y2_white",
    "sigma_y2_eq47",
    "periodogram",
    "bin_spectrum",
    "spectrum_bins",
    "CELL_STEP",
]

#: Grid step of the kernel autocorrelation table C_j(c).  Trapezoid error O(h²) ≈ 1e-7 for
#: continuous kernels; O(h) ≈ 1e-4 for ``rect`` (a jump) and O(h^1.5) ≈ 4e-6 for
#: ``sqrt_tri`` (square-root edge).
CELL_STEP = 1.0 / 2048
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2 * math.pi)
# Fourier terms j with exp(-π² j² σ² (1+ρ)) < e^-37 ≈ 1e-16 are dropped.
_TERM_LOG = 37.0
_JMAX_CAP = 400


def _check_sigma(sigma_eps):
    if not isinstance(sigma_eps, numbers.Real) or not (sigma_eps >= 0) or not math.isfinite(sigma_eps):
        raise ValueError(f"sigma_eps: expected a finite number ≥ 0, got {sigma_eps!r}")
    return float(sigma_eps)


def _check_rho_lattice(rho, shape=None):
    rho = np.asarray(rho, dtype=np.float64)
    if rho.ndim not in (1, 2) or len(set(rho.shape)) != 1:
        raise ValueError(f"rho_eps: expected a (L,) or (L, L) lattice correlation, got shape {rho.shape}")
    if shape is not None and rho.shape != tuple(shape):
        raise ValueError(f"rho_eps: expected shape {tuple(shape)}, got {rho.shape}")
    if rho[(0,) * rho.ndim] != 1.0 or np.any(np.abs(rho) > 1.0 + 1e-12):
        raise ValueError("rho_eps: expected a normalised correlation (1 at lag 0, |ρ| ≤ 1 elsewhere)")
    return rho


def _signed_lags(size):
    n = np.arange(size)
    return np.where(n > size // 2, n - size, n)


# --------------------------------------------------------------------------- continuous regime
def continuous_spectrum(S_modes, size, rho_eps, sigma_eps):
    r"""Exact lattice spectrum of :math:`y(v) = x(v + \varepsilon_v)` for a band-limited continuous x.

    Parameters
    ----------
    S_modes : ndarray, shape (2K+1,) or (2K+1, 2K+1)
        Per-mode power of x (modes ``-K..K``), e.g. :func:`warptheory.fields.mode_spectrum`.
    size : int
        Torus side L (pixels); the output is sampled on its L^N pixels.
    rho_eps : ndarray, shape (L,) or (L, L)
        Lattice correlation :math:`\rho_\varepsilon[n]` (FFT order), e.g.
        :func:`warptheory.fields.periodic_correlation`.
    sigma_eps : float
        Standard deviation of each ε component, pixels.

    Returns
    -------
    ndarray, shape of ``rho_eps``: :math:`\mathbb E|\hat y_k|^2/L^N`.
    """
    sigma = _check_sigma(sigma_eps)
    S = np.asarray(S_modes, dtype=np.float64)
    rho = _check_rho_lattice(rho_eps)
    if S.ndim != rho.ndim or rho.shape[0] != size:
        raise ValueError(f"S_modes, rho_eps: expected {rho.ndim}-D spectra on a {size}-pixel grid")
    kmax = (S.shape[0] - 1) // 2
    m = np.arange(-kmax, kmax + 1)
    n = _signed_lags(size)
    c = 4 * math.pi**2 * sigma**2
    if S.ndim == 1:
        phase = np.cos(2 * math.pi * np.outer(n, m) / size)
        damp = np.exp(-c * np.outer(1 - rho, (m / size) ** 2))
        R = (phase * damp) @ S
    else:
        m2 = ((m[:, None] / size) ** 2 + (m[None, :] / size) ** 2).ravel()
        arg = 2 * math.pi * (n[:, None, None, None] * m[None, None, :, None]
                             + n[None, :, None, None] * m[None, None, None, :]) / size
        phase = np.cos(arg).reshape(size * size, -1)
        damp = np.exp(-c * np.outer((1 - rho).ravel(), m2))
        R = ((phase * damp) @ S.ravel()).reshape(size, size)
    return np.fft.fftn(R).real


def eq13_modes(S_modes, size, rho_fine, sigma_eps, oversample, *, taylor_zero_term=True):
    r"""Eq 13 as printed, per Fourier mode of the torus: the α-sum with the integral over the cell.

    .. math:: S_y[k] = \sum_\alpha S_x[k-\alpha]\int_{[0,1]^N}
              e^{-r(1-\rho_\varepsilon(Ls))}e^{-2\pi i\alpha\cdot s}\,ds,\qquad
              r = 4\pi^2\sigma_\varepsilon^2\,|(k-\alpha)/L|^2,

    with the cell :math:`[0,1]^N` the periodic domain (lengths in units of L, modes k in cycles
    per domain).  The cell integral is the rectangle rule on ``oversample·L`` points per side,
    which is spectrally accurate for smooth ρ and exact after aliasing to the lattice
    (:func:`alias_to_lattice`; the discrete Poisson formula), for any ``oversample``.

    Parameters
    ----------
    S_modes : ndarray, (2K+1,) or (2K+1, 2K+1)
    size : int
        L.
    rho_fine : ndarray, side ``oversample·L``
        ρ_ε at lags ``n/oversample`` pixels,
        :func:`warptheory.fields.periodic_correlation` with ``oversample``.
    sigma_eps : float
    oversample : int
    taylor_zero_term : bool
        False evaluates eq 41 literally, whose Taylor sum starts at m = 1: the integrand
        becomes :math:`e^{-r}(e^{r\rho}-1)`.  The paper notes the missing term; eq 13 restores it.

    Returns
    -------
    ndarray, side ``oversample·L``: per-mode power at modes ``k`` (FFT order, modulo the fine grid).
    """
    S = np.asarray(S_modes, dtype=np.float64)
    out = np.zeros((size * int(oversample),) * S.ndim)
    for idx, contribution in _eq13_mode_terms(S.shape, size, rho_fine, sigma_eps, oversample, taylor_zero_term,
                                              skip=S == 0.0):
        out += S[idx] * contribution
    return out


def _eq13_mode_terms(shape, size, rho_fine, sigma_eps, oversample, taylor_zero_term, skip=None):
    """Yield (mode index, eq 13's per-mode term on the fine grid) for every mode of a (2K+1)^N spectrum."""
    sigma = _check_sigma(sigma_eps)
    rho = np.asarray(rho_fine, dtype=np.float64)
    ndim = len(shape)
    fine = size * int(oversample)
    if rho.shape != (fine,) * ndim:
        raise ValueError(f"rho_fine: expected shape {(fine,) * ndim}, got {rho.shape}")
    kmax = (shape[0] - 1) // 2
    if 2 * kmax + 1 > fine:
        raise ValueError("oversample: the fine grid must hold every mode of S_modes")
    c = 4 * math.pi**2 * sigma**2
    modes = np.arange(-kmax, kmax + 1)
    for idx in np.ndindex(*shape):
        if skip is not None and skip[idx]:
            continue
        m = modes[list(idx)]
        r = c * float(np.sum((m / size) ** 2))
        g = np.exp(-r * (1.0 - rho))
        if not taylor_zero_term:
            g = g - math.exp(-r)
        cell = np.fft.fftn(g).real / g.size  # coefficient of e^{2πiα·s}; g is even, so real
        yield idx, np.roll(cell, tuple(int(v) for v in m), axis=tuple(range(ndim)))


def eq13_transfer(shape, size, rho_fine, sigma_eps, oversample, *, taylor_zero_term=True):
    r"""Eq 13 per input mode, on the lattice: ``H`` with ``alias_to_lattice(eq13_modes(S)) = tensordot(S, H)``.

    ``H[m]`` is the lattice spectrum a unit-power mode m of x contributes to y (its own power
    spread over the frequencies by the warp).  Given one realisation of x with mode powers
    :math:`|a_m|^2`, :math:`\sum_m |a_m|^2 H[m]` is the conditional expectation of y's
    periodogram over the offsets (the cross terms m ≠ m' average out because ε is stationary),
    so it is an exact control variate for the Monte-Carlo periodogram (``validation/test_eq13_psd.py``).

    Parameters
    ----------
    shape : tuple
        ``(2K+1,)`` or ``(2K+1, 2K+1)``: the mode grid of x.
    size, rho_fine, sigma_eps, oversample, taylor_zero_term
        As :func:`eq13_modes`.

    Returns
    -------
    ndarray, shape ``shape + (size,)*N``.
    """
    shape = tuple(int(v) for v in shape)
    out = np.zeros(shape + (size,) * len(shape))
    for idx, contribution in _eq13_mode_terms(shape, size, rho_fine, sigma_eps, oversample, taylor_zero_term):
        out[idx] = alias_to_lattice(contribution, size)
    return out


def alias_to_lattice(S_fine, size):
    r"""Lattice spectrum :math:`L^N\sum_j S_y[k + jL]` of a per-mode spectrum (FFT order)."""
    S_fine = np.asarray(S_fine, dtype=np.float64)
    fine = S_fine.shape[0]
    if fine % size:
        raise ValueError(f"size: expected a divisor of the fine grid side {fine}, got {size}")
    p = fine // size
    if S_fine.ndim == 1:
        return S_fine.reshape(p, size).sum(axis=0) * size
    return S_fine.reshape(p, size, p, size).sum(axis=(0, 2)) * size**2


# --------------------------------------------------------------------------- discretised regime
@lru_cache(maxsize=64)
def _autocorr_table(kernel_name_or_obj, jmax, step):
    """C_j(c) for j = 0..jmax on c = -2..2 (step), by FFT cross-correlation (trapezoid rule)."""
    k = get_kernel(kernel_name_or_obj)
    n_half = int(round(1.0 / step))
    t = np.arange(-n_half, n_half + 1) * step
    phi = k.value(t)
    size = 4 * len(t)
    f_phi = np.fft.fft(phi, size)
    j = np.arange(jmax + 1)
    g = phi[None, :] * np.exp(-2j * math.pi * j[:, None] * t[None, :])
    corr = np.fft.ifft(f_phi[None, :] * np.conj(np.fft.fft(np.conj(g), size, axis=1)), axis=1) * step
    lags = np.arange(-2 * n_half, 2 * n_half + 1)
    table = corr[:, lags % size]
    return lags * step, table


def _jmax(sigma, rho):
    damp = math.pi**2 * sigma**2 * (1.0 + rho)
    if damp <= 0:
        return _JMAX_CAP
    return int(min(_JMAX_CAP, math.ceil(math.sqrt(_TERM_LOG / damp)) + 1))


def pair_expectation(kernel, sigma_eps, lag, rho, *, terms="exact", step=CELL_STEP):
    r"""Exact pair expectation :math:`H(m,\rho) = \mathbb E[\sum_u\varphi(m+a-u)\varphi(b-u)]`.

    ``(a, b)`` are the offsets of one ε component at two pixels ``m`` apart: jointly Gaussian,
    variance :math:`\sigma_\varepsilon^2`, correlation ρ.  Then the output autocovariance of a
    white lattice x warped by eq 2 is :math:`\sigma_x^2\prod_k H(n_k, \rho_\varepsilon[n])`.

    Parameters
    ----------
    kernel : str or Kernel
    sigma_eps : float
    lag : int
        m.
    rho : float
        Correlation of the two offsets, in (-1, 1].
    terms : {"exact", "stationary"}
        "stationary" keeps only the j = 0 term — the paper's eq 46, which treats the
        interpolated x as stationary.
    step : float
        Grid step of the C_j table (accuracy: see :data:`CELL_STEP`).

    >>> from warptheory import phi_ab
    >>> abs(pair_expectation("tri", 0.3, 0, 1.0) - phi_ab("tri", 0.3, 2, 1)) < 1e-6
    True
    """
    sigma = _check_sigma(sigma_eps)
    if not isinstance(lag, numbers.Integral):
        raise TypeError(f"lag: expected an integer, got {type(lag).__name__}")
    if not (-1.0 < rho <= 1.0):
        raise ValueError(f"rho: expected a correlation in (-1, 1], got {rho!r}")
    if terms not in ("exact", "stationary"):
        raise ValueError(f"terms: expected 'exact' or 'stationary', got {terms!r}")
    kernel = get_kernel(kernel)
    jmax = 0 if terms == "stationary" else _jmax(sigma, rho)
    c, table = _autocorr_table(kernel, jmax, step)
    j = np.arange(jmax + 1)
    damping = np.exp(-(math.pi**2) * j**2 * sigma**2 * (1.0 + rho))
    mult = np.where(j == 0, 1.0, 2.0)  # C_{-j} = conj(C_j): the ±j pair is twice the real part
    s = sigma * math.sqrt(max(2.0 * (1.0 - rho), 0.0))
    if s < 20 * step:
        # Narrow Gaussian in w: Gauss–Hermite nodes, C_j interpolated linearly (error O(step²)).
        w = s * _GH_NODES
        vals = np.empty((jmax + 1, w.size), dtype=np.complex128)
        for jj in range(jmax + 1):
            vals[jj] = np.interp(w - lag, c, table[jj].real) + 1j * np.interp(w - lag, c, table[jj].imag)
        vals *= np.exp(-1j * math.pi * j[:, None] * w[None, :])
        ew = vals @ _GH_WEIGHTS
    else:
        w = c + lag
        dens = np.exp(-0.5 * (w / s) ** 2) / (s * math.sqrt(2 * math.pi)) * step
        dens[0] *= 0.5
        dens[-1] *= 0.5
        ew = (table * np.exp(-1j * math.pi * j[:, None] * w[None, :])) @ dens
    return float(np.sum(mult * damping * ew.real))


def _white_eps_literal(kernel, sigma, lag, step=CELL_STEP):
    """(φ*φ*N(0, 2σ²))(m): eq 47's second line at lag m, lag 0 included."""
    c, table = _autocorr_table(get_kernel(kernel), 0, step)
    s = sigma * math.sqrt(2.0)
    if s < 20 * step:
        return float(np.interp(s * _GH_NODES - lag, c, table[0].real) @ _GH_WEIGHTS)
    w = c + lag
    dens = np.exp(-0.5 * (w / s) ** 2) / (s * math.sqrt(2 * math.pi)) * step
    return float(table[0].real @ dens)


def discretised_spectrum(kernel, shape, sigma_eps, rho_eps, sigma_x2=1.0, *, form="exact"):
    r"""Lattice spectrum of eq 2's output for white lattice x (variance ``sigma_x2``).

    Parameters
    ----------
    kernel : str or Kernel
    shape : tuple
        ``(L,)`` or ``(L, L)``.
    sigma_eps : float
    rho_eps : ndarray of ``shape``
        Lattice correlation of each ε component (FFT order).
    sigma_x2 : float
    form : {"exact", "eq46", "eq47"}
        "exact": all Fourier terms of :func:`pair_expectation` (our derivation).
        "eq46": the paper's stationary-interpolant form (j = 0 term only).
        "eq47": the paper's white-ε form :math:`\sigma_x^2\,\varphi*\varphi*\mathcal N(0,
        2\sigma_\varepsilon^2)` at every lag, whatever ``rho_eps`` is.

    Returns
    -------
    ndarray of ``shape`` (FFT order).
    """
    sigma = _check_sigma(sigma_eps)
    shape = tuple(shape)
    rho = _check_rho_lattice(rho_eps, shape)
    if form not in ("exact", "eq46", "eq47"):
        raise ValueError(f"form: expected 'exact', 'eq46' or 'eq47', got {form!r}")
    size, ndim = shape[0], len(shape)
    # H(m, ρ) vanishes once |m| exceeds the kernel reach 2 plus 9 standard deviations of w.
    reach = int(math.ceil(2 + 9 * sigma * math.sqrt(2.0 * (1.0 - min(rho.min(), 0.0)))))
    if 2 * reach + 1 > size:
        raise ValueError(f"shape: the output covariance reaches ±{reach} pixels; need L > {2 * reach + 1}")
    lags = range(-reach, reach + 1)
    cache = {}

    def H(m, r):
        key = (m, r)
        if key not in cache:
            if form == "eq47":
                cache[key] = _white_eps_literal(kernel, sigma, m)
            else:
                cache[key] = pair_expectation(kernel, sigma, m, r,
                                              terms="exact" if form == "exact" else "stationary")
        return cache[key]

    R = np.zeros(shape)
    if ndim == 1:
        for m in lags:
            R[m % size] = H(m, float(rho[m % size]))
    else:
        for m1 in lags:
            for m2 in lags:
                r = float(rho[m1 % size, m2 % size])
                R[m1 % size, m2 % size] = H(m1, r) * H(m2, r)
    return np.fft.fftn(R).real * float(sigma_x2)


# --------------------------------------------------------------------------- variance limits
def sigma_y2_continuous(sigma_x2):
    r"""Eq 45: without discretisation the warp preserves the variance, :math:`\sigma_y^2 = \sigma_x^2`."""
    return float(sigma_x2)


def sigma_y2_white(kernel, sigma_eps, ndim, sigma_x2=1.0):
    r"""Eq 48: :math:`\sigma_y^2 = \sigma_x^2\Phi_{2,1}^d` for white lattice x (any ρ_ε)."""
    from .phifunctions import phi_ab
    return float(sigma_x2) * float(phi_ab(kernel, _check_sigma(sigma_eps), 2, 1)) ** int(ndim)


def sigma_y2_eq47(kernel, sigma_eps, ndim, sigma_x2=1.0):
    r"""Eq 47 at lag 0, the route the paper takes to eq 48: :math:`\sigma_x^2[(\varphi*\varphi*\mathcal N(0,2\sigma_\varepsilon^2))(0)]^d`."""
    return float(sigma_x2) * _white_eps_literal(kernel, _check_sigma(sigma_eps), 0) ** int(ndim)


# --------------------------------------------------------------------------- estimation helpers
def periodogram(y):
    r"""Periodogram :math:`|\hat y_k|^2/L^N` over the trailing 1 or 2 axes of ``y`` (B, L[, L])."""
    y = np.asarray(y, dtype=np.float64)
    axes = tuple(range(1, y.ndim))
    if len(axes) not in (1, 2):
        raise ValueError(f"y: expected shape (B, L) or (B, L, L), got {y.shape}")
    n = np.prod([y.shape[a] for a in axes])
    return np.abs(np.fft.fftn(y, axes=axes)) ** 2 / n


def spectrum_bins(shape):
    r"""Bin label of every frequency: |k| for 1-D (k = 0..L/2), rounded radius for 2-D.

    Frequencies ``k`` and ``-k`` share a bin (their periodograms are equal for real fields).
    Returns ``(labels, nbins)``, ``labels`` an int array of ``shape``.
    """
    shape = tuple(shape)
    k = np.abs(_signed_lags(shape[0]))
    if len(shape) == 1:
        return k, shape[0] // 2 + 1
    r = np.rint(np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)).astype(int)
    return r, int(r.max()) + 1


def bin_spectrum(S, labels, nbins):
    r"""Average ``S`` (..., *shape) over each bin; returns (..., nbins)."""
    S = np.asarray(S, dtype=np.float64)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=nbins)
    lead = S.shape[: S.ndim - labels.ndim]
    Sf = S.reshape(lead + (-1,))
    out = np.zeros(lead + (nbins,))
    for b in range(nbins):
        out[..., b] = Sf[..., flat == b].sum(axis=-1) / counts[b]
    return out
