"""madx.tasks.ner: first-sub-token labels, truncation counts, predictions back to words."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest
import torch

from madx.data.tokenizer import build_tiny_tokenizer, synthetic_corpus
from madx.data.wikiann import LABEL2ID, NER_TAGS, ner_features
from madx.tasks.ner import (
    NERCollator,
    feature_stats,
    gold_word_tags,
    prepare_ner_features,
    tokenize_and_align_labels,
    word_level_predictions,
)

TEXTS = synthetic_corpus("en", 200) + synthetic_corpus("sw", 200)


@pytest.fixture(scope="module", params=["unigram", "wordpiece"])
def tok(request):
    return build_tiny_tokenizer(TEXTS, vocab_size=250, model=request.param)


def make_dataset():
    words = [s.rstrip(".").split() for s in synthetic_corpus("sw", 6, seed=2)]
    words[0] = ["Hahotopapamo", "ritina", "Qaqoraqotomito", "x"]  # long words split into pieces
    rows = {"tokens": [], "ner_tags": []}
    for i, ws in enumerate(words):
        rows["tokens"].append(ws)
        rows["ner_tags"].append([LABEL2ID[NER_TAGS[(i + j) % len(NER_TAGS)]] for j in range(len(ws))])
    return datasets.Dataset.from_dict(rows, features=ner_features())


def test_first_sub_token_labelled_rest_ignored(tok):
    ds = make_dataset()
    feats, stats = prepare_ner_features(ds, tok, max_length=128)
    assert stats.truncated_sentences == 0 and stats.empty_words == 0
    assert {"input_ids", "attention_mask", "labels", "word_ids", "num_words"} <= set(feats.column_names)
    multi = 0
    for ex, f in zip(ds, feats):
        wids = tok(ex["tokens"], is_split_into_words=True).word_ids()
        assert f["word_ids"] == [-1 if w is None else w for w in wids]
        seen = set()
        for lab, w in zip(f["labels"], wids):
            if w is None:
                assert lab == -100
            elif w in seen:
                assert lab == -100
                multi += 1
            else:
                assert lab == ex["ner_tags"][w]
                seen.add(w)
        assert seen == set(range(len(ex["tokens"]))) and f["num_words"] == len(ex["tokens"])
    assert multi > 0  # some words really were split


def test_string_tags_accepted(tok):
    out = tokenize_and_align_labels({"tokens": [["a", "b"]], "ner_tags": [["B-PER", "I-PER"]]}, tok)
    assert [x for x in out["labels"][0] if x != -100] == [1, 2]


def test_truncation_is_counted_and_lost_words_predicted_O(tok, caplog):
    ds = make_dataset()
    long = ["qaqo"] * 60
    ds = datasets.Dataset.from_dict(
        {"tokens": list(ds["tokens"]) + [long], "ner_tags": list(ds["ner_tags"]) + [[LABEL2ID["B-LOC"]] * 60]}, features=ner_features()
    )
    with caplog.at_level(logging.WARNING, logger="madx.tasks.ner"):
        feats, stats = prepare_ner_features(ds, tok, max_length=24)
    assert stats.sentences == len(ds) and stats.truncated_sentences >= 1
    assert all(len(x) <= 24 for x in feats["input_ids"])
    kept = max(feats[-1]["word_ids"]) + 1
    assert kept < 60
    assert any("truncated" in r.getMessage() for r in caplog.records)
    # oracle predictions: the gold label at every labelled position
    preds = [[lab if lab != -100 else 0 for lab in f] for f in feats["labels"]]
    words, pstats = word_level_predictions(preds, feats["word_ids"], feats["num_words"])
    assert [len(w) for w in words] == [len(t) for t in ds["tokens"]]
    assert words[-1] == ["B-LOC"] * kept + ["O"] * (60 - kept)
    assert pstats.words_without_prediction == stats.truncated_words >= 60 - kept
    gold = gold_word_tags(ds)
    for w, g, f in zip(words, gold, feats):
        n = max(f["word_ids"]) + 1
        assert w[:n] == g[:n]


def test_words_without_sub_tokens():
    t = build_tiny_tokenizer(TEXTS, vocab_size=250, model="wordpiece")
    ds = datasets.Dataset.from_dict({"tokens": [["qaqo", " ", "raqoto"]], "ner_tags": [[1, 0, 5]]}, features=ner_features())
    feats, stats = prepare_ner_features(ds, t)
    assert stats.empty_words == 1 and stats.truncated_words == 0
    preds = [[lab if lab != -100 else 0 for lab in f] for f in feats["labels"]]
    words, pstats = word_level_predictions(preds, feats["word_ids"], feats["num_words"])
    assert words == [["B-PER", "O", "B-LOC"]] and pstats.words_without_prediction == 1


def test_logits_padded_batches_and_left_padding(tok):
    ds = make_dataset()
    feats, _ = prepare_ner_features(ds, tok)
    batch = NERCollator(tok)([feats[i] for i in range(len(feats))])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["labels"].dtype == torch.long
    lengths = [len(x) for x in feats["input_ids"]]
    T = batch["input_ids"].shape[1]
    assert T == max(lengths)
    for i, n in enumerate(lengths):
        assert (batch["labels"][i, n:] == -100).all() and (batch["input_ids"][i, n:] == tok.pad_token_id).all()
    # one-hot logits (B, T, C) that put the gold label at each labelled position
    labels = batch["labels"]
    logits = torch.nn.functional.one_hot(labels.clamp(min=0), len(NER_TAGS)).float()
    words, _ = word_level_predictions(logits, feats["word_ids"], feats["num_words"])
    assert words == gold_word_tags(ds)
    # left padding: the real tokens are found through the attention mask
    left = NERCollator(type("T", (), {"pad_token_id": tok.pad_token_id, "padding_side": "left"})())(list(feats))
    assert (left["input_ids"][:, -1] == tok.sep_token_id).all()
    lp = torch.nn.functional.one_hot(left["labels"].clamp(min=0), len(NER_TAGS))
    words, _ = word_level_predictions(lp.numpy(), feats["word_ids"], feats["num_words"], attention_mask=left["attention_mask"].tolist())
    assert words == gold_word_tags(ds)


def test_prediction_errors_and_stats_from_rows(tok):
    feats, stats = prepare_ner_features(make_dataset(), tok)
    assert feature_stats(list(feats)) == stats
    with pytest.raises(ValueError, match="lengths differ"):
        word_level_predictions([np.zeros(3)], feats["word_ids"], feats["num_words"])
    with pytest.raises(ValueError, match="predictions for"):
        word_level_predictions([np.zeros(1)] * len(feats), feats["word_ids"], feats["num_words"])


def test_evaluate_ner_per_example_counts_give_the_metric(tok):
    """per_example=True: each sentence's entity counts (the micro-F1 of their sums is the metric), a stable
    hash of the test set; off by default so dev evaluations stay small."""
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    from madx.metrics import ner_scores
    from madx.runtime import Runtime
    from madx.tasks.ner import evaluate_ner

    ds = make_dataset()
    feats, _ = prepare_ner_features(ds, tok)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=37, max_position_embeddings=160, type_vocab_size=1,
                              pad_token_id=tok.pad_token_id, num_labels=len(NER_TAGS), id2label=dict(enumerate(NER_TAGS)))
    model = XLMRobertaForTokenClassification(config).eval()
    runtime = Runtime.local("cpu")
    plain = evaluate_ner(model, ds, feats, tok, runtime)
    assert "per_example" not in plain
    metrics = evaluate_ner(model, ds, feats, tok, runtime, batch_size=2, per_example=True)
    record = metrics.pop("per_example")
    assert metrics == pytest.approx(plain)
    tp, fp, fn = (record["columns"][k] for k in ("tp", "fp", "fn"))
    assert len(tp) == len(ds) and record["unit"] == "sentence"
    assert tp.sum() + fn.sum() == metrics["n_gold_entities"] > 0 and tp.sum() + fp.sum() > 0  # entities predicted
    f1 = 100 * 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()) if tp.sum() + fp.sum() + fn.sum() else 100.0
    assert f1 == pytest.approx(metrics["f1"])
    # each sentence's counts are that sentence's own score
    words, _ = word_level_predictions(
        [np.asarray(x) for x in _predicted_ids(model, feats, tok)], feats["word_ids"], feats["num_words"])
    gold = gold_word_tags(ds)
    for i in range(len(ds)):
        one = ner_scores(predictions=[words[i]], references=[gold[i]])
        assert (tp[i], fp[i], fn[i]) == (one["n_correct_entities"], one["n_pred_entities"] - one["n_correct_entities"],
                                         one["n_gold_entities"] - one["n_correct_entities"])
    assert record["statistics"] == {"f1": {"name": "micro_f1", "columns": ["tp", "fp", "fn"]}}
    again = evaluate_ner(model, ds, feats, tok, runtime, per_example=True)["per_example"]
    assert again["examples_sha256"] == record["examples_sha256"]
    other = evaluate_ner(model, ds.select(range(3)), prepare_ner_features(ds.select(range(3)), tok)[0], tok, runtime,
                         per_example=True)["per_example"]
    assert other["examples_sha256"] != record["examples_sha256"]  # another test set, another hash


def _predicted_ids(model, feats, tok):
    batch = NERCollator(tok)([feats[i] for i in range(len(feats))])
    with torch.no_grad():
        ids = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
    return [ids[i, : len(feats[i]["input_ids"])] for i in range(len(feats))]
