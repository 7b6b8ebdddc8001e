"""Figure 1 analogue with the PyTorch layer: a spatial transformer and a SelfWarp at large σ_ε pull
black edges into the image under zeros padding (§2.1), next to border and periodic padding.
See paper_notes/s02_warping.md ("The PyTorch layer")."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PADDINGS = ("zeros", "border", "periodic")


def _photo():
    import matplotlib.pyplot as plt
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        image = plt.imread(file)
    image = image[::3, ::3].astype(np.float64) / 255.0  # (H, W, 3) in [0, 1]
    return np.ascontiguousarray(image.transpose(2, 0, 1))[None]  # (1, 3, H, W)


def figure_nn_padding(outdir, zoom=1.35, angle_degrees=20.0, sigma_eps=10.0) -> list[Path]:
    import matplotlib.pyplot as plt
    import torch

    from warptheory.nn import SelfWarp
    from warptheory.nn import functional as WF

    x = torch.from_numpy(_photo())
    angle = np.deg2rad(angle_degrees)
    # θ acts on the output's normalised coordinates: scaling them by zoom > 1 samples beyond the image
    rotation = zoom * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    theta = torch.tensor(np.hstack([rotation, [[0.1], [-0.05]]])[None])
    stn_eps = WF.affine_offsets(theta, x.shape, align_corners=False)

    # a SelfWarp whose ε convolution is a 15×15 box filter of the brightness, for both components,
    # scaled so that the RMS of ε is sigma_eps pixels: bright regions sample further down and to the
    # right, so that they read from beyond the bottom and right edges
    block = SelfWarp(3, kernel_size=15).double()
    with torch.no_grad():
        conv = block.eps_branch[0]
        conv.weight.fill_(1.0)
        conv.weight.mul_(sigma_eps / float(conv(x).square().mean().sqrt()))
        self_eps = block.compute_eps(x)

    rows = [("STN", stn_eps), ("SelfWarp", self_eps)]
    fig, axes = plt.subplots(2, 4, figsize=(15, 8.2))

    def show(ax, t, title):
        ax.imshow(np.clip(t[0].detach().numpy().transpose(1, 2, 0), 0, 1))
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()

    show(axes[0, 0], x, "input x")
    magnitude = self_eps[0].norm(dim=0).detach().numpy()
    im = axes[1, 0].imshow(magnitude, cmap="viridis")
    axes[1, 0].set_title(f"SelfWarp ε: 15×15 box filter of x\n"
                         f"σ_ε² (§2.1 metric) = {float(WF.eps_variance(self_eps)):.1f} px²", fontsize=10)
    axes[1, 0].set_axis_off()
    fig.colorbar(im, ax=axes[1, 0], fraction=0.046, label="|ε| (pixels)")
    for row, (name, eps) in enumerate(rows):
        for column, padding in enumerate(PADDINGS, start=1):
            y = WF.warp(x, eps, "tri", padding)
            note = {"zeros": "black edges pulled in (§2.1)", "border": "edge pixels smeared",
                    "periodic": "opposite edge wraps in"}[padding]
            detail = (f"zoom {zoom:g}, rotation {angle_degrees:g}°" if name == "STN" else f"RMS ε {sigma_eps:g} px")
            show(axes[row, column], y, f"{name} ({detail}), {padding} padding\n{note}")
    fig.suptitle("Warps that sample outside the image: zeros padding pulls in black (Figure 1, §2.1)")
    fig.tight_layout()
    path = Path(outdir) / "nn_padding.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")
    print(figure_nn_padding(Path(__file__).resolve().parent))
