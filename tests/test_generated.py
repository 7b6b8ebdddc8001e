"""warptheory._generated: run-time generated modules, written once under the hash of their source."""
from __future__ import annotations

from warptheory import _generated

SOURCE = "VALUE = 41 + 1\n"


def test_same_source_same_module_and_file(tmp_path, monkeypatch):
    """One file per source, named by its hash, imported once per process; a planted second write with
    other text would change the digest and so the file name."""
    monkeypatch.setattr(_generated, "folder", lambda: tmp_path)
    monkeypatch.setattr(_generated, "_MODULES", {})
    first = _generated.load(SOURCE, "unit")
    assert first is _generated.load(SOURCE, "unit")
    assert first.VALUE == 42 and first.ON_DISK is True
    files = list(tmp_path.glob("unit_*.py"))
    assert len(files) == 1 and files[0].read_text() == SOURCE
    other = _generated.load(SOURCE + "OTHER = 1\n", "unit")
    assert other is not first and len(list(tmp_path.glob("unit_*.py"))) == 2


def test_no_writable_folder_runs_in_memory(monkeypatch):
    """Where no folder can be written the source runs in memory and says so (numba then compiles
    without a disk cache), rather than failing."""
    monkeypatch.setattr(_generated, "folder", lambda: None)
    monkeypatch.setattr(_generated, "_MODULES", {})
    module = _generated.load(SOURCE, "memory")
    assert module.VALUE == 42 and module.ON_DISK is False


def test_folder_skips_unwritable_candidates(tmp_path, monkeypatch):
    """The first writable candidate is used; a file where a folder should be is skipped."""
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    good = tmp_path / "good"
    monkeypatch.setattr(_generated, "_candidates", lambda: iter([blocked / "generated", good]))
    _generated.folder.cache_clear()
    try:
        assert _generated.folder() == good
    finally:
        _generated.folder.cache_clear()
