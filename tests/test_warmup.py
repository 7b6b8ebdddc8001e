"""warptheory.engines.warmup: it compiles exactly the signatures the engine then uses, and its
child process runs.

A warm-up that compiled a different signature (another dtype, layout or argument type) would
cost the caller nothing but help nothing either; the signature test catches it: change any
type in ``warmup._signatures`` and it fails.
"""
from __future__ import annotations

import numpy as np
import pytest

import warptheory
from warptheory.engines import numba_cpu, warmup
from warptheory.kernels import get_kernel


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_signatures_are_those_the_engine_compiles(dtype):
    rng = np.random.default_rng(0)

    def exercise(kernel, d, channels, batch):
        shape = (batch, channels) + (6,) * d
        x = rng.standard_normal(shape).astype(dtype)
        eps = (0.7 * rng.standard_normal((batch, d) + shape[2:])).astype(dtype)
        warptheory.warp(x, eps, kernel=kernel)  # the functional forward (bilinear: gather_tri)
        warptheory.warp_backward(x, eps, x, kernel=kernel)  # its taps in a pass of their own (tri_taps)
        plan = warptheory.warp_plan(eps, kernel=kernel)
        plan.warp(x)  # a bilinear 2-D plan's taps come out of this forward
        plan.backward(x, x)

    exercise("tri", 2, 16, 2)  # channel-last gather and scatter, tri taps, position derivative
    exercise("tri", 2, 1, 1)  # the plane gather of a bilinear forward
    exercise("cos", 1, 1, 1)  # the floors, a kernel's tap weights, the plane gather and scatter
    signatures = warmup._signatures(dtype)
    for name, function in warmup.LOOPS.items():
        assert signatures[name] in getattr(numba_cpu, function).signatures, name
    assert signatures["taps"] in numba_cpu._axis_taps_for(get_kernel("cos")).signatures


def test_precompile_rejects_bad_entries():
    with pytest.raises(ValueError, match="entries: expected keys of LOOPS"):
        warmup.precompile(["gathr"])
    with pytest.raises(ValueError, match="entries: expected keys of LOOPS"):
        warmup.precompile([("taps",)])
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'float64'"):
        warmup.precompile(["gather"], dtype="int32")
    with pytest.raises(ValueError, match="kernel: unknown kernel"):
        warmup.precompile([("taps", "no-such-kernel")])


def test_child_process_compiles_and_exits_cleanly():
    child = warmup.start(["tri_taps", ("taps", "tri")])
    assert child.wait(timeout=600) == 0, warmup.errors(child)


def test_child_failure_is_reported():
    child = warmup.start(["no-such-loop"])
    assert child.wait(timeout=600) != 0
    assert "entries: expected keys of LOOPS" in warmup.errors(child)
