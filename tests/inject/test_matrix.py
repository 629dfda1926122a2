"""The contract matrix (PEFT's TEST_CASES style): architectures x adapter setups, one test per operation.

Every operation must leave a model that computes exactly what the original computes with its own
adapters and setup: a deep copy, a DataParallel replica, a state_dict round trip, save/load, the
AdapterHub export/import round trip, the forms of set_active, loading a second task adapter, gradient
checkpointing and torch.compile. Adding an architecture (madx/inject/spec.py) adds its rows to ARCHS.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from safetensors.torch import load_file

import madx
from madx import AdapterConfig, Stack
from tests.conftest import randomise, tiny_batch, tiny_model

ARCHS = ["xlm-roberta", "bert"]

# setup name -> how it is built: the model's head, the language adapter's invertible part, a task adapter, leave_out
SETUPS = {
    "LA": dict(head="mlm", invertible=False, task=False, leave_out=()),
    "LA+INV": dict(head="mlm", invertible=True, task=False, leave_out=()),
    "Stack(LA,TA)": dict(head="ner", invertible=False, task=True, leave_out=()),
    "Stack(LA+INV,TA)": dict(head="ner", invertible=True, task=True, leave_out=()),
    "leave_out": dict(head="ner", invertible=True, task=True, leave_out=(-1,)),  # MAD-X 2.0
}
CASES = [(arch, setup) for arch in ARCHS for setup in SETUPS]
TASK_CASES = [(arch, setup) for arch, setup in CASES if SETUPS[setup]["task"]]


def build(arch: str, setup: str, seed: int = 1, base_seed: int = 0, adapters: bool = True):
    """A tiny model with the setup's adapters (random, non-trivial weights; the task adapter's head too), active."""
    spec = SETUPS[setup]
    model = tiny_model(arch, spec["head"], seed=base_seed)
    if not adapters:
        return model, None
    config = AdapterConfig(leave_out=spec["leave_out"])
    madx.add_language_adapter(model, "en", config, invertible=spec["invertible"])
    names = ["en"]
    if spec["task"]:
        madx.add_task_adapter(model, "ner", config)
        names.append("ner")
        for head in madx.task_heads(model, "ner").values():
            randomise(head, seed=seed + 100)
    randomise(madx.get_store(model), seed=seed, std=0.1)
    stack = Stack(*names)
    madx.set_active(model, stack)
    return model, stack


def outputs(model, batch=None):
    with torch.no_grad():
        out = model(**(batch or tiny_batch()))
    return torch.cat([v.flatten() for k, v in out.items() if isinstance(v, torch.Tensor) and k != "loss"])


def first_output(out):
    return out.logits if getattr(out, "logits", None) is not None else out.start_logits


@pytest.mark.parametrize("arch,setup", CASES)
def test_deepcopy_computes_with_its_own_adapters_and_setup(arch, setup):
    model, stack = build(arch, setup)
    expected = outputs(model)
    duplicate = copy.deepcopy(model)
    assert torch.equal(outputs(duplicate), expected)
    madx.set_active(model, None)  # the original's setup is the original's
    assert torch.equal(outputs(duplicate), expected), "the copy must run its own setup, not the original's"
    madx.set_active(model, stack)
    randomise(madx.get_store(duplicate), seed=7, std=0.1)  # the copy's adapters are the copy's
    assert not torch.allclose(outputs(duplicate), expected)
    assert torch.equal(outputs(model), expected)
    madx.set_active(duplicate, None)
    assert torch.equal(outputs(duplicate), outputs(build(arch, setup, adapters=False)[0]))


@pytest.mark.parametrize("arch,setup", CASES)
def test_data_parallel_replica_computes_with_its_own_copies(monkeypatch, arch, setup):
    """``nn.parallel.replicate`` (what DataParallel runs each step), with the CUDA broadcast replaced by CPU clones:
    the module wiring is torch's own. Each replica must compute the original's outputs from its own tensors."""
    replicate_module = importlib.import_module("torch.nn.parallel.replicate")  # the module; the package exports the function

    monkeypatch.setattr(replicate_module, "_broadcast_coalesced_reshape",
                        lambda tensors, devices, detach=False: [[t.detach().clone() for t in tensors] for _ in devices])
    model, _ = build(arch, setup)
    expected = outputs(model)
    replicas = replicate_module.replicate(model, [0, 1], detach=True)
    for replica in replicas:
        assert torch.equal(outputs(replica), expected)
    first = replicas[0]
    scaled = [tensor for name, module in first.named_modules() if ".madx_" in f".{name}."  # the replica's own copies
              for tensor in module._former_parameters.values()]  # (replicas hold them as plain attributes)
    assert scaled and not any(t is p for t in scaled for p in model.parameters())
    with torch.no_grad():
        for tensor in scaled:
            tensor.mul_(3.0)
    assert not torch.allclose(outputs(first), expected), "a replica must compute with its own adapter tensors"
    assert torch.equal(outputs(model), expected) and torch.equal(outputs(replicas[1]), expected)


@pytest.mark.parametrize("arch,setup", CASES)
def test_state_dict_round_trip(arch, setup):
    model, stack = build(arch, setup)
    expected = outputs(model)
    target, _ = build(arch, setup, seed=5)  # the same adapters, other weights
    assert not torch.equal(outputs(target), expected)
    result = target.load_state_dict(model.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(outputs(target), expected)


@pytest.mark.parametrize("arch,setup", CASES)
def test_save_load_round_trip(tmp_path, arch, setup):
    model, stack = build(arch, setup)
    expected = outputs(model)
    for name in stack:
        madx.save_adapter(model, name, tmp_path / name)
    target, _ = build(arch, setup, adapters=False)
    for name in stack:
        madx.load_adapter(target, tmp_path / name)
    madx.set_active(target, stack)
    assert torch.equal(outputs(target), expected)


@pytest.mark.parametrize("arch,setup", CASES)
def test_adapterhub_export_import_round_trip(tmp_path, arch, setup):
    model, stack = build(arch, setup)
    expected = outputs(model)
    kinds = {"en": "language", "ner": "task"}
    for name in stack:
        madx.export_adapterhub(model, name, tmp_path / name)
    target, _ = build(arch, setup, adapters=False)
    for name in stack:
        assert madx.import_adapterhub(target, tmp_path / name, kind=kinds[name]) == name
        assert madx.get_store(target).get(name).leave_out == madx.get_store(model).get(name).leave_out
    madx.set_active(target, stack)
    assert torch.equal(outputs(target), expected)


@pytest.mark.parametrize("arch,setup", CASES)
def test_set_active_takes_a_name_a_list_or_a_stack(arch, setup):
    model, stack = build(arch, setup)
    expected = outputs(model)
    forms = [list(stack.names), tuple(stack.names)] + ([stack.names[0]] if len(stack) == 1 else [])
    for form in forms:
        madx.set_active(model, None)
        madx.set_active(model, form)
        assert madx.get_active(model) == stack
        assert torch.equal(outputs(model), expected), form
    with pytest.raises(TypeError, match="a name, a list of names or a madx.Stack"):
        madx.set_active(model, 3)


@pytest.mark.parametrize("arch,setup", TASK_CASES)
def test_loading_a_second_task_adapter_never_changes_the_first(tmp_path, arch, setup):
    """Each task adapter has its own head, saved and loaded with it and switched with the active stack."""
    other, _ = build(arch, setup, seed=9)
    madx.set_active(other, None)
    madx.delete_adapter(other, "ner")
    madx.add_task_adapter(other, "pos", AdapterConfig(leave_out=SETUPS[setup]["leave_out"]))
    randomise(madx.get_store(other).get("pos"), seed=11, std=0.1)
    for head in madx.task_heads(other, "pos").values():
        randomise(head, seed=12)
    madx.save_adapter(other, "pos", tmp_path / "pos")

    model, stack = build(arch, setup)
    expected = outputs(model)
    madx.load_adapter(model, tmp_path / "pos")
    assert torch.equal(outputs(model), expected), "loading another task adapter changed what the active one computes"
    with madx.active(model, Stack("pos")):  # pos with its own head, as it was saved
        assert torch.equal(outputs(model), outputs(_activated(other, Stack("pos"))))
    assert torch.equal(outputs(model), expected)


def _activated(model, stack):
    madx.set_active(model, stack)
    return model


@pytest.mark.parametrize("arch,setup", CASES)
def test_gradient_checkpointing_computes_the_same_outputs_and_gradients(arch, setup):
    results = []
    for checkpointing in (False, True):
        model, stack = build(arch, setup)
        madx.train_adapter(model, stack)
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        out = first_output(model(**tiny_batch()))
        out.pow(2).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert grads and all(".madx_" in n for n in grads)
        results.append((out.detach(), grads))
    (out0, grads0), (out1, grads1) = results
    assert torch.equal(out0, out1)
    assert grads0.keys() == grads1.keys() and all(torch.allclose(grads0[n], grads1[n], atol=1e-6) for n in grads0)


@pytest.mark.slow
@pytest.mark.parametrize("arch,setup", CASES)
def test_compiled_model_has_no_graph_break_and_matches_eager(arch, setup):
    model, stack = build(arch, setup)
    batch = tiny_batch()
    expected = outputs(model, batch)
    explained = torch._dynamo.explain(model)(**batch)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        got = compiled(**batch)
    assert torch.allclose(torch.cat([v.flatten() for k, v in got.items() if isinstance(v, torch.Tensor)]), expected, atol=1e-6)
    madx.set_active(model, None)  # guarded module state: the compiled model recompiles, never runs the stale graph
    with torch.no_grad():
        plain = compiled(**batch)
    got_plain = torch.cat([v.flatten() for k, v in plain.items() if isinstance(v, torch.Tensor)])
    assert torch.allclose(got_plain, outputs(_plain(arch, setup), batch), atol=1e-6)


def _plain(arch, setup):
    return build(arch, setup, adapters=False)[0]


@pytest.mark.parametrize("arch,setup", CASES)
def test_save_pretrained_writes_the_base_clean(tmp_path, arch, setup):
    """``model.save_pretrained`` with adapters attached writes the base model only (no madx keys that
    ``from_pretrained`` would drop as unexpected); the adapters stay in ``state_dict()`` and on the model."""
    model, stack = build(arch, setup)
    expected = outputs(model)
    model.save_pretrained(tmp_path / "base")
    keys = set(load_file(str(tmp_path / "base" / "model.safetensors")))
    assert keys and not [k for k in keys if "madx" in k]
    assert any(".madx_" in k for k in model.state_dict())
    assert torch.equal(outputs(model), expected)
    reloaded = type(model).from_pretrained(tmp_path / "base").eval()
    assert torch.equal(outputs(reloaded), outputs(_plain(arch, setup)))
