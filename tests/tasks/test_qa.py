"""madx.tasks.qa: windows, gold positions, and the gold-logits round trip back to the text."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest

from madx.data.squad import squad_features
from madx.data.tokenizer import build_tiny_tokenizer, synthetic_corpus
from madx.tasks.qa import postprocess_qa_predictions, prepare_eval_features, prepare_train_features

TEXTS = synthetic_corpus("en", 300) + synthetic_corpus("de", 300)
WINDOW = dict(max_length=64, doc_stride=16, max_question_length=16)
WORDS = [w.strip(".").lower() for s in synthetic_corpus("en", 60, seed=9) for w in s.split()]


def span(words, i, j):
    """(answer_start, text) of words[i:j] in " ".join(words)."""
    return len(" ".join(words[:i])) + (1 if i else 0), " ".join(words[i:j])


def make_examples():
    long_ctx = " ".join(WORDS[:150])
    short_words = WORDS[200:215]
    rows = []
    for qid, ctx, (start, text) in [
        ("late", long_ctx, span(WORDS, 120, 123)),  # far beyond the first window
        ("middle", long_ctx, span(WORDS, 40, 42)),
        ("first", long_ctx, span(WORDS, 0, 1)),  # offset 0: XLM-R-style "▁" quirk
        ("last", long_ctx, span(WORDS, 149, 150)),
        ("short", " ".join(short_words), span(short_words, 5, 9)),
    ]:
        assert ctx[start : start + len(text)] == text
        rows.append({"id": qid, "title": "t", "context": ctx, "question": " " + " ".join(WORDS[300:305]) + "?",
                     "answers": {"text": [text], "answer_start": [start]}})
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return datasets.Dataset.from_dict(cols, features=squad_features())


TOKENIZERS = [
    ("unigram", False, "right"),
    ("unigram", False, "left"),
    ("wordpiece", True, "right"),
    ("wordpiece", True, "left"),
]


@pytest.fixture(scope="module", params=TOKENIZERS, ids=lambda p: "-".join(map(str, p)))
def tok(request):
    model, tti, side = request.param
    return build_tiny_tokenizer(TEXTS, vocab_size=400, model=model, token_type_ids=tti, padding_side=side)


@pytest.fixture(scope="module")
def xlmr_like():
    return build_tiny_tokenizer(TEXTS, vocab_size=400)


def featurise(ds, tok, **kw):
    kw = {**WINDOW, **kw}
    args = dict(batched=True, remove_columns=ds.column_names, fn_kwargs={"tokenizer": tok, **kw})
    return ds.map(prepare_train_features, **args), ds.map(prepare_eval_features, **args)


def gold_logits(train, T):
    start = np.zeros((len(train), T), dtype=np.float32)
    end = np.zeros((len(train), T), dtype=np.float32)
    for i, f in enumerate(train):
        cls = f["input_ids"].index(0)
        if f["start_positions"] != cls:
            start[i, f["start_positions"]] = 10.0
            end[i, f["end_positions"]] = 10.0
    return start, end


def test_round_trip_gold_logits_give_gold_text(tok):
    ds = make_examples()
    train, evalf = featurise(ds, tok)
    assert train["input_ids"] == evalf["input_ids"] and len(train) > len(ds)
    assert all(len(x) == 64 for x in train["input_ids"])
    ex_of = list(evalf["example_id"])
    late = [i for i, e in enumerate(ex_of) if e == "late"]
    with_answer = [i for i in late if train[i]["start_positions"] != train[i]["input_ids"].index(0)]
    assert len(late) >= 3 and with_answer and with_answer[0] != late[0]
    start, end = gold_logits(train, 64)
    preds = postprocess_qa_predictions(ds, evalf, start, end)
    assert preds == {r["id"]: r["answers"]["text"][0] for r in ds}
    if tok.padding_side == "right" and "token_type_ids" in tok.model_input_names:
        f = train[0]
        seq = [t for t, m in zip(f["token_type_ids"], f["attention_mask"]) if m]
        assert seq[0] == 0 and seq[-1] == 1  # question 0, context 1


def test_eval_offsets_only_on_context(tok):
    ds = make_examples()
    _, evalf = featurise(ds, tok)
    ctx_index = 1 if tok.padding_side == "right" else 0
    for i in range(len(ds)):
        enc = tok(
            ds[i]["question"].lstrip() if ctx_index else ds[i]["context"],
            ds[i]["context"] if ctx_index else ds[i]["question"].lstrip(),
            truncation="only_second" if ctx_index else "only_first",
            max_length=64, stride=16, return_overflowing_tokens=True, padding="max_length",
        )
        feats = [f for f in evalf if f["example_id"] == ds[i]["id"]]
        assert len(feats) == len(enc["input_ids"])
        for w, f in enumerate(feats):
            seq = enc.sequence_ids(w)
            assert [o is not None for o in f["offset_mapping"]] == [s == ctx_index for s in seq]


def test_windows_without_answer_and_unanswerable_point_at_cls(xlmr_like):
    tok = xlmr_like
    ds = make_examples()
    ds = ds.map(lambda r: {"answers": {"text": [], "answer_start": []}} if r["id"] == "short" else {})
    train, evalf = featurise(ds, tok)
    no_answer = 0
    for f in train:
        cls = f["input_ids"].index(tok.cls_token_id)
        if f["start_positions"] == cls:
            assert f["end_positions"] == cls
            no_answer += 1
        else:
            assert f["start_positions"] <= f["end_positions"]
    assert no_answer > len(ds)  # the long context's windows mostly miss each answer
    short = [i for i, e in enumerate(evalf["example_id"]) if e == "short"]
    assert short and all(train[i]["start_positions"] == train[i]["end_positions"] == 0 for i in short)


def test_long_questions_are_cut_not_fatal(caplog, xlmr_like):
    tok = xlmr_like
    ds = make_examples().select([4])
    ds = ds.map(lambda r: {"question": " ".join(WORDS[:80]) + "?"})
    with caplog.at_level(logging.WARNING, logger="madx.tasks.qa"):
        train, evalf = featurise(ds, tok)
    assert any("cut to that length" in r.getMessage() for r in caplog.records)
    start, end = gold_logits(train, 64)
    assert postprocess_qa_predictions(ds, evalf, start, end) == {"short": ds[0]["answers"]["text"][0]}


def test_window_arguments_are_checked(xlmr_like):
    with pytest.raises(ValueError, match="doc_stride=44 must be"):
        featurise(make_examples(), xlmr_like, doc_stride=44)  # room: 64 - 16 - 4 specials = 44


def test_postprocess_edge_cases():
    examples = {"id": ["a", "b"], "context": ["hello world", "xyz"]}
    features = [
        {"example_id": "a", "offset_mapping": [None, [0, 5], [5, 11], None]},
        {"example_id": "b", "offset_mapping": [None, None, None, None]},
    ]
    start = np.array([[9.0, 1.0, 5.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
    end = np.array([[9.0, 4.0, 1.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
    # best valid: start 2 (5) + end 2 (1) = 6 vs start 1 + end 1 = 5 vs start 1 + end 2 = 2
    assert postprocess_qa_predictions(examples, features, start, end) == {"a": "world", "b": ""}
    # end before start is never chosen, and max_answer_length bounds the span
    start = np.array([[0.0, 0.0, 8.0, 0.0], [0.0] * 4])
    end = np.array([[0.0, 8.0, 0.0, 0.0], [0.0] * 4])
    assert postprocess_qa_predictions(examples, features, start, end)["a"] == "world"
    start = np.array([[0.0, 8.0, 0.0, 0.0], [0.0] * 4])
    end = np.array([[0.0, 0.0, 8.0, 0.0], [0.0] * 4])
    assert postprocess_qa_predictions(examples, features, start, end)["a"] == "hello world"
    assert postprocess_qa_predictions(examples, features, start, end, max_answer_length=1)["a"] in {"hello", "world"}
    with pytest.raises(ValueError, match="not among the examples"):
        postprocess_qa_predictions({"id": ["a"], "context": ["x"]}, features, start, end)
    with pytest.raises(ValueError, match="logit rows"):
        postprocess_qa_predictions(examples, features, start[:1], end)


def test_evaluate_qa_per_example_scores_average_to_the_metrics(xlmr_like, monkeypatch):
    """per_example=True: each question's official F1 / EM, in the examples' order (their means are the
    metrics), and a stable hash of the test set; off by default so dev evaluations stay small."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForQuestionAnswering

    import madx.tasks.qa as qa
    from madx.runtime import Runtime

    tok = xlmr_like
    ds = make_examples()
    _, evalf = featurise(ds, tok)
    torch.manual_seed(0)
    model = XLMRobertaForQuestionAnswering(XLMRobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=80, type_vocab_size=1, pad_token_id=tok.pad_token_id)).eval()
    runtime = Runtime.local("cpu")
    plain = qa.evaluate_qa(model, ds, evalf, runtime)
    assert "per_example" not in plain
    metrics = qa.TASK.evaluate(model, ds, evalf, tok, runtime, per_example=True)  # the registry entry passes it on
    record = metrics.pop("per_example")
    assert metrics == pytest.approx(plain) and record["unit"] == "question"
    assert record["columns"]["f1"].mean() == pytest.approx(metrics["f1"])
    assert record["statistics"] == {"f1": {"name": "mean", "columns": ["f1"]},
                                    "exact_match": {"name": "mean", "columns": ["exact_match"]}}
    # known answers: the gold text, half of a two-word answer, a wrong word, and the gold text in other case
    gold = {r["id"]: r["answers"]["text"][0] for r in ds}
    answers = {"late": gold["late"], "middle": gold["middle"].split()[0], "first": "zzz", "last": "", "short": gold["short"].upper()}
    monkeypatch.setattr(qa, "postprocess_qa_predictions", lambda *args, **kwargs: answers)
    record = qa.evaluate_qa(model, ds, evalf, runtime, per_example=True)["per_example"]
    assert [r["id"] for r in ds] == ["late", "middle", "first", "last", "short"]
    assert record["columns"]["f1"].tolist() == pytest.approx([100.0, 100 * 2 * 0.5 / 1.5, 0.0, 0.0, 100.0])
    assert record["columns"]["exact_match"].tolist() == [100.0, 0.0, 0.0, 0.0, 100.0]
    monkeypatch.undo()
    again = qa.evaluate_qa(model, ds.select(range(4)), evalf.filter(lambda f: f["example_id"] != "short"), runtime,
                           per_example=True)["per_example"]
    assert again["examples_sha256"] != record["examples_sha256"]  # another test set, another hash
