"""The real path: eval jobs of a tiny suite write their per-example predictions (bench.execute.run_eval),
and the report's paired bootstrap reads them. One in-process worker, a tiny random model, ~10 s on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.report import build_report, render_markdown, terminal_summary
from bench.report.predictions import PREDICTIONS_FILE, read_predictions
from bench.report.significance import micro_f1

SUITE = {
    "name": "predictions-mini",
    "model": {"tiny": {"arch": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 80,
                       "type_vocab_size": 1}},
    "data": {"kind": "synthetic", "languages": ["en", "qu"], "ner_train": 24, "ner_dev": 8, "ner_test": 16,
             "text_lines": 80, "qa_train": 8, "qa_eval": 8},
    "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx", "full-ft"]},
              "qa": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx", "full-ft"]}},
    "seeds": [1, 2],
    "hyperparameters": {
        "adapters": {"task_reduction_factor": 4},
        "mlm": {"steps": 2, "batch_size": 8, "max_seq_length": 32, "lr_adapters": 0.002, "eval_every": 2},
        "ner": {"epochs": 1, "batch_size": 8, "batch_size_low_resource": 8, "max_length": 48, "lr_adapters": 0.003,
                "lr_full_model": 0.0005},
        "qa": {"epochs": 1, "batch_size": 8, "lr_adapters": 0.003, "lr_full_model": 0.0005, "max_length": 64},
        "runtime": {"cpu_threads_per_worker": 1, "lease_seconds": 20},
    },
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from bench.suite import load_suite
    from bench.worker import run_worker

    root = tmp_path_factory.mktemp("predictions")
    suite = root / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    summary = run_worker(load_suite(str(suite)), root / "run", progress=lambda line: None)
    assert summary["failed"] == 0 and summary["pending"] == 0, summary
    return root / "run"


def _results(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run_dir / "jobs").glob("*/result.json"))]


def test_every_eval_job_writes_its_per_example_predictions(run_dir):
    test_sets: dict[tuple[str, str], set[str]] = {}
    n_eval = 0
    for result in _results(run_dir):
        path = run_dir / "jobs" / result["job"]["id"] / "artifacts" / PREDICTIONS_FILE
        if result["job"]["kind"] != "eval":
            assert not path.exists()
            continue
        n_eval += 1
        metrics, params = result["metrics"], result["job"]["params"]
        assert "per_example" not in metrics  # kept out of result.json
        loaded = read_predictions(path)
        assert loaded.task == params["task"]
        if loaded.task == "ner":
            assert loaded.unit == "sentence" and loaded.n == metrics["n_sentences"] == 16
            _, matrix = loaded.matrix("f1")
            assert matrix.dtype == np.float64 and loaded.columns["tp"].dtype == np.int32
            assert float(micro_f1(matrix.sum(axis=0), loaded.n)) == pytest.approx(metrics["f1"])
            assert matrix[:, 0].sum() + matrix[:, 2].sum() == metrics["n_gold_entities"]
        else:
            assert loaded.unit == "question" and loaded.n == metrics["n_questions"] == 8
            assert loaded.columns["f1"].mean() == pytest.approx(metrics["f1"])
            assert loaded.columns["exact_match"].mean() == pytest.approx(metrics["exact_match"])
        test_sets.setdefault((params["task"], params["target"]), set()).add(loaded.examples_sha256)
    assert n_eval == 16
    # every method and seed was evaluated on the same test set per target, and the targets' differ
    assert all(len(hashes) == 1 for hashes in test_sets.values())
    assert len({h for hashes in test_sets.values() for h in hashes}) == 4


def test_the_report_bootstraps_every_comparison_from_them(run_dir, tmp_path):
    report = build_report(run_dir, out_dir=tmp_path / "report", plots=False)
    tables = report.tables
    assert [t.id for t in tables.significance] == ["table2", "table5", "table3-f1", "table3-em"]
    for sig in tables.significance:
        assert [r.baseline for r in sig.rows] == ["full-ft"]
        for c in sig.comparisons:
            assert c.interval is not None and c.unavailable is None, (sig.id, c.column, c.unavailable)
            assert c.interval.observed == pytest.approx(c.diff.mean, abs=1e-9)  # the predictions are the metrics
            assert c.interval.n_examples == ((16,) if sig.unit == "sentences" else (8,)) * (2 if c.column == "avg" else 1)
    assert set(tables.pair_comparisons) >= {("ner", "f1", "full-ft", "en", "qu"), ("qa", "exact_match", "full-ft", "en", "en")}
    # a tiny random model is not the paper's: the paper's numbers are a reference only
    assert not tables.paper_comparable and all(t.paper_reference_only for t in tables.comparisons)
    md = render_markdown(report)
    assert "MAD-X against each baseline, with a paired bootstrap over the test sentences:" in md
    assert "MAD-X against each baseline, with a paired bootstrap over the test questions:" in md
    assert "| qu† |" in md.split("## Table 3 — XQuAD F1", 1)[1]  # unseen is marked in Table 3 too
    assert "MAD-X − XLM-R" in terminal_summary(report)


def test_eval_results_from_before_still_report(run_dir, tmp_path):
    """Results without predictions (as every eval job wrote before): the report renders and says why."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns(PREDICTIONS_FILE))
    report = build_report(old, out_dir=tmp_path / "report", plots=True)
    assert all(c.interval is None and "no per-example predictions" in c.unavailable
               for t in report.tables.significance for c in t.comparisons)
    md = render_markdown(report)
    assert "Significance is not available: no evaluation result has per-example predictions" in md
    assert any(h.kind == "diff" and h.path is not None and h.n_tested == 0 for h in report.heatmaps)
