r"""Interpolation kernels :math:`\varphi` and their derivatives (paper §2 eq 2, supplementary §8–9).

A kernel is the function :math:`\varphi(t)` that turns lattice samples into a
continuous signal, :math:`x(t) = \sum_k x_k \varphi(t - k)`.  The paper asks of it

* :math:`\varphi(0) = 1` and :math:`\varphi(n) = 0` for every integer :math:`n \ne 0`
  (zero offsets give the identity),
* :math:`\varphi(t) = 0` for :math:`|t| > 1` (two taps per axis),
* :math:`\varphi(-t) = \varphi(t)` (no preferred direction).

Every kernel, built-in or made by :func:`kernel_from_sympy`, is checked against
these constraints, and reports whether it is *mean-preserving*
(:math:`\sum_n \varphi(s-n) = 1`) and *variance-preserving*
(:math:`\sum_n \varphi(s-n)^2 = 1`).  See ``paper_notes/s09_discretization.md``.

Derivative convention
---------------------
At a kink (``t = 0, ±1`` for ``tri``) :math:`\varphi'` is the **right derivative**
:math:`\varphi'(t^+) = \lim_{h \downarrow 0} (\varphi(t+h) - \varphi(t))/h`.  This is
what a floor-based engine computes (torch ``grid_sample`` included): at an integer
sampling position the gradient is the slope of the interpolant just to the right.
The warp engines use the same convention, through the same functions.

Examples
--------
Partition of unity of the bilinear kernel, and the square-root relation of §9:

>>> import numpy as np
>>> tri = get_kernel("tri")
>>> s = np.linspace(0.0, 1.0, 7)
>>> bool(np.allclose(tri.value(s) + tri.value(s - 1.0), 1.0))
True
>>> cos = get_kernel("cos")
>>> bool(np.allclose(cos.value(s) ** 2 + cos.value(s - 1.0) ** 2, 1.0))
True
>>> tri.mean_preserving, tri.variance_preserving, cos.variance_preserving
(True, False, True)
>>> float(tri.derivative(np.array([0.0]))[0])  # right derivative at the kink
-1.0
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable

import numpy as np
import sympy as sp

__all__ = [
    "Kernel",
    "KernelConstraintError",
    "BUILTIN_KERNELS",
    "T",
    "get_kernel",
    "kernel_from_spec",
    "kernel_from_sympy",
    "kernel_spec",
    "on_support",
]

#: The symbol every kernel expression is written in.
T = sp.Symbol("t", real=True)

# φ(0) = 1 and φ(±1) = 0 hold to _CONSTRAINT_TOL for every accepted kernel; the compiled
# functions return them exactly, so integer offsets give an exact shift (cos(π/2) is 6e-17 in floats).
_LATTICE_VALUES = {-1.0: 0.0, 0.0: 1.0, 1.0: 0.0}
_CONSTRAINT_TOL = 1e-13  # float64 evaluation of an exact identity; a few ulps of O(1) values
_PROPERTY_TOL = 1e-12  # partition-of-unity checks sum two O(1) terms on a grid


class KernelConstraintError(ValueError):
    """A kernel expression violates one of the paper's constraints (supplementary §8)."""


def on_support(expr: sp.Expr, t: sp.Symbol = T) -> sp.Expr:
    r"""Restrict ``expr`` to :math:`|t| \le 1`: ``Piecewise((expr, |t| <= 1), (0, True))``.

    >>> on_support(1 - sp.Abs(T)).subs(T, 2)
    0
    """
    return sp.Piecewise((expr, sp.Abs(t) <= 1), (0, True))


def _breakpoints(expr: sp.Expr, t: sp.Symbol) -> tuple[float, ...]:
    """Points of [-1, 1] where the expression may be non-smooth."""
    candidates: set = {sp.Integer(-1), sp.Integer(0), sp.Integer(1)}
    boundary_exprs = []
    for rel in expr.atoms(sp.core.relational.Relational):
        boundary_exprs.append(rel.lhs - rel.rhs)
    for fn in (sp.Abs, sp.sign, sp.Heaviside):
        for atom in expr.atoms(fn):
            boundary_exprs.append(atom.args[0])
    for fn in (sp.Max, sp.Min):
        for atom in expr.atoms(fn):
            args = atom.args
            boundary_exprs.extend(args[i] - args[j] for i in range(len(args)) for j in range(i + 1, len(args)))
    for bexpr in boundary_exprs:
        if not bexpr.has(t):
            continue
        try:
            sols = sp.solveset(sp.Eq(bexpr, 0), t, domain=sp.Interval(-1, 1))
        except Exception:  # solveset may refuse transcendental boundaries; skip them
            continue
        if isinstance(sols, sp.FiniteSet):
            candidates.update(sols)
    return tuple(sorted({float(c) for c in candidates}))


def _same_float(a: float, b: float) -> bool:
    """Bitwise float equality: sign of zero included, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))


def _compile_scalar(code: str, name: str, overrides: dict[float, float]):
    """Build a numba-jitted scalar function from a printed expression.

    ``overrides`` pins exact values at single points (lattice values, right derivatives
    at kinks).  An override the expression already satisfies exactly, at ``t`` and at
    ``-t`` for 0, is left out: each costs a compare and branch per call, which made the
    engine's tap stage 1.5× slower for ``tri``.  The compiled function is checked at
    every dropped point and rebuilt with all overrides if it disagrees.
    """
    from . import _generated

    def build(pins):
        # a module of its own, so that numba caches the compiled function on disk (warptheory._generated);
        # fastmath stated: left unset, numba compiles a callee with its first caller's flags (the
        # engine's loops contract a*b + c into one rounding), and the disk cache keeps that version
        lines = ["import math", "", "import numba", "", "inf, nan = math.inf, math.nan", "", "",
                 '@numba.njit(cache=ON_DISK, error_model="numpy", fastmath=False)', f"def {name}(t):"]
        for point, value in pins.items():
            lines.append(f"    if t == {point!r}:")
            lines.append(f"        return {_py_float(value)}")
        lines.append(f"    return float({code})")
        jitted = getattr(_generated.load("\n".join(lines) + "\n", "kernel"), name)
        return jitted.py_func, jitted

    def probes(point):
        return (point, -0.0) if point == 0 else (point,)

    plain, _ = build({})
    try:
        needed = {
            point: value
            for point, value in overrides.items()
            if not all(_same_float(plain(t), value) for t in probes(point))
        }
    except (ArithmeticError, ValueError):  # the expression cannot even be evaluated there
        needed = dict(overrides)
    py_fn, jitted = build(needed)
    dropped = [point for point in overrides if point not in needed]
    if not all(_same_float(jitted(t), overrides[point]) for point in dropped for t in probes(point)):
        py_fn, jitted = build(dict(overrides))
    return py_fn, jitted


def _py_float(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return repr(float(value))


def _c_float(value: float) -> str:
    if math.isinf(value):
        return "(1.0/0.0)" if value > 0 else "(-1.0/0.0)"
    return repr(float(value))


@dataclass(frozen=True, eq=False)
class Kernel:
    r"""An interpolation kernel :math:`\varphi` checked against the paper's constraints.

    Build one with :func:`get_kernel` (built-ins) or :func:`kernel_from_sympy`.

    Attributes
    ----------
    name : str
        Short name, used in reports and the CLI.
    expr : sympy.Expr
        :math:`\varphi(t)` in the symbol :data:`T`.
    mean_preserving : bool
        :math:`\sum_n \varphi(s - n) = 1` for almost every ``s`` (Φ_{1,1} = Φ_{1,2} = 1).
    variance_preserving : bool
        :math:`\sum_n \varphi(s - n)^2 = 1` for almost every ``s`` (Φ_{2,1} = 1).
    breakpoints : tuple of float
        Points of [-1, 1] where φ or φ' may be non-smooth (always -1, 0, 1).
    description : str
        One line for listings.
    """

    name: str
    expr: sp.Expr
    description: str = ""
    breakpoints: tuple = field(default=(), repr=False)
    derivative_expr: sp.Expr = field(default=None, repr=False)
    derivative_right_limits: dict = field(default_factory=dict, repr=False)
    mean_preserving: bool = False
    variance_preserving: bool = False

    # ----- compiled callables -------------------------------------------------
    @cached_property
    def _value_pair(self):
        return _compile_scalar(_pycode(self.expr), f"phi_{_ident(self.name)}", _LATTICE_VALUES)

    @cached_property
    def _derivative_pair(self):
        return _compile_scalar(
            _pycode(self.derivative_expr), f"dphi_{_ident(self.name)}", self.derivative_right_limits
        )

    @property
    def value_scalar(self):
        """Numba-jitted scalar φ(t); callable from other jitted code."""
        return self._value_pair[1]

    @property
    def derivative_scalar(self):
        """Numba-jitted scalar φ'(t) (right derivative at kinks); callable from jitted code."""
        return self._derivative_pair[1]

    @cached_property
    def _value_ufunc(self):
        import numba

        return numba.vectorize(["float64(float64)"], cache=False)(self._value_pair[1].py_func)

    @cached_property
    def _derivative_ufunc(self):
        import numba

        return numba.vectorize(["float64(float64)"], cache=False)(self._derivative_pair[1].py_func)

    def value(self, t):
        """Vectorised φ(t) in float64 (a numba ufunc)."""
        return self._value_ufunc(np.asarray(t, dtype=np.float64))

    def derivative(self, t):
        """Vectorised φ'(t) in float64, right derivative at kinks (a numba ufunc)."""
        return self._derivative_ufunc(np.asarray(t, dtype=np.float64))

    @cached_property
    def _mp_pair(self):
        value = sp.lambdify(T, self.expr, modules="mpmath")
        deriv = sp.lambdify(T, self.derivative_expr, modules="mpmath")
        overrides = dict(self.derivative_right_limits)
        return value, deriv, overrides

    def value_mp(self, t):
        """φ(t) in mpmath arithmetic, for high-precision references."""
        import mpmath

        if t in _LATTICE_VALUES:
            return mpmath.mpf(_LATTICE_VALUES[t])
        return self._mp_pair[0](t)

    def derivative_mp(self, t):
        """φ'(t) in mpmath arithmetic (right derivative at the breakpoints)."""
        import mpmath

        value, deriv, overrides = self._mp_pair
        for point, lim in overrides.items():
            if t == point:
                return mpmath.mpf(lim)
        return deriv(t)

    def c_source(self, prefix: str) -> str:
        """C source of ``WT_HD double {prefix}_value(double)`` and ``{prefix}_derivative``.

        ``WT_HD`` is expected to expand to ``__host__ __device__`` under nvcc and to
        nothing under a host compiler; the derivative follows the right-derivative
        convention at the breakpoints.
        """
        lines = [f"WT_HD inline double {prefix}_value(double t) {{"]
        for point, value in _LATTICE_VALUES.items():
            lines.append(f"    if (t == {_c_float(point)}) return {_c_float(value)};")
        lines += [f"    return {_ccode(self.expr)};", "}"]
        lines.append(f"WT_HD inline double {prefix}_derivative(double t) {{")
        for point, value in self.derivative_right_limits.items():
            lines.append(f"    if (t == {_c_float(point)}) return {_c_float(value)};")
        lines.append(f"    return {_ccode(self.derivative_expr)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        props = []
        if self.mean_preserving:
            props.append("mean-preserving")
        if self.variance_preserving:
            props.append("variance-preserving")
        return f"Kernel({self.name!r}, {sp.sstr(self.expr)!s}, {', '.join(props) or 'neither'})"


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _pycode(expr: sp.Expr) -> str:
    from sympy.printing.pycode import pycode

    return pycode(expr, fully_qualified_modules=True, standard="python3")


def _ccode(expr: sp.Expr) -> str:
    return sp.ccode(sp.N(expr, 20) if expr.has(sp.pi) else expr, standard="c99")


def _as_float(value) -> float:
    if value is sp.oo:
        return math.inf
    if value is sp.S.NegativeInfinity:
        return -math.inf
    return float(value)


def _right_limit(expr: sp.Expr, point: float) -> float:
    """lim_{t -> point+} expr, choosing the Piecewise branch active just right of ``point``."""
    b = sp.nsimplify(point)
    just_right = b + sp.Rational(1, 10**40)
    expr = sp.piecewise_fold(expr)
    if isinstance(expr, sp.Piecewise):
        for branch, cond in expr.args:
            if bool(cond.subs(T, just_right)):
                expr = branch
                break
    return _as_float(sp.limit(expr, T, b, "+"))


def _check_constraints(name: str, expr: sp.Expr, fn: Callable[[float], float]) -> None:
    """Raise KernelConstraintError naming the first violated constraint."""
    grid_inside = np.concatenate([np.linspace(-1.0, 1.0, 2001), np.array([-1e-9, 1e-9, -0.5, 0.5])])

    def ev(t):
        try:
            return float(fn(float(t)))
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            return math.nan

    vals_inside = np.array([ev(t) for t in grid_inside])
    bad = ~np.isfinite(vals_inside)
    if bad.any():
        t_bad = grid_inside[bad][0]
        raise KernelConstraintError(
            f"kernel {name!r}: φ must be real and finite on [-1, 1]; φ({t_bad:g}) = {ev(t_bad)!r}"
        )
    at_zero = ev(0.0)
    if abs(at_zero - 1.0) > _CONSTRAINT_TOL:
        raise KernelConstraintError(f"kernel {name!r}: constraint φ(0) = 1 violated; φ(0) = {at_zero!r}")
    for n in (-1, 1):  # integers beyond ±1 are covered by the support constraint
        v = ev(float(n))
        if not abs(v) <= _CONSTRAINT_TOL:
            raise KernelConstraintError(
                f"kernel {name!r}: constraint φ(n) = 0 for integer n ≠ 0 violated; φ({n}) = {v!r}"
            )
    outside = np.concatenate(
        [1.0 + np.logspace(-12, 1, 200), np.array([20.0, 100.0, 1e3, 1e6])]
    )
    outside = np.concatenate([outside, -outside])
    for t in outside:
        v = ev(t)
        if not abs(v) <= _CONSTRAINT_TOL:
            raise KernelConstraintError(
                f"kernel {name!r}: constraint φ(t) = 0 for |t| > 1 violated; φ({t:.12g}) = {v!r}. "
                "Restrict the expression with warptheory.kernels.on_support(expr)."
            )
    pos = np.linspace(0.0, 1.0, 1001)[1:]
    for t in np.concatenate([pos, [1e-9, 1e-6, 1e-3]]):
        vp, vm = ev(t), ev(-t)
        if abs(vp - vm) > _CONSTRAINT_TOL * max(1.0, abs(vp)):
            raise KernelConstraintError(
                f"kernel {name!r}: constraint φ(-t) = φ(t) violated; φ({t:.6g}) = {vp!r} but φ({-t:.6g}) = {vm!r}"
            )


def _partition_property(fn: Callable[[float], float], power: int) -> bool:
    # Midpoint grid: a property that fails only at isolated points (rect at s = 1/2)
    # still holds almost everywhere, which is what Φ_{a,b} sees.
    s = (np.arange(1000) + 0.5) / 1000  # even count: s = 1/2 is not a node
    total = np.array([fn(float(x)) ** power + fn(float(x) - 1.0) ** power for x in s])
    return bool(np.max(np.abs(total - 1.0)) <= _PROPERTY_TOL)


def kernel_from_sympy(expr, name: str | None = None, description: str = "", t: sp.Symbol | None = None) -> Kernel:
    r"""Make a :class:`Kernel` from a sympy expression, checking the paper's constraints.

    Parameters
    ----------
    expr : sympy.Expr or str
        :math:`\varphi(t)`; ``Piecewise`` allowed.  A string is parsed with
        :func:`sympy.parse_expr`.  It must vanish for :math:`|t| > 1`; wrap an
        expression valid on the support with :func:`on_support`.
    name : str, optional
        Name used in reports; defaults to the printed expression.
    description : str, optional
        One line for listings.
    t : sympy.Symbol, optional
        The variable; by default the expression's single free symbol.

    Returns
    -------
    Kernel

    Raises
    ------
    KernelConstraintError
        (a ``ValueError``) naming the violated constraint and the offending value.
    TypeError
        If ``expr`` is neither a sympy expression nor a string.

    Examples
    --------
    >>> k = kernel_from_sympy(on_support(1 - sp.Abs(T)), name="my_tri")
    >>> k.mean_preserving, k.variance_preserving
    (True, False)
    >>> kernel_from_sympy(on_support(1 - T**2 / 2), name="half")
    Traceback (most recent call last):
    ...
    warptheory.kernels.KernelConstraintError: kernel 'half': constraint φ(n) = 0 for integer n ≠ 0 violated; φ(-1) = 0.5
    """
    if isinstance(expr, str):
        expr = sp.parse_expr(expr, local_dict={"t": T, "pi": sp.pi})
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expr: expected a sympy expression or string, got {type(expr).__name__}")
    expr = sp.sympify(expr)
    free = expr.free_symbols
    if t is None:
        if len(free) > 1:
            raise ValueError(f"expr: expected one free symbol (the variable t), got {sorted(map(str, free))}")
        t = next(iter(free)) if free else T
    elif free - {t}:
        raise ValueError(f"expr: free symbols other than {t}: {sorted(map(str, free - {t}))}")
    expr = expr.subs(t, T) if t != T else expr
    # Re-create with a real symbol so Abs/sign simplify and differentiate as expected.
    expr = expr.xreplace({s: T for s in expr.free_symbols if s.name == T.name})
    if name is None:
        name = sp.sstr(expr)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    fn = sp.lambdify(T, expr, modules="math")
    _check_constraints(name, expr, fn)

    bps = _breakpoints(expr, T)
    dexpr = sp.diff(expr, T)
    right_limits = {b: _right_limit(dexpr, b) for b in bps}
    return Kernel(
        name=name,
        expr=expr,
        description=description,
        breakpoints=bps,
        derivative_expr=dexpr,
        derivative_right_limits=right_limits,
        mean_preserving=_partition_property(fn, 1),
        variance_preserving=_partition_property(fn, 2),
    )


def _builtin_exprs() -> dict[str, tuple[sp.Expr, str]]:
    half = sp.Rational(1, 2)
    a = sp.Abs(T)
    return {
        "tri": (on_support(1 - a), "bilinear interpolation, 1 - |t|"),
        "cos": (on_support(sp.cos(sp.pi * T / 2)), "cos(πt/2), the square root of hann (eq 24)"),
        "rect": (
            sp.Piecewise((1, a < half), (half, sp.Eq(a, half)), (0, True)),
            "nearest neighbour; φ(±1/2) = 1/2 keeps it even",
        ),
        "hann": (on_support(sp.cos(sp.pi * T / 2) ** 2), "cos²(πt/2), a smooth partition of unity"),
        "sqrt_tri": (on_support(sp.sqrt(1 - a)), "sqrt(1 - |t|), the square root of tri"),
    }


_BUILTIN_CACHE: dict[str, Kernel] = {}

#: Names of the built-in kernels, in listing order.
BUILTIN_KERNELS: tuple[str, ...] = ("tri", "cos", "rect", "hann", "sqrt_tri")


def get_kernel(kernel) -> Kernel:
    """Return a :class:`Kernel` for a built-in name, or ``kernel`` itself if it is one.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the built-in kernels.
    TypeError
        For anything that is neither a name nor a :class:`Kernel`.

    >>> get_kernel("tri").name
    'tri'
    >>> get_kernel("bicubic")
    Traceback (most recent call last):
    ...
    ValueError: kernel: unknown kernel 'bicubic'; built-in kernels are tri, cos, rect, hann, sqrt_tri (or pass a Kernel from kernel_from_sympy)
    """
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        if kernel not in BUILTIN_KERNELS:
            raise ValueError(
                f"kernel: unknown kernel {kernel!r}; built-in kernels are {', '.join(BUILTIN_KERNELS)}"
                " (or pass a Kernel from kernel_from_sympy)"
            )
        if kernel not in _BUILTIN_CACHE:
            expr, desc = _builtin_exprs()[kernel]
            _BUILTIN_CACHE[kernel] = kernel_from_sympy(expr, name=kernel, description=desc)
        return _BUILTIN_CACHE[kernel]
    raise TypeError(f"kernel: expected a kernel name or a Kernel, got {type(kernel).__name__}")


def kernel_spec(kernel):
    """A picklable description of ``kernel`` that :func:`kernel_from_spec` turns back into it in
    another process: a built-in's name, or ``("sympy", srepr(expr), name)``.

    >>> kernel_from_spec(kernel_spec("cos")) is get_kernel("cos")
    True
    """
    k = get_kernel(kernel)
    if k.name in BUILTIN_KERNELS and k is get_kernel(k.name):
        return k.name
    return ("sympy", sp.srepr(k.expr), k.name)


@lru_cache(maxsize=64)
def kernel_from_spec(spec) -> Kernel:
    """The kernel :func:`kernel_spec` described (memoised, so a process compiles it once)."""
    if isinstance(spec, str):
        return get_kernel(spec)
    _, srepr, name = spec
    return kernel_from_sympy(sp.sympify(srepr), name=name)
