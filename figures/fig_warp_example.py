"""Figure 1 analogue: a photograph warped by smooth random offsets (eq 2), under zeros and periodic
padding, and unwarped again with the same offsets (eq 49).  See paper_notes/s02_warping.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def smooth_offsets(shape, rms, correlation_length, seed=0):
    """Gaussian-filtered white noise, one field per spatial axis, scaled to the given RMS (pixels)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(len(shape)):
        field = ndimage.gaussian_filter(rng.normal(size=shape), correlation_length, mode="wrap")
        fields.append(field * (rms / field.std()))
    return np.stack(fields)


def figure_warp_example(outdir, rms=5.0, correlation_length=16.0, seed=0) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib import cbook

    from warptheory.warping import unwarp, warp

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        image = plt.imread(file)
    image = image[::2, ::2].astype(np.float64) / 255.0  # (H, W, 3) in [0, 1]
    x = np.ascontiguousarray(image.transpose(2, 0, 1))[None]  # (1, 3, H, W): channels are colours
    eps = smooth_offsets(x.shape[2:], rms, correlation_length, seed)[None]

    warped = {pad: warp(x, eps, "tri", pad) for pad in ("zeros", "periodic")}
    unwarped = unwarp(warped["zeros"], eps, "tri", "zeros")
    # unwarp(1) is the sample density: how much weight each input pixel received
    density = unwarp(np.ones_like(x), eps, "tri", "zeros")

    def show(ax, a, title):
        ax.imshow(np.clip(a[0].transpose(1, 2, 0), 0, 1))
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()

    fig, axes = plt.subplots(2, 3, figsize=(12, 9.2))
    show(axes[0, 0], x, "input x")
    show(axes[0, 1], warped["zeros"], "warp(x, ε), zeros padding (eq 2)\nblack edges pulled in from outside")
    show(axes[0, 2], warped["periodic"], "warp(x, ε), periodic padding\nopposite edge wraps in")
    magnitude = np.hypot(eps[0, 0], eps[0, 1])
    im = axes[1, 0].imshow(magnitude, cmap="viridis")
    step = 24
    rows, cols = np.mgrid[step // 2 : eps.shape[2] : step, step // 2 : eps.shape[3] : step]
    axes[1, 0].quiver(cols, rows, eps[0, 1, rows, cols], eps[0, 0, rows, cols], color="white",
                      angles="xy", scale_units="xy", scale=1.0, width=0.004)
    axes[1, 0].set_title(f"offsets ε: smoothed noise, RMS {rms:g} px/axis,\n"
                         f"correlation length {correlation_length:g} px (arrows: ε)", fontsize=10)
    axes[1, 0].set_axis_off()
    fig.colorbar(im, ax=axes[1, 0], fraction=0.046, label="|ε| (pixels)")
    show(axes[1, 1], unwarped, "unwarp(warp(x, ε), ε), zeros (eq 49)\nlayout restored, brightness ∝ sample density")
    show(axes[1, 2], unwarped / np.maximum(density, 1e-3),
         "the same divided by the density unwarp(1, ε)\n(black: pixels no output sampled)")
    fig.suptitle("Warping a photograph with smooth random offsets (bilinear kernel)")
    fig.tight_layout()
    path = Path(outdir) / "warp_example.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")
    print(figure_warp_example(Path(__file__).resolve().parent))
