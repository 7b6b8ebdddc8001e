"""What each specialised path of the Numba engine buys: the engine with one path switched off at a time.

Run:  python bench/bench_paths.py [--rounds 15] [--threads 2] [--no-simd]

Not part of CI.  The style rule (``../shared/STYLE.md``) is that a second copy of the maths must pay for
itself; issue 11 asks for a smaller engine (item 8) without losing speed (item 7).  This prints, for each
specialisation, its size in lines and the time of ``warp`` and of ``warp`` + ``warp_backward`` without it,
so the two can be weighed.  Each path is switched off at its Python dispatch point (the engine's own
selection functions, patched in this process), and every variant is first checked to give bitwise the
results of the full engine.

Cases: 2-D, B = 8, 128², float32, tri, zeros; N = 16 at σ = 0.7 and 2 (issue 11's goal rows) and N = 4
(the channel count of the validation suite's Monte-Carlo).  Every round times every variant and torch
``grid_sample`` in turn (minimum of 5 calls each), in reverse order every other round (with a fixed order
the column timed later ran up to 13 % faster with the same code; bench/RESULTS.md, twelfth pass).  The
table gives medians over the rounds of the times and of the per-round ratios; the row "full engine,
again" is the unchanged engine timed a second time in each round, so its ``/ full`` column shows the
comparison's noise floor.

``--no-simd`` runs the same table in a child process whose vector intrinsics fail to compile
(``warptheory.engines.simd`` falls back to its plain loops), with an empty numba cache: minutes of
compiling before the first row.
"""
from __future__ import annotations

import inspect
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from bench_warp import cpu_model, rounds_parser, timeit, torch_calls

CASES = [("N=16 σ=0.7", 16, 0.7), ("N=16 σ=2", 16, 2.0), ("N=4 σ=0.7", 4, 0.7)]

_BREAK_SIMD = """
import llvmlite.ir
def broken(*args, **kwargs):
    raise RuntimeError("vector intrinsics switched off by bench_paths.py --no-simd")
llvmlite.ir.IRBuilder.shuffle_vector = broken
"""


def variants(engine, wt):
    """name -> (patches of the engine module, the functions the path adds)."""
    tri = wt.get_kernel("tri")

    def generic_tri_taps(eps, spatial, padding, base, w):
        engine._axis_floors(eps, spatial, True, spatial, padding, base, w)
        engine._axis_taps_for(tri)(True, False, w, w)

    return {
        "full engine": ({}, []),
        "full engine, again": ({}, []),
        "- channel-last gather": (
            {"_channel_last_workers": lambda *args: 0},
            ["_channel_last_workers", "_to_channel_last", "_gather_block_channel_last", "_prepare_block_2d",
             "_gather_2d_channel_last", "simd.transpose8x16", "simd.gather_channel_last8",
             "simd.plain_transpose8x16", "simd.plain_gather_channel_last8"],
        ),
        "- channel-last scatter": (
            {"_scatter_workers": lambda *args: 0},
            ["_scatter_workers", "_scatter_block_channel_last", "_scatter_2d_channel_last",
             "simd.scatter_channel_last16", "simd.from_channel_last8", "simd.plain_scatter_channel_last16",
             "simd.plain_from_channel_last8"],
        ),
        "- bilinear taps": (
            {"_tri_taps": generic_tri_taps},
            ["_tri_taps_block", "_tri_taps_block_1d", "_tri_taps", "_floor_bounds", "_clipped_floor"],
        ),
        "- both bilinear paths": (
            {"_is_bilinear": lambda kernel: False},
            ["_is_bilinear", "_tri_taps_at", "_tri_block_2d", "_gather_tri_2d", "_gather_scratch_2d",
             "_tri_taps_block", "_tri_taps_block_1d", "_tri_taps", "_floor_bounds", "_clipped_floor"],
        ),
        "- all four": (
            {"_channel_last_workers": lambda *args: 0, "_scatter_workers": lambda *args: 0,
             "_is_bilinear": lambda kernel: False},
            None,
        ),
    }


def source_lines(engine, names):
    """Lines of the named functions (decorators and docstrings included)."""
    from warptheory.engines import simd

    total = 0
    for name in names:
        module, attr = (simd, name[5:]) if name.startswith("simd.") else (engine, name)
        function = getattr(module, attr)
        function = getattr(function, "py_func", getattr(function, "_defn", function))
        total += len(inspect.getsourcelines(function)[0])
    return total


def best_of(fn, calls=5):
    """The fastest of ``calls`` calls, after one to warm up (bench_warp.timeit's minimum)."""
    return timeit(fn, calls, warmup=1)[1]


def run(rounds, threads):
    import numba
    import torch

    import warptheory as wt
    from warptheory.engines import numba_cpu as engine
    from warptheory.engines import simd

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    table = variants(engine, wt)
    original = {name: getattr(engine, name) for patches, _ in table.values() for name in patches}

    def switch(patches):
        for name, value in original.items():
            setattr(engine, name, patches.get(name, value))

    print(f"Numba engine paths: {cpu_model()}, threads={threads}, numba {numba.__version__}, "
          f"torch {torch.__version__}, "
          f"vector intrinsics {'on' if simd.AVAILABLE else 'OFF (' + simd.REASON + ')'}, rounds={rounds}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    times = {}
    for case, channels, sigma in CASES:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(8, channels, 128, 128)).astype(np.float32)
        eps = (sigma * rng.normal(size=(8, 2, 128, 128))).astype(np.float32)
        g = rng.normal(size=x.shape).astype(np.float32)

        def ours():
            return (wt.warp(x, eps, "tri"), *wt.warp_backward(x, eps, g, "tri"))

        switch({})
        want = [a.tobytes() for a in ours()]
        for name, (patches, _) in table.items():
            switch(patches)
            if [a.tobytes() for a in ours()] != want:
                raise AssertionError(f"{name}: results differ from the full engine's")
        torch_forward, torch_both = torch_calls(torch, x, eps, g)

        columns = [*table, "torch grid_sample"]
        for round_ in range(rounds):
            for name in columns if round_ % 2 == 0 else columns[::-1]:
                if name == "torch grid_sample":
                    switch({})
                    timed = (best_of(torch_forward), best_of(torch_both))
                else:
                    switch(table[name][0])
                    timed = (best_of(lambda: wt.warp(x, eps, "tri")),
                             best_of(lambda: (wt.warp(x, eps, "tri"), wt.warp_backward(x, eps, g, "tri"))))
                times.setdefault((case, name), []).append(timed)
    switch({})

    print(f"{'case':11} {'variant':24} {'lines':>5} {'fwd ms':>7} {'f+b ms':>7} {'fwd ×torch':>10} "
          f"{'f+b ×torch':>10} {'fwd / full':>10} {'f+b / full':>10}")
    full, torch_ = "full engine", "torch grid_sample"
    for case, _, _ in CASES:
        def median_ratio(top, bottom, k):
            """Median over the rounds of ``top / bottom`` (k = 0: forward, 1: forward + backward)."""
            return statistics.median(t[k] / b[k] for t, b in zip(times[(case, top)], times[(case, bottom)]))

        for name, (_, functions) in [*table.items(), (torch_, (None, None))]:
            f, fb = (statistics.median(r[k] for r in times[(case, name)]) for k in (0, 1))
            lines = "" if not functions else str(source_lines(engine, functions))
            against_full = ("" if name in (full, torch_) else
                            f"{median_ratio(name, full, 0):10.2f} {median_ratio(name, full, 1):10.2f}")
            print(f"{case:11} {name:24} {lines:>5} {1e3 * f:7.2f} {1e3 * fb:7.2f} "
                  f"{median_ratio(torch_, name, 0):10.2f} {median_ratio(torch_, name, 1):10.2f} {against_full}")
    print("ms: medians over the rounds of the best of 5 calls; ratios: medians of the per-round ratios; × torch > 1: "
          "ours faster; / full > 1: the path pays for itself ('full engine, again': the noise floor)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def main(argv=None):
    parser, check = rounds_parser(__doc__.splitlines()[0], rounds=15)
    parser.add_argument("--no-simd", action="store_true", help="the plain loops instead of the vector intrinsics")
    args = check(parser.parse_args(argv))
    if args.no_simd:
        with tempfile.TemporaryDirectory() as cache:
            code = _BREAK_SIMD + (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
                                  f"import bench_paths; bench_paths.run({args.rounds}, {args.threads})\n")
            return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_CACHE_DIR=cache)).returncode
    run(args.rounds, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
