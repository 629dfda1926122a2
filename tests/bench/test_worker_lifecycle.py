"""Worker behaviour that needs no second process: a full disk, another suite's run directory."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import bench.store
from bench.store import RunDirectoryError, RunStore
from bench.suite import load_suite
from bench.worker import StorageFull, SuiteMismatch, bounded_message, run_worker

MINI = str(Path(__file__).resolve().parents[1] / "fixtures" / "mini-suite.yaml")


def test_a_full_disk_stops_the_worker_with_the_path_and_leaves_nothing_half(tmp_path, monkeypatch):
    real = bench.store.atomic_write_json

    def full(path, data, *args, **kwargs):
        if Path(path).name == "result.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(bench.store, "atomic_write_json", full)
    with pytest.raises(StorageFull, match=r"cannot write .*result\.json \(ENOSPC: No space left on device\) while running prepare"):
        run_worker(load_suite(MINI), tmp_path, progress=lambda line: None)
    store = RunStore(tmp_path, create=False)
    jobs = list((tmp_path / "jobs").iterdir())
    assert len(jobs) == 1, "the worker stopped at the first failed write instead of trying every ready job"
    assert not list(jobs[0].glob("error.json")), "a storage failure is not recorded as the job's failure"
    assert not list(jobs[0].glob("work-*")) and store.owner(jobs[0].name).state != "held"


def test_another_suites_run_directory_is_refused_unless_added(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"suite": "smoke", "jobs": [{"id": "x", "kind": "eval", "name": "e",
                                                                               "deps": []}]}))
    with pytest.raises(SuiteMismatch, match="holds suite 'smoke' \\(1 jobs\\); this is suite 'mini'.*--add"):
        run_worker(load_suite(MINI), tmp_path, progress=lambda line: None)
    assert not (tmp_path / "jobs").exists(), "nothing was written"
    run_worker(load_suite(MINI), tmp_path, progress=lambda line: None, max_jobs=1, add_jobs=True)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["jobs"][0]["id"] == "x" and len(plan["jobs"]) > 1, "--add keeps the earlier jobs"


def test_an_unwritable_run_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.worker._check_writable",
                        lambda root: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system", str(root))))
    with pytest.raises(RunDirectoryError, match=f"cannot write the run directory {tmp_path}"):
        run_worker(load_suite(MINI), tmp_path, progress=lambda line: None)


def test_error_messages_are_bounded():
    message = bounded_message(UnicodeDecodeError("utf-8", b"\xff" * 100_000, 0, 1, "invalid start byte"))
    assert len(message) <= 500 and message.startswith("UnicodeDecodeError:")


def test_status_on_a_mistyped_path_creates_nothing(tmp_path, capsys):
    from madx import cli

    assert cli.main(["bench", "status", str(tmp_path / "typo")]) == 2
    assert "not a run directory" in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_status_tells_running_from_stale_and_shows_invalid_results(tmp_path, capsys):
    from madx import cli

    store = RunStore(tmp_path)
    plan = [{"id": name, "kind": "eval", "name": f"eval/{name}", "deps": []} for name in ("held", "stale", "broken")]
    (tmp_path / "plan.json").write_text(json.dumps({"suite": "t", "jobs": plan}))
    claim = store.try_claim("held", "alive-worker")
    (store.job_dir("stale")).mkdir()
    (store.job_dir("stale") / "claim").write_text(json.dumps({"worker": "dead-worker", "pid": 1, "token": "t"}))
    store.job_dir("broken").mkdir()
    store.result_path("broken").write_text('{"schema": 2')
    try:
        assert cli.main(["bench", "status", str(tmp_path)]) == 0
    finally:
        claim.release()
    out = capsys.readouterr().out
    assert "1 running" in out and "running  eval/held: running by alive-worker" in out
    assert "stale    eval/stale: stale claim by dead-worker" in out
    assert "invalid  eval/broken: result.json not valid JSON" in out


def test_out_of_memory_names_the_batch_size_and_the_peak():
    import torch

    from bench.graph import Job
    from bench.worker import out_of_memory

    job = Job.make("task", "ner/en/madx/seed1", {"hyper": {"batch_size": 64}})
    error = out_of_memory(job, torch.device("cpu"), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "ner/en/madx/seed1: out of memory at batch_size 64" in str(error) and "lower the batch size" in str(error)


def test_gpu_smoke_has_the_smoke_graph_in_bf16():
    from bench.graph import build_graph, count_by_kind

    gpu, cpu = load_suite("gpu-smoke"), load_suite("smoke")
    assert gpu.hyperparameters["runtime"]["mixed_precision"] == "bf16"
    assert count_by_kind(build_graph(gpu)) == count_by_kind(build_graph(cpu))
    assert {j.name for j in build_graph(gpu)} == {j.name for j in build_graph(cpu)}


def test_the_same_suite_grown_runs_into_its_directory(tmp_path):
    """A newer madx (or an edited suite) adds jobs to the same suite: the old run directory resumes."""
    old = [{"id": "old-job", "kind": "eval", "name": "eval/old", "deps": []}]
    (tmp_path / "plan.json").write_text(json.dumps({"suite": "mini", "jobs": old}))
    run_worker(load_suite(MINI), tmp_path, progress=lambda line: None, max_jobs=1)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["suite"] == "mini" and plan["jobs"][0]["id"] == "old-job" and len(plan["jobs"]) > 1
