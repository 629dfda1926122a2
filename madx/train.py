"""One training loop for MLM, NER and QA, driven by a dataclass config.

Two runtimes share the loop: ``accelerate`` data-parallel over all launched processes (the CLI
under ``accelerate launch``, ZeRO groups), or one process on one device (the suite runner's
workers, which each run their own jobs). Either way: only trainable parameters reach the
optimizer, linear warm-up/decay, gradient clipping, periodic dev evaluation with best-checkpoint
selection (the paper's protocol), and a non-finite loss stops the job with the step it happened at.

No silent traps:

* gradients are cleared before the first step (a reused model may hold a failed job's);
* gradient accumulation ends with each epoch (the last window of an epoch may be shorter and is
  averaged over its own micro-batches) and all-reduces only on a window's last micro-batch
  (``accelerate``'s ``no_sync``);
* an empty training set is an error, not an endless loop;
* low-precision (bf16/fp16) trainable weights are trained as fp32 master weights under autocast;
  fp16 losses are scaled (``Runtime``'s GradScaler, or accelerate's / DeepSpeed's own).

Checkpoints (``TrainConfig.checkpoint_dir``, ``madx.checkpoint``): every ``checkpoint_every``
optimizer steps, and when SIGTERM / SIGUSR1 arrives (held until the step in flight completes,
then handed on), the loop writes what it needs to go on: trainable weights, optimizer, scheduler,
loss scaler, RNG states (torch, CUDA, Python, NumPy, the shuffling generator and the collator's
``generator``), its position in the data, best-so-far weights and metrics, the early-stopping count
and its history. ``train`` called again with the same directory resumes from the latest complete
checkpoint; on CPU in fp32 the result equals an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import hashlib
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

from madx import checkpoint
from madx.inject.trainable import check_trainable
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
    checkpoint_dir: str | None = None  # resume from the latest complete checkpoint here; write checkpoints here
    checkpoint_every: int = 1000  # optimizer steps between checkpoints (one is also written on SIGTERM/SIGUSR1)

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size <= 0 or self.gradient_accumulation_steps <= 0:
            raise ValueError(f"learning_rate, batch_size and gradient_accumulation_steps must be positive: {self}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.early_stopping_patience is not None and self.early_stopping_patience <= 0:
            raise ValueError(f"early_stopping_patience must be positive or None, got {self.early_stopping_patience}")
        if self.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be positive, got {self.checkpoint_every}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


class TrainingDiverged(RuntimeError):
    pass


class TrainingStopped(RuntimeError):
    """Another process of a data-parallel run received a stop signal: this one checkpointed with it and stops."""


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
    resumed_from_step: int | None = None  # the checkpoint this run went on from (None: it started at step 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
EvalFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class _Position:
    """Where the loop is: optimizer steps done, the epoch and the next batch in it, the shuffling
    generator's state when the epoch began (None: not begun), and the open logging window."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_start: torch.Tensor | None = None
    window_loss: float = 0.0
    window_count: int = 0
    window_tokens: int = 0
    positions: int = 0
    evaluations_without_best: int = 0
    wall_s: float = 0.0  # training time of earlier runs of this job (resumed)


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
    checkpoint_guard: Callable[[], None] | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad. Returns with the best dev checkpoint
    loaded (when ``evaluate_fn`` is given). ``checkpoint_guard`` is called before each checkpoint is
    written and raises if this process may no longer write it (``bench.execute``: the job's claim)."""
    check_trainable(model)  # nothing training, or base weights training under active adapters: a forgotten setup
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if len(train_dataset) == 0:
        raise ValueError("the training set is empty: no example to train on")
    if config.checkpoint_dir is not None and not runtime.supports_checkpoints:
        raise ValueError(f"{type(runtime).__name__} cannot checkpoint training: set checkpoint_dir to None")
    _fp32_master_weights(trainable, runtime)
    model.zero_grad(set_to_none=True)  # a reused model may hold gradients of an earlier (failed) job
    generator = torch.Generator().manual_seed(config.seed)
    collator_generator = getattr(collate_fn, "generator", None)  # MaskedLMCollator's masks
    if isinstance(collator_generator, torch.Generator):
        collate_fn = _TrackedCollate(collate_fn, collator_generator)
    loader = DataLoader(train_dataset, batch_size=config.batch_size, shuffle=True, collate_fn=collate_fn, generator=generator)
    decay = [p for n, p in trainable if p.ndim > 1]
    no_decay = [p for n, p in trainable if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    base_optimizer = optimizer  # schedulers need the torch optimizer; DeepSpeed's wrapper is not one
    model, optimizer, loader = runtime.prepare(model, optimizer, loader)
    n_batches = len(loader)
    if n_batches == 0:
        raise ValueError(f"no training batch on process {runtime.process_index} ({len(train_dataset)} examples, "
                         f"{runtime.num_processes} processes)")
    accumulation = config.gradient_accumulation_steps
    updates_per_epoch = math.ceil(n_batches / accumulation)
    total_steps = config.max_steps or max(1, math.ceil(config.num_epochs * updates_per_epoch))
    scheduler = get_linear_schedule_with_warmup(base_optimizer, int(config.warmup_ratio * total_steps), total_steps)
    eval_every = config.eval_every or updates_per_epoch
    generators = {"shuffle": generator}
    if isinstance(collate_fn, _TrackedCollate):
        generators["collator"] = collator_generator

    result = TrainResult(steps=0, epochs=0.0, final_loss=float("nan"), best_step=None, best_metrics=None,
                         trainable_params=sum(p.numel() for _, p in trainable),
                         total_params=sum(p.numel() for p in model.parameters()))
    at = _Position()
    best_state: dict[str, torch.Tensor] | None = None
    fingerprint = _fingerprint(config, trainable, n_batches, runtime)
    found = checkpoint.latest(config.checkpoint_dir)
    if found is not None:
        result, at, best_state = _resume(found, fingerprint, model, optimizer, scheduler, runtime, generators)
        logger.info("resuming training from %s (step %d)", found, at.step)
    if writer is not None:
        writer.add_scalar("train/trainable_params", result.trainable_params, 0)
    runtime.reset_peak_memory()
    start = window_start = time.perf_counter()
    model.train()
    with checkpoint.deferred_stop(enabled=config.checkpoint_dir is not None) as stop:
        while at.step < total_steps and not result.stopped_early:
            if at.epoch_start is None:
                at.epoch_start = generator.get_state()
            else:  # resumed inside an epoch: the same shuffle, its first batches skipped uncollated
                generator.set_state(at.epoch_start)
            if isinstance(collate_fn, _TrackedCollate):
                collate_fn.start_epoch()
            for batch in runtime.skip_batches(loader, at.batch):
                if isinstance(collate_fn, _TrackedCollate):
                    collate_fn.consumed += 1
                window_first = at.batch - at.batch % accumulation
                window = min(accumulation, n_batches - window_first)  # an epoch's last window may be short
                at.batch += 1
                last_in_window = at.batch == window_first + window
                batch = runtime.to_device(batch)
                with runtime.no_sync(model, skip=not last_in_window):
                    with runtime.autocast():
                        loss = loss_fn(model, batch)
                    if not torch.isfinite(loss.detach()):
                        raise TrainingDiverged(f"loss is {loss.item()} at step {at.step} (micro-batch {at.batch - 1} of "
                                               f"epoch {at.epoch}); lower the learning rate or check the data")
                    runtime.backward(loss / window if window > 1 else loss)
                tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
                at.window_tokens += tokens
                at.positions += int(batch["input_ids"].numel())
                at.window_loss += loss.detach().float().item()
                at.window_count += 1
                if not last_in_window:
                    continue
                grad_norm = runtime.clip_grad_norm(model, config.max_grad_norm)
                if runtime.optimizer_step(model, optimizer):  # False: fp16 loss scaling skipped it
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                at.step += 1
                step = at.step
                if step % config.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    tokens_all = runtime.sum_across_processes(at.window_tokens)
                    record = {
                        "step": step,
                        "loss": at.window_loss / at.window_count,
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
                    at.window_loss, at.window_count, at.window_tokens, window_start = 0.0, 0, 0, now
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
                        at.evaluations_without_best = 0
                    else:
                        at.evaluations_without_best += 1
                        result.stopped_early = at.evaluations_without_best == config.early_stopping_patience
                if at.batch == n_batches:  # the epoch is complete: the next step starts a new one
                    at.epoch, at.batch, at.epoch_start = at.epoch + 1, 0, None
                if config.checkpoint_dir is not None:
                    stopping = runtime.any_across_processes(stop.signum is not None)
                    if stopping or step % config.checkpoint_every == 0:
                        result.epochs = step / updates_per_epoch
                        at.wall_s += time.perf_counter() - start
                        start = time.perf_counter()
                        _save(config.checkpoint_dir, model, optimizer, scheduler, runtime, generators, collate_fn, result,
                              at, best_state, fingerprint, checkpoint_guard)
                    if stopping:
                        if stop.signum is None:
                            raise TrainingStopped(f"another process was stopped at step {step}; checkpoint written")
                        stop.deliver()  # the stop goes on (bench.worker: WorkerStopped); if it returns, training goes on
                if step >= total_steps or result.stopped_early:
                    break
            result.epochs = at.step / updates_per_epoch
    result.tokens += runtime.sum_across_processes(at.window_tokens)
    result.positions = runtime.sum_across_processes(at.positions)
    result.non_pad_fraction = result.tokens / max(result.positions, 1)
    if writer is not None:
        writer.add_scalar("train/non_pad_fraction", result.non_pad_fraction, at.step)
    result.steps = at.step
    result.wall_s = at.wall_s + time.perf_counter() - start
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


class _TrackedCollate:
    """A collate function with a generator (the MLM masks), remembering the generator's state before each
    call: a loader that collates ahead of the loop (accelerate's ``DataLoaderShard`` holds one batch in
    hand) has drawn the next batch's masks by the time a step completes, and a checkpoint must hold the
    state from before that draw."""

    def __init__(self, collate_fn: Callable, generator: torch.Generator):
        self.collate_fn, self.generator = collate_fn, generator
        self.calls = self.consumed = self._calls_at_epoch_start = 0
        self._before: dict[int, torch.Tensor] = {}

    def __call__(self, rows):
        self._before = {i: s for i, s in self._before.items() if i >= self.calls - 4}
        self._before[self.calls] = self.generator.get_state()
        self.calls += 1
        return self.collate_fn(rows)

    def state_at_consumed(self) -> torch.Tensor:
        """The generator's state after the batches the loop has taken, none of those collated ahead."""
        ahead = self.calls - self._calls_at_epoch_start - self.consumed
        return self._before[self.calls - ahead] if ahead > 0 else self.generator.get_state()

    def start_epoch(self) -> None:
        self._calls_at_epoch_start, self.consumed = self.calls, 0


def _fp32_master_weights(trainable: list[tuple[str, nn.Parameter]], runtime: Runtime) -> None:
    """AdamW on bf16/fp16 weights loses updates smaller than the weights' precision: trainable
    low-precision parameters become fp32 (the forward autocasts to the runtime's precision)."""
    low = [(n, p) for n, p in trainable if p.dtype in (torch.float16, torch.bfloat16)]
    if not low or runtime.keeps_master_weights:
        return
    if runtime.mixed_precision == "no":
        name, parameter = low[0]
        raise ValueError(f"{len(low)} trainable parameters are {parameter.dtype} (e.g. {name}) but mixed precision is off: "
                         f"train with mixed_precision bf16/fp16 (they are then kept in fp32 and the forward autocasts) "
                         f"or load the model in float32")
    for _, parameter in low:
        parameter.data = parameter.data.float()


def _fingerprint(config: TrainConfig, trainable, n_batches: int, runtime: Runtime) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the settings (not where or how often it is written),
    the trainable parameters, the data's batches per epoch and the number of processes."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("checkpoint_dir", "checkpoint_every")}
    shapes = hashlib.sha256(";".join(f"{n}:{tuple(p.shape)}" for n, p in trainable).encode()).hexdigest()[:16]
    return {"config": settings, "trainable_parameters": f"{len(trainable)} tensors, {shapes}",
            "batches_per_epoch": n_batches, "processes": runtime.num_processes}


def _save(directory, model, optimizer, scheduler, runtime: Runtime, generators, tracked, result: TrainResult,
          at: _Position, best_state, fingerprint, guard) -> None:
    rng = checkpoint.rng_states(generators, runtime.device)
    if isinstance(tracked, _TrackedCollate):
        rng["generators"]["collator"] = tracked.state_at_consumed()
    if not runtime.is_main_process:
        checkpoint.save_rank_state(directory, at.step, runtime.process_index, rng)
    runtime.wait_for_everyone()
    if runtime.is_main_process:
        if guard is not None:
            guard()
        unwrapped = runtime.unwrap(model)
        state = {
            "trainable": {n: p.detach().cpu() for n, p in unwrapped.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": runtime.scaler_state(),
            "best": best_state,
            "epoch_start": at.epoch_start,
            "rng": rng,
        }
        position = {k: v for k, v in asdict(at).items() if k != "epoch_start"}
        checkpoint.save(directory, at.step, state, {"position": position, "result": result.to_dict()}, fingerprint)
    runtime.wait_for_everyone()


def _resume(folder, fingerprint, model, optimizer, scheduler, runtime: Runtime, generators):
    state, loop, rng = checkpoint.load(folder, fingerprint, runtime.process_index)
    parameters = dict(runtime.unwrap(model).named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            parameters[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    runtime.load_scaler_state(state["scaler"])
    checkpoint.restore_rng(rng, generators, runtime.device)
    at = _Position(**loop["position"], epoch_start=state["epoch_start"])
    result = TrainResult(**loop["result"])
    result.resumed_from_step = at.step
    return result, at, state["best"]


def _is_better(metrics: dict[str, float], best: dict[str, float] | None, config: TrainConfig) -> bool:
    if config.select_metric not in metrics:
        raise KeyError(f"dev metrics have no {config.select_metric!r} to select the best checkpoint by: {sorted(metrics)}")
    if best is None:
        return True
    value, best_value = metrics[config.select_metric], best[config.select_metric]
    return value > best_value if config.greater_is_better else value < best_value

