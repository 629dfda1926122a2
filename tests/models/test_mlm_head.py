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
