"""Golden outputs of the functional warp API, recorded before the engine restructure (issue 11).

``tests/data/warp_golden.json`` holds, for every built-in kernel and a user kernel, every padding,
float32 and float64 and d = 1, 2, 3, the SHA-256 of each of the six outputs (warp y, its grad_x
and grad_eps, unwarp y, its grad_x and grad_eps) on a problem whose inputs come from exact
integer arithmetic (so that they do not depend on numpy's random streams), with NaN, ±inf,
kink (integer and half-integer), huge (1e6, 1e17) and off-lattice offsets planted.

The file was made with the engine of commit 822cbf3 (before the restructure) on this project's
2-core x86-64 machine (AVX-512, FMA), by::

    PYTHONPATH=<a checkout of 822cbf3> python tests/warp_golden.py tests/data/warp_golden.json

The cases of ``SHAPES_REMAINDER`` were added later the same way, with 822cbf3 on an AMD EPYC (FMA,
no AVX-512), where that run reproduced every earlier entry of the file.

The results depend on the CPU only through fused multiply-adds (the engine allows LLVM to
contract ``a*b + c``), so the comparison is skipped on a CPU without FMA.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import sys

import numpy as np

KERNELS = ("tri", "cos", "rect", "hann", "sqrt_tri", "smoothstep")
PADDINGS = ("zeros", "periodic", "border")
DTYPES = ("float32", "float64")
# (batch, channels, spatial): 2-D covers the channel-last paths (8 channels), the four-channel
# plane loops and a single remainder channel, and more than one block of 512 positions.
SHAPES = {1: (2, 5, (37,)), 2: (2, 13, (23, 29)), 3: (2, 5, (4, 5, 3))}
# More 1-D shapes for the 1-D fast path (added later, recorded with the same engine): several
# blocks of 512 positions with eight channels and a remainder, a line of one point (no position
# has both taps inside) and one of two (only floor 0 has).
SHAPES_1D = {"long": (3, 9, (1100,)), "one": (2, 6, (1,)), "two": (2, 5, (2,))}
# Shapes whose channels end in a remainder of three (added with the three-channel sweeps, recorded
# with the same engine): seven channels, a four-channel sweep then three (the scatter's channel
# groups too, at one thread or two), and in 2-D eleven, the channel-last group of eight then three.
SHAPES_REMAINDER = {
    "seven": {d: (2, 7, spatial) for d, (_, _, spatial) in SHAPES.items()},
    "eleven": {2: (2, 11, (23, 29))},
}
OUTPUTS = ("warp_y", "warp_grad_x", "warp_grad_eps", "unwarp_y", "unwarp_grad_x", "unwarp_grad_eps")
SPECIAL = (np.nan, np.inf, -np.inf, 2.0, -1.5, 0.0, 1e6, -1e17)


def kernel(name):
    from warptheory.kernels import get_kernel

    if name != "smoothstep":
        return get_kernel(name)
    import sympy as sp

    from warptheory.kernels import T, kernel_from_sympy, on_support

    return kernel_from_sympy(on_support(1 - 3 * T**2 + 2 * sp.Abs(T) ** 3), name="smoothstep")


def _values(count, salt, modulus, scale):
    """Exactly reproducible values in [-scale, scale]: integer arithmetic, one division."""
    k = np.arange(count, dtype=np.int64)
    return ((k * 7919 + salt * 104729) % modulus - modulus // 2) * (2.0 * scale / modulus)


def problem(d, dtype, salt, shape=None):
    """x, eps, grad_y for ``d`` (of ``SHAPES_1D[shape]`` or ``SHAPES_REMAINDER[shape][d]`` when given);
    every seventh offset is replaced by one of :data:`SPECIAL`."""
    if shape is None:
        batch, channels, spatial = SHAPES[d]
    else:
        batch, channels, spatial = SHAPES_REMAINDER[shape][d] if shape in SHAPES_REMAINDER else SHAPES_1D[shape]
    x = _values(batch * channels * int(np.prod(spatial)), salt, 2003, 2.0).reshape(batch, channels, *spatial)
    g = _values(x.size, salt + 1, 1999, 1.5).reshape(x.shape)
    eps = _values(batch * d * int(np.prod(spatial)), salt + 2, 4001, 3.0).reshape(batch, d, *spatial)
    flat = eps.reshape(-1)
    planted = np.arange(3, flat.size, 7)
    flat[planted] = np.array(SPECIAL)[np.arange(planted.size) % len(SPECIAL)]
    return x.astype(dtype), eps.astype(dtype), g.astype(dtype)


def digest(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:32]


def cases():
    """``(key, kernel, padding, dtype, d, salt, shape)``: every combination on ``SHAPES[d]``, then
    every combination on each of ``SHAPES_1D`` and of ``SHAPES_REMAINDER`` (shape: its name, None
    for ``SHAPES``)."""
    for salt, (name, padding, dtype, d) in enumerate(itertools.product(KERNELS, PADDINGS, DTYPES, (1, 2, 3))):
        yield f"{name}-{padding}-{dtype}-d{d}", name, padding, dtype, d, salt, None
    combinations = itertools.product(SHAPES_1D, KERNELS, PADDINGS, DTYPES)
    for salt, (shape, name, padding, dtype) in enumerate(combinations, start=1000):
        yield f"{name}-{padding}-{dtype}-d1-{shape}", name, padding, dtype, 1, salt, shape
    remainder = [(shape, d) for shape, by_d in SHAPES_REMAINDER.items() for d in by_d]
    combinations = itertools.product(remainder, KERNELS, PADDINGS, DTYPES)
    for salt, ((shape, d), name, padding, dtype) in enumerate(combinations, start=2000):
        yield f"{name}-{padding}-{dtype}-d{d}-{shape}", name, padding, dtype, d, salt, shape


def outputs(ops, name, padding, dtype, d, salt, shape=None):
    """The six outputs through the functional API ``ops`` (a module with warp, ...)."""
    x, eps, g = problem(d, dtype, salt, shape)
    k = kernel(name)
    y = ops.warp(x, eps, k, padding)
    gx, ge = ops.warp_backward(x, eps, g, k, padding)
    uy = ops.unwarp(x, eps, k, padding)
    ugx, uge = ops.unwarp_backward(x, eps, g, k, padding)
    return dict(zip(OUTPUTS, (y, gx, ge, uy, ugx, uge)))


def compute():
    import warnings

    import warptheory as ops

    golden = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key, name, padding, dtype, d, salt, shape in cases():
            golden[key] = {what: digest(a) for what, a in outputs(ops, name, padding, dtype, d, salt, shape).items()}
    return golden


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        json.dump(compute(), f, indent=1, sort_keys=True)
