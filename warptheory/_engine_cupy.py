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
    cupy = _cupy()
    source = module_source(kernel)
    key = (hashlib.sha256(source.encode()).hexdigest(), np.dtype(dtype).str, cupy.cuda.Device().id)
    with _LOCK:
        module = _MODULES.get(key)
        if module is None:
            module = cupy.RawModule(code=source, options=_NVRTC_OPTIONS, name_expressions=name_expressions(dtype))
            _MODULES[key] = module
        return module


class _Launch:
    """The compiled functions of one (kernel, dtype) and the geometry of one call."""

    def __init__(self, kernel, padding, reference):
        self.cupy = _cupy()
        self.kernel = get_kernel(kernel)
        self.dtype = reference.dtype
        self.ctype = _CTYPES[np.dtype(self.dtype)]
        self.module = _module(self.kernel, self.dtype)
        self.batch, self.channels = (int(s) for s in reference.shape[:2])
        spatial = tuple(int(s) for s in reference.shape[2:])
        self.d = len(spatial)
        self.count = math.prod(spatial)
        self.sizes = [np.int64(s) for s in (*spatial, *([1] * (3 - self.d)))]
        self.padding = np.int32(_PADDING_CODES[padding])

    def function(self, name, templated=True):
        if not templated:
            return self.module.get_function(name)
        if name == "wt_scatter_gather_kernel":
            return self.module.get_function(f"{name}<{self.ctype}>")
        return self.module.get_function(f"{name}<{self.ctype}, {self.d}>")

    def chunk(self, positions):
        """Channels per thread: split channels only while threads are scarce."""
        if positions == 0 or self.channels == 0:
            return 1
        chunks = min(self.channels, max(1, -(-_TARGET_THREADS // positions)))
        return -(-self.channels // chunks)

    @staticmethod
    def run(fn, total, args):
        if total <= 0:
            return
        grid = min(-(-total // _BLOCK), _MAX_GRID)
        fn((grid,), (_BLOCK,), args)


def _device(cupy, *arrays):
    return [cupy.ascontiguousarray(cupy.asarray(a)) for a in arrays]


def _gather(kernel, padding, src, eps):
    launch = _Launch(kernel, padding, src)
    src, eps = _device(launch.cupy, src, eps)
    out = launch.cupy.empty_like(src)
    positions = launch.batch * launch.count
    chunk = launch.chunk(positions)
    chunks = -(-launch.channels // chunk)
    launch.run(
        launch.function("wt_gather_kernel"),
        positions * chunks,
        (src, eps, out, np.int64(launch.batch), np.int64(launch.channels), *launch.sizes, launch.padding,
         np.int64(chunk)),
    )
    return out


def _position_derivative(kernel, padding, outer, src, eps):
    launch = _Launch(kernel, padding, src)
    outer, src, eps = _device(launch.cupy, outer, src, eps)
    out = launch.cupy.empty_like(eps)
    launch.run(
        launch.function("wt_position_derivative_kernel"),
        launch.batch * launch.count,
        (outer, src, eps, out, np.int64(launch.batch), np.int64(launch.channels), *launch.sizes, launch.padding),
    )
    return out


def _scatter(kernel, padding, src, eps, deterministic=True):
    launch = _Launch(kernel, padding, src)
    cupy = launch.cupy
    src, eps = _device(cupy, src, eps)
    out = cupy.empty_like(src)
    M, corners = launch.count, 1 << launch.d
    E = M * corners
    if not deterministic:
        out.fill(0)
        positions = launch.batch * M
        chunk = launch.chunk(positions)
        launch.run(
            launch.function("wt_scatter_atomic_kernel"),
            positions * -(-launch.channels // chunk),
            (src, eps, out, np.int64(launch.batch), np.int64(launch.channels), *launch.sizes, launch.padding,
             np.int64(chunk)),
        )
        return out
    if launch.batch == 0 or E == 0:
        return out
    # Keys (bl * (M + 1) + target) * E + e must fit in int64; batches are processed in
    # groups small enough for that (one group for every realistic size).
    group = max(1, min(launch.batch, _INT64_MAX // ((M + 1) * E)))
    log2_corners = np.int32(launch.d)
    keys_fn = launch.function("wt_scatter_keys_kernel")
    decode_fn = launch.function("wt_scatter_decode_kernel", templated=False)
    bounds_fn = launch.function("wt_segment_bounds_kernel", templated=False)
    gather_fn = launch.function("wt_scatter_gather_kernel")
    for b0 in range(0, launch.batch, group):
        nb = min(group, launch.batch - b0)
        total = nb * E
        keys = cupy.empty(total, dtype=cupy.int64)
        weights = cupy.empty(total, dtype=cupy.float64)
        launch.run(keys_fn, nb * M, (eps, keys, weights, np.int64(b0), np.int64(nb), *launch.sizes, launch.padding))
        # The keys are unique, so the sorted order does not depend on the sort's
        # algorithm or scheduling: this is what makes the scatter deterministic.
        sorted_keys = cupy.sort(keys)
        del keys
        source = cupy.empty(total, dtype=cupy.int64)
        sorted_weight = cupy.empty(total, dtype=cupy.float64)
        launch.run(decode_fn, total,
                   (sorted_keys, weights, source, sorted_weight, np.int64(total), np.int64(M), log2_corners))
        del weights
        bounds = cupy.empty(nb * (M + 1), dtype=cupy.int64)
        launch.run(bounds_fn, nb * (M + 1),
                   (sorted_keys, np.int64(total), bounds, np.int64(nb), np.int64(M), log2_corners))
        chunk = launch.chunk(nb * M)
        launch.run(
            gather_fn,
            nb * M * -(-launch.channels // chunk),
            (src, out, source, sorted_weight, bounds, np.int64(b0), np.int64(nb), np.int64(launch.channels),
             np.int64(M), np.int64(chunk)),
        )
    return out


def warp(x, eps, kernel, padding):
    """Eq 2: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(v_k − u_k + eps[b,k,v])`` on the GPU."""
    return _gather(kernel, padding, x, eps)


def warp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True, deterministic=True):
    """Eqs 3–4 (17–18): ``(grad_x, grad_eps)`` through :func:`warp`; unrequested ones are None.

    ``deterministic=False`` computes grad_x with floating-point atomics (run-to-run
    differences in the last bits); the default is the atomic-free sorted scatter.
    """
    grad_x = _scatter(kernel, padding, grad_y, eps, deterministic) if need_x else None
    grad_eps = _position_derivative(kernel, padding, grad_y, x, eps) if need_eps else None
    return grad_x, grad_eps


def unwarp(x, eps, kernel, padding, deterministic=True):
    """Eq 49: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(u_k − v_k + eps[b,k,u])`` (a scatter) on the GPU."""
    return _scatter(kernel, padding, x, eps, deterministic)


def unwarp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 50–51: ``(grad_x, grad_eps)`` through :func:`unwarp`; unrequested ones are None."""
    grad_x = _gather(kernel, padding, grad_y, eps) if need_x else None
    grad_eps = _position_derivative(kernel, padding, x, grad_y, eps) if need_eps else None
    return grad_x, grad_eps
