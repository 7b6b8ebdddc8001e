"""Running many seeds: a resumable result store, executors, progress bars.

Every run (one configuration, one seed) is a :class:`Task`. Its result is written to
``OUT/runs/<key>/seed-<s>.json`` atomically (a temporary file, then :func:`os.replace`) by
the process that collects the results, so an interrupted experiment leaves only whole
files, and a rerun with the same OUT skips every task whose file exists. The key is a hash
of the task's configuration: two experiments that need the same run (the skip ablation and
Table 1 share a row) share its file.

Tasks run in this process (``executor=None``), on any :class:`concurrent.futures.Executor`,
on a Dask cluster (a :class:`distributed.Client`, or its scheduler address as a string),
or on a pool made from a short address: ``serial``, ``threads:N``, ``processes:N``.

>>> import tempfile
>>> store = ResultStore(tempfile.mkdtemp())
>>> t = Task("demo", {"a": 1}, seed=0)
>>> store.has(t), store.write(t, {"value": 2}), store.has(t), store.read(t)["value"]
(False, None, True, 2)
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Task", "ResultStore", "make_executor", "run_tasks", "progress_bar", "atomic_write_bytes",
           "atomic_write_text", "json_safe"]


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Task:
    """One unit of work: a named configuration (JSON-able dict) and a seed."""

    name: str
    config: dict = field(hash=False)
    seed: int = 0

    @property
    def key(self) -> str:
        digest = hashlib.sha1(_canonical(self.config).encode()).hexdigest()[:12]
        slug = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in self.name)[:60]
        return f"{slug}-{digest}"

    @property
    def filename(self) -> str:
        return f"seed-{self.seed}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value):
    """Non-finite floats become strings ("inf", "nan"): JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class ResultStore:
    """Finished tasks under ``root/runs``: one JSON per task, plus optional binary attachments."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def path(self, task: Task, suffix: str = ".json") -> Path:
        return self.runs / task.key / f"{task.filename}{suffix}"

    def has(self, task: Task) -> bool:
        return self.path(task).is_file()

    def read(self, task: Task) -> dict:
        with open(self.path(task), encoding="utf-8") as f:
            return json.load(f)

    def write(self, task: Task, result: dict, attachments: dict | None = None) -> None:
        """Attachments (suffix → bytes) first, the JSON last: the JSON marks the task finished."""
        for suffix, data in (attachments or {}).items():
            atomic_write_bytes(self.path(task, suffix), data)
        record = {"task": {"name": task.name, "seed": task.seed, "key": task.key, "config": task.config}}
        record.update(result)
        atomic_write_text(self.path(task), json.dumps(json_safe(record), indent=1, allow_nan=False))


def progress_bar(total: int, desc: str, enabled: bool = True, leave: bool = True):
    """A tqdm bar on stderr (a plain counter if tqdm is missing); ``update(n)`` and ``close()``."""
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:  # optional dependency
        return _Counter(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=leave)


class _Silent:
    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass


class _Counter(_Silent):
    def __init__(self, total, desc):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, n=1):
        self.n += n
        print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr, flush=True)


_ADDRESS_HELP = ("expected serial, threads:N, processes:N or a Dask scheduler address "
                 "(tcp://host:port, tls://…, inproc://…)")


def make_executor(address) -> tuple[Any, Callable[[], None], int]:
    """(executor or None, close function, workers) for an executor ``address``.

    ``address`` may be None or ``"serial"`` (run in this process), ``"threads:N"``,
    ``"processes:N"`` (spawned processes), a Dask scheduler address, an existing
    :class:`concurrent.futures.Executor`, or a :class:`distributed.Client`.
    Executors and clients passed in are not closed; pools made here are.
    """
    if address is None or address == "serial":
        return None, lambda: None, 1
    if isinstance(address, concurrent.futures.Executor):
        return address, lambda: None, getattr(address, "_max_workers", 1) or 1
    if hasattr(address, "get_executor") and hasattr(address, "scheduler_info"):  # a distributed.Client
        return address.get_executor(), lambda: None, max(1, len(address.scheduler_info().get("workers", {})))
    if not isinstance(address, str):
        raise ValueError(f"--executor: {_ADDRESS_HELP}, got {address!r}")
    kind, _, count = address.partition(":")
    if kind in ("threads", "processes"):
        try:
            n = int(count)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--executor: {kind}:N needs a worker count N ≥ 1, got {address!r}")
        if kind == "threads":
            pool = concurrent.futures.ThreadPoolExecutor(n)
        else:
            import multiprocessing

            # spawn, not fork: torch and numba threads do not survive a fork
            pool = concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
        return pool, lambda: pool.shutdown(wait=True, cancel_futures=True), n
    if "://" in address:
        try:
            import distributed
        except ImportError:
            raise ValueError(f"--executor: {address!r} is a Dask address but dask.distributed is not "
                             "installed (pip install 'warptheory[test]')") from None
        try:
            client = distributed.Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"--executor: cannot reach the Dask scheduler at {address!r} ({exc})") from None
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        return client.get_executor(), client.close, workers
    raise ValueError(f"--executor: {_ADDRESS_HELP}, got {address!r}")


def run_tasks(tasks: list[Task], function: Callable[[dict, int], dict], store: ResultStore, *,
              executor=None, progress: bool = True, desc: str = "runs", runtime: dict | None = None,
              steps_per_task=None) -> list[dict]:
    """Run every task not yet in ``store``; return all results in the order of ``tasks``.

    ``function(config, seed)`` receives the task's configuration plus a ``"runtime"`` entry
    (``runtime``: how, not what, to compute; not part of the key). It must be picklable (a
    module-level function) when the executor runs in other processes, and returns a JSON-able
    dict; an ``"_attachments"`` entry (suffix → bytes) is stored beside the JSON and removed
    from the record. A task that raises stops the experiment; the finished ones stay stored.
    In this process (``executor=None``) a second bar counts the running task's steps through
    ``runtime["progress"]``: ``steps_per_task`` of them (an int, or a function of the task).
    """
    pending = [t for t in tasks if not store.has(t)]
    bar = progress_bar(len(tasks), desc, progress)
    bar.update(len(tasks) - len(pending))
    runtime = dict(runtime or {})

    def finish(task, result):
        attachments = result.pop("_attachments", None)
        store.write(task, result, attachments)
        bar.update(1)

    try:
        if executor is None:
            for task in pending:
                total = steps_per_task(task) if callable(steps_per_task) else steps_per_task
                steps = progress_bar(total, f"{task.name} seed {task.seed}", progress and bool(total), leave=False)
                try:
                    result = function(dict(task.config, runtime=dict(runtime, progress=steps.update)), task.seed)
                finally:
                    steps.close()
                finish(task, result)
        else:
            futures = {executor.submit(function, dict(t.config, runtime=runtime), t.seed): t for t in pending}
            try:
                for future in concurrent.futures.as_completed(futures):
                    finish(futures[future], future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
    return [store.read(t) for t in tasks]
