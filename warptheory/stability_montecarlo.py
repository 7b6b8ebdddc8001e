r"""Monte-Carlo twin of :mod:`warptheory.stability`: SelfWarp gains, plain and ResNet stacks, sampled (§3.1).

:func:`selfwarp_gain_mc` takes the arguments of :func:`warptheory.stability.selfwarp_gain` and returns
the same :class:`~warptheory.stability.SelfWarpGain` record (``form="montecarlo"``, with ``se`` and
``replicates``), so theory and sampling swap in one line (``paper_notes/s03_1_stability.md``).

How a block is sampled
----------------------
Per image of a batch: x IID (Gaussian for kurtosis 3, uniform 1.8, Laplace 6) with σ_x = 1, its own
ε-weights w IID N(0, σ_ε²/(N k^d)) of shape (d, N, k^d), ε = the centred periodic k^d convolution of
x̃ (x, or x batch-normalised per channel over batch and positions), y = :func:`warptheory.warp`
(periodic), ∇_y L IID N(0, 1), and :func:`warptheory.warp_backward` for D = ∇_x (direct path) and
∇_ε L.  The ε path E is ∇_ε L through the transposed convolution (numpy rolls and ``einsum``: the
adjoint of the forward rolls, exact to rounding) and, with the batch norm, through the batch norm's
exact training-mode Jacobian.  Each image draws its own weights because the gains are expectations
over the weights too, and the weights' spread is the largest source of variance.

Per replicate the estimates are the sample means of y², D² and 2DE over every element, for a
Rademacher ∇_y L (the gains depend on it only through E[g gᵀ] = I), and of E_g[E²], the ε path's mean
square averaged over ∇_y L exactly (:meth:`SampledBlock.eps_energy`; it removes most of the noise of
the largest part); σ_x and σ_∂y are 1 by construction, so no ratio is formed.  Their standard errors
come from independent replicates (:func:`warptheory.stats.batch_means`), seeded by :class:`numpy.random.SeedSequence`.
The lattice is periodic and large enough (``default_size``) that no tap wraps onto the ε-window of
its own output, so the infinite-lattice theory applies.

>>> r = selfwarp_gain_mc("tri", 0.3, d=1, channels=2, k=1, replicates=4, batch=4, size=16, seed=3)
>>> r2 = selfwarp_gain_mc("tri", 0.3, d=1, channels=2, k=1, replicates=4, batch=4, size=16, seed=3)
>>> r == r2 and r.form == "montecarlo" and set(r.se) >= {"forward", "backward", "ratio"}
True
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .kernels import kernel_from_spec, kernel_spec
from .montecarlo import _map, draw
from .stability import SelfWarpGain, StackGain, check_arguments
from .stats import batch_means

__all__ = ["selfwarp_gain_mc", "stack_gain_mc", "resnet_gradient_growth_mc", "build_resnet_blocks",
           "default_size", "default_batch", "KURTOSIS_DISTRIBUTIONS",
           "SampledBlock", "draw_weights", "eps_conv", "eps_conv_transpose"]

#: kurtosis → x distribution the Monte-Carlo draws from
KURTOSIS_DISTRIBUTIONS = {3.0: "gaussian", 1.8: "uniform", 6.0: "laplace"}

_PARTS = ("forward", "backward_direct", "backward_cross", "backward_eps")
#: zero-mean control statistics recorded per replicate: mean x² − 1 and mean ε²/σ_ε² − 1
_CONTROLS = ("x2", "eps2")


def default_size(sigma_eps: float, k: int, d: int) -> int:
    """Lattice side: a tap wraps onto its own output's ε-window only if |ε| > size − (k+1)/2, i.e. beyond
    ≈ 10 σ_ε (√τ ≤ 2 included), which has probability < 1e-12; at least 8.
    """
    reach = math.ceil(5.0 * sigma_eps) + (k - 1) // 2 + 2
    return int(4 * math.ceil(max(8, 2 * reach) / 4))


#: positions per channel per batch: a batch norm's O(1/M) terms are then ≤ 2.5e-4 relative
BATCH_POSITIONS = 4096


def default_batch(size: int, d: int) -> int:
    """Images per batch: ≥ 4096 positions, and ≥ 16 images (their weight radii are stratified)."""
    return max(16, -(-BATCH_POSITIONS // size ** d))


@contextlib.contextmanager
def _one_engine_thread():
    """Run the engines on one thread here: the Monte-Carlo makes many small calls, where the parallel
    launch costs more than it saves (≈ 20 ms per call on a busy 2-core machine against 1 ms); parallelism
    belongs to the replicates (``executor``).  Numba's thread count is per calling thread and restored."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        yield
        return
    with _one_thread(numba.get_num_threads, numba.set_num_threads):
        yield


@contextlib.contextmanager
def _one_thread(get_threads, set_threads):
    """Thread count set to 1 inside the block, restored after."""
    before = get_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)


def _x_distribution(kurtosis: float) -> str:
    try:
        return KURTOSIS_DISTRIBUTIONS[float(kurtosis)]
    except KeyError:
        raise ValueError(f"kurtosis: the Monte-Carlo draws Gaussian (3), uniform (1.8) or Laplace (6) inputs, "
                         f"got {kurtosis!r}") from None


def _batch_norm(x, axes):
    """Training-mode batch norm (γ = 1, β = 0, no ε) and what its backward needs."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    std = np.sqrt(np.mean(centred * centred, axis=axes, keepdims=True))
    return centred / std, std


def _batch_norm_backward(grad, x_hat, std, axes):
    """Exact backward of :func:`_batch_norm`: (g − mean g − x̂ mean(g x̂)) / σ_B."""
    return (grad - grad.mean(axis=axes, keepdims=True)
            - x_hat * np.mean(grad * x_hat, axis=axes, keepdims=True)) / std


def _window(k: int, d: int):
    h = (k - 1) // 2
    return [tuple(h - ai for ai in a) for a in np.ndindex(*(k,) * d)]


def eps_conv(x_tilde, w, k):
    r"""ε_{b,i,v} = Σ_{n,a} w_{b,i,n,a} x̃_{b,n,v+a−h} (periodic); w has shape (B, d, N, k^d)."""
    d = x_tilde.ndim - 2
    axes = tuple(range(2, 2 + d))
    stack = np.stack([np.roll(x_tilde, shift=s, axis=axes) for s in _window(k, d)], axis=2)
    return np.einsum("bina,bna...->bi...", w, stack, optimize=True)


def eps_conv_transpose(grad_eps, w, k):
    """Adjoint of :func:`eps_conv`: e_{b,n,u} = Σ_{i,a} w_{b,i,n,a} ∇ε_{b,i,u−a+h}."""
    d = grad_eps.ndim - 2
    axes = tuple(range(2, 2 + d))
    stack = np.stack([np.roll(grad_eps, shift=tuple(-si for si in s), axis=axes) for s in _window(k, d)], axis=2)
    return np.einsum("bina,bia...->bn...", w, stack, optimize=True)


def draw_weights(rng, shape, sigma_w, stratified=True):
    """IID N(0, σ_w²) ε-weights, one set per image: shape (B, d, N, k^d).

    ``stratified``: each row w_{b,i} is a radius times a uniform direction, with the radii of the B
    images Latin-hypercube stratified over the χ²_{N k^d} law (one per stratum, independent random
    order per row i).  Every image's weights then have exactly the IID Gaussian law, so means are
    unbiased, while the spread of ‖w_{b,i}‖, the largest source of variance, is mostly removed.
    """
    from scipy import stats

    bsz, d = shape[:2]
    p = int(np.prod(shape[2:]))
    w = rng.standard_normal(shape)
    if not stratified or bsz < 2:
        return sigma_w * w
    direction = w / np.sqrt(np.sum(w * w, axis=(2, 3), keepdims=True))
    strata = (np.argsort(rng.random((bsz, d)), axis=0) + rng.random((bsz, d))) / bsz
    radius = np.sqrt(stats.chi2.ppf(strata, p))
    return sigma_w * radius[:, :, None, None] * direction


class SampledBlock:
    """One SelfWarp block applied to a batch (see the module docstring): y = warp(x, conv(x̃, w)).

    Attributes ``x, x_tilde, w, eps, y``; :meth:`grad` gives (D, E) for an upstream gradient and
    :meth:`eps_energy` the ε path's mean square averaged over a Rademacher/IID upstream gradient exactly.
    """

    def __init__(self, rng, x, kernel, sigma_eps, k, *, pre_eps_norm, detach, backend=None, sigma_w=None,
                 stratified=True):
        from .warping import warp

        bsz, n = x.shape[:2]
        d = x.ndim - 2
        self.x, self.kernel, self.k, self.detach, self.backend = x, kernel, k, detach, backend
        self.pre_eps_norm = pre_eps_norm
        self.axes = (0,) + tuple(range(2, 2 + d))
        if pre_eps_norm:
            self.x_tilde, self.std = _batch_norm(x, self.axes)
        else:
            self.x_tilde, self.std = x, None
        sw = sigma_eps / math.sqrt(n * k ** d) if sigma_w is None else sigma_w
        self.w = draw_weights(rng, (bsz, d, n, k ** d), sw, stratified)
        self.eps = eps_conv(self.x_tilde, self.w, k)
        self.y = warp(x, self.eps, kernel=kernel, padding="periodic", backend=backend)

    def grad(self, g):
        """(D, E): the direct path K^T g and the ε path (None with detach) for upstream gradient g."""
        from .warping import warp_backward

        direct, grad_eps = warp_backward(self.x, self.eps, g, kernel=self.kernel, padding="periodic",
                                         need_eps=not self.detach, backend=self.backend)
        if self.detach:
            return direct, None
        e = eps_conv_transpose(grad_eps, self.w, self.k)
        if self.pre_eps_norm:
            e = _batch_norm_backward(e, self.x_tilde, self.std, self.axes)
        return direct, e

    def eps_energy(self) -> float:
        r"""E_g[mean E²] for an upstream gradient with E[g gᵀ] = I, exactly (a Rao–Blackwellisation of E²).

        E_{mu} = Σ_{n,v} g_{nv} Σ_i c_{imu,v} A_{niv} with A_{niv} = ∂y_{nv}/∂ε_{iv} (eq 4 for one channel),
        so Σ_u E_g[e_{mu}²] = Σ_{n,v} A_{nv}ᵀ G_m A_{nv}, G_m = Σ_a w_{·ma} w_{·ma}ᵀ.  A comes from one
        :func:`warptheory.warp_backward` call with the channels as batch items and ∇_y L = 1.  With the
        batch norm the two projections of its backward are averaged over g the same way.
        """
        from .warping import warp_backward

        x, w = self.x, self.w
        bsz, n = x.shape[:2]
        d = x.ndim - 2
        spatial = x.shape[2:]
        flat = x.reshape((bsz * n, 1) + spatial)
        _, amp = warp_backward(flat, np.repeat(self.eps, n, axis=0), np.ones_like(flat), kernel=self.kernel,
                               padding="periodic", need_x=False, backend=self.backend)
        amp = amp.reshape(bsz, n, d, -1)  # A[b, n, i, v]
        outer = np.einsum("bniv,bnjv->bij", amp, amp)  # Σ_{n,v} A_{niv} A_{njv}, per image
        per_channel = np.einsum("bima,bjma,bij->m", w, w, outer)  # Σ_{b,u} E_g e_{bmu}²
        if not self.pre_eps_norm:
            return float(per_channel.sum() / x.size)
        count = bsz * int(np.prod(spatial))  # samples per channel of the batch norm
        wsum = w.sum(axis=3)
        mean_term = np.einsum("bim,bjm,bij->m", wsum, wsum, outer)  # count² E_g ē_m²
        partial = np.zeros((bsz, d, n) + spatial)  # Σ_a w_{ima} x̃_{m, v+a-h}
        for a, shift in enumerate(_window(self.k, d)):
            partial += w[:, :, :, a][(...,) + (None,) * d] * np.roll(self.x_tilde, shift=shift,
                                                                        axis=self.axes[1:])[:, None]
        partial = partial.reshape(bsz, d, n, -1)
        local = np.einsum("bniv,bnjv->bijv", amp, amp)
        proj_term = np.einsum("bimv,bjmv,bijv->m", partial, partial, local)  # count² E_g (mean e x̃)_m²
        centred = per_channel / count - (mean_term + proj_term) / count ** 2
        return float(np.mean(centred / self.std.reshape(-1) ** 2))


def _block_replicate(spec, args, seed, batches):
    kernel = kernel_from_spec(spec)
    sigma_eps, d, n, k, detach, pre_eps_norm, dist, size, batch, backend = args
    rng = np.random.Generator(np.random.PCG64(seed))
    shape = (batch, n) + (size,) * d
    sums = np.zeros(len(_PARTS) + len(_CONTROLS))
    with _one_engine_thread():
        for _ in range(batches):
            _block_batch(rng, kernel, sigma_eps, k, detach, pre_eps_norm, dist, shape, backend, sums)
    return sums / batches


def _block_batch(rng, kernel, sigma_eps, k, detach, pre_eps_norm, dist, shape, backend, sums):
    """Add one batch's means of y², D², 2DE and E_g[E²] to ``sums``."""
    x = draw(rng, dist, 0.0, 1.0, shape)
    block = SampledBlock(rng, x, kernel, sigma_eps, k, pre_eps_norm=pre_eps_norm, detach=detach, backend=backend)
    # Rademacher ∇_y L: the gains depend on it only through E[g gᵀ] = I, and ±1 adds no χ² noise
    g = rng.choice(np.array([-1.0, 1.0]), size=shape)
    direct, e = block.grad(g)
    sums[0] += np.mean(block.y * block.y)
    sums[1] += np.mean(direct * direct)
    if e is not None:
        sums[2] += 2.0 * np.mean(direct * e)
        sums[3] += block.eps_energy()
    sums[4] += np.mean(x * x) - 1.0
    if sigma_eps > 0:
        sums[5] += np.mean(block.eps * block.eps) / sigma_eps ** 2 - 1.0


def selfwarp_gain_mc(kernel, sigma_eps, *, d=2, channels, k=3, detach=False, pre_eps_norm=False, kurtosis=3.0,
                     replicates=64, batches=1, batch=None, size=None, seed=0, control_variates=True,
                     executor=None, backend=None) -> SelfWarpGain:
    """Monte-Carlo estimate of :func:`warptheory.stability.selfwarp_gain` (same arguments, same record).

    Parameters
    ----------
    kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis
        As :func:`~warptheory.stability.selfwarp_gain`; ``kurtosis`` picks the x distribution
        (3 Gaussian, 1.8 uniform, 6 Laplace).
    replicates : int
        Independent replicates R ≥ 2 (the SE has R − 1 degrees of freedom).
    batches : int
        Batches per replicate.
    batch, size : int, optional
        Images per batch and lattice side (defaults: :func:`default_batch`, :func:`default_size`).
    seed : int
        Root of the SeedSequence; replicate r uses its r-th child, whatever the executor.
    control_variates : bool
        Adjust every replicate estimate by the pooled regression on two statistics whose expectations are
        known exactly, mean x² − 1 and mean ε²/σ_ε² − 1 (x and w carry most of the noise that is left).
        Estimating the two coefficients from the same replicates biases the mean by O(SE/R) and leaves the
        SE with R − 3 rather than R − 1 degrees of freedom; both are far below the suite's resolution at
        R = 64 (R ≥ 8 needed).
    executor : concurrent.futures.Executor, optional
        Runs the replicates (None: in this process).
    backend : str, optional
        Passed to :func:`warptheory.warp`.

    Returns
    -------
    SelfWarpGain
        ``form="montecarlo"``; ``se`` holds the standard error of every gain and of ``ratio``.
    """
    kern, s_eps, d, n, k, detach, pre_eps_norm, kurt = check_arguments(
        kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis)
    dist = _x_distribution(kurt)
    for name, value, low in (("replicates", replicates, 2), ("batches", batches, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    size = default_size(s_eps, k, d) if size is None else size
    batch = default_batch(size, d) if batch is None else batch
    for name, value in (("size", size), ("batch", batch)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2:
            raise ValueError(f"{name}: expected an integer >= 2, got {value!r}")
    if size < k:
        raise ValueError(f"size: expected at least k = {k}, got {size}")
    spec = kernel_spec(kern)
    args = (s_eps, d, n, k, detach, pre_eps_norm, dist, int(size), int(batch), backend)
    seeds = np.random.SeedSequence(seed).spawn(replicates)
    reps = np.stack(_map(executor, _block_replicate, [(spec, args, s, batches) for s in seeds], False, ""))
    if control_variates and replicates >= 8:
        reps = _control_adjusted(reps)
    return gain_record(reps, kern.name, s_eps, d, n, k, detach, pre_eps_norm, kurt)


def _control_adjusted(reps: np.ndarray) -> np.ndarray:
    """Replicate rows minus their pooled regression on the zero-mean control columns."""
    parts, controls = reps[:, :len(_PARTS)], reps[:, len(_PARTS):]
    controls = controls[:, np.any(controls != 0.0, axis=0)]
    if controls.size == 0:
        return parts
    centred = controls - controls.mean(axis=0)
    beta, *_ = np.linalg.lstsq(centred, parts - parts.mean(axis=0), rcond=None)
    return parts - controls @ beta


def gain_record(reps, kernel_name, sigma_eps, d, n, k, detach, pre_eps_norm, kurtosis) -> SelfWarpGain:
    """A montecarlo :class:`SelfWarpGain` from replicate rows (forward, direct, cross, eps)."""
    backward = reps[:, 1] + reps[:, 2] + reps[:, 3]
    columns = {"forward": reps[:, 0], "backward": backward, "backward_direct": reps[:, 1],
               "backward_cross": reps[:, 2], "backward_eps": reps[:, 3], "ratio": backward / reps[:, 0]}
    est, se = {}, {}
    for key, col in columns.items():
        est[key], se[key] = batch_means(col)
    return SelfWarpGain(forward=est["forward"], backward=est["backward"], backward_direct=est["backward_direct"],
                        backward_cross=est["backward_cross"], backward_eps=est["backward_eps"], kernel=kernel_name,
                        sigma_eps=sigma_eps, d=d, channels=n, k=k, detach=detach, pre_eps_norm=pre_eps_norm,
                        kurtosis=kurtosis, form="montecarlo", se=se, replicates=len(reps))


# ----------------------------------------------------------------------------- plain stacks
def _stack_replicate(spec, args, seed, batches):
    kernel = kernel_from_spec(spec)
    sigma_eps, d, n, k, detach, pre_eps_norm, size, batch, depths, backend = args
    rng = np.random.Generator(np.random.PCG64(seed))
    shape = (batch, n) + (size,) * d
    depth = depths[-1]
    sigma_w = sigma_eps / math.sqrt(n * k ** d)
    grad2 = np.zeros(len(depths))
    fwd2 = np.zeros(len(depths))
    eps2 = np.zeros(depth)
    with _one_engine_thread():
        for _ in range(batches):
            x = rng.standard_normal(shape)
            grads = []
            for layer in range(depth):
                block = SampledBlock(rng, x, kernel, sigma_eps, k, pre_eps_norm=pre_eps_norm, detach=detach,
                                     backend=backend, sigma_w=sigma_w)
                x = block.y
                grads.append(block.grad)
                eps2[layer] += np.mean(block.eps * block.eps)
                if layer + 1 in depths:
                    fwd2[depths.index(layer + 1)] += np.mean(x * x)
            for j, top in enumerate(depths):
                g = rng.choice(np.array([-1.0, 1.0]), size=shape)
                for grad in reversed(grads[:top]):
                    direct, e = grad(g)
                    g = direct if e is None else direct + e
                grad2[j] += np.mean(g * g)
    return np.concatenate((grad2, fwd2, eps2)) / batches


def stack_gain_mc(kernel, sigma_eps, *, depths, d=2, channels, k=3, detach=False, pre_eps_norm=False, kurtosis=3.0,
                  replicates=32, batches=1, batch=None, size=None, seed=0, executor=None,
                  backend=None) -> StackGain:
    """Monte-Carlo twin of :func:`warptheory.stability.stack_gain` (same arguments, same record).

    One forward pass through ``max(depths)`` blocks, each with its own IID (stratified) ε-weights of the
    first block's σ_w = σ_ε/√(N k^d); x_0 IID N(0, 1).  For each depth L a fresh IID ±1 gradient enters
    at x_L and is carried back to x_0 through the first L blocks, so ``grad[j]`` is E[(∂L/∂x_0)²] for a
    stack of ``depths[j]`` blocks with a unit top gradient.  Also returns the measured rms ε per block.
    """
    from .stability import check_depths

    depths = check_depths(depths)
    kern, s_eps, d, n, k, detach, pre_eps_norm, kurt = check_arguments(
        kernel, sigma_eps, d, channels, k, detach, pre_eps_norm, kurtosis)
    _x_distribution(kurt)
    if kurt != 3.0:
        raise ValueError(f"kurtosis: stacks are sampled with Gaussian inputs (3), got {kurtosis!r}")
    size = default_size(s_eps, k, d) if size is None else size
    batch = default_batch(size, d) if batch is None else batch
    args = (s_eps, d, n, k, detach, pre_eps_norm, int(size), int(batch), depths, backend)
    seeds = np.random.SeedSequence(seed).spawn(replicates)
    reps = np.stack(_map(executor, _stack_replicate, [(kernel_spec(kern), args, s, batches) for s in seeds],
                         False, ""))
    return _depth_record(reps, depths, {"kernel": kern.name, "sigma_eps": s_eps, "d": d, "channels": n, "k": k,
                                        "detach": detach, "pre_eps_norm": pre_eps_norm, "kurtosis": kurt})


def _depth_record(reps, depths, params) -> StackGain:
    """A montecarlo :class:`StackGain` from replicate rows (grad per depth, forward per depth, ε² per block)."""
    m = len(depths)
    gm, gse = batch_means(reps[:, :m])
    fm, fse = batch_means(reps[:, m:2 * m])
    em, _ = batch_means(reps[:, 2 * m:])
    return StackGain(depths=depths, grad=np.atleast_1d(gm), forward=np.atleast_1d(fm),
                     sigma_eps=np.sqrt(np.atleast_1d(em)), params=params, form="montecarlo",
                     se={"grad": np.atleast_1d(gse), "forward": np.atleast_1d(fse)}, replicates=len(reps))


# ----------------------------------------------------------------------------- ResNet-style stacks (warptheory.nn)
def build_resnet_blocks(*, gamma, pre_eps_norm, detach, eps_init, eps_grad_scale, kernel, stages, generator,
                        skip_warps="all"):
    """The residual blocks of a SelfWarp CIFAR ResNet (:class:`warptheory.nn.resnet.BasicBlock`), initialised.

    Every 3×3 convolution is followed by a :class:`~warptheory.nn.SelfWarp` (``layer="selfwarp"``), option-A
    shortcuts, each skip warped by its branch's ε (``skip_warps="all"``; ``"none"`` leaves it unwarped).
    Initialisation as :class:`~warptheory.nn.resnet.CifarResNet` (He-normal convolutions, every batch norm
    and pre-ε batch norm with weight ``gamma``), except that with ``eps_init="fan_in"`` the ε-convolutions
    get IID N(0, 1/(N k²)) weights (bias 0), so that σ_ε = the rms of their input.  Convolutions pad
    circularly and warps periodically: the lattice has no border, as in the theory.  float64.
    """
    import torch
    from torch import nn

    from .nn.resnet import BasicBlock
    from .nn.modules import SelfWarp

    if skip_warps not in ("all", "none"):
        raise ValueError(f"skip_warps: the nn blocks warp the skip by every ε ('all') or not ('none'), "
                         f"got {skip_warps!r}")
    options = dict(kernel=kernel, padding="periodic", pre_eps_norm=pre_eps_norm, detach=detach,
                   eps_grad_scale=eps_grad_scale, norm_weight_init=gamma)
    blocks, in_channels = [], stages[0][0]
    for index, (width, count) in enumerate(stages):
        for b in range(count):
            stride = 2 if index > 0 and b == 0 else 1
            blocks.append(BasicBlock(in_channels, width, stride, layer="selfwarp", shortcut="A",
                                     warp_skip=skip_warps == "all", layer_options=options))
            in_channels = width
    net = nn.Sequential(*blocks).double()
    eps_ids = {id(p) for m in net.modules() if isinstance(m, SelfWarp) for p in m.eps_parameters()}
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.padding_mode = "circular"
                if id(m.weight) in eps_ids:
                    std = 0.0 if eps_init == "zero" else 1.0 / math.sqrt(m.weight[0].numel())
                    m.weight.normal_(0.0, 1.0, generator=generator).mul_(std)
                    if m.bias is not None:
                        m.bias.zero_()
                else:
                    nn.init.kaiming_normal_(m.weight, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(gamma)
                m.bias.zero_()
    return net


def _resnet_replicate(config, seed):
    import torch

    (gamma, pre_eps_norm, detach, eps_init, eps_grad_scale, kernel, stages, skip_warps, depths, size,
     batch) = config
    gen = torch.Generator().manual_seed(int(seed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    with _one_engine_thread():
        net = build_resnet_blocks(gamma=gamma, pre_eps_norm=pre_eps_norm, detach=detach, eps_init=eps_init,
                                  eps_grad_scale=eps_grad_scale, kernel=kernel, stages=stages, generator=gen,
                                  skip_warps=skip_warps)
        eps2 = []
        hooks = [m.eps_branch.register_forward_hook(lambda _m, _i, out: eps2.append(float(out.detach().pow(2).mean())))
                 for m in net.modules() if hasattr(m, "eps_branch")]
        # the stream entering block 1: ReLU of the stem's batch-norm output, N(0, γ²) per channel
        z = torch.randn((batch, stages[0][0], size, size), generator=gen, dtype=torch.float64)
        x0 = torch.relu(gamma * z).requires_grad_()
        outs, h = {}, x0
        for b, block in enumerate(net, start=1):
            h = block(h)
            if b in depths:
                outs[b] = h
        for hook in hooks:
            hook.remove()
        grad2, fwd2 = [], []
        for j, b in enumerate(depths):
            top = outs[b]
            g = torch.randint(0, 2, top.shape, generator=gen, dtype=torch.float64).mul_(2).sub_(1)
            (gx,) = torch.autograd.grad(top, x0, g, retain_graph=j + 1 < len(depths))
            grad2.append(float(gx.pow(2).mean()))  # E g² = 1
            fwd2.append(float(top.detach().pow(2).mean() / x0.detach().pow(2).mean()))
    return np.array(grad2 + fwd2 + eps2)


def resnet_gradient_growth_mc(*, gamma=1.0, pre_eps_norm=False, detach=False, eps_init="fan_in", eps_grad_scale=1.0,
                              kernel="tri", stages=((16, 9), (32, 9), (64, 9)), skip_warps="all", depths=None,
                              size=16, batch=8, replicates=16, seed=0, executor=None) -> StackGain:
    """Monte-Carlo twin of :func:`warptheory.stability.resnet_gradient_growth`, through depth, with the nn layer.

    Each replicate is an independent network (:func:`build_resnet_blocks`, its own weights) on its own
    input: x_0 = ReLU(γ z), z IID N(0, 1) of shape (``batch``, N₀, ``size``, ``size``), batch norms in
    training mode.  For each depth B in ``depths`` (residual blocks, default every block) an IID ±1
    gradient enters at the output x_B of block B and is carried back to x_0 by autograd, so
    ``grad[j]`` = E[(∂L/∂x_0)²] for the first ``depths[j]`` blocks with a unit top gradient (per element),
    to be compared with the product of the first B per-block factors of the theory
    (:func:`warptheory.stability.resnet_growth_at_depths`).  ``forward[j]`` = E[x_B²]/E[x_0²];
    ``sigma_eps`` is the measured rms ε of every SelfWarp (two per block), averaged over replicates.
    Standard errors from the replicates (R − 1 degrees of freedom).

    >>> r = resnet_gradient_growth_mc(gamma=0.1, pre_eps_norm=True, stages=((4, 2),), size=6, batch=2,
    ...                               replicates=2, seed=1)
    >>> r.depths, r.grad.shape, r.sigma_eps.shape, r.form
    ((1, 2), (2,), (4,), 'montecarlo')
    """
    from .stability import EPS_INITS, check_depths

    from .kernels import get_kernel

    kern = get_kernel(kernel)
    if eps_init not in EPS_INITS:
        raise ValueError(f"eps_init: expected one of {EPS_INITS}, got {eps_init!r}")
    for name, value in (("gamma", gamma), ("eps_grad_scale", eps_grad_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    try:
        stages = tuple((int(n), int(c)) for n, c in stages)
    except (TypeError, ValueError):
        raise ValueError(f"stages: expected (channels, blocks) pairs, got {stages!r}") from None
    total = sum(c for _, c in stages)
    if not stages or any(n < 1 or c < 1 for n, c in stages):
        raise ValueError(f"stages: expected (channels, blocks) pairs of positive integers, got {stages!r}")
    depths = check_depths(range(1, total + 1) if depths is None else depths)
    if depths[-1] > total:
        raise ValueError(f"depths: at most the {total} residual blocks of stages, got {depths[-1]}")
    for name, value, low in (("size", size, 4), ("batch", batch, 2), ("replicates", replicates, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if size % 2 ** (len(stages) - 1):
        raise ValueError(f"size: expected a multiple of {2 ** (len(stages) - 1)} (one stride 2 per stage change), "
                         f"got {size}")
    config = (float(gamma), bool(pre_eps_norm), bool(detach), eps_init, float(eps_grad_scale), kern, stages,
              skip_warps, depths, int(size), int(batch))
    seeds = np.random.SeedSequence(seed).spawn(replicates)
    import torch

    # torch's intra-op thread count is process-wide: set here, not in the (possibly threaded) replicates;
    # parallelism belongs to the replicates (``executor``)
    with _one_thread(torch.get_num_threads, torch.set_num_threads):
        reps = np.stack(_map(executor, _resnet_replicate, [(config, s) for s in seeds], False, ""))
    return _depth_record(reps, depths, {"gamma": float(gamma), "pre_eps_norm": bool(pre_eps_norm),
                                        "detach": bool(detach), "eps_init": eps_init,
                                        "eps_grad_scale": float(eps_grad_scale), "kernel": kern.name,
                                        "stages": stages, "skip_warps": skip_warps, "size": int(size),
                                        "batch": int(batch)})
