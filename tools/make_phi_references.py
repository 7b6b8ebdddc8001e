"""Generate tests/data/phi_reference.json: Φ_{a,b}(σ) and Φ'_{a,b}(σ) at 40 digits with mpmath.

Route (independent of warptheory.phifunctions, which uses a Fourier series and a Gauss rule
in v = sqrt(ε/(σ√2)) in float64): the expectation over ε ~ N(0, σ²) of the 1-periodic
h(ε) = (Σ_n ψ(ε-n)^a)^b is written as ∫_0^1 h(s) P_σ(s) ds with the wrapped Gaussian
P_σ(s) = Σ_m N(s+m; σ) (σ < 1/2, a direct sum) or Jacobi θ₃(πs, e^{-2π²σ²}) (σ ≥ 1/2), and
integrated by mpmath's tanh-sinh quadrature, split at the kernel's breakpoints and, for small
σ, at s = σ·2^j and 1 - σ·2^j so the Gaussian spikes at the lattice points are resolved.
σ = 0 is the limit (h(0+) + h(0-))/2, evaluated at s = ±1e-60.

Cases whose expectation is infinite or undefined (sqrt_tri's φ' is unbounded at the support
edge) are not integrated; they are listed with the reason in "special" and checked separately.

Run: python tools/make_phi_references.py   (about 10 minutes on 2 cores)
"""
import json
import sys
import time
from pathlib import Path

import mpmath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warptheory.kernels import BUILTIN_KERNELS, get_kernel  # noqa: E402

DPS = 40
SIGMAS = ["0", "1e-6", "1e-4", "1e-3", "1e-2", "0.03", "0.049", "0.05", "0.051", "0.1", "0.2", "0.3",
          "0.5", "1", "2", "10", "1e3"]
ORDERS = [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)]

# sqrt_tri: ψ = φ' ~ ±1/(2√x) at the lattice points, so h ~ x^{-ab/2}: integrable only for ab = 1
# (then odd, so 0).  For ab ≥ 2 with ab odd the integrand is odd and not absolutely integrable
# (undefined, NaN); with ab even it is positive and non-integrable (+inf).
SPECIAL = {}
for a, b in ORDERS:
    if a * b >= 2:
        SPECIAL[("sqrt_tri", a, b, True)] = ("nan" if (a * b) % 2 else "inf")


def h_factory(kernel, a, b, derivative):
    psi = kernel.derivative_mp if derivative else kernel.value_mp

    def h(s):
        return (psi(s) ** a + psi(s - 1) ** a) ** b

    return h


def expectation(kernel, a, b, derivative, sigma):
    if derivative and (a * b) % 2 == 1 and kernel.name == "sqrt_tri":
        # Odd and integrable, so exactly 0; quadrature would evaluate φ'(s-1) at s-1 rounded to
        # -1, where φ' is +inf, for tanh-sinh nodes within 10^-40 of the lattice point.
        return mpmath.mpf(0)
    h = h_factory(kernel, a, b, derivative)
    if sigma == 0:
        # 1 - 1e-60 needs more than 60 digits to differ from 1.
        with mpmath.workdps(120):
            tiny = mpmath.mpf("1e-60")
            return +((h(tiny) + h(1 - tiny)) / 2)
    inner = sorted({mpmath.mpf(bp) % 1 for bp in kernel.breakpoints} - {0})
    points = [mpmath.mpf(0), *inner, mpmath.mpf(1)]
    if sigma < mpmath.mpf("0.5"):
        mmax = int(mpmath.ceil(15 * sigma)) + 2

        def density(s):
            return sum(mpmath.npdf(s + m, 0, sigma) for m in range(-mmax - 1, mmax + 1))

        extra = []
        j = 0
        while sigma * 2**j < mpmath.mpf("0.25"):
            extra += [sigma * 2**j, 1 - sigma * 2**j]
            j += 1
        points = sorted(set(points) | set(extra))
    else:
        q = mpmath.exp(-2 * mpmath.pi**2 * sigma**2)

        def density(s):
            return mpmath.jtheta(3, mpmath.pi * s, q)

    return mpmath.quad(lambda s: h(s) * density(s), points)


def main():
    mpmath.mp.dps = DPS
    out = {"dps": DPS, "generator": "tools/make_phi_references.py", "values": [], "special": []}
    t0 = time.time()
    for name in BUILTIN_KERNELS:
        kernel = get_kernel(name)
        for a, b in ORDERS:
            for derivative in (False, True):
                key = (name, a, b, derivative)
                if key in SPECIAL:
                    out["special"].append({"kernel": name, "a": a, "b": b, "derivative": derivative,
                                           "value": SPECIAL[key]})
                    continue
                for s in SIGMAS:
                    val = expectation(kernel, a, b, derivative, mpmath.mpf(s))
                    out["values"].append({"kernel": name, "a": a, "b": b, "derivative": derivative,
                                          "sigma": s, "value": mpmath.nstr(val, 36)})
            print(f"{name} a={a} b={b}  {time.time() - t0:.0f}s", flush=True)
    path = Path(__file__).resolve().parents[1] / "tests" / "data" / "phi_reference.json"
    path.write_text(json.dumps(out, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
