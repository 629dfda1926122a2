"""bench.execute: the adapters a job creates, and MAD-X 2.0's jobs run for real on a tiny synthetic suite."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from bench.execute import adapter_config
from bench.graph import build_graph
from bench.suite import load_suite
from madx.adapters import AdapterConfig
from madx.variants import mlm_variant


def test_adapter_config_puts_the_methods_leave_out_over_the_suites_section():
    jobs = {j.name: j for j in build_graph(load_suite("smoke"))}
    section = {"language_reduction_factor": 2, "invertible_reduction_factor": 2, "task_reduction_factor": 4}
    assert jobs["ner/en/madx/seed1"].params["adapters"] == section
    assert adapter_config(jobs["ner/en/madx/seed1"]) == AdapterConfig(**section)
    assert adapter_config(jobs["eval/ner/en->qu/madx2-inv/seed1"]) == AdapterConfig(**section, leave_out=(-1,))
    assert adapter_config(jobs["ner/en/madx2/seed1"]) == AdapterConfig(**section, leave_out=(-1,))
    # MLM jobs name a mode, not a method
    assert adapter_config(jobs["mlm/qu/adapter+inv"]).leave_out == ()
    assert adapter_config(jobs["mlm/qu/adapter+inv,leave_out=-1"]).leave_out == (-1,)
    assert mlm_variant("adapter+inv,leave_out=-1").invertible_adapters
    assert not mlm_variant("adapter,leave_out=-1").invertible_adapters
    with pytest.raises(ValueError, match=re.escape("unknown MLM mode 'adapter+x'; known: adapter+inv, adapter, full,")):
        mlm_variant("adapter+x")


@pytest.fixture(scope="module")
def madx2_run(tmp_path_factory):
    from bench.worker import run_worker

    root = tmp_path_factory.mktemp("madx2")
    suite_file = root / "suite.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "madx2",
        "model": {"tiny": {"arch": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 3,
                           "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 80, "type_vocab_size": 1}},
        "data": {"kind": "synthetic", "languages": ["en", "qu"], "ner_train": 16, "ner_dev": 8, "ner_test": 8, "text_lines": 40,
                 "qa_train": 8, "qa_eval": 8},
        "tasks": {"ner": {"sources": ["en"], "targets": ["en", "qu"], "methods": ["madx2", "madx2-inv"]}},
        "seeds": [1],
        "hyperparameters": {
            "adapters": {"task_reduction_factor": 4},
            "mlm": {"steps": 2, "batch_size": 8, "max_seq_length": 32, "eval_every": 2},
            "ner": {"epochs": 1, "batch_size": 8, "batch_size_low_resource": 8, "max_length": 32},
            "runtime": {"cpu_threads_per_worker": 1, "lease_seconds": 20}}}))
    suite = load_suite(str(suite_file))
    out = root / "run"
    counts = run_worker(suite, out, progress=lambda line: None)
    return suite, out, counts


def test_madx2_jobs_create_their_adapters_without_the_last_layer(madx2_run):
    suite, out, counts = madx2_run
    jobs = build_graph(suite)
    assert counts.get("done") == len(jobs) == 1 + 4 + 2 + 4, counts  # prepare, MLM en/qu x 2 modes, 2 tasks, 2x2 evals
    for job in jobs:
        config_path = {"mlm": out / "jobs" / job.id / "artifacts" / "adapter" / "adapter_config.json",
                       "task": out / "jobs" / job.id / "artifacts" / "task_adapter" / "adapter_config.json"}.get(job.kind)
        if config_path is None:
            continue
        saved = json.loads(config_path.read_text())
        assert saved["leave_out"] == [2], job.name  # the last of 3 layers
        if job.kind == "mlm":
            assert (saved["invertible_bottleneck_size"] is not None) == (job.params["mode"] == "adapter+inv,leave_out=-1"), job.name
