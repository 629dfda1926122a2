"""One call prepares training of a setup; the summary says what trains; a forgotten step is refused."""

from __future__ import annotations

import pytest
import torch

import madx
from madx import Stack
from tests.conftest import tiny_batch, tiny_model


def test_the_public_names_are_importable_from_madx():
    from madx import AdapterConfig, TrainConfig, TrainableParameters, train_adapter, trainable_parameters  # noqa: F401

    assert AdapterConfig().init_weights == "adapterhub" and TrainConfig().learning_rate > 0


def _stacked(head="ner"):
    model = tiny_model("xlm-roberta", head)
    madx.add_language_adapter(model, "en")
    madx.add_task_adapter(model, "ner")
    return model


def test_train_adapter_on_a_stack_trains_the_task_adapter_and_its_head_only():
    model = _stacked()
    summary = madx.train_adapter(model, Stack("en", "ner"))
    assert madx.get_active(model) == Stack("en", "ner")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".madx_adapters.ner." in n or n.startswith("classifier.madx_heads.ner.") for n in trainable)
    assert any(n.startswith("classifier.madx_heads.ner.") for n in trainable)
    task = madx.get_store(model).get("ner")
    head = madx.task_heads(model, "ner")["classifier"]
    expected = sum(p.numel() for p in task.parameters()) + sum(p.numel() for p in head.parameters())
    assert summary.trainable == expected and summary.groups == {"adapter ner": sum(p.numel() for p in task.parameters()),
                                                                "head of ner": sum(p.numel() for p in head.parameters())}
    assert summary.total == sum(p.numel() for p in model.parameters())
    assert str(summary).startswith(f"trainable: {expected:,} of {summary.total:,} parameters (")
    madx.check_trainable(model)  # nothing forgotten


def test_print_trainable_parameters_as_peft_prints_it(capsys):
    model = _stacked()
    summary = madx.train_adapter(model, Stack("en", "ner"))
    madx.print_trainable_parameters(model)
    assert capsys.readouterr().out == (f"trainable params: {summary.trainable:,} || all params: {summary.total:,} || "
                                       f"trainable%: {100 * summary.trainable / summary.total:.4f}\n")


def test_train_adapter_on_a_language_trains_it_with_its_invertible_adapter():
    model = tiny_model("xlm-roberta", "mlm")
    madx.add_language_adapter(model, "qu")
    summary = madx.train_adapter(model, "qu")
    assert summary.groups == {"adapter qu": sum(p.numel() for p in madx.get_store(model).get("qu").parameters())}
    assert madx.get_active(model) == Stack("qu")


def test_train_adapter_with_named_adapters_and_refusals():
    model = _stacked()
    summary = madx.train_adapter(model, ["en", "ner"], train=["en", "ner"])
    assert set(summary.groups) == {"adapter en", "adapter ner", "head of ner"}
    with pytest.raises(ValueError, match=r"\['pos'\] are not part of Stack\(en, ner\)"):
        madx.train_adapter(model, Stack("en", "ner"), train=["pos"])
    with pytest.raises(ValueError, match="no adapter is loaded on this model; add 'ner' first"):
        madx.train_adapter(tiny_model("xlm-roberta", "ner"), "ner")


def test_a_forgotten_freeze_is_refused():
    """Adapters active while the base trains (set_active without freezing): the whole base would train."""
    model = _stacked()
    madx.set_active(model, Stack("en", "ner"))  # every parameter still requires grad, as from_pretrained leaves it
    with pytest.raises(ValueError, match=r"base parameters would train while Stack\(en, ner\) is active; .*madx.train_adapter"):
        madx.check_trainable(model)
    madx.set_trainable(model)
    with pytest.raises(ValueError, match="nothing to train"):
        madx.check_trainable(model)


def test_training_a_task_adapter_moves_its_head_and_leaves_the_models_own_alone():
    model = _stacked()
    madx.train_adapter(model, Stack("en", "ner"))
    own = model.classifier.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    model(**tiny_batch()).logits.pow(2).mean().backward()
    optimizer.step()
    assert torch.equal(model.classifier.weight, own)
    assert not torch.equal(madx.task_heads(model, "ner")["classifier"].weight, own)


def test_reset_task_heads_resets_a_loaded_head_for_real(tmp_path):
    """transformers 5 skips tensors marked _is_hf_initialized (as from_pretrained marks every loaded one)."""
    model = tiny_model("xlm-roberta", "ner")
    model.save_pretrained(tmp_path / "base")
    loaded = type(model).from_pretrained(tmp_path / "base")
    before = loaded.classifier.weight.detach().clone()
    madx.reset_task_heads(loaded, seed=123)
    assert not torch.equal(loaded.classifier.weight, before)
    again = type(model).from_pretrained(tmp_path / "base")
    madx.reset_task_heads(again, seed=123)
    assert torch.equal(again.classifier.weight, loaded.classifier.weight), "the same seed gives the same head"
