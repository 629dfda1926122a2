"""The MLM loss paths: chunked linear cross-entropy vs the materialised head logits, and both vs HF."""

from __future__ import annotations

import pytest
import torch

import madx
from madx.inject.mlm_head import mlm_decoder, mlm_decoder_input
from madx.tasks.mlm import IGNORE_INDEX, full_vocabulary_mlm_loss, masked_lm_loss
from tests.conftest import randomise, tiny_model


def mlm_batch(seed=0, batch=4, length=12, vocab=101, packed=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    labels = torch.full_like(ids, IGNORE_INDEX)
    chosen = torch.rand(batch, length, generator=g) < 0.3
    chosen[0, 1] = True
    labels[chosen] = ids[chosen]
    out = {"input_ids": torch.where(chosen, torch.full_like(ids, 4), ids), "labels": labels}
    if not packed:
        mask = torch.ones_like(ids)
        mask[0, -3:] = 0
        out["labels"] = torch.where(mask.bool(), labels, IGNORE_INDEX)
        out["attention_mask"] = mask
    return out


def madx_mlm_model(arch, invertible=True, train_head=False):
    model = tiny_model(arch, "mlm").train()
    madx.add_language_adapter(model, "qu", invertible=invertible)
    randomise(madx.get_store(model), seed=3, std=0.1)
    madx.set_active(model, madx.Stack("qu"))
    madx.set_trainable(model, adapters=["qu"])
    if train_head:
        mlm_decoder(model).bias.requires_grad_(True)
    return model


def loss_and_grads(model, batch, loss_impl):
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    loss = masked_lm_loss(model, batch, loss_impl=loss_impl)
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.detach(), dict(zip(params, grads))


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
def test_decoder_input_reproduces_the_heads_logits(arch):
    model = madx_mlm_model(arch)
    hidden = torch.randn(7, model.config.hidden_size)
    decoder = mlm_decoder(model)
    head = madx.inject.spec.get_path(model, madx.inject.spec_for_model_type(model.config.model_type).mlm_head)
    expected = head(hidden)
    got = torch.nn.functional.linear(mlm_decoder_input(model, hidden), decoder.weight, decoder.bias)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert "forward" not in decoder.__dict__, "the decoder's own forward is restored"
    # the inverse of the invertible adapter ran: without it the decoder input differs
    adapted = mlm_decoder_input(model, hidden)
    madx.set_active(model, None)
    assert not torch.allclose(mlm_decoder_input(model, hidden), adapted)


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
@pytest.mark.parametrize("invertible", [True, False])
def test_chunked_loss_and_every_gradient_equal_the_materialised_path_fp32(arch, invertible):
    model = madx_mlm_model(arch, invertible=invertible, train_head=True)
    batch = mlm_batch()
    ref_loss, ref_grads = loss_and_grads(model, batch, "materialized")
    loss, grads = loss_and_grads(model, batch, "chunked")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert any("invertible" in n for n in grads) == invertible
    assert any(n.endswith("bias") and "madx" not in n for n in grads), "the head bias trains here"
    for name, ref in ref_grads.items():
        assert ref.abs().max() > 0, f"{name} gets no gradient: the comparison would be empty"
        torch.testing.assert_close(grads[name], ref, rtol=1e-5, atol=1e-6 * ref.abs().max().item(), msg=name)


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
def test_chunked_loss_under_bf16_autocast_within_twice_the_reference_error(arch):
    model = madx_mlm_model(arch, train_head=True)
    batch = mlm_batch(seed=1)
    exact_loss, exact = loss_and_grads(model.double(), batch, "materialized")
    model.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss, ref = loss_and_grads(model, batch, "materialized")
        loss, grads = loss_and_grads(model, batch, "chunked")
    atol = 2e-3
    assert (loss.double() - exact_loss).abs() <= 2 * (ref_loss.double() - exact_loss).abs() + atol
    for name, e in exact.items():
        err = (grads[name].double() - e).abs().max()
        ref_err = (ref[name].double() - e).abs().max()
        assert err <= 2 * ref_err + atol * e.abs().max(), (name, float(err), float(ref_err))


def test_masked_loss_equals_hf_full_vocabulary_loss_on_a_padded_batch():
    model = madx_mlm_model("xlm-roberta")
    batch = mlm_batch(packed=False)
    with torch.no_grad():
        hf = full_vocabulary_mlm_loss(model, batch)
        for impl in ("chunked", "materialized"):
            torch.testing.assert_close(masked_lm_loss(model, batch, loss_impl=impl), hf, rtol=1e-5, atol=1e-6)


def test_packed_batch_without_mask_equals_all_ones_mask():
    model = madx_mlm_model("xlm-roberta")
    batch = mlm_batch()
    with torch.no_grad():
        packed = masked_lm_loss(model, batch)
        masked = masked_lm_loss(model, {**batch, "attention_mask": torch.ones_like(batch["input_ids"])})
    torch.testing.assert_close(packed, masked, rtol=1e-6, atol=1e-6)


def test_nothing_masked_keeps_the_graph():
    model = madx_mlm_model("xlm-roberta")
    batch = mlm_batch()
    batch["labels"] = torch.full_like(batch["labels"], IGNORE_INDEX)
    loss = masked_lm_loss(model, batch)
    loss.backward()
    assert loss.item() == 0.0


def test_unknown_loss_impl():
    model = madx_mlm_model("xlm-roberta")
    with pytest.raises(ValueError, match="known: chunked, materialized"):
        masked_lm_loss(model, mlm_batch(), loss_impl="fused")


# --- the compiled step ------------------------------------------------------------------------

SETUPS = {"LA+INV": ("qu",), "LA": ("qu",), "Stack(LA, TA)": ("qu", "ner")}


def compiled_setup_model(setup):
    model = madx_mlm_model("xlm-roberta", invertible=setup != "LA")
    if setup == "Stack(LA, TA)":
        madx.add_task_adapter(model, "ner")
        randomise(madx.get_store(model).get("ner"), seed=4, std=0.1)
        madx.set_active(model, madx.Stack("qu", "ner"))
    return model


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_encoder_with_adapter_hooks_compiles_without_graph_breaks(setup):
    from madx.tasks.mlm import _Encoder

    model = compiled_setup_model(setup)
    explained = torch._dynamo.explain(_Encoder(model))(mlm_batch()["input_ids"], None)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_compiled_objective_compiles_once_and_matches_eager():
    from torch._dynamo.testing import CompileCounterWithBackend

    from madx.tasks.mlm import MaskedLMObjective

    torch._dynamo.reset()
    model = compiled_setup_model("LA+INV")
    counter = CompileCounterWithBackend("aot_eager")  # AOTAutograd: the backward is traced too
    compiled = MaskedLMObjective(model, compile=True, compile_backend=counter)
    eager = MaskedLMObjective(model)
    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(3):  # a new mask (and masked-row count) every step, one shape
        batch = mlm_batch(seed=10 + step)
        loss_c = compiled(**batch)
        grads_c = torch.autograd.grad(loss_c, params)
        loss_e = eager(**batch)
        grads_e = torch.autograd.grad(loss_e, params)
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
        for gc, ge in zip(grads_c, grads_e):
            torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-6)
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames for 3 steps of one shape"
    assert not any(n.startswith("_encode") for n, _ in compiled.named_parameters())
    assert {n for n, _ in compiled.named_parameters()} == {f"model.{n}" for n, _ in model.named_parameters()}
