"""The MLM head split at its output projection, so the loss can fuse that projection.

``mlm_decoder_input(model, hidden)`` runs the model's own MLM head (transform, then, in an adapted
decoder, MAD-X's inverse invertible adapter) up to the tied output embeddings and returns the
decoder's input; ``mlm_decoder(model)`` is that ``nn.Linear`` (V, h). Then
``F.linear(mlm_decoder_input(m, x), decoder.weight, decoder.bias)`` equals the head's logits, and
a chunked cross-entropy can take the projection from there without the [rows x V] logits.

The decoder's ``forward`` is swapped, for the duration of the call, for what it does before projecting
(the identity, or an adapted decoder's ``madx_decoder_input``: the active inverse) instead of
re-writing each architecture's head transform here: the head's own code (dense, activation,
LayerNorm; whatever a new architecture does) and any pre-hook still run unchanged.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from madx.inject.spec import get_path, spec_for_model_type


def mlm_decoder(model: nn.Module) -> nn.Linear:
    model = getattr(model, "module", model)  # unwrap DDP
    decoder = get_path(model, spec_for_model_type(model.config.model_type).mlm_decoder)
    if not isinstance(decoder, nn.Linear):
        raise TypeError(f"the MLM decoder of {type(model).__name__} is a {type(decoder).__name__}, not nn.Linear")
    return decoder


def _identity(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return x


@contextlib.contextmanager
def _decoder_as_identity(decoder: nn.Module):
    # an instance attribute shadows the class's forward; hooks still run
    decoder.forward = getattr(decoder, "madx_decoder_input", _identity)
    try:
        yield
    finally:
        del decoder.forward


def mlm_decoder_input(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """(N, h) encoder output -> (N, h) input of the tied output projection."""
    model = getattr(model, "module", model)
    spec = spec_for_model_type(model.config.model_type)
    head = get_path(model, spec.mlm_head)
    with _decoder_as_identity(mlm_decoder(model)):
        return head(hidden)
