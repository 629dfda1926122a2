"""Fused bottleneck adapter, ``up(ReLU(down(h))) + residual``: GEMMs on cuBLAS, the rest in Triton.

Twin of ``reference.bottleneck_adapter_ref`` (same signature). Each GEMM is ``torch.mm`` (cuBLAS
on CUDA); the elementwise work and the bias gradients ride on ``triton_rowwise``'s kernels:

    forward    z  = ReLU(x @ D^T + b_D)        mm, then bias + ReLU in place      (M, d), kept
               y  = alpha * (z @ U^T + b_U) + r   mm, then bias + alpha + residual   (M, h)
    backward   dU = alpha * dy^T @ z,  db_U = alpha * Σ dy                         mm, sum
               dz = alpha * (dy @ U) * (z > 0), db_D = Σ dz   mm, then mask + column sum in one pass
               dD = dz^T @ x,  dx = dz @ D (+ g)                                    mm, mm (addmm)
               dr = dy                                                          no kernel

This replaces the earlier version whose GEMMs were hand-written Triton (``triton_linear.py``, now
removed: 0.21-0.29x the reference on an H200, reports/perf/h200.md); the signature is unchanged.
In MAD-X's task phase the base is frozen but h still needs its gradient (it reaches earlier layers'
adapters); ``ctx.needs_input_grad`` decides what runs.
"""

from __future__ import annotations

import torch

from madx.kernels.triton_rowwise import SUPPORTED_DTYPES, bias_relu_, grad_rows, rows_forward


def adapter_forward(
    x: torch.Tensor,
    residual: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
    alpha: float = 1.0,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = alpha * up(ReLU(down(x))) + residual on 2-D operands; returns (y, z = ReLU(down(x))).

    x, residual: (M, h) (any strides); down_weight: (d, h); up_weight: (h, d). ``out`` may be a
    strided (M, h) view to write y into (NICE writes its halves straight into one buffer).
    """
    z = bias_relu_(torch.mm(x, down_weight.t()), down_bias)  # (M, d)
    u = torch.mm(z, up_weight.t())  # (M, h)
    y, _, _, _ = rows_forward(u, up_bias, alpha=alpha, residuals=(residual,), out=out, out_dtype=out_dtype)
    return y, z  # (M, h), (M, d)


def matmul_add(a: torch.Tensor, b: torch.Tensor, add: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
    """a @ b (+ add), written into ``out`` (a possibly strided view) when given; one cuBLAS call
    (addmm) when the dtypes agree."""
    if add is None:
        if out is None:
            return torch.mm(a, b)
        if out.dtype == a.dtype:
            return torch.mm(a, b, out=out)
        return out.copy_(torch.mm(a, b))
    if out is None:
        return torch.addmm(add, a, b) if add.dtype == a.dtype else add + torch.mm(a, b)
    if add.dtype == a.dtype == out.dtype:
        return torch.addmm(add, a, b, out=out)
    return torch.add(add, torch.mm(a, b), out=out)


def adapter_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor | None,
    z: torch.Tensor,
    down_weight: torch.Tensor,
    up_weight: torch.Tensor,
    alpha: float,
    need_x: bool,
    need_down: tuple[bool, bool],
    need_up: tuple[bool, bool],
    extra_grad_x: torch.Tensor | None = None,
    grad_x_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of y = alpha * up(ReLU(down(x))) + residual, less the residual's (which is grad_y).

    grad_y: (M, h); x: (M, h) (only read for the down weight's grad); z: (M, d) from forward.
    need_down / need_up: (weight, bias) flags. ``extra_grad_x`` (M, h) is added to dx (NICE: the
    other path into the same half); ``grad_x_out`` is a view to write dx into.
    Returns (dx, d_down_weight, d_down_bias, d_up_weight, d_up_bias), None where not needed.
    """
    cdt = z.dtype
    gy = grad_y if grad_y.dtype == cdt else grad_y.to(cdt)  # (M, h)
    dx = dwd = dbd = dwu = dbu = None
    if need_up[0]:
        dwu = torch.mm(gy.t(), z)  # (h, d)
        if alpha != 1.0:
            dwu.mul_(alpha)
    if need_up[1]:
        dbu = gy.sum(0, dtype=torch.float32) * alpha  # (h,)
    if need_x or any(need_down):
        dz = torch.mm(gy, up_weight)  # (M, d)
        _, dbd = grad_rows(dz, mask=z, alpha=alpha, out=dz, need_sum=need_down[1])  # ReLU backward in place, (d,)
        if need_down[0]:
            dwd = torch.mm(dz.t(), x)  # (d, h)
        if need_x:
            dx = matmul_add(dz, down_weight, extra_grad_x, grad_x_out)  # (M, h)
    return dx, dwd, dbd, dwu, dbu


class _BottleneckAdapterFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, residual, down_weight, down_bias, up_weight, up_bias):
        h = hidden.shape[-1]
        x = hidden.reshape(-1, h)  # (M, h), a view whenever the strides allow
        r = residual.reshape(-1, h)  # (M, h)
        out_dtype = torch.promote_types(hidden.dtype, residual.dtype)
        y, z = adapter_forward(x, r, down_weight, down_bias, up_weight, up_bias, out_dtype=out_dtype)
        ctx.save_for_backward(x if ctx.needs_input_grad[2] else None, z, down_weight, up_weight)
        ctx.shapes = (hidden.shape, residual.shape, residual.dtype)
        return y.view(*hidden.shape[:-1], h)

    @staticmethod
    def backward(ctx, grad_out):
        x, z, down_weight, up_weight = ctx.saved_tensors
        hidden_shape, residual_shape, residual_dtype = ctx.shapes
        need = ctx.needs_input_grad
        gy = grad_out.reshape(-1, hidden_shape[-1])  # (M, h)
        dx, dwd, dbd, dwu, dbu = adapter_backward(
            gy, x, z, down_weight, up_weight, 1.0,
            need_x=need[0], need_down=(need[2], need[3]), need_up=(need[4], need[5]),
        )
        dr = grad_out.reshape(residual_shape).to(residual_dtype) if need[1] else None
        dx = dx.view(hidden_shape) if dx is not None else None
        return dx, dr, dwd, bias_grad(dbd, down_weight), dwu, bias_grad(dbu, up_weight)


def bias_grad(g: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor | None:
    return None if g is None else g.to(weight.dtype)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the GEMMs run in: autocast's where it is on for this device, else the input's."""
    dev = t.device.type
    if dev in ("cuda", "cpu") and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


def cast_operands(cdt: torch.dtype, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Cast to the compute dtype outside the autograd.Function, so autograd casts the grads back."""
    if cdt not in SUPPORTED_DTYPES:
        raise TypeError(f"the Triton adapter kernels support {SUPPORTED_DTYPES}, got {cdt}; use impl='reference'")
    return [None if t is None else t.to(cdt) for t in tensors]


def check_adapter_shapes(h: int, down_weight: torch.Tensor, up_weight: torch.Tensor, what: str = "") -> int:
    """The bottleneck size d of a (d, h) down / (h, d) up pair, or a ValueError naming the shapes."""
    d = down_weight.shape[0]
    if down_weight.dim() != 2 or down_weight.shape[1] != h or tuple(up_weight.shape) != (h, d):
        raise ValueError(
            f"shape mismatch{what}: hidden size {h}, down_weight {tuple(down_weight.shape)}, "
            f"up_weight {tuple(up_weight.shape)} (want (d, h), (h, d))"
        )
    return d


def bottleneck_adapter_triton(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Fused twin of ``bottleneck_adapter_ref``: hidden, residual (..., h) -> (..., h)."""
    check_adapter_shapes(hidden.shape[-1], down_weight, up_weight)
    if residual.shape != hidden.shape:
        shape = torch.broadcast_shapes(hidden.shape, residual.shape)
        hidden, residual = hidden.expand(shape), residual.expand(shape)
    cdt = compute_dtype(hidden)
    hidden, down_weight, down_bias, up_weight, up_bias = cast_operands(
        cdt, hidden, down_weight, down_bias, up_weight, up_bias
    )
    return _BottleneckAdapterFn.apply(hidden, residual, down_weight, down_bias, up_weight, up_bias)
