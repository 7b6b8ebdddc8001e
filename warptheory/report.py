r"""The validation report for people: a one-screen terminal summary and an errata-style ``report.md``.

Records (:class:`warptheory.stats.Check`) are grouped by paper *claim* (an equation or a
section, :meth:`warptheory.stats.ValidationReport.register_claim`).  For each claim the
summary gives the verdict in words, the number of checks, the worst |z| (statistical) or the
largest relative bound (deterministic limits), the resolution (the relative error the
weakest record detects with 99 % power, or for certain), and where the note and figure are;
then every disagreement with the paper, with the paper's value, the exact value and the
estimate.  ``report.md`` has one section per claim — verdict, evidence table, figure, note —
then the families and the full per-check table; ``report.json`` keeps every record.  Side-by-side
rows (:class:`warptheory.stats.SideBySide`: a theory prediction beside a categorical column of the
paper, no SE, no z, no budget) become a table under their claim, and the screen lists the rows where
prediction and paper disagree.

>>> from warptheory.stats import ValidationReport
>>> rep = ValidationReport()
>>> rep.register_family("iid", alpha=3e-4, max_checks=10)
>>> rep.register_claim("7", title="∇x second moment")
>>> _ = rep.check("7", "dx.m2", "exact", {"c": 1}, 1.0, 1.0005, 0.001, family="iid", expected="agrees")
>>> _ = rep.check("7", "dx.m2", "paper", {"c": 1}, 0.9, 1.0005, 0.001, family="iid", expected="disagrees")
>>> claim_verdict([c for c in rep.records])
'paper wrong (1 of 1 checks); exact form agrees'
>>> len(screen(rep).splitlines()) <= 60
True
"""
from __future__ import annotations

import json
import math
import os
import pathlib

from .stats import EXACT_FORMS

__all__ = ["claim_verdict", "screen", "write", "check_table", "by_equation", "SCREEN_LINES"]

#: Lines the terminal summary may use beyond pytest's own.
SCREEN_LINES = 60
#: Families that check the machinery itself (their "resolution" is not a statement about a theory).
META_FAMILIES = ("calibration", "suite")
_MAX_DISAGREEMENT_LINES = 22


def _fmt(v, digits=6):
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return f"{v:.{digits}g}"


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _asserting(c) -> bool:
    return c.expected == "agrees" or (c.expected == "" and c.form in EXACT_FORMS and not c.is_power_check)


def _theory_record(c) -> bool:
    """A record that asserts agreement with a theory (its resolution is a statement about that theory)."""
    return _asserting(c) and not c.is_power_check and c.family not in META_FAMILIES


def unexpected(records) -> list:
    """Records whose verdict differs from what their test asserts."""
    return [c for c in records if c.expected and c.verdict != c.expected]


def claim_verdict(records) -> str:
    """The verdict of one claim, in words, from its records (power checks aside)."""
    if not records:
        return "no checks (side by side with the paper only)"
    recs = [c for c in records if not c.is_power_check]
    if not recs:
        return "power checks only"
    bad = unexpected(records)
    prefix = f"UNEXPECTED in {len(bad)}: " if bad else ""
    paper = [c for c in recs if c.form in ("paper", "paper=exact")]
    exact = [c for c in recs if c.form in ("exact", "paper=exact")]
    p_dis = [c for c in paper if c.verdict == "disagrees"]
    e_dis = [c for c in exact if c.verdict == "disagrees"]
    if paper and not p_dis:
        same = all(c.form == "paper=exact" for c in paper)
        return prefix + ("holds (paper = exact)" if same else "holds")
    if not paper and not exact:  # model forms only (e.g. §3.1 depth's per-block product)
        n_dis = sum(c.verdict == "disagrees" for c in recs)
        forms = "/".join(sorted({c.form for c in recs}))
        return prefix + f"{forms}: agrees in {len(recs) - n_dis} of {len(recs)}"
    if not paper:
        text = "holds" if not e_dis else f"fails ({len(e_dis)} of {len(exact)} checks disagree)"
        return prefix + text
    text = f"paper wrong ({len(p_dis)} of {len(paper)} checks)"
    exact_only = [c for c in exact if c.form == "exact"]
    if exact_only:
        text += "; exact form agrees" if not e_dis else f"; exact form disagrees in {len(e_dis)}"
    return prefix + text


def _worst(records) -> str:
    stat = [c for c in records if c.kind == "statistical" and not c.is_power_check and _asserting(c)
            and c.z is not None and math.isfinite(c.z)]
    det = [c for c in records if c.kind == "deterministic" and _asserting(c)]
    parts = []
    if stat:
        parts.append(f"|z| {max(abs(c.z) for c in stat):.2f}")
    rel = [c.bound / c.scale for c in det if c.scale]
    if rel:
        parts.append(f"bound {max(rel):.1e}")
    return ", ".join(parts) or "—"


def _resolution(records) -> str:
    vals = [c.resolution for c in records if _theory_record(c)
            and isinstance(c.resolution, float) and math.isfinite(c.resolution)]
    return f"{100 * max(vals):.2g} %" if vals else "—"


def _claim_groups(rep):
    groups: dict = {}
    for c in rep.records:
        groups.setdefault(c.claim or c.equation, []).append(c)
    for row in rep.side_by_side:  # a claim with side-by-side rows only still gets its section
        groups.setdefault(row.claim, [])
    from .stats import Claim

    claims = [rep.claims.get(k) or Claim(key=k, title=f"eq {k}") for k in groups]
    claims.sort(key=lambda cl: (cl.order, cl.key))
    return [(cl, groups[cl.key]) for cl in claims]


def _label(key: str) -> str:
    return f"eq {key}" if key[:1].isdigit() else key


def _pairs(records):
    """Paper / exact records of one claim paired by (quantity, params): rows of the evidence."""
    rows: dict = {}
    for c in records:
        key = (c.quantity, json.dumps(c.params, sort_keys=True, default=str))
        rows.setdefault(key, {})[c.form] = c
    return list(rows.values())


def _disagreements(rep):
    """Paper-form disagreements grouped by (claim, quantity): (label, count, worst record, exact partner)."""
    out = []
    for claim, recs in _claim_groups(rep):
        by_q: dict = {}
        for row in _pairs([c for c in recs if not c.is_power_check]):
            paper = row.get("paper") or row.get("paper=exact")
            if paper is None or paper.verdict != "disagrees":
                continue
            by_q.setdefault(paper.quantity, []).append((paper, row.get("exact")))
        for quantity, items in by_q.items():
            def size(item):
                p = item[0]
                return abs(p.z) if p.z is not None else abs(p.estimate - p.theory) / max(p.bound or 1e-300, 1e-300)
            worst = max(items, key=size)
            out.append((claim, quantity, len(items), worst[0], worst[1]))
    return out


def _tables(rows) -> dict:
    """Side-by-side rows (:class:`warptheory.stats.SideBySide`) by table title, in record order."""
    tables: dict = {}
    for r in rows:
        tables.setdefault(r.table, []).append(r)
    return tables


def _side_by_side_screen(rep, max_rows=8) -> list:
    """Screen lines: per side-by-side table, how many rows agree, then the rows that disagree."""
    lines = []
    for title, rows in _tables(rep.side_by_side).items():
        bad = [r for r in rows if not r.agrees]
        lines.append(f"Side by side with the paper, {_label(rows[0].claim)} {title}: {len(rows) - len(bad)} of "
                     f"{len(rows)} agree (a prediction vs the paper's column, no z)")
        for r in bad[:max_rows]:
            vals = ", ".join(f"{k} {_fmt(v, 3)}" for k, v in r.values.items())
            lines.append(f"  {r.row} {r.case}: paper {r.paper}; {vals} → {r.words}")
        if len(bad) > max_rows:
            lines.append(f"  … {len(bad) - max_rows} more in report.md")
    return lines


def _side_by_side_md(rows) -> list:
    """``report.md`` tables of a claim's side-by-side rows (columns: the rows' ``values``)."""
    out = []
    for title, group in _tables(rows).items():
        names = list(dict.fromkeys(k for r in group for k in r.values))
        n_dis = sum(not r.agrees for r in group)
        out += ["", f"**Side by side with the paper: {_md_escape(title)}** — a theory prediction beside the "
                f"paper's categorical column, not a Monte-Carlo comparison (no SE, no z, no share of the "
                f"false-alarm budget). {len(group) - n_dis} of {len(group)} rows agree; {n_dis} disagree "
                f"(marked **✗**).", "",
                "| row | configuration | paper | " + " | ".join(map(_md_escape, names)) + " | call | verdict |",
                "|---" * (len(names) + 5) + "|"]
        for r in group:
            vals = " | ".join(_fmt(r.values[k], 3) if k in r.values else "—" for k in names)
            mark = "" if r.agrees else "**✗** "
            out.append(f"| {_md_escape(r.row)} | {_md_escape(r.case)} | {_md_escape(r.paper)} | {vals} | "
                       f"{_md_escape(r.call)} | {mark}{_md_escape(r.words)} |")
    return out


def _case_text(c) -> str:
    p = dict(c.params)
    case = p.pop("case", None)
    if case is not None:
        return str(case)
    keep = [k for k in ("kernel", "product", "d", "sense", "sigma_eps", "mu_dy", "mu_x", "channels") if k in p]
    return " ".join(f"{k}={p[k]}" for k in keep)[:48]


def _estimate_text(c) -> str:
    if c.kind == "deterministic":
        return f"{_fmt(c.estimate, 6)} ± {c.bound:.1g}"
    return f"{_fmt(c.estimate, 6)} ± {c.se:.2g}"


def screen(rep, paths=()) -> str:
    """The one-screen summary (≤ :data:`SCREEN_LINES` lines)."""
    lines = []
    n = len(rep.records)
    bad = unexpected(rep.records)
    lines.append(f"warptheory validation: {n} records in {len(set(c.claim for c in rep.records))} claims; "
                 f"false-alarm budget {rep.total:g}; "
                 + ("every verdict as asserted" if not bad else f"{len(bad)} UNEXPECTED verdicts"))
    head = ["claim", "verdict", "checks", "worst", "res.", "note · figure"]
    rows = [head]
    for claim, recs in _claim_groups(rep):
        where = " · ".join(x for x in (pathlib.Path(claim.note).name if claim.note else "",
                                       pathlib.Path(claim.figure).name if claim.figure else "") if x)
        n_power = sum(c.is_power_check for c in recs)
        count = f"{len(recs) - n_power}" + (f"+{n_power}p" if n_power else "")
        rows.append([_label(claim.key), claim_verdict(recs), count, _worst(recs), _resolution(recs), where])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    dis = _disagreements(rep)
    if dis:
        lines.append("")
        lines.append("Disagreements with the paper (worst case of each; paper | exact | estimate):")
        for claim, quantity, count, paper, exact in dis[:_MAX_DISAGREEMENT_LINES]:
            ex = _fmt(exact.theory, 5) if exact is not None else "—"
            stat = f"z {paper.z:+.1f}" if paper.z is not None else f"bound {paper.bound:.1g}"
            lines.append(f"  {_label(claim.key)} {quantity} ({count}×; {_case_text(paper)}): "
                         f"{_fmt(paper.theory, 5)} | {ex} | {_estimate_text(paper)} ({stat})")
        if len(dis) > _MAX_DISAGREEMENT_LINES:
            lines.append(f"  … {len(dis) - _MAX_DISAGREEMENT_LINES} more in report.md")
    if rep.side_by_side:
        lines.append("")
        lines += _side_by_side_screen(rep)
    power = [c for c in rep.records if c.is_power_check]
    if power:
        fams: dict = {}
        for c in power:
            fams.setdefault(c.family, []).append(c.verdict == "disagrees")
        lines.append("")
        lines.append("Power (theory perturbed by 1 %, must be rejected): "
                     + ", ".join(f"{f} {sum(v)}/{len(v)}" for f, v in fams.items()))
    coarse = [c for c in rep.records if _theory_record(c) and isinstance(c.resolution, float) and c.resolution > 0.01]
    if coarse:
        lines.append(f"Resolution above 1 %: {len(coarse)} records (listed in report.md, 'Resolution').")
    for c in bad[:5]:
        lines.append(f"UNEXPECTED: eq {c.equation} {c.quantity} {c.form} {_case_text(c)}: {c.verdict} "
                     f"(asserted {c.expected})")
    if paths:
        lines.append("written: " + ", ".join(str(p) for p in paths))
    if len(lines) > SCREEN_LINES:
        lines = lines[:SCREEN_LINES - 1] + ["… (truncated; see report.md)"]
    return "\n".join(lines)


def check_table(records) -> str:
    """Plain-text table of every record."""
    head = ["eq", "quantity", "form", "parameters", "theory", "estimate ± SE/bound", "z", "verdict"]
    rows = [head]
    for c in records:
        z = f"{c.z:+.2f}" if c.z is not None else "det."
        rows.append([c.equation, c.quantity, c.form, _params_text(c.params), _fmt(c.theory), _estimate_text(c), z,
                     c.verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def by_equation(records) -> str:
    """One row per (equation, form): counts, the largest |z| (or 'det.'), the verdict."""
    def key(eq):
        head = eq.split()[0]
        return (0, int(head), eq) if head.isdigit() else (1, 0, eq)

    groups: dict = {}
    for c in records:
        kind = "power check" if c.is_power_check else c.form
        groups.setdefault((c.equation, kind), []).append(c)
    head = ["eq", "form", "checks", "agree", "disagree", "max |z|", "verdict"]
    rows = [head]
    for (eq, kind), checks in sorted(groups.items(), key=lambda item: (key(item[0][0]), item[0][1])):
        n_agree = sum(c.verdict == "agrees" for c in checks)
        n_dis = len(checks) - n_agree
        zs = [abs(c.z) for c in checks if c.z is not None]
        zmax = f"{max(zs):.2f}" if zs else "det."
        if kind == "power check":
            verdict = "rejects the perturbed theory" if n_dis == len(checks) else "LOW POWER"
        else:
            verdict = "agrees" if n_dis == 0 else f"disagrees ({n_dis} of {len(checks)})"
        rows.append([eq, kind, str(len(checks)), str(n_agree), str(n_dis), zmax, verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_escape(text) -> str:
    return str(text).replace("|", "\\|")


def _evidence_md(records, max_rows=40):
    stat_rows, det_rows = [], []
    for row in _pairs([c for c in records if not c.is_power_check]):
        any_c = next(iter(row.values()))
        (det_rows if any_c.kind == "deterministic" else stat_rows).append(row)

    def other(row):  # the paper's record, or else a model form's (per-block product, gamma-tau)
        return row.get("paper") or row.get("paper=exact") or next(
            (c for f, c in row.items() if f not in EXACT_FORMS), None)

    def order(row):
        c = other(row) or row.get("exact")
        return (c.verdict != "disagrees", -(abs(c.z) if c.z is not None else 0.0))

    out = []
    if stat_rows:
        stat_rows.sort(key=order)
        out += ["| quantity | case | paper | exact | estimate ± SE | z paper | z exact | resolution |",
                "|---|---|---|---|---|---|---|---|"]
        for row in stat_rows[:max_rows]:
            p = other(row)
            e = row.get("exact") or row.get("paper=exact")
            c = p or e
            label = f" ({p.form})" if p is not None and p.form not in ("paper", "paper=exact") else ""
            out.append(
                f"| {_md_escape(c.quantity)} | {_md_escape(_case_text(c))} | "
                f"{_fmt(p.theory) + label if p else '—'} | "
                f"{_fmt(e.theory) if e else '—'} | {_estimate_text(c)} | "
                f"{f'{p.z:+.2f} ({p.verdict})' if p else '—'} | {f'{e.z:+.2f} ({e.verdict})' if e else '—'} | "
                f"{100 * c.resolution:.2g} % |")
        if len(stat_rows) > max_rows:
            out.append(f"\n{len(stat_rows) - max_rows} more rows in the full table below.")
    if det_rows:
        det_rows.sort(key=order)
        out += ["", "Deterministic limits (Richardson extrapolation over the refinements; no z, no α):", "",
                "| quantity | case | paper | exact | limit ± bound | order | verdict paper | verdict exact |",
                "|---|---|---|---|---|---|---|---|"]
        for row in det_rows[:max_rows]:
            p = other(row)
            e = row.get("exact") or row.get("paper=exact")
            c = p or e
            order_text = f"{c.order:.2f}" if c.order is not None and math.isfinite(c.order) else "—"
            out.append(
                f"| {_md_escape(c.quantity)} | {_md_escape(_case_text(c))} | {_fmt(p.theory) if p else '—'} | "
                f"{_fmt(e.theory) if e else '—'} | {_fmt(c.estimate, 8)} ± {c.bound:.2g} | {order_text} | "
                f"{p.verdict if p else '—'} | {e.verdict if e else '—'} |")
    return out


def write(rep, report_dir, repo_root=None) -> list:
    """Write ``report.md`` and ``report.json`` into ``report_dir``; returns the paths."""
    out = pathlib.Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(repo_root) if repo_root is not None else pathlib.Path(__file__).resolve().parent.parent
    from .stats import z_threshold

    payload = {
        "suite_false_alarm_budget": rep.total,
        "families": {f: {"alpha": a, "max_checks": m, "recorded": rep.counts[f]}
                     for f, (a, m) in rep.families.items()},
        "claims": {k: {"title": c.title, "note": c.note, "figure": c.figure} for k, c in rep.claims.items()},
        "records": [c.as_record() for c in rep.records],
        "side_by_side": [r.as_record() for r in rep.side_by_side],
    }
    jpath = out / "report.json"
    jpath.write_text(json.dumps(payload, indent=1, allow_nan=False))

    def rel(path):
        return os.path.relpath(root / path, out).replace(os.sep, "/")

    md = ["# Validation report: the paper's claims, checked", "",
          "An errata-style appendix to *Intriguing Properties of Dynamic Sampling Networks*: one section per "
          "claim, with the verdict, the evidence (paper value, our exact value, the Monte-Carlo estimate or "
          "the extrapolated limit), the figure and the derivation note.  Statistical records: estimate ± "
          f"standard error from independent replicates, z, a verdict at a family-wise false-alarm budget "
          f"(suite total {rep.total:g}).  Deterministic limits: extrapolated limit ± error bound, observed order, "
          "verdict |limit − theory| ≤ bound.", "", "## Summary", "",
          "| claim | verdict | records | worst | resolution |", "|---|---|---|---|---|"]
    groups = _claim_groups(rep)
    for claim, recs in groups:
        md.append(f"| {_label(claim.key)}: {_md_escape(claim.title)} | {_md_escape(claim_verdict(recs))} | "
                  f"{len(recs)} | {_worst(recs)} | {_resolution(recs)} |")
    for claim, recs in groups:
        md += ["", f"## {_label(claim.key)}: {claim.title}", "",
               f"**Verdict: {claim_verdict(recs)}.** {len(recs)} records; worst {_worst(recs)}; "
               f"resolution {_resolution(recs)}.", ""]
        if claim.note:
            md.append(f"Derivation and discussion: [{pathlib.Path(claim.note).name}]({rel(claim.note)}).")
        if claim.figure:
            md += ["", f"![{_label(claim.key)}]({rel(claim.figure)})"]
        md.append("")
        md += _evidence_md(recs)
        md += _side_by_side_md([r for r in rep.side_by_side if r.claim == claim.key])
        power = [c for c in recs if c.is_power_check]
        if power:
            md += ["", "Power checks (theory perturbed on purpose; must be rejected): "
                   + "; ".join(f"{_md_escape(c.quantity)} {_case_text(c)}: "
                               + (f"z {c.z:+.1f}" if c.z is not None else f"limit {c.estimate:.6g}")
                               + f" → {c.verdict}" for c in power[:12])
                   + (f"; … {len(power) - 12} more" if len(power) > 12 else "")]
        notes = sorted({c.note for c in recs if c.note and not c.is_power_check})
        if notes:
            md += ["", "Notes:"] + [f"- {_md_escape(n)}" for n in notes[:12]]
    md += ["", "## Families, thresholds and power", "",
           "| family | α share | max checks | recorded | \\|z\\| threshold (normal / t₆₃) |", "|---|---|---|---|---|"]
    for f, (a, m) in rep.families.items():
        md.append(f"| {f} | {a:g} | {m} | {rep.counts[f]} | {z_threshold(a, m):.2f} / {z_threshold(a, m, 63):.2f} |")
    coarse = [c for c in rep.records if _theory_record(c) and isinstance(c.resolution, float) and c.resolution > 0.01]
    md += ["", "## Resolution", ""]
    if coarse:
        md += ["Records whose resolution (relative error detected with 99 % power, or for certain) is above 1 %:",
               "", "| eq | quantity | case | resolution |", "|---|---|---|---|"]
        md += [f"| {c.equation} | {_md_escape(c.quantity)} | {_md_escape(_case_text(c))} | {100 * c.resolution:.2g} % |"
               for c in coarse]
    else:
        md.append("Every record that asserts agreement resolves a 1 % relative error (statistical: with ≥ 99 % "
                  "power; deterministic: for certain).")
    md += ["", "## Every check", "",
           "| eq | quantity | form | parameters | theory | estimate ± SE/bound | z | verdict | asserted |",
           "|---|---|---|---|---|---|---|---|---|"]
    for c in rep.records:
        z = f"{c.z:+.2f}" if c.z is not None else "det."
        md.append(f"| {c.equation} | {_md_escape(c.quantity)} | {c.form} | {_md_escape(_params_text(c.params))} | "
                  f"{_fmt(c.theory)} | {_estimate_text(c)} | {z} | {c.verdict} | {c.expected or '—'} |")
    mpath = out / "report.md"
    mpath.write_text("\n".join(md) + "\n")
    return [mpath, jpath]
