r"""Warps as differentiable torch operations, and the constructions of §2 built from them.

* :func:`warp` — eq 2, :math:`y_{n\mathbf v} = \sum_{\mathbf u} x_{n\mathbf u} \prod_k \varphi(v_k - u_k + \varepsilon_{k\mathbf v})`,
  with the gradients of eqs 3–4 (= 17–18) for ``x`` and ``eps``;
* :func:`sample` — the same interpolation at absolute positions on another output lattice;
* :func:`deform_conv2d` — deformable convolution (v1, and v2 with a mask) as §2 builds it:
  one sample of ``x`` per kernel point, concatenated along the channels, then a 1×1
  convolution; torchvision's signature, offset and mask layout and boundary rule;
* :func:`affine_offsets` — the offsets ε of a spatial transformer's affine map, so that
  ``warp(x, affine_offsets(theta, x.shape))`` is ``grid_sample(x, affine_grid(theta, ...))``;
* :func:`eps_variance` — the per-layer metric of §2.1, the average per-sample variance of ε;
* :func:`scale_grad` — identity forward, scaled gradient backward.

The engines run underneath (Numba for CPU tensors, CuPy for CUDA tensors); conventions,
padding and the NaN policy are those of :mod:`warptheory.warping`, and the equivalences
with torch's operators are written out in ``paper_notes/s02_warping.md`` ("The PyTorch
layer").  Only first derivatives exist: differentiating a gradient (``create_graph=True``
and a second backward) raises :class:`DoubleBackwardError`.

Examples
--------
Zero offsets give the identity, and the gradient of ``sum(warp(x, eps))`` with respect to
``x`` is the column sums of the warp, which under periodic padding and the mean-preserving
``tri`` kernel total the number of outputs:

>>> import torch
>>> x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
>>> bool(torch.equal(warp(x, torch.zeros(2, 2, 5, 6, dtype=torch.float64)), x))
True
>>> eps = 2 * torch.randn(2, 2, 5, 6, dtype=torch.float64)
>>> warp(x, eps, padding="periodic").sum().backward()
>>> bool(torch.isclose(x.grad.sum(), torch.tensor(2 * 3 * 5 * 6.0, dtype=torch.float64)))
True
"""
from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.nn.functional as F

from .._docs import docfiller
from ..kernels import get_kernel
from ..warping import PADDINGS
from . import _engine

__all__ = [
    "DoubleBackwardError",
    "warp",
    "sample",
    "deform_conv2d",
    "affine_offsets",
    "eps_variance",
    "scale_grad",
]

_DOCS = {
    "kernel": """kernel : str or Kernel, optional
        Interpolation kernel φ: a built-in name (``"tri"`` = bilinear, ``"cos"``, ``"rect"``,
        ``"hann"``, ``"sqrt_tri"``) or a :class:`~warptheory.kernels.Kernel` from
        :func:`~warptheory.kernels.kernel_from_sympy`.  Default ``"tri"``.""",
    "padding": """padding : {"zeros", "periodic", "border"}, optional
        Value of the signal off the lattice (``paper_notes/s02_warping.md``): zeros (the
        paper's choice, §2.1; torch's ``padding_mode="zeros"``), periodic (the torus of the
        theory; torch has none) or border (torch's ``padding_mode="border"``).""",
    "engine": """Notes
    -----
    CPU tensors are warped by the Numba engine on their own memory (no copy unless they
    are not contiguous), CUDA tensors by the CuPy engine through DLPack, on torch's
    current stream.  float32 and float64; ``x`` and the offsets must share dtype and
    device.  A NaN or ±inf offset follows the engines' policy: the outputs gathered at
    that position are NaN and nothing is scattered from it, so one bad offset cannot
    spread.  φ' is the right derivative at kinks.""",
}
_fill_doc = docfiller(_DOCS)

_FLOAT_DTYPES = (torch.float32, torch.float64)


class DoubleBackwardError(RuntimeError):
    """Raised when a gradient of a warptheory warp is differentiated again (not implemented)."""


# ----- argument checks ------------------------------------------------------------------------
def _check_tensor(name, value, ndim=None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype torch.float32 or torch.float64, got {value.dtype}")
    if ndim is not None and value.dim() not in ndim:
        expected = " or ".join(str(n) for n in ndim)
        raise ValueError(f"{name}: expected a {expected}-dimensional tensor, got shape {tuple(value.shape)}")


def _check_like(name, value, ref_name, ref):
    """``value`` shares ``ref``'s device and dtype."""
    if value.device != ref.device:
        raise ValueError(
            f"{name}: on device {value.device}, but {ref_name} is on {ref.device}; move both to one device"
        )
    if value.dtype != ref.dtype:
        raise TypeError(f"{name}: dtype {value.dtype} does not match {ref_name}'s dtype {ref.dtype}")


def _check_padding(name, padding):
    if not isinstance(padding, str) or padding not in PADDINGS:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")


def _check_signal(x, offsets_name, offsets, same_lattice=True):
    """x (B, N, *S) with 1–3 spatial axes and offsets (B, d, *S) — or (B, d, *S_out) of any
    sizes when not ``same_lattice`` — on x's device and dtype."""
    _check_tensor("x", x, ndim=(3, 4, 5))
    _check_tensor(offsets_name, offsets)
    _check_like(offsets_name, offsets, "x", x)
    batch, d = x.shape[0], x.dim() - 2
    if offsets.dim() != d + 2 or offsets.shape[:2] != (batch, d) or (same_lattice and offsets.shape[2:] != x.shape[2:]):
        expected = f"({batch}, {d}, {', '.join(map(str, x.shape[2:]))})" if same_lattice else (
            f"({batch}, {d}, *S_out) with {d} output axes"
        )
        raise ValueError(
            f"{offsets_name}: expected shape {expected} for x of shape {tuple(x.shape)}, got {tuple(offsets.shape)}"
        )


# ----- autograd functions -------------------------------------------------------------------
class _PlanBackward(torch.autograd.Function):
    """The backward of a warp as a function, so that differentiating it raises a clear error."""

    @staticmethod
    def forward(ctx, x, offsets, grad_y, plan, need_x, need_offsets, what):
        ctx.what = what
        return plan.backward(x, grad_y, need_x=need_x, need_eps=need_offsets)

    @staticmethod
    def backward(ctx, *grads):
        raise DoubleBackwardError(
            f"warptheory.nn.functional.{ctx.what}: double backward is not implemented (the gradient of a "
            "warp is not differentiable here: it would need φ'' and the transpose of eq 4). Use "
            "create_graph=False, or torch.nn.functional.grid_sample where second derivatives are needed."
        )


class _SampleFunction(torch.autograd.Function):
    """y = plan(x); the plan is built from the offsets (warp) or positions (sample) in the forward
    and kept on ``ctx`` for the backward."""

    @staticmethod
    def forward(ctx, x, offsets, plan_builder, what):
        plan = plan_builder(offsets)
        ctx.plan, ctx.what = plan, what
        ctx.save_for_backward(x, offsets)  # also guards against in-place changes before the backward
        return plan.forward(x)

    @staticmethod
    def backward(ctx, grad_y):
        x, offsets = ctx.saved_tensors
        need_x, need_offsets = ctx.needs_input_grad[:2]
        grad_x, grad_offsets = _PlanBackward.apply(
            x, offsets, grad_y, ctx.plan, need_x, need_offsets, ctx.what
        )
        return grad_x, grad_offsets, None, None


def _apply(x, offsets, kernel, padding, make_plan, what):
    """y = plan(x) with the plan ``make_plan(offsets, kernel, padding)`` built in the forward."""
    kernel = get_kernel(kernel)
    _check_padding("padding", padding)
    return _SampleFunction.apply(x, offsets, lambda o: make_plan(o, kernel, padding), what)


# ----- public functions -----------------------------------------------------------------------
@_fill_doc
def warp(x: torch.Tensor, eps: torch.Tensor, kernel="tri", padding="zeros") -> torch.Tensor:
    r"""Warp ``x`` by ``eps`` (eq 2), differentiable in both (eqs 3–4).

    .. math::

        y_{n\mathbf v} = \sum_{\mathbf u} x_{n\mathbf u} \prod_k \varphi(v_k - u_k + \varepsilon_{k\mathbf v})

    Parameters
    ----------
    x : torch.Tensor, shape (B, N, *S)
        Signal with 1 to 3 spatial axes, float32 or float64.
    eps : torch.Tensor, shape (B, d, *S)
        Offsets in pixels, ``d = len(S)``; ``eps[:, k]`` moves along spatial axis ``k``
        (axis ``k + 2`` of ``x``; in 2-D ``eps[:, 0]`` is vertical, ``eps[:, 1]`` horizontal).
    {kernel}
    {padding}

    Returns
    -------
    y : torch.Tensor, shape (B, N, *S)

    {engine}

    Examples
    --------
    An integer offset is an exact shift; under periodic padding, :func:`torch.roll`:

    >>> import torch
    >>> x = torch.randn(1, 2, 4, 5)
    >>> eps = torch.zeros(1, 2, 4, 5)
    >>> eps[:, 1] = 2.0
    >>> bool(torch.equal(warp(x, eps, padding="periodic"), torch.roll(x, -2, dims=3)))
    True
    """
    _check_signal(x, "eps", eps)
    return _apply(x, eps, kernel, padding, _engine.warp_plan, "warp")


@_fill_doc
def sample(x: torch.Tensor, coords: torch.Tensor, kernel="tri", padding="zeros") -> torch.Tensor:
    r"""Interpolate ``x`` at absolute positions ``coords``: :math:`y_{n\mathbf o} = \sum_{\mathbf u} x_{n\mathbf u}
    \prod_k \varphi(c_{k\mathbf o} - u_k)`, differentiable in ``x`` and ``coords``.

    :func:`warp` is the case of an output lattice equal to the input's, with
    ``coords = v + eps``; here the output lattice ``S_out`` is free (strided or dilated
    sampling, several kernel points stacked along an axis, …).

    Parameters
    ----------
    x : torch.Tensor, shape (B, N, *S)
        Signal with 1 to 3 spatial axes, float32 or float64.
    coords : torch.Tensor, shape (B, d, *S_out)
        Sample positions in pixels of ``x``'s lattice (``coords[:, k]`` along spatial axis
        ``k``), ``d = len(S)`` output axes of any sizes.
    {kernel}
    {padding}

    Returns
    -------
    y : torch.Tensor, shape (B, N, *S_out)

    {engine}

    Examples
    --------
    Every second pixel, sampled on the lattice points themselves:

    >>> import torch
    >>> x = torch.randn(1, 1, 6, 8, dtype=torch.float64)
    >>> rows, cols = torch.meshgrid(torch.arange(0.0, 6, 2), torch.arange(0.0, 8, 2), indexing="ij")
    >>> coords = torch.stack([rows, cols])[None].to(torch.float64)
    >>> bool(torch.equal(sample(x, coords), x[:, :, ::2, ::2]))
    True
    """
    _check_signal(x, "coords", coords, same_lattice=False)
    in_shape = tuple(x.shape[2:])
    return _apply(x, coords, kernel, padding, lambda c, k, p: _engine.sample_plan(c, in_shape, k, p), "sample")


def eps_variance(eps: torch.Tensor) -> torch.Tensor:
    r"""The per-layer metric of §2.1: the average per-sample variance of ε.

    For offsets ``eps`` of shape (B, c, *S) (c = d for a warp, 2·K·groups for a deformable
    convolution), the variance over positions of each sample's each component, averaged
    over samples and components:
    :math:`\sigma_\varepsilon^2 = \frac{1}{Bc}\sum_{b,k} \operatorname{Var}_{\mathbf v}\,\varepsilon_{bk\mathbf v}`
    (population variance).  A constant shift of the whole image scores 0, as the paper
    wants (§2.1: correlated sampling directions are an affine shift, not a warp); §5 calls
    a run diverged when some layer exceeds 1000.  Returned detached, as a 0-dim tensor on
    ``eps``'s device (no host synchronisation).

    Examples
    --------
    >>> import torch
    >>> eps = torch.zeros(2, 2, 4, 4)
    >>> eps[:, 0] = 3.0            # a uniform shift
    >>> float(eps_variance(eps))
    0.0
    >>> eps[0, 1, :2] = 1.0        # half the positions of one component moved by 1: variance 1/4
    >>> float(eps_variance(eps)) == 0.25 / 4
    True
    """
    _check_tensor("eps", eps)
    if eps.dim() < 3:
        raise ValueError(f"eps: expected shape (B, c, *S) with at least one spatial axis, got {tuple(eps.shape)}")
    with torch.no_grad():
        return eps.detach().flatten(2).var(dim=2, correction=0).mean()


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, scale):
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def _check_scale(name, scale):
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise TypeError(f"{name}: expected a finite number, got {scale!r}")


def scale_grad(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward; multiplies the gradient by ``scale`` in the backward.

    >>> import torch
    >>> t = torch.ones(3, requires_grad=True)
    >>> scale_grad(t, 0.25).sum().backward()
    >>> t.grad.tolist() == [0.25, 0.25, 0.25]
    True
    """
    _check_scale("scale", scale)
    if scale == 1:
        return tensor
    return _ScaleGrad.apply(tensor, float(scale))


# ----- deformable convolution (§2) ------------------------------------------------------------
def _pair(name, value, minimum):
    values = (value, value) if isinstance(value, Integral) else tuple(value) if isinstance(value, (tuple, list)) else None
    if values is None or len(values) != 2 or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def deform_coords(offset, kernel_size, out_size, stride, padding, dilation):
    """Sample positions of a deformable convolution, ``(B·G, 2, K·H_out, W_out)``.

    ``offset`` (B, 2·G·K, H_out, W_out) in torchvision's layout (channel ``2(gK + k)`` the
    vertical and ``2(gK + k) + 1`` the horizontal offset of kernel point ``k = i·kw + j``
    in offset group ``g``); the position of kernel point (i, j) at output (r, c) is
    ``(r·stride_h − pad_h + i·dil_h + Δh, c·stride_w − pad_w + j·dil_w + Δw)``, each sum
    formed in the offset's dtype as torchvision does.  The K kernel points are stacked
    along the first output axis.
    """
    kh, kw = kernel_size
    h_out, w_out = out_size
    batch = offset.shape[0]
    k = kh * kw
    groups = offset.shape[1] // (2 * k)
    off = offset.reshape(batch, groups, k, 2, h_out, w_out)
    factory = dict(dtype=offset.dtype, device=offset.device)
    point = torch.arange(k, device=offset.device)
    rows = (torch.arange(h_out, **factory) * stride[0] - padding[0]).view(1, h_out) + (
        (point // kw).to(offset.dtype) * dilation[0]
    ).view(k, 1)
    cols = (torch.arange(w_out, **factory) * stride[1] - padding[1]).view(1, w_out) + (
        (point % kw).to(offset.dtype) * dilation[1]
    ).view(k, 1)
    coords = torch.stack([off[:, :, :, 0] + rows.view(k, h_out, 1), off[:, :, :, 1] + cols.view(k, 1, w_out)], dim=2)
    return coords.reshape(batch * groups, 2, k * h_out, w_out)


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    mask: torch.Tensor | None = None,
    *,
    kernel="tri",
    sampling_padding="zeros",
) -> torch.Tensor:
    r"""Deformable convolution built from warps as §2 says: one sample of ``input`` per kernel
    point, concatenated along the channels, then a 1×1 convolution.

    :math:`y_{Kn+k}(t) = x_n(t + \varepsilon_k(t) + \mathcal R_k)` for the ``K = kh·kw``
    kernel points :math:`\mathcal R_k` (the regular grid, strided and dilated), then a 1×1
    convolution from ``K·C_in`` to ``C_out`` channels whose weight is ``weight``
    flattened.  Signature, offset and mask layouts and boundary rule are those of
    ``torchvision.ops.deform_conv2d``: v1 without ``mask``, v2 (modulated) with it; a
    sample point is bilinear (``kernel="tri"``) on the zero-padded input, so a point at
    ``h <= -1`` or ``h >= H`` reads 0 and one inside reads its in-bounds corners.

    Parameters
    ----------
    input : torch.Tensor, shape (B, C_in, H, W)
    offset : torch.Tensor, shape (B, 2·G·kh·kw, H_out, W_out)
        Offsets per offset group ``G`` and kernel point, (vertical, horizontal) pairs:
        channel ``2(g·K + k)`` is Δh of kernel point ``k = i·kw + j`` in group ``g``.
        ``G`` (offset groups) is read from the channel count and must divide ``C_in``.
    weight : torch.Tensor, shape (C_out, C_in / groups, kh, kw)
        ``groups`` (weight groups) is read from ``C_in / weight.shape[1]``.
    bias : torch.Tensor, shape (C_out,), optional
    stride, padding, dilation : int or (int, int)
        As in :func:`torch.nn.functional.conv2d`; ``H_out = (H + 2 pad − dil (kh − 1) − 1) // stride + 1``.
    mask : torch.Tensor, shape (B, G·kh·kw, H_out, W_out), optional
        Modulation scalars (DCNv2), multiplying each sampled value.
    kernel : str or Kernel, optional
        Interpolation kernel of the samples; ``"tri"`` (bilinear) is torchvision's.
    sampling_padding : {"zeros", "periodic", "border"}, optional
        Value of ``input`` off its lattice; ``"zeros"`` is torchvision's rule.

    Returns
    -------
    torch.Tensor, shape (B, C_out, H_out, W_out)

    Notes
    -----
    Checked against a reference from ``torch.nn.functional.grid_sample`` per kernel point
    (``tests/test_nn.py``), values and the gradients of input, offset, mask, weight and
    bias; see ``paper_notes/s02_warping.md``.

    Examples
    --------
    Zero offsets give an ordinary convolution:

    >>> import torch
    >>> x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    >>> w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    >>> off = torch.zeros(2, 18, 4, 4, dtype=torch.float64)
    >>> y = deform_conv2d(x, off, w, stride=2, padding=1)
    >>> bool(torch.allclose(y, torch.nn.functional.conv2d(x, w, stride=2, padding=1), rtol=1e-12, atol=1e-12))
    True
    """
    _check_tensor("input", input, ndim=(4,))
    _check_tensor("offset", offset, ndim=(4,))
    _check_tensor("weight", weight, ndim=(4,))
    _check_like("offset", offset, "input", input)
    _check_like("weight", weight, "input", input)
    if bias is not None:
        _check_tensor("bias", bias, ndim=(1,))
        _check_like("bias", bias, "input", input)
    if mask is not None:
        _check_tensor("mask", mask, ndim=(4,))
        _check_like("mask", mask, "input", input)
    stride = _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    dilation = _pair("dilation", dilation, 1)
    _check_padding("sampling_padding", sampling_padding)
    kernel = get_kernel(kernel)

    batch, c_in, height, width = input.shape
    c_out, c_in_group, kh, kw = weight.shape
    k = kh * kw
    if c_in_group == 0 or c_in % c_in_group:
        raise ValueError(
            f"weight: shape[1] = {c_in_group} must divide the input's {c_in} channels (C_in / groups)"
        )
    groups = c_in // c_in_group
    if c_out % groups:
        raise ValueError(f"weight: {c_out} output channels are not divisible by the {groups} weight groups")
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f"bias: expected shape ({c_out},) for weight of shape {tuple(weight.shape)}, got {tuple(bias.shape)}")
    h_out = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"input: spatial size {(height, width)} is too small for kernel {(kh, kw)} with padding {padding} "
            f"and dilation {dilation} (output size {(h_out, w_out)})"
        )
    if offset.shape[1] == 0 or offset.shape[1] % (2 * k):
        raise ValueError(
            f"offset: expected 2·offset_groups·kh·kw channels, a multiple of 2·{kh}·{kw} = {2 * k} for weight of "
            f"shape {tuple(weight.shape)}, got {offset.shape[1]}"
        )
    offset_groups = offset.shape[1] // (2 * k)
    if c_in % offset_groups:
        raise ValueError(f"offset: its {offset_groups} offset groups do not divide the input's {c_in} channels")
    expected = (batch, 2 * offset_groups * k, h_out, w_out)
    if tuple(offset.shape) != expected:
        raise ValueError(f"offset: expected shape {expected} (B, 2·G·kh·kw, H_out, W_out), got {tuple(offset.shape)}")
    if mask is not None and tuple(mask.shape) != (batch, offset_groups * k, h_out, w_out):
        raise ValueError(
            f"mask: expected shape {(batch, offset_groups * k, h_out, w_out)} (B, G·kh·kw, H_out, W_out) for "
            f"{offset_groups} offset group(s) and kernel {(kh, kw)}, got {tuple(mask.shape)}"
        )

    coords = deform_coords(offset, (kh, kw), (h_out, w_out), stride, padding, dilation)
    grouped = input.reshape(batch * offset_groups, c_in // offset_groups, height, width)
    columns = sample(grouped, coords, kernel, sampling_padding)  # (B·G, C/G, K·H_out, W_out)
    columns = columns.view(batch, offset_groups, c_in // offset_groups, k, h_out * w_out)
    if mask is not None:
        columns = columns * mask.reshape(batch, offset_groups, 1, k, h_out * w_out)
    columns = columns.reshape(batch, c_in * k, h_out, w_out)  # channel c·K + k, as weight.flatten(1)
    return F.conv2d(columns, weight.reshape(c_out, c_in_group * k, 1, 1), bias, groups=groups)


# ----- spatial transformer (§2) ------------------------------------------------------------------
def affine_offsets(theta: torch.Tensor, size, align_corners: bool = True) -> torch.Tensor:
    r"""Offsets ε (pixels) of the affine sampling grid of a spatial transformer (§2).

    ``warp(x, affine_offsets(theta, x.shape, ac))`` equals
    ``grid_sample(x, affine_grid(theta, x.shape, ac), align_corners=ac)`` (bilinear, the
    same padding), differentiably in ``theta``: the affine map acts on torch's normalised
    coordinates (last spatial axis first), which are converted to the pixel position
    ``p`` of each output ``v``, and ``ε = p − v``.  With ``align_corners=True`` the
    normalised coordinate ``g`` of an axis of size ``S`` is pixel ``(g + 1)(S − 1)/2``,
    otherwise ``((g + 1) S − 1)/2``.

    Parameters
    ----------
    theta : torch.Tensor, shape (B, d, d + 1)
        Affine matrices in torch's convention (``d = 2``: rows for the horizontal then
        the vertical normalised coordinate; ``d = 3``: x, y, z).
    size : sequence of int
        ``(B, C, *S)`` with ``d = len(S)`` in {2, 3}, as for :func:`torch.nn.functional.affine_grid`.
    align_corners : bool, optional

    Returns
    -------
    eps : torch.Tensor, shape (B, d, *S), dtype and device of ``theta``

    Examples
    --------
    The identity matrix gives zero offsets, in both conventions:

    >>> import torch
    >>> theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    >>> all(float(affine_offsets(theta, (1, 3, 4, 5), ac).abs().max()) < 1e-15 for ac in (True, False))
    True
    """
    _check_tensor("theta", theta, ndim=(3,))
    try:
        size = tuple(int(s) for s in size)
    except TypeError:
        raise TypeError(f"size: expected a sequence of ints (B, C, *S), got {size!r}") from None
    if len(size) not in (4, 5) or min(size) < 1:
        raise ValueError(f"size: expected (B, C, H, W) or (B, C, D, H, W) with positive sizes, got {size}")
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners: expected a bool, got {type(align_corners).__name__}")
    spatial = size[2:]
    d = len(spatial)
    if tuple(theta.shape) != (size[0], d, d + 1):
        raise ValueError(f"theta: expected shape {(size[0], d, d + 1)} for size {size}, got {tuple(theta.shape)}")
    factory = dict(dtype=theta.dtype, device=theta.device)
    # normalised coordinate of every pixel along every spatial axis, shaped to broadcast over S
    normalised = []
    for axis, s in enumerate(spatial):
        i = torch.arange(s, **factory)
        n = (2 * i / (s - 1) - 1 if s > 1 else -torch.ones_like(i)) if align_corners else (2 * i + 1) / s - 1
        shape = [1] * d
        shape[axis] = s
        normalised.append(n.view(shape))
    # theta's columns act on (x, y[, z], 1), i.e. the spatial axes in reverse
    columns = normalised[::-1]
    eps = []
    for axis, s in enumerate(spatial):
        row = d - 1 - axis  # theta's row for this spatial axis
        g = theta[:, row, d].view(-1, *[1] * d)
        for c, n in enumerate(columns):
            g = g + theta[:, row, c].view(-1, *[1] * d) * n
        pixel = (g + 1) * (s - 1) / 2 if align_corners else ((g + 1) * s - 1) / 2
        eps.append(pixel - torch.arange(s, **factory).view([1] + [s if a == axis else 1 for a in range(d)]))
    return torch.stack([e.expand(size[0], *spatial) for e in eps], dim=1)
