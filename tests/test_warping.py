"""Tests of warptheory.warping: warp/unwarp and their gradients (eqs 2–4, 16–18, 49–51).

Map (equation → test):
  eq 2 (warp)            test_numba_matches_reference, test_zero_offsets_identity, test_integer_offsets_shift,
                         test_map_coordinates_parity, test_warp_matrix_is_the_operator
  eqs 3/17 (grad_x)      test_numba_matches_reference, test_adjoint_identities, test_grad_x_deterministic
  eqs 4/18 (grad_eps)    test_numba_matches_reference, test_grad_eps_finite_differences
  eq 49 (unwarp)         test_adjoint_identities (transpose of warp), test_warp_matrix_is_the_operator
  eqs 50–51              test_numba_matches_reference, test_adjoint_identities, test_grad_eps_finite_differences
Peers (torch grid_sample) are in tests/test_warping_peers.py.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import warptheory as wt
from warptheory.kernels import BUILTIN_KERNELS, T, kernel_from_sympy
from warptheory.warping import PADDINGS, unwarp, unwarp_backward, warp, warp_backward, warp_matrix

# Cubic Hermite "smoothstep" kernel: a user kernel that is C¹ at 0 and ±1, mean-preserving.
USER_KERNEL = kernel_from_sympy(
    sp.Piecewise((1 - 3 * T**2 + 2 * sp.Abs(T) ** 3, sp.Abs(T) <= 1), (0, True)), name="smoothstep"
)
ALL_KERNELS = [*BUILTIN_KERNELS, USER_KERNEL]

SETTINGS = settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.too_slow])


def random_problem(seed, d, dtype, offset_scale=2.0, batch=None, channels=None, spatial=None):
    """x, eps, grad_y of a small random problem with d spatial axes."""
    rng = np.random.default_rng(seed)
    batch = batch or int(rng.integers(1, 3))
    channels = channels or int(rng.integers(1, 4))
    if spatial is None:
        spatial = tuple(int(s) for s in rng.integers(1, 7 if d < 3 else 5, size=d))
    x = rng.normal(size=(batch, channels, *spatial)).astype(dtype)
    g = rng.normal(size=x.shape).astype(dtype)
    eps = (offset_scale * rng.normal(size=(batch, d, *spatial))).astype(dtype)
    return x, eps, g


problems = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 3),  # d
    st.sampled_from(PADDINGS),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([0.3, 2.0, 10.0]),  # offset scale: inside a cell, a few cells, mostly off-lattice
)


# an offset planted at about one position in seven: undefined (NaN, ±inf) or exactly on a kink
SPECIAL_OFFSETS = st.sampled_from([None, np.nan, np.inf, -np.inf, 0.5, -1.0])


def plant_special_offsets(rng, eps, special):
    """Set about a seventh of ``eps``'s entries, at random, to ``special`` (unless None)."""
    if special is not None:
        eps.reshape(-1)[rng.integers(0, eps.size, size=max(1, eps.size // 7))] = special


def assert_close_to_reference(actual, expected, dtype):
    """Both engines accumulate in float64 and round once to ``dtype``, so float32 results may
    differ by one rounding of each (2 ulp of the value); float64 results differ only by the
    summation order of at most N·2^d·(taps) terms, far below 1e-12 of the scale."""
    if expected is None:
        assert actual is None
        return
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(actual), finite)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    if dtype == np.float32:
        tol = 2 * np.finfo(np.float32).eps
    else:
        tol = 1e-12
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=tol, atol=tol * scale)
    np.testing.assert_array_equal(actual[~finite], expected[~finite])  # same NaN/inf pattern


# ----- engine agreement -------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL_KERNELS, ids=lambda k: k if isinstance(k, str) else k.name)
@SETTINGS
@given(problem=problems)
def test_numba_matches_reference(kernel, problem):
    """All four operations (eqs 2–4, 49–51) of the Numba engine equal the numpy reference."""
    seed, d, padding, dtype, scale = problem
    x, eps, g = random_problem(seed, d, dtype, scale)
    for fwd in (warp, unwarp):
        ours = fwd(x, eps, kernel, padding)
        ref = fwd(x, eps, kernel, padding, backend="numpy")
        assert_close_to_reference(ours, ref, dtype)
    for bwd in (warp_backward, unwarp_backward):
        ours = bwd(x, eps, g, kernel, padding)
        ref = bwd(x, eps, g, kernel, padding, backend="numpy")
        for a, b in zip(ours, ref):
            assert_close_to_reference(a, b, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["tri", "cos", "sqrt_tri"])
@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems)
def test_numba_matches_reference_many(kernel, problem):
    """The same comparison as test_numba_matches_reference, with many more drawn problems."""
    test_numba_matches_reference.hypothesis.inner_test(kernel, problem)


@pytest.mark.parametrize("need_x, need_eps", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_only_requested_gradients(need_x, need_eps, backend):
    x, eps, g = random_problem(0, 2, np.float64)
    full = warp_backward(x, eps, g, backend=backend)
    for bwd in (warp_backward, unwarp_backward):
        grad_x, grad_eps = bwd(x, eps, g, need_x=need_x, need_eps=need_eps, backend=backend)
        assert (grad_x is None) != need_x and (grad_eps is None) != need_eps
    grad_x, grad_eps = warp_backward(x, eps, g, need_x=need_x, need_eps=need_eps, backend=backend)
    if need_x:
        np.testing.assert_array_equal(grad_x, full[0])
    if need_eps:
        np.testing.assert_array_equal(grad_eps, full[1])


# ----- operator laws ----------------------------------------------------------------------
@SETTINGS
@given(problem=problems, kernel=st.sampled_from(["tri", "cos", "hann"]))
def test_adjoint_identities(problem, kernel):
    """eq 3 is the adjoint of eq 2, and unwarp (eq 49) is the transpose of warp; eq 50 likewise.

    float64 only: the inner products sum O(B·N·P) products of O(1) numbers, so the two
    sides agree to ~1e-15 of Σ|terms|; 1e-12 leaves room for the length of the sums."""
    seed, d, padding, _, scale = problem
    x, eps, g = random_problem(seed, d, np.float64, scale)
    magnitude = float(np.sum(np.abs(x)) * np.max(np.abs(g)) * 2**d + 1.0)

    grad_x, _ = warp_backward(x, eps, g, kernel, padding, need_eps=False)
    assert abs(np.vdot(warp(x, eps, kernel, padding), g) - np.vdot(x, grad_x)) <= 1e-12 * magnitude
    assert abs(np.vdot(unwarp(x, eps, kernel, padding), g) - np.vdot(x, warp(g, eps, kernel, padding))) <= (
        1e-12 * magnitude
    )
    grad_x_unwarp, _ = unwarp_backward(x, eps, g, kernel, padding, need_eps=False)
    assert abs(np.vdot(unwarp(x, eps, kernel, padding), g) - np.vdot(x, grad_x_unwarp)) <= 1e-12 * magnitude


def away_from_kinks(eps, rng, margin=0.1):
    """Move every sample position v + eps to a fraction in [margin, 1 - margin] (and off ±1/2
    for rect-like kernels), so that a finite difference never crosses a kink."""
    spatial = eps.shape[2:]
    grid = np.indices(spatial, dtype=np.float64)[None]
    position = grid + eps
    frac = rng.uniform(margin, 0.5 - margin, size=eps.shape) + rng.integers(0, 2, size=eps.shape) * 0.5
    return np.floor(position) + frac - grid


@SETTINGS
@given(problem=problems, kernel=st.sampled_from(["tri", "cos", "hann", "sqrt_tri", USER_KERNEL]))
def test_grad_eps_finite_differences(problem, kernel):
    """grad_eps (eqs 4 and 51) against a central difference of L = <op(x, eps), g> along a random
    direction.  float64, h = 1e-6: truncation O(h²·|φ'''|) ≈ 1e-11 and rounding O(1e-16/h) ≈ 1e-10
    relative to |L|, hence rtol 1e-6 with an absolute floor at that scale."""
    seed, d, padding, _, scale = problem
    x, eps, g = random_problem(seed, d, np.float64, scale)
    rng = np.random.default_rng(seed + 1)
    eps = away_from_kinks(eps, rng)
    direction = rng.normal(size=eps.shape)
    h = 1e-6
    for op, bwd in ((warp, warp_backward), (unwarp, unwarp_backward)):
        _, grad_eps = bwd(x, eps, g, kernel, padding, need_x=False)

        def loss(e):
            return float(np.vdot(op(x, e, kernel, padding), g))

        fd = (loss(eps + h * direction) - loss(eps - h * direction)) / (2 * h)
        analytic = float(np.vdot(grad_eps, direction))
        floor = 1e-6 * (np.sum(np.abs(x)) * np.max(np.abs(g)) * np.max(np.abs(direction)) + 1.0)
        assert abs(fd - analytic) <= 1e-6 * abs(analytic) + floor, (op.__name__, fd, analytic)


@pytest.mark.parametrize("kernel", ALL_KERNELS, ids=lambda k: k if isinstance(k, str) else k.name)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_zero_offsets_identity(kernel, padding, d):
    """φ(0) = 1 and φ(±1) = 0 exactly, so zero offsets give the identity bitwise (eq 2, 49)."""
    for dtype in (np.float32, np.float64):
        x, eps, _ = random_problem(d, d, dtype)
        eps[...] = 0
        assert np.array_equal(warp(x, eps, kernel, padding), x)
        assert np.array_equal(unwarp(x, eps, kernel, padding), x)


def shifted(x, shift, padding):
    """x[..., v + shift] with the padding applied, built from numpy indexing."""
    out = x
    for axis, s in enumerate(shift):
        size = x.shape[axis + 2]
        idx = np.arange(size) + s
        if padding == "periodic":
            out = np.take(out, idx % size, axis=axis + 2)
        elif padding == "border":
            out = np.take(out, np.clip(idx, 0, size - 1), axis=axis + 2)
        else:
            inside = (idx >= 0) & (idx < size)
            out = np.take(out, np.clip(idx, 0, size - 1), axis=axis + 2)
            mask = inside.reshape([-1 if a == axis + 2 else 1 for a in range(x.ndim)])
            out = np.where(mask, out, 0).astype(x.dtype)
    return out


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 3),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    kernel=st.sampled_from(ALL_KERNELS),
    data=st.data(),
)
def test_integer_offsets_shift(seed, d, padding, dtype, kernel, data):
    """A constant integer offset s gives y[v] = x[v + s] exactly (bitwise), for any kernel."""
    x, eps, _ = random_problem(seed, d, dtype)
    shift = data.draw(st.lists(st.integers(-8, 8), min_size=d, max_size=d))
    for k in range(d):
        eps[:, k] = shift[k]
    assert np.array_equal(warp(x, eps, kernel, padding), shifted(x, shift, padding))


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 3),
    kernel=st.sampled_from(["tri", "cos"]),
    turns=st.integers(-(10**6), 10**6),
)
def test_large_offsets_periodic_exact(seed, d, kernel, turns):
    """Periodic padding: eps and eps + m·S_k give bitwise the same result, for |m·S| up to ~5e6.

    Offsets are multiples of 1/64 so that v + eps is exact in float64 either way."""
    x, eps, g = random_problem(seed, d, np.float64)
    eps = np.round(eps * 64) / 64
    spatial = x.shape[2:]
    far = eps.copy()
    for k in range(d):
        far[:, k] += turns * spatial[k]
    assert np.array_equal(warp(x, far, kernel, "periodic"), warp(x, eps, kernel, "periodic"))
    assert np.array_equal(unwarp(x, far, kernel, "periodic"), unwarp(x, eps, kernel, "periodic"))
    for a, b in zip(warp_backward(x, far, g, kernel, "periodic"), warp_backward(x, eps, g, kernel, "periodic")):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("magnitude", [1e6, -1e6, 1e17, -3e300])
def test_huge_offsets(padding, magnitude):
    """Offsets far outside the lattice neither crash nor index out of bounds, and match the reference;
    zeros padding gives exactly 0 and border padding the (clamped) edge value."""
    x, eps, g = random_problem(7, 2, np.float64, batch=2, channels=2, spatial=(3, 4))
    eps = eps + magnitude
    y = warp(x, eps, "tri", padding)
    assert_close_to_reference(y, warp(x, eps, "tri", padding, backend="numpy"), np.float64)
    for a, b in zip(warp_backward(x, eps, g, "cos", padding), warp_backward(x, eps, g, "cos", padding, backend="numpy")):
        assert_close_to_reference(a, b, np.float64)
    assert_close_to_reference(unwarp(x, eps, "tri", padding), unwarp(x, eps, "tri", padding, backend="numpy"), np.float64)
    if padding == "zeros":
        assert not np.any(y)
    if padding == "border" and magnitude > 0:
        # tri is a partition of unity, so every position reads the corner x[..., -1, -1]
        np.testing.assert_allclose(y, np.broadcast_to(x[..., -1:, -1:], y.shape), rtol=1e-15)


# ----- determinism ------------------------------------------------------------------------
def test_grad_x_deterministic():
    """grad_x (eq 3) and unwarp (eq 49) are bitwise identical across runs and thread counts.

    Offsets that pull every sample towards a few pixels make many outputs land on the same
    input, which is where a racy scatter would reorder float32 sums."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 3, 40, 50)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    grid = np.indices((40, 50), dtype=np.float32)
    eps = (-0.8 * grid + rng.normal(size=(2, 2, 40, 50))).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            grad_x, _ = warp_backward(x, eps, g, need_eps=False)
            results.append((grad_x.tobytes(), unwarp(x, eps, "cos", "periodic").tobytes()))
    finally:
        numba.set_num_threads(before)
    assert all(r == results[0] for r in results)


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 0.3, 2.0, 10.0, 1e6]),
    special=SPECIAL_OFFSETS,
)
def test_bilinear_fused_path_is_bitwise(seed, padding, dtype, scale, special):
    """The Numba engine's fused 2-D ``tri`` forward (taps computed inside each block) equals the
    two-stage path (tap arrays, then the gather) bitwise, NaN/inf offsets and thin images included."""
    from warptheory.engines import numba_cpu as _engine_numba
    from warptheory.kernels import get_kernel

    rng = np.random.default_rng(seed)
    spatial = tuple(int(v) for v in rng.integers(1, 40, size=2))
    x, eps, _ = random_problem(seed, 2, dtype, offset_scale=scale, batch=2, channels=int(rng.integers(1, 10)), spatial=spatial)
    plant_special_offsets(rng, eps, special)
    tri = get_kernel("tri")
    fused = _engine_numba.warp(x, eps, tri, padding)
    staged = _engine_numba.warp(x, eps, tri, padding, fused=False)
    assert fused.dtype == staged.dtype and fused.tobytes() == staged.tobytes()


@settings(deadline=None, max_examples=80)
@given(
    seed=st.integers(0, 2**32 - 1),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 0.3, 2.0, 10.0, 1e6]),
    special=SPECIAL_OFFSETS,
    workers=st.sampled_from([None, 1, 2, 3]),
    kernel=st.sampled_from(["tri", "cos", "user"]),
    operation=st.sampled_from(["warp", "unwarp_backward"]),
)
def test_channel_last_gather_is_bitwise(seed, padding, dtype, scale, special, workers, kernel, operation):
    """2-D gathers through channel-last copies (eight channels per vector,
    ``_gather_2d_channel_last``) equal the plain two-stage path bitwise: the fused ``tri``
    forward, other kernels' forward and unwarp's grad_x (eq 50); channel counts with and
    without a remainder, sizes with position tails, NaN/inf offsets, the images split over
    workers whole (1, 2, 3 buffers) or one after the other, or as the engine chooses."""
    from warptheory.engines import numba_cpu as _engine_numba
    from warptheory.kernels import get_kernel

    rng = np.random.default_rng(seed)
    spatial = tuple(int(v) for v in rng.integers(2, 40, size=2))
    channels, batch = int(rng.integers(8, 26)), int(rng.integers(1, 6))
    x, eps, g = random_problem(seed, 2, dtype, offset_scale=scale, batch=batch, channels=channels, spatial=spatial)
    plant_special_offsets(rng, eps, special)
    phi = USER_KERNEL if kernel == "user" else get_kernel(kernel)
    assert _engine_numba._channel_last_workers(batch, channels, np.asarray(spatial), x.dtype.itemsize) >= 1

    def run(channel_last):
        if operation == "warp":
            return _engine_numba.warp(x, eps, phi, padding, fused=channel_last)
        taps = _engine_numba._taps(eps, phi, padding, True, False, fused=channel_last)
        return _engine_numba._apply_gather(g, taps, padding, channel_last=channel_last)

    with pytest.MonkeyPatch.context() as patch:
        if workers is not None:
            patch.setattr(_engine_numba, "_channel_last_workers", lambda *args: workers)
        ours = run(True)
    plain = run(False)
    assert ours.dtype == plain.dtype and ours.tobytes() == plain.tobytes()


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 0.3, 2.0, 10.0, 1e6]),
    special=SPECIAL_OFFSETS,
    workers=st.sampled_from([None, 1, 2, 3]),
    kernel=st.sampled_from(["tri", "cos", "user"]),
)
def test_channel_last_scatter_is_bitwise(seed, padding, dtype, scale, special, workers, kernel):
    """The 2-D scatter (eq 3: warp's grad_x; eq 49: unwarp) through channel-last float64
    accumulators (``_scatter_2d_channel_last``) equals the plain channel-plane scatter
    bitwise: the same fused multiply-adds reach every element in the same order, so this
    also pins grad_x's determinism to the plain path's.  Channel remainders, position
    tails, thin images, NaN/inf offsets, 1–3 workers or the engine's choice."""
    from warptheory.engines import numba_cpu as _engine_numba
    from warptheory.kernels import get_kernel

    rng = np.random.default_rng(seed)
    spatial = tuple(int(v) for v in rng.integers(1, 40, size=2))
    channels, batch = int(rng.integers(8, 26)), int(rng.integers(1, 6))
    _, eps, g = random_problem(seed, 2, dtype, offset_scale=scale, batch=batch, channels=channels, spatial=spatial)
    plant_special_offsets(rng, eps, special)
    phi = USER_KERNEL if kernel == "user" else get_kernel(kernel)
    taps = _engine_numba._taps(eps, phi, padding, True, False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_engine_numba, "_scatter_workers", lambda *args: workers or min(batch, 2))
        ours = _engine_numba._apply_scatter(g, taps, padding)
    plain = _engine_numba._apply_scatter(g, taps, padding, channel_last=False)
    assert ours.dtype == plain.dtype and ours.tobytes() == plain.tobytes()


def test_channel_last_scatter_applies_where_it_should():
    """2-D only, eight channels or more, tasks that balance over the threads, bounded scratch."""
    from warptheory.engines import numba_cpu as _engine_numba

    workers = _engine_numba._scatter_workers
    threads = numba.get_num_threads()
    assert workers(threads, 7, (64, 64)) == 0
    assert workers(threads, 16, (64,)) == 0
    assert workers(threads, 16, (8, 8, 8)) == 0
    assert workers(threads, 16, (128, 128)) == threads
    assert workers(threads, 8, (4096, 4096)) == 0  # 1 GB of accumulators
    if threads > 1:
        assert workers(1, 8 * threads + 8, (64, 64)) == 0  # unbalanced: threads + 1 tasks


def test_channel_last_forward_applies_where_it_should():
    """Eight channels or more, images of at least 2 × 2 and a bounded copy; images split over
    the threads only when that balances and each copy is small."""
    from warptheory.engines import numba_cpu as _engine_numba

    workers = _engine_numba._channel_last_workers
    threads = numba.get_num_threads()
    assert workers(threads, 7, (64, 64), 4) == 0
    assert workers(threads, 16, (64,), 4) == 0
    assert workers(threads, 16, (8, 8, 8), 4) == 0
    assert workers(threads, 8, (1, 64), 4) == 0
    assert workers(threads, 8, (64, 1), 8) == 0
    assert workers(1, 8, (4096, 4096), 4) == 0  # a 512 MB copy
    assert workers(1, 16, (128, 128), 4) == 1
    assert workers(threads, 16, (128, 128), 4) == threads
    assert workers(4 * threads, 9, (32, 32), 8) == threads
    assert workers(threads, 64, (512, 512), 4) == 1  # 64 MB: one shared copy
    if threads > 1:
        assert workers(threads + 1, 16, (128, 128), 4) == 1  # unbalanced


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    padding=st.sampled_from(PADDINGS),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 0.3, 2.0, 10.0, 1e6, 1e17]),
    special=SPECIAL_OFFSETS,
    d=st.sampled_from([1, 2]),
)
def test_bilinear_taps_are_bitwise(seed, padding, dtype, scale, special, d):
    """The vectorised 1-D and 2-D ``tri`` taps (floors, φ of both taps per axis) equal those of the
    generic per-kernel tap stage bitwise, NaN/inf offsets, huge offsets, thin images and 1-D lines
    of several blocks included.  (No φ' taps: the engine reads tri's constant slopes instead,
    ``test_plan.py``.)"""
    from warptheory.engines import numba_cpu as _engine_numba
    from warptheory.kernels import get_kernel

    rng = np.random.default_rng(seed)
    spatial = tuple(int(v) for v in rng.integers(1, 40 if d == 2 else 3 * _engine_numba._BLOCK, size=d))
    eps = (scale * rng.normal(size=(2, d, *spatial))).astype(dtype)
    plant_special_offsets(rng, eps, special)
    tri = get_kernel("tri")
    fast = [a.copy() for a in _engine_numba._taps(eps, tri, padding, True, False)]
    generic = _engine_numba._taps(eps, tri, padding, True, False, fused=False)
    for a, b in zip(fast, generic):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("width", [1, 2, 3, 7, 48, 127, 128, 1000, 65535, 2**31 - 2])
def test_bilinear_row_and_column_are_exact_up_to_2_31(width):
    """The bilinear taps find a position's row as ``floor((pos + 0.5) · fl(1/W))`` (a multiplication,
    not a division: ``_tri_block_2d``'s docstring proves it exact below 2**31).  Check the floors it
    returns at zero offset against integer division, at both ends of rows up to the largest
    position the engine accepts, where the margin of that proof is smallest."""
    from warptheory.engines import numba_cpu as _engine_numba

    last = 2**31 - 2
    rows = np.unique(np.r_[0, 1, np.linspace(0, last // width, 200).astype(np.int64), last // width])
    positions = np.unique(np.r_[rows * width, rows * width + width - 1, last])
    positions = positions[positions <= last]
    for pos in positions.tolist():
        block = _engine_numba._BLOCK  # the position as the engine's loops give it: block start + offset
        f0, f1, *_ = _engine_numba._tri_taps_at(np.float64(pos - pos % block), pos % block, 0.0, 0.0,
                                                np.float64(width), 1.0 / width)
        assert (f0, f1) == (pos // width, pos % width), pos


def test_tap_workspace_reuse_across_shapes():
    """The Numba engine reuses its per-thread tap buffers (see _engine_numba._scratch): calls
    with growing, shrinking and differently shaped problems must each equal the reference,
    so no call reads taps left behind by another."""
    cases = [(2, (9, 11)), (3, (4,)), (1, (20, 7)), (2, (3, 4, 5)), (1, (2, 2))]
    for seed, (channels, spatial) in enumerate(cases * 2):
        d = len(spatial)
        x, eps, g = random_problem(seed, d, np.float64, batch=2, channels=channels, spatial=spatial)
        for fwd in (warp, unwarp):
            assert_close_to_reference(fwd(x, eps, "cos"), fwd(x, eps, "cos", backend="numpy"), np.float64)
        for ours, ref in zip(warp_backward(x, eps, g, "cos"), warp_backward(x, eps, g, "cos", backend="numpy")):
            assert_close_to_reference(ours, ref, np.float64)


def test_scratch_is_cache_line_aligned(monkeypatch):
    """Every scratch array starts on a 64-byte boundary, whatever its dtype, its size (workspace
    or, above _WORKSPACE_BYTES, per call) and the buffer it reuses: the channel-last copies and
    accumulators move whole cache lines, and a buffer that starts inside one splits each of them.
    """
    from warptheory.engines import numba_cpu

    monkeypatch.setattr(numba_cpu, "_WORKSPACE_BYTES", 4096)
    for name, shape, dtype in [("a", (3, 5), np.float32), ("a", (7,), np.float64), ("a", (2, 9), np.int32),
                               ("b", (1,), np.uint8), ("b", (0, 4), np.float64), ("c", (64, 65), np.float64)]:
        for _ in range(3):
            array = numba_cpu._scratch(name, shape, dtype)
            assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
            assert array.ctypes.data % 64 == 0, (name, shape, dtype)
            array[...] = 1  # writable, and a later request of another shape may reuse it


def test_concurrent_python_threads():
    """The engine releases the GIL and keeps its tap and channel-last buffers per thread: warps
    running in several Python threads at once give bitwise the results of sequential calls."""
    from concurrent.futures import ThreadPoolExecutor

    # 5 channels take the plane loops, 9 and 16 the channel-last copies and accumulators
    problems = [
        random_problem(seed, 2, np.float32, batch=2, channels=(5, 9, 16)[seed % 3], spatial=(30 + seed, 40))
        for seed in range(6)
    ]

    def run(problem):
        x, eps, g = problem
        grad_x, grad_eps = warp_backward(x, eps, g)
        return warp(x, eps).tobytes(), grad_x.tobytes(), grad_eps.tobytes()

    sequential = [run(p) for p in problems]
    with ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(3):
            assert list(pool.map(run, problems)) == sequential


# ----- scipy parity -----------------------------------------------------------------------
@pytest.mark.parametrize("padding, mode", [("zeros", "grid-constant"), ("periodic", "grid-wrap"), ("border", "nearest")])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_map_coordinates_parity(padding, mode, d):
    """eq 2 with the bilinear kernel is scipy.ndimage.map_coordinates(order=1).

    Note: scipy's mode "constant" does *not* interpolate between the edge and the zero
    padding (it drops to cval beyond the edge), so "grid-constant" is the zeros padding."""
    from scipy import ndimage

    x, eps, _ = random_problem(5 + d, d, np.float64, offset_scale=3.0, batch=2, channels=2)
    y = warp(x, eps, "tri", padding)
    grid = np.indices(x.shape[2:], dtype=np.float64)
    for b in range(x.shape[0]):
        for n in range(x.shape[1]):
            expected = ndimage.map_coordinates(x[b, n], grid + eps[b], order=1, mode=mode)
            # both are float64 sums of 2^d products; they differ by the evaluation order only
            np.testing.assert_allclose(y[b, n], expected, rtol=1e-13, atol=1e-13)


# ----- sparse matrix ----------------------------------------------------------------------
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_warp_matrix_is_the_operator(padding, d):
    """K x = warp(x) and Kᵀ x = unwarp(x) (eq 49 is the transpose of eq 2)."""
    x, eps, _ = random_problem(20 + d, d, np.float64, batch=1, channels=2)
    matrix = warp_matrix(eps[0], "cos", padding)
    assert matrix.shape == (x[0, 0].size,) * 2
    y, y_un = warp(x, eps, "cos", padding), unwarp(x, eps, "cos", padding)
    for n in range(x.shape[1]):
        # a row has at most 2^d terms, so float64 agreement is to a few ulps
        np.testing.assert_allclose(matrix @ x[0, n].ravel(), y[0, n].ravel(), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(matrix.T @ x[0, n].ravel(), y_un[0, n].ravel(), rtol=1e-13, atol=1e-13)


def test_warp_matrix_errors():
    with pytest.raises(ValueError, match="eps: .*finite"):
        warp_matrix(np.full((2, 3, 3), np.nan))
    with pytest.raises(ValueError, match=r"eps: expected shape \(d, \*S\)"):
        warp_matrix(np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="eps: expected a numpy array"):
        warp_matrix([[0.0, 1.0]])
    with pytest.raises(ValueError, match="padding"):
        warp_matrix(np.zeros((1, 4)), padding="reflect")


# ----- bad input --------------------------------------------------------------------------
def test_bad_input_errors():
    x = np.zeros((2, 3, 4, 5))
    eps = np.zeros((2, 2, 4, 5))
    with pytest.raises(TypeError, match="x: expected a numpy or CuPy array, got list"):
        warp(x.tolist(), eps)
    with pytest.raises(TypeError, match="eps: expected a numpy or CuPy array"):
        warp(x, 0.5)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        warp(x.astype(np.int64), eps)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got float16"):
        warp(x.astype(np.float16), eps.astype(np.float16))
    with pytest.raises(TypeError, match="eps: dtype float32 does not match x's dtype float64"):
        warp(x, eps.astype(np.float32))
    with pytest.raises(TypeError, match="grad_y: dtype float32"):
        warp_backward(x, eps, x.astype(np.float32))
    with pytest.raises(ValueError, match="x: expected shape .* 1 to 3 spatial axes"):
        warp(np.zeros((1, 1, 2, 2, 2, 2)), np.zeros((1, 4, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="x: expected shape"):
        warp(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"eps: expected shape \(B, d, \*S\) = \(2, 2, 4, 5\)"):
        warp(x, np.zeros((2, 1, 4, 5)))
    with pytest.raises(ValueError, match="eps: expected shape"):
        warp(x, np.zeros((1, 2, 4, 5)))
    with pytest.raises(ValueError, match="eps: expected shape"):
        warp(x, np.zeros((2, 2, 5, 4)))
    with pytest.raises(ValueError, match="grad_y: expected the shape of x"):
        warp_backward(x, eps, np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="x: every spatial size must be at least 1"):
        warp(np.zeros((1, 1, 0, 3)), np.zeros((1, 2, 0, 3)))
    with pytest.raises(ValueError, match="padding: expected one of 'zeros', 'periodic', 'border', got 'reflect'"):
        warp(x, eps, padding="reflect")
    with pytest.raises(ValueError, match="kernel: unknown kernel 'bicubic'"):
        warp(x, eps, kernel="bicubic")
    with pytest.raises(ValueError, match="backend: expected None or one of"):
        warp(x, eps, backend="torch")
    with pytest.raises(TypeError, match="need_eps: expected a bool"):
        warp_backward(x, eps, x, need_eps=1)


def test_cupy_backend_needs_cupy_arrays():
    x, eps = np.zeros((1, 1, 3)), np.zeros((1, 1, 3))
    with pytest.raises(TypeError, match="backend: 'cupy' cannot take numpy arrays"):
        warp(x, eps, backend="cupy")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_empty_batch_and_channels(backend):
    for shape in [(0, 2, 3, 3), (2, 0, 3, 3)]:
        x = np.zeros(shape)
        eps = np.zeros((shape[0], 2, 3, 3))
        assert warp(x, eps, backend=backend).shape == shape
        assert unwarp(x, eps, backend=backend).shape == shape
        grad_x, grad_eps = warp_backward(x, eps, x, backend=backend)
        assert grad_x.shape == shape and grad_eps.shape == eps.shape
        assert not np.any(grad_eps)


# ----- NaN / inf policy -------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_undefined_offsets(bad, padding, backend):
    """A NaN/±inf offset at position v: gathers at v are NaN (warp y, both grad_eps, unwarp grad_x);
    scatters from v contribute nothing (warp grad_x, unwarp y); everything else is untouched."""
    x, eps, g = random_problem(3, 2, np.float64, batch=2, channels=2, spatial=(4, 5))
    bad_at = (1, slice(None), 1, 2)  # batch 1, position (1, 2)
    eps_bad = eps.copy()
    eps_bad[1, 0, 1, 2] = bad
    # Reference values: the same problem with that position's scatter removed.
    g_without = g.copy()
    g_without[1, :, 1, 2] = 0
    x_without = x.copy()
    x_without[1, :, 1, 2] = 0

    y = warp(x, eps_bad, "tri", padding, backend=backend)
    assert np.all(np.isnan(y[bad_at]))
    assert np.isnan(y).sum() == x.shape[1]
    grad_x, grad_eps = warp_backward(x, eps_bad, g, "tri", padding, backend=backend)
    grad_x_without, grad_eps_clean = warp_backward(x, eps, g_without, "tri", padding, backend=backend)
    np.testing.assert_allclose(grad_x, grad_x_without, rtol=1e-13, atol=1e-13)
    assert np.all(np.isnan(grad_eps[bad_at])) and np.isnan(grad_eps).sum() == 2

    y_un = unwarp(x, eps_bad, "tri", padding, backend=backend)
    np.testing.assert_allclose(y_un, unwarp(x_without, eps, "tri", padding, backend=backend), rtol=1e-13, atol=1e-13)
    grad_x_un, grad_eps_un = unwarp_backward(x, eps_bad, g, "tri", padding, backend=backend)
    assert np.all(np.isnan(grad_x_un[bad_at])) and np.isnan(grad_x_un).sum() == x.shape[1]
    assert np.all(np.isnan(grad_eps_un[bad_at])) and np.isnan(grad_eps_un).sum() == 2


@pytest.mark.parametrize("padding", ["zeros", "periodic", "border"])
@pytest.mark.parametrize("operation", ["warp_backward", "unwarp_backward"])
def test_infinite_slope_on_the_lattice_matches_factorised_reference(operation, padding):
    """sqrt_tri has φ'(-1⁺) = +∞: on-lattice positions give ±∞ or 0, never NaN from ∞·0 (s02 note)."""
    from warptheory.engines import reference as _engine_numpy

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 5, 6))
    g = rng.normal(size=x.shape)
    eps = rng.integers(-2, 3, size=(2, 2, 5, 6)).astype(float)
    eps[:, 1, :2] += 0.3  # on the lattice along axis 0 only
    kernel = wt.get_kernel("sqrt_tri")
    got = getattr(wt, operation)(x, eps, g, kernel=kernel, padding=padding)[1]
    want = getattr(_engine_numpy, operation)(x, eps, g, kernel, padding)[1]
    assert np.isinf(want).any() and not np.isnan(want).any()
    # Finite entries: float64 sums of a few O(1) terms in a different order.
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
