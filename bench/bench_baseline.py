"""The Numba engine against itself at an earlier git revision, in one process, interleaved round by round.

Run:  python bench/bench_baseline.py [--rev 822cbf3] [--plain NAME] [--rounds 25] [--threads 2] [--all | --small]

Not part of CI.  Issue 11 asks that the engine lose no speed, and its goals are ratios to torch
``grid_sample``; but torch's own time on this machine moves by up to 40 % between runs (bench/RESULTS.md,
seventh to ninth passes), so two separate runs cannot tell an engine regression from a slow torch run.
This script loads the package as it was at ``--rev`` (default 822cbf3, main before issue 11's
restructure) under the name ``warptheory_baseline``, next to the working tree's ``warptheory``, checks
that both give bitwise the same results on each case, and then times, in every round, the baseline,
ours and torch in turn (minimum of 3 calls each; baseline and ours swap places every round).  It prints
medians over the rounds and the paired ratio baseline / ours per round (its median and quartiles): > 1
means ours is faster.  ``--rev HEAD`` with a clean tree is an A/A run: it shows the noise floor.

Cases: issue 11's goal rows (2-D, B = 8, N = 16, 128², float32, tri, zeros, σ = 0.7 and 2);
``--all`` adds the other rows of bench_warp.py; ``--small`` runs small problems instead (:data:`SMALL`:
one channel, and the validation suite's Monte-Carlo shapes).  The baseline's sources are taken with
``git archive`` into ``~/.cache/warptheory/bench-baseline/<commit>/`` (its numba cache stays there between
runs) and its absolute imports renamed; the script stops if any ``warptheory`` module is loaded while the
baseline runs alone.

``--plain NAME`` makes the baseline the engine at ``--rev`` (default ``HEAD``) with one vector intrinsic
of :mod:`warptheory.engines.simd` (``gather4``, ``prefetch``, ...) replaced by its plain loop, the others
kept: base/ours is then what that piece of hand-written IR buys (the style rule: it must pay for itself).
The plain loops are bitwise the intrinsics (tests/test_simd.py), so the bitwise column must read yes.  A
row that does not reach the intrinsic shows the comparison's noise.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

from bench_warp import cases, cpu_model, problem, rounds_parser, timeit, torch_calls

BASELINE = "warptheory_baseline"
# Small problems, where per-call and tap costs dominate: (name, B, N, spatial, dtype, kernel, σ) as in cases().
SMALL = [
    ("1-D f32 tri σ=0.7 N=1", 8, 1, (16384,), np.float32, "tri", 0.7),
    ("2-D f32 tri σ=0.7 N=1", 8, 1, (128, 128), np.float32, "tri", 0.7),
    ("1-D f64 tri σ=0.05 N=1 1024 B4", 4, 1, (1024,), np.float64, "tri", 0.05),
    ("1-D f64 cos σ=0.2 N=4 1024 B4", 4, 4, (1024,), np.float64, "cos", 0.2),
    ("2-D f64 tri σ=0.5 N=3 48² B4", 4, 3, (48, 48), np.float64, "tri", 0.5),
    ("2-D f64 tri σ=0.5 N=4 32² B4", 4, 4, (32, 32), np.float64, "tri", 0.5),
]
INTRINSICS = ["gather4", "corner_sums4", "scatter4", "prefetch", "transpose8x16", "gather_channel_last8",
              "scatter_channel_last16", "from_channel_last8"]
_ABSOLUTE = re.compile(r"""(?<=from )warptheory\b|(?<=import )warptheory\b|(?<=["'])warptheory(?=\.)""")


def baseline_package(rev, plain=None):
    """The directory holding ``warptheory_baseline``, the package at git revision ``rev`` (with the
    Numba engine calling ``simd.plain_<plain>`` instead of the intrinsic ``plain``, if given)."""
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True,
                            cwd=root).stdout.strip()
    if not commit:
        sys.exit(f"bench_baseline.py: --rev: {rev!r} is not a commit of {root}")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "warptheory",
                         "bench-baseline")
    target = os.path.join(cache, commit if plain is None else f"{commit}-plain-{plain}")
    if os.path.isdir(os.path.join(target, BASELINE)):
        return target, commit
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "warptheory"], capture_output=True,
                             check=True, cwd=root).stdout
    os.makedirs(cache, exist_ok=True)
    staging = tempfile.mkdtemp(dir=cache)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(staging, filter="data")
    os.rename(os.path.join(staging, "warptheory"), os.path.join(staging, BASELINE))
    for folder, _, files in os.walk(os.path.join(staging, BASELINE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if plain is not None and name == "numba_cpu.py":
                    text, count = re.subn(rf"\bengine_{plain} as ", f"plain_{plain} as ", text)
                    if count != 1:
                        shutil.rmtree(staging)
                        sys.exit(f"bench_baseline.py: --plain: {plain!r} is imported {count} times at {rev}, not once")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(_ABSOLUTE.sub(BASELINE, text))
    if plain is not None and not os.path.isfile(os.path.join(staging, BASELINE, "engines", "numba_cpu.py")):
        shutil.rmtree(staging)
        sys.exit(f"bench_baseline.py: --plain: {rev!r} has no warptheory/engines/numba_cpu.py")
    os.rename(staging, target)
    return target, commit


def results(wt, x, eps, g, kernel):
    return [wt.warp(x, eps, kernel), *wt.warp_backward(x, eps, g, kernel)]


def main(argv=None):
    parser, check = rounds_parser(__doc__.splitlines()[0], rounds=25)
    parser.add_argument("--rev", default=None,
                        help="git revision of the baseline engine (default: 822cbf3, or HEAD with --plain)")
    parser.add_argument("--plain", choices=INTRINSICS, help="the baseline calls this intrinsic's plain loop")
    rows = parser.add_mutually_exclusive_group()
    rows.add_argument("--all", action="store_true", help="every row of bench_warp.py, not only the goal rows")
    rows.add_argument("--small", action="store_true", help="the small problems of SMALL instead")
    args = check(parser.parse_args(argv))

    import numba
    import torch

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.threads)
    rev = args.rev or ("HEAD" if args.plain else "822cbf3")
    folder, commit = baseline_package(rev, args.plain)
    sys.path.insert(0, folder)
    import warptheory_baseline as base

    chosen = SMALL if args.small else cases() if args.all else [c for c in cases() if "(goal)" in c[0]]
    for case in chosen:  # the baseline alone first: every lazy import it makes must be its own
        results(base, *problem(case))
    leaked = sorted(name for name in sys.modules if name == "warptheory" or name.startswith("warptheory."))
    if leaked:
        sys.exit(f"bench_baseline.py: the baseline loaded {leaked}: an import was not renamed")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import warptheory as ours

    load = os.getloadavg()[0]
    variant = f" with plain {args.plain}" if args.plain else ""
    print(f"engine at {commit[:10]}{variant} (baseline) against the working tree: {cpu_model()},\n"
          f"  threads={args.threads}, numba {numba.__version__}, torch {torch.__version__}, rounds={args.rounds}, "
          f"load average {load:.1f} at start")
    header = (f"{'case':30s} {'':4s} {'base ms':>8s} {'ours ms':>8s} {'torch ms':>9s} {'base ×torch':>11s} "
              f"{'ours ×torch':>11s} {'base/ours':>9s} {'[q25, q75]':>14s} bitwise")
    print(header)
    for case in chosen:
        name = case[0]
        x, eps, g, kernel = problem(case)
        same = all(a.tobytes() == b.tobytes() for a, b in zip(results(base, x, eps, g, kernel),
                                                               results(ours, x, eps, g, kernel)))
        torch_fwd, torch_fb = torch_calls(torch, x, eps, g)

        def engine_fb(wt):
            return lambda: (wt.warp(x, eps, kernel), wt.warp_backward(x, eps, g, kernel))

        timed = {
            ("fwd", "base"): lambda: base.warp(x, eps, kernel), ("fwd", "ours"): lambda: ours.warp(x, eps, kernel),
            ("fwd", "torch"): torch_fwd,
            ("f+b", "base"): engine_fb(base), ("f+b", "ours"): engine_fb(ours), ("f+b", "torch"): torch_fb,
        }
        for f in timed.values():
            f()
        samples = {key: [] for key in timed}
        for round_ in range(args.rounds):
            # the two engines swap places every round: with a fixed order the second one ran up to 13 %
            # faster with the same code (an A/A run, bench/RESULTS.md twelfth pass)
            engines = ("base", "ours") if round_ % 2 == 0 else ("ours", "base")
            for what in ("fwd", "f+b"):
                for who in (*engines, "torch"):
                    samples[what, who].append(1e3 * timeit(timed[what, who], 3, warmup=0)[1])  # min of 3 calls
        for what in ("fwd", "f+b"):
            b, o, t = (samples[what, who] for who in ("base", "ours", "torch"))
            paired = [u / v for u, v in zip(b, o)]
            q25, q75 = np.percentile(paired, [25, 75])
            med = statistics.median
            print(f"{name:30s} {what:4s} {med(b):8.2f} {med(o):8.2f} {med(t):9.2f} "
                  f"{med([u / v for u, v in zip(t, b)]):11.2f} {med([u / v for u, v in zip(t, o)]):11.2f} "
                  f"{med(paired):9.3f} [{q25:5.3f}, {q75:5.3f}] {'yes' if same else 'NO'}")
    print("ms: medians over the rounds (each the minimum of 3 calls); × torch and base/ours: medians of the "
          "per-round ratios, > 1 means the second is faster; bitwise: warp and both gradients equal byte for byte")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
