"""The loops learn: overfit tests on tiny models prove loop, labels, alignment and post-processing."""

from __future__ import annotations

import math

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
from madx.phases import MLMData, evaluate_task, prepare_task_data, train_language_adapter, train_task
from madx.runtime import Runtime
from madx.train import TrainConfig, TrainingDiverged, train


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(t) for lang in ("en", "qu") for t, _ in synthetic.ner_sentences(lang, 200)]
    texts += synthetic.synthetic_corpus("en", 200) + synthetic.synthetic_corpus("qu", 200)
    return build_tiny_tokenizer(texts, vocab_size=1000, model="wordpiece")


def tiny_config(tokenizer, **extra):
    settings = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **extra}
    return XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=96, max_position_embeddings=400, type_vocab_size=1,
                            pad_token_id=tokenizer.pad_token_id, **settings)


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


# -- data-parallel masks and resumable phases ---------------------------------------------------------
def test_each_rank_masks_with_its_own_reproducible_stream(tokenizer):
    from madx.data.mlm import MaskedLMCollator
    from madx.phases import masking_seed

    seeds = [masking_seed(7, rank) for rank in range(8)]
    assert seeds[0] == 7 and len(set(seeds)) == 8 and seeds == [masking_seed(7, rank) for rank in range(8)]
    assert masking_seed(8, 1) != masking_seed(7, 1)
    rows = [{"input_ids": list(range(5, 69))}] * 4
    masks = [MaskedLMCollator(tokenizer, seed=s)(rows)["labels"] != -100 for s in seeds[:2]]
    assert not torch.equal(masks[0], masks[1])


def test_the_mlm_phase_gives_each_rank_its_own_masking_seed(monkeypatch, tokenizer, tmp_path):
    """Every rank built the train collator with config.seed: under DDP all ranks masked the same positions."""
    import madx.phases as phases

    class Built(Exception):
        pass

    class RankTwo(Runtime):
        process_index = 2

    def collator(tokenizer, seed):
        raise Built(seed)

    synthetic.write_text(tmp_path / "qu.txt", "qu", 40)
    monkeypatch.setattr(phases, "MaskedLMCollator", collator)
    model = XLMRobertaForMaskedLM(tiny_config(tokenizer))
    with pytest.raises(Built) as built:
        phases.train_mlm(model, tmp_path / "qu.txt", tokenizer, TrainConfig(seed=3), phases.MLMData(max_seq_length=32),
                         RankTwo(torch.device("cpu")), None, None)
    assert built.value.args == (phases.masking_seed(3, 2),) and built.value.args != (3,)


class Stopped(BaseException):
    pass


@pytest.fixture
def sigterm_raises():
    import signal

    def handler(signum, frame):
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, previous)


def _stop_at(step):
    import os
    import signal

    def progress(record):
        if record["step"] == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return progress


def test_language_adapter_training_resumes_bit_for_bit(tmp_path, tokenizer, sigterm_raises):
    """The collator's masks, dropout and the shuffle continue where they stopped: the resumed adapter is the same."""
    synthetic.write_text(tmp_path / "qu.txt", "qu", 60)
    config = TrainConfig(learning_rate=1e-2, batch_size=4, max_steps=6, log_every=1, eval_every=3)

    def run(checkpoint_dir=None, progress=None):
        torch.manual_seed(0)
        model = XLMRobertaForMaskedLM(tiny_config(tokenizer, hidden_dropout_prob=0.1))
        out = train_language_adapter(model, "qu", tmp_path / "qu.txt", tokenizer, config, Runtime.local("cpu"),
                                     data=MLMData(max_seq_length=32), progress=progress, checkpoint_dir=checkpoint_dir)
        return out, {n: p.detach().clone() for n, p in madx.get_store(model).named_parameters()}

    reference, weights = run()
    assert reference["train"]["steps"] == 6
    for stop in (2, 4):
        with pytest.raises(Stopped):
            run(tmp_path / "ckpt", _stop_at(stop))
        out, resumed = run(tmp_path / "ckpt")
        assert out["train"]["resumed_from_step"] == stop
        assert out["dev"] == reference["dev"] and out["train"]["best_step"] == reference["train"]["best_step"]
        assert [h.get("loss") for h in out["train"]["history"]] == [h.get("loss") for h in reference["train"]["history"]]
        assert resumed.keys() == weights.keys() and all(torch.equal(resumed[n], weights[n]) for n in weights)
        import shutil

        shutil.rmtree(tmp_path / "ckpt")


def test_task_adapter_training_resumes_bit_for_bit(tmp_path, tokenizer, sigterm_raises):
    synthetic.write_wikiann(tmp_path / "train-en.tsv", "en", 12)
    examples = load_wikiann(tmp_path / "train-en.tsv")
    config = TrainConfig(learning_rate=1e-2, batch_size=4, num_epochs=2, log_every=1, eval_every=3)

    def run(checkpoint_dir=None, progress=None):
        torch.manual_seed(0)
        model = XLMRobertaForTokenClassification(tiny_config(tokenizer, num_labels=7, id2label=dict(enumerate(NER_TAGS)),
                                                             label2id={t: i for i, t in enumerate(NER_TAGS)}, hidden_dropout_prob=0.1))
        out = train_task(model, "ner", examples, examples, tokenizer, config, Runtime.local("cpu"), setup=Stack("ner"),
                         task_adapter="ner", adapters=AdapterConfig(task_reduction_factor=2), progress=progress,
                         checkpoint_dir=checkpoint_dir)
        return out, {n: p.detach().clone() for n, p in model.named_parameters()}

    reference, weights = run()
    assert reference["train"]["steps"] == 6
    with pytest.raises(Stopped):
        run(tmp_path / "ckpt", _stop_at(4))
    out, resumed = run(tmp_path / "ckpt")
    assert out["train"]["resumed_from_step"] == 4 and out["dev"] == reference["dev"]
    assert all(torch.equal(resumed[n], weights[n]) for n in weights)  # adapters, head and the frozen base


def test_adapters_on_a_bf16_base_train_as_fp32_master_weights(tmp_path, tokenizer):
    """Adapters took the base's dtype: a bf16 base meant AdamW on bf16 adapters (updates below bf16's resolution lost)."""
    synthetic.write_text(tmp_path / "qu.txt", "qu", 40)
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(tiny_config(tokenizer)).to(torch.bfloat16)
    config = TrainConfig(learning_rate=1e-3, batch_size=4, max_steps=2, log_every=1)
    out = train_language_adapter(model, "qu", tmp_path / "qu.txt", tokenizer, config, Runtime.local("cpu", "bf16"),
                                 data=MLMData(max_seq_length=32))
    assert {p.dtype for p in madx.get_store(model).parameters()} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}  # the base stays bf16
    assert all(math.isfinite(h["loss"]) for h in out["train"]["history"] if "loss" in h)


def test_full_model_mlm_resumes_bit_for_bit(tmp_path, tokenizer, sigterm_raises):
    from madx.phases import train_full_mlm

    synthetic.write_text(tmp_path / "qu.txt", "qu", 40)
    config = TrainConfig(learning_rate=1e-3, batch_size=4, max_steps=4, log_every=1, eval_every=2)

    def run(checkpoint_dir=None, progress=None):
        torch.manual_seed(0)
        model = XLMRobertaForMaskedLM(tiny_config(tokenizer, hidden_dropout_prob=0.1))
        out = train_full_mlm(model, tmp_path / "qu.txt", tokenizer, config, Runtime.local("cpu"), MLMData(max_seq_length=32),
                             progress=progress, checkpoint_dir=checkpoint_dir)
        return out, {k: v.clone() for k, v in model.state_dict().items()}

    reference, weights = run()
    with pytest.raises(Stopped):
        run(tmp_path / "ckpt", _stop_at(2))
    out, resumed = run(tmp_path / "ckpt")
    assert out["train"]["resumed_from_step"] == 2 and out["dev"] == reference["dev"]
    assert all(torch.equal(resumed[k], weights[k]) for k in weights)  # every weight, the tied decoder included
