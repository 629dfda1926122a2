"""One Triton GEMM with fused epilogues; every adapter kernel in madx is a launch of it.

    C[m, n] = alpha * epilogue(sum_k A[m, k] * B[n, k]) (+ R[m, n])

with the epilogue ``+ bias[n]`` -> ``ReLU`` -> ``* (mask[m, n] > 0)`` switched on per launch, and
optionally ``rowsum[m] = alpha * sum_k A[m, k]`` gathered from the A tiles the GEMM loads anyway.
A, B, C, R and mask are addressed by (row, column) strides, so a transposed operand
(``w.t()``, ``g.t()``) or a column half of a wider tensor (NICE's e1/e2) is passed as a view,
never copied. That one kernel gives, for y = alpha * U(ReLU(D x + b_D)) + b_U + r:

    forward   z  = ReLU(x @ D^T + b_D)                 A=x,  B=D          bias, ReLU
              y  = alpha * (z @ U^T + b_U) + r         A=z,  B=U          bias, alpha, residual
    backward  dz = alpha * (dy @ U) * (z > 0)          A=dy, B=U^T        mask, alpha
              dU = alpha * dy^T @ z, db_U = alpha * sum_rows(dy)          A=dy^T, B=z^T, rowsum
              dD = dz^T @ x,         db_D = sum_rows(dz)                  A=dz^T, B=x^T, rowsum
              dx = dz @ D (+ g)                        A=dz, B=D^T        residual (NICE's extra grad)

Accumulation is fp32; the fp32 x fp32 product follows ``torch.backends.cuda.matmul.allow_tf32``
(IEEE by default, like torch's own matmul). Weight-gradient launches reduce over the token
dimension, which is long while the output is small (48 x 768 for a task adapter), so they split
the reduction across a third grid axis into an fp32 workspace summed afterwards (deterministic,
no atomics).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# triton.jit decides at decoration time whether a kernel is compiled or interpreted, so the
# interpreter setting that counts is the one in force when this module was imported.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# The kernel calls only triton.language builtins, not its standard library's jit helpers
# (tl.zeros, tl.sum): those are decorated when triton is first imported, and whatever imports
# triton before TRITON_INTERPRET=1 is set (torch does, under transformers) leaves them
# compiled-only, which the interpreter cannot call. Hence tl.full for zeros, and the row sum as
# one dot with a ones block (also the fast way under the interpreter, where tl.reduce with a
# custom combine function runs element by element in Python).


@triton.jit
def _fused_linear_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr, res_ptr, mask_ptr, rowsum_ptr,
    M, N, K, k_per_split, alpha,
    stride_am, stride_ak,
    stride_bn, stride_bk,
    stride_cs, stride_cm, stride_cn,
    stride_rm, stride_rn,
    stride_xm, stride_xn,
    stride_ss,
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, HAS_MASK: tl.constexpr, HAS_RES: tl.constexpr,
    HAS_ROWSUM: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_s = tl.program_id(2)  # split of the reduction dimension

    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # (BM,)
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)  # (BN,)
    mask_m = offs_m < M
    mask_n = offs_n < N
    k_start = pid_s * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    rows = tl.full((BLOCK_M, BLOCK_K), 0.0, tl.float32)  # A summed over k-steps, reduced once at the end
    for k0 in range(k_start, k_end, BLOCK_K):
        offs_k = (k0 + tl.arange(0, BLOCK_K)).to(tl.int64)  # (BK,)
        mask_k = offs_k < k_end
        a = tl.load(
            a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
            mask=mask_m[:, None] & mask_k[None, :], other=0.0,
        )  # (BM, BK)
        b = tl.load(
            b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn,
            mask=mask_k[:, None] & mask_n[None, :], other=0.0,
        )  # (BK, BN)
        if HAS_ROWSUM:
            rows += a.to(tl.float32)
        if UPCAST:
            # The interpreter multiplies with numpy, which has no bfloat16; bf16 x bf16 products
            # are exact in fp32, so only the summation order differs from the GPU path.
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)  # (BN,)
        acc += bias[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    mask_mn = mask_m[:, None] & mask_n[None, :]
    if HAS_MASK:
        keep = tl.load(mask_ptr + offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xn, mask=mask_mn, other=0)
        acc = tl.where(keep > 0, acc, 0.0)
    acc = acc * alpha
    if HAS_RES:
        res = tl.load(res_ptr + offs_m[:, None] * stride_rm + offs_n[None, :] * stride_rn, mask=mask_mn, other=0.0)
        acc += res.to(tl.float32)
    c_ptrs = c_ptr + pid_s * stride_cs + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask_mn)
    if HAS_ROWSUM:
        # every column block loads the same A rows; the first one reports their sum
        if pid_n == 0:
            ones = tl.full((BLOCK_K, 16), 1.0, tl.float32)
            rowsum = tl.dot(rows, ones, input_precision="ieee") * alpha  # (BM, 16), equal columns
            cols = tl.arange(0, 16)
            rs_ptrs = rowsum_ptr + pid_s * stride_ss + offs_m[:, None] + cols[None, :] * 0
            tl.store(rs_ptrs, rowsum, mask=mask_m[:, None] & (cols[None, :] == 0))


def _pow2_clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(x), 1))))


def _split_k(a: torch.Tensor, grid_mn: int, K: int, block_k: int) -> int:
    """How many ways to split a long reduction so the grid fills the GPU (1 in the interpreter)."""
    if a.device.type != "cuda" or K <= 4 * block_k:
        return 1
    sms = torch.cuda.get_device_properties(a.device).multi_processor_count
    want = max(1, (2 * sms) // max(grid_mn, 1))  # about two waves of programs
    most = triton.cdiv(K, 4 * block_k)  # keep at least four k-steps per program
    return max(1, min(want, most, 64))


def fused_linear(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    relu: bool = False,
    mask: torch.Tensor | None = None,
    alpha: float = 1.0,
    residual: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    rowsum: bool = False,
    split_k: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """C = alpha * epilogue(a @ b.T) (+ residual); returns (C, rowsum of a times alpha, or None).

    a: (M, K), b: (N, K), any strides, same dtype. bias: (N,). mask, residual: (M, N).
    ``out`` (M, N) may be a strided view to write into; otherwise C is new with ``out_dtype``
    (default a.dtype). ``split_k`` None picks one; > 1 only without bias/ReLU/mask/residual.
    """
    M, K = a.shape
    N, K2 = b.shape
    if K != K2:
        raise ValueError(f"inner dimensions differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if a.dtype != b.dtype or a.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"fused_linear needs a and b of one dtype among {SUPPORTED_DTYPES}, got {a.dtype}, {b.dtype}")
    if a.device.type != "cuda" and not INTERPRET:
        raise RuntimeError(
            f"Triton kernels run on CUDA tensors, got {a.device}; set TRITON_INTERPRET=1 before importing "
            "madx.kernels' Triton modules to run them on CPU through the interpreter"
        )
    if bias is not None:
        bias = bias.contiguous()  # (N,), read with unit stride
    if out is None:
        out = torch.empty((M, N), device=a.device, dtype=out_dtype or a.dtype)
    rs = None
    if M == 0 or N == 0:
        if rowsum:
            rs = a.float().sum(1) * alpha  # (M,)
        return out, rs
    if K == 0:  # empty reduction: let torch do the epilogue on zeros
        c = torch.zeros((M, N), device=a.device, dtype=torch.float32)
        if bias is not None:
            c = c + bias.float()
        if relu:
            c = c.clamp_min(0)
        if mask is not None:
            c = c * (mask > 0)
        c = c * alpha
        if residual is not None:
            c = c + residual.float()
        out.copy_(c)
        if rowsum:
            rs = torch.zeros((M,), device=a.device, dtype=torch.float32)
        return out, rs

    block_m = _pow2_clamp(M, 16, 64)
    block_n = _pow2_clamp(N, 16, 64 if block_m == 64 else 128)
    # fewer, longer k-steps under the interpreter, whose cost is per op, not per flop
    block_k = _pow2_clamp(K, 16, 64 if a.element_size() <= 2 or INTERPRET else 32)
    grid_m, grid_n = triton.cdiv(M, block_m), triton.cdiv(N, block_n)
    epilogue = bias is not None or relu or mask is not None or residual is not None
    if split_k is None:
        split_k = 1 if epilogue else _split_k(a, grid_m * grid_n, K, block_k)
    if split_k > 1 and epilogue:
        raise ValueError("split_k > 1 is for plain products (weight gradients) only")
    k_per_split = triton.cdiv(triton.cdiv(K, split_k), block_k) * block_k
    split_k = triton.cdiv(K, k_per_split)

    # The interpreter casts fp32 -> bf16 by truncation (the GPU rounds to nearest even), so
    # there bf16 results go through an fp32 buffer that torch rounds.
    direct = split_k == 1 and not (INTERPRET and out.dtype == torch.bfloat16)
    c = out if direct else torch.empty((split_k, M, N), device=a.device, dtype=torch.float32)
    stride_cs = 0 if split_k == 1 else c.stride(0)
    stride_cm, stride_cn = c.stride()[-2:]
    if rowsum:
        rs = torch.empty((split_k, M), device=a.device, dtype=torch.float32)
    dummy = c  # pointer for absent operands; never read (its constexpr flag is off)
    res_t = residual if residual is not None else dummy
    mask_t = mask if mask is not None else dummy
    rs_t = rs if rs is not None else dummy

    precision = None  # Triton's default; it only matters for fp32 operands
    if a.dtype == torch.float32:
        precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 and not INTERPRET else "ieee"
    _fused_linear_kernel[(grid_m, grid_n, split_k)](
        a, b, c, bias if bias is not None else dummy, res_t, mask_t, rs_t,
        M, N, K, k_per_split, float(alpha),
        a.stride(0), a.stride(1),
        b.stride(0), b.stride(1),
        stride_cs, stride_cm, stride_cn,
        res_t.stride(-2) if residual is not None else 0, res_t.stride(-1) if residual is not None else 0,
        mask_t.stride(-2) if mask is not None else 0, mask_t.stride(-1) if mask is not None else 0,
        rs_t.stride(0) if rs is not None else 0,
        HAS_BIAS=bias is not None, RELU=relu, HAS_MASK=mask is not None, HAS_RES=residual is not None,
        HAS_ROWSUM=rowsum, UPCAST=INTERPRET and a.dtype != torch.float32, INPUT_PRECISION=precision,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=8 if block_m * block_n >= 64 * 128 else 4,
    )
    if not direct:
        out.copy_(c.sum(0))
    if rs is not None:
        rs = rs.sum(0)
    return out, rs
