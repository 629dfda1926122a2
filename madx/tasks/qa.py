"""Extractive QA (SQuAD -> XQuAD): the standard Hugging Face sliding-window recipe, evaluation
(SQuAD v1.1 F1/EM), and the task's registry entry ``TASK``.

A context longer than the window is split into overlapping windows (``max_length`` tokens,
``doc_stride`` tokens shared between neighbours); each window is one feature.

- ``prepare_train_features``: start/end token positions of the (first) gold answer, or the CLS
  index for windows that do not contain the whole answer.
- ``prepare_eval_features``: keeps ``example_id`` and the offset mapping, with every non-context
  position (question, special tokens, padding) set to None so it can never be predicted.
- ``postprocess_qa_predictions``: for every example, the best span over all its windows (top
  ``n_best`` starts x ends, end >= start, at most ``max_answer_length`` tokens, score =
  start logit + end logit), cut from the original context by character offsets.

Differences from the transformers example, each for a reason:
- the context's token range is found once per window from ``sequence_ids`` and the start/end
  search never leaves it (the example's forward search can walk into the question tokens when
  padding is on the left, where the context comes first);
- questions longer than ``max_question_length`` tokens are cut (as in the original BERT SQuAD
  code) instead of making the fast tokenizer fail mid-dataset;
- the predicted text is stripped of surrounding whitespace: SentencePiece tokenizers (XLM-R)
  give a word-initial piece offsets that include the space before the word ("▁world" in
  "Hello world" spans (5, 11)), so the raw cut would begin with a space.

Works with padding on the right (question first) or left (context first) and with or without
``token_type_ids``; windows are padded to ``max_length`` by default, so logits and offsets line
up position for position.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from madx.data import synthetic
from madx.data.squad import load_squad, load_squad_hub
from madx.evaluate import sharded_predictions
from madx.metrics import squad_scores
from madx.recipes import recipe, suite_defaults
from madx.runtime import Runtime
from madx.tasks.registry import TaskSpec

log = logging.getLogger(__name__)


def _check_window(tokenizer: Any, max_length: int, doc_stride: int, max_question_length: int) -> None:
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - max_question_length - specials  # context tokens per window, at worst
    if not 0 <= doc_stride < room:
        raise ValueError(
            f"doc_stride={doc_stride} must be >= 0 and smaller than the context room of a window: "
            f"max_length {max_length} - max_question_length {max_question_length} - {specials} special tokens = {room}"
        )


def _truncate_questions(questions: Sequence[str], tokenizer: Any, max_question_length: int) -> list[str]:
    out = [q.lstrip() for q in questions]  # leading spaces make some tokenizers emit empty pieces
    enc = tokenizer(out, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    cut = 0
    for i, offsets in enumerate(enc["offset_mapping"]):
        if len(offsets) > max_question_length:
            out[i] = out[i][: offsets[max_question_length - 1][1]]
            cut += 1
    if cut:
        log.warning("%d question(s) longer than %d tokens were cut to that length", cut, max_question_length)
    return out


def _tokenize(examples: dict, tokenizer: Any, max_length: int, doc_stride: int, max_question_length: int, padding: Any):
    _check_window(tokenizer, max_length, doc_stride, max_question_length)
    pad_on_right = tokenizer.padding_side == "right"
    questions = _truncate_questions(examples["question"], tokenizer, max_question_length)
    contexts = examples["context"]
    enc = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )
    return enc, (1 if pad_on_right else 0)


def _context_range(seq_ids: list[int | None], ctx: int) -> tuple[int, int]:
    idx = [k for k, s in enumerate(seq_ids) if s == ctx]
    return idx[0], idx[-1]


def prepare_train_features(
    examples: dict,
    tokenizer: Any,
    max_length: int = 384,
    doc_stride: int = 128,
    *,
    max_question_length: int = 64,
    padding: Any = "max_length",
) -> dict:
    """Batched ``Dataset.map`` function for training: adds ``start_positions``/``end_positions``
    (token indices of the first gold answer; the CLS index when the window does not contain it)
    to the tokenizer's inputs. Remove the example columns in the map call: one example can give
    several features."""
    enc, ctx = _tokenize(examples, tokenizer, max_length, doc_stride, max_question_length, padding)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offset_map = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offset_map):
        ids = enc["input_ids"][i]
        cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        answers = examples["answers"][sample_map[i]]
        if len(answers["answer_start"]) == 0:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        c0, c1 = _context_range(enc.sequence_ids(i), ctx)
        if not (offsets[c0][0] <= start_char and offsets[c1][1] >= end_char):
            starts.append(cls_index)  # the answer is not (wholly) inside this window
            ends.append(cls_index)
            continue
        # start: the last context token starting at or before start_char; end: the first token
        # from start on that reaches end_char. (Searching the end from the right, as the
        # example does, can cross the start when two tokens share offsets, as XLM-R's lone "▁"
        # and the next piece do at the start of a text: both (0, 1).)
        s = c0
        while s < c1 and offsets[s + 1][0] <= start_char:
            s += 1
        e = s
        while e < c1 and offsets[e][1] < end_char:
            e += 1
        starts.append(s)
        ends.append(e)
    enc["start_positions"] = starts
    enc["end_positions"] = ends
    return dict(enc)


def prepare_eval_features(
    examples: dict,
    tokenizer: Any,
    max_length: int = 384,
    doc_stride: int = 128,
    *,
    max_question_length: int = 64,
    padding: Any = "max_length",
) -> dict:
    """Batched ``Dataset.map`` function for evaluation: the tokenizer's inputs plus
    ``example_id`` and ``offset_mapping`` (None outside the context). Drop both columns before
    the model sees a batch."""
    enc, ctx = _tokenize(examples, tokenizer, max_length, doc_stride, max_question_length, padding)
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        seq_ids = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_map[i]])
        enc["offset_mapping"][i] = [o if seq_ids[k] == ctx else None for k, o in enumerate(enc["offset_mapping"][i])]
    return dict(enc)


def _column(obj: Any, name: str) -> list:
    if isinstance(obj, dict):
        return list(obj[name])
    try:
        return list(obj[name])  # datasets.Dataset column
    except (TypeError, KeyError, IndexError):
        return [row[name] for row in obj]  # a list of rows


def postprocess_qa_predictions(
    examples: Any,
    features: Any,
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Map window-level logits back to one answer string per example id.

    examples: rows/columns with ``id`` and ``context`` (a Dataset, a dict of lists, or a list of
        dicts); features: the output of ``prepare_eval_features`` (same forms).
    start_logits, end_logits: (num_features, T), position-aligned with the features' offsets.
    Returns {example id: predicted text} in example order; "" when no window offers a valid span.
    """
    ex_ids = [str(x) for x in _column(examples, "id")]
    contexts = _column(examples, "context")
    feat_ex = [str(x) for x in _column(features, "example_id")]
    feat_offsets = _column(features, "offset_mapping")
    if len(start_logits) != len(feat_ex) or len(end_logits) != len(feat_ex):
        raise ValueError(f"{len(start_logits)} start / {len(end_logits)} end logit rows for {len(feat_ex)} features")
    index = {k: i for i, k in enumerate(ex_ids)}
    per_example: dict[int, list[int]] = collections.defaultdict(list)
    for fi, eid in enumerate(feat_ex):
        if eid not in index:
            raise ValueError(f"feature {fi} belongs to example {eid!r}, which is not among the examples")
        per_example[index[eid]].append(fi)

    preds: dict[str, str] = {}
    for ei, eid in enumerate(ex_ids):
        best_score, best_span = -np.inf, None
        for fi in per_example[ei]:
            s_log = np.asarray(start_logits[fi], dtype=np.float64)
            e_log = np.asarray(end_logits[fi], dtype=np.float64)
            offsets = feat_offsets[fi]
            n = min(len(offsets), len(s_log), len(e_log))
            top_s = np.argsort(s_log[:n])[::-1][:n_best]
            top_e = np.argsort(e_log[:n])[::-1][:n_best]
            for a in top_s:
                if offsets[a] is None:
                    continue
                for b in top_e:
                    if offsets[b] is None or b < a or b - a + 1 > max_answer_length:
                        continue
                    score = s_log[a] + e_log[b]
                    if score > best_score:
                        best_score, best_span = score, (offsets[a][0], offsets[b][1])
        if best_span is None:
            preds[eid] = ""
        else:
            preds[eid] = contexts[ei][best_span[0] : best_span[1]].strip()
    return preds


QA_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TRAIN_INPUTS = (*QA_MODEL_INPUTS, "start_positions", "end_positions")


def evaluate_qa(
    model: nn.Module, examples, features, runtime: Runtime, batch_size: int = 32, n_best: int = 20, max_answer_length: int = 30,
    *, per_example: bool = False,
) -> dict[str, Any]:
    """SQuAD v1.1 F1 / EM (official normalisation) after the standard n-best post-processing.

    per_example: also return ``"per_example"``, what a bootstrap over test questions needs
    (``bench.report.significance``): each question's ``f1`` and ``exact_match`` (percent, in
    ``examples`` order; their means are the metrics), ``examples_sha256`` (which test set: a hash of
    the ids, questions and gold answers) and ``statistics`` (how each metric is recomputed from the
    columns). Off by default, so that the dev evaluations a training run records stay small.
    """

    def collate(rows):
        return {k: torch.tensor([row[k] for row in rows]) for k in QA_MODEL_INPUTS if k in rows[0]}

    def predict(model, batch, rows):
        out = model(**batch)
        starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        return list(zip(starts, ends))

    logits = sharded_predictions(model, features, collate, predict, runtime, batch_size)
    predictions = postprocess_qa_predictions(
        examples, features, np.stack([s for s, _ in logits]), np.stack([e for _, e in logits]), n_best, max_answer_length
    )
    references = {str(row["id"]): row["answers"]["text"] for row in examples}
    scores = squad_scores(predictions=predictions, references=references)
    metrics = {"f1": scores["f1"], "exact_match": scores["exact_match"], "n_questions": scores["n_questions"]}
    if per_example:
        import hashlib
        import json

        from madx.metrics.squad import exact_match_score, f1_score, metric_max_over_ground_truths

        # the official per-question scores that squad_scores averages (an unanswered question scores 0)
        f1 = np.array([100.0 * metric_max_over_ground_truths(f1_score, predictions[q], gold) if q in predictions else 0.0
                       for q, gold in references.items()])
        em = np.array([100.0 * metric_max_over_ground_truths(exact_match_score, predictions[q], gold) if q in predictions
                       else 0.0 for q, gold in references.items()])
        if not (np.isclose(f1.mean(), scores["f1"]) and np.isclose(em.mean(), scores["exact_match"])):
            raise RuntimeError(f"per-question scores average to F1 {f1.mean()} / EM {em.mean()}, "
                               f"not {scores['f1']} / {scores['exact_match']}")
        identity = json.dumps([[str(row["id"]), row["question"], list(row["answers"]["text"])] for row in examples],
                              ensure_ascii=False, separators=(",", ":"))
        metrics["per_example"] = {
            "unit": "question",
            "examples_sha256": hashlib.sha256(identity.encode("utf-8")).hexdigest(),
            "columns": {"f1": f1, "exact_match": em},
            "statistics": {"f1": {"name": "mean", "columns": ["f1"]},
                           "exact_match": {"name": "mean", "columns": ["exact_match"]}},
        }
    return metrics


def prepare_features(examples, tokenizer, train: bool, max_length: int = 384):
    """Examples -> windows (training: with answer positions; evaluation: with offsets)."""
    function = prepare_train_features if train else prepare_eval_features
    return examples.map(
        function, batched=True, remove_columns=examples.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "doc_stride": min(128, max_length // 3),
                   "max_question_length": min(64, max_length // 4)},
        desc=f"QA: {'train' if train else 'eval'} windows",
    )


def collate_train(rows: Sequence[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([row[k] for row in rows]) for k in TRAIN_INPUTS if k in rows[0]}


def _data_file(fields, language: str, split: str):
    if split == "train":
        return Path(fields["squad_train"])
    if split == "dev":
        return Path(fields["squad_dev"]) if fields.get("squad_dev") else None
    return Path(fields["xquad"]) / f"xquad.{language}.json"


def _write_synthetic(root, languages, sizes) -> None:
    for language in languages:
        synthetic.write_squad(root / "xquad" / f"xquad.{language}.json", language, sizes["qa_eval"], seed=3)
    synthetic.write_squad(root / "squad" / "train.json", "en", sizes["qa_train"], seed=0)
    synthetic.write_squad(root / "squad" / "dev.json", "en", sizes["qa_eval"], seed=1)


def _load_hub(name: str, config: str | None, split: str):
    split = {"dev": "validation", "test": "validation"}.get(split, split)  # XQuAD has only "validation"
    return load_squad_hub(name, split, name=config) if config else load_squad_hub(name, split)


TASK = TaskSpec(
    name="qa",
    title="Extractive question answering (SQuAD v1.1 -> XQuAD)",
    model_class="AutoModelForQuestionAnswering",
    data_fields=("squad_train", "squad_dev", "xquad"),
    load_file=load_squad,
    load_hub=_load_hub,
    data_file=_data_file,
    prepare_features=prepare_features,
    collator=lambda tokenizer: collate_train,
    evaluate=lambda model, examples, features, tokenizer, runtime, batch_size=32, per_example=False: evaluate_qa(
        model, examples, features, runtime, batch_size, per_example=per_example),
    select_metric="f1",
    metrics=("f1", "exact_match"),
    default_max_length=recipe("adapters", "task", "qa").max_length,
    # below 10 tokens prepare_features' window (question L//4, stride L//3, 4 special tokens) has no room for context
    min_length=10,
    example_noun="questions",
    # not in the paper (madx.recipes says which values are ours)
    hyperparameters={**suite_defaults("task", "qa"), "eval_every": None, "max_train_questions": None,
                     "max_eval_questions": None},
    write_synthetic=_write_synthetic,
    synthetic_fields={"squad_train": "squad/train.json", "squad_dev": "squad/dev.json", "xquad": "xquad"},
    assumed_train_examples=lambda language: 88000,
    assumed_tokens_per_example=200,
)
