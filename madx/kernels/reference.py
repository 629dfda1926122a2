"""Pure-PyTorch references for the adapter ops: the oracle for every fast kernel, and the fallback.

Each function has the signature of its dispatched twin in ``madx.kernels`` (less ``impl``). They
run on any device and dtype (float64 included, which the tests use as ground truth), under
autocast, and are differentiated by autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bottleneck_adapter_ref(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
) -> torch.Tensor:
    """up(ReLU(down(hidden))) + residual (MAD-X eq. 1).

    hidden, residual: (..., h); down_weight: (d, h); down_bias: (d,); up_weight: (h, d); up_bias: (h,).
    """
    z = F.relu(F.linear(hidden, down_weight, down_bias))  # (..., d)
    return F.linear(z, up_weight, up_bias) + residual  # (..., h)


def stacked_bottleneck_ref(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down1_weight: torch.Tensor,
    down1_bias: torch.Tensor | None,
    up1_weight: torch.Tensor,
    up1_bias: torch.Tensor | None,
    down2_weight: torch.Tensor,
    down2_bias: torch.Tensor | None,
    up2_weight: torch.Tensor,
    up2_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Stack(language, task) (MAD-X eq. 2): the task adapter reads the language adapter's output,
    and both add the same residual.

    hidden, residual: (..., h); adapter 1 is (d1, h)/(h, d1), adapter 2 is (d2, h)/(h, d2).
    """
    la = bottleneck_adapter_ref(hidden, residual, down1_weight, down1_bias, up1_weight, up1_bias)  # (..., h)
    return bottleneck_adapter_ref(la, residual, down2_weight, down2_bias, up2_weight, up2_bias)  # (..., h)


def adapter_layer_ref(
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
    """One adapter as it sits in a transformer layer (MAD-X eq. 1): LN(U ReLU(D n + b_D) + b_U + r + x).

    normalised n = LN(r + x) (the base layer's output), ffn_output r, attention_output x: (..., h);
    down (d, h), up (h, d); ln_weight, ln_bias: (h,) of the layer's own output LayerNorm. The same
    ops in the same order as ``madx.inject.layer`` before it called this op (the adapter module,
    then ``layer_norm(out + attention_output)``), so its outputs are bit-identical to those.
    """
    a = bottleneck_adapter_ref(normalised, ffn_output, down_weight, down_bias, up_weight, up_bias)  # (..., h)
    return F.layer_norm(a + attention_output, (a.shape[-1],), ln_weight, ln_bias, ln_eps)  # (..., h)


def stacked_adapter_layer_ref(
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
    """Stack(language, task) in a layer, MAD-X eq. 2 ("paper" mode): both adapters add the FFN output r.

        la  = U1 ReLU(D1 n + b1) + c1 + r
        out = LN(U2 ReLU(D2 la + b2) + c2 + r + x)

    Shapes as in ``adapter_layer_ref``; adapter 1 (the language adapter) is (d1, h)/(h, d1),
    adapter 2 (the task adapter) (d2, h)/(h, d2). Bit-identical to ``madx.inject.layer``'s loop.
    """
    la = bottleneck_adapter_ref(normalised, ffn_output, down1_weight, down1_bias, up1_weight, up1_bias)  # (..., h)
    ta = bottleneck_adapter_ref(la, ffn_output, down2_weight, down2_bias, up2_weight, up2_bias)  # (..., h)
    return F.layer_norm(ta + attention_output, (ta.shape[-1],), ln_weight, ln_bias, ln_eps)  # (..., h)


def nice_coupling_ref(
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
    """NICE additive coupling (MAD-X eq. 3–5) or, with ``inverse=True``, its exact inverse (eq. 4).

    x: (..., h) with h even; F and G map h/2 -> k -> h/2 (MAD-X uses k = h/4):
    *_down_weight: (k, h/2), *_down_bias: (k,), *_up_weight: (h/2, k), *_up_bias: (h/2,).
    """

    def f(z):  # (..., h/2) -> (..., h/2)
        return F.linear(F.relu(F.linear(z, f_down_weight, f_down_bias)), f_up_weight, f_up_bias)

    def g(z):  # (..., h/2) -> (..., h/2)
        return F.linear(F.relu(F.linear(z, g_down_weight, g_down_bias)), g_up_weight, g_up_bias)

    if x.shape[-1] % 2:
        raise ValueError(f"NICE coupling splits the last dimension in halves; got size {x.shape[-1]}")
    a, b = x.chunk(2, dim=-1)  # (..., h/2) each
    if not inverse:
        o1 = f(b) + a  # e1 = a, e2 = b
        o2 = g(o1) + b
        return torch.cat([o1, o2], dim=-1)  # (..., h)
    e2 = b - g(a)  # o1 = a, o2 = b
    e1 = a - f(e2)
    return torch.cat([e1, e2], dim=-1)  # (..., h)
