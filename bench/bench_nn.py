"""Benchmark of the PyTorch layer (warptheory.nn) against the raw engine and torch peers, and §5's cost claims.

Run:  python bench/bench_nn.py [--repeats 11] [--threads T] [--steps 5] [--batch 32] [--skip-resnet]

Not part of CI: it prints tables and ratios; bench/RESULTS.md records what was measured.
Every comparison is interleaved (A, B, A, B, ...) so that other processes on the machine
slow both sides alike; medians and minima are printed.

1. Layer overhead: ``warptheory.nn.functional.warp`` forward + backward (autograd, both
   gradients) against the raw engine calls on numpy arrays, ``warp`` + ``warp_backward`` and
   the plan the layer uses (``warp_plan(eps)``, ``.warp``, ``.backward``);
   bench_warp.py's case (2-D, B=8, N=16, 128x128, float32, tri, zeros, ε ~ N(0, 2²) px).
   Goal: layer / raw <= 1.2.
2. Deformable convolution, forward + backward of input, offset, weight (and mask):
   ``warptheory.nn.functional.deform_conv2d`` against the grid_sample-based deformable
   convolution people write when torchvision's operators are unavailable (one
   ``grid_sample`` over all kernel points, then a 1x1 convolution; align_corners=False,
   zeros).  Goal: peer / ours >= 1.5.
3. §5 training cost: one SGD step (forward, cross-entropy, backward, momentum update) of a
   CIFAR ResNet-56 on a random 32x32 batch, plain against every convolution SelfWarp
   (3x3 ε conv, pre-ε BN, warped skip) and against every convolution deformable (DCN v1,
   offset conv 3x3).  Paper: about 2x and 6x.  Parameter counts printed alongside.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np


def interleaved(functions, repeats, warmup=2):
    """Median and minimum seconds of each function, timed in turn A, B, A, B, ..."""
    for fn in functions:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in functions]
    for _ in range(repeats):
        for fn, store in zip(functions, samples):
            start = time.perf_counter()
            fn()
            store.append(time.perf_counter() - start)
    return [(statistics.median(s), min(s)) for s in samples]


def ratio(a, b):
    return f"{a[0] / b[0]:6.2f} [{a[1] / b[1]:5.2f}]"


def show(rows):
    print(f"  {'case':44s} {'median ms':>10s} {'min ms':>9s}")
    for name, (median, best) in rows:
        print(f"  {name:44s} {median * 1e3:10.2f} {best * 1e3:9.2f}")


def bench_layer_overhead(torch, repeats, size=128, batch=8, channels=16):
    from warptheory.nn import functional as WF
    from warptheory.warping import warp, warp_backward, warp_plan

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, channels, size, size)).astype(np.float32)
    eps = (2.0 * rng.normal(size=(batch, 2, size, size))).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)

    def raw():
        warp(x, eps)
        warp_backward(x, eps, g)

    def raw_plan():
        plan = warp_plan(eps)
        plan.warp(x)
        plan.backward(x, g)

    xt = torch.from_numpy(x.copy()).requires_grad_()
    et = torch.from_numpy(eps.copy()).requires_grad_()
    gt = torch.from_numpy(g)

    def layer():
        xt.grad = et.grad = None
        WF.warp(xt, et).backward(gt)

    t_raw, t_plan, t_layer = interleaved([raw, raw_plan, layer], repeats)
    print(f"1. layer overhead: B={batch} N={channels} {size}x{size} float32 tri zeros, fwd + both gradients")
    show([("raw engine: warp + warp_backward (numpy)", t_raw), ("raw engine: warp_plan, .warp, .backward", t_plan),
          ("nn.functional.warp + autograd backward", t_layer)])
    print(f"  layer / raw functional                       {ratio(t_layer, t_raw)}   (goal <= 1.2)")
    print(f"  layer / raw plan (what the layer calls)      {ratio(t_layer, t_plan)}   (goal <= 1.2)")
    return t_layer[0] / t_raw[0]


def grid_sample_deform_conv2d(torch, input, offset, weight, bias, stride, padding, dilation, mask=None):
    """The usual deformable convolution without torchvision's operators: sample positions from the
    offsets, one grid_sample over all kernel points, modulation, then a 1x1 convolution."""
    F = torch.nn.functional
    batch, c_in, height, width = input.shape
    c_out, c_in_group, kh, kw = weight.shape
    k = kh * kw
    groups = offset.shape[1] // (2 * k)
    h_out, w_out = offset.shape[2:]
    point = torch.arange(k)
    rows = (torch.arange(h_out) * stride - padding).view(1, h_out, 1) + (point // kw * dilation).view(k, 1, 1)
    cols = (torch.arange(w_out) * stride - padding).view(1, 1, w_out) + (point % kw * dilation).view(k, 1, 1)
    off = offset.view(batch * groups, k, 2, h_out, w_out)
    p_row = off[:, :, 0] + rows.to(input.dtype)
    p_col = off[:, :, 1] + cols.to(input.dtype)
    grid = torch.stack([(2 * p_col + 1) / width - 1, (2 * p_row + 1) / height - 1], dim=-1)
    grid = grid.view(batch * groups, k * h_out, w_out, 2)
    sampled = F.grid_sample(input.view(batch * groups, c_in // groups, height, width), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    sampled = sampled.view(batch, groups, c_in // groups, k, h_out * w_out)
    if mask is not None:
        sampled = sampled * mask.view(batch, groups, 1, k, h_out * w_out)
    columns = sampled.reshape(batch, c_in * k, h_out, w_out)
    return F.conv2d(columns, weight.reshape(c_out, c_in_group * k, 1, 1), bias, groups=c_in // c_in_group)


def bench_deform(torch, repeats, cases):
    from warptheory.nn import functional as WF

    print("2. deformable convolution, fwd + backward (input, offset, weight, bias[, mask]), float32, 3x3, stride 1, pad 1")
    ratios = []
    for batch, c_in, c_out, size, modulated in cases:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, c_in, size, size, generator=gen).requires_grad_()
        offset = (1.5 * torch.randn(batch, 18, size, size, generator=gen)).requires_grad_()
        mask = torch.rand(batch, 9, size, size, generator=gen).requires_grad_() if modulated else None
        weight = (0.1 * torch.randn(c_out, c_in, 3, 3, generator=gen)).requires_grad_()
        bias = torch.zeros(c_out).requires_grad_()
        g = torch.randn(batch, c_out, size, size, generator=gen)
        leaves = [x, offset, weight, bias] + ([mask] if modulated else [])

        def run(fn):
            def step():
                for t in leaves:
                    t.grad = None
                fn(x, offset, weight, bias, 1, 1, 1, mask).backward(g)
            return step

        ours = run(lambda *a: WF.deform_conv2d(*a[:7], mask=a[7]))
        peer = run(lambda *a: grid_sample_deform_conv2d(torch, *a))
        t_ours, t_peer = interleaved([ours, peer], repeats)
        label = f"B={batch} {c_in}->{c_out} {size}x{size}{' v2 (mask)' if modulated else ''}"
        show([(f"ours   {label}", t_ours), (f"grid_sample {label}", t_peer)])
        print(f"  grid_sample / ours                           {ratio(t_peer, t_ours)}   (goal >= 1.5)")
        ratios.append(t_peer[0] / t_ours[0])
    return ratios


def bench_resnet(torch, repeats, steps, batch):
    from warptheory.nn.resnet import cifar_resnet, count_parameters

    configs = [
        ("plain", dict(layer="conv")),
        ("SelfWarp (pre-eps BN, warped skip)", dict(layer="selfwarp", pre_eps_norm=True)),
        ("deformable (DCN v1)", dict(layer="deform")),
    ]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (batch,), generator=gen)
    steppers = []
    counts = []
    for name, options in configs:
        torch.manual_seed(0)
        model = cifar_resnet(56, **options)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        counts.append(count_parameters(model))

        def step(model=model, optimiser=optimiser):
            for _ in range(steps):
                optimiser.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), labels).backward()
                optimiser.step()
        steppers.append(step)
    times = interleaved(steppers, repeats, warmup=1)
    print(f"3. §5 training cost: CIFAR ResNet-56, one SGD step on a random batch of {batch} 32x32 images "
          f"(median of {repeats} x {steps} steps, per step)")
    print(f"  {'network':44s} {'parameters':>10s} {'+%':>7s} {'ms/step':>9s} {'ratio':>13s}")
    base_t, base_p = times[0][0] / steps, counts[0]
    for (name, _), (median, best), count in zip(configs, times, counts):
        print(f"  {name:44s} {count:10d} {100 * (count - base_p) / base_p:7.2f} {median / steps * 1e3:9.1f} "
              f"{median / steps / base_t:6.2f} [{best / times[0][1]:5.2f}]")
    print("  paper (§5): SelfWarp +4.7 % parameters, ~2x training time; deformable +46.2 %, ~6x")
    return [t[0] / times[0][0] for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=None, help="numba and torch threads (default: numba's)")
    parser.add_argument("--steps", type=int, default=3, help="SGD steps per ResNet timing")
    parser.add_argument("--batch", type=int, default=32, help="ResNet batch size")
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args(argv)

    import numba
    import torch

    if args.threads:
        numba.set_num_threads(args.threads)
    threads = numba.get_num_threads()
    torch.set_num_threads(threads)
    print(f"warptheory.nn benchmark: threads={threads} (numba and torch), "
          f"{platform.processor() or platform.machine()}, cpus={os.cpu_count()}, python {sys.version.split()[0]}, "
          f"numba {numba.__version__}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} "
          "(other processes share the cores; timings interleaved)")
    bench_layer_overhead(torch, args.repeats)
    print()
    bench_deform(torch, args.repeats, [(8, 64, 64, 32, False), (8, 16, 16, 64, False), (8, 64, 64, 32, True)])
    if not args.skip_resnet:
        print()
        bench_resnet(torch, max(3, args.repeats // 3), args.steps, args.batch)


if __name__ == "__main__":
    main()
