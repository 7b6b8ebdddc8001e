"""Figures of §3 (eqs 5, 7, 8, 9) and the validation z-score summary (``paper_notes/s03_statistics.md``).

Each function writes PNG files into ``outdir`` and returns their paths.
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_moments(outdir, kernel="tri", d=1, sigmas=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0),
                   replicates=16, batches=2, seed=0):
    """Second moments of y (eq 5), ∇_x L (eq 7), ∇_ε L (eq 8) against σ_ε: theory curves, MC ± 2 SE."""
    from warptheory import moments
    from warptheory.montecarlo import IIDCase, run_iid

    plt = _plt()
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    mu_x, mu_dy, channels = 1.0, 1.0, 2
    grid = np.linspace(min(sigmas), max(sigmas), 60)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (eq, q, fn) in zip(axes, [
        ("5", "y", lambda s, f: moments.forward(kernel, s, mu_x=mu_x, sigma_x=1.0, d=d, form=f)),
        ("7", "dx", lambda s, f: moments.backward_x(kernel, s, mu_dy=mu_dy, sigma_dy=1.0, d=d, form=f, period=256)),
        ("8", "deps", lambda s, f: moments.backward_eps(kernel, s, mu_x=mu_x, sigma_x=1.0, mu_dy=mu_dy, sigma_dy=1.0,
                                                         channels=channels, d=d, form=f)),
    ]):
        for form, style in (("paper", "--"), ("exact", "-")):
            ax.plot(grid, [fn(float(s), form).second_moment for s in grid], style, label=f"{form} form")
        est, err = [], []
        for s in sigmas:
            case = IIDCase(kernel, d=d, channels=channels, sigma_eps=s, mu_x=mu_x, mu_dy=mu_dy, size=256, batch=4)
            e, se, _ = run_iid(case, replicates=replicates, batches=batches, seed=seed).estimate(q, "second_moment")
            est.append(e)
            err.append(2 * se)
        ax.errorbar(sigmas, est, yerr=err, fmt="o", ms=3, label="Monte-Carlo ± 2 SE")
        ax.set_xscale("log")
        ax.set_xlabel("σ_ε")
        ax.set_title(f"eq {eq}: E[{q}²], {kernel}, d={d}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = outdir / f"fig_moments_{kernel}_d{d}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def figure_eq9_slope(outdir, sigma_x2=(0.0625, 0.25, 1.0, 4.0, 16.0), replicates=16, batches=1, seed=0):
    """σ²_∂w against σ_x² (log-log) with and without a normalisation layer (eq 9, §3.1)."""
    from warptheory import moments
    from warptheory.montecarlo import SelfWarpCase, run_selfwarp
    from warptheory.stats import batch_means

    plt = _plt()
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sigma_w = 0.5 / math.sqrt(36)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for normalized, color in ((False, "C0"), (True, "C1")):
        est, err, th = [], [], []
        for j, v in enumerate(sigma_x2):
            case = SelfWarpCase("tri", sigma_x=math.sqrt(v), fixed_sigma_w=sigma_w, normalized=normalized,
                                size=24, batch=2)
            m, se = batch_means(run_selfwarp(case, replicates=replicates, batches=batches, seed=seed + j))
            est.append(m)
            err.append(2 * se)
            th.append(moments.selfwarp("tri", case.effective_sigma_eps(), sigma_x=math.sqrt(v), sigma_dy=1.0,
                                       channels=4, d=2, k=3, form="exact", normalized=normalized).second_moment)
        slope = np.polyfit(np.log(sigma_x2), np.log(est), 1)[0]
        label = ("normalised" if normalized else "plain") + f" (MC slope {slope:.3f})"
        ax.errorbar(sigma_x2, est, yerr=err, fmt="o", color=color, label=label)
        ax.plot(sigma_x2, th, "-", color=color, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("σ_x²")
    ax.set_ylabel("σ²_∂w")
    ax.set_title("eq 9: SelfWarp weight-gradient variance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = outdir / "fig_eq9_slope.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def figure_zscores(report_json_path, outdir):
    """z of every record in a validation report, by equation, with the family thresholds.

    Exact forms (and "paper = exact") blue, paper forms red, power checks (a theory perturbed on
    purpose, which must be rejected) grey; o = agrees, x = disagrees.  Deterministic limits
    (eqs 14, 49) have no z and are not drawn.
    """
    import zlib

    plt = _plt()
    data = json.loads(pathlib.Path(report_json_path).read_text())
    recs = data["records"] if isinstance(data, dict) else data
    recs = [r for r in recs if r.get("z") is not None]
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    eqs = sorted({r["equation"] for r in recs}, key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))
    fig, ax = plt.subplots(figsize=(max(6, len(eqs) * 0.9), 4.2))
    lanes = {"exact": (-0.22, "C0"), "paper": (0.0, "C3"), "power": (0.22, "0.45")}
    for r in recs:
        power_like = "·" in r["quantity"] or (r.get("expected") == "disagrees" and r["form"] != "paper")
        lane = "power" if power_like else ("paper" if r["form"] == "paper" else "exact")
        shift, color = lanes[lane]
        z = float(r["z"])
        zc = float(np.clip(z, -20, 20)) if math.isfinite(z) else 20.0 * (1 if z > 0 else -1)
        jitter = np.random.default_rng(zlib.crc32(repr(sorted(r["params"].items())).encode())).uniform(-0.07, 0.07)
        x = eqs.index(r["equation"]) + shift + jitter
        ax.plot(x, zc, "o" if r["verdict"] == "agrees" else "x", ms=3, color=color)
        if r.get("threshold") is not None:
            ax.hlines([-float(r["threshold"]), float(r["threshold"])], x - 0.08, x + 0.08, color="grey", lw=0.5)
    for lane, (_, color) in lanes.items():
        ax.plot([], [], "o", color=color, label={"exact": "exact form", "paper": "paper form",
                                                 "power": "power check (perturbed theory)"}[lane])
    ax.set_xticks(range(len(eqs)))
    ax.set_xticklabels([f"eq {e}" if e.isdigit() else e for e in eqs])
    ax.set_ylabel("z (clipped at ±20)")
    ax.set_title("validation z-scores (o agrees, x disagrees; grey ticks: family thresholds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: the data fill the corners
    fig.tight_layout()
    path = outdir / "fig_zscores.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def figure_calibration(outdir, experiments=20000, seed=0):
    """The suite's calibration: z of a null study (mean estimator, R = 64) against its reference law.

    Left: histogram of z with the Student-t (63 dof) and normal densities.  Right: realised against
    nominal two-sided rejection rates, 0.5 … 1e-3, with binomial ±2 SE (``warptheory.calibration``).
    """
    from scipy import stats as st

    from warptheory import calibration, stats

    plt = _plt()
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vals = calibration.null_replicates("mean", experiments, seed=seed)
    est, se = stats.batch_means(vals)
    z = np.asarray(stats.standardised_difference(calibration.TRUTH["mean"], est, se))
    dof = vals.shape[0] - 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    grid = np.linspace(-5, 5, 400)
    axes[0].hist(z, bins=120, range=(-5, 5), density=True, color="0.75", label=f"z, {experiments} null experiments")
    axes[0].plot(grid, st.t.pdf(grid, dof), "b-", label=f"Student t, {dof} dof (the suite's law)")
    axes[0].plot(grid, st.norm.pdf(grid), "r--", lw=0.8, label="normal")
    axes[0].set_yscale("log")
    axes[0].set(ylim=(1e-5, 1), xlabel="z", title="null z against its reference law")
    axes[0].legend(fontsize=7)
    nominal = np.array([0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001])
    rates = np.array([np.mean(np.abs(z) > stats.z_threshold(a, 1, dof)) for a in nominal])
    normal_rates = np.array([np.mean(np.abs(z) > stats.z_threshold(a, 1)) for a in nominal])
    err = 2 * np.sqrt(nominal * (1 - nominal) / experiments)
    axes[1].errorbar(nominal, rates / nominal, yerr=err / nominal, fmt="o", ms=3, label="t thresholds (the suite)")
    axes[1].plot(nominal, normal_rates / nominal, "rx", ms=4, label="normal thresholds (planted mutation)")
    axes[1].axhline(1.0, color="k", lw=0.5)
    axes[1].set(xscale="log", xlabel="nominal two-sided rate", ylabel="realised / nominal",
                title="rejection rates of a true theory")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = outdir / "fig_calibration.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
