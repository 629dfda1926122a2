"""``madx export --format adapterhub``: from saved madx adapter directories and a saved base model,
in-process (no subprocess, no download); the export imports back to the same weights and outputs."""

from __future__ import annotations

import json

import pytest
import torch

import madx
from madx import Stack, active, cli
from madx.tasks.registry import get_task
from tests.conftest import randomise, tiny_batch, tiny_model


@pytest.fixture
def saved(tmp_path):
    """A saved tiny base model, a madx language adapter (with NICE) and a NER task adapter saved with its head."""
    tiny_model("xlm-roberta", "ner").save_pretrained(tmp_path / "model")
    model = get_task("ner").load_model(str(tmp_path / "model"))
    madx.add_language_adapter(model, "en")
    madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=1)
    randomise(model.classifier, seed=2)
    madx.save_adapter(model, "en", tmp_path / "en")
    madx.save_adapter(model, "ner", tmp_path / "ner")
    return tmp_path, model


def export(root, adapter, *extra):
    return cli.main(["export", "--format", "adapterhub", "--model", str(root / "model"), "--adapter", str(root / adapter),
                     "--out", str(root / "hub" / adapter), *extra])


def test_export_command_round_trips_a_language_and_a_task_adapter(saved, capsys):
    root, source = saved
    assert export(root, "en") == 0
    assert export(root, "ner", "--task", "ner") == 0
    out = capsys.readouterr().out
    assert "invertible adapter" in out and "head ['classifier']" in out and "use_safetensors=True" in out
    head = json.loads((root / "hub" / "ner" / "head_config.json").read_text())
    assert head["label2id"] == source.config.label2id and head["model_class"] == "XLMRobertaForTokenClassification"

    target = tiny_model("xlm-roberta", "ner", **get_task("ner").head_kwargs())
    randomise(target.classifier, seed=9)
    madx.import_adapterhub(target, root / "hub" / "en", kind="language")
    madx.import_adapterhub(target, root / "hub" / "ner", kind="task")
    batch = tiny_batch()
    for setup in (Stack("en", "ner"), Stack("en", "ner", mode="adapterhub")):
        with torch.no_grad(), active(source, setup):
            expected = source(**batch).logits
        with torch.no_grad(), active(target, setup):
            assert torch.equal(target(**batch).logits, expected)


def test_a_head_needs_its_task_or_no_head(saved, capsys):
    root, _ = saved
    assert export(root, "ner") == 2
    err = capsys.readouterr().err
    assert "saved with head(s) ['classifier']" in err and "--task" in err and "--no-head" in err and err.count("\n") == 1
    assert export(root, "ner", "--no-head") == 0
    assert sorted(p.name for p in (root / "hub" / "ner").iterdir()) == ["adapter.safetensors", "adapter_config.json"]


def test_exporting_over_the_madx_adapter_is_refused(saved, capsys):
    root, _ = saved
    before = (root / "en" / "adapter.safetensors").read_bytes()
    status = cli.main(["export", "--format", "adapterhub", "--model", str(root / "model"), "--adapter", str(root / "en"),
                       "--out", str(root / "en")])
    assert status == 2 and "holds a madx adapter" in capsys.readouterr().err
    assert (root / "en" / "adapter.safetensors").read_bytes() == before
