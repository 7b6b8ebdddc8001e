"""Compile the Numba engine's parallel loops ahead of use, in another process (``paper_notes/engines.md``).

A cold process spends minutes compiling the engine (``bench/RESULTS.md``): each parallel loop
compiles once per dtype (and the tap stage once per kernel), single-threaded, and then sits in
numba's disk cache.  :func:`start` compiles a list of loops in a child process while the caller
goes on; a loop the caller reaches after the child has cached it is loaded from disk instead of
compiled.  Nothing is computed, so results cannot change: the caller runs the same compiled code,
whichever process compiled it.  Where the engine caches nothing on disk (its vector intrinsics
unavailable) there is nothing to share and the child compiles nothing.

Entries are loop names (:data:`LOOPS`) and ``("taps", kernel)`` for a kernel's tap weights (a
kernel name, or :func:`warptheory.kernels.kernel_spec` of any kernel).  Give them in the reverse
order of the caller's first use, so the two processes meet once, at the end.

>>> sorted(LOOPS)[:3]
['floors', 'gather', 'gather_channel_last']
"""
from __future__ import annotations

import subprocess
import sys
import tempfile

__all__ = ["LOOPS", "errors", "precompile", "start"]

#: loop name -> engine function (warptheory.engines.numba_cpu)
LOOPS = {
    "floors": "_axis_floors",
    "gather": "_gather",
    "gather_channel_last": "_gather_2d_channel_last",
    "gather_tri": "_gather_tri_2d",
    "position_derivative": "_position_derivative",
    "scatter": "_scatter",
    "scatter_channel_last": "_scatter_2d_channel_last",
    "tri_taps": "_tri_taps",
}


def _signatures(dtype):
    """Argument types of each loop as the engine calls it (C-contiguous arrays; tap arrays float64)."""
    from numba import types

    def array(scalar, ndim):
        return types.Array(scalar, ndim, "C")

    data = array(getattr(types, dtype), 3)
    base, weights, spatial = array(types.int32, 3), array(types.float64, 4), array(types.int64, 1)
    acc = array(types.float64, 3)
    i64, flag = types.int64, types.boolean
    return {
        "gather": (data, base, weights, spatial, i64, data),
        "gather_channel_last": (data, data, data, base, weights, spatial, i64, data),
        "gather_tri": (data, data, base, weights, spatial, i64, data),
        "position_derivative": (data, data, base, weights, weights, spatial, i64, flag, data),
        "scatter": (data, base, weights, spatial, i64, i64, data),
        "scatter_channel_last": (data, base, weights, spatial, i64, acc, data),
        "tri_taps": (data, spatial, i64, base, weights),
        "floors": (data, spatial, flag, spatial, i64, base, weights),
        "taps": (flag, flag, weights, weights),
    }


def precompile(entries, dtype="float64"):
    """Compile (or load from numba's disk cache) the engine loops ``entries``, in order, for
    ``dtype`` ("float32" or "float64").

    Parameters
    ----------
    entries : sequence
        Keys of :data:`LOOPS`, or ``("taps", spec)`` with ``spec`` a kernel name or a
        :func:`warptheory.kernels.kernel_spec`.
    dtype : str
        The data's dtype (offsets share it; the tap arrays are float64 whatever it is).
    """
    from ..kernels import kernel_from_spec
    from . import numba_cpu

    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    signatures = _signatures(dtype)
    for entry in entries:
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == "taps":
            function, signature = numba_cpu._axis_taps_for(kernel_from_spec(entry[1])), signatures["taps"]
        elif isinstance(entry, str) and entry in LOOPS:
            function, signature = getattr(numba_cpu, LOOPS[entry]), signatures[entry]
        else:
            raise ValueError(f"entries: expected keys of LOOPS or ('taps', kernel spec), got {entry!r}")
        function.compile(signature)


def start(entries, dtype="float64"):
    """:func:`precompile` in a child process, a :class:`subprocess.Popen` whose stderr goes to a
    temporary file (:func:`errors`; wait on the child, or kill it, before exiting).  The child
    compiles nothing where the engine keeps no disk cache to share."""
    # lowest priority: it only takes a core the caller leaves idle (compiling, or single-threaded)
    code = ("import os\n"
            "if hasattr(os, 'nice'): os.nice(19)\n"
            "from warptheory.engines import numba_cpu, warmup\n"
            f"if numba_cpu._CACHE: warmup.precompile({list(entries)!r}, {dtype!r})")
    # a file, not a pipe: a child that warns a lot must not block on a full pipe
    error_file = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=error_file)
    child.error_file = error_file
    return child


def errors(child):
    """What the finished child of :func:`start` wrote to stderr."""
    child.error_file.seek(0)
    return child.error_file.read()
