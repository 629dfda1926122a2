"""Fused NICE coupling (cuBLAS GEMMs + Triton row kernels), both directions, against the PyTorch
reference and a float64 oracle."""

from __future__ import annotations

import pytest
import torch

from madx import kernels
from madx.kernels import nice_coupling_ref

from .conftest import DEVICE, run

pytestmark = pytest.mark.usefixtures("needs_triton")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (leading dims, hidden, coupling bottleneck k): MAD-X uses k = h/4; odd halves and k exercise masks
SHAPES = [((7,), 10, 3), ((2, 9), 40, 10)]
SEEDS = [0, 1]
NAMES = ["x", "f_down_weight", "f_down_bias", "f_up_weight", "f_up_bias",
         "g_down_weight", "g_down_bias", "g_up_weight", "g_up_bias"]


def make_inputs(lead, h, k, seed, device=DEVICE):
    """Float64 x and F, G parameters of sensible scale, to be cast per run."""
    g = torch.Generator().manual_seed(seed)
    half = h // 2
    net = lambda: [  # noqa: E731
        torch.randn(k, half, generator=g) / half**0.5,  # down_weight (k, h/2)
        torch.randn(k, generator=g) * 0.5,  # down_bias (k,)
        torch.randn(half, k, generator=g) / k**0.5,  # up_weight (h/2, k)
        torch.randn(half, generator=g) * 0.5,  # up_bias (h/2,)
    ]
    t = [torch.randn(*lead, h, generator=g)] + net() + net()  # x (..., h), F, G
    return [x.to(device=device, dtype=torch.float64) for x in t]


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lead,h,k", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_and_all_grads_match_float64(dtype, lead, h, k, seed, inverse, check_against_f64):
    torch.manual_seed(seed)
    inputs = make_inputs(lead, h, k, seed)
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device=DEVICE)
    out, grads = run(kernels.nice_coupling, inputs, dtype, grad_out, inverse=inverse, impl="triton")
    low, low_grads = run(nice_coupling_ref, inputs, dtype, grad_out, inverse=inverse)
    ref, ref_grads = run(nice_coupling_ref, inputs, torch.float64, grad_out, inverse=inverse)
    assert out.dtype == dtype
    check_against_f64("output", out, low, ref, dtype)
    for name, g, lg, rg in zip(NAMES, grads, low_grads, ref_grads):
        assert g.dtype == dtype, name
        check_against_f64(f"grad {name}", g, lg, rg, dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)], ids=str)
def test_inverse_undoes_forward(dtype, tol):
    torch.manual_seed(2)
    inputs = [t.to(dtype) for t in make_inputs((3, 5), 40, 10, seed=2)]
    x, params = inputs[0], inputs[1:]
    y = kernels.nice_coupling(x, *params, impl="triton")
    assert not torch.allclose(y, x)  # the coupling is not the identity with random weights
    torch.testing.assert_close(kernels.nice_coupling(y, *params, inverse=True, impl="triton"), x, rtol=tol, atol=tol)
    back = kernels.nice_coupling(kernels.nice_coupling(x, *params, inverse=True, impl="triton"), *params, impl="triton")
    torch.testing.assert_close(back, x, rtol=tol, atol=tol)


def test_gradient_through_forward_then_inverse_is_identity():
    """d/dx <g, inverse(forward(x))> = g, with both directions differentiated by the Triton path
    (as in MLM training: forward on the embeddings, inverse before the output projection)."""
    torch.manual_seed(3)
    inputs = make_inputs((2, 6), 40, 10, seed=3)
    x = inputs[0].float().requires_grad_()
    params = [p.float() for p in inputs[1:]]
    g = torch.randn_like(x)
    y = kernels.nice_coupling(kernels.nice_coupling(x, *params, impl="triton"), *params, inverse=True, impl="triton")
    (dx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(dx, g, rtol=1e-4, atol=1e-4)


def test_non_contiguous_input():
    torch.manual_seed(4)
    inputs = [t.float() for t in make_inputs((5, 3), 40, 10, seed=4)]
    x = torch.randn(3, 40, 5, device=DEVICE).permute(2, 0, 1)  # (5, 3, 40), last dim strided
    # column-major weights, strided biases
    args = [x] + [p.t().contiguous().t() if p.dim() == 2 else p.repeat_interleave(2)[::2] for p in inputs[1:]]
    assert not any(a.is_contiguous() for a in args)
    grad_out = torch.randn(40, 5, 3, device=DEVICE).permute(1, 2, 0)
    for inverse in (False, True):
        out, grads = run(kernels.nice_coupling, args, torch.float32, grad_out, inverse=inverse, impl="triton")
        ref, ref_grads = run(nice_coupling_ref, args, torch.float32, grad_out, inverse=inverse)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        for name, g, rg in zip(NAMES, grads, ref_grads):
            torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_frozen_input_only_parameter_grads(inverse):
    """MAD-X's embeddings are frozen: x needs no grad, F and G do."""
    torch.manual_seed(5)
    inputs = make_inputs((4, 3), 40, 10, seed=5)
    results = []
    for impl in ("triton", "reference"):
        x = inputs[0].float()
        params = [p.float().requires_grad_() for p in inputs[1:]]
        kernels.nice_coupling(x, *params, inverse=inverse, impl=impl).pow(2).sum().backward()
        results.append([p.grad for p in params])
    for name, g, rg in zip(NAMES[1:], *results):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_autocast_matches_the_reference_under_autocast(inverse, check_against_f64):
    """fp32 embeddings and parameters, bf16 GEMMs: the output stays fp32 like autocast's F.linear + x."""
    torch.manual_seed(7)
    inputs = make_inputs((3, 5), 40, 10, seed=7)
    grad_out = torch.randn(3, 5, 40, dtype=torch.float64, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        out, grads = run(kernels.nice_coupling, inputs, torch.float32, grad_out, inverse=inverse, impl="triton")
        low, low_grads = run(nice_coupling_ref, inputs, torch.float32, grad_out, inverse=inverse)
    ref64, ref64_grads = run(nice_coupling_ref, inputs, torch.float64, grad_out, inverse=inverse)
    assert out.dtype == low.dtype == torch.float32
    check_against_f64("output", out, low, ref64, torch.bfloat16)
    for name, g, lg, rg in zip(NAMES, grads, low_grads, ref64_grads):
        assert g.dtype == lg.dtype == torch.float32, name
        check_against_f64(f"grad {name}", g, lg, rg, torch.bfloat16)


def test_identity_at_init():
    """Zero up-projections (the module's init) make both directions return x exactly."""
    inputs = [t.float() for t in make_inputs((2, 3), 40, 10, seed=6)]
    for i in (3, 4, 7, 8):
        inputs[i] = torch.zeros_like(inputs[i])
    for inverse in (False, True):
        assert torch.equal(kernels.nice_coupling(*inputs, inverse=inverse, impl="triton"), inputs[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("h", [768, 1024])
def test_cuda_real_shapes(h, dtype, inverse, check_against_f64):
    """MAD-X's invertible adapter: h/2 -> h/4 -> h/2 couplings on XLM-R base/large embeddings."""
    torch.manual_seed(0)
    lead = (8, 256)
    inputs = make_inputs(lead, h, h // 4, seed=0, device="cuda")
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device="cuda")
    out, grads = run(kernels.nice_coupling, inputs, dtype, grad_out, inverse=inverse, impl="triton")
    low, low_grads = run(nice_coupling_ref, inputs, dtype, grad_out, inverse=inverse)
    ref, ref_grads = run(nice_coupling_ref, inputs, torch.float64, grad_out, inverse=inverse)
    check_against_f64("output", out, low, ref, dtype)
    for name, g, lg, rg in zip(NAMES, grads, low_grads, ref_grads):
        check_against_f64(f"grad {name}", g, lg, rg, dtype)
    x, params = inputs[0].to(dtype), [p.to(dtype) for p in inputs[1:]]
    back = kernels.nice_coupling(kernels.nice_coupling(x, *params, impl="triton"), *params, inverse=True, impl="triton")
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(back, x, rtol=tol, atol=tol)
