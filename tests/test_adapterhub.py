"""Import of AdapterHub-format adapters: a directory written here in that library's layout
(key names and config as ``adapters`` 1.x ``save_adapter`` writes them), and AdapterHub's
forward written out independently (its pre_forward / forward / post_forward with the Pfeiffer config).

Export: madx adapter -> AdapterHub layout -> the importer gives the same outputs bit for bit; where
the real ``adapters`` library is installed, it loads the export and computes its own stacking."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load, save_file
from torch.nn import functional as F

import madx
from madx import Stack, active
from madx.adapterhub import EXPORT_VERSION, PFEIFFER_CONFIG, REQUIRED_SETTINGS, export_adapterhub, import_adapterhub
from madx.inject import add_adapter
from tests.conftest import randomise, tiny_batch, tiny_model
from tests.test_io import assert_unchanged, snapshot

H, LAYERS = 32, 2


def write_adapterhub_dir(path, name, reduction, invertible, seed, prefix="roberta."):
    generator = torch.Generator().manual_seed(seed)
    d = H // reduction
    tensors = {}
    for layer in range(LAYERS):
        base = f"{prefix}encoder.layer.{layer}.output.adapters.{name}."
        tensors[base + "adapter_down.0.weight"] = torch.randn(d, H, generator=generator) * 0.2
        tensors[base + "adapter_down.0.bias"] = torch.randn(d, generator=generator) * 0.2
        tensors[base + "adapter_up.weight"] = torch.randn(H, d, generator=generator) * 0.2
        tensors[base + "adapter_up.bias"] = torch.randn(H, generator=generator) * 0.2
    if invertible:
        for net in "FG":
            base = f"{prefix}invertible_adapters.{name}.{net}."
            tensors[base + "0.weight"] = torch.randn(H // 4, H // 2, generator=generator) * 0.2
            tensors[base + "0.bias"] = torch.randn(H // 4, generator=generator) * 0.2
            tensors[base + "2.weight"] = torch.randn(H // 2, H // 4, generator=generator) * 0.2
            tensors[base + "2.bias"] = torch.randn(H // 2, generator=generator) * 0.2
    path.mkdir(parents=True)
    save_file(tensors, str(path / "adapter.safetensors"))
    config = {"original_ln_before": True, "original_ln_after": True, "residual_before_ln": True, "ln_before": False,
              "ln_after": False, "mh_adapter": False, "output_adapter": True, "non_linearity": "relu",
              "reduction_factor": reduction, "architecture": None}
    if invertible:
        config.update(inv_adapter="nice", inv_adapter_reduction_factor=2)
    (path / "adapter_config.json").write_text(json.dumps({
        "config": config, "hidden_size": H, "model_class": "XLMRobertaForTokenClassification",
        "model_name": "tiny", "model_type": "xlm-roberta", "name": name, "version": "adapters.1.3.0"}))
    return tensors


def adapterhub_layer_output(tensors, names, layer_index, r, x, ln, prefix="roberta."):
    """AdapterHub's Stack: pre_forward (LN(h + x), residual = h) before *every* adapter, post_forward at the end."""
    hidden = r
    for name in names:
        base = f"{prefix}encoder.layer.{layer_index}.output.adapters.{name}."
        residual = hidden
        normed = ln(hidden + x)
        down = F.relu(F.linear(normed, tensors[base + "adapter_down.0.weight"], tensors[base + "adapter_down.0.bias"]))
        hidden = F.linear(down, tensors[base + "adapter_up.weight"], tensors[base + "adapter_up.bias"]) + residual
    return ln(hidden + x)


def test_import_reproduces_adapterhub_stack_outputs(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    en = write_adapterhub_dir(tmp_path / "en", "en", reduction=2, invertible=True, seed=1)
    ner = write_adapterhub_dir(tmp_path / "ner", "ner", reduction=16, invertible=False, seed=2)
    assert import_adapterhub(model, tmp_path / "en", kind="language") == "en"
    assert import_adapterhub(model, tmp_path / "ner", kind="task") == "ner"

    layer = model.base_model.encoder.layer[1]
    x = torch.randn(2, 5, H)
    r = layer.output.dropout(layer.output.dense(layer.intermediate(x)))
    expected = adapterhub_layer_output({**en, **ner}, ["en", "ner"], 1, r, x, layer.output.LayerNorm)
    with active(model, Stack("en", "ner", mode="adapterhub")), torch.no_grad():
        got = layer.output(layer.intermediate(x), x)
    assert torch.allclose(got, expected.detach(), atol=1e-5)

    invertible = madx.get_store(model).get("en").invertible
    e = torch.randn(3, H)
    e1, e2 = e[:, : H // 2], e[:, H // 2 :]
    sub = lambda z, net: F.linear(F.relu(F.linear(z, en[f"roberta.invertible_adapters.en.{net}.0.weight"], en[f"roberta.invertible_adapters.en.{net}.0.bias"])),
                                  en[f"roberta.invertible_adapters.en.{net}.2.weight"], en[f"roberta.invertible_adapters.en.{net}.2.bias"])
    y1 = e1 + sub(e2, "F")
    y2 = e2 + sub(y1, "G")
    assert torch.allclose(invertible(e), torch.cat([y1, y2], -1), atol=1e-5)

    with active(model, Stack("en", "ner", mode="adapterhub")), torch.no_grad():
        model(**tiny_batch())  # the whole model runs with the imported adapters


def test_bare_model_keys_are_accepted(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    write_adapterhub_dir(tmp_path / "qu", "qu", reduction=2, invertible=False, seed=3, prefix="")
    assert import_adapterhub(model, tmp_path / "qu", kind="language") == "qu"


def test_unsupported_configs_and_pickles_are_refused(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    write_adapterhub_dir(tmp_path / "en", "en", reduction=2, invertible=False, seed=1)
    config_path = tmp_path / "en" / "adapter_config.json"
    saved = json.loads(config_path.read_text())
    saved["config"]["mh_adapter"] = True
    config_path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="config.mh_adapter is True"):
        import_adapterhub(model, tmp_path / "en", kind="language")
    saved["config"]["mh_adapter"] = False
    config_path.write_text(json.dumps(saved))
    (tmp_path / "en" / "adapter.safetensors").rename(tmp_path / "en" / "pytorch_adapter.bin")
    with pytest.raises(ValueError, match="never unpickles"):
        import_adapterhub(model, tmp_path / "en", kind="language")
    assert madx.adapter_names(model) == []


def _edit_weights(directory, edit):
    path = directory / "adapter.safetensors"
    tensors = load(path.read_bytes())
    edit(tensors)
    save_file(tensors, str(path))


def _edit_config(directory, edit):
    path = directory / "adapter_config.json"
    saved = json.loads(path.read_text())
    edit(saved)
    path.write_text(json.dumps(saved))


UP1 = "roberta.encoder.layer.1.output.adapters.en.adapter_up.weight"
MALFORMED = {  # case: (edit of the directory, file named in the message, fragments)
    "truncated": (lambda d: (d / "adapter.safetensors").write_bytes((d / "adapter.safetensors").read_bytes()[:100]),
                  "adapter.safetensors", ["not a readable safetensors file (100 bytes"]),
    "pickle": (lambda d: (d / "adapter.safetensors").write_bytes(pickle.dumps({UP1: [1.0]})),
               "adapter.safetensors", ["looks like a PyTorch pickle", "never unpickles"]),
    "nan": (lambda d: _edit_weights(d, lambda t: t[UP1].fill_(float("nan"))), "adapter.safetensors", [f"tensor {UP1!r}", "NaN"]),
    "int32": (lambda d: _edit_weights(d, lambda t: t.update({UP1: t[UP1].int()})), "adapter.safetensors", [f"tensor {UP1!r}", "torch.int32"]),
    "shape": (lambda d: _edit_weights(d, lambda t: t.update({UP1: torch.zeros(H, 3)})),
              "adapter.safetensors", [f"tensor {UP1!r}", "shape (32, 3), expected (32, 16)"]),
    "missing": (lambda d: _edit_weights(d, lambda t: t.pop(UP1.replace("weight", "bias"))), "adapter.safetensors", ["missing ['layers.1.up.bias']"]),
    "extra_layer": (lambda d: _edit_weights(d, lambda t: t.update({UP1.replace("layer.1", "layer.2"): torch.zeros(H, 16)})),
                    "adapter.safetensors", ["unexpected ['roberta.encoder.layer.2.output.adapters.en.adapter_up.weight']"]),
    "duplicate": (lambda d: _edit_weights(d, lambda t: t.update({UP1.removeprefix("roberta."): t[UP1].clone()})),
                  "adapter.safetensors", ["are the same adapter weight"]),
    "no_invertible_F0": (lambda d: _edit_weights(d, lambda t: t.pop("roberta.invertible_adapters.en.F.0.weight")),
                         "adapter.safetensors", ["no invertible F.0 weight found"]),
    "config_list": (lambda d: (d / "adapter_config.json").write_text("[1, 2]"), "adapter_config.json", ["must be a JSON object", "(a list)"]),
    "config_json": (lambda d: (d / "adapter_config.json").write_text('{"config": {,}}'), "adapter_config.json", ["not valid JSON", "line 1, column 13"]),
    "hidden_string": (lambda d: _edit_config(d, lambda c: c.update(hidden_size="32")), "adapter_config.json",
                      ["field 'hidden_size' must be a positive integer, got '32' (a string)"]),
    "name_type": (lambda d: _edit_config(d, lambda c: c.update(name=["en"])), "adapter_config.json", ["field 'name' must be a string or null"]),
    "lora": (lambda d: _edit_config(d, lambda c: c["config"].update(architecture="lora")), "adapter_config.json",
             ["config.architecture is 'lora'", "only bottleneck adapters"]),
    "glow": (lambda d: _edit_config(d, lambda c: c["config"].update(inv_adapter="glow")), "adapter_config.json", ["config.inv_adapter is 'glow'"]),
    "model_type": (lambda d: _edit_config(d, lambda c: c.update(model_type="bert")), "adapter_config.json",
                   ["model_type 'bert', this model is 'xlm-roberta'"]),
    "madx_config": (lambda d: (d / "adapter_config.json").write_text(json.dumps({"kind": "language", "format_version": 1})),
                    "adapter_config.json", ["this is a madx adapter config", "madx.load_adapter"]),
    "bad_name": (lambda d: _edit_config(d, lambda c: c.update(name="en/wiki@ukp")), "adapter_config.json",
                 ["adapter name 'en/wiki@ukp' is not a madx name", "pass name="]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_adapterhub_directories_name_the_file_and_change_nothing(tmp_path, case):
    edit, file_name, fragments = MALFORMED[case]
    model = tiny_model("xlm-roberta", "ner")
    write_adapterhub_dir(tmp_path / "en", "en", reduction=2, invertible=True, seed=1)
    edit(tmp_path / "en")
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        import_adapterhub(model, tmp_path / "en", kind="language")
    message = str(info.value)
    assert str(tmp_path / "en" / file_name) in message and "\n" not in message
    assert all(f in message for f in fragments), message
    assert len(message.replace(str(tmp_path), "")) <= 300
    assert_unchanged(model, before)


def test_missing_directory_and_bad_kind_are_named(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    with pytest.raises(FileNotFoundError, match="nowhere: no adapter config here: the directory does not exist"):
        import_adapterhub(model, tmp_path / "nowhere", kind="language")
    with pytest.raises(ValueError, match="kind must be one of"):
        import_adapterhub(model, tmp_path / "nowhere", kind="lang")
    assert not madx.is_attached(model)


def test_invalid_saved_name_imports_under_a_given_name(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    write_adapterhub_dir(tmp_path / "en", "en", reduction=2, invertible=False, seed=1)
    _edit_config(tmp_path / "en", lambda c: c.update(name="en/wiki@ukp"))
    assert import_adapterhub(model, tmp_path / "en", kind="language", name="en") == "en"


# ---- export: madx adapter -> AdapterHub layout -> back, and (where installed) into the real library ----


def _trained(head, language=True, invertible=True, task=False, seed=1):
    """A tiny model whose adapters (and task head) have random, non-trivial weights."""
    model = tiny_model("xlm-roberta", head)
    if language:
        madx.add_language_adapter(model, "en", invertible=invertible)
    if task:
        madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=seed)
    if task:
        randomise(madx.task_heads(model, "ner")["classifier"], seed=seed + 1)
    return model


def _outputs(model, setup, batch):
    with active(model, setup), torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("invertible", [True, False], ids=["nice", "no-inv"])
def test_language_adapter_round_trips_bit_exactly(tmp_path, invertible):
    source = _trained("mlm", invertible=invertible)  # an MLM model: the invertible adapter's inverse runs too
    export_adapterhub(source, "en", tmp_path / "en")
    target = tiny_model("xlm-roberta", "mlm")
    assert madx.import_adapterhub(target, tmp_path / "en", kind="language") == "en"
    batch = tiny_batch()
    assert torch.equal(_outputs(source, Stack("en"), batch), _outputs(target, Stack("en"), batch))
    assert (madx.get_store(target).get("en").invertible is not None) == invertible
    saved, loaded = madx.get_store(source).get("en").state_dict(), madx.get_store(target).get("en").state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_task_adapter_round_trips_with_its_head(tmp_path):
    source = _trained("ner", task=True)
    export_adapterhub(source, "en", tmp_path / "en")
    export_adapterhub(source, "ner", tmp_path / "ner")
    target = tiny_model("xlm-roberta", "ner")
    randomise(target.classifier, seed=9)  # the head must come from the export
    madx.import_adapterhub(target, tmp_path / "en", kind="language")
    madx.import_adapterhub(target, tmp_path / "ner", kind="task")
    assert torch.equal(madx.task_heads(target, "ner")["classifier"].weight, madx.task_heads(source, "ner")["classifier"].weight)
    batch = tiny_batch()
    for setup in (Stack("ner"), Stack("en", "ner"), Stack("en", "ner", mode="adapterhub")):
        assert torch.equal(_outputs(source, setup, batch), _outputs(target, setup, batch)), setup


def test_export_writes_adapterhubs_layout_and_config(tmp_path):
    source = _trained("ner", task=True)
    export_adapterhub(source, "en", tmp_path / "en")
    export_adapterhub(source, "ner", tmp_path / "ner")
    assert sorted(p.name for p in (tmp_path / "en").iterdir()) == ["adapter.safetensors", "adapter_config.json"]
    assert sorted(p.name for p in (tmp_path / "ner").iterdir()) == [
        "adapter.safetensors", "adapter_config.json", "head_config.json", "model_head.safetensors"]

    en = json.loads((tmp_path / "en" / "adapter_config.json").read_text())
    assert {k: en[k] for k in ("name", "model_type", "hidden_size", "model_class", "version")} == {
        "name": "en", "model_type": "xlm-roberta", "hidden_size": H, "model_class": "XLMRobertaForTokenClassification",
        "version": EXPORT_VERSION}
    assert en["config"] == {**PFEIFFER_CONFIG, "reduction_factor": 2, "inv_adapter": "nice", "inv_adapter_reduction_factor": 2}
    assert all(en["config"][k] == v for k, v in REQUIRED_SETTINGS.items())  # what the importer requires
    ner = json.loads((tmp_path / "ner" / "adapter_config.json").read_text())
    assert ner["config"] == {**PFEIFFER_CONFIG, "reduction_factor": 16}

    keys = set(load((tmp_path / "en" / "adapter.safetensors").read_bytes()))
    assert "roberta.encoder.layer.1.output.adapters.en.adapter_down.0.weight" in keys
    assert "roberta.invertible_adapters.en.G.2.bias" in keys and len(keys) == 4 * LAYERS + 8
    head = json.loads((tmp_path / "ner" / "head_config.json").read_text())
    assert head["model_class"] == "XLMRobertaForTokenClassification" and head["num_labels"] == 7 and head["name"] is None
    assert head["config"] is None and head["label2id"] == source.config.label2id
    assert set(load((tmp_path / "ner" / "model_head.safetensors").read_bytes())) == {"classifier.weight", "classifier.bias"}


def test_export_of_a_bert_model_uses_its_prefix(tmp_path):
    model = tiny_model("bert", "mlm")
    madx.add_language_adapter(model, "en")
    export_adapterhub(model, "en", tmp_path / "en")
    keys = set(load((tmp_path / "en" / "adapter.safetensors").read_bytes()))
    assert "bert.encoder.layer.0.output.adapters.en.adapter_up.weight" in keys and "bert.invertible_adapters.en.F.0.bias" in keys


def test_an_odd_bottleneck_gets_the_reduction_factor_adapterhub_maps_back(tmp_path):
    model = tiny_model("xlm-roberta", "ner")
    add_adapter(model, "ner", "task", 5)  # 32 / 5 is no integer; 32 // 6.4 == 4.0 in floating point
    export_adapterhub(model, "ner", tmp_path / "ner", with_head=False)
    factor = json.loads((tmp_path / "ner" / "adapter_config.json").read_text())["config"]["reduction_factor"]
    assert int(H // factor) == 5  # how AdapterHub sizes the bottleneck
    assert not (tmp_path / "ner" / "model_head.safetensors").exists()
    target = tiny_model("xlm-roberta", "ner")
    import_adapterhub(target, tmp_path / "ner", kind="task")
    assert madx.get_store(target).get("ner").bottleneck_size == 5


def test_export_refuses_to_overwrite_a_madx_adapter_or_mix_with_stale_files(tmp_path):
    model = _trained("ner", task=True)
    madx.save_adapter(model, "ner", tmp_path / "madx")
    before = {p.name: p.read_bytes() for p in (tmp_path / "madx").iterdir()}
    with pytest.raises(ValueError, match="holds a madx adapter"):
        export_adapterhub(model, "ner", tmp_path / "madx")
    assert {p.name: p.read_bytes() for p in (tmp_path / "madx").iterdir()} == before

    export_adapterhub(model, "ner", tmp_path / "hub")
    with pytest.raises(ValueError, match="already holds head_config.json, model_head.safetensors"):
        export_adapterhub(model, "ner", tmp_path / "hub", with_head=False)
    (tmp_path / "hub" / "pytorch_adapter.bin").write_bytes(b"old")
    with pytest.raises(ValueError, match="already holds pytorch_adapter.bin"):
        export_adapterhub(model, "ner", tmp_path / "hub")
    with pytest.raises(ValueError, match="only task adapters are exported with a head"):
        export_adapterhub(model, "en", tmp_path / "en", with_head=True)
    with pytest.raises(KeyError, match="nope"):
        export_adapterhub(model, "nope", tmp_path / "nope")


def test_madx_load_adapter_points_an_export_to_the_importer(tmp_path):
    model = _trained("ner")
    export_adapterhub(model, "en", tmp_path / "en")
    target = tiny_model("xlm-roberta", "ner")
    with pytest.raises(ValueError, match=r"madx\.import_adapterhub\(model, directory, kind='language' or 'task'\)"):
        madx.load_adapter(target, tmp_path / "en")
    assert madx.adapter_names(target) == []


def test_import_without_the_head_and_refusals_of_heads(tmp_path):
    export_adapterhub(_trained("ner", task=True), "ner", tmp_path / "ner")
    target = tiny_model("xlm-roberta", "ner")
    head = target.classifier.weight.clone()
    madx.import_adapterhub(target, tmp_path / "ner", kind="task", load_head=False)
    assert torch.equal(target.classifier.weight, head)
    assert torch.equal(madx.task_heads(target, "ner")["classifier"].weight, head), "without the saved head: a copy of the model's"

    mlm = tiny_model("xlm-roberta", "mlm")  # no task head to load it into
    before = snapshot(mlm)
    with pytest.raises(ValueError, match=r"model_head.safetensors: holds weights of \['classifier'\].*load_head=False"):
        madx.import_adapterhub(mlm, tmp_path / "ner", kind="task")
    assert_unchanged(mlm, before)

    flex = load((tmp_path / "ner" / "model_head.safetensors").read_bytes())  # an AdapterModel's flex head: heads.<name>.<i>
    save_file({f"heads.ner.1.{key.split('.')[-1]}": t for key, t in flex.items()}, str(tmp_path / "ner" / "model_head.safetensors"))
    with pytest.raises(ValueError, match=r"holds weights of \['heads'\] \(e.g. 'heads.ner.1.bias'\)"):
        madx.import_adapterhub(tiny_model("xlm-roberta", "ner"), tmp_path / "ner", kind="task")

    qa = tiny_model("xlm-roberta", "qa")
    (tmp_path / "ner" / "model_head.safetensors").rename(tmp_path / "ner" / "pytorch_model_head.bin")
    with pytest.raises(ValueError, match="only in pytorch_model_head.bin"):
        madx.import_adapterhub(qa, tmp_path / "ner", kind="task")
    assert madx.adapter_names(qa) == []


def test_the_real_adapters_library_loads_the_export_and_computes_its_stacking(tmp_path):
    """Runs only where AdapterHub's ``adapters`` is installed (it pins transformers 4.x; madx does not need it)."""
    adapters = pytest.importorskip("adapters")
    from adapters.composition import Stack as HubStack

    source = _trained("ner", task=True)
    export_adapterhub(source, "en", tmp_path / "en")
    export_adapterhub(source, "ner", tmp_path / "ner")
    hub = tiny_model("xlm-roberta", "ner")
    randomise(hub.classifier, seed=9)
    adapters.init(hub)
    for name in ("en", "ner"):
        info = {}
        assert hub.load_adapter(str(tmp_path / name), use_safetensors=True, loading_info=info) == name
        assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    hub.set_active_adapters(HubStack("en", "ner"))
    batch = tiny_batch()
    with torch.no_grad():
        theirs = hub(**batch).logits
    assert torch.allclose(theirs, _outputs(source, Stack("en", "ner", mode="adapterhub"), batch), atol=1e-6)
    assert not torch.allclose(theirs, _outputs(source, Stack("en", "ner"), batch), atol=1e-3)  # eq. 2 differs

    (tmp_path / "back").mkdir()
    for name in ("en", "ner"):  # and what that library saves (with the head) imports back to the same outputs
        hub.save_adapter(str(tmp_path / "back" / name), name, use_safetensors=True)
    back = tiny_model("xlm-roberta", "ner")
    import_adapterhub(back, tmp_path / "back" / "en", kind="language")
    import_adapterhub(back, tmp_path / "back" / "ner", kind="task")
    assert torch.equal(_outputs(back, Stack("en", "ner"), batch), _outputs(source, Stack("en", "ner"), batch))

    # their plain HF MLM model applies the invertible adapter on the embeddings but not its inverse before the decoder
    mlm = _trained("mlm")
    export_adapterhub(mlm, "en", tmp_path / "en-mlm")
    hub_mlm = tiny_model("xlm-roberta", "mlm")
    adapters.init(hub_mlm)
    hub_mlm.load_adapter(str(tmp_path / "en-mlm"), use_safetensors=True, set_active=True)
    with torch.no_grad():
        theirs = hub_mlm(**batch).logits
        with active(mlm, Stack("en")):
            hidden = mlm.roberta(**batch).last_hidden_state
        without_inverse = mlm.lm_head(hidden)  # outside active(): madx's inverse hook is off
    assert torch.allclose(theirs, without_inverse, atol=1e-6)
    assert not torch.allclose(theirs, _outputs(mlm, Stack("en"), batch), atol=1e-3)


def test_export_of_a_madx2_adapter_tells_adapterhub_which_layer_has_none(tmp_path):
    from madx.adapters import AdapterConfig

    model = tiny_model("xlm-roberta", "mlm")
    madx.add_language_adapter(model, "qu", AdapterConfig(leave_out=(-1,)))
    madx.export_adapterhub(model, "qu", tmp_path / "qu")
    config = json.loads((tmp_path / "qu" / "adapter_config.json").read_text())
    assert config["config"]["leave_out"] == [model.config.num_hidden_layers - 1]
    target = tiny_model("xlm-roberta", "mlm")
    assert madx.import_adapterhub(target, tmp_path / "qu", kind="language") == "qu"  # and the import reads it back
    assert madx.get_store(target).get("qu").leave_out == (model.config.num_hidden_layers - 1,)


@pytest.mark.parametrize("leave_out,message", [
    ("last", r"config.leave_out must be a list of layer indices, got 'last' \(a string\)"),
    ([5], r"config.leave_out: layer 5 does not exist in a model of 2 layers"),
    ([0], r"no layer-1 adapter_down weight found \(config.leave_out is \[0\]\)"),  # the export has none in layer 1
])
def test_a_leave_out_that_does_not_fit_the_weights_is_refused(tmp_path, leave_out, message):
    from madx.adapters import AdapterConfig

    model = tiny_model("xlm-roberta", "mlm")
    madx.add_language_adapter(model, "qu", AdapterConfig(leave_out=(-1,)))
    madx.export_adapterhub(model, "qu", tmp_path / "qu")
    config_path = tmp_path / "qu" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["config"]["leave_out"] = leave_out
    config_path.write_text(json.dumps(config))
    target = tiny_model("xlm-roberta", "mlm")
    with pytest.raises(ValueError, match=message):
        madx.import_adapterhub(target, tmp_path / "qu", kind="language")
    assert madx.adapter_names(target) == []
