"""Evaluation loops for NER, QA and MLM, sharded over processes without duplicates.

Each process predicts the examples ``rank, rank + world, …`` and the per-example results are
gathered with their indices and put back in dataset order, so every example is scored exactly
once whatever the number of processes (``accelerate``'s even-split padding never enters).
Scores are in percent (0–100), as the paper reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from madx.metrics import ner_scores, squad_scores
from madx.runtime import Runtime
from madx.tasks.mlm import masked_lm_loss
from madx.tasks.ner import NERCollator, gold_word_tags, word_level_predictions
from madx.tasks.qa import postprocess_qa_predictions

QA_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _sharded_predictions(
    model: nn.Module,
    features: Sequence[dict],
    collate: Callable[[list[dict]], dict[str, torch.Tensor]],
    predict: Callable[[nn.Module, dict[str, torch.Tensor], list[dict]], list[Any]],
    runtime: Runtime,
    batch_size: int,
) -> list[Any]:
    rank = runtime.process_index
    world = runtime.num_processes
    indices = list(range(rank, len(features), world))
    mine: list[tuple[int, Any]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            rows = [features[i] for i in chunk]
            batch = runtime.to_device(collate(rows))
            with runtime.autocast():
                outputs = predict(model, batch, rows)
            mine.extend(zip(chunk, outputs))
    gathered = runtime.gather_objects(mine)
    gathered.sort(key=lambda pair: pair[0])
    if [i for i, _ in gathered] != list(range(len(features))):
        raise RuntimeError("evaluation gathered a wrong set of examples (lost or duplicated)")
    return [output for _, output in gathered]


def evaluate_ner(
    model: nn.Module, examples, features, tokenizer, runtime: Runtime, batch_size: int = 32
) -> dict[str, Any]:
    """Entity-level micro P/R/F1 (seqeval, conlleval semantics) on word-level tags, in percent."""
    collator = NERCollator(tokenizer)

    def predict(model, batch, rows):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits  # (B, T, C)
        ids = logits.argmax(-1).cpu().numpy()
        return [ids[i, : len(row["input_ids"])] for i, row in enumerate(rows)]

    predictions = _sharded_predictions(model, features, collator, predict, runtime, batch_size)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    words, stats = word_level_predictions(predictions, features["word_ids"], features["num_words"], id2label=id2label)
    scores = ner_scores(predictions=words, references=gold_word_tags(examples))
    return {
        "f1": 100 * scores["f1"],
        "precision": 100 * scores["precision"],
        "recall": 100 * scores["recall"],
        "accuracy": 100 * scores["accuracy"],
        "n_sentences": scores["n_sentences"],
        "n_gold_entities": scores["n_gold_entities"],
        "words_without_prediction": stats.words_without_prediction,
    }


def evaluate_qa(
    model: nn.Module, examples, features, runtime: Runtime, batch_size: int = 32, n_best: int = 20, max_answer_length: int = 30
) -> dict[str, Any]:
    """SQuAD v1.1 F1 / EM (official normalisation) after the standard n-best post-processing."""

    def collate(rows):
        return {k: torch.tensor([row[k] for row in rows]) for k in QA_MODEL_INPUTS if k in rows[0]}

    def predict(model, batch, rows):
        out = model(**batch)
        starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        return list(zip(starts, ends))

    logits = _sharded_predictions(model, features, collate, predict, runtime, batch_size)
    predictions = postprocess_qa_predictions(
        examples, features, np.stack([s for s, _ in logits]), np.stack([e for _, e in logits]), n_best, max_answer_length
    )
    references = {str(row["id"]): row["answers"]["text"] for row in examples}
    scores = squad_scores(predictions=predictions, references=references)
    return {"f1": scores["f1"], "exact_match": scores["exact_match"], "n_questions": scores["n_questions"]}


def evaluate_mlm(model: nn.Module, blocks, collator, runtime: Runtime, batch_size: int = 32) -> dict[str, float]:
    """Mean masked-token loss and perplexity on held-out blocks (fixed masks: seed the collator)."""

    def predict(model, batch, rows):
        # one (summed loss, masked count) per batch, carried by its first row so that the
        # by-index gathering still sees one output per example
        n = int((batch["labels"] != -100).sum())
        return [(masked_lm_loss(model, batch).item() * n, n)] + [(0.0, 0)] * (len(rows) - 1)

    rows = [blocks[i] for i in range(len(blocks))]
    results = _sharded_predictions(model, rows, collator, predict, runtime, batch_size)
    total, count = sum(r[0] for r in results), sum(r[1] for r in results)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "masked_tokens": count}
