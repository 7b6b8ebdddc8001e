"""Threads for the suite's independent replicates (``pytest validation`` runs on 2 cores).

The engine and the jitted loops release the GIL, so replicates run concurrently in threads; each
thread runs the engine single-threaded (Numba's thread count is per thread), so the two levels of
parallelism do not oversubscribe the cores.  Results do not depend on the executor: every
replicate draws from its own :class:`numpy.random.SeedSequence` child (``tests/test_montecarlo.py``
checks run_iid bitwise against a serial run).
"""
from __future__ import annotations

import concurrent.futures

import numba

#: threads per pool: the cores of the machine the suite is sized for
WORKERS = 2


class OneEngineThreadEach(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose tasks each run Numba on one thread (no nested parallelism)."""

    def __init__(self, workers: int = WORKERS):
        super().__init__(max_workers=workers)

    def submit(self, fn, /, *args, **kwargs):
        def task():
            numba.set_num_threads(1)
            return fn(*args, **kwargs)
        return super().submit(task)


def map_threads(fn, items):
    """``[fn(item) for item in items]``, concurrently, in order."""
    with OneEngineThreadEach() as pool:
        return [f.result() for f in [pool.submit(fn, item) for item in items]]
