"""Interpolation kernels (paper §2 eq 2, supplementary §8–9): constraints, properties, conventions."""
import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from warptheory.kernels import (
    BUILTIN_KERNELS,
    Kernel,
    KernelConstraintError,
    T,
    get_kernel,
    kernel_from_sympy,
    on_support,
)

EXPECTED_PROPERTIES = {  # (mean-preserving, variance-preserving), supplementary §9
    "tri": (True, False),
    "cos": (False, True),
    "rect": (True, True),
    "hann": (True, False),
    "sqrt_tri": (False, True),
}


@pytest.mark.parametrize("name", BUILTIN_KERNELS)
def test_builtin_properties(name):
    k = get_kernel(name)
    assert (k.mean_preserving, k.variance_preserving) == EXPECTED_PROPERTIES[name]
    assert isinstance(k, Kernel) and k.name == name and name in repr(k)


@pytest.mark.parametrize("name", BUILTIN_KERNELS)
def test_builtin_constraints_hold_exactly_at_lattice_points(name):
    k = get_kernel(name)
    t = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 1.5, -7.25, 1e6])
    assert np.array_equal(k.value(t), np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0.0]))


@pytest.mark.parametrize("name", [*BUILTIN_KERNELS, "user_cos"])
def test_jitted_scalars_honour_every_override(name):
    """The jitted scalars leave out overrides the expression already meets (kernels._compile_scalar);
    the values at the pinned points, ±0 included, must still be the pinned ones bitwise."""
    if name == "user_cos":  # a fresh user kernel: cos(πt/2)² is 3.7e-33, not 0, at t = ±1
        k = kernel_from_sympy(on_support(sp.cos(sp.pi * T / 2) ** 2), name="cos_user_override_test")
    else:
        k = get_kernel(name)
    pins = [(k.value_scalar, {-1.0: 0.0, 0.0: 1.0, 1.0: 0.0}), (k.derivative_scalar, k.derivative_right_limits)]
    for scalar, values in pins:
        for point, value in values.items():
            for t in ((point, -0.0) if point == 0 else (point,)):
                got = scalar(t)
                assert got == value and math.copysign(1, got) == math.copysign(1, value), (name, t, got, value)


def test_jitted_scalar_is_the_same_whoever_calls_it_first():
    """A compiled scalar first called from jitted code that contracts multiply-adds (as the engine's
    loops do) still rounds each operation as Python does: numba would otherwise compile it with the
    caller's flags and cache that version on disk (1,445 of 10,000 values differed).  No overrides,
    so nothing calls it from Python before the contracting caller does."""
    import numba

    from warptheory.kernels import _compile_scalar

    python, jitted = _compile_scalar("1.1 * t + 0.3 * t * t - 0.7", "phi_first_caller_test", {})

    @numba.njit(fastmath={"contract"}, cache=False)
    def contracting_caller(ts, out):
        for i in range(ts.shape[0]):
            out[i] = jitted(ts[i])

    ts = np.random.default_rng(0).uniform(-1, 1, 10_000)
    out = np.empty_like(ts)
    contracting_caller(ts, out)
    assert out.tobytes() == np.array([python(float(t)) for t in ts]).tobytes()


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(BUILTIN_KERNELS), t=st.floats(-1.5, 1.5))
def test_vectorised_scalar_and_mpmath_agree(name, t):
    """Three code paths (numba ufunc, jitted scalar, mpmath) for φ and φ'."""
    k = get_kernel(name)
    v = float(k.value(np.array([t]))[0])
    assert v == k.value_scalar(t)
    ref = float(k.value_mp(mpmath.mpf(t)))
    # φ evaluated in float64 at a float64 t: a few ulps of an O(1) value.
    assert v == pytest.approx(ref, rel=4e-16, abs=4e-16)
    if name == "rect" or t in k.breakpoints:
        return
    d = float(k.derivative(np.array([t]))[0])
    assert d == k.derivative_scalar(t)
    dref = float(k.derivative_mp(mpmath.mpf(t)))
    # sqrt_tri's φ' = ∓1/(2√(1-|t|)) amplifies the rounding of 1 - |t| near the edge.
    rel = 1e-15 if name != "sqrt_tri" else 1e-15 / max(1e-300, 1 - abs(t))
    assert d == pytest.approx(dref, rel=rel, abs=1e-15)


@pytest.mark.parametrize("name", BUILTIN_KERNELS)
def test_derivative_is_right_derivative_at_kinks(name):
    """φ'(t) at a breakpoint equals the one-sided slope just right of it (the engines' convention)."""
    k = get_kernel(name)
    h = 1e-7
    for b in k.breakpoints:
        d = float(k.derivative(np.array([b]))[0])
        if math.isinf(d):
            assert name == "sqrt_tri" and b == -1.0  # φ = sqrt(1 + t) just right of -1
            continue
        slope = (float(k.value(np.array([b + 2 * h]))[0]) - float(k.value(np.array([b + h]))[0])) / h
        assert d == pytest.approx(slope, abs=1e-5), b


def test_tri_kink_values_match_floor_based_engines():
    tri = get_kernel("tri")
    assert list(tri.derivative(np.array([-1.0, 0.0, 1.0]))) == [1.0, -1.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(s=st.floats(0.0, 1.0, exclude_max=True))
def test_square_root_relation(s):
    """§9: the square root of a mean-preserving kernel is variance-preserving (tri→sqrt_tri, hann→cos)."""
    for mean_kernel, root_kernel in (("tri", "sqrt_tri"), ("hann", "cos")):
        m, r = get_kernel(mean_kernel), get_kernel(root_kernel)
        pts = np.array([s, s - 1.0])
        np.testing.assert_allclose(r.value(pts) ** 2, m.value(pts), rtol=1e-15, atol=1e-15)
        assert float(np.sum(m.value(pts))) == pytest.approx(1.0, abs=1e-15)
        assert float(np.sum(r.value(pts) ** 2)) == pytest.approx(1.0, abs=1e-15)


def test_only_rect_has_both_properties_and_it_has_zero_gradient():
    both = [n for n in BUILTIN_KERNELS if all(EXPECTED_PROPERTIES[n])]
    assert both == ["rect"]
    t = np.linspace(-1.2, 1.2, 1001)
    assert not np.any(get_kernel("rect").derivative(t))


# ----------------------------------------------------------------------------- user kernels
@pytest.mark.parametrize(
    "expr, constraint, shown",
    [
        (on_support(1 - T**2) * 2, "φ(0) = 1", "φ(0) = 2"),
        (on_support(sp.cos(sp.pi * T / 3)), "φ(n) = 0 for integer n ≠ 0", "φ(-1) = 0.5"),
        (1 - sp.Abs(T), "φ(t) = 0 for |t| > 1", "on_support"),
        (on_support((1 - sp.Abs(T)) * (1 + T * (1 - sp.Abs(T)))), "φ(-t) = φ(t)", "φ(0.001) ="),
        (on_support(1 / (T - sp.Rational(1, 2)) * (sp.Abs(T) - 1) * -2), "real and finite", "φ(0.5)"),
    ],
)
def test_constraint_violation_names_the_constraint_and_value(expr, constraint, shown):
    with pytest.raises(KernelConstraintError, match=None) as info:
        kernel_from_sympy(expr, name="bad")
    msg = str(info.value)
    assert constraint in msg and shown in msg and "'bad'" in msg
    assert isinstance(info.value, ValueError)


def test_user_kernel_from_string_and_other_symbol():
    k = kernel_from_sympy("Piecewise((1 - Abs(t), Abs(t) <= 1), (0, True))", name="tri_str")
    assert k.mean_preserving
    x = sp.Symbol("x")
    k2 = kernel_from_sympy(sp.Piecewise((1 - sp.Abs(x), sp.Abs(x) <= 1), (0, True)), name="tri_x")
    t = np.linspace(-1.1, 1.1, 23)
    np.testing.assert_array_equal(k2.value(t), get_kernel("tri").value(t))
    np.testing.assert_array_equal(k2.derivative(t), get_kernel("tri").derivative(t))


@pytest.mark.parametrize("bad", [3.0, None, np.array([1.0])])
def test_user_kernel_rejects_non_expressions(bad):
    with pytest.raises(TypeError, match="expr"):
        kernel_from_sympy(bad)


def test_user_kernel_rejects_two_symbols():
    with pytest.raises(ValueError, match="expr: expected one free symbol"):
        kernel_from_sympy(on_support(1 - sp.Abs(T)) * sp.Symbol("c"))


def test_get_kernel_errors():
    with pytest.raises(ValueError, match="kernel: unknown kernel 'lanczos'; built-in kernels are tri, cos, rect, hann, sqrt_tri"):
        get_kernel("lanczos")
    with pytest.raises(TypeError, match="kernel"):
        get_kernel(3)


def test_c_source_has_right_derivative_overrides():
    src = get_kernel("tri").c_source("tri")
    assert "WT_HD inline double tri_value(double t)" in src
    assert "if (t == 0.0) return -1.0;" in src and "if (t == 1.0) return 0.0;" in src


def test_rect_is_not_the_only_kernel_with_both_properties():
    """§9 says only rect is mean- and variance-preserving.  Both hold iff φ(s)φ(1-s) = 0 and
    φ(s) + φ(1-s) = 1, i.e. φ ∈ {0, 1} a.e. with S ∪ (1 - S) splitting (0, 1) — rect's
    S = (0, 1/2) is one choice.  Here S = (0, 1/4) ∪ (1/2, 3/4): both properties, and, like
    every such kernel, zero offset gradient (paper_notes/s09_discretization.md)."""
    a_ = sp.Abs(T)
    q = sp.Rational(1, 4)
    expr = sp.Piecewise(
        (1, a_ < q), (sp.Rational(1, 2), sp.Eq(a_, q)), (0, a_ < 2 * q), (sp.Rational(1, 2), sp.Eq(a_, 2 * q)),
        (1, a_ < 3 * q), (sp.Rational(1, 2), sp.Eq(a_, 3 * q)), (0, True),
    )
    k = kernel_from_sympy(expr, name="comb")
    assert k.mean_preserving and k.variance_preserving
    assert not np.any(k.derivative(np.linspace(-1.2, 1.2, 997)))
    import warptheory as wt

    r = wt.phi(k, 0.37)
    assert (r.phi11, r.phi12, r.phi21, r.dphi21) == (1.0, 1.0, 1.0, 0.0)
