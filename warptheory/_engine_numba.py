r"""Numba CPU warp engine (paper eqs 2–4, 16–18, 49–51).

Same interface and conventions as the reference :mod:`warptheory._engine_numpy`
(see ``paper_notes/s02_warping.md``).  Two stages:

1. **Axis taps** (the only kernel-dependent code, one small jitted function compiled
   once per kernel): φ has support [-1, 1], so along axis ``k`` the sample position
   ``p = v_k + eps[b,k,v]`` touches the two lattice points ``floor(p)`` and
   ``floor(p) + 1``.  For each we store the (padding-reduced) floor as int32 and the
   weights ``φ(t)``, ``φ(t - 1)`` (and, when asked, ``φ'``) — ``d`` entries per
   position instead of the ``2**d`` corners.  An undefined position (NaN/±inf offset)
   is marked with :data:`_UNDEFINED` and gets NaN weights, so every gather at it is NaN
   and every scatter skips it.
2. **Kernel-independent loops**, compiled once per dtype and cached on disk.  Each
   parallel task takes a block of positions, expands the axis taps into the block's
   ``2**d`` corner indices and products ``Π_k φ(t_k)`` (and ``φ'(t_i) Π_{k≠i} φ(t_k)``)
   in a small scratch that stays in L1, then loops over the channels:
   the gather of eq 2 (also unwarp's grad_x, eq 50), the position derivative of eq 4
   (also unwarp's grad_eps, eq 51) and the scatter of eq 3 (also unwarp, eq 49).  In 2-D
   a position whose four corners are inside the lattice and adjacent (the common case)
   is read through one base index; the others read each corner, an outside corner as 0
   (a select on the loaded value, so x itself is never copied or padded).

The transpose (eq 3, a scatter) is deterministic — bitwise identical across runs and
thread counts — because each parallel task owns whole output planes ``(b, channels)``:
it adds the contributions to every input in increasing source position and corner
order, into a private float64 plane, and no two threads ever write the same element.
The summation order of each element is thus fixed by the data alone.  (A single plane
is one task, so a lone image with one channel runs on one thread.)

Precision: weights are float64; sums are accumulated in float64 and rounded once to
the input dtype, so float32 results differ from the float64 reference only by that
final rounding (plus the rounding of float32 inputs, which the reference shares).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["warp", "warp_backward", "unwarp", "unwarp_backward"]

PADDING_CODES = {"zeros": 0, "periodic": 1, "border": 2}

# Positions per parallel task: large enough that per-task overhead and the block's
# corner expansion are negligible next to the channel loop, small enough that the
# block's scratch (C corners × (index + weights)) stays in L1 and a single large image
# balances over threads.
_BLOCK = 256

# Axis-tap marker of a position whose offset is NaN or ±inf (axis 0 only).
_UNDEFINED = np.int32(-(2**31))
# Block base index of a position that does not take the 2-D fast path.
_SLOW = np.uint32(0xFFFFFFFF)

_JIT = dict(nogil=True, error_model="numpy")


def _axis_taps_py(phi, dphi, eps, spatial, padding, need_w, need_dw):
    """Padding-reduced floor and the two tap weights of every position along every axis.

    ``base[b,k,v]`` is ``floor(v_k + eps[b,k,v])`` clipped (zeros: to [-2, size];
    border: to [-1, size - 1]) or reduced modulo the size (periodic), so the taps'
    in/out class and clamped index are those of the exact position; ``w[b,k,j,v]`` is
    ``φ(frac - j)``, ``dw`` likewise with φ'.
    """
    batch, d, npos = eps.shape
    base = np.empty((batch, d, npos), dtype=np.int32)
    w = np.empty((batch, d, 2, npos) if need_w else (0, 0, 0, 0), dtype=np.float64)
    dw = np.empty((batch, d, 2, npos) if need_dw else (0, 0, 0, 0), dtype=np.float64)
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * nblocks):
        b = task // nblocks
        start = (task % nblocks) * _BLOCK
        stop = min(start + _BLOCK, npos)
        coord = np.empty(d, dtype=np.int64)
        rest = start
        for k in range(d - 1, -1, -1):
            coord[k] = rest % spatial[k]
            rest //= spatial[k]
        for pos in range(start, stop):
            undefined = False
            for k in range(d):
                if not np.isfinite(eps[b, k, pos]):
                    undefined = True
            for k in range(d):
                if undefined:
                    base[b, k, pos] = _UNDEFINED if k == 0 else 0
                    if need_w:
                        w[b, k, 0, pos] = np.nan
                        w[b, k, 1, pos] = np.nan
                    if need_dw:
                        dw[b, k, 0, pos] = np.nan
                        dw[b, k, 1, pos] = np.nan
                    continue
                size = spatial[k]
                p = coord[k] + np.float64(eps[b, k, pos])
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
                base[b, k, pos] = np.int32(floor)
                if need_w:
                    w[b, k, 0, pos] = phi(frac)
                    w[b, k, 1, pos] = phi(frac - 1.0)
                if need_dw:
                    dw[b, k, 0, pos] = dphi(frac)
                    dw[b, k, 1, pos] = dphi(frac - 1.0)
            # next lattice point in C order
            k = d - 1
            coord[k] += 1
            while k > 0 and coord[k] == spatial[k]:
                coord[k] = 0
                k -= 1
                coord[k] += 1
    return base, w, dw


# Compiled once per kernel (the kernel's jitted scalars are first-class arguments, which
# numba cannot cache on disk); everything heavier below is kernel-independent and cached.
_axis_taps = numba.njit(parallel=True, **_JIT)(_axis_taps_py)


@numba.njit(cache=True, inline="always", **_JIT)
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


@numba.njit(cache=True, inline="always", **_JIT)
def _expand_block(base, w, dw, b, start, stop, spatial, padding, need_w, need_dw, fast, cidx, cw, cdw):
    """The block's corners from the axis taps, into the task's scratch.

    ``fast[j]``: in 2-D, the flat index of corner (0, 0) when the four corners are
    inside and adjacent, else :data:`_SLOW`.  ``cidx[j, c]``: flat index of corner c,
    -1 outside (filled for slow positions only in 2-D, always otherwise).  ``cw[j, c]``
    = Π_k φ, ``cdw[j, c, i]`` = φ'(t_i) Π_{k≠i} φ(t_k), multiplied in axis order.
    """
    d = base.shape[1]
    ncorner = 1 << d
    npos = base.shape[2]
    for j in range(stop - start):
        pos = start + j
        undefined = base[b, 0, pos] == _UNDEFINED
        if d == 2:
            height = spatial[0]
            width = spatial[1]
            a0, a1 = _tap_pair(0 if undefined else np.int64(base[b, 0, pos]), height, padding)
            e0, e1 = _tap_pair(np.int64(base[b, 1, pos]), width, padding)
            if need_w:
                wa0 = w[b, 0, 0, pos]
                wa1 = w[b, 0, 1, pos]
                we0 = w[b, 1, 0, pos]
                we1 = w[b, 1, 1, pos]
                cw[j, 0] = wa0 * we0
                cw[j, 1] = wa0 * we1
                cw[j, 2] = wa1 * we0
                cw[j, 3] = wa1 * we1
            if need_dw:
                va0 = dw[b, 0, 0, pos]
                va1 = dw[b, 0, 1, pos]
                ve0 = dw[b, 1, 0, pos]
                ve1 = dw[b, 1, 1, pos]
                # the callers always build the φ taps along with the φ' taps
                wa0 = w[b, 0, 0, pos]
                wa1 = w[b, 0, 1, pos]
                we0 = w[b, 1, 0, pos]
                we1 = w[b, 1, 1, pos]
                cdw[j, 0, 0] = va0 * we0
                cdw[j, 0, 1] = wa0 * ve0
                cdw[j, 1, 0] = va0 * we1
                cdw[j, 1, 1] = wa0 * ve1
                cdw[j, 2, 0] = va1 * we0
                cdw[j, 2, 1] = wa1 * ve0
                cdw[j, 3, 0] = va1 * we1
                cdw[j, 3, 1] = wa1 * ve1
            if (not undefined) and a0 >= 0 and a1 == a0 + 1 and e0 >= 0 and e1 == e0 + 1:
                fast[j] = np.uint32(a0 * width + e0)
            else:
                fast[j] = _SLOW
                cidx[j, 0] = -1 if (a0 < 0 or e0 < 0) else a0 * width + e0
                cidx[j, 1] = -1 if (a0 < 0 or e1 < 0) else a0 * width + e1
                cidx[j, 2] = -1 if (a1 < 0 or e0 < 0) else a1 * width + e0
                cidx[j, 3] = -1 if (a1 < 0 or e1 < 0) else a1 * width + e1
                if undefined:
                    for c in range(4):
                        cidx[j, c] = 0
        else:
            fast[j] = _SLOW
            for c in range(ncorner):
                flat = np.int64(0)
                wc = 1.0
                for k in range(d):
                    bit = (c >> (d - 1 - k)) & 1
                    floor = np.int64(0) if (undefined and k == 0) else np.int64(base[b, k, pos])
                    i0, i1 = _tap_pair(floor, spatial[k], padding)
                    tap = i1 if bit else i0
                    if tap < 0 or flat < 0:
                        flat = -1
                    else:
                        flat = flat * spatial[k] + tap
                    if need_w:
                        wc *= w[b, k, bit, pos]
                cidx[j, c] = 0 if undefined else flat
                if need_w:
                    cw[j, c] = wc
                if need_dw:
                    for i in range(d):
                        dwc = 1.0
                        for k in range(d):
                            bit = (c >> (d - 1 - k)) & 1
                            dwc *= dw[b, k, bit, pos] if k == i else w[b, k, bit, pos]
                        cdw[j, c, i] = dwc
    return npos


@numba.njit(cache=True, **_JIT)
def _gather_channels(xb, yb, first, count, start, m, width, fast, cidx, cw):
    """Channels ``first .. first + count - 1`` (count 1 or 4) of one block of the gather.

    A separate small function so that LLVM keeps the loop's values in registers."""
    ncorner = cw.shape[1]
    right = np.uint32(1)
    down = np.uint32(width)
    diag = np.uint32(width + 1)
    if count == 4:
        x0 = xb[first]
        x1 = xb[first + 1]
        x2 = xb[first + 2]
        x3 = xb[first + 3]
        y0 = yb[first, start:start + m]
        y1 = yb[first + 1, start:start + m]
        y2 = yb[first + 2, start:start + m]
        y3 = yb[first + 3, start:start + m]
        for j in range(m):
            q = fast[j]
            if q != _SLOW:
                w0 = cw[j, 0]
                w1 = cw[j, 1]
                w2 = cw[j, 2]
                w3 = cw[j, 3]
                y0[j] = w0 * x0[q] + w1 * x0[q + right] + w2 * x0[q + down] + w3 * x0[q + diag]
                y1[j] = w0 * x1[q] + w1 * x1[q + right] + w2 * x1[q + down] + w3 * x1[q + diag]
                y2[j] = w0 * x2[q] + w1 * x2[q + right] + w2 * x2[q + down] + w3 * x2[q + diag]
                y3[j] = w0 * x3[q] + w1 * x3[q + right] + w2 * x3[q + down] + w3 * x3[q + diag]
            else:
                for n in range(4):
                    xr = xb[first + n]
                    acc = 0.0
                    for c in range(ncorner):
                        i = cidx[j, c]
                        acc += cw[j, c] * (np.float64(xr[max(i, 0)]) if i >= 0 else 0.0)
                    yb[first + n, start + j] = acc
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


@numba.njit(parallel=True, cache=True, **_JIT)
def _gather(x, base, w, spatial, padding, out):
    """out[b,n,v] = Σ_c w_c(b,v) x[b,n,corner_c(b,v)]  (eq 2; eq 50 for unwarp)."""
    batch, channels, npos = out.shape
    d = base.shape[1]
    ncorner = 1 << d
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    width = spatial[d - 1]
    for task in prange(batch * nblocks):
        b = task // nblocks
        start = (task % nblocks) * _BLOCK
        stop = min(start + _BLOCK, npos)
        m = stop - start
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, ncorner), dtype=np.int64)
        cw = np.empty((_BLOCK, ncorner), dtype=np.float64)
        cdw = np.empty((0, 0, 0), dtype=np.float64)
        _expand_block(base, w, w, b, start, stop, spatial, padding, True, False, fast, cidx, cw, cdw)
        xb = x[b]
        yb = out[b]
        n = 0
        while n < channels:
            # four channels per sweep share the block's index and weight loads
            count = 4 if n + 4 <= channels else 1
            _gather_channels(xb, yb, n, count, start, m, width, fast, cidx, cw)
            n += count


@numba.njit(cache=True, **_JIT)
def _derivative_channel(xr, gr, acc, m, width, fast, cidx, cdw, xc):
    """One channel's terms of one block of the position derivative, added to ``acc``.

    A separate small function so that LLVM keeps the loop's values in registers."""
    d = acc.shape[0]
    ncorner = cidx.shape[1]
    right = np.uint32(1)
    down = np.uint32(width)
    diag = np.uint32(width + 1)
    for j in range(m):
        gv = np.float64(gr[j])
        q = fast[j]
        if q != _SLOW:
            x0 = gv * xr[q]
            x1 = gv * xr[q + right]
            x2 = gv * xr[q + down]
            x3 = gv * xr[q + diag]
            acc[0, j] += cdw[j, 0, 0] * x0 + cdw[j, 1, 0] * x1 + cdw[j, 2, 0] * x2 + cdw[j, 3, 0] * x3
            acc[1, j] += cdw[j, 0, 1] * x0 + cdw[j, 1, 1] * x1 + cdw[j, 2, 1] * x2 + cdw[j, 3, 1] * x3
        else:
            for c in range(ncorner):
                i = cidx[j, c]
                xc[c] = gv * (np.float64(xr[max(i, 0)]) if i >= 0 else 0.0)
            if d == 2:
                acc[0, j] += cdw[j, 0, 0] * xc[0] + cdw[j, 1, 0] * xc[1] + cdw[j, 2, 0] * xc[2] + cdw[j, 3, 0] * xc[3]
                acc[1, j] += cdw[j, 0, 1] * xc[0] + cdw[j, 1, 1] * xc[1] + cdw[j, 2, 1] * xc[2] + cdw[j, 3, 1] * xc[3]
            else:
                for c in range(ncorner):
                    for k in range(d):
                        acc[k, j] += cdw[j, c, k] * xc[c]


@numba.njit(parallel=True, cache=True, **_JIT)
def _position_derivative(x, g, base, w, dw, spatial, padding, out):
    """out[b,i,v] = Σ_n g[b,n,v] Σ_c dw_{c,i}(b,v) x[b,n,corner_c(b,v)]  (eqs 4, 51)."""
    batch, d, npos = out.shape
    channels = g.shape[1]
    ncorner = 1 << d
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    width = spatial[d - 1]
    for task in prange(batch * nblocks):
        b = task // nblocks
        start = (task % nblocks) * _BLOCK
        stop = min(start + _BLOCK, npos)
        m = stop - start
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, ncorner), dtype=np.int64)
        cw = np.empty((0, 0), dtype=np.float64)
        cdw = np.empty((_BLOCK, ncorner, d), dtype=np.float64)
        _expand_block(base, w, dw, b, start, stop, spatial, padding, False, True, fast, cidx, cw, cdw)
        acc = np.zeros((d, _BLOCK), dtype=np.float64)
        xc = np.empty(ncorner, dtype=np.float64)
        for n in range(channels):
            _derivative_channel(x[b, n], g[b, n, start:stop], acc, m, width, fast, cidx, cdw, xc)
        for k in range(d):
            for j in range(m):
                out[b, k, start + j] = acc[k, j]


@numba.njit(parallel=True, cache=True, **_JIT)
def _scatter(g, base, w, spatial, padding, group, out):
    """out[b,n,u] = Σ_{(v,c) → u} w_c(b,v) g[b,n,v]  (eq 3; eq 49 for unwarp).

    One task per batch item and group of ``group`` channels; each input's terms are added
    in increasing (v, c) order into a private float64 plane (slot ``npos`` collects the
    outside taps), so the result does not depend on the number of threads.
    """
    batch, channels, npos = out.shape
    d = base.shape[1]
    ncorner = 1 << d
    ngroups = (channels + group - 1) // group
    width = spatial[d - 1]
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * ngroups):
        b = task // ngroups
        first = (task % ngroups) * group
        last = min(first + group, channels)
        acc = np.zeros((last - first, npos + 1), dtype=np.float64)
        fast = np.empty(_BLOCK, dtype=np.uint32)
        cidx = np.empty((_BLOCK, ncorner), dtype=np.int64)
        cw = np.empty((_BLOCK, ncorner), dtype=np.float64)
        cdw = np.empty((0, 0, 0), dtype=np.float64)
        right = np.uint32(1)
        down = np.uint32(width)
        diag = np.uint32(width + 1)
        for blk in range(nblocks):
            start = blk * _BLOCK
            stop = min(start + _BLOCK, npos)
            _expand_block(base, w, w, b, start, stop, spatial, padding, True, False, fast, cidx, cw, cdw)
            for j in range(stop - start):
                if fast[j] == _SLOW:
                    for c in range(ncorner):
                        # outside taps and undefined positions (NaN weight) land in the spare slot
                        if cidx[j, c] < 0 or np.isnan(cw[j, c]):
                            cidx[j, c] = npos
            for n in range(first, last):
                gr = g[b, n, start:stop]
                ar = acc[n - first]
                for j in range(stop - start):
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
        for n in range(first, last):
            ar = acc[n - first]
            yr = out[b, n]
            for u in range(npos):
                yr[u] = ar[u]


def _taps(eps, kernel, padding, need_w, need_dw):
    spatial = np.asarray(eps.shape[2:], dtype=np.int64)
    npos = int(np.prod(spatial))
    if npos >= 2**31 - 1:
        raise ValueError(f"x: at most 2**31 - 2 positions per batch item are supported, got {npos}")
    eps_flat = np.ascontiguousarray(eps).reshape(eps.shape[0], eps.shape[1], npos)
    base, w, dw = _axis_taps(
        kernel.value_scalar, kernel.derivative_scalar, eps_flat, spatial, PADDING_CODES[padding], need_w, need_dw
    )
    return spatial, base, w, dw


def _flat(a):
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:])))


def _apply_gather(x, taps, padding):
    spatial, base, w, _ = taps
    out = np.empty(x.shape, dtype=x.dtype)
    _gather(_flat(x), base, w, spatial, PADDING_CODES[padding], _flat(out))
    return out


def _apply_scatter(g, taps, padding):
    spatial, base, w, _ = taps
    batch, channels = g.shape[:2]
    # enough tasks for every thread; the channel grouping does not change any sum's order
    ngroups = max(1, min(channels, -(-2 * numba.get_num_threads() // max(batch, 1))))
    group = max(1, -(-channels // ngroups))
    out = np.empty(g.shape, dtype=g.dtype)
    _scatter(_flat(g), base, w, spatial, PADDING_CODES[padding], group, _flat(out))
    return out


def _apply_derivative(x, g, taps, eps, padding):
    spatial, base, w, dw = taps
    out = np.empty(eps.shape, dtype=eps.dtype)
    _position_derivative(_flat(x), _flat(g), base, w, dw, spatial, PADDING_CODES[padding], _flat(out))
    return out


def warp(x, eps, kernel, padding):
    """Eq 2 (see :func:`warptheory.warping.warp`)."""
    return _apply_gather(x, _taps(eps, kernel, padding, True, False), padding)


def warp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 3–4 (see :func:`warptheory.warping.warp_backward`)."""
    if not (need_x or need_eps):
        return None, None
    # the derivative weights φ'(t_i) Π_{k≠i} φ(t_k) need the φ taps too
    taps = _taps(eps, kernel, padding, True, need_eps)
    grad_x = _apply_scatter(grad_y, taps, padding) if need_x else None
    grad_eps = _apply_derivative(x, grad_y, taps, eps, padding) if need_eps else None
    return grad_x, grad_eps


def unwarp(x, eps, kernel, padding):
    """Eq 49, the transpose of eq 2 (see :func:`warptheory.warping.unwarp`)."""
    return _apply_scatter(x, _taps(eps, kernel, padding, True, False), padding)


def unwarp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 50–51 (see :func:`warptheory.warping.unwarp_backward`).

    grad_x (eq 50) is the warp of ``grad_y``; grad_eps (eq 51) is eq 4 with the roles of
    x and grad_y exchanged: x sits at the differentiated position, grad_y is gathered.
    """
    if not (need_x or need_eps):
        return None, None
    taps = _taps(eps, kernel, padding, True, need_eps)
    grad_x = _apply_gather(grad_y, taps, padding) if need_x else None
    grad_eps = _apply_derivative(grad_y, x, taps, eps, padding) if need_eps else None
    return grad_x, grad_eps
