"""The perf benchmark: its FLOP model on hand-computed numbers, and a tiny end-to-end run.

No timing is asserted anywhere: the numbers depend on the machine. The targets are printed by the
benchmark, not checked here.
"""

from __future__ import annotations

import json

import pytest

from bench.perf.__main__ import main
from bench.perf.flops import BASE, HEAD, LANGUAGE, TASK, StepShape, step_flops
from bench.perf.report import TARGETS, check_targets
from bench.perf.workloads import PRESETS, WORKLOADS, make_batches

# L=1 layer, h=4, FFN 8, V=10, B=1, T=2: 2 token rows. Language adapter d=2, invertible F/G: 2 -> 1 -> 2.
# Per layer, forward (2·m·n·k):
#   query, key, value  3 × 2·2·4·4 = 192      scores, context  2 × 2·1·2·2·4 = 64
#   attention out        2·2·4·4 = 64          ffn in, ffn out  2 × 2·2·4·8 = 256
#   language adapter   2 × 2·2·4·2 = 64                                   -> 640 (576 without the adapter)
# Invertible on the 2 token rows: 4 × 2·2·2·1 = 32; on r head rows: 4 × 2·r·2·1 = 16r.
# MLM head on r rows: dense 2·r·4·4 = 32r, decoder 2·r·4·10 = 80r.
SMALL = dict(layers=1, hidden=4, ffn=8, vocab=10, batch=1, seq_len=2)


def test_language_adapter_masked_only_frozen_base():
    shape = StepShape(**SMALL, head="mlm", head_rows=1, language_bottleneck=2, invertible_bottleneck=1)
    count = step_flops(shape, (LANGUAGE,))
    assert count.forward == 32 + 640 + (32 + 16 + 80)  # 800
    # backward: invertible F.down weight grad only (its input is the frozen embedding): 8; F.up, G.down, G.up
    # weight + input grad: 3 × 16 = 48 -> 56. Layer: frozen linears input grad only (1×): 192 + 64 + 256 = 512,
    # attention 2× = 128, adapter 2× = 128 -> 768. Head: dense 32 (1×), inverse coupling 2 × 16 = 32,
    # decoder 80 (1×, frozen) -> 144.
    assert count.backward == 56 + 768 + 144
    assert count.total == 800 + 968


def test_full_vocabulary_head_runs_on_every_position():
    shape = StepShape(**SMALL, head="mlm", head_rows=2, language_bottleneck=2, invertible_bottleneck=1)
    count = step_flops(shape, (LANGUAGE,))
    assert count.forward == 32 + 640 + (64 + 32 + 160)  # 928
    assert count.backward == 56 + 768 + (64 + 64 + 160)  # 1112


def test_full_fine_tuning_doubles_every_weight_product():
    shape = StepShape(**SMALL, head="mlm", head_rows=1)
    count = step_flops(shape, (BASE,))
    assert count.forward == 576 + 32 + 80  # 688
    # the embeddings train, so even layer 0's inputs need grads: every product costs 2× in backward
    assert count.backward == 2 * 688
    assert count.by_group == {"encoder": 3 * 512, "attention": 3 * 64, "head": 3 * 112}


def test_task_adapter_backward_stops_below_the_lowest_trainable_adapter():
    # two layers, language adapter d=2 (+ invertible at the embeddings), task adapter d=1, 3 labels
    shape = StepShape(**{**SMALL, "layers": 2}, head="token", head_rows=2, num_labels=3,
                      language_bottleneck=2, invertible_bottleneck=1, task_bottleneck=1)
    count = step_flops(shape, (TASK, HEAD))
    task_adapter = 2 * (2 * 2 * 4 * 1)  # down + up = 32
    classifier = 2 * 2 * 4 * 3  # 48
    assert count.forward == 32 + 2 * (640 + task_adapter) + classifier  # 1424
    # invertible and layer 0 up to its language adapter: nothing below trains -> 0.
    # layer 0 task adapter: down weight grad only 16, up weight + input 32 -> 48.
    # layer 1: frozen linears 1× 512 + attention 2× 128 + language adapter 1× 64 + task adapter 2× 64 -> 768.
    # classifier: weight + input 96.
    assert count.backward == 48 + 768 + 96
    evaluation = step_flops(shape, (), train=False)
    assert (evaluation.forward, evaluation.backward) == (1424, 0)


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.name)
def test_flop_model_matches_torch_flop_counter_on_the_tiny_model(workload):
    """torch's FlopCounterMode counts the matmuls autograd really runs, frozen weights included."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    preset = PRESETS["tiny"]
    prepared = workload.build(preset, make_batches(preset), torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        if prepared.train:
            prepared.compute(prepared.batch).backward()
        else:
            with torch.no_grad():
                prepared.compute(prepared.batch)
    counted = step_flops(prepared.shape, prepared.trainable, train=prepared.train)
    by_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    # attention runs as bmm (SDPA's math path, taken with a padding mask) or as an SDPA kernel, which
    # FlopCounterMode counts on some backends and not on others (CPU flash attention): check it apart
    attention = sum(f for op, f in by_op.items() if op == "aten.bmm" or "scaled_dot_product" in op)
    assert counter.get_total_flops() - attention == counted.total - counted.by_group.get("attention", 0), by_op
    if attention:
        assert attention == counted.by_group["attention"], by_op


def test_flop_model_rejects_nonsense():
    shape = StepShape(**SMALL, head="mlm", head_rows=1)
    with pytest.raises(ValueError, match="unknown trainable"):
        step_flops(shape, ("adapters",))
    with pytest.raises(ValueError, match="at least one trainable"):
        step_flops(shape, ())
    with pytest.raises(ValueError, match="head_rows"):
        StepShape(**SMALL, head="mlm", head_rows=3)


def test_batches_mask_exactly_and_pad_consistently():
    preset = PRESETS["tiny"]
    batches = make_batches(preset, seed=1)
    mask = batches.mlm["attention_mask"].bool()
    masked = batches.mlm["labels"] != -100
    assert int(mask.sum()) == batches.real_tokens and int(masked.sum()) == batches.masked_positions
    assert not (masked & ~mask).any()  # never a padded position
    assert ((batches.ner["labels"] != -100) == mask).all()


def test_targets_compare_within_a_variant_and_fused_falls_back_to_eager_full_ft():
    def row(key, variant, step, memory):
        return {"workload": key, "variant": variant, "status": "ok", "step_s": {"median": step},
                "peak_memory_bytes": memory}

    rows = [row("a", "eager", 1.0, 100), row("b", "eager", 4.0, 300), row("c", "eager", 2.0, 150),
            row("a", "fused", 0.5, 90), row("b", "fused", 2.0, 280),
            {"workload": "c", "variant": "fused", "status": "n/a"}]
    checked = {(t["target"], t["variant"]): t for t in check_targets(rows, ("eager", "compile", "fused"))}
    assert checked[("(a)/(b) step time", "eager")]["verdict"] == "PASS"  # 0.25
    assert checked[("(a)/(c) step time", "eager")]["ratio"] == 0.5
    assert checked[("(a)/(c) peak memory", "eager")]["verdict"] == "MISS"  # 0.667
    assert checked[("(a)/(c) step time", "fused")]["denominator_variant"] == "eager"
    assert not any(variant == "compile" for _, variant in checked)
    assert len(checked) == 2 * len(TARGETS)


def test_tiny_run_writes_json_and_markdown_with_every_row(tmp_path, capsys):
    code = main(["--preset", "tiny", "--steps", "1", "--warmup", "1", "--threads", "1", "--out", str(tmp_path),
                 "--name", "tiny"])
    assert code == 0
    result = json.loads((tmp_path / "tiny.json").read_text())
    markdown = (tmp_path / "tiny.md").read_text()
    rows = {(r["workload"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {(w.key, v) for w in WORKLOADS for v in ("eager", "compile", "fused")}
    for workload in WORKLOADS:
        eager = rows[(workload.key, "eager")]
        assert eager["status"] == "ok", eager
        assert eager["step_s"]["median"] > 0 and eager["tokens_per_s"] > 0 and eager["peak_memory_bytes"] > 0
        assert eager["flops"]["total"] > 0 and eager["mfu"] > 0
        assert rows[(workload.key, "compile")]["status"] == "n/a"  # not requested
        assert rows[(workload.key, "fused")]["status"] == "n/a"  # CPU
        assert f"| ({workload.key}) |" in markdown
    assert rows[("e", "eager")]["flops"]["backward"] == 0 and rows[("e", "eager")]["trainable_params"] == 0
    assert rows[("e", "eager")]["saved_activation_bytes"] is None  # no backward, nothing saved
    assert all(rows[(k, "eager")]["saved_activation_bytes"] > 0 for k in "abcd")
    # full fine-tuning trains far more than the language adapter; its backward is heavier than (a)'s
    assert rows[("c", "eager")]["trainable_params"] > rows[("a", "eager")]["trainable_params"]
    assert {t["target"] for t in result["targets"]} == {t.name for t in TARGETS}
    assert result["command"].startswith("python -m bench.perf --preset tiny")
    assert result["provenance"]["versions"]["torch"]
    assert "## Targets" in markdown and result["command"] in markdown
    out = capsys.readouterr().out
    assert "(a)/(b) step time" in out and ("PASS" in out or "MISS" in out)


def test_measure_leaves_no_tensor_of_its_workload_alive():
    """Each row must free its model: on CUDA the next rows' peak memory counts whatever stays live
    (a saved-tensor hook that returned the tensor kept every workload's graph and model alive)."""
    import gc

    import torch

    from bench.perf.measure import measure

    preset = PRESETS["tiny"]
    batches = make_batches(preset, seed=0)

    def live_tensor_bytes() -> int:
        gc.collect()
        return sum(o.numel() * o.element_size() for o in gc.get_objects() if torch.is_tensor(o))

    before = live_tensor_bytes()
    for workload in WORKLOADS:
        row = measure(workload, "eager", preset, batches, torch.device("cpu"), 1e12, log=lambda *a: None)
        assert row.status == "ok", row.reason
        assert live_tensor_bytes() == before, f"({workload.key}) left tensors alive"
