"""Where MAD-X's adapters go in each architecture, as data.

This is the only place that knows Hugging Face attribute names. Adding an architecture is one
``ArchitectureSpec`` entry here and one row in ``tests/inject/test_contract.py``.

Paths are dotted attribute paths. ``embeddings`` and ``layers`` are relative to the model's base
model (``model.base_model``: ``roberta`` in ``XLMRobertaForMaskedLM``, the model itself in
``XLMRobertaModel``); the FFN names are relative to one layer; ``mlm_decoder`` is relative to the
top-level model with an MLM head.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchitectureSpec:
    model_types: tuple[str, ...]
    embeddings: str
    layers: str
    ffn_output: str  # the module computing LN(dropout(dense(intermediate)) + attention_output)
    ffn_dense: str
    ffn_dropout: str
    ffn_layer_norm: str
    mlm_head: str  # the MLM head module on the top-level model: hidden (N, h) -> logits (N, V)
    mlm_decoder: str  # its tied output-embedding projection (the inverse of the invertible adapter runs before it)
    task_heads: tuple[str, ...]  # attribute names of task prediction heads on the top-level model


_BERT_LIKE = dict(
    embeddings="embeddings",
    layers="encoder.layer",
    ffn_output="output",
    ffn_dense="dense",
    ffn_dropout="dropout",
    ffn_layer_norm="LayerNorm",
    task_heads=("classifier", "qa_outputs"),
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "xlm-roberta": ArchitectureSpec(model_types=("xlm-roberta", "roberta"), mlm_head="lm_head", mlm_decoder="lm_head.decoder", **_BERT_LIKE),
    "bert": ArchitectureSpec(model_types=("bert",), mlm_head="cls", mlm_decoder="cls.predictions.decoder", **_BERT_LIKE),
}


def spec_for_model_type(model_type: str) -> ArchitectureSpec:
    for spec in ARCHITECTURES.values():
        if model_type in spec.model_types:
            return spec
    known = sorted(t for spec in ARCHITECTURES.values() for t in spec.model_types)
    nearest = difflib.get_close_matches(model_type, known, n=1)
    hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
    raise ValueError(
        f"madx has no architecture entry for model_type {model_type!r}; supported: {', '.join(known)}.{hint} "
        "Add an ArchitectureSpec in madx/inject/spec.py."
    )


def get_path(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        if not hasattr(module, part):
            raise AttributeError(f"{type(root).__name__} has no submodule {path!r} (missing {part!r})")
        module = getattr(module, part)
    return module


def find_path(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return get_path(root, path)
    except AttributeError:
        return None
