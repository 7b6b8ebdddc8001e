r"""Warping blocks as :class:`torch.nn.Module`\ s (paper §2, §2.1, §3.1, §5).

* :class:`Warp` — eq 2 with ε given;
* :class:`SelfWarp` — ε from a convolution of x itself (N inputs, d outputs), then x warped
  by it (§2.1); the options of §3.1/§5: ``pre_eps_norm`` (a batch norm between x and that
  convolution), ``detach`` (no gradient from ε into x), ``eps_grad_scale``;
* :class:`PackWarp` — one convolution with N + d outputs, the last d of which are ε (§2.1);
* :class:`WarpedResidual` — a residual connection whose skip is warped by the ε of the
  blocks inside the branch (§2.1, spatial consistency);
* :class:`DeformConv2d` (torchvision's module interface) and :class:`SelfDeformConv2d` (with
  its own offset convolution), :class:`ActiveConv2d` (ACU) and :class:`SpatialTransformer`
  (STN): the constructions of §2.

Every block that computes ε from data (SelfWarp, PackWarp, SelfDeformConv2d,
SpatialTransformer) keeps the paper's per-layer metric after each forward in its
attribute ``eps_variance`` (:func:`~warptheory.nn.functional.eps_variance`: the average
per-sample variance of ε, a detached 0-dim tensor; ``None`` before the first forward),
computed from the ε of that forward without another pass; :func:`eps_variances` collects
them by module name.  The parameters of the ε branch (the convolution that predicts ε and
the pre-ε batch norm; ACU's offsets) are listed by each block's ``eps_parameters()`` and,
for a whole model, by :func:`split_eps_parameters` (eq 15's two directions, §5.2).
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import torch
from torch import nn

from ..kernels import get_kernel
from . import functional as WF

__all__ = [
    "WarpBlock",
    "Warp",
    "SelfWarp",
    "PackWarp",
    "WarpedResidual",
    "DeformConv2d",
    "SelfDeformConv2d",
    "ActiveConv2d",
    "SpatialTransformer",
    "record_eps",
    "eps_variances",
    "split_eps_parameters",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}

# ε of the warp blocks run inside a `record_eps()` block, in execution order
_RECORDED: contextvars.ContextVar = contextvars.ContextVar("warptheory_nn_recorded_eps", default=None)


@contextlib.contextmanager
def record_eps():
    """Collect ``(block, eps)`` of every warp block that runs inside the ``with`` block.

    Used by :class:`WarpedResidual` (and :class:`warptheory.nn.resnet.BasicBlock`) to warp
    the skip connection by the branch's ε; nested records are separate.

    >>> import torch
    >>> block = SelfWarp(3)
    >>> with record_eps() as recorded:
    ...     _ = block(torch.randn(2, 3, 5, 5))
    >>> recorded[0][0] is block and tuple(recorded[0][1].shape) == (2, 2, 5, 5)
    True
    """
    recorded: list = []
    token = _RECORDED.set(recorded)
    try:
        yield recorded
    finally:
        _RECORDED.reset(token)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


class WarpBlock(nn.Module):
    """Base of the blocks that warp by an ε they compute: kernel, padding, the ε-variance
    metric and the ε-branch parameters.

    Attributes
    ----------
    kernel : Kernel
    padding : str
    eps_variance : torch.Tensor or None
        Average per-sample variance of the last forward's ε (§2.1), detached, 0-dim.
    """

    def __init__(self, kernel="tri", padding="zeros"):
        super().__init__()
        self.kernel = get_kernel(kernel)
        WF._check_padding("padding", padding)
        self.padding = padding
        self.eps_variance = None

    def _observe(self, eps):
        """Record the metric and hand ε to an enclosing :func:`record_eps`."""
        self.eps_variance = WF.eps_variance(eps)
        recorded = _RECORDED.get()
        if recorded is not None:
            recorded.append((self, eps))

    def eps_parameters(self):
        """The parameters of the ε branch (those that move ε)."""
        return iter(())

    def warp_like(self, tensor, eps):
        """Warp another tensor (a skip connection) by this block's ε, kernel and padding."""
        return WF.warp(tensor, eps, self.kernel, self.padding)

    def extra_repr(self):
        return f"kernel={self.kernel.name!r}, padding={self.padding!r}"


class Warp(nn.Module):
    """``y = warp(x, eps)`` (eq 2) as a module; ``forward(x, eps)``.

    >>> import torch
    >>> x = torch.randn(1, 2, 3, 4)
    >>> bool(torch.equal(Warp()(x, torch.zeros(1, 2, 3, 4)), x))
    True
    """

    def __init__(self, kernel="tri", padding="zeros"):
        super().__init__()
        self.kernel = get_kernel(kernel)
        WF._check_padding("padding", padding)
        self.padding = padding

    def forward(self, x, eps):
        return WF.warp(x, eps, self.kernel, self.padding)

    def extra_repr(self):
        return f"kernel={self.kernel.name!r}, padding={self.padding!r}"


def _zero_(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SelfWarp(WarpBlock):
    r"""SelfWarp (§2.1): ε predicted from x by a convolution with N inputs and d outputs, then
    ``y = warp(x, ε)``.

    Parameters
    ----------
    channels : int
        N, the channels of x.
    kernel_size : int, optional
        Size of the ε convolution (odd; 'same' padding).  Default 3 (§3.1's k).
    kernel, padding : optional
        Interpolation kernel and padding of the warp (see :func:`~warptheory.nn.functional.warp`).
    pre_eps_norm : bool, optional
        A batch norm between x and the ε convolution (§3.1, "Pre-ε BN" of Table 1): it
        removes one factor σ_x² from eq 9 and makes ε invariant to the scale of x.
    detach : bool, optional
        Compute ε from ``x.detach()``: no gradient flows from ε into x (§5, "detached").
    eps_grad_scale : float, optional
        Multiplies the gradient arriving at ε (hence the ε-branch parameters' gradients and
        the ε-path gradient into x) — the gradient coefficient deformable convolutions put
        on their offset branch (§5, Table 2).
    spatial_dims : {1, 2, 3}, optional
        d; default 2 (images).
    norm_weight_init : float, optional
        Initial γ of the pre-ε batch norm (§5's 1.0 / 0.1 ablation).
    eps_bias : bool, optional
        Whether the ε convolution has a bias.

    Attributes
    ----------
    eps_branch : nn.Sequential
        [BatchNorm,] Conv: the ε branch.  Its weights (and bias) start at 0 (§5.2), so the
        block starts as the identity.
    eps_variance : torch.Tensor or None
        Average per-sample variance of the last ε (§2.1).

    Examples
    --------
    At initialisation the block is the identity:

    >>> import torch
    >>> x = torch.randn(2, 4, 6, 6)
    >>> bool(torch.equal(SelfWarp(4, pre_eps_norm=True)(x), x))
    True
    """

    def __init__(
        self,
        channels,
        kernel_size=3,
        *,
        kernel="tri",
        padding="zeros",
        pre_eps_norm=False,
        detach=False,
        eps_grad_scale=1.0,
        spatial_dims=2,
        norm_weight_init=1.0,
        eps_bias=True,
    ):
        super().__init__(kernel, padding)
        _check_positive_int("channels", channels)
        _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd size ('same' padding), got {kernel_size}")
        _check_choice("spatial_dims", spatial_dims, (1, 2, 3))
        WF._check_scale("eps_grad_scale", eps_grad_scale)
        self.channels, self.spatial_dims = channels, spatial_dims
        self.pre_eps_norm, self.detach, self.eps_grad_scale = bool(pre_eps_norm), bool(detach), float(eps_grad_scale)
        layers = []
        if pre_eps_norm:
            norm = _NORM[spatial_dims](channels)
            nn.init.constant_(norm.weight, norm_weight_init)
            layers.append(norm)
        layers.append(_zero_(_CONV[spatial_dims](channels, spatial_dims, kernel_size, padding=kernel_size // 2, bias=eps_bias)))
        self.eps_branch = nn.Sequential(*layers)

    def eps_parameters(self):
        return self.eps_branch.parameters()

    def compute_eps(self, x):
        """ε of ``x`` (B, d, *S), with this block's detach and gradient scale."""
        eps = self.eps_branch(x.detach() if self.detach else x)
        return WF.scale_grad(eps, self.eps_grad_scale)

    def forward(self, x):
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"x: expected shape (B, {self.channels}, *S) with {self.spatial_dims} spatial axes, got {tuple(x.shape)}"
            )
        eps = self.compute_eps(x)
        self._observe(eps)
        return WF.warp(x, eps, self.kernel, self.padding)

    def extra_repr(self):
        return (
            f"{self.channels}, {super().extra_repr()}, pre_eps_norm={self.pre_eps_norm}, detach={self.detach}, "
            f"eps_grad_scale={self.eps_grad_scale}"
        )


class PackWarp(WarpBlock):
    r"""PackWarp (§2.1): one convolution with N + d outputs; the first N are the features, the
    last d the ε that warps them.

    The weight is held as two parameters, ``weight`` (N, C_in, k, k) and ``eps_weight``
    (d, C_in, k, k), concatenated for a single convolution call, so that the ε rows can be
    told apart (and start at 0, §5.2).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int, optional
        Odd; the convolution pads by ``dilation·(kernel_size − 1)/2``.
    stride, dilation : int, optional
    bias : bool, optional
        Bias of the feature rows (the ε rows always have one, starting at 0).
    kernel, padding, eps_grad_scale : optional
        As in :class:`SelfWarp`.

    Examples
    --------
    >>> import torch
    >>> block = PackWarp(3, 5, stride=2)
    >>> x = torch.randn(2, 3, 8, 8)
    >>> bool(torch.equal(block(x), torch.nn.functional.conv2d(x, block.weight, block.bias, stride=2, padding=1)))
    True
    """

    def __init__(
        self, in_channels, out_channels, kernel_size=3, *, stride=1, dilation=1, bias=True, kernel="tri",
        padding="zeros", eps_grad_scale=1.0,
    ):
        super().__init__(kernel, padding)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("kernel_size", kernel_size),
                            ("stride", stride), ("dilation", dilation)):
            _check_positive_int(name, value)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd size, got {kernel_size}")
        WF._check_scale("eps_grad_scale", eps_grad_scale)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.dilation, self.eps_grad_scale = stride, dilation, float(eps_grad_scale)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)  # torch's default initialisation
        self.weight = conv.weight
        self.bias = conv.bias
        self.eps_weight = nn.Parameter(torch.zeros(2, in_channels, kernel_size, kernel_size))
        self.eps_bias = nn.Parameter(torch.zeros(2))

    def eps_parameters(self):
        return iter((self.eps_weight, self.eps_bias))

    def forward(self, x):
        weight = torch.cat([self.weight, self.eps_weight])
        bias = torch.cat([self.bias if self.bias is not None else self.eps_bias.new_zeros(self.out_channels),
                          self.eps_bias])
        out = nn.functional.conv2d(
            x, weight, bias, stride=self.stride, padding=self.dilation * (self.kernel_size - 1) // 2,
            dilation=self.dilation,
        )
        features, eps = out[:, : self.out_channels], out[:, self.out_channels:]
        eps = WF.scale_grad(eps, self.eps_grad_scale)
        self._observe(eps)
        return WF.warp(features, eps, self.kernel, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"{super().extra_repr()}")


class WarpedResidual(nn.Module):
    r"""``branch(x) + skip``, the skip warped by the ε of the warp blocks run in the branch (§2.1).

    ``skip = shortcut(x)`` (identity by default), then warped by each ε the branch's
    warp blocks computed, in the order they ran, with their kernel and padding: the
    branch's output at v comes from the position that those warps composed point at, so
    the skip is moved the same way (the paper's "spatial consistency").  With
    ``warp_skip=False`` the skip is left as it is (the §5 ablation).

    Parameters
    ----------
    branch : nn.Module
    shortcut : nn.Module, optional
        Applied to x before warping (e.g. a downsampling projection); must give the
        branch's output shape.
    warp_skip : bool, optional

    Examples
    --------
    >>> import torch
    >>> block = WarpedResidual(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), SelfWarp(3)))
    >>> tuple(block(torch.randn(2, 3, 5, 5)).shape)
    (2, 3, 5, 5)
    """

    def __init__(self, branch, shortcut=None, *, warp_skip=True):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.warp_skip = bool(warp_skip)

    def forward(self, x):
        with record_eps() as recorded:
            out = self.branch(x)
        return out + warp_skip(self.shortcut(x), recorded if self.warp_skip else ())

    def extra_repr(self):
        return f"warp_skip={self.warp_skip}"


def warp_skip(skip, recorded):
    """Warp ``skip`` by each recorded ``(block, eps)`` in turn (see :class:`WarpedResidual`)."""
    for block, eps in recorded:
        if tuple(eps.shape[2:]) != tuple(skip.shape[2:]):
            raise ValueError(
                f"skip: spatial shape {tuple(skip.shape[2:])} differs from the ε of {type(block).__name__} "
                f"{tuple(eps.shape[2:])}; downsample the shortcut to the branch's output lattice"
            )
        skip = block.warp_like(skip, eps)
    return skip


class DeformConv2d(nn.Module):
    """Deformable convolution with torchvision's module interface, built from warps (§2).

    ``DeformConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
    groups=1, bias=True)``; ``forward(input, offset, mask=None)`` calls
    :func:`~warptheory.nn.functional.deform_conv2d`.  Initialised as torchvision's
    (Kaiming-uniform weight, a = √5).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 *, kernel="tri"):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            _check_positive_int(name, value)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: {groups} must divide in_channels {in_channels} and out_channels {out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = WF._pair("kernel_size", kernel_size, 1)
        self.stride = WF._pair("stride", stride, 1)
        self.padding = WF._pair("padding", padding, 0)
        self.dilation = WF._pair("dilation", dilation, 1)
        self.kernel = get_kernel(kernel)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def output_size(self, height, width):
        """(H_out, W_out) for an input of (height, width)."""
        return tuple(
            (s + 2 * p - d * (k - 1) - 1) // st + 1
            for s, p, d, k, st in zip((height, width), self.padding, self.dilation, self.kernel_size, self.stride)
        )

    def forward(self, input, offset, mask=None):
        return WF.deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask,
                                kernel=self.kernel)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
                f"kernel={self.kernel.name!r}")


class SelfDeformConv2d(WarpBlock):
    r"""A deformable convolution with its own offset convolution (DCN v1, v2 with ``modulated``).

    The offsets (and, for v2, the mask logits) come from a convolution of the input with
    the deformable convolution's kernel size, stride, padding and dilation, whose weights
    start at 0 (so the layer starts as an ordinary convolution, §5.2; a v2 mask starts at
    sigmoid(0) = 1/2 as in DCNv2).  ``pre_eps_norm``, ``detach`` and ``eps_grad_scale`` act
    on that offset branch as in :class:`SelfWarp` (§5, Table 2).  ``eps_variance`` is the
    average per-sample variance of the 2·G·K offset components.  Its offsets are not handed
    to :func:`record_eps`: they live on the kernel points, not on the output lattice, so a
    :class:`WarpedResidual` around it leaves the skip as it is.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        As for :class:`torch.nn.Conv2d`; ``padding`` defaults to 'same' for odd kernels
        (``dilation·(k − 1)/2``).
    offset_groups : int, optional
    modulated : bool, optional
        DCNv2's mask.
    kernel : optional
        Interpolation kernel of the samples (bilinear ``"tri"`` is DCN's).
    pre_eps_norm, detach, eps_grad_scale, norm_weight_init : optional
        As in :class:`SelfWarp`.
    """

    def __init__(
        self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, dilation=1, groups=1, bias=True, *,
        offset_groups=1, modulated=False, kernel="tri", pre_eps_norm=False, detach=False, eps_grad_scale=1.0,
        norm_weight_init=1.0,
    ):
        super().__init__(kernel, "zeros")
        _check_positive_int("offset_groups", offset_groups)
        if in_channels % offset_groups:
            raise ValueError(f"offset_groups: {offset_groups} must divide in_channels {in_channels}")
        ks = WF._pair("kernel_size", kernel_size, 1)
        dil = WF._pair("dilation", dilation, 1)
        if padding is None:
            if ks[0] % 2 == 0 or ks[1] % 2 == 0:
                raise ValueError(f"padding: give it explicitly for the even kernel_size {ks}")
            padding = (dil[0] * (ks[0] - 1) // 2, dil[1] * (ks[1] - 1) // 2)
        WF._check_scale("eps_grad_scale", eps_grad_scale)
        self.deform = DeformConv2d(in_channels, out_channels, ks, stride, padding, dil, groups, bias, kernel=kernel)
        self.offset_groups, self.modulated = offset_groups, bool(modulated)
        self.pre_eps_norm, self.detach, self.eps_grad_scale = bool(pre_eps_norm), bool(detach), float(eps_grad_scale)
        points = ks[0] * ks[1]
        self.num_offsets = 2 * offset_groups * points
        layers = []
        if pre_eps_norm:
            norm = nn.BatchNorm2d(in_channels)
            nn.init.constant_(norm.weight, norm_weight_init)
            layers.append(norm)
        layers.append(_zero_(nn.Conv2d(
            in_channels, self.num_offsets + (offset_groups * points if modulated else 0), ks, stride, padding, dil,
        )))
        self.eps_branch = nn.Sequential(*layers)

    def eps_parameters(self):
        return self.eps_branch.parameters()

    def forward(self, x):
        out = WF.scale_grad(self.eps_branch(x.detach() if self.detach else x), self.eps_grad_scale)
        offset = out[:, : self.num_offsets]
        mask = torch.sigmoid(out[:, self.num_offsets:]) if self.modulated else None
        self.eps_variance = WF.eps_variance(offset)
        return self.deform(x, offset, mask)

    def extra_repr(self):
        return (f"offset_groups={self.offset_groups}, modulated={self.modulated}, pre_eps_norm={self.pre_eps_norm}, "
                f"detach={self.detach}, eps_grad_scale={self.eps_grad_scale}")


class ActiveConv2d(nn.Module):
    r"""Active convolution unit (ACU, §2): a convolution whose kernel points are moved by learned
    offsets, the same at every position and for every input.

    The deformable convolution of :func:`~warptheory.nn.functional.deform_conv2d` with
    ``offset[b, 2k:2k+2, r, c] = offsets[k]`` for all b, r, c: K warps of x by constants
    (§2: "ε_k is a constant that doesn't vary spatially ... directly trainable"),
    concatenated, then a 1×1 convolution.  ``offsets`` (K, 2), in pixels (vertical,
    horizontal) relative to the regular (dilated) grid, starts at 0, where the unit is an
    ordinary convolution.

    Examples
    --------
    >>> import torch
    >>> acu = ActiveConv2d(2, 3, 3, padding=1).double()
    >>> x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    >>> ref = torch.nn.functional.conv2d(x, acu.weight, acu.bias, padding=1)
    >>> bool(torch.allclose(acu(x), ref, rtol=1e-12, atol=1e-12))
    True
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 *, kernel="tri", sampling_padding="zeros"):
        super().__init__()
        self.conv = DeformConv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                                 kernel=kernel)
        WF._check_padding("sampling_padding", sampling_padding)
        self.sampling_padding = sampling_padding
        kh, kw = self.conv.kernel_size
        self.offsets = nn.Parameter(torch.zeros(kh * kw, 2))

    @property
    def weight(self):
        return self.conv.weight

    @property
    def bias(self):
        return self.conv.bias

    def eps_parameters(self):
        return iter((self.offsets,))

    def forward(self, x):
        h_out, w_out = self.conv.output_size(*x.shape[2:])
        offset = self.offsets.reshape(1, -1, 1, 1).expand(x.shape[0], -1, h_out, w_out)
        return WF.deform_conv2d(x, offset, self.conv.weight, self.conv.bias, self.conv.stride, self.conv.padding,
                                self.conv.dilation, kernel=self.conv.kernel, sampling_padding=self.sampling_padding)


class SpatialTransformer(WarpBlock):
    r"""Spatial transformer (STN, §2): a localisation network predicts an affine θ, whose
    sampling grid defines ε (:func:`~warptheory.nn.functional.affine_offsets`), and x is warped by it.

    Parameters
    ----------
    localization : nn.Module
        Maps x (B, C, *S) to B·d·(d + 1) numbers (reshaped to θ of shape (B, d, d + 1)).
        Start it at the identity (zero last weights, bias ``[1, 0, 0, 0, 1, 0]``) for a
        transformer that starts as the identity.
    kernel, padding : optional
    align_corners : bool, optional
        torch's convention of the normalised coordinates θ acts on.
    """

    def __init__(self, localization, *, kernel="tri", padding="zeros", align_corners=True):
        super().__init__(kernel, padding)
        self.localization = localization
        self.align_corners = bool(align_corners)

    def eps_parameters(self):
        return self.localization.parameters()

    def forward(self, x):
        d = x.dim() - 2
        theta = self.localization(x).reshape(x.shape[0], d, d + 1)
        eps = WF.affine_offsets(theta, x.shape, self.align_corners)
        self._observe(eps)
        return WF.warp(x, eps, self.kernel, self.padding)


# ----- whole-model helpers -----------------------------------------------------------------
def eps_variances(model: nn.Module) -> dict:
    """``{module name: float}`` of the last forward's ε variance of every warp block in ``model``
    (blocks not run yet are left out).  Reads each 0-dim tensor once (a host sync on GPU)."""
    return {
        name: float(m.eps_variance)
        for name, m in model.named_modules()
        if isinstance(m, WarpBlock) and m.eps_variance is not None
    }


def split_eps_parameters(model: nn.Module):
    """``(eps_params, other_params)``: the parameters of every ε branch in ``model`` (see each
    block's ``eps_parameters()``) and all the others — the two directions of §5.2's
    disentangled landscape (eq 15, Figure 4).

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), SelfWarp(4, pre_eps_norm=True))
    >>> eps, other = split_eps_parameters(model)
    >>> len(eps), len(other)        # BN γ, β, conv weight, bias | conv weight, bias
    (4, 2)
    """
    eps_ids = set()
    for m in model.modules():
        if hasattr(m, "eps_parameters") and isinstance(m, (WarpBlock, ActiveConv2d)):
            eps_ids.update(id(p) for p in m.eps_parameters())
    eps, other = [], []
    for p in model.parameters():
        (eps if id(p) in eps_ids else other).append(p)
    return eps, other
