r"""Warping and unwarping of sampled signals (paper §2 eqs 1–4, supplementary §7 eqs 16–18, §12 eqs 49–51).

The continuous warp :math:`y(t) = x(t + \varepsilon(t))` (eq 1), discretised with an
interpolation kernel :math:`\varphi` (eq 2),

.. math::

    y_{n\mathbf v} = \sum_{\mathbf u} x_{n\mathbf u} \prod_k \varphi(v_k - u_k + \varepsilon_{k\mathbf v}),

its gradients (eqs 3–4 = 17–18), its transpose *unwarp* (eq 49) and the gradients of
that (eqs 50–51).  Conventions, padding, the kink convention and the NaN policy are
written out in ``paper_notes/s02_warping.md`` and ``paper_notes/s12_unwarping.md``.

One public function per operation; the backend is chosen in one place
(:func:`_engine`): Numba on the CPU for numpy arrays, CuPy on the GPU for CuPy arrays,
and the slow numpy reference on request.

Examples
--------
Zero offsets give the identity and integer offsets an exact shift (periodic padding
turns it into :func:`numpy.roll`):

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(1, 2, 5, 7))
>>> eps = np.zeros((1, 2, 5, 7))
>>> bool(np.array_equal(warp(x, eps), x))
True
>>> eps[:, 0], eps[:, 1] = 2.0, -1.0
>>> bool(np.array_equal(warp(x, eps, padding="periodic"), np.roll(x, (-2, 1), axis=(2, 3))))
True

Unwarp is the transpose of warp, :math:`\langle \mathrm{unwarp}(x), g\rangle = \langle x, \mathrm{warp}(g)\rangle`:

>>> eps = rng.normal(size=(1, 2, 5, 7))
>>> g = rng.normal(size=x.shape)
>>> bool(np.isclose(np.vdot(unwarp(x, eps), g), np.vdot(x, warp(g, eps)), rtol=1e-12))
True
"""
from __future__ import annotations

import numpy as np

from . import engines
from ._docs import docfiller
from .kernels import get_kernel

__all__ = [
    "WarpPlan", "warp_plan", "sample_plan", "sample", "sample_backward",
    "warp", "warp_backward", "unwarp", "unwarp_backward", "warp_matrix", "PADDINGS", "BACKENDS",
]

#: Valid ``padding`` values.
PADDINGS = ("zeros", "periodic", "border")
#: Valid ``backend`` values (``None`` picks from the array type).
BACKENDS = ("numba", "numpy", "cupy")

_SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Shared parameter descriptions, written once and filled into every docstring
# (the pattern of scipy.ndimage._ni_docstrings).
_DOCS = {
    "x": """x : ndarray, shape (B, N, *S)
        Signal: batch ``B``, channels ``N``, ``d = len(S)`` spatial axes (1 to 3).
        float32 or float64; a numpy array (Numba/numpy backends) or a CuPy array
        (CuPy backend).""",
    "eps": """eps : ndarray, shape (B, d, *S)
        Offsets in pixel units, same dtype and array type as ``x``; ``eps[:, k]`` moves
        along spatial axis ``k`` (axis ``k + 2`` of ``x``).  A NaN or ±inf offset makes
        that position undefined (see Notes).""",
    "coords": """coords : ndarray, shape (B, d, *S_out)
        Absolute sample positions in pixel units, same dtype and array type as ``x``:
        ``coords[:, k]`` is the position along spatial axis ``k`` of the input (pixel ``u``
        sits at ``u``).  ``S_out`` is any grid, independent of the input's shape.  A NaN or
        ±inf coordinate makes that position undefined (see Notes).""",
    "grad_y": """grad_y : ndarray, shape (B, N, *S)
        Gradient of the loss with respect to the output, same dtype as ``x``.""",
    "kernel": """kernel : str or Kernel, optional
        Interpolation kernel φ: a built-in name (``"tri"``, ``"cos"``, ``"rect"``,
        ``"hann"``, ``"sqrt_tri"``) or a :class:`~warptheory.kernels.Kernel` from
        :func:`~warptheory.kernels.kernel_from_sympy`.  Default ``"tri"`` (bilinear).""",
    "padding": """padding : {"zeros", "periodic", "border"}, optional
        Value of the signal off the lattice: ``"zeros"`` (x = 0 outside, the paper's
        choice, §2.1), ``"periodic"`` (indices modulo the size; the torus of the
        theory), ``"border"`` (index clamped to the nearest edge).  Default ``"zeros"``.""",
    "backend": """backend : {None, "numba", "numpy", "cupy"}, optional
        ``None`` (default) uses CuPy for CuPy arrays and Numba otherwise;
        ``"numpy"`` is the slow float64 reference.""",
    "need": """need_x, need_eps : bool, optional
        Which gradients to compute; the one not asked for is returned as ``None`` and
        costs nothing.""",
    "notes": """Notes
    -----
    Sample positions are ``v + eps[b, :, v]``; φ has support [-1, 1], so each output
    touches the ``2**d`` lattice neighbours of its position.  φ' is the *right*
    derivative at kinks (``warptheory.kernels``), as in a floor-based engine.

    NaN policy: a position whose offset is NaN or ±inf has no sample point.  Quantities
    *gathered at* such a position are NaN (warp output, both ``grad_eps``, unwarp's
    ``grad_x``); quantities *scattered from* it receive nothing (warp's ``grad_x``,
    unwarp's output), so one bad offset cannot spread.  Finite offsets of any size
    are exact: ``periodic`` reduces them with ``fmod``, ``zeros``/``border`` clip them
    without changing which taps are in or out.""",
}


_fill_doc = docfiller(_DOCS)


# ----- validation -------------------------------------------------------------------
def _array_kind(name, a):
    """'numpy' or 'cupy' for an array argument; TypeError for anything else."""
    if isinstance(a, np.ndarray):
        return "numpy"
    if type(a).__module__.split(".")[0] == "cupy":
        return "cupy"
    raise TypeError(f"{name}: expected a numpy or CuPy array, got {type(a).__name__}")


def _check_dtype(name, a):
    if np.dtype(a.dtype) not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")


def _validate(x, eps, grad_y, kernel, padding, backend):
    """Check every argument; return (engine module, Kernel)."""
    kinds = {"x": _array_kind("x", x), "eps": _array_kind("eps", eps)}
    if grad_y is not None:
        kinds["grad_y"] = _array_kind("grad_y", grad_y)
    if len(set(kinds.values())) > 1:
        raise TypeError(
            "x, eps" + (", grad_y" if grad_y is not None else "")
            + f": arrays must all be numpy or all CuPy, got {kinds}"
        )
    for name, a in (("x", x), ("eps", eps), ("grad_y", grad_y)):
        if a is not None:
            _check_dtype(name, a)
    if eps.dtype != x.dtype:
        raise TypeError(f"eps: dtype {eps.dtype} does not match x's dtype {x.dtype}")
    if grad_y is not None and grad_y.dtype != x.dtype:
        raise TypeError(f"grad_y: dtype {grad_y.dtype} does not match x's dtype {x.dtype}")
    if not 3 <= x.ndim <= 5:
        raise ValueError(
            f"x: expected shape (B, N, *S) with 1 to 3 spatial axes, got {x.ndim}-dimensional shape {x.shape}"
        )
    batch, spatial = x.shape[0], tuple(x.shape[2:])
    if min(spatial) < 1:
        raise ValueError(f"x: every spatial size must be at least 1, got shape {x.shape}")
    expected_eps = (batch, len(spatial), *spatial)
    if tuple(eps.shape) != expected_eps:
        raise ValueError(
            f"eps: expected shape (B, d, *S) = {expected_eps} for x of shape {tuple(x.shape)} "
            f"(d = {len(spatial)} spatial axes), got {tuple(eps.shape)}"
        )
    if grad_y is not None and tuple(grad_y.shape) != tuple(x.shape):
        raise ValueError(f"grad_y: expected the shape of x {tuple(x.shape)}, got {tuple(grad_y.shape)}")
    _check_padding(padding)
    return _engine(backend, kinds["x"]), get_kernel(kernel)


def _check_padding(padding):
    if not isinstance(padding, str) or padding not in PADDINGS:
        raise ValueError(f"padding: expected one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")


def _engine(backend, array_kind):
    """The single dispatch point: the engine module for ``backend`` and the arrays' type."""
    if backend is None:
        backend = "cupy" if array_kind == "cupy" else "numba"
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected None or one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if (backend == "cupy") != (array_kind == "cupy"):
        raise TypeError(
            f"backend: {backend!r} cannot take {array_kind} arrays; "
            + ("move them with cupy.asarray" if backend == "cupy" else "use backend='cupy' (or None) for CuPy arrays")
        )
    return engines.load(backend)


def _check_need(need_x, need_eps, eps_name="need_eps"):
    for name, value in (("need_x", need_x), (eps_name, need_eps)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


# ----- plans: taps computed once, the four operations as primitives -----------------
class WarpPlan:
    r"""Sample positions, interpolation kernel and padding, prepared once for repeated warps.

    Made by :func:`warp_plan` (positions ``v + eps``, output grid = input grid) or
    :func:`sample_plan` (absolute positions ``coords`` on any output grid).  The engine
    computes the taps (lattice indices and φ weights of every position) once, at the plan's
    first operation (the Numba engine's bilinear 2-D forward computes them inside its fused
    pass), and the φ' taps at the first call that needs them; every operation reuses them.
    The four operations map onto the engine's three primitives (``paper_notes/engines.md``):

    ============================  ===============================  ==========================
    operation                     gradient of                      primitive
    ============================  ===============================  ==========================
    ``warp(x)``            eq 2   —                                gather(x)
    ``backward`` grad_x    eq 3   warp                             scatter(grad_y)
    ``backward`` grad_eps  eq 4   warp                             slope(outer=grad_y, x)
    ``unwarp(x)``          eq 49  —                                scatter(x)
    ``unwarp_backward`` gx eq 50  unwarp                           gather(grad_y)
    ``unwarp_backward`` ge eq 51  unwarp                           slope(outer=x, grad_y)
    ============================  ===============================  ==========================

    Attributes
    ----------
    kernel : Kernel
    padding : str
    backend : str
        The engine: ``"numba"``, ``"numpy"`` or ``"cupy"``.
    batch, d : int
    in_shape, out_shape : tuple of int
        Spatial shapes of the sampled input and of the output grid.
    dtype : numpy.dtype

    Notes
    -----
    The plan keeps a reference to ``eps`` (or ``coords``) and reads it again for the φ' taps:
    do not modify it in place while the plan is in use.  The results are bitwise those of
    the functional calls (:func:`warp`, :func:`warp_backward`, :func:`unwarp`,
    :func:`unwarp_backward`, which are one-call plans).

    Examples
    --------
    One plan for the forward pass and both gradients:

    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> x, g = rng.normal(size=(2, 1, 3, 6, 7))
    >>> eps = rng.normal(size=(1, 2, 6, 7))
    >>> plan = warp_plan(eps, kernel="cos")
    >>> y = plan.warp(x)
    >>> grad_x, grad_eps = plan.backward(x, g)
    >>> bool(np.array_equal(y, warp(x, eps, "cos")) and np.array_equal(grad_x, unwarp(g, eps, "cos")))
    True
    """

    def __init__(self, positions, relative, in_shape, kernel, padding, engine, backend, transient=False):
        self.kernel = kernel
        self.padding = padding
        self.backend = backend
        self.batch, self.d = int(positions.shape[0]), int(positions.shape[1])
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in positions.shape[2:])
        self.dtype = np.dtype(positions.dtype)
        self._kind = _array_kind("eps", positions)
        self._positions, self._relative = positions, relative
        self._taps = engine.Taps(positions, relative, self.in_shape, kernel, padding, transient=transient)

    def __repr__(self):
        return (f"WarpPlan(kernel={self.kernel.name!r}, padding={self.padding!r}, backend={self.backend!r}, "
                f"batch={self.batch}, in_shape={self.in_shape}, out_shape={self.out_shape}, dtype={self.dtype})")

    # -- argument checks: each names the argument and what the plan expects
    def _check(self, name, a, spatial):
        kind = _array_kind(name, a)
        if kind != self._kind:
            raise TypeError(f"{name}: the plan holds {self._kind} arrays, got a {kind} array")
        if np.dtype(a.dtype) != self.dtype:
            raise TypeError(f"{name}: expected the plan's dtype {self.dtype}, got {a.dtype}")
        if a.ndim != 2 + self.d or a.shape[0] != self.batch or tuple(a.shape[2:]) != spatial:
            raise ValueError(
                f"{name}: expected shape (B, N, *S) = ({self.batch}, N, {', '.join(map(str, spatial))}) "
                f"for this plan, got {tuple(a.shape)}"
            )

    def _check_pair(self, x, x_shape, grad_y, g_shape):
        self._check("x", x, x_shape)
        self._check("grad_y", grad_y, g_shape)
        if grad_y.shape[1] != x.shape[1]:
            raise ValueError(f"grad_y: expected {x.shape[1]} channels like x, got {grad_y.shape[1]}")

    def corner_weights(self):
        """``(index, weight)``, each (B, C, P_out): the flat input index and weight Π_k φ(t_k) of
        every tap of every output position (index -1 where the padding drops it), i.e. the
        sparse rows of the warp (eq 2).  Listed by the reference engine only (``backend="numpy"``)."""
        if not hasattr(self._taps, "corner_weights"):
            raise NotImplementedError(f"corner_weights: the {self.backend!r} engine does not list taps; use backend='numpy'")
        return self._taps.corner_weights()

    # -- the four operations
    def warp(self, x):
        """Eq 2: ``x`` of shape (B, N, *in_shape) sampled at the plan's positions, (B, N, *out_shape)."""
        self._check("x", x, self.in_shape)
        return self._taps.gather(x)

    def backward(self, x, grad_y, need_x=True, need_eps=True):
        """Eqs 3–4: ``(grad_x, grad_eps)`` through :meth:`warp`; ``grad_eps`` is the gradient with
        respect to the plan's ``eps`` or ``coords`` (the same thing).  Unrequested ones are None."""
        self._check_pair(x, self.in_shape, grad_y, self.out_shape)
        _check_need(need_x, need_eps)
        if not (need_x or need_eps):
            return None, None
        self._taps.prepare(bool(need_eps))
        grad_x = self._taps.scatter(grad_y) if need_x else None
        return grad_x, (self._taps.position_derivative(grad_y, x) if need_eps else None)

    def unwarp(self, x):
        """Eq 49, the transpose of :meth:`warp`: (B, N, *out_shape) -> (B, N, *in_shape)."""
        self._check("x", x, self.out_shape)
        return self._taps.scatter(x)

    def unwarp_backward(self, x, grad_y, need_x=True, need_eps=True):
        """Eqs 50–51: ``(grad_x, grad_eps)`` through :meth:`unwarp` (x on the output grid,
        grad_y on the input grid).  Unrequested ones are None."""
        self._check_pair(x, self.out_shape, grad_y, self.in_shape)
        _check_need(need_x, need_eps)
        if not (need_x or need_eps):
            return None, None
        self._taps.prepare(bool(need_eps))
        grad_x = self._taps.gather(grad_y) if need_x else None
        return grad_x, (self._taps.position_derivative(x, grad_y) if need_eps else None)


def _check_positions(name, positions, what):
    kind = _array_kind(name, positions)
    _check_dtype(name, positions)
    if not 3 <= positions.ndim <= 5 or positions.shape[1] != positions.ndim - 2:
        raise ValueError(
            f"{name}: expected shape (B, d, *S) with d = len(S) in 1..3 ({what}), got {tuple(positions.shape)}"
        )
    if min(positions.shape[2:]) < 1:
        raise ValueError(f"{name}: every spatial size must be at least 1, got shape {tuple(positions.shape)}")
    return kind


def _plan(positions, relative, in_shape, kernel, padding, backend, kind, transient):
    _check_padding(padding)
    engine = _engine(backend, kind)
    name = backend or ("cupy" if kind == "cupy" else "numba")
    return WarpPlan(positions, relative, in_shape, get_kernel(kernel), padding, engine, name, transient)


@_fill_doc
def warp_plan(eps, kernel="tri", padding="zeros", backend=None):
    r"""A :class:`WarpPlan` for the offsets ``eps``: sample positions ``v + eps[:, :, v]`` (eq 2).

    Parameters
    ----------
    {eps}
    {kernel}
    {padding}
    {backend}

    Returns
    -------
    WarpPlan
        Input and output grid both ``S``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(12.0).reshape(1, 1, 3, 4)
    >>> plan = warp_plan(np.full((1, 2, 3, 4), 0.5), padding="border")
    >>> plan.in_shape, plan.out_shape
    ((3, 4), (3, 4))
    >>> bool(np.array_equal(plan.warp(x), warp(x, np.full((1, 2, 3, 4), 0.5), padding="border")))
    True
    """
    kind = _check_positions("eps", eps, "offsets")
    return _plan(eps, True, eps.shape[2:], kernel, padding, backend, kind, False)


def _check_in_shape(in_shape, d):
    if not isinstance(in_shape, (tuple, list)) or len(in_shape) != d or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in in_shape
    ):
        raise ValueError(f"in_shape: expected a tuple of {d} positive ints (one per axis of coords), got {in_shape!r}")
    return tuple(int(s) for s in in_shape)


@_fill_doc
def sample_plan(coords, in_shape, kernel="tri", padding="zeros", backend=None):
    r"""A :class:`WarpPlan` that samples an input of spatial shape ``in_shape`` at ``coords``.

    Parameters
    ----------
    {coords}
    in_shape : tuple of int
        Spatial shape of the input that will be sampled (d entries).
    {kernel}
    {padding}
    {backend}

    Returns
    -------
    WarpPlan
        Input grid ``in_shape``, output grid ``S_out``.

    Examples
    --------
    Sampling a 4 × 4 image on a 2 × 2 grid at its odd pixels is plain strided indexing:

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> coords = np.stack(np.meshgrid([1.0, 3.0], [1.0, 3.0], indexing="ij"))[None]
    >>> sample_plan(coords, (4, 4)).warp(x)[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    kind = _check_positions("coords", coords, "absolute positions")
    in_shape = _check_in_shape(in_shape, coords.shape[1])
    return _plan(coords, False, in_shape, kernel, padding, backend, kind, False)


def _sample_plan_for(x, coords, grad_y, kernel, padding, backend):
    kinds = {"x": _array_kind("x", x), "coords": _check_positions("coords", coords, "absolute positions")}
    if grad_y is not None:
        kinds["grad_y"] = _array_kind("grad_y", grad_y)
    if len(set(kinds.values())) > 1:
        raise TypeError(f"{', '.join(kinds)}: arrays must all be numpy or all CuPy, got {kinds}")
    _check_dtype("x", x)
    if coords.dtype != x.dtype:
        raise TypeError(f"coords: dtype {coords.dtype} does not match x's dtype {x.dtype}")
    if x.ndim != coords.ndim or x.shape[0] != coords.shape[0]:
        raise ValueError(
            f"x: expected shape (B, N, *S_in) with B = {coords.shape[0]} and {coords.shape[1]} spatial axes "
            f"(coords has shape {tuple(coords.shape)}), got {tuple(x.shape)}"
        )
    return _plan(coords, False, _check_in_shape(tuple(x.shape[2:]), coords.shape[1]), kernel, padding, backend,
                 kinds["x"], True)


@_fill_doc
def sample(x, coords, kernel="tri", padding="zeros", backend=None):
    r"""Sample ``x`` at the absolute positions ``coords``: :math:`y_{n\mathbf v} = \sum_{\mathbf u} x_{n\mathbf u} \prod_k \varphi(c_{k\mathbf v} - u_k)`.

    :func:`warp` is ``sample`` at ``coords = v + eps``: for float64 arrays
    ``sample(x, v + eps)`` equals ``warp(x, eps)`` bitwise (the engine forms ``v + eps`` in
    float64 itself); for float32 arrays the caller's ``v + eps`` is rounded to float32
    (relative 2**-24 of the position) and the results differ by that, unless ``v + eps`` is
    exactly representable in float32.

    Parameters
    ----------
    x : ndarray, shape (B, N, *S_in)
        Signal, float32 or float64.
    {coords}
    {kernel}
    {padding}
    {backend}

    Returns
    -------
    y : ndarray, shape (B, N, *S_out), dtype of ``x``

    {notes}

    Examples
    --------
    Downsampling by two with the bilinear kernel averages neighbouring pairs:

    >>> import numpy as np
    >>> x = np.array([[[0.0, 2.0, 4.0, 6.0]]])
    >>> sample(x, np.array([[[0.5, 2.5]]])).tolist()
    [[[1.0, 5.0]]]
    """
    return _sample_plan_for(x, coords, None, kernel, padding, backend).warp(x)


@_fill_doc
def sample_backward(x, coords, grad_y, kernel="tri", padding="zeros", need_x=True, need_coords=True, backend=None):
    r"""Gradients through :func:`sample` (eqs 3–4 with positions ``coords``).

    Parameters
    ----------
    x : ndarray, shape (B, N, *S_in)
    {coords}
    grad_y : ndarray, shape (B, N, *S_out)
        Gradient of the loss with respect to the output.
    {kernel}
    {padding}
    need_x, need_coords : bool, optional
        Which gradients to compute; the one not asked for is returned as ``None``.
    {backend}

    Returns
    -------
    grad_x : ndarray, shape (B, N, *S_in), or None
    grad_coords : ndarray, shape (B, d, *S_out), or None

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[0.0, 2.0, 4.0, 6.0]]])
    >>> grad_x, grad_c = sample_backward(x, np.array([[[0.5, 2.25]]]), np.ones((1, 1, 2)))
    >>> grad_x.tolist(), grad_c.tolist()
    ([[[0.5, 0.5, 0.75, 0.25]]], [[[2.0, 2.0]]])
    """
    plan = _sample_plan_for(x, coords, grad_y, kernel, padding, backend)
    _check_need(need_x, need_coords, "need_coords")
    return plan.backward(x, grad_y, need_x=bool(need_x), need_eps=bool(need_coords))


# ----- public operations: one-call plans --------------------------------------------
def _functional(x, eps, grad_y, kernel, padding, backend):
    engine, k = _validate(x, eps, grad_y, kernel, padding, backend)
    name = backend or ("cupy" if _array_kind("x", x) == "cupy" else "numba")
    return WarpPlan(eps, True, x.shape[2:], k, padding, engine, name, transient=True)


@_fill_doc
def warp(x, eps, kernel="tri", padding="zeros", backend=None):
    r"""Warp ``x`` by ``eps`` (eq 2): :math:`y_{n\mathbf v} = \sum_{\mathbf u} x_{n\mathbf u} \prod_k \varphi(v_k - u_k + \varepsilon_{k\mathbf v})`.

    Parameters
    ----------
    {x}
    {eps}
    {kernel}
    {padding}
    {backend}

    Returns
    -------
    y : ndarray, shape (B, N, *S), dtype of ``x``

    {notes}

    See ``paper_notes/s02_warping.md``.

    Examples
    --------
    A 1-D signal sampled half-way between lattice points is the mean of its neighbours
    under the bilinear kernel:

    >>> import numpy as np
    >>> x = np.array([[[0.0, 2.0, 4.0]]])
    >>> warp(x, np.full((1, 1, 3), 0.5)).tolist()
    [[[1.0, 3.0, 2.0]]]
    """
    return _functional(x, eps, None, kernel, padding, backend).warp(x)


@_fill_doc
def warp_backward(x, eps, grad_y, kernel="tri", padding="zeros", need_x=True, need_eps=True, backend=None):
    r"""Gradients through :func:`warp` (eqs 3–4, derived in eqs 17–18).

    .. math::

        \nabla_x \mathcal L_{n\mathbf w} = \sum_{\mathbf v} \nabla_y \mathcal L_{n\mathbf v}
            \prod_k \varphi(v_k - w_k + \varepsilon_{k\mathbf v}),\qquad
        \nabla_\varepsilon \mathcal L_{i\mathbf w} = \sum_n \nabla_y \mathcal L_{n\mathbf w}
            \sum_{\mathbf u} x_{n\mathbf u}\, \varphi'(w_i - u_i + \varepsilon_{i\mathbf w})
            \prod_{k\ne i} \varphi(w_k - u_k + \varepsilon_{k\mathbf w}).

    Parameters
    ----------
    {x}
    {eps}
    {grad_y}
    {kernel}
    {padding}
    {need}
    {backend}

    Returns
    -------
    grad_x : ndarray, shape (B, N, *S), or None
        Bitwise reproducible on the Numba backend (no racy scatter).
    grad_eps : ndarray, shape (B, d, *S), or None

    {notes}

    Examples
    --------
    ``grad_x`` is the adjoint of the warp, :math:`\langle \mathrm{warp}(x), g\rangle = \langle x, \nabla_x\rangle`:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x, g = rng.normal(size=(2, 1, 3, 4, 5))
    >>> eps = 2 * rng.normal(size=(1, 2, 4, 5))
    >>> grad_x, _ = warp_backward(x, eps, g, need_eps=False)
    >>> bool(np.isclose(np.vdot(warp(x, eps), g), np.vdot(x, grad_x), rtol=1e-12))
    True
    """
    plan = _functional(x, eps, grad_y, kernel, padding, backend)
    _check_need(need_x, need_eps)
    return plan.backward(x, grad_y, need_x=need_x, need_eps=need_eps)


@_fill_doc
def unwarp(x, eps, kernel="tri", padding="zeros", backend=None):
    r"""Unwarp ``x`` by ``eps`` (eq 49): :math:`y_{n\mathbf v} = \sum_{\mathbf u} x_{n\mathbf u} \prod_k \varphi(u_k - v_k + \varepsilon_{k\mathbf u})`.

    Each input ``u`` is spread over the lattice neighbours of its position
    ``u + eps[:, u]``: the transpose of :func:`warp` with the same ``eps``, and the same
    operation as its ``grad_x``.

    Parameters
    ----------
    {x}
    {eps}
    {kernel}
    {padding}
    {backend}

    Returns
    -------
    y : ndarray, shape (B, N, *S), dtype of ``x``

    {notes}

    See ``paper_notes/s12_unwarping.md``.

    Examples
    --------
    With a mean-preserving kernel and periodic padding nothing is lost, so the total
    is kept:

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> x = rng.normal(size=(1, 1, 6, 6))
    >>> eps = 3 * rng.normal(size=(1, 2, 6, 6))
    >>> bool(np.isclose(unwarp(x, eps, padding="periodic").sum(), x.sum(), rtol=1e-12))
    True
    """
    return _functional(x, eps, None, kernel, padding, backend).unwarp(x)


@_fill_doc
def unwarp_backward(x, eps, grad_y, kernel="tri", padding="zeros", need_x=True, need_eps=True, backend=None):
    r"""Gradients through :func:`unwarp` (eqs 50–51).

    .. math::

        \nabla_x \mathcal L_{n\mathbf w} = \sum_{\mathbf v} \nabla_y \mathcal L_{n\mathbf v}
            \prod_k \varphi(w_k - v_k + \varepsilon_{k\mathbf w}),\qquad
        \nabla_\varepsilon \mathcal L_{i\mathbf w} = \sum_n x_{n\mathbf w}
            \sum_{\mathbf v} \nabla_y \mathcal L_{n\mathbf v}\, \varphi'(w_i - v_i + \varepsilon_{i\mathbf w})
            \prod_{k\ne i} \varphi(w_k - v_k + \varepsilon_{k\mathbf w}).

    (The last line of the paper's eq 50 writes :math:`u` for :math:`w`; see the note.)
    ``grad_x`` is therefore :func:`warp` of ``grad_y``.

    Parameters
    ----------
    {x}
    {eps}
    {grad_y}
    {kernel}
    {padding}
    {need}
    {backend}

    Returns
    -------
    grad_x : ndarray, shape (B, N, *S), or None
    grad_eps : ndarray, shape (B, d, *S), or None

    {notes}

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> x, g = rng.normal(size=(2, 1, 2, 8))
    >>> eps = rng.normal(size=(1, 1, 8))
    >>> grad_x, _ = unwarp_backward(x, eps, g, padding="border", need_eps=False)
    >>> bool(np.array_equal(grad_x, warp(g, eps, padding="border")))
    True
    """
    plan = _functional(x, eps, grad_y, kernel, padding, backend)
    _check_need(need_x, need_eps)
    return plan.unwarp_backward(x, grad_y, need_x=need_x, need_eps=need_eps)


@_fill_doc
def warp_matrix(eps, kernel="tri", padding="zeros"):
    r"""The warp of one batch item as a sparse matrix :math:`K`, ``warp(x)[0, n].ravel() == K @ x[0, n].ravel()``.

    :math:`K_{\mathbf v \mathbf u} = \sum_{\mathbf u' \to \mathbf u} \prod_k \varphi(v_k - u'_k + \varepsilon_{k\mathbf v})`,
    the sum running over the lattice points ``u'`` that the padding maps to ``u``
    (several for ``periodic`` on small lattices and for ``border``).  Built from the taps
    the numpy reference lists (:meth:`WarpPlan.corner_weights`); meant for small problems and
    for checks such as :math:`K^\top` = unwarp.

    Parameters
    ----------
    eps : numpy.ndarray, shape (d, *S)
        Offsets of a single batch item (float32 or float64), finite.
    {kernel}
    {padding}

    Returns
    -------
    K : scipy.sparse.csr_matrix, shape (prod(S), prod(S)), float64

    Examples
    --------
    Each row of a bilinear warp with periodic padding sums to one:

    >>> import numpy as np
    >>> eps = np.random.default_rng(4).normal(size=(2, 3, 4))
    >>> K = warp_matrix(eps, padding="periodic")
    >>> bool(np.allclose(K.sum(axis=1), 1.0, rtol=0, atol=1e-14))
    True
    """
    import scipy.sparse

    if not isinstance(eps, np.ndarray):
        raise TypeError(f"eps: expected a numpy array, got {type(eps).__name__}")
    _check_dtype("eps", eps)
    if not 2 <= eps.ndim <= 4 or eps.shape[0] != eps.ndim - 1:
        raise ValueError(f"eps: expected shape (d, *S) with d = len(S) in 1..3, got {eps.shape}")
    if min(eps.shape[1:]) < 1:
        raise ValueError(f"eps: every spatial size must be at least 1, got shape {eps.shape}")
    if not np.all(np.isfinite(eps)):
        raise ValueError("eps: warp_matrix needs finite offsets (an undefined position has no matrix row)")
    _check_padding(padding)
    size = int(np.prod(eps.shape[1:]))
    index, weight = warp_plan(eps[None], kernel, padding, backend="numpy").corner_weights()
    keep = (index[0] >= 0) & (weight[0] != 0)  # corner-major, then position: the order of the sums
    rows = np.broadcast_to(np.arange(size), keep.shape)[keep]
    matrix = scipy.sparse.coo_matrix((weight[0][keep], (rows, index[0][keep])), shape=(size, size))
    return matrix.tocsr()  # duplicates (taps that the padding folds together) are summed

