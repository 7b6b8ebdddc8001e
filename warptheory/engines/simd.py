r"""LLVM vector intrinsics for the 2-D fast paths of the Numba engine.

In 2-D a position whose four corners are inside the lattice and adjacent reads two
pairs of neighbouring elements per channel: ``x[q], x[q+1]`` and
``x[q+W], x[q+W+1]``.  LLVM does not combine those scalar accesses by itself (its
vectoriser sees four independent indexed loads), so the generated code spends one load,
one float32→float64 conversion and one multiply-add per corner.  The intrinsics below
emit the pair loads, conversions and arithmetic as short vectors for four channels at a
time, which roughly halves the instructions per output; :func:`prefetch` lets the loops
request the rows they will read next.  See ``bench/RESULTS.md`` for
the measurements and ``paper_notes/s02_warping.md`` for the operations (eqs 2–4).

Numerics (the reason each one is written as it is):

* :func:`gather4` sums the four corner terms of each channel pairwise,
  ``(w0 x0 + w1 x1) + (w2 x2 + w3 x3)``, in float64 and rounds once to the input dtype
  — the same precision contract as the scalar loop (float64 weights and accumulation,
  one final rounding), with a different but fixed summation order.
* :func:`corner_sums4` accumulates ``Σ_k g_k x_k`` per corner in the same order as the
  scalar loop it replaces (first product, then fused multiply-adds, then added to the
  running sum).
* :func:`scatter4` updates each pair ``acc[q], acc[q+1]`` with one ``<2 x double>`` fused
  multiply-add, ``acc ← fma(w, g, acc)`` per element — exactly the scalar loop's operation,
  so grad_x stays bitwise identical to it (and deterministic: the order of the updates to
  each element is unchanged); bench/RESULTS.md has its gain.  Neighbouring positions whose
  pairs overlap partly defeat store forwarding, which limits it.

The channel-last intrinsics work on eight channels per vector (``<8 x double>``, one AVX-512
register) and transpose 8 × 8 blocks in registers:

* :func:`transpose8x16` copies eight channel rows of 16 positions into channel-last order;
* :func:`gather_channel_last8` is :func:`gather4`'s sum for eight positions × eight channels
  from a channel-last copy, bitwise (an arithmetic fence stops numba's ``contract`` flag from
  fusing its products into the sums: with no shuffle in between, LLVM otherwise would);
* :func:`scatter_channel_last16` makes :func:`scatter4`'s fused multiply-adds into a
  channel-last accumulator, in the same order per element; :func:`from_channel_last8`
  transposes the accumulator back and rounds once.

Without AVX-512 LLVM splits the wide vectors into narrower ones; the operations, and so the
results, stay the same.

All of them take C-contiguous 2-D arrays (channel planes, or the block scratch) and do not
check indices: the callers pass fast-path positions, whose four corners are inside the lattice
by construction; the channel-last ones also get slow positions, for which they read corner 0
(inside when both sizes are >= 2, which the engine requires) or, in the scatter, the listed
corners, which the engine points at a spare row when outside.
"""
from __future__ import annotations

import warnings

import llvmlite.ir as ir
import numba
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "gather4", "corner_sums4", "scatter4", "prefetch",
    "transpose8x16", "gather_channel_last8", "scatter_channel_last16", "from_channel_last8",
    "AVAILABLE", "REASON",
]

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_FLOATS = (types.float32, types.float64)


def _mask(indices):
    return ir.Constant(ir.VectorType(_I32, len(indices)), indices)


def _int64(builder, value, numba_type):
    if value.type.width == 64:
        return value
    return builder.sext(value, _I64) if numba_type.signed else builder.zext(value, _I64)


def _c_matrix(arg, dtypes):
    return isinstance(arg, types.Array) and arg.ndim == 2 and arg.layout == "C" and arg.dtype in dtypes


def _c_vector(arg, dtype):
    return isinstance(arg, types.Array) and arg.ndim == 1 and arg.layout == "C" and arg.dtype == dtype


def _integers(*args):
    return all(isinstance(a, types.Integer) for a in args)


class _Matrix:
    """A C-contiguous 2-D numba array seen as a flat pointer and a row length."""

    def __init__(self, context, builder, numba_type, value):
        array = context.make_array(numba_type)(context, builder, value)
        self.builder = builder
        self.data = array.data
        self.row = builder.extract_value(array.shape, 1)
        self.elem = context.get_value_type(numba_type.dtype)
        self.is_float32 = numba_type.dtype == types.float32
        self.align = 4 if self.is_float32 else 8

    def offset(self, row, col):
        return self.builder.add(self.builder.mul(row, self.row), col)

    def pointer(self, flat):
        return self.builder.gep(self.data, [flat], inbounds=True)

    def vector_pointer(self, flat, lanes):
        """``flat`` as a pointer to ``lanes`` elements of the array's own type."""
        return self.builder.bitcast(self.pointer(flat), ir.VectorType(self.elem, lanes).as_pointer())

    def load(self, flat, lanes=1):
        """``lanes`` consecutive elements from ``flat``, widened to float64."""
        builder = self.builder
        if lanes == 1:
            value = builder.load(self.pointer(flat), typ=self.elem, align=self.align)
            return builder.fpext(value, _F64) if self.is_float32 else value
        value = builder.load(self.pointer(flat), typ=ir.VectorType(self.elem, lanes), align=self.align)
        return builder.fpext(value, ir.VectorType(_F64, lanes)) if self.is_float32 else value

    def store(self, flat, value):
        """Store a float64 vector or scalar at ``flat`` (the caller rounds beforehand)."""
        pointer = self.builder.bitcast(self.pointer(flat), value.type.as_pointer())
        self.builder.store(value, pointer, align=8)


def _corners(builder, plane, q, width):
    """The 2×2 block ``x[q], x[q+1], x[q+W], x[q+W+1]`` of one plane as a float64 vector."""
    top = plane.load(q, lanes=2)
    bottom = plane.load(builder.add(q, width), lanes=2)
    return builder.shuffle_vector(top, bottom, _mask([0, 1, 2, 3]))


def _splat(builder, scalar, lanes):
    vector = builder.insert_element(ir.Constant(ir.VectorType(_F64, lanes), None), scalar, _I32(0))
    return builder.shuffle_vector(vector, vector, _mask([0] * lanes))


@intrinsic
def gather4(typingctx, xb, yb, n, pos, q, width, cw, j):
    """``yb[n+k, pos] = Σ_c cw[j, c] xb[n+k, corner_c]`` for k < 4 at a fast-path position
    (corners ``q, q+1, q+W, q+W+1``), summed pairwise in float64 and rounded once to yb's
    dtype.  The stores happen here too, which spares the caller numba's negative-index
    handling of the four output rows."""
    if not (
        _c_matrix(xb, _FLOATS)
        and _c_matrix(yb, _FLOATS)
        and yb.dtype == xb.dtype
        and _c_matrix(cw, (types.float64,))
        and _integers(n, pos, q, width, j)
    ):
        return None
    signature = types.none(xb, yb, n, pos, q, width, cw, j)

    def codegen(context, builder, sig, args):
        x = _Matrix(context, builder, sig.args[0], args[0])
        y = _Matrix(context, builder, sig.args[1], args[1])
        weights = _Matrix(context, builder, sig.args[6], args[6])
        n64, pos64, q64, w64, j64 = (_int64(builder, v, t) for v, t in zip(args[2:6] + args[7:], sig.args[2:6] + sig.args[7:]))
        w = weights.load(weights.offset(j64, _I64(0)), lanes=4)
        terms = []
        for k in range(4):
            start = x.offset(builder.add(n64, _I64(k)), q64)
            terms.append(builder.fmul(_corners(builder, x, start, w64), w))
        # pairwise horizontal sums of four vectors: [t0, t1, t2, t3] -> [Σt0, Σt1, Σt2, Σt3]
        even, odd = _mask([0, 4, 2, 6]), _mask([1, 5, 3, 7])
        h01 = builder.fadd(builder.shuffle_vector(terms[0], terms[1], even), builder.shuffle_vector(terms[0], terms[1], odd))
        h23 = builder.fadd(builder.shuffle_vector(terms[2], terms[3], even), builder.shuffle_vector(terms[2], terms[3], odd))
        sums = builder.fadd(
            builder.shuffle_vector(h01, h23, _mask([0, 1, 4, 5])), builder.shuffle_vector(h01, h23, _mask([2, 3, 6, 7]))
        )
        if y.is_float32:
            sums = builder.fptrunc(sums, ir.VectorType(y.elem, 4))
        for k in range(4):
            at = y.offset(builder.add(n64, _I64(k)), pos64)
            builder.store(builder.extract_element(sums, _I32(k)), y.pointer(at), align=y.align)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def corner_sums4(typingctx, xb, gb, n, pos, q, width, csum, j):
    """``csum[j, c] += Σ_{k<4} gb[n+k, pos] · xb[n+k, corner_c]`` at a fast-path position
    (corners ``q, q+1, q+W, q+W+1``), first product then fused multiply-adds, in float64."""
    if not (
        _c_matrix(xb, _FLOATS)
        and _c_matrix(gb, _FLOATS)
        and _c_matrix(csum, (types.float64,))
        and _integers(n, pos, q, width, j)
    ):
        return None
    signature = types.none(xb, gb, n, pos, q, width, csum, j)

    def codegen(context, builder, sig, args):
        x = _Matrix(context, builder, sig.args[0], args[0])
        g = _Matrix(context, builder, sig.args[1], args[1])
        sums = _Matrix(context, builder, sig.args[6], args[6])
        n64, pos64, q64, w64, j64 = (_int64(builder, v, t) for v, t in zip(args[2:6] + args[7:], sig.args[2:6] + sig.args[7:]))
        total = None
        for k in range(4):
            channel = builder.add(n64, _I64(k))
            corners = _corners(builder, x, x.offset(channel, q64), w64)
            weight = _splat(builder, g.load(g.offset(channel, pos64)), 4)
            term = builder.fmul(corners, weight, flags=("contract",))
            total = term if total is None else builder.fadd(total, term, flags=("contract",))
        at = sums.offset(j64, _I64(0))
        sums.store(at, builder.fadd(sums.load(at, lanes=4), total, flags=("contract",)))
        return context.get_dummy_value()

    return signature, codegen



@intrinsic
def prefetch(typingctx, array, row, col):
    """Hint the cache line holding ``array[row, col]`` for reading (never faults, even past the end).

    The 2-D loops read two rows per channel for four channels at once, a little behind
    their position; the hardware prefetchers lose track of that many short streams, so
    the loops hint the lines a fixed distance ahead themselves (bench/RESULTS.md, third pass)."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C" and _integers(row, col)):
        return None
    signature = types.none(array, row, col)

    def codegen(context, builder, sig, args):
        matrix = _Matrix(context, builder, sig.args[0], args[0])
        at = matrix.offset(_int64(builder, args[1], sig.args[1]), _int64(builder, args[2], sig.args[2]))
        # no inbounds: the hinted address may lie past the array, which a prefetch allows
        pointer = builder.bitcast(builder.gep(matrix.data, [at]), ir.IntType(8).as_pointer())
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, _I32, _I32, _I32]), "llvm.prefetch.p0"
        )
        builder.call(hint, [pointer, _I32(0), _I32(3), _I32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def scatter4(typingctx, acc, a, gb, n, pos, q, width, cw, j):
    """``acc[a+k, corner_c] += cw[j, c] · gb[n+k, pos]`` for k < 4 at a fast-path position
    (corners ``q, q+1, q+W, q+W+1``), one fused multiply-add per element, corners in order."""
    if not (
        _c_matrix(acc, (types.float64,))
        and _c_matrix(gb, _FLOATS)
        and _c_matrix(cw, (types.float64,))
        and _integers(a, n, pos, q, width, j)
    ):
        return None
    signature = types.none(acc, a, gb, n, pos, q, width, cw, j)

    def codegen(context, builder, sig, args):
        planes = _Matrix(context, builder, sig.args[0], args[0])
        g = _Matrix(context, builder, sig.args[2], args[2])
        weights = _Matrix(context, builder, sig.args[7], args[7])
        a64, n64, pos64, q64, w64, j64 = (
            _int64(builder, v, t) for v, t in zip(args[1:2] + args[3:7] + args[8:], sig.args[1:2] + sig.args[3:7] + sig.args[8:])
        )
        row = weights.offset(j64, _I64(0))
        top_w = weights.load(row, lanes=2)
        bottom_w = weights.load(builder.add(row, _I64(2)), lanes=2)
        pair = ir.VectorType(_F64, 2)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(pair, [pair, pair, pair]), "llvm.fma.v2f64")
        for k in range(4):
            h = _splat(builder, g.load(g.offset(builder.add(n64, _I64(k)), pos64)), 2)
            top = planes.offset(builder.add(a64, _I64(k)), q64)
            for start, w in ((top, top_w), (builder.add(top, w64), bottom_w)):
                planes.store(start, builder.call(fma, [w, h, planes.load(start, lanes=2)]))
        return context.get_dummy_value()

    return signature, codegen


def _transpose8(builder, rows):
    """Eight vectors of eight lanes (rows of a matrix) -> its eight columns.

    The classic three-stage shuffle network (pairs, quads, halves): 24 two-source shuffles,
    which LLVM lowers to unpack / shuffle / permute instructions."""
    pairs_lo, pairs_hi = _mask([0, 8, 1, 9, 4, 12, 5, 13]), _mask([2, 10, 3, 11, 6, 14, 7, 15])
    quads_lo, quads_hi = _mask([0, 1, 8, 9, 4, 5, 12, 13]), _mask([2, 3, 10, 11, 6, 7, 14, 15])
    halves_lo, halves_hi = _mask([0, 1, 2, 3, 8, 9, 10, 11]), _mask([4, 5, 6, 7, 12, 13, 14, 15])
    t = []
    for i in range(0, 8, 2):
        t += [builder.shuffle_vector(rows[i], rows[i + 1], pairs_lo), builder.shuffle_vector(rows[i], rows[i + 1], pairs_hi)]
    s = []
    for i in (0, 4):
        s += [
            builder.shuffle_vector(t[i], t[i + 2], quads_lo),
            builder.shuffle_vector(t[i], t[i + 2], quads_hi),
            builder.shuffle_vector(t[i + 1], t[i + 3], quads_lo),
            builder.shuffle_vector(t[i + 1], t[i + 3], quads_hi),
        ]
    columns = [None] * 8
    for c in range(4):
        columns[c] = builder.shuffle_vector(s[c], s[c + 4], halves_lo)
        columns[c + 4] = builder.shuffle_vector(s[c], s[c + 4], halves_hi)
    return columns


def _transposed_halves(builder, matrix, row, col):
    """The 8 × 16 block ``matrix[row:row+8, col:col+16]`` as its 16 columns, in two lists of
    eight (columns ``col .. col+7``, then ``col+8 .. col+15``): one 16-element load per row
    (a cache line in float32), then two register transposes."""
    rows = [
        builder.load(matrix.vector_pointer(matrix.offset(builder.add(row, _I64(i)), col), 16), align=matrix.align)
        for i in range(8)
    ]
    return [
        _transpose8(builder, [builder.shuffle_vector(v, v, _mask(list(range(8 * half, 8 * half + 8)))) for v in rows])
        for half in range(2)
    ]


@intrinsic
def transpose8x16(typingctx, src, dst, row, col):
    """``dst[col + j, row + i] = src[row + i, col + j]`` for i < 8, j < 16: eight channel rows
    of 16 positions become 16 position rows of eight channels (64-byte loads in float32, one
    cache line, so that a row's line is not read twice)."""
    if not (_c_matrix(src, _FLOATS) and _c_matrix(dst, _FLOATS) and src.dtype == dst.dtype and _integers(row, col)):
        return None
    signature = types.none(src, dst, row, col)

    def codegen(context, builder, sig, args):
        s = _Matrix(context, builder, sig.args[0], args[0])
        d = _Matrix(context, builder, sig.args[1], args[1])
        r, c = (_int64(builder, v, t) for v, t in zip(args[2:], sig.args[2:]))
        for half, columns in enumerate(_transposed_halves(builder, s, r, c)):
            for j in range(8):
                at = d.offset(builder.add(c, _I64(8 * half + j)), r)
                builder.store(columns[j], d.vector_pointer(at, 8), align=d.align)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def gather_channel_last8(typingctx, xt, yb, first, start, width, fast, cw, j):
    """``yb[first + c, start + j + i] = Σ_k cw[j + i, k] xt[corner_k(j + i), first + c]`` for
    c, i < 8: eight positions × eight channels of the 2-D bilinear gather from a
    channel-last copy ``xt`` (positions × channels) of the channel planes.

    Per position the four corners ``q, q+1, q+W, q+W+1`` (``q = fast[j + i]``) are four
    eight-channel vector loads, weighted and summed as in :func:`gather4`,
    ``(w0 x0 + w1 x1) + (w2 x2 + w3 x3)`` in float64 and rounded once, so the result is
    bitwise that of :func:`gather4`; an 8 × 8 transpose in registers then stores each
    channel's eight positions with one vector store.  A position whose ``fast`` entry is
    the slow marker is computed from corner 0 instead (any finite garbage, always inside
    the lattice when both sizes are >= 2); the caller overwrites it afterwards."""
    if not (
        _c_matrix(xt, _FLOATS)
        and _c_matrix(yb, _FLOATS)
        and yb.dtype == xt.dtype
        and _c_vector(fast, types.uint32)
        and _c_matrix(cw, (types.float64,))
        and _integers(first, start, width, j)
    ):
        return None
    signature = types.none(xt, yb, first, start, width, fast, cw, j)

    def codegen(context, builder, sig, args):
        x = _Matrix(context, builder, sig.args[0], args[0])
        y = _Matrix(context, builder, sig.args[1], args[1])
        weights = _Matrix(context, builder, sig.args[6], args[6])
        bases = context.make_array(sig.args[5])(context, builder, args[5]).data
        first64, start64, w64, j64 = (
            _int64(builder, v, t) for v, t in zip(args[2:5] + args[7:], sig.args[2:5] + sig.args[7:])
        )
        slow = ir.Constant(_I32, 0xFFFFFFFF)
        wide = ir.VectorType(_F64, 8)
        # numba's fastmath pass flags every unflagged float instruction "contract", and here
        # (unlike gather4, whose shuffles separate them) an fmul feeds an fadd directly: the
        # fence keeps LLVM from fusing them into a multiply-add that rounds once less
        fence = cgutils.get_or_insert_function(builder.module, ir.FunctionType(wide, [wide]), "llvm.arithmetic.fence.v8f64")
        rows = []
        for i in range(8):
            position = builder.add(j64, _I64(i))
            q = builder.load(builder.gep(bases, [position], inbounds=True), align=4)
            q = builder.zext(builder.select(builder.icmp_unsigned("==", q, slow), _I32(0), q), _I64)
            w = weights.load(weights.offset(position, _I64(0)), lanes=4)
            terms = []
            for k, corner in enumerate((q, builder.add(q, _I64(1)), builder.add(q, w64), builder.add(builder.add(q, w64), _I64(1)))):
                channels = builder.load(x.vector_pointer(x.offset(corner, first64), 8), align=x.align)
                if x.is_float32:
                    channels = builder.fpext(channels, wide)
                product = builder.fmul(channels, _splat(builder, builder.extract_element(w, _I32(k)), 8))
                terms.append(builder.call(fence, [product]))
            total = builder.fadd(builder.fadd(terms[0], terms[1]), builder.fadd(terms[2], terms[3]))
            rows.append(builder.fptrunc(total, ir.VectorType(y.elem, 8)) if y.is_float32 else total)
        position = builder.add(start64, j64)
        for c, column in enumerate(_transpose8(builder, rows)):
            at = y.offset(builder.add(first64, _I64(c)), position)
            builder.store(column, y.vector_pointer(at, 8), align=y.align)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def scatter_channel_last16(typingctx, acc, column, gb, first, start, j, width, fast, cidx, cw):
    """``acc[corner_k(j + i), column + c] ← fma(cw[j + i, k], gb[first + c, start + j + i], ·)``
    for positions i < 16 in increasing order, corners k in order, channels c < 8: the
    2-D scatter into a channel-last float64 accumulator (positions × channels).

    Every element receives exactly the fused multiply-adds of :func:`scatter4` and the
    engine's scalar loop, in the same (position, corner) order, so the sums are bitwise
    theirs.  ``gb`` is read as eight channel rows of 16 positions (one cache line each in
    float32) and transposed in registers.  A position's corners are ``q, q+1, q+W, q+W+1``
    for ``q = fast[j + i]``, or ``cidx[j + i, k]`` when ``fast`` holds the slow marker
    (the caller points outside taps at a spare row)."""
    if not (
        _c_matrix(acc, (types.float64,))
        and _c_matrix(gb, _FLOATS)
        and _c_vector(fast, types.uint32)
        and _c_matrix(cidx, (types.int64,))
        and _c_matrix(cw, (types.float64,))
        and _integers(column, first, start, j, width)
    ):
        return None
    signature = types.none(acc, column, gb, first, start, j, width, fast, cidx, cw)

    def codegen(context, builder, sig, args):
        sums = _Matrix(context, builder, sig.args[0], args[0])
        column64 = _int64(builder, args[1], sig.args[1])
        g = _Matrix(context, builder, sig.args[2], args[2])
        corners = _Matrix(context, builder, sig.args[8], args[8])
        weights = _Matrix(context, builder, sig.args[9], args[9])
        bases = context.make_array(sig.args[7])(context, builder, args[7]).data
        first64, start64, j64, w64 = (_int64(builder, v, t) for v, t in zip(args[3:7], sig.args[3:7]))
        wide = ir.VectorType(_F64, 8)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(wide, [wide, wide, wide]), "llvm.fma.v8f64")
        slow = ir.Constant(_I32, 0xFFFFFFFF)
        position = builder.add(start64, j64)
        for half, columns in enumerate(_transposed_halves(builder, g, first64, position)):
            for i in range(8):
                value = builder.fpext(columns[i], wide) if g.is_float32 else columns[i]
                at = builder.add(j64, _I64(8 * half + i))
                q32 = builder.load(builder.gep(bases, [at], inbounds=True), align=4)
                is_slow = builder.icmp_unsigned("==", q32, slow)
                q = builder.zext(q32, _I64)
                w = weights.load(weights.offset(at, _I64(0)), lanes=4)
                for k, offset in enumerate((_I64(0), _I64(1), w64, builder.add(w64, _I64(1)))):
                    listed = builder.load(corners.pointer(corners.offset(at, _I64(k))), align=8)
                    row = builder.select(is_slow, listed, builder.add(q, offset))
                    pointer = sums.vector_pointer(sums.offset(row, column64), 8)
                    total = builder.call(fma, [_splat(builder, builder.extract_element(w, _I32(k)), 8), value, builder.load(pointer, align=8)])
                    builder.store(total, pointer, align=8)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def from_channel_last8(typingctx, acc, column, yb, first, pos):
    """``yb[first + c, pos + i] = acc[pos + i, column + c]`` rounded to yb's dtype, for c, i < 8:
    eight positions × eight channels of a channel-last float64 accumulator back into
    channel rows."""
    if not (_c_matrix(acc, (types.float64,)) and _c_matrix(yb, _FLOATS) and _integers(column, first, pos)):
        return None
    signature = types.none(acc, column, yb, first, pos)

    def codegen(context, builder, sig, args):
        sums = _Matrix(context, builder, sig.args[0], args[0])
        y = _Matrix(context, builder, sig.args[2], args[2])
        column64, first64, pos64 = (_int64(builder, v, t) for v, t in zip(args[1:2] + args[3:], sig.args[1:2] + sig.args[3:]))
        rows = [
            builder.load(sums.vector_pointer(sums.offset(builder.add(pos64, _I64(i)), column64), 8), align=8)
            for i in range(8)
        ]
        if y.is_float32:
            rows = [builder.fptrunc(v, ir.VectorType(y.elem, 8)) for v in rows]
        for c, column in enumerate(_transpose8(builder, rows)):
            at = y.offset(builder.add(first64, _I64(c)), pos64)
            builder.store(column, y.vector_pointer(at, 8), align=y.align)
        return context.get_dummy_value()

    return signature, codegen


# ----- the plain loops: the same arithmetic without hand-written IR ---------------------------
# Bitwise the intrinsics' results (tests/test_simd.py, the forced fallback included).  A jitted
# function that leaves ``fastmath`` unset inherits its caller's flags when numba compiles it
# as a callee, and the engine's loops allow contraction: the pairwise sums of plain_gather4
# and plain_gather_channel_last8 would have products fused into their sums, and which version
# numba compiled (and cached) would depend on the first caller.  Hence fastmath=False, stated.
_PLAIN = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)
_PLAIN_FMA = dict(_PLAIN, fastmath={"contract"})
_SLOW = 0xFFFFFFFF


@njit(**_PLAIN)
def plain_gather4(xb, yb, n, pos, q, width, cw, j):
    for k in range(n, n + 4):
        x = xb[k]
        yb[k, pos] = (cw[j, 0] * np.float64(x[q]) + cw[j, 1] * np.float64(x[q + 1])) + (
            cw[j, 2] * np.float64(x[q + width]) + cw[j, 3] * np.float64(x[q + width + 1])
        )


@njit(**_PLAIN_FMA)
def plain_corner_sums4(xb, gb, n, pos, q, width, csum, j):
    h0 = np.float64(gb[n, pos])
    h1 = np.float64(gb[n + 1, pos])
    h2 = np.float64(gb[n + 2, pos])
    h3 = np.float64(gb[n + 3, pos])
    for c in range(4):
        i = q + (c & 1) + (width if c >= 2 else 0)
        csum[j, c] += h0 * xb[n, i] + h1 * xb[n + 1, i] + h2 * xb[n + 2, i] + h3 * xb[n + 3, i]


@njit(**_PLAIN_FMA)
def plain_scatter4(acc, a, gb, n, pos, q, width, cw, j):
    for k in range(4):
        h = np.float64(gb[n + k, pos])
        for c in range(4):
            acc[a + k, q + (c & 1) + (width if c >= 2 else 0)] += cw[j, c] * h


@njit(**_PLAIN)
def plain_prefetch(array, row, col):
    pass


@njit(**_PLAIN)
def plain_transpose8x16(src, dst, row, col):
    for i in range(8):
        for k in range(16):
            dst[col + k, row + i] = src[row + i, col + k]


@njit(**_PLAIN)
def plain_gather_channel_last8(xt, yb, first, start, width, fast, cw, j):
    for i in range(8):
        q = np.int64(0) if fast[j + i] == _SLOW else np.int64(fast[j + i])
        for c in range(first, first + 8):
            yb[c, start + j + i] = (cw[j + i, 0] * np.float64(xt[q, c]) + cw[j + i, 1] * np.float64(xt[q + 1, c])) + (
                cw[j + i, 2] * np.float64(xt[q + width, c]) + cw[j + i, 3] * np.float64(xt[q + width + 1, c])
            )


@njit(**_PLAIN_FMA)
def plain_scatter_channel_last16(acc, column, gb, first, start, j, width, fast, cidx, cw):
    for i in range(16):
        q = np.int64(fast[j + i])
        for c in range(4):
            row = cidx[j + i, c] if fast[j + i] == _SLOW else q + (c & 1) + (width if c >= 2 else 0)
            for k in range(8):
                acc[row, column + k] += cw[j + i, c] * np.float64(gb[first + k, start + j + i])


@njit(**_PLAIN)
def plain_from_channel_last8(acc, column, yb, first, pos):
    for i in range(8):
        for c in range(8):
            yb[first + c, pos + i] = acc[pos + i, column + c]


# ----- capability check --------------------------------------------------------------------
@njit(cache=True, fastmath={"contract"})
def _probe_intrinsics(xb, gb, yb, cw, csum, acc, fast, cidx, xt, yl, accl, wide, yt):
    gather4(xb, yb, 0, 1, 2, 8, cw, 0)
    corner_sums4(xb, gb, 0, 3, 2, 8, csum, 0)
    scatter4(acc, 0, gb, 0, 5, 2, 8, cw, 1)
    prefetch(xb, 0, 4)
    transpose8x16(wide, xt, 0, 0)
    gather_channel_last8(xt, yl, 0, 0, 4, fast, cw, 0)
    scatter_channel_last16(accl, 0, wide, 0, 0, 0, 4, fast, cidx, cw)
    from_channel_last8(accl, 0, yt, 0, 0)


@njit(cache=True, fastmath={"contract"})
def _probe_plain(xb, gb, yb, cw, csum, acc, fast, cidx, xt, yl, accl, wide, yt):
    plain_gather4(xb, yb, 0, 1, 2, 8, cw, 0)
    plain_corner_sums4(xb, gb, 0, 3, 2, 8, csum, 0)
    plain_scatter4(acc, 0, gb, 0, 5, 2, 8, cw, 1)
    plain_prefetch(xb, 0, 4)
    plain_transpose8x16(wide, xt, 0, 0)
    plain_gather_channel_last8(xt, yl, 0, 0, 4, fast, cw, 0)
    plain_scatter_channel_last16(accl, 0, wide, 0, 0, 0, 4, fast, cidx, cw)
    plain_from_channel_last8(accl, 0, yt, 0, 0)


def _probe_arrays(dtype):
    """Small inputs touching every code path of the intrinsics (one slow position included)."""
    rng = np.random.default_rng(11)
    xb = rng.normal(size=(4, 32)).astype(dtype)
    fast = np.array([0, 1, 2, 4, 5, 6, 8, 9, _SLOW, 10, 0, 1, 2, 4, 5, 6], dtype=np.uint32)
    return [
        xb, rng.normal(size=(4, 32)).astype(dtype), np.zeros_like(xb), rng.uniform(0, 1, (16, 4)),
        rng.normal(size=(4, 4)), rng.normal(size=(4, 40)), fast, rng.integers(0, 20, (16, 4)).astype(np.int64),
        np.zeros((16, 8), dtype=dtype), np.zeros((8, 8), dtype=dtype), rng.normal(size=(21, 8)),
        rng.normal(size=(8, 16)).astype(dtype), np.zeros((8, 8), dtype=dtype),
    ]


def _pairwise(w, x0, x1, x2, x3):
    """(w0 x0 + w1 x1) + (w2 x2 + w3 x3) in float64 numpy: the order of gather4 and
    gather_channel_last8."""
    return (w[0] * x0 + w[1] * x1) + (w[2] * x2 + w[3] * x3)


def _probe():
    """Compile the intrinsics and check them bitwise (float32 and float64): the pairwise sums
    against numpy, the fused multiply-adds and copies against the plain loops.  (True, "") or
    (False, why)."""
    try:
        for dtype in (np.float32, np.float64):
            ours, plain = _probe_arrays(dtype), _probe_arrays(dtype)
            _probe_intrinsics(*ours)
            _probe_plain(*plain)
            xb, _, yb, cw, _, _, fast, _, xt, yl = ours[:10]
            want_yb = np.zeros_like(yb)
            x = xb.astype(np.float64)
            want_yb[:, 1] = _pairwise(cw[0], x[:, 2], x[:, 3], x[:, 10], x[:, 11])
            want_yl = np.zeros_like(yl)
            xl = xt.astype(np.float64)
            for i in range(8):
                q = 0 if fast[i] == _SLOW else int(fast[i])
                want_yl[:, i] = _pairwise(cw[i], xl[q], xl[q + 1], xl[q + 4], xl[q + 5])
            # the plain pairwise sums (outputs 2 and 9) are tested against numpy in tests/test_simd.py
            checks = [(a, b) for k, (a, b) in enumerate(zip(ours, plain)) if k not in (2, 9)]
            checks += [(yb, want_yb), (yl, want_yl)]
            if any(a.tobytes() != b.tobytes() for a, b in checks):
                return False, f"an intrinsic's result differs from the plain arithmetic ({np.dtype(dtype).name})"
    except Exception as exc:  # any failure of typing, lowering or LLVM: fall back
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return True, ""


#: Whether the vector intrinsics compiled and computed exactly what they should on this numba/CPU.
AVAILABLE, REASON = _probe()
if not AVAILABLE:
    warnings.warn(
        f"warptheory: the vector intrinsics do not work with numba {numba.__version__} ({REASON}); the Numba "
        "engine runs its plain loops instead (slower; the same precision contract)",
        RuntimeWarning,
        stacklevel=2,
    )

# What the engine calls: the intrinsics when they work, else the plain loops.
(engine_gather4, engine_corner_sums4, engine_scatter4, engine_prefetch, engine_transpose8x16,
 engine_gather_channel_last8, engine_scatter_channel_last16, engine_from_channel_last8) = (
    (gather4, corner_sums4, scatter4, prefetch, transpose8x16, gather_channel_last8, scatter_channel_last16,
     from_channel_last8)
    if AVAILABLE else
    (plain_gather4, plain_corner_sums4, plain_scatter4, plain_prefetch, plain_transpose8x16,
     plain_gather_channel_last8, plain_scatter_channel_last16, plain_from_channel_last8)
)
