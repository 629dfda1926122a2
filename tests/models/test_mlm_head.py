import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from madx.data import synthetic
from madx.data.tokenizer import build_tiny_tokenizer
from madx.inject.mlm_head import mlm_decoder
from madx.models.mlm_head import MLMHeadConfig, head_parameters, train_mlm_head
from tests.conftest import tiny_model


def test_head_fit_trains_only_the_head_and_lowers_the_loss(tmp_path):
    texts = synthetic.synthetic_corpus("en", 300) + synthetic.synthetic_corpus("qu", 300)
    (tmp_path / "text.txt").write_text("\n".join(texts))
    tokenizer = build_tiny_tokenizer(texts, vocab_size=500, model="wordpiece", token_type_ids=True)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, pad_token_id=tokenizer.pad_token_id), add_pooling_layer=False)
    encoder.save_pretrained(tmp_path / "encoder")  # an encoder with no MLM head, like e5
    tokenizer.save_pretrained(tmp_path / "encoder")
    record = train_mlm_head(tmp_path / "encoder", [tmp_path / "text.txt"], tmp_path / "with-head",
                            MLMHeadConfig(steps=80, batch_size=16, learning_rate=3e-2, max_seq_length=32, eval_every=40))
    losses = [h["loss"] for h in record["train"]["history"] if "loss" in h]
    # the encoder here is random, so the head can mostly learn the token distribution: a clear, not a large, fall
    assert losses[-1] < losses[0] - 0.3, losses
    assert set(record["trained_parameters"]) == {n for n in record["trained_parameters"] if n.startswith("cls.predictions.")}
    model = BertForMaskedLM.from_pretrained(tmp_path / "with-head")
    for name, value in encoder.state_dict().items():
        assert torch.equal(model.bert.state_dict()[name], value), f"encoder weight {name} changed"
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert "cls.predictions.bias" in head_parameters(model)


def test_head_parameters_on_bert_are_the_names_it_trained_before_the_spec_lookup():
    model = tiny_model("bert", "mlm")
    # the rule head_parameters had when it named BERT's attribute paths itself
    before = [n for n, _ in model.named_parameters() if n.startswith("cls.predictions.") and ".decoder." not in n]
    assert len(before) == 5 and head_parameters(model) == before


@pytest.mark.parametrize("arch, head", [("bert", "cls.predictions"), ("xlm-roberta", "lm_head")])
def test_head_parameters_are_transform_and_output_bias_never_the_tied_decoder_weight(arch, head):
    model = tiny_model(arch, "mlm")
    # transformers lists XLM-R's tied weight as lm_head.decoder.weight, BERT's as the word embedding
    names = head_parameters(model)
    parameters = dict(model.named_parameters())
    assert all(parameters[n] is not model.get_input_embeddings().weight for n in names)
    assert any(parameters[n] is mlm_decoder(model).bias for n in names)
    assert all(n.startswith(head + ".") for n in names) and len(names) == 5, names


def _encoder_with_two_languages(tmp_path):
    texts = {lang: synthetic.synthetic_corpus(lang, 300) for lang in ("en", "qu")}
    files = []
    for lang, lines in texts.items():
        files.append(tmp_path / f"{lang}.txt")
        files[-1].write_text("\n".join(lines))
    tokenizer = build_tiny_tokenizer(texts["en"] + texts["qu"], vocab_size=500, model="wordpiece", token_type_ids=True)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, pad_token_id=tokenizer.pad_token_id), add_pooling_layer=False)
    encoder.save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    return files


def test_continued_mlm_trains_encoder_and_head_not_embeddings_and_records_each_languages_dev(tmp_path):
    files = _encoder_with_two_languages(tmp_path)
    train_mlm_head(tmp_path / "encoder", files, tmp_path / "head", MLMHeadConfig(steps=20, batch_size=16, learning_rate=3e-2,
                                                                                max_seq_length=32, eval_every=20))
    record = train_mlm_head(tmp_path / "head", files, tmp_path / "continued",
                            MLMHeadConfig(steps=40, batch_size=16, learning_rate=3e-3, max_seq_length=32, eval_every=20,
                                          train_encoder=True))
    before, after = BertForMaskedLM.from_pretrained(tmp_path / "head"), BertForMaskedLM.from_pretrained(tmp_path / "continued")
    old, new = before.state_dict(), after.state_dict()
    changed = {n for n in old if not torch.equal(old[n], new[n])}
    assert any(n.startswith("bert.encoder.layer.1.") for n in changed) and "cls.predictions.bias" in changed
    assert not any(n.startswith("bert.embeddings.") for n in changed), sorted(changed)
    assert after.cls.predictions.decoder.weight is after.bert.embeddings.word_embeddings.weight
    dev = record["dev_by_language"]
    assert set(dev["before"]) == set(dev["after"]) == {"en", "qu"}
    assert all(dev["after"][lang]["loss"] < dev["before"][lang]["loss"] for lang in ("en", "qu")), dev
    assert [t["path"] for t in record["texts"]] == [str(f) for f in files] and all(len(t["sha256"]) == 64 for t in record["texts"])
    assert record["base_record"]["config"]["train_encoder"] is False  # the head fit it started from


def test_each_languages_dev_blocks_are_held_out_of_training(tmp_path):
    from transformers import AutoTokenizer

    from madx.models.mlm_head import split_per_language
    from madx.phases import MLMData

    files = _encoder_with_two_languages(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "encoder")
    train, devs = split_per_language(files, tokenizer, MLMData(max_seq_length=32, max_dev_blocks=4), seed=0)
    train_rows = {tuple(ids) for ids in train["input_ids"]}
    assert set(devs) == {"en", "qu"} and all(len(d) == 4 for d in devs.values())
    assert not any(tuple(ids) in train_rows for d in devs.values() for ids in d["input_ids"])
