"""The task registry: lookups with did-you-mean, and a third task added as one spec + one call,
then trained and evaluated through the same phases as NER and QA."""

from __future__ import annotations

import datasets
import pytest
import torch

import madx
from madx.adapters import AdapterConfig
from madx.data import synthetic
from madx.data.tokenizer import build_tiny_tokenizer
from madx.evaluate import sharded_predictions
from madx.phases import evaluate_task, prepare_task_data, train_task
from madx.runtime import Runtime
from madx.tasks.ner import NERCollator, prepare_ner_features, word_level_predictions
from madx.tasks.registry import TaskSpec, UnknownTaskError, get_task, register_task, task_names, unregister_task
from madx.train import TrainConfig
from tests.conftest import tiny_model

POS_TAGS = ("NOUN", "VERB", "PUNCT")


def _pos_examples(n=24):
    """Toy POS data: a word's tag is a function of the word, so a tagger can learn it exactly."""
    rows = []
    for tokens, _ in synthetic.ner_sentences("en", n):
        rows.append({"tokens": tokens, "ner_tags": [2 if t == "." else len(t) % 2 for t in tokens]})
    return datasets.Dataset.from_list(rows)


def evaluate_pos(model, examples, features, tokenizer, runtime, batch_size=32):
    collate = NERCollator(tokenizer)

    def predict(model, batch, rows):
        ids = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
        return [ids[i, : len(row["input_ids"])].tolist() for i, row in enumerate(rows)]

    predictions = sharded_predictions(model, features, collate, predict, runtime, batch_size)
    words, _ = word_level_predictions(predictions, features["word_ids"], features["num_words"], id2label=POS_TAGS)
    gold = [[POS_TAGS[t] for t in row["ner_tags"]] for row in examples]
    pairs = [(p, g) for ps, gs in zip(words, gold) for p, g in zip(ps, gs)]
    return {"accuracy": 100.0 * sum(p == g for p, g in pairs) / len(pairs)}


POS = TaskSpec(
    name="pos", title="toy part-of-speech tagging", model_class="AutoModelForTokenClassification", labels=POS_TAGS,
    data_fields=("pos",), load_file=lambda path: None, load_hub=lambda name, config, split: None,
    data_file=lambda fields, language, split: None,
    prepare_features=lambda examples, tokenizer, train, max_length: prepare_ner_features(examples, tokenizer, max_length)[0],
    collator=NERCollator, evaluate=evaluate_pos, select_metric="accuracy", metrics=("accuracy",),
    hyperparameters={"epochs": 1, "batch_size": 8, "lr_adapters": 1e-3, "lr_full_model": 1e-4, "max_length": 64,
                     "eval_every": None},
)


@pytest.fixture
def pos_task():
    register_task(POS)
    yield POS
    unregister_task("pos")


def test_lookup_and_did_you_mean():
    assert task_names()[:2] == ("ner", "qa")
    assert get_task("ner").labels[0] == "O" and get_task("qa").metrics == ("f1", "exact_match")
    with pytest.raises(UnknownTaskError, match="unknown task 'nre'; known: ner, qa. Did you mean 'ner'"):
        get_task("nre")
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("ner"))


def test_spec_validates_its_selection_metric():
    with pytest.raises(ValueError, match="select_metric 'f1' is not among its metrics"):
        TaskSpec(**{**POS.__dict__, "select_metric": "f1"})


def test_a_third_task_trains_and_evaluates_through_the_phases(pos_task):
    examples = _pos_examples()
    texts = [" ".join(row["tokens"]) for row in examples]
    tokenizer = build_tiny_tokenizer(texts, vocab_size=300, model="wordpiece")
    assert pos_task.head_kwargs()["id2label"] == {0: "NOUN", 1: "VERB", 2: "PUNCT"}  # what load_model passes
    torch.manual_seed(0)
    model = tiny_model("xlm-roberta", "ner", vocab_size=len(tokenizer), num_labels=3,
                       id2label=dict(enumerate(POS_TAGS)), label2id={t: i for i, t in enumerate(POS_TAGS)})
    config = TrainConfig(learning_rate=1e-2, batch_size=8, num_epochs=40, log_every=20, eval_every=30)
    out = train_task(model, "pos", examples, examples, tokenizer, config, Runtime.local("cpu"),
                     setup=madx.Stack("pos"), task_adapter="pos", adapters=AdapterConfig(task_reduction_factor=2))
    assert out["dev"]["accuracy"] >= 90.0, out["dev"]
    features = prepare_task_data("pos", examples, tokenizer, train=False)
    again = evaluate_task("pos", model, examples, features, tokenizer, Runtime.local("cpu"))
    assert again["accuracy"] == pytest.approx(out["dev"]["accuracy"])


def test_suites_know_a_registered_task(pos_task, tmp_path):
    import yaml

    from bench.suite import default_hyperparameters, load_suite

    assert default_hyperparameters()["pos"]["epochs"] == 1
    path = tmp_path / "suite.yaml"
    (tmp_path / "en.txt").write_text("the language adapter's text\n", encoding="utf-8")
    path.write_text(yaml.safe_dump({"name": "t", "model": "xlm-roberta-base", "data": {"pos": str(tmp_path), "text": str(tmp_path)},
                                    "tasks": {"pos": {"sources": ["en"], "targets": ["en"], "methods": ["madx"]}},
                                    "seeds": [1], "hyperparameters": {"pos": {"epochs": 2}}}))
    suite = load_suite(str(path))
    assert suite.hyper("madx")["pos"]["epochs"] == 2
