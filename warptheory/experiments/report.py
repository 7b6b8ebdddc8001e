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
from dataclasses import asdict
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


def stability_prediction(row: P.Row, depth: int):
    """The stability issue's at-initialisation prediction for a row, or None while it is unavailable.

    TODO(issue 13): ``warptheory.stability`` (branch ``stability``) is not on main yet; when it
    lands, return its predicted gradient growth through the network at initialisation here.
    """
    return None


def _accuracies(records):
    return [None if r["diverged"] else r["test_accuracy"] for r in records]


def row_summary(row: P.Row, records: list[dict], depth: int) -> dict:
    """Per-row numbers: diverged/seeds, accuracy mean ± SE over non-diverged seeds, wall time, verdict."""
    seeds = len(records)
    diverged = sum(bool(r["diverged"]) for r in records)
    acc = [a for a in _accuracies(records) if a is not None]
    mean = float(np.mean(acc)) if acc else None
    se = float(np.std(acc, ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else None
    walls = [r["wall_time_s"] for r in records]
    first = [r["exceedance"]["step"] for r in records if r["exceedance"]]
    peak = [float(np.nanmax(np.asarray(r["eps_var"], dtype=float))) if r["eps_var"] else 0.0 for r in records]
    return {
        "label": row.label, "columns": row.columns, "model": row.model, "pretrain": row.pretrain,
        "paper": row.paper, "seeds": seeds, "diverged": diverged,
        "nonfinite_loss": sum(r["nonfinite_loss_step"] is not None for r in records),
        "accuracy_mean": mean, "accuracy_se": se, "accuracy_n": len(acc),
        "wall_time_mean_s": float(np.mean(walls)), "wall_time_total_s": float(np.sum(walls)),
        "first_exceedance_steps": first, "max_eps_var_per_seed": peak,
        "verdict": divergence_verdict(row.paper_diverges, diverged, seeds),
        "stability_prediction": stability_prediction(row, depth),
        "per_seed": [{"seed": r["task"]["seed"], "diverged": r["diverged"], "exceedance": r["exceedance"],
                      "test_accuracy": r["test_accuracy"], "wall_time_s": r["wall_time_s"],
                      "cpu_time_s": r["cpu_time_s"]} for r in records],
    }


def _fmt_acc(s):
    if s["accuracy_mean"] is None:
        return "—"
    se = "" if s["accuracy_se"] is None else f" ± {100 * s['accuracy_se']:.1f}"
    return f"{100 * s['accuracy_mean']:.1f}{se} (n={s['accuracy_n']})"


def _fmt_prediction(p):
    if p is None:
        return "TODO (issue 13 not on main)"
    return str(p)


def _table_markdown(summaries: list[dict]) -> str:
    cols = list(summaries[0]["columns"])
    head = cols + ["diverged/seeds", "test acc. % (mean ± SE)", "wall s/seed", "paper", "at-init prediction",
                   "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s["columns"][c] for c in cols] + [
            f"{s['diverged']}/{s['seeds']}", _fmt_acc(s), f"{s['wall_time_mean_s']:.0f}", s["paper"],
            _fmt_prediction(s["stability_prediction"]), f"**{s['verdict']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pattern(summaries: list[dict]) -> dict:
    ok = sum(s["verdict"] == "reproduces" for s in summaries)
    return {"rows_reproduced": ok, "rows": len(summaries),
            "verdict": "reproduces" if ok == len(summaries) else "does not reproduce"}


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
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("max over layers σ_ε²")
    fig.suptitle(f"{name}: largest layer σ_ε² per step (red: diverged by the >1000 rule)", fontsize=9)
    return _save(fig, out / f"{name}_eps_max.png")


def _green_blue():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("green_blue", ["#a1d99b", "#41ab5d", "#2171b5", "#08306b"])


def _bifurcation_figure(networks: list[dict], out: Path) -> str:
    plt = _plt()
    cmap = _green_blue()
    fig, axes = plt.subplots(len(networks), 2, figsize=(10, 3.3 * len(networks)), squeeze=False)
    for (ax_t, ax_f), net in zip(axes, networks):
        records = net["records"]
        if records:
            v = np.asarray(records[0]["eps_var"], dtype=float)
            layers = v.shape[1] if v.ndim == 2 else 0
            for i in range(layers):
                ax_t.semilogy(np.maximum(v[:, i], 1e-12), color=cmap(i / max(layers - 1, 1)), lw=0.9)
        ax_t.set_title(f"{net['label']}: per-layer σ_ε², seed 0 (light green = early, dark blue = late)", fontsize=8)
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
            title += f"; Spearman ρ = {corr['mean']:.2f} [{corr['low']:.2f}, {corr['high']:.2f}]"
        ax_f.set_title(title, fontsize=8)
        ax_f.set_xlabel("layer (depth order)")
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
def _bifurcation(spec, rows):
    from .bifurcation import classify_layers, depth_correlation

    networks = []
    for row, records in rows:
        stable = [r for r in records if not r["diverged"] and r["eps_var"]]
        classes = [classify_layers(np.asarray(r["eps_var"], dtype=float)) for r in stable]
        corr = depth_correlation([c.final for c in classes]) if classes else None
        bif = sum(c.bifurcates for c in classes)
        net = {
            "label": f"{row.model['layer']} ResNet-{row.model.get('depth', '?')}: {row.label}",
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
        f"This invocation: {elapsed_s:.0f} s wall, {workers} worker(s); per-seed wall times are the runs' own.",
        "",
    ]


def write_report(name, spec, rows, out: Path, *, landscape=None, elapsed_s=0.0, workers=1) -> dict:
    """Analyse the stored runs of an experiment, write ``report.md``, ``results.json`` and figures into OUT."""
    out = Path(out)
    b = spec["budget"]
    results = {"experiment": name, "budget": b.name, "seeds": spec["seeds"], "data": spec["data_spec"],
               "schedule": asdict(b.schedule), "elapsed_s": elapsed_s, "workers": workers, "figures": []}
    md = _header(name, spec, elapsed_s, workers)
    depth_of = {id(r): recs[0]["task"]["config"]["model"]["depth"] if recs else None for r, recs in rows}
    summaries = [row_summary(row, recs, depth_of[id(row)]) for row, recs in rows]
    results["rows"] = summaries
    if name in ("table1", "table2", "skip"):
        md += [_table_markdown(summaries), ""]
        pattern = _pattern(summaries)
        results["pattern"] = pattern
        md += [f"**Divergence pattern: {pattern['verdict']}** ({pattern['rows_reproduced']} of {pattern['rows']} "
               "rows as in the paper).", ""]
        claims = []
        for a, bidx, label in ORDER_CLAIMS.get(name, []):
            c = paired_claim(_accuracies(rows[a][1]), _accuracies(rows[bidx][1]), label)
            claims.append(c)
            numbers = ("fewer than 2 seeds where both rows are stable" if c["t"] is None else
                       f"paired difference {100 * c['mean_difference']:+.2f} ± {100 * c['se']:.2f} points, "
                       f"t = {c['t']:.2f} vs ±{c['threshold']:.2f}, {c['pairs']} pairs")
            md.append(f"- Paper: {label} — **{c['verdict']}** ({numbers}).")
        results["order_claims"] = claims
        md += ["", f"![largest σ_ε² per step]({_eps_max_figure(name, rows, out)})", ""]
        results["figures"].append(f"{name}_eps_max.png")
    if name == "bifurcation":
        networks = _bifurcation(spec, rows)
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
