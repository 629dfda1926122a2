"""The run store: one owner per job at every moment (kernel locks + fencing token), results that
prove themselves, and a commit that a kill at any point leaves resumable. Real processes, real
signals; no mocks of the locking."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.results import JobSpec
from bench.store import ClaimLost, RunDirectoryError, RunStore
from tests.bench.test_results import result

ROOT = Path(__file__).resolve().parents[2]


def valid_result(job_id: str, f1: float = 1.0) -> dict:
    r = result(job=JobSpec(job_id, "eval", f"eval/{job_id}", {"task": "ner"}, ()), metrics={"f1": f1})
    return r.to_dict()


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_claims_are_exclusive_and_released(tmp_path):
    store = RunStore(tmp_path)
    first = store.try_claim("job", "w1")
    assert first is not None and store.owner("job").state == "held"
    assert store.try_claim("job", "w2") is None
    first.release()
    first.release()  # twice is harmless
    assert store.owner("job").state == "free"
    second = store.try_claim("job", "w2")
    assert second is not None
    second.release()


def test_a_killed_workers_job_is_free_at_once_and_its_claim_shows_stale(tmp_path):
    holder = python("""
        import sys, time
        from bench.store import RunStore
        claim = RunStore(sys.argv[1]).try_claim("job", "doomed")
        print("claimed", flush=True)
        time.sleep(600)
    """, str(tmp_path))
    assert holder.stdout.readline().strip() == "claimed"
    store = RunStore(tmp_path)
    assert store.owner("job").state == "held" and store.try_claim("job", "w") is None
    holder.kill()
    holder.wait()
    ownership = store.owner("job")
    assert ownership.state == "stale" and ownership.claim["worker"] == "doomed"
    assert "stale claim by doomed" in ownership.describe()
    claim = store.try_claim("job", "w")  # no lease to wait out
    assert claim is not None and store.claim_owner("job")["worker"] == "w"
    claim.release()


RACER = """
    import json, sys, time
    from bench.store import RunStore
    root, name, trials, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store, won, held = RunStore(root), [], []
    while time.time() < start:
        pass
    for trial in range(trials):
        claim = store.try_claim(f"t{trial}", name)
        if claim is not None:
            won.append(trial)
            held.append(claim)  # keep owning it: the others must see it taken
    print(json.dumps(won), flush=True)
"""


def test_racing_workers_on_stale_claims_never_both_win(tmp_path):
    """Each trial: a job with a stale claim file (its owner is dead), four processes claim at once."""
    trials = 300
    for trial in range(trials):
        directory = tmp_path / "jobs" / f"t{trial}"
        directory.mkdir(parents=True)
        (directory / "claim").write_text(json.dumps({"worker": "dead", "host": "gone", "pid": 1, "token": "old"}))
    start = time.time() + 2.0
    racers = [python(RACER, str(tmp_path), f"w{i}", str(trials), str(start)) for i in range(4)]
    outputs = [json.loads(p.communicate(timeout=120)[0]) for p in racers]
    winners = [trial for won in outputs for trial in won]
    assert sorted(winners) == list(range(trials)), "every trial has exactly one winner"
    assert sum(1 for won in outputs if won) >= 2, "the processes really raced"


def test_a_paused_worker_keeps_its_job_and_commits_exactly_once(tmp_path):
    """SIGSTOP for longer than the heartbeat interval: nobody takes the job over; on SIGCONT the
    owner commits, its artifacts untouched."""
    owner = python("""
        import json, sys, time
        from bench.store import RunStore
        from tests.bench.test_store import valid_result
        store = RunStore(sys.argv[1])
        claim = store.try_claim("job", "paused", heartbeat_seconds=1.0)
        workspace = store.new_workspace("job")
        (workspace / "adapter.bin").write_text("from the paused worker")
        print("ready", flush=True)
        sys.stdin.readline()
        store.commit(claim, workspace, valid_result("job", f1=42.0))
        claim.release()
        print("committed", flush=True)
    """, str(tmp_path), stdin=subprocess.PIPE)
    assert owner.stdout.readline().strip() == "ready"
    os.kill(owner.pid, signal.SIGSTOP)
    try:
        time.sleep(3.0)  # three heartbeat intervals with no heartbeat
        store = RunStore(tmp_path)
        ownership = store.owner("job")
        assert ownership.state == "held" and ownership.heartbeat_age >= 2.0
        for _ in range(20):
            assert store.try_claim("job", "intruder") is None
    finally:
        os.kill(owner.pid, signal.SIGCONT)
    owner.stdin.write("go\n")
    owner.stdin.flush()
    out, err = owner.communicate(timeout=60)
    assert "committed" in out, err
    assert store.is_done("job") and store.read_result("job")["metrics"]["f1"] == 42.0
    assert (store.artifacts("job") / "adapter.bin").read_text() == "from the paused worker"


def test_a_worker_whose_claim_was_replaced_touches_nothing(tmp_path):
    """Fencing: where a lock was lost (an NFS client cut off), the token still stops the old owner."""
    store = RunStore(tmp_path)
    claim = store.try_claim("job", "old")
    workspace = store.new_workspace("job")
    newer = {**store.claim_owner("job"), "worker": "new", "token": "someone-else"}
    (store.job_dir("job") / "claim").write_text(json.dumps(newer))
    store.artifacts("job").mkdir()
    (store.artifacts("job") / "theirs.bin").write_text("newer owner's")
    with pytest.raises(ClaimLost):
        store.commit(claim, workspace, valid_result("job"))
    with pytest.raises(ClaimLost):
        store.record_error(claim, {"error": "x"})
    with pytest.raises(ClaimLost):
        store.clean_workspaces(claim)
    claim.release()
    assert store.claim_owner("job")["worker"] == "new", "release leaves another owner's claim file alone"
    assert (store.artifacts("job") / "theirs.bin").exists() and workspace.exists() and not store.is_done("job")


COMMIT_KILLED = """
    import os, sys
    import bench.store as store_module
    from bench.store import RunStore
    from tests.bench.test_store import valid_result
    phase = int(sys.argv[2])
    calls = {"n": 0}
    real_rename, real_write = os.rename, store_module.atomic_write_json

    def die_at(step, real):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == phase:
                os._exit(9)
            return real(*args, **kwargs)
        return wrapped

    store = RunStore(sys.argv[1])
    claim = store.try_claim("job", "dies")
    workspace = store.new_workspace("job")
    (workspace / "adapter.bin").write_text("half")
    store_module.os.rename = die_at("rename", real_rename)
    store_module.atomic_write_json = die_at("write", real_write)
    store.commit(claim, workspace, valid_result("job", f1=1.0))
    claim.release()
"""


@pytest.mark.parametrize("phase", [1, 2, 3])  # killed at: moving artifacts in, writing result.json, after both
def test_kill_at_every_phase_of_commit_leaves_a_resumable_job(tmp_path, phase):
    dying = python(COMMIT_KILLED, str(tmp_path), str(phase))
    dying.communicate(timeout=60)
    store = RunStore(tmp_path)
    if phase <= 2:
        assert dying.returncode == 9 and not store.is_done("job")
        claim = store.try_claim("job", "next")
        assert claim is not None
        store.clean_workspaces(claim)
        workspace = store.new_workspace("job")
        (workspace / "adapter.bin").write_text("whole")
        store.commit(claim, workspace, valid_result("job", f1=2.0))
        claim.release()
        assert store.read_result("job")["metrics"]["f1"] == 2.0
        assert (store.artifacts("job") / "adapter.bin").read_text() == "whole"
    else:
        assert dying.returncode == 0 and store.is_done("job")
    assert not list(store.job_dir("job").glob("work-*")) or phase == 3
    assert not list(store.job_dir("job").glob("*.tmp*"))


@pytest.mark.parametrize("content", ["", '{"schema": 2, "job": {"id": "job"', "[]", '{"schema": 2}', "\xff\xfe"])
def test_an_invalid_result_is_not_done_and_is_quarantined(tmp_path, content):
    store = RunStore(tmp_path)
    store.job_dir("job").mkdir(parents=True)
    store.result_path("job").write_bytes(content.encode("latin-1"))
    assert not store.is_done("job") and store.result_problem("job")
    claim = store.try_claim("job", "w")
    assert claim is not None and not store.result_path("job").exists()
    (kept,) = store.quarantined("job")
    assert kept.read_bytes() == content.encode("latin-1")
    assert kept.with_suffix(".reason.txt").read_text().strip()
    claim.release()


def test_a_result_of_another_job_is_not_this_jobs_result(tmp_path):
    store = RunStore(tmp_path)
    store.job_dir("job").mkdir(parents=True)
    store.result_path("job").write_text(json.dumps(valid_result("other")))
    assert not store.is_done("job") and "folder of job 'job'" in store.result_problem("job")


def test_a_valid_result_is_done_and_cached_until_it_changes(tmp_path):
    store = RunStore(tmp_path)
    claim = store.try_claim("job", "w")
    store.commit(claim, store.new_workspace("job"), valid_result("job"))
    claim.release()
    assert store.is_done("job")
    store.result_path("job").write_text("{")  # replaced behind the store's back: checked again
    assert not store.is_done("job")


def test_reading_a_missing_run_directory_creates_nothing(tmp_path):
    with pytest.raises(RunDirectoryError, match="not a run directory"):
        RunStore(tmp_path / "typo", create=False)
    assert not (tmp_path / "typo").exists()


# -- the index: markers beside the results (bench.scheduler reads them) ----------------------------------
def test_commit_marks_the_job_done_after_its_result_and_quarantine_unmarks_it(tmp_path):
    store = RunStore(tmp_path)
    claim = store.try_claim("job", "w")
    assert store.done_marked() == []
    store.commit(claim, store.new_workspace("job"), valid_result("job"))
    claim.release()
    assert store.done_marked() == ["job"]
    assert (store.done_index / "job").stat().st_mtime_ns >= store.result_path("job").stat().st_mtime_ns
    store.result_path("job").write_text("{")  # spoilt behind the store's back: the next owner quarantines it
    claim = store.try_claim("job", "w2")
    assert claim is not None and store.done_marked() == [], "a marker never outlives the result it pointed at"
    claim.release()


def test_failures_are_marked_with_their_time_and_cleared_by_a_later_commit(tmp_path):
    store = RunStore(tmp_path)
    before = time.time_ns()
    claim = store.try_claim("job", "w")
    store.record_error(claim, {"error": "boom"})
    claim.release()
    ((job_id, stamp),) = store.failures_marked()
    assert job_id == "job" and before <= stamp <= time.time_ns()
    claim = store.try_claim("job", "w")
    store.commit(claim, store.new_workspace("job"), valid_result("job"))
    claim.release()
    assert store.failures_marked() == [] and store.error("job") is None


def test_a_claim_attempt_on_a_job_done_without_a_marker_writes_the_marker(tmp_path):
    """A result committed by older code (or by an owner killed between result.json and the marker)."""
    store = RunStore(tmp_path)
    store.job_dir("job").mkdir(parents=True)
    store.result_path("job").write_text(json.dumps(valid_result("job")))
    assert store.done_marked() == []
    assert store.try_claim("job", "w") is None
    assert store.done_marked() == ["job"] and store.owner("job").state == "free"


def test_a_kept_lock_descriptor_is_one_flock_and_never_locks_a_replaced_file(tmp_path):
    import shutil

    from bench.perf.store_scale import Ops

    store, other = RunStore(tmp_path), RunStore(tmp_path)
    held = other.try_claim("job", "other")
    assert store.try_claim("job", "w") is None
    ops = Ops()
    with ops.active():
        assert store.try_claim("job", "w") is None
    assert dict(ops.counts) == {"flock": 1}, "a second attempt on a held job reuses the descriptor"
    held.release()
    shutil.rmtree(store.job_dir("job"))  # removed by hand and claimed anew: a new lock file
    newer = other.try_claim("job", "newer")
    assert newer is not None
    assert store.try_claim("job", "w") is None, "the kept descriptor is of the old file: its lock proves nothing"
    newer.release()
    mine = store.try_claim("job", "w")
    assert mine is not None and store.claim_owner("job")["worker"] == "w"
    mine.release()
