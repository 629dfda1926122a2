"""Adapters under DeepSpeed ZeRO-3 (issue 21): with every parameter partitioned over 2 processes, the
adapted modules gather what they read, so the engine computes what the unpartitioned model computes,
and a training step moves only the adapters and the task head."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("setup", ["LA+INV,TA", "LA,TA adapterhub", "TA"])
def test_an_adapted_model_under_zero3_computes_what_the_model_computes(tmp_path, setup):
    out = tmp_path / "result.json"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).with_name("zero3_rank.py")), str(out), setup],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["partitioned"], "the adapters' parameters were not partitioned: the test would prove nothing"
    assert result["max_diff"] <= 1e-6, result
    assert result["base_unchanged"] and result["trained"] > 0, result
