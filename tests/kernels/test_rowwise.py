"""The row-wise Triton kernels on their own, against torch: every flag, several programs
reducing into partial sums, strided and in-place outputs, and torch's rounding of bf16 stores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from .conftest import DEVICE

pytestmark = pytest.mark.usefixtures("needs_triton")


@pytest.fixture
def rowwise():
    from madx.kernels import triton_rowwise

    return triton_rowwise


@pytest.fixture
def small_blocks(monkeypatch, rowwise):
    """Four-row blocks spread over three programs, so the partial column sums really combine."""
    blocks = rowwise._blocks
    monkeypatch.setattr(rowwise, "_blocks", lambda M, N: (4, *blocks(M, N)[1:]))
    monkeypatch.setattr(rowwise, "_programs", lambda n_blocks, device: min(n_blocks, 3))


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE).to(dtype)


@pytest.mark.parametrize("relu", [False, True])
def test_rows_forward_bias_alpha_residuals(rowwise, relu):
    y, bias, r1, r2 = randn(11, 13), randn(13), randn(11, 13), randn(11, 13)
    out, saved, mean, rstd = rowwise.rows_forward(y, bias, relu=relu, alpha=-1.0, residuals=(r1, r2))
    act = torch.relu if relu else (lambda t: t)
    torch.testing.assert_close(out, -act(y + bias) + r1 + r2)
    assert saved is None and mean is None and rstd is None


@pytest.mark.parametrize("affine", [True, False])
def test_rows_forward_layer_norm_saves_its_input_and_statistics(rowwise, affine):
    y, bias, r = randn(9, 24), randn(24), randn(9, 24)
    w, b = (randn(24), randn(24)) if affine else (None, None)
    out, saved, mean, rstd = rowwise.rows_forward(
        y, bias, residuals=(r,), ln=(w, b, 1e-5), save_dtype=torch.bfloat16)
    s = y + bias + r
    torch.testing.assert_close(out, F.layer_norm(s, (24,), w, b, 1e-5), rtol=1e-5, atol=1e-5)
    assert saved.dtype == torch.bfloat16
    assert torch.equal(saved, s.to(torch.bfloat16)), "bf16 is stored rounded to nearest, as torch rounds"
    torch.testing.assert_close(mean, s.mean(1))
    torch.testing.assert_close(rstd, torch.rsqrt(s.var(1, unbiased=False) + 1e-5))


def test_bias_relu_in_place_and_strided_output(rowwise):
    a, bias = randn(7, 5), randn(5)
    expected = torch.relu(a + bias)
    assert rowwise.bias_relu_(a, bias) is a
    torch.testing.assert_close(a, expected)
    wide = torch.zeros(7, 12, device=DEVICE)
    y, r = randn(7, 6), randn(7, 6)[:, :]
    rowwise.rows_forward(y, None, residuals=(r,), out=wide[:, 6:])
    torch.testing.assert_close(wide[:, 6:], y + r)
    assert torch.count_nonzero(wide[:, :6]) == 0


@pytest.mark.parametrize("affine", [True, False])
def test_ln_backward_matches_autograd_and_sums_across_programs(rowwise, small_blocks, affine):
    s = randn(23, 24, dtype=torch.float64).float().requires_grad_()
    w = randn(24).requires_grad_() if affine else None
    b = randn(24).requires_grad_() if affine else None
    out = F.layer_norm(s, (24,), w, b, 1e-5)
    g = randn(23, 24)
    grads = torch.autograd.grad(out, [t for t in (s, w, b) if t is not None], g)
    _, saved, mean, rstd = rowwise.rows_forward(s.detach(), ln=(w, b, 1e-5), save_dtype=torch.float32)
    (ds32, ds16), dw, db, dsum = rowwise.ln_backward(
        g, saved, None if w is None else w.detach(), mean, rstd, (torch.float32, torch.bfloat16),
        need_weight=affine, need_bias=affine, need_sum=True)
    torch.testing.assert_close(ds32, grads[0], rtol=1e-5, atol=1e-5)
    assert ds16.dtype == torch.bfloat16 and torch.equal(ds16, ds32.to(torch.bfloat16))
    torch.testing.assert_close(dsum, grads[0].sum(0), rtol=1e-5, atol=1e-5)
    if affine:
        torch.testing.assert_close(dw, grads[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(db, grads[2], rtol=1e-5, atol=1e-5)
    else:
        assert dw is None and db is None


def test_grad_rows_mask_alpha_add_and_sums_across_programs(rowwise, small_blocks):
    g, z, a = randn(19, 10), randn(19, 10), randn(19, 10)
    masked = -2.0 * g * (z > 0)
    out, total = rowwise.grad_rows(g.clone(), mask=z, alpha=-2.0, add=a, need_sum=True)
    torch.testing.assert_close(out, masked + a)
    torch.testing.assert_close(total, masked.sum(0))
    inplace = g.clone()
    out, total = rowwise.grad_rows(inplace, mask=z, out=inplace)
    assert out is inplace and total is None
    torch.testing.assert_close(inplace, g * (z > 0))
    out, total = rowwise.grad_rows(g, store=False, need_sum=True)
    assert out is None
    torch.testing.assert_close(total, g.sum(0))


def test_empty_and_too_wide_rows(rowwise):
    out, _, mean, _ = rowwise.rows_forward(randn(0, 8), randn(8), ln=(None, None, 1e-5))
    assert out.shape == (0, 8) and mean.shape == (0,)
    _, total = rowwise.grad_rows(randn(0, 8), need_sum=True)
    assert torch.equal(total, torch.zeros(8, device=DEVICE))
    with pytest.raises(ValueError, match="limit"):
        rowwise.rows_forward(randn(1, rowwise.MAX_COLUMNS + 1))


# Compiles each kernel for an sm_90 target with no GPU present (Triton's frontend, its GPU passes
# and ptxas): what the interpreter cannot check, e.g. that only compiled-mode builtins are used.
COMPILE_SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from madx.kernels import triton_rowwise as R

def compile(fn, pointers, scalars, consts, num_warps):
    sig = {**pointers, **scalars, **{k: "constexpr" for k in consts}}
    triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})

i64 = "i64"
for ln, relu, dt in [(True, False, "bf16"), (False, True, "fp32")]:
    compile(R._rows_forward_kernel,
            {p: f"*{dt}" for p in ("Y", "BIAS", "R1", "R2", "OUT", "S", "W", "B")} | {"MEAN": "*fp32", "RSTD": "*fp32"},
            {"M": "i32", "N": "i32", "alpha": "fp32", "eps": "fp32"} | {s: i64 for s in ("stride_y", "stride_r1", "stride_r2", "stride_out", "stride_s")},
            dict(HAS_BIAS=True, RELU=relu, HAS_R1=ln, HAS_R2=ln, LN=ln, HAS_W=ln, HAS_B=ln, STORE_S=ln, BLOCK_M=2, BLOCK_N=1024), 8)
for flag in (True, False):
    compile(R._ln_backward_kernel,
            {"DOUT": "*bf16", "S": "*fp32", "W": "*bf16", "DS1": "*fp32", "DS2": "*bf16"} | {p: "*fp32" for p in ("MEAN", "RSTD", "DW", "DB", "DSUM")},
            {"M": "i32", "N": "i32", "n_blocks": "i32"} | {s: i64 for s in ("stride_dout", "stride_s", "stride_ds1", "stride_ds2")},
            dict(HAS_W=flag, STORE_DS1=True, STORE_DS2=flag, NEED_DW=flag, NEED_DB=flag, NEED_DSUM=True, BLOCK_M=2, BLOCK_N=1024), 8)
    compile(R._grad_rows_kernel,
            {"G": "*bf16", "Z": "*bf16", "A": "*fp32", "OUT": "*bf16", "PART": "*fp32"},
            {"M": "i32", "N": "i32", "n_blocks": "i32", "alpha": "fp32"} | {s: i64 for s in ("stride_g", "stride_z", "stride_a", "stride_out")},
            dict(HAS_MASK=flag, HAS_ADD=not flag, STORE_OUT=True, NEED_SUM=True, BLOCK_M=32, BLOCK_N=64), 8)
print("compiled")
"""


def test_kernels_compile_for_a_cuda_target(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0 and ("ptxas" in proc.stderr and "not found" in proc.stderr.lower()
                                 or "No module named 'triton.backends.nvidia'" in proc.stderr):
        pytest.skip("this triton has no CUDA backend to compile with")
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-3000:]
