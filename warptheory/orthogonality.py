r"""Warping as an "orthogonal" transform (paper §4.2, eqs 11–14) and unwarping (eq 49), for the discrete warp.

Continuum statement (eq 14): with :math:`K(t,\tau) = \delta(\tau - f(t))`, :math:`f = t + \varepsilon(t)`
bijective,

.. math:: KK^\top(t,\tau) = \frac{\delta(\tau - t)}{|J_f(t)|},\qquad
          K^\top K(t,\tau) = \frac{\delta(\tau - t)}{|J_f(f^{-1}(t))|}.

Discrete operator: :math:`K_{vu} = \prod_k\varphi(v_k - u_k + \varepsilon_{kv})` (eq 2,
:func:`warptheory.warping.warp_matrix`), with the warp fixed in continuous coordinates while the
grid is refined (``eps`` in pixels = n · ε_c(v/n)).  The kernel keeps a width of one pixel while
the sample spacing is the local Jacobian :math:`A = \partial f/\partial t`, so the products
never become diagonal: their row sums oscillate with the phase of the sample points against
the lattice and converge nowhere pointwise.  Averaged over phases — over growing windows, or
against smooth test functions — they converge to (``paper_notes/s04_continuous.md``)

.. math::

    \overline{KK^\top} = \sum_{m\in\mathbb Z^d}\prod_k(\varphi*\varphi)\big((Am)_k\big),
    \qquad
    \overline{K^\top K} = \frac{1}{|\det A|}\Big(\sum_{m\in\mathbb Z}(\varphi*\varphi)(m)\Big)^d

(:func:`gram_limit`).  Both equal the continuum values only in special cases: the second
for mean-preserving kernels (:math:`\sum_m (\varphi*\varphi)(m) = \int_0^1(\sum_n\varphi(s-n))^2ds = 1`),
the first essentially only at :math:`A = I` (and, for ``tri``, when :math:`1/J` is an integer).

Examples
--------
At the identity both limits are the continuum value 1 for a mean-preserving kernel:

>>> round(float(gram_limit("tri", 1.0, "KKt")), 12), round(float(gram_limit("tri", 1.0, "KtK")), 12)
(1.0, 1.0)

A stretched bilinear warp (J = 2) keeps only the m = 0 term, ∫φ² = 2/3, not 1/J = 1/2:

>>> round(float(gram_limit("tri", 2.0, "KKt")), 12)
0.666666666667

cos is not mean-preserving: :math:`\int_0^1(\cos\frac{\pi s}{2}+\sin\frac{\pi s}{2})^2 ds = 1 + 2/\pi`:

>>> import math
>>> abs(float(gram_limit("cos", 1.0, "KtK")) - (1 + 2 / math.pi)) < 1e-13
True
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np

from .kernels import get_kernel

__all__ = [
    "kernel_autocorrelation",
    "gram_limit",
    "SmoothWarp",
    "smooth_warp",
    "gram_senses",
    "moving_average",
    "convergence_study",
    "discretisation_spread",
    "phase_shifts",
    "phase_averaged_study",
]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


def kernel_autocorrelation(kernel, c):
    r""":math:`(\varphi*\varphi)(c) = \int\varphi(s)\varphi(s+c)\,ds` by Gauss–Legendre between breakpoints.

    Exact to rounding for piecewise-polynomial kernels of degree ≤ 47 (``tri``, ``rect``),
    ~1e-15 for ``cos``/``hann``, ~1e-5 for ``sqrt_tri`` (square-root endpoints defeat Gauss–Legendre).

    >>> round(float(kernel_autocorrelation("tri", 0.0)), 15)   # ∫ tri² = 2/3
    0.666666666666667
    """
    k = get_kernel(kernel)
    c = np.asarray(c, dtype=np.float64)
    flat = np.abs(c.ravel())  # φ*φ is even
    bps = np.array(sorted(set(float(b) for b in k.breakpoints) | {-1.0, 0.0, 1.0}))
    # Breakpoints of φ(s) and of φ(s + c), clipped to the support [-1, 1].
    pts = np.concatenate([np.broadcast_to(bps, (flat.size, bps.size)), bps[None, :] - flat[:, None]], axis=1)
    pts = np.sort(np.clip(pts, -1.0, 1.0), axis=1)
    lo, hi = pts[:, :-1], pts[:, 1:]
    half = 0.5 * (hi - lo)
    s = (lo + half)[..., None] + half[..., None] * _GL_NODES
    vals = k.value(s.ravel()).reshape(s.shape) * k.value((s + flat[:, None, None]).ravel()).reshape(s.shape)
    out = np.sum(half * (vals @ _GL_WEIGHTS), axis=1)
    return out.reshape(c.shape)


_TABLE_STEP = 1.0 / 16384


@lru_cache(maxsize=32)
def _autocorrelation_table(kernel):
    """φ*φ on [0, 2] with step 2^-14, for linear interpolation in :func:`gram_limit`.

    Interpolation error ≤ step²/8 · max|(φ*φ)''| ≈ 5e-10 · max|(φ*φ)''|; the knots 0, ±1/2,
    ±1 of the built-in kernels lie on the grid, so piecewise-linear parts are exact.
    """
    c = np.arange(0, int(2 / _TABLE_STEP) + 1) * _TABLE_STEP
    return c, kernel_autocorrelation(kernel, c)


def _check_product(product):
    if product not in ("KKt", "KtK"):
        raise ValueError(f"product: expected 'KKt' or 'KtK', got {product!r}")


def gram_limit(kernel, jacobian, product="KKt"):
    r"""Phase-averaged limit of the diagonal of :math:`KK^\top` or :math:`K^\top K` (exact form of eq 14).

    Parameters
    ----------
    kernel : str or Kernel
    jacobian : float, array of floats, or array (..., d, d)
        Local Jacobian :math:`A = \partial f/\partial t` of the warp: scalars for d = 1
        (positive, the warp is bijective), matrices for d ≥ 2.  For ``"KtK"`` it is the
        Jacobian at :math:`f^{-1}(t)`, as in the continuum form.
    product : {"KKt", "KtK"}

    Returns
    -------
    float or ndarray (the leading shape of ``jacobian``)
        The value the local averages and weak forms converge to; the continuum statement is
        :math:`1/|\det A|`.
    """
    _check_product(product)
    k = get_kernel(kernel)
    A = np.asarray(jacobian, dtype=np.float64)
    scalar_input = A.ndim == 0
    if A.ndim >= 2 and A.shape[-1] == A.shape[-2]:
        mats, d = A.reshape((-1,) + A.shape[-2:]), A.shape[-1]
        lead = A.shape[:-2]
    else:
        mats, d = A.reshape(-1, 1, 1), 1
        lead = A.shape
    det = np.abs(np.linalg.det(mats))
    if d == 1 and np.any(mats <= 0):
        raise ValueError("jacobian: expected positive scalar Jacobians (an increasing, bijective 1-D warp)")
    if not np.all(np.isfinite(mats)) or np.any(det <= 0):
        raise ValueError("jacobian: expected finite, non-singular Jacobians (a bijective warp)")
    if product == "KtK":
        total = float(np.sum(kernel_autocorrelation(k, np.arange(-2.0, 3.0))))
        out = total**d / det
    else:
        # φ*φ vanishes for |c| ≥ 2: only m with |(Am)_k| < 2 for every k contribute, and
        # |m_i| ≤ 2 Σ_k |(A^-1)_ik|.
        reach = int(math.ceil(2.0 * np.abs(np.linalg.inv(mats)).sum(axis=2).max())) + 1
        grid = np.stack(np.meshgrid(*([np.arange(-reach, reach + 1)] * d), indexing="ij"), -1).reshape(-1, d)
        c_table, f_table = _autocorrelation_table(k)
        out = np.zeros(len(mats))
        for m in grid:  # one lattice vector at a time keeps memory at O(points)
            w = np.abs(mats @ m.astype(np.float64))
            out += np.prod(np.interp(w, c_table, f_table, right=0.0), axis=1)
    out = out.reshape(lead)
    return float(out) if scalar_input or out.ndim == 0 else out


# --------------------------------------------------------------------------- smooth test warps
class SmoothWarp:
    r"""A smooth periodic bijective warp :math:`f(t) = t + \varepsilon_c(t)` of the unit torus.

    ``modes`` is a list of ``(amplitude, (k_1, .., k_d), phase, component)``:
    :math:`\varepsilon_{c,\,\rm component}(t) \mathrel{+}= a\sin(2\pi k\cdot t + \phi)`.
    Bijective when the Jacobian :math:`I + \nabla\varepsilon_c` has positive determinant
    everywhere (checked on a fine grid by :func:`smooth_warp`).
    """

    def __init__(self, ndim, modes):
        self.ndim = int(ndim)
        self.modes = [(float(a), tuple(int(v) for v in k), float(p), int(c)) for a, k, p, c in modes]

    def eps(self, t):
        """ε_c at points t, shape (d, ...) → (d, ...) (continuum units)."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros_like(t)
        for a, k, p, c in self.modes:
            arg = sum(2 * math.pi * kk * t[i] for i, kk in enumerate(k)) + p
            out[c] += a * np.sin(arg)
        return out

    def jacobian(self, t):
        """:math:`A = I + \\nabla\\varepsilon_c`, shape (..., d, d) (row = component)."""
        t = np.asarray(t, dtype=np.float64)
        shape = t.shape[1:]
        A = np.zeros(shape + (self.ndim, self.ndim))
        for i in range(self.ndim):
            A[..., i, i] = 1.0
        for a, k, p, c in self.modes:
            arg = sum(2 * math.pi * kk * t[i] for i, kk in enumerate(k)) + p
            for j, kk in enumerate(k):
                A[..., c, j] += a * 2 * math.pi * kk * np.cos(arg)
        return A

    def det(self, t):
        return np.linalg.det(self.jacobian(t))

    def inverse(self, s, iterations=60):
        """:math:`f^{-1}(s)` by Newton's method (the warp is a diffeomorphism of the torus)."""
        s = np.asarray(s, dtype=np.float64)
        t = s.copy()
        for _ in range(iterations):
            r = t + self.eps(t) - s
            A = self.jacobian(t)
            step = np.linalg.solve(A, np.moveaxis(r, 0, -1)[..., None])[..., 0]
            t = t - np.moveaxis(step, -1, 0)
            if np.max(np.abs(r)) < 1e-14:
                break
        return t

    def grid(self, n):
        """Grid points t = v/n, shape (d, n, .., n)."""
        axes = [np.arange(n) / n] * self.ndim
        return np.stack(np.meshgrid(*axes, indexing="ij"))

    def pixel_offsets(self, n):
        """Offsets in pixels for an n^d grid: ``n · ε_c(v/n)``, shape (d, n, .., n)."""
        return n * self.eps(self.grid(n))


def smooth_warp(ndim=1, strength=0.75):
    r"""The test warp of the orthogonality checks: two or three sine modes, max |∇ε_c| ≈ ``strength``.

    1-D: :math:`\varepsilon_c(t) = a(\sin 2\pi t + \tfrac12\sin(4\pi t + 1))` with
    :math:`4\pi a = ` ``strength``, so J ranges over about [1 - strength, 1 + strength].

    >>> w = smooth_warp(1)
    >>> t = np.linspace(0, 1, 1001)[None]
    >>> bool(w.det(t).min() > 0.2)
    True
    """
    if not 0 < strength < 1:
        raise ValueError(f"strength: expected a value in (0, 1) (a bijective warp), got {strength!r}")
    a = strength / (4 * math.pi)
    if ndim == 1:
        modes = [(a, (1,), 0.0, 0), (a / 2, (2,), 1.0, 0)]
    elif ndim == 2:
        modes = [(a, (1, 0), 0.3, 0), (a / 2, (1, 1), 1.0, 0), (a, (0, 1), 0.7, 1), (a / 2, (1, -1), 2.0, 1)]
    else:
        raise ValueError(f"ndim: expected 1 or 2, got {ndim!r}")
    warp = SmoothWarp(ndim, modes)
    check = warp.grid(64)
    if warp.det(check).min() <= 0:
        raise ValueError("strength: the warp is not bijective")
    return warp


# --------------------------------------------------------------------------- the three senses
def moving_average(a, window):
    """Centred periodic moving average over ``window`` pixels along every axis (box filter, by FFT)."""
    a = np.asarray(a, dtype=np.float64)
    box = np.zeros(a.shape)
    idx = np.arange(window) - window // 2
    for pos in np.ndindex(*([window] * a.ndim)):
        box[tuple(idx[list(pos)] % a.shape[0])] = 1.0
    box /= box.sum()
    return np.fft.ifftn(np.fft.fftn(a) * np.fft.fftn(box)).real


def _test_functions(t):
    """Smooth periodic h, g on the torus (weak form)."""
    h = 1.5 + np.prod(np.cos(2 * math.pi * t + 0.4), axis=0)
    g = 1.2 + np.sin(2 * math.pi * t.sum(axis=0) + 0.1)
    return h, g


def gram_senses(kernel, warp, n, product="KKt", *, window=None, operator=None):
    r"""Compare one discrete product with the continuum and with :func:`gram_limit` in three senses.

    Parameters
    ----------
    kernel : str or Kernel
    warp : SmoothWarp
    n : int
        Grid side (pixels).
    product : {"KKt", "KtK"}
    window : int, optional
        Local-average window (pixels per side); default ``ceil(sqrt(n))``.
    operator : callable, optional
        ``operator(g) -> P g`` on arrays of shape (n,)*d; default the sparse product built
        from :func:`warptheory.warping.warp_matrix`.  Eq 49 passes unwarp∘warp here.

    Returns
    -------
    dict with, for each of ``"paper"`` (1/|det J|) and ``"exact"`` (:func:`gram_limit`):
    ``pointwise`` (max |row sum − prediction|), ``local`` (mean over windows of |window
    average of row sums − window average of the prediction|; ``local_sup`` its max: near
    resonant Jacobians the phases of a window do not equidistribute, so the sup converges
    much more slowly), ``weak`` (⟨h, P g⟩/n^d) and ``weak_theory``
    (:math:`\int h g\,\mathrm{prediction}`, by the trapezoid rule on a 2048^d/64^d grid).
    """
    from .warping import warp_matrix

    _check_product(product)
    d = warp.ndim
    t = warp.grid(n)
    eps = warp.pixel_offsets(n)
    if operator is None:
        K = warp_matrix(eps, kernel=kernel, padding="periodic")
        P = (K @ K.T) if product == "KKt" else (K.T @ K)
        P = P.tocsr()

        def operator(g):
            return (P @ g.ravel()).reshape(g.shape)

    where = t if product == "KKt" else warp.inverse(t)

    def predictions(points):
        A = warp.jacobian(points)
        jac = A[..., 0, 0] if d == 1 else A
        return {"paper": 1.0 / np.abs(warp.det(points)), "exact": gram_limit(kernel, jac, product)}

    pred = predictions(where)
    rows = operator(np.ones((n,) * d))
    h, g = _test_functions(t)
    weak = float(np.sum(h * operator(g))) / n**d
    window = int(math.ceil(math.sqrt(n))) if window is None else int(window)
    avg_rows = moving_average(rows, window)
    # Continuum integral of h g · prediction on a fine grid (periodic trapezoid).
    nf = 2048 if d == 1 else 96
    tf = warp.grid(nf)
    hf, gf = _test_functions(tf)
    pf = predictions(tf if product == "KKt" else warp.inverse(tf))
    out = {"n": n, "window": window}
    for form in ("paper", "exact"):
        out[form] = {
            "pointwise": float(np.max(np.abs(rows - pred[form]))),
            "local": float(np.mean(np.abs(avg_rows - moving_average(pred[form], window)))),
            "local_sup": float(np.max(np.abs(avg_rows - moving_average(pred[form], window)))),
            "weak": weak,
            "weak_theory": float(np.mean(hf * gf * pf[form])),
        }
    return out


def convergence_study(kernel, warp, ns, product="KKt", operator_factory=None):
    r"""Run :func:`gram_senses` at every grid side in ``ns``; add the error sequences and fitted orders.

    Returns a dict: ``ns``; for each form ``"paper"``/``"exact"`` and each sense
    ``pointwise``/``local``/``local_sup``/``weak`` an array of errors (the weak error is
    ⟨h,Pg⟩/n^d − ∫hg·prediction), the weak values and theory, and ``order[form][sense]``:
    the least-squares slope of −log|error| against log n (nan if an error is 0).
    ``operator_factory(n)`` may supply the operator (eq 49: unwarp∘warp).
    """
    ns = [int(n) for n in ns]
    runs = [gram_senses(kernel, warp, n, product,
                        operator=None if operator_factory is None else operator_factory(n)) for n in ns]
    out = {"ns": np.array(ns), "order": {}}
    for form in ("paper", "exact"):
        errs = {s: np.array([r[form][s] for r in runs]) for s in ("pointwise", "local", "local_sup")}
        errs["weak"] = np.array([r[form]["weak"] - r[form]["weak_theory"] for r in runs])
        errs["weak_value"] = np.array([r[form]["weak"] for r in runs])
        errs["weak_theory"] = np.array([r[form]["weak_theory"] for r in runs])
        out[form] = errs
        orders = {}
        for s in ("pointwise", "local", "local_sup", "weak"):
            e = np.abs(errs[s])
            orders[s] = float("nan") if np.any(e == 0) else float(-np.polyfit(np.log(ns), np.log(e), 1)[0])
        out["order"][form] = orders
    return out


def discretisation_spread(values):
    r"""Error estimate of the finest entry of a convergence sequence: max |v_N − v_{N-1}|, |v_N − v_{N-2}|.

    For an error ≤ C n^{-p} with p ≥ 1/2 on grids doubling in n, this bounds the finest error
    up to a factor 1/(1 − 2^{-p}) ≤ 3.4, and it also covers the sign-changing (oscillatory)
    errors of the phase averages.  The deterministic records use it as their "se".
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3:
        raise ValueError("values: expected at least three resolutions")
    return float(max(abs(v[-1] - v[-2]), abs(v[-1] - v[-3])))


# --------------------------------------------------------------------------- phase-averaged refinement
def phase_shifts(ndim, phases):
    """Sub-pixel shifts θ of the warp, ``phases`` per axis at (j + ½)/phases: shape (phases^d, d).

    Averaging a product over these shifts removes every harmonic of the sample phase except the
    multiples of ``phases`` (their weights decay like the kernel's Fourier coefficients), which is
    what :func:`gram_limit` describes: the phase-averaged diagonal.
    """
    if isinstance(phases, bool) or not isinstance(phases, numbers.Integral) or phases < 1:
        raise ValueError(f"phases: expected a positive integer, got {phases!r}")
    th = (np.arange(phases) + 0.5) / phases
    grids = np.meshgrid(*([th] * int(ndim)), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def _weak_theory(kernel, warp, product, nf):
    tf = warp.grid(nf)
    hf, gf = _test_functions(tf)
    where = tf if product == "KKt" else warp.inverse(tf)
    A = warp.jacobian(where)
    jac = A[..., 0, 0] if warp.ndim == 1 else A
    return {"paper": float(np.mean(hf * gf / np.abs(warp.det(where)))),
            "exact": float(np.mean(hf * gf * gram_limit(kernel, jac, product)))}


def phase_averaged_study(kernel, warp, ns, product="KKt", *, phases=32, operator="gram", senses=("weak",),
                         theory_grid=None):
    r"""Refinement study of the discrete products with the warp's sample phase averaged out (eqs 14, 49).

    For each grid side ``n`` in ``ns`` the warp is applied with offsets ``n·ε_c(v/n) + θ`` for every
    shift θ of :func:`phase_shifts`, by the engine (:func:`warptheory.warping.warp` is K,
    :func:`~warptheory.warping.unwarp` is Kᵀ), and the results are averaged over θ:

    ``weak``
        ⟨h, P g⟩/n^d; ``operator="gram"`` computes it as ⟨Kh, Kg⟩ (KᵀK) or ⟨Kᵀh, Kᵀg⟩ (KKᵀ),
        ``operator="compose"`` as ⟨h, unwarp(warp(g))⟩ (KᵀK) or ⟨h, warp(unwarp(g))⟩ (KKᵀ).
    ``pointwise``
        sup over pixels of |phase average of the row sums P·1 − prediction(t)|; the prediction of
        KᵀK is taken at f⁻¹(t), of KKᵀ at t.
    ``single_phase``
        the same sup for θ = 0 alone (no averaging): the literal pointwise statement.

    Returns ``{"ns": [...], "weak": [...], "weak_theory": {"paper", "exact"}, "pointwise":
    {"paper": [...], "exact": [...]}, "single_phase": {...}}``; the sequences feed
    :func:`warptheory.stats.extrapolate`.
    """
    from . import warping

    _check_product(product)
    if operator not in ("gram", "compose"):
        raise ValueError(f"operator: expected 'gram' or 'compose', got {operator!r}")
    d = warp.ndim
    shifts = phase_shifts(d, phases)
    spatial_axes = tuple(range(1, d + 1))

    def K(x, eps):
        return warping.warp(x, eps, kernel=kernel, padding="periodic")

    def Kt(x, eps):
        return warping.unwarp(x, eps, kernel=kernel, padding="periodic")

    out = {"ns": [int(n) for n in ns], "weak": [], "pointwise": {"paper": [], "exact": []},
           "single_phase": {"paper": [], "exact": []}}
    for n in out["ns"]:
        t = warp.grid(n)
        base = warp.pixel_offsets(n)
        eps = base[None] + shifts.reshape((-1, d) + (1,) * d)  # (P, d, n, ..)
        h, g = _test_functions(t)
        P = eps.shape[0]
        if "weak" in senses:
            hg = np.broadcast_to(np.stack([h, g])[None], (P, 2) + h.shape)
            if operator == "gram":
                img = K(np.ascontiguousarray(hg), eps) if product == "KtK" else Kt(np.ascontiguousarray(hg), eps)
                vals = np.sum(img[:, 0] * img[:, 1], axis=spatial_axes)
            else:
                gg = np.ascontiguousarray(np.broadcast_to(g[None, None], (P, 1) + g.shape))
                pg = Kt(K(gg, eps), eps) if product == "KtK" else K(Kt(gg, eps), eps)
                vals = np.sum(h[None] * pg[:, 0], axis=spatial_axes)
            out["weak"].append(float(np.mean(vals)) / n**d)
        if "pointwise" in senses or "single_phase" in senses:
            ones = np.ones((P, 1) + (n,) * d)
            rows = (Kt(K(ones, eps), eps) if product == "KtK" else K(Kt(ones, eps), eps))[:, 0]
            where = t if product == "KKt" else warp.inverse(t)
            A = warp.jacobian(where)
            jac = A[..., 0, 0] if d == 1 else A
            pred = {"paper": 1.0 / np.abs(warp.det(where)), "exact": gram_limit(kernel, jac, product)}
            avg = rows.mean(axis=0)
            single = Kt(K(ones[:1], base[None]), base[None])[0, 0] if product == "KtK" else \
                K(Kt(ones[:1], base[None]), base[None])[0, 0]
            for form in ("paper", "exact"):
                out["pointwise"][form].append(float(np.max(np.abs(avg - pred[form]))))
                out["single_phase"][form].append(float(np.max(np.abs(single - pred[form]))))
    nf = theory_grid if theory_grid is not None else (4096 if d == 1 else 256)
    out["weak_theory"] = _weak_theory(kernel, warp, product, nf)
    out["prediction_scale"] = float(np.mean(gram_limit(kernel, warp.jacobian(warp.grid(64))[..., 0, 0] if d == 1
                                                        else warp.jacobian(warp.grid(64)), product)))
    return out
