"""Contract tests: one table of (architecture, head, variant) rows, one set of generic checks.

Adding an architecture to madx/inject/spec.py means adding its rows here.
"""

from __future__ import annotations

import json

import pytest
import torch

import madx
from madx import Stack, active
from madx.inject.model import get_state
from madx.inject.spec import get_path
from tests.conftest import randomise, tiny_batch, tiny_model

ARCHS = ["xlm-roberta", "bert"]
ADAPTER_VARIANTS = ["madx", "madx-inv", "madx-lad-inv", "madx2", "madx2-inv"]
ROWS = [(arch, head, variant) for arch in ARCHS for head in ("mlm", "ner", "qa") for variant in ADAPTER_VARIANTS]


def outputs(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return torch.cat([v.flatten() for k, v in out.items() if isinstance(v, torch.Tensor) and k != "loss"])


def setup_variant(model, variant_name, source="en", task="ner", trained=True, init="adapterhub"):
    variant = madx.get_variant(variant_name)
    config = variant.adapter_config(madx.AdapterConfig(init_weights=init))  # MAD-X 2.0: leave_out=(-1,)
    if variant.language_adapters:
        madx.add_language_adapter(model, source, config, invertible=variant.invertible_adapters)
    madx.add_task_adapter(model, task, config)
    if trained:
        randomise(madx.get_store(model), seed=1)
    return variant, variant.task_setup(source, task)


@pytest.mark.parametrize("arch,head,variant_name", ROWS)
def test_identity_at_init(arch, head, variant_name):
    model = tiny_model(arch, head)
    batch = tiny_batch()
    before = outputs(model, batch)
    _, setup = setup_variant(model, variant_name, trained=False, init="identity")
    with active(model, setup):
        after = outputs(model, batch)
    assert torch.equal(before, after), "an untrained adapter setup with the identity init must leave the model's output unchanged"


@pytest.mark.parametrize("arch,head,variant_name", [r for r in ROWS if r[1] == "ner"])
def test_adapterhub_init_is_the_default_and_moves_the_output_a_little(arch, head, variant_name):
    """AdapterHub's "bert" init (every projection N(0, 0.02)) is what the paper's adapters started from."""
    model = tiny_model(arch, head)
    batch = tiny_batch()
    before = outputs(model, batch)
    _, setup = setup_variant(model, variant_name, trained=False, init=madx.AdapterConfig().init_weights)
    ups = [layer.up.weight for name in setup for layer in madx.get_store(model).get(name).layers if layer is not None]
    assert all(0.01 < float(w.std()) < 0.03 for w in ups), "up-projections ~ N(0, 0.02)"
    with active(model, setup):
        after = outputs(model, batch)
    assert not torch.equal(before, after) and torch.allclose(before, after, atol=0.1)


@pytest.mark.parametrize("arch,head,variant_name", ROWS)
def test_detach_restores_original_bit_for_bit(arch, head, variant_name):
    model = tiny_model(arch, head)
    batch = tiny_batch()
    before = outputs(model, batch)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    _, setup = setup_variant(model, variant_name)
    madx.set_active(model, setup)
    assert not torch.equal(outputs(model, batch), before)
    madx.set_active(model, None)
    assert torch.equal(outputs(model, batch), before)
    madx.detach(model)
    assert torch.equal(outputs(model, batch), before)
    assert set(model.state_dict()) == set(base_state)
    assert all(type(m).__module__.startswith("transformers") or type(m).__module__.startswith("torch") for m in model.modules())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base_state.items())


@pytest.mark.parametrize("arch,head,variant_name", [r for r in ROWS if r[1] != "mlm"])
def test_task_phase_trains_only_task_adapter_and_head(arch, head, variant_name):
    model = tiny_model(arch, head)
    _, setup = setup_variant(model, variant_name)
    trainable = madx.set_trainable(model, adapters=["ner"], task_head=True)
    head_name = "classifier" if head == "ner" else "qa_outputs"
    assert trainable and all(".madx_adapters.ner." in n or n.startswith(f"{head_name}.madx_heads.ner.") for n in trainable)
    assert any(n.startswith(head_name) for n in trainable)
    _train_and_check_base_unchanged(model, setup, exclude=())  # the model's own head too: ner has its own


@pytest.mark.parametrize("arch,variant_name", [(a, v) for a in ARCHS for v in ("madx", "madx-inv", "madx2", "madx2-inv")])
def test_mlm_phase_trains_only_language_adapter(arch, variant_name):
    model = tiny_model(arch, "mlm")
    variant, _ = setup_variant(model, variant_name)
    trainable = madx.set_trainable(model, adapters=["en"])
    assert trainable and all(".madx_adapters.en." in n or ".madx_invertible.en." in n for n in trainable)
    assert any(".madx_invertible." in n for n in trainable) == variant.invertible_adapters
    _train_and_check_base_unchanged(model, Stack("en"), exclude=())


def _train_and_check_base_unchanged(model, setup, exclude):
    base_before = {k: v.clone() for k, v in model.state_dict().items() if ".madx_" not in k}
    trained_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    madx.set_active(model, setup)
    for step in range(3):
        out = model(**tiny_batch(seed=step))
        logits = out.logits if hasattr(out, "logits") and out.logits is not None else out.start_logits
        logits.float().pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    for key, value in model.state_dict().items():
        if key in base_before and not key.startswith(exclude):
            assert torch.equal(value, base_before[key]), f"frozen base weight {key} changed"
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trained_before[n])]
    assert changed, "the trainable parameters did not move"


@pytest.mark.parametrize("arch,head,variant_name", ROWS)
def test_save_load_reproduces_outputs(tmp_path, arch, head, variant_name):
    model = tiny_model(arch, head)
    batch = tiny_batch()
    variant, setup = setup_variant(model, variant_name)
    if head != "mlm":
        randomise(next(iter(madx.task_heads(model, "ner").values())), seed=5)
    for name in setup:
        madx.save_adapter(model, name, tmp_path / name)
    with active(model, setup):
        expected = outputs(model, batch)

    fresh = tiny_model(arch, head, seed=0)  # same base weights, fresh head
    for name in setup:
        assert madx.load_adapter(fresh, tmp_path / name) == name
    with active(fresh, setup):
        assert torch.equal(outputs(fresh, batch), expected)


def _layer_calls(model, indices):
    """Record (args, kwargs, output) of the transformer layers ``indices`` on the next forward."""
    modules = get_path(model.base_model, get_state(model).spec.layers)
    calls, handles = {}, []
    for index in indices:
        def hook(module, args, kwargs, output, index=index):
            calls[index] = (module, args, dict(kwargs), output)
        handles.append(modules[index].register_forward_hook(hook, with_kwargs=True))
    return calls, handles


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("arch,head,variant_name", [(a, h, v) for a in ARCHS for h in ("mlm", "ner") for v in ("madx2", "madx2-inv")])
def test_left_out_layer_computes_exactly_what_the_base_layer_computes(arch, head, variant_name):
    """MAD-X 2.0: no adapter in the last layer, so on the same input it returns the base layer's output bit for
    bit; the other layers are adapted."""
    model = tiny_model(arch, head)
    _, setup = setup_variant(model, variant_name)
    store = madx.get_store(model)
    assert all(store.get(name).layers[-1] is None for name in setup) and all(store.get(name).layers[0] is not None for name in setup)
    calls, handles = _layer_calls(model, [0, model.config.num_hidden_layers - 1])
    with active(model, setup):
        outputs(model, tiny_batch())
    for handle in handles:
        handle.remove()
    (first, args0, kwargs0, adapted0), (last, args1, kwargs1, adapted1) = calls[0], calls[model.config.num_hidden_layers - 1]
    with torch.no_grad():  # the same inputs through the plain layers
        base0, base1 = _first(first(*args0, **kwargs0)), _first(last(*args1, **kwargs1))
    assert torch.equal(_first(adapted1), base1), "the left-out layer must compute exactly what the base layer computes"
    assert not torch.allclose(_first(adapted0), base0), "the other layers carry adapters"


def test_leave_out_leaves_the_invertible_adapter_alone():
    model = tiny_model("xlm-roberta", "mlm")
    madx.add_language_adapter(model, "qu", madx.get_variant("madx2").adapter_config())
    randomise(madx.get_store(model), seed=8)
    batch = tiny_batch()
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        plain = embeddings(input_ids=batch["input_ids"])
        with active(model, Stack("qu")):
            adapted = embeddings(input_ids=batch["input_ids"])
    assert torch.allclose(adapted, madx.get_store(model).get("qu").invertible(plain), atol=1e-6)


def test_a_set_with_leave_out_stacks_with_one_without():
    """Each adapter applies in the layers it has: a MAD-X language adapter under a MAD-X 2.0 task adapter gives
    the last layer the language adapter alone."""
    model = tiny_model("xlm-roberta", "ner")
    madx.add_language_adapter(model, "en")
    madx.add_task_adapter(model, "ner", madx.get_variant("madx2").adapter_config())
    randomise(madx.get_store(model), seed=4)
    last = model.config.num_hidden_layers - 1
    calls, handles = _layer_calls(model, [last])
    with active(model, Stack("en", "ner")):
        expected = outputs(model, tiny_batch())
    handles[0].remove()
    module, args, kwargs, output = calls[last]
    with active(model, Stack("en")), torch.no_grad():  # the language adapter alone, on the same input
        assert torch.equal(_first(module(*args, **kwargs)), _first(output))
    with active(model, Stack("en")):
        assert not torch.allclose(outputs(model, tiny_batch()), expected), "the earlier layers carry the task adapter"


@pytest.mark.parametrize("arch", ARCHS)
def test_language_swap_changes_output_and_swapping_back_restores_it(arch):
    model = tiny_model(arch, "ner")
    madx.add_language_adapter(model, "en")
    madx.add_language_adapter(model, "qu")
    madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=3)
    batch = tiny_batch()
    madx.set_active(model, Stack("en", "ner"))
    source = outputs(model, batch)
    with active(model, Stack("qu", "ner")):
        target = outputs(model, batch)
        assert madx.get_active(model) == Stack("qu", "ner")
    assert madx.get_active(model) == Stack("en", "ner")
    assert not torch.allclose(source, target)
    assert torch.equal(outputs(model, batch), source)


@pytest.mark.parametrize("arch", ARCHS)
def test_stack_order_is_validated(arch):
    model = tiny_model(arch, "ner")
    madx.add_language_adapter(model, "en")
    madx.add_language_adapter(model, "qu")
    madx.add_task_adapter(model, "ner")
    with pytest.raises(ValueError, match="language adapter 'en' must come before"):
        madx.set_active(model, Stack("ner", "en"))
    with pytest.raises(ValueError, match="at most one language adapter"):
        madx.set_active(model, Stack("en", "qu"))
    with pytest.raises(KeyError, match="no adapter named 'qq'.*Did you mean 'qu'"):
        madx.set_active(model, Stack("qq", "ner"))
    assert madx.get_active(model) is None


@pytest.mark.parametrize("arch", ARCHS)
def test_mlm_logits_pass_through_the_inverse(arch):
    model = tiny_model(arch, "mlm")
    madx.add_language_adapter(model, "qu")
    randomise(madx.get_store(model), seed=7)
    batch = tiny_batch()
    invertible = madx.get_store(model).get("qu").invertible
    with active(model, Stack("qu")), torch.no_grad():
        logits = model(**batch).logits
        base = model.base_model
        hidden = base(**batch).last_hidden_state  # embeddings passed through the invertible adapter
        if arch == "bert":
            transformed = model.cls.predictions.transform(hidden)
            decoder = model.cls.predictions.decoder
        else:
            head = model.lm_head
            transformed = head.layer_norm(torch.nn.functional.gelu(head.dense(hidden)))
            decoder = head.decoder
        by_hand = torch.nn.functional.linear(invertible.inverse(transformed), decoder.weight, decoder.bias)
        without_inverse = torch.nn.functional.linear(transformed, decoder.weight, decoder.bias)
    assert torch.allclose(logits, by_hand, atol=1e-5)
    assert not torch.allclose(logits, without_inverse, atol=1e-3)
    assert decoder.weight is base.get_input_embeddings().weight, "the test assumes tied output embeddings"


@pytest.mark.parametrize("arch", ARCHS)
def test_embeddings_pass_through_the_invertible_adapter(arch):
    model = tiny_model(arch, "mlm")
    madx.add_language_adapter(model, "qu")
    randomise(madx.get_store(model), seed=8)
    batch = tiny_batch()
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        plain = embeddings(input_ids=batch["input_ids"])
        with active(model, Stack("qu")):
            adapted = embeddings(input_ids=batch["input_ids"])
    invertible = madx.get_store(model).get("qu").invertible
    assert torch.allclose(adapted, invertible(plain), atol=1e-6)


def test_incompatible_adapter_files_are_rejected(tmp_path):
    small = tiny_model("xlm-roberta", "ner")
    madx.add_language_adapter(small, "qu")
    madx.save_adapter(small, "qu", tmp_path / "qu")

    wider = tiny_model("xlm-roberta", "ner", hidden_size=48)
    with pytest.raises(ValueError, match="language adapter 'qu' .* was trained for hidden size 32, this model has 48"):
        madx.load_adapter(wider, tmp_path / "qu")
    deeper = tiny_model("xlm-roberta", "ner", num_hidden_layers=3)
    with pytest.raises(ValueError, match="has 2 layers, this model has 3"):
        madx.load_adapter(deeper, tmp_path / "qu")
    other_arch = tiny_model("bert", "ner")
    with pytest.raises(ValueError, match="architecture 'xlm-roberta', this model is 'bert'"):
        madx.load_adapter(other_arch, tmp_path / "qu")

    config_path = tmp_path / "qu" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="format_version 99 is newer"):
        madx.load_adapter(tiny_model("xlm-roberta", "ner"), tmp_path / "qu")
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match="adapter_config.json: not valid JSON"):
        madx.load_adapter(tiny_model("xlm-roberta", "ner"), tmp_path / "qu")
    with pytest.raises(FileNotFoundError, match="no adapter config here"):
        madx.load_adapter(tiny_model("xlm-roberta", "ner"), tmp_path / "nowhere")


TAMPERINGS = {  # how the saved weights are spoiled -> what the refusal says
    "missing tensor": (lambda t: t.pop("layers.1.up.bias"), r"missing \['layers.1.up.bias'\]"),
    "NaN": (lambda t: t["layers.0.up.weight"].fill_(float("nan")), r"tensor 'layers.0.up.weight' .* NaN"),
    "int32": (lambda t: t.update({"layers.0.down.bias": t["layers.0.down.bias"].int()}), r"'layers.0.down.bias' .* dtype torch.int32"),
    "wrong shape": (lambda t: t.update({"layers.1.up.weight": torch.zeros(32, 3)}), r"'layers.1.up.weight' .* shape \(32, 3\), expected \(32, 2\)"),
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_tampered_weights_are_rejected_and_leave_no_half_loaded_adapter(tmp_path, tampering):
    from safetensors.torch import load, save_file

    model = tiny_model("xlm-roberta", "ner")
    madx.add_task_adapter(model, "ner")
    madx.save_adapter(model, "ner", tmp_path / "ner")
    weights_path = tmp_path / "ner" / "adapter.safetensors"
    weights = load(weights_path.read_bytes())
    edit, message = TAMPERINGS[tampering]
    edit(weights)
    save_file(weights, str(weights_path))
    fresh = tiny_model("xlm-roberta", "ner")
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match=f"adapter.safetensors: .*{message}"):
        madx.load_adapter(fresh, tmp_path / "ner")
    assert madx.adapter_names(fresh) == [] and not madx.is_attached(fresh)
    assert fresh.state_dict().keys() == before.keys() and all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())


def test_many_language_adapters_loaded_at_once_switch_without_reloading_base():
    model = tiny_model("xlm-roberta", "ner")
    for lang in ("en", "qu", "sw", "gn"):
        madx.add_language_adapter(model, lang)
    madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=11)
    base_ids = {id(p) for n, p in model.named_parameters() if ".madx_" not in n}
    batch = tiny_batch()
    results = {}
    for lang in ("en", "qu", "sw", "gn"):
        with active(model, Stack(lang, "ner")):
            results[lang] = outputs(model, batch)
    assert len({tuple(v[:5].tolist()) for v in results.values()}) == 4
    assert base_ids == {id(p) for n, p in model.named_parameters() if ".madx_" not in n}
