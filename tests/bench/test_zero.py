"""A full-model job under DeepSpeed ZeRO-2 on 2 CPU processes (gloo) trains and is recorded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow
SUITE = str(Path(__file__).resolve().parents[1] / "fixtures" / "zero-suite.yaml")


def test_full_finetuning_runs_in_a_zero2_group(tmp_path):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-m", "madx", "bench", "run", SUITE, "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "jobs").glob("*/result.json")]
    task = next(r for r in results if r["job"]["kind"] == "task")
    assert task["cost"]["zero"] == {"stage": 2, "processes": 2}
    assert "ZeRO-2" in task["cost"]["device"] or task["cost"]["zero"]["processes"] == 2
    history = [h for h in task["train"]["history"] if "loss" in h]
    assert history and all(h["loss"] == h["loss"] for h in history)  # finite, recorded
    assert (tmp_path / "jobs" / task["job"]["id"] / "artifacts" / "model" / "config.json").exists()
    evals = [r for r in results if r["job"]["kind"] == "eval"]
    assert len(evals) == 2 and all("f1" in r["metrics"] for r in evals)
