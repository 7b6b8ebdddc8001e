"""Accuracy and speed of Φ_{a,b}(σ): ``python bench/bench_phi.py``.

Accuracy: worst relative error against the 40-digit mpmath references in
tests/data/phi_reference.json (absolute error where the reference is 0), per kernel.
Speed: σ-values per second for one Φ_{a,b} over 10⁶ log-spaced σ in [1e-6, 1e3], and for the
six-field ``phi`` record, after a warm-up call (numba compilation and table construction are
excluded and reported separately).  Not part of CI's pass/fail.
"""
import json
import os
import time
from pathlib import Path

import mpmath
import numpy as np

import warptheory as wt

REFERENCE = json.loads((Path(__file__).resolve().parents[1] / "tests" / "data" / "phi_reference.json").read_text())


def accuracy(kernel: str):
    worst_rel, worst_abs_zero, count = 0.0, 0.0, 0
    for rec in REFERENCE["values"]:
        if rec["kernel"] != kernel:
            continue
        ref = mpmath.mpf(rec["value"])
        got = wt.phi_ab(kernel, float(rec["sigma"]), rec["a"], rec["b"], rec["derivative"])
        count += 1
        if abs(ref) < 1e-20:
            worst_abs_zero = max(worst_abs_zero, abs(got))
        else:
            worst_rel = max(worst_rel, float(abs((mpmath.mpf(got) - ref) / ref)))
    return worst_rel, worst_abs_zero, count


def speed(kernel: str, n: int = 1_000_000, repeats: int = 5):
    sigma = np.logspace(-6, 3, n)
    t0 = time.perf_counter()
    wt.phi(kernel, 0.3)  # tables + compilation
    setup = time.perf_counter() - t0
    single, record = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        wt.phi_ab(kernel, sigma, 2, 1)
        single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wt.phi(kernel, sigma)
        record.append(time.perf_counter() - t0)
    return n / np.median(single), 6 * n / np.median(record), setup


def main():
    import numba

    print(f"# Φ_{{a,b}} accuracy and speed ({os.cpu_count()} cores, numba threads {numba.get_num_threads()})")
    print(f"{'kernel':<10} {'refs':>5} {'max rel err':>12} {'max |err| @0':>13} {'Φ21 σ/s':>12} {'phi() values/s':>15} {'setup s':>8}")
    for kernel in wt.BUILTIN_KERNELS:
        rel, zero, count = accuracy(kernel)
        single, record, setup = speed(kernel)
        print(f"{kernel:<10} {count:>5} {rel:>12.2e} {zero:>13.1e} {single:>12.3g} {record:>15.3g} {setup:>8.2f}")
    print("targets: relative error ≤ 1e-13; ≥ 1e6 σ-values/s")


if __name__ == "__main__":
    main()
