"""The one training protocol of the §5 experiments, and the rows of every table with the paper's entries.

Written down (and committed, with ``paper_notes/s05_results.md``) before any result was
seen; every row of every table uses it unchanged. :func:`run_config` turns a row into the
JSON configuration that a run is keyed by in the result store.

>>> rows = experiment_rows("table1")
>>> len(rows), len(experiment_rows("table2")), len(experiment_rows("skip"))
(8, 7, 2)
>>> [r.paper for r in rows].count("diverges")
5
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

__all__ = ["Schedule", "Budget", "FULL", "QUICK", "Row", "EXPERIMENTS", "experiment_rows", "run_config",
           "DEFAULT_SEEDS", "BIFURCATION_RULE", "LANDSCAPE_RULE", "TABLE2_GRAD_SCALE", "BEST_TABLE1",
           "BIFURCATION_DEFORM"]

EXPERIMENTS = ("table1", "table2", "skip", "bifurcation", "landscape")

#: Seeds per row unless ``--seeds`` says otherwise (quick runs use fewer, see :data:`QUICK`).
DEFAULT_SEEDS = 3

#: Table 2's "Gradient Scaling: Yes": the ε-branch parameters' gradients are multiplied by 0.1,
#: the learning-rate factor DCNv2 (Zhu et al. 2019) puts on the offset layers.
TABLE2_GRAD_SCALE = 0.1


@dataclass(frozen=True)
class Schedule:
    """He et al. (2016)'s CIFAR recipe, shortened: SGD, momentum 0.9, weight decay 1e-4, learning
    rate 0.1 divided by 10 at 50 % and 75 % of the steps (their 32k and 48k of 64k)."""

    steps: int
    batch_size: int
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple = (0.5, 0.75)
    lr_decay: float = 0.1
    #: Steps with ε fixed at 0 before the schedule, for rows with pretraining (Table 2), at the
    #: initial learning rate; then the whole schedule runs again with ε trainable.
    pretrain_steps: int = 0
    augment: bool = True  # random 32×32 crop of the image zero-padded by 4, random horizontal flip

    def learning_rate(self, step: int) -> float:
        """Learning rate at ``step`` (0-based) of the schedule."""
        passed = sum(step >= round(m * self.steps) for m in self.milestones)
        return self.lr * self.lr_decay ** passed


@dataclass(frozen=True)
class Budget:
    """Sizes that follow from the compute budget (full or ``--quick``); the same for every row."""

    name: str
    schedule: Schedule
    n_train: int
    n_test: int
    depth: int                 # ResNet-(6n+2) of Tables 1–2, the skip ablation and the landscape
    bifurcation_depth: int     # the SelfWarp network of Figure 2 (the paper's is ResNet-20)
    seeds: int
    landscape_grid: int        # points per axis of the 2-D surfaces (Figures 3–4)
    landscape_line: int        # points of the 1-D sweeps that quantify the plateau
    landscape_batches: int     # fixed batches of the expectation in eq 15 and of the loss
    landscape_batch_size: int


FULL = Budget(
    name="full",
    schedule=Schedule(steps=300, batch_size=64, pretrain_steps=150),
    n_train=10000, n_test=2000, depth=8, bifurcation_depth=20, seeds=DEFAULT_SEEDS,
    landscape_grid=17, landscape_line=41, landscape_batches=2, landscape_batch_size=128,
)

QUICK = Budget(
    name="quick",
    schedule=Schedule(steps=6, batch_size=8, pretrain_steps=3),
    n_train=160, n_test=80, depth=8, bifurcation_depth=8, seeds=2,
    landscape_grid=3, landscape_line=5, landscape_batches=1, landscape_batch_size=16,
)


@dataclass(frozen=True)
class Row:
    """One configuration of a table, with the paper's entry ("diverges" or the accuracy in %)."""

    label: str
    model: dict
    paper: str
    pretrain: bool = False
    columns: dict = field(default_factory=dict)  # the paper's column values, for the report

    @property
    def paper_diverges(self) -> bool:
        return self.paper == "diverges"

    @property
    def paper_accuracy(self) -> float | None:
        return None if self.paper_diverges else float(self.paper.rstrip("%"))


def _selfwarp(pre_eps_norm, bn, detach, warp_skip=True):
    return {"layer": "selfwarp", "pre_eps_norm": pre_eps_norm, "bn_weight_init": bn, "detach": detach,
            "warp_skip": warp_skip, "param_grad_scale": 1.0, "kernel": "tri", "padding": "zeros"}


def _deform(grad_scale, bn, pre_eps_norm):
    return {"layer": "deform", "pre_eps_norm": pre_eps_norm, "bn_weight_init": bn, "detach": False,
            "warp_skip": False, "param_grad_scale": TABLE2_GRAD_SCALE if grad_scale else 1.0, "kernel": "tri",
            "padding": "zeros"}


def _t1(pre, bn, detach, paper):
    return Row(f"pre-ε BN {'yes' if pre else 'no'}, BN init {bn}, {'detached' if detach else 'full grads'}",
               _selfwarp(pre, bn, detach), paper,
               columns={"Pre-ε BN": "Yes" if pre else "No", "BN init": str(bn),
                        "Warp grad": "detached" if detach else "full grads"})


_TABLE1 = (
    _t1(False, 1.0, False, "diverges"),
    _t1(False, 1.0, True, "diverges"),
    _t1(False, 0.1, False, "diverges"),
    _t1(False, 0.1, True, "diverges"),
    _t1(True, 1.0, False, "diverges"),
    _t1(True, 1.0, True, "92.378%"),
    _t1(True, 0.1, False, "93.620%"),
    _t1(True, 0.1, True, "93.209%"),
)

#: The best row of Table 1 in the paper (93.620 %): the skip ablation, Figure 2 and the landscapes use it.
BEST_TABLE1 = _TABLE1[6]


def _t2(pretrain, grad_scale, bn, pre, paper):
    return Row(f"pretraining {'yes' if pretrain else 'no'}, grad scaling {'yes' if grad_scale else 'no'}, "
               f"BN init {bn}, pre-ε BN {'yes' if pre else 'no'}", _deform(grad_scale, bn, pre), paper,
               pretrain=pretrain,
               columns={"Pretraining": "Yes" if pretrain else "No", "Grad scaling": "Yes" if grad_scale else "No",
                        "BN init": str(bn), "Pre-ε BN": "Yes" if pre else "No"})


_TABLE2 = (
    _t2(True, False, 1.0, False, "diverges"),
    _t2(True, True, 1.0, False, "93.760%"),
    _t2(False, False, 0.1, False, "diverges"),
    _t2(False, False, 1.0, False, "diverges"),
    _t2(False, True, 0.1, False, "92.448%"),
    _t2(False, True, 1.0, False, "92.228%"),
    _t2(False, False, 0.1, True, "92.648%"),
)

#: The deformable network of Figure 2's "holds for deformable networks too" check: Table 2's row
#: with Table 1's stabilisers (BN init 0.1, pre-ε BN) and no pretraining.
BIFURCATION_DEFORM = _TABLE2[6]

_SKIP = (
    replace(BEST_TABLE1, label="warped skip (best Table 1 row)", columns={"Skip": "warped"}),
    Row("unwarped skip", dict(BEST_TABLE1.model, warp_skip=False), "92.919%", columns={"Skip": "not warped"}),
)

#: Figure 2's rule, fixed in advance (``paper_notes/s05_results.md``).
BIFURCATION_RULE = {
    "final_window": 0.1,       # final σ_ε²: median over the last 10 % of logged steps
    "peak_window": 0.02,       # peak σ_ε²: maximum of the running mean over 2 % of the steps (≥ 1)
    "collapsed_below": 0.05,   # final/peak < 0.05: the layer went to ~0
    "elevated_above": 0.25,    # final/peak ≥ 0.25: the layer stayed elevated
    "max_intermediate": 0.25,  # a run bifurcates if both groups are non-empty and ≤ 25 % of layers lie between
    "bootstrap": 2000,         # resamples of the seeds for the rank correlation's interval
    "confidence": 0.95,
}

#: Figures 3–4's rule, fixed in advance.
LANDSCAPE_RULE = {
    "surface_extent": 1.0,     # 2-D plots span α, β ∈ [−1, 1]·R with R = ‖θ‖ / ‖E_x[∇_θ L]‖
    "line_extent": 4.0,        # 1-D sweeps along each disentangled axis span α ∈ [−4, 4]·R
    "outer_fraction": 0.2,     # the plateau is judged on the outer 20 % of |α| of the sweep
    "plateau_tolerance": 0.25,  # warp axis plateaus: outer losses within 0.25 nat of ln 10 ...
    "plateau_flatness": 0.1,    # ... and varying by < 0.1 nat across the outer points
    "rise_margin": 0.5,         # conv axis keeps rising: outer losses > ln 10 + 0.5 nat and increasing in |α|
}


def experiment_rows(name: str) -> tuple[Row, ...]:
    """The rows of ``name`` ∈ {table1, table2, skip}; bifurcation and landscape use single rows."""
    if name == "table1":
        return _TABLE1
    if name == "table2":
        return _TABLE2
    if name == "skip":
        return _SKIP
    if name == "bifurcation":
        return (BEST_TABLE1, BIFURCATION_DEFORM)
    if name == "landscape":
        return (BEST_TABLE1,)
    raise ValueError(f"experiment: expected one of {', '.join(EXPERIMENTS)}, got {name!r}")


def run_config(row: Row, budget: Budget, data_spec: dict, *, depth: int | None = None, plant=None) -> dict:
    """The JSON configuration of one row's run under ``budget`` (the result store's key)."""
    schedule = asdict(budget.schedule)
    schedule["milestones"] = list(schedule["milestones"])
    if not row.pretrain:
        schedule["pretrain_steps"] = 0
    model = dict(row.model, depth=budget.depth if depth is None else depth)
    config = {"version": 1, "model": model, "schedule": schedule, "data": dict(data_spec)}
    if plant is not None:
        config["plant"] = dict(plant)
    return config
