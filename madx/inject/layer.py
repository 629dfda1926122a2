r"""How language and task adapters sit in one transformer layer (MAD-X §4.1–4.2, Figure 1).

Notation for one layer: ``x`` is the input of the feed-forward sub-block (the attention block's
output), ``r = dropout(dense(intermediate(x)))`` is the feed-forward output and ``LN`` is the
layer's own output LayerNorm. Without adapters the layer returns ``LN(r + x)``.

One adapter A (eq. 1): it reads the normalised hidden state and adds the FFN output ``r``::

    h   = LN(r + x)
    A   = U(ReLU(D(h))) + r
    out = LN(A + x)                      # the same LayerNorm weights, applied again

Stack(language, task), mode "paper" (eq. 2 and footnote 2, the default): the task adapter reads
the language adapter's output and adds the *same* FFN residual ``r``::

    LA  = U (ReLU(D (LN(r + x)))) + r
    TA  = U'(ReLU(D'(LA))) + r
    out = LN(TA + x)

Stack(language, task), mode "adapterhub" (AdapterHub ``adapters`` 1.x with the Pfeiffer config,
``original_ln_before=True, residual_before_ln=True``): before the next adapter it re-applies
``LN(· + x)`` and uses the previous adapter's output as the residual — the variant the paper's
footnote 2 reports as worse::

    LA  = U (ReLU(D (LN(r + x)))) + r
    TA  = U'(ReLU(D'(LN(LA + x)))) + LA
    out = LN(TA + x)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from madx import kernels
from madx.adapters.bottleneck import BottleneckAdapter


def _plain(module: Callable, cls: type) -> bool:
    """``module`` runs ``cls.forward`` and carries no hooks, so its weights can go to a fused op
    without changing what is computed."""
    return (
        isinstance(module, cls)
        and type(module).forward is cls.forward
        and not module._forward_hooks
        and not module._forward_pre_hooks
    )


def adapted_layer_output(
    adapters: Sequence[BottleneckAdapter],
    mode: str,
    normalised: torch.Tensor,
    ffn_output: torch.Tensor,
    attention_output: torch.Tensor,
    layer_norm: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``normalised`` is LN(r + x) as the base layer computed it; returns the adapted layer output.

    One adapter, or a Stack in "paper" mode, is one dispatched op (``kernels.adapter_layer`` /
    ``kernels.stacked_adapter_layer``) whose reference computes exactly the loop below.
    """
    # all tensors (B, T, h)
    if (
        (len(adapters) == 1 or (len(adapters) == 2 and mode == "paper"))
        and _plain(layer_norm, nn.LayerNorm)
        and len(layer_norm.normalized_shape) == 1
        and all(_plain(a, BottleneckAdapter) for a in adapters)
    ):
        params = [p for a in adapters for p in (a.down.weight, a.down.bias, a.up.weight, a.up.bias)]
        ln = (layer_norm.weight, layer_norm.bias, layer_norm.eps)
        op = kernels.adapter_layer if len(adapters) == 1 else kernels.stacked_adapter_layer
        return op(normalised, ffn_output, attention_output, *params, *ln)
    adapter_input, residual = normalised, ffn_output
    out = None
    for index, adapter in enumerate(adapters):
        if index > 0:
            if mode == "paper":
                adapter_input = out
            elif mode == "adapterhub":
                adapter_input, residual = layer_norm(out + attention_output), out
            else:
                raise ValueError(f"unknown stack mode {mode!r}")
        out = adapter(adapter_input, residual)
    return layer_norm(out + attention_output)
