"""One training loop for MLM, NER and QA, driven by a dataclass config.

Two runtimes share the loop: ``accelerate`` data-parallel over all launched processes (the CLI
under ``accelerate launch``, ZeRO groups), or one process on one device (the suite runner's
workers, which each run their own jobs). Either way: only trainable parameters reach the
optimizer, linear warm-up/decay, gradient clipping, gradient accumulation, periodic dev
evaluation with best-checkpoint selection (the paper's protocol), and a non-finite loss stops
the job with the step it happened at.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from madx.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 1e-4
    batch_size: int = 16
    num_epochs: float = 1.0
    max_steps: int | None = None  # overrides num_epochs when set
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    eval_every: int | None = None  # optimizer steps between dev evaluations; None: once per epoch
    early_stopping_patience: int | None = None  # stop after this many dev evaluations without a new best
    select_metric: str = "f1"  # dev metric for best-checkpoint selection
    greater_is_better: bool = True
    log_every: int = 10
    seed: int = 42

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size <= 0 or self.gradient_accumulation_steps <= 0:
            raise ValueError(f"learning_rate, batch_size and gradient_accumulation_steps must be positive: {self}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.early_stopping_patience is not None and self.early_stopping_patience <= 0:
            raise ValueError(f"early_stopping_patience must be positive or None, got {self.early_stopping_patience}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainResult:
    steps: int
    epochs: float
    final_loss: float
    best_step: int | None
    best_metrics: dict[str, float] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0  # non-pad tokens seen, all processes
    positions: int = 0  # token positions computed (padding included), all processes
    non_pad_fraction: float = 0.0  # tokens / positions: 1.0 for packed MLM blocks
    wall_s: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory_bytes: int = 0
    trainable_params: int = 0
    total_params: int = 0
    stopped_early: bool = False  # early_stopping_patience evaluations in a row found no new best

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
EvalFn = Callable[[nn.Module], dict[str, float]]


def train(
    model: nn.Module,
    train_dataset,
    collate_fn: Callable,
    loss_fn: LossFn,
    config: TrainConfig,
    runtime: Runtime,
    evaluate_fn: EvalFn | None = None,
    writer=None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad. Returns with the best dev checkpoint
    loaded (when ``evaluate_fn`` is given)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("nothing to train: no parameter requires grad (see madx.set_trainable)")
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(train_dataset, batch_size=config.batch_size, shuffle=True, collate_fn=collate_fn, generator=generator)
    decay = [p for n, p in trainable if p.ndim > 1]
    no_decay = [p for n, p in trainable if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    base_optimizer = optimizer  # schedulers need the torch optimizer; DeepSpeed's wrapper is not one
    model, optimizer, loader = runtime.prepare(model, optimizer, loader)
    updates_per_epoch = max(1, math.ceil(len(loader) / config.gradient_accumulation_steps))
    total_steps = config.max_steps or max(1, math.ceil(config.num_epochs * updates_per_epoch))
    scheduler = get_linear_schedule_with_warmup(base_optimizer, int(config.warmup_ratio * total_steps), total_steps)
    eval_every = config.eval_every or updates_per_epoch

    result = TrainResult(steps=0, epochs=0.0, final_loss=float("nan"), best_step=None, best_metrics=None,
                         trainable_params=sum(p.numel() for _, p in trainable),
                         total_params=sum(p.numel() for p in model.parameters()))
    best_state: dict[str, torch.Tensor] | None = None
    if writer is not None:
        writer.add_scalar("train/trainable_params", result.trainable_params, 0)
    runtime.reset_peak_memory()
    start = time.perf_counter()
    window_loss, window_count, window_tokens, window_start = 0.0, 0, 0, start
    positions = 0
    step = micro = evaluations_without_best = 0
    model.train()
    while step < total_steps and not result.stopped_early:
        for batch in loader:
            batch = runtime.to_device(batch)
            with runtime.autocast():
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss.detach()):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {step} (micro-batch {micro}); lower the learning rate or check the data"
                )
            runtime.backward(loss / config.gradient_accumulation_steps)
            tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
            window_tokens += tokens
            positions += int(batch["input_ids"].numel())
            window_loss += loss.detach().float().item()
            window_count += 1
            micro += 1
            if micro % config.gradient_accumulation_steps:
                continue
            grad_norm = runtime.clip_grad_norm(model, config.max_grad_norm)
            runtime.optimizer_step(model, optimizer)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % config.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                tokens_all = runtime.sum_across_processes(window_tokens)
                record = {
                    "step": step,
                    "loss": window_loss / window_count,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": tokens_all / max(now - window_start, 1e-9),
                    "peak_memory_bytes": runtime.peak_memory(),
                }
                result.tokens += tokens_all
                result.final_loss = record["loss"]
                result.history.append(record)
                if writer is not None:
                    for key, value in record.items():
                        if key != "step":
                            writer.add_scalar(f"train/{key}", value, step)
                if progress is not None:
                    progress(record)
                window_loss, window_count, window_tokens, window_start = 0.0, 0, 0, now
            if evaluate_fn is not None and (step % eval_every == 0 or step == total_steps):
                model.eval()
                with torch.no_grad():
                    metrics = evaluate_fn(runtime.unwrap(model))
                model.train()
                if writer is not None:
                    for key, value in metrics.items():
                        if isinstance(value, (int, float)):
                            writer.add_scalar(f"dev/{key}", value, step)
                result.history.append({"step": step, "dev": metrics})
                if _is_better(metrics, result.best_metrics, config):
                    result.best_metrics, result.best_step = metrics, step
                    best_state = {n: p.detach().to("cpu", copy=True) for n, p in runtime.unwrap(model).named_parameters() if p.requires_grad}
                    evaluations_without_best = 0
                else:
                    evaluations_without_best += 1
                    result.stopped_early = evaluations_without_best == config.early_stopping_patience
            if step >= total_steps or result.stopped_early:
                break
        result.epochs = step / updates_per_epoch
    result.tokens += runtime.sum_across_processes(window_tokens)
    result.positions = runtime.sum_across_processes(positions)
    result.non_pad_fraction = result.tokens / max(result.positions, 1)
    if writer is not None:
        writer.add_scalar("train/non_pad_fraction", result.non_pad_fraction, step)
    result.steps = step
    result.wall_s = time.perf_counter() - start
    result.tokens_per_s = result.tokens / max(result.wall_s, 1e-9)
    result.peak_memory_bytes = runtime.peak_memory()
    if best_state is not None:
        unwrapped = runtime.unwrap(model)
        with torch.no_grad():
            parameters = dict(unwrapped.named_parameters())
            for name, value in best_state.items():
                parameters[name].copy_(value)
    model.eval()
    return result


def _is_better(metrics: dict[str, float], best: dict[str, float] | None, config: TrainConfig) -> bool:
    if config.select_metric not in metrics:
        raise KeyError(f"dev metrics have no {config.select_metric!r} to select the best checkpoint by: {sorted(metrics)}")
    if best is None:
        return True
    value, best_value = metrics[config.select_metric], best[config.select_metric]
    return value > best_value if config.greater_is_better else value < best_value

