"""Figures of the random-field and orthogonality checks (paper §4, supplementary §10–12).

Each function writes one PNG into ``outdir`` and returns the list of written paths.
``paper_notes/s04_continuous.md`` and ``paper_notes/s10_12_random_fields.md`` explain them.
"""
from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from warptheory import fields, orthogonality, psd  # noqa: E402
from warptheory.warping import unwarp, warp  # noqa: E402


def _out(outdir, name):
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    return out / name


def figure_psd(outdir, samples=4096, seed=0):
    """Eq 13: averaged periodograms against theory, continuous (left) and discretised (right) regime."""
    rng = np.random.default_rng(seed)
    L = 128
    labels, nb = psd.spectrum_bins((L,))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    # (i) continuous: smooth x evaluated exactly at v + ε_v.
    _, S = fields.mode_spectrum("gaussian", L, 6.0)
    rho = fields.periodic_correlation("gaussian", (L,), 8.0)
    eps = fields.lattice_field(fields.lattice_spectrum("gaussian", (L,), 8.0, 1.0), samples, rng)
    y = fields.evaluate_modes(fields.sample_modes(S, samples, rng), np.arange(L)[None, None] + eps[:, None], L)
    est = psd.bin_spectrum(psd.periodogram(y), labels, nb).mean(0)
    th = psd.bin_spectrum(psd.continuous_spectrum(S, L, rho, 1.0), labels, nb)
    sx = psd.bin_spectrum(psd.continuous_spectrum(S, L, rho, 0.0), labels, nb)
    k = np.arange(nb) / L
    ax = axes[0]
    ax.semilogy(k, sx, "k:", label="S_x (lattice)")
    ax.semilogy(k, th, "b-", label="eq 13, cell = domain")
    ax.semilogy(k, est, "r.", ms=3, label=f"Monte-Carlo ({samples})")
    ax.set(title="(i) continuous: x smooth, σ_ε = 1, ρ_ε Gaussian ℓ=8", xlabel="frequency (cycles/pixel)",
           ylim=(1e-12, 1e2))
    ax.legend(fontsize=8)
    # (ii) discretised: white x warped by the engine.
    rho = fields.periodic_correlation("gaussian", (L,), 4.0)
    eps = fields.lattice_field(fields.lattice_spectrum("gaussian", (L,), 4.0, 0.09), samples, rng)
    x = rng.standard_normal((samples, 1, L))
    y = warp(x, eps[:, None], kernel="tri", padding="periodic")[:, 0]
    est = psd.bin_spectrum(psd.periodogram(y), labels, nb).mean(0)
    ax = axes[1]
    for form, style in (("exact", "b-"), ("eq46", "g--")):
        ax.plot(k, psd.bin_spectrum(psd.discretised_spectrum("tri", (L,), 0.3, rho, form=form), labels, nb), style,
                label="exact (all j)" if form == "exact" else "eq 46 (stationary, j = 0)")
    ax.plot(k, est, "r.", ms=3, label="Monte-Carlo")
    ax.set(title="(ii) discretised: white x, tri, σ_ε = 0.3, ℓ_ε = 4", xlabel="frequency (cycles/pixel)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = _out(outdir, "fig_psd.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def figure_kkt_convergence(outdir):
    """Eq 14: weak-form error of K Kᵀ against 1/J (paper) and gram_limit (exact) as the grid is refined.

    Left: one grid phase (the error oscillates, order ½).  Middle: averaged over 32 sub-pixel shifts
    of the warp, the sequence the validation extrapolates (``validation/test_eq14_orthogonality.py``).
    Right: the limit itself against the continuum 1/J.
    """
    w = orthogonality.smooth_warp(1)
    ns = [256, 1024, 4096, 16384]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for kernel, color in zip(("tri", "cos", "rect", "hann", "sqrt_tri"), "bgrmc"):
        r = orthogonality.convergence_study(kernel, w, ns, "KKt")
        axes[0].loglog(ns, np.abs(r["paper"]["weak"]), color + "--", label=f"{kernel}: vs 1/J")
        axes[0].loglog(ns, np.abs(r["exact"]["weak"]) + 1e-16, color + "-o", ms=3, label=f"{kernel}: vs gram_limit")
        for product, style in (("KKt", "-o"), ("KtK", ":s")):
            a = orthogonality.phase_averaged_study(kernel, w, ns, product, phases=32)
            err = np.abs(np.array(a["weak"]) - a["weak_theory"]["exact"]) + 1e-16
            axes[1].loglog(ns, err, color + style, ms=3, label=f"{kernel} {product}")
    axes[0].set(xlabel="n (pixels)", ylabel="|⟨h, KKᵀ g⟩/n − ∫ h g · prediction|", title="K Kᵀ, weak form, one phase")
    axes[0].legend(fontsize=6)
    axes[1].set(xlabel="n (pixels)", ylabel="|phase-averaged weak form − gram_limit|",
                title="averaged over 32 sub-pixel shifts")
    axes[1].legend(fontsize=6, ncol=2)
    J = np.linspace(0.3, 2.5, 400)
    for kernel, color in zip(("tri", "cos", "rect", "hann", "sqrt_tri"), "bgrmc"):
        axes[2].plot(J, orthogonality.gram_limit(kernel, J, "KKt"), color, label=kernel)
    axes[2].plot(J, 1 / J, "k--", label="1/J (eq 14)")
    axes[2].set(xlabel="Jacobian J", ylabel="phase-averaged diagonal of K Kᵀ", title="gram_limit(kernel, J, 'KKt')")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    path = _out(outdir, "fig_kkt_convergence.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _image(n):
    t = np.arange(n) / n
    a, b = np.meshgrid(t, t, indexing="ij")
    return (np.sin(8 * np.pi * a) * np.cos(6 * np.pi * b) > 0).astype(float) * 0.8 + 0.2 * a


def figure_warp_unwarp_2d(outdir, n=128):
    """Eq 49: an image, its warp, unwarp(warp(x)) and the gram_limit-corrected reconstruction (tri)."""
    w = orthogonality.smooth_warp(2)
    x = _image(n)
    eps = w.pixel_offsets(n)[None]
    y = warp(x[None, None], eps, kernel="tri", padding="periodic")
    back = unwarp(y, eps, kernel="tri", padding="periodic")[0, 0]
    jac = np.abs(w.det(w.inverse(w.grid(n))))
    panels = [(x, "x"), (y[0, 0], "warp(x)"), (back, "unwarp(warp(x))"), (back * jac, "unwarp(warp(x)) · |J∘f⁻¹|")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    for ax, (img, title) in zip(axes, panels):
        im = ax.imshow(img, cmap="gray", vmin=0, vmax=1.2)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.7)
    path = _out(outdir, "fig_warp_unwarp_2d.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def figure_jacobian(outdir, n=128):
    """|det J_f| of the 2-D test warp, and the row sums of K Kᵀ (tri) that oscillate around gram_limit."""
    w = orthogonality.smooth_warp(2)
    t = w.grid(n)
    from warptheory.warping import warp_matrix
    K = warp_matrix(w.pixel_offsets(n), kernel="tri", padding="periodic")
    rows = np.asarray((K @ K.T).sum(axis=1)).reshape(n, n)
    panels = [(np.abs(w.det(t)), "|det J_f|"), (1 / np.abs(w.det(t)), "1/|J| (eq 14)"),
              (orthogonality.gram_limit("tri", w.jacobian(t), "KKt"), "gram_limit (tri)"),
              (rows, "row sums of K Kᵀ (tri)")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, (img, title) in zip(axes, panels):
        im = ax.imshow(img, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, shrink=0.7)
    path = _out(outdir, "fig_jacobian.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "figures/out"
    for fn in (figure_psd, figure_kkt_convergence, figure_warp_unwarp_2d, figure_jacobian):
        print(fn(target))
