"""Fused adapter blocks in a layer (one adapter, eq. 1; Stack paper mode, eq. 2) against the
PyTorch reference and a float64 oracle, forward and every gradient."""

from __future__ import annotations

import pytest
import torch

from madx import kernels
from madx.kernels import adapter_layer_ref, stacked_adapter_layer_ref

from .conftest import DEVICE, run

pytestmark = pytest.mark.usefixtures("needs_triton")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
EPS = 1e-5
# (leading dims, hidden, bottleneck sizes): one adapter, or language + task adapter
SHAPES = [((7,), 40, (6,)), ((2, 9), 24, (17,)), ((3, 5), 40, (20, 6)), ((13,), 72, (48, 9))]
SEEDS = [0, 1]
ADAPTER = ["down_weight", "down_bias", "up_weight", "up_bias"]


def names(n_adapters):
    adapters = [f"{p}{i + 1 if n_adapters > 1 else ''}" for i in range(n_adapters) for p in ADAPTER]
    return ["normalised", "ffn_output", "attention_output", *adapters, "ln_weight", "ln_bias"]


def op(n_adapters):
    return (kernels.adapter_layer, adapter_layer_ref) if n_adapters == 1 else (
        kernels.stacked_adapter_layer, stacked_adapter_layer_ref)


def make_inputs(lead, h, ds, seed, device=DEVICE):
    """Float64 leaves of sensible scale (outputs and grads O(1)), to be cast per run; eps is apart."""
    g = torch.Generator().manual_seed(seed)
    t = [torch.randn(*lead, h, generator=g) for _ in range(3)]  # normalised, ffn_output, attention_output
    for d in ds:
        t += [
            torch.randn(d, h, generator=g) / h**0.5,  # down_weight (d, h)
            torch.randn(d, generator=g) * 0.5,  # down_bias (d,)
            torch.randn(h, d, generator=g) / d**0.5,  # up_weight (h, d)
            torch.randn(h, generator=g) * 0.5,  # up_bias (h,)
        ]
    t += [1 + 0.2 * torch.randn(h, generator=g), 0.2 * torch.randn(h, generator=g)]  # ln_weight, ln_bias
    return [x.to(device=device, dtype=torch.float64) for x in t]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lead,h,ds", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_and_all_grads_match_float64(dtype, lead, h, ds, seed, check_against_f64):
    torch.manual_seed(seed)
    inputs = make_inputs(lead, h, ds, seed)
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device=DEVICE)
    fused, ref_fn = op(len(ds))
    out, grads = run(lambda *a, **kw: fused(*a, EPS, **kw), inputs, dtype, grad_out, impl="triton")
    low, low_grads = run(lambda *a: ref_fn(*a, EPS), inputs, dtype, grad_out)
    ref, ref_grads = run(lambda *a: ref_fn(*a, EPS), inputs, torch.float64, grad_out)
    assert out.dtype == low.dtype == dtype
    check_against_f64("output", out, low, ref, dtype)
    for name, g, lg, rg in zip(names(len(ds)), grads, low_grads, ref_grads):
        assert g.dtype == dtype, name
        check_against_f64(f"grad {name}", g, lg, rg, dtype)


@pytest.mark.parametrize("n_adapters", [1, 2])
def test_reference_is_the_layer_formula_bit_for_bit(n_adapters):
    """The references are exactly what madx.inject.layer computed before it called them: each
    adapter through ``bottleneck_adapter_ref`` (the adapter module's reference), then the
    LayerNorm module on ``out + attention_output``; outputs and grads equal, not close."""
    inputs = make_inputs((2, 5), 24, (12, 3)[:n_adapters], seed=3)
    inputs = [t.float().requires_grad_() for t in inputs]
    n, r, x, *params, w, b = inputs
    ln = torch.nn.LayerNorm(24, eps=EPS)
    with torch.no_grad():
        ln.weight.copy_(w)
        ln.bias.copy_(b)
    out = n
    for i in range(n_adapters):
        out = kernels.bottleneck_adapter_ref(out, r, *params[4 * i: 4 * i + 4])
    expected = ln(out + x)
    got = op(n_adapters)[1](*inputs, EPS)
    assert torch.equal(got, expected)
    g = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, inputs, g)
    expected_grads = torch.autograd.grad(expected, [n, r, x, *params, ln.weight, ln.bias], g)
    for name, a, e in zip(names(n_adapters), got_grads, expected_grads):
        assert torch.equal(a, e), name


TRAINABLE = {  # which of (normalised, r, x, adapter 1 (4), adapter 2 (4), ln_w, ln_b) need grads
    "language phase, layer 0": [False] * 3 + [True] * 4 + [False] * 4 + [False] * 2,
    "task phase": [True] * 3 + [False] * 4 + [True] * 4 + [False] * 2,
    "task phase, layer 0": [False] * 3 + [False] * 4 + [True] * 4 + [False] * 2,
    "activations only": [True] * 3 + [False] * 10,
    "ffn output only": [False, True, False] + [False] * 10,
    "up biases and ln only": [False] * 3 + [False, False, False, True] * 2 + [True, True],
}


@pytest.mark.parametrize("n_adapters", [1, 2])
@pytest.mark.parametrize("case", list(TRAINABLE))
def test_partial_requires_grad(case, n_adapters):
    """Frozen parts get no gradient and what is asked for is right (MAD-X freezes the base, and
    the language adapter in the task phase; layer 0's inputs need no grad)."""
    torch.manual_seed(4)
    flags = TRAINABLE[case]
    if n_adapters == 1:  # the one adapter is trained where either of the stack's is
        flags = flags[:3] + [a or b for a, b in zip(flags[3:7], flags[7:11])] + flags[11:]
    inputs = make_inputs((5,), 24, (7, 5)[:n_adapters], seed=4)
    results = []
    for impl in ("triton", "reference"):
        leaves = [x.float().requires_grad_(f) for x, f in zip(inputs, flags)]
        out = op(n_adapters)[0](*leaves, EPS, impl=impl)
        out.pow(2).sum().backward()
        results.append([x.grad for x in leaves])
    for name, g, rg in zip(names(n_adapters), *results):
        assert (g is None) == (rg is None), name
        if g is not None:
            torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("n_adapters", [1, 2])
def test_autocast_matches_the_reference_under_autocast(n_adapters, check_against_f64):
    """fp32 parameters and LayerNorm, fp32 attention output, bf16 FFN output, bf16 GEMMs (a HF
    layer under autocast): the output and every grad keep the dtypes the reference gives."""
    torch.manual_seed(8)
    inputs = make_inputs((3, 5), 40, (12, 6)[:n_adapters], seed=8)
    grad_out = torch.randn(3, 5, 40, dtype=torch.float64, device=DEVICE)
    fused, ref_fn = op(n_adapters)

    def with_bf16_ffn(fn, **kw):
        return lambda n, r, *rest: fn(n, r.to(torch.bfloat16), *rest, EPS, **kw)

    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        out, grads = run(with_bf16_ffn(fused, impl="triton"), inputs, torch.float32, grad_out)
        low, low_grads = run(with_bf16_ffn(ref_fn), inputs, torch.float32, grad_out)
    ref64, ref64_grads = run(lambda *a: ref_fn(*a, EPS), inputs, torch.float64, grad_out)
    assert out.dtype == low.dtype
    check_against_f64("output", out, low, ref64, torch.bfloat16)
    for name, g, lg, rg in zip(names(n_adapters), grads, low_grads, ref64_grads):
        assert g.dtype == lg.dtype == torch.float32, name
        check_against_f64(f"grad {name}", g, lg, rg, torch.bfloat16)


@pytest.mark.parametrize("n_adapters", [1, 2])
def test_layer_norm_without_affine_and_adapters_without_bias(n_adapters):
    inputs = [t.float() for t in make_inputs((4, 3), 24, (8, 4)[:n_adapters], seed=5)]
    for i in range(n_adapters):
        inputs[4 + 4 * i] = inputs[6 + 4 * i] = None  # no down / up bias
    inputs[-2:] = [None, None]
    grad_out = torch.randn(4, 3, 24, device=DEVICE)
    tensors = [t for t in inputs if t is not None]
    results = []
    for impl in ("triton", "reference"):
        leaves = [t.clone().requires_grad_() for t in tensors]
        it = iter(leaves)
        args = [None if t is None else next(it) for t in inputs]
        out = op(n_adapters)[0](*args, EPS, impl=impl)
        results.append((out, torch.autograd.grad(out, leaves, grad_out)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for g, rg in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5)


def test_non_contiguous_and_broadcast_inputs():
    torch.manual_seed(6)
    h = 40
    inputs = [t.float() for t in make_inputs((3, 9), h, (20, 6), seed=6)]
    inputs[0] = torch.randn(9, 3, 2 * h, device=DEVICE)[:, :, ::2].transpose(0, 1)  # (3, 9, h), strided
    inputs[1] = torch.randn(h, 9, 3, device=DEVICE).permute(2, 1, 0)  # last dim not unit-stride
    inputs[2] = torch.randn(1, 9, h, device=DEVICE)  # broadcast over the batch
    inputs[3] = inputs[3].t().contiguous().t()  # column-major down weight
    grad_out = torch.randn(h, 3, 9, device=DEVICE).permute(1, 2, 0)
    out, grads = run(kernels.stacked_adapter_layer, inputs, torch.float32, grad_out, ln_eps=EPS, impl="triton")
    ref, ref_grads = run(stacked_adapter_layer_ref, inputs, torch.float32, grad_out, ln_eps=EPS)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name, g, rg in zip(names(2), grads, ref_grads):
        assert g.shape == rg.shape, name
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("n_adapters", [1, 2])
def test_no_grad_forward_and_empty_batch(n_adapters):
    inputs = [t.float() for t in make_inputs((2, 3), 24, (8, 4)[:n_adapters], seed=7)]
    with torch.no_grad():
        out = op(n_adapters)[0](*inputs, EPS, impl="triton")
    torch.testing.assert_close(out, op(n_adapters)[1](*inputs, EPS), rtol=1e-5, atol=1e-5)
    empty = [t[:0] if i < 3 else t for i, t in enumerate(inputs)]
    empty = [t.clone().requires_grad_() for t in empty]
    out = op(n_adapters)[0](*empty, EPS, impl="triton")
    assert out.shape == (0, 3, 24)
    out.sum().backward()
    assert empty[3].grad is not None and torch.count_nonzero(empty[3].grad) == 0


def test_shape_errors_name_the_shapes():
    inputs = [t.float() for t in make_inputs((4,), 24, (8,), seed=0)]
    inputs[5] = inputs[5][:, :7]  # up weight (24, 7), down weight (8, 24)
    with pytest.raises(ValueError, match=r"up_weight \(24, 7\)"):
        kernels.adapter_layer(*inputs, EPS, impl="triton")


@pytest.mark.parametrize("stack", [("en",), ("en", "ner")], ids="+".join)
def test_hooked_model_runs_the_fused_block(monkeypatch, stack):
    """MADX_KERNEL_IMPL=triton: every layer of a tiny XLM-R goes through the fused block (once per
    layer), and logits and adapter grads match the reference run."""
    import madx
    from madx import Stack, active
    from tests.conftest import randomise, tiny_batch, tiny_model

    model = tiny_model("xlm-roberta", "ner")
    madx.add_language_adapter(model, "en", invertible=False)
    madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=2)
    params = [p for name in stack for p in madx.get_store(model).get(name).parameters()]
    op = "adapter_layer" if len(stack) == 1 else "stacked_adapter_layer"
    ops = kernels._triton_ops()
    calls = []
    monkeypatch.setattr(kernels, "_triton_ops", lambda: ops._replace(
        **{op: lambda *a, **kw: calls.append(1) or getattr(ops, op)(*a, **kw)}))
    results = []
    for impl in ("reference", "triton"):
        monkeypatch.setenv(kernels.ENV_VAR, impl)
        monkeypatch.setattr(kernels, "_IMPL_SETTING", [])  # read the variable afresh
        with active(model, Stack(*stack)):
            logits = model(**tiny_batch()).logits
        results.append((logits, torch.autograd.grad(logits.pow(2).sum(), params)))
    assert len(calls) == model.config.num_hidden_layers
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    for g, rg in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("h,ds", [(768, (384,)), (768, (48,)), (768, (384, 48)), (1024, (512, 64))])
def test_cuda_real_shapes(h, ds, dtype, check_against_f64):
    """MAD-X's shapes: XLM-R base/large, language adapter d=h/2, task adapter d=h/16."""
    torch.manual_seed(0)
    lead = (8, 256)
    inputs = make_inputs(lead, h, ds, seed=0, device="cuda")
    grad_out = torch.randn(*lead, h, dtype=torch.float64, device="cuda")
    fused, ref_fn = op(len(ds))
    out, grads = run(fused, inputs, dtype, grad_out, ln_eps=EPS, impl="triton")
    low, low_grads = run(ref_fn, inputs, dtype, grad_out, ln_eps=EPS)
    ref, ref_grads = run(ref_fn, inputs, torch.float64, grad_out, ln_eps=EPS)
    check_against_f64("output", out, low, ref, dtype)
    for name, g, lg, rg in zip(names(len(ds)), grads, low_grads, ref_grads):
        check_against_f64(f"grad {name}", g, lg, rg, dtype)
