"""Φ_{a,b}(σ) and Φ'_{a,b}(σ) for the built-in kernels (eqs 6, 23, 24), with the σ → ∞ limits marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def figure_phi_curves(outdir) -> list[Path]:
    import matplotlib.pyplot as plt

    import warptheory as wt
    from warptheory.phifunctions import phi_table

    sigma = np.logspace(-3, 1, 400)
    panels = [("phi11", 1, 1, False), ("phi12", 1, 2, False), ("phi21", 2, 1, False),
              ("dphi11", 1, 1, True), ("dphi12", 1, 2, True), ("dphi21", 2, 1, True)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True)
    colors = dict(zip(wt.BUILTIN_KERNELS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, (label, a, b, derivative) in zip(axes.ravel(), panels):
        for name in wt.BUILTIN_KERNELS:
            table = phi_table(name, a, b, derivative)
            if table.mode in ("inf", "nan"):
                ax.plot([], [], color=colors[name], label=f"{name}: {'∞' if table.mode == 'inf' else 'undefined'}")
                continue
            values = wt.phi_ab(name, sigma, a, b, derivative)
            ax.plot(sigma, values, color=colors[name], label=name)
            ax.axhline(table.limit_infinity, color=colors[name], ls=":", lw=0.9)
        prime = "'" if derivative else ""
        ax.set_title(f"Φ{prime}$_{{{a},{b}}}(σ)$  (dotted: σ → ∞ limit)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("σ (offset standard deviation, pixels)")
    axes[0, 0].legend(fontsize=8)
    axes[1, 2].legend(fontsize=8)
    fig.suptitle("Eq 6 for the built-in kernels: tri reproduces eq 23, cos eq 24 (Φ21 = 1, Φ'21 = π²/4)")
    fig.tight_layout()
    path = Path(outdir) / "phi_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
