"""The op benchmark's CPU-side logic: inputs that fit each op, the ratios and targets, the report.
(Timing itself needs CUDA; ``main`` refuses without it.)"""

from __future__ import annotations

import pytest
import torch

from bench.perf import ops
from madx import kernels


@pytest.mark.parametrize("row", ops.ROWS, ids=lambda r: r.name)
def test_inputs_fit_the_op_and_grads_follow_the_phase(row):
    args, kwargs, leaves = ops.make_inputs(row, tokens=5, h=16, dtype=torch.float32, device="cpu")
    out = ops._reference(row.op)(*args, **kwargs)
    assert out.shape == (5, 16)
    grads = torch.autograd.grad(out.sum(), leaves)
    assert all(g is not None for g in grads)
    n_activations = 1 if row.op == "nice_coupling" else 3
    assert leaves[:n_activations] == args[:n_activations]
    n_params = sum(4 * (2 if row.op == "nice_coupling" else 1) for t in row.trained if t)
    assert len(leaves) == n_activations + n_params  # LayerNorm and frozen adapters get no grads
    torch.testing.assert_close(getattr(kernels, row.op)(*args, impl="reference", **kwargs), out)


def test_rows_cover_the_issue_shapes():
    by_op = {(r.op, r.sizes, r.inverse) for r in ops.ROWS}
    assert ("adapter_layer", (384,), False) in by_op and ("adapter_layer", (48,), False) in by_op
    assert ("stacked_adapter_layer", (384, 48), False) in by_op
    assert {("nice_coupling", (192,), False), ("nice_coupling", (192,), True)} <= by_op
    assert ops.TOKENS == 64 * 256 and ops.HIDDEN == 768


def test_ratios_verdicts_and_report():
    full = {"name": "language adapter block", "sizes": [384], "phase": "language phase",
            "eager_fwd_ms": 0.1, "fused_fwd_ms": 0.08, "eager_fwd_bwd_ms": 0.4, "compile_fwd_bwd_ms": 0.3,
            "fused_fwd_bwd_ms": 0.25, "max_abs_diff": 0.0078}
    no_compile = {**full, "name": "task adapter block", "compile_fwd_bwd_ms": None, "fused_fwd_bwd_ms": 0.35,
                  "note": "compile column skipped: --no-compile"}
    assert ops.ratios(full) == pytest.approx({"fused_vs_eager": 1.6, "fused_vs_compile": 1.2})
    assert ops.verdicts(full) == {"fused_vs_eager": True, "fused_vs_compile": True}
    assert ops.verdicts(no_compile) == {"fused_vs_eager": False, "fused_vs_compile": None}
    md = ops.render_markdown({"device": "GPU", "command": "python -m bench.perf.ops", "dtype": "bf16",
                              "tokens": 16384, "hidden": 768, "rows": [full, no_compile]})
    assert "| language adapter block | 384 | language phase | 0.100 | 0.080 | 0.400 | 0.300 | 0.250 | 1.60x PASS | 1.20x PASS |" in md
    assert "1.14x MISS | – |" in md
    assert "- task adapter block: compile column skipped: --no-compile" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_main_refuses_without_cuda(capsys, tmp_path):
    assert ops.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
