"""Give an encoder without an MLM head (multilingual-e5-small) one, so MAD-X can train language
adapters through it.

MAD-X trains language adapters with MLM *through the frozen model's MLM head*. e5 was trained
contrastively and ships no head, so we fit one: BERT's prediction head (dense + GELU +
LayerNorm, then the decoder tied to the input embeddings, plus an output bias) on multilingual
text, with the whole encoder and the embeddings frozen. Only the head's transform and bias learn
(~0.4M parameters for h=384, plus the 250k-entry bias); afterwards the head is frozen like every
other base weight. The result is a normal ``BertForMaskedLM`` directory. This base is *not*
XLM-R: reports say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from madx.atomic import atomic_save_pretrained, atomic_write_json
from madx.inject.mlm_head import mlm_decoder
from madx.inject.spec import get_path, spec_for_model_type
from madx.phases import MLMData, train_mlm
from madx.runtime import Runtime
from madx.train import TrainConfig


@dataclass(frozen=True)
class MLMHeadConfig:
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    max_seq_length: int = 128
    warmup_ratio: float = 0.05
    eval_every: int = 500
    dev_blocks: int = 256  # held-out blocks of max_seq_length tokens for the dev loss (at most 5 % of the text)
    patience: int | None = None  # stop after this many dev evaluations without a lower dev loss; None: all steps
    seed: int = 0


def head_parameters(model) -> list[str]:
    """Names of the parameters the head fit trains: the MLM head's transform and output bias, not the
    decoder weight (tied to the input embeddings, so part of the frozen base)."""
    head = get_path(model, spec_for_model_type(model.config.model_type).mlm_head)
    # by identity, not by name: a tied weight is listed under whichever name named_parameters meets first
    trained = {id(p) for p in head.parameters()} - {id(mlm_decoder(model).weight)}
    return [n for n, p in model.named_parameters() if id(p) in trained]


def train_mlm_head(model_dir: str | Path, texts: list[str | Path], out_dir: str | Path, config: MLMHeadConfig = MLMHeadConfig(),
                   runtime=None, progress=None) -> dict[str, Any]:
    runtime = runtime or Runtime.local()
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    if mlm_decoder(model).weight is not model.get_input_embeddings().weight:
        raise ValueError(f"{model_dir}: the decoder is not tied to the input embeddings (tie_word_embeddings must be true)")
    trainable = set(head_parameters(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)
    train_config = TrainConfig(learning_rate=config.learning_rate, batch_size=config.batch_size, max_steps=config.steps,
                               warmup_ratio=config.warmup_ratio, eval_every=config.eval_every, seed=config.seed,
                               early_stopping_patience=config.patience,
                               select_metric="loss", greater_is_better=False, log_every=max(1, config.steps // 20))
    result, dev = train_mlm(model, [Path(t) for t in texts], tokenizer, train_config,
                                MLMData(max_seq_length=config.max_seq_length, max_dev_blocks=config.dev_blocks), runtime, None, progress)
    out_dir = Path(out_dir)
    atomic_save_pretrained(out_dir, model, tokenizer)
    record = {"config": asdict(config), "texts": [str(t) for t in texts], "dev": dev, "train": result.to_dict(),
              "trained_parameters": sorted(trainable), "base": str(model_dir)}
    atomic_write_json(out_dir / "mlm_head.json", record)
    return record
