"""Data-parallel language-adapter MLM: the step runs through the DDP wrapper (``MaskedLMObjective``),
so gradients are all-reduced and every rank ends with the same adapter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_end_with_identical_adapters(tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(free_port()),
               str(Path(__file__).with_name("ddp_language_adapter.py")), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{i}.pt") for i in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    trained = [n for n, v in ranks[0].items() if "up.weight" in n and v.abs().max() > 0]
    assert trained, "the adapters' up-projections start at zero and must have trained"
    for name in ranks[0]:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=1e-6, msg=name)


def test_a_stopped_data_parallel_run_resumes_on_every_rank_bit_for_bit(tmp_path):
    """Rank 1 alone gets SIGTERM at step 3: both ranks checkpoint that step (each its own RNG states), rank 1
    hands the signal on, rank 0 stops with TrainingStopped; the resumed run ends where the uninterrupted one did."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), str(Path(__file__).with_name("ddp_resume.py")), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{i}.pt") for i in range(2)]
    assert [r["outcome"] for r in ranks] == ["TrainingStopped", "stopped"]
    for r in ranks:
        for name, value in r["reference"].items():
            assert torch.equal(r["resumed"][name], value), name
            assert torch.equal(value, ranks[0]["reference"][name]), name
