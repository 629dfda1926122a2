"""The training loop's early stopping: patience counts dev evaluations without a new best."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from madx.runtime import Runtime
from madx.train import TrainConfig, train


def scripted_run(dev_losses, patience, max_steps):
    """A linear model trained with a dev "loss" read from ``dev_losses`` at each evaluation (every step);
    returns the result, the weights seen at each evaluation and the weights the loop left loaded."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = [{"input_ids": torch.randn(4), "y": torch.randn(1)} for _ in range(64)]  # the loop counts input_ids as tokens
    collate = lambda rows: {k: torch.stack([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
    seen = []

    def evaluate(m):
        seen.append(m.weight.detach().clone())
        return {"loss": dev_losses[len(seen) - 1]}

    config = TrainConfig(learning_rate=0.1, batch_size=4, max_steps=max_steps, eval_every=1, select_metric="loss",
                         greater_is_better=False, early_stopping_patience=patience, log_every=1)
    result = train(model, data, collate, lambda m, b: ((m(b["input_ids"]) - b["y"]) ** 2).mean(), config, Runtime.local("cpu"), evaluate)
    return result, seen, model.weight.detach()


def test_stops_after_patience_evaluations_without_a_new_best_and_keeps_the_best():
    result, seen, kept = scripted_run([3.0, 2.0, 2.5, 2.0, 2.6, 1.0], patience=3, max_steps=20)
    assert result.stopped_early and result.steps == 5 and len(seen) == 5  # a tie (2.0) is not a new best
    assert result.best_step == 2 and result.best_metrics == {"loss": 2.0}
    assert torch.equal(kept, seen[1])


def test_a_new_best_resets_the_count_and_without_patience_every_step_runs():
    # never two evaluations in a row without a new best: all 7 steps run
    result, seen, _ = scripted_run([3.0, 2.9, 3.5, 2.8, 3.1, 2.7, 3.0], patience=2, max_steps=7)
    assert result.stopped_early is False and result.steps == 7 and result.best_step == 6
    result, seen, _ = scripted_run([1.0] + [2.0] * 9, patience=None, max_steps=10)
    assert result.stopped_early is False and result.steps == 10 and result.best_step == 1


def test_patience_must_be_positive():
    with pytest.raises(ValueError, match="early_stopping_patience must be positive"):
        TrainConfig(early_stopping_patience=0)
