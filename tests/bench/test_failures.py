"""Failure storms stop: a sticky CUDA/NCCL error, or K failures in a row, ends the worker instead of
failing every ready job (bench.failures). The runners here raise the real error texts; the jobs
before the evaluations are stand-ins that return at once, so the loop itself is what is tested."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.execute
from bench.failures import FailureGuard, WorkerUnhealthy, max_consecutive_from_env, sticky_cause
from bench.graph import build_graph
from bench.store import RunStore
from bench.suite import load_suite
from bench.worker import run_worker, status_counts

MINI = str(Path(__file__).resolve().parents[1] / "fixtures" / "mini-suite.yaml")

# the texts as torch / NCCL print them (torch 2.x, NCCL 2.2x)
DEVICE_ASSERT = ("CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported at "
                 "some other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing "
                 "CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")
STICKY_TEXTS = {
    "device-side assert": DEVICE_ASSERT,
    "illegal memory access": "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                             "asynchronously reported at some other API call",
    "uncorrectable ECC error": "CUDA error: uncorrectable ECC error encountered\nFor debugging consider passing "
                               "CUDA_LAUNCH_BLOCKING=1",
    "NCCL abort": "NCCL communicator was aborted on rank 1. Original reason for failure was: [PG ID 0 PG GUID 0(default_pg)"
                  " Rank 1] Watchdog caught collective operation timeout",
    "NCCL error": "NCCL error in: /pytorch/torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:3356, remote process exited "
                  "or there was a network error, NCCL version 2.21.5\nncclRemoteError: A call failed possibly due to a "
                  "network error or a remote process exiting prematurely.",
}


def _error_class():
    import torch

    return getattr(torch, "AcceleratorError", RuntimeError)  # torch >= 2.8 raises this for CUDA errors


def _quick(job, ctx, workspace):
    return {"metrics": {}, "cost": {"tokens": 0}}


@pytest.fixture
def stand_in_jobs(monkeypatch):
    """Every job but the evaluations returns at once; the test sets what an evaluation does."""
    for kind in ("prepare", "mlm", "task"):
        monkeypatch.setitem(bench.execute.RUNNERS, kind, _quick)

    def evaluations(runner):
        monkeypatch.setitem(bench.execute.RUNNERS, "eval", runner)

    return evaluations


@pytest.mark.parametrize("cause", STICKY_TEXTS)
def test_a_sticky_device_error_stops_the_worker_and_fails_no_job(tmp_path, stand_in_jobs, cause):
    ran = []

    def poisoned(job, ctx, workspace):
        ran.append(job.name)
        raise _error_class()(STICKY_TEXTS[cause])

    stand_in_jobs(poisoned)
    suite = load_suite(MINI)
    lines = []
    with pytest.raises(WorkerUnhealthy) as stop:
        run_worker(suite, tmp_path, progress=lines.append)
    message = str(stop.value)
    assert message.startswith("worker ") and f"stops: {cause} on cpu while running {ran[0]}" in message
    assert "released, not marked failed" in message
    jobs = build_graph(suite)
    counts = status_counts(RunStore(tmp_path, create=False), jobs)
    assert len(ran) == 1, f"the worker went on after a sticky error: it ran {ran}"
    assert counts["failed"] == 0, f"a device fault was recorded as the job's failure: {counts}"
    job = next(j for j in jobs if j.name == ran[0])
    store = RunStore(tmp_path, create=False)
    # the poisoned evaluation is released, not done: it runs again (the order of the rest is the scheduler's)
    assert counts["running"] == 0 and not store.is_done(job.id) and store.error(job.id) is None
    assert counts["done"] + counts["pending"] == len(jobs)
    assert not list(RunStore(tmp_path, create=False).job_dir(job.id).glob("work-*")), "the workspace was left behind"


def test_k_failures_in_a_row_stop_the_worker_with_the_last_error(tmp_path, stand_in_jobs, monkeypatch):
    monkeypatch.setenv("MADX_MAX_CONSECUTIVE_FAILURES", "3")
    ran = []  # every job the worker ran, in order: (name, failed)

    def quick(job, ctx, workspace):
        ran.append((job.name, False))
        return _quick(job, ctx, workspace)

    def broken(job, ctx, workspace):
        ran.append((job.name, True))
        raise ValueError(f"no labels in {job.name}")

    for kind in ("prepare", "mlm", "task"):
        monkeypatch.setitem(bench.execute.RUNNERS, kind, quick)
    stand_in_jobs(broken)
    suite = load_suite(MINI)
    with pytest.raises(WorkerUnhealthy, match=r"stops: 3 jobs in a row failed on cpu \(last: eval/.*ValueError: no labels"):
        run_worker(suite, tmp_path, progress=lambda line: None)
    counts = status_counts(RunStore(tmp_path, create=False), build_graph(suite))
    # the scheduler may interleave successes (which reset the count) with the failing evaluations; the worker
    # stops right at the third failure in a row, and every failure stays recorded
    assert [failed for _, failed in ran[-3:]] == [True, True, True], ran
    assert not any(all(failed for _, failed in ran[i:i + 3]) for i in range(len(ran) - 3)), f"it went on: {ran}"
    assert counts["failed"] == sum(failed for _, failed in ran), "the K failures stay recorded"


def test_a_success_resets_the_count(tmp_path, stand_in_jobs, monkeypatch):
    monkeypatch.setenv("MADX_MAX_CONSECUTIVE_FAILURES", "2")
    calls = []

    def every_other(job, ctx, workspace):
        calls.append(job.name)
        if len(calls) % 2:
            raise ValueError("flaky")
        return {"metrics": {"f1": 1.0}, "cost": {}}

    stand_in_jobs(every_other)
    summary = run_worker(load_suite(MINI), tmp_path, progress=lambda line: None)
    assert summary["failed"] == len(calls) // 2 + len(calls) % 2 and summary["done"] > 0


def test_sticky_causes_are_found_through_chains_and_group_output():
    inner = _error_class()("CUDA error: an illegal memory access was encountered")
    try:
        try:
            raise inner
        except Exception:
            raise RuntimeError("evaluation failed") from None  # suppressed context is still walked
    except RuntimeError as outer:
        outer.__context__ = inner
        assert sticky_cause(outer) == "illegal memory access"
    group = RuntimeError("ZeRO group for ner/en/full-ft failed (exit 1):\n...\ntorch.distributed.DistBackendError: "
                         "NCCL communicator was aborted on rank 0.")
    assert sticky_cause(group) == "NCCL abort"
    for harmless in ("CUDA out of memory. Tried to allocate 2.00 GiB", "shape mismatch", "CUDA error: invalid argument"):
        assert sticky_cause(RuntimeError(harmless)) is None


def test_the_guard_alone():
    guard = FailureGuard("h:1:rank0", "cuda:3", max_consecutive=2)
    guard.failed("a", ValueError("x"))
    guard.succeeded()
    guard.failed("b", ValueError("y"))
    with pytest.raises(WorkerUnhealthy, match=r"2 jobs in a row failed on cuda:3 \(last: c: ValueError: z\)"):
        guard.failed("c", ValueError("z"))
    with pytest.raises(WorkerUnhealthy, match="device-side assert on cuda:3 while running d"):
        guard.check("d", RuntimeError(DEVICE_ASSERT))
    guard.check("e", RuntimeError("an ordinary bug"))  # not sticky: the loop records it
    with pytest.raises(ValueError, match="MADX_MAX_CONSECUTIVE_FAILURES = '0'"):
        max_consecutive_from_env({"MADX_MAX_CONSECUTIVE_FAILURES": "0"})


def test_the_cli_exits_non_zero_with_one_line_naming_the_cause(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = f"""
import sys, bench.execute
quick = lambda job, ctx, workspace: {{"metrics": {{}}, "cost": {{"tokens": 0}}}}
for kind in ("prepare", "mlm", "task"):
    bench.execute.RUNNERS[kind] = quick
def poisoned(job, ctx, workspace):
    raise RuntimeError({DEVICE_ASSERT!r})
bench.execute.RUNNERS["eval"] = poisoned
from madx.cli import main
sys.exit(main(sys.argv[1:]))
"""
    env = {**os.environ, "PYTHONPATH": str(root), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", code, "bench", "run", MINI, "--out", str(tmp_path)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "stops: device-side assert on cpu while running eval/" in errors[0], done.stderr[-2000:]
