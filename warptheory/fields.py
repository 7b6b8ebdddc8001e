r"""Homogeneous Gaussian random fields on a periodic grid (paper §4.1, supplementary §10).

Two kinds of field are used by the random-field checks of eq 13
(``paper_notes/s10_12_random_fields.md``):

*Lattice fields* live on the :math:`L^N` pixels of a periodic grid (``N`` = 1 or 2).  Their
autocorrelation is the continuous model :math:`R(t)` sampled at integer lags and periodised
over the images :math:`t + jL`, and their *lattice spectrum* is its DFT,

.. math::

    S[k] = \sum_{n \in \mathbb Z_L^N} R_{\rm per}[n]\, e^{-2\pi i k\cdot n/L}
         = \frac{\mathbb E|\hat x_k|^2}{L^N},

the expected periodogram.  :func:`lattice_field` draws exactly this circulant Gaussian
field by FFT: its covariance is :math:`R_{\rm per}` to rounding error.

*Continuous band-limited fields* live on the torus :math:`[0, L)^N` and are finite Fourier
series :math:`x(t) = \sum_{|m|_\infty \le K} a_m e^{2\pi i m\cdot t/L}` with
:math:`\mathbb E|a_m|^2 = S_c[m]`, where :math:`S_c[m] = L^{-N}\hat R(m/L)` is the per-mode
power of the periodised continuous model.  They can be evaluated exactly at any point, which
is how the continuous regime of eq 13 is checked without any interpolation kernel
(:func:`evaluate_modes`).  The mode set is truncated where the Gaussian model has fallen
below ``1e-17`` of its peak; the truncated spectrum *is* the field's spectrum, so the checks
stay exact.

Autocorrelation models (``kind``), with correlation length ``length`` (pixels):

==============  =======================  ==========================================
kind            :math:`\rho(t)`          :math:`\hat R(f)` (N = 1; N = 2)
==============  =======================  ==========================================
``gaussian``    :math:`e^{-|t|^2/2\ell^2}`  :math:`\sqrt{2\pi}\ell e^{-2\pi^2\ell^2f^2}`;
                                         :math:`2\pi\ell^2 e^{-2\pi^2\ell^2|f|^2}`
``exponential`` :math:`e^{-|t|/\ell}`    :math:`2\ell/(1+4\pi^2\ell^2f^2)`;
                                         :math:`2\pi\ell^2/(1+4\pi^2\ell^2|f|^2)^{3/2}`
``white``       :math:`\delta_{t,0}`     lattice only: :math:`S[k] = 1`
==============  =======================  ==========================================

Examples
--------
The lattice spectrum is the DFT of the periodised autocorrelation, so it sums to
:math:`L^N \rho(0)` (Parseval at lag 0):

>>> import numpy as np
>>> S = lattice_spectrum("exponential", (64,), 3.0)
>>> bool(np.isclose(S.sum(), 64.0))
True
>>> bool(np.allclose(lattice_spectrum("white", (8, 8), 1.0), 1.0))
True
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "FIELD_KINDS",
    "correlation",
    "periodic_correlation",
    "lattice_spectrum",
    "lattice_field",
    "mode_spectrum",
    "mode_numbers",
    "sample_modes",
    "evaluate_modes",
]

#: Autocorrelation models understood by every function here.
FIELD_KINDS = ("gaussian", "exponential", "white")

# exp(-39) ≈ 1e-17: Gaussian images / modes beyond this are below float64 resolution of ρ(0) = 1.
_NEGLIGIBLE_LOG = 39.0


def _check_kind(kind):
    if kind not in FIELD_KINDS:
        raise ValueError(f"kind: expected one of {FIELD_KINDS}, got {kind!r}")


def _check_shape(shape):
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    shape = tuple(shape)
    if len(shape) not in (1, 2) or any(not isinstance(s, numbers.Integral) or s < 2 for s in shape):
        raise ValueError(f"shape: expected 1 or 2 sizes ≥ 2, got {shape!r}")
    if len(set(shape)) != 1:
        raise ValueError(f"shape: expected a square grid (equal sizes), got {shape!r}")
    return tuple(int(s) for s in shape)


def _check_length(kind, length):
    if kind == "white":
        return 1.0
    if not isinstance(length, numbers.Real) or not (length > 0) or not math.isfinite(length):
        raise ValueError(f"length: expected a positive finite correlation length, got {length!r}")
    return float(length)


def correlation(kind, lag, length):
    r"""Normalised autocorrelation :math:`\rho(t)` of the model (no periodisation).

    ``lag`` is an array of Euclidean distances |t| in pixels.  ``white`` is 1 at lag 0 and 0
    elsewhere (a lattice model).

    >>> float(correlation("gaussian", 2.0, 2.0)) == float(np.exp(-0.5))
    True
    """
    _check_kind(kind)
    length = _check_length(kind, length)
    r = np.abs(np.asarray(lag, dtype=np.float64))
    if kind == "gaussian":
        return np.exp(-0.5 * (r / length) ** 2)
    if kind == "exponential":
        return np.exp(-r / length)
    return (r == 0.0).astype(np.float64)


def _images(kind, length, size):
    """How many periodic images ±j·size are needed for the tail to drop below e^-39."""
    if kind == "white":
        return 0
    reach = length * (math.sqrt(2 * _NEGLIGIBLE_LOG) if kind == "gaussian" else _NEGLIGIBLE_LOG)
    return int(math.ceil(reach / size)) + 1


def periodic_correlation(kind, shape, length, oversample=1):
    r"""Lattice autocorrelation :math:`\rho_{\rm per}[n] \propto \sum_j \rho(n + jL)` on a periodic grid, 1 at lag 0.

    Returns an array of ``shape`` indexed by the lag ``n`` modulo ``L`` (FFT order).  With
    ``oversample = P`` the lags are ``n/P`` pixels, ``n = 0 .. PL-1`` (array side ``PL``): the
    continuous ρ on a sub-pixel grid, used for the cell integral of eq 13.  ``white`` is a
    lattice model and stays 1 at lag 0 and 0 at every other lag, sub-pixel ones included.

    >>> r = periodic_correlation("gaussian", (16,), 2.0)
    >>> bool(np.isclose(r[1], r[-1])) and float(r[0])   # symmetric, normalised at lag 0
    1.0
    """
    _check_kind(kind)
    shape = _check_shape(shape)
    length = _check_length(kind, length)
    if not isinstance(oversample, numbers.Integral) or oversample < 1:
        raise ValueError(f"oversample: expected a positive integer, got {oversample!r}")
    size = shape[0]
    fine = size * int(oversample)
    if kind == "white":
        out = np.zeros((fine,) * len(shape))
        out[(0,) * len(shape)] = 1.0
        return out
    n = np.arange(fine, dtype=np.float64)
    n = np.where(n > fine // 2, n - fine, n) / oversample
    nimg = _images(kind, length, size)
    shifts = np.arange(-nimg, nimg + 1) * size
    if len(shape) == 1:
        lags = np.abs(n[:, None] + shifts[None, :])
        out = correlation(kind, lags, length).sum(axis=1)
    else:
        a = n[:, None] + shifts[None, :]  # (L, images)
        r2 = a[:, None, :, None] ** 2 + a[None, :, None, :] ** 2
        out = correlation(kind, np.sqrt(r2), length).sum(axis=(2, 3))
    # The images add a little at lag 0 (e^{-L/ℓ} for exponential); renormalise so that the
    # periodic field has exactly the requested variance and ρ_per[0] = 1.
    return out / out[(0,) * out.ndim]


def lattice_spectrum(kind, shape, length, variance=1.0):
    r"""Expected periodogram :math:`S[k] = \mathbb E|\hat x_k|^2 / L^N` of the lattice field.

    Parameters
    ----------
    kind : {"gaussian", "exponential", "white"}
    shape : int or tuple of int
        ``(L,)`` or ``(L, L)``.
    length : float
        Correlation length in pixels (ignored for ``white``).
    variance : float
        :math:`R(0)` of the unperiodised model.

    Returns
    -------
    ndarray of ``shape``, real and ≥ 0, FFT order.
    """
    if not isinstance(variance, numbers.Real) or not variance > 0:
        raise ValueError(f"variance: expected a positive number, got {variance!r}")
    rho = periodic_correlation(kind, shape, length)
    spec = np.fft.fftn(rho).real * float(variance)
    # Sampled and periodised positive-definite functions have a non-negative DFT; what is left
    # below zero is rounding (~1e-16 of the peak).
    return np.clip(spec, 0.0, None)


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def lattice_field(spectrum, count, rng):
    r"""Draw ``count`` independent real Gaussian lattice fields with expected periodogram ``spectrum``.

    :math:`x = \mathcal F^{-1}[\sqrt{S}\,\mathcal F w]` with white unit-variance ``w``; its
    covariance is :math:`\mathcal F^{-1} S` exactly (a circulant Gaussian field).

    Parameters
    ----------
    spectrum : ndarray, shape (L,) or (L, L)
        Non-negative and symmetric (:math:`S[k] = S[-k]`), e.g. from :func:`lattice_spectrum`.
    count : int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (count, *spectrum.shape), float64
    """
    spectrum = np.asarray(spectrum, dtype=np.float64)
    _check_shape(spectrum.shape)
    if np.any(spectrum < 0) or not np.all(np.isfinite(spectrum)):
        raise ValueError("spectrum: expected finite non-negative values")
    if not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"count: expected a positive integer, got {count!r}")
    rng = _check_rng(rng)
    axes = tuple(range(1, spectrum.ndim + 1))
    white = rng.standard_normal((int(count),) + spectrum.shape)
    return np.fft.ifftn(np.fft.fftn(white, axes=axes) * np.sqrt(spectrum), axes=axes).real


def mode_numbers(kind, size, length, ndim=1):
    r"""Largest mode K kept for a continuous field: Gaussian model below e^-39 of its peak beyond it.

    Only ``gaussian`` continuous fields are band-limited enough to be truncated exactly; K must
    stay below the Nyquist mode ``size // 2`` (the field is then *oversampled* by the grid).

    >>> mode_numbers("gaussian", 128, 6.0)
    30
    """
    if kind != "gaussian":
        raise ValueError(f"kind: continuous fields need the band-limited 'gaussian' model, got {kind!r}")
    length = _check_length(kind, length)
    kmax = int(math.ceil(size * math.sqrt(_NEGLIGIBLE_LOG / (2.0 * math.pi**2)) / length))
    if kmax >= size // 2:
        raise ValueError(
            f"length: a gaussian field with length {length} needs modes up to {kmax}, beyond the Nyquist mode "
            f"{size // 2} of a {size}-pixel grid; use a longer correlation length or a larger grid")
    return kmax


def mode_spectrum(kind, size, length, ndim=1, variance=1.0):
    r"""Per-mode power :math:`S_c[m] = L^{-N}\hat R(m/L)` of a continuous band-limited field.

    Returns ``(modes, S)``: ``modes`` = ``arange(-K, K+1)`` and ``S`` of shape ``(2K+1,)*ndim``
    (modes in increasing order along each axis).  ``S.sum()`` is the field's exact variance.

    >>> m, S = mode_spectrum("gaussian", 128, 6.0)
    >>> bool(abs(S.sum() - 1.0) < 1e-12)
    True
    """
    if ndim not in (1, 2):
        raise ValueError(f"ndim: expected 1 or 2, got {ndim!r}")
    kmax = mode_numbers(kind, size, length, ndim)
    modes = np.arange(-kmax, kmax + 1)
    f = modes / float(size)
    if ndim == 1:
        S = math.sqrt(2 * math.pi) * length * np.exp(-2 * math.pi**2 * length**2 * f**2) / size
    else:
        f2 = f[:, None] ** 2 + f[None, :] ** 2
        S = 2 * math.pi * length**2 * np.exp(-2 * math.pi**2 * length**2 * f2) / size**2
    return modes, S * float(variance)


def sample_modes(S, count, rng):
    r"""Draw Hermitian Fourier coefficients :math:`a_m` with :math:`\mathbb E|a_m|^2 = S[m]`.

    ``S`` is a per-mode spectrum from :func:`mode_spectrum` (modes ``-K..K`` per axis).  The
    coefficients come from the DFT of real white noise on a ``(2K+1)^N`` grid, so
    :math:`a_{-m} = \bar a_m` and the field is real.

    Returns complex ndarray, shape (count, *S.shape).
    """
    S = np.asarray(S, dtype=np.float64)
    if S.ndim not in (1, 2) or S.shape[0] % 2 != 1 or len(set(S.shape)) != 1:
        raise ValueError(f"S: expected a (2K+1,) or (2K+1, 2K+1) per-mode spectrum, got shape {S.shape}")
    rng = _check_rng(rng)
    axes = tuple(range(1, S.ndim + 1))
    white = rng.standard_normal((int(count),) + S.shape)
    coef = np.fft.fftshift(np.fft.fftn(white, axes=axes), axes=axes) / math.sqrt(S.size)
    return coef * np.sqrt(S)


def evaluate_modes(coef, points, size):
    r"""Evaluate :math:`x(t) = \sum_m a_m e^{2\pi i m\cdot t/L}` exactly at arbitrary points.

    Parameters
    ----------
    coef : complex ndarray, shape (B, M) or (B, M, M)
        From :func:`sample_modes` (modes ``-K..K``).
    points : ndarray, shape (B, N, P)
        Coordinates (pixels) of P points per field, N = coef.ndim - 1 components.
    size : int
        Torus side L.

    Returns
    -------
    ndarray, shape (B, P), float64

    Examples
    --------
    A single cosine mode:

    >>> coef = np.zeros((1, 3), complex); coef[0, 0] = coef[0, 2] = 0.5
    >>> t = np.array([[[0.0, 2.0, 1.0]]])
    >>> np.round(evaluate_modes(coef, t, 8), 12).tolist()
    [[1.0, 0.0, 0.707106781187]]
    """
    coef = np.asarray(coef)
    points = np.asarray(points, dtype=np.float64)
    ndim = coef.ndim - 1
    if ndim not in (1, 2) or points.ndim != 3 or points.shape[1] != ndim or points.shape[0] != coef.shape[0]:
        raise ValueError(f"points: expected shape (B, {ndim}, P) matching coef {coef.shape}, got {points.shape}")
    kmax = (coef.shape[1] - 1) // 2

    def powers(t):
        # e^{2πi m t/L} for m = -K..K by repeated multiplication: one complex product per mode,
        # instead of one exp per mode; the drift after 2K products is ~K·1e-16.
        z = np.exp(2j * math.pi * t / size)
        out = np.empty(t.shape + (2 * kmax + 1,), dtype=np.complex128)
        out[..., kmax] = 1.0
        for j in range(1, kmax + 1):
            out[..., kmax + j] = out[..., kmax + j - 1] * z
        out[..., :kmax] = np.conj(out[..., kmax + 1:][..., ::-1])
        return out

    if ndim == 1:
        e1 = powers(points[:, 0, :])
        return np.einsum("bpm,bm->bp", e1, coef).real
    e1 = powers(points[:, 0, :])
    e2 = powers(points[:, 1, :])
    return np.einsum("bpi,bij,bpj->bp", e1, coef, e2, optimize=True).real
