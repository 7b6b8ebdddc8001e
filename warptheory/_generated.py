"""Run-time generated Numba code that numba can cache on disk (kernels from sympy, their engine taps).

Numba's ``cache=True`` needs a function defined in a source file: it keys the cache on that
file, the function's line and bytecode, and the argument types.  Code generated at run time
(a kernel's φ printed by sympy, the engine's tap loop specialised on it) is therefore written
once to a file named by the SHA-256 of its source and imported from there; the next process
that needs the same source finds the file and numba's cache beside it, and skips compiling.
The key is the source text, so two kernels with the same expressions share one file whatever
their names or how they were built; the source carries, as a comment, the hash of any code it
calls into (:func:`file_digest`), so editing that code gives a new file, never a stale cache.

A source that depends on a file of the package names it in a line ``# depends: <absolute path>
<sha256>`` (:func:`depends_line`).  Once that file changes, the module's name can never be asked for
again; :func:`prune` deletes such stale modules and numba's cache files beside them (in
``__pycache__``; under ``$NUMBA_CACHE_DIR`` numba keeps its files elsewhere, and they stay) whenever a
new module of the same prefix is written (an upgrade or an edit), so the folder does not grow with
every version.

Folder: ``$NUMBA_CACHE_DIR/warptheory-generated`` when that variable is set (numba keeps its own
cache there too), else ``__pycache__/generated`` inside the package, else
``$XDG_CACHE_HOME/warptheory/generated`` (``~/.cache/...``); where none is writable the source is
executed in memory and compiled every process, as numba would without a cache.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pathlib
import re
import sys
import tempfile
import time
import types

_PACKAGE = pathlib.Path(__file__).resolve().parent


def _candidates():
    if os.environ.get("NUMBA_CACHE_DIR"):
        yield pathlib.Path(os.environ["NUMBA_CACHE_DIR"]) / "warptheory-generated"
    yield _PACKAGE / "__pycache__" / "generated"
    yield pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "warptheory" / "generated"


@functools.lru_cache(maxsize=1)
def folder() -> pathlib.Path | None:
    """The first writable folder of the list above, or None."""
    for path in _candidates():
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                pass
        except OSError:
            continue
        return path
    return None


@functools.lru_cache(maxsize=None)
def file_digest(path) -> str:
    """SHA-256 of a source file (for the dependency comment of a generated module)."""
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def depends_line(path) -> str:
    """The ``# depends:`` line naming source file ``path`` and its current SHA-256."""
    path = pathlib.Path(path).resolve()
    return f"# depends: {path} {file_digest(path)}"


_DEPENDS = re.compile(r"^# depends: (.+) ([0-9a-f]{64})$", re.MULTILINE)
#: Seconds a stale module is left alone after it was written: a process of another version that
#: shares the folder may have just written it and not yet imported it.
STALE_AFTER = 3600.0


def _is_stale(source: str) -> bool:
    """Whether one of the ``# depends:`` files of ``source`` is gone or no longer has the named hash."""
    for name, digest in _DEPENDS.findall(source):
        try:
            if hashlib.sha256(pathlib.Path(name).read_bytes()).hexdigest() != digest:
                return True
        except OSError:
            return True
    return False


def prune(where: pathlib.Path, prefix: str, now: float | None = None) -> list:
    """Delete the stale modules ``<where>/<prefix>_*.py`` (:func:`_is_stale`, written at least
    :data:`STALE_AFTER` seconds before ``now``) and their files in ``<where>/__pycache__``; return the
    paths deleted.  Files that cannot be read or deleted are skipped."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(where.glob(f"{prefix}_*.py")):
        try:
            if now - path.stat().st_mtime < STALE_AFTER or not _is_stale(path.read_text()):
                continue
        except (OSError, UnicodeDecodeError):
            continue
        for victim in [path, *sorted((where / "__pycache__").glob(f"{path.stem}.*"))]:
            try:
                victim.unlink()
            except OSError:
                continue
            removed.append(victim)
    return removed


_MODULES: dict = {}


def load(source: str, prefix: str) -> types.ModuleType:
    """The module made of ``source``, imported from ``<folder>/<prefix>_<sha256[:24]>.py`` (written if absent).

    Same source, same module object within a process.  The file is written to a temporary name and
    renamed into place, so processes racing to create it see either no file or the whole file.  The
    source sees a global ``ON_DISK``: whether it is imported from a file (pass it as numba's ``cache``).
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    name = f"warptheory_generated_{prefix}_{digest}"
    module = _MODULES.get(name)
    if module is not None:
        return module
    where = folder()
    if where is None:
        module = types.ModuleType(name)
        module.ON_DISK = False
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - source generated by warptheory
    else:
        path = where / f"{prefix}_{digest}.py"
        if not path.is_file() or path.read_text() != source:
            fd, tmp = tempfile.mkstemp(dir=where, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(source)
            os.replace(tmp, path)
            prune(where, prefix)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        module.ON_DISK = True
        sys.modules[name] = module  # numba rebuilds a cached function's globals from its module
        spec.loader.exec_module(module)
    _MODULES[name] = module
    return module
