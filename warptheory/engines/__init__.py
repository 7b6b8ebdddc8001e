r"""Warp engines behind one protocol (paper eqs 2–4, 16–18, 49–51; ``paper_notes/engines.md``).

The public API is :mod:`warptheory.warping` (the one dispatch point, :func:`load`); no theory
module imports an engine.  Each engine module defines a class ``Taps``, the state of one
:class:`~warptheory.warping.WarpPlan`:

``Taps(positions, relative, in_shape, kernel, padding, transient)``
    ``positions`` (B, d, \*S_out): offsets (``relative``: position ``v + positions[:, :, v]``)
    or absolute coordinates; ``in_shape`` the sampled lattice; ``transient`` for a plan that
    lives for one functional call (the engine may keep its taps in per-thread scratch).
``prepare(slopes)``
    Compute what the next calls need (the φ' taps too when ``slopes``).
``gather(src)``
    ``out[b,n,v] = Σ_c w(v,c) src[b,n,u(v,c)]``: src on the input grid, out on the output grid.
``scatter(src)``
    ``out[b,n,u] = Σ_{(v,c): u(v,c)=u} w(v,c) src[b,n,v]``: the transpose of ``gather``.
``position_derivative(outer, src)``
    ``out[b,i,v] = Σ_a φ'(t_{i,a}) Σ_{c: tap a on axis i} Π_{k≠i} φ(t_k) Σ_n outer[b,n,v] src[b,n,u(v,c)]``,
    factorised so that an infinite slope meets one finite sum (0·∞ := 0).

:class:`~warptheory.warping.WarpPlan` maps the six operations onto these once: warp = gather,
its grad_x = scatter(grad_y), its grad_eps = position_derivative(grad_y, x); unwarp =
scatter, its grad_x = gather(grad_y), its grad_eps = position_derivative(x, grad_y).

Engines: :mod:`~warptheory.engines.reference` (numpy, float64, the "obviously right" route),
:mod:`~warptheory.engines.numba_cpu` (the CPU engine; :mod:`~warptheory.engines.simd` holds its
vector intrinsics), :mod:`~warptheory.engines.cuda.launch` (CuPy) and
:mod:`~warptheory.engines.cuda.host` (the same CUDA source built with g++, for checking it
without a GPU).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["BACKENDS", "load", "release_scratch"]

#: backend name -> engine module
BACKENDS = {
    "numba": "warptheory.engines.numba_cpu",
    "numpy": "warptheory.engines.reference",
    "cupy": "warptheory.engines.cuda.launch",
}


def load(backend):
    """The engine module of ``backend`` (imported on first use; CuPy only when asked for)."""
    if backend == "cupy" and importlib.util.find_spec("cupy") is None:
        raise ModuleNotFoundError("backend: 'cupy' needs CuPy; install it with `pip install cupy-cuda12x`")
    return importlib.import_module(BACKENDS[backend])


def release_scratch():
    """Free the scratch buffers the Numba engine keeps per thread between calls (the calling
    thread's, and those of threads that have ended).  The next call allocates afresh."""
    engine = sys.modules.get(BACKENDS["numba"])
    if engine is not None:
        engine.release_scratch()
