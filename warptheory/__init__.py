"""warptheory: numerical theory verification for dynamic-sampling (warping) networks.

The public face; the work lives in one module per paper topic:

* :mod:`warptheory.kernels` — interpolation kernels φ (§2, suppl. §8–9)
* :mod:`warptheory.phifunctions` — Φ_{a,b}, Φ'_{a,b} (eqs 6, 23, 24); :mod:`warptheory.symbolic`
* :mod:`warptheory.warping` — warp engines (eqs 2–4, 16–18, 49–51)
* :mod:`warptheory.moments` — IID moment predictions (eqs 5, 7, 8, 9)
* :mod:`warptheory.montecarlo`, :mod:`warptheory.stats` — sampling and statistics
* :mod:`warptheory.fields`, :mod:`warptheory.psd` — random fields and spectra (eqs 13, 45–48)
* :mod:`warptheory.orthogonality` — warping as an orthogonal transform (eqs 11–14, 49)
* :mod:`warptheory.stability`, :mod:`warptheory.stability_montecarlo` — SelfWarp gains at initialisation (§3.1, §5)
"""
from . import fields, moments, montecarlo, orthogonality, psd, stats, symbolic
from .kernels import BUILTIN_KERNELS, Kernel, KernelConstraintError, get_kernel, kernel_from_sympy, on_support
from .orthogonality import gram_limit
from . import stability, stability_montecarlo
from .phifunctions import PhiValues, phi, phi_ab, phi_quadrature, phi_table
from .stability import SelfWarpGain, selfwarp_gain
from .stability_montecarlo import selfwarp_gain_mc
from .warping import (
    PADDINGS, WarpPlan, sample, sample_backward, sample_plan, unwarp, unwarp_backward, warp, warp_backward,
    warp_matrix, warp_plan,
)

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_KERNELS", "Kernel", "KernelConstraintError", "PADDINGS", "PhiValues",
    "fields", "gram_limit", "get_kernel", "kernel_from_sympy", "moments", "montecarlo", "on_support",
    "orthogonality", "phi", "phi_ab", "phi_quadrature", "phi_table", "psd", "stats", "symbolic",
    "unwarp", "unwarp_backward", "warp", "warp_backward", "warp_matrix",
    "WarpPlan", "warp_plan", "sample_plan", "sample", "sample_backward",
    "stability", "stability_montecarlo", "SelfWarpGain", "selfwarp_gain", "selfwarp_gain_mc",
]
