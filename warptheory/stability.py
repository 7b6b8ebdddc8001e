r"""Stability of a SelfWarp block at initialisation (§3.1): forward and backward gains, ε path included.

A SelfWarp block (§2.1) warps its input by offsets that a convolution computes from the same input:

.. math::

    \varepsilon_{i\mathbf v} = \sum_{n,\mathbf a} w_{in\mathbf a}\,\tilde x_{n,\mathbf v+\mathbf a},\qquad
    y = \mathrm{warp}(x, \varepsilon),

with a centred :math:`k^d` window (``k`` odd), ``N`` input channels, ``d`` output channels,
:math:`\tilde x = x` or :math:`\tilde x = \mathrm{BN}(x)` (``pre_eps_norm``).  The gradient into x
is the direct path :math:`K^T\nabla_y\mathcal L` (eq 3) plus the ε path, eq 4 carried back through
the transpose of the ε-convolution (and of the batch norm):
:math:`\nabla_x\mathcal L = D + E`.

:func:`selfwarp_gain` returns, per unit input variance, the forward gain σ_y²/σ_x² and the backward
gain σ_∂x²/σ_∂y² = E[D²] + 2E[DE] + E[E²] (each part reported), for x and ∇_y L IID zero mean and
the weights IID N(0, σ_w²) with :math:`\sigma_w^2 = \sigma_\varepsilon^2 / (N k^d \sigma_{\tilde x}^2)`,
so that ``sigma_eps`` is the root-mean-square of every ε component.  The derivation is in
``paper_notes/s03_1_stability.md``; in short, with :math:`p = N k^d` and
:math:`\tau = \lVert\tilde x_{\text{window}}\rVert^2/(p\,\sigma_{\tilde x}^2)`: given x, ε is
exactly :math:`\mathcal N(0, s^2 I)` with :math:`s = \sigma_\varepsilon\sqrt\tau`, and

.. math::

    \text{forward} &= \mathbb E_\tau\big[P_{\mathbb Z}^d + (\tau - 1) P_w^d\big],\qquad
    \text{direct} = \mathbb E_\tau\big[P_{\mathbb Z}^d\big],\qquad
    \text{cross} = \tfrac{2}{p}\,\mathbb E_\tau\big[d\,q_w P_w^{d-1}\big],\\
    \text{eps} &= \sigma_\varepsilon^2\,\mathbb E_\tau\big[d P'_{\mathbb Z}P_{\mathbb Z}^{d-1}
        + (\tau-1)\,d P'_w P_w^{d-1}\big]
        + \tfrac1p\,\mathbb E_\tau\big[s^4 T_w + \sigma_\varepsilon^2 s^2 (T_{\mathbb Z} - T_w)\big],

with :math:`s^4 T_R = d\,v_R P_R^{d-1} + d(d-1)\,q_R^2 P_R^{d-2}` (:func:`_gains_at_scale`), where per axis, for taps
``m`` in the window (``w``, :math:`|m| \le (k-1)/2`) or on the whole lattice (ℤ),
:math:`P = \sum_m \mathbb E[\varphi(m+\varepsilon)^2]` (Φ_{2,1} on ℤ),
:math:`P' = \sum_m \mathbb E[\varphi'(m+\varepsilon)^2]` (Φ'_{2,1} on ℤ),
:math:`q = \sum_m \mathbb E[\varepsilon\,\varphi\varphi'(m+\varepsilon)]` and
:math:`v = \sum_m \mathbb E[(\varepsilon^2 - s^2)\,\varphi'(m+\varepsilon)^2]`, all at ε ~ N(0, s²).
τ is χ²_p/p for Gaussian x; for uniform and Laplace x it is the law of a sum of p squares
(:mod:`warptheory._radial`); ``form="gamma-tau"`` gives it instead the Gamma law with the exact mean 1
and variance (κ−1)/p (error O(p⁻²)).

``form="paper"`` is §3.1 read with eqs 5, 7 and 8 and ε independent of x (the p → ∞ limit):
forward = direct = Φ_{2,1}^d, cross = 0, eps = d σ_ε² Φ'_{2,1} Φ_{2,1}^{d−1}.

Examples
--------
No offsets, no change: both gains are 1 for every kernel, and detaching leaves the direct path only.

>>> g = selfwarp_gain("tri", 0.0, channels=8)
>>> (g.forward, g.backward)
(1.0, 1.0)
>>> g = selfwarp_gain("cos", 0.5, channels=8, d=1, detach=True)
>>> g.backward == g.backward_direct and g.backward_eps == 0.0 == g.backward_cross
True

The paper form is the wide limit of the exact one (p = N k^d → ∞):

>>> wide = selfwarp_gain("tri", 0.5, channels=10**6, d=1, k=1)
>>> paper = selfwarp_gain("tri", 0.5, channels=10**6, d=1, k=1, form="paper")
>>> abs(wide.backward / paper.backward - 1) < 1e-5
True
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache

import numpy as np

from .kernels import Kernel, get_kernel

__all__ = ["SelfWarpGain", "selfwarp_gain", "StackGain", "stack_gain", "ResNetGrowth", "resnet_gradient_growth",
           "TABLE1", "TABLE2", "axis_sums", "FORMS", "resnet_growth_at_depths"]

#: ``exact``: the derivation of ``paper_notes/s03_1_stability.md``; ``paper``: eqs 5, 7, 8 composed
#: with ε independent of x; ``gamma-tau``: the exact form with τ given the Gamma law of its exact mean and
#: variance (the first version for non-Gaussian x: off by O(p⁻²), 2.6 % at p = 4 for Laplace x);
#: ``montecarlo``: records from :mod:`warptheory.stability_montecarlo`.
FORMS = ("exact", "paper", "gamma-tau")
#: kurtosis of x → its law in the exact form (and in the Monte-Carlo twin): τ's law is that of ‖x‖²/p
INPUT_LAWS = {3.0: "gaussian", 1.8: "uniform", 6.0: "laplace", 1.0: "rademacher"}
#: above this fan-in p the exact form gives τ of uniform / Laplace x the Gamma law (error O(p⁻²): at p = 64
#: ≤ 4e-4 of a gain, Laplace forward, ×≈ 1/3.4 per doubling of p; the note's "The law of τ"); up to it, the
#: exact law (:mod:`warptheory._radial`, ≈ 2 s at p = 64)
EXACT_LAW_MAX_FANIN = 64

_GAUSS_SPAN = 10.0  # ε integrated over ±10 s: the Gaussian mass outside is 1.5e-23
# Gauss–Legendre nodes per ε panel (panels are ≤ 1 pixel or ≤ 10 s long) and the τ rule (panels × nodes):
# against 96 nodes and 24 × 24 the gains agree to 4e-14 relative over σ_ε = 0.05..2, p = 1..288.
_EPS_NODES = 32
_TAU_TAIL = 1e-16  # probability of τ left outside the τ integration range
_TAU_PANELS, _TAU_NODES = 8, 16


@dataclass(frozen=True)
class SelfWarpGain:
    """Forward and backward gains of one SelfWarp block at initialisation (§3.1).

    Attributes
    ----------
    forward : float
        σ_y² / σ_x².
    backward : float
        σ_∂x² / σ_∂y² = ``backward_direct + backward_cross + backward_eps``.
    backward_direct : float
        E[D²]/σ_∂y², D = K^T ∇_y L (eq 3).
    backward_cross : float
        2 E[D E]/σ_∂y²: the direct and ε paths are correlated through x (0 with ``detach``).
    backward_eps : float
        E[E²]/σ_∂y², E the ε path (eq 4 through the transposed ε-convolution); 0 with ``detach``;
        ``inf`` where Φ'_{2,1} is infinite (``sqrt_tri``).
    kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis
        The arguments.
    form : str
        ``"exact"``, ``"paper"`` or ``"montecarlo"``.
    se : dict or None
        Monte-Carlo only: standard error of each gain (and of ``ratio``), from replicates.
    replicates : int or None
        Monte-Carlo only: number of independent replicates behind ``se``.
    """

    forward: float
    backward: float
    backward_direct: float
    backward_cross: float
    backward_eps: float
    kernel: str
    sigma_eps: float
    d: int
    channels: int
    k: int
    detach: bool
    pre_eps_norm: bool
    kurtosis: float
    form: str
    se: dict | None = field(default=None, compare=False)
    replicates: int | None = None

    @property
    def ratio(self) -> float:
        """backward / forward: 1 for a block that keeps the Jacobian condition of §3.1."""
        return self.backward / self.forward

    def params(self) -> dict:
        """JSON-able arguments (for report records)."""
        return {key: getattr(self, key) for key in ("kernel", "sigma_eps", "d", "channels", "k", "detach",
                                                    "pre_eps_norm", "kurtosis")}

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- argument checks
def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_arguments(kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis):
    """Validate the shared arguments of the theory and its Monte-Carlo twin; returns them normalised."""
    kern = get_kernel(kernel)
    if isinstance(sigma_eps, (bool, np.bool_)) or not isinstance(sigma_eps, (int, float, np.integer, np.floating)) \
            or not math.isfinite(sigma_eps) or sigma_eps < 0:
        raise ValueError(f"sigma_eps: expected a finite number >= 0, got {sigma_eps!r}")
    if not _is_int(d) or not 1 <= d <= 3:
        raise ValueError(f"d: expected an integer from 1 to 3 (warped dimensions), got {d!r}")
    if not _is_int(channels) or channels < 1:
        raise ValueError(f"channels: expected a positive integer, got {channels!r}")
    if not _is_int(k) or k < 1 or k % 2 == 0:
        raise ValueError(f"k: expected an odd positive integer (centred ε-convolution), got {k!r}")
    for name, value in (("detach", detach), ("pre_eps_norm", pre_eps_norm)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected a bool, got {value!r}")
    if isinstance(kurtosis, (bool, np.bool_)) or not isinstance(kurtosis, (int, float, np.integer, np.floating)) \
            or not math.isfinite(kurtosis) or kurtosis < 1:
        raise ValueError(f"kurtosis: expected a finite number >= 1 (E x⁴ / σ_x⁴), got {kurtosis!r}")
    return kern, float(sigma_eps), int(d), int(channels), int(k), bool(detach), bool(pre_eps_norm), float(kurtosis)


# ----------------------------------------------------------------------------- per-axis sums
@lru_cache(maxsize=64)
def _kernel_has_infinite_slope_energy(kern: Kernel) -> bool:  # cached: Φ'_{2,1} by quadrature costs ≈ 10 ms
    from .phifunctions import phi_ab

    return not math.isfinite(phi_ab(kern, 1.0, 2, 1, True))


def _split_points(kern: Kernel) -> np.ndarray:
    """Fractional parts of the kernel's breakpoints: ε ≡ these (mod 1) puts a tap on a breakpoint."""
    return np.unique(np.mod(np.asarray(kern.breakpoints, dtype=float), 1.0))


def axis_sums(kernel, s, half_width: int) -> dict:
    r"""Per-axis tap sums at ε ~ N(0, s²), split into the window |m| ≤ ``half_width`` and the rest.

    Returns arrays (shaped like ``s``) under the keys ``P, dP, q, v`` with suffix ``_w`` (window)
    and ``_o`` (outside):

    * ``P = Σ_m E[φ(m+ε)²]`` — ``P_w + P_o`` is Φ_{2,1}(s);
    * ``dP = Σ_m E[φ'(m+ε)²]`` — ``dP_w + dP_o`` is Φ'_{2,1}(s);
    * ``q = Σ_m E[ε φ(m+ε) φ'(m+ε)]`` — s²·∂Φ_{2,1}/∂(s²) on the whole lattice for continuous φ;
    * ``v = Σ_m E[(ε² − s²) φ'(m+ε)²]`` — 2 s⁴·∂Φ'_{2,1}/∂(s²) likewise.

    Deterministic quadrature over ε: Gauss–Legendre on the panels between the points where a tap
    crosses a kernel breakpoint, ε ∈ [−10 s, 10 s].  ``dP`` and ``v`` are ``inf`` for a kernel with
    an infinite Φ'_{2,1} (``sqrt_tri``).  At s = 0 the ε = 0 limits are returned.

    >>> import numpy as np
    >>> from warptheory import phi_ab
    >>> r = axis_sums("tri", np.array([0.3, 1.0]), 1)
    >>> bool(np.allclose(r["P_w"] + r["P_o"], phi_ab("tri", [0.3, 1.0], 2, 1), rtol=1e-13))
    True
    """
    kern = get_kernel(kernel)
    s_arr = np.atleast_1d(np.asarray(s, dtype=float))
    out = _axis_sums_flat(kern, s_arr.ravel(), int(half_width))
    return {key: val.reshape(np.shape(s)) if np.ndim(s) else float(val[0]) for key, val in out.items()}


@lru_cache(maxsize=8)
def _gl(n):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def _axis_sums_flat(kern: Kernel, s: np.ndarray, h: int) -> dict:
    keys = ("P", "dP", "q", "v")
    res = {f"{k}_{r}": np.zeros(s.size) for k in keys for r in ("w", "o")}
    infinite = _kernel_has_infinite_slope_energy(kern)
    zero = s == 0.0
    if np.any(zero):
        # ε = 0: one tap, m = 0, weight φ(0)² = 1 (φ' at 0 by the right-derivative convention)
        slope2 = float(kern.derivative(np.array([0.0]))[0]) ** 2
        res["P_w"][zero] = 1.0
        res["dP_w"][zero] = math.inf if infinite else slope2
    pos = np.flatnonzero(~zero)
    if pos.size:
        fr = _split_points(kern)
        node_x, node_w = _gl(_EPS_NODES)
        eps_all, wt_all, idx_all = [], [], []
        for i in pos:
            si = s[i]
            lo, hi = -_GAUSS_SPAN * si, _GAUSS_SPAN * si
            j0, j1 = math.floor(lo) - 1, math.ceil(hi) + 1
            cuts = (np.arange(j0, j1 + 1)[:, None] + fr[None, :]).ravel()
            cuts = np.concatenate(([lo, hi], cuts[(cuts > lo) & (cuts < hi)]))
            cuts.sort()
            a, b = cuts[:-1], cuts[1:]
            half = 0.5 * (b - a)
            e = (0.5 * (a + b))[:, None] + half[:, None] * node_x[None, :]
            wgt = half[:, None] * node_w[None, :] * np.exp(-0.5 * (e / si) ** 2) / (si * math.sqrt(2 * math.pi))
            eps_all.append(e.ravel())
            wt_all.append(wgt.ravel())
            idx_all.append(np.full(e.size, i))
        eps = np.concatenate(eps_all)
        wgt = np.concatenate(wt_all)
        idx = np.concatenate(idx_all)
        sn = s[idx]
        fl = np.floor(eps)
        for shift in (0, 1):  # the two taps: t = ε - ⌊ε⌋ ∈ [0, 1) (m = -⌊ε⌋) and t - 1 (m = -⌊ε⌋ - 1)
            t = eps - fl - shift
            m = -fl - shift
            phi = kern.value(t)
            dphi = kern.derivative(t)
            inside = np.abs(m) <= h
            quantities = {"P": phi * phi, "q": eps * phi * dphi}
            if not infinite:
                quantities["dP"] = dphi * dphi
                quantities["v"] = (eps * eps - sn * sn) * dphi * dphi
            for key, val in quantities.items():
                contrib = wgt * val
                res[f"{key}_w"] += np.bincount(idx, weights=np.where(inside, contrib, 0.0), minlength=s.size)
                res[f"{key}_o"] += np.bincount(idx, weights=np.where(inside, 0.0, contrib), minlength=s.size)
        if infinite:
            for key in ("dP_w", "dP_o", "v_w", "v_o"):
                res[key][pos] = math.inf
    return res


# ----------------------------------------------------------------------------- the law of τ
def _exact_tau_rule(p: int, kurtosis: float):
    """Nodes and weights in u = √τ for E_τ[·] under the exact law of τ = ‖x_window‖²/(p σ_x²).

    Gaussian x: χ²_p/p (:func:`_gamma_tau_rule`, shape p/2); x = ±σ: τ ≡ 1; uniform and Laplace x: the
    law of a sum of p squares (:func:`warptheory._radial.tau_rule`), for p ≤ :data:`EXACT_LAW_MAX_FANIN`.
    """
    law = INPUT_LAWS[kurtosis]
    if law in ("gaussian", "rademacher") or p > EXACT_LAW_MAX_FANIN:
        return _gamma_tau_rule(p, kurtosis)
    from ._radial import tau_rule

    return tau_rule(law, p)


def _gamma_tau_rule(p: int, kurtosis: float):
    """Nodes and weights in u = √τ for E_τ[·]; τ ~ Gamma(shape p/(κ−1), mean 1).

    For κ = 3 this is χ²_p/p, the exact law of ‖x_window‖²/(p σ_x²) for Gaussian x.  κ = 1 (x = ±σ)
    makes τ ≡ 1.  For other laws it matches τ's mean and variance only (form ``"gamma-tau"``).
    """
    if kurtosis == 1.0:
        return np.array([1.0]), np.array([1.0])
    return _tau_rule_cached(p / (kurtosis - 1.0))


@lru_cache(maxsize=256)
def _tau_rule_cached(shape: float):
    from scipy import special, stats

    law = stats.gamma(a=shape, scale=1.0 / shape)
    u_hi = math.sqrt(law.isf(_TAU_TAIL))
    x, w = _gl(_TAU_NODES)

    def log_density(u):  # of u = √τ: 2u · Gamma(τ = u²)
        return math.log(2.0) + shape * math.log(shape) - special.gammaln(shape) + (2.0 * shape - 1.0) * np.log(u) \
            - shape * u * u

    if shape < 1.0:
        # density ∝ u^{2·shape−1}, singular at 0: Gauss–Jacobi with that weight on [0, u₁], the rest
        # (e^{−shape·u²}) smooth; Gauss–Legendre panels beyond
        u_1 = math.sqrt(law.ppf(0.5))
        xj, wj = special.roots_jacobi(2 * _TAU_NODES, 0.0, 2.0 * shape - 1.0)
        u_j = 0.5 * u_1 * (xj + 1.0)
        # ∫_0^{u₁} u^{2a−1} h(u) du = (u₁/2)^{2a} ∫_{-1}^{1} (1+x)^{2a−1} h(u(x)) dx
        w_j = wj * (0.5 * u_1) ** (2.0 * shape) * np.exp(log_density(u_j) - (2.0 * shape - 1.0) * np.log(u_j))
        edges = np.linspace(u_1, u_hi, _TAU_PANELS + 1)
    else:
        u_j, w_j = np.empty(0), np.empty(0)
        edges = np.linspace(math.sqrt(law.ppf(_TAU_TAIL)), u_hi, _TAU_PANELS + 1)
    a, b = edges[:-1], edges[1:]
    half = 0.5 * (b - a)
    u = ((0.5 * (a + b))[:, None] + half[:, None] * x[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel() * np.exp(log_density(u))
    u, weights = np.concatenate((u_j, u)), np.concatenate((w_j, weights))
    return u, weights / weights.sum()  # renormalise the 2e-16 left in the tails


# ----------------------------------------------------------------------------- the gains
def _gains_at_scale(sums: dict, d: int, s: np.ndarray, sigma_eps: float, p: int, tau: np.ndarray):
    """Integrands of the five gains at each τ node (see the module docstring and the note)."""
    P_w, P_o = sums["P_w"], sums["P_o"]
    P_z = P_w + P_o
    X_w, X_z = P_w ** d, P_z ** d
    forward = X_z + (tau - 1.0) * X_w
    direct = X_z
    # 2 E[DE] = (2/p) E_τ[d q_w P_w^{d-1}]
    cross = (2.0 / p) * d * sums["q_w"] * P_w ** (d - 1)
    dP_w, dP_o, q_w, q_o, v_w, v_o = (sums[k] for k in ("dP_w", "dP_o", "q_w", "q_o", "v_w", "v_o"))
    if not np.all(np.isfinite(dP_w + dP_o)):
        eps = np.full_like(s, math.inf)
        return forward, direct, cross, eps
    dP_z, q_z, v_z = dP_w + dP_o, q_w + q_o, v_w + v_o
    Y_w = d * dP_w * P_w ** (d - 1)
    Y_z = d * dP_z * P_z ** (d - 1)
    # s⁴ T_R = d v_R P_R^{d-1} + d(d-1) q_R² P_R^{d-2}
    pw2 = P_w ** (d - 2) if d >= 2 else np.zeros_like(P_w)
    pz2 = P_z ** (d - 2) if d >= 2 else np.zeros_like(P_z)
    s4T_w = d * v_w * P_w ** (d - 1) + d * (d - 1) * q_w * q_w * pw2
    s4T_out = d * (v_z * P_z ** (d - 1) - v_w * P_w ** (d - 1)) + d * (d - 1) * (q_z * q_z * pz2 - q_w * q_w * pw2)
    # Term 1: σ_ε² [Y_Z + (τ−1) Y_w]; Term 2: (1/p) [s⁴ T_w + σ_ε² s² T_out], with s² T_out = (s⁴ T_out)/s²
    with np.errstate(divide="ignore", invalid="ignore"):
        out_term = np.where(s > 0, sigma_eps ** 2 * s4T_out / (s * s), 0.0)
    eps = sigma_eps ** 2 * (Y_z + (tau - 1.0) * Y_w) + (s4T_w + out_term) / p
    return forward, direct, cross, eps


def selfwarp_gain(kernel, sigma_eps, *, d=2, channels, k=3, detach=False, pre_eps_norm=False, kurtosis=3.0,
                  form="exact") -> SelfWarpGain:
    r"""Forward and backward gains of one SelfWarp block at initialisation (§3.1; ``paper_notes/s03_1_stability.md``).

    Parameters
    ----------
    kernel : str or Kernel
        Interpolation kernel φ (built-in name or :func:`~warptheory.kernels.kernel_from_sympy`).
    sigma_eps : float
        Root-mean-square of each offset component ε_i (pixels), ≥ 0; it fixes the ε-weight variance
        σ_w² = σ_ε²/(N k^d σ_x̃²).
    d : int
        Warped dimensions (1 to 3), also the number of ε channels.
    channels : int
        N, the channels of x that the ε-convolution reads.
    k : int
        Odd side of the ε-convolution window (k^d taps per channel).
    detach : bool
        Stop the gradient from ε into x (§5): backward is the direct path only.
    pre_eps_norm : bool
        Batch norm between x and the ε-convolution (§3.1).  At a fixed σ_ε it changes no gain (the
        batch norm's own Jacobian terms are O(1/M) for M samples per channel); it makes σ_ε
        independent of σ_x, which matters through depth (:func:`warptheory.stability` note).
    kurtosis : float
        E x⁴/σ_x⁴ of the IID inputs; it names their law (:data:`INPUT_LAWS`: 3 Gaussian, 1.8 uniform,
        6 Laplace, 1 ±σ), which enters through the law of τ.
    form : {"exact", "paper", "gamma-tau"}
        ``"exact"``: our derivation (finite N k^d, correlations of ε with x, the exact law of τ);
        ``"paper"``: eqs 5, 7, 8 with ε independent of x and Gaussian; ``"gamma-tau"``: the exact form
        with τ given the Gamma law of its exact mean and variance (any kurtosis ≥ 1; error O(p⁻²) for
        non-Gaussian x, kept as the record of the first version).

    Returns
    -------
    SelfWarpGain

    Examples
    --------
    Bilinear warping in 2-D at σ_ε = 0.5: the ε path raises the backward gain well above the forward one,
    and a detached block has backward ≈ forward (equal up to O(1/(N k^d))):

    >>> g = selfwarp_gain("tri", 0.5, d=2, channels=16, k=3)
    >>> round(g.forward, 3), round(g.backward, 3), round(g.ratio, 2)
    (0.446, 1.114, 2.5)
    >>> abs(g.backward - (g.backward_direct + g.backward_cross + g.backward_eps)) < 1e-15
    True
    >>> gd = selfwarp_gain("tri", 0.5, d=2, channels=16, k=3, detach=True)
    >>> abs(gd.ratio - 1) < 0.01
    True
    """
    kern, s_eps, d, n, k, detach, pre_eps_norm, kurt = check_arguments(
        kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis)
    if form not in FORMS:
        raise ValueError(f"form: expected one of {', '.join(map(repr, FORMS))}, got {form!r}")
    if form == "exact" and kurt not in INPUT_LAWS:
        raise ValueError(f"kurtosis: the exact form knows the laws of Gaussian (3), uniform (1.8), Laplace (6) "
                         f"and ±1 (1) inputs, got {kurtosis!r}; form='gamma-tau' takes any kurtosis >= 1")
    p = n * k ** d
    if s_eps == 0.0:
        values = (1.0, 1.0, 0.0, 0.0)
    elif form == "paper":
        from .phifunctions import phi_ab

        p21 = phi_ab(kern, s_eps, 2, 1)
        dp21 = phi_ab(kern, s_eps, 2, 1, True)
        values = (p21 ** d, p21 ** d, 0.0, d * s_eps ** 2 * dp21 * p21 ** (d - 1))
    else:
        u, wu = _exact_tau_rule(p, kurt) if form == "exact" else _gamma_tau_rule(p, kurt)
        s = s_eps * u
        sums = _axis_sums_flat(kern, s, (k - 1) // 2)
        parts = _gains_at_scale(sums, d, s, s_eps, p, u * u)
        values = tuple(float(np.sum(wu * part)) if np.all(np.isfinite(part)) else math.inf for part in parts)
    forward, direct, cross, eps = values
    if detach:
        cross, eps = 0.0, 0.0
    return SelfWarpGain(forward=forward, backward=direct + cross + eps, backward_direct=direct, backward_cross=cross,
                        backward_eps=eps, kernel=kern.name, sigma_eps=s_eps, d=d, channels=n, k=k, detach=detach,
                        pre_eps_norm=pre_eps_norm, kurtosis=kurt, form=form)


# ----------------------------------------------------------------------------- plain stacks
@dataclass(frozen=True)
class StackGain:
    """Gains through plain stacks x_{l+1} = SelfWarp_l(x_l) of the depths in ``depths``.

    Attributes
    ----------
    depths : tuple of int
        Stack depths L.
    grad : ndarray
        ``grad[j]`` = E[(∂L/∂x_0)²] / E[(∂L/∂x_L)²] for a stack of ``depths[j]`` blocks whose top
        gradient is IID: the gradient-norm growth.
    forward : ndarray
        ``forward[j]`` = E[x_L²] / E[x_0²].
    sigma_eps : ndarray
        rms ε of each block l = 0 … max(depths) − 1 of the deepest stack.
    params : dict
        The arguments.
    form : str
        ``"exact"`` / ``"paper"`` (products of the per-block gains of that form) or ``"montecarlo"``.
    se : dict or None
        Monte-Carlo only: standard errors of ``grad`` and ``forward`` (arrays).
    replicates : int or None
    """

    depths: tuple
    grad: np.ndarray
    forward: np.ndarray
    sigma_eps: np.ndarray
    params: dict
    form: str
    se: dict | None = field(default=None, compare=False)
    replicates: int | None = None


def check_depths(depths) -> tuple:
    try:
        out = tuple(sorted({int(v) for v in depths}))
    except (TypeError, ValueError):
        raise ValueError(f"depths: expected positive integers, got {depths!r}") from None
    if not out or out[0] < 1 or any(not _is_int(v) for v in depths):
        raise ValueError(f"depths: expected positive integers, got {depths!r}")
    return out


def stack_gain(kernel, sigma_eps, *, depths, d=2, channels, k=3, detach=False, pre_eps_norm=False, kurtosis=3.0,
               form="exact") -> StackGain:
    r"""Product-of-gains prediction for plain SelfWarp stacks (``paper_notes/s03_1_stability.md``, "Depth").

    Block l has the ε-weights' initial variance of the first block, so its rms offset follows its input:
    σ_{ε,l+1}² = forward_l · σ_{ε,l}² without ``pre_eps_norm``, and σ_{ε,l} = ``sigma_eps`` with it.
    The prediction treats every block's input and top gradient as IID (the single-block setting), so
    ``grad`` = Π_l backward_l and ``forward`` = Π_l forward_l; correlations that the stack builds between
    layers are what the Monte-Carlo twin (:func:`warptheory.stability_montecarlo.stack_gain_mc`) measures.

    >>> s = stack_gain("tri", 0.3, depths=[1, 4], d=1, channels=4, k=3, pre_eps_norm=True)
    >>> g = selfwarp_gain("tri", 0.3, d=1, channels=4, k=3)
    >>> bool(abs(s.grad[1] - g.backward ** 4) < 1e-12 * s.grad[1])
    True
    """
    depths = check_depths(depths)
    kern, s_eps, d, n, k, detach, pre_eps_norm, kurt = check_arguments(
        kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis)
    depth = depths[-1]
    sig = np.empty(depth)
    fwd = np.empty(depth)
    bwd = np.empty(depth)
    current = s_eps
    cache: dict = {}
    for layer in range(depth):
        sig[layer] = current
        if current not in cache:
            cache[current] = selfwarp_gain(kern, current, d=d, channels=n, k=k, detach=detach,
                                           pre_eps_norm=pre_eps_norm, kurtosis=kurt, form=form)
        gain = cache[current]
        fwd[layer], bwd[layer] = gain.forward, gain.backward
        if not pre_eps_norm:
            current = current * math.sqrt(gain.forward)
    idx = np.array(depths) - 1
    return StackGain(depths=depths, grad=np.cumprod(bwd)[idx], forward=np.cumprod(fwd)[idx], sigma_eps=sig,
                     params={"kernel": kern.name, "sigma_eps": s_eps, "d": d, "channels": n, "k": k,
                             "detach": detach, "pre_eps_norm": pre_eps_norm, "kurtosis": kurt},
                     form=form)


# ----------------------------------------------------------------------------- ResNet-56 (theory of §5)
#: Table 1 (SelfWarp ResNet-56): (pre-ε BN, batch-norm γ, detach) → the paper's result column.
TABLE1 = (
    (False, 1.0, False, "diverges"), (False, 1.0, True, "diverges"), (False, 0.1, False, "diverges"),
    (False, 0.1, True, "diverges"), (True, 1.0, False, "diverges"), (True, 1.0, True, "92.378%"),
    (True, 0.1, False, "93.620%"), (True, 0.1, True, "93.209%"),
)
#: Table 2 (deformable convolutions from warps): (pretraining, gradient scaling, γ, pre-ε BN) → result.
TABLE2 = (
    (True, False, 1.0, False, "diverges"), (True, True, 1.0, False, "93.760%"), (False, False, 0.1, False, "diverges"),
    (False, False, 1.0, False, "diverges"), (False, True, 0.1, False, "92.448%"), (False, True, 1.0, False, "92.228%"),
    (False, False, 0.1, True, "92.648%"),
)
RESNET56_STAGES = ((16, 9), (32, 9), (64, 9))  # (channels, residual blocks) per stage of a CIFAR ResNet-56
EPS_INITS = ("zero", "fan_in")
#: which ε of a residual block warp its skip: both SelfWarps' (warptheory.nn), the first's, or none
SKIP_WARPS = ("all", "first", "none")


@dataclass(frozen=True)
class ResNetGrowth:
    """Mean-field gradient growth through the residual blocks of a SelfWarp ResNet at initialisation.

    Attributes
    ----------
    growth : float
        E[(∂L/∂x_0)²] / E[(∂L/∂x_B)²] from the output of the last block (B blocks) to the input of the first.
    per_block : ndarray
        The factor of each block, first block first.
    baseline : float
        The same growth for the plain BN-ResNet (σ_ε = 0 everywhere, every warp the identity).
    sigma_eps : ndarray, shape (B, 2)
        rms ε of the two SelfWarps of each block.
    stream : ndarray
        Second moment q_l of the residual stream entering each block.
    params : dict
    """

    growth: float
    per_block: np.ndarray
    baseline: float
    sigma_eps: np.ndarray
    stream: np.ndarray
    params: dict


# Φ_{a,b} by its series costs ≈ 10 ms and a SelfWarp gain ≈ 0.1 s; the blocks of one network repeat their σ_ε,
# and networks that differ only in detach or the ε-gradient scale (Tables 1–2) share their whole stream
@lru_cache(maxsize=4096)
def _phi_memo(kern, s, a, b, derivative):
    from .phifunctions import phi_ab

    return phi_ab(kern, s, a, b, derivative)


@lru_cache(maxsize=4096)
def _selfwarp_gain_memo(kern, s, d, n, k, detach, pre_eps_norm, form):
    if detach:  # the gain with the ε path, its cross and ε parts zeroed (as selfwarp_gain does)
        full = _selfwarp_gain_memo(kern, s, d, n, k, False, pre_eps_norm, form)
        return replace(full, backward=full.backward_direct + 0.0 + 0.0, backward_cross=0.0,
                                   backward_eps=0.0, detach=True)
    return selfwarp_gain(kern, s, d=d, channels=n, k=k, detach=False, pre_eps_norm=pre_eps_norm, form=form)


def _relu_moments(mean, var):
    """Mean, second moment and P(z > 0) of ReLU(z), z ~ N(mean, var)."""
    from scipy import stats

    sd = math.sqrt(var)
    a = mean / sd
    p = float(stats.norm.cdf(a))
    pdf = float(stats.norm.pdf(a))
    return mean * p + sd * pdf, (mean * mean + var) * p + mean * sd * pdf, p


def resnet_gradient_growth(*, gamma=1.0, pre_eps_norm=False, detach=False, eps_init="fan_in", eps_grad_scale=1.0,
                           kernel="tri", d=2, k=3, stages=RESNET56_STAGES, skip_warps="all",
                           form="exact") -> ResNetGrowth:
    r"""Gradient growth through a SelfWarp ResNet at initialisation, composed from per-block gains (§5, theory).

    The block (§2.1, §5; ``paper_notes/s03_1_stability.md``, "ResNet-56"): every convolution is a SelfWarp,
    h → warp(h, ε), ε = conv_ε(h) (or conv_ε(γ·BN(h)) with ``pre_eps_norm``), and the skip is warped by
    the branch's ε: x' = ReLU(W(x) + BN₂(SW₂(conv₂ ReLU(BN₁(SW₁(conv₁ x)))))) with W(x) = warp(warp(x, ε₁), ε₂)
    for ``skip_warps="all"`` (:class:`warptheory.nn.resnet.BasicBlock`, §2.1's "the ε values predictions
    from the residual blocks"), warp(x, ε₁) for ``"first"`` and x for ``"none"`` (the unwarped-skip
    ablation; Table 2's deformable rows).  Convolutions are
    He-initialised (forward and backward second-moment gain 2 on ReLU inputs), every batch norm (train
    mode) has weight ``gamma``, the ε-convolutions are zero (``eps_init="zero"``, the paper's §5.2) or
    IID Gaussian with fan-in variance 1/(N k²) (``"fan_in"``, so σ_ε = rms of the ε-convolution's input).

    Mean field: paths are uncorrelated, the stream is Gaussian before each ReLU.  Per block, with q the
    stream's second moment, μ its mean, σ² its variance, the gradient factor is

    .. math::

        P(z>0)\,\Big[\Phi_{2,1}(\sigma_{\varepsilon 1})^d
            + c^2 d\,\sigma_{\varepsilon 1}^2\,
              \frac{\mu^2\Phi'_{1,2}\Phi_{1,2}^{d-1} + \sigma^2\Phi'_{2,1}\Phi_{2,1}^{d-1}}{q}
            + \frac{B_1}{F_1}\frac{B_2}{F_2}\,\frac{\gamma^2}{q}\Big]

    (skip warp's direct path, its ε path through conv_ε and conv₁ (eq 8; absent with ``detach``), and the
    branch, where batch norm turns each SelfWarp's gains into their ratio B/F = :func:`selfwarp_gain`
    backward/forward); c = ``eps_grad_scale`` scales every ε-path gradient.  With ``skip_warps="all"``
    the skip's direct path is Φ_{2,1}(σ_ε₁)^d Φ_{2,1}(σ_ε₂)^d, ε₁'s term is carried through the second
    warp (× Φ_{2,1}(σ_ε₂)^d), and ε₂'s path adds c² d σ_ε₂² (μ_s²Φ'_{1,2}Φ_{1,2}^{d−1} + σ_s²Φ'_{2,1}Φ_{2,1}^{d−1})
    (B₁/F₁)/q at σ_ε₂ (μ_s, σ_s² the once-warped skip's moments, eq 5), back through conv₂, BN₁, SW₁ and
    conv₁.  Stage changes (stride 2, more channels) are treated as ordinary blocks; the stem and the
    classifier are left out.

    >>> zero = resnet_gradient_growth(gamma=1.0, eps_init="zero")
    >>> zero.growth == zero.baseline        # ε = 0: every warp is the identity
    True
    """
    kern = get_kernel(kernel)
    if eps_init not in EPS_INITS:
        raise ValueError(f"eps_init: expected one of {EPS_INITS}, got {eps_init!r}")
    if skip_warps not in SKIP_WARPS:
        raise ValueError(f"skip_warps: expected one of {SKIP_WARPS}, got {skip_warps!r}")
    for name, value in (("gamma", gamma), ("eps_grad_scale", eps_grad_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    gamma, c2 = float(gamma), float(eps_grad_scale) ** 2
    blocks = [n for n, count in stages for _ in range(count)]
    factors, baseline, sig, stream = [], [], [], []
    mean, var = 0.0, gamma * gamma  # pre-activation of the stream entering block 1: the stem's BN output

    def phi(s, a, b, derivative=False):
        return _phi_memo(kern, s, a, b, derivative)

    def gain(s, n):
        return _selfwarp_gain_memo(kern, s, d, n, k, detach, pre_eps_norm, form)

    relu_var = 0.5 - 0.5 / math.pi  # variance of ReLU(z), z ~ N(0, 1): the input of conv₂ is γ·ReLU(z)
    for n in blocks:
        mu, q, _ = _relu_moments(mean, var)
        var_x = q - mu * mu
        if eps_init == "zero":
            s1 = s2 = 0.0
        elif pre_eps_norm:
            s1 = s2 = gamma
        else:
            s1, s2 = math.sqrt(2.0 * q), gamma  # rms of conv₁(x) and of conv₂(ReLU(BN₁ ·))
        g1, g2 = gain(s1, n), gain(s2, n)
        # conv₁'s and conv₂'s outputs h₁, h₂ carry per-channel means (their inputs are post-ReLU); batch
        # norm divides by their variances v₁ = 2σ_x², v₂ = 2γ²·relu_var, and the ε path sees the centred
        # part only (Σ_m φ'(m+ε) = 0), a fraction ρ = v/E[h²] of σ_ε² without pre-ε BN (1 with it)
        v1, v2 = 2.0 * var_x, 2.0 * gamma * gamma * relu_var
        rho1, rho2 = (1.0, 1.0) if pre_eps_norm else (var_x / q, 2.0 * relu_var)
        # the ε paths inside the SelfWarps carry c²: cross and ε parts scale with c and c²
        b1 = g1.backward_direct + rho1 * (math.sqrt(c2) * g1.backward_cross + c2 * g1.backward_eps)
        b2 = g2.backward_direct + rho2 * (math.sqrt(c2) * g2.backward_cross + c2 * g2.backward_eps)
        warps = {"all": (s1, s2), "first": (s1,), "none": ()}[skip_warps]
        skip_direct, skip_eps = 1.0, 0.0
        skip_mean, skip_var = mu, var_x
        # the skip warp's ε gradient into h_j (× γ²/v_j through a pre-ε BN, × ρ_j·σ_ε²/... = 1 without: fan-in
        # ε-weights), then back to x: through conv₁ (× 2) for ε₁; through conv₂, ReLU, BN₁, SW₁, conv₁
        # (× 2 · ½ · γ²/(F₁v₁) · B₁ · 2) for ε₂
        into_h = (gamma * gamma / v1, gamma * gamma / v2) if pre_eps_norm else (1.0, 1.0)
        route = (2.0, 2.0 * gamma * gamma * b1 / (g1.forward * v1))
        for j, s in enumerate(warps):
            p21 = phi(s, 2, 1)
            # gradient reaching this warp's output passed the later skip warps' direct paths first
            later = math.prod(phi(t, 2, 1) ** d for t in warps[j + 1:])
            if not (detach or s == 0.0):
                dp21, dp12, p12 = phi(s, 2, 1, True), phi(s, 1, 2, True), phi(s, 1, 2)
                skip_eps += later * route[j] * into_h[j] * c2 * d * (
                    skip_mean ** 2 * dp12 * p12 ** (d - 1) + skip_var * dp21 * p21 ** (d - 1))
            skip_direct *= p21 ** d
            # the warped skip's moments (eq 5)
            new_skip_mean = skip_mean * phi(s, 1, 1) ** d
            second = skip_mean ** 2 * phi(s, 1, 2) ** d + skip_var * p21 ** d
            skip_mean, skip_var = new_skip_mean, second - new_skip_mean ** 2
        # branch: BN₂ (γ²/(F₂v₂)), SW₂ (B₂), conv₂ (2), ReLU (½), BN₁ (γ²/(F₁v₁)), SW₁ (B₁), conv₁ (2)
        plain_branch = 2.0 * gamma ** 4 / (v1 * v2)
        branch = (b1 / g1.forward) * (b2 / g2.forward) * plain_branch
        # next stream: the warped skip plus the branch's BN output (mean 0, variance γ²)
        new_mean, new_var = skip_mean, skip_var + gamma * gamma
        _, _, p_pos = _relu_moments(new_mean, new_var)
        factors.append(p_pos * (skip_direct + skip_eps + branch))
        baseline.append(p_pos * (1.0 + plain_branch))
        sig.append((s1, s2))
        stream.append(q)
        mean, var = new_mean, new_var
    factors, baseline = np.array(factors), np.array(baseline)
    # the baseline's stream differs from the warped one only through Φ_{2,1} < 1 on the skip; recompute it
    base = resnet_gradient_growth(gamma=gamma, eps_init="zero", kernel=kern, d=d, k=k, stages=stages) \
        if eps_init != "zero" else None
    return ResNetGrowth(growth=float(np.prod(factors)), per_block=factors,
                        baseline=float(np.prod(baseline)) if base is None else base.growth,
                        sigma_eps=np.array(sig), stream=np.array(stream),
                        params={"gamma": gamma, "pre_eps_norm": pre_eps_norm, "detach": detach, "eps_init": eps_init,
                                "eps_grad_scale": float(eps_grad_scale), "kernel": kern.name, "d": d, "k": k,
                                "skip_warps": skip_warps})


def resnet_growth_at_depths(growth: ResNetGrowth, depths) -> np.ndarray:
    """The mean-field growth through the first B blocks, B in ``depths``: the product of their factors.

    >>> r = resnet_gradient_growth(gamma=0.1, pre_eps_norm=True)
    >>> bool(resnet_growth_at_depths(r, [27])[0] == np.prod(r.per_block))
    True
    """
    depths = check_depths(depths)
    if depths[-1] > len(growth.per_block):
        raise ValueError(f"depths: at most the {len(growth.per_block)} blocks of the network, got {depths[-1]}")
    return np.cumprod(growth.per_block)[np.array(depths) - 1]
