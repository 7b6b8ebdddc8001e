"""GPU benchmark of the CuPy warp engine against torch CUDA grid_sample and the device copy bandwidth.

Run (on a machine with CuPy and a CUDA device; torch with CUDA is optional):

    python bench/bench_gpu.py [--repeats 50] [--check]

Cases (float32, "tri" = bilinear, zeros padding, offsets ~ N(0, 2²) px):
  small: 2-D, B=8,  N=16, 128×128   (the CPU benchmark's case, bench/bench_warp.py)
  large: 2-D, B=32, N=64, 256×256

Rows:
* ours fwd            : warptheory.engines.cuda.launch.warp
* ours fwd+bwd        : warp + warp_backward (grad_x by the deterministic sorted scatter, and grad_eps)
* ours fwd+bwd atomic : the same with deterministic=False (floating-point atomics for grad_x)
* torch fwd / fwd+bwd : torch.nn.functional.grid_sample(bilinear, align_corners=True, zeros) on CUDA,
                        grid precomputed from eps (not timed; favours torch), autograd for input and grid
* copy                : a device-to-device copy of 1 GiB; "% copy bw" = minimal bytes moved / time / copy bw

Minimal bytes: forward reads x and eps and writes y; forward+backward adds reading x, eps and grad_y and
writing grad_x and grad_eps.  Times are medians of CUDA-event intervals on the default stream.
Not part of CI; results go in bench/RESULTS_GPU.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys

import numpy as np

CASES = {"small": (8, 16, 128, 128), "large": (32, 64, 256, 256)}


def _gpu_or_exit():
    try:
        import cupy
    except ImportError:
        print("bench_gpu: CuPy is not installed (pip install 'warptheory[gpu]'); nothing to measure.")
        sys.exit(0)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # driver missing: the exception type varies
        print(f"bench_gpu: no usable CUDA device ({exc}); nothing to measure.")
        sys.exit(0)
    if count < 1:
        print("bench_gpu: CuPy sees no CUDA device; nothing to measure.")
        sys.exit(0)
    return cupy


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def time_gpu(cupy, fn, repeats, warmup=5):
    """Median milliseconds of ``fn`` between CUDA events on the default stream."""
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    samples = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(samples)


def copy_bandwidth(cupy, repeats):
    """Bytes per second of a device-to-device copy (1 GiB read + 1 GiB written)."""
    n = 1 << 28  # float32 elements: 1 GiB
    src = cupy.ones(n, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    ms = time_gpu(cupy, lambda: cupy.copyto(dst, src), repeats)
    del src, dst
    return 2 * n * 4 / (ms * 1e-3)


def run_case(cupy, torch, name, shape, repeats, bandwidth, check):
    from warptheory.engines.cuda import launch as engine
    from warptheory.kernels import get_kernel

    kernel = get_kernel("tri")
    B, N, H, W = shape
    rng = np.random.default_rng(0)
    x_h = rng.normal(size=(B, N, H, W)).astype(np.float32)
    eps_h = (2.0 * rng.normal(size=(B, 2, H, W))).astype(np.float32)
    g_h = rng.normal(size=x_h.shape).astype(np.float32)
    x, eps, g = (cupy.asarray(a) for a in (x_h, eps_h, g_h))
    item = 4
    fwd_bytes = (2 * x.size + eps.size) * item
    bwd_bytes = (3 * x.size + 2 * eps.size) * item  # read x, grad_y, eps; write grad_x, grad_eps
    rows = []

    def add(label, ms, nbytes):
        rows.append((label, ms, nbytes / (ms * 1e-3) / 1e9, 100 * nbytes / (ms * 1e-3) / bandwidth))

    add("ours fwd", time_gpu(cupy, lambda: engine.warp(x, eps, kernel, "zeros"), repeats), fwd_bytes)

    def ours_fwd_bwd(deterministic=True):
        engine.warp(x, eps, kernel, "zeros")
        engine.warp_backward(x, eps, g, kernel, "zeros", deterministic=deterministic)

    add("ours fwd+bwd", time_gpu(cupy, ours_fwd_bwd, repeats), fwd_bytes + bwd_bytes)
    add("ours fwd+bwd atomic", time_gpu(cupy, lambda: ours_fwd_bwd(False), repeats), fwd_bytes + bwd_bytes)

    if torch is not None:
        import torch.nn.functional as F

        xt = torch.as_tensor(x_h, device="cuda")
        gt = torch.as_tensor(g_h, device="cuda")
        # grid[..., 0] is the width (last-axis) coordinate, normalised with align_corners=True.
        rows_, cols_ = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        grid_h = np.stack([2 * (cols_ + eps_h[:, 1]) / (W - 1) - 1, 2 * (rows_ + eps_h[:, 0]) / (H - 1) - 1], -1)
        grid = torch.as_tensor(grid_h.astype(np.float32), device="cuda")

        def torch_fwd():
            return F.grid_sample(xt, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

        xr = xt.clone().requires_grad_(True)
        gr = grid.clone().requires_grad_(True)

        def torch_fwd_bwd():
            y = F.grid_sample(xr, gr, mode="bilinear", padding_mode="zeros", align_corners=True)
            torch.autograd.grad(y, (xr, gr), gt)

        with torch.no_grad():
            add("torch fwd", time_gpu(cupy, torch_fwd, repeats), fwd_bytes)
        add("torch fwd+bwd", time_gpu(cupy, torch_fwd_bwd, repeats), fwd_bytes + bwd_bytes)
        if check:
            with torch.no_grad():
                diff = np.max(np.abs(torch_fwd().cpu().numpy() - cupy.asnumpy(engine.warp(x, eps, kernel, "zeros"))))
            print(f"  [{name}] max |ours - torch| forward = {diff:.3g}")

    print(f"\n{name}: 2-D, B={B}, N={N}, {H}x{W}, float32, tri, zeros")
    print(f"  {'':22s} {'ms':>9s} {'GB/s':>8s} {'% copy bw':>10s}")
    for label, ms, gbs, pct in rows:
        print(f"  {label:22s} {ms:9.3f} {gbs:8.1f} {pct:9.1f}%")
    times = {label: ms for label, ms, _, _ in rows}
    if torch is not None:
        print(f"  torch/ours fwd = {times['torch fwd'] / times['ours fwd']:.2f}x, "
              f"torch/ours fwd+bwd = {times['torch fwd+bwd'] / times['ours fwd+bwd']:.2f}x "
              f"(atomic: {times['torch fwd+bwd'] / times['ours fwd+bwd atomic']:.2f}x)")
    else:
        print("  torch with CUDA not available: no torch rows")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["small", "large"])
    parser.add_argument("--check", action="store_true", help="print max |ours - torch| of the forward")
    args = parser.parse_args(argv)
    cupy = _gpu_or_exit()
    torch = _torch_cuda()
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    bandwidth = copy_bandwidth(cupy, max(10, args.repeats // 5))
    print(f"device: {props['name'].decode()}, CuPy {cupy.__version__}, "
          f"torch {torch.__version__ if torch else 'n/a'}, Python {platform.python_version()}")
    print(f"measured device copy bandwidth: {bandwidth / 1e9:.0f} GB/s (read + write)")
    for name in args.cases:
        run_case(cupy, torch, name, CASES[name], args.repeats, bandwidth, args.check)


if __name__ == "__main__":
    main()
