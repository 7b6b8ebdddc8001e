r"""Reference warp engine in plain numpy (paper eqs 2–4, 16–18, 49–51).

This is the slow, "obviously right" route every fast engine is checked against.
It accumulates in float64 whatever the input dtype and rounds once to that dtype.

Conventions (see ``paper_notes/s02_warping.md``):

* warp (eq 2): ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(v_k − u_k + eps[b,k,v])``; the sample
  position of output ``v`` is ``p = v + eps[b,:,v]`` (pixel units, ``eps[:,k]`` moves
  along spatial axis ``k``).
* unwarp (eq 49): ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(u_k − v_k + eps[b,k,u])``; input
  ``u`` is scattered around its position ``q = u + eps[b,:,u]``.  It is the
  transpose of warp.
* padding of the lattice outside ``0 ≤ u_k < S_k``: ``"zeros"`` (x = 0 there),
  ``"periodic"`` (index mod S_k), ``"border"`` (index clamped to the edge).
* φ' is the right derivative at kinks (``warptheory.kernels``).
* a position whose offset is NaN or ±inf is *undefined*: a gather at it (warp
  output, both grad_eps, unwarp grad_x) is NaN; a scatter from it (warp grad_x,
  unwarp output) contributes nothing.

Independence from the fast engines: the reference does not rely on the kernel's
support being [-1, 1] beyond using four taps ``floor(p) − 1 … floor(p) + 2`` per axis
(the fast engines use two), and it evaluates φ through the vectorised ufuncs
``Kernel.value`` / ``Kernel.derivative`` rather than the jitted scalars.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["Taps", "warp", "warp_backward", "unwarp", "unwarp_backward"]

# Taps relative to floor(p) along one axis.  φ has support [-1, 1], so only 0 and 1 can
# carry weight; -1 and 2 are kept so that the reference does not depend on that argument.
_TAP_OFFSETS = (-1, 0, 1, 2)


def _axis_taps(position, size, padding):
    """Per-tap (lattice index, in-lattice mask, argument t = p − u) along one axis.

    ``position`` is a float64 array of finite sample positions.  The tap argument is
    formed as ``frac(p) − offset`` rather than ``p − u`` so that it stays exact for
    |p| ≥ 2**53 (where ``floor(p) + 1`` is not representable); for the same reason the
    periodic index is reduced with ``fmod`` before the offset is added, and the
    zeros/border base index is clipped to a range that keeps every tap's in/out class.
    """
    base = np.floor(position)
    frac = position - base  # exact: p and floor(p) share an exponent range
    if padding == "periodic":
        base = np.fmod(base, size)  # exact for every float
        base = np.where(base < 0, base + size, base)
    else:
        base = np.clip(base, -4.0, size + 3.0)
    taps = []
    for off in _TAP_OFFSETS:
        u = base + off
        t = frac - off
        if padding == "zeros":
            inside = (u >= 0) & (u < size)
            index = np.clip(u, 0, size - 1)
        elif padding == "periodic":
            inside = np.ones(u.shape, dtype=bool)
            index = np.mod(u, size)
        elif padding == "border":
            inside = np.ones(u.shape, dtype=bool)
            index = np.clip(u, 0, size - 1)
        else:  # pragma: no cover - validated by the public API
            raise ValueError(f"padding: unknown {padding!r}")
        taps.append((index.astype(np.int64), inside, t))
    return taps


def _corners(eps, spatial, padding, relative=True):
    """Yield, for every combination of per-axis taps, (flat index, inside, [t_k]).

    The sample positions are ``v + eps[:, :, v]`` over eps's own grid (``relative``) or
    ``eps`` itself (absolute coordinates); ``spatial`` is the input grid the taps index.
    Arrays have shape ``(B, P)`` with ``P`` the number of positions.  Also returns the mask
    of positions with a finite offset (the others get position 0 and must be masked).
    """
    d = len(spatial)
    batch = eps.shape[0]
    eps64 = eps.astype(np.float64).reshape(batch, d, int(np.prod(eps.shape[2:])))
    finite = np.all(np.isfinite(eps64), axis=1)  # (B, P)
    grid = np.indices(eps.shape[2:], dtype=np.float64).reshape(d, -1)  # lattice coordinates v_k
    if not relative:
        grid = np.zeros_like(grid)
    per_axis = []
    for k in range(d):
        position = np.where(finite, grid[k][None, :] + eps64[:, k, :], 0.0)
        per_axis.append(_axis_taps(position, spatial[k], padding))
    corners = []
    for combo in itertools.product(range(len(_TAP_OFFSETS)), repeat=d):
        taps = [per_axis[k][combo[k]] for k in range(d)]
        flat = np.ravel_multi_index(tuple(tap[0] for tap in taps), spatial)
        inside = np.logical_and.reduce([tap[1] for tap in taps]) & finite
        corners.append((flat, inside, [tap[2] for tap in taps], combo))
    return corners, finite


def _weights(kernel, ts, axis=None):
    """Π_k φ(t_k), or with ``axis=i`` the derivative term φ'(t_i) Π_{k≠i} φ(t_k).

    A factor that is exactly 0 annihilates the term even against φ' = ±∞ (sqrt_tri at the
    support edge): that tap's weight does not move with ε_i, so its contribution is 0.
    """
    w = np.ones(ts[0].shape)
    zero = np.zeros(ts[0].shape, dtype=bool)
    for k, t in enumerate(ts):
        factor = kernel.derivative(t) if k == axis else kernel.value(t)
        zero |= factor == 0
        with np.errstate(invalid="ignore"):
            w = w * factor
    return np.where(zero, 0.0, w)


def _flat(a):
    return a.astype(np.float64).reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:])))


def _gather(xflat, flat):
    """xflat[b, n, flat[b, p]] for every b, n, p."""
    return np.take_along_axis(xflat, flat[:, None, :], axis=2)


def _scatter(values, flat, inside, size):
    """out[b, n, w] = Σ_{p : flat[b,p] = w, inside} values[b, n, p]."""
    batch, channels, _ = values.shape
    out = np.zeros((batch, channels, size))
    for b in range(batch):
        targets = flat[b][inside[b]]
        for n in range(channels):
            out[b, n] += np.bincount(targets, weights=values[b, n][inside[b]], minlength=size)
    return out


def _gather_apply(xflat, corners, finite, kernel):
    """Σ_u x[b,n,u] Π_k φ(p_k − u_k) at every position (the warp gather, eq 2)."""
    out = np.zeros((*xflat.shape[:2], finite.shape[1]))
    for flat, inside, ts, _ in corners:
        w = np.where(inside, _weights(kernel, ts), 0.0)
        out += np.where(inside[:, None, :], w[:, None, :] * _gather(xflat, flat), 0.0)
    out[np.broadcast_to(~finite[:, None, :], out.shape)] = np.nan
    return out


def _scatter_apply(values, corners, size, kernel):
    """out[b,n,v] = Σ_p values[b,n,p] Π_k φ(p_k + eps_kp − v_k) (the warp transpose)."""
    out = np.zeros((*values.shape[:2], size))
    for flat, inside, ts, _ in corners:
        w = np.where(inside, _weights(kernel, ts), 0.0)
        out += _scatter(values * w[:, None, :], flat, inside, size)
    return out


def _position_derivative(xflat, gflat, corners, finite, kernel):
    """Σ_n g[b,n,p] Σ_u x[b,n,u] φ'(p_i − u_i) Π_{k≠i} φ(p_k − u_k) for each axis i.

    Written factorised, Σ_a φ'(t_{i,a}) · [Σ_{corners with tap a on axis i} Π_{k≠i} φ · Σ_n g x],
    so that an infinite slope (sqrt_tri at the support edge) multiplies one finite number:
    the result is ±∞, or 0 when that number is 0, and NaN only for +∞ − ∞ between taps.
    """
    d = len(corners[0][2])
    out = np.zeros((xflat.shape[0], d, gflat.shape[2]))
    for i in range(d):
        inner = {}  # tap index along axis i -> (t_i, Σ over the other axes)
        for flat, inside, ts, combo in corners:
            gathered = np.where(inside[:, None, :], _gather(xflat, flat), 0.0)
            g_dot_x = np.sum(gflat * gathered, axis=1)  # Σ_n over channels, (B, P)
            others = _weights(kernel, [t for k, t in enumerate(ts) if k != i]) if d > 1 else 1.0
            term = np.where(inside, others * g_dot_x, 0.0)
            t_i, acc = inner.get(combo[i], (ts[i], 0.0))
            inner[combo[i]] = (t_i, acc + term)
        for t_i, acc in inner.values():
            slope = kernel.derivative(t_i)
            with np.errstate(invalid="ignore"):  # 0·∞ := 0: that tap does not move
                out[:, i] += np.where(acc == 0, 0.0, slope * acc)
    out[np.broadcast_to(~finite[:, None, :], out.shape)] = np.nan
    return out


class Taps:
    """The reference engine's state of one plan (see :class:`warptheory.warping.WarpPlan`):
    the corners of every sample position, and the three primitives on them."""

    def __init__(self, positions, relative, in_shape, kernel, padding, transient=True):
        self.kernel = kernel
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(positions.shape[2:])
        self.d = positions.shape[1]
        self.corners, self.finite = _corners(positions, self.in_shape, padding, relative)

    def prepare(self, slopes):
        """Nothing to do: the reference evaluates φ and φ' where it needs them."""

    def gather(self, src):
        """Eq 2 (warp y) / eq 50 (unwarp grad_x): ``src`` on the input grid, result on the output grid."""
        out = _gather_apply(_flat(src), self.corners, self.finite, self.kernel)
        return out.reshape(*src.shape[:2], *self.out_shape).astype(src.dtype)

    def scatter(self, src):
        """Eq 3 (warp grad_x) / eq 49 (unwarp y): ``src`` on the output grid, result on the input grid."""
        out = _scatter_apply(_flat(src), self.corners, int(np.prod(self.in_shape)), self.kernel)
        return out.reshape(*src.shape[:2], *self.in_shape).astype(src.dtype)

    def position_derivative(self, outer, src):
        """Eq 4 (outer = grad_y, src = x) / eq 51 (outer = x, src = grad_y)."""
        out = _position_derivative(_flat(src), _flat(outer), self.corners, self.finite, self.kernel)
        return out.reshape(outer.shape[0], self.d, *self.out_shape).astype(outer.dtype)


def warp(x, eps, kernel, padding):
    """Eq 2: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(v_k − u_k + eps[b,k,v])``."""
    return Taps(eps, True, x.shape[2:], kernel, padding).gather(x)


def warp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 3–4 (17–18): gradients of a loss through :func:`warp`.

    ``grad_x[b,n,w] = Σ_v grad_y[b,n,v] Π_k φ(v_k − w_k + eps[b,k,v])`` (eq 3) and
    ``grad_eps[b,i,w] = Σ_n grad_y[b,n,w] Σ_u x[b,n,u] φ'(w_i − u_i + eps[b,i,w])
    Π_{k≠i} φ(w_k − u_k + eps[b,k,w])`` (eq 4).
    """
    taps = Taps(eps, True, x.shape[2:], kernel, padding)
    grad_x = taps.scatter(grad_y) if need_x else None
    grad_eps = taps.position_derivative(grad_y, x) if need_eps else None
    return grad_x, grad_eps


def unwarp(x, eps, kernel, padding):
    """Eq 49: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(u_k − v_k + eps[b,k,u])`` (scatter from u)."""
    return Taps(eps, True, x.shape[2:], kernel, padding).scatter(x)


def unwarp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 50–51: gradients of a loss through :func:`unwarp`.

    ``grad_x[b,n,w] = Σ_v grad_y[b,n,v] Π_k φ(w_k − v_k + eps[b,k,w])`` (eq 50, with the
    index typo of the paper's last line corrected: the product runs over ``w``, not ``u``)
    and ``grad_eps[b,i,w] = Σ_n x[b,n,w] Σ_v grad_y[b,n,v] φ'(w_i − v_i + eps[b,i,w])
    Π_{k≠i} φ(w_k − v_k + eps[b,k,w])`` (eq 51).
    """
    taps = Taps(eps, True, x.shape[2:], kernel, padding)
    grad_x = taps.gather(grad_y) if need_x else None
    # eq 51: the roles are x[w] (at the differentiated position) and grad_y[v] (gathered).
    grad_eps = taps.position_derivative(x, grad_y) if need_eps else None
    return grad_x, grad_eps
