"""``bench.calibrate``: the accounting with known numbers, sizes counted from small data files, and one
real ``madx bench plan --calibrate`` on the smoke suite (a few steps on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.calibrate import (ASSUMED, COUNTED, SUITE, DataSizes, Size, _evaluations, account, job_work, plan_suite,
                             rate_keys)
from bench.graph import build_graph
from bench.suite import parse_suite
from madx import cli
from madx.data import synthetic
from madx.tasks.registry import get_task

TINY = {"tiny": {"arch": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 80, "type_vocab_size": 1}}


def known_suite(**ner):
    """MAD-X on NER from en to en and qu: 2 MLM jobs, 1 task job, 2 evaluation jobs, sizes in the data block."""
    raw = {
        "name": "known", "model": TINY, "seeds": [1],
        "data": {"kind": "synthetic", "languages": ["en", "qu"], "ner_train": 100, "ner_dev": 20, "ner_test": 50,
                 "text_lines": 10, "qa_train": 8, "qa_eval": 8},
        "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx"]}},
        "hyperparameters": {
            "mlm": {"steps": 10, "batch_size": 4, "max_seq_length": 32},
            "ner": {"epochs": 2, "batch_size": 16, "batch_size_low_resource": 8, "max_length": 64, **ner},
        },
    }
    return parse_suite(raw, "known.yaml")


def test_the_accounting_with_known_numbers():
    suite = known_suite()
    jobs = build_graph(suite)
    works = {w.name: w for w in (job_work(job, DataSizes(suite)) for job in jobs)}
    assert works["mlm/en/adapter+inv"].tokens == {"mlm-adapter": 10 * 4 * 32}
    # 100 sentences x 32 tokens (the registry's assumption; max_length 64 does not cut it) x 2 epochs;
    # 100 < 5000 (low resource): batches of 8, 13 steps an epoch, 26 in all, a dev evaluation of 20 sentences per epoch
    task = works["ner/en/madx/seed1"]
    assert task.tokens == {"task-adapter:ner": 2 * 100 * 32, "dev-eval:ner": 2 * 20 * 32}
    assert works["eval/ner/en->qu/madx/seed1"].tokens == {"eval:ner": 50 * 32}

    rates = {"mlm-adapter": 1280.0, "task-adapter:ner": 3200.0, "eval:ner": 1600.0}
    assert rate_keys(works.values()) == ["mlm-adapter", "task-adapter:ner", "eval:ner"]
    one = account(works.values(), rates, gpus=1)
    by_row = {row.name: row for row in one.rows}
    assert [row.name for row in one.rows] == ["mlm-adapter", "task-adapter:ner", "dev-eval:ner", "eval:ner"]
    assert by_row["mlm-adapter"].jobs == 2 and by_row["eval:ner"].jobs == 2
    assert by_row["mlm-adapter"].gpu_hours == pytest.approx(2 / 3600)  # 2 x 1280 tokens at 1280 tokens/s
    assert by_row["task-adapter:ner"].gpu_hours == pytest.approx(2 / 3600)
    assert by_row["dev-eval:ner"].gpu_hours == pytest.approx(0.8 / 3600)  # timed with the evaluation forward
    assert by_row["eval:ner"].gpu_hours == pytest.approx(2 / 3600)
    assert one.gpu_hours == pytest.approx(6.8 / 3600) and one.wall_hours == pytest.approx(6.8 / 3600)
    assert one.tokens == 2560 + 6400 + 1280 + 3200
    # the longest chain: MLM on qu (1 s) or en (1 s), the task job (2.8 s), an evaluation (1 s)
    assert one.critical_path_hours == pytest.approx(4.8 / 3600)
    four = account(works.values(), rates, gpus=4)  # 6.8 / 4 = 1.7 s, but no job waits less than its chain
    assert four.wall_hours == pytest.approx(4.8 / 3600) and four.gpu_hours == one.gpu_hours
    with pytest.raises(ValueError, match="gpus"):
        account(works.values(), rates, gpus=0)


def test_caps_and_eval_every_change_the_counts():
    suite = known_suite(max_train_sentences=40, max_eval_sentences=10, eval_every=2)
    works = {w.name: w for w in (job_work(job, DataSizes(suite)) for job in build_graph(suite))}
    # 40 sentences: 5 batches of 8 an epoch, 10 steps; dev evaluations at steps 2, 4, ..., 10
    assert works["ner/en/madx/seed1"].tokens == {"task-adapter:ner": 2 * 40 * 32, "dev-eval:ner": 5 * 10 * 32}
    assert works["eval/ner/en->en/madx/seed1"].tokens == {"eval:ner": 10 * 32}
    spec = get_task("ner")
    assert _evaluations(100, {"epochs": 2, "batch_size": 8, "eval_every": 10}, spec) == 3  # 10, 20 and the last (26)
    assert _evaluations(10_000, {"epochs": 1, "batch_size": 100}, spec) == 1


def files_suite(root, **ner):
    raw = {
        "name": "files", "model": "some-model", "seeds": [1],
        "data": {"wikiann": str(root / "wikiann"), "text": str(root / "text")},
        "tasks": {"ner": {"sources": ["en", "sw"], "targets": ["en", "sw", "gn"], "methods": ["madx-lad-inv", "full-ft"]}},
        "hyperparameters": {"ner": {"epochs": 1, "max_length": 16, **ner}},
    }
    return parse_suite(raw, str(root / "files.yaml"), check_paths=False)


def test_sizes_are_counted_from_the_data_files_when_present(tmp_path):
    for split, lang, n in (("train", "en", 30), ("dev", "en", 7), ("test", "en", 11), ("train", "sw", 12), ("test", "sw", 5)):
        synthetic.write_wikiann(tmp_path / "wikiann" / f"{split}-{lang}.tsv", lang, n)
    suite = files_suite(tmp_path, max_eval_sentences=6)
    sizes = DataSizes(suite)
    assert sizes.examples("ner", "en", "train") == Size(30, COUNTED, str(tmp_path / "wikiann" / "train-en.tsv"))
    assert sizes.examples("ner", "en", "dev").examples == 7 and sizes.examples("ner", "sw", "test").examples == 5
    assert sizes.examples("ner", "sw", "dev") is None  # the runner falls back to the first 200 training examples
    assert sizes.dev("ner", "sw", 12) == Size(12, SUITE, "no dev split: the first 200 training examples")
    gn = sizes.examples("ner", "gn", "test")  # no file: the stated assumption
    assert gn.source == ASSUMED and gn.examples == 1_000 and "ASSUMED_EVAL_EXAMPLES" in gn.where

    works = {w.name: w for w in (job_work(job, sizes) for job in build_graph(suite))}
    assert works["ner/sw/full-ft/seed1"].tokens == {"task-full:ner": 12 * 16, "dev-eval:ner": 6 * 16}  # dev capped at 6
    assert works["ner/en/madx-lad-inv/seed1"].tokens == {"task-adapter:ner": 30 * 16, "dev-eval:ner": 6 * 16}
    assert works["eval/ner/en->sw/full-ft/seed1"].tokens == {"eval:ner": 5 * 16}
    plan = plan_suite(suite, build_graph(suite), gpus=2, throughput=1000.0, sizes=sizes)
    assert plan["rate"] == {"source": "assumed", "tokens_per_s": 1000.0}
    assert plan["gpu_hours"] == pytest.approx(plan["tokens"] / 1000 / 3600)
    notes = "\n".join(plan["sizes"])
    assert "ner train: counted from the data files: en 30, sw 12" in notes
    assert "ner test, capped at 6: counted from the data files: en 11, sw 5; assumed, bench.calibrate" in notes


def test_sizes_without_data_are_the_registry_assumptions(tmp_path):
    sizes = DataSizes(files_suite(tmp_path))  # nothing written: no folder at all
    assert sizes.examples("ner", "en", "train") == Size(20_000, ASSUMED, "task registry (assumed_train_examples)")
    assert sizes.examples("ner", "sw", "train").examples == 1_000
    assert sizes.examples("ner", "en", "dev").examples == 10_000  # not the runner's fallback: nothing is here


def test_files_are_read_once(tmp_path):
    synthetic.write_wikiann(tmp_path / "wikiann" / "train-en.tsv", "en", 4)
    reads = []
    sizes = DataSizes(files_suite(tmp_path), load=lambda spec, path: reads.append(path) or [0] * 4)
    for _ in range(3):
        assert sizes.examples("ner", "en", "train").examples == 4
    assert len(reads) == 1


@pytest.mark.parametrize("value", ["0", "-2"])
def test_plan_refuses_a_non_positive_gpu_count(value, capsys):
    assert cli.main(["bench", "plan", "smoke", "--gpus", value]) == 2
    err = capsys.readouterr().err
    assert err == f"madx bench: error: --gpus must be at least 1, got {value}\n"


def test_plan_without_calibrate_says_the_rate_is_assumed(capsys):
    assert cli.main(["bench", "plan", "smoke", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "rates assumed: 100,000 tokens/s per GPU for every job kind (not measured" in out
    assert "wall time on 2 GPUs" in out and "ner train: the suite's data block: en 96, sw 96, qu 96" in out


def test_calibrate_the_smoke_suite_on_this_device(tmp_path):
    """For real: the suite's tiny model, one timed step of every job kind it runs."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "madx", "bench", "plan", "smoke", "--calibrate", "--calibrate-steps", "1",
                           "--calibrate-warmup", "1", "--gpus", "3", "--json"],
                          capture_output=True, text=True, env=env, timeout=600)  # a hang guard, not a speed target
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads(done.stdout)
    rate = plan["rate"]
    assert rate["source"] == "measured" and rate["device"] == "cpu" and rate["threads"] == 1
    assert rate["model"]["hidden_size"] == 64 and rate["steps"] == 1
    assert set(rate["measurements"]) == {"mlm-adapter", "mlm-full", "task-adapter:ner", "task-adapter:qa",
                                         "task-full:ner", "task-full:qa", "eval:ner", "eval:qa"}
    mlm = rate["measurements"]["mlm-adapter"]
    assert (mlm["batch"], mlm["seq_len"]) == (16, 64)  # the suite's MLM batch and block length
    assert rate["measurements"]["eval:ner"]["batch"] == 32 and not rate["measurements"]["eval:ner"]["train"]
    for row in plan["rows"]:
        measured = rate["measurements"][row["name"].replace("dev-eval:", "eval:")]
        assert row["tokens_per_s"] == measured["tokens_per_s"] > 0
        assert row["gpu_hours"] == pytest.approx(row["tokens"] / row["tokens_per_s"] / 3600)
    from bench.graph import count_by_kind
    from bench.suite import load_suite

    assert plan["counts"] == dict(count_by_kind(build_graph(load_suite("smoke", check_paths=False))))
    assert plan["wall_hours"] == pytest.approx(max(plan["gpu_hours"] / 3, plan["critical_path_hours"]))
