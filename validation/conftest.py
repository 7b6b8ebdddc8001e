"""Shared machinery of the ``pytest validation`` suite (paper §3, §4; ``paper_notes/s03_statistics.md``).

Options
-------
``--report-dir DIR``  where ``report.md`` and ``report.json`` go (default ``validation-report/``).
``--thorough``        100× the Monte-Carlo samples (fixture ``sample_factor`` is 100 instead of 1).

Contract for test modules
-------------------------
A session-scoped fixture ``report`` (a :class:`warptheory.stats.ValidationReport`):

* ``report.register_family(name, alpha=..., max_checks=...)`` once per family (idempotent),
* ``chk = report.check(equation, quantity, form, params, theory, estimate, se, *, family,
  dof=None, scale=None)`` computes z, the verdict against the family threshold, the
  power against a 1 % error of ``scale`` (default ``|theory|``) and records the check,
* then ``assert chk.verdict == "agrees", chk``; a paper form expected to disagree is a
  ``pytest.param(..., marks=pytest.mark.xfail(strict=True, reason=...))``.

Pass ``dof = replicates - 1`` when the SE comes from :func:`warptheory.stats.batch_means`:
the threshold is then a Student-t quantile, which keeps the budget honest with few replicates.

False-alarm budget (suite-wide ≤ 1e-3, :data:`warptheory.stats.FAMILY_BUDGET`)
---------------------------------------------------------------------------------
=================  ======  ===============================================
family             share   checks
=================  ======  ===============================================
``iid``            2e-4    eqs 5, 7, 8: grid and hypothesis draws (issue 4)
``selfwarp``       5e-5    eq 9 (issue 4)
``power``          5e-5    null halves of the power/calibration checks
``fields``         5e-4    spectra, eqs 13, 45, 48 (issue 5)
``orthogonality``  1e-4    eqs 14, 49 (issue 5)
``stability``      1e-4    SelfWarp gains at initialisation, §3.1 (issue 13)
=================  ======  ===============================================

Within a family of at most ``m`` checks and share α, each check uses the two-sided
Bonferroni threshold ``z_threshold(α, m, dof)``; by the union bound the probability of any
false "disagrees" in the suite is at most the sum of the shares, 1e-3.  Checks that are
expected to disagree (xfail paper forms, perturbed theories of the power test) are
counted in their family's ``m`` too, which only makes the threshold stricter.

At the end of the session the table (equation, quantity, form, parameters, theory,
estimate ± SE, z, verdict) is printed and the report files are written.
"""
from __future__ import annotations

import pathlib

import pytest

from warptheory.stats import ValidationReport

THOROUGH_FACTOR = 100


def pytest_addoption(parser):
    group = parser.getgroup("warptheory validation")
    group.addoption("--report-dir", action="store", default="validation-report/",
                    help="folder for report.md and report.json (default: validation-report/)")
    group.addoption("--thorough", action="store_true", default=False,
                    help=f"run {THOROUGH_FACTOR}x the Monte-Carlo samples")


def pytest_configure(config):
    config._warptheory_report = ValidationReport()


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
    if rep is None or not rep.records:
        return
    terminalreporter.section("warptheory validation report")
    terminalreporter.write_line(rep.table())
    terminalreporter.write_line("")
    terminalreporter.section("by equation", sep="-")
    terminalreporter.write_line(rep.by_equation())
    terminalreporter.write_line("")
    terminalreporter.write_line(rep.summary())
    paths = getattr(config, "_warptheory_report_paths", None)
    if paths:
        terminalreporter.write_line("written: " + ", ".join(str(p) for p in paths))


def pytest_sessionfinish(session, exitstatus):
    rep = getattr(session.config, "_warptheory_report", None)
    if rep is None or not rep.records:
        return
    out = pathlib.Path(session.config.getoption("--report-dir"))
    if not out.is_absolute():
        out = pathlib.Path(session.config.invocation_params.dir) / out
    session.config._warptheory_report_paths = rep.write(out)
