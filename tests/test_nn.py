"""Tests of warptheory.nn: the PyTorch layer (paper §2, §2.1, §3.1, §5).

Map:
  eq 2–4 as autograd (functional.warp/sample)   test_warp_is_the_engine, test_gradcheck_*, test_sample_*,
                                                test_double_backward_raises, test_nan_offsets_follow_engine_policy
  §2 deformable convolution                     test_deform_conv2d_matches_grid_sample_reference (+ float32)
  §2 ACU                                        test_active_conv_*
  §2 STN                                        test_affine_offsets_match_affine_grid
  §2.1 SelfWarp / PackWarp / warped skip        test_selfwarp_*, test_packwarp_*, test_warped_residual_*
  §2.1 ε-variance metric                        test_eps_variance_*
  §3.1/§5 options                               test_selfwarp_detach_*, test_selfwarp_pre_eps_norm_*,
                                                test_selfwarp_eps_grad_scale_*
  §5 parameter counts                           test_parameter_counts_*, test_section5_parameter_verdicts
  bad input                                     test_bad_input_*

References are independent torch routes: ``grid_sample`` (per kernel point for the
deformable convolution, with ``affine_grid`` for the STN), ``conv2d``, and torch autograd's
finite differences (``gradcheck``).  Tolerances: float64 comparisons at 1e-12 relative to
the largest entry of the reference (the routes differ by a few roundings of O(1) sums of
at most a few hundred terms, ~1e-14), float32 at 1e-5 relative (float32's 6e-8 times the
same sums, with a margin); our float32 results are compared against the float64 reference.

Planted errors, each tried once and caught: kernel points' rows taken from the column index
(deformable reference), align_corners=False's pixel formula replaced by True's (STN), the
skip warped in reverse order, the sample variance (n − 1) in eps_variance, detach ignored,
the two gradients swapped in the backward (gradcheck), the mask applied to the wrong kernel
points.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="warptheory.nn needs torch (the test extra installs it)")
F = torch.nn.functional

import warptheory  # noqa: E402
from warptheory.kernels import BUILTIN_KERNELS, T, kernel_from_sympy  # noqa: E402
from warptheory.nn import (  # noqa: E402
    ActiveConv2d,
    DeformConv2d,
    PackWarp,
    SelfDeformConv2d,
    SelfWarp,
    SpatialTransformer,
    Warp,
    WarpedResidual,
    eps_variances,
    record_eps,
    split_eps_parameters,
)
from warptheory.nn import _engine  # noqa: E402
from warptheory.nn import functional as WF  # noqa: E402
from warptheory.nn.resnet import cifar_resnet, count_parameters, parameter_readings  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_engine_thread():
    """The problems here are tiny: on a shared 2-core machine the engine's parallel launches,
    not the work, dominate (2–20 ms a call against 0.3–0.9 ms on one thread).  Results are
    bitwise the same for any thread count (tests/test_warping.py)."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(threads)
USER_KERNEL = kernel_from_sympy(
    sp.Piecewise((1 - 3 * T**2 + 2 * sp.Abs(T) ** 3, sp.Abs(T) <= 1), (0, True)), name="smoothstep"
)
PADDINGS = ("zeros", "periodic", "border")


def rel_err(a, ref):
    """Largest absolute difference relative to the largest entry of the reference."""
    a, ref = a.detach().double(), ref.detach().double()
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


def off_kink_eps(gen, shape, scale=1.5, margin=0.1):
    """Offsets (B, d, *S) whose sample positions v + ε have fractional parts in
    [margin, 0.5 - margin] ∪ [0.5 + margin, 1 - margin]: away from every kernel's kinks
    (0, ±1) and from rect's jumps (±1/2), so finite differences see a smooth function."""
    eps = scale * torch.randn(shape, generator=gen, dtype=F64)
    frac = torch.rand(shape, generator=gen, dtype=F64) * (0.5 - 2 * margin) + margin
    frac = frac + 0.5 * (torch.rand(shape, generator=gen, dtype=F64) < 0.5)
    return torch.floor(eps) + frac  # positions v + ε share ε's fractional part


# ----- import without torch -------------------------------------------------------------------
def test_package_imports_without_torch():
    """`import warptheory` and its numpy engines work when torch cannot be imported; warptheory.nn
    says what to install."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class BlockTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked for this test")
        sys.meta_path.insert(0, BlockTorch())
        import numpy as np
        import warptheory
        y = warptheory.warp(np.ones((1, 1, 4)), np.zeros((1, 1, 4)), backend="numpy")
        assert y.sum() == 4 and abs(warptheory.phi("tri", 0.3).phi21 - 0.7010002765882379) < 1e-12
        assert "torch" not in sys.modules
        try:
            import warptheory.nn
        except ImportError as exc:
            assert "warptheory[torch]" in str(exc), exc
            print("OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


# ----- functional.warp and sample: the engine underneath ---------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_warp_is_the_engine(dtype, d):
    """Forward and both gradients are bitwise the engine's (warptheory.warp / warp_backward)."""
    gen = torch.Generator().manual_seed(d)
    spatial = (5, 6, 4)[:d]
    x = torch.randn(2, 3, *spatial, generator=gen, dtype=dtype, requires_grad=True)
    eps = (2 * torch.randn(2, d, *spatial, generator=gen, dtype=dtype)).requires_grad_()
    g = torch.randn(2, 3, *spatial, generator=gen, dtype=dtype)
    y = WF.warp(x, eps, "cos", "periodic")
    y.backward(g)
    y_ref = warptheory.warp(x.detach().numpy(), eps.detach().numpy(), "cos", "periodic")
    gx_ref, geps_ref = warptheory.warp_backward(x.detach().numpy(), eps.detach().numpy(), g.numpy(), "cos", "periodic")
    assert y.dtype == dtype and x.grad.dtype == dtype and eps.grad.dtype == dtype
    np.testing.assert_array_equal(y.detach().numpy(), y_ref)
    np.testing.assert_array_equal(x.grad.numpy(), gx_ref)
    np.testing.assert_array_equal(eps.grad.numpy(), geps_ref)


def test_cpu_tensors_cross_without_copies(monkeypatch):
    """Contiguous CPU tensors reach the engine plan as numpy views of their own memory, and the
    result tensor is the engine's array."""
    seen = {}
    real_plan, real_warp = _engine.warping.warp_plan, _engine.warping.WarpPlan.warp

    def spy_plan(eps, *args):
        seen["eps"] = eps.__array_interface__["data"][0]
        return real_plan(eps, *args)

    def spy_warp(plan, x):
        seen["x"] = x.__array_interface__["data"][0]
        seen["y"] = real_warp(plan, x)
        return seen["y"]

    monkeypatch.setattr(_engine.warping, "warp_plan", spy_plan)
    monkeypatch.setattr(_engine.warping.WarpPlan, "warp", spy_warp)
    x, eps = torch.randn(1, 2, 4, 5), torch.randn(1, 2, 4, 5)
    y = WF.warp(x, eps)
    assert seen["x"] == x.data_ptr() and seen["eps"] == eps.data_ptr()
    assert y.data_ptr() == seen["y"].__array_interface__["data"][0]


def test_non_contiguous_tensors_are_handled():
    gen = torch.Generator().manual_seed(1)
    base_x = torch.randn(2, 3, 6, 5, generator=gen, dtype=F64)
    base_eps = torch.randn(2, 2, 6, 5, generator=gen, dtype=F64)
    x = base_x.transpose(2, 3).requires_grad_()  # (2, 3, 5, 6), not contiguous
    eps = base_eps.transpose(2, 3)[:, [1, 0]].requires_grad_()
    assert not x.is_contiguous() and not eps.is_contiguous()
    xc, epsc = x.detach().contiguous().requires_grad_(), eps.detach().contiguous().requires_grad_()
    g = torch.randn(2, 3, 5, 6, generator=gen, dtype=F64)
    WF.warp(x, eps).backward(g)
    WF.warp(xc, epsc).backward(g)
    assert torch.equal(WF.warp(x, eps), WF.warp(xc, epsc))
    assert torch.equal(x.grad, xc.grad) and torch.equal(eps.grad, epsc.grad)


@pytest.mark.parametrize("kernel", [*BUILTIN_KERNELS, USER_KERNEL], ids=lambda k: getattr(k, "name", k))
@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck_warp(kernel, padding):
    """torch.autograd.gradcheck (central differences, float64) of x and ε, every kernel and
    padding, positions away from kinks; d = 2, and d = 1, 3 for tri."""
    gen = torch.Generator().manual_seed(7)
    for spatial in [(3, 4)] + ([(5,), (2, 3, 3)] if kernel == "tri" else []):
        d = len(spatial)
        x = torch.randn(1, 2, *spatial, generator=gen, dtype=F64, requires_grad=True)
        eps = off_kink_eps(gen, (1, d, *spatial)).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: WF.warp(a, b, kernel, padding), (x, eps), eps=1e-6, atol=1e-7,
                                        rtol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck_sample(padding):
    """gradcheck of sample on output lattices smaller and larger than the input's."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 3, 4, generator=gen, dtype=F64, requires_grad=True)
    for out in [(2, 3), (4, 6)]:
        coords = off_kink_eps(gen, (1, 2, *out), scale=3.0).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, c: WF.sample(a, c, "hann", padding), (x, coords), eps=1e-6,
                                        atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("out", [(5, 6), (3, 4), (11, 13), (2, 20)])
def test_sample_matches_grid_sample(out):
    """sample(x, coords) = grid_sample(x, normalised coords, bilinear, zeros) for any output
    lattice, values and gradients (float64, 1e-12); with out = in it is warp(x, coords − v)."""
    gen = torch.Generator().manual_seed(sum(out))
    x = torch.randn(2, 3, 5, 6, generator=gen, dtype=F64, requires_grad=True)
    coords = (torch.rand(2, 2, *out, generator=gen, dtype=F64) * 8 - 1.5).requires_grad_()
    y = WF.sample(x, coords)
    grid = torch.stack([(2 * coords[:, 1] + 1) / 6 - 1, (2 * coords[:, 0] + 1) / 5 - 1], dim=-1)
    y_ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, coords), g)
    grads_ref = torch.autograd.grad(y_ref, (x, coords), g)
    assert rel_err(y, y_ref) <= 1e-12
    for a, b in zip(grads, grads_ref):
        assert rel_err(a, b) <= 1e-12
    if out == (5, 6):
        lattice = torch.stack(torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")).to(F64)
        assert torch.equal(y, WF.warp(x, coords - lattice))


def test_double_backward_raises():
    x = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    eps = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    (grad_eps,) = torch.autograd.grad(WF.warp(x, eps).sum(), eps, create_graph=True)
    with pytest.raises(WF.DoubleBackwardError, match="warp: double backward is not implemented"):
        grad_eps.sum().backward()
    # first-order use under create_graph=True still works
    assert grad_eps.shape == eps.shape


def test_nan_offsets_follow_engine_policy():
    """A NaN offset makes that position's output and ε-gradient NaN and scatters nothing
    into x's gradient (warptheory.warping's documented policy)."""
    x = torch.randn(1, 3, 5, 5, dtype=F64, requires_grad=True)
    eps = torch.randn(1, 2, 5, 5, dtype=F64)
    eps[0, 1, 2, 3] = float("nan")
    eps.requires_grad_()
    y = WF.warp(x, eps)
    nan = torch.isnan(y)
    assert nan[0, :, 2, 3].all() and nan.sum() == 3
    y.nansum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isnan(eps.grad[0, :, 2, 3]).all() and torch.isnan(eps.grad).sum() == 2


def test_only_asked_gradients_are_computed(monkeypatch):
    """The plan made in the forward serves the backward, which asks only for what autograd needs."""
    calls = []
    real_plan, real_backward = _engine.warping.warp_plan, _engine.warping.WarpPlan.backward

    def spy_plan(*args):
        calls.append("plan")
        return real_plan(*args)

    def spy_backward(plan, x, grad_y, need_x=True, need_eps=True):
        calls.append((need_x, need_eps))
        return real_backward(plan, x, grad_y, need_x=need_x, need_eps=need_eps)

    monkeypatch.setattr(_engine.warping, "warp_plan", spy_plan)
    monkeypatch.setattr(_engine.warping.WarpPlan, "backward", spy_backward)
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    WF.warp(x, torch.randn(1, 2, 3, 3)).sum().backward()
    eps = torch.randn(1, 2, 3, 3, requires_grad=True)
    WF.warp(torch.randn(1, 2, 3, 3), eps).sum().backward()
    assert calls == ["plan", (True, False), "plan", (False, True)]


@pytest.mark.gpu
def test_cuda_tensors_match_cpu():
    """CUDA tensors go through CuPy by DLPack; same values and gradients as the CPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("cupy", reason="the CUDA path needs CuPy")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 9, generator=gen, dtype=F64, requires_grad=True)
    eps = (2 * torch.randn(2, 2, 8, 9, generator=gen, dtype=F64)).requires_grad_()
    xc, epsc = x.detach().cuda().requires_grad_(), eps.detach().cuda().requires_grad_()
    g = torch.randn(2, 3, 8, 9, generator=gen, dtype=F64)
    y, yc = WF.warp(x, eps), WF.warp(xc, epsc)
    y.backward(g)
    yc.backward(g.cuda())
    assert yc.is_cuda and rel_err(yc.cpu(), y) <= 1e-12
    assert rel_err(xc.grad.cpu(), x.grad) <= 1e-12 and rel_err(epsc.grad.cpu(), eps.grad) <= 1e-12


# ----- deformable convolution (§2) -----------------------------------------------------------------
def reference_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask):
    """torchvision.ops.deform_conv2d rebuilt from grid_sample, one call per kernel point.

    grid_sample(bilinear, zeros, align_corners=False) reads pixel p at normalised
    (2p + 1)/S − 1 and returns 0 for out-of-range corners: torchvision's boundary rule."""
    batch, c_in, height, width = input.shape
    c_out, c_in_group, kh, kw = weight.shape
    k = kh * kw
    groups = offset.shape[1] // (2 * k)
    h_out, w_out = offset.shape[2:]
    rows = torch.arange(h_out, dtype=input.dtype) * stride[0] - padding[0]
    cols = torch.arange(w_out, dtype=input.dtype) * stride[1] - padding[1]
    grouped = input.reshape(batch * groups, c_in // groups, height, width)
    samples = []
    for i in range(kh):
        for j in range(kw):
            point = i * kw + j
            off = offset.reshape(batch, groups, k, 2, h_out, w_out)[:, :, point].reshape(batch * groups, 2, h_out, w_out)
            p_row = rows.view(h_out, 1) + i * dilation[0] + off[:, 0]
            p_col = cols.view(1, w_out) + j * dilation[1] + off[:, 1]
            grid = torch.stack([(2 * p_col + 1) / width - 1, (2 * p_row + 1) / height - 1], dim=-1)
            s = F.grid_sample(grouped, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if mask is not None:
                s = s * mask.reshape(batch, groups, k, h_out, w_out)[:, :, point].reshape(batch * groups, 1, h_out, w_out)
            samples.append(s.reshape(batch, c_in, h_out, w_out))
    columns = torch.stack(samples, dim=2).reshape(batch, c_in * k, h_out, w_out)
    return F.conv2d(columns, weight.reshape(c_out, c_in_group * k, 1, 1), bias, groups=c_in // c_in_group)


def deform_problem(seed, stride, padding, dilation, offset_groups, with_mask, dtype, weight_groups=1):
    gen = torch.Generator().manual_seed(seed)
    batch, c_in, height, width, c_out = 2, 4, 7, 8, 6
    h_out = (height + 2 * padding - 2 * dilation - 1) // stride + 1
    w_out = (width + 2 * padding - 2 * dilation - 1) // stride + 1
    x = torch.randn(batch, c_in, height, width, generator=gen, dtype=F64)
    offset = 1.5 * torch.randn(batch, 2 * offset_groups * 9, h_out, w_out, generator=gen, dtype=F64)
    weight = torch.randn(c_out, c_in // weight_groups, 3, 3, generator=gen, dtype=F64)
    bias = torch.randn(c_out, generator=gen, dtype=F64)
    mask = torch.rand(batch, offset_groups * 9, h_out, w_out, generator=gen, dtype=F64) if with_mask else None
    grad = torch.randn(batch, c_out, h_out, w_out, generator=gen, dtype=F64)
    tensors = [x, offset, weight, bias] + ([mask] if with_mask else [])
    return [t.to(dtype).requires_grad_() for t in tensors], grad.to(dtype)


DEFORM_GRID = list(itertools.product([1, 2], [0, 1], [1, 2], [1, 2], [False, True]))


@pytest.mark.parametrize("stride,padding,dilation,offset_groups,with_mask", DEFORM_GRID)
def test_deform_conv2d_matches_grid_sample_reference(stride, padding, dilation, offset_groups, with_mask):
    """Values and the gradients of input, offset, mask, weight and bias: float64 ≤ 1e-12 and
    float32 (ours) against the float64 reference ≤ 1e-5, relative to each tensor's largest entry."""
    seed = hash((stride, padding, dilation, offset_groups, with_mask)) % 2**31
    conv = dict(stride=(stride, stride), padding=(padding, padding), dilation=(dilation, dilation))
    tensors, grad = deform_problem(seed, stride, padding, dilation, offset_groups, with_mask, F64)
    x, offset, weight, bias, *mask = tensors
    mask = mask[0] if mask else None
    y_ref = reference_deform_conv2d(x, offset, weight, bias, mask=mask, **conv)
    grads_ref = torch.autograd.grad(y_ref, tensors, grad)
    for dtype, tol in [(F64, 1e-12), (torch.float32, 1e-5)]:
        ours = [t.detach().to(dtype).requires_grad_() for t in tensors]
        x_, offset_, weight_, bias_, *mask_ = ours
        y = WF.deform_conv2d(x_, offset_, weight_, bias_, mask=mask_[0] if mask_ else None, **conv)
        grads = torch.autograd.grad(y, ours, grad.to(dtype))
        assert y.dtype == dtype
        assert rel_err(y, y_ref) <= tol, ("output", dtype)
        for name, a, b in zip(["input", "offset", "weight", "bias", "mask"], grads, grads_ref):
            assert rel_err(a, b) <= tol, (name, dtype, rel_err(a, b))


def test_deform_conv2d_weight_groups_and_rectangular_kernel():
    """Weight groups (C_in / weight.shape[1]) and a 2×3 kernel, against the reference."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 7, 9, generator=gen, dtype=F64, requires_grad=True)
    weight = torch.randn(4, 3, 2, 3, generator=gen, dtype=F64, requires_grad=True)
    offset = (1.2 * torch.randn(2, 2 * 3 * 6, 4, 3, generator=gen, dtype=F64)).requires_grad_()
    conv = dict(stride=(2, 2), padding=(1, 0), dilation=(1, 2))
    y = WF.deform_conv2d(x, offset, weight, None, **conv)
    y_ref = reference_deform_conv2d(x, offset, weight, None, mask=None, **conv)
    g = torch.randn_like(y)
    assert rel_err(y, y_ref) <= 1e-12
    for a, b in zip(torch.autograd.grad(y, (x, offset, weight), g), torch.autograd.grad(y_ref, (x, offset, weight), g)):
        assert rel_err(a, b) <= 1e-12


def test_deform_conv2d_module_interface():
    """DeformConv2d has torchvision's constructor and forward(input, offset, mask)."""
    torch.manual_seed(0)
    layer = DeformConv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2).double()
    x = torch.randn(2, 4, 9, 9, dtype=F64)
    h, w = layer.output_size(9, 9)
    offset = torch.randn(2, 18, h, w, dtype=F64)
    mask = torch.rand(2, 9, h, w, dtype=F64)
    y = layer(x, offset, mask)
    y_ref = reference_deform_conv2d(x, offset, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation,
                                    mask)
    assert y.shape == (2, 6, 5, 5) and rel_err(y, y_ref) <= 1e-12


def test_self_deform_conv_starts_as_convolution():
    torch.manual_seed(0)
    for modulated in (False, True):
        layer = SelfDeformConv2d(3, 5, 3, stride=2, modulated=modulated, pre_eps_norm=True).double()
        x = torch.randn(2, 3, 8, 8, dtype=F64)
        ref = F.conv2d(x, layer.deform.weight, stride=2, padding=1) * (0.5 if modulated else 1.0)  # DCNv2's mask: 1/2
        assert rel_err(layer(x), ref + layer.deform.bias.view(1, -1, 1, 1)) <= 1e-12
        assert float(layer.eps_variance) == 0.0


# ----- ACU (§2) -----------------------------------------------------------------------------------
def test_active_conv_with_zero_offsets_is_a_convolution():
    torch.manual_seed(1)
    for stride, padding, dilation in [(1, 1, 1), (2, 0, 2), (1, 2, 2)]:
        acu = ActiveConv2d(3, 4, 3, stride, padding, dilation).double()
        x = torch.randn(2, 3, 9, 8, dtype=F64)
        ref = F.conv2d(x, acu.weight, acu.bias, stride, padding, dilation)
        assert rel_err(acu(x), ref) <= 1e-12


def test_active_conv_matches_reference_with_constant_offsets():
    """Learned offsets, constant over space and data: values and gradients (offsets, weight,
    input) against the grid_sample reference with the offsets broadcast."""
    torch.manual_seed(2)
    acu = ActiveConv2d(3, 4, 3, stride=1, padding=1).double()
    with torch.no_grad():
        acu.offsets.copy_(0.8 * torch.randn(9, 2, dtype=F64))
    x = torch.randn(2, 3, 7, 6, dtype=F64, requires_grad=True)
    y = acu(x)
    offsets = acu.offsets.detach().clone().requires_grad_()
    weight = acu.weight.detach().clone().requires_grad_()
    y_ref = reference_deform_conv2d(x, offsets.reshape(1, 18, 1, 1).expand(2, 18, 7, 6), weight, acu.bias, (1, 1),
                                    (1, 1), (1, 1), None)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, acu.offsets, acu.weight), g)
    grads_ref = torch.autograd.grad(y_ref, (x, offsets, weight), g)
    assert rel_err(y, y_ref) <= 1e-12
    for a, b in zip(grads, grads_ref):
        assert rel_err(a, b) <= 1e-12
    eps, other = split_eps_parameters(acu)
    assert [id(p) for p in eps] == [id(acu.offsets)] and len(other) == 2


# ----- STN (§2) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("d", [2, 3])
def test_affine_offsets_match_affine_grid(align_corners, padding, d):
    """warp(x, affine_offsets(θ, x.shape, ac)) = grid_sample(x, affine_grid(θ, x.shape, ac), ac):
    values and gradients in x and θ, float64, 1e-12."""
    gen = torch.Generator().manual_seed(d + 2 * align_corners)
    spatial = (6, 9) if d == 2 else (4, 5, 6)
    x = torch.randn(2, 3, *spatial, generator=gen, dtype=F64, requires_grad=True)
    theta = (torch.eye(d, d + 1, dtype=F64) + 0.3 * torch.randn(2, d, d + 1, generator=gen, dtype=F64)).requires_grad_()
    y = WF.warp(x, WF.affine_offsets(theta, x.shape, align_corners), padding=padding)
    y_ref = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=align_corners), mode="bilinear",
                          padding_mode=padding, align_corners=align_corners)
    g = torch.randn(y.shape, generator=gen, dtype=F64)
    assert rel_err(y, y_ref) <= 1e-12
    for a, b in zip(torch.autograd.grad(y, (x, theta), g), torch.autograd.grad(y_ref, (x, theta), g)):
        assert rel_err(a, b) <= 1e-12


def test_spatial_transformer_module():
    torch.manual_seed(3)
    loc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 5 * 5, 6)).double()
    with torch.no_grad():
        loc[1].weight.mul_(0.01)
        loc[1].bias.copy_(torch.tensor([0.9, 0.1, 0.05, -0.2, 1.1, 0.0]))
    stn = SpatialTransformer(loc, align_corners=False)
    x = torch.randn(2, 3, 5, 5, dtype=F64)
    theta = loc(x).view(2, 2, 3)
    ref = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)
    assert rel_err(stn(x), ref) <= 1e-12 and stn.eps_variance > 0


# ----- SelfWarp, PackWarp, warped skip (§2.1) and the options of §3.1/§5 -----------------------------
def randomise_eps_branch(block, scale, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.eps_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_selfwarp_starts_as_identity_with_zero_eps_branch():
    block = SelfWarp(4, pre_eps_norm=True)
    assert all(float(p.detach().abs().max()) == 0.0 for p in block.eps_branch[1].parameters())
    assert block.eps_variance is None
    x = torch.randn(2, 4, 6, 7)
    assert torch.equal(block(x), x) and float(block.eps_variance) == 0.0


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_selfwarp_is_warp_of_its_eps(spatial_dims):
    torch.manual_seed(4)
    block = SelfWarp(3, kernel="hann", padding="periodic", spatial_dims=spatial_dims).double()
    randomise_eps_branch(block, 0.5)
    x = torch.randn(2, 3, *(5, 6, 4)[:spatial_dims], dtype=F64)
    eps = block.eps_branch(x)
    assert torch.equal(block(x), WF.warp(x, eps, "hann", "periodic"))
    assert torch.equal(block.eps_variance, WF.eps_variance(eps))


def grads_into_x(block, x, g):
    x = x.detach().clone().requires_grad_()
    block(x).backward(g)
    return x.grad


def test_selfwarp_detach_zeroes_the_eps_path_gradient_into_x():
    """With detach, grad_x is exactly the warp's own transpose (eq 3): the ε path adds nothing.
    Without it, the ε path adds a non-zero term."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    g = torch.randn(2, 3, 6, 6, dtype=F64)
    attached = SelfWarp(3).double()
    randomise_eps_branch(attached, 0.4)
    detached = SelfWarp(3, detach=True).double()
    detached.load_state_dict(attached.state_dict())
    eps = attached.eps_branch(x).detach()
    direct = grads_into_x(lambda t: WF.warp(t, eps), x, g)  # eq 3 alone
    assert torch.equal(grads_into_x(detached, x, g), direct)
    assert rel_err(grads_into_x(attached, x, g) - direct, direct) > 1e-3
    # the ε branch still learns under detach
    detached(x).backward(g)
    assert float(detached.eps_branch[0].weight.grad.abs().max()) > 0


def test_selfwarp_pre_eps_norm_makes_eps_invariant_to_the_scale_of_x():
    """Training-mode batch norm before the ε convolution: ε(5x) = ε(x) up to BN's ε (1e-5
    against unit variance); without it ε(5x) = 5 ε(x) (bias 0)."""
    torch.manual_seed(6)
    x = torch.randn(8, 3, 6, 6, dtype=F64)
    normed = SelfWarp(3, pre_eps_norm=True).double()
    plain = SelfWarp(3, eps_bias=False).double()
    randomise_eps_branch(normed, 0.4)
    randomise_eps_branch(plain, 0.4)
    assert rel_err(normed.compute_eps(5 * x), normed.compute_eps(x)) <= 1e-4
    assert rel_err(plain.compute_eps(5 * x), 5 * plain.compute_eps(x)) <= 1e-12


def test_selfwarp_eps_grad_scale_scales_the_eps_branch_gradient():
    """eps_grad_scale = 1/4: the ε-branch parameters' gradients and the ε-path gradient into x
    are exactly 1/4 of the unscaled ones (a power of two scales without rounding); the warp's
    own gradient into x (eq 3) is unchanged."""
    torch.manual_seed(7)
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    g = torch.randn(2, 3, 6, 6, dtype=F64)
    full = SelfWarp(3, pre_eps_norm=True).double()
    randomise_eps_branch(full, 0.4)
    scaled = SelfWarp(3, pre_eps_norm=True, eps_grad_scale=0.25).double()
    scaled.load_state_dict(full.state_dict())
    gx_full, gx_scaled = grads_into_x(full, x, g), grads_into_x(scaled, x, g)
    eps = full.compute_eps(x).detach()
    direct = grads_into_x(lambda t: WF.warp(t, eps), x, g)
    assert rel_err(gx_scaled - direct, 0.25 * (gx_full - direct)) <= 1e-12
    for p_full, p_scaled in zip(full.eps_parameters(), scaled.eps_parameters()):
        assert torch.equal(p_scaled.grad, 0.25 * p_full.grad)


def test_packwarp_is_one_convolution_with_n_plus_d_outputs():
    torch.manual_seed(8)
    block = PackWarp(3, 5, stride=2, padding="border").double()
    x = torch.randn(2, 3, 9, 9, dtype=F64)
    assert torch.equal(block(x), F.conv2d(x, block.weight, block.bias, stride=2, padding=1))  # ε rows start at 0
    randomise_eps_branch(block, 0.3)
    out = F.conv2d(x, torch.cat([block.weight, block.eps_weight]), torch.cat([block.bias, block.eps_bias]), stride=2,
                   padding=1)
    assert torch.equal(block(x), WF.warp(out[:, :5], out[:, 5:], "tri", "border"))
    assert torch.equal(block.eps_variance, WF.eps_variance(out[:, 5:]))
    eps, other = split_eps_parameters(block)
    assert {id(p) for p in eps} == {id(block.eps_weight), id(block.eps_bias)} and len(other) == 2


def test_warped_residual_warps_the_skip_by_the_branch_eps():
    """skip = warp(warp(x, ε₁), ε₂) for a branch with two warp blocks (in the order they ran);
    the plain skip with warp_skip=False (§5's ablation)."""
    torch.manual_seed(9)
    first, second = SelfWarp(3, padding="periodic").double(), SelfWarp(3).double()
    randomise_eps_branch(first, 0.4, seed=1)
    randomise_eps_branch(second, 0.4, seed=2)
    branch = torch.nn.Sequential(first, torch.nn.Tanh(), second)
    x = torch.randn(2, 3, 6, 5, dtype=F64)
    eps1 = first.eps_branch(x)
    eps2 = second.eps_branch(torch.tanh(WF.warp(x, eps1, padding="periodic")))
    expected_skip = WF.warp(WF.warp(x, eps1, padding="periodic"), eps2)
    assert torch.equal(WarpedResidual(branch)(x), branch(x) + expected_skip)
    assert torch.equal(WarpedResidual(branch, warp_skip=False)(x), branch(x) + x)


def test_record_eps_nests():
    outer_block, inner_block = SelfWarp(2), SelfWarp(2)
    x = torch.randn(1, 2, 4, 4)
    with record_eps() as outer:
        outer_block(x)
        with record_eps() as inner:
            inner_block(x)
    assert [b for b, _ in outer] == [outer_block] and [b for b, _ in inner] == [inner_block]
    inner_block(x)  # outside any record: nothing collected, no error
    assert len(outer) == 1


def test_eps_variance_is_the_average_per_sample_variance():
    """Against a numpy loop: per sample and component, the population variance over positions."""
    gen = torch.Generator().manual_seed(10)
    eps = torch.randn(3, 2, 4, 5, generator=gen, dtype=F64) * torch.tensor([1.0, 2.0, 3.0], dtype=F64).view(3, 1, 1, 1)
    a = eps.numpy()
    expected = np.mean([[np.var(a[b, k]) for k in range(2)] for b in range(3)])
    assert abs(float(WF.eps_variance(eps)) - expected) <= 1e-12 * expected
    block = SelfWarp(2)
    randomise_eps_branch(block, 1.0)
    block(torch.randn(3, 2, 4, 5))
    assert eps_variances(torch.nn.Sequential(block)) == {"0": float(block.eps_variance)}


# ----- ResNet and the §5 parameter counts -----------------------------------------------------------
def closed_form_counts(depth):
    """Parameter counts by arithmetic, independent of the modules: the 3×3 convolutions
    (C_in, C_out) of a CIFAR ResNet-depth with option A shortcuts, BN (2 per channel) and fc."""
    n = (depth - 2) // 6
    convs = [(3, 16)]
    for width in (16, 32, 64):
        for b in range(n):
            convs += [(width // 2 if (b == 0 and width > 16) else width, width), (width, width)]
    plain = sum(9 * a * c + 2 * c for a, c in convs) + 64 * 10 + 10
    return convs, plain


@pytest.fixture(scope="module")
def readings56():
    return parameter_readings(56)


def test_parameter_counts_match_closed_forms(readings56):
    convs, plain = closed_form_counts(56)
    assert plain == 853018 == count_parameters(cifar_resnet(56))
    body = convs[1:]
    for reading in readings56:
        opts = reading.options
        layers = convs if opts.get("replace_stem", True) else body
        if opts["layer"] == "selfwarp":
            size = opts.get("kernel_size", 3)
            extra = sum(2 * c * size * size + 2 * opts.get("eps_bias", True) + 2 * c * opts["pre_eps_norm"]
                        for _, c in layers)
        elif opts["layer"] == "packwarp":
            extra = sum(2 * a * 9 + 2 for a, _ in layers)
        else:
            outputs = 27 if opts["modulated"] else 18
            extra = sum(outputs * a * 9 + outputs + 2 * a * opts["pre_eps_norm"] for a, _ in layers)
        assert reading.parameters - reading.baseline == extra, reading.description


def test_section5_parameter_verdicts(readings56):
    """§5: "+4.7 %" (SelfWarp) is reproduced only by readings with the 3×3 ε convolution and the
    pre-ε batch norm; "+46.2 %" (deformable) by none (DCN v1 gives 37.5–38.0 %, v2 56.2–56.8 %).
    See paper_notes/s05_results.md."""
    readings = readings56
    selfwarp = [r for r in readings if r.claim == "selfwarp" and round(r.increase, 1) == 4.7]
    assert selfwarp and all("pre-ε BN" in r.description and "3x3" in r.description for r in selfwarp)
    deform = [r.increase for r in readings if r.claim == "deform"]
    assert not any(round(v, 1) == 46.2 for v in deform)
    assert 37.4 < min(deform) and max(v for v in deform if v < 46.2) < 38.1 and min(v for v in deform if v > 46.2) > 56


def test_selfwarp_resnet_starts_as_the_plain_resnet():
    """With zero ε branches a SelfWarp ResNet computes the plain ResNet's function."""
    torch.manual_seed(11)
    plain = cifar_resnet(8).double().eval()
    warped = cifar_resnet(8, "selfwarp", pre_eps_norm=True).double().eval()
    state = warped.state_dict()
    for name, value in plain.state_dict().items():
        target = name.replace("stem.weight", "stem.0.weight").replace("conv1.weight", "conv1.0.weight").replace(
            "conv2.weight", "conv2.0.weight")
        state[target] = value
    warped.load_state_dict(state)
    x = torch.randn(2, 3, 16, 16, dtype=F64)
    assert torch.equal(plain(x), warped(x))


@pytest.mark.parametrize("layer", ["selfwarp", "packwarp", "deform"])
def test_resnet_trains_one_step(layer):
    torch.manual_seed(12)
    model = cifar_resnet(8, layer, bn_weight_init=0.1, **({} if layer == "packwarp" else {"pre_eps_norm": True}))
    x, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(x), labels).backward()
    eps, other = split_eps_parameters(model)
    assert all(p.grad is not None for p in eps + other)
    assert len(eps_variances(model)) == 7  # stem + 6 convolutions
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(float(m.weight.detach().max()) == pytest.approx(0.1) for m in bn)


# ----- bad input --------------------------------------------------------------------------------------
def test_bad_input_warp_and_sample():
    x, eps = torch.zeros(2, 3, 4, 5), torch.zeros(2, 2, 4, 5)
    cases = [
        (TypeError, "x: expected a torch.Tensor, got ndarray", lambda: WF.warp(x.numpy(), eps)),
        (TypeError, "eps: expected a torch.Tensor", lambda: WF.warp(x, 0.5)),
        (TypeError, "x: expected dtype torch.float32 or torch.float64, got torch.float16",
         lambda: WF.warp(x.half(), eps.half())),
        (TypeError, "eps: dtype torch.float64 does not match x's dtype torch.float32", lambda: WF.warp(x, eps.double())),
        (ValueError, "eps: on device meta, but x is on cpu", lambda: WF.warp(x, eps.to("meta"))),
        (ValueError, r"eps: expected shape \(2, 2, 4, 5\)", lambda: WF.warp(x, torch.zeros(2, 2, 5, 4))),
        (ValueError, r"eps: expected shape", lambda: WF.warp(x, torch.zeros(2, 1, 4, 5))),
        (ValueError, "x: expected a 3 or 4 or 5-dimensional tensor", lambda: WF.warp(torch.zeros(2, 3), eps)),
        (ValueError, "padding: expected one of 'zeros', 'periodic', 'border', got 'reflection'",
         lambda: WF.warp(x, eps, padding="reflection")),
        (ValueError, "kernel: unknown kernel 'bicubic'", lambda: WF.warp(x, eps, kernel="bicubic")),
        (ValueError, r"coords: expected shape \(2, 2, \*S_out\)", lambda: WF.sample(x, torch.zeros(2, 3, 4, 5))),
        (ValueError, r"coords: expected shape", lambda: WF.sample(x, torch.zeros(1, 2, 4, 5))),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()


def test_bad_input_deform_conv2d():
    x = torch.zeros(2, 4, 7, 7)
    w = torch.zeros(6, 4, 3, 3)
    off = torch.zeros(2, 18, 5, 5)
    cases = [
        (ValueError, r"offset: expected 2·offset_groups·kh·kw channels, a multiple of 2·3·3 = 18 .* got 17",
         lambda: WF.deform_conv2d(x, torch.zeros(2, 17, 5, 5), w)),
        (ValueError, r"offset: its 3 offset groups do not divide the input's 4 channels",
         lambda: WF.deform_conv2d(x, torch.zeros(2, 54, 5, 5), w)),
        (ValueError, r"offset: expected shape \(2, 18, 5, 5\)", lambda: WF.deform_conv2d(x, torch.zeros(2, 18, 7, 7), w)),
        (ValueError, r"mask: expected shape \(2, 9, 5, 5\)",
         lambda: WF.deform_conv2d(x, off, w, mask=torch.zeros(2, 18, 5, 5))),
        (ValueError, "weight: shape\\[1\\] = 3 must divide the input's 4 channels",
         lambda: WF.deform_conv2d(x, off, torch.zeros(6, 3, 3, 3))),
        (ValueError, r"bias: expected shape \(6,\)", lambda: WF.deform_conv2d(x, off, w, torch.zeros(5))),
        (TypeError, "offset: dtype torch.float64 does not match input's dtype torch.float32",
         lambda: WF.deform_conv2d(x, off.double(), w)),
        (ValueError, "mask: on device meta, but input is on cpu",
         lambda: WF.deform_conv2d(x, off, w, mask=torch.zeros(2, 9, 5, 5, device="meta"))),
        (ValueError, "stride: expected values >= 1", lambda: WF.deform_conv2d(x, off, w, stride=0)),
        (TypeError, "dilation: expected an int or a pair of ints", lambda: WF.deform_conv2d(x, off, w, dilation=1.5)),
        (ValueError, "input: spatial size .* too small", lambda: WF.deform_conv2d(torch.zeros(2, 4, 2, 2), off, w)),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()


def test_bad_input_affine_offsets_and_modules():
    cases = [
        (ValueError, r"theta: expected shape \(2, 2, 3\)", lambda: WF.affine_offsets(torch.zeros(2, 3, 4), (2, 1, 4, 4))),
        (ValueError, "size: expected", lambda: WF.affine_offsets(torch.zeros(2, 2, 3), (2, 4, 4))),
        (TypeError, "align_corners: expected a bool", lambda: WF.affine_offsets(torch.zeros(1, 2, 3), (1, 1, 4, 4), 1)),
        (ValueError, "kernel_size: expected an odd size", lambda: SelfWarp(3, 2)),
        (ValueError, "channels: expected a positive int", lambda: SelfWarp(0)),
        (ValueError, "padding: expected one of", lambda: SelfWarp(3, padding="reflect")),
        (TypeError, "eps_grad_scale: expected a finite number", lambda: SelfWarp(3, eps_grad_scale=float("nan"))),
        (ValueError, r"x: expected shape \(B, 3, \*S\) with 2 spatial axes", lambda: SelfWarp(3)(torch.zeros(1, 4, 5, 5))),
        (ValueError, "depth: expected 6n \\+ 2", lambda: cifar_resnet(51)),
        (ValueError, "layer: expected one of", lambda: cifar_resnet(20, "dense")),
        (ValueError, "skip: spatial shape", lambda: WarpedResidual(SelfWarp(2), lambda t: t[:, :, ::2])(
            torch.zeros(1, 2, 4, 4))),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()


def test_warp_module():
    x = torch.randn(1, 2, 4, 4, dtype=F64)
    eps = torch.randn(1, 2, 4, 4, dtype=F64)
    assert torch.equal(Warp("cos", "border")(x, eps), WF.warp(x, eps, "cos", "border"))


def test_readme_use_in_pytorch_runs():
    """The README's "Use in PyTorch" example runs and names the metric's layers as it says."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Use in PyTorch", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["y"].shape == (8, 16, 32, 32)
    assert set(eps_variances(namespace["block"])) == {"0.branch.0.1", "0.branch.3.1"}


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    kernel_size=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    groups=st.sampled_from([1, 2]),
    offset_groups=st.sampled_from([1, 2]),
)
def test_deform_conv2d_with_zero_offsets_is_conv2d(seed, kernel_size, stride, padding, dilation, groups, offset_groups):
    """Operator law: zero offsets and a unit mask give torch's conv2d, for any kernel size, stride,
    padding, dilation, weight groups and offset groups (float64, 1e-12)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 7, 6, generator=gen, dtype=F64)
    weight = torch.randn(6, 4 // groups, *kernel_size, generator=gen, dtype=F64)
    bias = torch.randn(6, generator=gen, dtype=F64)
    ref = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    k = kernel_size[0] * kernel_size[1]
    offset = torch.zeros(2, 2 * offset_groups * k, *ref.shape[2:], dtype=F64)
    mask = torch.ones(2, offset_groups * k, *ref.shape[2:], dtype=F64)
    assert rel_err(WF.deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask), ref) <= 1e-12
