"""Masked-language-modelling loss with output logits computed only at masked positions.

HF's ``*ForMaskedLM`` computes vocabulary logits at every position; with XLM-R's 250k vocabulary
that projection alone costs more than the rest of the forward and backward. We run the encoder,
gather the ~15% masked positions, and apply the model's own MLM head (transform + tied decoder)
to those rows only. The decoder's pre-hook (``madx.inject``) still applies the invertible
adapter's inverse, so nothing about MAD-X changes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from madx.inject.spec import get_path, spec_for_model_type

IGNORE_INDEX = -100


def masked_lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over masked positions (``labels != -100``)."""
    model = getattr(model, "module", model)  # unwrap DDP
    spec = spec_for_model_type(model.config.model_type)
    labels = batch["labels"]  # (B, T)
    hidden = model.base_model(
        input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")
    ).last_hidden_state  # (B, T, h)
    masked = labels != IGNORE_INDEX
    if not masked.any():
        return hidden.sum() * 0.0  # keeps the graph (and DDP) intact on a batch with nothing masked
    logits = get_path(model, spec.mlm_head)(hidden[masked])  # (N, V)
    return F.cross_entropy(logits.float(), labels[masked])


def full_vocabulary_mlm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The HF default (logits at every position), kept as the reference and for benchmarks."""
    return model(**batch).loss
