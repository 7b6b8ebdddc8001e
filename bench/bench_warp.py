"""Benchmark of the Numba warp engine against torch grid_sample, scipy and a memory floor.

Run:  python bench/bench_warp.py [--repeats 21] [--threads T]

Case: 2-D, B=8, N=16, 128×128, float32, bilinear ("tri"), zeros padding, offsets ~ N(0, 2²) px.
Not part of CI: it prints a table and ratios; bench/RESULTS.md records what was measured.

* ours fwd        : warptheory.warp (Numba backend)
* ours fwd+bwd    : warp + warp_backward (both gradients)
* torch fwd       : grid_sample(bilinear, align_corners=True, padding_mode="zeros"), same threads
* torch fwd+bwd   : forward + autograd backward for input and grid
* scipy fwd       : ndimage.map_coordinates(order=1, mode="grid-constant") looped over B·N (1 thread)
* memory floor    : a copy of as many bytes as the forward must move (read x, eps; write y), by
                    numpy on one thread and by a numba prange loop on the benchmark's threads;
                    the goal ratio is against the latter (same threads as ours)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="numba/torch threads (default: numba's)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)

    import numba

    from warptheory.warping import warp, warp_backward

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    B, N, H, W = args.batch, args.channels, args.size, args.size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, N, H, W)).astype(np.float32)
    eps = (2.0 * rng.normal(size=(B, 2, H, W))).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)

    rows = []
    t_fwd = timeit(lambda: warp(x, eps), args.repeats)
    rows.append(("ours fwd", t_fwd))

    def ours_fwd_bwd():
        warp(x, eps)
        warp_backward(x, eps, g)

    t_fb = timeit(ours_fwd_bwd, args.repeats)
    rows.append(("ours fwd+bwd", t_fb))
    rows.append(("ours bwd grad_x only", timeit(lambda: warp_backward(x, eps, g, need_eps=False), args.repeats)))
    rows.append(("ours bwd grad_eps only", timeit(lambda: warp_backward(x, eps, g, need_x=False), args.repeats)))

    t_torch = t_torch_fb = None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)
        gt = torch.from_numpy(g)
        # pixel position p along an axis of size S -> normalised 2p/(S-1) - 1 (align_corners=True);
        # torch's grid[..., 0] is the width (last) axis.
        rows_i, cols_i = np.indices((H, W), dtype=np.float32)
        gx = 2 * (cols_i + eps[:, 1]) / (W - 1) - 1
        gy = 2 * (rows_i + eps[:, 0]) / (H - 1) - 1
        grid = torch.from_numpy(np.stack([gx, gy], axis=-1))
        with torch.no_grad():
            t_torch = timeit(
                lambda: torch.nn.functional.grid_sample(xt, grid, "bilinear", "zeros", align_corners=True),
                args.repeats,
            )
        rows.append(("torch fwd", t_torch))
        xr = xt.clone().requires_grad_(True)
        gr = grid.clone().requires_grad_(True)

        def torch_fb():
            xr.grad = None
            gr.grad = None
            y = torch.nn.functional.grid_sample(xr, gr, "bilinear", "zeros", align_corners=True)
            y.backward(gt)

        t_torch_fb = timeit(torch_fb, args.repeats)
        rows.append(("torch fwd+bwd", t_torch_fb))

    from scipy import ndimage

    coords = np.indices((H, W), dtype=np.float64)[None] + eps.astype(np.float64)

    def scipy_fwd():
        out = np.empty_like(x)
        for b in range(B):
            for n in range(N):
                ndimage.map_coordinates(x[b, n], coords[b], output=out[b, n], order=1, mode="grid-constant")
        return out

    t_scipy = timeit(scipy_fwd, max(3, args.repeats // 5), warmup=1)
    rows.append(("scipy fwd (1 thread)", t_scipy))

    moved = (2 * x.nbytes + eps.nbytes) // 2  # a copy of M bytes reads M and writes M
    src = np.ones(moved // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t_floor_one = timeit(lambda: np.copyto(dst, src), args.repeats)
    rows.append(("memory floor (numpy, 1 thr)", t_floor_one))

    @numba.njit(parallel=True)
    def parallel_copy(dst, src, chunks):
        step = -(-src.size // chunks)
        for chunk in numba.prange(chunks):
            dst[chunk * step:(chunk + 1) * step] = src[chunk * step:(chunk + 1) * step]

    t_floor = timeit(lambda: parallel_copy(dst, src, 4 * threads), args.repeats)
    rows.append((f"memory floor (numba, {threads} thr)", t_floor))

    print(f"warp benchmark: B={B} N={N} {H}x{W} float32 tri zeros, threads={threads}, "
          f"{platform.processor() or platform.machine()}, cpus={os.cpu_count()}, "
          f"python {sys.version.split()[0]}, numba {numba.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} (other processes share the cores)"
          + (f", torch {torch.__version__}" if torch is not None else ""))
    print(f"forward moves {(2 * x.nbytes + eps.nbytes) / 1e6:.1f} MB (read x, eps; write y)")
    print(f"{'case':28s} {'median ms':>10s} {'min ms':>8s}")
    for name, (median, best) in rows:
        print(f"{name:28s} {median * 1e3:10.2f} {best * 1e3:8.2f}")
    print()
    print("ratios of medians [of minima] (>1 means ours is faster):")

    def ratio(a, b):
        return f"{a[0] / b[0]:6.2f} [{a[1] / b[1]:5.2f}]"

    if t_torch is not None:
        print(f"  torch fwd / ours fwd          {ratio(t_torch, t_fwd)}   (goal >= 1.5)")
        print(f"  torch fwd+bwd / ours fwd+bwd  {ratio(t_torch_fb, t_fb)}   (goal >= 1.5)")
    print(f"  scipy fwd / ours fwd          {ratio(t_scipy, t_fwd)}")
    print(f"  ours fwd / memory floor       {ratio(t_fwd, t_floor)}   (goal <= 3; same threads)")
    print(f"  ours fwd / 1-thread floor     {ratio(t_fwd, t_floor_one)}")


if __name__ == "__main__":
    main()
