"""Shared machinery of the ``pytest validation`` suite (paper §3, §4; ``paper_notes/s03_statistics.md``).

Options
-------
``--report-dir DIR``  where ``report.md`` and ``report.json`` go (default ``validation-report/``).
``--thorough``        100× the Monte-Carlo samples (fixture ``sample_factor`` is 100 instead of 1).

Contract for test modules
-------------------------
A session-scoped fixture ``report`` (a :class:`warptheory.stats.ValidationReport`):

* ``report.register_family(name, alpha=..., max_checks=...)`` once per family (idempotent);
  ``alpha`` at most the family's share in :data:`warptheory.stats.FAMILY_BUDGET` (table below),
* ``seed = report.case_seed(case, "purpose", ...)``: the root of the run's
  :class:`numpy.random.SeedSequence`, a SHA-256 hash of every parameter of the case; the session
  refuses a seed already given to a different case,
* ``chk = report.check(equation, quantity, form, params, theory, estimate, se, *, family,
  dof=None, scale=None, note="", claim="", expected="", seed=...)`` computes z, the verdict
  against the family threshold, the power against a 1 % error of ``scale`` (default
  ``|theory|``), the resolution, and records the check.  ``form`` is ``"exact"``, ``"paper"``
  or ``"paper=exact"`` (one record where the printed formula is the exact one),
* then assert the verdict: ``assert chk.verdict == "agrees", chk``.  A paper form known to be
  wrong passes only if its record exists and says so: ``expected="disagrees"`` and
  ``assert chk.verdict == "disagrees", chk``.  No ``xfail`` in this suite: a paper form that
  raises, a missing record or a ``max_checks`` overflow fails the test
  (``tests/test_validation_contract.py``),
* deterministic limits (grid refinement, no probability): ``report.limit(equation, quantity,
  form, params, theory, warptheory.stats.extrapolate(ns, values))`` records the extrapolated
  limit, its error bound and the observed order; verdict ``|limit − theory| ≤ bound``; no family.

Pass ``dof = replicates - 1`` when the SE comes from :func:`warptheory.stats.batch_means`:
the threshold is then a Student-t quantile, which keeps the budget honest with few replicates.

Adding a family (e.g. ``stability``, issue 13)
----------------------------------------------
1. Its share is already in the budget table (``FAMILY_BUDGET["stability"] = 1e-4``); declare
   ``report.register_family("stability", alpha=FAMILY_BUDGET["stability"], max_checks=M)`` with
   ``M`` at least the number of records it will make, power checks included.
2. Power check: record the same estimate against its theory ×1.01 (quantity
   ``"<name>[theory·1.01]"``, ``expected="disagrees"``) and assert it disagrees; assert
   ``chk.power_1pct >= 0.99`` on every record that asserts agreement, or state the record's
   resolution (``chk.resolution``) in the README where 1 % is out of reach.
3. Claim: ``report.register_claim("§3.1", title="...", note="paper_notes/...md",
   figure="figures/....png")`` and pass ``claim="§3.1"`` to ``report.check``: the one-screen
   summary and ``report.md`` then show the claim as one line / one section (records without a
   ``claim`` are filed under their equation).  Exact-form records join the suite-level
   goodness-of-fit automatically (pass ``seed=`` so records sharing samples are grouped).

False-alarm budget (suite-wide ≤ 1e-3, :data:`warptheory.stats.FAMILY_BUDGET`)
---------------------------------------------------------------------------------
=================  ======  =========================================================
family             share   checks
=================  ======  =========================================================
``iid``            3e-4    eqs 5, 7, 8: grid, hypothesis draws, sqrt_tri tail index
``selfwarp``       5e-5    eq 9
``calibration``    5e-5    the null study of the machinery (``test_calibration.py``)
``fields``         4.5e-4  spectra and variances, eqs 13, 45, 48
``suite``          5e-5    one record: all exact-form z of the run against their law
``stability``      1e-4    §3.1 SelfWarp gains and depth (issue 13)
=================  ======  =========================================================

Within a family of at most ``m`` checks and share α, each check uses the two-sided
Bonferroni threshold ``z_threshold(α, m, dof)``; by the union bound the probability of any
false "disagrees" in the suite is at most the sum of the shares, 1e-3.  Checks that are
expected to disagree (paper forms, perturbed theories of the power checks) are counted in
their family's ``m`` too, which only makes the threshold stricter.  Deterministic limits
(eqs 14, 49) carry an error bound instead and take no share.

At the end of the session one screen (≤ 60 lines) summarises the verdicts claim by claim
(:func:`warptheory.report.screen`), and ``report.md`` (errata-style, one section per claim,
then every check) and ``report.json`` (every record) are written.
"""
from __future__ import annotations

import os
import pathlib
import signal

import pytest

from _iid_grid import SMOOTHSTEP
from warptheory.engines import warmup
from warptheory.kernels import kernel_spec
from warptheory.stats import ValidationReport

THOROUGH_FACTOR = 100
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Engine loops a cold session compiles, in the reverse order of the suite's first use of each
#: (measured with a compile log): a child process compiles them from the last while the suite
#: runs (:mod:`warptheory.engines.warmup`); ``WARPTHEORY_WARMUP=0`` turns it off.
WARMUP_ORDER = ("scatter_channel_last", "gather_channel_last", ("taps", kernel_spec(SMOOTHSTEP)),
                "position_derivative", "tri_taps", ("taps", "sqrt_tri"), ("taps", "hann"), ("taps", "rect"),
                "scatter", "gather_tri", ("taps", "cos"), "gather", ("taps", "tri"), "floors")

#: The paper's claims the report is organised by: key, what the paper says, note, figure.
CLAIMS = [
    ("5", "forward moments μ_y = μ_xΦ₁₁ᵈ, μ_y² + σ_y² = μ_x²Φ₁₂ᵈ + σ_x²Φ₂₁ᵈ",
     "paper_notes/s03_statistics.md", "figures/fig_moments_tri_d1.png"),
    ("7", "∇ₓL moments μ_∂x = μ_∂yΦ₁₁ᵈ, μ_∂x² + σ_∂x² = μ_∂y²Φ₁₂ᵈ + σ_∂y²Φ₂₁ᵈ",
     "paper_notes/s03_statistics.md", "figures/fig_moments_tri_d1.png"),
    ("8", "∇_εL moments (N² cross term); sqrt_tri has infinite variance",
     "paper_notes/s03_statistics.md", "figures/fig_moments_tri_d1.png"),
    ("9", "SelfWarp update σ²_∂w = dNk²σ_x⁴σ_∂y²Φ'₂₁Φ₂₁ᵈ⁻¹, quadratic in σ_x²; normalisation removes one σ_x²",
     "paper_notes/s03_statistics.md", "figures/fig_eq9_slope.png"),
    ("13", "spectrum of a warped field: α-sum over the cell (eq 13); eq 41's Taylor sum; eq 46 discretised",
     "paper_notes/s10_12_random_fields.md", "figures/fig_psd.png"),
    ("14", "KKᵀ = δ(τ − t)/|J_f(t)|: warping is orthogonal up to the Jacobian",
     "paper_notes/s04_continuous.md", "figures/fig_kkt_convergence.png"),
    ("45", "without discretisation the warp preserves the variance, σ_y² = σ_x²",
     "paper_notes/s10_12_random_fields.md", "figures/fig_psd.png"),
    ("48", "σ_y² = σ_x²Φ₂₁ᵈ for white lattice x (derived from eq 47)",
     "paper_notes/s10_12_random_fields.md", "figures/fig_psd.png"),
    ("49", "unwarp(warp(x)) undoes the warp: KᵀK = δ/|J∘f⁻¹|",
     "paper_notes/s04_continuous.md", "figures/fig_warp_unwarp_2d.png"),
    ("calibration", "the suite's statistics mean what they say: coverage, rejection rates, z law, power",
     "paper_notes/s03_statistics.md", "figures/fig_calibration.png"),
    ("suite", "every exact-form z of this run follows its reference law (t or normal)",
     "paper_notes/s03_statistics.md", "figures/fig_zscores.png"),
]


def pytest_addoption(parser):
    group = parser.getgroup("warptheory validation")
    group.addoption("--report-dir", action="store", default="validation-report/",
                    help="folder for report.md and report.json (default: validation-report/)")
    group.addoption("--thorough", action="store_true", default=False,
                    help=f"run {THOROUGH_FACTOR}x the Monte-Carlo samples")


def pytest_configure(config):
    config.addinivalue_line("markers", "suite_level: reads every other record of the session; runs last")
    rep = ValidationReport()
    for key, title, note, figure in CLAIMS:
        rep.register_claim(key, title=title, note=note, figure=figure)
    config._warptheory_report = rep
    if os.environ.get("WARPTHEORY_WARMUP", "1") != "0" and not hasattr(config, "workerinput"):
        config._warptheory_warmup = warmup.start(WARMUP_ORDER)


def pytest_collection_modifyitems(session, config, items):
    last = [item for item in items if item.get_closest_marker("suite_level")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("suite_level")] + last


@pytest.fixture(scope="session")
def report(request) -> ValidationReport:
    """The session's :class:`~warptheory.stats.ValidationReport`."""
    return request.config._warptheory_report


@pytest.fixture(scope="session")
def sample_factor(request) -> int:
    """Multiplier of every Monte-Carlo sample count: 1, or 100 under ``--thorough``."""
    return THOROUGH_FACTOR if request.config.getoption("--thorough") else 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rep = getattr(config, "_warptheory_report", None)
    if rep is None or not (rep.records or rep.side_by_side):
        return
    terminalreporter.section("warptheory validation report")
    if getattr(config, "_warptheory_warmup_error", None):
        terminalreporter.write_line(f"warning: the engine warm-up process failed ({config._warptheory_warmup_error});"
                                    " the run compiled the engine itself")
    terminalreporter.write_line(rep.screen(getattr(config, "_warptheory_report_paths", ())))


def pytest_sessionfinish(session, exitstatus):
    child = getattr(session.config, "_warptheory_warmup", None)
    if child is not None:
        # a loop it is still compiling is not needed any more; numba writes its cache files
        # whole (temporary file, then rename), so stopping it leaves no partial entry
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.returncode not in (0, -signal.SIGKILL):
            session.config._warptheory_warmup_error = f"rc {child.returncode}: {warmup.errors(child).strip()[-500:]}"
    rep = getattr(session.config, "_warptheory_report", None)
    if rep is None or not (rep.records or rep.side_by_side):
        return
    out = pathlib.Path(session.config.getoption("--report-dir"))
    if not out.is_absolute():
        out = pathlib.Path(session.config.invocation_params.dir) / out
    session.config._warptheory_report_paths = rep.write(out, repo_root=REPO_ROOT)
