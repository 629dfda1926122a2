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


# -- no silent traps ------------------------------------------------------------------------------
def linear_problem(n=10):
    torch.manual_seed(0)
    data = [{"input_ids": torch.randn(4), "y": torch.randn(1)} for _ in range(n)]
    collate = lambda rows: {k: torch.stack([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
    loss = lambda m, b: ((m(b["input_ids"]) - b["y"]) ** 2).mean()  # noqa: E731
    return data, collate, loss


def test_stale_gradients_of_a_reused_model_never_reach_the_first_step():
    data, collate, loss = linear_problem()
    config = TrainConfig(learning_rate=0.1, batch_size=4, max_steps=1)
    torch.manual_seed(1)
    clean = nn.Linear(4, 1)
    reused = nn.Linear(4, 1)
    reused.load_state_dict(clean.state_dict())
    for parameter in reused.parameters():  # what a failed job left behind after its backward
        parameter.grad = torch.full_like(parameter, 100.0)
    for model in (clean, reused):
        train(model, data, collate, loss, config, Runtime.local("cpu"))
    assert torch.equal(clean.weight, reused.weight) and torch.equal(clean.bias, reused.bias)


def test_accumulation_ends_with_the_epoch_and_averages_a_short_last_window():
    """10 examples, batches of 2 (5 batches), windows of 2: steps on batches {1,2}, {3,4}, {5} in each epoch."""
    data, collate, loss = linear_problem(10)
    config = TrainConfig(learning_rate=0.1, batch_size=2, num_epochs=2, gradient_accumulation_steps=2, max_grad_norm=1e9)
    torch.manual_seed(1)
    model = nn.Linear(4, 1)
    expected = nn.Linear(4, 1)
    expected.load_state_dict(model.state_dict())
    result = train(model, data, collate, loss, config, Runtime.local("cpu"))
    assert result.steps == 6 and result.epochs == 2.0

    # the same by hand: the loop's shuffle (its generator seeded with config.seed), AdamW, a constant-free linear decay
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW([{"params": [expected.weight], "weight_decay": 0.0}, {"params": [expected.bias], "weight_decay": 0.0}], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (6 - s) / 6))
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True, collate_fn=collate, generator=generator)
    for _ in range(2):
        batches = list(loader)
        for window in (batches[0:2], batches[2:4], batches[4:5]):
            for batch in window:
                (loss(expected, batch) / len(window)).backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    torch.testing.assert_close(model.weight, expected.weight, rtol=0, atol=1e-7)
    torch.testing.assert_close(model.bias, expected.bias, rtol=0, atol=1e-7)


def test_gradients_are_all_reduced_only_on_a_windows_last_micro_batch():
    calls = []

    class Spy(Runtime):
        def no_sync(self, model, skip):
            calls.append(skip)
            return super().no_sync(model, skip)

    data, collate, loss = linear_problem(10)
    train(nn.Linear(4, 1), data, collate, loss, TrainConfig(batch_size=2, num_epochs=1, gradient_accumulation_steps=2),
          Spy(torch.device("cpu")))
    assert calls == [True, False, True, False, False]


def test_an_empty_training_set_is_an_error_not_an_endless_loop():
    import threading

    data, collate, loss = linear_problem()
    outcome = []

    def run():
        try:
            train(nn.Linear(4, 1), [], collate, loss, TrainConfig(batch_size=2, max_steps=3), Runtime.local("cpu"))
        except ValueError as error:
            outcome.append(str(error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)  # the old loop never returned
    assert outcome == ["the training set is empty: no example to train on"]


def test_fp16_scales_the_loss_so_an_overflowing_gradient_skips_the_step_instead_of_poisoning_the_weights():
    """Under fp16 autocast a loss gradient of 1e5 is inf in fp16: unscaled, AdamW writes NaN into the weights;
    with the runtime's GradScaler those steps are skipped, the scale shrinks, then the steps go through."""
    data, collate, _ = linear_problem(8)

    def overflowing(m, b):
        out = m(b["input_ids"] * 1e-3)  # fp16 under autocast
        return out.float().sum() * 1e5  # its gradient, 1e5 per element, is inf in fp16

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    runtime = Runtime.local("cpu", "fp16")
    train(model, data, collate, overflowing, TrainConfig(learning_rate=1e-3, batch_size=4, max_steps=30), runtime)
    assert torch.isfinite(model.weight).all() and torch.isfinite(model.bias).all()
    assert runtime.scaler is not None and runtime.scaler.get_scale() < 2.0**16  # it had to shrink
    assert runtime.scaler.get_scale() * 1e5 < 65504  # and the steps taken were the finite ones


def test_low_precision_trainable_weights_are_trained_as_fp32_master_weights():
    data, collate, loss = linear_problem(8)
    torch.manual_seed(0)
    model = nn.Linear(4, 1).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"2 trainable parameters are torch.bfloat16 \(e.g. weight\) but mixed precision is off"):
        train(model, data, collate, loss, TrainConfig(batch_size=4, max_steps=1), Runtime.local("cpu"))
    before = model.weight.detach().float().clone()
    train(model, data, collate, loss, TrainConfig(learning_rate=1e-4, batch_size=4, max_steps=2), Runtime.local("cpu", "bf16"))
    assert model.weight.dtype == model.bias.dtype == torch.float32
    # a step of ~1e-4 on weights of ~0.3 is below bf16's resolution (2^-9 relative): pure bf16 AdamW would not move them
    assert (model.weight.detach() - before).abs().max() > 0
