"""Masked-language-modelling loss with the output projection run only at masked positions.

HF's ``*ForMaskedLM`` computes vocabulary logits at every position; with XLM-R's 250k vocabulary
that projection alone costs more than the rest of the forward and backward. We run the encoder,
gather the ~15% masked positions, and run the model's own MLM head (transform, then the
invertible adapter's inverse in the decoder's pre-hook: nothing about MAD-X changes) on those
rows only. The tied output projection and the cross-entropy are then one op
(``madx.kernels.cross_entropy``):

    loss_impl="chunked"       (default) rows in chunks, the [masked x V] logits never all in memory
    loss_impl="materialized"  the head's full logits at the masked rows, then F.cross_entropy: the
                              reference the chunked path is tested against
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from madx.inject.mlm_head import mlm_decoder, mlm_decoder_input
from madx.inject.spec import get_path, spec_for_model_type
from madx.kernels.cross_entropy import IGNORE_INDEX, linear_cross_entropy

LOSS_IMPLEMENTATIONS = ("chunked", "materialized")


def encode(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The encoder's last hidden state (B, T, h). A packed batch has no ``attention_mask``: no mask
    tensor reaches attention, so SDPA may pick its flash kernel."""
    model = getattr(model, "module", model)  # unwrap DDP
    return model.base_model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).last_hidden_state


def masked_lm_loss_from_hidden(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, loss_impl: str | None = None
) -> torch.Tensor:
    """Mean cross-entropy over positions with ``labels != -100``, given the encoder output (B, T, h)."""
    loss_impl = loss_impl or "chunked"
    if loss_impl not in LOSS_IMPLEMENTATIONS:
        raise ValueError(f"unknown MLM loss implementation {loss_impl!r}; known: {', '.join(LOSS_IMPLEMENTATIONS)}")
    model = getattr(model, "module", model)
    masked = labels != IGNORE_INDEX  # (B, T)
    if not masked.any():
        return hidden.sum() * 0.0  # keeps the graph (and DDP) intact on a batch with nothing masked
    rows, targets = hidden[masked], labels[masked]  # (N, h), (N,)
    if loss_impl == "materialized":
        logits = get_path(model, spec_for_model_type(model.config.model_type).mlm_head)(rows)  # (N, V)
        return F.cross_entropy(logits.float(), targets)
    decoder = mlm_decoder(model)
    return linear_cross_entropy(mlm_decoder_input(model, rows), decoder.weight, decoder.bias, targets, impl="chunked")


def masked_lm_loss(model: nn.Module, batch: dict[str, torch.Tensor], loss_impl: str | None = None) -> torch.Tensor:
    """Mean cross-entropy over masked positions (``labels != -100``)."""
    return masked_lm_loss_from_hidden(model, encode(model, batch), batch["labels"], loss_impl)


class MaskedLMObjective(nn.Module):
    """``objective(input_ids, labels, attention_mask=None) -> loss``: the MLM training step's forward
    as one module, so that data parallelism wraps the computation that actually runs (DDP prepares
    its gradient all-reduce in its own ``forward``; calling ``model.base_model`` past a DDP wrapper
    would skip it) and so that the encoder can be compiled without touching the model.

    ``compile=True`` compiles the encoder call (adapter hooks included: they trace without graph
    breaks) with static shapes: packed blocks give every step the same (B, T), so it compiles once.
    The masked-row gather, the head and the chunked loss stay eager: their row count changes every
    step, and their cost is cuBLAS GEMMs that compilation would not speed up. The model is not
    modified; its parameters are this module's (under ``model.``).
    """

    def __init__(self, model: nn.Module, loss_impl: str | None = None, compile: bool = False,
                 compile_backend: str = "inductor"):
        super().__init__()
        self.model = model
        self.loss_impl = loss_impl
        encoder = _Encoder(model)
        # a plain attribute, not a submodule: the compiled wrapper would register the parameters twice
        object.__setattr__(self, "_encode", torch.compile(encoder, dynamic=False, backend=compile_backend)
                           if compile else encoder)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self._encode(input_ids, attention_mask)  # (B, T, h)
        return masked_lm_loss_from_hidden(self.model, hidden, labels, self.loss_impl)


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return encode(self.model, {"input_ids": input_ids, "attention_mask": attention_mask})


def full_vocabulary_mlm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The HF default (logits at every position), kept as the reference and for benchmarks."""
    return model(**batch).loss
