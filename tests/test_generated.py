"""warptheory._generated: run-time generated modules, written once under the hash of their source."""
from __future__ import annotations

import os

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


def test_prune_deletes_modules_whose_dependency_changed(tmp_path, monkeypatch):
    """A module naming a dependency whose hash has changed (or that is gone) is deleted, with its
    numba cache files, when a new module of its prefix is written; a current one, one written within
    STALE_AFTER (another version may be about to import it), one without dependencies and one of
    another prefix are kept."""
    monkeypatch.setattr(_generated, "folder", lambda: tmp_path)
    monkeypatch.setattr(_generated, "_MODULES", {})
    dependency = tmp_path / "engine_source.py"
    dependency.write_text("X = 1\n")
    gone = tmp_path / "gone.py"
    gone.write_text("Y = 1\n")

    def module_file(body, prefix="taps"):
        module = _generated.load(body, prefix)
        return tmp_path / f"{module.__name__.removeprefix('warptheory_generated_')}.py"

    stale = module_file(_generated.depends_line(dependency) + "\nA = 1\n")
    stale_recent = module_file(_generated.depends_line(dependency) + "\nB = 1\n")
    orphan = module_file(_generated.depends_line(gone) + "\nC = 1\n")
    plain = module_file("D = 1\n")
    other_prefix = module_file(_generated.depends_line(dependency) + "\nE = 1\n", prefix="kernel")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    stale_cache = [cache / f"{stale.stem}.axis_weights-12.py311.nbi", cache / f"{stale.stem}.axis_weights-12.py311.1.nbc"]
    for path in stale_cache:
        path.write_bytes(b"")
    dependency.write_text("X = 2\n")
    gone.unlink()
    _generated.file_digest.cache_clear()
    old = 0.0
    for path in (stale, orphan, plain, other_prefix):
        os.utime(path, (old, old))

    current = module_file(_generated.depends_line(dependency) + "\nF = 1\n")

    assert not stale.exists() and not orphan.exists()
    assert not any(path.exists() for path in stale_cache)
    assert stale_recent.exists() and plain.exists() and other_prefix.exists() and current.exists()
    assert _generated.prune(tmp_path, "taps") == []  # nothing left to delete


def test_prune_keeps_a_module_whose_dependency_is_unchanged(tmp_path):
    dependency = tmp_path / "engine_source.py"
    dependency.write_text("X = 1\n")
    module = tmp_path / "taps_0123.py"
    module.write_text(_generated.depends_line(dependency) + "\n")
    os.utime(module, (0.0, 0.0))
    assert _generated.prune(tmp_path, "taps") == [] and module.exists()
    dependency.write_text("X = 2\n")
    assert _generated.prune(tmp_path, "taps") == [module] and not module.exists()
