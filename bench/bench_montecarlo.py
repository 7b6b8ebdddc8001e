"""Monte-Carlo throughput on the validation suite's shapes (samples per second).

Run:  python bench/bench_montecarlo.py [--threads 2] [--rounds 3]

A *sample* is one output position of one image: each gives y and ∇_x L for every channel and
∇_ε L for every axis (one draw of x, ε, ∇_y L and one warp + backward).  Cases are those of
``validation/_iid_grid.py`` (IID grid, eqs 5, 7, 8) and ``validation/test_eq9_selfwarp.py``
(SelfWarp, eq 9); each is timed over 16 replicates, best of ``--rounds`` (the first call of a
kernel compiles and is not timed).  Not part of CI; bench/RESULTS.md records the numbers.
"""
from __future__ import annotations

import argparse
import os
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicates", type=int, default=16)
    args = parser.parse_args(argv)

    import numba

    from warptheory.montecarlo import IIDCase, SelfWarpCase, run_iid, run_selfwarp

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    iid = {
        "iid d1 N1 1024 B4 tri": IIDCase("tri", d=1, channels=1, sigma_eps=0.05, size=1024, batch=4),
        "iid d1 N4 1024 B4 cos": IIDCase("cos", d=1, channels=4, sigma_eps=0.2, size=1024, batch=4),
        "iid d2 N3 48² B4 tri": IIDCase("tri", d=2, channels=3, sigma_eps=0.5, size=48, batch=4),
        "iid d2 N3 48² B4 hann": IIDCase("hann", d=2, channels=3, sigma_eps=0.5, size=48, batch=4),
        "iid d2 N2 64² B4 tri zeros": IIDCase("tri", d=2, channels=2, sigma_eps=0.3, size=64, batch=4,
                                              padding="zeros"),
        "iid d3 N2 16³ B1 tri": IIDCase("tri", d=3, channels=2, sigma_eps=2.0, size=16, batch=1),
    }
    selfwarp = {"selfwarp d2 N4 32² B4 tri": SelfWarpCase("tri", independent=True, size=32, batch=4)}
    print(f"Monte-Carlo throughput, threads={numba.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':30s} {'ms/replicate':>13s} {'samples/s':>12s}")
    total_samples = total_time = 0.0
    for name, case in {**iid, **selfwarp}.items():
        run = run_iid if name.startswith("iid") else run_selfwarp
        run(case, replicates=2, batches=1, seed=0)  # compile
        best = float("inf")
        for r in range(args.rounds):
            start = time.perf_counter()
            run(case, replicates=args.replicates, batches=1, seed=r)
            best = min(best, time.perf_counter() - start)
        samples = args.replicates * case.batch * case.size ** case.d
        total_samples += samples
        total_time += best
        print(f"{name:30s} {best / args.replicates * 1e3:13.3f} {samples / best:12.3g}")
    print(f"{'all cases':30s} {total_time / len(iid | selfwarp) / args.replicates * 1e3:13.3f} "
          f"{total_samples / total_time:12.3g}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
