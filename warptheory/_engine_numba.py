r"""Numba CPU warp engine (paper eqs 2–4, 16–18, 49–51).

Same interface and conventions as the reference :mod:`warptheory._engine_numpy`
(see ``paper_notes/s02_warping.md``).  Two stages:

1. **Corner table** (the only kernel-dependent code, one small jitted function that
   is compiled once per kernel): for every batch item ``b`` and output position ``v``
   the sample position ``p = v + eps[b,:,v]`` has ``C = 2**d`` lattice neighbours
   (φ has support [-1, 1]).  For each we store the flat input index, the weight
   ``Π_k φ(t_k)`` and, when asked, the derivative weights ``φ'(t_i) Π_{k≠i} φ(t_k)``.
   A neighbour that the zeros padding puts outside points at a *zero slot* appended
   to x, so the inner loops have no branches; an undefined position (NaN/±inf offset)
   gets NaN weights, so every gather at it is NaN and the transpose skips it.
2. **Kernel-independent loops**, compiled once per dtype and cached on disk:
   the gather of eq 2 (also unwarp's grad_x, eq 50), the position derivative of eq 4
   (also unwarp's grad_eps, eq 51), and the transpose of eq 3 (also unwarp, eq 49).

Every loop runs ``prange`` over batch × blocks of positions, so a single image with
many pixels uses every thread.

The transpose (eq 3, a scatter) is made deterministic — bitwise identical across runs
and thread counts — by building its sparse structure with a stable counting sort
(entries bucketed by target input index, in increasing source order) and then
*gathering* into each input; no two threads ever write the same element.  The sort
itself runs in parallel over batch items only (it is ~10% of a backward pass).

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

# Positions per parallel task: large enough that per-task overhead and the per-block
# scratch are negligible, small enough to balance a single large image over threads.
_BLOCK = 256

_JIT = dict(nogil=True, error_model="numpy")


def _corner_table_py(phi, dphi, eps, spatial, padding, need_w, need_dw):
    """Flat input index and weights of the 2**d lattice neighbours of every sample position.

    A neighbour outside the lattice under zeros padding gets index ``npos`` (the zero
    slot appended to x by :func:`_with_zero_slot`); an undefined position (NaN/inf
    offset) gets index 0 and NaN weights, so gathers give NaN and the transpose skips it.
    """
    batch, d, npos = eps.shape
    ncorner = 1 << d
    # unsigned: numba then skips the negative-index wraparound in the gathers (~25% faster)
    index = np.empty((batch, npos, ncorner), dtype=np.uint32)
    weight = np.empty((batch, npos, ncorner) if need_w else (0, 0, 0), dtype=np.float64)
    dweight = np.empty((batch, npos, ncorner, d) if need_dw else (0, 0, 0, 0), dtype=np.float64)
    strides = np.ones(d, dtype=np.int64)
    for k in range(d - 2, -1, -1):
        strides[k] = strides[k + 1] * spatial[k + 1]
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
        tap_index = np.empty((d, 2), dtype=np.int64)
        tap_w = np.empty((d, 2), dtype=np.float64)
        tap_dw = np.empty((d, 2), dtype=np.float64)
        for pos in range(start, stop):
            undefined = False
            for k in range(d):
                size = spatial[k]
                p = coord[k] + np.float64(eps[b, k, pos])
                if not np.isfinite(p):
                    undefined = True
                    p = 0.0
                base = np.floor(p)
                frac = p - base  # exact; stays exact for |p| >= 2**53, where frac = 0
                if padding == 1:  # periodic: fmod is exact for every float (and slow: skip it inside)
                    if not (0.0 <= base < size):
                        base = np.fmod(base, size)
                        if base < 0:
                            base += size
                    i0 = np.int64(base)
                    i1 = i0 + 1
                    if i1 == size:
                        i1 = 0
                elif padding == 0:  # zeros: the clip keeps both taps' in/out class
                    i0 = np.int64(min(max(base, -2.0), np.float64(size)))
                    i1 = i0 + 1
                    if i0 < 0 or i0 >= size:
                        i0 = -1
                    if i1 < 0 or i1 >= size:
                        i1 = -1
                else:  # border: the clip keeps both taps' clamped index
                    i0 = np.int64(min(max(base, -1.0), np.float64(size - 1)))
                    i1 = min(i0 + 1, size - 1)
                    i0 = max(i0, 0)
                tap_index[k, 0] = i0
                tap_index[k, 1] = i1
                tap_w[k, 0] = phi(frac)
                tap_w[k, 1] = phi(frac - 1.0)
                if need_dw:
                    tap_dw[k, 0] = dphi(frac)
                    tap_dw[k, 1] = dphi(frac - 1.0)
            if d == 2 and not undefined:
                # the hot case, written out: the generic corner loop below costs more than φ
                for c in range(4):
                    a = c >> 1
                    e = c & 1
                    ia = tap_index[0, a]
                    ie = tap_index[1, e]
                    index[b, pos, c] = npos if (ia < 0 or ie < 0) else ia * strides[0] + ie
                    if need_w:
                        weight[b, pos, c] = tap_w[0, a] * tap_w[1, e]
                    if need_dw:
                        dweight[b, pos, c, 0] = tap_dw[0, a] * tap_w[1, e]
                        dweight[b, pos, c, 1] = tap_w[0, a] * tap_dw[1, e]
            else:
                for c in range(ncorner):
                    flat = np.int64(0)
                    w = 1.0
                    for k in range(d):
                        bit = (c >> (d - 1 - k)) & 1
                        tap = tap_index[k, bit]
                        if tap < 0 or flat == npos:
                            flat = npos
                        else:
                            flat += tap * strides[k]
                        w *= tap_w[k, bit]
                    if undefined:
                        flat = 0
                        w = np.nan
                    index[b, pos, c] = flat
                    if need_w:
                        weight[b, pos, c] = w
                    if need_dw:
                        for i in range(d):
                            dw = 1.0
                            for k in range(d):
                                bit = (c >> (d - 1 - k)) & 1
                                dw *= tap_dw[k, bit] if k == i else tap_w[k, bit]
                            dweight[b, pos, c, i] = np.nan if undefined else dw
            # next lattice point in C order
            k = d - 1
            coord[k] += 1
            while k > 0 and coord[k] == spatial[k]:
                coord[k] = 0
                k -= 1
                coord[k] += 1
    return index, weight, dweight


# Compiled once per kernel (the kernel's jitted scalars are first-class arguments, which
# numba cannot cache on disk); everything heavier below is kernel-independent and cached.
_corner_table = numba.njit(parallel=True, **_JIT)(_corner_table_py)


@numba.njit(parallel=True, cache=True, **_JIT)
def _copy_with_zero_slot(x, out):
    """out[b, n, :npos] = x[b, n]; out[b, n, npos] = 0 (the value of every outside tap)."""
    batch, channels, npos = x.shape
    for row in prange(batch * channels):
        b = row // channels
        n = row % channels
        for pos in range(npos):
            out[b, n, pos] = x[b, n, pos]
        out[b, n, npos] = 0


@numba.njit(parallel=True, cache=True, **_JIT)
def _gather(x, index, weight, out):
    """out[b,n,v] = Σ_c weight[b,v,c] x[b,n,index[b,v,c]]  (eq 2; eq 50 for unwarp)."""
    batch, channels, npos = out.shape
    ncorner = index.shape[2]
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * nblocks):
        b = task // nblocks
        start = (task % nblocks) * _BLOCK
        stop = min(start + _BLOCK, npos)
        idx = index[b]
        w = weight[b]
        for n in range(channels):
            xr = x[b, n]
            yr = out[b, n]
            # explicit 2-D and 1-D bodies: the corner loop of the generic body does not unroll
            if ncorner == 4:
                for pos in range(start, stop):
                    yr[pos] = (
                        w[pos, 0] * xr[idx[pos, 0]]
                        + w[pos, 1] * xr[idx[pos, 1]]
                        + w[pos, 2] * xr[idx[pos, 2]]
                        + w[pos, 3] * xr[idx[pos, 3]]
                    )
            elif ncorner == 2:
                for pos in range(start, stop):
                    yr[pos] = w[pos, 0] * xr[idx[pos, 0]] + w[pos, 1] * xr[idx[pos, 1]]
            else:
                for pos in range(start, stop):
                    acc = 0.0
                    for c in range(ncorner):
                        acc += w[pos, c] * xr[idx[pos, c]]
                    yr[pos] = acc


@numba.njit(parallel=True, cache=True, **_JIT)
def _position_derivative(x, g, index, dweight, out):
    """out[b,i,v] = Σ_n g[b,n,v] Σ_c dweight[b,v,c,i] x[b,n,index[b,v,c]]  (eqs 4, 51)."""
    batch, d, npos = out.shape
    channels = g.shape[1]
    ncorner = index.shape[2]
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * nblocks):
        b = task // nblocks
        start = (task % nblocks) * _BLOCK
        stop = min(start + _BLOCK, npos)
        idx = index[b]
        dw = dweight[b]
        acc = np.zeros((d, stop - start), dtype=np.float64)
        for n in range(channels):
            xr = x[b, n]
            gr = g[b, n]
            if ncorner == 4:
                for pos in range(start, stop):
                    gv = np.float64(gr[pos])
                    x0 = gv * xr[idx[pos, 0]]
                    x1 = gv * xr[idx[pos, 1]]
                    x2 = gv * xr[idx[pos, 2]]
                    x3 = gv * xr[idx[pos, 3]]
                    j = pos - start
                    acc[0, j] += dw[pos, 0, 0] * x0 + dw[pos, 1, 0] * x1 + dw[pos, 2, 0] * x2 + dw[pos, 3, 0] * x3
                    acc[1, j] += dw[pos, 0, 1] * x0 + dw[pos, 1, 1] * x1 + dw[pos, 2, 1] * x2 + dw[pos, 3, 1] * x3
            else:
                for pos in range(start, stop):
                    gv = np.float64(gr[pos])
                    j = pos - start
                    for c in range(ncorner):
                        xv = gv * xr[idx[pos, c]]
                        for i in range(d):
                            acc[i, j] += dw[pos, c, i] * xv
        for i in range(d):
            for pos in range(start, stop):
                out[b, i, pos] = acc[i, pos - start]


@numba.njit(parallel=True, cache=True, **_JIT)
def _transpose_structure(index, weight, npos):
    """Sparse transpose of the corner table, by a stable counting sort on the target index.

    The entries landing on input ``u`` of batch item ``b`` are
    ``source[b, e], weight_sorted[b, e]`` for ``offsets[b, u] <= e < offsets[b, u+1]``,
    in increasing source position — a fixed order, whatever the thread count.  Outside
    taps (index ``npos``) and undefined positions (NaN weight) are left out.
    """
    batch, nsrc, ncorner = index.shape
    offsets = np.zeros((batch, npos + 1), dtype=np.int64)
    source = np.empty((batch, nsrc * ncorner), dtype=np.uint32)
    weight_sorted = np.empty((batch, nsrc * ncorner), dtype=np.float64)
    for b in prange(batch):
        for pos in range(nsrc):
            for c in range(ncorner):
                dst = index[b, pos, c]
                if dst < npos and not np.isnan(weight[b, pos, c]):
                    offsets[b, dst + 1] += 1
        for u in range(npos):
            offsets[b, u + 1] += offsets[b, u]
        fill = offsets[b, :npos].copy()
        for pos in range(nsrc):
            for c in range(ncorner):
                dst = index[b, pos, c]
                if dst < npos and not np.isnan(weight[b, pos, c]):
                    e = fill[dst]
                    source[b, e] = pos
                    weight_sorted[b, e] = weight[b, pos, c]
                    fill[dst] = e + 1
    return offsets, source, weight_sorted


@numba.njit(parallel=True, cache=True, **_JIT)
def _transpose_apply(g, offsets, source, weight_sorted, out):
    """out[b,n,u] = Σ_{(v,c) → u} weight[b,v,c] g[b,n,v]  (eq 3; eq 49 for unwarp)."""
    batch, channels, npos = out.shape
    nblocks = (npos + _BLOCK - 1) // _BLOCK
    for task in prange(batch * nblocks):
        b = task // nblocks
        start = (task % nblocks) * _BLOCK
        stop = min(start + _BLOCK, npos)
        off = offsets[b]
        src = source[b]
        ws = weight_sorted[b]
        for n in range(channels):
            gr = g[b, n]
            yr = out[b, n]
            e = off[start]
            for u in range(start, stop):
                acc = 0.0
                end = off[u + 1]
                while e < end:  # the block's entries are contiguous: one running cursor
                    acc += ws[e] * gr[src[e]]
                    e += 1
                yr[u] = acc


def _table(eps, kernel, padding, need_w, need_dw):
    spatial = np.asarray(eps.shape[2:], dtype=np.int64)
    npos = int(np.prod(spatial))
    if npos >= 2**31 - 1:
        raise ValueError(f"x: at most 2**31 - 2 positions per batch item are supported, got {npos}")
    eps64 = np.ascontiguousarray(eps, dtype=np.float64).reshape(eps.shape[0], eps.shape[1], npos)
    return _corner_table(
        kernel.value_scalar, kernel.derivative_scalar, eps64, spatial, PADDING_CODES[padding], need_w, need_dw
    )


def _flat(a):
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:])))


def _gatherable(x, padding):
    """x as (B, N, npos), with the zero slot appended when the zeros padding can index it."""
    xf = _flat(x)
    if padding != "zeros":
        return xf
    padded = np.empty((xf.shape[0], xf.shape[1], xf.shape[2] + 1), dtype=xf.dtype)
    _copy_with_zero_slot(xf, padded)
    return padded


def _apply_gather(x, index, weight, padding):
    out = np.empty(x.shape, dtype=x.dtype)
    _gather(_gatherable(x, padding), index, weight, _flat(out))
    return out


def _apply_transpose(g, index, weight):
    gf = _flat(g)
    offsets, source, weight_sorted = _transpose_structure(index, weight, gf.shape[2])
    out = np.empty(g.shape, dtype=g.dtype)
    _transpose_apply(gf, offsets, source, weight_sorted, _flat(out))
    return out


def _apply_derivative(x, g, index, dweight, eps, padding):
    out = np.empty(eps.shape, dtype=eps.dtype)
    _position_derivative(_gatherable(x, padding), _flat(g), index, dweight, _flat(out))
    return out


def warp(x, eps, kernel, padding):
    """Eq 2 (see :func:`warptheory.warping.warp`)."""
    index, weight, _ = _table(eps, kernel, padding, True, False)
    return _apply_gather(x, index, weight, padding)


def warp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 3–4 (see :func:`warptheory.warping.warp_backward`)."""
    if not (need_x or need_eps):
        return None, None
    index, weight, dweight = _table(eps, kernel, padding, need_x, need_eps)
    grad_x = _apply_transpose(grad_y, index, weight) if need_x else None
    grad_eps = _apply_derivative(x, grad_y, index, dweight, eps, padding) if need_eps else None
    return grad_x, grad_eps


def unwarp(x, eps, kernel, padding):
    """Eq 49, the transpose of eq 2 (see :func:`warptheory.warping.unwarp`)."""
    index, weight, _ = _table(eps, kernel, padding, True, False)
    return _apply_transpose(x, index, weight)


def unwarp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 50–51 (see :func:`warptheory.warping.unwarp_backward`).

    grad_x (eq 50) is the warp of ``grad_y``; grad_eps (eq 51) is eq 4 with the roles of
    x and grad_y exchanged: x sits at the differentiated position, grad_y is gathered.
    """
    if not (need_x or need_eps):
        return None, None
    index, weight, dweight = _table(eps, kernel, padding, need_x, need_eps)
    grad_x = _apply_gather(grad_y, index, weight, padding) if need_x else None
    grad_eps = _apply_derivative(grad_y, x, index, dweight, eps, padding) if need_eps else None
    return grad_x, grad_eps
