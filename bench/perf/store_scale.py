"""What a worker's poll and claim cost as the run directory grows: the worker loop before and
``bench.scheduler.JobQueue``, on paper-ner's plan (10,112 jobs) and a 1k-job part of it.

    python -m bench.perf.store_scale                     # writes reports/perf/store-scale.{json,md}
    python -m bench.perf.store_scale --delay-ms 1        # every metadata operation 1 ms slower (a network filesystem)
    python -m bench.perf.store_scale --sizes 1000 --out /tmp/ss

Measured on real run directories (local disk unless ``--root`` says otherwise), other workers being
real processes holding real locks:

* idle poll, start: nothing done, every job ready at the start (the MLM jobs and full fine-tuning's
  task jobs) held by another process (the issue's case, where only the MLM jobs were held);
* idle poll, late: every job done but 64 evaluations, held by another process;
* claim: a poll that claims a free job, then its release (MLM and task jobs done, evaluations ready).

"before" is one iteration of ``bench/worker.py``'s loop at 2b45e9e (``OldLoop.poll``, its logic
copied here: a stat of result.json and error.json of every unfinished job per poll, and when nothing
is claimable a lock test of every unfinished job) over the current ``RunStore``; "after" is
``JobQueue.refresh`` + ``JobQueue.claim`` (+ its exit check when nothing is ready). Timings are the
median of ``--repeats`` polls after one untimed poll; ``ops`` counts the filesystem calls a poll
makes (``Ops``: stat, open, listdir/scandir, mkdir, rename, unlink, utime, chmod, fsync, flock),
each delayed by ``--delay-ms`` where asked.

Metadata operations per finished job: two worker processes run the whole plan with an empty job
(claim, workspace, commit of a valid result, release), counting their operations; ops per finished
job = all operations of both / jobs. The loop before is O(plan) per poll, so at 10k jobs it runs
only ``--old-sample`` jobs per worker (stated in the report).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import fcntl
import io
import json
import multiprocessing
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.graph import Job, build_graph
from bench.results import SCHEMA_VERSION, JobResult, WorkerInfo
from bench.scheduler import JobQueue
from bench.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
GOAL_IDLE_POLL_S = 0.010  # issue 20: an idle poll at 10,112 jobs, local disk
SUBSET_LANGUAGES = ("en", "ja", "sw", "qu", "gn")  # paper-ner restricted to these: 1,175 jobs
LATE_LEFT = 64

# -- counting (and slowing) filesystem calls -----------------------------------------------------------
_OS_CALLS = ("stat", "lstat", "open", "listdir", "scandir", "mkdir", "rename", "replace", "unlink", "rmdir", "utime",
             "chmod", "fsync")


class Ops:
    """Counts the process's filesystem calls by name while active; each sleeps ``delay`` seconds first."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.counts: Counter = Counter()

    @contextlib.contextmanager
    def active(self) -> Iterator["Ops"]:
        saved = [(os, name, getattr(os, name)) for name in _OS_CALLS]
        saved += [(fcntl, "flock", fcntl.flock), (io, "open", io.open), (builtins, "open", builtins.open)]
        for module, name, real in saved:
            setattr(module, name, self._wrap("open" if name == "open" else name, real))
        try:
            yield self
        finally:
            for module, name, real in saved:
                setattr(module, name, real)

    def _wrap(self, name: str, real):
        def counted(*args, **kwargs):
            if name == "open" and args and isinstance(args[0], int):  # open(fd): no filesystem call
                return real(*args, **kwargs)
            self.counts[name] += 1
            if self.delay:
                time.sleep(self.delay)
            return real(*args, **kwargs)
        return counted

    def total(self) -> int:
        return sum(self.counts.values())


# -- plans and run directories ------------------------------------------------------------------------
def paper_plan(size: int) -> list[Job]:
    """paper-ner's graph (10,112 jobs), or for a smaller size its part on ``SUBSET_LANGUAGES``."""
    from bench.suite import load_suite

    jobs = build_graph(load_suite("paper-ner", check_paths=False))
    if size >= len(jobs):
        return jobs
    keep = set(SUBSET_LANGUAGES)

    def languages(job: Job) -> set:
        p = job.params
        return {v for v in (p.get("language"), p.get("source"), p.get("target"), p.get("mlm_target")) if v}

    return [job for job in jobs if languages(job) <= keep]


def fake_result(job: Job) -> dict:
    """A result.json that validates (``bench.results``) for ``job``: what an empty job commits."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return JobResult.from_dict({
        "schema": SCHEMA_VERSION,
        "job": {"id": job.id, "kind": job.kind, "name": job.name, "params": {}, "deps": list(job.deps)},
        "status": "done", "metrics": {}, "train": None,
        "cost": {"device": "cpu", "wall_s": 0.0, "job_wall_s": 0.0, "device_hours": 0.0},
        "started_at": now, "finished_at": now, "worker": WorkerInfo.parse(f"bench:{os.getpid()}:rank0").to_dict(),
        "provenance": {"madx_version": "0", "git_revision": None, "git_dirty": None, "versions": {}, "hardware": {},
                       "python": sys.version.split()[0], "platform": sys.platform, "seed": None},
    }, source=f"store_scale's result of {job.name}").to_dict()


def write_done(store: RunStore, jobs: list[Job]) -> None:
    """Results (and markers) of ``jobs`` as commits leave them, without the fsyncs (setup, not measured)."""
    for job in jobs:
        store.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        store.result_path(job.id).write_text(json.dumps(fake_result(job)))
        store._mark(store.done_index, job.id)


HOLDER = """
import sys
from bench.store import RunStore
store = RunStore(sys.argv[1])
claims = [store.try_claim(job_id, "holder") for job_id in sys.argv[2:]]
assert all(claims), "the holder could not claim every job"
print("held", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def held_by_another_process(root: Path, job_ids: list[str]) -> Iterator[None]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), *job_ids], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        if holder.stdout.readline().strip() != "held":
            raise RuntimeError("the holder process did not claim its jobs")
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


# -- the loop before (bench/worker.py at 2b45e9e), one iteration ----------------------------------------
class OldLoop:
    def __init__(self, store: RunStore, jobs: list[Job], rank: int = 0, started: float | None = None):
        self.store, self.jobs, self.rank = store, jobs, rank
        self.started = time.time() if started is None else started
        self.done: set[str] = set()
        self.failed_here: set[str] = set()

    def poll(self, worker: str, heartbeat: float = 30.0):
        """(job, claim), None (it would sleep 0.5 s) or "exit"."""
        store, jobs, done = self.store, self.jobs, self.done
        done.update(j.id for j in jobs if j.id not in done and store.is_done(j.id))
        pending = [j for j in jobs if j.id not in done]
        if not pending:
            return "exit"
        failed = self.failed_here | {j.id for j in pending if self._failed_this_run(j.id)}
        blocked = _blocked(pending, failed)
        candidates = [j for j in pending if j.id not in failed and j.id not in blocked and all(d in done for d in j.deps)]
        if candidates:
            offset = self.rank % len(candidates)
            candidates = candidates[offset:] + candidates[:offset]
        for job in candidates:
            claim = store.try_claim(job.id, worker, heartbeat)
            if claim is not None:
                return job, claim
        running = [j for j in pending if store.owner(j.id).state == "held"]
        if not running and not candidates:
            return "exit"
        return None

    def _failed_this_run(self, job_id: str) -> bool:
        try:
            return (self.store.job_dir(job_id) / "error.json").stat().st_mtime >= self.started
        except FileNotFoundError:
            return False

    def finished(self, job: Job) -> None:  # the old loop learnt it at its next poll
        pass


def _blocked(pending: list[Job], failed: set[str]) -> set[str]:
    blocked: set[str] = set()
    changed = True
    while changed:
        changed = False
        for job in pending:
            if job.id not in blocked and any(d in failed or d in blocked for d in job.deps):
                blocked.add(job.id)
                changed = True
    return blocked


class NewLoop:
    def __init__(self, store: RunStore, jobs: list[Job], rank: int = 0, started: float | None = None):
        self.queue = JobQueue(store, jobs, rank, started)

    def poll(self, worker: str, heartbeat: float = 30.0):
        self.queue.refresh()
        claimed = self.queue.claim(worker, heartbeat)
        if claimed is not None:
            return claimed
        if not len(self.queue.ready) and not self.queue._retried_elsewhere():
            return "exit"
        return None

    def finished(self, job: Job) -> None:
        self.queue.finished(job)


LOOPS = {"before": OldLoop, "after": NewLoop}


# -- measurements ---------------------------------------------------------------------------------
def time_polls(loop, repeats: int, delay: float) -> dict:
    """Median seconds of ``repeats`` polls after one untimed one, and the ops of one poll."""
    first = loop.poll("bench")
    _release(first)
    samples, ops = [], Ops(delay)
    for i in range(repeats):
        counter = Ops(delay)
        with counter.active():
            start = time.perf_counter()
            result = loop.poll("bench")
            samples.append(time.perf_counter() - start)
        _release(result)
        if i == 0:
            ops = counter
    return {"poll_s": statistics.median(samples), "samples_s": samples, "ops": ops.total(), "ops_by_call": dict(ops.counts),
            "claimed": isinstance(result, tuple)}


def _release(result) -> None:
    if isinstance(result, tuple):
        result[1].release()


def scenario_dir(base: Path, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    return path


def measure_polls(jobs: list[Job], base: Path, repeats: int, delay: float, loops: list[str]) -> list[dict]:
    rows = []
    first = [j.id for j in jobs if not j.deps]  # the MLM jobs and full fine-tuning's task jobs
    evals = [j for j in jobs if j.kind == "eval"]
    # start: nothing done, every job that is ready at the start held elsewhere
    root = scenario_dir(base, "start")
    RunStore(root)
    with held_by_another_process(root, first):
        for name in loops:
            rows.append({"scenario": f"idle poll, start ({len(first)} ready jobs, MLM and full-FT task, held by another "
                                     "process)", "loop": name,
                         **time_polls(LOOPS[name](RunStore(root), jobs), repeats, delay)})
    # late: all done but the last evaluations, held elsewhere
    root = scenario_dir(base, "late")
    left = [j.id for j in evals[-LATE_LEFT:]]
    write_done(RunStore(root), [j for j in jobs if j.id not in set(left)])
    with held_by_another_process(root, left):
        for name in loops:
            rows.append({"scenario": f"idle poll, late (all done but {LATE_LEFT} evaluations, held by another process)",
                         "loop": name, **time_polls(LOOPS[name](RunStore(root), jobs), repeats, delay)})
    # claim: MLM and task jobs done, evaluations free
    root = scenario_dir(base, "claim")
    write_done(RunStore(root), [j for j in jobs if j.kind != "eval"])
    for name in loops:
        rows.append({"scenario": "poll that claims a free job (MLM and task jobs done)", "loop": name,
                     **time_polls(LOOPS[name](RunStore(root), jobs), repeats, delay)})
    return rows


def _work(root: str, jobs: list[Job], loop_name: str, rank: int, max_jobs: int | None, results) -> None:
    store = RunStore(root)
    ops = Ops()
    ran = 0
    with ops.active():
        start = time.perf_counter()
        loop = LOOPS[loop_name](store, jobs, rank)
        while max_jobs is None or ran < max_jobs:
            got = loop.poll(f"bench:{os.getpid()}:rank{rank}")
            if got == "exit":
                break
            if got is None:
                time.sleep(0.05)
                continue
            job, claim = got
            workspace = store.new_workspace(job.id)
            store.commit(claim, workspace, fake_result(job))
            claim.release()
            loop.finished(job)
            ran += 1
        wall = time.perf_counter() - start
    results.put({"rank": rank, "jobs": ran, "ops": ops.total(), "ops_by_call": dict(ops.counts), "wall_s": wall})


def measure_run(jobs: list[Job], base: Path, loop_name: str, workers: int, max_jobs: int | None) -> dict:
    """``workers`` processes run the plan (or ``max_jobs`` each) with empty jobs; their operations per finished job."""
    root = scenario_dir(base, f"run-{loop_name}")
    RunStore(root)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_work, args=(str(root), jobs, loop_name, rank, max_jobs, results))
                 for rank in range(workers)]
    for process in processes:
        process.start()
    per_worker = [results.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    finished = sum(w["jobs"] for w in per_worker)
    ops = sum(w["ops"] for w in per_worker)
    by_call = Counter()
    for w in per_worker:
        by_call.update(w["ops_by_call"])
    return {"loop": loop_name, "workers": workers, "jobs_finished": finished, "max_jobs_per_worker": max_jobs,
            "ops": ops, "ops_per_finished_job": ops / max(finished, 1),
            "ops_per_finished_job_by_call": {k: v / max(finished, 1) for k, v in sorted(by_call.items())},
            "wall_s": max(w["wall_s"] for w in per_worker)}


# -- report ---------------------------------------------------------------------------------------
def render(data: dict) -> str:
    delay = data["delay_ms"]
    lines = ["# Run directory at scale: poll, claim and metadata operations per finished job", "",
             f"Command: `{data['command']}`  ", f"Machine: {data['machine']}; run directories under `{data['root']}`"
             + (f"; every filesystem call delayed by {delay} ms (a network filesystem)" if delay else "; no added delay")
             + (f"  \nLoad average (1 min) {data['load_average_at_start']:.1f} at the start, {data['load_average_at_end']:.1f} "
                "at the end: the machine was shared, so timings are upper bounds; the operation counts do not depend on it"
                if "load_average_at_start" in data else ""),
             "", "Goal (issue 20): an idle poll at 10,112 jobs <= 10 ms on local disk; O(1) metadata operations per "
             "finished job, amortised.", "",
             "| jobs | scenario | loop | poll ms (median) | ops per poll | claimed |", "|---|---|---|---|---|---|"]
    for size in data["sizes"]:
        for row in size["polls"]:
            lines.append(f"| {size['jobs']:,} | {row['scenario']} | {row['loop']} | {row['poll_s'] * 1000:.2f} | "
                         f"{row['ops']:,} | {'yes' if row['claimed'] else 'no'} |")
    if not any(size["runs"] for size in data["sizes"]):
        return "\n".join(lines) + "\n"
    lines += ["", "Whole plan, empty jobs, two worker processes (ops = filesystem calls of both workers):", "",
              "| jobs | loop | jobs finished | ops per finished job | wall s | largest calls per job |", "|---|---|---|---|---|---|"]
    for size in data["sizes"]:
        for run in size["runs"]:
            top = sorted(run["ops_per_finished_job_by_call"].items(), key=lambda kv: -kv[1])[:4]
            sample = "" if run["max_jobs_per_worker"] is None else f" (first {run['max_jobs_per_worker']} per worker)"
            lines.append(f"| {size['jobs']:,} | {run['loop']} | {run['jobs_finished']:,}{sample} | "
                         f"{run['ops_per_finished_job']:.1f} | {run['wall_s']:.1f} | "
                         + ", ".join(f"{k} {v:.1f}" for k, v in top) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.perf.store_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10112], help="plan sizes (>= 10,112: all of paper-ner)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added to every filesystem call of a measured poll")
    parser.add_argument("--runs", action=argparse.BooleanOptionalAction, default=True,
                        help="also run whole plans with two worker processes (ops per finished job)")
    parser.add_argument("--old-sample", type=int, default=100, help="jobs per worker of the loop before at 10k jobs")
    parser.add_argument("--loops", nargs="+", choices=sorted(LOOPS), default=["before", "after"])
    parser.add_argument("--root", type=Path, default=None, help="where the run directories go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("reports/perf"))
    parser.add_argument("--name", default=None, help="report file name (default store-scale[-delay<ms>ms])")
    args = parser.parse_args(argv)
    import platform
    import shutil

    base = Path(tempfile.mkdtemp(prefix="store-scale-", dir=args.root))
    data = {"command": shlex.join(["python", "-m", "bench.perf.store_scale", *argv]), "delay_ms": args.delay_ms,
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.platform()})", "root": str(base.parent),
            "load_average_at_start": os.getloadavg()[0], "sizes": []}
    try:
        for size in args.sizes:
            jobs = paper_plan(size)
            print(f"{len(jobs)} jobs: polls", flush=True)
            entry = {"jobs": len(jobs), "polls": measure_polls(jobs, base, args.repeats, args.delay_ms / 1000, args.loops),
                     "runs": []}
            if args.runs:
                for name in args.loops:
                    sample = args.old_sample if name == "before" and len(jobs) > 2000 else None
                    print(f"{len(jobs)} jobs: whole run, {name}", flush=True)
                    entry["runs"].append(measure_run(jobs, base, name, 2, sample))
            data["sizes"].append(entry)
    finally:
        data["load_average_at_end"] = os.getloadavg()[0]
        shutil.rmtree(base, ignore_errors=True)
    name = args.name or ("store-scale" + (f"-delay{args.delay_ms:g}ms" if args.delay_ms else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(render(data))
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
