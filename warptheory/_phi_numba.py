"""Jitted evaluation of a Φ table over an array of σ (see phifunctions)."""
import math

import numba

@numba.njit(parallel=True, cache=True, fastmath=False)
def evaluate_series(sigma, fourier, cheb, switch, limit0, r_power, out):
    r_max = math.sqrt(switch)
    n_f = fourier.shape[0]
    n_c = cheb.shape[0]
    for i in numba.prange(sigma.shape[0]):
        s = sigma[i]
        if s == 0.0:
            out[i] = limit0
        elif s < switch:
            x = 2.0 * math.sqrt(s) / r_max - 1.0
            b1 = 0.0
            b2 = 0.0
            for j in range(n_c - 1, 0, -1):
                b1, b2 = 2.0 * x * b1 - b2 + cheb[j], b1
            value = x * b1 - b2 + cheb[0]
            out[i] = value * math.sqrt(s) ** r_power if r_power != 0.0 else value
        else:
            q = math.exp(-2.0 * math.pi * math.pi * s * s)
            term = q  # q^{k²} for k = 1
            ratio = q * q * q  # q^{2k+1}
            q2 = q * q
            acc = 0.0
            for k in range(1, n_f):
                if term < 1e-300:
                    break
                acc += fourier[k] * term
                term *= ratio
                ratio *= q2
            out[i] = fourier[0] + 2.0 * acc
    return out
