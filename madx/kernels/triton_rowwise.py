"""The memory-bound work around the adapters' GEMMs, as three row-wise Triton kernels.

The GEMMs themselves stay on cuBLAS (``torch.mm``): hand-written Triton GEMMs measured 2-5x slower
in backward on an H200 (reports/perf/h200.md). What is left to fuse is every elementwise pass and
reduction eager PyTorch runs as separate kernels between them:

    rows_forward    out = alpha * (y + bias) [ReLU] + r1 + r2, then optionally LayerNorm(out)
                    (bias + ReLU after a down GEMM; bias + residuals (+ LN) after an up GEMM)
    ln_backward     ds = LayerNorm backward, with the column sums for the LN weight and bias and
                    for the up-projection's bias (which is Σ ds) gathered in the same pass
    grad_rows       o = alpha * g [* (z > 0)] [+ a], with Σ over rows of the masked g
                    (ReLU backward + the down bias's grad; or a residual's two grads meeting)

Row-wise: one program owns whole rows (BLOCK_N = next power of two >= the row), so LayerNorm's
statistics need no second pass. The backward kernels reduce over rows into per-program partial
column sums (flash-attention's ``ops/triton/layer_norm.py`` does the same for dw/db), summed by
torch afterwards. Everything is computed in fp32 and stored in the output's dtype.

The kernels call only triton.language builtins: the standard library's jit helpers (tl.sum,
tl.zeros, tl.cdiv) are compiled-only when something imported triton before TRITON_INTERPRET=1
was set, and the interpreter cannot call them; ``tl.reduce`` with the standard sum combiner is a
builtin that the interpreter maps to numpy.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

# triton.jit decides at decoration time whether a kernel is compiled or interpreted.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_COLUMNS = 16384  # one program holds a whole row in registers


@triton.jit
def _rows_forward_kernel(
    Y, BIAS, R1, R2, OUT, S, W, B, MEAN, RSTD,
    M, N, alpha, eps,
    stride_y, stride_r1, stride_r2, stride_out, stride_s,
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, HAS_R1: tl.constexpr, HAS_R2: tl.constexpr,
    LN: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, STORE_S: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # (BM,)
    cols = tl.arange(0, BLOCK_N)  # (BN,)
    row_ok = rows < M
    col_ok = cols < N
    ok = row_ok[:, None] & col_ok[None, :]  # (BM, BN)
    v = tl.load(Y + rows[:, None] * stride_y + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v += tl.load(BIAS + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if RELU:
        v = tl.maximum(v, 0.0)
    v = v * alpha
    if HAS_R1:
        v += tl.load(R1 + rows[:, None] * stride_r1 + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_R2:
        v += tl.load(R2 + rows[:, None] * stride_r2 + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if LN:
        if STORE_S:
            tl.store(S + rows[:, None] * stride_s + cols[None, :], v, mask=ok)
        mean = tl.reduce(v, 1, tl.standard._sum_combine) / N  # (BM,)
        xbar = tl.where(ok, v - mean[:, None], 0.0)
        var = tl.reduce(xbar * xbar, 1, tl.standard._sum_combine) / N
        rstd = tl.rsqrt(var + eps)  # (BM,)
        tl.store(MEAN + rows, mean, mask=row_ok)
        tl.store(RSTD + rows, rstd, mask=row_ok)
        v = xbar * rstd[:, None]
        if HAS_W:
            v = v * tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_B:
            v += tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(OUT + rows[:, None] * stride_out + cols[None, :], v, mask=ok)


@triton.jit
def _ln_backward_kernel(
    DOUT, S, W, MEAN, RSTD, DS1, DS2, DW, DB, DSUM,
    M, N, n_blocks,
    stride_dout, stride_s, stride_ds1, stride_ds2,
    HAS_W: tl.constexpr, STORE_DS1: tl.constexpr, STORE_DS2: tl.constexpr,
    NEED_DW: tl.constexpr, NEED_DB: tl.constexpr, NEED_DSUM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < N
    if HAS_W:
        w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)  # (BN,)
    dw = tl.full((BLOCK_N,), 0.0, tl.float32)
    db = tl.full((BLOCK_N,), 0.0, tl.float32)
    dsum = tl.full((BLOCK_N,), 0.0, tl.float32)
    for block in range(pid, n_blocks, tl.num_programs(0)):
        rows = (block * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # (BM,)
        row_ok = rows < M
        ok = row_ok[:, None] & col_ok[None, :]
        dy = tl.load(DOUT + rows[:, None] * stride_dout + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        s = tl.load(S + rows[:, None] * stride_s + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + rows, mask=row_ok, other=0.0)
        rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)
        xhat = tl.where(ok, (s - mean[:, None]) * rstd[:, None], 0.0)  # (BM, BN)
        wdy = dy
        if HAS_W:
            wdy = dy * w[None, :]
        c1 = tl.reduce(xhat * wdy, 1, tl.standard._sum_combine) / N  # (BM,)
        c2 = tl.reduce(wdy, 1, tl.standard._sum_combine) / N
        ds = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]  # (BM, BN); 0 in masked rows
        if STORE_DS1:
            tl.store(DS1 + rows[:, None] * stride_ds1 + cols[None, :], ds, mask=ok)
        if STORE_DS2:
            tl.store(DS2 + rows[:, None] * stride_ds2 + cols[None, :], ds, mask=ok)
        if NEED_DW:
            dw += tl.reduce(dy * xhat, 0, tl.standard._sum_combine)
        if NEED_DB:
            db += tl.reduce(dy, 0, tl.standard._sum_combine)
        if NEED_DSUM:
            dsum += tl.reduce(ds, 0, tl.standard._sum_combine)
    if NEED_DW:
        tl.store(DW + pid * N + cols, dw, mask=col_ok)
    if NEED_DB:
        tl.store(DB + pid * N + cols, db, mask=col_ok)
    if NEED_DSUM:
        tl.store(DSUM + pid * N + cols, dsum, mask=col_ok)


@triton.jit
def _grad_rows_kernel(
    G, Z, A, OUT, PART,
    M, N, n_blocks, alpha,
    stride_g, stride_z, stride_a, stride_out,
    HAS_MASK: tl.constexpr, HAS_ADD: tl.constexpr, STORE_OUT: tl.constexpr, NEED_SUM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < N
    acc = tl.full((BLOCK_N,), 0.0, tl.float32)
    for block in range(pid, n_blocks, tl.num_programs(0)):
        rows = (block * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        ok = (rows < M)[:, None] & col_ok[None, :]
        g = tl.load(G + rows[:, None] * stride_g + cols[None, :], mask=ok, other=0.0).to(tl.float32) * alpha
        if HAS_MASK:
            z = tl.load(Z + rows[:, None] * stride_z + cols[None, :], mask=ok, other=0.0)
            g = tl.where(z > 0, g, 0.0)
        if NEED_SUM:
            acc += tl.reduce(g, 0, tl.standard._sum_combine)
        if HAS_ADD:
            g += tl.load(A + rows[:, None] * stride_a + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        if STORE_OUT:
            tl.store(OUT + rows[:, None] * stride_out + cols[None, :], g, mask=ok)
    if NEED_SUM:
        tl.store(PART + pid * N + cols, acc, mask=col_ok)


def _check_rows(name: str, t: torch.Tensor, M: int, N: int) -> torch.Tensor:
    """A (M, N) operand addressed by row stride: unit column stride, else a contiguous copy."""
    if tuple(t.shape) != (M, N):
        raise ValueError(f"{name} is {tuple(t.shape)}, want ({M}, {N})")
    if t.device.type != "cuda" and not INTERPRET:
        raise RuntimeError(
            f"Triton kernels run on CUDA tensors, got {t.device}; set TRITON_INTERPRET=1 before importing "
            "madx.kernels' Triton modules to run them on CPU through the interpreter"
        )
    return t if t.stride(-1) == 1 or M == 0 else t.contiguous()


@functools.lru_cache(maxsize=4096)
def _blocks(M: int, N: int) -> tuple[int, int, int]:
    if N > MAX_COLUMNS:
        raise ValueError(f"rows of {N} columns exceed the row-wise kernels' limit of {MAX_COLUMNS}")
    block_n = triton.next_power_of_2(max(N, 1))
    # 2K values per program, 8 per thread: no spills and 24-64 resident warps per SM (ptxas for
    # sm_90 at h = 768: 48-78 registers). Under the interpreter, whose cost is per op, big tiles.
    block_m = max(1, min(64 if not INTERPRET else 256, (2048 if not INTERPRET else 65536) // block_n))
    block_m = min(block_m, triton.next_power_of_2(max(M, 1)))
    num_warps = max(1, min(16, block_m * block_n // 256))  # wider rows than 2K: up to 16 warps
    return block_m, block_n, num_warps


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _programs(n_blocks: int, device: torch.device) -> int:
    """Programs for the kernels that loop over row blocks and reduce over rows: a few waves."""
    if device.type != "cuda":
        return max(1, min(n_blocks, 4))
    return max(1, min(n_blocks, 4 * _multiprocessors(device)))


def _store_buffer(out: torch.Tensor) -> torch.Tensor:
    # The interpreter casts fp32 -> bf16 by truncation (the GPU rounds to nearest even), so there
    # bf16 results go through an fp32 buffer that torch rounds.
    if INTERPRET and out.dtype == torch.bfloat16:
        return torch.empty(out.shape, device=out.device, dtype=torch.float32)
    return out


def _finish(buffer: torch.Tensor, out: torch.Tensor) -> None:
    if buffer is not out:
        out.copy_(buffer)


def rows_forward(
    y: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    relu: bool = False,
    alpha: float = 1.0,
    residuals: tuple[torch.Tensor, ...] = (),
    ln: tuple[torch.Tensor | None, torch.Tensor | None, float] | None = None,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    save_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """v = alpha * act(y + bias) + Σ residuals; with ``ln=(weight, bias, eps)`` out = LayerNorm(v).

    y, residuals (at most two), out: (M, N), any row stride. ``out`` may be y itself (in place) or
    a strided view; else it is new with ``out_dtype`` (default y's). With ``ln`` and a
    ``save_dtype``, v is also returned in that dtype for the backward. Returns (out, v or None,
    mean, rstd), the last two (M,) fp32 or None.
    """
    M, N = y.shape
    bias = None if bias is None else bias.contiguous()
    if ln is not None:
        ln = tuple(t.contiguous() if isinstance(t, torch.Tensor) else t for t in ln)
    if len(residuals) > 2:
        raise ValueError("rows_forward takes at most two residuals")
    y = _check_rows("y", y, M, N)
    residuals = tuple(_check_rows("residual", r, M, N) for r in residuals)
    if out is None:
        out = torch.empty((M, N), device=y.device, dtype=out_dtype or y.dtype)
    elif out.stride(-1) != 1 and M > 0:
        raise ValueError("out must have unit column stride")
    saved = mean = rstd = None
    if ln is not None:
        mean = torch.empty((M,), device=y.device, dtype=torch.float32)
        rstd = torch.empty((M,), device=y.device, dtype=torch.float32)
        if save_dtype is not None:
            saved = torch.empty((M, N), device=y.device, dtype=save_dtype)
    if M == 0 or N == 0:
        return out, saved, mean, rstd
    block_m, block_n, num_warps = _blocks(M, N)
    o, s = _store_buffer(out), (_store_buffer(saved) if saved is not None else None)
    r1 = residuals[0] if residuals else y
    r2 = residuals[1] if len(residuals) > 1 else y
    w, b, eps = ln if ln is not None else (None, None, 0.0)
    _rows_forward_kernel[(triton.cdiv(M, block_m),)](
        y, bias if bias is not None else y, r1, r2, o, s if s is not None else o,
        w if w is not None else y, b if b is not None else y,
        mean if mean is not None else y, rstd if rstd is not None else y,
        M, N, float(alpha), float(eps),
        y.stride(0), r1.stride(0), r2.stride(0), o.stride(0), s.stride(0) if s is not None else 0,
        HAS_BIAS=bias is not None, RELU=relu, HAS_R1=len(residuals) > 0, HAS_R2=len(residuals) > 1,
        LN=ln is not None, HAS_W=w is not None, HAS_B=b is not None, STORE_S=s is not None,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )
    _finish(o, out)
    if s is not None:
        _finish(s, saved)
    return out, saved, mean, rstd


def bias_relu_(a: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """a = ReLU(a + bias) in place; a: (M, N) straight from a GEMM, bias: (N,)."""
    return rows_forward(a, None if bias is None else bias.contiguous(), relu=True, out=a)[0]


def ln_backward(
    grad_out: torch.Tensor,
    saved: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    ds_dtypes: tuple[torch.dtype, ...],
    need_weight: bool,
    need_bias: bool,
    need_sum: bool,
) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradient of out = LayerNorm(v) w.r.t. v, written in each dtype of ``ds_dtypes`` (at most two);
    grad_out, saved (v): (M, N). Returns ([ds per dtype], dweight, dbias, Σ_rows ds), sums (N,) fp32."""
    M, N = saved.shape
    grad_out = _check_rows("grad_out", grad_out, M, N)
    if len(ds_dtypes) > 2:
        raise ValueError("ln_backward writes at most two dtypes")
    dev = saved.device
    ds = [torch.empty((M, N), device=dev, dtype=dt) for dt in ds_dtypes]
    if M == 0 or N == 0:
        zeros = torch.zeros((N,), device=dev, dtype=torch.float32)
        return ds, zeros if need_weight else None, zeros if need_bias else None, zeros if need_sum else None
    block_m, block_n, num_warps = _blocks(M, N)
    n_blocks = triton.cdiv(M, block_m)
    programs = _programs(n_blocks, dev)
    needs = (need_weight, need_bias, need_sum)
    summed = torch.empty((sum(needs), programs, N), device=dev, dtype=torch.float32)  # partial column sums
    slots = iter(summed)
    parts = [next(slots) if need else None for need in needs]
    bufs = [_store_buffer(t) for t in ds]
    d1 = bufs[0] if bufs else saved
    d2 = bufs[1] if len(bufs) > 1 else saved
    dummy = mean
    _ln_backward_kernel[(programs,)](
        grad_out, saved, weight if weight is not None else dummy, mean, rstd, d1, d2,
        *(p if p is not None else dummy for p in parts),
        M, N, n_blocks,
        grad_out.stride(0), saved.stride(0), d1.stride(0), d2.stride(0),
        HAS_W=weight is not None, STORE_DS1=len(bufs) > 0, STORE_DS2=len(bufs) > 1,
        NEED_DW=need_weight, NEED_DB=need_bias, NEED_DSUM=need_sum,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )
    for b, t in zip(bufs, ds):
        _finish(b, t)
    totals = iter(summed.sum(1))  # one reduction for all three
    dw, db, dsum = (next(totals) if need else None for need in needs)
    return ds, dw, db, dsum


def grad_rows(
    g: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    alpha: float = 1.0,
    add: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    store: bool = True,
    need_sum: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """o = alpha * g * (mask > 0) + add, and Σ_rows (alpha * g * (mask > 0)) in fp32.

    g, mask, add, out: (M, N). ``out`` may be g (in place); else new with ``out_dtype`` (default
    g's). ``store=False`` only sums. Returns (o or None, the (N,) sum or None).
    """
    M, N = g.shape
    g = _check_rows("g", g, M, N)
    mask = None if mask is None else _check_rows("mask", mask, M, N)
    add = None if add is None else _check_rows("add", add, M, N)
    if store and out is None:
        out = torch.empty((M, N), device=g.device, dtype=out_dtype or g.dtype)
    elif out is not None and out.stride(-1) != 1 and M > 0:
        raise ValueError("out must have unit column stride")
    if M == 0 or N == 0:
        return out, torch.zeros((N,), device=g.device, dtype=torch.float32) if need_sum else None
    block_m, block_n, num_warps = _blocks(M, N)
    n_blocks = triton.cdiv(M, block_m)
    programs = _programs(n_blocks, g.device)
    part = torch.empty((programs, N), device=g.device, dtype=torch.float32) if need_sum else None
    o = _store_buffer(out) if store else None
    _grad_rows_kernel[(programs,)](
        g, mask if mask is not None else g, add if add is not None else g, o if o is not None else g,
        part if part is not None else g,
        M, N, n_blocks, float(alpha),
        g.stride(0), mask.stride(0) if mask is not None else 0, add.stride(0) if add is not None else 0,
        o.stride(0) if o is not None else 0,
        HAS_MASK=mask is not None, HAS_ADD=add is not None, STORE_OUT=store, NEED_SUM=need_sum,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )
    if o is not None:
        _finish(o, out)
    return out, None if part is None else part.sum(0)
