"""The runner for real: worker processes on CPU, crashes by kill -9, resume."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

MINI = str(Path(__file__).resolve().parents[1] / "fixtures" / "mini-suite.yaml")
pytestmark = pytest.mark.slow


def bench_run(out, processes=1, launch_args=(), **popen):
    if processes == 1:
        command = [sys.executable, "-m", "madx", "bench", "run", MINI, "--out", str(out)]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--main_process_port", str(free_port()),
                   *launch_args, "-m", "madx", "bench", "run", MINI, "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **popen)


def results(out) -> dict[str, dict]:
    found = {}
    for path in sorted((Path(out) / "jobs").glob("*/result.json")):
        result = json.loads(path.read_text())
        found[result["job"]["name"]] = result["metrics"]
    return found


def finished(process, timeout=900) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    output = finished(bench_run(out))
    return out, output


def test_one_worker_finishes_the_suite(clean_run):
    out, output = clean_run
    plan = json.loads((out / "plan.json").read_text())["jobs"]
    assert set(results(out)) == {job["name"] for job in plan}
    assert "failed 0" in output and "pending 0" in output
    assert not list((out / "jobs").glob("*/claim"))


def test_the_report_reads_what_the_runner_writes(clean_run, tmp_path):
    import madx
    from bench.report import build_report, render_markdown

    out, _ = clean_run
    report = build_report(out, out_dir=tmp_path / "report", plots=False)
    store = report.store
    assert store.problems == () and store.upgraded == ()
    assert len(store.results) == len(json.loads((out / "plan.json").read_text())["jobs"])
    assert store.run.suite == "mini" and store.run.suite_sha256 == hashlib.sha256(Path(MINI).read_bytes()).hexdigest()
    assert store.run.command[-2:] == ("--out", str(out)) and store.run.model["tiny"]["hidden_size"] == 32
    for r in store.results:  # every job records its own provenance
        assert r.status == "done" and r.started_at <= r.finished_at and r.worker.pid > 0
        assert r.provenance.madx_version == madx.__version__ and r.provenance.versions["torch"]
        assert r.provenance.hardware == store.run.provenance.hardware and r.provenance.hardware["type"] in ("cpu", "cuda")
        assert r.provenance.git_revision == store.run.provenance.git_revision
        if r.job.kind in ("mlm", "task"):
            assert 0 < r.cost.non_pad_fraction <= 1 and r.cost.tokens > 0
    assert report.tables.provenance.mixed == () and report.tables.comparison("table2") is not None
    assert "Results differ in" not in render_markdown(report)


def test_two_workers_give_the_same_results_and_run_no_job_twice(clean_run, tmp_path):
    output = finished(bench_run(tmp_path, processes=2))
    assert results(tmp_path) == results(clean_run[0])
    # progress bars share the terminal, so find the workers' lines anywhere in the output
    starts = re.findall(r"\[(\S+:rank\d+)\] start (\S+)", output)
    names = [name for _, name in starts]
    assert len(names) == len(set(names)) == len(results(tmp_path))
    assert len({worker for worker, _ in starts}) == 2, "both workers worked"


def _wait_for(condition, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("kill_all", [False, True])
def test_kill_minus_9_then_rerun_completes_identically(clean_run, tmp_path, kill_all):
    process = bench_run(tmp_path, processes=2, start_new_session=True)
    jobs = tmp_path / "jobs"
    # wait until a worker holds a job past the first few: mid-suite, mid-job
    assert _wait_for(lambda: len(list(jobs.glob("*/result.json"))) >= 4 and list(jobs.glob("*/claim")))
    claims = list(jobs.glob("*/claim"))
    if kill_all:
        workers = {json.loads(r.read_text())["worker"]["pid"] for r in jobs.glob("*/result.json")}
        for pid in workers | {json.loads(c.read_text())["pid"] for c in claims if c.exists()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(process.pid, signal.SIGKILL)
    else:
        victim = json.loads(claims[0].read_text())["pid"]
        os.kill(victim, signal.SIGKILL)
    process.communicate(timeout=600)
    assert len(results(tmp_path)) < len(results(clean_run[0]))
    assert _locks_free(tmp_path), "no job is held by a dead or orphaned worker"
    finished(bench_run(tmp_path, processes=2))
    assert results(tmp_path) == results(clean_run[0])
    assert not list(jobs.glob("*/claim")), "no claim is left behind"
    assert all(not list(d.glob("work-*")) for d in jobs.iterdir() if (d / "result.json").exists())


def _locks_free(out) -> bool:
    from bench.store import RunStore

    store = RunStore(out, create=False)
    return all(store.owner(d.name).state != "held" for d in (Path(out) / "jobs").iterdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_sigterm_releases_the_job_in_hand_and_writes_nothing_half(clean_run, tmp_path):
    process = bench_run(tmp_path, start_new_session=True)
    jobs = tmp_path / "jobs"
    held = None
    while held is None:
        assert _wait_for(lambda: len(list(jobs.glob("*/result.json"))) >= 3 and list(jobs.glob("*/claim"))
                         or process.poll() is not None) and process.poll() is None, "the run ended before a job was caught"
        # The mini suite's jobs take ~0.1 s: freeze the worker so the job seen in hand is still in hand at
        # the signal (on a loaded machine this test was once too slow to catch any: the run finished first)
        os.killpg(process.pid, signal.SIGSTOP)
        claims = [c for c in jobs.glob("*/claim") if c.stat().st_size]
        if claims:
            held = json.loads(claims[0].read_text())
            os.kill(held["pid"], signal.SIGTERM)  # delivered when the worker runs again
        os.killpg(process.pid, signal.SIGCONT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "stopped by SIGTERM" in output
    assert _locks_free(tmp_path) and not list(jobs.glob("*/claim")), "the claim was released"
    assert not list(jobs.glob("*/work-*")) and not list(jobs.glob("*/error.json")), "nothing half, no failure"
    finished(bench_run(tmp_path))
    assert results(tmp_path) == results(clean_run[0])


def test_workers_die_with_their_launcher(tmp_path):
    process = bench_run(tmp_path, processes=2, start_new_session=True)
    jobs = tmp_path / "jobs"
    assert _wait_for(lambda: list(jobs.glob("*/claim")))
    workers = set()
    assert _wait_for(lambda: workers.update(json.loads(c.read_text())["pid"] for c in jobs.glob("*/claim")
                                            if c.stat().st_size) or len(workers) >= 1)
    os.kill(process.pid, signal.SIGKILL)  # the launcher only, not its process group
    process.communicate(timeout=60)
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=60), "orphaned workers"
    assert _locks_free(tmp_path)


def test_a_finished_run_reruns_without_write_access(clean_run, monkeypatch):
    """Rerunning a finished run only reads: every write under the run directory fails as on a
    read-only filesystem (EROFS), and the rerun still succeeds."""
    import builtins
    import errno

    from bench.suite import load_suite
    from bench.worker import run_worker

    out = str(clean_run[0])

    def guard(function, is_write):
        def guarded(path, *args, **kwargs):
            if str(path).startswith(out) and is_write(*args, **kwargs):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return function(path, *args, **kwargs)
        return guarded

    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    monkeypatch.setattr(os, "open", guard(os.open, lambda flags, *a, **k: flags & writing_flags))
    monkeypatch.setattr(builtins, "open", guard(builtins.open, lambda mode="r", *a, **k: set(mode) & set("wax+")))
    for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), lambda *a, **k: True))
    lines = []
    summary = run_worker(load_suite(MINI), out, progress=lines.append)
    assert summary["done"] == len(results(out)) and summary["pending"] == summary["failed"] == 0
    assert any("nothing to do: all" in line for line in lines)


def test_elastic_launch_survives_a_killed_worker(clean_run, tmp_path):
    """The documented pattern: `accelerate launch --max_restarts N`. One worker killed -9: the agent
    stops the others (they release their jobs), restarts the group, and the same launch finishes."""
    process = bench_run(tmp_path, processes=2, launch_args=("--max_restarts", "2"), start_new_session=True)
    jobs = tmp_path / "jobs"
    assert _wait_for(lambda: len(list(jobs.glob("*/result.json"))) >= 3 and list(jobs.glob("*/claim")))
    os.kill(json.loads(next(jobs.glob("*/claim")).read_text())["pid"], signal.SIGKILL)
    finished(process)
    assert results(tmp_path) == results(clean_run[0])
