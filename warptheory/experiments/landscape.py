r"""Loss landscapes along gradient-informed directions (§5.2, eq 15) and Li et al.'s filter-normalised ones.

Eq 15: draw a Gaussian direction :math:`\mathbf d` and rescale each layer's block to the norm
of the expected gradient of that layer,

.. math::

    \mathbf d_{i,j} \sim \mathcal N(0, 1), \qquad
    \mathbf d_{i,j} \leftarrow \mathbf d_{i,j}\,
        \frac{\lVert \mathbb E_x[\nabla_{\theta_i}\mathcal L]\rVert}{\lVert \mathbf d_i\rVert},

where a *layer* i is one parameter tensor of the model and :math:`\mathbb E_x` is the mean
over the samples of a fixed set of batches (:func:`mean_gradient`). Li et al. (2018) instead
rescale each *filter* f of a weight to the norm of the same filter of θ,
:math:`\mathbf d_f \leftarrow \mathbf d_f \lVert\theta_f\rVert / \lVert \mathbf d_f\rVert`, and set
biases and batch-norm parameters to zero (:func:`filter_normalized_direction`). A filter
with θ_f = 0 — every ε-branch filter of a SelfWarp at initialisation (§5.2) — gets d_f = 0,
so those parameters never move in a filter-normalised plot; eq 15 moves them by the size of
their expected gradient, which is not zero. See ``paper_notes/s05_results.md``.

Everything here is generic over a :class:`torch.nn.Module`. Directions are dicts
parameter name → tensor. Loss is evaluated in eval mode (batch norm uses its running
statistics), the same mode in which the expected gradient is taken.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
>>> batches = [(torch.randn(8, 3), torch.randint(0, 2, (8,))) for _ in range(2)]
>>> g = mean_gradient(model, batches)
>>> d = gradient_informed_direction(g, torch.Generator().manual_seed(0))
>>> all(torch.allclose(d[k].norm(), g[k].norm()) for k in g)   # eq 15's per-layer norm
True
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["mean_gradient", "gradient_informed_direction", "filter_normalized_direction", "restrict",
           "direction_norm", "evaluate_loss", "loss_line", "loss_surface"]


def _selected(names: Iterable[str], include) -> set[str]:
    names = list(names)
    if include is None:
        return set(names)
    if callable(include):
        return {n for n in names if include(n)}
    chosen = set(include)
    unknown = chosen - set(names)
    if unknown:
        raise ValueError(f"include: unknown parameter names {sorted(unknown)[:3]}")
    return chosen


def mean_gradient(model: torch.nn.Module, batches, loss_fn: Callable = F.cross_entropy) -> dict:
    r"""E_x[∇_θ L]: the gradient of the mean loss over every sample of ``batches`` (eq 15's expectation).

    Samples count equally whatever their batch's size; the model is in eval mode and its
    mode is restored afterwards. Returns name → tensor for every trainable parameter.
    """
    was_training = model.training
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y, reduction="sum")
            loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    total[n] += p.grad
            count += len(y)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if count == 0:
        raise ValueError("batches: expected at least one sample")
    return {n: g / count for n, g in total.items()}


def gradient_informed_direction(mean_grad: dict, generator: torch.Generator, include=None) -> dict:
    r"""Eq 15: a Gaussian direction whose block for layer i has norm ‖E_x[∇_{θ_i} L]‖.

    Parameters
    ----------
    mean_grad : dict
        name → E_x[∇_{θ_i} L], from :func:`mean_gradient`.
    generator : torch.Generator
        Source of the Gaussian draws (the direction is a function of its state).
    include : None, set of names or callable name → bool
        Layers that the direction moves; the others get zeros (the disentangled axes of
        Figure 4 split the model this way). None moves every layer (Figure 3).
    """
    chosen = _selected(mean_grad, include)
    out = {}
    for name, g in mean_grad.items():
        d = torch.randn(g.shape, generator=generator, dtype=g.dtype)
        if name in chosen and d.numel() > 0:
            out[name] = d * (g.norm() / d.norm())
        else:
            out[name] = torch.zeros_like(g)
    return out


def filter_normalized_direction(model: torch.nn.Module, generator: torch.Generator, include=None) -> dict:
    r"""Li et al. (2018): per filter, d_f ← d_f ‖θ_f‖/‖d_f‖; biases and batch-norm parameters get 0.

    A filter is one slice along the first (output) axis of a parameter with ≥ 2 axes.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    chosen = _selected(params, include)
    out = {}
    for name, theta in params.items():
        d = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
        if name not in chosen or theta.dim() < 2:
            out[name] = torch.zeros_like(theta)
            continue
        flat_d, flat_t = d.reshape(len(d), -1), theta.reshape(len(theta), -1)
        d_norm = flat_d.norm(dim=1, keepdim=True)
        out[name] = (flat_d * (flat_t.norm(dim=1, keepdim=True) / d_norm)).reshape(theta.shape)
    return out


def restrict(direction: dict, include) -> dict:
    """The direction with every layer outside ``include`` set to zero."""
    chosen = _selected(direction, include)
    return {n: (d if n in chosen else torch.zeros_like(d)) for n, d in direction.items()}


def direction_norm(direction: dict, include=None) -> float:
    """Euclidean norm of the direction over the layers in ``include`` (all by default)."""
    chosen = _selected(direction, include)
    return float(torch.sqrt(sum((direction[n].double() ** 2).sum() for n in chosen) + 0.0))


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, batches, loss_fn: Callable = F.cross_entropy) -> tuple[float, float]:
    """(mean loss, accuracy) over every sample of ``batches``, in eval mode."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    try:
        for x, y in batches:
            logits = model(x)
            total += float(loss_fn(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
            count += len(y)
    finally:
        model.train(was_training)
    return total / count, correct / count


@torch.no_grad()
def _set_params(model, base: dict, directions, coefficients):
    for name, p in model.named_parameters():
        if name in base:
            value = base[name].clone()
            for d, c in zip(directions, coefficients):
                if c != 0:
                    value.add_(d[name], alpha=float(c))
            p.copy_(value)


def loss_line(model: torch.nn.Module, batches, direction: dict, alphas, loss_fn: Callable = F.cross_entropy,
              progress=None, observe: Callable | None = None) -> np.ndarray:
    """Loss at θ + α d for each α (the model's parameters are restored afterwards).

    ``observe(model)`` is called after each point's evaluation (e.g. to read the warp
    blocks' σ_ε² of the last batch); ``progress.update(1)`` after each point.
    """
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n in direction}
    out = np.empty(len(alphas))
    try:
        for i, a in enumerate(alphas):
            _set_params(model, base, [direction], [a])
            out[i] = evaluate_loss(model, batches, loss_fn)[0]
            if observe is not None:
                observe(model)
            if progress is not None:
                progress.update(1)
    finally:
        _set_params(model, base, [], [])
    return out


def loss_surface(model: torch.nn.Module, batches, d1: dict, d2: dict, alphas, betas,
                 loss_fn: Callable = F.cross_entropy, progress=None) -> np.ndarray:
    """Loss at θ + α d1 + β d2 on the grid, shape (len(betas), len(alphas))."""
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n in d1}
    out = np.empty((len(betas), len(alphas)))
    try:
        for j, b in enumerate(betas):
            for i, a in enumerate(alphas):
                _set_params(model, base, [d1, d2], [a, b])
                out[j, i] = evaluate_loss(model, batches, loss_fn)[0]
                if progress is not None:
                    progress.update(1)
    finally:
        _set_params(model, base, [], [])
    return out
