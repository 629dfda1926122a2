"""Evaluation sharded over processes without duplicates, and the MLM dev loss. Each task's own
evaluation (``madx.tasks.ner.evaluate_ner``, ``madx.tasks.qa.evaluate_qa``) is built on
``sharded_predictions``.

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

from madx.runtime import Runtime
from madx.tasks.mlm import masked_lm_loss


def sharded_predictions(
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


def evaluate_mlm(model: nn.Module, blocks, collator, runtime: Runtime, batch_size: int = 32) -> dict[str, float]:
    """Mean masked-token loss and perplexity on held-out blocks (fixed masks: seed the collator)."""

    def predict(model, batch, rows):
        # one (summed loss, masked count) per batch, carried by its first row so that the
        # by-index gathering still sees one output per example
        n = int((batch["labels"] != -100).sum())
        return [(masked_lm_loss(model, batch).item() * n, n)] + [(0.0, 0)] * (len(rows) - 1)

    rows = [blocks[i] for i in range(len(blocks))]
    results = sharded_predictions(model, rows, collator, predict, runtime, batch_size)
    total, count = sum(r[0] for r in results), sum(r[1] for r in results)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "masked_tokens": count}
