"""``train-task`` as a user runs it: ``--max-dev`` caps the dev set evaluated at each dev evaluation,
and a fully fine-tuned model (OUT/model) is evaluated without adapters."""

from __future__ import annotations

import json

import pytest

from madx import cli
from tests.commands.tiny import make_tiny

pytestmark = pytest.mark.slow  # real (tiny) training runs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-task")
    make_tiny(root)
    return root


def train(tiny, out, *extra):
    return cli.main(["train-task", "--model", str(tiny / "model"), "--task", "ner", "--train", str(tiny / "train-en.tsv"),
                     "--dev", str(tiny / "test-en.tsv"), "--epochs", "1", "--batch-size", "4", "--out", str(out),
                     *map(str, extra)])


def test_the_dev_set_cap(tiny, tmp_path):
    assert train(tiny, tmp_path / "capped", "--method", "madx-lad-inv", "--max-dev", "3") == 0
    record = json.loads((tmp_path / "capped" / "metrics.json").read_text())
    assert record["result"]["dev"]["n_sentences"] == 3 and record["config"]["max_dev"] == 3
    assert train(tiny, tmp_path / "all", "--method", "madx-lad-inv") == 0
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["result"]["dev"]["n_sentences"] == 9


def test_a_fully_fine_tuned_model_is_evaluated_as_it_is(tiny, tmp_path):
    assert train(tiny, tmp_path / "full", "--method", "full-ft", "--lr", "0.001") == 0
    record = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert record["config"]["lr"] == 0.001 and (tmp_path / "full" / "model" / "config.json").is_file()
    assert cli.main(["evaluate", "--model", str(tmp_path / "full" / "model"), "--task", "ner", "--test",
                     str(tiny / "test-qu.tsv"), "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())["result"]
    assert result["method"] == "full-ft" and result["metrics"]["n_sentences"] == 9
