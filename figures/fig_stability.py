"""Figures of §3.1 and §5: SelfWarp gains at initialisation (``paper_notes/s03_1_stability.md``).

* ``fig_stability_ratio.png`` — backward/forward of one block against σ_ε per kernel: exact theory (lines),
  the paper's reading (dashed), Monte-Carlo ± 2 SE (points).
* ``fig_stability_depth.png`` — gradient growth against depth for the plain-stack analogues of Table 1's
  eight configurations (product of per-block gains: lines; Monte-Carlo ± 2 SE: points), and the SelfWarp
  ResNet-56 of ``warptheory.nn`` per Table 1 row (mean-field product: lines; nn Monte-Carlo ± 2 SE: points).
"""
from __future__ import annotations

import pathlib

import numpy as np

KERNEL_SHAPE = dict(d=2, channels=16, k=3)
STACK_SHAPE = dict(kernel="tri", d=2, channels=4, k=3)
DEPTHS = (1, 2, 4, 8, 16, 32, 56)
RESNET56 = dict(stages=((16, 9), (32, 9), (64, 9)), size=16, batch=8)
RESNET_DEPTHS = (1, 3, 9, 10, 18, 19, 27)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _smoothstep():
    import sympy as sp

    from warptheory.kernels import T, kernel_from_sympy, on_support

    return kernel_from_sympy(on_support(1 - 3 * T ** 2 + 2 * sp.Abs(T) ** 3), name="smoothstep")


def figure_stability_ratio(outdir, sigmas_mc=(0.1, 0.3, 0.5, 1.0, 2.0), replicates=16, seed=0):
    """backward/forward of one SelfWarp block against σ_ε, per kernel (d = 2, N = 16, 3×3)."""
    from warptheory.stability import selfwarp_gain
    from warptheory.stability_montecarlo import selfwarp_gain_mc

    plt = _plt()
    outdir = pathlib.Path(outdir)
    grid = np.geomspace(0.03, 2.5, 40)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for color, kernel in zip(("C0", "C1", "C2", "C3"), ("tri", "cos", "hann", _smoothstep())):
        name = getattr(kernel, "name", kernel)
        exact = [selfwarp_gain(kernel, s, **KERNEL_SHAPE) for s in grid]
        paper = [selfwarp_gain(kernel, s, **KERNEL_SHAPE, form="paper") for s in grid]
        axes[0].plot(grid, [g.ratio for g in exact], color=color, label=f"{name} exact")
        axes[0].plot(grid, [g.ratio for g in paper], color=color, ls="--", lw=0.8)
        axes[1].plot(grid, [g.forward for g in exact], color=color, label=f"{name} forward")
        axes[1].plot(grid, [g.backward_direct for g in exact], color=color, ls=":", label=f"{name} direct path")
        mc = [selfwarp_gain_mc(kernel, s, **KERNEL_SHAPE, replicates=replicates, seed=seed + j)
              for j, s in enumerate(sigmas_mc)]
        axes[0].errorbar(sigmas_mc, [m.ratio for m in mc], yerr=[2 * m.se["ratio"] for m in mc], fmt="o",
                         color=color, ms=4, capsize=2)
        axes[1].errorbar(sigmas_mc, [m.forward for m in mc], yerr=[2 * m.se["forward"] for m in mc], fmt="o",
                         color=color, ms=4, capsize=2)
    axes[0].set(xscale="log", yscale="log", xlabel="σ_ε (pixels)", ylabel="backward / forward per block",
                title="ε path elevates the backward gain (dashed: eqs 5,7,8)")
    axes[0].axhline(1.0, color="k", lw=0.5)
    axes[0].legend(fontsize=8)
    axes[1].set(xscale="log", xlabel="σ_ε (pixels)", ylabel="gain", title="forward and direct-path gains")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("One SelfWarp block at initialisation, d = 2, N = 16, 3×3 ε-convolution (MC ± 2 SE)")
    fig.tight_layout()
    path = outdir / "fig_stability_ratio.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def table1_stack_configs():
    """Plain-stack analogues of Table 1: batch-norm γ sets σ_ε of the first block (fan-in ε-weights)."""
    from warptheory.stability import TABLE1

    return [dict(sigma_eps=gamma, pre_eps_norm=pre, detach=det, label=f"pre-ε BN {'yes' if pre else 'no'}, "
                 f"γ={gamma:g}, {'detached' if det else 'full'}: {result}")
            for pre, gamma, det, result in TABLE1]


def figure_stability_depth(outdir, replicates=16, seed=0):
    """Gradient growth against depth: plain stacks and the nn ResNet-56 (theory product and MC each)."""
    from concurrent.futures import ThreadPoolExecutor

    from warptheory.stability import TABLE1, resnet_gradient_growth, resnet_growth_at_depths, stack_gain
    from warptheory.stability_montecarlo import resnet_gradient_growth_mc, stack_gain_mc

    executor = ThreadPoolExecutor(max_workers=2)

    plt = _plt()
    outdir = pathlib.Path(outdir)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for j, cfg in enumerate(table1_stack_configs()):
        kw = dict(STACK_SHAPE, sigma_eps=cfg["sigma_eps"], pre_eps_norm=cfg["pre_eps_norm"], detach=cfg["detach"])
        theory = stack_gain(depths=range(1, DEPTHS[-1] + 1), **kw)
        mc = stack_gain_mc(depths=DEPTHS, replicates=replicates, seed=seed + j, **kw)
        color = f"C{j}"
        axes[0].plot(theory.depths, theory.grad, color=color, lw=1, label=cfg["label"])
        lo = np.maximum(mc.grad - 2 * mc.se["grad"], 1e-300)
        axes[0].errorbar(mc.depths, mc.grad, yerr=[mc.grad - lo, 2 * mc.se["grad"]], fmt="o", color=color, ms=4,
                         capsize=2)
    axes[0].set(xscale="log", yscale="log", xlabel="blocks L", ylabel="E‖∂L/∂x₀‖² / E‖∂L/∂x_L‖²",
                title=f"plain stacks (tri, d=2, N={STACK_SHAPE['channels']}, 3×3):\nproduct (lines), MC ± 2 SE (points)")
    axes[0].legend(fontsize=6)
    blocks = np.arange(1, 28)
    configs = [(False, 1.0, False, "zero", "ε-weights 0 (paper §5.2): every row")] + \
        [(pre, gamma, det, "fan_in", f"BN {'y' if pre else 'n'} γ={gamma:g} {'det' if det else 'full'} → {result}")
         for pre, gamma, det, result in TABLE1]
    for j, (pre, gamma, det, init, label) in enumerate(configs):
        cfg = dict(gamma=gamma, pre_eps_norm=pre, detach=det, eps_init=init)
        theory = resnet_growth_at_depths(resnet_gradient_growth(**cfg), blocks)
        color = "k" if init == "zero" else f"C{j - 1}"
        axes[1].plot(blocks, theory, color=color, lw=1, ls="--" if init == "zero" else "-", label=label)
        mc = resnet_gradient_growth_mc(depths=RESNET_DEPTHS, replicates=replicates // 2, seed=seed + 100 + j,
                                       executor=executor, **RESNET56, **cfg)
        lo = np.maximum(mc.grad - 2 * mc.se["grad"], mc.grad * 1e-3)
        axes[1].errorbar(mc.depths, mc.grad, yerr=[mc.grad - lo, 2 * mc.se["grad"]], fmt="o", color=color, ms=4,
                         capsize=2)
    axes[1].set(yscale="log", xlabel="residual blocks B (2 SelfWarps each)",
                ylabel="E(∂L/∂x₀)² / E(∂L/∂x_B)² per element",
                title="nn SelfWarp ResNet-56, fan-in ε-weights:\nmean field (lines), MC ± 2 SE (points)")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    path = outdir / "fig_stability_depth.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    executor.shutdown()
    return [path]
