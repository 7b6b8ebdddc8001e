"""Tests of warptheory.report: one screen, an errata-style report.md, every record in report.json."""
import json

import pytest

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


def _side_by_side_report():
    rep = ValidationReport()
    rep.register_family("iid", alpha=3e-4, max_checks=10)
    rep.check("5", "y.mean", "paper=exact", {}, 1.0, 1.0005, 0.001, family="iid", expected="agrees")
    for row, paper, growth in (("T1.1", "diverges", 1e54), ("T1.2", "diverges", 2e5), ("T1.6", "92.378%", 2e5)):
        explodes = growth > 1e3 * 6.8e3
        rep.compare("§3.1", "Table 1 at init", row, f"config {row}", paper,
                    {"growth": growth, "plain": 6.8e3}, "explodes" if explodes else "no explosion",
                    "agree" if explodes == (paper == "diverges") else "disagree at init",
                    agrees=explodes == (paper == "diverges"), params={"row": row})
    return rep


def test_side_by_side_rows_render_under_their_claim_and_stay_out_of_the_checks(tmp_path):
    rep = _side_by_side_report()
    assert len(rep.records) == 1 and rep.counts == {"iid": 1}  # no check, no share of the budget
    md, js = rep.write(tmp_path / "out", repo_root=tmp_path)
    text = md.read_text()
    section = text[text.index("\n## §3.1"):]
    assert "no checks (side by side with the paper only)" in section
    assert "| row | configuration | paper | growth | plain | call | verdict |" in section
    assert "| T1.2 | config T1.2 | diverges | 2e+05 | 6.8e+03 | no explosion | **✗** disagree at init |" in section
    assert "2 of 3 rows agree; 1 disagree" in section
    data = json.loads(js.read_text())
    assert len(data["records"]) == 1 and [r["row"] for r in data["side_by_side"]] == ["T1.1", "T1.2", "T1.6"]
    assert data["side_by_side"][1]["agrees"] is False and data["side_by_side"][0]["values"]["growth"] == 1e54
    screen = rep.screen()
    assert "Side by side with the paper, §3.1 Table 1 at init: 2 of 3 agree" in screen
    assert "  T1.2 config T1.2: paper diverges" in screen and "T1.6 config" not in screen  # disagreements only


def test_side_by_side_row_twice_or_non_finite_in_json():
    rep = _side_by_side_report()
    with pytest.raises(ValueError, match="row: 'T1.1' is already"):
        rep.compare("§3.1", "Table 1 at init", "T1.1", "", "diverges", {}, "explodes", "agree", agrees=True)
    row = rep.compare("§3.1", "other", "x", "", "diverges", {"growth": float("inf")}, "explodes", "agree",
                      agrees=True)
    assert row.as_record()["values"] == {"growth": "inf"}
    json.dumps([r.as_record() for r in rep.side_by_side], allow_nan=False)
