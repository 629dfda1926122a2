"""Linear + cross-entropy for the masked-LM loss without the [rows x vocabulary] logits in memory.

    linear_cross_entropy(hidden, weight, bias, labels, impl=None, chunk_rows=None)
        = mean over rows with labels != -100 of  CE(hidden @ weight.T + bias, labels)

``hidden``: (N, h), the MLM head's output at the masked positions (after the invertible
adapter's inverse); ``weight``: (V, h), the tied output embeddings; ``bias``: (V,); ``labels``: (N,).

Implementations:

    "reference"  F.linear then F.cross_entropy in fp32: what HF's head + loss compute. At XLM-R's
                 V = 250,002 and 2,458 masked rows (64 x 256 x 15 %) it holds the bf16 logits, their
                 fp32 copy and the fp32 log-softmax for backward at once (~6 GB).
    "chunked"    rows in chunks (Liger Kernel's fused linear cross-entropy, in PyTorch): per chunk the
                 logits are computed, turned into the loss and straight into d(logits) = softmax -
                 one-hot, which is multiplied back into d(hidden), d(weight), d(bias) at once; the
                 chunk's logits are then dropped. Backward only scales those gradients by the
                 incoming scalar. Peak extra memory: one chunk of fp32 logits plus the gradients.

The chunked GEMMs are cuBLAS GEMMs, so there is no kernel to beat: the win is memory (and the
fp32 copies the reference makes), and it is exact up to summation order. The gradient for the
weight is computed only when ``weight.requires_grad`` (full-model MLM); for language adapters the
head is frozen and only d(hidden) is formed.

Under autocast the GEMMs run in the autocast dtype, as F.linear would; the softmax is in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
IMPLEMENTATIONS = ("reference", "chunked")
CHUNK_LOGIT_BYTES = 256 * 2**20  # fp32 logits per chunk: 268 rows at V = 250,002


def linear_cross_entropy_ref(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor
) -> torch.Tensor:
    """The materialised path: (N, V) logits, then fp32 cross-entropy (mean over labels != -100)."""
    logits = F.linear(hidden, weight, bias)  # (N, V)
    return F.cross_entropy(logits.to(_softmax_dtype(logits.dtype)), labels, ignore_index=IGNORE_INDEX)


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # fp32 for 16-bit logits, float64 stays float64


def default_chunk_rows(vocab_size: int) -> int:
    return max(1, CHUNK_LOGIT_BYTES // (4 * vocab_size))


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, chunk_rows, compute_dtype):
        # hidden (N, h), weight (V, h), bias (V,) | None, labels (N,)
        n = hidden.shape[0]
        valid = labels != IGNORE_INDEX  # (N,)
        count = valid.sum()
        # Mean over valid rows; an all-ignored batch gives 0/0 = nan, as F.cross_entropy does.
        acc = _softmax_dtype(compute_dtype)
        scale = 1.0 / count.to(acc)
        x_all = hidden.to(compute_dtype)
        w = weight.to(compute_dtype)
        b = None if bias is None else bias.to(compute_dtype)
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[0], ctx.needs_input_grad[1], (
            bias is not None and ctx.needs_input_grad[2])
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_bias else None
        loss = torch.zeros((), dtype=acc, device=hidden.device)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            x = x_all[start:stop]  # (c, h)
            y = labels[start:stop]  # (c,)
            ok = valid[start:stop]
            logits = F.linear(x, w, b).to(acc)  # (c, V), the only chunk-sized buffer
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            target = logits.gather(1, y.clamp(min=0).unsqueeze(1)).squeeze(1)  # (c,)
            loss += torch.where(ok, lse - target, 0.0).sum()
            if not (need_hidden or need_weight or need_bias):
                continue
            # d(loss)/d(logits) = (softmax - onehot) / count on valid rows, 0 elsewhere; in place
            grad_logits = logits.sub_(lse.unsqueeze(1)).exp_()  # (c, V)
            grad_logits.scatter_add_(1, y.clamp(min=0).unsqueeze(1), torch.full_like(lse, -1.0).unsqueeze(1))
            grad_logits.mul_((ok.to(acc) * scale).unsqueeze(1))
            if need_bias:
                grad_bias += grad_logits.sum(0)
            grad_logits = grad_logits.to(compute_dtype)
            if need_hidden:
                grad_hidden[start:stop] = grad_logits @ w  # (c, h)
            if need_weight:
                if compute_dtype == acc:
                    grad_weight.addmm_(grad_logits.t(), x)  # (V, h)
                else:
                    grad_weight += (grad_logits.t() @ x).to(acc)  # (V, h), accumulated in fp32 across chunks
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        return loss * scale

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_loss).to(ctx.weight_dtype)
        if grad_bias is not None:
            grad_bias = (grad_bias * grad_loss).to(ctx.bias_dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def linear_cross_entropy_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Same value and gradients as ``linear_cross_entropy_ref``; see the module docstring."""
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"need hidden (N, h) and weight (V, h); got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels must be (N,) = ({hidden.shape[0]},); got {tuple(labels.shape)}")
    chunk_rows = chunk_rows or default_chunk_rows(weight.shape[0])
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        compute_dtype = torch.get_autocast_dtype(device_type)
    else:
        compute_dtype = torch.promote_types(hidden.dtype, weight.dtype)
    with torch.autocast(device_type, enabled=False):
        return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, labels, chunk_rows, compute_dtype)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    impl: str | None = None,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean CE of ``hidden @ weight.T + bias`` against ``labels``; ``impl``: "chunked" (default) or "reference"."""
    impl = impl or "chunked"
    if impl == "reference":
        return linear_cross_entropy_ref(hidden, weight, bias, labels)
    if impl == "chunked":
        return linear_cross_entropy_chunked(hidden, weight, bias, labels, chunk_rows)
    raise ValueError(f"unknown linear cross-entropy implementation {impl!r}; known: {', '.join(IMPLEMENTATIONS)}")
