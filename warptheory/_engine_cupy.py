r"""CuPy RawKernel warp engine: warp, unwarp and their gradients on the GPU (eqs 2–4, 49–51).

The CUDA source is in the package: ``warptheory/cuda/warp.cuh`` holds the per-element
math as ``__host__ __device__`` functions and ``warptheory/cuda/warp_kernels.cu`` the
thin ``__global__`` kernels that call them.  For each kernel φ this module compiles
``warp.cuh`` + :meth:`warptheory.kernels.Kernel.c_source` + ``warp_kernels.cu`` once per
dtype with NVRTC (a :class:`cupy.RawModule` with ``name_expressions`` for the
``<dtype, d>`` template instances).  The same header is built for the host by
:mod:`warptheory._engine_host`, which is how CI checks this arithmetic without a GPU.
See ``paper_notes/cuda_engine.md``.

All work stays on the device.  Gathers (warp output, unwarp grad_x) and the position
derivative (both grad_eps) are one thread per output.  The scatters (warp grad_x,
unwarp output) are deterministic and atomic-free by default: per source position the
2^d (target, weight) entries are written with unique 64-bit keys
``(batch, target, entry)``, sorted, and each target sums its entries in ascending
entry order; ``deterministic=False`` uses floating-point ``atomicAdd`` instead (faster
for few channels, last-bit differences between runs).

Inputs follow the engine interface (validated by :mod:`warptheory.warping`): x and
grad_y ``(B, N, *S)``, eps ``(B, d, *S)``, one dtype float32/float64, ``d`` in 1..3,
padding ``"zeros"``, ``"periodic"`` or ``"border"``; outputs are CuPy arrays.  A
non-finite offset makes a gather at that position NaN and a scatter from it contribute
nothing (as :mod:`warptheory._engine_numpy`).
"""
from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path

import numpy as np

from .kernels import Kernel, get_kernel

__all__ = [
    "Taps",
    "warp",
    "warp_backward",
    "unwarp",
    "unwarp_backward",
    "module_source",
    "name_expressions",
]

_CUDA_DIR = Path(__file__).resolve().parent / "cuda"
_PADDING_CODES = {"zeros": 0, "periodic": 1, "border": 2}
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_NVRTC_OPTIONS = ("-std=c++17",)
_BLOCK = 256
# The kernels loop grid-stride, so the grid can be capped well below the hardware limit.
_MAX_GRID = 65535 * 32
# Enough threads to fill an H100/H200 several times over (132 SMs x 2048 threads);
# channels are split across threads only until this many are in flight.
_TARGET_THREADS = 1 << 20
_INT64_MAX = (1 << 63) - 1

_LOCK = threading.Lock()
_MODULES: dict = {}


def _cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the CuPy warp engine (backend='cupy') needs CuPy and a CUDA device: install the `gpu` extra, "
            "`pip install 'warptheory[gpu]'` (cupy-cuda12x), or use the Numba/numpy backends"
        ) from exc
    return cupy


_SOURCES: dict = {}


def module_source(kernel) -> str:
    """The CUDA translation unit NVRTC compiles for ``kernel``: header, φ source, kernels."""
    kernel = get_kernel(kernel)
    header = (_CUDA_DIR / "warp.cuh").read_text()
    kernels = (_CUDA_DIR / "warp_kernels.cu").read_text()
    return f"{header}\n// ---- kernel {kernel.name!r} ----\n{kernel.c_source('wt_phi')}\n{kernels}"


def name_expressions(dtype) -> list[str]:
    """Template instances needed for one dtype (every d), as NVRTC name expressions."""
    ctype = _CTYPES[np.dtype(dtype)]
    names = [f"wt_scatter_gather_kernel<{ctype}>"]
    for d in (1, 2, 3):
        for fn in ("wt_gather_kernel", "wt_position_derivative_kernel", "wt_scatter_keys_kernel",
                   "wt_scatter_atomic_kernel"):
            names.append(f"{fn}<{ctype}, {d}>")
    return names


def _module(kernel: Kernel, dtype):
    """The compiled module of (kernel, dtype) on the current device: NVRTC runs once for each,
    keyed by the source (two kernels with the same expression share it)."""
    cupy = _cupy()
    with _LOCK:
        source = _SOURCES.get(kernel)
        if source is None:
            source = _SOURCES[kernel] = module_source(kernel)
        key = (hashlib.sha256(source.encode()).hexdigest(), np.dtype(dtype).str, cupy.cuda.Device().id)
        module = _MODULES.get(key)
        if module is None:
            module = cupy.RawModule(code=source, options=_NVRTC_OPTIONS, name_expressions=name_expressions(dtype))
            _MODULES[key] = module
        return module


def _run(fn, total, args):
    if total <= 0:
        return
    grid = min(-(-total // _BLOCK), _MAX_GRID)
    fn((grid,), (_BLOCK,), args)


def _chunk(channels, positions):
    """Channels per thread: split channels only while threads are scarce."""
    if positions == 0 or channels == 0:
        return 1
    chunks = min(channels, max(1, -(-_TARGET_THREADS // positions)))
    return -(-channels // chunks)


class Taps:
    """One plan on the GPU (see :class:`warptheory.warping.WarpPlan`): the compiled module of
    (kernel, dtype) and the plan's geometry; every output computes its taps in registers."""

    def __init__(self, positions, relative, in_shape, kernel, padding, transient=True, deterministic=True):
        self.cupy = _cupy()
        self.kernel = get_kernel(kernel)
        self.dtype = np.dtype(positions.dtype)
        self.ctype = _CTYPES[self.dtype]
        self.module = _module(self.kernel, self.dtype)
        self.eps = self.cupy.ascontiguousarray(self.cupy.asarray(positions))
        self.batch, self.d = (int(s) for s in positions.shape[:2])
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in positions.shape[2:])
        self.count_in, self.count_out = math.prod(self.in_shape), math.prod(self.out_shape)
        pad = [np.int64(1)] * (3 - self.d)
        self.geometry = (*(np.int64(s) for s in self.in_shape), *pad, *(np.int64(s) for s in self.out_shape), *pad,
                         np.int32(bool(relative)))
        self.padding = np.int32(_PADDING_CODES[padding])
        self.deterministic = deterministic

    def prepare(self, slopes):
        """Nothing to prepare: every output computes its taps."""

    def function(self, name, templated=True):
        if not templated:
            return self.module.get_function(name)
        if name == "wt_scatter_gather_kernel":
            return self.module.get_function(f"{name}<{self.ctype}>")
        return self.module.get_function(f"{name}<{self.ctype}, {self.d}>")

    def _device(self, *arrays):
        return [self.cupy.ascontiguousarray(self.cupy.asarray(a)) for a in arrays]

    def gather(self, src):
        """Eq 2 (warp y) / eq 50 (unwarp grad_x): one thread per output and chunk of channels."""
        (src,) = self._device(src)
        channels = int(src.shape[1])
        out = self.cupy.empty((self.batch, channels, *self.out_shape), dtype=self.dtype)
        positions = self.batch * self.count_out
        chunk = _chunk(channels, positions)
        _run(self.function("wt_gather_kernel"), positions * -(-channels // chunk),
             (src, self.eps, out, np.int64(self.batch), np.int64(channels), *self.geometry, self.padding,
              np.int64(chunk)))
        return out

    def position_derivative(self, outer, src):
        """Eq 4 (outer = grad_y, src = x) / eq 51 (outer = x, src = grad_y): one thread per position."""
        outer, src = self._device(outer, src)
        out = self.cupy.empty((self.batch, self.d, *self.out_shape), dtype=self.dtype)
        _run(self.function("wt_position_derivative_kernel"), self.batch * self.count_out,
             (outer, src, self.eps, out, np.int64(self.batch), np.int64(src.shape[1]), *self.geometry,
              self.padding))
        return out

    def scatter(self, src):
        """Eq 3 (warp grad_x) / eq 49 (unwarp y): sorted unique keys, or atomics when not deterministic."""
        cupy = self.cupy
        (src,) = self._device(src)
        channels = int(src.shape[1])
        out = cupy.empty((self.batch, channels, *self.in_shape), dtype=self.dtype)
        M_in, M_out, corners = self.count_in, self.count_out, 1 << self.d
        if not self.deterministic:
            out.fill(0)
            positions = self.batch * M_out
            chunk = _chunk(channels, positions)
            _run(self.function("wt_scatter_atomic_kernel"), positions * -(-channels // chunk),
                 (src, self.eps, out, np.int64(self.batch), np.int64(channels), *self.geometry, self.padding,
                  np.int64(chunk)))
            return out
        E = M_out * corners
        if self.batch == 0 or E == 0:
            return out
        # Keys (bl * (M_in + 1) + target) * E + e must fit in int64; batches are processed in
        # groups small enough for that (one group for every realistic size).
        group = max(1, min(self.batch, _INT64_MAX // ((M_in + 1) * E)))
        log2_corners = np.int32(self.d)
        for b0 in range(0, self.batch, group):
            nb = min(group, self.batch - b0)
            total = nb * E
            keys = cupy.empty(total, dtype=cupy.int64)
            weights = cupy.empty(total, dtype=cupy.float64)
            _run(self.function("wt_scatter_keys_kernel"), nb * M_out,
                 (self.eps, keys, weights, np.int64(b0), np.int64(nb), *self.geometry, self.padding))
            # The keys are unique, so the sorted order does not depend on the sort's
            # algorithm or scheduling: this is what makes the scatter deterministic.
            sorted_keys = cupy.sort(keys)
            del keys
            source = cupy.empty(total, dtype=cupy.int64)
            sorted_weight = cupy.empty(total, dtype=cupy.float64)
            _run(self.function("wt_scatter_decode_kernel", templated=False), total,
                 (sorted_keys, weights, source, sorted_weight, np.int64(total), np.int64(M_in), np.int64(M_out),
                  log2_corners))
            del weights
            bounds = cupy.empty(nb * (M_in + 1), dtype=cupy.int64)
            _run(self.function("wt_segment_bounds_kernel", templated=False), nb * (M_in + 1),
                 (sorted_keys, np.int64(total), bounds, np.int64(nb), np.int64(M_in), np.int64(M_out),
                  log2_corners))
            chunk = _chunk(channels, nb * M_in)
            _run(self.function("wt_scatter_gather_kernel"), nb * M_in * -(-channels // chunk),
                 (src, out, source, sorted_weight, bounds, np.int64(b0), np.int64(nb), np.int64(channels),
                  np.int64(M_in), np.int64(M_out), np.int64(chunk)))
        return out


def warp(x, eps, kernel, padding):
    """Eq 2: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(v_k − u_k + eps[b,k,v])`` on the GPU."""
    return Taps(eps, True, x.shape[2:], kernel, padding).gather(x)


def warp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True, deterministic=True):
    """Eqs 3–4 (17–18): ``(grad_x, grad_eps)`` through :func:`warp`; unrequested ones are None.

    ``deterministic=False`` computes grad_x with floating-point atomics (run-to-run
    differences in the last bits); the default is the atomic-free sorted scatter.
    """
    taps = Taps(eps, True, x.shape[2:], kernel, padding, deterministic=deterministic)
    grad_x = taps.scatter(grad_y) if need_x else None
    grad_eps = taps.position_derivative(grad_y, x) if need_eps else None
    return grad_x, grad_eps


def unwarp(x, eps, kernel, padding, deterministic=True):
    """Eq 49: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(u_k − v_k + eps[b,k,u])`` (a scatter) on the GPU."""
    return Taps(eps, True, x.shape[2:], kernel, padding, deterministic=deterministic).scatter(x)


def unwarp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 50–51: ``(grad_x, grad_eps)`` through :func:`unwarp`; unrequested ones are None."""
    taps = Taps(eps, True, x.shape[2:], kernel, padding)
    grad_x = taps.gather(grad_y) if need_x else None
    grad_eps = taps.position_derivative(x, grad_y) if need_eps else None
    return grad_x, grad_eps
