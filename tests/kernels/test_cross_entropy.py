"""The chunked linear cross-entropy against the materialised reference, in float64 / fp32 / bf16."""

from __future__ import annotations

import pytest
import torch

from madx.kernels.cross_entropy import (
    IGNORE_INDEX,
    default_chunk_rows,
    linear_cross_entropy,
    linear_cross_entropy_chunked,
    linear_cross_entropy_ref,
)


def _inputs(n=37, h=24, v=101, seed=0, ignored=5):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64) / h**0.5
    bias = torch.randn(v, generator=g, dtype=torch.float64)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[torch.randperm(n, generator=g)[:ignored]] = IGNORE_INDEX
    return hidden, weight, bias, labels


def _loss_and_grads(fn, hidden, weight, bias, labels, dtype, **kw):
    leaves = [t.to(dtype).requires_grad_() for t in (hidden, weight, bias)]
    loss = fn(*leaves, labels, **kw)
    grads = torch.autograd.grad(loss * 3.0, leaves)  # a non-unit upstream gradient
    return loss.detach().double(), [g.double() for g in grads]


@pytest.mark.parametrize("chunk_rows", [1, 7, 37, 100])
def test_chunked_equals_reference_in_float64(chunk_rows):
    inputs = _inputs()
    ref_loss, ref_grads = _loss_and_grads(linear_cross_entropy_ref, *inputs, torch.float64)
    loss, grads = _loss_and_grads(linear_cross_entropy_chunked, *inputs, torch.float64, chunk_rows=chunk_rows)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    for name, g, r in zip(("hidden", "weight", "bias"), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12, msg=f"d{name}")
    assert grads[0][inputs[3] == IGNORE_INDEX].abs().max() == 0, "ignored rows get no gradient"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_error_within_twice_the_reference_error(dtype):
    """flash-attention's rule: |fast - f64| <= 2 |reference(dtype) - f64| + atol."""
    inputs = _inputs(n=64, h=32, v=300, seed=1)
    exact_loss, exact_grads = _loss_and_grads(linear_cross_entropy_ref, *inputs, torch.float64)
    ref_loss, ref_grads = _loss_and_grads(linear_cross_entropy_ref, *inputs, dtype)
    loss, grads = _loss_and_grads(linear_cross_entropy_chunked, *inputs, dtype, chunk_rows=9)
    atol = {torch.float32: 1e-6, torch.bfloat16: 2e-3}[dtype]
    assert (loss - exact_loss).abs() <= 2 * (ref_loss - exact_loss).abs() + atol
    for name, g, r, e in zip(("hidden", "weight", "bias"), grads, ref_grads, exact_grads):
        scale = e.abs().max()
        assert (g - e).abs().max() <= 2 * (r - e).abs().max() + atol * scale, f"d{name} in {dtype}"


def test_chunked_under_autocast_matches_reference_under_autocast():
    hidden, weight, bias, labels = (t.float() if t.is_floating_point() else t for t in _inputs(n=40, h=32, v=257))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss, ref_grads = _loss_and_grads(linear_cross_entropy_ref, hidden, weight, bias, labels, torch.float32)
        loss, grads = _loss_and_grads(linear_cross_entropy_chunked, hidden, weight, bias, labels, torch.float32,
                                      chunk_rows=16)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-3, atol=2e-3)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == r.dtype
        torch.testing.assert_close(g, r, rtol=2e-2, atol=2e-2 * r.abs().max().item())


def test_frozen_weight_gets_no_gradient_and_costs_no_weight_gemm():
    hidden, weight, bias, labels = _inputs()
    hidden = hidden.requires_grad_()
    loss = linear_cross_entropy_chunked(hidden, weight, bias, labels, chunk_rows=8)
    (grad,) = torch.autograd.grad(loss, [hidden])
    ref = torch.autograd.grad(linear_cross_entropy_ref(hidden, weight, bias, labels), [hidden])[0]
    torch.testing.assert_close(grad, ref)


def test_no_bias_and_all_ignored():
    hidden, weight, _, labels = _inputs()
    torch.testing.assert_close(linear_cross_entropy_chunked(hidden, weight, None, labels, chunk_rows=5),
                               linear_cross_entropy_ref(hidden, weight, None, labels))
    nothing = torch.full_like(labels, IGNORE_INDEX)
    assert torch.isnan(linear_cross_entropy_chunked(hidden, weight, None, nothing))
    assert torch.isnan(linear_cross_entropy_ref(hidden, weight, None, nothing))


def test_chunk_size_bounds_the_logit_buffer():
    assert default_chunk_rows(250_002) == 268  # 268 x 250,002 fp32 logits = 256 MiB
    assert default_chunk_rows(10**12) == 1


def test_peak_memory_stays_below_the_materialised_logits():
    """CPU allocator peak of forward + backward: the chunked path never holds (N, V) logits."""
    from torch.profiler import ProfilerActivity, profile

    n, h, v = 256, 16, 20_000  # the reference's (N, V) fp32 logits: 20 MB, several copies
    hidden, weight, bias, labels = (t.float() if t.is_floating_point() else t for t in _inputs(n=n, h=h, v=v))

    def peak(fn):
        x = hidden.clone().requires_grad_()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn(x, weight, bias, labels).backward()
        live = best = 0
        events = sorted((e for e in prof.profiler.kineto_results.events() if e.device_type().name == "CPU"
                         and e.name() == "[memory]"), key=lambda e: e.start_ns())
        for e in events:
            live += e.nbytes()
            best = max(best, live)
        return best

    reference = peak(linear_cross_entropy_ref)
    chunked = peak(lambda *a: linear_cross_entropy_chunked(*a, chunk_rows=32))
    assert reference >= 2 * n * v * 4, "the reference holds at least two (N, V) fp32 buffers"
    assert chunked * 3 <= reference, (chunked, reference)


def test_unknown_impl_and_bad_shapes():
    hidden, weight, bias, labels = _inputs()
    with pytest.raises(ValueError, match="known: reference, chunked"):
        linear_cross_entropy(hidden, weight, bias, labels, impl="fused")
    with pytest.raises(ValueError, match="labels must be"):
        linear_cross_entropy_chunked(hidden, weight, bias, labels[:-1])
