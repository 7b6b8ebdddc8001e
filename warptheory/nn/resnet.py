r"""CIFAR ResNet-(6n+2) with every convolution plain, SelfWarp, PackWarp or deformable (paper §5).

He et al.'s CIFAR network (ResNet paper §4.2): a 3×3 stem convolution to 16 channels,
three stages of ``n`` basic blocks at 16, 32 and 64 channels (the first block of stages
2 and 3 with stride 2), global average pooling and a linear classifier; shortcuts are
option A (identity; subsampled and zero-padded where the shape changes) or option B
(1×1 projection + batch norm).  ``layer`` chooses what each 3×3 convolution becomes:

========== ==================================================================================
``"conv"``     a plain convolution (no bias; batch norm follows)
``"selfwarp"`` the convolution, then :class:`~warptheory.nn.SelfWarp` on its output (§2.1, §5:
               "after the convolution, another convolutional layer ... predict[s] ε from x")
``"packwarp"`` :class:`~warptheory.nn.PackWarp` (one convolution with N + 2 outputs)
``"deform"``   :class:`~warptheory.nn.SelfDeformConv2d` (offset convolution + deformable conv)
========== ==================================================================================

With ``warp_skip=True`` the skip of each block is warped by the ε its branch computed
(§2.1, :class:`~warptheory.nn.WarpedResidual`).  ``bn_weight_init`` sets γ of every batch
norm of the network (§5: 1.0 or 0.1); the pre-ε batch norms follow it unless
``eps_norm_weight_init`` is given.  Convolution and linear weights get He (Kaiming-normal)
initialisation; ε branches start at 0 (§5.2).

:func:`parameter_readings` builds ResNet-56 under each architectural reading of §5's
"+4.7 %" (SelfWarp) and "+46.2 %" (deformable) and counts the parameters
(``paper_notes/s05_results.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .modules import DeformConv2d, PackWarp, SelfDeformConv2d, SelfWarp, record_eps, warp_skip

__all__ = ["BasicBlock", "CifarResNet", "cifar_resnet", "count_parameters", "parameter_readings", "Reading"]

LAYERS = ("conv", "selfwarp", "packwarp", "deform")


def _conv_layer(layer, in_channels, out_channels, stride, options):
    """One 3×3 convolution of the network, as ``layer`` says."""
    if layer == "conv":
        return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
    if layer == "selfwarp":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                             SelfWarp(out_channels, **options))
    if layer == "packwarp":
        return PackWarp(in_channels, out_channels, 3, stride=stride, bias=False, **options)
    return SelfDeformConv2d(in_channels, out_channels, 3, stride, 1, bias=False, **options)


class _ShortcutA(nn.Module):
    """Option A: identity; where the shape changes, subsample by the stride and zero-pad channels."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = nn.functional.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + skip)``, the skip warped by the branch's ε when
    ``warp_skip`` (§2.1).

    Attributes ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``shortcut``, ``warp_skip``.
    """

    def __init__(self, in_channels, out_channels, stride=1, *, layer="conv", shortcut="A", warp_skip=True,
                 layer_options=None):
        super().__init__()
        options = dict(layer_options or {})
        self.conv1 = _conv_layer(layer, in_channels, out_channels, stride, options)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv_layer(layer, out_channels, out_channels, 1, options)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = _ShortcutA(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.warp_skip = bool(warp_skip)

    def forward(self, x):
        with record_eps() as recorded:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
        return torch.relu(out + warp_skip(self.shortcut(x), recorded if self.warp_skip else ()))


class CifarResNet(nn.Module):
    """See :func:`cifar_resnet`.  Attributes ``stem`` (conv), ``bn``, ``stages`` (three
    ``nn.Sequential`` of :class:`BasicBlock`), ``fc``."""

    def __init__(self, depth=56, layer="conv", num_classes=10, *, replace_stem=True, shortcut="A", warp_skip=True,
                 bn_weight_init=1.0, eps_norm_weight_init=None, **layer_options):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth: expected 6n + 2 with n >= 1 (8, 14, 20, ..., 56, 110), got {depth!r}")
        if layer not in LAYERS:
            raise ValueError(f"layer: expected one of {', '.join(map(repr, LAYERS))}, got {layer!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut: expected 'A' or 'B', got {shortcut!r}")
        if layer in ("selfwarp", "deform") and layer_options.get("pre_eps_norm"):
            layer_options["norm_weight_init"] = bn_weight_init if eps_norm_weight_init is None else eps_norm_weight_init
        n = (depth - 2) // 6
        self.depth, self.layer = depth, layer
        self.stem = _conv_layer(layer if replace_stem else "conv", 3, 16, 1, layer_options)
        self.bn = nn.BatchNorm2d(16)
        stages, in_channels = [], 16
        for index, width in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, layer=layer, shortcut=shortcut,
                                         warp_skip=warp_skip, layer_options=layer_options))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(64, num_classes)
        self._initialise(bn_weight_init)

    def _initialise(self, bn_weight_init):
        eps_ids = set()
        for m in self.modules():
            if hasattr(m, "eps_parameters") and not isinstance(m, CifarResNet):
                eps_ids.update(id(p) for p in m.eps_parameters())
        for m in self.modules():
            weight = getattr(m, "weight", None)
            if isinstance(weight, nn.Parameter) and id(weight) in eps_ids:
                continue
            if isinstance(m, (nn.Conv2d, nn.Linear, DeformConv2d, PackWarp)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, bn_weight_init)

    def forward(self, x):
        out = torch.relu(self.bn(self.stem(x)))
        out = self.stages(out)
        return self.fc(out.mean(dim=(2, 3)))


def cifar_resnet(depth=56, layer="conv", num_classes=10, **options) -> CifarResNet:
    """CIFAR ResNet-``depth`` (6n + 2) with every 3×3 convolution made ``layer``.

    Parameters
    ----------
    depth : int
        6n + 2: 20, 32, 44, 56 (§5), 110.
    layer : {"conv", "selfwarp", "packwarp", "deform"}
    num_classes : int
    replace_stem : bool, keyword
        Whether the stem convolution is replaced too (default True: "all convolutional layers").
    shortcut : {"A", "B"}, keyword
    warp_skip : bool, keyword
        Warp each skip by its branch's ε (§2.1).
    bn_weight_init, eps_norm_weight_init : float, keyword
        γ of the network's batch norms, and of the pre-ε ones (default: the same).
    **options
        Passed to the layer (``kernel``, ``padding``, ``pre_eps_norm``, ``detach``,
        ``eps_grad_scale``; for ``"deform"`` also ``modulated``, ``offset_groups``).

    Examples
    --------
    The plain ResNet-56 has 853,018 parameters (option A shortcuts); SelfWarp with a 3×3 ε
    convolution adds 2·9·N + 2 per convolution of N output channels:

    >>> count_parameters(cifar_resnet(56))
    853018
    >>> widths = [16] + [16] * 18 + [32] * 18 + [64] * 18
    >>> count_parameters(cifar_resnet(56, "selfwarp")) - 853018 == sum(18 * n + 2 for n in widths)
    True
    """
    return CifarResNet(depth, layer, num_classes, **options)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class Reading:
    """One architectural reading of a §5 parameter claim and its count."""

    claim: str
    description: str
    options: dict
    parameters: int
    baseline: int

    @property
    def increase(self) -> float:
        """Relative increase over the plain network, in percent."""
        return 100.0 * (self.parameters - self.baseline) / self.baseline


def parameter_readings(depth=56):
    """Build ResNet-``depth`` under each reading of §5's parameter claims and count.

    SelfWarp (+4.7 % in the paper): ε convolution 3×3 or 1×1 (``kernel_size``), with or
    without bias, with or without the pre-ε batch norm, stem replaced or not; PackWarp.
    Deformable (+46.2 %): DCN v1 (2·9 offsets) or v2 (+9 mask logits), offset convolution
    3×3 as in DCN, with or without pre-ε batch norm, stem replaced or not.  Option A
    shortcuts throughout (option B adds two projections to base and variants alike).
    Returns a list of :class:`Reading`.
    """
    baseline = count_parameters(cifar_resnet(depth))
    readings = []

    def add(claim, description, layer, **options):
        model = cifar_resnet(depth, layer, **options)
        readings.append(Reading(claim, description, {"layer": layer, **options}, count_parameters(model), baseline))

    for stem in (False, True):
        for norm in (False, True):
            for bias in (True, False):
                for size in (3, 1):
                    add("selfwarp", f"ε conv {size}x{size}{'' if bias else ' no bias'}"
                        f"{', pre-ε BN' if norm else ''}, stem {'replaced' if stem else 'kept'}",
                        "selfwarp", replace_stem=stem, pre_eps_norm=norm, eps_bias=bias,
                        **({} if size == 3 else {"kernel_size": 1}))
        add("selfwarp", f"PackWarp (ε rows in the same conv), stem {'replaced' if stem else 'kept'}", "packwarp",
            replace_stem=stem)
        for modulated in (False, True):
            for norm in (False, True):
                add("deform", f"DCN {'v2 (offsets + mask)' if modulated else 'v1 (offsets)'}, offset conv 3x3"
                    f"{', pre-ε BN' if norm else ''}, stem {'replaced' if stem else 'kept'}",
                    "deform", replace_stem=stem, modulated=modulated, pre_eps_norm=norm)
    return readings
