r"""One training run of the §5 protocol: model, data, SGD schedule, σ_ε² log, divergence rule, test accuracy.

:func:`train_run` is what every table row runs once per seed (through
:mod:`~warptheory.experiments.runner`). The models come from :mod:`warptheory.nn`
(``cifar_resnet`` with every 3×3 convolution a SelfWarp or a deformable convolution built
from warps); this module adds only what the protocol needs around them: batch-norm
initialisation of the whole network, the ε-branch gradient scaling of Table 2, pretraining
with ε fixed at 0, per-layer σ_ε² at every step, and a planted divergence for the tests.
"""
from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import ImageSet, load_cifar10, shapes10
from .divergence import VarianceLog
from .protocol import Schedule

__all__ = ["build_model", "warp_layers", "eps_branch_parameters", "load_images", "Batches", "train_run",
           "evaluate", "RUNTIME_KEYS"]

#: Entries of a run configuration that change how, not what, is computed (not part of its key).
RUNTIME_KEYS = ("runtime",)


def build_model(model_config: dict, seed: int) -> torch.nn.Module:
    """The network of a row: ``warptheory.nn.resnet.cifar_resnet`` with the row's options.

    ``bn_weight_init`` is γ of every batch norm, the pre-ε ones included (§5: "initializing
    all batchnorm multiplication terms to 0.1").
    """
    from ..nn.resnet import cifar_resnet

    torch.manual_seed(seed)
    options = {"pre_eps_norm": model_config["pre_eps_norm"], "kernel": model_config["kernel"]}
    if model_config["layer"] == "selfwarp":
        options.update(detach=model_config["detach"], padding=model_config["padding"])
    elif model_config["detach"]:
        raise ValueError("model: detach is only defined for the SelfWarp network")
    return cifar_resnet(model_config["depth"], model_config["layer"], warp_skip=model_config["warp_skip"],
                        bn_weight_init=model_config["bn_weight_init"], **options)


def warp_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The blocks that compute ε, in forward (depth) order, with their module names."""
    from ..nn import WarpBlock

    return [(n, m) for n, m in model.named_modules() if isinstance(m, WarpBlock)]


def eps_branch_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters of every ε branch (the convolution that predicts ε and the pre-ε batch norm)."""
    from ..nn import split_eps_parameters

    return list(split_eps_parameters(model)[0])


def load_images(data_spec: dict, runtime: dict) -> ImageSet:
    """The data set a configuration names; CIFAR-10 is read from ``runtime["data_dir"]``."""
    if data_spec["name"] == "shapes10":
        return shapes10(data_spec["n_train"], data_spec["n_test"], data_spec["seed"],
                        cache_dir=runtime.get("cache_dir"))
    if data_spec["name"] == "cifar10":
        images = load_cifar10(runtime["data_dir"])
        if images.spec["sha1"] != data_spec["sha1"]:
            raise ValueError(f"--data: the CIFAR-10 files in {runtime['data_dir']} changed since the run was planned")
        n_train, n_test = data_spec["n_train"], data_spec["n_test"]
        return ImageSet("cifar10", images.train_x[:n_train], images.train_y[:n_train], images.test_x[:n_test],
                        images.test_y[:n_test], images.classes, data_spec)
    raise ValueError(f"data: unknown data set {data_spec['name']!r}")


class Batches:
    """Normalised float tensors of a split, shuffled and augmented from one seeded generator."""

    def __init__(self, images: ImageSet, seed: int, augment: bool):
        mean, std = images.channel_stats()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.train_x = torch.from_numpy(images.train_x)
        self.train_y = torch.from_numpy(images.train_y)
        self.test_x = torch.from_numpy(images.test_x)
        self.test_y = torch.from_numpy(images.test_y)
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float() / 255.0 - self.mean) / self.std

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        # He et al.: pad by 4 (black), take a random 32×32 crop, flip horizontally with probability 1/2.
        n, _, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4))
        shifts = torch.randint(0, 9, (n, 2), generator=self.generator)
        flips = torch.rand(n, generator=self.generator) < 0.5
        out = torch.empty_like(x)
        for i in range(n):
            r, c = int(shifts[i, 0]), int(shifts[i, 1])
            crop = padded[i, :, r:r + h, c:c + w]
            out[i] = crop.flip(-1) if flips[i] else crop
        return out

    def next_train(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of a reshuffled pass over the training set (the last partial batch is dropped)."""
        if len(self._order) < batch_size:
            self._order = torch.randperm(len(self.train_y), generator=self.generator)
        index, self._order = self._order[:batch_size], self._order[batch_size:]
        x = self.train_x[index].float() / 255.0
        if self.augment:
            x = self._augment(x)
        return (x - self.mean) / self.std, self.train_y[index]

    def fixed(self, split: str, batches: int, batch_size: int) -> list:
        """The first ``batches`` × ``batch_size`` images of a split, unaugmented (fixed for eq 15)."""
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        out = []
        for b in range(batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            if len(y[sl]):
                out.append((self.normalise(x[sl]), y[sl]))
        return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Batches, batch_size: int = 500) -> tuple[float, float]:
    """(test accuracy, test loss) in eval mode over the whole test split."""
    model.eval()
    correct, total_loss = 0, 0.0
    for start in range(0, len(batches.test_y), batch_size):
        x = batches.normalise(batches.test_x[start:start + batch_size])
        y = batches.test_y[start:start + batch_size]
        logits = model(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    model.train()
    n = len(batches.test_y)
    return correct / n, total_loss / n


def _set_threads(runtime: dict) -> None:
    threads = runtime.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
        try:
            import numba

            numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover - numba is a dependency
            pass


@dataclass
class _Phase:
    name: str
    steps: int
    eps_trainable: bool


def _sgd(model, schedule: Schedule):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay)


def _plant(model, plant: dict, generator: torch.Generator) -> None:
    """Test hook: add N(0, s²) to every ε-branch convolution weight (a planted divergence)."""
    with torch.no_grad():
        for p in eps_branch_parameters(model):
            if p.dim() > 1:
                p.add_(plant["eps_weight_noise"] * torch.randn(p.shape, generator=generator))


def train_run(config: dict, seed: int) -> dict:
    """Train one row's network once under the protocol; return its record (JSON-able).

    The record holds ``diverged`` and ``exceedance`` (the paper's rule, §5),
    ``test_accuracy`` and ``test_loss``, the per-step training loss and learning rate, the
    per-layer σ_ε² of every step (``eps_var``, shape steps × layers, ``layer_names``),
    ``wall_time_s`` and ``cpu_time_s``. With ``config["runtime"]["keep_model"]`` the
    trained state dict is attached (``"_attachments"``, suffix ``.pt``).
    """
    runtime = dict(config.get("runtime", {}))
    _set_threads(runtime)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    schedule = Schedule(**{**config["schedule"], "milestones": tuple(config["schedule"]["milestones"])})
    images = load_images(config["data"], runtime)
    batches = Batches(images, seed, schedule.augment)
    model = build_model(config["model"], seed)
    model.train()
    layers = warp_layers(model)
    eps_params = eps_branch_parameters(model)
    scale = float(config["model"].get("param_grad_scale", 1.0))
    if scale != 1.0:  # Table 2's gradient scaling: on the ε-branch parameters only
        for p in eps_params:
            p.register_hook(lambda g, s=scale: g * s)
    log = VarianceLog([n for n, _ in layers])
    plant = config.get("plant")
    plant_generator = torch.Generator().manual_seed(10_000 + seed)
    losses, rates, pretrain_losses = [], [], []
    nonfinite_step = None
    progress = runtime.get("progress")

    phases = []
    if schedule.pretrain_steps:
        phases.append(_Phase("pretrain", schedule.pretrain_steps, eps_trainable=False))
    phases.append(_Phase("train", schedule.steps, eps_trainable=True))
    for phase in phases:
        for p in eps_params:
            p.requires_grad_(phase.eps_trainable)
        optimizer = _sgd(model, schedule)
        for step in range(phase.steps):
            lr = schedule.lr if phase.name == "pretrain" else schedule.learning_rate(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if plant is not None and phase.name == "train" and step == plant["step"]:
                _plant(model, plant, plant_generator)
            x, y = batches.next_train(schedule.batch_size)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if phase.name == "pretrain":
                pretrain_losses.append(value)
            else:
                losses.append(value)
                rates.append(lr)
                log.record(step, [float(m.eps_variance) for _, m in layers])
            if progress is not None:
                progress(1)
            if not math.isfinite(value):
                # Nothing further can be computed from non-finite weights; the rule has its σ_ε² log.
                nonfinite_step = step
                break
        if nonfinite_step is not None:
            break

    accuracy, test_loss = evaluate(model, batches)
    eps_var = log.array()
    record = {
        "diverged": log.diverged,
        "exceedance": None if log.exceedance is None else {
            "step": log.exceedance.step, "layer": log.layer_names[log.exceedance.layer],
            "layer_index": log.exceedance.layer, "value": log.exceedance.value},
        "nonfinite_loss_step": nonfinite_step,
        "test_accuracy": accuracy,
        "test_loss": test_loss,
        "layer_names": log.layer_names,
        "eps_var": [[float(f"{v:.6g}") for v in row] for row in eps_var.tolist()],
        "train_loss": [float(f"{v:.6g}") for v in losses],
        "pretrain_loss": [float(f"{v:.6g}") for v in pretrain_losses],
        "lr": rates,
        "steps_done": len(losses),
        "wall_time_s": time.perf_counter() - wall0,
        "cpu_time_s": time.process_time() - cpu0,
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
    if runtime.get("keep_model"):
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        record["_attachments"] = {".pt": buffer.getvalue()}
    return record
