r"""Moment predictions of the IID theory: eqs 5, 7, 8 (§3, suppl. §8 eqs 19–22) and eq 9 (§3.1).

Setting (the paper's, ``paper_notes/s03_statistics.md``): the inputs ``x_{nu}``, the upstream
gradient ``∇_y L_{nv}`` and every offset component ``ε_{kv}`` are mutually independent, IID
over channels, positions and axes, with ``ε ~ N(0, σ_ε²)``; φ has support [-1, 1].

Each function returns a :class:`Moments` record (``mean``, ``second_moment``, ``variance``)
for one element of the output.  ``form="paper"`` is the formula as printed;
``form="exact"`` is our derivation under the same assumptions, without simplification.

* eq 5 (forward): the paper is exact; the forms coincide.
* eq 7 (∇_x L): the paper's second moment is wrong whenever ``mu_dy != 0``.  The outputs
  ``v`` that reach an input ``w`` carry *independent* offsets ``ε_v`` (the paper's own,
  unfinished, eq 22 has them), so the cross terms factor into products of mean weights:

  .. math::

     \mathbb E[\nabla_x\mathcal L^2] = (\sigma_{\partial y}^2 + \mu_{\partial y}^2)\,\Phi_{2,1}^d
        + \mu_{\partial y}^2\,\big(\Phi_{1,1}^{2d} - \Gamma^d\big),
     \qquad \Gamma = \sum_m \big(\mathbb E[\varphi(m + \varepsilon)]\big)^2

  instead of :math:`\mu_{\partial y}^2\Phi_{1,2}^d + \sigma_{\partial y}^2\Phi_{2,1}^d`.
  :func:`gamma` computes Γ (on a periodic lattice of ``period`` sites if given).
* eq 8 (∇_ε L): the paper is exact (the ``N μ²`` cross term comes from channels that share
  ``ε``); the forms coincide.  For ``sqrt_tri`` Φ'_{2,1} = Φ'_{1,2} = ∞: the second moment is
  infinite and the sample variance never converges.
* eq 9 (SelfWarp weight gradient): see :func:`selfwarp`.

Examples
--------
With zero-mean gradients the two eq-7 forms coincide; with a mean they do not:

>>> p = backward_x("tri", 0.5, mu_dy=0.0, sigma_dy=1.0, d=2, form="paper")
>>> e = backward_x("tri", 0.5, mu_dy=0.0, sigma_dy=1.0, d=2, form="exact")
>>> abs(p.second_moment - e.second_moment) < 1e-14
True
>>> backward_x("tri", 0.5, mu_dy=1.0, sigma_dy=1.0, d=1, form="exact").second_moment > \
...     backward_x("tri", 0.5, mu_dy=1.0, sigma_dy=1.0, d=1, form="paper").second_moment
True
>>> abs(gamma("tri", 0.0) - 1.0) < 1e-15     # no offsets: one weight 1, the rest 0
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .kernels import Kernel, get_kernel

__all__ = ["Moments", "forward", "backward_x", "backward_eps", "selfwarp", "gamma", "lattice_expectation"]

_FORMS = ("paper", "exact")


@dataclass(frozen=True)
class Moments:
    """Predicted moments of one output element.

    Attributes
    ----------
    mean, second_moment, variance : float
        E[q], E[q²] and E[q²] − E[q]² (``inf`` where the expectation diverges).
    equation : str
        Paper equation number.
    form : str
        ``"paper"`` or ``"exact"``.
    """

    mean: float
    second_moment: float
    variance: float
    equation: str
    form: str


def _phi(kernel, sigma, a, b, derivative=False):
    from .phifunctions import phi_ab

    return float(phi_ab(kernel, sigma, a, b, derivative))


def _record(mean, second, equation, form):
    mean, second = float(mean), float(second)
    var = second - mean * mean if math.isfinite(second) else math.inf
    return Moments(mean=mean, second_moment=second, variance=var, equation=equation, form=form)


def _check_common(kernel, sigma_eps, d, form):
    kernel = get_kernel(kernel)
    if not isinstance(sigma_eps, (int, float, np.floating, np.integer)) or isinstance(sigma_eps, bool) \
            or not math.isfinite(sigma_eps) or sigma_eps < 0:
        raise ValueError(f"sigma_eps: expected a finite number >= 0, got {sigma_eps!r}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d: expected a positive integer (number of warped dimensions), got {d!r}")
    if form not in _FORMS:
        raise ValueError(f"form: expected 'paper' or 'exact', got {form!r}")
    return kernel, float(sigma_eps), int(d)


def _check_moment(value, name, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or (positive and value < 0):
        kind = "a finite number >= 0" if positive else "a finite number"
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- lattice sums
@lru_cache(maxsize=4096)
def _lattice_expectation_cached(kernel: Kernel, sigma: float, m: int, power: int, derivative: bool) -> float:
    from scipy import integrate

    fn = kernel.derivative if derivative else kernel.value
    if sigma == 0.0:
        # ε = 0: ψ(m)^power; the derivative at integers is the right derivative (convention).
        return float(fn(np.array([float(m)]))[0] ** power) if abs(m) <= 1 else 0.0
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))

    # E[ψ(m+ε)^p] = ∫_{-1}^{1} ψ(t)^p N(t - m; σ) dt; t = ±(1 - s²) removes the
    # square-root endpoint behaviour (sqrt_tri) and puts kinks at t = 0, ±1 on the ends.
    def integrand(s):
        t = 1.0 - s * s
        vals = fn(np.array([t, -t]))
        dens = norm * np.exp(-0.5 * ((np.array([t, -t]) - m) / sigma) ** 2)
        return float(np.sum(vals ** power * dens) * 2.0 * s)

    inner = sorted({math.sqrt(1.0 - abs(b)) for b in kernel.breakpoints if 0.0 < abs(b) < 1.0})
    # the Gaussian's centre, where a narrow density needs resolving
    if abs(m) < 1:
        inner.append(math.sqrt(1.0 - abs(m)))
    if m == 0:
        inner.extend(math.sqrt(max(0.0, 1.0 - w * sigma)) for w in (1, 3, 6) if w * sigma < 1)
    pts = sorted({p for p in inner if 0.0 < p < 1.0})
    val, _ = integrate.quad(integrand, 0.0, 1.0, points=pts or None, limit=400, epsabs=1e-15, epsrel=1e-13)
    return float(val)


def lattice_expectation(kernel, sigma, m, power=1, derivative=False) -> float:
    r""":math:`\mathbb E[\psi(m + \varepsilon)^{p}]`, ε ~ N(0, σ²), ψ = φ or φ'.

    Deterministic quadrature; summing over all integers ``m`` gives Φ_{p,1}.

    >>> s = sum(lattice_expectation("tri", 0.3, m, 2) for m in range(-4, 5))
    >>> from warptheory import phi_ab
    >>> abs(s - phi_ab("tri", 0.3, 2, 1)) < 1e-12
    True
    """
    k = get_kernel(kernel)
    return _lattice_expectation_cached(k, float(sigma), int(m), int(power), bool(derivative))


def _m_range(sigma: float) -> range:
    reach = int(math.ceil(9.0 * sigma)) + 2  # N(0,σ²) mass beyond 9σ is < 1e-18
    return range(-reach, reach + 1)


def gamma(kernel, sigma, period: int | None = None) -> float:
    r"""Γ(σ) = Σ_m (E[φ(m + ε)])², the squared-mean-weight sum of the exact eq 7.

    On a periodic lattice of ``period`` sites the weights of offsets that differ by a
    multiple of the period land on the same site and are added before squaring.

    Γ ≤ Φ_{2,1} (Jensen), Γ → 1 as σ → 0 and Γ → 0 as σ → ∞ on the infinite lattice.

    >>> from warptheory import phi_ab
    >>> gamma("tri", 0.4) < phi_ab("tri", 0.4, 2, 1)
    True
    >>> abs(gamma("tri", 0.4, period=64) - gamma("tri", 0.4)) < 1e-15
    True
    """
    k = get_kernel(kernel)
    sigma = _check_moment(sigma, "sigma", positive=True)
    if period is not None and (isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 2):
        raise ValueError(f"period: expected an integer >= 2 or None, got {period!r}")
    means = {m: lattice_expectation(k, sigma, m) for m in _m_range(sigma)}
    if period is None:
        return float(sum(v * v for v in means.values()))
    folded: dict[int, float] = {}
    for m, v in means.items():
        folded[m % period] = folded.get(m % period, 0.0) + v
    return float(sum(v * v for v in folded.values()))


# ----------------------------------------------------------------------------- eq 5
def forward(kernel, sigma_eps, *, mu_x, sigma_x, d, form="paper") -> Moments:
    r"""Moments of a warp output ``y_{nv}`` (eq 5; derivation suppl. eqs 19–20).

    .. math::

        \mu_y = \mu_x \Phi_{1,1}^d, \qquad
        \mu_y^2 + \sigma_y^2 = \mu_x^2 \Phi_{1,2}^d + \sigma_x^2 \Phi_{2,1}^d .

    Both forms are this formula: the derivation is exact under the assumptions (all
    taps of one output share one ε, whose components are independent across axes).

    Parameters
    ----------
    kernel : str or Kernel
    sigma_eps : float
        Standard deviation of each offset component, pixels.
    mu_x, sigma_x : float
        Mean and standard deviation of the IID inputs (any distribution).
    d : int
        Number of warped dimensions.
    form : {"paper", "exact"}

    Examples
    --------
    A mean-preserving kernel keeps the mean (Φ_{1,1} = 1):

    >>> forward("tri", 0.7, mu_x=2.0, sigma_x=1.0, d=3).mean
    2.0
    """
    k, s, d = _check_common(kernel, sigma_eps, d, form)
    mu = _check_moment(mu_x, "mu_x")
    sd = _check_moment(sigma_x, "sigma_x", positive=True)
    p11, p12, p21 = _phi(k, s, 1, 1), _phi(k, s, 1, 2), _phi(k, s, 2, 1)
    return _record(mu * p11 ** d, mu * mu * p12 ** d + sd * sd * p21 ** d, "5", form)


# ----------------------------------------------------------------------------- eq 7
def backward_x(kernel, sigma_eps, *, mu_dy, sigma_dy, d, form="paper", period=None) -> Moments:
    r"""Moments of the input gradient ``∇_x L_{nw}`` (eq 7; derivation suppl. eqs 21–22).

    ``form="paper"``: :math:`\mu_{\partial y}^2\Phi_{1,2}^d + \sigma_{\partial y}^2\Phi_{2,1}^d`.

    ``form="exact"`` finishes eq 22: the outputs ``r ≠ s`` reaching ``w`` have independent
    offsets, so :math:`\mathbb E[W_r W_s] = \mathbb E[W_r]\,\mathbb E[W_s]` and

    .. math::

        \mathbb E[\nabla_x\mathcal L^2] = (\sigma_{\partial y}^2 + \mu_{\partial y}^2)\Phi_{2,1}^d
            + \mu_{\partial y}^2\big(\Phi_{1,1}^{2d} - \Gamma^d\big).

    The means agree (:math:`\mu_{\partial y}\Phi_{1,1}^d`).

    Parameters
    ----------
    mu_dy, sigma_dy : float
        Mean and standard deviation of the IID upstream gradient ``∇_y L``.
    period : int, optional
        Lattice size per axis of a periodic domain (Γ folds offsets modulo it);
        None for the infinite lattice.  Only the exact form depends on it.

    Examples
    --------
    >>> backward_x("cos", 1.0, mu_dy=0.0, sigma_dy=2.0, d=1).second_moment   # 4 Φ_{2,1}, Φ_{2,1}=1
    4.0
    """
    k, s, d = _check_common(kernel, sigma_eps, d, form)
    mu = _check_moment(mu_dy, "mu_dy")
    sd = _check_moment(sigma_dy, "sigma_dy", positive=True)
    p11, p21 = _phi(k, s, 1, 1), _phi(k, s, 2, 1)
    mean = mu * p11 ** d
    if form == "paper":
        second = mu * mu * _phi(k, s, 1, 2) ** d + sd * sd * p21 ** d
    else:
        second = (sd * sd + mu * mu) * p21 ** d
        if mu != 0.0:
            second += mu * mu * (p11 ** (2 * d) - gamma(k, s, period) ** d)
    return _record(mean, second, "7", form)


# ----------------------------------------------------------------------------- eq 8
def backward_eps(kernel, sigma_eps, *, mu_x, sigma_x, mu_dy, sigma_dy, channels, d, form="paper") -> Moments:
    r"""Moments of one offset-gradient component ``∇_ε L_{iw}`` (eq 8; derivation suppl. eq 18).

    .. math::

        \mu_{\partial\varepsilon} = N\mu_x\mu_{\partial y}\Phi'_{1,1}\Phi_{1,1}^{d-1},\\
        \mu_{\partial\varepsilon}^2 + \sigma_{\partial\varepsilon}^2 =
            N\mu_x^2(N\mu_{\partial y}^2 + \sigma_{\partial y}^2)\Phi'_{1,2}\Phi_{1,2}^{d-1}
            + N\sigma_x^2(\mu_{\partial y}^2 + \sigma_{\partial y}^2)\Phi'_{2,1}\Phi_{2,1}^{d-1}.

    Our derivation gives the same expression (both forms coincide): with
    :math:`A_n = \sum_u x_{nu}D_u` the ``N(N-1)`` cross terms are
    :math:`\mu_{\partial y}^2\mathbb E[A_nA_m] = \mu_{\partial y}^2\mu_x^2\,\mathbb E[(\sum_u D_u)^2]`,
    because all channels at ``w`` share ``ε_w``.  Φ'_{1,1} = 0 for every even kernel and
    symmetric ε, so the mean is 0.  For ``sqrt_tri`` the second moment is ``inf``.

    Parameters
    ----------
    channels : int
        Number of channels N summed over in eq 4.

    Examples
    --------
    >>> r = backward_eps("tri", 0.3, mu_x=0.0, sigma_x=1.0, mu_dy=0.0, sigma_dy=1.0, channels=4, d=1)
    >>> r.second_moment   # N σ_x² σ_dy² Φ'_{2,1}, Φ'_{2,1} = 2 (eq 23)
    8.0
    """
    k, s, d = _check_common(kernel, sigma_eps, d, form)
    mux = _check_moment(mu_x, "mu_x")
    sdx = _check_moment(sigma_x, "sigma_x", positive=True)
    mug = _check_moment(mu_dy, "mu_dy")
    sdg = _check_moment(sigma_dy, "sigma_dy", positive=True)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels: expected a positive integer, got {channels!r}")
    n = int(channels)
    dp11 = _phi(k, s, 1, 1, True)
    mean = n * mux * mug * dp11 * _phi(k, s, 1, 1) ** (d - 1)

    def term(coef, dphi, base):
        # 0 · ∞ is 0 here: a vanishing coefficient removes the term whatever Φ' is.
        return 0.0 if coef == 0.0 else coef * dphi * base

    second = term(n * mux * mux * (n * mug * mug + sdg * sdg), _phi(k, s, 1, 2, True), _phi(k, s, 1, 2) ** (d - 1)) \
        + term(n * sdx * sdx * (mug * mug + sdg * sdg), _phi(k, s, 2, 1, True), _phi(k, s, 2, 1) ** (d - 1))
    return _record(mean, second, "8", form)


# ----------------------------------------------------------------------------- eq 9
def _window_energy(kernel, sigma, half_width, derivative) -> float:
    """Σ_{|a| ≤ h} E[ψ(ε − a)²]: the part of Φ_{2,1} (Φ'_{2,1}) inside a conv window."""
    return float(sum(lattice_expectation(kernel, sigma, -a, 2, derivative) for a in range(-half_width, half_width + 1)))


def selfwarp(kernel, sigma_eps, *, sigma_x, sigma_dy, channels, d, k, form="paper", normalized=False,
             kurtosis=3.0) -> Moments:
    r"""Second moment of the SelfWarp weight gradient (eq 9, §3.1).

    Setup (``paper_notes/s03_statistics.md``, "eq 9"): ``x`` has ``N = channels`` channels,
    zero mean, IID; ``ε = conv(x̃, w)`` is a centred ``k^d`` convolution (``k`` odd) from
    ``N`` to ``d`` channels, ``x̃ = x`` (or ``x/σ_x`` with ``normalized=True``); ``y =
    warp(x, ε)``; ``∇_y L`` IID zero mean.  The weight gradient is
    :math:`\partial w_{i n a} = \sum_v \nabla_\varepsilon\mathcal L_{iv}\,\tilde x_{n, v+a}`;
    its positions are uncorrelated (``∇_y L`` has zero mean), so
    :math:`\mathbb E[\partial w_{ina}^2] = P\,s^2_{ia}` over ``P`` positions.

    **σ²_∂w** is read as the per-position second moment summed over the ``d·k^d`` weights
    that read one input channel, :math:`\sum_{i,a} s^2_{ia}` (equivalently, the total over
    all ``d N k^d`` weights divided by N); it is the quantity whose paper value is
    :math:`d N k^d \sigma_x^4\sigma_{\partial y}^2\Phi'_{2,1}\Phi_{2,1}^{d-1}` (eq 9, k² for d = 2).
    The mean is 0.

    ``form="exact"`` keeps the paper's assumption that ε is independent of x but not that
    ``x̃_{n,v+a}`` is independent of ``∇_ε L_{iv}``: when ``v + a`` is one of the taps of
    channel ``n`` the two share ``x_{n,v+a}``, which adds
    :math:`(\kappa - 1)\sigma_x^4\sigma_{\partial y}^2\sum_{i,a}\mathbb E[D_{v+a}^2]`
    (κ = E x⁴/σ_x⁴, 3 for Gaussian x; the sum is Φ'_{2,1}Φ_{2,1}^{d-1} restricted to the window):

    .. math::

        \sigma^2_{\partial w} = \sigma_x^4\sigma_{\partial y}^2\Big[d N k^d\,\Phi'_{2,1}\Phi_{2,1}^{d-1}
            + (\kappa - 1)\sum_i W'_i\prod_{j \ne i} W_j\Big],

    with :math:`W' = \sum_{|a|\le h}\mathbb E[\varphi'(\varepsilon-a)^2]`,
    :math:`W = \sum_{|a|\le h}\mathbb E[\varphi(\varepsilon-a)^2]`, h = (k−1)/2.
    With ``normalized=True`` one factor σ_x² is replaced by 1 (the paper's remedy).

    Examples
    --------
    >>> p = selfwarp("tri", 0.3, sigma_x=2.0, sigma_dy=1.0, channels=4, d=2, k=3)
    >>> q = selfwarp("tri", 0.3, sigma_x=2.0, sigma_dy=1.0, channels=4, d=2, k=3, normalized=True)
    >>> abs(p.second_moment / q.second_moment - 4.0) < 1e-12    # one σ_x² removed
    True
    """
    kern, s, d = _check_common(kernel, sigma_eps, d, form)
    sdx = _check_moment(sigma_x, "sigma_x", positive=True)
    sdg = _check_moment(sigma_dy, "sigma_dy", positive=True)
    for val, name in ((channels, "channels"), (k, "k")):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name}: expected a positive integer, got {val!r}")
    if k % 2 == 0:
        raise ValueError(f"k: expected an odd kernel size (centred convolution), got {k!r}")
    n, k = int(channels), int(k)
    x_power = sdx ** 2 if normalized else sdx ** 4
    base = d * n * k ** d * _phi(kern, s, 2, 1, True) * _phi(kern, s, 2, 1) ** (d - 1)
    if form == "exact":
        h = (k - 1) // 2
        w_prime, w_plain = _window_energy(kern, s, h, True), _window_energy(kern, s, h, False)
        base += (float(kurtosis) - 1.0) * d * w_prime * w_plain ** (d - 1)
    return _record(0.0, x_power * sdg * sdg * base, "9", form)
