r"""Tables, verdicts, figures and ``report.md`` / ``results.json`` of the §5 experiments.

Every verdict follows a rule written down before the results (``paper_notes/s05_results.md``):

* **Divergence, per row** (k of S seeds diverged by the paper's rule): where the paper says
  "diverges", *reproduces* if k > S/2, *does not reproduce* if k = 0, *partly* otherwise;
  where the paper gives an accuracy (stable), *reproduces* if k = 0, *does not reproduce*
  if k > S/2, *partly* otherwise. The table's pattern reproduces if every row does.
* **Accuracy order** (a claim "row A > row B" of the paper): the paired difference over the
  seeds on which neither row diverged (same seed = same initialisation and data order); it
  *holds* if its t statistic exceeds the two-sided 95 % Student-t quantile with pairs − 1
  degrees of freedom, is *reversed* below minus that, *inconclusive* otherwise or with < 2 pairs.

>>> divergence_verdict(True, 2, 3), divergence_verdict(False, 0, 3), divergence_verdict(True, 1, 3)
('reproduces', 'reproduces', 'partly')
>>> paired_claim([0.9, 0.8, 0.85], [0.7, 0.6, 0.66])["verdict"]
'holds'
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import protocol as P
from .divergence import DIVERGENCE_THRESHOLD
from .runner import atomic_write_bytes, atomic_write_text, json_safe

__all__ = ["divergence_verdict", "paired_claim", "row_summary", "write_report", "stability_prediction",
           "LN10"]

LN10 = math.log(10.0)

#: Claims "row A > row B" the paper makes about accuracies, by row index (0-based) of each table.
ORDER_CLAIMS = {
    "table1": [(6, 7, "full grads beat detached (BN init 0.1, pre-ε BN): 93.620 % > 93.209 %"),
               (6, 5, "BN init 0.1 + full grads beat BN init 1.0 + detached: 93.620 % > 92.378 %")],
    "table2": [(1, 6, "pretraining + grad scaling is best: 93.760 % > 92.648 %"),
               (6, 4, "BN 0.1 + pre-ε BN beats BN 0.1 + grad scaling: 92.648 % > 92.448 %"),
               (4, 5, "grad scaling with BN 0.1 beats it with BN 1.0: 92.448 % > 92.228 %")],
    "skip": [(0, 1, "warping the skip connection helps: 93.620 % > 92.919 %")],
}


def divergence_verdict(paper_diverges: bool, diverged: int, seeds: int) -> str:
    """The per-row divergence verdict (rule in the module docstring)."""
    if paper_diverges:
        return "reproduces" if diverged > seeds / 2 else ("does not reproduce" if diverged == 0 else "partly")
    return "reproduces" if diverged == 0 else ("does not reproduce" if diverged > seeds / 2 else "partly")


def paired_claim(a, b, label: str = "") -> dict:
    """Paired test of "A > B" from per-seed accuracies (None where a seed diverged)."""
    from scipy.stats import t as student_t

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    out = {"claim": label, "pairs": len(pairs)}
    if len(pairs) < 2:
        return dict(out, verdict="inconclusive", mean_difference=None, se=None, t=None, threshold=None)
    diff = np.array([x - y for x, y in pairs])
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))
    threshold = float(student_t.ppf(0.975, len(diff) - 1))
    t = mean / se if se > 0 else (math.copysign(math.inf, mean) if mean != 0 else 0.0)
    verdict = "holds" if t > threshold else ("reversed" if t < -threshold else "inconclusive")
    return dict(out, verdict=verdict, mean_difference=mean, se=se, t=t, threshold=threshold)


#: The at-init column's reading of the fan-in counterfactual: growth / plain-ResNet growth ≥ 100 is an
#: explosion, ≤ 1/100 a vanishing gradient (two orders of magnitude either way; chosen from the theory's
#: values alone, before any measured row was looked at).
PREDICTION_RATIO = 100.0


def _stages(depth: int) -> tuple:
    n = (depth - 2) // 6
    return ((16, n), (32, n), (64, n))


@lru_cache(maxsize=None)
def _growth(gamma: float, pre_eps_norm: bool, detach: bool, kernel: str, depth: int, eps_init: str, skip_warps: str):
    from ..stability import resnet_gradient_growth

    r = resnet_gradient_growth(gamma=gamma, pre_eps_norm=pre_eps_norm, detach=detach, eps_init=eps_init,
                               kernel=kernel, stages=_stages(depth), skip_warps=skip_warps)
    return r.growth, r.baseline


def stability_prediction(row: P.Row, depth: int | None):
    """The stability issue's at-initialisation prediction for a row (``warptheory.stability``, §3.1, §5).

    :func:`warptheory.stability.resnet_gradient_growth` (mean field, ``paper_notes/s03_1_stability.md``,
    "ResNet-56 (Tables 1–2): theory side") at the row's depth, batch-norm γ, pre-ε BN, detaching and skip
    (``skip_warps="all"``: both SelfWarps' ε warp the skip, as in ``warptheory.nn``; ``"none"``: the
    unwarped-skip ablation and the deformable rows, whose skips are not warped):

    * ``growth``: at the protocol's initialisation, ε-weights 0. Every warp is then the identity and
      every ε path carries nothing, so every row has the plain BN-ResNet's growth (``baseline``) and
      ``explodes_at_init`` is False: a divergence can only develop in training (eq 9's feedback).
    * ``fan_in_growth``: the counterfactual with fan-in Gaussian ε-weights (σ_ε = rms of the ε
      convolution's input), read as ``fan_in_reading`` by :data:`PREDICTION_RATIO` against ``baseline``.
      It is None for pretraining rows: ε is still 0 when warping is switched on, so ``growth`` is the
      prediction.

    Deformable rows use the module's model of a deformable layer (a SelfWarp per kernel point, the
    s03_1 note's Table 2). Table 2's gradient scaling scales the ε-branch *parameters'*
    gradients, not the ε-path gradient into x, so it changes nothing at initialisation (c = 1).
    Deterministic (quadrature) and cached per configuration.
    """
    if depth is None:
        return None
    m = row.model
    gamma, pre, detach = float(m["bn_weight_init"]), bool(m["pre_eps_norm"]), bool(m["detach"])
    skip_warps = "all" if (m["layer"] == "selfwarp" and m["warp_skip"]) else "none"
    growth, baseline = _growth(gamma, pre, detach, m["kernel"], depth, "zero", skip_warps)
    out = {"model": f"{'deformable (as SelfWarps)' if m['layer'] == 'deform' else 'SelfWarp'} ResNet-{depth}",
           "skip_warps": skip_warps,
           "growth": growth, "baseline": baseline, "explodes_at_init": False,
           "fan_in_growth": None, "fan_in_ratio": None, "fan_in_reading": None}
    if row.pretrain:
        out["fan_in_reading"] = "ε = 0 after pretraining"
    else:
        fan_in, _ = _growth(gamma, pre, detach, m["kernel"], depth, "fan_in", skip_warps)
        ratio = fan_in / baseline
        out.update(fan_in_growth=fan_in, fan_in_ratio=ratio,
                   fan_in_reading="explodes" if ratio >= PREDICTION_RATIO else
                   "vanishes" if ratio <= 1 / PREDICTION_RATIO else "no explosion")
    return out


def _accuracies(records):
    return [None if r["diverged"] else r["test_accuracy"] for r in records]


def _by_seed(records, seeds):
    """Accuracies aligned on ``seeds`` (None where the seed diverged or has no stored run)."""
    acc = {r["task"]["seed"]: (None if r["diverged"] else r["test_accuracy"]) for r in records}
    return [acc.get(s) for s in seeds]


def row_summary(row: P.Row, records: list[dict], depth: int) -> dict:
    """Per-row numbers: diverged/seeds, accuracy mean ± SE over non-diverged seeds, wall time, verdict.

    A row without any stored run (a partial report) has ``seeds`` 0 and the verdict "not run".
    """
    seeds = len(records)
    diverged = sum(bool(r["diverged"]) for r in records)
    acc = [a for a in _accuracies(records) if a is not None]
    mean = float(np.mean(acc)) if acc else None
    se = float(np.std(acc, ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else None
    walls = [r["wall_time_s"] for r in records] or [math.nan]
    first = [r["exceedance"]["step"] for r in records if r["exceedance"]]
    peak = [float(np.nanmax(np.asarray(r["eps_var"], dtype=float))) if r["eps_var"] else 0.0 for r in records]
    return {
        "label": row.label, "columns": row.columns, "model": row.model, "pretrain": row.pretrain,
        "paper": row.paper, "seeds": seeds, "diverged": diverged,
        "nonfinite_loss": sum(r["nonfinite_loss_step"] is not None for r in records),
        "accuracy_mean": mean, "accuracy_se": se, "accuracy_n": len(acc),
        "wall_time_mean_s": float(np.mean(walls)), "wall_time_total_s": float(np.sum(walls)),
        "first_exceedance_steps": first, "max_eps_var_per_seed": peak,
        "verdict": divergence_verdict(row.paper_diverges, diverged, seeds) if seeds else "not run",
        "stability_prediction": stability_prediction(row, depth),
        "per_seed": [{"seed": r["task"]["seed"], "diverged": r["diverged"], "exceedance": r["exceedance"],
                      "test_accuracy": r["test_accuracy"], "test_loss": r.get("test_loss"),
                      "wall_time_s": r["wall_time_s"],
                      "cpu_time_s": r["cpu_time_s"]} for r in records],
    }


def _fmt_acc(s):
    if s["accuracy_mean"] is None:
        return "—"
    se = "" if s["accuracy_se"] is None else f" ± {100 * s['accuracy_se']:.1f}"
    return f"{100 * s['accuracy_mean']:.1f}{se} (n={s['accuracy_n']})"


def _fmt_number(v, digits=3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.1e}"


def _fmt_seeds(s) -> str:
    """Peak σ_ε² and test loss of each seed (ln 10 = 2.303 is a uniform prediction: nothing learnt)."""
    return "; ".join(f"{_fmt_number(peak)} / {_fmt_number(seed.get('test_loss'), 4)}"
                     for peak, seed in zip(s["max_eps_var_per_seed"], s["per_seed"])) or "—"


def _fmt_prediction(p):
    if p is None:
        return "—"
    text = f"ε = 0: ×{p['growth']:.3g} (plain), no explosion"
    if p["fan_in_growth"] is not None:
        return text + f"; fan-in ε: ×{p['fan_in_growth']:.3g}, {p['fan_in_reading']}"
    return text + f"; fan-in ε: {p['fan_in_reading']}"


def _table_markdown(summaries: list[dict]) -> str:
    cols = list(summaries[0]["columns"])
    head = cols + ["diverged/seeds", "test acc. % (mean ± SE)", "per seed: peak σ_ε² / test loss", "wall s/seed",
                   "paper", "at-init prediction", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s["columns"][c] for c in cols] + [
            f"{s['diverged']}/{s['seeds']}" + ("" if s.get("complete", True) else f" (of {s['seeds_planned']} planned)"),
            _fmt_acc(s), _fmt_seeds(s), "—" if not s["seeds"] else f"{s['wall_time_mean_s']:.0f}", s["paper"],
            _fmt_prediction(s["stability_prediction"]),
            f"**{s['verdict']}**" + ("" if s.get("complete", True) or not s["seeds"] else " (partial)")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pattern(summaries: list[dict]) -> dict:
    """Every row reproduces; while seeds are missing, "incomplete" unless a finished row already fails."""
    ok = sum(s["verdict"] == "reproduces" for s in summaries)
    complete = all(s.get("complete", True) for s in summaries)
    finished = [s for s in summaries if s.get("complete", True)]
    verdict = ("reproduces" if ok == len(summaries) else "does not reproduce") if complete else (
        "does not reproduce" if any(s["verdict"] != "reproduces" for s in finished) else "incomplete")
    return {"rows_reproduced": ok, "rows": len(summaries), "rows_complete": len(finished), "complete": complete,
            "verdict": verdict}


def _prediction_summary(summaries: list[dict]) -> tuple[dict, str]:
    """The at-init column in one sentence, against the measured divergence (majority of a row's seeds)."""
    preds = [s["stability_prediction"] for s in summaries]
    if not summaries or any(p is None for p in preds):
        return {}, ""
    rows = lambda cond: [i + 1 for i, s in enumerate(summaries) if cond(i, s)]  # noqa: E731 — 1-based row numbers
    explode = rows(lambda i, s: preds[i]["fan_in_reading"] == "explodes")
    vanish = rows(lambda i, s: preds[i]["fan_in_reading"] == "vanishes")
    measured = rows(lambda i, s: s["seeds"] and s["diverged"] > s["seeds"] / 2)
    paper = rows(lambda i, s: s["paper"] == "diverges")
    growth = sorted({round(p["growth"], 12) for p in preds})
    summary = {"explodes_at_init": rows(lambda i, s: preds[i]["explodes_at_init"]), "growth_at_init": growth,
               "fan_in_explodes": explode, "fan_in_vanishes": vanish, "measured_diverges": measured,
               "paper_diverges": paper}
    fmt = lambda r: f"row{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}" if r else "no row"  # noqa: E731
    text = (f"At-init prediction (`warptheory.stability.resnet_gradient_growth`, issue 13; {preds[0]['model']}): "
            f"with the protocol's zero ε-weights every row starts as the plain ResNet (gradient growth "
            f"×{', ×'.join(f'{g:.3g}' for g in growth)} through the residual blocks), so no row is predicted to "
            f"explode at initialisation and any divergence develops in training. The fan-in counterfactual "
            f"(growth ÷ plain ≥ {PREDICTION_RATIO:g}: explodes, ≤ 1/{PREDICTION_RATIO:g}: vanishes) explodes "
            f"in {fmt(explode)} and vanishes in {fmt(vanish)}. Diverged here (majority of seeds): "
            f"{fmt(measured)}; in the paper: {fmt(paper)}.")
    return summary, text


# ----------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    _plt().close(fig)
    return path.name


def _eps_max_figure(name, rows, out: Path) -> str:
    plt = _plt()
    n = len(rows)
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.6 * nrow), squeeze=False, sharey=True)
    for ax, (row, records) in zip(axes.flat, rows):
        for r in records:
            v = np.asarray(r["eps_var"], dtype=float)
            if v.size:
                ax.semilogy(np.maximum(np.nanmax(v, axis=1), 1e-12), lw=0.8,
                            color="tab:red" if r["diverged"] else "tab:blue")
        ax.axhline(DIVERGENCE_THRESHOLD, color="k", ls="--", lw=0.8)
        ax.set_title(row.label, fontsize=7)
        ax.set_xlabel("step", fontsize=7)
        if not records:
            ax.text(0.5, 0.25, "no stored run yet", transform=ax.transAxes, ha="center", fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("max over layers σ_ε²")
    fig.suptitle(f"{name}: largest layer σ_ε² per step (red: diverged by the >1000 rule)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, out / f"{name}_eps_max.png")


def _green_blue():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("green_blue", ["#a1d99b", "#41ab5d", "#2171b5", "#08306b"])


def _bifurcation_figure(networks: list[dict], out: Path) -> str:
    plt = _plt()
    cmap = _green_blue()
    fig, axes = plt.subplots(len(networks), 2, figsize=(11, 4.0 * len(networks)), squeeze=False,
                             gridspec_kw={"wspace": 0.3, "hspace": 0.55})
    for (ax_t, ax_f), net in zip(axes, networks):
        records = net["records"]
        if records:
            v = np.asarray(records[0]["eps_var"], dtype=float)
            layers = v.shape[1] if v.ndim == 2 else 0
            for i in range(layers):
                ax_t.semilogy(np.maximum(v[:, i], 1e-12), color=cmap(i / max(layers - 1, 1)), lw=0.9)
        ax_t.set_title("\n".join(textwrap.wrap(net["label"], 60))
                       + "\nper-layer σ_ε², seed 0 (light green = early, dark blue = late)", fontsize=8)
        ax_t.set_xlabel("step")
        ax_t.set_ylabel("σ_ε²")
        for r, c in zip(records, net["classes"]):
            x = np.arange(len(c["final"]))
            ax_f.semilogy(x, np.maximum(c["final"], 1e-12), "-", color="0.7", lw=0.6)
            colours = {"collapsed": "tab:orange", "intermediate": "0.5", "elevated": "tab:blue"}
            ax_f.scatter(x, np.maximum(c["final"], 1e-12), c=[colours[g] for g in c["groups"]], s=14, zorder=3)
        corr = net.get("depth_correlation")
        title = "final σ_ε² by layer (orange: →0, blue: elevated)"
        if corr:
            title += f"\nSpearman ρ = {corr['mean']:.2f} [{corr['low']:.2f}, {corr['high']:.2f}]"
        ax_f.set_title(title, fontsize=8)
        ax_f.set_xlabel("layer (depth order)")
        ax_f.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, out / "fig2_bifurcation.png")


def _surface_figure(kind: str, surfaces: dict, out: Path) -> str:
    plt = _plt()
    names = [f"eq15_{kind}", f"filter_{kind}"]
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), gridspec_kw={"wspace": 0.35})
    for ax, n in zip(axes, names):
        s = surfaces.get(n)
        if s is None:
            ax.axis("off")
            continue
        loss = np.asarray(s["loss"], dtype=float)
        unit = np.asarray(s["unit"], dtype=float)
        shown = np.clip(np.nan_to_num(loss, nan=50.0, posinf=50.0), 0, 4 * LN10)
        cs = ax.contourf(unit, unit, shown, levels=24, cmap="viridis")
        ax.contour(unit, unit, shown, levels=[LN10], colors="w", linewidths=1.0)
        fig.colorbar(cs, ax=ax, label="loss")
        xl, yl = s["axes"]
        scale = "R" if n.startswith("eq15") else "filter norm"
        ax.set_xlabel(f"{xl}  (α / {scale})")
        ax.set_ylabel(f"{yl}  (β / {scale})")
        ax.set_title(("eq 15 gradient-informed" if n.startswith("eq15") else "Li et al. filter-normalised")
                     + f" — {kind}", fontsize=9)
    number = 3 if kind == "joint" else 4
    fig.suptitle(f"Figure {number} analogue: loss around the trained network, {kind} axes "
                 "(colour clipped at 4 ln 10; white contour: ln 10)", fontsize=9)
    return _save(fig, out / f"fig{number}_landscape_{kind}.png")


def _lines_figure(lines_by_seed: dict, out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex="col")
    for col, kind in enumerate(("eq15", "filter")):
        for seed, lines in sorted(lines_by_seed.items()):
            for axis, colour in (("warp", "tab:green"), ("conv", "tab:purple")):
                line = lines[f"{kind}_{axis}"]
                unit = np.asarray(line["unit"], dtype=float)
                axes[0, col].plot(unit, np.asarray(line["loss"], dtype=float), color=colour, lw=1,
                                  label=f"{axis} axis" if seed == min(lines_by_seed) else None)
                axes[1, col].semilogy(unit, np.maximum(np.asarray(line["max_eps_var"], dtype=float), 1e-12),
                                      color=colour, lw=1)
        axes[0, col].axhline(LN10, color="k", ls="--", lw=0.8, label="ln 10")
        axes[0, col].set_ylim(0, 4 * LN10)
        axes[0, col].set_title("eq 15 directions (α / R)" if kind == "eq15" else "filter-normalised (α)", fontsize=9)
        axes[0, col].set_ylabel("loss")
        axes[0, col].legend(fontsize=7)
        axes[1, col].set_ylabel("largest layer σ_ε² (last batch)")
        axes[1, col].set_xlabel("position along the axis")
    return _save(fig, out / "landscape_lines.png")


# ----------------------------------------------------------------------------- analyses
def _bifurcation(spec, rows, depth_of):
    from .bifurcation import classify_layers, depth_correlation

    networks = []
    for row, records in rows:
        stable = [r for r in records if not r["diverged"] and r["eps_var"]]
        classes = [classify_layers(np.asarray(r["eps_var"], dtype=float)) for r in stable]
        corr = depth_correlation([c.final for c in classes]) if classes else None
        bif = sum(c.bifurcates for c in classes)
        net = {
            "label": f"{row.model['layer']} ResNet-{depth_of[id(row)]}: {row.label}",
            "records": stable,
            "classes": [dict(asdict(c), counts=c.counts, bifurcates=c.bifurcates) for c in classes],
            "seeds": len(records), "stable_seeds": len(stable), "bifurcating_seeds": bif,
            "bifurcation_verdict": ("reproduces" if classes and bif > len(classes) / 2 else
                                    "does not reproduce" if classes else "no stable seed"),
            "depth_correlation": None if corr is None else dict(asdict(corr), verdict=corr.verdict),
        }
        networks.append(net)
    return networks


def _line_verdicts(lines: dict) -> dict:
    rule = P.LANDSCAPE_RULE
    out = {}
    for name, line in lines.items():
        unit = np.abs(np.asarray(line["unit"], dtype=float))
        loss = np.asarray(line["loss"], dtype=float)
        outer = unit >= (1 - rule["outer_fraction"]) * rule["line_extent"] - 1e-12
        o = loss[outer]
        plateau = bool(np.all(np.abs(o - LN10) < rule["plateau_tolerance"]) and np.ptp(o) < rule["plateau_flatness"])
        # rising: above ln 10 + margin, and non-decreasing moving outwards on each side
        signed = np.asarray(line["unit"], dtype=float)
        right = loss[(signed > 0) & outer]
        left = loss[(signed < 0) & outer][::-1]
        monotone = all(np.all(np.diff(side) >= 0) for side in (right, left) if len(side) > 1)
        rising = bool(np.all(o > LN10 + rule["rise_margin"]) and monotone)
        out[name] = {"outer_losses": o.tolist(), "plateau_near_ln10": plateau, "keeps_rising": rising,
                     "outer_mean": float(np.mean(o)) if o.size else None}
    return out


def _landscape(landscape):
    lines_by_seed, surfaces, stats, verdicts = {}, {}, {}, {}
    for task, rec in landscape:
        stats[task.seed] = rec["stats"]
        if "lines" in rec:
            lines_by_seed[task.seed] = rec["lines"]
            verdicts[task.seed] = _line_verdicts(rec["lines"])
        else:
            surfaces[task.config["what"]] = dict(rec["surface"], center_loss=rec["center_loss"])
    n = len(verdicts)
    warp_plateau = sum(v["eq15_warp"]["plateau_near_ln10"] for v in verdicts.values())
    conv_rising = sum(v["eq15_conv"]["keeps_rising"] for v in verdicts.values())
    claim = ("reproduces" if n and warp_plateau > n / 2 and conv_rising > n / 2 else "does not reproduce")
    return {"stats": stats, "line_verdicts": verdicts, "surfaces": surfaces, "lines": lines_by_seed,
            "warp_plateau_seeds": warp_plateau, "conv_rising_seeds": conv_rising, "seeds": n, "verdict": claim}


# ----------------------------------------------------------------------------- report
def _missing_lines(missing) -> list[str]:
    if not missing:
        return []
    by_label: dict = {}
    for label, seed in missing:
        by_label.setdefault(label, []).append(seed)
    return ["**PARTIAL REPORT** — made with `--report-only` from the seeds stored so far; "
            f"{len(missing)} planned run(s) have no stored result yet, so every verdict below is provisional:",
            ""] + [f"- {label}: seed(s) {', '.join(map(str, seeds))} missing" for label, seeds in by_label.items()] + [
            "", "Resume with the same command without `--report-only` (or `figures/run_s05_experiments.sh NAME`); "
            "finished seeds are skipped.", ""]


def _header(name, spec, elapsed_s, workers):
    b = spec["budget"]
    s = b.schedule
    data = spec["data_spec"]
    return [
        f"# warptheory experiment {name} ({b.name} budget)",
        "",
        f"Protocol: `paper_notes/s05_results.md` (fixed before the results). Data: {data['name']} "
        f"({data['n_train']} train / {data['n_test']} test images). SGD, momentum {s.momentum}, weight decay "
        f"{s.weight_decay}, batch {s.batch_size}, {s.steps} steps, learning rate {s.lr} ÷10 at "
        f"{', '.join(f'{int(m * 100)} %' for m in s.milestones)} of the steps"
        + (f"; pretraining {s.pretrain_steps} steps with ε = 0 where a row says so" if name == "table2" else "")
        + f". {spec['seeds']} seed(s) per row. Diverged: some layer's σ_ε² > 1000 at some step.",
        "",
        "Absolute accuracies are not the paper's (a small network, a short schedule and, by default, "
        "the generated shapes10 set instead of CIFAR-10); what is compared is the pattern: which rows "
        "diverge, and the order of the rows.",
        "",
        (f"This invocation: {elapsed_s:.0f} s wall, {workers} worker(s); per-seed wall times are the runs' own."
         if workers else "This invocation ran nothing (`--report-only`); per-seed wall times are the runs' own."),
        "",
    ]


def _planned_depth(name, spec, row) -> int:
    b = spec["budget"]
    return b.bifurcation_depth if (name == "bifurcation" and row.model["layer"] == "selfwarp") else b.depth


def write_report(name, spec, rows, out: Path, *, landscape=None, elapsed_s=0.0, workers=1, missing=None) -> dict:
    """Analyse the stored runs of an experiment, write ``report.md``, ``results.json`` and figures into OUT.

    ``missing`` lists (row label, seed) of planned runs without a stored result (``--report-only``): the
    report is then marked partial, and rows with missing seeds say how many were planned.
    """
    out = Path(out)
    b = spec["budget"]
    missing = list(missing or [])
    results = {"experiment": name, "budget": b.name, "seeds": spec["seeds"], "data": spec["data_spec"],
               "schedule": asdict(b.schedule), "elapsed_s": elapsed_s, "workers": workers, "figures": [],
               "partial": bool(missing), "missing": [{"row": label, "seed": seed} for label, seed in missing]}
    md = _header(name, spec, elapsed_s, workers)
    if missing:
        md[1:1] = [""] + _missing_lines(missing)[:-1]
    depth_of = {id(r): recs[0]["task"]["config"]["model"]["depth"] if recs else _planned_depth(name, spec, r)
                for r, recs in rows}
    summaries = [row_summary(row, recs, depth_of[id(row)]) for row, recs in rows]
    for s in summaries:
        s["seeds_planned"] = spec["seeds"]
        s["complete"] = s["seeds"] == spec["seeds"]
    results["rows"] = summaries
    if name in ("table1", "table2", "skip"):
        md += [_table_markdown(summaries), ""]
        pattern = _pattern(summaries)
        results["pattern"] = pattern
        md += [f"**Divergence pattern: {pattern['verdict']}** ({pattern['rows_reproduced']} of {pattern['rows']} "
               "rows as in the paper" + ("" if pattern["complete"] else
                                         f"; {pattern['rows_complete']} row(s) have all their seeds") + ").", ""]
        prediction, text = _prediction_summary(summaries)
        results["stability_prediction"] = prediction
        if text:
            md += [text, ""]
        claims = []
        for a, bidx, label in ORDER_CLAIMS.get(name, []):
            seeds = range(spec["seeds"])
            c = paired_claim(_by_seed(rows[a][1], seeds), _by_seed(rows[bidx][1], seeds), label)
            claims.append(c)
            numbers = ("fewer than 2 seeds where both rows are stable" if c["t"] is None else
                       f"paired difference {100 * c['mean_difference']:+.2f} ± {100 * c['se']:.2f} points, "
                       f"t = {c['t']:.2f} vs ±{c['threshold']:.2f}, {c['pairs']} pairs")
            md.append(f"- Paper: {label} — **{c['verdict']}** ({numbers}).")
        results["order_claims"] = claims
        md += ["", f"![largest σ_ε² per step]({_eps_max_figure(name, rows, out)})", ""]
        results["figures"].append(f"{name}_eps_max.png")
    if name == "bifurcation":
        networks = _bifurcation(spec, rows, depth_of)
        md += ["| network | stable seeds | bifurcating seeds (rule) | groups per seed (→0 / between / elevated) | "
               "Spearman ρ(depth, final σ_ε²) [95 % bootstrap] | verdict |", "|---|---|---|---|---|---|"]
        for net in networks:
            groups = "; ".join(f"{c['counts']['collapsed']}/{c['counts']['intermediate']}/{c['counts']['elevated']}"
                               for c in net["classes"]) or "—"
            corr = net["depth_correlation"]
            cs = "—" if corr is None else f"{corr['mean']:.2f} [{corr['low']:.2f}, {corr['high']:.2f}]: {corr['verdict']}"
            md.append(f"| {net['label']} | {net['stable_seeds']}/{net['seeds']} | {net['bifurcating_seeds']} | "
                      f"{groups} | {cs} | **{net['bifurcation_verdict']}** |")
        fig = _bifurcation_figure(networks, out)
        md += ["", f"![Figure 2 analogue]({fig})", ""]
        results["figures"].append(fig)
        results["bifurcation"] = [{k: v for k, v in n.items() if k != "records"} for n in networks]
    if name == "landscape" and landscape is not None:
        land = _landscape(landscape)
        results["landscape"] = land
        md += ["| seed | R = ‖θ‖/‖E∇‖ | warp share of eq 15 direction | warp share of filter-normalised direction | "
               "eq 15 warp axis: outer loss (plateau near ln 10?) | eq 15 conv axis: outer loss (keeps rising?) |",
               "|---|---|---|---|---|---|"]
        for seed, v in sorted(land["line_verdicts"].items()):
            st = land["stats"][seed]
            w, c = v["eq15_warp"], v["eq15_conv"]
            md.append(f"| {seed} | {st['eq15_scale_R']:.3g} | {st['warp_share_eq15']:.3g} | "
                      f"{st['warp_share_filter']:.3g} | {w['outer_mean']:.3f} ({'yes' if w['plateau_near_ln10'] else 'no'}) | "
                      f"{c['outer_mean']:.3f} ({'yes' if c['keeps_rising'] else 'no'}) |")
        md += ["", f"**Plateau claim: {land['verdict']}** (warp axis plateaus near ln 10 = {LN10:.3f} in "
               f"{land['warp_plateau_seeds']}/{land['seeds']} seeds; conv axis keeps rising in "
               f"{land['conv_rising_seeds']}/{land['seeds']}).", ""]
        for kind in ("joint", "disentangled"):
            if any(k.endswith(kind) for k in land["surfaces"]):
                fig = _surface_figure(kind, land["surfaces"], out)
                md.append(f"![{kind}]({fig})")
                results["figures"].append(fig)
        if land["lines"]:
            fig = _lines_figure(land["lines"], out)
            md += ["", f"![1-D sweeps]({fig})"]
            results["figures"].append(fig)
        md.append("")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "results.json", json.dumps(json_safe(results), indent=1, allow_nan=False, default=str))
    return results
