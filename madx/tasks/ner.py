"""NER as token classification (WikiANN, seqeval F1): word -> sub-token label alignment and back,
evaluation, and the task's registry entry ``TASK``.

Forward (``prepare_ner_features``): sentences arrive split into words (WikiANN tokens) and are
tokenised with ``is_split_into_words=True``. The first sub-token of every word carries the word's
tag id; later sub-tokens and special tokens get -100 (ignored by the loss), as in MAD-X and
transformers' ``run_ner.py``. Sentences longer than ``max_length`` sub-tokens are truncated; they
are counted and a warning says how many.

Backward (``word_level_predictions``): the prediction for a word is the prediction at its first
sub-token. Words with no prediction -- cut by truncation, or words the tokenizer turned into no
sub-token at all (e.g. a lone control character under a BERT normaliser) -- are predicted ``O``
and counted, so the predicted and gold sequences always have equal length for seqeval.

The features keep two bookkeeping columns besides the model inputs: ``word_ids`` (per sub-token,
the index of its word, -1 for special tokens) and ``num_words``. ``NERCollator`` pads the model
inputs and drops those columns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from madx.data import synthetic
from madx.data.wikiann import LABEL2ID, NER_TAGS, load_wikiann, load_wikiann_hub, wikiann_path
from madx.evaluate import sharded_predictions
from madx.metrics import ner_scores
from madx.recipes import recipe, suite_defaults
from madx.runtime import Runtime
from madx.tasks.registry import TaskSpec

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


@dataclass(frozen=True)
class NERFeatureStats:
    sentences: int
    truncated_sentences: int  # sentences that lost at least one word to max_length
    truncated_words: int  # words with no sub-token left after truncation
    empty_words: int  # words the tokenizer turned into no sub-token at all


@dataclass(frozen=True)
class NERPredictionStats:
    sentences: int
    words: int
    words_without_prediction: int  # truncated or empty words, predicted "O"


def tokenize_and_align_labels(examples: dict, tokenizer: Any, max_length: int = 128) -> dict:
    """Batched ``Dataset.map`` function: ``tokens``/``ner_tags`` -> model inputs + ``labels``
    (first sub-token of each word labelled, -100 elsewhere) + ``word_ids`` + ``num_words``.
    ``ner_tags`` may be ids or tag strings."""
    enc = tokenizer(examples["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    labels, word_ids_col = [], []
    for i, tags in enumerate(examples["ner_tags"]):
        tags = [LABEL2ID[t] if isinstance(t, str) else int(t) for t in tags]
        row, wids, prev = [], [], None
        for w in enc.word_ids(i):
            if w is None:
                row.append(IGNORE_INDEX)
                wids.append(-1)
            else:
                row.append(tags[w] if w != prev else IGNORE_INDEX)
                wids.append(w)
            prev = w
        labels.append(row)
        word_ids_col.append(wids)
    out = dict(enc)
    out["labels"] = labels
    out["word_ids"] = word_ids_col
    out["num_words"] = [len(t) for t in examples["tokens"]]
    return out


def feature_stats(features: datasets.Dataset | Sequence[dict]) -> NERFeatureStats:
    """Count truncated sentences/words and empty words in features made by this module."""
    rows = zip(features["word_ids"], features["num_words"]) if isinstance(features, datasets.Dataset) else (
        (f["word_ids"], f["num_words"]) for f in features
    )
    n = trunc_s = trunc_w = empty = 0
    for wids, nw in rows:
        n += 1
        seen = {w for w in wids if w >= 0}
        last = max(seen, default=-1)
        lost = nw - 1 - last  # words after the last one that kept a sub-token
        if lost > 0:
            trunc_s += 1
            trunc_w += lost
        empty += (last + 1) - len(seen)  # words inside the kept range with no sub-token
    return NERFeatureStats(sentences=n, truncated_sentences=trunc_s, truncated_words=trunc_w, empty_words=empty)


def prepare_ner_features(
    dataset: datasets.Dataset, tokenizer: Any, max_length: int = 128, *, num_proc: int | None = None
) -> tuple[datasets.Dataset, NERFeatureStats]:
    """Tokenise a ``tokens``/``ner_tags`` dataset for token classification (see module doc).
    Returns the features and counts; warns when sentences were truncated."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("NER alignment needs a fast tokenizer (word_ids() is only available there)")
    feats = dataset.map(
        tokenize_and_align_labels,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        desc=f"NER: tokenise and align (max_length={max_length})",
    )
    stats = feature_stats(feats)
    if stats.truncated_sentences:
        log.warning(
            "%d of %d sentences are longer than max_length=%d sub-tokens and were truncated (%d words lost; "
            "they will be predicted 'O')",
            stats.truncated_sentences, stats.sentences, max_length, stats.truncated_words,
        )
    if stats.empty_words:
        log.warning("%d words produced no sub-token with this tokenizer; they will be predicted 'O'", stats.empty_words)
    return feats, stats


class NERCollator:
    """Pad ``input_ids``/``attention_mask``/``token_type_ids`` (pad id, 0) and ``labels`` (-100)
    to the longest row; other columns (``word_ids``, ``num_words``) are dropped."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = None):
        self.pad_id = tokenizer.pad_token_id
        self.left = tokenizer.padding_side == "left"
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        T = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pads = {"input_ids": self.pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX}
        out = {}
        for key, pad in pads.items():
            if key not in features[0]:
                continue
            t = torch.full((len(features), T), pad, dtype=torch.long)  # (B, T)
            for i, f in enumerate(features):
                v = torch.as_tensor(f[key], dtype=torch.long)
                if self.left:
                    t[i, T - len(v) :] = v
                else:
                    t[i, : len(v)] = v
            out[key] = t
        return out


def word_level_predictions(
    predictions: Sequence[Any] | np.ndarray | torch.Tensor,
    word_ids: Sequence[Sequence[int]],
    num_words: Sequence[int],
    *,
    id2label: Sequence[str] = NER_TAGS,
    attention_mask: Sequence[Sequence[int]] | None = None,
) -> tuple[list[list[str]], NERPredictionStats]:
    """Token-level predictions -> one tag string per word.

    predictions: per feature, either predicted ids (T,) or logits (T, C); a padded (B, T[, C])
        array/tensor works too (right padding; for left padding pass ``attention_mask`` so the
        real tokens can be found).
    word_ids, num_words: the columns of the features from ``prepare_ner_features``.
    Returns the word-level tags (len == num_words per sentence) and how many words had no
    prediction and were given "O".
    """
    if len(predictions) != len(word_ids) or len(word_ids) != len(num_words):
        raise ValueError(f"lengths differ: {len(predictions)} predictions, {len(word_ids)} word_ids, {len(num_words)} num_words")
    out: list[list[str]] = []
    missing = total = 0
    for i, (pred, wids, nw) in enumerate(zip(predictions, word_ids, num_words)):
        p = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
        if p.ndim == 2:  # (T, C) logits
            p = p.argmax(-1)
        if attention_mask is not None:
            p = p[np.asarray(attention_mask[i], dtype=bool)]
        if len(p) < len(wids):
            raise ValueError(f"feature {i}: {len(p)} predictions for {len(wids)} sub-tokens")
        tags: list[str | None] = [None] * nw
        for pos, w in enumerate(wids):
            if w >= 0 and tags[w] is None:
                tags[w] = id2label[int(p[pos])]
        missing += sum(t is None for t in tags)
        total += nw
        out.append([t if t is not None else "O" for t in tags])
    if missing:
        log.warning("%d of %d words had no prediction (truncated or no sub-token); predicted 'O'", missing, total)
    return out, NERPredictionStats(sentences=len(out), words=total, words_without_prediction=missing)


def gold_word_tags(dataset: datasets.Dataset | Sequence[dict], *, id2label: Sequence[str] = NER_TAGS) -> list[list[str]]:
    """The ``ner_tags`` of a tokens/ner_tags dataset as tag strings, for seqeval."""
    tags = dataset["ner_tags"] if isinstance(dataset, datasets.Dataset) else [r["ner_tags"] for r in dataset]
    return [[t if isinstance(t, str) else id2label[t] for t in s] for s in tags]


def evaluate_ner(
    model: nn.Module, examples, features, tokenizer, runtime: Runtime, batch_size: int = 32, *, per_example: bool = False
) -> dict[str, Any]:
    """Entity-level micro P/R/F1 (seqeval, conlleval semantics) on word-level tags, in percent.

    per_example: also return ``"per_example"``, what a bootstrap over test sentences needs
    (``bench.report.significance``): each sentence's entity counts ``tp``, ``fp``, ``fn`` (the
    counts micro-F1 is computed from, so F1 can be recomputed on any resample of the sentences),
    ``examples_sha256`` (which test set: a hash of its words and gold tags), and ``statistics``
    (how each metric is recomputed from those columns). Off by default, so that the dev evaluations
    a training run records stay small.
    """
    collator = NERCollator(tokenizer)

    def predict(model, batch, rows):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits  # (B, T, C)
        ids = logits.argmax(-1).cpu().numpy()
        return [ids[i, : len(row["input_ids"])] for i, row in enumerate(rows)]

    predictions = sharded_predictions(model, features, collator, predict, runtime, batch_size)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    words, stats = word_level_predictions(predictions, features["word_ids"], features["num_words"], id2label=id2label)
    gold = gold_word_tags(examples)
    scores = ner_scores(predictions=words, references=gold)
    metrics = {
        "f1": 100 * scores["f1"],
        "precision": 100 * scores["precision"],
        "recall": 100 * scores["recall"],
        "accuracy": 100 * scores["accuracy"],
        "n_sentences": scores["n_sentences"],
        "n_gold_entities": scores["n_gold_entities"],
        "words_without_prediction": stats.words_without_prediction,
    }
    if per_example:
        import hashlib
        import json

        # the same scorer, one sentence at a time (entities never cross sentences, so the counts add up)
        counts = np.zeros((len(gold), 3), dtype=np.int32)  # (sentences, [tp, fp, fn])
        for i, (predicted, reference) in enumerate(zip(words, gold)):
            if reference:  # a sentence without words has no entity (and ner_scores refuses it)
                one = ner_scores(predictions=[predicted], references=[reference])
                correct = one["n_correct_entities"]
                counts[i] = (correct, one["n_pred_entities"] - correct, one["n_gold_entities"] - correct)
        totals = (scores["n_correct_entities"], scores["n_pred_entities"] - scores["n_correct_entities"],
                  scores["n_gold_entities"] - scores["n_correct_entities"])
        if tuple(int(x) for x in counts.sum(axis=0)) != totals:
            raise RuntimeError(f"per-sentence entity counts {counts.sum(axis=0).tolist()} do not add up to {list(totals)}")
        tokens = examples["tokens"] if isinstance(examples, datasets.Dataset) else [row["tokens"] for row in examples]
        identity = json.dumps([[list(t) for t in tokens], gold], ensure_ascii=False, separators=(",", ":"))
        metrics["per_example"] = {
            "unit": "sentence",
            "examples_sha256": hashlib.sha256(identity.encode("utf-8")).hexdigest(),
            "columns": {"tp": counts[:, 0], "fp": counts[:, 1], "fn": counts[:, 2]},
            "statistics": {"f1": {"name": "micro_f1", "columns": ["tp", "fp", "fn"]}},
        }
    return metrics


HIGH_RESOURCE = ("en", "ja", "zh", "ar")  # the paper's sources with ~20k WikiANN training sentences


def _write_synthetic(root, languages, sizes) -> None:
    for language in languages:
        for split, seed in (("train", 0), ("dev", 1), ("test", 2)):
            synthetic.write_wikiann(root / "wikiann" / f"{split}-{language}.tsv", language, sizes[f"ner_{split}"], seed=seed)


TASK = TaskSpec(
    name="ner",
    title="Named entity recognition (WikiANN)",
    model_class="AutoModelForTokenClassification",
    labels=NER_TAGS,
    data_fields=("wikiann",),
    load_file=load_wikiann,
    load_hub=lambda name, config, split: load_wikiann_hub(config or name, split),
    data_file=lambda fields, language, split: wikiann_path(fields["wikiann"], language, split),
    prepare_features=lambda examples, tokenizer, train, max_length: prepare_ner_features(examples, tokenizer, max_length)[0],
    collator=NERCollator,
    evaluate=evaluate_ner,
    select_metric="f1",
    metrics=("f1", "precision", "recall"),
    default_max_length=recipe("adapters", "task", "ner").max_length,
    example_noun="sentences",
    # §5.2 (madx.recipes): 100 epochs, batch 16 (8 for low-resource training sets), lr 1e-4 / 5e-5
    hyperparameters={**suite_defaults("task", "ner"), "eval_every": None, "max_train_sentences": None,
                     "max_eval_sentences": None},
    low_resource_below=5000,
    write_synthetic=_write_synthetic,
    synthetic_fields={"wikiann": "wikiann"},
    assumed_train_examples=lambda language: 20000 if language in HIGH_RESOURCE else 1000,
    assumed_tokens_per_example=32,
)
