"""The one place where :mod:`warptheory.nn` meets the warp engines.

Everything the autograd functions ask of an engine goes through :func:`warp_plan` and
:func:`sample_plan`, which return a :class:`TensorPlan`: ``forward(x)`` and
``backward(x, grad_y, need_x, need_eps)`` on torch tensors.  This module owns the two
crossings between torch and the engines' arrays:

* CPU tensors become numpy arrays with ``tensor.detach().numpy()`` (the same memory, no
  copy; a non-contiguous tensor is made contiguous first, one copy, rather than
  rejected), and the engines' numpy results become tensors with :func:`torch.from_numpy`
  (again the same memory).
* CUDA tensors cross through DLPack to CuPy arrays (``cupy.from_dlpack``) on torch's
  current stream of that device, and back with :func:`torch.from_dlpack`.

The engine plan behind a :class:`TensorPlan` is built by :func:`_engine_warp_plan` /
:func:`_engine_sample_plan` (:func:`warptheory.warping.warp_plan` / :func:`~warptheory.warping.sample_plan`):
the plan computes the taps once in the forward and the φ' taps at the first backward
that needs them.  Switching the layer to another engine interface is a change here and
nowhere else.
"""
from __future__ import annotations

import contextlib
import importlib

import numpy as np
import torch

from .. import warping

__all__ = ["TensorPlan", "warp_plan", "sample_plan", "as_array", "as_tensor"]


# ----- crossing between tensors and engine arrays -------------------------------------------
def _cupy():
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:  # pragma: no cover - exercised only on machines without CuPy
        raise ModuleNotFoundError(
            "warptheory.nn: CUDA tensors are warped by the CuPy engine; install it with "
            "`pip install cupy-cuda12x` (or move the tensors to the CPU)"
        ) from exc


def as_array(tensor: torch.Tensor):
    """The engine array sharing ``tensor``'s memory (a contiguous copy if it is not contiguous)."""
    tensor = tensor.detach()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    if tensor.device.type == "cpu":
        return tensor.numpy()
    if tensor.device.type == "cuda":
        return _cupy().from_dlpack(tensor)
    raise TypeError(f"warptheory.nn: tensors on {tensor.device.type!r} devices are not supported (cpu or cuda)")


def as_tensor(array) -> torch.Tensor:
    """The tensor sharing an engine result's memory."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.from_dlpack(array)


@contextlib.contextmanager
def _on_stream(device: torch.device):
    """Run CuPy work on torch's current stream of ``device`` so that the two stay ordered."""
    if device.type != "cuda":
        yield
        return
    cupy = _cupy()
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), cupy.cuda.ExternalStream(stream.cuda_stream):
        yield


# ----- engine plans (the one place to change when the engines' interface changes) --------------
def _engine_warp_plan(eps, kernel, padding):
    return warping.warp_plan(eps, kernel, padding)


def _engine_sample_plan(coords, in_shape, kernel, padding):
    return warping.sample_plan(coords, in_shape, kernel, padding)


# ----- the plan on tensors ------------------------------------------------------------------
class TensorPlan:
    """An engine plan seen from torch: built once in the forward, kept for the backward.

    ``forward(x)`` returns y; ``backward(x, grad_y, need_x, need_eps)`` returns
    ``(grad_x, grad_eps)`` (``None`` where not asked for).  ``grad_eps`` has the shape of
    the plan's ε (or coordinates).
    """

    def __init__(self, engine_plan, device: torch.device):
        self.engine_plan, self.device = engine_plan, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _on_stream(self.device):
            return as_tensor(self.engine_plan.warp(as_array(x)))

    def backward(self, x, grad_y, need_x=True, need_eps=True):
        with _on_stream(self.device):
            grad_x, grad_eps = self.engine_plan.backward(
                as_array(x), as_array(grad_y), need_x=bool(need_x), need_eps=bool(need_eps)
            )
        return (None if grad_x is None else as_tensor(grad_x)), (None if grad_eps is None else as_tensor(grad_eps))


def warp_plan(eps: torch.Tensor, kernel, padding) -> TensorPlan:
    """The plan of a warp by ``eps`` (B, d, *S) (eq 2)."""
    with _on_stream(eps.device):
        return TensorPlan(_engine_warp_plan(as_array(eps), kernel, padding), eps.device)


def sample_plan(coords: torch.Tensor, in_shape, kernel, padding) -> TensorPlan:
    """The plan of a sample at absolute positions ``coords`` (B, d, *S_out) of a lattice ``in_shape``."""
    with _on_stream(coords.device):
        return TensorPlan(_engine_sample_plan(as_array(coords), tuple(in_shape), kernel, padding), coords.device)
