"""``warptheory experiment NAME``: plan the runs of one §5 experiment, run them resumably, report.

:func:`run_experiment` is the Python face of the CLI. It checks its arguments, loads the
data once (the generated set is cached under ``OUT/cache`` for the workers), turns the
experiment's rows into :class:`~warptheory.experiments.runner.Task`\\ s under the one
protocol (:mod:`~warptheory.experiments.protocol`), runs those not yet stored, and writes
``report.md``, ``results.json`` and the figures into OUT (:mod:`~warptheory.experiments.report`).
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np

from . import protocol as P
from .data import load_cifar10, shapes10
from .runner import ResultStore, Task, make_executor, run_tasks

__all__ = ["run_experiment", "plan", "landscape_task"]


def _check_seeds(seeds):
    if seeds is None:
        return None
    if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"--seeds: expected an integer ≥ 1, got {seeds!r}")
    return int(seeds)


def _data_spec(data, budget: P.Budget, cache_dir: Path) -> dict:
    if data is None:
        images = shapes10(budget.n_train, budget.n_test, cache_dir=cache_dir)  # rendered once, read by workers
        return images.spec
    images = load_cifar10(data)
    spec = dict(images.spec)
    if budget.name == "quick":  # the quick run trains on the first images only
        spec.update(n_train=min(budget.n_train, spec["n_train"]), n_test=min(budget.n_test, spec["n_test"]))
    return spec


def _train_tasks(name: str, budget: P.Budget, data_spec: dict, seeds: int) -> list[tuple[P.Row, list[Task]]]:
    planned = []
    for row in P.experiment_rows(name):
        depth = budget.bifurcation_depth if (name == "bifurcation" and row.model["layer"] == "selfwarp") else None
        config = P.run_config(row, budget, data_spec, depth=depth)
        planned.append((row, [Task(row.label, config, s) for s in range(seeds)]))
    return planned


def plan(name: str, *, quick: bool = False, seeds: int | None = None, data=None, out="experiment-out",
         budget: P.Budget | None = None) -> dict:
    """The runs an experiment needs, without running them: ``{"rows": [(Row, [Task, ...]), ...], ...}``."""
    if name not in P.EXPERIMENTS:
        raise ValueError(f"experiment: expected one of {', '.join(P.EXPERIMENTS)}, got {name!r}")
    seeds = _check_seeds(seeds)
    if budget is None:
        budget = P.QUICK if quick else P.FULL
    elif not isinstance(budget, P.Budget):
        raise ValueError(f"budget: expected a protocol.Budget, got {type(budget).__name__}")
    seeds = budget.seeds if seeds is None else seeds
    out = Path(out)
    data_spec = _data_spec(data, budget, out / "cache")
    return {"name": name, "budget": budget, "seeds": seeds, "data_spec": data_spec, "out": out,
            "rows": _train_tasks(name, budget, data_spec, seeds)}


# ----------------------------------------------------------------------------- landscape stage
def _landscape_batches(config: dict, runtime: dict):
    from .training import Batches, load_images

    images = load_images(config["train"]["data"], runtime)
    batches = Batches(images, 0, augment=False)
    return batches.fixed("train", config["batches"], config["batch_size"])


def _trained_model(config: dict, seed: int, state: bytes):
    import torch

    from .training import build_model

    model = build_model(config["train"]["model"], seed)
    model.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    model.eval()
    return model


def _directions(model, batches, seed: int):
    """Every direction of the landscape stage, drawn in a fixed order from one generator."""
    import torch

    from . import landscape as L
    from .training import eps_branch_parameters

    names = {id(p): n for n, p in model.named_parameters()}
    warp = {names[id(p)] for p in eps_branch_parameters(model)}
    conv = set(names.values()) - warp
    grad = L.mean_gradient(model, batches)
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1))
    d = {
        "eq15_joint_1": L.gradient_informed_direction(grad, g),
        "eq15_joint_2": L.gradient_informed_direction(grad, g),
        "eq15_warp": L.gradient_informed_direction(grad, g, include=warp),
        "eq15_conv": L.gradient_informed_direction(grad, g, include=conv),
        "filter_joint_1": L.filter_normalized_direction(model, g),
        "filter_joint_2": L.filter_normalized_direction(model, g),
        "filter_warp": L.filter_normalized_direction(model, g, include=warp),
        "filter_conv": L.filter_normalized_direction(model, g, include=conv),
    }
    theta_norm = math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in model.parameters()))
    grad_norm = L.direction_norm(grad)
    stats = {
        "theta_norm": theta_norm,
        "mean_grad_norm": grad_norm,
        "mean_grad_norm_warp": L.direction_norm(grad, warp),
        "mean_grad_norm_conv": L.direction_norm(grad, conv),
        "eq15_scale_R": theta_norm / grad_norm if grad_norm > 0 else float("inf"),
        "warp_share_eq15": L.direction_norm(d["eq15_joint_1"], warp) / max(L.direction_norm(d["eq15_joint_1"]), 1e-300),
        "warp_share_filter": L.direction_norm(d["filter_joint_1"], warp) / max(L.direction_norm(d["filter_joint_1"]),
                                                                                1e-300),
        "theta_norm_warp": math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in eps_branch_parameters(model))),
        "n_warp_tensors": len(warp), "n_conv_tensors": len(conv),
    }
    return d, stats


_SURFACES = {  # name → (first axis, second axis, scale: "eq15" or "filter")
    "eq15_joint": ("eq15_joint_1", "eq15_joint_2", "eq15"),
    "eq15_disentangled": ("eq15_warp", "eq15_conv", "eq15"),
    "filter_joint": ("filter_joint_1", "filter_joint_2", "filter"),
    "filter_disentangled": ("filter_warp", "filter_conv", "filter"),
}
_LINES = ("eq15_warp", "eq15_conv", "filter_warp", "filter_conv")


class _Ticks:
    """``update(n)`` forwarded to the runner's step callback, if there is one."""

    def __init__(self, callback):
        self.callback = callback

    def update(self, n=1):
        if self.callback is not None:
            self.callback(n)


def landscape_task(config: dict, seed: int) -> dict:
    """One landscape piece of one trained seed: the 1-D sweeps (``config["what"] == "lines"``) or a 2-D surface.

    Directions and batches are deterministic in the seed, so every piece of a seed uses the
    same ones. The trained weights arrive in ``config["runtime"]["states"][seed]``.
    """
    import time as _time

    from . import landscape as L
    from .training import _set_threads, warp_layers

    runtime = config.get("runtime", {})
    _set_threads(runtime)
    t0 = _time.perf_counter()
    batches = _landscape_batches(config, runtime)
    model = _trained_model(config, seed, runtime["states"][seed])
    directions, stats = _directions(model, batches, seed)
    rule = P.LANDSCAPE_RULE
    scale = {"eq15": stats["eq15_scale_R"], "filter": 1.0}
    record = {"stats": stats, "center_loss": L.evaluate_loss(model, batches)[0]}
    layers = warp_layers(model)
    ticks = _Ticks(runtime.get("progress"))

    if config["what"] == "lines":
        n = config["line_points"]
        unit = np.linspace(-rule["line_extent"], rule["line_extent"], n)
        lines = {}
        for name in _LINES:
            alphas = unit * scale[name.split("_")[0]]
            max_var = []

            def observe(m, _out=max_var):
                _out.append(max(float(b.eps_variance) for _, b in layers))
            losses = L.loss_line(model, batches, directions[name], alphas, observe=observe, progress=ticks)
            lines[name] = {"unit": unit.tolist(), "alpha": alphas.tolist(), "loss": losses.tolist(),
                           "max_eps_var": max_var}
        record["lines"] = lines
    else:
        first, second, kind = _SURFACES[config["what"]]
        n = config["grid_points"]
        unit = np.linspace(-rule["surface_extent"], rule["surface_extent"], n)
        grid = L.loss_surface(model, batches, directions[first], directions[second], unit * scale[kind],
                              unit * scale[kind], progress=ticks)
        record["surface"] = {"unit": unit.tolist(), "loss": grid.tolist(), "axes": [first, second]}
    record["wall_time_s"] = _time.perf_counter() - t0
    return record


def _landscape_points(task: Task) -> int:
    """Loss evaluations of a landscape piece (for its progress bar)."""
    if task.config["what"] == "lines":
        return len(_LINES) * task.config["line_points"]
    return task.config["grid_points"] ** 2


def _landscape_tasks(train_tasks: list[Task], budget: P.Budget) -> list[Task]:
    tasks = []
    for t in train_tasks:
        base = {"stage": "landscape", "train": t.config, "batches": budget.landscape_batches,
                "batch_size": budget.landscape_batch_size, "rule": P.LANDSCAPE_RULE}
        tasks.append(Task("landscape-lines", dict(base, what="lines", line_points=budget.landscape_line), t.seed))
        if t.seed == 0:
            for surface in _SURFACES:
                tasks.append(Task(f"landscape-{surface}", dict(base, what=surface, grid_points=budget.landscape_grid),
                                  t.seed))
    return tasks


# ----------------------------------------------------------------------------- the experiment
def run_experiment(name: str, *, quick: bool = False, seeds: int | None = None, data=None,
                   out="experiment-out", executor=None, progress: bool = True, budget: P.Budget | None = None) -> dict:
    """Run (or resume) experiment ``name`` and write its report; return the results dict.

    Parameters
    ----------
    name : {"table1", "table2", "skip", "bifurcation", "landscape"}
    quick : bool
        The smoke-test budget (:data:`~warptheory.experiments.protocol.QUICK`) instead of the full one.
    seeds : int, optional
        Seeds per row (≥ 1); default 3 (2 with ``quick``).
    data : path-like, optional
        A directory with the CIFAR-10 python batches; default: the generated ``shapes10`` set.
    out : path-like
        Output folder: ``report.md``, ``results.json``, figures, and ``runs/`` (the resumable
        store; a rerun skips every finished seed) and ``cache/``.
    executor : None, str, concurrent.futures.Executor or distributed.Client
        Where seeds run: None/"serial", "threads:N", "processes:N", a Dask scheduler address.
    progress : bool
        Progress bars on stderr.
    budget : protocol.Budget, optional
        Other sizes than the full or quick budget, e.g. the paper's ResNet-56 on a faster machine:
        ``dataclasses.replace(protocol.FULL, depth=56, schedule=protocol.Schedule(64000, 128))``.
    """
    from . import report

    started = time.perf_counter()
    if name not in P.EXPERIMENTS:  # the cheap checks first: nothing is rendered or started for bad input
        raise ValueError(f"experiment: expected one of {', '.join(P.EXPERIMENTS)}, got {name!r}")
    _check_seeds(seeds)
    pool, close, workers = make_executor(executor)
    try:
        spec = plan(name, quick=quick, seeds=seeds, data=data, out=out, budget=budget)
    except BaseException:
        close()
        raise
    out = spec["out"]
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out)
    runtime = {"cache_dir": str(out / "cache"), "data_dir": None if data is None else str(Path(data).resolve()),
               "threads": 1, "keep_model": True}  # one thread per run; parallelism comes from the executor
    budget = spec["budget"]
    try:
        train = [t for _, tasks in spec["rows"] for t in tasks]
        steps = budget.schedule.steps
        results = run_tasks(train, _train_entry, store, executor=pool, progress=progress, desc=f"{name} runs",
                            runtime=runtime, steps_per_task=steps)
        by_key = {(t.key, t.seed): r for t, r in zip(train, results)}
        rows = [(row, [by_key[(t.key, t.seed)] for t in tasks]) for row, tasks in spec["rows"]]
        landscape = None
        if name == "landscape":
            land_tasks = _landscape_tasks(spec["rows"][0][1], budget)
            states = {t.seed: store.path(t, ".pt").read_bytes() for t in spec["rows"][0][1]}
            pieces = run_tasks(land_tasks, landscape_task, store, executor=pool, progress=progress,
                               desc="landscape pieces", runtime=dict(runtime, states=states),
                               steps_per_task=_landscape_points)
            landscape = list(zip(land_tasks, pieces))
    finally:
        close()
    results = report.write_report(name, spec, rows, out, landscape=landscape,
                                  elapsed_s=time.perf_counter() - started, workers=workers)
    return results


def _train_entry(config: dict, seed: int) -> dict:
    """Module-level entry point for workers (imports torch only there)."""
    from .training import train_run

    return train_run(config, seed)


def load_results(out) -> dict:
    """The ``results.json`` an experiment wrote into ``out``."""
    with open(Path(out) / "results.json", encoding="utf-8") as f:
        return json.load(f)
