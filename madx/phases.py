"""The phases of MAD-X and its baselines as functions: each takes a model, data and a config,
trains or evaluates, and returns metrics. The CLI and the suite runner both call these.

* ``train_language_adapter``: MLM on a language's text, training its language adapter (+ its
  invertible adapter); base and MLM head frozen.
* ``train_full_mlm``: the baselines' full-model MLM (MLM-SRC / MLM-TRG).
* ``train_task``: a task adapter (+ head) on top of the fixed source-language adapter, or the
  whole model for the baselines; best dev checkpoint kept.
* ``evaluate_task``: NER F1 or QA F1/EM with whatever setup is active (the zero-shot swap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

import madx
from madx.adapters.config import AdapterConfig
from madx.compose import Stack
from madx.data.mlm import MaskedLMCollator, build_mlm_dataset
from madx.evaluate import evaluate_mlm
from madx.runtime import Runtime
from madx.tasks.mlm import MaskedLMObjective
from madx.tasks.registry import get_task
from madx.train import TrainConfig, TrainResult, train

MIN_BLOCKS_FOR_DEV = 20  # a smaller MLM corpus holds out no dev set: it selects on (part of) its training blocks
DEV_MASK_SEED = 1234  # the MLM dev sets' fixed masks


@dataclass(frozen=True)
class MLMData:
    max_seq_length: int = 128
    dev_fraction: float = 0.05  # blocks held out for best-checkpoint selection
    max_dev_blocks: int = 256


def _model_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def _objective_loss(objective: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return objective(**batch)


def split_mlm_blocks(corpus, tokenizer, data: MLMData, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, dev) blocks of an MLM corpus, the dev blocks held out by ``seed`` (tiny corpora: part of train)."""
    return split_blocks(build_mlm_dataset(corpus, tokenizer, data.max_seq_length), data, seed)


def held_out_dev_blocks(n_blocks: int, data: MLMData) -> int:
    """How many of a corpus's ``n_blocks`` are held out for dev (0: too small, it selects on part of train)."""
    return min(data.max_dev_blocks, int(n_blocks * data.dev_fraction)) if n_blocks >= MIN_BLOCKS_FOR_DEV else 0


def split_blocks(blocks: datasets.Dataset, data: MLMData, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``split_mlm_blocks`` on blocks already built."""
    n_dev = held_out_dev_blocks(len(blocks), data)
    if n_dev == 0:
        return blocks, blocks.select(range(min(len(blocks), 8)))  # tiny corpus: select on (part of) train
    split = blocks.train_test_split(test_size=n_dev, seed=seed, shuffle=True)
    return split["train"], split["test"]


def masking_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s MLM masks: each data-parallel rank draws its own masks (the same
    seed everywhere would mask the same positions of every rank's blocks with the same random ids),
    reproducible from (seed, rank). Rank 0 keeps ``seed``, so one-process runs are unchanged."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def train_mlm(model, corpus, tokenizer, config: TrainConfig, data: MLMData, runtime: Runtime, writer, progress,
              checkpoint_guard: Callable[[], None] | None = None) -> tuple[TrainResult, dict]:
    """MLM on whatever requires grad (adapters, head or all), best checkpoint by dev loss; returns (result, dev metrics).

    The blocks are packed (every one ``max_seq_length`` tokens of text), so batches carry no
    attention mask; the step is ``MaskedLMObjective``, compiled where ``runtime.compiles``. The dev
    masks are fixed (seed 1234, the same on every rank: evaluation shards the blocks)."""
    train_blocks, dev_blocks = split_mlm_blocks(corpus, tokenizer, data, config.seed)
    return train_mlm_blocks(model, train_blocks, dev_blocks, tokenizer, config, runtime, writer, progress, checkpoint_guard)


def train_mlm_blocks(model, train_blocks: datasets.Dataset, dev_blocks: datasets.Dataset, tokenizer, config: TrainConfig,
                     runtime: Runtime, writer=None, progress=None,
                     checkpoint_guard: Callable[[], None] | None = None) -> tuple[TrainResult, dict]:
    """``train_mlm`` on blocks already split (e.g. a held-out dev set per language)."""
    train_collator = MaskedLMCollator(tokenizer, seed=masking_seed(config.seed, runtime.process_index))
    objective = MaskedLMObjective(model, compile=runtime.compiles)

    def dev_loss(_objective=None):
        return evaluate_mlm(model, dev_blocks, MaskedLMCollator(tokenizer, seed=DEV_MASK_SEED), runtime, config.batch_size)

    result = train(objective, train_blocks, train_collator, _objective_loss, config, runtime, dev_loss, writer, progress,
                   checkpoint_guard)
    return result, dev_loss()


def _checkpointing(config: TrainConfig, checkpoint_dir) -> TrainConfig:
    return config if checkpoint_dir is None else replace(config, checkpoint_dir=str(checkpoint_dir))


def train_language_adapter(
    model: nn.Module, language: str, corpus, tokenizer, config: TrainConfig, runtime: Runtime,
    invertible: bool = True, adapters: AdapterConfig = AdapterConfig(),
    data: MLMData = MLMData(), writer=None, progress=None, checkpoint_dir=None, checkpoint_guard=None,
) -> dict[str, Any]:
    """``model``: a *ForMaskedLM model. Adds adapter ``language``, trains it, leaves it active.

    ``checkpoint_dir`` (every phase): checkpoints go there and a rerun resumes from them (``madx.train``);
    ``checkpoint_guard`` is called before each is written (``bench.execute``: the job's claim)."""
    config = _checkpointing(_selecting(config, "loss", greater_is_better=False), checkpoint_dir)
    madx.add_language_adapter(model, language, adapters, invertible)
    madx.train_adapter(model, Stack(language))
    result, dev = train_mlm(model, corpus, tokenizer, config, data, runtime, writer, progress, checkpoint_guard)
    return {"train": result.to_dict(), "dev": dev}


def train_full_mlm(
    model: nn.Module, corpus, tokenizer, config: TrainConfig, runtime: Runtime, data: MLMData = MLMData(), writer=None,
    progress=None, checkpoint_dir=None, checkpoint_guard=None,
) -> dict[str, Any]:
    """Full-model MLM (baselines MLM-SRC / MLM-TRG): every weight trains, the MLM head included."""
    config = _checkpointing(_selecting(config, "loss", greater_is_better=False), checkpoint_dir)
    madx.set_trainable(model, base=True)
    result, dev = train_mlm(model, corpus, tokenizer, config, data, runtime, writer, progress, checkpoint_guard)
    return {"train": result.to_dict(), "dev": dev}


def _selecting(config: TrainConfig, metric: str, greater_is_better: bool) -> TrainConfig:
    return replace(config, select_metric=metric, greater_is_better=greater_is_better)


def prepare_task_data(task: str, dataset: datasets.Dataset, tokenizer, train: bool, max_length: int | None = None):
    """Examples -> model features for ``task`` (NER: aligned labels; QA: sliding windows)."""
    spec = get_task(task)
    return spec.prepare_features(dataset, tokenizer, train, max_length or spec.default_max_length)


def evaluate_task(task: str, model: nn.Module, examples, features, tokenizer, runtime: Runtime, batch_size: int = 32) -> dict[str, Any]:
    return get_task(task).evaluate(model, examples, features, tokenizer, runtime, batch_size)


def train_task(
    model: nn.Module, task: str, train_examples, dev_examples, tokenizer, config: TrainConfig, runtime: Runtime,
    setup: Stack | None, task_adapter: str | None = None, adapters: AdapterConfig = AdapterConfig(), max_length: int | None = None,
    writer=None, progress=None, checkpoint_dir=None, checkpoint_guard=None,
) -> dict[str, Any]:
    """Train ``task`` on ``model`` (a *ForTokenClassification / *ForQuestionAnswering model).

    With ``task_adapter`` set, a task adapter of that name is added and trained together with the
    prediction head; the language adapter named in ``setup`` must already be loaded and stays
    fixed. Without it the whole model trains (baselines). Returns with the best dev checkpoint.
    """
    if task_adapter is not None:
        if setup is None or setup.names[-1] != task_adapter:
            raise ValueError(f"train_task: the setup {setup} must end with the task adapter {task_adapter!r} it trains")
        madx.add_task_adapter(model, task_adapter, adapters)
        madx.train_adapter(model, setup)  # only the task adapter and its own head train; the language adapter stays fixed
    else:
        if setup is not None:
            raise ValueError(f"train_task: full fine-tuning runs without adapters, got the setup {setup}")
        madx.set_trainable(model, base=True)
    train_features = prepare_task_data(task, train_examples, tokenizer, train=True, max_length=max_length)
    dev_features = prepare_task_data(task, dev_examples, tokenizer, train=False, max_length=max_length)

    def dev_metrics(model):
        return evaluate_task(task, model, dev_examples, dev_features, tokenizer, runtime, config.batch_size * 2)

    spec = get_task(task)
    config = _checkpointing(_selecting(config, spec.select_metric, True), checkpoint_dir)
    result = train(model, train_features, spec.collator(tokenizer), _model_loss, config, runtime, dev_metrics, writer, progress,
                   checkpoint_guard)
    return {"train": result.to_dict(), "dev": result.best_metrics}
