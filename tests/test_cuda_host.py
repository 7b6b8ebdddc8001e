r"""The CUDA warp source, checked without a GPU (eqs 2–4 / 16–18, 49–51; paper_notes/cuda_engine.md).

Three routes run the arithmetic of ``warptheory/cuda/warp.cuh`` on the CPU:

* ``warptheory._engine_host``: the header built with g++ and driven by
  ``warp_host.cpp``; compared with the numpy reference ``warptheory._engine_numpy``
  for every kernel, d, padding and dtype, forward and both gradients of warp and unwarp;
* an *emulated CuPy*: ``warptheory._engine_cupy``'s own Python code runs against a
  stand-in ``cupy`` module whose ``RawModule`` compiles the very translation unit the
  real engine hands to NVRTC, with g++ and a one-thread launch shim.  This checks the
  GPU engine's launch logic (argument order and types, template names, the key/sort/
  decode/bounds pipeline of the deterministic scatter, batch grouping, channel
  chunking) where no GPU exists;
* ``nvcc`` compile checks of that translation unit for sm_80 and sm_90.

The ``gpu``-marked tests at the end run the real CuPy engine when CuPy and a device
are present and are skipped (with the reason) otherwise.
"""
from __future__ import annotations

import ctypes
import hashlib
import itertools
import math
import re
import shutil
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from warptheory import _engine_cupy as cupy_engine
from warptheory import _engine_host as host_engine
from warptheory import _engine_numpy as reference
from warptheory.kernels import BUILTIN_KERNELS, T, get_kernel, kernel_from_sympy, on_support

# A user kernel with a smooth derivative (cubic "smoothstep", C^1, mean-preserving) to
# show that generated sources other than the built-ins compile and agree.
USER_KERNEL = kernel_from_sympy(on_support((1 - sp.Abs(T)) ** 2 * (1 + 2 * sp.Abs(T))), name="user_smoothstep")
KERNELS = [get_kernel(name) for name in BUILTIN_KERNELS] + [USER_KERNEL]
KERNEL_IDS = [k.name for k in KERNELS]
PADDINGS = ("zeros", "periodic", "border")
DTYPES = (np.float32, np.float64)
SPATIAL = {1: (7,), 2: (5, 4), 3: (4, 3, 5)}
BATCH, CHANNELS = 2, 3
EPS64 = np.finfo(np.float64).eps

# The compiled engines evaluate inf·0 for sqrt_tri at integer positions (see
# _through_dispatch) and numpy warns about it; the values are checked explicitly.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@pytest.fixture(scope="module")
def host():
    try:
        host_engine.build_library("tri")
    except host_engine.HostCompilerError as exc:
        pytest.skip(f"no host C++ build of the CUDA source: {exc}")
    return host_engine


def _rng(*labels) -> np.random.Generator:
    # A seed per case that does not depend on PYTHONHASHSEED or test order.
    return np.random.default_rng(zlib.crc32(repr(labels).encode()))


def _case(d, dtype, *labels, spread=3.0):
    """x, eps, grad_y with offsets that reach outside the lattice and hit kinks exactly."""
    rng = _rng(d, np.dtype(dtype).name, *labels)
    spatial = SPATIAL[d]
    x = rng.standard_normal((BATCH, CHANNELS, *spatial)).astype(dtype)
    grad_y = rng.standard_normal(x.shape).astype(dtype)
    eps = rng.uniform(-spread, spread, (BATCH, d, *spatial))
    # A quarter of the offsets on integers and half-integers: the kinks of tri/rect/sqrt_tri,
    # where φ' is the right derivative and the two taps are φ(0), φ(-1).
    on_kink = rng.random(eps.shape) < 0.25
    eps[on_kink] = np.round(2 * eps[on_kink]) / 2
    return x, eps.astype(dtype), grad_y


def _through_dispatch(engine, results, x, eps, grad_y, kernel, padding):
    """The results as the public API returns them.

    sqrt_tri has φ'(-1⁺) = +inf, met at positions on the lattice along some axis.  The CUDA
    source applies the slopes factorised, as the reference does (each slope multiplies one
    finite sum, and a slope meeting a zero sum gives 0: ``wt_slope_factor``), so its
    results go to the API unchanged; this step is kept to say so where the comparisons are.
    """
    return results


def _assert_close(actual, expected, dtype, what):
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    # Both engines form positions in float64, accumulate in float64 and round once to the
    # dtype; φ comes from two compilations of one expression (numba vs g++ and libm).
    # So they agree to a few float64 ulps per term of each sum (at most N·2^d = 24 terms
    # of size ≤ the largest output here; 64 ulps of that scale bounds it), plus one
    # rounding to the dtype (rtol 2 eps: the two float64 sums may straddle a rounding edge).
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    np.testing.assert_allclose(
        actual, expected, rtol=2 * np.finfo(dtype).eps, atol=64 * EPS64 * scale, equal_nan=True, err_msg=what
    )


def _all_results(engine, x, eps, grad_y, kernel, padding):
    y = engine.warp(x, eps, kernel, padding)
    gx, ge = engine.warp_backward(x, eps, grad_y, kernel, padding)
    uy = engine.unwarp(x, eps, kernel, padding)
    ugx, uge = engine.unwarp_backward(x, eps, grad_y, kernel, padding)
    return {
        "warp y (eq 2)": y,
        "warp grad_x (eq 3)": gx,
        "warp grad_eps (eq 4)": ge,
        "unwarp y (eq 49)": uy,
        "unwarp grad_x (eq 50)": ugx,
        "unwarp grad_eps (eq 51)": uge,
    }


def _compare_engines(engine, x, eps, grad_y, kernel, padding, dtype):
    got = _through_dispatch(engine, _all_results(engine, x, eps, grad_y, kernel, padding), x, eps, grad_y, kernel, padding)
    want = _all_results(reference, x, eps, grad_y, kernel, padding)
    for what in want:
        _assert_close(got[what], want[what], dtype, f"{what}, kernel {kernel.name}, {padding}")


# ----- host build == numpy reference -------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("d", (1, 2, 3))
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_eqs_2_3_4_49_50_51_host_build_matches_reference(host, kernel, d, padding, dtype):
    x, eps, grad_y = _case(d, dtype, kernel.name, padding)
    _compare_engines(host, x, eps, grad_y, kernel, padding, dtype)


def test_need_flags_skip_unrequested_gradients(host):
    x, eps, g = _case(2, np.float64, "flags")
    assert host.warp_backward(x, eps, g, get_kernel("tri"), "zeros", need_x=False, need_eps=False) == (None, None)
    gx, ge = host.unwarp_backward(x, eps, g, get_kernel("tri"), "zeros", need_x=False)
    assert gx is None and ge.shape == eps.shape


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-wt")
    with pytest.raises(host_engine.HostCompilerError, match="no-such-compiler-wt.*not found"):
        host_engine.build_library("tri")


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_eq2_zero_offsets_identity_and_integer_offsets_exact_shift(host, kernel, padding):
    # φ(0) = 1 and φ(±1) = 0 are returned exactly, so both results are bitwise exact.
    rng = _rng("shift", kernel.name, padding)
    x = rng.standard_normal((1, 2, 6, 5))
    zero = np.zeros((1, 2, 6, 5))
    assert np.array_equal(host.warp(x, zero, kernel, padding), x)
    assert np.array_equal(host.unwarp(x, zero, kernel, padding), x)
    shift = np.zeros((1, 2, 6, 5))
    shift[:, 0], shift[:, 1] = 2.0, -1.0  # y[i, j] = x[i + 2, j - 1]
    y = host.warp(x, shift, kernel, padding)
    if padding == "periodic":
        expected = np.roll(x, (-2, 1), axis=(2, 3))
    else:
        rows = np.arange(6) + 2
        cols = np.arange(5) - 1
        if padding == "border":
            expected = x[:, :, np.clip(rows, 0, 5)][:, :, :, np.clip(cols, 0, 4)]
        else:
            expected = np.zeros_like(x)
            expected[:, :, :4, 1:] = x[:, :, 2:, :4]
    assert np.array_equal(y, expected)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("d", (1, 2, 3))
def test_eq3_adjoint_identity_and_unwarp_is_the_transpose(host, d, padding):
    kernel = get_kernel("cos")
    x, eps, g = _case(d, np.float64, "adjoint", padding)
    y = host.warp(x, eps, kernel, padding)
    grad_x, _ = host.warp_backward(x, eps, g, kernel, padding, need_eps=False)
    lhs, rhs = float(np.vdot(y, g)), float(np.vdot(x, grad_x))
    # Two float64 dot products of ~100 O(1) terms: ~1e-14 rounding, far under 1e-12.
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (lhs, rhs)
    # Same code path, same order: the equalities are exact.
    assert np.array_equal(grad_x, host.unwarp(g, eps, kernel, padding))
    assert np.array_equal(host.unwarp_backward(x, eps, g, kernel, padding, need_eps=False)[0],
                          host.warp(g, eps, kernel, padding))


def _sample_case(d, dtype, *labels):
    """x on SPATIAL[d], absolute coordinates on another grid (one more point per axis, reversed),
    reaching outside the input and with one NaN; grad_y on that grid."""
    rng = _rng("sample", d, np.dtype(dtype).name, *labels)
    in_shape = SPATIAL[d]
    out_shape = tuple(s + 1 for s in reversed(in_shape))
    x = rng.standard_normal((BATCH, CHANNELS, *in_shape)).astype(dtype)
    g = rng.standard_normal((BATCH, CHANNELS, *out_shape)).astype(dtype)
    coords = np.stack([rng.uniform(-1.5, s + 0.5, (BATCH, *out_shape)) for s in in_shape], axis=1)
    coords.reshape(-1)[5] = np.nan
    return x, coords.astype(dtype), g


def _sample_results(engine, x, coords, g, kernel, padding):
    taps = engine.Taps(coords, False, x.shape[2:], kernel, padding)
    return {"sample (eq 2)": taps.gather(x), "grad_x (eq 3)": taps.scatter(g),
            "grad_coords (eq 4)": taps.position_derivative(g, x), "unwarp grad_coords (eq 51)":
            taps.position_derivative(taps.gather(x), np.ascontiguousarray(x[:, ::-1]))}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("d", (1, 2, 3))
def test_sample_on_another_grid_host_build_matches_reference(host, d, padding, dtype):
    """Absolute coordinates on an output grid other than the input's (WarpPlan from sample_plan)."""
    for kernel in (get_kernel("cos"), get_kernel("sqrt_tri")):
        x, coords, g = _sample_case(d, dtype, padding, kernel.name)
        want = _sample_results(reference, x, coords, g, kernel, padding)
        for what, got in _sample_results(host, x, coords, g, kernel, padding).items():
            assert got.shape == want[what].shape, what
            _assert_close(got, want[what], dtype, f"{what}, {kernel.name}, {padding}")


# ----- determinism of the scatter ------------------------------------------------------


def test_eq3_grad_x_is_bitwise_deterministic_across_runs(host):
    x, eps, g = _case(2, np.float32, "determinism", spread=1.5)
    first = host.warp_backward(x, eps, g, get_kernel("hann"), "border")[0]
    for _ in range(3):
        again = host.warp_backward(x, eps, g, get_kernel("hann"), "border")[0]
        assert again.tobytes() == first.tobytes()


def test_eq3_scatter_sums_in_the_documented_order(host):
    """Each target sums its entries by ascending (source v, corner c), in float64.

    That order is what the GPU's sort of unique keys reproduces; here it is replayed
    in Python with tri weights (exact in both languages: 1 - |t| and a product) and the
    host result must agree bitwise.
    """
    rng = _rng("order")
    spatial = (4, 5)
    M = math.prod(spatial)
    eps = rng.uniform(-2, 2, (1, 2, *spatial))
    g = rng.standard_normal((1, 2, *spatial))
    expected = np.zeros((2, M))
    for v in range(M):  # ascending v, then corner c (axis 0 is the high bit)
        coords = np.unravel_index(v, spatial)
        positions = [coords[k] + eps[0, k].ravel()[v] for k in range(2)]
        for c in range(4):
            taps = [(c >> 1) & 1, c & 1]
            weight, index = 1.0, []
            for k in range(2):
                base = math.floor(positions[k])
                frac = positions[k] - base
                t = frac - taps[k]
                weight *= 0.0 if t in (-1.0, 1.0) else (1.0 if t == 0.0 else 1.0 - abs(t))
                index.append(min(max(base + taps[k], 0), spatial[k] - 1))  # border
            u = index[0] * spatial[1] + index[1]
            for n in range(2):
                expected[n, u] = expected[n, u] + weight * g[0, n].ravel()[v]
    got = host.warp_backward(g, eps, g, get_kernel("tri"), "border", need_eps=False)[0]
    assert got.reshape(2, M).tobytes() == expected.tobytes()


# ----- non-finite and huge offsets -----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("padding", PADDINGS)
def test_nonfinite_offsets_follow_the_documented_policy(host, padding, dtype):
    # cos: finite slopes, so every NaN below comes from the non-finite offsets alone.
    kernel = get_kernel("cos")
    x, eps, g = _case(2, dtype, "nonfinite", padding)
    bad = np.zeros(eps.shape[:1] + eps.shape[2:], dtype=bool)
    bad[0, 1, 2] = bad[1, 4, 0] = bad[1, 0, 3] = True
    eps[0, 0, 1, 2] = np.nan
    eps[1, 1, 4, 0] = np.inf
    eps[1, 0, 0, 3] = -np.inf
    got = _all_results(host, x, eps, g, kernel, padding)
    # Gathers at an undefined position are NaN on every channel / component ...
    for what in ("warp y (eq 2)", "warp grad_eps (eq 4)", "unwarp grad_x (eq 50)", "unwarp grad_eps (eq 51)"):
        assert np.isnan(got[what]).all(axis=1)[bad].all(), what
        assert not np.isnan(got[what]).any(axis=1)[~bad].any(), what
    # ... and a scatter from it adds nothing, so no NaN spreads.
    for what in ("warp grad_x (eq 3)", "unwarp y (eq 49)"):
        assert np.isfinite(got[what]).all(), what
    got = _through_dispatch(host, got, x, eps, g, kernel, padding)
    want = _all_results(reference, x, eps, g, kernel, padding)
    for what in want:
        _assert_close(got[what], want[what], dtype, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("padding", PADDINGS)
def test_huge_and_negative_offsets_stay_in_bounds(host, padding, dtype):
    kernel = get_kernel("tri")
    x, eps, g = _case(3, dtype, "huge", padding)
    biggest = float(np.finfo(dtype).max)
    flat = eps.reshape(-1)
    flat[::7] = 1e6
    flat[1::7] = -1e6 - 0.25
    flat[2::7] = biggest  # beyond 2^53 (2^24): floor(p) + 1 is not representable
    flat[3::7] = -biggest
    flat[4::7] = 12345.5
    _compare_engines(host, x, eps, g, kernel, padding, dtype)


# ----- nvcc compile check --------------------------------------------------------------


def _nvcc():
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("nvcc not found on PATH: the CUDA compile check needs the CUDA toolkit")
    return path


def _nvcc_compile(tmp_path, kernel, args):
    unit = tmp_path / f"warp_{kernel.name}.cu"
    # Exactly what the CuPy engine gives NVRTC, with the template instances made explicit.
    unit.write_text(cupy_engine.module_source(kernel))
    cmd = [_nvcc(), "-std=c++17", "-DWT_EXPLICIT_INSTANTIATION", *args, str(unit), "-o", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return proc


def test_nvcc_compiles_device_and_host_code_for_sm80_and_sm90(tmp_path):
    # cos: exercises M_PI, sin/cos and pow in device code; -c also compiles the
    # __host__ side of every __host__ __device__ function under nvcc.
    _nvcc_compile(tmp_path, get_kernel("cos"), ["-c", "-gencode", "arch=compute_80,code=sm_80",
                                                "-gencode", "arch=compute_90,code=sm_90"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_nvcc_ptx_for_every_kernel(tmp_path, kernel, arch):
    _nvcc_compile(tmp_path, kernel, ["--ptx", f"-arch={arch}"])


# ----- the CuPy engine's Python code on an emulated CuPy ---------------------------------

_EMULATION_PRELUDE = r"""
// One-thread emulation of a CUDA launch: every kernel is a grid-stride loop, so with
// gridDim = blockDim = 1 the single host thread visits every index in order.
#define __global__
struct WtEmuDim3 { unsigned x, y, z; };
static const WtEmuDim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
template <typename T> inline T atomicAdd(T* address, T value) { T old = *address; *address = old + value; return old; }
"""

_EMULATION_WRAPPERS = r"""
#include <cstddef>
#include <type_traits>
#include <utility>
template <typename A> constexpr char wt_emu_kind() {
    using B = std::remove_cv_t<A>;
    if constexpr (std::is_same_v<B, long long>) return 'q';
    else if constexpr (std::is_same_v<B, int>) return 'i';
    else if constexpr (std::is_pointer_v<B>) {
        using P = std::remove_cv_t<std::remove_pointer_t<B>>;
        if constexpr (std::is_same_v<P, float>) return 'f';
        else if constexpr (std::is_same_v<P, double>) return 'd';
        else if constexpr (std::is_same_v<P, long long>) return 'l';
        else return '?';
    } else return '?';
}
template <typename... A> struct WtEmu {
    template <std::size_t... I> static void call(void (*f)(A...), void** argv, std::index_sequence<I...>) {
        f(*static_cast<std::remove_cv_t<A>*>(argv[I])...);
    }
    static void invoke(void (*f)(A...), void** argv) { call(f, argv, std::index_sequence_for<A...>{}); }
    static const char* signature() { static const char s[] = {wt_emu_kind<A>()..., '\0'}; return s; }
};
template <typename... A> void wt_emu_invoke(void (*f)(A...), void** argv) { WtEmu<A...>::invoke(f, argv); }
template <typename... A> const char* wt_emu_signature(void (*f)(A...)) { return WtEmu<A...>::signature(); }
"""

_POINTER_KINDS = {np.dtype(np.float32): "f", np.dtype(np.float64): "d", np.dtype(np.int64): "l"}


class _EmulatedFunction:
    def __init__(self, lib, index, name):
        self.name = name
        self._call = getattr(lib, f"wt_emu_call_{index}")
        self._call.argtypes = [ctypes.c_void_p]
        self._call.restype = None
        sig = getattr(lib, f"wt_emu_sig_{index}")
        sig.restype = ctypes.c_char_p
        self.signature = sig().decode()
        self.launches = 0

    def __call__(self, grid, block, args):
        assert isinstance(grid, tuple) and isinstance(block, tuple), (grid, block)
        assert all(isinstance(g, int) and 1 <= g <= 2**31 - 1 for g in grid), grid
        assert all(isinstance(b, int) and 1 <= b <= 1024 for b in block), block
        assert len(args) == len(self.signature), f"{self.name}: {len(args)} args for {self.signature!r}"
        keep = []
        for position, (arg, kind) in enumerate(zip(args, self.signature)):
            if isinstance(arg, np.ndarray):
                assert arg.flags.c_contiguous, f"{self.name} arg {position}: not contiguous"
                got, value = _POINTER_KINDS.get(arg.dtype, "?"), ctypes.c_void_p(arg.ctypes.data)
            elif isinstance(arg, np.int64):
                got, value = "q", ctypes.c_longlong(int(arg))
            elif isinstance(arg, np.int32):
                got, value = "i", ctypes.c_int(int(arg))
            else:  # CuPy would guess a C type for a Python scalar; the engine must not rely on that
                got, value = f"python {type(arg).__name__}", None
            assert got == kind, f"{self.name} arg {position}: passed {got}, kernel expects {kind}"
            keep.append(value)
        argv = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(v) for v in keep])
        self._call(argv)
        self.launches += 1


class _EmulatedRawModule:
    """Compiles the NVRTC translation unit with g++ behind the launch shim."""

    cache: dict = {}

    def __init__(self, code, options=(), name_expressions=()):
        assert "-std=c++17" in options
        externs = re.findall(r'extern "C" __global__ void (\w+)\(', code)
        self.names = list(name_expressions) + externs
        wrappers = [_EMULATION_WRAPPERS]
        for i, name in enumerate(self.names):
            wrappers.append(f'extern "C" void wt_emu_call_{i}(void** argv) {{ wt_emu_invoke(&{name}, argv); }}')
            wrappers.append(f'extern "C" const char* wt_emu_sig_{i}() {{ return wt_emu_signature(&{name}); }}')
        unit = _EMULATION_PRELUDE + code + "\n".join(wrappers) + "\n"
        key = hashlib.sha256(unit.encode()).hexdigest()[:24]
        if key not in self.cache:
            self.cache[key] = self._build(unit, key)
        self.lib = self.cache[key]
        self.functions = {}

    @staticmethod
    def _build(unit, key):
        directory = host_engine._cache_dir() / "emulated-cupy"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"emu_{key}.so"
        if not target.exists():
            src = directory / f"emu_{key}.cpp"
            src.write_text(unit)
            # The host build's flags, so both builds round identically (compared bitwise below).
            cmd = [host_engine._compiler(), *host_engine._CXX_FLAGS, str(src), "-o", str(target) + ".tmp"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-4000:]
            Path(str(target) + ".tmp").replace(target)
        return ctypes.CDLL(str(target))

    def get_function(self, name):
        assert name in self.names, f"{name!r} is neither a name expression nor an extern \"C\" kernel"
        if name not in self.functions:
            self.functions[name] = _EmulatedFunction(self.lib, self.names.index(name), name)
        return self.functions[name]


def _emulated_cupy():
    fake = types.ModuleType("cupy")
    fake.int64, fake.float64, fake.float32 = np.int64, np.float64, np.float32
    fake.empty, fake.empty_like, fake.sort = np.empty, np.empty_like, np.sort
    fake.asarray, fake.ascontiguousarray = np.asarray, np.ascontiguousarray
    fake.RawModule = _EmulatedRawModule
    fake.cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0))
    return fake


@pytest.fixture
def emulated_cupy(host, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _emulated_cupy())
    monkeypatch.setattr(cupy_engine, "_MODULES", {})
    return cupy_engine


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("kernel", [get_kernel("tri"), get_kernel("sqrt_tri"), USER_KERNEL],
                         ids=["tri", "sqrt_tri", "user_smoothstep"])
def test_cupy_engine_logic_on_emulated_cupy_matches_reference(emulated_cupy, kernel, dtype):
    for d, padding in itertools.product((1, 2, 3), PADDINGS):
        x, eps, g = _case(d, dtype, "emulated", kernel.name, padding)
        _compare_engines(emulated_cupy, x, eps, g, kernel, padding, dtype)
        # The emulated GPU path and the host driver run the same arithmetic in the same order.
        for (what, a), b in zip(_all_results(emulated_cupy, x, eps, g, kernel, padding).items(),
                                _all_results(host_engine, x, eps, g, kernel, padding).values()):
            assert a.tobytes() == b.tobytes(), f"{what}: emulated GPU path != host build"


def test_cupy_engine_sample_on_another_grid_on_emulated_cupy(emulated_cupy):
    """The GPU launch logic with input and output grids of different sizes (keys, bounds, decode)."""
    for d, padding in itertools.product((1, 2, 3), PADDINGS):
        x, coords, g = _sample_case(d, np.float64, "emulated", padding)
        kernel = get_kernel("hann")
        want = _sample_results(reference, x, coords, g, kernel, padding)
        for what, got in _sample_results(emulated_cupy, x, coords, g, kernel, padding).items():
            _assert_close(got, want[what], np.float64, f"emulated GPU {what}, {padding}")


def test_cupy_engine_batch_groups_chunks_and_atomic_path_on_emulated_cupy(emulated_cupy, monkeypatch):
    kernel = get_kernel("cos")
    x, eps, g = _case(2, np.float64, "groups")
    want = reference.warp_backward(x, eps, g, kernel, "periodic")[0]
    # Force one batch per key group and one channel per thread.
    monkeypatch.setattr(emulated_cupy, "_INT64_MAX", 2 * (20 + 1) * 20 * 4 - 1)
    monkeypatch.setattr(emulated_cupy, "_TARGET_THREADS", 10**9)
    grouped = emulated_cupy.warp_backward(x, eps, g, kernel, "periodic", need_eps=False)[0]
    _assert_close(grouped, want, np.float64, "grouped scatter")
    atomic = emulated_cupy.warp_backward(x, eps, g, kernel, "periodic", need_eps=False, deterministic=False)[0]
    _assert_close(atomic, want, np.float64, "atomic scatter")
    _assert_close(emulated_cupy.unwarp(g, eps, kernel, "periodic", deterministic=False), want, np.float64,
                  "atomic unwarp")


def test_cupy_engine_without_cupy_names_the_gpu_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(ImportError, match=r"warptheory\[gpu\]"):
        cupy_engine.warp(np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), get_kernel("tri"), "zeros")


# ----- the real CuPy engine (needs a GPU) ------------------------------------------------


@pytest.fixture(scope="module")
def cupy():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'warptheory[gpu]')")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: the error type varies
        pytest.skip(f"no usable CUDA device: {exc}")
    if count < 1:
        pytest.skip("CuPy found no CUDA device")
    return cp


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("d", (1, 2, 3))
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_gpu_cupy_engine_matches_reference(cupy, kernel, d, padding, dtype):
    x, eps, g = _case(d, dtype, "gpu", kernel.name, padding)
    xd, epsd, gd = cupy.asarray(x), cupy.asarray(eps), cupy.asarray(g)
    got = _through_dispatch(cupy_engine, _all_results(cupy_engine, xd, epsd, gd, kernel, padding), xd, epsd, gd, kernel, padding)
    want = _all_results(reference, x, eps, g, kernel, padding)
    for what in want:
        # Device code may contract a*b+c into FMAs and uses CUDA's libm (cos/sin within
        # 2 ulp): still a few float64 ulps per term, inside the same bound.
        _assert_close(cupy.asnumpy(got[what]), want[what], dtype, f"GPU {what}, {kernel.name}, {padding}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_gpu_grad_x_bitwise_deterministic_and_atomic_path_close(cupy, dtype):
    kernel = get_kernel("tri")
    rng = _rng("gpu-determinism", np.dtype(dtype).name)
    x = cupy.asarray(rng.standard_normal((4, 8, 64, 48)).astype(dtype))
    # Small offsets: many sources share each target, the case where atomics race.
    eps = cupy.asarray(rng.uniform(-0.7, 0.7, (4, 2, 64, 48)).astype(dtype))
    g = cupy.asarray(rng.standard_normal(x.shape).astype(dtype))
    first = cupy.asnumpy(cupy_engine.warp_backward(x, eps, g, kernel, "border", need_eps=False)[0])
    for _ in range(5):
        again = cupy.asnumpy(cupy_engine.warp_backward(x, eps, g, kernel, "border", need_eps=False)[0])
        assert again.tobytes() == first.tobytes()
    atomic = cupy.asnumpy(cupy_engine.warp_backward(x, eps, g, kernel, "border", need_eps=False,
                                                    deterministic=False)[0])
    # Atomics add rounded terms in the dtype in a racing order: each sum of at most
    # (1 + 2 * 0.7)^2 * 4 < 32 terms may differ by ~32 eps of its scale.
    scale = float(np.max(np.abs(first)))
    np.testing.assert_allclose(atomic, first, rtol=0, atol=32 * np.finfo(dtype).eps * scale)


@pytest.mark.gpu
def test_gpu_nonfinite_offsets(cupy):
    kernel = get_kernel("tri")
    x, eps, g = _case(2, np.float32, "gpu-nonfinite")
    eps[0, 0, 1, 2], eps[1, 1, 4, 0], eps[1, 0, 0, 3] = np.nan, np.inf, -np.inf
    got = _all_results(cupy_engine, cupy.asarray(x), cupy.asarray(eps), cupy.asarray(g), kernel, "zeros")
    want = _all_results(reference, x, eps, g, kernel, "zeros")
    for what in want:
        _assert_close(cupy.asnumpy(got[what]), want[what], np.float32, f"GPU {what}")
