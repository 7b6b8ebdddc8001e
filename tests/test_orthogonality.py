"""Unit tests of warptheory.orthogonality (eq 14, eq 49)."""
import math

import numpy as np
import pytest

from warptheory import orthogonality as O
from warptheory.kernels import BUILTIN_KERNELS


@pytest.mark.parametrize("kernel", BUILTIN_KERNELS)
def test_autocorrelation_against_quadrature(kernel):
    from scipy.integrate import quad

    from warptheory import get_kernel
    k = get_kernel(kernel)
    for c in (0.0, 0.3, 1.25):
        ref = quad(lambda s: k.value_scalar(s) * k.value_scalar(s + c), -1, 1, points=[-c, 0.0, 0.5, -0.5], limit=200)[0]
        # Gauss–Legendre between breakpoints: ~1e-14, but ~5e-6 at sqrt_tri's square-root edges.
        tol = 1e-5 if kernel == "sqrt_tri" else 1e-9
        assert abs(O.kernel_autocorrelation(kernel, c) - ref) < tol


@pytest.mark.parametrize("kernel", BUILTIN_KERNELS)
def test_gram_limits_fourier_and_poisson_agree(kernel):
    # KKt: Σ_m (φ*φ)(mJ) (Poisson form) = (1/J) Σ_k φ̂(k/J)² (Parseval form), by an independent route:
    # the mean over phases of ψ(θ)² with ψ(θ) = Σ_n φ(J(n-θ)), J ∈ (0.5, 1.5).
    from warptheory import get_kernel
    k = get_kernel(kernel)
    for J in (0.7, 1.3):
        theta = (np.arange(200000) + 0.5) / 200000
        psi = sum(k.value(J * (n - theta)) for n in range(-4, 6))
        ref = J * np.mean(psi**2)
        # Midpoint rule on 2e5 phases: ~1e-10 for continuous ψ; O(1/N) = 5e-6 with rect's jumps;
        # sqrt_tri adds its autocorrelation error (~1e-5, see kernel_autocorrelation).
        tol = 3e-5 if kernel in ("rect", "sqrt_tri") else 1e-7
        assert abs(O.gram_limit(kernel, J, "KKt") - ref) < tol


def test_gram_limit_2d_diagonal_factorises():
    A = np.diag([0.8, 1.3])
    val = O.gram_limit("hann", A, "KKt")
    assert abs(val - O.gram_limit("hann", 0.8, "KKt") * O.gram_limit("hann", 1.3, "KKt")) < 1e-8
    assert abs(O.gram_limit("cos", A, "KtK") - (1 + 2 / math.pi) ** 2 / 1.04) < 1e-12


def test_continuum_values_at_identity_for_mean_preserving():
    for kernel in ("tri", "rect", "hann"):
        assert abs(O.gram_limit(kernel, 1.0, "KKt") - 1) < 1e-9
        assert abs(O.gram_limit(kernel, 1.7, "KtK") - 1 / 1.7) < 1e-12


def test_tri_kkt_converges_weakly_to_gram_limit():
    w = O.smooth_warp(1)
    r = O.convergence_study("tri", w, [1024, 4096], "KKt")
    assert abs(r["exact"]["weak"][-1]) < 1e-3 < abs(r["paper"]["weak"][-1])


def test_warp_inverse_and_bad_input():
    w = O.smooth_warp(2)
    t = w.grid(8)
    assert np.allclose(w.inverse(t + w.eps(t)), t, atol=1e-12)
    with pytest.raises(ValueError, match="product"):
        O.gram_limit("tri", 1.0, "KK")
    with pytest.raises(ValueError, match="jacobian"):
        O.gram_limit("tri", -1.0, "KtK")
    with pytest.raises(ValueError, match="strength"):
        O.smooth_warp(1, strength=1.5)


def test_phase_shifts_grid():
    th = O.phase_shifts(2, 4)
    assert th.shape == (16, 2) and np.allclose(np.sort(np.unique(th[:, 0])), (np.arange(4) + 0.5) / 4)
    with pytest.raises(ValueError, match="phases"):
        O.phase_shifts(1, 0)


def test_phase_average_removes_the_phase_oscillation():
    """tri KKᵀ weak form: one phase is off by ~1e-4 and oscillates; 32 phases are within 1e-5 of gram_limit.

    Independent route for the phase-averaged value: the unshifted weak form over many grids n (the phase
    of n·ε_c equidistributes) — here simply that the averaged sequence is flat while the single one is not.
    """
    w = O.smooth_warp(1)
    r = O.phase_averaged_study("tri", w, [1024, 2048, 4096], "KKt", phases=32, senses=("weak", "single_phase"))
    exact = r["weak_theory"]["exact"]
    assert max(abs(v - exact) for v in r["weak"]) < 1e-5
    assert r["weak_theory"]["paper"] < exact - 0.03  # 1/J is not the limit
    assert min(r["single_phase"]["paper"]) > 0.3  # the pointwise row sums do not approach 1/J
    with pytest.raises(ValueError, match="operator"):
        O.phase_averaged_study("tri", w, [64, 128, 256], "KKt", operator="matrix")


def test_unwarp_warp_composition_equals_gram_form():
    """eq 49: ⟨h, unwarp(warp(g))⟩ = ⟨warp h, warp g⟩ (unwarp is the transpose), to rounding."""
    w = O.smooth_warp(1)
    a = O.phase_averaged_study("cos", w, [256, 512, 1024], "KtK", phases=4, operator="gram")
    b = O.phase_averaged_study("cos", w, [256, 512, 1024], "KtK", phases=4, operator="compose")
    assert np.allclose(a["weak"], b["weak"], rtol=1e-13, atol=0)
