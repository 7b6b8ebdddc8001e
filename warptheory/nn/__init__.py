"""warptheory.nn: warps in PyTorch (paper §2, §2.1, §5), on warptheory's engines.

Needs torch (the optional extra ``torch``: ``pip install "warptheory[torch]"``); ``import
warptheory`` works without it.

* :mod:`warptheory.nn.functional` — ``warp``, ``sample``, ``deform_conv2d``,
  ``affine_offsets``, ``eps_variance``, ``scale_grad`` (autograd functions on the engines);
* :mod:`warptheory.nn.modules` — ``Warp``, ``SelfWarp``, ``PackWarp``, ``WarpedResidual``,
  ``DeformConv2d``, ``SelfDeformConv2d``, ``ActiveConv2d``, ``SpatialTransformer``;
  ``eps_variances(model)``, ``split_eps_parameters(model)``;
* :mod:`warptheory.nn.resnet` — CIFAR ResNet-(6n+2) with every convolution plain, SelfWarp,
  PackWarp or deformable, and the parameter counts of §5.

See ``paper_notes/s02_warping.md`` ("The PyTorch layer") and README "Use in PyTorch".
"""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - tested in a subprocess that blocks torch
    raise ImportError(
        "warptheory.nn needs PyTorch; install it with `pip install \"warptheory[torch]\"` "
        "(the rest of warptheory works without it)"
    ) from exc

from . import functional, resnet
from .modules import (
    ActiveConv2d,
    DeformConv2d,
    PackWarp,
    SelfDeformConv2d,
    SelfWarp,
    SpatialTransformer,
    Warp,
    WarpBlock,
    WarpedResidual,
    eps_variances,
    record_eps,
    split_eps_parameters,
)

__all__ = [
    "ActiveConv2d", "DeformConv2d", "PackWarp", "SelfDeformConv2d", "SelfWarp", "SpatialTransformer", "Warp",
    "WarpBlock", "WarpedResidual", "eps_variances", "functional", "record_eps", "resnet", "split_eps_parameters",
]
