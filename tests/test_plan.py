"""Tests of warptheory.warping's plans and sampling (eqs 2–4, 49–51 through :class:`WarpPlan`).

Map:
  functional API unchanged     test_functional_api_is_bitwise_the_recorded_engine (tests/warp_golden.py)
  plan = functional calls      test_plan_is_bitwise_the_functional_api, test_plan_reuse_and_lazy_slopes
  warp = sample at v + eps     test_sample_at_v_plus_eps_is_warp
  sample on any grid           test_sample_on_another_grid_matches_reference, test_sample_adjoint_and_gradient
  bad input                    test_plan_argument_errors, test_sample_argument_errors
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import warptheory as wt
from warptheory.warping import PADDINGS

import warp_golden
from test_warping import ALL_KERNELS, SPECIAL_OFFSETS, assert_close_to_reference, plant_special_offsets, random_problem

SETTINGS = settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])
GOLDEN = json.loads((Path(__file__).parent / "data" / "warp_golden.json").read_text())


def _has_fma():
    import llvmlite.binding as llvm

    return "+fma" in llvm.get_host_cpu_features().flatten().split(",")


@pytest.mark.skipif(not _has_fma(), reason="golden values were recorded on a CPU with FMA (see tests/warp_golden.py)")
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("kernel", warp_golden.KERNELS)
def test_functional_api_is_bitwise_the_recorded_engine(kernel, d):
    """warp, warp_backward, unwarp, unwarp_backward give bitwise the outputs the engine gave before
    the restructure (every kernel, padding, dtype; NaN/±inf, kink and huge offsets planted).

    One planned exception: grad_eps of a kernel with an infinite slope (sqrt_tri).  The old
    engine multiplied per corner in 1-D and 3-D and had the dispatcher redo its NaN entries with
    the reference; the engine now applies the slopes factorised itself (as the reference and
    warp.cuh do), which changes the order of those sums.  They are compared with the reference
    instead: the same ±∞/NaN pattern and values to the tolerance of assert_close_to_reference."""
    from warptheory.engines import reference as reference_engine
    from warptheory.kernels import get_kernel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key, name, padding, dtype, dd, salt, shape in warp_golden.cases():
            if name != kernel or dd != d:
                continue
            got = warp_golden.outputs(wt, name, padding, dtype, d, salt, shape)
            slopes = get_kernel(warp_golden.kernel(name)).derivative_right_limits.values()
            infinite = not all(np.isfinite(v) for v in slopes)
            if infinite:
                reference = warp_golden.outputs(reference_engine, name, padding, dtype, d, salt, shape)
            for what, array in got.items():
                if infinite and what.endswith("grad_eps"):
                    assert_close_to_reference(array, reference[what], np.dtype(dtype).type)
                    continue
                assert warp_golden.digest(array) == GOLDEN[key][what], f"{key}: {what}"


def _all_outputs(plan, x, g_out, g_in):
    """The six outputs of a plan: warp and its gradients, unwarp and its gradients."""
    return [plan.warp(x), *plan.backward(x, g_out), plan.unwarp(g_out), *plan.unwarp_backward(g_out, g_in)]


@pytest.mark.parametrize("kernel", ALL_KERNELS, ids=lambda k: k if isinstance(k, str) else k.name)
@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 3),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    special=SPECIAL_OFFSETS,
)
def test_plan_is_bitwise_the_functional_api(kernel, seed, d, padding, dtype, special):
    """A plan's four operations are bitwise the functional calls (which are one-call plans)."""
    rng = np.random.default_rng(seed)
    channels = int(rng.choice([1, 3, 9]))
    x, eps, g = random_problem(seed, d, dtype, channels=channels)
    plant_special_offsets(rng, eps, special)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = _all_outputs(wt.warp_plan(eps, kernel, padding), x, g, x)
        want = [
            wt.warp(x, eps, kernel, padding), *wt.warp_backward(x, eps, g, kernel, padding),
            wt.unwarp(g, eps, kernel, padding), *wt.unwarp_backward(g, eps, x, kernel, padding),
        ]
    for a, b in zip(ours, want):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_plan_reuse_and_lazy_slopes():
    """One plan serves inputs with any channel count, its φ' taps come at the first backward, and
    functional calls in between (which use this thread's scratch) do not disturb it."""
    x, eps, g = random_problem(3, 2, np.float32, batch=2, channels=9, spatial=(20, 17))
    plan = wt.warp_plan(eps, "cos", "border")
    assert (plan.kernel.name, plan.padding, plan.backend, plan.batch, plan.d) == ("cos", "border", "numba", 2, 2)
    assert plan.in_shape == plan.out_shape == (20, 17) and plan.dtype == np.float32
    first = plan.backward(x, g)
    wt.warp_backward(x[:, :3], eps + 0.25, g[:, :3], "tri")  # another problem through the scratch
    for a, b in zip(plan.backward(x, g), first):
        assert a.tobytes() == b.tobytes()
    for n in (1, 4):
        assert plan.warp(x[:, :n]).tobytes() == wt.warp(x[:, :n], eps, "cos", "border").tobytes()
    assert plan.backward(x, g, need_x=False, need_eps=False) == (None, None)
    assert plan.backward(x, g, need_eps=False)[1] is None


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("channels", [3, 9])
def test_plan_first_forward_writes_the_taps(channels, padding):
    """A bilinear 2-D plan's taps come out of its first forward's fused pass (either gather path:
    channels 3 and 9), bitwise the taps of the tap stage, undefined and far-off positions included;
    a plan whose first call is the backward computes them there, with the same results."""
    from warptheory.engines import numba_cpu
    from warptheory.kernels import get_kernel

    rng = np.random.default_rng(17)
    x, eps, g = random_problem(5, 2, np.float32, batch=2, channels=channels, spatial=(19, 23))
    eps[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, 1e9]
    eps[1, 1, 3, 2] = -40.5
    eps += rng.choice([0.0, 0.5], size=eps.shape).astype(eps.dtype)  # floors on the lattice too
    plan = wt.warp_plan(eps, "tri", padding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = plan.warp(x)
        _, base, w, _ = plan._taps.taps
        want = numba_cpu._taps(eps, get_kernel("tri"), padding, True, False, owned=True)
        assert base.tobytes() == want[1].tobytes() and w.tobytes() == want[2].tobytes()
        backward_first = wt.warp_plan(eps, "tri", padding)
        grads = backward_first.backward(x, g)
        assert backward_first.warp(x).tobytes() == y.tobytes()
        for a, b in zip(grads, plan.backward(x, g)):
            assert a.tobytes() == b.tobytes()
        assert y.tobytes() == wt.warp(x, eps, "tri", padding).tobytes()


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 3),
    padding=st.sampled_from(PADDINGS),
    kernel=st.sampled_from(["tri", "cos"]),
)
def test_sample_at_v_plus_eps_is_warp(seed, d, padding, kernel):
    """warp(x, eps) = sample(x, v + eps) up to the rounding of forming v + eps.

    float64: the engine forms v + eps in float64 itself, so coords = v + eps (float64) gives
    bitwise warp's results, both gradients included (grad_coords = grad_eps).  float32: the
    caller's v + eps is rounded to float32 first; with offsets on a 1/64 grid and |v| < 64
    that rounding is exact and the results are again bitwise equal."""
    x, eps, g = random_problem(seed, d, np.float64, channels=3)
    grid = np.indices(x.shape[2:], dtype=np.float64)[None]
    for dtype in (np.float64, np.float32):
        xs, gs = x.astype(dtype), g.astype(dtype)
        e = (eps if dtype == np.float64 else np.round(eps * 64) / 64).astype(dtype)
        coords = (grid + e).astype(dtype)
        assert wt.sample(xs, coords, kernel, padding).tobytes() == wt.warp(xs, e, kernel, padding).tobytes()
        for a, b in zip(wt.sample_backward(xs, coords, gs, kernel, padding), wt.warp_backward(xs, e, gs, kernel, padding)):
            assert a.tobytes() == b.tobytes()


def _other_grid_problem(seed, d, dtype, special=None):
    """x on S_in, coords on a different S_out reaching a little outside the input."""
    rng = np.random.default_rng(seed)
    in_shape = tuple(int(s) for s in rng.integers(1, 9 if d < 3 else 5, size=d))
    out_shape = tuple(int(s) for s in rng.integers(1, 9 if d < 3 else 5, size=d))
    batch, channels = int(rng.integers(1, 3)), int(rng.choice([1, 2, 9]))
    x = rng.normal(size=(batch, channels, *in_shape)).astype(dtype)
    g = rng.normal(size=(batch, channels, *out_shape)).astype(dtype)
    coords = np.stack([rng.uniform(-1.5, s + 0.5, size=(batch, *out_shape)) for s in in_shape], axis=1).astype(dtype)
    plant_special_offsets(rng, coords, special)
    return x, coords, g


@pytest.mark.parametrize("kernel", ALL_KERNELS, ids=lambda k: k if isinstance(k, str) else k.name)
@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 3),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    special=SPECIAL_OFFSETS,
)
def test_sample_on_another_grid_matches_reference(kernel, seed, d, padding, dtype, special):
    """A sample plan on an output grid unrelated to the input's: the six outputs of the Numba
    engine equal the numpy reference's (same tolerances as test_numba_matches_reference)."""
    x, coords, g = _other_grid_problem(seed, d, dtype, special)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = _all_outputs(wt.sample_plan(coords, x.shape[2:], kernel, padding), x, g, x)
        ref = _all_outputs(wt.sample_plan(coords, x.shape[2:], kernel, padding, backend="numpy"), x, g, x)
    shapes = [x.shape[:2] + coords.shape[2:], x.shape, coords.shape, x.shape, g.shape, coords.shape]
    for a, b, shape in zip(ours, ref, shapes):
        assert a.shape == shape
        assert_close_to_reference(a, b, dtype)


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 3), padding=st.sampled_from(PADDINGS))
def test_sample_adjoint_and_gradient(seed, d, padding):
    """⟨sample(x), g⟩ = ⟨x, grad_x⟩ (eq 3 is the adjoint of eq 2 on any grid) and grad_coords against a
    central difference (float64, positions kept off the kinks; tolerances as in
    test_grad_eps_finite_differences)."""
    x, coords, g = _other_grid_problem(seed, d, np.float64)
    frac = coords - np.floor(coords)
    coords = coords + np.where(frac < 0.05, 0.1, 0.0) - np.where(frac > 0.95, 0.1, 0.0)
    plan = wt.sample_plan(coords, x.shape[2:], "cos", padding)
    grad_x, grad_c = plan.backward(x, g)
    magnitude = float(np.sum(np.abs(x)) * np.max(np.abs(g)) * 2**d + 1.0)
    assert abs(np.vdot(plan.warp(x), g) - np.vdot(x, grad_x)) <= 1e-12 * magnitude
    assert abs(np.vdot(plan.unwarp(g), x) - np.vdot(g, plan.warp(x))) <= 1e-12 * magnitude
    direction = np.random.default_rng(seed).normal(size=coords.shape)
    h = 1e-6

    def loss(c):
        return float(np.vdot(wt.sample(x, c, "cos", padding), g))

    fd = (loss(coords + h * direction) - loss(coords - h * direction)) / (2 * h)
    analytic = float(np.vdot(grad_c, direction))
    assert abs(fd - analytic) <= 1e-6 * abs(analytic) + 1e-6 * magnitude


def test_sample_strided_grid_is_indexing():
    """Integer coordinates read the lattice exactly: a stride-2 grid is x[..., ::2, ::2]."""
    x, _, _ = random_problem(1, 2, np.float32, batch=2, channels=3, spatial=(9, 8))
    coords = np.indices((5, 4), dtype=np.float32)[None].repeat(2, axis=0) * 2
    for kernel in ALL_KERNELS:
        assert np.array_equal(wt.sample(x, coords, kernel), x[:, :, ::2, ::2])


def test_plan_argument_errors():
    x, eps, g = random_problem(0, 2, np.float64, batch=2, channels=3, spatial=(4, 5))
    plan = wt.warp_plan(eps)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, N, \*S\) = \(2, N, 4, 5\) for this plan, got \(1, 3, 4, 5\)"):
        plan.warp(x[:1])
    with pytest.raises(ValueError, match=r"x: expected shape .* got \(2, 3, 5, 4\)"):
        plan.warp(np.zeros((2, 3, 5, 4)))
    with pytest.raises(TypeError, match="x: expected the plan's dtype float64, got float32"):
        plan.warp(x.astype(np.float32))
    with pytest.raises(TypeError, match="x: expected a numpy or CuPy array, got list"):
        plan.warp(x.tolist())
    with pytest.raises(ValueError, match="grad_y: expected 3 channels like x, got 2"):
        plan.backward(x, g[:, :2])
    with pytest.raises(TypeError, match="need_x: expected a bool"):
        plan.backward(x, g, need_x="yes")
    with pytest.raises(ValueError, match=r"eps: expected shape \(B, d, \*S\)"):
        wt.warp_plan(np.zeros((2, 3, 4, 5)))
    with pytest.raises(TypeError, match="eps: expected dtype float32 or float64, got int64"):
        wt.warp_plan(np.zeros((2, 2, 4, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="padding: expected one of"):
        wt.warp_plan(eps, padding="reflect")
    with pytest.raises(ValueError, match="kernel: unknown kernel"):
        wt.warp_plan(eps, kernel="lanczos")
    with pytest.raises(TypeError, match="backend: 'cupy' cannot take numpy arrays"):
        wt.warp_plan(eps, backend="cupy")


def test_sample_argument_errors():
    x = np.zeros((2, 3, 4, 5))
    coords = np.zeros((2, 2, 6, 7))
    with pytest.raises(ValueError, match=r"in_shape: expected a tuple of 2 positive ints .* got \(4,\)"):
        wt.sample_plan(coords, (4,))
    with pytest.raises(ValueError, match="in_shape: expected a tuple of 2 positive ints"):
        wt.sample_plan(coords, (4, 0))
    with pytest.raises(ValueError, match=r"coords: expected shape \(B, d, \*S\) with d = len\(S\)"):
        wt.sample(x, np.zeros((2, 3, 6, 7)))
    with pytest.raises(TypeError, match="coords: dtype float32 does not match x's dtype float64"):
        wt.sample(x, coords.astype(np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, N, \*S_in\) with B = 1"):
        wt.sample(x, coords[:1])
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(B, N, \*S\) = \(2, N, 6, 7\)"):
        wt.sample_backward(x, coords, np.zeros((2, 3, 4, 5)))
    with pytest.raises(TypeError, match="need_coords: expected a bool"):
        wt.sample_backward(x, coords, np.zeros((2, 3, 6, 7)), need_coords=None)
    plan = wt.sample_plan(coords, (4, 5))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, N, \*S\) = \(2, N, 6, 7\)"):
        plan.unwarp(x)


# ----- architecture -------------------------------------------------------------------------
def test_no_theory_module_imports_an_engine():
    """Only warptheory.warping (the dispatch point) reaches the engines."""
    import ast

    package = Path(wt.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "warping.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            assert not any("engines" in name or "_engine" in name for name in names), f"{path.name}: {names}"


def test_bilinear_paths_follow_the_kernel_not_its_identity():
    """A tri built from sympy takes the bilinear paths (what it compiles to decides) and gives
    bitwise the built-in's results; a kernel with other expressions does not."""
    import sympy as sp

    from warptheory.engines import numba_cpu
    from warptheory.kernels import T, get_kernel, kernel_from_sympy, on_support

    mine = kernel_from_sympy(on_support(1 - sp.Abs(T)), name="my bilinear")
    assert mine is not get_kernel("tri") and numba_cpu._is_bilinear(mine)
    assert not numba_cpu._is_bilinear(get_kernel("cos"))
    x, eps, g = random_problem(4, 2, np.float32, batch=2, channels=9, spatial=(13, 11))
    for a, b in zip([wt.warp(x, eps, mine), *wt.warp_backward(x, eps, g, mine)],
                    [wt.warp(x, eps, "tri"), *wt.warp_backward(x, eps, g, "tri")]):
        assert a.tobytes() == b.tobytes()


def test_release_scratch():
    """The per-thread scratch can be dropped; the next calls allocate afresh and agree."""
    from warptheory.engines import numba_cpu

    x, eps, g = random_problem(5, 2, np.float32, batch=2, channels=9, spatial=(12, 10))
    before = [wt.warp(x, eps), *wt.warp_backward(x, eps, g)]
    assert numba_cpu._workspace.__dict__.get("buffers")
    wt.engines.release_scratch()
    assert not numba_cpu._workspace.__dict__.get("buffers")
    for a, b in zip([wt.warp(x, eps), *wt.warp_backward(x, eps, g)], before):
        assert a.tobytes() == b.tobytes()



@pytest.mark.parametrize("kernel, stores_slopes", [("tri", False), ("rect", False), ("cos", True), ("hann", True)])
def test_constant_slope_kernels_store_no_slope_taps(kernel, stores_slopes):
    """Piecewise-linear kernels (φ' constant on each tap) keep two constants instead of a φ' array
    the size of the positions.  Planted once: ``_constant_slopes`` claiming constants for every kernel
    makes the cos and hann cases fail (their plans then store no φ' array)."""
    x, eps, g = random_problem(7, 2, np.float64, batch=2, channels=3, spatial=(9, 8))
    plan = wt.warp_plan(eps, kernel, "zeros")
    grads = plan.backward(x, g)
    slope_taps = plan._taps.taps[3]
    positions = eps.shape[0] * int(np.prod(eps.shape[2:]))
    assert (slope_taps.size >= positions) == stores_slopes, slope_taps.shape
    for a, b in zip(grads, wt.warp_backward(x, eps, g, kernel, "zeros")):
        assert a.tobytes() == b.tobytes()


_MIRROR_SOURCE = r"""
#define WT_HD
WT_HD inline double wt_phi_value(double t) { return t; }
WT_HD inline double wt_phi_derivative(double t) { return t; }
#include "warp.cuh"
extern "C" double mirror_slope_factor(double slope, double inner) { return wt_slope_factor(slope, inner); }
extern "C" int mirror_taps(double p, long long size, int padding, long long* index, double* frac) {
    WtAxisTaps taps;
    if (!wt_axis_taps(p, size, padding, false, taps)) return 0;
    index[0] = taps.index[0];
    index[1] = taps.index[1];
    *frac = taps.weight[0];  /* phi(t) = t above: the tap argument frac(p) */
    return 1;
}
"""


def test_per_element_helpers_mirror_warp_cuh(tmp_path):
    """The Numba engine's scalar helpers and warp.cuh's give the same answers: the slope factor
    (0·∞ := 0) on every special value, and an axis's two tap indices and argument
    (floor, frac, padding; -1 for a dropped tap) for positions from -1e17 to 1e17, on the
    lattice, half-way and at the edges."""
    import ctypes
    import itertools
    import subprocess

    import numba

    from warptheory.engines import numba_cpu
    from warptheory.engines.cuda import host

    try:
        compiler = host._compiler()
    except host.HostCompilerError as exc:
        pytest.skip(str(exc))
    src = tmp_path / "mirror.cpp"
    src.write_text(_MIRROR_SOURCE)
    lib_path = tmp_path / "mirror.so"
    subprocess.run([compiler, *host._CXX_FLAGS, "-I", str(host.cuda_source_dir()), str(src), "-o", str(lib_path)],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.mirror_slope_factor.restype = ctypes.c_double
    lib.mirror_slope_factor.argtypes = [ctypes.c_double, ctypes.c_double]
    lib.mirror_taps.restype = ctypes.c_int
    lib.mirror_taps.argtypes = [ctypes.c_double, ctypes.c_longlong, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_double)]

    @numba.njit
    def numba_taps(p, size, padding):
        floor, frac = numba_cpu._reduced_floor(p, size, padding)
        i0, i1 = numba_cpu._tap_pair(np.int64(floor), size, padding)
        return i0, i1, frac

    slope_factor = numba.njit(lambda s, i: numba_cpu._slope_factor(s, i))
    specials = [0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan]
    for slope, inner in itertools.product(specials, specials):
        a, b = slope_factor(slope, inner), lib.mirror_slope_factor(slope, inner)
        assert (np.isnan(a) and np.isnan(b)) or a == b, (slope, inner, a, b)
    index = (ctypes.c_longlong * 2)()
    frac = ctypes.c_double()
    positions = [-1e17, -1e6 - 0.25, -3.5, -2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 3.0, 3.75, 4.0, 4.5, 5.0, 1e6, 1e17]
    for p, size, padding in itertools.product(positions, (1, 2, 5), (0, 1, 2)):
        assert lib.mirror_taps(p, size, padding, index, ctypes.byref(frac)) == 1
        i0, i1, f = numba_taps(p, size, padding)
        assert (i0, i1, f) == (index[0], index[1], frac.value), (p, size, padding)
