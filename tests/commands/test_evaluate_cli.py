"""``madx evaluate`` as a user runs it: a head that nothing trained is refused (not scored), a MAD-X
task adapter needs its language adapter, swapped flags get a command-line message, transformers'
load report stays off the screen (tests/commands/test_quiet_cli.py), and per-sentence predictions are
written in the suite's format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from madx import cli
from tests.commands.tiny import tiny_with_adapters


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_with_adapters(tmp_path_factory.mktemp("evaluate"))


def evaluate(tiny, out, *extra):
    return cli.main(["evaluate", "--model", str(tiny / "model"), "--task", "ner", "--test", str(tiny / "test-qu.tsv"),
                     "--out", str(out), *map(str, extra)])


def test_no_task_adapter_on_a_base_model_is_refused_not_scored(tiny, tmp_path, capsys):
    assert evaluate(tiny, tmp_path / "x", "--language-adapter", tiny / "lang-qu" / "adapter") == 2
    err = capsys.readouterr().err
    assert err.startswith("madx evaluate: error: --language-adapter without --task-adapter") and err.count("\n") == 1
    assert evaluate(tiny, tmp_path / "y") == 2
    err = capsys.readouterr().err
    assert "has no trained ner head (classifier is not in its checkpoint, so it would be random)" in err
    assert "--task-adapter" in err and not (tmp_path / "y" / "metrics.json").exists()


def test_a_madx_task_adapter_without_its_language_adapter_is_refused(tiny, tmp_path, capsys):
    assert evaluate(tiny, tmp_path / "x", "--task-adapter", tiny / "ner-madx" / "task_adapter") == 2
    err = capsys.readouterr().err
    assert err == ("madx evaluate: error: --method madx needs --language-adapter (the target language's adapter, "
                   "stacked under the task adapter)\n")


def test_swapped_adapter_flags_get_a_command_line_message(tiny, tmp_path, capsys):
    assert evaluate(tiny, tmp_path / "x", "--language-adapter", tiny / "ner-madx" / "task_adapter",
                    "--task-adapter", tiny / "lang-qu" / "adapter") == 2
    err = capsys.readouterr().err
    assert "is a task adapter ('ner'), not a language adapter; did you mean --task-adapter" in err
    assert "Stack(" not in err and err.count("\n") == 1


def test_predictions_in_the_suites_format(tiny, tmp_path):
    from bench.report.predictions import read_predictions
    from bench.report.significance import STATISTICS

    out = tmp_path / "eval"
    assert evaluate(tiny, out, "--language-adapter", tiny / "lang-qu" / "adapter",
                    "--task-adapter", tiny / "ner-madx" / "task_adapter") == 0
    metrics = json.loads((out / "metrics.json").read_text())["result"]
    assert metrics["method"] == "madx"
    per_sentence = read_predictions(out / "predictions.npz")
    assert per_sentence.task == "ner" and per_sentence.unit == "sentence" and per_sentence.n == 9
    name, matrix = per_sentence.matrix("f1")
    assert STATISTICS[name](matrix.sum(axis=0), per_sentence.n) == pytest.approx(metrics["metrics"]["f1"])


def test_a_fully_fine_tuned_model_needs_no_adapter(tiny, tmp_path):
    from madx.atomic import atomic_save_pretrained
    from madx.tasks.registry import get_task
    from transformers import AutoTokenizer

    model = get_task("ner").load_model(str(tiny / "model"))
    atomic_save_pretrained(tmp_path / "full", model, AutoTokenizer.from_pretrained(tiny / "model"))
    assert cli.main(["evaluate", "--model", str(tmp_path / "full"), "--task", "ner", "--test", str(tiny / "test-qu.tsv"),
                     "--out", str(tmp_path / "out")]) == 0
    assert np.isfinite(json.loads((tmp_path / "out" / "metrics.json").read_text())["result"]["metrics"]["f1"])
