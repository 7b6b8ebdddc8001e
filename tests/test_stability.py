"""warptheory.stability and its Monte-Carlo twin (§3.1; ``paper_notes/s03_1_stability.md``).

Limits of the theory (σ_ε → 0, detach, the wide limit), every numerically computed closed form against an
independent route (scipy quadrature, heat-equation identities, brute-force traces, adjoints), bad input,
and the ``warptheory stability`` command.
"""
import dataclasses
import inspect
import json
import math
import types

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, special, stats

from warptheory import moments, phi_ab
from warptheory.cli import main
from warptheory.kernels import T, kernel_from_sympy, on_support
from warptheory import _radial
from warptheory.stability import (TABLE1, axis_sums, resnet_gradient_growth, selfwarp_gain, stack_gain,
                                  _gamma_tau_rule)
from warptheory.stability_montecarlo import (SampledBlock, _batch_norm, _batch_norm_backward, build_resnet_blocks,
                                             eps_conv, eps_conv_transpose, resnet_gradient_growth_mc, selfwarp_gain_mc,
                                             stack_gain_mc)

SMOOTHSTEP = kernel_from_sympy(on_support(1 - 3 * T ** 2 + 2 * sp.Abs(T) ** 3), name="smoothstep")
KERNELS = ["tri", "cos", "hann", "rect", "sqrt_tri", SMOOTHSTEP]
FIELDS = ("forward", "backward", "backward_direct", "backward_cross", "backward_eps")


# ----------------------------------------------------------------------------- limits
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: getattr(k, "name", k))
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("pre_eps_norm", [False, True])
def test_zero_offsets_give_unit_gains(kernel, detach, pre_eps_norm):
    for d, n, k in [(1, 1, 1), (2, 4, 3), (3, 2, 1)]:
        g = selfwarp_gain(kernel, 0.0, d=d, channels=n, k=k, detach=detach, pre_eps_norm=pre_eps_norm)
        assert (g.forward, g.backward, g.backward_cross, g.backward_eps) == (1.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("kernel", ["tri", "cos", "hann", "rect", SMOOTHSTEP], ids=lambda k: getattr(k, "name", k))
def test_small_offsets_approach_unit_gains(kernel):
    """σ_ε → 0 is continuous: |gain − 1| ≤ C σ_ε (a kinked kernel loses 2σ√(2/π) per axis)."""
    for sigma in (1e-3, 1e-4):
        g = selfwarp_gain(kernel, sigma, d=2, channels=4, k=3)
        assert abs(g.forward - 1) < 10 * sigma and abs(g.backward - 1) < 10 * sigma, g


def test_sqrt_tri_eps_path_is_infinite():
    g = selfwarp_gain("sqrt_tri", 0.3, d=1, channels=4, k=1)
    assert math.isinf(g.backward_eps) and math.isinf(g.backward) and math.isfinite(g.forward)
    assert selfwarp_gain("sqrt_tri", 0.3, d=1, channels=4, k=1, detach=True).backward == pytest.approx(1.0, rel=1e-13)


@pytest.mark.parametrize("kernel", ["tri", "cos", "hann"])
def test_detach_leaves_the_direct_path(kernel):
    full = selfwarp_gain(kernel, 0.7, d=2, channels=4, k=3)
    det = selfwarp_gain(kernel, 0.7, d=2, channels=4, k=3, detach=True)
    assert det.backward == det.backward_direct == full.backward_direct
    assert det.backward_cross == det.backward_eps == 0.0 and det.forward == full.forward


@pytest.mark.parametrize("kernel", ["tri", "cos", "hann", SMOOTHSTEP], ids=lambda k: getattr(k, "name", k))
def test_detach_gives_backward_equal_forward_up_to_one_over_width(kernel):
    """backward/forward − 1 = −Cov(τ, X_W)/forward = O(1/p): it shrinks ∝ 1/p as the width grows."""
    excess = []
    for n in (16, 64, 256):
        g = selfwarp_gain(kernel, 0.5, d=2, channels=n, k=3, detach=True)
        excess.append(g.ratio - 1)
    assert all(e >= -1e-12 for e in excess)
    assert excess[-1] < 2e-3
    assert excess[2] < excess[1] / 3 < excess[0] / 9  # ∝ 1/p within a margin


def test_wide_limit_is_the_paper_form():
    for kernel, d, k in [("tri", 1, 1), ("hann", 2, 3), ("cos", 2, 1)]:
        wide = selfwarp_gain(kernel, 0.8, d=d, channels=10 ** 7, k=k)
        paper = selfwarp_gain(kernel, 0.8, d=d, channels=10 ** 7, k=k, form="paper")
        for field in FIELDS:
            assert getattr(wide, field) == pytest.approx(getattr(paper, field), rel=2e-6, abs=2e-6), field


def test_paper_form_is_eqs_5_7_8_composed():
    """Independent route: moments.forward / backward_x / backward_eps with σ_x = σ_∂y = 1."""
    s, d, n, k = 0.6, 2, 8, 3
    paper = selfwarp_gain("cos", s, d=d, channels=n, k=k, form="paper")
    assert paper.forward == pytest.approx(moments.forward("cos", s, mu_x=0.0, sigma_x=1.0, d=d).second_moment)
    assert paper.backward_direct == pytest.approx(
        moments.backward_x("cos", s, mu_dy=0.0, sigma_dy=1.0, d=d).second_moment)
    deps = moments.backward_eps("cos", s, mu_x=0.0, sigma_x=1.0, mu_dy=0.0, sigma_dy=1.0, channels=n, d=d)
    sigma_w2 = s ** 2 / (n * k ** d)  # σ_x̃ = 1
    assert paper.backward_eps == pytest.approx(d * k ** d * sigma_w2 * deps.second_moment, rel=1e-13)


def test_pre_eps_norm_changes_no_gain_at_fixed_sigma():
    a = selfwarp_gain("tri", 0.4, d=2, channels=4, k=3)
    b = selfwarp_gain("tri", 0.4, d=2, channels=4, k=3, pre_eps_norm=True)
    assert all(getattr(a, f) == getattr(b, f) for f in FIELDS)


# ----------------------------------------------------------------------------- independent routes
@pytest.mark.parametrize("kernel", ["tri", "cos", "hann", SMOOTHSTEP], ids=lambda k: getattr(k, "name", k))
def test_axis_sums_against_phi_and_scipy(kernel):
    s = np.array([0.03, 0.3, 1.1, 2.5])
    for h in (0, 1, 2):
        r = axis_sums(kernel, s, h)
        np.testing.assert_allclose(r["P_w"] + r["P_o"], phi_ab(kernel, s, 2, 1), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(r["dP_w"] + r["dP_o"], phi_ab(kernel, s, 2, 1, True), rtol=1e-12, atol=1e-14)
        window = [moments._window_energy(kernel, float(si), h, False) for si in s]
        np.testing.assert_allclose(r["P_w"], window, rtol=1e-10, atol=1e-14)
        window_d = [moments._window_energy(kernel, float(si), h, True) for si in s]
        np.testing.assert_allclose(r["dP_w"], window_d, rtol=1e-10, atol=1e-14)


def _quad_lattice(kernel, s, m, weight):
    """E[weight(ε) ψ(m + ε)] by scipy.quad over the tap's support, ψ given by ``weight``'s second element."""
    from warptheory.kernels import get_kernel

    kern = get_kernel(kernel)
    g, psi = weight

    def f(t):
        e = t - m
        return g(e, s) * psi(kern, t) * math.exp(-0.5 * (e / s) ** 2) / (s * math.sqrt(2 * math.pi))

    pts = [b for b in kern.breakpoints if -1 < b < 1] + ([m] if abs(m) < 1 else [])
    return integrate.quad(f, -1, 1, points=pts or None, limit=200, epsabs=1e-14, epsrel=1e-12)[0]


@pytest.mark.parametrize("kernel", ["tri", "hann"])
def test_axis_sums_q_and_v_against_scipy(kernel):
    qfun = (lambda e, s: e, lambda k, t: float(k.value(np.array([t]))[0] * k.derivative(np.array([t]))[0]))
    vfun = (lambda e, s: e * e - s * s, lambda k, t: float(k.derivative(np.array([t]))[0]) ** 2)
    for s in (0.2, 0.9):
        r = axis_sums(kernel, s, 1)
        for key, fun in (("q", qfun), ("v", vfun)):
            win = sum(_quad_lattice(kernel, s, m, fun) for m in (-1, 0, 1))
            out = sum(_quad_lattice(kernel, s, m, fun) for m in range(-12, 13) if abs(m) > 1)
            assert r[f"{key}_w"] == pytest.approx(win, rel=1e-9, abs=1e-13)
            assert r[f"{key}_o"] == pytest.approx(out, rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("kernel", ["tri", "cos", "hann", SMOOTHSTEP], ids=lambda k: getattr(k, "name", k))
def test_axis_sums_heat_equation(kernel):
    """q_ℤ = (s/2) ∂Φ_{2,1}/∂s and v_ℤ = s³ ∂Φ'_{2,1}/∂s for continuous kernels (central differences)."""
    for s in (0.15, 0.6, 1.7):
        r = axis_sums(kernel, s, 1)
        hstep = 1e-4 * s
        dphi = (phi_ab(kernel, s + hstep, 2, 1) - phi_ab(kernel, s - hstep, 2, 1)) / (2 * hstep)
        ddphi = (phi_ab(kernel, s + hstep, 2, 1, True) - phi_ab(kernel, s - hstep, 2, 1, True)) / (2 * hstep)
        assert r["q_w"] + r["q_o"] == pytest.approx(0.5 * s * dphi, abs=1e-8)
        assert r["v_w"] + r["v_o"] == pytest.approx(s ** 3 * ddphi, abs=1e-7)


@pytest.mark.parametrize("p,kurtosis", [(1, 3.0), (4, 3.0), (36, 3.0), (4, 1.8), (4, 6.0), (2, 6.0)])
def test_tau_rule_moments(p, kurtosis):
    """The τ rule integrates E[τ] = 1, E[τ²] = 1 + (κ−1)/p and E[√τ] (Gamma law) exactly."""
    u, w = _gamma_tau_rule(p, kurtosis)
    shape = p / (kurtosis - 1)
    assert np.sum(w * u ** 2) == pytest.approx(1.0, rel=1e-12)
    assert np.sum(w * u ** 4) == pytest.approx(1 + (kurtosis - 1) / p, rel=1e-11)
    sqrt_mean = math.exp(special.gammaln(shape + 0.5) - special.gammaln(shape)) / math.sqrt(shape)
    assert np.sum(w * u) == pytest.approx(sqrt_mean, rel=1e-10)


def test_gains_against_scipy_quad_over_tau():
    """Independent integrator over τ: scipy.quad of the integrands against the χ²_p/p density."""
    from warptheory.kernels import get_kernel
    from warptheory.stability import _axis_sums_flat, _gains_at_scale

    kern, s_eps, d, n, k = get_kernel("tri"), 0.5, 2, 4, 1
    p = n * k ** d
    g = selfwarp_gain(kern, s_eps, d=d, channels=n, k=k)
    law = stats.gamma(a=p / 2, scale=2 / p)

    def part(j):
        def f(tau):
            s = np.array([s_eps * math.sqrt(tau)])
            sums = _axis_sums_flat(kern, s, (k - 1) // 2)
            return float(_gains_at_scale(sums, d, s, s_eps, p, np.array([tau]))[j][0]) * law.pdf(tau)
        return integrate.quad(f, 0, law.isf(1e-14), limit=200, epsrel=1e-10)[0]

    for j, field in enumerate(("forward", "backward_direct", "backward_cross", "backward_eps")):
        assert getattr(g, field) == pytest.approx(part(j), rel=1e-8), field


# ----------------------------------------------------------------------------- the exact law of τ
def _sum_of_squares_moments(law, p, order):
    """E[(S_p/p)^n], n ≤ ``order``, exactly (fractions): the p-th power of the moment series of x²."""
    from fractions import Fraction
    from math import factorial

    def x2_moment(j):  # E x^{2j} at unit variance
        return {"uniform": Fraction(3 ** j, 2 * j + 1), "laplace": Fraction(factorial(2 * j), 2 ** j),
                "gaussian": Fraction(factorial(2 * j), 2 ** j * factorial(j))}[law]

    series = [x2_moment(j) / factorial(j) for j in range(order + 1)]
    power = [Fraction(1)] + [Fraction(0)] * order
    for _ in range(p):
        power = [sum(power[i] * series[n - i] for i in range(n + 1)) for n in range(order + 1)]
    return [float(power[n] * factorial(n) / p ** n) for n in range(order + 1)]


@pytest.mark.parametrize("law", _radial.LAWS)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 7, 32])
def test_exact_tau_rule_against_exact_moments(law, p):
    """E[τ^n], n ≤ 4, of the sum-of-squares rule against the exact moments (rational arithmetic).

    Tolerance: integrated, the tables are good to ≈ 1e-10 (20 Chebyshev points a panel), and the rule
    drops 1e-16 of mass per tail; beyond the Laplace law's upper 1e-16 quantile (τ ≈ 700 at p = 1) that
    mass carries ≈ 700ⁿ·1e-16 of E τⁿ, hence 1e-7 for n ≥ 3 there (the gains grow no faster than τ)."""
    u, w = _radial.tau_rule(law, p)
    exact = _sum_of_squares_moments(law, p, 4)
    assert np.sum(w) == pytest.approx(1.0, abs=1e-14)
    for n in range(1, 5):
        tol = 1e-7 if law == "laplace" and n >= 3 else 1e-9
        assert np.sum(w * u ** (2 * n)) == pytest.approx(exact[n], rel=tol), n


@pytest.mark.parametrize("m", [2, 3, 5, 8, 16])
def test_sum_of_squares_recursion_gives_chi2_for_gaussian_x(m):
    """The polar combination rule run on Gaussian x reproduces the χ²_m density (k_m = e^{−r²/2}/(2^{m/2}Γ(m/2)))."""
    r = np.linspace(0.2, 2.0 * math.sqrt(m), 97)
    chi2 = np.exp(-0.5 * r * r - 0.5 * m * math.log(2.0) - special.gammaln(0.5 * m))
    assert _radial.factor("gaussian", m).value(r) == pytest.approx(chi2, rel=1e-9)


def test_sum_of_squares_density_against_mpmath():
    """ρ_{S_p}(t) = t^{p/2−1} k_p(√t) against mpmath convolutions of the densities of x² (30 digits).

    Generator: ρ_ξ(a) = g(√a)/√a for ξ = x²; ρ_{S_2} = ρ_ξ * ρ_ξ and ρ_{S_4} = ρ_{S_2} * ρ_{S_2} by
    ``mpmath.quad`` split at the kinks (uniform: a = 3, 6 and t − 3, t − 6).  Tolerance: the tables
    accuracy (20 points a panel, 20-node φ pieces; 16 and 12 give ≈ 1e-7 next to a breakpoint of the
    uniform law)."""
    import mpmath

    mpmath.mp.dps = 30

    def rho_x2(law, a):
        if law == "uniform":
            return 1 / (2 * mpmath.sqrt(3 * a)) if a < 3 else mpmath.mpf(0)
        return mpmath.exp(-mpmath.sqrt(2 * a)) / mpmath.sqrt(2 * a)

    def conv(f, g, t, kinks):
        pts = sorted({mpmath.mpf(0), t, *[k for k in kinks if 0 < k < t]})
        return mpmath.quad(lambda a: f(a) * g(t - a), pts)

    for law in ("uniform", "laplace"):
        kinks = (lambda t: [3, 6, t - 3, t - 6]) if law == "uniform" else (lambda t: [])
        rho2 = lambda t, law=law: conv(lambda a: rho_x2(law, a), lambda a: rho_x2(law, a), t, kinks(t))
        for t in (0.5, 2.0, 4.0, 7.5):
            mine = _radial.factor(law, 2).value(math.sqrt(t))
            assert float(mine) == pytest.approx(float(rho2(mpmath.mpf(t))), rel=1e-9), (law, t)
        if law == "uniform":  # ρ_{S_2} in closed form, so the S_4 convolution stays one-dimensional
            rho2 = lambda t: mpmath.pi / 12 if t <= 3 else (
                (mpmath.pi - 4 * mpmath.acos(mpmath.sqrt(3 / t))) / 12 if t <= 6 else mpmath.mpf(0))
            for t in (2.0, 4.0, 7.5, 10.0):
                ref = conv(rho2, rho2, mpmath.mpf(t), [3, 6, t - 3, t - 6])
                assert t * float(_radial.factor(law, 4).value(math.sqrt(t))) == pytest.approx(float(ref), rel=1e-9)


def test_exact_gains_for_uniform_x_against_scipy_quad_over_tau():
    """Independent integrator: scipy.quad of the integrands against ρ_τ of uniform x at p = 4, itself a
    scipy.quad convolution of the closed-form ρ_{S_2} (not the tables)."""
    from warptheory.kernels import get_kernel
    from warptheory.stability import _axis_sums_flat, _gains_at_scale

    kern, s_eps, p = get_kernel("tri"), 0.5, 4
    g = selfwarp_gain(kern, s_eps, d=1, channels=p, k=1, kurtosis=1.8)

    def rho2(t):
        if t <= 3:
            return math.pi / 12
        return (math.pi - 4 * math.acos(math.sqrt(3 / t))) / 12 if t <= 6 else 0.0

    def rho_tau(tau):  # τ = S_4 / 4
        t = p * tau
        pts = sorted({x for x in (3.0, 6.0, t - 3.0, t - 6.0) if 0 < x < t})
        return p * integrate.quad(lambda a: rho2(a) * rho2(t - a), 0, t, points=pts or None, limit=200,
                                  epsabs=0, epsrel=1e-12)[0]

    def parts(tau):  # the four integrands at once
        s = np.array([s_eps * math.sqrt(tau)])
        sums = _axis_sums_flat(kern, s, 0)
        return np.array([v[0] for v in _gains_at_scale(sums, 1, s, s_eps, p, np.array([tau]))]) * rho_tau(tau)

    # τ ≤ 3 (x² ≤ 3); ρ_τ has kinks where S_4 = 4τ crosses 3, 6, 9
    ref = sum(integrate.quad_vec(parts, a, b, epsabs=0, epsrel=1e-10)[0]
              for a, b in zip((0, 0.75, 1.5, 2.25), (0.75, 1.5, 2.25, 3.0)))
    for j, field in enumerate(("forward", "backward_direct", "backward_cross", "backward_eps")):
        assert getattr(g, field) == pytest.approx(ref[j], rel=1e-8), field


def test_gamma_tau_form_is_the_first_version_and_exact_form_needs_a_known_law():
    """``gamma-tau`` equals ``exact`` for Gaussian x (χ²_p/p is a Gamma law), differs at O(p⁻²) otherwise,
    and is the only form for a kurtosis without a named law."""
    shape = dict(d=1, channels=4, k=1)
    assert selfwarp_gain("tri", 0.5, **shape, form="gamma-tau") == \
        dataclasses.replace(selfwarp_gain("tri", 0.5, **shape), form="gamma-tau")
    gaps = {p: abs(selfwarp_gain("tri", 0.5, d=1, channels=p, k=1, kurtosis=6.0, form="gamma-tau").forward
                   / selfwarp_gain("tri", 0.5, d=1, channels=p, k=1, kurtosis=6.0).forward - 1) for p in (8, 16)}
    assert 2.5 < gaps[8] / gaps[16] < 6, gaps  # O(p⁻²): ×4 per doubling of p, give or take O(p⁻³)
    assert selfwarp_gain("tri", 0.5, **shape, kurtosis=4.0, form="gamma-tau").forward > 0
    with pytest.raises(ValueError, match="kurtosis"):
        selfwarp_gain("tri", 0.5, **shape, kurtosis=4.0)


# ----------------------------------------------------------------------------- the Monte-Carlo twin
def test_mc_twin_same_record_and_reproducible():
    kw = dict(d=1, channels=2, k=3, replicates=8, batch=4, size=12, seed=11)
    a = selfwarp_gain_mc("tri", 0.4, **kw)
    b = selfwarp_gain_mc("tri", 0.4, **kw)
    theory = selfwarp_gain("tri", 0.4, d=1, channels=2, k=3)
    assert type(a) is type(theory) and a.form == "montecarlo" and a.replicates == 8
    assert a == b and a.se == b.se
    assert a.params() == theory.params()


def test_mc_twin_agrees_with_theory_roughly():
    """A seeded smoke check (the statistical comparison is the validation family ``stability``)."""
    mc = selfwarp_gain_mc("cos", 0.5, d=2, channels=4, k=3, replicates=16, seed=3)
    th = selfwarp_gain("cos", 0.5, d=2, channels=4, k=3)
    for field in FIELDS:
        assert abs(getattr(mc, field) - getattr(th, field)) < 6 * mc.se[field] + 1e-12, field


def test_mc_detach_has_no_eps_path():
    mc = selfwarp_gain_mc("tri", 0.5, d=1, channels=2, k=1, detach=True, replicates=8, batch=4, seed=1)
    assert mc.backward_eps == mc.backward_cross == 0.0 and mc.backward == mc.backward_direct


def test_eps_conv_transpose_is_the_adjoint():
    rng = np.random.default_rng(0)
    for d, k in [(1, 3), (2, 3), (2, 1), (3, 3)]:
        x = rng.normal(size=(2, 3) + (5,) * d)
        w = rng.normal(size=(2, d, 3, k ** d))
        g = rng.normal(size=(2, d) + (5,) * d)
        assert np.vdot(eps_conv(x, w, k), g) == pytest.approx(np.vdot(x, eps_conv_transpose(g, w, k)), rel=1e-12)


def test_eps_conv_against_a_naive_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 6, 5))
    w = rng.normal(size=(1, 2, 2, 9))
    eps = eps_conv(x, w, 3)
    ref = np.zeros_like(eps)
    for i in range(2):
        for v0 in range(6):
            for v1 in range(5):
                for n in range(2):
                    for a, (a0, a1) in enumerate(np.ndindex(3, 3)):
                        ref[0, i, v0, v1] += w[0, i, n, a] * x[0, n, (v0 + a0 - 1) % 6, (v1 + a1 - 1) % 5]
    np.testing.assert_allclose(eps, ref, rtol=1e-13)


def test_batch_norm_backward_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 7))
    g = rng.normal(size=x.shape)
    xt = torch.tensor(x, requires_grad=True)
    mean = xt.mean(dim=(0, 2), keepdim=True)
    out = (xt - mean) / ((xt - mean) ** 2).mean(dim=(0, 2), keepdim=True).sqrt()  # autograd is the reference
    out.backward(torch.tensor(g))
    x_hat, std = _batch_norm(x, (0, 2))
    np.testing.assert_allclose(x_hat, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_batch_norm_backward(g, x_hat, std, (0, 2)), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pre_eps_norm", [False, True])
@pytest.mark.parametrize("d,k", [(1, 3), (2, 3), (2, 1)])
def test_eps_energy_is_the_trace_over_gradients(pre_eps_norm, d, k):
    """E_g[mean E²] = trace of J_E J_Eᵀ / size: the sum over unit upstream gradients (brute force)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2) + (5,) * d)
    block = SampledBlock(rng, x, "tri", 0.7, k, pre_eps_norm=pre_eps_norm, detach=False)
    total = 0.0
    for j in range(x.size):
        g = np.zeros(x.size)
        g[j] = 1.0
        _, e = block.grad(g.reshape(x.shape))
        total += np.sum(e * e)
    assert block.eps_energy() == pytest.approx(total / x.size, rel=1e-12)


# ----------------------------------------------------------------------------- stacks and ResNet
def test_stack_of_one_is_the_block_and_sigma_follows_the_forward_gain():
    one = selfwarp_gain("tri", 0.5, d=2, channels=4, k=3)
    s = stack_gain("tri", 0.5, depths=[1, 2, 3], d=2, channels=4, k=3)
    assert s.grad[0] == one.backward and s.forward[0] == one.forward
    assert s.sigma_eps[1] == pytest.approx(0.5 * math.sqrt(one.forward), rel=1e-14)
    bn = stack_gain("tri", 0.5, depths=[3], d=2, channels=4, k=3, pre_eps_norm=True)
    assert np.all(bn.sigma_eps == 0.5) and bn.grad[0] == pytest.approx(one.backward ** 3, rel=1e-14)


def test_stack_mc_shapes_and_one_block():
    mc = stack_gain_mc("tri", 0.3, depths=[1, 2], d=1, channels=2, k=3, replicates=4, batch=4, size=16, seed=2)
    assert mc.grad.shape == (2,) and mc.forward.shape == (2,) and mc.sigma_eps.shape == (2,)
    assert mc.se["grad"].shape == (2,) and mc.form == "montecarlo"


def test_resnet_zero_init_is_the_plain_resnet_for_every_table1_row():
    base = resnet_gradient_growth(gamma=1.0, eps_init="zero")
    for pre, gamma, detach, _ in TABLE1:
        r = resnet_gradient_growth(gamma=gamma, pre_eps_norm=pre, detach=detach, eps_init="zero")
        assert r.growth == r.baseline
        assert np.all(r.sigma_eps == 0.0)
    assert base.per_block.shape == (27,)


def test_resnet_fan_in_explodes_only_with_full_gradients_and_gamma_one():
    """Against the plain BN-ResNet of the same depth (every σ_ε = 0): exactly the γ = 1, full-gradient rows
    have a per-block excess (growth/baseline)^{1/B} above 2 — their ε paths at least double every block's
    gradient gain, so the excess compounds as 2^B or faster; the other rows stay below it (γ = 0.1 puts the
    ε path's σ_ε² at 1 %; detaching removes it)."""
    resnet20 = ((16, 3), (32, 3), (64, 3))  # the pattern holds for any depth; 9 blocks keep the test short
    blocks = sum(count for _, count in resnet20)
    for pre, gamma, det, _ in TABLE1:
        r = resnet_gradient_growth(gamma=gamma, pre_eps_norm=pre, detach=det, stages=resnet20)
        excess = (r.growth / r.baseline) ** (1.0 / blocks)
        assert (excess > 2.0) == (gamma == 1.0 and not det), (pre, gamma, det, excess)


def test_resnet_skip_warps_each_warp_damps_the_skip():
    """Detached, each skip warp multiplies the identity path by Φ_{2,1}^d < 1: all < first < none; with
    ε-weights 0 the three coincide."""
    cfg = dict(gamma=1.0, pre_eps_norm=True, detach=True, stages=((8, 3),))
    growth = [resnet_gradient_growth(skip_warps=w, **cfg).growth for w in ("all", "first", "none")]
    assert growth[0] < growth[1] < growth[2]
    zero = {resnet_gradient_growth(skip_warps=w, eps_init="zero", stages=((8, 3),)).growth
            for w in ("all", "first", "none")}
    assert len(zero) == 1


def test_resnet_one_block_matches_the_nn_monte_carlo():
    """One nn BasicBlock at ε = 0 and with fan-in ε-weights: the mean field is the single-block composition.
    (Planted error: batch norms dividing by the second moment instead of the variance predicts 1.9, not 3.4.)"""
    for cfg in (dict(gamma=1.0, eps_init="zero"), dict(gamma=0.1, pre_eps_norm=True, eps_init="fan_in")):
        mc = resnet_gradient_growth_mc(stages=((8, 1),), size=8, batch=8, replicates=12, seed=5, **cfg)
        theory = resnet_gradient_growth(stages=((8, 1),), **cfg).growth
        assert abs(mc.grad[0] - theory) < 4.0 * mc.se["grad"][0], (cfg, mc.grad, mc.se, theory)


def test_resnet_mc_is_reproducible_under_a_thread_pool():
    from concurrent.futures import ThreadPoolExecutor

    kw = dict(gamma=0.1, pre_eps_norm=True, stages=((4, 2),), size=6, batch=2, replicates=3, seed=9)
    serial = resnet_gradient_growth_mc(**kw)
    with ThreadPoolExecutor(2) as pool:
        threaded = resnet_gradient_growth_mc(executor=pool, **kw)
    assert np.array_equal(serial.grad, threaded.grad) and np.array_equal(serial.sigma_eps, threaded.sigma_eps)
    assert serial.depths == (1, 2) and serial.sigma_eps == pytest.approx(0.1, rel=0.3)


def test_build_resnet_blocks_initialisation():
    import torch

    from warptheory.nn.modules import SelfWarp

    net = build_resnet_blocks(gamma=0.1, pre_eps_norm=True, detach=False, eps_init="fan_in", eps_grad_scale=1.0,
                              kernel="tri", stages=((8, 1), (16, 1)), generator=torch.Generator().manual_seed(0))
    warps = [m for m in net.modules() if isinstance(m, SelfWarp)]
    assert len(warps) == 4 and all(w.padding == "periodic" for w in warps)
    norm, conv = warps[0].eps_branch
    assert float(norm.weight[0].detach()) == 0.1 and conv.padding_mode == "circular"
    assert float(conv.bias.detach().abs().sum()) == 0.0
    assert float(conv.weight.detach().std()) == pytest.approx(1.0 / math.sqrt(8 * 9), rel=0.2)
    zero = build_resnet_blocks(gamma=1.0, pre_eps_norm=False, detach=False, eps_init="zero", eps_grad_scale=1.0,
                               kernel="tri", stages=((4, 1),), generator=torch.Generator().manual_seed(0))
    assert all(float(m.eps_branch[-1].weight.detach().abs().sum()) == 0.0
               for m in zero.modules() if isinstance(m, SelfWarp))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, fragment", [
    (dict(kernel="bicubic"), "kernel"),
    (dict(sigma_eps=-0.1), "sigma_eps"),
    (dict(sigma_eps=float("nan")), "sigma_eps"),
    (dict(sigma_eps=True), "sigma_eps"),
    (dict(sigma_eps="0.3"), "sigma_eps"),
    (dict(d=0), "d:"),
    (dict(d=4), "d:"),
    (dict(d=True), "d:"),
    (dict(channels=0), "channels"),
    (dict(channels=2.0), "channels"),
    (dict(k=2), "k:"),
    (dict(k=0), "k:"),
    (dict(detach=1), "detach"),
    (dict(pre_eps_norm="yes"), "pre_eps_norm"),
    (dict(kurtosis=0.5), "kurtosis"),
    (dict(form="exactly"), "form"),
])
def test_bad_input_names_the_argument(kwargs, fragment):
    args = dict(kernel="tri", sigma_eps=0.3, d=2, channels=4, k=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        selfwarp_gain(args.pop("kernel"), args.pop("sigma_eps"), **args)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(replicates=1), "replicates"),
    (dict(batches=0), "batches"),
    (dict(kurtosis=4.0), "kurtosis"),
    (dict(size=2, k=3), "size"),
    (dict(batch=1), "batch"),
])
def test_mc_bad_input_names_the_argument(kwargs, fragment):
    args = dict(d=1, channels=2, k=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        selfwarp_gain_mc("tri", 0.3, **args)


def test_stack_bad_depths():
    with pytest.raises(ValueError, match="depths"):
        stack_gain("tri", 0.3, depths=[0, 2], channels=2)
    with pytest.raises(ValueError, match="depths"):
        stack_gain("tri", 0.3, depths=[], channels=2)


def test_resnet_bad_input():
    with pytest.raises(ValueError, match="eps_init"):
        resnet_gradient_growth(eps_init="kaiming")
    with pytest.raises(ValueError, match="gamma"):
        resnet_gradient_growth(gamma=-1.0)
    with pytest.raises(ValueError, match="skip_warps"):
        resnet_gradient_growth(skip_warps="second")


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(eps_init="kaiming"), "eps_init"),
    (dict(gamma=float("inf")), "gamma"),
    (dict(stages=((8, 0),)), "stages"),
    (dict(stages="abc"), "stages"),
    (dict(stages=((8, 2),), depths=[3]), "depths"),
    (dict(stages=((8, 2), (16, 2)), size=7), "size"),
    (dict(size=2), "size"),
    (dict(replicates=1), "replicates"),
    (dict(skip_warps="first"), "skip_warps"),
])
def test_resnet_mc_bad_input(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        resnet_gradient_growth_mc(**kwargs)


# ----------------------------------------------------------------------------- CLI
def test_cli_stability_prints_the_gains(capsys):
    assert main(["stability", "tri", "0.5", "--channels", "16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    g = selfwarp_gain("tri", 0.5, d=2, channels=16, k=3)
    assert float(rows["backward"][0]) == pytest.approx(g.backward, rel=1e-15)
    assert float(rows["ratio"][0]) == pytest.approx(g.ratio, rel=1e-15)
    assert float(rows["backward_cross"][1]) == 0.0


def test_cli_stability_options(capsys):
    assert main(["stability", "cos", "0.3", "--channels", "4", "--k", "1", "--d", "1", "--detach",
                 "--pre-eps-norm"]) == 0
    out = capsys.readouterr().out
    assert "detach = True" in out and "pre-ε norm = True" in out
    g = selfwarp_gain("cos", 0.3, d=1, channels=4, k=1, detach=True)
    assert f"{g.backward:.16g}" in out  # the printed digits are the record's, formatted with .16g


@pytest.mark.parametrize("argv, fragment", [
    (["stability", "tri", "-1", "--channels", "4"], "sigma_eps"),
    (["stability", "tri", "abc", "--channels", "4"], "sigma_eps"),
    (["stability", "tri", "0.5"], "--channels"),
    (["stability", "tri", "0.5", "--channels", "0"], "--channels"),
    (["stability", "tri", "0.5", "--channels", "4", "--k", "2"], "k:"),
    (["stability", "tri", "0.5", "--channels", "4", "--d", "4"], "d:"),
    (["stability", "bicubic", "0.5", "--channels", "4"], "kernel"),
])
def test_cli_stability_bad_input_one_line_exit_2(argv, fragment, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- verdict (e) in the default report
from warptheory.stats import ValidationReport  # noqa: E402

@pytest.fixture(scope="module")
def validation_stability():
    """validation/test_stability.py as a module (it imports its siblings from validation/)."""
    import importlib.util
    import pathlib
    import sys

    folder = pathlib.Path(__file__).resolve().parent.parent / "validation"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("_validation_test_stability", folder / "test_stability.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def _stub_growth(growths):
    """resnet_gradient_growth stand-in: the rows' growths in order, baseline 1 (the recording, not the theory)."""
    values = iter(growths)

    def growth_of(**_):
        return types.SimpleNamespace(growth=next(values), baseline=1.0)
    return growth_of


def test_verdict_e_side_by_side_records_the_fifteen_rows_in_the_default_report(validation_stability, tmp_path):
    vs = validation_stability
    rep = ValidationReport()
    growths = [1e4 if paper == "diverges" else 10.0 for _, paper in vs.table_rows().values()]
    rows = vs.record_verdict_e_side_by_side(rep, growth_of=_stub_growth(growths))
    assert [r.row for r in rows] == [f"T1.{i}" for i in range(1, 9)] + [f"T2.{i}" for i in range(1, 8)]
    assert all(r.agrees and r.call == ("explodes" if r.paper == "diverges" else "no explosion") for r in rows)
    assert not rep.records and not rep.families  # side by side: no check, no share of the budget
    md, js = rep.write(tmp_path, repo_root=tmp_path)
    assert sum(line.startswith("| T") for line in md.read_text().splitlines()) == 15
    assert len(json.loads(js.read_text())["side_by_side"]) == 15
    # the default run records them: the test is not skipped without --thorough
    assert "sample_factor" not in inspect.signature(vs.test_stability_verdict_e_side_by_side).parameters


def test_verdict_e_words_follow_the_paper_column(validation_stability):
    """Planted change: flipping one row's paper column flips its verdict and its words."""
    vs = validation_stability
    rows = dict(vs.table_rows())
    cfg, paper = rows["T1.7"]
    assert paper == "93.620%"
    growth = [1e5]  # ×1e5 the plain network's: explodes at initialisation
    before = vs.record_verdict_e_side_by_side(ValidationReport(), {"T1.7": (cfg, paper)}, _stub_growth(growth))[0]
    after = vs.record_verdict_e_side_by_side(ValidationReport(), {"T1.7": (cfg, "diverges")}, _stub_growth(growth))[0]
    assert (before.agrees, before.words) == (False, "disagree: explodes at initialisation yet trains")
    assert (after.agrees, after.words) == (True, "agree: explodes at initialisation")
    assert vs.verdict_e_words(10.0, 1.0, "diverges").startswith("disagree at init: no explosion")
    assert vs.verdict_e_words(10.0, 1.0, "93.620%") == "agree: no explosion, trains"
