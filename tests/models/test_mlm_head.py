import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from madx.data import synthetic
from madx.data.tokenizer import build_tiny_tokenizer
from madx.models.mlm_head import MLMHeadConfig, head_parameters, train_mlm_head


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
