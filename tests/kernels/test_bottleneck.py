"""Fused bottleneck adapter (cuBLAS GEMMs + Triton row kernels) and Stack against the PyTorch
reference and a float64 oracle."""

from __future__ import annotations

import pytest
import torch

from madx import kernels
from madx.kernels import bottleneck_adapter_ref, stacked_bottleneck_ref

from .conftest import DEVICE, run

pytestmark = pytest.mark.usefixtures("needs_triton")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (leading dims, hidden, bottleneck): odd sizes exercise every mask; 3-D exercises flattening
SHAPES = [((7,), 40, 6), ((2, 5), 24, 17), ((3, 11), 72, 48)]
SEEDS = [0, 1, 2]
NAMES = ["hidden", "residual", "down_weight", "down_bias", "up_weight", "up_bias"]


def make_inputs(lead, h, d, seed, device=DEVICE):
    """Float64 leaves of sensible scale (outputs and grads O(1)), to be cast per run."""
    g = torch.Generator().manual_seed(seed)
    t = [
        torch.randn(*lead, h, generator=g),  # hidden (..., h)
        torch.randn(*lead, h, generator=g),  # residual (..., h)
        torch.randn(d, h, generator=g) / h**0.5,  # down_weight (d, h)
        torch.randn(d, generator=g) * 0.5,  # down_bias (d,)
        torch.randn(h, d, generator=g) / d**0.5,  # up_weight (h, d)
        torch.randn(h, generator=g) * 0.5,  # up_bias (h,)
    ]
    return [x.to(device=device, dtype=torch.float64) for x in t]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lead,h,d", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_and_all_grads_match_float64(dtype, lead, h, d, seed, check_against_f64):
    torch.manual_seed(seed)
    inputs = make_inputs(lead, h, d, seed)
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device=DEVICE)
    out, grads = run(kernels.bottleneck_adapter, inputs, dtype, grad_out, impl="triton")
    low, low_grads = run(bottleneck_adapter_ref, inputs, dtype, grad_out)
    ref, ref_grads = run(bottleneck_adapter_ref, inputs, torch.float64, grad_out)
    assert out.dtype == dtype
    check_against_f64("output", out, low, ref, dtype)
    for name, g, lg, rg in zip(NAMES, grads, low_grads, ref_grads):
        assert g.dtype == dtype, name
        check_against_f64(f"grad {name}", g, lg, rg, dtype)


def test_stack_matches_float64(check_against_f64):
    torch.manual_seed(0)
    dtype, lead, h = torch.float32, (2, 7), 40
    la = make_inputs(lead, h, 20, seed=1)
    ta = make_inputs(lead, h, 6, seed=2)[2:]
    inputs = la + ta  # hidden, residual, language adapter (d=20), task adapter (d=6)
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device=DEVICE)
    out, grads = run(kernels.stacked_bottleneck, inputs, dtype, grad_out, impl="triton")
    low, low_grads = run(stacked_bottleneck_ref, inputs, dtype, grad_out)
    ref, ref_grads = run(stacked_bottleneck_ref, inputs, torch.float64, grad_out)
    check_against_f64("output", out, low, ref, dtype)
    for i, (g, lg, rg) in enumerate(zip(grads, low_grads, ref_grads)):
        check_against_f64(f"grad {i}", g, lg, rg, dtype)


def test_non_contiguous_inputs():
    torch.manual_seed(3)
    h, d = 40, 6
    hidden = torch.randn(9, 3, 2 * h, device=DEVICE)[:, :, ::2].transpose(0, 1)  # (3, 9, h), strided
    residual = torch.randn(h, 9, 3, device=DEVICE).permute(2, 1, 0)  # (3, 9, h), last dim not unit-stride
    down_weight = (torch.randn(h, d, device=DEVICE) / h**0.5).t()  # (d, h) as a transposed view
    up_weight = (torch.randn(h, 2 * d, device=DEVICE) / d**0.5)[:, ::2]  # (h, d), strided columns
    down_bias, up_bias = torch.randn(2 * d, device=DEVICE)[::2], torch.randn(h, device=DEVICE)
    args = [hidden, residual, down_weight, down_bias, up_weight, up_bias]
    assert not any(a.is_contiguous() for a in args[:-1])
    grad_out = torch.randn(h, 3, 9, device=DEVICE).permute(1, 2, 0)  # non-contiguous incoming grad
    out, grads = run(kernels.bottleneck_adapter, args, torch.float32, grad_out, impl="triton")
    ref, ref_grads = run(bottleneck_adapter_ref, args, torch.float32, grad_out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name, g, rg in zip(NAMES, grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("trainable", ["adapter_only", "input_only", "up_only"])
def test_partial_requires_grad(trainable):
    """Frozen base in MAD-X: weights need grads; the task phase also needs dL/dh with the
    language adapter frozen. Only what is asked for is computed, and it is right."""
    torch.manual_seed(4)
    inputs = make_inputs((5,), 24, 7, seed=4)
    flags = {
        "adapter_only": [False, False, True, True, True, True],
        "input_only": [True, True, False, False, False, False],
        "up_only": [False, False, False, False, True, True],
    }[trainable]
    results = []
    for impl in ("triton", "reference"):
        leaves = [x.float().requires_grad_(f) for x, f in zip(inputs, flags)]
        out = kernels.bottleneck_adapter(*leaves, impl=impl)
        out.pow(2).sum().backward()
        results.append([x.grad for x in leaves])
    for name, g, rg in zip(NAMES, *results):
        assert (g is None) == (rg is None), name
        if g is not None:
            torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5)


def test_residual_in_wider_dtype_promotes_like_the_reference():
    torch.manual_seed(6)
    inputs = [x.to(torch.bfloat16) for x in make_inputs((2, 3), 24, 8, seed=6)]
    inputs[1] = inputs[1].float()  # fp32 residual stream, bf16 adapter
    out = kernels.bottleneck_adapter(*inputs, impl="triton")
    ref = bottleneck_adapter_ref(*inputs)
    assert out.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)


def test_autocast_matches_the_reference_under_autocast(check_against_f64):
    """fp32 parameters and residual stream, bf16 GEMMs: the dtypes and values autocast gives F.linear."""
    torch.manual_seed(8)
    inputs = make_inputs((3, 5), 40, 12, seed=8)
    grad_out = torch.randn(3, 5, 40, dtype=torch.float64, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        out, grads = run(kernels.bottleneck_adapter, inputs, torch.float32, grad_out, impl="triton")
        low, low_grads = run(bottleneck_adapter_ref, inputs, torch.float32, grad_out)
    ref64, ref64_grads = run(bottleneck_adapter_ref, inputs, torch.float64, grad_out)
    assert out.dtype == low.dtype == torch.float32
    check_against_f64("output", out, low, ref64, torch.bfloat16)
    for name, g, lg, rg in zip(NAMES, grads, low_grads, ref64_grads):
        assert g.dtype == lg.dtype == torch.float32, name
        check_against_f64(f"grad {name}", g, lg, rg, torch.bfloat16)


def test_empty_batch():
    inputs = [x.float().requires_grad_() for x in make_inputs((0, 4), 24, 8, seed=7)]
    out = kernels.bottleneck_adapter(*inputs, impl="triton")
    assert out.shape == (0, 4, 24)
    out.sum().backward()
    assert inputs[2].grad is not None and torch.count_nonzero(inputs[2].grad) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("h,d", [(768, 384), (768, 48), (1024, 384)])
def test_cuda_real_shapes(h, d, dtype, check_against_f64):
    """MAD-X's shapes: XLM-R base/large, language adapter d=384, task adapter d=48."""
    torch.manual_seed(0)
    lead = (8, 256)
    inputs = make_inputs(lead, h, d, seed=0, device="cuda")
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device="cuda")
    out, grads = run(kernels.bottleneck_adapter, inputs, dtype, grad_out, impl="triton")
    low, low_grads = run(bottleneck_adapter_ref, inputs, dtype, grad_out)
    ref, ref_grads = run(bottleneck_adapter_ref, inputs, torch.float64, grad_out)
    check_against_f64("output", out, low, ref, dtype)
    for name, g, lg, rg in zip(NAMES, grads, low_grads, ref_grads):
        check_against_f64(f"grad {name}", g, lg, rg, dtype)
