r"""Monte-Carlo engine for the IID theory (eqs 5, 7, 8, 9; ``paper_notes/s03_statistics.md``).

The estimates are built to be compared with :mod:`warptheory.moments` through
:mod:`warptheory.stats`:

* x, ε and ∇_y L are drawn IID (x Gaussian, uniform or Laplace with the requested mean
  and standard deviation; ε ~ N(0, σ_ε²); ∇_y L Gaussian);
* the domain is periodic by default, so every output is statistically alike and every
  site is used; with ``padding="zeros"`` only interior sites at least
  ``ceil(9 σ_ε) + 2`` pixels from the border are used, where no tap leaves the domain
  except with probability < 1e-18;
* seeds come from :class:`numpy.random.SeedSequence`: replicate ``r`` of a run with seed
  ``s`` always draws the same numbers, whatever executor runs it, so a run is bitwise
  reproducible;
* accumulation is streaming (running sums over batches of fixed size);
* standard errors come from independent replicates (:func:`warptheory.stats.batch_means`),
  because outputs that share inputs are correlated;
* replicates are mapped over any :class:`concurrent.futures.Executor` (a
  ``distributed.Client`` works too, through its ``submit``);
* ``backend`` is passed to :func:`warptheory.warping.warp_plan`; y and both gradients of a
  batch come from one plan.

>>> case = IIDCase("tri", d=1, channels=2, sigma_eps=0.5, size=32, batch=4)
>>> a = run_iid(case, replicates=4, batches=1, seed=7)
>>> b = run_iid(case, replicates=4, batches=1, seed=7)
>>> bool(np.array_equal(a.replicates["y"], b.replicates["y"]))    # bitwise reproducible
True
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import warping
from .kernels import get_kernel, kernel_from_spec, kernel_spec
from .stats import batch_means

__all__ = ["IIDCase", "IIDResult", "run_iid", "SelfWarpCase", "run_selfwarp", "run_validation", "draw"]

X_DISTRIBUTIONS = ("gaussian", "uniform", "laplace")
#: quantities produced by :func:`run_iid`: per-replicate mean of q and of q² for each
QUANTITIES = ("y", "dx", "deps")


def draw(rng: np.random.Generator, dist: str, mu: float, sigma: float, shape) -> np.ndarray:
    """IID draws with mean ``mu`` and standard deviation ``sigma`` from ``dist``.

    >>> rng = np.random.default_rng(0)
    >>> v = draw(rng, "laplace", 1.0, 2.0, 200_000)
    >>> bool(abs(v.mean() - 1) < 0.03 and abs(v.std() - 2) < 0.03)
    True
    """
    if dist == "gaussian":
        return mu + sigma * rng.standard_normal(shape)
    if dist == "uniform":
        return mu + sigma * math.sqrt(3.0) * rng.uniform(-1.0, 1.0, shape)
    if dist == "laplace":
        return mu + (sigma / math.sqrt(2.0)) * rng.laplace(0.0, 1.0, shape)
    raise ValueError(f"x_dist: expected one of {X_DISTRIBUTIONS}, got {dist!r}")


# ----------------------------------------------------------------------------- the engine
def _warp_all(x, eps, grad_y, kernel, padding, backend):
    """y, ∇_x L, ∇_ε L of eqs 2–4 through one plan (taps computed once for the three)."""
    plan = warping.warp_plan(eps, kernel=kernel, padding=padding, backend=backend)
    grad_x, grad_eps = plan.backward(x, grad_y)
    return np.asarray(plan.warp(x)), np.asarray(grad_x), np.asarray(grad_eps)


# ----------------------------------------------------------------------------- IID runs
@dataclass(frozen=True)
class IIDCase:
    """Parameters of one IID Monte-Carlo configuration (argument names as in :mod:`warptheory.moments`).

    ``size`` is the lattice size per axis, ``batch`` the images per batch.
    """

    kernel: object
    d: int
    channels: int
    sigma_eps: float
    mu_x: float = 0.0
    sigma_x: float = 1.0
    mu_dy: float = 0.0
    sigma_dy: float = 1.0
    x_dist: str = "gaussian"
    size: int = 32
    batch: int = 8
    padding: str = "periodic"

    def __post_init__(self):
        if self.padding not in ("periodic", "zeros"):
            raise ValueError(f"padding: expected 'periodic' or 'zeros', got {self.padding!r}")
        if self.x_dist not in X_DISTRIBUTIONS:
            raise ValueError(f"x_dist: expected one of {X_DISTRIBUTIONS}, got {self.x_dist!r}")
        if self.padding == "zeros" and self.size <= 2 * self.margin:
            raise ValueError(f"size: {self.size} leaves no interior for zero padding (margin {self.margin})")

    @property
    def margin(self) -> int:
        return int(math.ceil(9.0 * self.sigma_eps)) + 2 if self.padding == "zeros" else 0

    def params(self) -> dict:
        """JSON-able parameters for a report record."""
        p = asdict(self)
        p["kernel"] = get_kernel(self.kernel).name
        return p


def _iid_replicate(spec, case_dict, seed, batches, backend):
    """One replicate: per-quantity (mean q, mean q²) over ``batches`` batches (streaming)."""
    case = IIDCase(kernel=kernel_from_spec(spec), **case_dict)
    rng = np.random.Generator(np.random.PCG64(seed))
    shape_x = (case.batch, case.channels) + (case.size,) * case.d
    shape_e = (case.batch, case.d) + (case.size,) * case.d
    sums = np.zeros((3, 2))
    count = np.zeros(3)
    m = case.margin
    inner = (slice(None), slice(None)) + (slice(m, case.size - m),) * case.d
    for _ in range(batches):
        x = draw(rng, case.x_dist, case.mu_x, case.sigma_x, shape_x)
        eps = case.sigma_eps * rng.standard_normal(shape_e)
        g = case.mu_dy + case.sigma_dy * rng.standard_normal(shape_x)
        y, gx, geps = _warp_all(x, eps, g, case.kernel, case.padding, backend)
        for q, arr in enumerate((y, gx, geps)):
            a = arr[inner]
            sums[q, 0] += a.sum()
            sums[q, 1] += np.square(a).sum()
            count[q] += a.size
    return sums / count[:, None]


@dataclass
class IIDResult:
    """Replicate estimates of a :func:`run_iid` run.

    ``replicates[q]`` has shape (R, 2): per replicate, the mean of q and of q²
    (q in ``y``, ``dx``, ``deps``).
    """

    case: IIDCase
    replicates: dict
    samples_per_replicate: dict = field(default_factory=dict)

    @property
    def n_replicates(self) -> int:
        return len(next(iter(self.replicates.values())))

    def estimate(self, quantity: str, moment: str):
        """(estimate, SE, dof) of ``moment`` ∈ {"mean", "second_moment"} of ``quantity``."""
        col = {"mean": 0, "second_moment": 1}[moment]
        mean, se = batch_means(self.replicates[quantity][:, col])
        return mean, se, self.n_replicates - 1


def _map(executor, fn, arg_list, progress, desc):
    if executor is None:
        results = []
        it = _progress(arg_list, progress, desc)
        for args in it:
            results.append(fn(*args))
        return results
    futures = [executor.submit(fn, *args) for args in arg_list]
    out = []
    for fut in _progress(futures, progress, desc):
        out.append(fut.result())
    return out


def _progress(items, progress, desc):
    if not progress:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # optional dependency: fall back to a plain counter on stderr
        def gen():
            n = len(items)
            for i, item in enumerate(items):
                yield item
                print(f"\r{desc}: {i + 1}/{n}", end="\n" if i + 1 == n else "", file=sys.stderr, flush=True)
        return gen()
    return tqdm(items, desc=desc, leave=False)


def run_iid(case: IIDCase, *, replicates: int = 64, batches: int = 1, seed: int = 0, executor=None,
            backend=None, progress: bool = False) -> IIDResult:
    """Monte-Carlo moments of y (eq 5), ∇_x L (eq 7) and ∇_ε L (eq 8) for one case.

    Parameters
    ----------
    case : IIDCase
    replicates : int
        Independent replicates R (SE from their spread, R − 1 degrees of freedom), ≥ 2.
    batches : int
        Batches per replicate, streamed (memory does not grow with it).
    seed : int
        Root of the :class:`numpy.random.SeedSequence`; replicate r uses its r-th child.
    executor : concurrent.futures.Executor or distributed.Client, optional
        Runs the replicates; None runs them in this process.
    backend : str, optional
        Passed to :func:`warptheory.warping.warp_plan` ("numba", "numpy", "cupy").
    progress : bool
        Show a progress bar (tqdm if installed, else a counter on stderr).
    """
    if replicates < 2:
        raise ValueError(f"replicates: expected at least 2, got {replicates!r}")
    if batches < 1:
        raise ValueError(f"batches: expected at least 1, got {batches!r}")
    spec = kernel_spec(case.kernel)
    cdict = {k: v for k, v in asdict(case).items() if k != "kernel"}
    seeds = np.random.SeedSequence(seed).spawn(replicates)
    args = [(spec, cdict, s, batches, backend) for s in seeds]
    res = np.stack(_map(executor, _iid_replicate, args, progress, "replicates"))
    n_inner = case.batch * (case.size - 2 * case.margin) ** case.d
    return IIDResult(
        case=case,
        replicates={q: res[:, i, :] for i, q in enumerate(QUANTITIES)},
        samples_per_replicate={"y": n_inner * case.channels * batches, "dx": n_inner * case.channels * batches,
                               "deps": n_inner * case.d * batches},
    )


# ----------------------------------------------------------------------------- eq 9: SelfWarp
@dataclass(frozen=True)
class SelfWarpCase:
    """One SelfWarp configuration (eq 9, ``paper_notes/s03_statistics.md``).

    ``ε = conv(x̃, w)``: centred ``k^d`` periodic convolution from ``channels`` to ``d``
    channels, ``x̃ = x`` or the batch-normalised x (``normalized=True``).  The weights are
    drawn IID Gaussian per batch and each output row is rescaled so that
    Σ_{n,a} w_{ina}² σ_x̃² = ``sigma_eps``² exactly (``sigma_eps`` is then the offset s.d.
    for every draw); with ``fixed_sigma_w`` set instead, the rows are rescaled to
    Σ w² = channels·k^d·``fixed_sigma_w``² and σ_ε follows σ_x̃ (training-like).
    ``independent=True`` computes ε from an independent copy of x (the paper's assumption).
    """

    kernel: object
    d: int = 2
    channels: int = 4
    k: int = 3
    sigma_eps: float = 0.5
    sigma_x: float = 1.0
    sigma_dy: float = 1.0
    normalized: bool = False
    independent: bool = False
    fixed_sigma_w: float | None = None
    size: int = 32
    batch: int = 8

    def effective_sigma_eps(self) -> float:
        """σ_ε the offsets actually have."""
        if self.fixed_sigma_w is None:
            return self.sigma_eps
        sx = 1.0 if self.normalized else self.sigma_x
        return self.fixed_sigma_w * math.sqrt(self.channels * self.k ** self.d) * sx

    def params(self) -> dict:
        p = asdict(self)
        p["kernel"] = get_kernel(self.kernel).name
        p["sigma_eps"] = self.effective_sigma_eps()
        return p


def _window_offsets(k, d):
    h = (k - 1) // 2
    return list(np.ndindex(*(k,) * d)), h


def _selfwarp_replicate(spec, case_dict, seed, batches, backend):
    case = SelfWarpCase(kernel=kernel_from_spec(spec), **case_dict)
    rng = np.random.Generator(np.random.PCG64(seed))
    d, n, k = case.d, case.channels, case.k
    spatial_axes = tuple(range(2, 2 + d))
    shape_x = (case.batch, n) + (case.size,) * d
    offsets, h = _window_offsets(k, d)
    total = 0.0
    count = 0
    for _ in range(batches):
        x = case.sigma_x * rng.standard_normal(shape_x)
        src = case.sigma_x * rng.standard_normal(shape_x) if case.independent else x
        if case.normalized:
            mean = src.mean(axis=(0,) + spatial_axes, keepdims=True)
            xt_src = (src - mean) / src.std(axis=(0,) + spatial_axes, keepdims=True)
            xt = xt_src if not case.independent else \
                (x - x.mean(axis=(0,) + spatial_axes, keepdims=True)) / x.std(axis=(0,) + spatial_axes, keepdims=True)
            var_t = 1.0
        else:
            xt_src, xt, var_t = src, x, case.sigma_x ** 2
        w = rng.standard_normal((d, n) + (k,) * d)
        norm2 = np.sum(w.reshape(d, -1) ** 2, axis=1)
        if case.fixed_sigma_w is None:
            target = case.sigma_eps ** 2 / var_t
        else:
            target = n * k ** d * case.fixed_sigma_w ** 2
        w *= np.sqrt(target / norm2).reshape((d,) + (1,) * (d + 1))
        # ε_{i,v} = Σ_{n,a} w_{i,n,a} x̃_{n, v + a - h}  (periodic)
        eps = np.zeros((case.batch, d) + (case.size,) * d)
        shifted = []
        for a in offsets:
            xs = np.roll(xt_src, shift=tuple(h - ai for ai in a), axis=spatial_axes)
            eps += np.einsum("in,bn...->bi...", w[(slice(None), slice(None)) + a], xs)
            if not case.independent:
                shifted.append(xs)
        g = case.sigma_dy * rng.standard_normal(shape_x)
        _, _, geps = _warp_all(x, eps, g, case.kernel, "periodic", backend)
        geps2 = np.sum(geps ** 2, axis=1)  # Σ_i (∇ε_i)², shape (B, *S)
        for j, a in enumerate(offsets):
            xs = shifted[j] if not case.independent else \
                np.roll(xt, shift=tuple(h - ai for ai in a), axis=spatial_axes)
            total += float(np.sum(geps2[:, None] * xs ** 2))
        count += x.size
    return np.array([total / count])


def run_selfwarp(case: SelfWarpCase, *, replicates: int = 64, batches: int = 1, seed: int = 0,
                 executor=None, backend=None, progress=False):
    """Replicate estimates of σ²_∂w (eq 9): per position, summed over the d·k^d weights of one input channel.

    Returns an array of shape (R,); use :func:`warptheory.stats.batch_means`.
    """
    spec = kernel_spec(case.kernel)
    cdict = {k: v for k, v in asdict(case).items() if k != "kernel"}
    seeds = np.random.SeedSequence(seed).spawn(replicates)
    args = [(spec, cdict, s, batches, backend) for s in seeds]
    return np.concatenate(_map(executor, _selfwarp_replicate, args, progress, "replicates"))


# ----------------------------------------------------------------------------- the suite
def run_validation(report_dir="validation-report/", thorough: bool = False, extra_args=()) -> int:
    """Run the ``pytest validation`` suite; returns pytest's exit code.

    The suite lives in the ``validation/`` folder of the source tree (next to the package);
    the report goes to ``report_dir``.
    """
    import pathlib

    import pytest

    root = pathlib.Path(__file__).resolve().parent.parent / "validation"
    if not root.is_dir():
        raise FileNotFoundError(f"validation suite not found at {root} (needs a source checkout)")
    args = [str(root), f"--report-dir={report_dir}", "-p", "no:cacheprovider", *extra_args]
    if thorough:
        args.append("--thorough")
    return int(pytest.main(args))
