"""Tiny random models built from configs: no downloads anywhere in the test suite."""

from __future__ import annotations

import socket

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForTokenClassification,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForTokenClassification,
)

TINY = dict(
    vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)

MODEL_CLASSES = {
    ("xlm-roberta", "mlm"): (XLMRobertaConfig, XLMRobertaForMaskedLM, dict(type_vocab_size=1, pad_token_id=1)),
    ("xlm-roberta", "ner"): (XLMRobertaConfig, XLMRobertaForTokenClassification, dict(type_vocab_size=1, pad_token_id=1, num_labels=7)),
    ("xlm-roberta", "qa"): (XLMRobertaConfig, XLMRobertaForQuestionAnswering, dict(type_vocab_size=1, pad_token_id=1)),
    ("bert", "mlm"): (BertConfig, BertForMaskedLM, dict(type_vocab_size=2, pad_token_id=0)),
    ("bert", "ner"): (BertConfig, BertForTokenClassification, dict(type_vocab_size=2, pad_token_id=0, num_labels=7)),
    ("bert", "qa"): (BertConfig, BertForQuestionAnswering, dict(type_vocab_size=2, pad_token_id=0)),
}


def tiny_model(arch: str, head: str, seed: int = 0, **overrides):
    config_class, model_class, extra = MODEL_CLASSES[(arch, head)]
    torch.manual_seed(seed)
    model = model_class(config_class(**{**TINY, **extra, **overrides}))
    return model.eval()


def tiny_batch(seed: int = 0, batch: int = 3, length: int = 11, vocab: int = 101):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, -3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def randomise(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> None:
    """Give adapters non-trivial weights (a fresh adapter is the identity by design)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


@pytest.fixture
def make_model():
    return tiny_model


def free_port() -> int:
    """A port nobody listens on now: multi-process tests give their launcher its own rendezvous port,
    so a process another test left behind on accelerate's default 29500 cannot break them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
