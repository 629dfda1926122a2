"""The layer equations, written out by hand from the paper (eq. 1, eq. 2 + footnote 2) and
from AdapterHub's Pfeiffer stacking, against what the hooked model computes."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import madx
from madx import Stack, active
from tests.conftest import randomise, tiny_model


def adapter(a, h, residual):
    return F.linear(F.relu(F.linear(h, a.down.weight, a.down.bias)), a.up.weight, a.up.bias) + residual


@pytest.fixture
def layer_setup():
    model = tiny_model("xlm-roberta", "ner")
    madx.add_language_adapter(model, "en", invertible=False)
    madx.add_task_adapter(model, "ner")
    randomise(madx.get_store(model), seed=2)
    layer = model.base_model.encoder.layer[0]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 32, generator=generator)  # attention output, the FFN sub-block's input
    intermediate = layer.intermediate(x)
    r = layer.output.dropout(layer.output.dense(intermediate))  # FFN output (dropout is 0 here)
    ln = layer.output.LayerNorm
    la = madx.get_store(model).get("en").layers[0]
    ta = madx.get_store(model).get("ner").layers[0]
    return model, layer, x, intermediate, r, ln, la, ta


def test_single_language_adapter_is_eq1(layer_setup):
    model, layer, x, intermediate, r, ln, la, _ = layer_setup
    expected = ln(adapter(la, ln(r + x), r) + x)
    with active(model, Stack("en")), torch.no_grad():
        got = layer.output(intermediate, x)
    assert torch.allclose(got, expected.detach(), atol=1e-6)


def test_stack_paper_mode_is_eq2_with_the_ffn_residual(layer_setup):
    model, layer, x, intermediate, r, ln, la, ta = layer_setup
    language_out = adapter(la, ln(r + x), r)
    expected = ln(adapter(ta, language_out, r) + x)  # TA reads LA, adds the same r
    with active(model, Stack("en", "ner")), torch.no_grad():
        got = layer.output(intermediate, x)
    assert torch.allclose(got, expected.detach(), atol=1e-6)


def test_stack_adapterhub_mode_renormalises_and_chains_residuals(layer_setup):
    model, layer, x, intermediate, r, ln, la, ta = layer_setup
    language_out = adapter(la, ln(r + x), r)
    expected = ln(adapter(ta, ln(language_out + x), language_out) + x)
    with active(model, Stack("en", "ner", mode="adapterhub")), torch.no_grad():
        got = layer.output(intermediate, x)
    assert torch.allclose(got, expected.detach(), atol=1e-6)
    with active(model, Stack("en", "ner")), torch.no_grad():
        paper = layer.output(intermediate, x)
    assert not torch.allclose(got, paper, atol=1e-4), "the two stacking modes must differ"


def test_task_adapter_alone_is_eq1(layer_setup):
    model, layer, x, intermediate, r, ln, _, ta = layer_setup
    expected = ln(adapter(ta, ln(r + x), r) + x)
    with active(model, Stack("ner")), torch.no_grad():
        got = layer.output(intermediate, x)
    assert torch.allclose(got, expected.detach(), atol=1e-6)


@pytest.mark.parametrize("setup", [Stack("en"), Stack("ner"), Stack("en", "ner")], ids=str)
def test_dispatched_op_with_the_reference_is_the_previous_formula_bit_for_bit(layer_setup, monkeypatch, setup):
    """The layer now calls kernels.adapter_layer / stacked_adapter_layer; with the reference they
    compute what the adapter-module loop computed before: equal outputs and grads, not close."""
    from madx import kernels

    monkeypatch.setenv(kernels.ENV_VAR, "reference")

    monkeypatch.setattr(kernels, "_IMPL_SETTING", [])  # read the variable afresh
    model, layer, x, intermediate, r, ln, la, ta = layer_setup
    modules = {"en": la, "ner": ta}
    trainable = [p for name in setup.names for p in modules[name].parameters()] + [ln.weight, ln.bias]
    x = x.clone().requires_grad_()

    def previous(normalised, ffn_output):  # madx.inject.layer before the dispatched op, paper mode
        out, adapter_input = None, normalised
        for name in setup.names:
            out = modules[name](adapter_input, ffn_output)
            adapter_input = out
        return ln(out + x)

    r = layer.output.dropout(layer.output.dense(intermediate))
    expected = previous(ln(r + x), r)
    g = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *trainable], g)
    op = "adapter_layer" if len(setup.names) == 1 else "stacked_adapter_layer"
    calls = []
    dispatched = getattr(kernels, op)
    monkeypatch.setattr(kernels, op, lambda *a, **kw: calls.append(1) or dispatched(*a, **kw))
    with active(model, setup):
        got = layer.output(intermediate, x)
    assert calls == [1], f"the layer did not call kernels.{op}"
    assert torch.equal(got, expected)
    for a, e in zip(torch.autograd.grad(got, [x, *trainable], g), expected_grads):
        assert torch.equal(a, e)
