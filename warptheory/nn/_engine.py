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
:func:`_engine_sample_plan`: switching the layer to another engine interface is a change
here and nowhere else.  Until the engines offer plans (``warptheory.warp_plan``), the
stand-ins below call :func:`warptheory.warping.warp` / :func:`~warptheory.warping.warp_backward`;
a sample on an output lattice other than the input's is a sequence of warps of ``x`` on
output tiles the size of the input lattice (:class:`_TiledSamplePlan`).
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


# ----- engine plans (the one place to switch to the engines' plan API) -----------------------
class _FunctionalWarpPlan:
    """Stand-in for the engines' ``WarpPlan``: keeps ε, kernel and padding and calls the
    functional API.  Same methods as the plan: ``warp(x)``, ``backward(x, grad_y, need_x, need_eps)``."""

    def __init__(self, eps, kernel, padding):
        self.eps, self.kernel, self.padding = eps, kernel, padding

    def warp(self, x):
        return warping.warp(x, self.eps, self.kernel, self.padding)

    def backward(self, x, grad_y, need_x=True, need_eps=True):
        return warping.warp_backward(x, self.eps, grad_y, self.kernel, self.padding, need_x=need_x, need_eps=need_eps)


class _TiledSamplePlan:
    """Stand-in for the engines' sample plan: ``y[b, n, o] = x(coords[b, :, o])`` on any output lattice.

    The output lattice is cut into tiles the size of the input lattice; on a tile with
    origin ``a`` the offsets ``coords[a + v] - v`` are warped (positions of the tile past
    the output's end get offset 0 and are discarded).  Gradients: grad_x sums the tiles'
    in a fixed order, grad_coords is the tiles' grad_eps.  One tile, without copies, when
    the output lattice is the input's.
    """

    def __init__(self, coords, in_shape, kernel, padding):
        self.kernel, self.padding = kernel, padding
        self.in_shape, self.out_shape = tuple(in_shape), tuple(coords.shape[2:])
        xp = np if isinstance(coords, np.ndarray) else _cupy()
        self.xp = xp
        counts = [-(-o // s) for o, s in zip(self.out_shape, self.in_shape)]
        self.tiles = []  # (output slices, extents, eps of the tile)
        for origin in np.ndindex(*counts):
            start = [i * s for i, s in zip(origin, self.in_shape)]
            extent = [min(s, o - a) for s, o, a in zip(self.in_shape, self.out_shape, start)]
            out_slices = tuple(slice(a, a + e) for a, e in zip(start, extent))
            head = tuple(slice(0, e) for e in extent)
            if self.out_shape == self.in_shape:
                eps = coords - self._lattice(coords.dtype)
            else:
                eps = xp.zeros((coords.shape[0], coords.shape[1], *self.in_shape), dtype=coords.dtype)
                eps[(slice(None), slice(None), *head)] = (
                    coords[(slice(None), slice(None), *out_slices)] - self._lattice(coords.dtype)[(slice(None), *head)]
                )
            self.tiles.append((out_slices, head, eps))

    def _lattice(self, dtype):
        return self.xp.asarray(np.indices(self.in_shape, dtype=dtype))

    def _whole(self):
        return len(self.tiles) == 1 and self.out_shape == self.in_shape

    def warp(self, x):
        if self._whole():
            return warping.warp(x, self.tiles[0][2], self.kernel, self.padding)
        out = self.xp.empty((*x.shape[:2], *self.out_shape), dtype=x.dtype)
        for out_slices, head, eps in self.tiles:
            y = warping.warp(x, eps, self.kernel, self.padding)
            out[(slice(None), slice(None), *out_slices)] = y[(slice(None), slice(None), *head)]
        return out

    def backward(self, x, grad_y, need_x=True, need_eps=True):
        if self._whole():
            return warping.warp_backward(
                x, self.tiles[0][2], grad_y, self.kernel, self.padding, need_x=need_x, need_eps=need_eps
            )
        xp = self.xp
        grad_x = xp.zeros(x.shape, dtype=x.dtype) if need_x else None
        grad_coords = xp.empty((x.shape[0], len(self.in_shape), *self.out_shape), dtype=x.dtype) if need_eps else None
        for out_slices, head, eps in self.tiles:
            g = xp.zeros(x.shape, dtype=x.dtype)
            g[(slice(None), slice(None), *head)] = grad_y[(slice(None), slice(None), *out_slices)]
            gx, geps = warping.warp_backward(x, eps, g, self.kernel, self.padding, need_x=need_x, need_eps=need_eps)
            if need_x:
                grad_x += gx
            if need_eps:
                grad_coords[(slice(None), slice(None), *out_slices)] = geps[(slice(None), slice(None), *head)]
        return grad_x, grad_coords


def _engine_warp_plan(eps, kernel, padding):
    return _FunctionalWarpPlan(eps, kernel, padding)


def _engine_sample_plan(coords, in_shape, kernel, padding):
    return _TiledSamplePlan(coords, in_shape, kernel, padding)


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
