r"""Numba CPU warp engine (paper eqs 2–4, 16–18, 49–51): the engine protocol of
:mod:`warptheory.engines` (class :class:`Taps`), with the conventions of the reference
:mod:`warptheory.engines.reference` (``paper_notes/s02_warping.md``).

Two stages: per-axis taps (padding-reduced floors and the kernel's weights, d entries per
position; :func:`_axis_floors`, :func:`_axis_taps_for`), then kernel-independent parallel loops
over blocks of positions, which expand the taps into the block's corners and loop over the
channels: :func:`_gather`, :func:`_scatter`, :func:`_position_derivative`.  The specialised paths
(2-D fast corners with the vector intrinsics of :mod:`warptheory.engines.simd`, 1-D fast taps, channel-last
gather and scatter, the bilinear forward and taps, constant slopes) are each bitwise equal to
these loops; ``paper_notes/engines.md`` describes them and the determinism contract, and
``bench/bench_paths.py`` measures what each one saves.

Precision: weights are float64; sums are accumulated in float64 and rounded once to the input
dtype.  The loops are compiled with ``fastmath={"contract"}`` only (fused multiply-adds:
deterministic, one rounding fewer per term); no flag that assumes away NaN/inf or reorders sums.
"""
from __future__ import annotations

import math
import threading

import numba
import numpy as np
from numba import prange

from .simd import AVAILABLE as _SIMD
from .simd import engine_corner_sums4 as corner_sums4
from .simd import engine_from_channel_last8 as from_channel_last8
from .simd import engine_gather4 as gather4
from .simd import engine_gather_channel_last8 as gather_channel_last8
from .simd import engine_prefetch as prefetch
from .simd import engine_scatter4 as scatter4
from .simd import engine_scatter_channel_last16 as scatter_channel_last16
from .simd import engine_transpose8x16 as transpose8x16

__all__ = ["Taps", "warp", "release_scratch"]

PADDING_CODES = {"zeros": 0, "periodic": 1, "border": 2}

# Positions per parallel task: large enough that per-task overhead and the block's
# corner expansion are negligible next to the channel loop, small enough that the
# block's scratch (C corners × (index + weights), ~34 KB in 2-D) stays in L1/L2 and a
# single large image balances over threads (bench/RESULTS.md, second pass).
_BLOCK = 512
# Prefetch distance of the 2-D fast paths, in positions (4 KB of float32 ahead; 768–3072
# measured alike; bench/RESULTS.md, third pass).
_AHEAD = 1024

# Channels per vector of the channel-last forward (eight float64 lanes: one AVX-512 register).
_GROUP = 8
# Largest channel-last copy of one image the forward makes (bytes; above it the plain
# path runs, so the scratch stays bounded), and the largest for which the images are split
# over the threads whole, each thread with its own copy (above it both threads share one
# copy, which then stays in the shared cache).  Measured in bench/RESULTS.md, "Fourth pass":
# up to 32 MB copies the channel-last path was still 1.1-2.5× faster than the plain one.
_CHANNEL_LAST_BYTES = 64 * 2**20
_WORKER_COPY_BYTES = 2 * 2**20

# Axis-tap marker of a position whose offset is NaN or ±inf (axis 0 only).
_UNDEFINED = np.int32(-(2**31))
# Block base index of a position that does not take the 2-D fast path.
_SLOW = np.uint32(0xFFFFFFFF)

# FMA contraction only (see the module docstring; bench/RESULTS.md, second pass).
_JIT = dict(nogil=True, error_model="numpy", fastmath={"contract"})
# numba keys its disk cache on this file, not on which inner loops (intrinsics or plain,
# warptheory.engines.simd) a compiled function calls: cache only the intrinsic build.
_CACHE = _SIMD


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _block_of(task, nblocks, npos):
    """Batch item and position range ``[start, stop)`` of parallel task ``task``."""
    start = (task % nblocks) * _BLOCK
    return task // nblocks, start, min(start + _BLOCK, npos)


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _sweep_count(n, end):
    """Channels in the channel loops' sweep that starts at channel ``n``, the channels ending before
    ``end``: four, a last three together, else one."""
    return 4 if n + 4 <= end else 3 if n + 3 == end else 1


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _axis_floors(eps, out_spatial, relative, spatial, padding, base, frac):
    """The kernel-independent half of the tap stage: the padding-reduced floor of every position
    along every axis into ``base`` (batch, d, npos), and its fraction into ``frac[b, k, 0, v]``
    (NaN at an undefined position); :func:`_axis_weights_body` then turns the fractions into
    the kernel's weights in place.  The positions are ``v + eps[b, :, v]`` over the output
    grid ``out_spatial`` when ``relative``, else ``eps`` itself (absolute coordinates); the
    sizes and padding are those of the input grid ``spatial``.

    ``base[b,k,v]`` is ``floor(v_k + eps[b,k,v])`` clipped (zeros: to [-2, size];
    border: to [-1, size - 1]) or reduced modulo the size (periodic), so the taps'
    in/out class and clamped index are those of the exact position.
    """
    batch, d, npos = eps.shape
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * nblocks):
        b, start, stop = _block_of(task, nblocks, npos)
        if d == 2:
            _axis_floors_2d(eps, out_spatial, relative, spatial, padding, b, start, stop, base, frac)
            continue
        if d == 1:
            for pos in range(start, stop):
                e = np.float64(eps[b, 0, pos])
                if np.isfinite(e):
                    base[b, 0, pos], frac[b, 0, 0, pos] = _reduced_floor(pos + e if relative else e, spatial[0], padding)
                else:
                    base[b, 0, pos] = _UNDEFINED
                    frac[b, 0, 0, pos] = np.nan
            continue
        coord = np.zeros(d, dtype=np.int64)
        rest = start
        for k in range(d - 1, -1, -1):
            coord[k] = rest % out_spatial[k]
            rest //= out_spatial[k]
        for pos in range(start, stop):
            undefined = False
            for k in range(d):
                if not np.isfinite(eps[b, k, pos]):
                    undefined = True
            for k in range(d):
                if undefined:
                    base[b, k, pos] = _UNDEFINED if k == 0 else 0
                    frac[b, k, 0, pos] = np.nan
                    continue
                p = coord[k] + np.float64(eps[b, k, pos]) if relative else np.float64(eps[b, k, pos])
                base[b, k, pos], frac[b, k, 0, pos] = _reduced_floor(p, spatial[k], padding)
            # next lattice point in C order
            k = d - 1
            coord[k] += 1
            while k > 0 and coord[k] == out_spatial[k]:
                coord[k] = 0
                k -= 1
                coord[k] += 1


@numba.njit(inline="always", **_JIT)
def _axis_weights_body(phi, dphi, need_w, need_dw, w, dw):
    """The kernel's half of the tap stage, in place: ``w[b,k,j,v] = φ(t - j)`` and ``dw`` likewise
    with φ' (each unless ``need_w`` / ``need_dw``), where ``t`` is the fraction
    :func:`_axis_floors` left in slot 0 of ``w`` (of ``dw`` when only φ' is asked for); NaN stays
    NaN (an undefined position)."""
    batch, d, _, npos = w.shape if need_w else dw.shape
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * d * nblocks):
        b = task // (d * nblocks)
        k = (task // nblocks) % d
        start = (task % nblocks) * _BLOCK
        for pos in range(start, min(start + _BLOCK, npos)):
            t = w[b, k, 0, pos] if need_w else dw[b, k, 0, pos]
            if np.isnan(t):
                if need_dw:
                    dw[b, k, 0, pos] = np.nan
                    dw[b, k, 1, pos] = np.nan
                if need_w:
                    w[b, k, 1, pos] = np.nan
                continue
            if need_dw:
                dw[b, k, 0, pos] = dphi(t)
                dw[b, k, 1, pos] = dphi(t - 1.0)
            if need_w:
                w[b, k, 0, pos] = phi(t)
                w[b, k, 1, pos] = phi(t - 1.0)


@numba.njit(inline="always", **_JIT)
def _reduced_floor(p, size, padding):
    """``floor(p)`` reduced as in :func:`_axis_floors`, and ``p - floor(p)``."""
    floor = np.floor(p)
    frac = p - floor  # exact; stays exact for |p| >= 2**53, where frac = 0
    if padding == 1:  # periodic: fmod is exact for every float (and slow: skip it inside)
        if not (0.0 <= floor < size):
            floor = np.fmod(floor, size)
            if floor < 0:
                floor += size
    elif padding == 0:  # zeros: the clip keeps both taps' in/out class
        floor = min(max(floor, -2.0), np.float64(size))
    else:  # border: the clip keeps both taps' clamped index
        floor = min(max(floor, -1.0), np.float64(size - 1))
    return np.int32(floor), frac


@numba.njit(inline="always", **_JIT)
def _axis_floors_2d(eps, out_spatial, relative, spatial, padding, b, start, stop, base, frac):
    """The 2-D body of :func:`_axis_floors` for one block, with the row and column stepped
    instead of recomputed and the per-axis loops written out."""
    height = spatial[0]
    width = spatial[1]
    out_width = out_spatial[1]
    row = start // out_width
    col = start - row * out_width
    for pos in range(start, stop):
        e0 = np.float64(eps[b, 0, pos])
        e1 = np.float64(eps[b, 1, pos])
        if np.isfinite(e0) and np.isfinite(e1):
            base[b, 0, pos], frac[b, 0, 0, pos] = _reduced_floor(row + e0 if relative else e0, height, padding)
            base[b, 1, pos], frac[b, 1, 0, pos] = _reduced_floor(col + e1 if relative else e1, width, padding)
        else:
            base[b, 0, pos] = _UNDEFINED
            base[b, 1, pos] = 0
            frac[b, 0, 0, pos] = np.nan
            frac[b, 1, 0, pos] = np.nan
        col += 1
        if col == out_width:
            col = 0
            row += 1


# The kernel's half of the tap stage is compiled once per kernel: numba cannot cache a function that
# takes the kernel's jitted scalars as arguments, so each kernel gets a generated module
# (warptheory._generated) whose entry point binds them as globals and calls _axis_weights_body,
# cached on disk like the rest.  It is kept to a few lines because every kernel pays its compile
# (with the floors inside it cost ~10 s a kernel).  Its key is the source below with the hashes of
# this file and of the kernel's scalar modules: the same kernel expressions share one compiled loop,
# and editing the engine invalidates it.
_TAPS_SOURCE = '''"""Generated by warptheory.engines.numba_cpu: the axis taps of one kernel (_axis_taps_for)."""
{engine}
# phi: {phi}
# dphi: {dphi}
import numba

from warptheory.engines import numba_cpu as engine

phi = dphi = None  # the kernel's compiled scalars, bound by the loader before the first call


@numba.njit(parallel=True, cache=ON_DISK, **engine._JIT)
def axis_weights(need_w, need_dw, w, dw):
    engine._axis_weights_body(phi, dphi, need_w, need_dw, w, dw)
'''
_AXIS_TAPS: dict = {}


def _axis_taps_for(kernel):
    """The jitted weights stage of ``kernel`` (:func:`_axis_weights_body` with its φ and φ'), one per
    pair of compiled scalars, cached on disk."""
    phi, dphi = kernel.value_scalar, kernel.derivative_scalar
    key = (phi.py_func.__module__, phi.__name__, dphi.py_func.__module__, dphi.__name__)
    taps = _AXIS_TAPS.get(key)
    if taps is None:
        from .. import _generated

        source = _TAPS_SOURCE.format(engine=_generated.depends_line(__file__), phi=".".join(key[:2]),
                                     dphi=".".join(key[2:]))
        module = _generated.load(source, "taps")
        module.phi, module.dphi = phi, dphi
        taps = _AXIS_TAPS[key] = module.axis_weights
    return taps


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _slope_factor(slope, inner):
    """The slope that multiplies a tap's weighted sum ``inner``: φ' itself, except that an infinite
    slope (sqrt_tri at t = -1) meeting a zero sum gives 0 (0·∞ := 0; warp.cuh's wt_slope_factor).
    Applied for kernels with an infinite slope only (the ``factorised`` loop of
    :func:`_position_derivative`): for finite slopes it changes nothing but the sign of a zero.""" 
    return 0.0 if (inner == 0.0 and not np.isfinite(slope)) else slope


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _slope_at(dw, base, b, k, a, pos):
    """φ' tap ``a`` of axis ``k`` at ``pos``: ``dw[b, k, a, pos]``, or, for a kernel whose slopes
    are constant (``dw`` of shape (1, d, 2, 1), see :meth:`Taps.prepare`), that constant and NaN
    at an undefined position: bitwise what the tap stage would have stored there."""
    if dw.shape[0] == 1 and dw.shape[3] == 1:
        return np.nan if base[b, 0, pos] == _UNDEFINED else dw[0, k, a, 0]
    return dw[b, k, a, pos]


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _tap_pair(floor, size, padding):
    """Lattice indices of the two taps of one axis from the stored floor; -1 = outside."""
    if padding == 0:
        i0 = floor if 0 <= floor < size else -1
        i1 = floor + 1 if 0 <= floor + 1 < size else -1
    elif padding == 1:
        i0 = floor
        i1 = floor + 1
        if i1 == size:
            i1 = 0
    else:
        i0 = max(floor, 0)
        i1 = min(floor + 1, size - 1)
    return i0, i1


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _corner_indices_2d(cidx, j, row_floor, col_floor, height, width, padding):
    """``cidx[j, :]``: flat index of each 2-D corner from the reduced floors, -1 outside."""
    a0, a1 = _tap_pair(np.int64(row_floor), height, padding)
    e0, e1 = _tap_pair(np.int64(col_floor), width, padding)
    cidx[j, 0] = -1 if (a0 < 0 or e0 < 0) else a0 * width + e0
    cidx[j, 1] = -1 if (a0 < 0 or e1 < 0) else a0 * width + e1
    cidx[j, 2] = -1 if (a1 < 0 or e0 < 0) else a1 * width + e0
    cidx[j, 3] = -1 if (a1 < 0 or e1 < 0) else a1 * width + e1


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _prefetch_rows(xb, first, q, width):
    """Hint the two rows of four channels :data:`_AHEAD` positions past ``q``."""
    ahead = np.int64(q) + _AHEAD
    for k in range(4):
        prefetch(xb, first + k, ahead)
        prefetch(xb, first + k, ahead + width)


@numba.njit(cache=_CACHE, **_JIT)
def _expand_block_2d(base, w, b, start, stop, spatial, padding, need_w, fast, cidx, cw):
    """:func:`_expand_block` in 2-D without φ' corners: a branch-free pass for the fast
    index and the corner weights of every position, then the corner indices of the
    others.  For every padding the four corners are inside and adjacent exactly when
    ``0 <= floor_k <= size_k - 2`` on both axes (an undefined position's marker fails it)."""
    height = spatial[0]
    width = spatial[1]
    last_row = np.uint32(height - 2) if height >= 2 else np.uint32(0)
    last_col = np.uint32(width - 2) if width >= 2 else np.uint32(0)
    small = height < 2 or width < 2
    base0 = base[b, 0, start:stop]
    base1 = base[b, 1, start:stop]
    m = stop - start
    for j in range(m):
        f0 = base0[j]
        f1 = base1[j]
        inside = (np.uint32(f0) <= last_row) & (np.uint32(f1) <= last_col) & (not small)
        fast[j] = np.uint32(f0 * width + f1) if inside else _SLOW
    if need_w:
        wa0 = w[b, 0, 0, start:stop]
        wa1 = w[b, 0, 1, start:stop]
        we0 = w[b, 1, 0, start:stop]
        we1 = w[b, 1, 1, start:stop]
        for j in range(m):
            cw[j, 0] = wa0[j] * we0[j]
            cw[j, 1] = wa0[j] * we1[j]
            cw[j, 2] = wa1[j] * we0[j]
            cw[j, 3] = wa1[j] * we1[j]
    for j in range(m):
        if fast[j] != _SLOW:
            continue
        if base0[j] == _UNDEFINED:
            for c in range(4):
                cidx[j, c] = 0
            continue
        _corner_indices_2d(cidx, j, base0[j], base1[j], height, width, padding)


@numba.njit(cache=_CACHE, **_JIT)
def _expand_block_1d(base, w, dw, b, start, stop, size, padding, need_w, need_dw, fast, cidx, cw, cdw):
    """:func:`_expand_block` in 1-D: ``fast[j]`` is the floor when both taps are inside and
    adjacent (``0 <= floor <= size - 2``, every padding), and only the other positions get
    corner indices; the weights are the axis taps themselves (the general loop's ``1.0 · φ``)."""
    last = np.uint32(size - 2) if size >= 2 else np.uint32(0)
    for j in range(stop - start):
        pos = start + j
        floor = base[b, 0, pos]
        if np.uint32(floor) <= last and size >= 2:
            fast[j] = np.uint32(floor)
        else:
            fast[j] = _SLOW
            undefined = floor == _UNDEFINED
            i0, i1 = _tap_pair(np.int64(0 if undefined else floor), size, padding)
            cidx[j, 0] = 0 if undefined else i0
            cidx[j, 1] = 0 if undefined else i1
    # the weights in passes of their own: inside the loop above they made it 3× slower
    # (bench/RESULTS.md, eleventh pass)
    for j in range(stop - start if need_w else 0):
        cw[j, 0] = w[b, 0, 0, start + j]
        cw[j, 1] = w[b, 0, 1, start + j]
    for j in range(stop - start if need_dw else 0):
        cdw[j, 0, 0] = _slope_at(dw, base, b, 0, 0, start + j)
        cdw[j, 1, 0] = _slope_at(dw, base, b, 0, 1, start + j)


@numba.njit(cache=_CACHE, **_JIT)
def _expand_block_3d(base, w, dw, b, start, stop, spatial, padding, need_w, need_dw, fast, cidx, cw, cdw):
    """:func:`_expand_block` in 3-D, written out (every position slow).  Corner ``c`` takes tap
    ``(c >> 2) & 1`` on axis 0, ``(c >> 1) & 1`` on axis 1 and ``c & 1`` on axis 2; its weight is
    ``(φ_0 · φ_1) · φ_2`` and its slope for axis i the same product with φ'_i in place of φ_i,
    multiplied in axis order (bitwise the loop over d of the engine before: its leading
    ``1.0 ·`` is exact).  The pair products are shared between corners."""
    size1 = spatial[1]
    size2 = spatial[2]
    for j in range(stop - start):
        pos = start + j
        fast[j] = _SLOW
        if base[b, 0, pos] == _UNDEFINED:
            for c in range(8):
                cidx[j, c] = 0
        else:
            a0, a1 = _tap_pair(np.int64(base[b, 0, pos]), spatial[0], padding)
            e0, e1 = _tap_pair(np.int64(base[b, 1, pos]), size1, padding)
            f0, f1 = _tap_pair(np.int64(base[b, 2, pos]), size2, padding)
            for c in range(8):
                ta = a1 if c & 4 else a0
                te = e1 if c & 2 else e0
                tf = f1 if c & 1 else f0
                cidx[j, c] = -1 if (ta < 0 or te < 0 or tf < 0) else (ta * size1 + te) * size2 + tf
        if need_w or need_dw:
            wa0, wa1 = w[b, 0, 0, pos], w[b, 0, 1, pos]
            we0, we1 = w[b, 1, 0, pos], w[b, 1, 1, pos]
            wf0, wf1 = w[b, 2, 0, pos], w[b, 2, 1, pos]
            ae00, ae01, ae10, ae11 = wa0 * we0, wa0 * we1, wa1 * we0, wa1 * we1
        if need_w:
            cw[j, 0], cw[j, 1] = ae00 * wf0, ae00 * wf1
            cw[j, 2], cw[j, 3] = ae01 * wf0, ae01 * wf1
            cw[j, 4], cw[j, 5] = ae10 * wf0, ae10 * wf1
            cw[j, 6], cw[j, 7] = ae11 * wf0, ae11 * wf1
        if need_dw:
            sa0, sa1 = _slope_at(dw, base, b, 0, 0, pos), _slope_at(dw, base, b, 0, 1, pos)
            se0, se1 = _slope_at(dw, base, b, 1, 0, pos), _slope_at(dw, base, b, 1, 1, pos)
            sf0, sf1 = _slope_at(dw, base, b, 2, 0, pos), _slope_at(dw, base, b, 2, 1, pos)
            for c in range(8):
                wa = wa1 if c & 4 else wa0
                we = we1 if c & 2 else we0
                wf = wf1 if c & 1 else wf0
                sa = sa1 if c & 4 else sa0
                se = se1 if c & 2 else se0
                sf = sf1 if c & 1 else sf0
                cdw[j, c, 0] = (sa * we) * wf
                cdw[j, c, 1] = (wa * se) * wf
                cdw[j, c, 2] = (wa * we) * sf


@numba.njit(cache=_CACHE, **_JIT)
def _expand_block(base, w, dw, b, start, stop, spatial, padding, need_w, need_dw, fast, cidx, cw, cdw):
    """The block's corners from the axis taps, into the task's scratch.

    ``fast[j]``: the flat index of corner (0, 0) when the corners are inside and adjacent
    (2-D, :func:`_expand_block_2d`; 1-D, :func:`_expand_block_1d`; never in 3-D,
    :func:`_expand_block_3d`), else :data:`_SLOW`; the consumers read a fast position's corners
    from it directly.
    ``cidx[j, c]``: flat index of corner c, -1 outside (filled for slow positions only).
    ``cw[j, c]`` = Π_k φ, ``cdw[j, c, i]`` = φ'(t_i) Π_{k≠i} φ(t_k), multiplied in axis
    order (φ' corners in 1-D and 3-D only: the 2-D position derivative applies the slopes
    factorised from the axis taps).
    """
    d = base.shape[1]
    npos = base.shape[2]
    if d == 2:
        _expand_block_2d(base, w, b, start, stop, spatial, padding, need_w, fast, cidx, cw)
        return npos
    if d == 1:
        _expand_block_1d(base, w, dw, b, start, stop, spatial[0], padding, need_w, need_dw, fast, cidx, cw, cdw)
        return npos
    _expand_block_3d(base, w, dw, b, start, stop, spatial, padding, need_w, need_dw, fast, cidx, cw, cdw)
    return npos


@numba.njit(cache=_CACHE, **_JIT)
def _gather_fast4(xb, yb, first, start, m, width, fast, cw):
    """The fast-path positions of four channels of one block (a loop of its own: with the
    slow path beside it LLVM spilled the loop's pointers to the stack)."""
    for j in range(m):
        q = fast[j]
        if q != _SLOW:
            if (j & 15) == 0:
                _prefetch_rows(xb, first, q, width)
            gather4(xb, yb, first, start + j, q, width, cw, j)


@numba.njit(cache=_CACHE, **_JIT)
def _gather_slow4_2d(xb, yb, first, start, m, fast, cidx, cw):
    """The other 2-D positions of four channels of one block: each corner by its own index,
    an outside one (index -1) read as 0; indices and weights loaded once for the four channels."""
    for j in range(m):
        if fast[j] != _SLOW:
            continue
        i0 = cidx[j, 0]
        i1 = cidx[j, 1]
        i2 = cidx[j, 2]
        i3 = cidx[j, 3]
        k0 = max(i0, 0)
        k1 = max(i1, 0)
        k2 = max(i2, 0)
        k3 = max(i3, 0)
        w0 = cw[j, 0]
        w1 = cw[j, 1]
        w2 = cw[j, 2]
        w3 = cw[j, 3]
        for n in range(first, first + 4):
            xr = xb[n]
            acc = w0 * (np.float64(xr[k0]) if i0 >= 0 else 0.0)
            acc += w1 * (np.float64(xr[k1]) if i1 >= 0 else 0.0)
            acc += w2 * (np.float64(xr[k2]) if i2 >= 0 else 0.0)
            acc += w3 * (np.float64(xr[k3]) if i3 >= 0 else 0.0)
            yb[n, start + j] = acc


@numba.njit(cache=_CACHE, **_JIT)
def _gather_channels_1d(xb, yb, first, count, start, m, fast, cidx, cw):
    """:func:`_gather_channels` in 1-D: a fast position reads its two adjacent taps directly,
    in the general loop's order (``acc = 0; acc += w0 x0; acc += w1 x1``, bitwise the same)."""
    for n in range(first, first + count):
        xr = xb[n]
        yr = yb[n, start:start + m]
        for j in range(m):
            if fast[j] != _SLOW:
                k0 = np.int64(fast[j])
                k1 = k0 + 1
                inside0 = inside1 = True
            else:
                k0 = max(cidx[j, 0], 0)
                k1 = max(cidx[j, 1], 0)
                inside0 = cidx[j, 0] >= 0
                inside1 = cidx[j, 1] >= 0
            acc = 0.0
            acc += cw[j, 0] * (np.float64(xr[k0]) if inside0 else 0.0)
            acc += cw[j, 1] * (np.float64(xr[k1]) if inside1 else 0.0)
            yr[j] = acc


@numba.njit(cache=_CACHE, **_JIT)
def _gather_channels(xb, yb, first, count, start, m, width, fast, cidx, cw):
    """Channels ``first .. first + count - 1`` (count 1, 3 or 4) of one block of the gather.

    A separate small function so that LLVM keeps the loop's values in registers."""
    ncorner = cw.shape[1]
    right = np.uint32(1)
    down = np.uint32(width)
    diag = np.uint32(width + 1)
    if ncorner == 2:
        _gather_channels_1d(xb, yb, first, count, start, m, fast, cidx, cw)
        return
    if count == 4:
        _gather_fast4(xb, yb, first, start, m, width, fast, cw)
        if ncorner == 4:
            _gather_slow4_2d(xb, yb, first, start, m, fast, cidx, cw)
            return
        # the four channels' sums side by side (each still in corner order): four independent
        # chains of fused multiply-adds instead of one after the other
        x0, x1, x2, x3 = xb[first], xb[first + 1], xb[first + 2], xb[first + 3]
        for j in range(m):
            if fast[j] == _SLOW:
                acc0 = acc1 = acc2 = acc3 = 0.0
                for c in range(ncorner):
                    i = cidx[j, c]
                    k = max(i, 0)
                    wc = cw[j, c]
                    acc0 += wc * (np.float64(x0[k]) if i >= 0 else 0.0)
                    acc1 += wc * (np.float64(x1[k]) if i >= 0 else 0.0)
                    acc2 += wc * (np.float64(x2[k]) if i >= 0 else 0.0)
                    acc3 += wc * (np.float64(x3[k]) if i >= 0 else 0.0)
                yb[first, start + j] = acc0
                yb[first + 1, start + j] = acc1
                yb[first + 2, start + j] = acc2
                yb[first + 3, start + j] = acc3
    elif count == 3:
        # three channels side by side, each channel's sum as in a sweep of its own
        x0, x1, x2 = xb[first], xb[first + 1], xb[first + 2]
        y0, y1, y2 = yb[first, start:start + m], yb[first + 1, start:start + m], yb[first + 2, start:start + m]
        for j in range(m):
            q = fast[j]
            if q != _SLOW:
                w0, w1, w2, w3 = cw[j, 0], cw[j, 1], cw[j, 2], cw[j, 3]
                y0[j] = w0 * x0[q] + w1 * x0[q + right] + w2 * x0[q + down] + w3 * x0[q + diag]
                y1[j] = w0 * x1[q] + w1 * x1[q + right] + w2 * x1[q + down] + w3 * x1[q + diag]
                y2[j] = w0 * x2[q] + w1 * x2[q + right] + w2 * x2[q + down] + w3 * x2[q + diag]
            else:
                acc0 = acc1 = acc2 = 0.0
                for c in range(ncorner):
                    i = cidx[j, c]
                    k = max(i, 0)
                    wc = cw[j, c]
                    acc0 += wc * (np.float64(x0[k]) if i >= 0 else 0.0)
                    acc1 += wc * (np.float64(x1[k]) if i >= 0 else 0.0)
                    acc2 += wc * (np.float64(x2[k]) if i >= 0 else 0.0)
                y0[j] = acc0
                y1[j] = acc1
                y2[j] = acc2
    else:
        xr = xb[first]
        yr = yb[first, start:start + m]
        for j in range(m):
            q = fast[j]
            if q != _SLOW:
                yr[j] = cw[j, 0] * xr[q] + cw[j, 1] * xr[q + right] + cw[j, 2] * xr[q + down] + cw[j, 3] * xr[q + diag]
            else:
                acc = 0.0
                for c in range(ncorner):
                    i = cidx[j, c]
                    acc += cw[j, c] * (np.float64(xr[max(i, 0)]) if i >= 0 else 0.0)
                yr[j] = acc


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _gather_scratch_2d():
    """A parallel task's block scratch for the 2-D gathers: fast index, corner indices,
    corner weights, and the weight rows of :func:`_tri_block_2d`."""
    fast = np.empty(_BLOCK, dtype=np.uint32)
    cidx = np.empty((_BLOCK, 4), dtype=np.int64)
    cw = np.empty((_BLOCK, 4), dtype=np.float64)
    columns = np.empty((4, _BLOCK), dtype=np.float64)
    return fast, cidx, cw, columns


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _tri_taps_at(first, j, e0, e1, fwidth, inverse_width):
    """Floors and ``tri`` tap weights of 2-D position ``first + j`` (``first`` the block's start
    as a float64, ``j < 2**31`` the offset in it, converted as an int32; branch-free, see
    :func:`_tri_block_2d` for why each step is exact): ``f0, f1, φ(t0), φ(t0 - 1), φ(t1),
    φ(t1 - 1)``."""
    pos = first + np.float64(np.int32(j))
    row = np.floor((pos + 0.5) * inverse_width)
    p0 = row + np.float64(e0)
    p1 = (pos - row * fwidth) + np.float64(e1)
    f0 = np.floor(p0)
    f1 = np.floor(p1)
    a = 1.0 - (p0 - f0)
    c = 1.0 - (p1 - f1)
    return f0, f1, a, 1.0 - a, c, 1.0 - c


@numba.njit(cache=_CACHE, **_JIT)
def _tri_block_2d(eps, b, start, stop, spatial, padding, fast, cidx, cw, columns):
    """Axis taps and block expansion in one pass, for the built-in ``tri`` kernel in 2-D.

    The same floors, weights, products and corner indices as :func:`_axis_floors_2d` and
    :func:`_axis_weights_body` followed by :func:`_expand_block_2d`, bitwise (``test_bilinear_fused_path_is_bitwise``),
    without tap arrays in between.  The first loop is written so that LLVM vectorises it:
    no branches, the weights into the separate rows of ``columns`` (scratch, (4, m)):

    * row and column from float64 arithmetic: ``(pos + 0.5) / W`` lies at least 0.5/W from
      an integer, and ``(pos + 0.5) · fl(1/W)`` differs from it by a relative 2**-52 at most,
      under 2**31 · 2**-52 / W < 0.5/W for positions below 2**31, so its floor is the row
      exactly (a multiplication, and the position converted from the block offset as an
      int32: AVX2 has no vector int64 → float64 conversion and its vector division is slow;
      the two took half of this loop's time, bench/RESULTS.md, thirteenth pass);
    * for finite offsets ``t = p - floor(p)`` is exact and in [0, 1), where
      ``φ(t) = 1 - t`` and ``φ(t - 1) = 1 - |fl(t - 1)| = 1 - fl(1 - t) = 1 - φ(t)``, all
      bitwise equal to the kernel's ``(1 - |t|) if |t| <= 1 else 0``;
    * a position whose floors are on the lattice interior needs no padding reduction.

    The others — near the border, undefined (NaN/±inf offset) or periodic and off the
    lattice — are finished one by one afterwards with the scalar code of the two stages."""
    height = spatial[0]
    width = spatial[1]
    m = stop - start
    e0s = eps[b, 0, start:stop]
    e1s = eps[b, 1, start:stop]
    fwidth = np.float64(width)
    inverse_width = 1.0 / fwidth
    first = np.float64(start)
    last_row = np.float64(height - 2)
    last_col = np.float64(width - 2)
    w00 = columns[0]
    w01 = columns[1]
    w10 = columns[2]
    w11 = columns[3]
    for j in range(m):
        f0, f1, wa0, wa1, we0, we1 = _tri_taps_at(first, j, e0s[j], e1s[j], fwidth, inverse_width)
        w00[j] = wa0 * we0
        w01[j] = wa0 * we1
        w10[j] = wa1 * we0
        w11[j] = wa1 * we1
        inside = (f0 >= 0.0) & (f0 <= last_row) & (f1 >= 0.0) & (f1 <= last_col)
        # clamped so that the conversion is defined for every input; used only when inside
        # (below 2**31: converted as an int32, which the vector unit does in one instruction)
        q = min(max(f0, 0.0), last_row) * fwidth + min(max(f1, 0.0), last_col)
        fast[j] = np.uint32(np.int32(q)) if inside else _SLOW
    for j in range(m):
        cw[j, 0] = w00[j]
        cw[j, 1] = w01[j]
        cw[j, 2] = w10[j]
        cw[j, 3] = w11[j]
    for j in range(m):
        if fast[j] != _SLOW:
            continue
        e0 = np.float64(e0s[j])
        e1 = np.float64(e1s[j])
        if not (np.isfinite(e0) and np.isfinite(e1)):
            for c in range(4):
                cw[j, c] = np.nan
                cidx[j, c] = 0
            continue
        pos = start + j
        row = pos // width
        f0, _ = _reduced_floor(row + e0, height, padding)
        f1, _ = _reduced_floor(pos - row * width + e1, width, padding)
        if 0 <= f0 <= height - 2 and 0 <= f1 <= width - 2:  # periodic, brought onto the lattice
            fast[j] = np.uint32(f0 * width + f1)
        else:
            _corner_indices_2d(cidx, j, f0, f1, height, width, padding)


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _gather_tri_2d(x, eps, base, w, spatial, padding, out):
    """Eq 2 for the built-in ``tri`` kernel in 2-D: :func:`_gather` with the tap stage
    fused into each block (one parallel pass; no tap arrays, or ``base`` and ``w`` filled
    on the way, :func:`_prepare_block_2d`)."""
    batch, channels, npos = out.shape
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    width = spatial[1]
    for task in prange(batch * nblocks):
        b, start, stop = _block_of(task, nblocks, npos)
        m = stop - start
        fast, cidx, cw, columns = _gather_scratch_2d()
        _prepare_block_2d(eps, base, w, b, start, stop, spatial, padding, fast, cidx, cw, columns)
        _gather_block(x[b], out[b], start, m, width, fast, cidx, cw)


@numba.njit(cache=_CACHE, **_JIT)
def _to_channel_last(xb, xt, start, stop):
    """``xt[p, c] = xb[c, p]`` for positions ``start <= p < stop`` and the channels of ``xt``
    (a multiple of :data:`_GROUP`)."""
    for c in range(0, xt.shape[1], _GROUP):
        p = start
        while p + 16 <= stop:
            transpose8x16(xb, xt, c, p)
            p += 16
        for tail in range(p, stop):
            for k in range(c, c + _GROUP):
                xt[tail, k] = xb[k, tail]


@numba.njit(cache=_CACHE, **_JIT)
def _gather_block_channel_last(xt, xb, yb, start, m, width, fast, cidx, cw):
    """:func:`_gather_block` with the channels of ``xt`` (positions × channels, a copy of
    the first ``xt.shape[1]`` channel planes) read eight at a time by
    :func:`gather_channel_last8`, bitwise the same result.

    The vector loop covers every position of the block's first ``m - m % 8``, the slow
    ones with garbage that the slow pass then overwrites; the last few positions and the
    channels beyond ``xt``'s take the channel-plane loops."""
    grouped = xt.shape[1]
    whole = m - m % 8
    for c in range(0, grouped, _GROUP):
        for j in range(0, whole, 8):
            gather_channel_last8(xt, yb, c, start, width, fast, cw, j)
    for n in range(0, grouped, 4):
        _gather_slow4_2d(xb, yb, n, start, whole, fast, cidx, cw)
        if whole < m:
            _gather_channels(xb, yb, n, 4, start + whole, m - whole, width, fast[whole:], cidx[whole:], cw[whole:])
    _gather_block(xb, yb, start, m, width, fast, cidx, cw, grouped)


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _prepare_block_2d(eps, base, w, b, start, stop, spatial, padding, fast, cidx, cw, columns):
    """A 2-D gather block's corners: from ``eps`` for the built-in ``tri`` (``base`` empty,
    :func:`_tri_block_2d`), else from the tap arrays (:func:`_expand_block_2d`), which are
    first filled from ``eps`` when it is given too (a plan's first forward, :func:`_tri_taps_block`)."""
    if base.shape[0] == 0:
        _tri_block_2d(eps, b, start, stop, spatial, padding, fast, cidx, cw, columns)
    else:
        if eps.shape[0] != 0:
            _tri_taps_block(eps, b, start, stop, spatial[0], spatial[1], padding, base, w)
        _expand_block_2d(base, w, b, start, stop, spatial, padding, True, fast, cidx, cw)


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _gather_2d_channel_last(x, xt, eps, base, w, spatial, padding, out):
    """The 2-D gather (:func:`_gather_tri_2d` with ``base`` empty, else :func:`_gather`)
    reading the first ``xt.shape[2]`` channels from a channel-last copy of each image, made
    in ``xt`` (workers × positions × channels) just before its gather — bitwise the same
    result (``test_channel_last_gather_is_bitwise``).

    With one worker buffer the images go one after the other, the copy and the gather
    each parallel over positions; with several, worker ``k`` takes images ``k, k + K, ...``
    whole, into its own buffer (one parallel region, and the copy stays in that core's
    cache)."""
    batch, channels, npos = out.shape
    nin = x.shape[2]
    workers = xt.shape[0]
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    nblocks_in = (nin + _BLOCK - 1) // _BLOCK
    width = spatial[1]
    if workers > 1:
        for worker in prange(workers):
            xtw = xt[worker]
            fast, cidx, cw, columns = _gather_scratch_2d()
            for b in range(worker, batch, workers):
                _to_channel_last(x[b], xtw, 0, nin)
                for block in range(nblocks):
                    _, start, stop = _block_of(block, nblocks, npos)
                    _prepare_block_2d(eps, base, w, b, start, stop, spatial, padding, fast, cidx, cw, columns)
                    _gather_block_channel_last(xtw, x[b], out[b], start, stop - start, width, fast, cidx, cw)
        return
    xt0 = xt[0]
    for b in range(batch):
        for block in prange(nblocks_in):
            _, start, stop = _block_of(block, nblocks_in, nin)
            _to_channel_last(x[b], xt0, start, stop)
        for block in prange(nblocks):
            _, start, stop = _block_of(block, nblocks, npos)
            fast, cidx, cw, columns = _gather_scratch_2d()
            _prepare_block_2d(eps, base, w, b, start, stop, spatial, padding, fast, cidx, cw, columns)
            _gather_block_channel_last(xt0, x[b], out[b], start, stop - start, width, fast, cidx, cw)


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _gather(x, base, w, spatial, padding, out):
    """out[b,n,v] = Σ_c w_c(b,v) x[b,n,corner_c(b,v)]  (eq 2; eq 50 for unwarp)."""
    batch, channels, npos = out.shape
    d = base.shape[1]
    ncorner = 1 << d
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    width = spatial[d - 1]
    for task in prange(batch * nblocks):
        b, start, stop = _block_of(task, nblocks, npos)
        m = stop - start
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, ncorner), dtype=np.int64)
        cw = np.empty((_BLOCK, ncorner), dtype=np.float64)
        cdw = np.empty((0, 0, 0), dtype=np.float64)
        _expand_block(base, w, w, b, start, stop, spatial, padding, True, False, fast, cidx, cw, cdw)
        _gather_block(x[b], out[b], start, m, width, fast, cidx, cw)


@numba.njit(cache=_CACHE, **_JIT)
def _gather_block(xb, yb, start, m, width, fast, cidx, cw, first=0):
    """Channels ``first ..`` of one expanded block of the gather."""
    channels = xb.shape[0]
    n = first
    while n < channels:
        # four channels per sweep share the block's index and weight loads
        count = _sweep_count(n, channels)
        _gather_channels(xb, yb, n, count, start, m, width, fast, cidx, cw)
        n += count


@numba.njit(cache=_CACHE, **_JIT)
def _corner_sums_1d(xb, gb, first, count, start, m, fast, cidx, csum):
    """:func:`_corner_sums` in 1-D, a fast position's two taps read directly (bitwise the same)."""
    last = first + count - 1  # with count 1, x1..x3 and g1..g3 alias the one channel and are not read
    x0, x1, x2, x3 = xb[first], xb[min(first + 1, last)], xb[min(first + 2, last)], xb[last]
    g0, g1, g2, g3 = gb[first], gb[min(first + 1, last)], gb[min(first + 2, last)], gb[last]
    for j in range(m):
        h0 = np.float64(g0[start + j])
        h1 = np.float64(g1[start + j])
        h2 = np.float64(g2[start + j])
        h3 = np.float64(g3[start + j])
        for c in range(2):
            if fast[j] != _SLOW:
                k = np.int64(fast[j]) + c
                inside = True
            else:
                k = max(cidx[j, c], 0)
                inside = cidx[j, c] >= 0
            if count == 4:
                csum[j, c] += (
                    h0 * (np.float64(x0[k]) if inside else 0.0)
                    + h1 * (np.float64(x1[k]) if inside else 0.0)
                    + h2 * (np.float64(x2[k]) if inside else 0.0)
                    + h3 * (np.float64(x3[k]) if inside else 0.0)
                )
            else:
                csum[j, c] += h0 * (np.float64(x0[k]) if inside else 0.0)


@numba.njit(cache=_CACHE, **_JIT)
def _corner_sums(xb, gb, first, count, start, m, width, fast, cidx, csum):
    """``csum[j, c] += Σ_n g[n, start + j] x[n, corner_c(j)]`` over channels ``first ..
    first + count - 1`` (count 1, 3 or 4) of one block; an outside corner reads x as 0.

    A separate small function so that LLVM keeps the loop's values in registers."""
    ncorner = cidx.shape[1]
    right = np.uint32(1)
    down = np.uint32(width)
    diag = np.uint32(width + 1)
    if ncorner == 2:
        if count == 4:
            _corner_sums_1d(xb, gb, first, 4, start, m, fast, cidx, csum)
        else:
            for n in range(first, first + count):
                _corner_sums_1d(xb, gb, n, 1, start, m, fast, cidx, csum)
        return
    if count == 4:
        x0 = xb[first]
        x1 = xb[first + 1]
        x2 = xb[first + 2]
        x3 = xb[first + 3]
        g0 = gb[first, start:start + m]
        g1 = gb[first + 1, start:start + m]
        g2 = gb[first + 2, start:start + m]
        g3 = gb[first + 3, start:start + m]
        for j in range(m):
            h0 = np.float64(g0[j])
            h1 = np.float64(g1[j])
            h2 = np.float64(g2[j])
            h3 = np.float64(g3[j])
            q = fast[j]
            if q != _SLOW:
                if (j & 15) == 0:
                    _prefetch_rows(xb, first, q, width)
                corner_sums4(xb, gb, first, start + j, q, width, csum, j)
            else:
                for c in range(ncorner):
                    i = cidx[j, c]
                    k = max(i, 0)
                    inside = i >= 0
                    csum[j, c] += (
                        h0 * (np.float64(x0[k]) if inside else 0.0)
                        + h1 * (np.float64(x1[k]) if inside else 0.0)
                        + h2 * (np.float64(x2[k]) if inside else 0.0)
                        + h3 * (np.float64(x3[k]) if inside else 0.0)
                    )
    elif count == 3:
        # three channels' terms one after the other per corner (the order of three sweeps), with the
        # block's index and weight loads shared
        x0, x1, x2 = xb[first], xb[first + 1], xb[first + 2]
        g0, g1, g2 = gb[first, start:start + m], gb[first + 1, start:start + m], gb[first + 2, start:start + m]
        for j in range(m):
            h0 = np.float64(g0[j])
            h1 = np.float64(g1[j])
            h2 = np.float64(g2[j])
            q = fast[j]
            for c in range(ncorner):
                if q != _SLOW:
                    k = np.int64(q) + (right if c & 1 else 0) + (down if c & 2 else 0)
                    inside = True
                else:
                    k = max(cidx[j, c], 0)
                    inside = cidx[j, c] >= 0
                total = csum[j, c]
                total += h0 * (np.float64(x0[k]) if inside else 0.0)
                total += h1 * (np.float64(x1[k]) if inside else 0.0)
                total += h2 * (np.float64(x2[k]) if inside else 0.0)
                csum[j, c] = total
    else:
        xr = xb[first]
        gr = gb[first, start:start + m]
        for j in range(m):
            h = np.float64(gr[j])
            q = fast[j]
            if q != _SLOW:
                csum[j, 0] += h * xr[q]
                csum[j, 1] += h * xr[q + right]
                csum[j, 2] += h * xr[q + down]
                csum[j, 3] += h * xr[q + diag]
            else:
                for c in range(ncorner):
                    i = cidx[j, c]
                    csum[j, c] += h * (np.float64(xr[max(i, 0)]) if i >= 0 else 0.0)


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _position_derivative(x, g, base, w, dw, spatial, padding, factorised, out):
    """out[b,i,v] = Σ_c dw_{c,i}(b,v) Σ_n g[b,n,v] x[b,n,corner_c(b,v)]  (eqs 4, 51).

    The channel sum is taken first, per corner (four channels per sweep, as in the
    gather), so each output costs the slopes once per block rather than once per
    channel.  The slopes are then applied factorised like the reference (and warp.cuh),
    ``φ'(t_{i,a}) · Σ_{corners with tap a on axis i} Π_{k≠i} φ · S_c``, so an infinite
    slope multiplies one finite sum: ±∞, 0 where that sum is 0 (:func:`_slope_factor`),
    NaN only for ∞ − ∞ (``factorised``: kernels with an infinite slope, any d).  For finite
    slopes the 2-D loop writes the same factorised form out, and 1-D and 3-D keep the
    per-corner products ``φ'·Π_{k≠i} φ``, each in the order of the engine before issue 11.
    """
    batch, d, npos = out.shape
    channels = g.shape[1]
    ncorner = 1 << d
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    width = spatial[d - 1]
    for task in prange(batch * nblocks):
        b, start, stop = _block_of(task, nblocks, npos)
        m = stop - start
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, ncorner), dtype=np.int64)
        cw = np.empty((0, 0), dtype=np.float64)
        cdw = np.empty((_BLOCK if (d != 2 and not factorised) else 0, ncorner, d), dtype=np.float64)
        _expand_block(base, w, dw, b, start, stop, spatial, padding, False, d != 2 and not factorised, fast, cidx,
                      cw, cdw)
        csum = np.zeros((_BLOCK, ncorner), dtype=np.float64)
        xb = x[b]
        gb = g[b]
        n = 0
        while n < channels:
            count = _sweep_count(n, channels)
            _corner_sums(xb, gb, n, count, start, m, width, fast, cidx, csum)
            n += count
        if d == 2 and not factorised:
            for j in range(m):
                pos = start + j
                wa0 = w[b, 0, 0, pos]
                wa1 = w[b, 0, 1, pos]
                we0 = w[b, 1, 0, pos]
                we1 = w[b, 1, 1, pos]
                s0 = csum[j, 0]
                s1 = csum[j, 1]
                s2 = csum[j, 2]
                s3 = csum[j, 3]
                out[b, 0, pos] = (_slope_at(dw, base, b, 0, 0, pos) * (we0 * s0 + we1 * s1)
                                  + _slope_at(dw, base, b, 0, 1, pos) * (we0 * s2 + we1 * s3))
                out[b, 1, pos] = (_slope_at(dw, base, b, 1, 0, pos) * (wa0 * s0 + wa1 * s2)
                                  + _slope_at(dw, base, b, 1, 1, pos) * (wa0 * s1 + wa1 * s3))
        elif factorised:
            for j in range(m):
                pos = start + j
                for k in range(d):
                    inner0 = 0.0
                    inner1 = 0.0
                    for c in range(ncorner):
                        others = 1.0
                        for i in range(d):
                            if i != k:
                                others *= w[b, i, (c >> (d - 1 - i)) & 1, pos]
                        if (c >> (d - 1 - k)) & 1:
                            inner1 += others * csum[j, c]
                        else:
                            inner0 += others * csum[j, c]
                    out[b, k, pos] = (_slope_factor(_slope_at(dw, base, b, k, 0, pos), inner0) * inner0
                                      + _slope_factor(_slope_at(dw, base, b, k, 1, pos), inner1) * inner1)
        else:
            for j in range(m):
                for k in range(d):
                    acc = 0.0
                    for c in range(ncorner):
                        acc += cdw[j, c, k] * csum[j, c]
                    out[b, k, start + j] = acc


@numba.njit(cache=_CACHE, **_JIT)
def _scatter_channels_1d(gb, acc, n, first, count, start, m, fast, cidx, cw):
    """:func:`_scatter_channels` in 1-D, a fast position's two taps addressed directly; every
    plane still receives its terms in increasing (position, corner) order."""
    if count == 4:
        g0 = gb[n, start:start + m]
        g1 = gb[n + 1, start:start + m]
        g2 = gb[n + 2, start:start + m]
        g3 = gb[n + 3, start:start + m]
        a0 = acc[n - first]
        a1 = acc[n - first + 1]
        a2 = acc[n - first + 2]
        a3 = acc[n - first + 3]
        for j in range(m):
            h0 = np.float64(g0[j])
            h1 = np.float64(g1[j])
            h2 = np.float64(g2[j])
            h3 = np.float64(g3[j])
            for c in range(2):
                i = np.int64(fast[j]) + c if fast[j] != _SLOW else cidx[j, c]
                wc = cw[j, c]
                a0[i] += wc * h0
                a1[i] += wc * h1
                a2[i] += wc * h2
                a3[i] += wc * h3
    else:
        for k in range(n, n + count):
            gr = gb[k, start:start + m]
            ar = acc[k - first]
            for j in range(m):
                gv = np.float64(gr[j])
                for c in range(2):
                    i = np.int64(fast[j]) + c if fast[j] != _SLOW else cidx[j, c]
                    ar[i] += cw[j, c] * gv


@numba.njit(cache=_CACHE, **_JIT)
def _scatter_channels(gb, acc, n, first, count, start, m, width, fast, cidx, cw):
    """Channels ``n .. n + count - 1`` (count 1, 3 or 4) of one block of the scatter, added
    to their private planes ``acc[n - first]`` in increasing (position, corner) order.

    A separate small function so that LLVM keeps the loop's values in registers."""
    ncorner = cidx.shape[1]
    right = np.uint32(1)
    down = np.uint32(width)
    diag = np.uint32(width + 1)
    if ncorner == 2:
        _scatter_channels_1d(gb, acc, n, first, count, start, m, fast, cidx, cw)
        return
    if count == 4:
        g0 = gb[n, start:start + m]
        g1 = gb[n + 1, start:start + m]
        g2 = gb[n + 2, start:start + m]
        g3 = gb[n + 3, start:start + m]
        a0 = acc[n - first]
        a1 = acc[n - first + 1]
        a2 = acc[n - first + 2]
        a3 = acc[n - first + 3]
        for j in range(m):
            h0 = np.float64(g0[j])
            h1 = np.float64(g1[j])
            h2 = np.float64(g2[j])
            h3 = np.float64(g3[j])
            q = fast[j]
            if q != _SLOW:
                scatter4(acc, n - first, gb, n, start + j, q, width, cw, j)
            else:
                for c in range(ncorner):
                    i = cidx[j, c]
                    wc = cw[j, c]
                    a0[i] += wc * h0
                    a1[i] += wc * h1
                    a2[i] += wc * h2
                    a3[i] += wc * h3
    elif count == 3:
        # three planes side by side: consecutive positions update the same elements, so one plane's
        # updates alone wait on each other's stores
        g0 = gb[n, start:start + m]
        g1 = gb[n + 1, start:start + m]
        g2 = gb[n + 2, start:start + m]
        a0 = acc[n - first]
        a1 = acc[n - first + 1]
        a2 = acc[n - first + 2]
        for j in range(m):
            h0 = np.float64(g0[j])
            h1 = np.float64(g1[j])
            h2 = np.float64(g2[j])
            q = fast[j]
            for c in range(ncorner):
                i = (np.int64(q) + (right if c & 1 else 0) + (down if c & 2 else 0)) if q != _SLOW else cidx[j, c]
                wc = cw[j, c]
                a0[i] += wc * h0
                a1[i] += wc * h1
                a2[i] += wc * h2
    else:
        gr = gb[n, start:start + m]
        ar = acc[n - first]
        for j in range(m):
            gv = np.float64(gr[j])
            q = fast[j]
            if q != _SLOW:
                ar[q] += cw[j, 0] * gv
                ar[q + right] += cw[j, 1] * gv
                ar[q + down] += cw[j, 2] * gv
                ar[q + diag] += cw[j, 3] * gv
            else:
                for c in range(ncorner):
                    ar[cidx[j, c]] += cw[j, c] * gv


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _padded_row(length):
    """Row length (float64 elements) of the scatter's private planes: at least ``length``,
    and ≡ 136 (1088 bytes) modulo 512 (a 4 KB page).  Unpadded 128×128 planes lie
    131080 bytes apart, so ``plane[k][q]`` and ``plane[k+1][q-1]`` share their low 12
    address bits and the CPU treats the later load as dependent on the earlier store
    (4K aliasing) at almost every update."""
    return ((length + 511) // 512) * 512 + 136


@numba.njit(cache=_CACHE, **_JIT)
def _expand_scatter_block(base, w, b, start, stop, spatial, padding, fast, cidx, cw, cdw, spare):
    """:func:`_expand_block` for a scatter: a slow position's outside taps, and every tap of
    an undefined position (NaN weight), are pointed at the accumulator's spare slot."""
    _expand_block(base, w, w, b, start, stop, spatial, padding, True, False, fast, cidx, cw, cdw)
    for j in range(stop - start):
        if fast[j] == _SLOW:
            for c in range(cidx.shape[1]):
                if cidx[j, c] < 0 or np.isnan(cw[j, c]):
                    cidx[j, c] = spare


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _scatter(g, base, w, spatial, padding, group, out):
    """out[b,n,u] = Σ_{(v,c) → u} w_c(b,v) g[b,n,v]  (eq 3; eq 49 for unwarp).

    One task per batch item and group of ``group`` channels; each input's terms are added
    in increasing (v, c) order into a private float64 plane (slot ``npos`` collects the
    outside taps), so the result does not depend on the number of threads.
    """
    batch, channels, npos = out.shape
    nsrc = base.shape[2]
    d = base.shape[1]
    ncorner = 1 << d
    ngroups = (channels + group - 1) // group
    width = spatial[d - 1]
    nblocks = (nsrc + _BLOCK - 1) // _BLOCK
    for task in prange(batch * ngroups):
        b = task // ngroups
        first = (task % ngroups) * group
        last = min(first + group, channels)
        acc = np.zeros((last - first, _padded_row(npos + 1)), dtype=np.float64)
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, ncorner), dtype=np.int64)
        cw = np.empty((_BLOCK, ncorner), dtype=np.float64)
        cdw = np.empty((0, 0, 0), dtype=np.float64)
        right = np.uint32(1)
        down = np.uint32(width)
        diag = np.uint32(width + 1)
        for blk in range(nblocks):
            start = blk * _BLOCK
            stop = min(start + _BLOCK, nsrc)
            _expand_scatter_block(base, w, b, start, stop, spatial, padding, fast, cidx, cw, cdw, npos)
            n = first
            while n < last:
                # four channels per sweep share the block's index and weight loads; each
                # plane still receives its terms in increasing (v, c) order
                count = _sweep_count(n, last)
                _scatter_channels(g[b], acc, n, first, count, start, stop - start, width, fast, cidx, cw)
                n += count
        for n in range(first, last):
            ar = acc[n - first]
            yr = out[b, n]
            for u in range(npos):
                yr[u] = ar[u]


@numba.njit(cache=_CACHE, **_JIT)
def _scatter_block_channel_last(gb, acc, first, start, m, width, fast, cidx, cw):
    """Channels ``first .. first + 7`` of one 2-D block of the scatter, into the channel-last
    accumulator ``acc`` (positions + spare row × 8), each element in increasing
    (position, corner) order."""
    whole = m - m % 16
    for j in range(0, whole, 16):
        scatter_channel_last16(acc, 0, gb, first, start, j, width, fast, cidx, cw)
    for j in range(whole, m):
        q = np.int64(fast[j])
        for c in range(4):
            if fast[j] != _SLOW:
                row = q + (c & 1) + (width if c >= 2 else 0)
            else:
                row = cidx[j, c]
            wc = cw[j, c]
            for k in range(_GROUP):
                acc[row, k] += wc * np.float64(gb[first + k, start + j])


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _scatter_2d_channel_last(g, base, w, spatial, padding, acc, out):
    """:func:`_scatter` in 2-D for the first ``8 · (channels // 8)`` channels: each task, a
    batch item and a group of eight channels, adds into a channel-last float64
    accumulator (``acc[worker]``: positions + spare row × 8) and transposes it into ``out``
    at the end — bitwise the same result, since every element receives the same fused
    multiply-adds in the same order (``test_channel_last_scatter_is_bitwise``).  Worker
    ``k`` takes tasks ``k, k + K, ...``.  (One task per batch item with all its groups in
    one accumulator, so that the block expansion is shared, was slower (bench/RESULTS.md): the
    accumulator outgrows L2.)"""
    batch, channels, npos = out.shape
    nsrc = base.shape[2]
    groups = channels // _GROUP
    ntasks = batch * groups
    workers = acc.shape[0]
    width = spatial[1]
    nblocks = (nsrc + _BLOCK - 1) // _BLOCK
    for worker in prange(workers):
        sums = acc[worker]
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, 4), dtype=np.int64)
        cw = np.empty((_BLOCK, 4), dtype=np.float64)
        cdw = np.empty((0, 0, 0), dtype=np.float64)
        for task in range(worker, ntasks, workers):
            b = task // groups
            first = (task % groups) * _GROUP
            sums[:] = 0.0
            for block in range(nblocks):
                _, start, stop = _block_of(block, nblocks, nsrc)
                _expand_scatter_block(base, w, b, start, stop, spatial, padding, fast, cidx, cw, cdw, npos)
                _scatter_block_channel_last(g[b], sums, first, start, stop - start, width, fast, cidx, cw)
            yb = out[b]
            whole = npos - npos % 8
            for pos in range(0, whole, 8):
                from_channel_last8(sums, 0, yb, first, pos)
            for pos in range(whole, npos):
                for k in range(_GROUP):
                    yb[first + k, pos] = sums[pos, k]


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _floor_bounds(size, padding):
    """The range :func:`_reduced_floor` clips a floor to, as float64 ``(lo, hi)``, for the
    vectorised tap loops (zeros [-2, size], border [-1, size - 1]; periodic: the lattice, the
    positions outside it redone by the scalar code)."""
    lo = -2.0 if padding == 0 else (-1.0 if padding == 2 else 0.0)
    hi = np.float64(size) if padding == 0 else np.float64(size - 1)
    return lo, hi


@numba.njit(cache=_CACHE, inline="always", **_JIT)
def _clipped_floor(floor, lo, hi):
    """``floor`` clipped to [lo, hi] as an int32, branch-free; 0 for NaN (compares false), which
    the scalar fix-up then replaces."""
    clipped = min(max(floor, lo), hi)
    return np.int32(clipped) if (clipped >= lo) & (clipped <= hi) else np.int32(0)


@numba.njit(cache=_CACHE, **_JIT)
def _tri_taps_block(eps, b, start, stop, height, width, padding, base, w):
    """:func:`_axis_floors_2d` + :func:`_axis_weights_body` for the built-in ``tri`` kernel, bitwise,
    in a loop LLVM vectorises (see :func:`_tri_block_2d` for the exact float row/column and
    ``φ(t - 1) = 1 - φ(t)``).  No φ' taps: tri's slopes are constants, read by
    :func:`_slope_at` (:func:`_constant_slopes`).  Undefined positions, and periodic ones off
    the lattice (fmod), are redone by the scalar code afterwards."""
    m = stop - start
    e0s = eps[b, 0, start:stop]
    e1s = eps[b, 1, start:stop]
    fwidth = np.float64(width)
    inverse_width = 1.0 / fwidth
    first = np.float64(start)
    lo, hi0 = _floor_bounds(height, padding)
    _, hi1 = _floor_bounds(width, padding)
    base0 = base[b, 0, start:stop]
    base1 = base[b, 1, start:stop]
    wa0 = w[b, 0, 0, start:stop]
    wa1 = w[b, 0, 1, start:stop]
    we0 = w[b, 1, 0, start:stop]
    we1 = w[b, 1, 1, start:stop]
    for j in range(m):
        f0, f1, wa0[j], wa1[j], we0[j], we1[j] = _tri_taps_at(first, j, e0s[j], e1s[j], fwidth, inverse_width)
        base0[j] = _clipped_floor(f0, lo, hi0)
        base1[j] = _clipped_floor(f1, lo, hi1)
    for j in range(m):
        e0 = np.float64(e0s[j])
        e1 = np.float64(e1s[j])
        if not (np.isfinite(e0) and np.isfinite(e1)):
            base0[j] = _UNDEFINED
            base1[j] = 0
            wa0[j] = wa1[j] = we0[j] = we1[j] = np.nan
        elif padding == 1:
            pos = start + j
            row = pos // width
            p0 = row + e0
            p1 = pos - row * width + e1
            if not (0.0 <= np.floor(p0) < height):
                base0[j], _ = _reduced_floor(p0, height, padding)
            if not (0.0 <= np.floor(p1) < width):
                base1[j], _ = _reduced_floor(p1, width, padding)


@numba.njit(cache=_CACHE, **_JIT)
def _tri_taps_block_1d(eps, b, start, stop, size, padding, base, w):
    """:func:`_tri_taps_block` in 1-D: the floors of the 1-D branch of :func:`_axis_floors` and the
    ``tri`` weights of :func:`_axis_weights_body`, bitwise, in a loop LLVM vectorises.  The
    position ``start + j`` is exact in float64 (below 2**31), ``t = p - floor(p)`` is exact, and
    ``φ(t) = 1 - t``, ``φ(t - 1) = 1 - φ(t)`` as there."""
    es = eps[b, 0, start:stop]
    first = np.float64(start)
    lo, hi = _floor_bounds(size, padding)
    floors = base[b, 0, start:stop]
    w0 = w[b, 0, 0, start:stop]
    w1 = w[b, 0, 1, start:stop]
    for j in range(stop - start):
        p = (first + np.float64(np.int32(j))) + np.float64(es[j])
        f = np.floor(p)
        a = 1.0 - (p - f)
        w0[j] = a
        w1[j] = 1.0 - a
        floors[j] = _clipped_floor(f, lo, hi)
    for j in range(stop - start):
        e = np.float64(es[j])
        if not np.isfinite(e):
            floors[j] = _UNDEFINED
            w0[j] = w1[j] = np.nan
        elif padding == 1 and not (0.0 <= np.floor((start + j) + e) < size):
            floors[j], _ = _reduced_floor((start + j) + e, size, padding)


@numba.njit(parallel=True, cache=_CACHE, **_JIT)
def _tri_taps(eps, spatial, padding, base, w):
    """The φ taps of :func:`_axis_floors` and :func:`_axis_weights_body` for the built-in ``tri``
    kernel in 1-D and 2-D (bitwise the same arrays; ``test_bilinear_taps_are_bitwise``)."""
    batch, d, npos = eps.shape
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * nblocks):
        b, start, stop = _block_of(task, nblocks, npos)
        if d == 1:
            _tri_taps_block_1d(eps, b, start, stop, spatial[0], padding, base, w)
        else:
            _tri_taps_block(eps, b, start, stop, spatial[0], spatial[1], padding, base, w)


# A transient plan's taps, the channel-last copies and the scatter accumulators are scratch
# that lives for one call.  Allocating them afresh each call made glibc return and re-map the
# pages whenever the heap top crossed its trim threshold, which depends on the allocation
# history (page faults costing several times the taps themselves; bench/RESULTS.md, third
# pass).  Each thread therefore keeps its buffers, up to _WORKSPACE_BYTES each (larger ones are
# allocated per call), until release_scratch().
_WORKSPACE_BYTES = 64 * 2**20
# Scratch alignment: the channel-last copies and accumulators are read and written a cache line
# (8 float64 or 16 float32) at a time, and a buffer that starts inside a line splits every one of
# those accesses over two lines (grad_x 3-14 % slower at 16 bytes off; bench/RESULTS.md, tenth pass).
_ALIGN = 64
_workspace = threading.local()


def release_scratch():
    """Drop this thread's scratch buffers (taps, channel-last copies, scatter accumulators)."""
    _workspace.__dict__.pop("buffers", None)


def _size(shape):
    """The number of elements of an array of ``shape`` (``math.prod``: ``np.prod`` costs ~8 µs a call,
    a visible part of a small warp's time)."""
    return math.prod(map(int, shape))


def _aligned_empty(nbytes):
    """``nbytes`` uninitialised bytes starting on a cache-line boundary (:data:`_ALIGN`)."""
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start:start + nbytes]


def _scratch(name, shape, dtype):
    """An uninitialised array of ``shape`` from this thread's buffer ``name``, starting on a
    cache-line boundary."""
    dtype = np.dtype(dtype)
    nbytes = _size(shape) * dtype.itemsize
    if nbytes > _WORKSPACE_BYTES:
        return _aligned_empty(nbytes).view(dtype).reshape(shape)
    buffers = _workspace.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.size < nbytes:
        buffer = buffers[name] = _aligned_empty(max(nbytes, _ALIGN))
    return buffer[:nbytes].view(dtype).reshape(shape)


def _taps(eps, kernel, padding, need_w, need_dw, fused=True, in_shape=None, relative=True, owned=False):
    """Axis taps ``(spatial, base, w, dw)`` of the positions ``eps`` (relative offsets on their
    own grid, or absolute coordinates when ``relative`` is False) on an input grid of shape
    ``in_shape`` (default: eps's grid).  ``owned``: fresh arrays instead of this thread's
    scratch (for taps that outlive the call, a plan's)."""
    out_spatial = np.asarray(eps.shape[2:], dtype=np.int64)
    same_grid = in_shape is None or tuple(map(int, in_shape)) == eps.shape[2:]
    spatial = out_spatial if same_grid else np.asarray(in_shape, dtype=np.int64)
    npos = _size(eps.shape[2:])
    for name, count in (("x", npos if same_grid else _size(in_shape)), ("eps", npos)):
        if count >= 2**31 - 1:
            raise ValueError(f"{name}: at most 2**31 - 2 positions per batch item are supported, got {count}")
    eps_flat = np.ascontiguousarray(eps).reshape(eps.shape[0], eps.shape[1], npos)
    batch, d = eps.shape[:2]
    allocate = (lambda name, shape, dtype: np.empty(shape, dtype=dtype)) if owned else _scratch
    base = allocate("base", (batch, d, npos), np.int32)
    w = allocate("w", (batch, d, 2, npos) if need_w else (0, 0, 0, 0), np.float64)
    dw = allocate("dw", (batch, d, 2, npos) if need_dw else (0, 0, 0, 0), np.float64)
    if fused and d <= 2 and need_w and not need_dw and relative and same_grid and _is_bilinear(kernel):
        _tri_taps(eps_flat, spatial, PADDING_CODES[padding], base, w)
    else:
        _axis_floors(eps_flat, out_spatial, relative, spatial, PADDING_CODES[padding], base, w if need_w else dw)
        _axis_taps_for(kernel)(need_w, need_dw, w, dw)
    return spatial, base, w, dw


def _flat(a):
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], _size(a.shape[2:]))


def _apply_gather(x, taps, padding, channel_last=True, out_shape=None):
    spatial, base, w, _ = taps
    out = np.empty(x.shape if out_shape is None else (*x.shape[:2], *out_shape), dtype=x.dtype)
    workers = _channel_last_workers(x.shape[0], x.shape[1], spatial, x.dtype.itemsize) if channel_last else 0
    if workers:
        xt = _scratch("channel_last", (workers, _size(spatial), x.shape[1] - x.shape[1] % _GROUP), x.dtype)
        eps_unused = np.empty((0, 0, 0), dtype=x.dtype)
        _gather_2d_channel_last(_flat(x), xt, eps_unused, base, w, spatial, PADDING_CODES[padding], _flat(out))
    else:
        _gather(_flat(x), base, w, spatial, PADDING_CODES[padding], _flat(out))
    return out


def _scatter_workers(batch, channels, spatial):
    """Worker accumulators for :func:`_scatter_2d_channel_last`, or 0 where it does not
    apply: 2-D, at least one group of eight channels, tasks (batch item × group) that
    balance over the threads (a multiple of them, or at least four per thread), and
    accumulators within :data:`_CHANNEL_LAST_BYTES`."""
    tasks = batch * (channels // _GROUP)
    threads = numba.get_num_threads()
    workers = min(threads, tasks)
    size = workers * (_size(spatial) + 1) * _GROUP * 8
    if len(spatial) != 2 or tasks == 0 or size > _CHANNEL_LAST_BYTES:
        return 0
    return workers if tasks % threads == 0 or tasks >= 4 * threads else 0


def _apply_scatter(g, taps, padding, channel_last=True):
    spatial, base, w, _ = taps
    batch, channels = g.shape[:2]
    out_shape = (batch, channels, *(int(s) for s in spatial))
    workers = _scatter_workers(batch, channels, spatial) if channel_last else 0
    if workers:
        grouped = channels - channels % _GROUP
        acc = _scratch("scatter_acc", (workers, _size(spatial) + 1, _GROUP), np.float64)
        out = np.empty(out_shape, dtype=g.dtype)
        _scatter_2d_channel_last(_flat(g), base, w, spatial, PADDING_CODES[padding], acc, _flat(out))
        if grouped < channels:
            rest = np.ascontiguousarray(g[:, grouped:])
            out[:, grouped:] = _apply_scatter(rest, taps, padding, channel_last=False)
        return out
    # enough tasks for every thread; the channel grouping does not change any sum's order
    ngroups = max(1, min(channels, -(-2 * numba.get_num_threads() // max(batch, 1))))
    group = max(1, -(-channels // ngroups))
    out = np.empty(out_shape, dtype=g.dtype)
    _scatter(_flat(g), base, w, spatial, PADDING_CODES[padding], group, _flat(out))
    return out


def _channel_last_workers(batch, channels, spatial, itemsize):
    """Worker buffers for :func:`_gather_2d_channel_last`, or 0 where it does not apply.

    It needs 2-D images of at least 2 × 2 (its vector loop reads the four corners of every
    position), a whole group of eight channels, and a copy of at most
    :data:`_CHANNEL_LAST_BYTES`.  Images are split over the threads whole when that
    balances (the batch a multiple of the threads, or at least four per thread) and each
    thread's copy is small (:data:`_WORKER_COPY_BYTES`); otherwise they are taken one
    after the other."""
    grouped = channels - channels % _GROUP
    image = _size(spatial) * grouped * itemsize
    if len(spatial) != 2 or grouped == 0 or min(spatial) < 2 or image > _CHANNEL_LAST_BYTES:
        return 0
    threads = numba.get_num_threads()
    balanced = batch % threads == 0 or batch >= 4 * threads
    return min(threads, batch) if balanced and image <= _WORKER_COPY_BYTES else 1


_BILINEAR: dict = {}


def _is_bilinear(kernel):
    """Whether ``kernel`` compiles to the bilinear kernel's scalars: the same φ and φ' expression
    trees and right limits as the built-in ``tri`` (so the same code, bitwise), whatever its name
    or origin.  The bilinear paths below are bitwise equal to the generic ones for it."""
    answer = _BILINEAR.get(kernel)
    if answer is None:
        import sympy as sp

        from ..kernels import get_kernel

        tri = get_kernel("tri")
        answer = _BILINEAR[kernel] = (
            sp.srepr(kernel.expr) == sp.srepr(tri.expr)
            and sp.srepr(kernel.derivative_expr) == sp.srepr(tri.derivative_expr)
            and kernel.derivative_right_limits == tri.derivative_right_limits
        )
    return answer


def _fuses_taps(eps, kernel):
    """Whether the forward of ``eps`` takes the fused bilinear path (2-D, the built-in ``tri``)."""
    return eps.shape[1] == 2 and _size(eps.shape[2:]) < 2**31 - 1 and _is_bilinear(kernel)


def warp(x, eps, kernel, padding, fused=True, taps=None):
    """Eq 2 (see :func:`warptheory.warping.warp`).

    Bilinear 2-D warps (the built-in ``tri``) compute their taps inside each gather block,
    and 2-D gathers with eight channels or more read them from channel-last copies
    (:func:`_gather_2d_channel_last`); ``fused=False`` takes the plain two-stage path
    instead (tap arrays, then :func:`_gather`).  The result is bitwise the same.  ``taps``:
    arrays ``(base, w)`` that the fused path fills with the φ taps on the way (a plan's first
    forward; bitwise those of :func:`_taps`)."""
    if fused and _fuses_taps(eps, kernel):
        spatial = np.asarray(eps.shape[2:], dtype=np.int64)
        if taps is None:
            taps = np.empty((0, 0, 0), dtype=np.int32), np.empty((0, 0, 0, 0), dtype=np.float64)
        out = np.empty(x.shape, dtype=x.dtype)
        workers = _channel_last_workers(x.shape[0], x.shape[1], spatial, x.dtype.itemsize)
        if workers:
            xt = _scratch("channel_last", (workers, _size(spatial), x.shape[1] - x.shape[1] % _GROUP), x.dtype)
            _gather_2d_channel_last(_flat(x), xt, _flat(eps), *taps, spatial, PADDING_CODES[padding], _flat(out))
        else:
            _gather_tri_2d(_flat(x), _flat(eps), *taps, spatial, PADDING_CODES[padding], _flat(out))
        return out
    return _apply_gather(x, _taps(eps, kernel, padding, True, False, fused), padding, channel_last=fused)


_CONSTANT_SLOPES: dict = {}


def _constant_slopes(kernel):
    """``(φ'(t), φ'(t - 1))`` when both are the same float for every tap argument t in [0, 1)
    (piecewise-linear kernels: tri, rect), else None; checked bitwise on the kernel's compiled φ'
    at 4096 points of [0, 1), its ends and subnormals.  Such a kernel's plans store no φ' taps:
    the engine reads the two constants instead (:func:`_slope_at`, bitwise what the tap stage
    stores), which saves a pass over the positions and its memory traffic."""
    if kernel not in _CONSTANT_SLOPES:
        t = np.concatenate([np.arange(4096) / 4096, [np.nextafter(1.0, 0.0), 5e-324, 1e-300]])
        right, left = kernel.derivative(t), kernel.derivative(t - 1.0)
        same = all(np.unique(v.view(np.int64)).size == 1 for v in (right, left))
        _CONSTANT_SLOPES[kernel] = (float(right[0]), float(left[0])) if same else None
    return _CONSTANT_SLOPES[kernel]


class Taps:
    """The Numba engine's state of one plan (see :class:`warptheory.warping.WarpPlan`).

    A plan's taps (``owned``) are computed at its first operation (a bilinear 2-D warp's by
    its first forward, on the way through the fused path: :func:`warp`'s ``taps``), its φ'
    taps at the first :meth:`prepare` that asks for them.  A transient plan (one functional
    call) keeps its taps in this thread's scratch and computes them when first needed, φ and
    φ' together (no φ' taps for a kernel with constant slopes, :func:`_constant_slopes`); its
    forward is :func:`warp` itself (the fused bilinear path where it applies)."""

    def __init__(self, positions, relative, in_shape, kernel, padding, transient=False):
        self.positions, self.relative, self.kernel, self.padding = positions, relative, kernel, padding
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(positions.shape[2:])
        self.transient = transient
        self.taps = None
        self.slopes = False

    def prepare(self, slopes):
        """Compute the φ taps, and the φ' taps too when ``slopes``, unless they are there."""
        constant = _constant_slopes(self.kernel) if slopes else None
        if self.taps is None:
            computed = slopes and constant is None
            self.taps = _taps(self.positions, self.kernel, self.padding, True, computed, in_shape=self.in_shape,
                              relative=self.relative, owned=not self.transient)
            self.slopes = computed
        if slopes and not self.slopes:
            if constant is None:
                # the φ' taps alone, into an array of their own (the φ taps are there already)
                dw = _taps(self.positions, self.kernel, self.padding, False, True, fused=False,
                           in_shape=self.in_shape, relative=self.relative, owned=True)[3]
            else:
                # no φ' taps to store: the engine reads the two constants (_slope_at)
                dw = np.empty((1, len(self.in_shape), 2, 1), dtype=np.float64)
                dw[0, :, 0, 0], dw[0, :, 1, 0] = constant
            self.taps = (*self.taps[:3], dw)
            self.slopes = True

    def gather(self, src):
        """Eq 2 (warp y) / eq 50 (unwarp grad_x)."""
        if self.taps is None and self.relative and self.in_shape == self.out_shape:
            if self.transient:
                return warp(src, self.positions, self.kernel, self.padding)
            if _fuses_taps(self.positions, self.kernel):
                # the plan's taps come out of its first forward's fused pass
                batch, d = self.positions.shape[:2]
                npos = _size(self.out_shape)
                base = np.empty((batch, d, npos), dtype=np.int32)
                w = np.empty((batch, d, 2, npos), dtype=np.float64)
                out = warp(src, self.positions, self.kernel, self.padding, taps=(base, w))
                no_slopes = np.empty((0, 0, 0, 0), dtype=np.float64)
                self.taps = (np.asarray(self.in_shape, dtype=np.int64), base, w, no_slopes)
                return out
        self.prepare(False)
        return _apply_gather(src, self.taps, self.padding, out_shape=self.out_shape)

    def scatter(self, src):
        """Eq 3 (warp grad_x) / eq 49 (unwarp y)."""
        self.prepare(False)
        return _apply_scatter(src, self.taps, self.padding)

    def position_derivative(self, outer, src):
        """Eq 4 (outer = grad_y, src = x) / eq 51 (outer = x, src = grad_y)."""
        self.prepare(True)
        out = np.empty((outer.shape[0], len(self.out_shape), *self.out_shape), dtype=outer.dtype)
        spatial, base, w, dw = self.taps
        factorised = not all(np.isfinite(v) for v in self.kernel.derivative_right_limits.values())
        _position_derivative(_flat(src), _flat(outer), base, w, dw, spatial, PADDING_CODES[self.padding], factorised,
                             _flat(out))
        return out
