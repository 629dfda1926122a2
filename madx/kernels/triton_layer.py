"""Fused adapter blocks as they sit in a transformer layer (MAD-X eq. 1 and eq. 2), with autograd.

Twins of ``reference.adapter_layer_ref`` and ``reference.stacked_adapter_layer_ref``. With
``n`` = LN(r + x) the base layer's output, ``r`` the FFN output and ``x`` the attention output:

    one adapter (eq. 1)   out = LN(U ReLU(D n + b_D) + b_U + r + x)
    Stack, paper (eq. 2)  la  = U1 ReLU(D1 n + b1) + c1 + r
                          out = LN(U2 ReLU(D2 la + b2) + c2 + r + x)

Every GEMM is ``torch.mm`` (cuBLAS); everything between them is one pass of a
``triton_rowwise`` kernel:

    forward   z  = mm(n, D^T); bias + ReLU in place                        (M, d), kept
              y  = mm(z, U^T); s = y + b_U + r + x; out = LN(s)  one row kernel; s, mean, rstd kept
    backward  ds = LN backward of dout, with Σ ds (= d b_U), d ln_w, d ln_b in the same pass
              dU = mm(ds^T, z); dz = mm(ds, U); ReLU mask + Σ dz (= d b_D) in one pass
              dD = mm(dz^T, n); dn = mm(dz, D); dr = dx = ds             no kernel for dr, dx

The Stack's la is written in forward (the task adapter's dD2 = dz2^T la needs it) and in
backward dr = ds + dla is one pass that also sums dla (= dc1). Eager PyTorch runs the same GEMMs
with about twice the elementwise passes around them (separate bias/ReLU, adds, LayerNorm, its
backward and every bias-gradient sum). ``ctx.needs_input_grad`` skips what is frozen: in MAD-X's
task phase the language adapter and the LayerNorm are frozen, but n, r, x still need grads
wherever earlier layers hold trainable adapters.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from madx.kernels.triton_bottleneck import bias_grad, cast_operands, check_adapter_shapes, compute_dtype
from madx.kernels.triton_rowwise import bias_relu_, grad_rows, ln_backward, rows_forward


def _unique(dtypes) -> tuple[torch.dtype, ...]:
    return tuple(dict.fromkeys(dtypes))


def _ln_grads(grad_out, saved, weight, mean, rstd, want: dict[str, torch.dtype | None], need_w, need_b, need_sum):
    """LN backward with ds written once per distinct dtype wanted (name -> dtype, None: not wanted)."""
    dtypes = _unique(dt for dt in want.values() if dt is not None)
    ds, dw, db, dsum = ln_backward(grad_out, saved, weight, mean, rstd, dtypes[:2], need_w, need_b, need_sum)
    by_dtype = dict(zip(dtypes[:2], ds))
    for dt in dtypes[2:]:  # a third distinct dtype (x, r and the GEMMs all different) is a cast
        by_dtype[dt] = ds[0].to(dt)
    return {name: (None if dt is None else by_dtype[dt]) for name, dt in want.items()}, dw, db, dsum


class _AdapterLayerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, normalised, ffn_output, attention_output, down_w, down_b, up_w, up_b, ln_w, ln_b, eps, out_dtype,
                grad_enabled):
        shape, h = normalised.shape, normalised.shape[-1]
        n = normalised.reshape(-1, h)  # (M, h)
        r = ffn_output.reshape(-1, h)  # (M, h)
        x = attention_output.reshape(-1, h)  # (M, h)
        z = bias_relu_(torch.mm(n, down_w.t()), down_b)  # (M, d)
        y = torch.mm(z, up_w.t())  # (M, h)
        s_dtype = torch.promote_types(torch.promote_types(y.dtype, r.dtype), x.dtype)
        # needs_input_grad stays set under no_grad; the LN input is only written for a backward
        training = grad_enabled and any(ctx.needs_input_grad)
        out, s, mean, rstd = rows_forward(
            y, up_b, residuals=(r, x), ln=(ln_w, ln_b, eps), out_dtype=out_dtype,
            save_dtype=s_dtype if training else None,
        )
        need = ctx.needs_input_grad
        z_needed = need[0] or any(need[3:6])  # the ReLU mask for dz, and dU's operand
        ctx.save_for_backward(n if need[3] else None, z if z_needed else None, s, mean, rstd, down_w, up_w, ln_w)
        ctx.compute_dtype = z.dtype
        ctx.meta = (shape, r.dtype, x.dtype, *(None if t is None else t.dtype for t in (ln_w, ln_b)))
        return out.view(shape)

    @staticmethod
    def backward(ctx, grad_out):
        n, z, s, mean, rstd, down_w, up_w, ln_w = ctx.saved_tensors
        shape, r_dtype, x_dtype, ln_w_dtype, ln_b_dtype = ctx.meta
        need_n, need_r, need_x, need_dw, need_db, need_uw, need_ub, need_lw, need_lb = ctx.needs_input_grad[:9]
        need_dz = need_n or need_dw or need_db
        cdt = ctx.compute_dtype
        ds, d_lw, d_lb, d_ub = _ln_grads(
            grad_out.reshape(-1, shape[-1]), s, ln_w, mean, rstd,
            {"r": r_dtype if need_r else None, "x": x_dtype if need_x else None,
             "y": cdt if need_dz or need_uw else None},
            need_lw, need_lb, need_ub,
        )
        d_n = d_dw = d_db = d_uw = None
        if need_uw:
            d_uw = torch.mm(ds["y"].t(), z)  # (h, d)
        if need_dz:
            dz = torch.mm(ds["y"], up_w)  # (M, d)
            _, d_db = grad_rows(dz, mask=z, out=dz, need_sum=need_db)  # ReLU backward in place, (d,)
            if need_dw:
                d_dw = torch.mm(dz.t(), n)  # (d, h)
            if need_n:
                d_n = torch.mm(dz, down_w).view(shape)  # (..., h)
        return (
            d_n, _view(ds["r"], shape), _view(ds["x"], shape),
            d_dw, bias_grad(d_db, down_w), d_uw, bias_grad(d_ub, up_w),
            _cast(d_lw, ln_w_dtype), _cast(d_lb, ln_b_dtype), None, None, None,
        )


class _StackedAdapterLayerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, normalised, ffn_output, attention_output,
                d1_w, d1_b, u1_w, u1_b, d2_w, d2_b, u2_w, u2_b, ln_w, ln_b, eps, out_dtype, grad_enabled):
        shape, h = normalised.shape, normalised.shape[-1]
        n = normalised.reshape(-1, h)  # (M, h)
        r = ffn_output.reshape(-1, h)  # (M, h)
        x = attention_output.reshape(-1, h)  # (M, h)
        need = ctx.needs_input_grad
        cdt = n.dtype
        z1 = bias_relu_(torch.mm(n, d1_w.t()), d1_b)  # (M, d1)
        la, _, _, _ = rows_forward(torch.mm(z1, u1_w.t()), u1_b, residuals=(r,), out_dtype=cdt)  # (M, h)
        z2 = bias_relu_(torch.mm(la, d2_w.t()), d2_b)  # (M, d2)
        y2 = torch.mm(z2, u2_w.t())  # (M, h)
        s_dtype = torch.promote_types(torch.promote_types(cdt, r.dtype), x.dtype)
        out, s, mean, rstd = rows_forward(
            y2, u2_b, residuals=(r, x), ln=(ln_w, ln_b, eps), out_dtype=out_dtype,
            save_dtype=s_dtype if grad_enabled and any(need) else None,
        )
        z1_needed = need[0] or any(need[3:6])  # the language adapter's ReLU mask and dU1's operand
        ctx.save_for_backward(
            n if need[3] else None, z1 if z1_needed else None, la if need[7] else None, z2, s, mean, rstd,
            d1_w, u1_w, d2_w, u2_w, ln_w,
        )
        ctx.compute_dtype = cdt
        ctx.meta = (shape, r.dtype, x.dtype, *(None if t is None else t.dtype for t in (ln_w, ln_b)))
        return out.view(shape)

    @staticmethod
    def backward(ctx, grad_out):
        n, z1, la, z2, s, mean, rstd, d1_w, u1_w, d2_w, u2_w, ln_w = ctx.saved_tensors
        shape, r_dtype, x_dtype, ln_w_dtype, ln_b_dtype = ctx.meta
        (need_n, need_r, need_x, need_d1w, need_d1b, need_u1w, need_u1b,
         need_d2w, need_d2b, need_u2w, need_u2b, need_lw, need_lb) = ctx.needs_input_grad[:13]
        need_dz1 = need_n or need_d1w or need_d1b
        need_dla = need_dz1 or need_r or need_u1w or need_u1b  # dr = ds + dla
        need_dz2 = need_dla or need_d2w or need_d2b
        cdt = ctx.compute_dtype
        ds, d_lw, d_lb, d_u2b = _ln_grads(
            grad_out.reshape(-1, shape[-1]), s, ln_w, mean, rstd,
            {"r": r_dtype if need_r else None, "x": x_dtype if need_x else None,
             "y": cdt if need_dz2 or need_u2w else None},
            need_lw, need_lb, need_u2b,
        )
        d_n = d_r = d_d1w = d_d1b = d_u1w = d_u1b = d_d2w = d_d2b = d_u2w = None
        if need_u2w:
            d_u2w = torch.mm(ds["y"].t(), z2)  # (h, d2)
        if need_dz2:
            dz2 = torch.mm(ds["y"], u2_w)  # (M, d2)
            _, d_d2b = grad_rows(dz2, mask=z2, out=dz2, need_sum=need_d2b)  # ReLU backward in place, (d2,)
            if need_d2w:
                d_d2w = torch.mm(dz2.t(), la)  # (d2, h)
            if need_dla:
                dla = torch.mm(dz2, d2_w)  # (M, h)
                if need_r:
                    d_r, d_u1b = grad_rows(dla, add=ds["r"], out_dtype=r_dtype, need_sum=need_u1b)  # ds + dla
                elif need_u1b:
                    _, d_u1b = grad_rows(dla, store=False, need_sum=True)
                if need_u1w:
                    d_u1w = torch.mm(dla.t(), z1)  # (h, d1)
                if need_dz1:
                    dz1 = torch.mm(dla, u1_w)  # (M, d1)
                    _, d_d1b = grad_rows(dz1, mask=z1, out=dz1, need_sum=need_d1b)  # in place, (d1,)
                    if need_d1w:
                        d_d1w = torch.mm(dz1.t(), n)  # (d1, h)
                    if need_n:
                        d_n = torch.mm(dz1, d1_w).view(shape)  # (..., h)
        return (
            d_n, _view(d_r, shape), _view(ds["x"], shape),
            d_d1w, bias_grad(d_d1b, d1_w), d_u1w, bias_grad(d_u1b, u1_w),
            d_d2w, bias_grad(d_d2b, d2_w), d_u2w, bias_grad(d_u2b, u2_w),
            _cast(d_lw, ln_w_dtype), _cast(d_lb, ln_b_dtype), None, None, None,
        )


def _view(t: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    return None if t is None else t.view(shape)


def _cast(g: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor | None:
    return None if g is None or dtype is None else g.to(dtype)


@functools.lru_cache(maxsize=None)
def _layer_norm_dtype(device_type: str, autocast: tuple, s_dtype: torch.dtype, w_dtype, b_dtype) -> torch.dtype:
    """The dtype F.layer_norm returns for these input dtypes here (autocast's per-device lists decide)."""
    del autocast  # part of the cache key only
    w = None if w_dtype is None else torch.ones(2, dtype=w_dtype, device=device_type)
    b = None if b_dtype is None else torch.zeros(2, dtype=b_dtype, device=device_type)
    return F.layer_norm(torch.zeros(1, 2, dtype=s_dtype, device=device_type), (2,), w, b).dtype


def _prepare(normalised, ffn_output, attention_output, adapters, ln_weight, ln_bias, ln_eps):
    h = normalised.shape[-1]
    for i, (dw, _, uw, _) in enumerate(adapters):
        check_adapter_shapes(h, dw, uw, f" in adapter {i + 1}")
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t is not None and tuple(t.shape) != (h,):
            raise ValueError(f"{name} is {tuple(t.shape)}, want ({h},): the LayerNorm normalises the last dimension")
    shape = torch.broadcast_shapes(normalised.shape, ffn_output.shape, attention_output.shape)
    # broadcasting outside the autograd.Function, so autograd sums the grads of expanded inputs
    normalised, ffn_output, attention_output = (t.expand(shape) for t in (normalised, ffn_output, attention_output))
    cdt = compute_dtype(normalised)
    params = cast_operands(cdt, *(p for adapter in adapters for p in adapter))
    normalised = normalised.to(cdt)
    s_dtype = torch.promote_types(torch.promote_types(cdt, ffn_output.dtype), attention_output.dtype)
    dev = normalised.device.type
    autocast = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)) if dev in ("cuda", "cpu") else ()
    out_dtype = _layer_norm_dtype(
        dev, autocast, s_dtype,
        None if ln_weight is None else ln_weight.dtype, None if ln_bias is None else ln_bias.dtype,
    )
    return normalised, ffn_output, attention_output, params, float(ln_eps), out_dtype


def adapter_layer_triton(
    normalised: torch.Tensor,
    ffn_output: torch.Tensor,
    attention_output: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None,
    ln_eps: float,
) -> torch.Tensor:
    """Fused twin of ``adapter_layer_ref``: (..., h) x 3 -> (..., h)."""
    n, r, x, params, eps, out_dtype = _prepare(
        normalised, ffn_output, attention_output, [(down_weight, down_bias, up_weight, up_bias)],
        ln_weight, ln_bias, ln_eps,
    )
    return _AdapterLayerFn.apply(n, r, x, *params, ln_weight, ln_bias, eps, out_dtype, torch.is_grad_enabled())


def stacked_adapter_layer_triton(
    normalised: torch.Tensor,
    ffn_output: torch.Tensor,
    attention_output: torch.Tensor,
    down1_weight: torch.Tensor,
    down1_bias: torch.Tensor | None,
    up1_weight: torch.Tensor,
    up1_bias: torch.Tensor | None,
    down2_weight: torch.Tensor,
    down2_bias: torch.Tensor | None,
    up2_weight: torch.Tensor,
    up2_bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None,
    ln_eps: float,
) -> torch.Tensor:
    """Fused twin of ``stacked_adapter_layer_ref``: (..., h) x 3 -> (..., h)."""
    n, r, x, params, eps, out_dtype = _prepare(
        normalised, ffn_output, attention_output,
        [(down1_weight, down1_bias, up1_weight, up1_bias), (down2_weight, down2_bias, up2_weight, up2_bias)],
        ln_weight, ln_bias, ln_eps,
    )
    return _StackedAdapterLayerFn.apply(n, r, x, *params, ln_weight, ln_bias, eps, out_dtype, torch.is_grad_enabled())
