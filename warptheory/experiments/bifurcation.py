r"""Figure 2 (§5.1): do layer ε-variances bifurcate, and do later layers stay elevated?

The rule is fixed in advance (:data:`~warptheory.experiments.protocol.BIFURCATION_RULE`,
``paper_notes/s05_results.md``). For each layer of a run: its *final* σ_ε² is the median over
the last 10 % of logged steps, its *peak* the maximum of the running mean over 2 % of the
steps. ``final/peak < 0.05`` means the layer went to ~0 ("collapsed"), ``≥ 0.25`` that it
stayed elevated, anything between is "intermediate". A run bifurcates if both groups are
non-empty and at most 25 % of its layers are intermediate. The depth claim is the Spearman
rank correlation of final σ_ε² with layer index, averaged over seeds, with a percentile
bootstrap interval from resampling the seeds.

>>> import numpy as np
>>> steps = np.arange(100)[:, None]
>>> rising = np.minimum(steps, 20) / 20.0                 # grows, then stays
>>> falling = np.where(steps < 20, steps / 20.0, np.exp(-(steps - 20) / 5.0))
>>> c = classify_layers(np.hstack([falling, falling, rising]))
>>> c.groups, c.bifurcates
(('collapsed', 'collapsed', 'elevated'), True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .protocol import BIFURCATION_RULE

__all__ = ["LayerClasses", "classify_layers", "depth_correlation", "DepthCorrelation"]


@dataclass(frozen=True)
class LayerClasses:
    """Per-layer final and peak σ_ε², their ratio and group, for one run."""

    final: tuple
    peak: tuple
    ratio: tuple
    groups: tuple

    @property
    def counts(self) -> dict:
        return {g: self.groups.count(g) for g in ("collapsed", "intermediate", "elevated")}

    @property
    def bifurcates(self) -> bool:
        c = self.counts
        return (c["collapsed"] >= 1 and c["elevated"] >= 1
                and c["intermediate"] <= BIFURCATION_RULE["max_intermediate"] * len(self.groups))


def _running_mean(v: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.stack([np.convolve(col, kernel, mode="valid") for col in v.T], axis=1)


def classify_layers(eps_var, rule: dict = BIFURCATION_RULE) -> LayerClasses:
    """Apply the stated rule to one run's σ_ε² log, shape (steps, layers)."""
    v = np.asarray(eps_var, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        raise ValueError(f"eps_var: expected (steps ≥ 2, layers), got shape {v.shape}")
    steps = len(v)
    tail = max(1, int(round(rule["final_window"] * steps)))
    final = np.median(v[-tail:], axis=0)
    peak = _running_mean(v, max(1, int(round(rule["peak_window"] * steps)))).max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(peak > 0, final / peak, 0.0)
    groups = tuple("collapsed" if r < rule["collapsed_below"] else
                   "elevated" if r >= rule["elevated_above"] else "intermediate" for r in ratio)
    return LayerClasses(tuple(final.tolist()), tuple(peak.tolist()), tuple(ratio.tolist()), groups)


@dataclass(frozen=True)
class DepthCorrelation:
    """Mean over seeds of Spearman ρ(layer index, final σ_ε²), with its bootstrap interval."""

    per_seed: tuple
    mean: float
    low: float
    high: float
    confidence: float

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "later layers higher"
        if self.high < 0:
            return "earlier layers higher"
        return "no clear order"


def depth_correlation(finals, rule: dict = BIFURCATION_RULE, seed: int = 0) -> DepthCorrelation:
    """Spearman ρ of final σ_ε² with depth per run (``finals``: one sequence per seed, in depth order)."""
    from scipy.stats import spearmanr

    rhos = []
    for f in finals:
        f = np.asarray(f, dtype=np.float64)
        rho = spearmanr(np.arange(len(f)), f).statistic if np.ptp(f) > 0 else 0.0
        rhos.append(float(rho))
    rhos = np.asarray(rhos)
    if len(rhos) == 0:
        raise ValueError("finals: expected at least one run")
    rng = np.random.default_rng(seed)
    boot = rng.choice(rhos, size=(rule["bootstrap"], len(rhos)), replace=True).mean(axis=1)
    alpha = 1.0 - rule["confidence"]
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return DepthCorrelation(tuple(rhos.tolist()), float(rhos.mean()), float(low), float(high), rule["confidence"])
