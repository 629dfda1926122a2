"""The job queue: polls that cost what changed, not the plan; longest chains first; a worker's
evaluations of one fine-tuned model together; and the store's guarantees kept with real processes
racing for real locks."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time

import pytest

from bench.graph import Job
from bench.perf.store_scale import Ops, fake_result
from bench.scheduler import CostModel, JobQueue, ReadySet, claim_positions, priorities
from bench.store import RunStore
from tests.bench.test_store import python


def job(name: str, kind: str = "eval", deps: tuple[str, ...] = (), **params) -> Job:
    return Job.make(kind, name, {"name": name, **params}, deps)


def commit(store: RunStore, done: Job, worker: str = "other") -> None:
    claim = store.try_claim(done.id, worker)
    assert claim is not None
    store.commit(claim, store.new_workspace(done.id), fake_result(done))
    claim.release()


def queue(store, jobs, cost=lambda j: 1.0, **kwargs) -> JobQueue:
    return JobQueue(store, jobs, cost=cost, affinity=kwargs.pop("affinity", None), **kwargs)


def settled(store: RunStore) -> None:
    """Index folders whose mtime is past the racy second (as on a run directory a while after a commit)."""
    for folder in (store.done_index, store.failed_index):
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder, (time.time() - 60, time.time() - 60))


# -- cost of a poll ---------------------------------------------------------------------------------------
def idle_poll_ops(tmp_path, finished: int, blocked: int) -> int:
    """Operations of one idle poll: ``finished`` jobs done, two ready jobs held by another process,
    ``blocked`` jobs behind a job that failed in this run."""
    store = RunStore(tmp_path)
    started = time.time()
    done = [job(f"done{i}") for i in range(finished)]
    failing = job("failing", "task")
    held = [job("held0"), job("held1")]
    waiting = [job(f"blocked{i}", deps=(failing.id,)) for i in range(blocked)]
    for j in done:
        commit(store, j)
    claim = store.try_claim(failing.id, "other")
    store.record_error(claim, {"error": "boom"})
    claim.release()
    holder = python("""
        import sys
        from bench.store import RunStore
        claims = [RunStore(sys.argv[1]).try_claim(job_id, "holder") for job_id in sys.argv[2:]]
        print("held" if all(claims) else "not held", flush=True)
        sys.stdin.readline()
    """, str(tmp_path), *(j.id for j in held), stdin=__import__("subprocess").PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        q = queue(store, done + [failing] + held + waiting, started=started)
        assert q.ready.failed == {failing.id} and len(q.ready.blocked) == blocked and len(q.ready.done) == finished
        settled(store)
        q.refresh()  # lists the folders once more (their mtime moved): now quiet
        ops = Ops()
        with ops.active():
            q.refresh()
            assert q.claim("me") is None
        return ops.total()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_an_idle_poll_costs_the_same_with_ten_or_a_thousand_finished_and_blocked_jobs(tmp_path):
    small = idle_poll_ops(tmp_path / "small", finished=10, blocked=10)
    large = idle_poll_ops(tmp_path / "large", finished=1000, blocked=1000)
    assert large == small, f"an idle poll grew from {small} to {large} operations with 1,980 more finished/blocked jobs"
    assert small <= 2 + 2 * 2, "a stat of each index folder and a lock attempt on each of the two held jobs"


def test_a_finished_job_costs_one_listing_and_one_validation(tmp_path):
    store = RunStore(tmp_path)
    jobs = [job(f"j{i}") for i in range(300)]
    for j in jobs[:200]:
        commit(store, j)
    q = queue(store, jobs)
    settled(store)
    q.refresh()
    commit(store, jobs[250])
    ops = Ops()
    with ops.active():
        assert q.refresh()
    assert jobs[250].id in q.ready.done
    assert ops.counts["listdir"] == 1 and ops.counts["stat"] <= 3 and ops.counts["open"] == 1, dict(ops.counts)


def test_a_marker_without_a_valid_result_is_not_done_and_a_result_without_a_marker_is_found(tmp_path):
    store = RunStore(tmp_path)
    marked_only, unmarked, later = job("marked-only"), job("unmarked"), job("later")
    store._mark(store.done_index, marked_only.id)  # a marker whose result never came
    store.job_dir(unmarked.id).mkdir(parents=True)  # a result written by older code: no marker
    store.result_path(unmarked.id).write_text(json.dumps(fake_result(unmarked)))
    q = queue(store, [marked_only, unmarked, later], cost=lambda j: 2.0 if j == later else 1.0)  # `later` tried first
    assert q.ready.done == {unmarked.id}, "found at start by the scan of the job folders"
    assert {j.id for j in q.ready.ready()} == {marked_only.id, later.id}
    store.job_dir(later.id).mkdir(parents=True)  # older code finishes a job while this worker runs
    store.result_path(later.id).write_text(json.dumps(fake_result(later)))
    store.job_dir(marked_only.id).mkdir(parents=True, exist_ok=True)
    store.result_path(marked_only.id).write_text("{")
    claimed = q.claim("me")  # the claim attempt on `later` finds it done and marks it
    assert claimed is not None and claimed[0] == marked_only and not store.result_path(marked_only.id).exists()
    claimed[1].release()
    settled(store)
    q._listed["done"] = (None, 0.0)
    q.refresh()
    assert q.ready.done == {unmarked.id, later.id}


# -- order ---------------------------------------------------------------------------------------------
def test_ready_jobs_are_claimed_longest_chain_first(tmp_path):
    store = RunStore(tmp_path)
    short_head = job("a-short-head", "task")  # 1 s, but a 10 s job waits on it
    tail = job("b-tail", deps=(short_head.id,))
    alone = job("c-alone", "mlm")  # 5 s, nothing after it
    small = job("d-small")  # 3 s
    seconds = {short_head.id: 1.0, tail.id: 10.0, alone.id: 5.0, small.id: 3.0}
    q = queue(store, [small, alone, tail, short_head], cost=lambda j: seconds[j.id])
    order = []
    while (claimed := q.claim("me")) is not None:
        order.append(claimed[0].name)
        claimed[1].release()
        commit(store, claimed[0])
        q.finished(claimed[0])
    assert order == ["a-short-head", "b-tail", "c-alone", "d-small"]


def test_paper_ner_starts_the_full_model_mlm_jobs_first_at_measured_rates():
    from bench.graph import build_graph
    from bench.perf.makespan import H200
    from bench.suite import load_suite

    jobs = build_graph(load_suite("paper-ner", check_paths=False))
    level = priorities(jobs, CostModel(rates=H200).seconds)
    ready = ReadySet(jobs, claim_positions(jobs, level, {}, rank=3), {})
    first = [j.name for j in ready.ready()[:16]]
    assert all(name.startswith("mlm/") and name.endswith("/full") for name in first), first
    kinds = [j.kind for j in ready.ready()]
    assert kinds[:80] == ["mlm"] * 80 and set(kinds[80:]) == {"task"}, "every MLM job before full fine-tuning's task jobs"


def test_equal_priorities_start_at_different_jobs_for_different_ranks():
    jobs = [job(f"j{i}") for i in range(8)]
    level = priorities(jobs, lambda j: 1.0)
    starts = {ReadySet(jobs, claim_positions(jobs, level, {}, rank), {}).ready()[0].name for rank in range(4)}
    assert len(starts) == 4


# -- affinity ------------------------------------------------------------------------------------------
def test_a_worker_takes_the_evaluations_of_the_model_it_holds_and_others_pass_over_that_group(tmp_path):
    store = RunStore(tmp_path)
    model_a, model_b = job("task-a", "task"), job("task-b", "task")
    evals = {key.name: [job(f"eval-{key.name}-{i}", deps=(key.id,)) for i in range(4)] for key in (model_a, model_b)}
    jobs = [model_a, model_b, *evals["task-a"], *evals["task-b"]]
    for j in (model_a, model_b):
        commit(store, j)
    keys = lambda j, by_id: j.deps[0] if j.kind == "eval" else None  # noqa: E731
    # rank 0 and rank 1 both see the two groups in the same place: a's first
    first = queue(store, jobs, affinity=keys, rank=0)
    second = queue(store, jobs, affinity=keys, rank=2)
    job1, claim1 = first.claim("first")
    group_of = {j.id: name for name, members in evals.items() for j in members}
    group = group_of[job1.id]
    job2, claim2 = second.claim("second")
    assert group_of[job2.id] != group, "the second worker passed over the group the first one holds"
    claim1.release()
    commit(store, job1, "first")
    first.finished(job1)
    job3, claim3 = first.claim("first")
    assert group_of[job3.id] == group, "the first worker stays with the model it loaded"
    claim3.release()
    claim2.release()
    # nothing else ready: a worker takes a job of a group another holds rather than wait
    for j in evals["task-b" if group == "task-a" else "task-a"]:
        commit(store, j)
    third = queue(store, jobs, affinity=keys)
    held = first.claim("first")
    assert held is not None
    stolen = third.claim("third")
    assert stolen is not None and group_of[stolen[0].id] == group
    held[1].release()
    stolen[1].release()


# -- failures, exits, back-off --------------------------------------------------------------------------
def test_a_failure_blocks_its_dependents_in_this_run_and_the_next_run_retries_it(tmp_path):
    store = RunStore(tmp_path)
    started = time.time()
    failing = job("failing", "task")
    dependent = job("dependent", deps=(failing.id,))
    q = queue(store, [failing, dependent], started=started, sleep=lambda s: pytest.fail("nothing to wait for"))
    claimed = q.next_claim("me")
    assert claimed[0] == failing
    store.record_error(claimed[1], {"error": "boom"})
    claimed[1].release()
    other = queue(store, [failing, dependent], started=started)  # another worker of this run
    assert other.ready.failed == {failing.id} and other.ready.blocked == {dependent.id}
    assert other.next_claim("other") is None, "only a failed job and what waits on it are left"
    q.failed(failing)
    assert q.next_claim("me") is None
    rerun = queue(store, [failing, dependent], started=time.time() + 1)
    retried = rerun.next_claim("rerun")
    assert retried[0] == failing
    store.commit(retried[1], store.new_workspace(failing.id), fake_result(failing))
    retried[1].release()
    rerun.finished(failing)
    other._listed = {"done": (None, 0.0), "failed": (None, 0.0)}
    other.refresh()
    assert other.ready.blocked == set() and [j.name for j in other.ready.ready()] == ["dependent"]


def test_idle_waits_double_up_to_the_longest_and_start_again_when_a_job_finishes(tmp_path):
    store = RunStore(tmp_path)
    first, second = job("first", "task"), job("second", deps=(job("first", "task").id,))
    other = RunStore(tmp_path).try_claim(first.id, "other")  # another worker's lock (another open file)
    waits, held = [], {}

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 3:  # the other worker finishes `first` and takes `second`
            store.commit(other, store.new_workspace(first.id), fake_result(first))
            other.release()
            held["second"] = RunStore(tmp_path).try_claim(second.id, "other")
        if len(waits) == 4:
            held["second"].release()

    q = queue(store, [first, second], idle=(0.1, 0.3), relist_seconds=0.0, sleep=sleep)
    claimed = q.next_claim("me")
    assert claimed[0] == second and waits == [0.1, 0.2, 0.3, 0.1]
    claimed[1].release()


def test_a_killed_workers_job_is_claimed_at_the_next_poll(tmp_path):
    store = RunStore(tmp_path)
    only = job("only", "mlm")
    holder = python("""
        import sys, time
        from bench.store import RunStore
        RunStore(sys.argv[1]).try_claim(sys.argv[2], "doomed")
        print("claimed", flush=True)
        time.sleep(600)
    """, str(tmp_path), only.id)
    assert holder.stdout.readline().strip() == "claimed"
    q = queue(store, [only])
    assert q.claim("me") is None
    holder.kill()
    holder.wait()
    claimed = q.claim("me")
    assert claimed is not None and claimed[0] == only
    claimed[1].release()


def test_counts_from_the_view(tmp_path):
    store = RunStore(tmp_path)
    done, running, failed, pending, waiting = (job(n, "task") for n in ("done", "running", "failed", "pending", "x"))
    waiting = job("waiting", deps=(pending.id,))
    commit(store, done)
    claim = store.try_claim(failed.id, "other")
    store.record_error(claim, {"error": "boom"})
    claim.release()
    q = queue(store, [done, running, failed, pending, waiting], started=time.time())
    held = store.try_claim(running.id, "other")
    try:
        assert q.counts() == {"done": 1, "running": 1, "failed": 1, "pending": 2}
    finally:
        held.release()


# -- real workers racing ---------------------------------------------------------------------------------
def _worker(root: str, jobs: list[Job], rank: int, start: float, out) -> None:
    store = RunStore(root)
    q = JobQueue(store, jobs, rank, cost=lambda j: float(len(j.name)), affinity=None, idle=(0.01, 0.05))
    by_id = {j.id: j for j in jobs}
    ran, early = [], []
    while time.time() < start:
        pass
    while (claimed := q.next_claim(f"w{rank}")) is not None:
        j, claim = claimed
        early += [j.name for d in j.deps if not store.is_done(d)]
        store.commit(claim, store.new_workspace(j.id), fake_result(j))
        claim.release()
        q.finished(j)
        ran.append(j.name)
    out.put({"rank": rank, "ran": ran, "early": early, "known": len(by_id)})


def test_racing_worker_processes_run_every_job_exactly_once_after_its_dependencies(tmp_path):
    rng = random.Random(0)
    jobs: list[Job] = []
    for i in range(160):
        deps = tuple(sorted({rng.choice(jobs).id for _ in range(rng.randint(0, 2))})) if i >= 20 else ()
        jobs.append(job(f"j{i:03d}", deps=deps))
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start = time.time() + 1.0
    workers = [context.Process(target=_worker, args=(str(tmp_path), jobs, rank, start, out)) for rank in range(4)]
    for w in workers:
        w.start()
    reports = [out.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    ran = [name for r in reports for name in r["ran"]]
    assert sorted(ran) == sorted(j.name for j in jobs), "every job ran exactly once"
    assert not [name for r in reports for name in r["early"]], "no job ran before its dependencies were done"
    assert sum(1 for r in reports if r["ran"]) >= 2, "the workers really shared the plan"
    assert sorted(RunStore(tmp_path).done_marked()) == sorted(j.id for j in jobs)
