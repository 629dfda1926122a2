"""Give an encoder without an MLM head (multilingual-e5-small) one, so MAD-X can train language
adapters through it.

MAD-X trains language adapters with MLM *through the frozen model's MLM head*. e5 was trained
contrastively and ships no head, so we fit one: BERT's prediction head (dense + GELU +
LayerNorm, then the decoder tied to the input embeddings, plus an output bias) on multilingual
text, with the whole encoder and the embeddings frozen. Only the head's transform and bias learn
(~0.4M parameters for h=384, plus the 250k-entry bias); afterwards the head is frozen like every
other base weight. The result is a normal ``BertForMaskedLM`` directory. This base is *not*
XLM-R: reports say so.

``train_encoder=True`` continues MLM training of the encoder layers too (a base that *is* a masked
LM, not a contrastive encoder with a head on top): run it on a model whose head was fitted first,
so a random head does not push its gradients through the encoder. The embeddings stay frozen: the
decoder is tied to them, and the languages the base is not trained on (the unseen ones of MAD-X's
transfer) keep the embeddings they had. Each text file is one language: its dev blocks are held
out per file, and the dev loss of every language is recorded before and after.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from madx.atomic import atomic_save_pretrained, atomic_write_json
from madx.data.fetch import sha256_file
from madx.data.mlm import MaskedLMCollator, build_mlm_dataset
from madx.evaluate import evaluate_mlm
from madx.inject.mlm_head import mlm_decoder
from madx.inject.spec import get_path, spec_for_model_type
from madx.phases import DEV_MASK_SEED, MIN_BLOCKS_FOR_DEV, MLMData, held_out_dev_blocks, split_blocks, train_mlm_blocks
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
    dev_blocks: int = 256  # held-out blocks of max_seq_length tokens per text file (at most 5 % of it)
    patience: int | None = None  # stop after this many dev evaluations without a lower dev loss; None: all steps
    seed: int = 0
    train_encoder: bool = False  # also the encoder layers (continued MLM); the embeddings stay frozen
    mixed_precision: str = "no"
    checkpoint_dir: str | None = None  # resumable: checkpoints go here, a rerun continues from the latest
    checkpoint_every: int = 100


def head_parameters(model) -> list[str]:
    """Names of the parameters the head fit trains: the MLM head's transform and output bias, not the
    decoder weight (tied to the input embeddings, so part of the frozen base)."""
    head = get_path(model, spec_for_model_type(model.config.model_type).mlm_head)
    # by identity, not by name: a tied weight is listed under whichever name named_parameters meets first
    trained = {id(p) for p in head.parameters()} - {id(mlm_decoder(model).weight)}
    return [n for n, p in model.named_parameters() if id(p) in trained]


def trained_parameters(model, train_encoder: bool) -> list[str]:
    """The head's parameters, and with ``train_encoder`` every parameter outside the embeddings."""
    if not train_encoder:
        return head_parameters(model)
    frozen = {id(p) for p in get_path(model.base_model, spec_for_model_type(model.config.model_type).embeddings).parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in frozen]


def split_per_language(texts: list[Path], tokenizer, data: MLMData, seed: int):
    """(train blocks of all texts, {text stem: its held-out dev blocks}), each text split as a
    language adapter's MLM job splits it. A text too small to hold out a dev set (``split_mlm_blocks``
    then selects on part of train) is all training and has no dev entry."""
    stems = [text.stem for text in texts]
    if len(set(stems)) < len(stems):
        raise ValueError(f"each text file is one language, named by its file name: {[str(t) for t in texts]} repeat a name")
    train_parts, devs = [], {}
    for text in texts:
        blocks = build_mlm_dataset([text], tokenizer, data.max_seq_length)
        train, dev = split_blocks(blocks, data, seed)
        train_parts.append(train)
        if held_out_dev_blocks(len(blocks), data):
            devs[text.stem] = dev
    return datasets.concatenate_datasets(train_parts), devs


def dev_by_language(model, devs: dict, tokenizer, runtime, batch_size: int) -> dict[str, dict]:
    """Masked-LM dev loss and perplexity of each language's held-out blocks (the training loop's fixed dev masks)."""
    out = {}
    for language, dev in devs.items():
        metrics = evaluate_mlm(model, dev, MaskedLMCollator(tokenizer, seed=DEV_MASK_SEED), runtime, batch_size)
        out[language] = {"blocks": len(dev), "loss": metrics["loss"], "perplexity": metrics["perplexity"]}
    return out


def train_mlm_head(model_dir: str | Path, texts: list[str | Path], out_dir: str | Path, config: MLMHeadConfig = MLMHeadConfig(),
                   runtime=None, progress=None) -> dict[str, Any]:
    runtime = runtime or Runtime.local(mixed_precision=config.mixed_precision)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    if mlm_decoder(model).weight is not model.get_input_embeddings().weight:
        raise ValueError(f"{model_dir}: the decoder is not tied to the input embeddings (tie_word_embeddings must be true)")
    trainable = set(trained_parameters(model, config.train_encoder))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)
    train_config = TrainConfig(learning_rate=config.learning_rate, batch_size=config.batch_size, max_steps=config.steps,
                               warmup_ratio=config.warmup_ratio, eval_every=config.eval_every, seed=config.seed,
                               early_stopping_patience=config.patience, checkpoint_dir=config.checkpoint_dir,
                               checkpoint_every=config.checkpoint_every,
                               select_metric="loss", greater_is_better=False, log_every=max(1, config.steps // 20))
    data = MLMData(max_seq_length=config.max_seq_length, max_dev_blocks=config.dev_blocks)
    texts = [Path(t) for t in texts]
    train_blocks, devs = split_per_language(texts, tokenizer, data, config.seed)
    if not devs:
        raise ValueError(f"no text of {[str(t) for t in texts]} is large enough to hold out a dev set "
                         f"({MIN_BLOCKS_FOR_DEV} blocks of {config.max_seq_length} tokens)")
    model.to(runtime.device)
    before = dev_by_language(model, devs, tokenizer, runtime, config.batch_size)
    result, dev = train_mlm_blocks(model, train_blocks, datasets.concatenate_datasets(list(devs.values())), tokenizer,
                                   train_config, runtime, None, progress)
    after = dev_by_language(model, devs, tokenizer, runtime, config.batch_size)
    out_dir = Path(out_dir)
    atomic_save_pretrained(out_dir, model, tokenizer)
    base_record = Path(model_dir) / "mlm_head.json"
    record = {"config": asdict(config), "base": str(model_dir),
              "texts": [{"path": str(t), "sha256": sha256_file(t)} for t in texts],
              "train_blocks": len(train_blocks), "train_tokens_seen": result.steps * config.batch_size * config.max_seq_length,
              "dev": dev, "dev_by_language": {"before": before, "after": after}, "train": result.to_dict(),
              "trained_parameters": sorted(trainable),
              "trained_parameter_count": sum(p.numel() for n, p in model.named_parameters() if n in trainable),
              "base_record": json.loads(base_record.read_text()) if base_record.is_file() else None}
    atomic_write_json(out_dir / "mlm_head.json", record)
    return record
