"""The phases from the command line: make a tiny model, train a language adapter, a task adapter,
evaluate zero-shot with the target's adapter — and the same evaluation under
``accelerate launch --num_processes 2`` gives the same metric (each sentence scored once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from madx.data import synthetic
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def madx_cli(*args, processes=1, cwd=None):
    prefix = [sys.executable, "-m", "madx"] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--main_process_port", str(free_port()), "-m", "madx"]
    # on a machine without GPUs "--multi_gpu" only picks accelerate's torchrun launcher; Runtime uses gloo
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    for lang in ("en", "qu"):
        synthetic.write_text(root / f"{lang}.txt", lang, 200)
        synthetic.write_wikiann(root / f"train-{lang}.tsv", lang, 40, seed=0)
        synthetic.write_wikiann(root / f"test-{lang}.tsv", lang, 37, seed=2)  # odd: uneven split over 2 processes
    # the tokenizer also learns the NER sentences' words: their text, one sentence per line (make-tiny's
    # --text, like train-lang's, refuses the token<TAB>tag file itself)
    sentences = (root / "train-en.tsv").read_text(encoding="utf-8").strip().split("\n\n")
    (root / "ner-en.txt").write_text("\n".join(" ".join(line.split("\t")[0] for line in block.splitlines())
                                               for block in sentences) + "\n", encoding="utf-8")
    madx_cli("models", "make-tiny", "--out", root / "model", "--text", root / "en.txt", root / "qu.txt",
             root / "ner-en.txt", "--vocab-size", "600", "--hidden-size", "32")
    for lang in ("en", "qu"):
        madx_cli("train-lang", "--model", root / "model", "--language", lang, "--text", root / f"{lang}.txt",
                 "--out", root / f"lang-{lang}", "--steps", "6", "--batch-size", "8", "--max-seq-length", "32", "--lr", "0.002")
    madx_cli("train-task", "--model", root / "model", "--task", "ner", "--train", root / "train-en.tsv",
             "--dev", root / "train-en.tsv", "--language-adapter", root / "lang-en" / "adapter", "--out", root / "ner",
             "--epochs", "3", "--batch-size", "8", "--lr", "0.005", "--reduction-factor", "2")
    return root


def test_each_phase_writes_its_outputs(trained):
    assert (trained / "lang-qu" / "adapter" / "adapter.safetensors").exists()
    assert (trained / "ner" / "task_adapter" / "head.safetensors").exists()
    metrics = json.loads((trained / "ner" / "metrics.json").read_text())
    assert metrics["command"] == "train-task" and "git_revision" in metrics and metrics["result"]["dev"]["f1"] >= 0


def test_zero_shot_eval_is_the_same_on_one_and_two_processes(trained):
    args = ["evaluate", "--model", trained / "model", "--task", "ner", "--test", trained / "test-qu.tsv",
            "--language-adapter", trained / "lang-qu" / "adapter", "--task-adapter", trained / "ner" / "task_adapter",
            "--batch-size", "4"]
    madx_cli(*args, "--out", trained / "eval1")
    madx_cli(*args, "--out", trained / "eval2", processes=2)
    one = json.loads((trained / "eval1" / "metrics.json").read_text())["result"]["metrics"]
    two = json.loads((trained / "eval2" / "metrics.json").read_text())["result"]["metrics"]
    assert one["n_sentences"] == two["n_sentences"] == 37
    assert one == two
