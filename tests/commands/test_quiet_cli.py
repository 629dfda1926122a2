"""Warnings only when something is wrong: a CPU machine is not told that its GPU went undetected,
a head about to be trained or loaded is not reported as missing — but a model without the MLM head
that train-lang needs is an error, not a silent random head."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from madx import cli
from tests.commands.tiny import make_tiny, save_language_adapter, save_task_adapter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("quiet")
    make_tiny(root)
    save_language_adapter(root / "model", "qu", root / "lang-qu" / "adapter")
    save_task_adapter(root / "model", root / "ner-madx", method="madx")
    return root


def test_no_load_report_for_a_head_loaded_from_the_task_adapter(tiny, tmp_path):
    """transformers reports the new classifier as MISSING; evaluate loads it from the task adapter right after."""
    done = subprocess.run([sys.executable, "-m", "madx", "evaluate", "--model", str(tiny / "model"), "--task", "ner",
                           "--test", str(tiny / "test-qu.tsv"), "--language-adapter", str(tiny / "lang-qu" / "adapter"),
                           "--task-adapter", str(tiny / "ner-madx" / "task_adapter"), "--out", str(tmp_path / "eval")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for noise in ("LOAD REPORT", "MISSING", "newly initialized", "WARNING"):
        assert noise not in done.stdout + done.stderr, noise


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None or torch.cuda.is_available(),
                    reason="deepspeed's CPU warning needs deepspeed installed and no CUDA")
def test_a_cpu_machine_is_not_warned_about_an_undetected_gpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    done = subprocess.run([sys.executable, "-m", "madx", "models", "make-tiny", "--out", str(tmp_path / "m"),
                           "--vocab-size", "600", "--hidden-size", "16"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Setting accelerator to CPU" not in done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr


def test_a_model_without_an_mlm_head_is_refused_by_train_lang(tiny, tmp_path, capsys):
    from transformers import AutoModel, AutoTokenizer

    from madx.atomic import atomic_save_pretrained

    atomic_save_pretrained(tmp_path / "encoder", AutoModel.from_pretrained(tiny / "model"),
                           AutoTokenizer.from_pretrained(tiny / "model"))
    capsys.readouterr()
    assert cli.main(["train-lang", "--model", str(tmp_path / "encoder"), "--language", "qu", "--text", str(tiny / "en.txt"),
                     "--steps", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint has no MLM head" in err and "madx models train-mlm-head" in err and err.count("\n") == 1
