"""warptheory: numerical theory verification for dynamic-sampling (warping) networks."""
from .kernels import BUILTIN_KERNELS, Kernel, KernelConstraintError, get_kernel, kernel_from_sympy, on_support

__version__ = "0.1.0"
from .phifunctions import PhiValues, phi, phi_ab, phi_quadrature, phi_table
