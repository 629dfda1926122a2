"""The loops learn: overfit tests on tiny models prove loop, labels, alignment and post-processing."""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaForQuestionAnswering, XLMRobertaForTokenClassification

import madx
from madx import Stack
from madx.adapters import AdapterConfig
from madx.data import synthetic
from madx.data.squad import load_squad
from madx.data.tokenizer import build_tiny_tokenizer
from madx.data.wikiann import NER_TAGS, load_wikiann
from madx.phases import evaluate_task, prepare_task_data, train_language_adapter, train_task
from madx.runtime import Runtime
from madx.train import TrainConfig, TrainingDiverged, train


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(t) for lang in ("en", "qu") for t, _ in synthetic.ner_sentences(lang, 200)]
    texts += synthetic.synthetic_corpus("en", 200) + synthetic.synthetic_corpus("qu", 200)
    return build_tiny_tokenizer(texts, vocab_size=1000, model="wordpiece")


def tiny_config(tokenizer, **extra):
    return XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=96, max_position_embeddings=400, type_vocab_size=1,
                            pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **extra)


def test_ner_task_adapter_overfits_its_training_sentences(tmp_path, tokenizer):
    synthetic.write_wikiann(tmp_path / "train-en.tsv", "en", 24)
    examples = load_wikiann(tmp_path / "train-en.tsv")
    torch.manual_seed(0)
    model = XLMRobertaForTokenClassification(tiny_config(tokenizer, num_labels=7, id2label=dict(enumerate(NER_TAGS)),
                                                         label2id={t: i for i, t in enumerate(NER_TAGS)}))
    runtime = Runtime.local("cpu")
    config = TrainConfig(learning_rate=1e-2, batch_size=8, num_epochs=60, log_every=30, eval_every=60)
    out = train_task(model, "ner", examples, examples, tokenizer, config, runtime, setup=Stack("ner"), task_adapter="ner", adapters=AdapterConfig(task_reduction_factor=2))
    assert out["dev"]["f1"] >= 90.0, out["dev"]
    features = prepare_task_data("ner", examples, tokenizer, train=False)
    assert evaluate_task("ner", model, examples, features, tokenizer, runtime)["f1"] == pytest.approx(out["dev"]["f1"])


def test_qa_overfits_exact_match(tmp_path, tokenizer):
    synthetic.write_squad(tmp_path / "train.json", "en", 32)
    examples = load_squad(tmp_path / "train.json")
    torch.manual_seed(0)
    model = XLMRobertaForQuestionAnswering(tiny_config(tokenizer))
    config = TrainConfig(learning_rate=3e-3, batch_size=8, num_epochs=40, log_every=20, eval_every=40)
    out = train_task(model, "qa", examples, examples, tokenizer, config, Runtime.local("cpu"), setup=None, max_length=64)
    assert out["dev"]["exact_match"] >= 90.0, out["dev"]


def test_language_adapter_mlm_loss_falls_and_base_is_untouched(tmp_path, tokenizer):
    from madx.data.mlm import MaskedLMCollator, build_mlm_dataset
    from madx.evaluate import evaluate_mlm

    synthetic.write_text(tmp_path / "qu.txt", "qu", 400)
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(tiny_config(tokenizer))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    runtime = Runtime.local("cpu")
    blocks = build_mlm_dataset(tmp_path / "qu.txt", tokenizer, 128, cache_dir=tmp_path / "cache")
    before = evaluate_mlm(model, blocks, MaskedLMCollator(tokenizer, seed=5), runtime)["loss"]
    config = TrainConfig(learning_rate=2e-2, batch_size=16, max_steps=100, log_every=10, eval_every=50)
    out = train_language_adapter(model, "qu", tmp_path / "qu.txt", tokenizer, config, runtime)
    after = evaluate_mlm(model, blocks, MaskedLMCollator(tokenizer, seed=5), runtime)["loss"]
    history = [h["loss"] for h in out["train"]["history"] if "loss" in h]
    # The base here is random and frozen, so the adapters can only move its outputs towards the
    # language's token distribution: a clear fall on identical masks, not a converged model.
    assert after < before - 0.15, (before, after)
    assert history[-1] < history[0] - 0.15, history
    for key, value in base.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert madx.get_active(model) == Stack("qu")


def test_non_finite_loss_stops_with_a_clear_message(tokenizer):
    model = torch.nn.Linear(2, 2)
    data = [{"x": torch.ones(2)}] * 4

    def loss_fn(model, batch):
        return model(batch["x"]).sum() * float("nan")

    with pytest.raises(TrainingDiverged, match="loss is nan at step 0"):
        train(model, data, lambda rows: {"x": torch.stack([r["x"] for r in rows])}, loss_fn, TrainConfig(batch_size=2), Runtime.local("cpu"))
