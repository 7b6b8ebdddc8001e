"""Benchmark of the Numba warp engine against torch grid_sample, scipy and a memory floor.

Run:  python bench/bench_warp.py [--repeats 21] [--threads 2] [--quick]

Not part of CI: it prints a table and ratios; bench/RESULTS.md records what was measured.

Cases (offsets ~ N(0, σ²) px, "tri" = bilinear, zeros padding unless named):

* main    : 2-D, B=8, N=16, 128×128, float32, σ = 0.7 and σ = 2 (the goal rows)
* rows    : 1-D (B=8, N=16, 16384), 3-D (B=4, N=16, 32³), float64, N=3, cos — each with the
            same number of positions per call as the main case

Columns per case (medians over ``--repeats`` rounds [minima], ms; each round calls every column once,
in an order reversed every other round, and the ratios are medians of the per-round ratios):

* fwd          : ``warptheory.warp`` (Numba backend)
* fwd+bwd      : ``warp`` then ``warp_backward`` (both gradients): two calls, taps twice
* plan fwd+bwd : ``warp_plan(eps)``, ``plan.warp(x)``, ``plan.backward(x, g)`` (taps once; plan
                 creation included); absent when the package has no ``warp_plan``
* torch fwd    : ``grid_sample(bilinear, align_corners=True)``, same threads, grid precomputed
* torch f+b    : forward + autograd backward for input and grid
  (1-D runs as a 2-D grid_sample of height 1; torch has no ``cos``, so its row compares our
  ``cos`` with torch's bilinear)

For the main σ = 2 case also: scipy ``map_coordinates(order=1)`` looped over B·N (1 thread) and a
memory floor (a copy of as many bytes as the forward moves, on the benchmark's threads).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np


def timeit(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def cases():
    """(name, B, N, spatial, dtype, kernel, sigma)."""
    return [
        ("2-D f32 tri σ=0.7 (goal)", 8, 16, (128, 128), np.float32, "tri", 0.7),
        ("2-D f32 tri σ=2 (goal)", 8, 16, (128, 128), np.float32, "tri", 2.0),
        ("1-D f32 tri σ=0.7", 8, 16, (16384,), np.float32, "tri", 0.7),
        ("3-D f32 tri σ=0.7", 4, 16, (32, 32, 32), np.float32, "tri", 0.7),
        ("2-D f64 tri σ=0.7", 8, 16, (128, 128), np.float64, "tri", 0.7),
        ("2-D f32 tri σ=0.7 N=3", 8, 3, (128, 128), np.float32, "tri", 0.7),
        ("2-D f32 cos σ=0.7", 8, 16, (128, 128), np.float32, "cos", 0.7),
    ]


def torch_grid(torch, eps):
    """Pixel offsets (B, d, *S) -> an align_corners=True grid_sample grid (1-D as height 1)."""
    spatial = eps.shape[2:]
    positions = np.indices(spatial, dtype=eps.dtype)[None] + eps
    if len(spatial) == 1:
        width = spatial[0]
        gx = 2 * positions[:, 0] / (width - 1) - 1
        grid = np.stack([gx, np.zeros_like(gx)], axis=-1)[:, None]  # (B, 1, W, 2)
    else:
        normalised = [2 * positions[:, k] / (spatial[k] - 1) - 1 for k in range(len(spatial))]
        grid = np.stack(normalised[::-1], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(grid))


def problem(case):
    """x, eps, grad_y of ``case`` (seeded) and its kernel name."""
    _, B, N, spatial, dtype, kernel, sigma = case
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, N, *spatial)).astype(dtype)
    eps = (sigma * rng.normal(size=(B, len(spatial), *spatial))).astype(dtype)
    g = rng.normal(size=x.shape).astype(dtype)
    return x, eps, g, kernel


def cpu_model():
    """The CPU's model as Linux names it (``/proc/cpuinfo``: name, family and model numbers, and
    whether it has AVX-512), else ``platform.machine()``.  The ratios here depend on it: the
    channel-last paths' eight-lane float64 vectors are one instruction with AVX-512 and four on a
    CPU with 128-bit units (bench/RESULTS.md, thirteenth pass)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return platform.machine()
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = fields.get("flags", "").split()
    avx512 = (", AVX-512" if "avx512f" in flags else ", no AVX-512") if flags else ""
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')} "
            f"model {fields.get('model', '?')}{avx512})")


def rounds_parser(description, rounds):
    """The ``--rounds`` / ``--threads`` parser of the interleaved benchmarks; ``check(args)`` after parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=2)

    def check(args):
        if args.rounds < 1 or args.threads < 1:
            parser.error("--rounds and --threads must be at least 1")
        return args

    return parser, check


def measure(case, repeats, torch, wt):
    """Per-round times (s) of each column of ``case``: every round calls each once, the order reversed
    every other round (in bench_baseline.py's fixed order the engine timed second ran up to 13 % faster
    with the same code; bench/RESULTS.md, twelfth pass)."""
    x, eps, g, kernel = problem(case)
    calls = {"fwd": lambda: wt.warp(x, eps, kernel)}

    def two_calls():
        wt.warp(x, eps, kernel)
        wt.warp_backward(x, eps, g, kernel)

    calls["fwd+bwd"] = two_calls
    if hasattr(wt, "warp_plan"):
        def one_plan():
            plan = wt.warp_plan(eps, kernel)
            plan.warp(x)
            plan.backward(x, g)

        calls["plan fwd+bwd"] = one_plan
    if torch is not None:
        calls["torch fwd"], calls["torch f+b"] = torch_calls(torch, x, eps, g)
    for f in calls.values():
        for _ in range(3):
            f()
    samples = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
    return x, eps, samples


def torch_calls(torch, x, eps, g):
    """The peer's forward (no autograd) and forward + backward for input and grid: bilinear
    ``grid_sample``, align_corners=True, zeros padding, the grid precomputed (1-D as height 1)."""
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    grid = torch_grid(torch, eps)
    if eps.ndim == 3:
        xt, gt = xt[:, :, None], gt[:, :, None]
    fn = torch.nn.functional.grid_sample
    xr, gr = xt.clone().requires_grad_(True), grid.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            fn(xt, grid, "bilinear", "zeros", align_corners=True)

    def forward_backward():
        xr.grad = gr.grad = None
        fn(xr, gr, "bilinear", "zeros", align_corners=True).backward(gt)

    return forward, forward_backward


def floors(x, eps, repeats, threads):
    import numba
    from scipy import ndimage

    B, N, H, W = x.shape
    coords = np.indices((H, W), dtype=np.float64)[None] + eps.astype(np.float64)

    def scipy_fwd():
        out = np.empty_like(x)
        for b in range(B):
            for n in range(N):
                ndimage.map_coordinates(x[b, n], coords[b], output=out[b, n], order=1, mode="grid-constant")

    moved = (2 * x.nbytes + eps.nbytes) // 2  # a copy of M bytes reads M and writes M
    src = np.ones(moved // 4, dtype=np.float32)
    dst = np.empty_like(src)

    @numba.njit(parallel=True)
    def parallel_copy(dst, src, chunks):
        step = -(-src.size // chunks)
        for chunk in numba.prange(chunks):
            dst[chunk * step:(chunk + 1) * step] = src[chunk * step:(chunk + 1) * step]

    return {
        "scipy fwd (1 thread)": timeit(scipy_fwd, max(3, repeats // 5), warmup=1),
        f"memory floor (numba, {threads} thr)": timeit(lambda: parallel_copy(dst, src, 4 * threads), repeats),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2, help="numba/torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="the two goal rows only")
    args = parser.parse_args(argv)

    import numba

    import warptheory as wt

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    threads = numba.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None

    print(f"warp benchmark: threads={threads}, {cpu_model()}, "
          f"cpus={os.cpu_count()}, python {sys.version.split()[0]}, numba {numba.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else "")
          + f", load average {os.getloadavg()[0]:.1f} at start (other processes share the cores)")
    columns = ["fwd", "fwd+bwd", "plan fwd+bwd", "torch fwd", "torch f+b"]
    print(f"{'case':26s}" + "".join(f"{c:>16s}" for c in columns)
          + f"{'fwd ×torch':>12s}{'f+b ×torch':>12s}{'plan ×torch':>12s}{'plan/2calls':>12s}")
    main_case = None
    for case in cases()[: 2 if args.quick else None]:
        x, eps, out = measure(case, args.repeats, torch, wt)
        if case[0].startswith("2-D f32 tri σ=2"):
            main_case = (x, eps)
        cells = "".join(
            f"{statistics.median(out[c]) * 1e3:8.2f} [{min(out[c]) * 1e3:5.2f}]" if c in out else f"{'—':>16s}"
            for c in columns
        )

        def ratio(a, b):
            if a not in out or b not in out:
                return f"{'—':>12s}"
            per_round = statistics.median(u / v for u, v in zip(out[a], out[b]))
            return f"{per_round:5.2f} [{min(out[a]) / min(out[b]):4.2f}]"

        print(f"{case[0]:26s}{cells}{ratio('torch fwd', 'fwd')}{ratio('torch f+b', 'fwd+bwd')}"
              f"{ratio('torch f+b', 'plan fwd+bwd')}{ratio('plan fwd+bwd', 'fwd+bwd')}")
    print("ms: median [minimum] over the rounds; ratios: median of the per-round ratios [ratio of minima], > 1 means ours "
          "is faster (plan/2calls < 1: the plan is faster)")
    if main_case is not None:
        rest = floors(*main_case, args.repeats, threads)
        print("2-D f32 tri σ=2:", ", ".join(f"{k} {v[0] * 1e3:.2f} [{v[1] * 1e3:.2f}] ms" for k, v in rest.items()))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
