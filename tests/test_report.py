"""Tests of warptheory.report: one screen, an errata-style report.md, every record in report.json."""
import json

from warptheory import report as R
from warptheory.stats import Limit, ValidationReport


def _big_report():
    rep = ValidationReport()
    rep.register_family("iid", alpha=3e-4, max_checks=2000)
    for k in range(20):
        rep.register_claim(str(k + 1), title=f"claim {k + 1}", note="paper_notes/s03_statistics.md",
                           figure="figures/fig_psd.png")
        for j in range(40):
            params = {"case": f"c{j}", "kernel": "tri"}
            rep.check(str(k + 1), f"q{j % 7}", "exact", params, 1.0, 1.0005, 0.001, family="iid", expected="agrees")
            rep.check(str(k + 1), f"q{j % 7}", "paper", params, 0.9, 1.0005, 0.001, family="iid", expected="disagrees")
        rep.check(str(k + 1), "q0[theory·1.01]", "exact", {}, 1.01, 1.0005, 0.001, family="iid", expected="disagrees")
    lim = Limit(ns=(1, 2, 4), values=(1.1, 1.05, 1.025), estimate=1.0, bound=1e-3, order=1.0, method="richardson")
    rep.register_claim("14", title="K Kᵀ", note="paper_notes/s04_continuous.md", figure="figures/fig_kkt_convergence.png")
    rep.limit("14", "KKt weak", "exact", {"kernel": "tri"}, 1.0002, lim, expected="agrees")
    rep.limit("14", "KKt weak", "paper", {"kernel": "tri"}, 0.9, lim, expected="disagrees")
    return rep


def test_screen_fits_one_screen_and_names_every_claim():
    rep = _big_report()
    text = rep.screen(paths=["a/report.md", "a/report.json"])
    lines = text.splitlines()
    assert len(lines) <= R.SCREEN_LINES
    for k in range(20):
        assert any(line.startswith(f"eq {k + 1} ") for line in lines)
    assert "paper wrong (40 of 40 checks); exact form agrees" in text
    assert "every verdict as asserted" in lines[0]


def test_unexpected_verdicts_are_flagged():
    rep = ValidationReport()
    rep.register_family("iid", alpha=3e-4, max_checks=10)
    rep.check("5", "y.mean", "paper=exact", {}, 1.0, 1.5, 0.01, family="iid", expected="agrees")
    assert "UNEXPECTED" in rep.screen() and R.unexpected(rep.records)


def test_report_md_is_errata_style_with_figures_notes_and_every_record(tmp_path):
    rep = _big_report()
    md, js = rep.write(tmp_path / "out", repo_root=tmp_path)
    text = md.read_text()
    assert text.count("\n## eq ") == 20  # claims 1..20 (14 holds the deterministic limits too)
    assert "![eq 14](../figures/fig_kkt_convergence.png)" in text
    assert "[s04_continuous.md](../paper_notes/s04_continuous.md)" in text
    assert "Deterministic limits" in text and "## Every check" in text
    data = json.loads(js.read_text())
    assert len(data["records"]) == len(rep.records)
    det = [r for r in data["records"] if r["kind"] == "deterministic"]
    assert det and all(r["z"] is None and r["bound"] > 0 and r["order"] == 1.0 for r in det)
