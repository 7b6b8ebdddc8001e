"""The vector intrinsics of warptheory.engines.simd against naive float64 numpy loops.

Each intrinsic fixes its summation order (module docstring), so the reference below
computes the same operations in the same order with numpy scalars and the comparison is
bitwise; only the fused multiply-adds of ``corner_sums4`` have no numpy counterpart,
and there the reference is a scalar numba loop with the same FMA contraction (bitwise)
plus a plain float64 numpy sum (relative 1e-15: one rounding per term, four terms).
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.core.errors import TypingError

from warptheory.engines.simd import (
    corner_sums4,
    from_channel_last8,
    gather4,
    gather_channel_last8,
    plain_gather4,
    plain_gather_channel_last8,
    prefetch,
    scatter4,
    scatter_channel_last16,
    transpose8x16,
)


@numba.njit(cache=False)
def _run_gather4(xb, yb, first, pos, q, width, cw, j):
    gather4(xb, yb, first, pos, q, width, cw, j)


@numba.njit(cache=False)
def _run_corner_sums4(xb, gb, first, pos, q, width, csum, j):
    corner_sums4(xb, gb, first, pos, q, width, csum, j)


@numba.njit(cache=False)
def _run_scatter4(acc, a, gb, n, pos, q, width, cw, j):
    scatter4(acc, a, gb, n, pos, q, width, cw, j)


@numba.njit(cache=False)
def _run_transpose8x16(src, dst, row, col):
    transpose8x16(src, dst, row, col)


# compiled as the engine compiles (FMA contraction allowed): the intrinsic must keep its
# products and sums apart all the same
@numba.njit(cache=False, fastmath={"contract"})
def _run_gather_channel_last8(xt, yb, first, start, width, fast, cw, j):
    gather_channel_last8(xt, yb, first, start, width, fast, cw, j)


@numba.njit(cache=False, fastmath={"contract"})
def _run_scatter_channel_last16(acc, column, gb, first, start, j, width, fast, cidx, cw):
    scatter_channel_last16(acc, column, gb, first, start, j, width, fast, cidx, cw)


@numba.njit(cache=False)
def _run_from_channel_last8(acc, column, yb, first, pos):
    from_channel_last8(acc, column, yb, first, pos)


@numba.njit(cache=False, fastmath={"contract"})
def _scalar_scatter_channel_last(acc, column, gb, first, start, j, width, fast, cidx, cw):
    """The scatter's scalar loop on a channel-last accumulator: one FMA per element, in
    (position, corner) order."""
    for i in range(16):
        q = np.int64(fast[j + i])
        for c in range(4):
            row = cidx[j + i, c] if fast[j + i] == 0xFFFFFFFF else q + (c & 1) + (width if c >= 2 else 0)
            for k in range(8):
                acc[row, column + k] += cw[j + i, c] * np.float64(gb[first + k, start + j + i])


@numba.njit(cache=False, fastmath={"contract"})
def _scalar_scatter(acc, a, gb, n, pos, q, width, cw, j):
    """The scalar loop scatter4 replaced in the engine: acc += w·g, one FMA per element."""
    corners = (q, q + 1, q + width, q + width + 1)
    for k in range(4):
        h = np.float64(gb[n + k, pos])
        for c in range(4):
            acc[a + k, corners[c]] += cw[j, c] * h


@numba.njit(cache=False, fastmath={"contract"})
def _scalar_corner_sums(xb, gb, first, pos, q, width, csum, j):
    """The scalar loop corner_sums4 replaced in the engine (same order, same contraction)."""
    corners = (q, q + 1, q + width, q + width + 1)
    h0 = np.float64(gb[first, pos])
    h1 = np.float64(gb[first + 1, pos])
    h2 = np.float64(gb[first + 2, pos])
    h3 = np.float64(gb[first + 3, pos])
    for c in range(4):
        i = corners[c]
        csum[j, c] += h0 * xb[first, i] + h1 * xb[first + 1, i] + h2 * xb[first + 2, i] + h3 * xb[first + 3, i]


@numba.njit(cache=False)
def _prefetch_far(xb):
    prefetch(xb, 0, -(2**40))
    prefetch(xb, xb.shape[0] + 10**6, 0)
    return xb[0, 0]


problems = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.sampled_from([np.float32, np.float64]),
    st.integers(2, 9),  # width
    st.integers(4, 7),  # channels
)


def _problem(seed, dtype, width, channels):
    rng = np.random.default_rng(seed)
    height = 4
    xb = rng.normal(size=(channels, height * width)).astype(dtype)
    gb = rng.normal(size=(channels, height * width)).astype(dtype)
    cw = rng.uniform(-1, 1, size=(3, 4))
    first = int(rng.integers(0, channels - 3))
    row = int(rng.integers(0, height - 1))
    col = int(rng.integers(0, width - 1))
    q = np.uint32(row * width + col)  # the engine passes the fast index as uint32
    return rng, xb, gb, cw, first, q


@settings(deadline=None, max_examples=60)
@given(problem=problems)
def test_gather4_matches_pairwise_float64_sum(problem):
    """y[n+k, pos] = (w0 x[q] + w1 x[q+1]) + (w2 x[q+W] + w3 x[q+W+1]) in float64, rounded once."""
    seed, dtype, width, channels = problem
    rng, xb, _, cw, first, q = _problem(seed, dtype, width, channels)
    yb = np.full_like(xb, np.nan)
    j, pos = 1, int(rng.integers(0, xb.shape[1]))
    _run_gather4(xb, yb, first, pos, q, width, cw, j)
    q = int(q)
    for k in range(4):
        x = xb[first + k].astype(np.float64)
        w = cw[j]
        want = (w[0] * x[q] + w[1] * x[q + 1]) + (w[2] * x[q + width] + w[3] * x[q + width + 1])
        assert yb[first + k, pos] == dtype(want)
    # nothing else written
    untouched = np.ones(yb.shape, dtype=bool)
    untouched[first:first + 4, pos] = False
    assert np.all(np.isnan(yb[untouched]))


@settings(deadline=None, max_examples=60)
@given(problem=problems)
def test_corner_sums4_matches_scalar_loop(problem):
    """csum[j, c] += Σ_k g[n+k, pos] x[n+k, corner_c]: bitwise the engine's former scalar loop,
    and the plain float64 sum to 1e-15 relative (FMA rounding of four terms)."""
    seed, dtype, width, channels = problem
    rng, xb, gb, _, first, q = _problem(seed, dtype, width, channels)
    start = rng.normal(size=(3, 4))
    ours, scalar = start.copy(), start.copy()
    j, pos = 2, int(rng.integers(0, xb.shape[1]))
    _run_corner_sums4(xb, gb, first, pos, q, width, ours, j)
    _scalar_corner_sums(xb, gb, first, pos, int(q), width, scalar, j)
    np.testing.assert_array_equal(ours, scalar)
    q = int(q)
    corners = [q, q + 1, q + width, q + width + 1]
    g = gb[first:first + 4, pos].astype(np.float64)
    want = start.copy()
    want[j] += [np.dot(g, xb[first:first + 4, c].astype(np.float64)) for c in corners]
    np.testing.assert_allclose(ours, want, rtol=1e-15, atol=1e-15 * np.abs(want).max())


@settings(deadline=None, max_examples=60)
@given(problem=problems)
def test_scatter4_matches_scalar_fma_loop(problem):
    """acc[a+k, corner_c] += cw[j, c]·g[n+k, pos]: bitwise the engine's former scalar loop (one
    FMA per element), and the float64 numpy update to one rounding."""
    seed, dtype, width, channels = problem
    rng, _, gb, cw, first, q = _problem(seed, dtype, width, channels)
    start = rng.normal(size=(channels + 2, gb.shape[1] + 3))
    ours, scalar = start.copy(), start.copy()
    a, j, pos = 1, 0, int(rng.integers(0, gb.shape[1]))
    _run_scatter4(ours, a, gb, first, pos, q, width, cw, j)
    _scalar_scatter(scalar, a, gb, first, pos, int(q), width, cw, j)
    np.testing.assert_array_equal(ours, scalar)
    q = int(q)
    want = start.copy()
    for k in range(4):
        for c, u in enumerate((q, q + 1, q + width, q + width + 1)):
            want[a + k, u] += cw[j, c] * np.float64(gb[first + k, pos])
    # numpy rounds the product and then the sum; the FMA only the sum: both within one ulp
    # of the larger of |acc| and |w·g| (absolute, since the sum may cancel)
    scale = max(np.abs(start).max(), np.abs(cw[j]).max() * np.abs(gb[first:first + 4, pos]).max())
    np.testing.assert_allclose(ours, want, rtol=0, atol=2 * np.finfo(np.float64).eps * scale)


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    rows=st.integers(8, 12),
    cols=st.integers(16, 40),
)
def test_transpose8x16_is_a_transpose(seed, dtype, rows, cols):
    """dst[col + j, row + i] = src[row + i, col + j] for the 8 × 16 block and nothing else."""
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(rows, cols)).astype(dtype)
    dst = np.full((cols, rows), np.nan, dtype=dtype)
    row, col = int(rng.integers(0, rows - 7)), int(rng.integers(0, cols - 15))
    _run_transpose8x16(src, dst, row, col)
    block = (slice(col, col + 16), slice(row, row + 8))
    assert dst[block].tobytes() == src[row:row + 8, col:col + 16].T.copy().tobytes()
    untouched = np.ones(dst.shape, dtype=bool)
    untouched[block] = False
    assert np.all(np.isnan(dst[untouched]))


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    width=st.integers(2, 9),
    groups=st.integers(1, 3),
)
def test_gather_channel_last8_matches_pairwise_float64_sum(seed, dtype, width, groups):
    """y[first + c, start + j + i] = (w0 x[q] + w1 x[q+1]) + (w2 x[q+W] + w3 x[q+W+1]) in float64,
    rounded once (gather4's order, bitwise), from a channel-last x, for 8 positions × 8
    channels; a slow-marked position reads corner 0 and is written (the engine overwrites it)."""
    rng = np.random.default_rng(seed)
    height = 4
    npos = height * width
    channels = 8 * groups
    xt = rng.normal(size=(npos, channels)).astype(dtype)
    yb = np.full((channels, npos + 24), np.nan, dtype=dtype)
    cw = rng.uniform(-1, 1, size=(12, 4))
    rows = rng.integers(0, height - 1, size=12)
    cols = rng.integers(0, width - 1, size=12)
    fast = (rows * width + cols).astype(np.uint32)
    fast[rng.integers(0, 12)] = np.uint32(0xFFFFFFFF)
    first, start, j = 8 * int(rng.integers(0, groups)), int(rng.integers(0, npos + 8)), int(rng.integers(0, 5))
    _run_gather_channel_last8(xt, yb, first, start, width, fast, cw, j)
    for i in range(8):
        q = 0 if fast[j + i] == 0xFFFFFFFF else int(fast[j + i])
        w = cw[j + i]
        x = xt[[q, q + 1, q + width, q + width + 1], first:first + 8].astype(np.float64)
        want = ((w[0] * x[0] + w[1] * x[1]) + (w[2] * x[2] + w[3] * x[3])).astype(dtype)
        assert yb[first:first + 8, start + j + i].tobytes() == want.tobytes()
    untouched = np.ones(yb.shape, dtype=bool)
    untouched[first:first + 8, start + j:start + j + 8] = False
    assert np.all(np.isnan(yb[untouched]))


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    width=st.integers(2, 9),
    overlap=st.booleans(),
)
def test_scatter_channel_last16_matches_scalar_fma_loop(seed, dtype, width, overlap):
    """16 positions × 8 channels into a channel-last accumulator: bitwise the scalar FMA loop
    in the same order (also when positions share corners: ``overlap`` puts them all on a
    few cells), slow positions through their listed corners."""
    rng = np.random.default_rng(seed)
    height = 4
    npos = height * width
    channels = 8 * int(rng.integers(1, 3))
    gb = rng.normal(size=(channels, npos + 24)).astype(dtype)
    cw = rng.uniform(-1, 1, size=(20, 4))
    cells = rng.integers(0, 2, size=20) if overlap else rng.integers(0, (height - 1) * (width - 1), size=20)
    fast = ((cells // (width - 1)) * width + cells % (width - 1)).astype(np.uint32)
    slow = rng.random(20) < 0.2
    fast[slow] = np.uint32(0xFFFFFFFF)
    cidx = rng.integers(0, npos + 1, size=(20, 4)).astype(np.int64)
    start = rng.normal(size=(npos + 1, 16))
    ours, scalar = start.copy(), start.copy()
    column, first = 8 * int(rng.integers(0, 2)), 8 * int(rng.integers(0, channels // 8))
    begin, j = int(rng.integers(0, 8)), int(rng.integers(0, 4))
    _run_scatter_channel_last16(ours, column, gb, first, begin, j, width, fast, cidx, cw)
    _scalar_scatter_channel_last(scalar, column, gb, first, begin, j, width, fast, cidx, cw)
    assert ours.tobytes() == scalar.tobytes()


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_from_channel_last8_is_a_rounded_transpose(seed, dtype):
    """yb[first + c, pos + i] = acc[pos + i, column + c] rounded once to yb's dtype, nothing else written."""
    rng = np.random.default_rng(seed)
    acc = rng.normal(size=(30, 16))
    yb = np.full((16, 30), np.nan, dtype=dtype)
    column, first, pos = 8 * int(rng.integers(0, 2)), 8 * int(rng.integers(0, 2)), int(rng.integers(0, 23))
    _run_from_channel_last8(acc, column, yb, first, pos)
    block = (slice(first, first + 8), slice(pos, pos + 8))
    assert yb[block].tobytes() == acc[pos:pos + 8, column:column + 8].T.astype(dtype).tobytes()
    untouched = np.ones(yb.shape, dtype=bool)
    untouched[block] = False
    assert np.all(np.isnan(yb[untouched]))


@numba.njit(cache=False, fastmath={"contract"})
def _run_plain_pairwise(xb, yb, xt, yl, cw, quads, width, fast):
    """The plain pairwise loops called as the engine's loops call them: from code compiled with
    contraction allowed, which a callee that leaves fastmath unset would inherit."""
    for j in range(quads.shape[0]):
        plain_gather4(xb, yb, 0, j, quads[j], width, cw, j)
    for j in range(0, fast.shape[0], 8):
        plain_gather_channel_last8(xt, yl, 0, 0, width, fast, cw, j)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_pairwise_loops_are_not_contracted(dtype):
    """The fallbacks of gather4 and gather_channel_last8 sum ``(w0 x0 + w1 x1) + (w2 x2 + w3 x3)``
    in float64 without fusing a product into a sum, bitwise numpy's order, even when called from
    contracting code (with fastmath unset, numba compiled them with the caller's flags: about a
    quarter of the float64 sums were 1 ulp off)."""
    rng = np.random.default_rng(7)
    width, npos, m = 16, 16 * 16, 512
    xb = rng.normal(size=(4, npos)).astype(dtype)
    xt = np.ascontiguousarray(xb.T.repeat(2, axis=1))  # positions × 8 channels
    cw = rng.uniform(-1, 1, size=(m, 4))
    quads = rng.integers(0, npos - width - 1, size=m).astype(np.int64)
    fast = quads.astype(np.uint32)
    yb = np.zeros((4, m), dtype=dtype)
    yl = np.zeros((8, m), dtype=dtype)
    _run_plain_pairwise(xb, yb, xt, yl, cw, quads, width, fast)
    x = xb.astype(np.float64)
    corners = [x[:, quads], x[:, quads + 1], x[:, quads + width], x[:, quads + width + 1]]
    want = ((cw[:, 0] * corners[0] + cw[:, 1] * corners[1]) + (cw[:, 2] * corners[2] + cw[:, 3] * corners[3]))
    assert yb.tobytes() == want.astype(dtype).tobytes()
    assert yl.tobytes() == want.astype(dtype).repeat(2, axis=0).tobytes()


def test_prefetch_far_outside_does_not_fault():
    """A prefetch is only a hint: addresses far outside the array must not crash."""
    xb = np.arange(12.0).reshape(3, 4)
    assert _prefetch_far(xb) == 0.0


def test_intrinsics_reject_strided_or_integer_arrays():
    """Only C-contiguous float planes are accepted (the intrinsics use flat offsets)."""
    xb = np.zeros((4, 8))
    cw = np.zeros((2, 4))
    with pytest.raises(TypingError):
        _run_gather4(xb[:, ::2], xb[:, ::2], 0, 0, 0, 2, cw, 0)
    with pytest.raises(TypingError):
        _run_gather4(xb.astype(np.int64), xb.astype(np.int64), 0, 0, 0, 2, cw, 0)
    with pytest.raises(TypingError):
        _run_gather4(xb, xb.astype(np.float32), 0, 0, 0, 2, cw, 0)  # mixed dtypes
    with pytest.raises(TypingError):
        _run_transpose8x16(xb, xb.astype(np.float32), 0, 0)
    with pytest.raises(TypingError):
        _run_gather_channel_last8(xb, xb, 0, 0, 2, np.zeros(8, dtype=np.int64), cw, 0)  # fast must be uint32


# The forced-fallback test's problems, run in the child (plain loops) and in this process.  2-D, 9
# channels float32 (channel-last group + plane channel) and 13 channels float64 (channel-last group,
# a four-channel sweep through gather4 / corner_sums4 / scatter4, and one more channel).
_FALLBACK_PROBLEMS = """
def fallback_outputs(wt, np):
    outputs = {}
    for name, dtype, channels in (("f32", np.float32, 9), ("f64", np.float64, 13)):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, channels, 20, 17)).astype(dtype)
        g = rng.normal(size=x.shape).astype(dtype)
        eps = (2 * rng.normal(size=(2, 2, 20, 17))).astype(dtype)
        ours = [wt.warp(x, eps), *wt.warp_backward(x, eps, g), wt.unwarp(x, eps)]
        ref = wt.warp_plan(eps, backend="numpy")
        want = [ref.warp(x), *ref.backward(x, g), ref.unwarp(x)]
        for k, (a, b) in enumerate(zip(ours, want)):
            outputs[f"{name}_{k}"] = a
            outputs[f"{name}_{k}_reference"] = b
    return outputs
"""


def test_engine_falls_back_to_plain_loops_when_the_intrinsics_fail(tmp_path):
    """Forced failure: in a fresh process with an empty numba cache, llvmlite's
    ``IRBuilder.shuffle_vector`` raises, so the intrinsics cannot be generated.  The capability
    check warns once, ``simd.AVAILABLE`` is False, and the engine's plain loops give bitwise the
    results of this process's engine (intrinsics on where they compile) — warp, both gradients
    and unwarp, float32 and float64, through every 2-D path that has an intrinsic — and the numpy
    reference's within the tolerance of tests/test_warping.py (2 eps relative plus 2 eps of the
    scale)."""
    import os
    import subprocess
    import sys
    import textwrap

    import warptheory as wt

    code = textwrap.dedent("""
        import warnings
        import llvmlite.ir

        def broken(*args, **kwargs):
            raise RuntimeError("forced failure of the vector IR")

        llvmlite.ir.IRBuilder.shuffle_vector = broken
        import numpy as np
    """) + _FALLBACK_PROBLEMS + textwrap.dedent(f"""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import warptheory as wt
            from warptheory.engines import simd
            np.savez({str(tmp_path / "fallback.npz")!r}, **fallback_outputs(wt, np))
        print("available", simd.AVAILABLE)
        print("warnings", sum("vector intrinsics" in str(w.message) for w in caught))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1200)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines.get("available") == "False", out.stdout + out.stderr[-3000:]
    assert lines.get("warnings") == "1", out.stdout
    namespace = {}
    exec(_FALLBACK_PROBLEMS, namespace)
    here = namespace["fallback_outputs"](wt, np)
    with np.load(tmp_path / "fallback.npz") as child:
        assert sorted(child.files) == sorted(here)
        for key in here:
            if key.endswith("_reference"):
                continue
            fallback, reference = child[key], child[key + "_reference"]
            assert fallback.tobytes() == here[key].tobytes(), f"{key}: the plain loops differ from this engine"
            eps = np.finfo(fallback.dtype).eps
            error = np.max(np.abs(fallback - reference)) / max(1.0, np.max(np.abs(reference)))
            assert error <= 4 * eps, f"{key}: {error} from the numpy reference"  # rtol + atol of 2 eps each
