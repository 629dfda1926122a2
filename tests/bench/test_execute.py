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
    section = {"language_reduction_factor": 2, "invertible_reduction_factor": 2, "task_reduction_factor": 4,
               "init_weights": "adapterhub"}  # AdapterConfig's default start, named in the job (and its id)
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


# -- checkpoints: a stopped job resumes on the next run, with the result an uninterrupted run gets ------------
RESUME_SUITE = {
    "name": "resume",
    "model": {"tiny": {"arch": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 80, "type_vocab_size": 1}},
    "data": {"kind": "synthetic", "languages": ["en", "qu"], "ner_train": 16, "ner_dev": 8, "ner_test": 8, "text_lines": 40,
             "qa_train": 8, "qa_eval": 8},
    "tasks": {"ner": {"sources": ["en"], "targets": ["qu"], "methods": ["madx"]}},
    "seeds": [1],
    "hyperparameters": {
        "adapters": {"task_reduction_factor": 4},
        "mlm": {"steps": 6, "batch_size": 4, "max_seq_length": 32, "eval_every": 2},
        "ner": {"epochs": 3, "batch_size": 8, "batch_size_low_resource": 8, "max_length": 32},
        "runtime": {"cpu_threads_per_worker": 1, "lease_seconds": 20}},
}


def _run_resume_suite(out, stop_when: tuple[str, ...] = (), fired: list | None = None):
    """Run the suite in this process; SIGTERM it (bench.worker's handler: WorkerStopped) from inside the
    training loop when a progress line contains one of ``stop_when`` (appended to ``fired``)."""
    import os
    import signal

    from bench.worker import _raise_stop, run_worker

    def progress(line: str) -> None:
        for pattern in stop_when:
            if pattern in line:
                fired.append(pattern)
                os.kill(os.getpid(), signal.SIGTERM)

    suite_file = out.parent / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(RESUME_SUITE))
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        return run_worker(load_suite(str(suite_file)), out, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _comparable(result: dict) -> dict:
    train = result.get("train")
    if train is not None:
        train = {k: v for k, v in train.items() if k not in ("wall_s", "tokens_per_s", "peak_memory_bytes", "resumed_from_step")}
        train["history"] = [{k: v for k, v in h.items() if k not in ("tokens_per_s", "peak_memory_bytes")} for h in train["history"]]
    return {"metrics": result["metrics"], "train": train}


def test_a_stopped_training_job_resumes_from_its_checkpoint_with_the_uninterrupted_result(tmp_path):
    from bench.worker import WorkerStopped
    from madx import checkpoint

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    reference = tmp_path / "a" / "run"
    assert _run_resume_suite(reference) == {"done": 5, "running": 0, "failed": 0, "pending": 0}  # prepare, MLM en/qu, task, eval
    jobs = {j.name: j for j in build_graph(load_suite(str(tmp_path / "a" / "suite.yaml")))}
    mlm, task = jobs["mlm/qu/adapter+inv"], jobs["ner/en/madx/seed1"]

    out = tmp_path / "b" / "run"
    # mid-way through the language adapter's 6 steps, and at the task adapter's last step (its only progress
    # line): one stop per run, in whichever order the scheduler runs the two jobs
    stops = {f"{mlm.name} step 3 ": (mlm, "step-00000003"), f"{task.name} step 6 ": (task, "step-00000006")}
    left = tuple(stops)
    for _ in range(2):
        fired = []
        with pytest.raises(WorkerStopped):
            _run_resume_suite(out, stop_when=left, fired=fired)
        job, step = stops[fired[0]]
        assert checkpoint.latest(out / "jobs" / job.id / "checkpoint").name == step
        assert not list((out / "jobs" / job.id).glob("work-*")) and not (out / "jobs" / job.id / "result.json").exists()
        left = tuple(p for p in left if p != fired[0])
    assert _run_resume_suite(out)["done"] == 5

    for job in jobs.values():
        ours, theirs = (json.loads((run / "jobs" / job.id / "result.json").read_text()) for run in (out, reference))
        assert _comparable(ours) == _comparable(theirs), job.name
        assert not (out / "jobs" / job.id / "checkpoint").exists(), job.name  # removed once the job's outputs were written
    assert json.loads((out / "jobs" / mlm.id / "result.json").read_text())["train"]["resumed_from_step"] == 3
    assert json.loads((out / "jobs" / task.id / "result.json").read_text())["train"]["resumed_from_step"] == 6
    assert json.loads((out / "jobs" / jobs["mlm/en/adapter+inv"].id / "result.json").read_text())["train"]["resumed_from_step"] is None


def test_a_checkpoint_is_written_only_under_the_claim_that_began_the_job(tmp_path):
    from bench.execute import JobContext, checkpointing
    from bench.store import ClaimLost, RunStore
    from madx.runtime import Runtime

    jobs = {j.name: j for j in build_graph(load_suite("smoke"))}
    job = jobs["mlm/qu/adapter+inv"]
    store = RunStore(tmp_path / "run")
    ctx = JobContext(store, {j.id: j for j in jobs.values()}, Runtime.local("cpu"), tmp_path / "tb", lambda line: None)
    assert checkpointing(job, ctx) == {}  # no claim (a runner called outside a worker): no checkpoints
    claim = store.try_claim(job.id, "w1")
    try:
        resume = checkpointing(job, ctx)
        assert resume["checkpoint_dir"] == store.job_dir(job.id) / "checkpoint"
        resume["checkpoint_guard"]()  # ours: fine
        claim_file = store.job_dir(job.id) / "claim"
        claim_file.write_text(json.dumps({**json.loads(claim_file.read_text()), "token": "another owner's"}))
        with pytest.raises(ClaimLost, match="writes no checkpoint"):
            resume["checkpoint_guard"]()
    finally:
        claim.release()


def test_the_workers_cached_model_resets_a_loaded_task_head_for_real(tmp_path):
    """A base directory with a task head (a fine-tuned model): transformers 5 marks its loaded weights as
    initialised, and a reset through HF's initialiser silently kept them (and a previous job's trained head)."""
    import torch

    import madx
    from bench.execute import JobContext
    from bench.store import RunStore
    from madx.runtime import Runtime
    from tests.conftest import tiny_model

    tiny_model("xlm-roberta", "ner", num_labels=7).save_pretrained(tmp_path / "model")
    saved = tiny_model("xlm-roberta", "ner", num_labels=7).classifier.weight.detach().clone()
    ctx = JobContext(RunStore(tmp_path / "run"), {}, Runtime.local("cpu"), tmp_path / "tb", lambda line: None)
    model = ctx.cached_model(str(tmp_path / "model"), "ner", seed=5)
    reset = {n: p.detach().clone() for n, p in madx.task_heads(model)["classifier"].named_parameters()}
    assert not torch.equal(reset["weight"], saved)
    with torch.no_grad():  # what a task job leaves in the shared model's head
        for parameter in madx.task_heads(model)["classifier"].parameters():
            parameter.fill_(0.5)
    again = ctx.cached_model(str(tmp_path / "model"), "ner", seed=5)
    assert again is model
    assert all(torch.equal(p, reset[n]) for n, p in madx.task_heads(model)["classifier"].named_parameters())
