"""The paper's §5 training results on a proxy that fits a CPU: Tables 1–2, the skip ablation, Figures 2–4.

``warptheory experiment {table1,table2,skip,bifurcation,landscape}`` on the command line;
:func:`run_experiment` from Python. Needs torch and :mod:`warptheory.nn`.

* :mod:`~warptheory.experiments.data` — CIFAR-10 python batches from disk; the generated ``shapes10`` set
* :mod:`~warptheory.experiments.protocol` — the one protocol and every table's rows with the paper's entries
* :mod:`~warptheory.experiments.training` — one run: SGD schedule, per-layer σ_ε² log, test accuracy
* :mod:`~warptheory.experiments.divergence` — the paper's rule: some layer's σ_ε² > 1000 at some step
* :mod:`~warptheory.experiments.bifurcation` — Figure 2's layer groups and depth correlation
* :mod:`~warptheory.experiments.landscape` — eq 15's gradient-informed and Li et al.'s filter-normalised directions
* :mod:`~warptheory.experiments.runner` — resumable store, executors (concurrent.futures, Dask), progress bars
* :mod:`~warptheory.experiments.report` — tables, verdicts, figures, report.md and results.json

The protocol and the results are in ``paper_notes/s05_results.md``.
"""
from .data import ImageSet, load_cifar10, shapes10
from .divergence import DIVERGENCE_THRESHOLD, first_exceedance
from .experiment import run_experiment

__all__ = ["DIVERGENCE_THRESHOLD", "ImageSet", "first_exceedance", "load_cifar10", "run_experiment", "shapes10"]
