r"""Host build of the CUDA warp source: the GPU arithmetic, run on the CPU (eqs 2–4, 49–51).

The per-element math of the GPU engine lives in ``warptheory/cuda/warp.cuh`` as
``__host__ __device__`` functions.  This module compiles that same header with g++,
together with the kernel's generated :math:`\varphi`/:math:`\varphi'` source
(:meth:`warptheory.kernels.Kernel.c_source`) and a small C++ driver
(``warptheory/cuda/warp_host.cpp``) that loops over outputs, into a shared library
loaded with :mod:`ctypes`.  A machine without a GPU (CI) therefore runs, and tests, the
exact arithmetic of the CuPy engine, including its deterministic three-pass scatter
for warp's grad_x and unwarp.  It is a verification engine: single-threaded, not fast.
See ``paper_notes/cuda_engine.md``.

Conventions (shared by every engine, see ``warptheory/_engine_numpy.py``): x and grad_y
have shape ``(B, N, *S)``, eps ``(B, d, *S)`` with ``d = len(S)`` in 1..3, one float
dtype; padding is ``"zeros"``, ``"periodic"`` or ``"border"``.  A non-finite offset
makes a gather at that position NaN (warp output, every grad_eps, unwarp grad_x) and
a scatter from it contribute nothing (warp grad_x, unwarp output).

Libraries are cached on disk, one per kernel source and compiler, under
``$WARPTHEORY_CACHE_DIR`` or ``$XDG_CACHE_HOME/warptheory`` (default
``~/.cache/warptheory``), in ``host-cuda/``.  The C++ compiler is ``$CXX`` or ``g++``.

Examples
--------
Zero offsets give the identity, and warp's grad_x is unwarp (its transpose):

>>> import numpy as np
>>> from warptheory.kernels import get_kernel
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((1, 2, 5, 4))
>>> bool(np.array_equal(warp(x, np.zeros((1, 2, 5, 4)), get_kernel("tri"), "zeros"), x))
True
>>> eps = rng.uniform(-2, 2, (1, 2, 5, 4))
>>> g = rng.standard_normal(x.shape)
>>> grad_x, _ = warp_backward(x, eps, g, get_kernel("cos"), "periodic", need_eps=False)
>>> bool(np.array_equal(grad_x, unwarp(g, eps, get_kernel("cos"), "periodic")))
True
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .kernels import Kernel, get_kernel

__all__ = [
    "HostCompilerError",
    "Taps",
    "warp",
    "warp_backward",
    "unwarp",
    "unwarp_backward",
    "build_library",
    "cuda_source_dir",
]

_CUDA_DIR = Path(__file__).resolve().parent / "cuda"
_PADDING_CODES = {"zeros": 0, "periodic": 1, "border": 2}
_DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}
_STATUS = {1: "bad argument (dtype, d or padding code)", 2: "out of memory"}
# -O2 as in a release build; no -march/-ffast-math, so the compiler neither contracts
# a*b+c into FMAs nor reorders sums: the arithmetic is the source's, operation by operation.
_CXX_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++17", "-ffp-contract=off", "-fno-fast-math")

_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL] = {}


class HostCompilerError(RuntimeError):
    """No usable C++ compiler for the host build of the CUDA source (or it failed)."""


def cuda_source_dir() -> Path:
    """Directory holding ``warp.cuh``, ``warp_kernels.cu`` and ``warp_host.cpp``."""
    return _CUDA_DIR


def _compiler() -> str:
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise HostCompilerError(
            f"the host build of the CUDA warp source needs a C++17 compiler: {name!r} was not found on PATH "
            "(install g++ or set CXX)"
        )
    return path


@lru_cache(maxsize=None)
def _compiler_identity(compiler: str) -> str:
    """First line of ``compiler --version``, run once per compiler path and process."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostCompilerError(f"C++ compiler {compiler!r} does not run: {exc}") from exc
    return out.stdout.splitlines()[0] if out.stdout else compiler


def _cache_dir() -> Path:
    root = os.environ.get("WARPTHEORY_CACHE_DIR")
    if root is None:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warptheory")
    return Path(root) / "host-cuda"


def host_source(kernel: Kernel) -> str:
    """The single translation unit compiled for ``kernel``: header, φ source, driver."""
    header = (_CUDA_DIR / "warp.cuh").read_text()
    driver = (_CUDA_DIR / "warp_host.cpp").read_text()
    return f"{header}\n// ---- kernel {kernel.name!r} ----\n{kernel.c_source('wt_phi')}\n{driver}"


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int
    shape = ctypes.POINTER(ctypes.c_longlong)
    lib.wt_host_gather.argtypes = [i32, i32, ptr, ptr, ptr, i64, i64, shape, shape, i32, i32]
    lib.wt_host_position_derivative.argtypes = [i32, i32, ptr, ptr, ptr, ptr, i64, i64, shape, shape, i32, i32]
    lib.wt_host_scatter.argtypes = [i32, i32, ptr, ptr, ptr, i64, i64, shape, shape, i32, i32]
    for fn in (lib.wt_host_gather, lib.wt_host_position_derivative, lib.wt_host_scatter):
        fn.restype = i32
    return lib


def build_library(kernel) -> ctypes.CDLL:
    """Compile (or load from the cache) the host library for ``kernel``; returns the CDLL.

    All dtypes and d = 1, 2, 3 live in one library, so each kernel costs one compile,
    once per machine.

    Raises
    ------
    HostCompilerError
        When no C++ compiler is found or the compile fails (the message has its output).
    """
    kernel = get_kernel(kernel)
    source = host_source(kernel)
    compiler = _compiler()
    identity = _compiler_identity(compiler)
    key = hashlib.sha256("\0".join([source, identity, *_CXX_FLAGS]).encode()).hexdigest()[:24]
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        cache = _cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"warp_{key}.so"
        if not target.exists():
            _compile(compiler, source, target)
        lib = _bind(ctypes.CDLL(str(target)))
        _LOADED[key] = lib
        return lib


def _compile(compiler: str, source: str, target: Path) -> None:
    # Build beside the target and rename: concurrent processes (pytest-xdist, other
    # sessions sharing the cache) never load a half-written library.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "warp_host_unit.cpp"
        src.write_text(source)
        out = Path(tmp) / target.name
        cmd = [compiler, *_CXX_FLAGS, "-I", str(_CUDA_DIR), str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HostCompilerError(
                f"host build of the CUDA warp source failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}"
            )
        os.replace(out, target)


# ----- the shared engine interface -----------------------------------------------------


def _sizes(shape):
    return (ctypes.c_longlong * 3)(*shape, *([1] * (3 - len(shape))))


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"host CUDA engine: {what} failed: {_STATUS.get(status, status)}")


class Taps:
    """One plan on the host build (see :class:`warptheory.warping.WarpPlan`): the library of
    the kernel and the plan's geometry; the arithmetic runs per call, as on the GPU."""

    def __init__(self, positions, relative, in_shape, kernel, padding, transient=True):
        self.lib = build_library(kernel)
        self.eps = np.ascontiguousarray(positions)
        self.d = positions.shape[1]
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(positions.shape[2:])
        self.geometry = (_sizes(self.in_shape), _sizes(self.out_shape), int(bool(relative)), _PADDING_CODES[padding])
        self.dtype = _DTYPE_CODES[np.dtype(positions.dtype)]

    def prepare(self, slopes):
        """Nothing to prepare: every output computes its taps."""

    def _run(self, entry, arrays, out_spatial, channels):
        arrays = [np.ascontiguousarray(a) for a in arrays]
        out = np.empty((self.eps.shape[0], channels, *out_spatial), dtype=self.eps.dtype)
        status = getattr(self.lib, f"wt_host_{entry}")(
            self.dtype, self.d, *map(_ptr, arrays), _ptr(self.eps), _ptr(out), self.eps.shape[0],
            arrays[-1].shape[1], *self.geometry,
        )
        _check(status, entry.replace("_", " "))
        return out

    def gather(self, src):
        """Eq 2 (warp y) / eq 50 (unwarp grad_x)."""
        return self._run("gather", [src], self.out_shape, src.shape[1])

    def scatter(self, src):
        """Eq 3 (warp grad_x) / eq 49 (unwarp y), the deterministic three-pass scatter."""
        return self._run("scatter", [src], self.in_shape, src.shape[1])

    def position_derivative(self, outer, src):
        """Eq 4 (outer = grad_y, src = x) / eq 51 (outer = x, src = grad_y)."""
        return self._run("position_derivative", [outer, src], self.out_shape, self.d)


def warp(x, eps, kernel, padding):
    """Eq 2: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(v_k − u_k + eps[b,k,v])`` (a gather)."""
    return Taps(eps, True, x.shape[2:], kernel, padding).gather(x)


def warp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 3–4 (17–18): ``(grad_x, grad_eps)`` through :func:`warp`; unrequested ones are None.

    grad_x (eq 3) is the transpose of the gather, computed by the deterministic
    three-pass scatter; grad_eps (eq 4) is a per-position reduction over channels.
    """
    taps = Taps(eps, True, x.shape[2:], kernel, padding)
    grad_x = taps.scatter(grad_y) if need_x else None
    grad_eps = taps.position_derivative(grad_y, x) if need_eps else None
    return grad_x, grad_eps


def unwarp(x, eps, kernel, padding):
    """Eq 49: ``y[b,n,v] = Σ_u x[b,n,u] Π_k φ(u_k − v_k + eps[b,k,u])`` (a scatter)."""
    return Taps(eps, True, x.shape[2:], kernel, padding).scatter(x)


def unwarp_backward(x, eps, grad_y, kernel, padding, need_x=True, need_eps=True):
    """Eqs 50–51: ``(grad_x, grad_eps)`` through :func:`unwarp`; unrequested ones are None.

    grad_x (eq 50) is the gather of grad_y; grad_eps (eq 51) is eq 4's reduction with
    the roles of x and grad_y exchanged.
    """
    taps = Taps(eps, True, x.shape[2:], kernel, padding)
    grad_x = taps.gather(grad_y) if need_x else None
    grad_eps = taps.position_derivative(x, grad_y) if need_eps else None
    return grad_x, grad_eps
