"""Triton bottleneck adapter, ``up(ReLU(down(h))) + residual``, with a hand-written backward.

Twin of ``reference.bottleneck_adapter_ref`` (same signature). Two launches of
``triton_linear.fused_linear`` forward and four back, each GEMM carrying its elementwise work:

    forward    z  = ReLU(x @ D^T + b_D)        (M, d)  kept for backward; its sign is the ReLU mask
               y  = z @ U^T + b_U + r          (M, h)
    backward   dz = (dy @ U) * (z > 0)         (M, d)
               dU, db_U = dy^T @ z, sum(dy)    one pass (the bias grad is a row sum of loaded tiles)
               dD, db_D = dz^T @ x, sum(dz)    one pass
               dx = dz @ D                     (M, h)   skipped when h needs no grad
               dr = dy                         no kernel

Fusing the two forward GEMMs into one kernel would save only the (M, d) round trip of z, which
backward needs anyway; likewise ``Stack`` composes two adapters instead of a fused kernel,
because the language adapter's (M, h) output is the task adapter's input in backward (dD2 = dz2^T
@ la) and must be written either way. In MAD-X's task phase the base is frozen but h still needs
its gradient (it reaches earlier layers' adapters); ``ctx.needs_input_grad`` decides what runs.
"""

from __future__ import annotations

import torch

from madx.kernels.triton_linear import SUPPORTED_DTYPES, fused_linear


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
    z, _ = fused_linear(x, down_weight, bias=down_bias, relu=True)  # (M, d)
    y, _ = fused_linear(z, up_weight, bias=up_bias, alpha=alpha, residual=residual, out=out, out_dtype=out_dtype)
    return y, z  # (M, h), (M, d)


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
    need_down / need_up: (weight, bias) flags. ``extra_grad_x`` (M, h) is added to dx in the same
    kernel (NICE: the other path into the same half); ``grad_x_out`` is a view to write dx into.
    Returns (dx, d_down_weight, d_down_bias, d_up_weight, d_up_bias), None where not needed.
    """
    cdt = z.dtype
    gy = grad_y if grad_y.dtype == cdt else grad_y.to(cdt)  # (M, h)
    dx = dwd = dbd = dwu = dbu = None
    if need_up[0]:
        dwu, dbu = fused_linear(gy.t(), z.t(), alpha=alpha, rowsum=need_up[1], out_dtype=up_weight.dtype)  # (h, d), (h,)
    elif need_up[1]:
        dbu = gy.sum(0, dtype=torch.float32) * alpha  # (h,)
    if need_x or any(need_down):
        dz, _ = fused_linear(gy, up_weight.t(), mask=z, alpha=alpha)  # (M, d)
        if need_down[0]:
            dwd, dbd = fused_linear(dz.t(), x.t(), rowsum=need_down[1], out_dtype=down_weight.dtype)  # (d, h), (d,)
        elif need_down[1]:
            dbd = dz.sum(0, dtype=torch.float32)  # (d,)
        if need_x:
            dx, _ = fused_linear(dz, down_weight.t(), residual=extra_grad_x, out=grad_x_out)  # (M, h)
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
        return dx, dr, dwd, _bias_grad(dbd, down_weight), dwu, _bias_grad(dbu, up_weight)


def _bias_grad(g: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor | None:
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


def bottleneck_adapter_triton(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Triton twin of ``bottleneck_adapter_ref``: hidden, residual (..., h) -> (..., h)."""
    d, h = down_weight.shape
    if hidden.shape[-1] != h or tuple(up_weight.shape) != (h, d):
        raise ValueError(
            f"shape mismatch: hidden {tuple(hidden.shape)}, down_weight {tuple(down_weight.shape)}, "
            f"up_weight {tuple(up_weight.shape)} (want (..., h), (d, h), (h, d))"
        )
    if residual.shape != hidden.shape:
        shape = torch.broadcast_shapes(hidden.shape, residual.shape)
        hidden, residual = hidden.expand(shape), residual.expand(shape)
    cdt = compute_dtype(hidden)
    hidden, down_weight, down_bias, up_weight, up_bias = cast_operands(
        cdt, hidden, down_weight, down_bias, up_weight, up_bias
    )
    return _BottleneckAdapterFn.apply(hidden, residual, down_weight, down_bias, up_weight, up_bias)
