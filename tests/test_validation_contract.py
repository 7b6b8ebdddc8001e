"""The contract of ``pytest validation``: expected disagreements fail on anything but a disagreement.

A paper form known to be wrong passes only if its record exists and says "disagrees"; a crash in
the paper form, a missing record or a ``max_checks`` overflow must fail the suite.  (The suite used
``xfail(strict=True)`` without ``raises=``, under which all three counted as the expected
disagreement; :func:`test_old_bare_xfail_swallowed_a_crash` keeps that failure mode on record.)
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
VALIDATION = ROOT / "validation"

MINI_SUITE = '''
import pytest


def paper_form_that_crashes():
    raise ZeroDivisionError("the paper form crashed")


def _family(report, m=4):
    report.register_family("iid", alpha=1e-4, max_checks=m)


def _paper_record_must_disagree(report, paper_value):
    _family(report)
    chk = report.check("7", "q", "paper", {}, paper_value, 1.0, 0.01, family="iid", expected="disagrees")
    assert chk.verdict == "disagrees", chk


def test_expected_disagreement(report):
    _paper_record_must_disagree(report, 0.5)


def test_paper_form_raises(report):
    _paper_record_must_disagree(report, paper_form_that_crashes())


def test_paper_form_agrees_unexpectedly(report):
    _paper_record_must_disagree(report, 1.0)


def test_record_missing(report):
    _family(report)
    records = [c for c in report.records if c.quantity == "never recorded"]
    assert records and all(c.verdict == "disagrees" for c in records)


def test_max_checks_overflow(report):
    report.register_family("selfwarp", alpha=1e-5, max_checks=1)
    report.check("9", "a", "paper", {}, 0.5, 1.0, 0.01, family="selfwarp", expected="disagrees")
    chk = report.check("9", "b", "paper", {}, 0.5, 1.0, 0.01, family="selfwarp", expected="disagrees")
    assert chk.verdict == "disagrees", chk


@pytest.mark.xfail(strict=True, reason="the old pattern: a bare strict xfail")
def test_old_bare_xfail(report):
    _family(report)
    chk = report.check("7", "q", "paper", {}, paper_form_that_crashes(), 1.0, 0.01, family="iid")
    assert chk.verdict == "agrees", chk
'''


def _run_mini_suite(tmp_path, tests=MINI_SUITE, conftest_tail="", warmup="0", timeout=300):
    suite = tmp_path / "mini"
    suite.mkdir()
    # the conftest and the helper it imports (the user kernel of its engine warm-up list)
    for name in ("conftest.py", "_iid_grid.py", "_parallel.py"):
        shutil.copy(VALIDATION / name, suite / name)
    if conftest_tail:
        with open(suite / "conftest.py", "a") as conftest:
            conftest.write(textwrap.dedent(conftest_tail))
    (suite / "test_mini.py").write_text(textwrap.dedent(tests))
    proc = subprocess.run([sys.executable, "-m", "pytest", str(suite), "-q", "-rA", "-p", "no:cacheprovider",
                           f"--report-dir={tmp_path / 'report'}", "-o", "addopts="],
                          capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
                          env={**os.environ, "WARPTHEORY_WARMUP": warmup})
    outcomes = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"(PASSED|FAILED|XFAIL|XPASS|ERROR) \S*::(\w+)", line)
        if m:
            outcomes[m.group(2)] = m.group(1)
    return proc, outcomes


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return _run_mini_suite(tmp_path_factory.mktemp("contract"))


def test_expected_disagreement_passes_only_as_a_disagreement(mini):
    proc, outcomes = mini
    assert outcomes.get("test_expected_disagreement") == "PASSED", proc.stdout[-3000:]
    for name in ("test_paper_form_raises", "test_paper_form_agrees_unexpectedly", "test_record_missing",
                 "test_max_checks_overflow"):
        assert outcomes.get(name) == "FAILED", (name, proc.stdout[-3000:])
    assert proc.returncode != 0  # the suite as a whole fails


def test_old_bare_xfail_swallowed_a_crash(mini):
    """What the issue found: under a bare strict xfail, a crashing paper form looked like the finding."""
    proc, outcomes = mini
    assert outcomes.get("test_old_bare_xfail") == "XFAIL", proc.stdout[-3000:]


def test_no_bare_xfail_in_the_validation_suite():
    """Every expected disagreement is an assertion; an xfail, if ever needed, must name raises=AssertionError."""
    for path in sorted(VALIDATION.glob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "xfail(" in line:
                assert "raises=AssertionError" in line and "strict=True" in line, f"{path.name}:{lineno}: {line}"


def test_every_paper_record_states_its_expectation():
    """Paper-form records in the suite are recorded with expected="disagrees" (or none, when unresolvable)."""
    for path in sorted(VALIDATION.glob("test_*.py")):
        text = path.read_text()
        for m in re.finditer(r'report\.check\(|fam\.check\(', text):
            call = text[m.start(): text.find(")\n", m.start())]
            if '"paper"' in call and "expected=" not in call:
                pytest.fail(f"{path.name}: a paper-form record without expected=: {call[:120]}")


# The engine warm-up of validation/conftest.py (issue 10): a child that fails is reported, one still
# compiling at the end of the session is stopped.  Each mini suite records one check, so that the
# report (and the warning in it) is printed.
_ONE_RECORD = '''
def test_one_record(report, request):
    report.register_family("iid", alpha=1e-4, max_checks=1)
    report.check("7", "q", "exact", {}, 1.0, 1.0, 0.01, family="iid")
    child = request.config._warptheory_warmup
    {wait}
'''


def test_failed_warmup_is_reported_as_a_warning(tmp_path):
    tests = _ONE_RECORD.replace("{wait}", "child.wait(timeout=240)  # let it fail before the session ends")
    proc, outcomes = _run_mini_suite(tmp_path, tests, conftest_tail='WARMUP_ORDER = ("no-such-loop",)\n', warmup="1")
    assert outcomes.get("test_one_record") == "PASSED", proc.stdout[-3000:]
    assert proc.returncode == 0, proc.stdout[-3000:]  # a failed warm-up costs time, not the verdicts
    assert "warning: the engine warm-up process failed" in proc.stdout, proc.stdout[-3000:]
    assert "entries: expected keys of LOOPS" in proc.stdout, proc.stdout[-3000:]


def test_running_warmup_is_stopped_at_session_end(tmp_path):
    """A child still running when the tests are done is killed, not waited for, and not reported
    as a failure.  (The child here sleeps for ten minutes: without the kill the run would outlast
    its 120 s timeout.)"""
    sleeping_child = '''
        class _SleepingWarmup:
            errors = staticmethod(warmup.errors)

            @staticmethod
            def start(entries):
                import subprocess, sys, tempfile
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                child.error_file = tempfile.TemporaryFile(mode="w+")
                return child


        warmup = _SleepingWarmup
    '''
    tests = _ONE_RECORD.replace("{wait}", "assert child.poll() is None; (pathlib.Path.cwd() / 'pid').write_text(str(child.pid))")
    tests = "import pathlib\n" + tests
    proc, outcomes = _run_mini_suite(tmp_path, tests, conftest_tail=sleeping_child, warmup="1", timeout=120)
    assert outcomes.get("test_one_record") == "PASSED", proc.stdout[-3000:]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "warm-up process failed" not in proc.stdout, proc.stdout[-3000:]
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
