"""Fused NICE coupling (MAD-X eq. 3–5), forward and inverse, both with autograd.

Twin of ``reference.nice_coupling_ref`` (same signature). Every GEMM is ``torch.mm`` (cuBLAS);
bias + ReLU after the down GEMMs and bias + sign + the coupling add after the up GEMMs are Triton
row kernels (``triton_rowwise``), as are the ReLU backward and the down biases' grads. Both
directions are two coupling steps of one shape, each a bottleneck adapter with a sign:

    y1 = alpha * P(a1) + r1        forward (alpha=+1): P=F, a1=e2, r1=e1, y1=o1 -> out[:, :h/2]
    y2 = alpha * Q(y1) + r2                            Q=G, r2=e2,        y2=o2 -> out[:, h/2:]
                                   inverse (alpha=-1): P=G, a1=o1, r1=o2, y1=e2 -> out[:, h/2:]
                                                       Q=F, r2=o1,        y2=e1 -> out[:, :h/2]

so each step is ``triton_bottleneck.adapter_forward`` (down GEMM, bias + ReLU; up GEMM, bias +
sign + residual), reading the halves of x as strided views and writing straight into the halves
of the output: no chunk, no cat (under autocast the GEMM operands are cast copies, while the
residuals and the output keep x's dtype, as with autocast's F.linear + x). Backward runs the
steps in reverse; the two gradient paths into a half meet in the dx GEMM (addmm, beta = 1):

    dy1 = g[y1 slot] + alpha * dQ_in(g[y2 slot])   -> grad[r1 slot]
    grad[a1 slot] = alpha * dP_in(dy1) + g[y2 slot]

This replaces the earlier version whose GEMMs were hand-written Triton (0.48x the reference on
an H200, reports/perf/h200.md); the signature is unchanged.
"""

from __future__ import annotations

import torch

from madx.kernels.triton_bottleneck import adapter_backward, adapter_forward, bias_grad, cast_operands, compute_dtype


def _slots(h2: int, inverse: bool) -> tuple[slice, slice]:
    lo, hi = slice(0, h2), slice(h2, 2 * h2)
    return (hi, lo) if inverse else (lo, hi)  # (slot of r1 and y1, slot of a1/r2 and y2)


class _NiceCouplingFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f_dw, f_db, f_uw, f_ub, g_dw, g_db, g_uw, g_ub, inverse):
        h = x.shape[-1]
        first, second = _slots(h // 2, inverse)
        alpha = -1.0 if inverse else 1.0
        p, q = ((g_dw, g_db, g_uw, g_ub), (f_dw, f_db, f_uw, f_ub)) if inverse else (
            (f_dw, f_db, f_uw, f_ub), (g_dw, g_db, g_uw, g_ub))
        cdt = f_dw.dtype  # the GEMMs' dtype; x keeps its own as the residual (autocast: fp32 stream)
        x2 = x.reshape(-1, h)  # (M, h)
        out = torch.empty(x2.shape, device=x.device, dtype=torch.promote_types(cdt, x.dtype))  # (M, h)
        a1 = x2[:, second].to(cdt)  # (M, h/2), a copy only under autocast
        y1, zp = adapter_forward(a1, x2[:, first], *p, alpha=alpha, out=out[:, first])  # (M, h/2), (M, k)
        y1 = y1.to(cdt)
        _, zq = adapter_forward(y1, x2[:, second], *q, alpha=alpha, out=out[:, second])  # (M, h/2), (M, k)
        ctx.save_for_backward(a1, y1, zp, zq, p[0], p[2], q[0], q[2])
        ctx.inverse = inverse
        ctx.x_meta = (x.shape, x.dtype)
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, grad_out):
        a1, y1, zp, zq, p_dw, p_uw, q_dw, q_uw = ctx.saved_tensors
        inverse, alpha = ctx.inverse, (-1.0 if ctx.inverse else 1.0)
        x_shape, x_dtype = ctx.x_meta
        h = x_shape[-1]
        first, second = _slots(h // 2, inverse)
        need = ctx.needs_input_grad  # x, F (dw, db, uw, ub), G (dw, db, uw, ub), inverse
        need_f, need_g = need[1:5], need[5:9]
        need_p, need_q = (need_g, need_f) if inverse else (need_f, need_g)
        need_y1 = need[0] or any(need_p)  # dy1 feeds P's grads as well as x's

        g = grad_out.reshape(-1, h)  # (M, h)
        grad_x = torch.empty(g.shape, device=g.device, dtype=x_dtype)  # (M, h)
        # step 2: y2 = alpha * Q(y1) + r2; dy1 = g[y1] + alpha * dQ_in, written to r1's slot
        dy1, q_dw_g, q_db_g, q_uw_g, q_ub_g = adapter_backward(
            g[:, second], y1, zq, q_dw, q_uw, alpha,
            need_x=need_y1, need_down=need_q[0:2], need_up=need_q[2:4],
            extra_grad_x=g[:, first], grad_x_out=grad_x[:, first],
        )
        # step 1: y1 = alpha * P(a1) + r1; grad of a1's slot = alpha * dP_in + g[y2] (r2 = a1)
        p_dw_g = p_db_g = p_uw_g = p_ub_g = None
        if need_y1:
            _, p_dw_g, p_db_g, p_uw_g, p_ub_g = adapter_backward(
                dy1, a1, zp, p_dw, p_uw, alpha,
                need_x=need[0], need_down=need_p[0:2], need_up=need_p[2:4],
                extra_grad_x=g[:, second], grad_x_out=grad_x[:, second],
            )
        p_grads = (p_dw_g, bias_grad(p_db_g, p_dw), p_uw_g, bias_grad(p_ub_g, p_uw))
        q_grads = (q_dw_g, bias_grad(q_db_g, q_dw), q_uw_g, bias_grad(q_ub_g, q_uw))
        f_grads, g_grads = (q_grads, p_grads) if inverse else (p_grads, q_grads)
        dx = grad_x.view(x_shape) if need[0] else None
        return (dx, *f_grads, *g_grads, None)


def nice_coupling_triton(
    x: torch.Tensor,
    f_down_weight: torch.Tensor,
    f_down_bias: torch.Tensor | None,
    f_up_weight: torch.Tensor,
    f_up_bias: torch.Tensor | None,
    g_down_weight: torch.Tensor,
    g_down_bias: torch.Tensor | None,
    g_up_weight: torch.Tensor,
    g_up_bias: torch.Tensor | None,
    inverse: bool = False,
) -> torch.Tensor:
    """Fused twin of ``nice_coupling_ref``: x (..., h) -> (..., h), forward or inverse."""
    h = x.shape[-1]
    if h % 2:
        raise ValueError(f"NICE coupling splits the last dimension in halves; got size {h}")
    for name, w, want_in in (("f_down", f_down_weight, h // 2), ("g_down", g_down_weight, h // 2)):
        if w.shape[-1] != want_in:
            raise ValueError(f"{name}_weight is {tuple(w.shape)}, want (k, {want_in}) for hidden size {h}")
    for name, w, dw in (("f_up", f_up_weight, f_down_weight), ("g_up", g_up_weight, g_down_weight)):
        if tuple(w.shape) != (h // 2, dw.shape[0]):
            raise ValueError(f"{name}_weight is {tuple(w.shape)}, want ({h // 2}, {dw.shape[0]})")
    # only the parameters are cast here: x is also the residual, which keeps its dtype
    weights = cast_operands(
        compute_dtype(x), f_down_weight, f_down_bias, f_up_weight, f_up_bias,
        g_down_weight, g_down_bias, g_up_weight, g_up_bias,
    )
    return _NiceCouplingFn.apply(x, *weights, bool(inverse))
