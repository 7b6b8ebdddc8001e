r"""The paper's divergence rule (§5): a run diverges if some layer's σ_ε² exceeds 1000.

σ_ε² is the average per-sample variance of ε (§2.1): for each sample, the variance of its
offsets over positions (and offset components), averaged over the samples of the batch.
Training logs it for every warping layer at every step (:class:`VarianceLog`); a run has
diverged if at *any* logged step *any* layer has σ_ε² > :data:`DIVERGENCE_THRESHOLD`.
A non-finite σ_ε² (the offsets overflowed) counts as an exceedance: NaN > 1000 is false in
floating point, but a variance that overflowed has certainly passed 1000.

>>> import numpy as np
>>> log = np.zeros((5, 3)); log[3, 2] = 1000.5
>>> first_exceedance(log)
Exceedance(step=3, layer=2, value=1000.5)
>>> first_exceedance(np.full((4, 2), 1000.0)) is None   # the rule is strict: > 1000
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DIVERGENCE_THRESHOLD", "Exceedance", "first_exceedance", "VarianceLog"]

#: The paper's threshold on a layer's σ_ε² (§5, after Table 1), in pixels².
DIVERGENCE_THRESHOLD = 1000.0


@dataclass(frozen=True)
class Exceedance:
    """Where the rule first fired: logged step index, layer index, and the value there."""

    step: int
    layer: int
    value: float


def first_exceedance(eps_var, threshold: float = DIVERGENCE_THRESHOLD) -> Exceedance | None:
    """The first (step, layer) with σ_ε² > ``threshold`` or non-finite, or None if there is none.

    Parameters
    ----------
    eps_var : array_like, shape (steps, layers)
        Logged per-layer σ_ε², one row per logged step.
    """
    v = np.asarray(eps_var, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"eps_var: expected shape (steps, layers), got {v.shape}")
    bad = ~(v <= threshold)  # True for > threshold and for NaN
    bad |= ~np.isfinite(v)
    if not bad.any():
        return None
    step = int(np.argmax(bad.any(axis=1)))
    layer = int(np.argmax(bad[step]))
    return Exceedance(step, layer, float(v[step, layer]))


class VarianceLog:
    """Per-layer σ_ε² at every logged step, with the divergence rule applied as it is filled."""

    def __init__(self, layer_names, threshold: float = DIVERGENCE_THRESHOLD):
        self.layer_names = list(layer_names)
        self.threshold = threshold
        self.steps: list[int] = []
        self.values: list[list[float]] = []
        self.exceedance: Exceedance | None = None

    def record(self, step: int, values) -> None:
        row = [float(v) for v in values]
        if len(row) != len(self.layer_names):
            raise ValueError(f"values: expected {len(self.layer_names)} layers, got {len(row)}")
        self.steps.append(int(step))
        self.values.append(row)
        if self.exceedance is None:
            hit = first_exceedance([row], self.threshold)
            if hit is not None:
                self.exceedance = Exceedance(int(step), hit.layer, hit.value)

    @property
    def diverged(self) -> bool:
        return self.exceedance is not None

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64).reshape(len(self.values), len(self.layer_names))
