"""Which job a worker claims next, at the cost of what changed in the run directory, not of the plan.

``JobQueue`` is a worker's view of the run: the jobs done, failed in this run, blocked by a failure,
and ready (every dependency done), kept in memory and brought up to date from the store's index
(``bench.store``: ``index/done/``, ``index/failed/``) instead of from every job's files:

* an idle poll is one ``stat`` of each index folder and a claim attempt on each ready job (the ready
  jobs nobody can claim are the ones held by other workers, so at most one per worker); a folder is
  listed again only when its mtime moved (or every ``relist_seconds``, for filesystems whose mtimes
  are coarse or cached), and each newly listed job costs one validation of its result.json. A marker
  whose result does not validate does not count; a result without a marker is found by the scan of
  the job folders at start and by ``RunStore.try_claim`` (which then writes the marker).
* ``next_claim`` sleeps while nothing is claimable, doubling the wait from ``idle[0]`` to ``idle[1]``
  seconds and starting again at ``idle[0]`` when a job finishes or fails; it returns None when
  nothing is left that this worker can run (what is left is failed or blocked, and nobody retries it).

Order. Ready jobs are tried highest priority first, the priority being a job's expected seconds plus
the longest chain of expected seconds of the jobs that depend on it (the critical path below it:
HLFET list scheduling). Among independent jobs that is longest expected first; expected seconds come
from ``bench.calibrate``'s accounting (tokens of each job from its kind and sizes) at the calibrated
tokens/s of each kind (``CostModel.rates``; one assumed rate for every kind without them). Workers
with the same priority in front of them start at different jobs (rotated by rank), as before.

Affinity. An evaluation of a full-model method loads its task job's fine-tuned model, and a worker
keeps one (``bench.execute.run_eval``). Such evaluations form a group per task job (``affinity_key``):
a worker holding a group's model takes the group's ready evaluations before anything else, and a
worker that finds one of a group's evaluations held by another passes over the rest of the group
while other work is claimable, so each worker loads each model once (``bench.perf.makespan``
simulates paper-ner's loads and makespan with and without this).

Claims stay ``RunStore.try_claim``'s: an exclusive lock, a fencing token, a result validated under
the lock; nothing here can make two workers run one job.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.calibrate import DataSizes, job_work, rate_key
from bench.graph import Job

T = TypeVar("T")
ASSUMED_TOKENS_PER_S = 100_000.0  # bench.cli's plan assumption; only the ratios between kinds order jobs
IDLE_SECONDS = (0.1, 1.0)  # first and longest wait between idle polls (an idle poll costs ~1 ms: a short cap keeps a
# worker that found nothing ready from sleeping through the jobs that became ready meanwhile)
RELIST_SECONDS = 5.0  # an index folder is listed at least this often, changed mtime or not


# -- expected cost and priority ----------------------------------------------------------------------
class _AssumedSizes(DataSizes):
    """Sizes from the task registry's assumptions only (no suite, no data files read)."""

    def __init__(self):
        super().__init__(suite=None)

    def _find(self, task: str, language: str, split: str):
        return self._assumed(task, language, split)


@dataclass
class CostModel:
    """Expected seconds of a job: its tokens per accounting row (``bench.calibrate.job_work``) at
    ``rates`` (tokens/s per rate key, e.g. a calibration's), ``default_rate`` for keys without one."""

    sizes: DataSizes = field(default_factory=_AssumedSizes)
    rates: Mapping[str, float] = field(default_factory=dict)
    default_rate: float = ASSUMED_TOKENS_PER_S

    @staticmethod
    def for_suite(suite, rates: Mapping[str, float] | None = None) -> "CostModel":
        """Sizes counted from the suite's data files where they are here (``DataSizes``), else assumed."""
        return CostModel(DataSizes(suite), dict(rates or {}))

    def seconds(self, job: Job) -> float:
        try:
            work = job_work(job, self.sizes)
        except Exception:  # a data file that cannot be counted: the job says so when it runs; ordering guesses
            work = job_work(job, _AssumedSizes())
        return sum(tokens / self.rates.get(rate_key(row), self.default_rate) for row, tokens in work.tokens.items())


def rates_from_plan(plan: Mapping[str, Any]) -> dict[str, float]:
    """tokens/s per rate key from ``madx bench plan SUITE --calibrate --json``'s output."""
    rate = plan.get("rate", {})
    if rate.get("source") != "measured":
        return {}
    return {key: float(m["tokens_per_s"]) for key, m in rate.get("measurements", {}).items()}


def priorities(jobs: list[Job], seconds: Callable[[Job], float]) -> dict[str, float]:
    """Each job's expected seconds plus the longest expected chain of jobs that depend on it."""
    dependents: dict[str, list[str]] = {job.id: [] for job in jobs}
    for job in jobs:
        for dep in job.deps:
            if dep in dependents:
                dependents[dep].append(job.id)
    own = {job.id: seconds(job) for job in jobs}
    level: dict[str, float] = {}
    for job in reversed(_topological(jobs)):
        level[job.id] = own[job.id] + max((level[d] for d in dependents[job.id]), default=0.0)
    return level


def _topological(jobs: list[Job]) -> list[Job]:
    by_id = {job.id: job for job in jobs}
    seen: set[str] = set()
    order: list[Job] = []
    for root in jobs:
        stack = [(root, False)]
        while stack:
            job, expanded = stack.pop()
            if expanded:
                order.append(job)
                continue
            if job.id in seen:
                continue
            seen.add(job.id)
            stack.append((job, True))
            stack.extend((by_id[d], False) for d in job.deps if d in by_id and d not in seen)
    return order


def affinity_key(job: Job, jobs_by_id: Mapping[str, Job]) -> str | None:
    """The fine-tuned model an evaluation loads (its task job's id): full-model methods only, whose
    evaluations load a whole model (adapter methods swap small adapters into the worker's base model)."""
    from madx.variants import get_variant

    if job.kind != "eval" or get_variant(job.params["method"]).uses_adapters:
        return None
    return next((d for d in job.deps if d in jobs_by_id and jobs_by_id[d].kind == "task"), None)


def claim_positions(jobs: list[Job], priority: Mapping[str, float], keys: Mapping[str, str | None],
                    rank: int = 0) -> dict[str, int]:
    """Each job's place in this worker's claim order. A unit is a job, or all jobs of one affinity key
    (in one order for every worker, so that workers meet on the same job of a group and see it taken);
    units go by priority (a group's: its first job's), equal ones rotated by ``rank``."""
    units: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        units.setdefault(keys.get(job.id) or job.id, []).append(index)
    tiers: dict[float, list[list[int]]] = {}
    for members in units.values():
        members.sort(key=lambda i: (-priority[jobs[i].id], i))
        tiers.setdefault(priority[jobs[members[0]].id], []).append(members)
    positions: dict[str, int] = {}
    for level in sorted(tiers, reverse=True):
        tier = sorted(tiers[level], key=lambda members: members[0])
        shift = rank % len(tier)
        for members in tier[shift:] + tier[:shift]:
            for i in members:
                positions[jobs[i].id] = len(positions)
    return positions


# -- the ready set (no I/O: the queue and the simulation share it) ---------------------------------------
class ReadySet:
    """Done, failed, blocked and ready jobs of a plan; ready ones in claim order."""

    def __init__(self, jobs: list[Job], positions: Mapping[str, int], keys: Mapping[str, str | None]):
        self.jobs = {job.id: job for job in jobs}
        self.keys = dict(keys)
        self._position = dict(positions)
        self._at = {positions[job.id]: job.id for job in jobs}  # position -> job id
        self.dependents: dict[str, list[str]] = {job.id: [] for job in jobs}
        self._waiting: dict[str, int] = {}
        for job in jobs:
            self._waiting[job.id] = len(job.deps)  # a dependency outside the plan is never done here
            for dep in job.deps:
                if dep in self.dependents:
                    self.dependents[dep].append(job.id)
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.blocked: set[str] = set()
        self._order: list[int] = []  # positions of the ready jobs, sorted
        self._by_key: dict[str, list[int]] = {}
        for job in jobs:
            if not job.deps:
                self._add(job.id)

    def __len__(self) -> int:
        return len(self._order)

    def ready(self) -> list[Job]:
        return [self.jobs[self._at[p]] for p in self._order]

    def is_ready(self, job_id: str) -> bool:
        position = self._position[job_id]
        i = bisect.bisect_left(self._order, position)
        return i < len(self._order) and self._order[i] == position

    def _add(self, job_id: str) -> None:
        if job_id in self.done or job_id in self.failed or job_id in self.blocked or self.is_ready(job_id):
            return
        bisect.insort(self._order, self._position[job_id])
        if (key := self.keys.get(job_id)) is not None:
            bisect.insort(self._by_key.setdefault(key, []), self._position[job_id])

    def _remove(self, job_id: str) -> None:
        if not self.is_ready(job_id):
            return
        position = self._position[job_id]
        del self._order[bisect.bisect_left(self._order, position)]
        if (key := self.keys.get(job_id)) is not None:
            group = self._by_key[key]
            del group[bisect.bisect_left(group, position)]
            if not group:
                del self._by_key[key]

    def mark_done(self, job_id: str) -> bool:
        """Record a finished job; True if it was news."""
        if job_id not in self.jobs or job_id in self.done:
            return False
        self.done.add(job_id)
        self._remove(job_id)
        for dependent in self.dependents[job_id]:
            self._waiting[dependent] -= 1
            if self._waiting[dependent] == 0:
                self._add(dependent)
        if job_id in self.failed or job_id in self.blocked:  # retried elsewhere and done: what it blocked is free
            self.failed.discard(job_id)
            self._reblock()
        return True

    def mark_failed(self, job_id: str) -> bool:
        """Record a failure of this run: the job and everything below it wait for the next run."""
        if job_id not in self.jobs or job_id in self.done or job_id in self.failed:
            return False
        self.failed.add(job_id)
        self._remove(job_id)
        stack = list(self.dependents[job_id])
        while stack:
            dependent = stack.pop()
            if dependent not in self.done and dependent not in self.blocked:
                self.blocked.add(dependent)
                self._remove(dependent)
                stack.extend(self.dependents[dependent])
        return True

    def _reblock(self) -> None:
        previously = self.blocked
        self.blocked = set()
        for job_id in list(self.failed):
            self.failed.discard(job_id)
            self.mark_failed(job_id)
        for job_id in previously - self.blocked:
            if self._waiting[job_id] == 0:
                self._add(job_id)

    def candidates(self, holding: str | None = None) -> Iterator[Job]:
        """Ready jobs in claim order, the group of ``holding`` first."""
        first = list(self._by_key.get(holding, ())) if holding is not None else []
        for position in first:
            yield self.jobs[self._at[position]]
        taken = set(first)
        for position in list(self._order):
            if position not in taken:
                yield self.jobs[self._at[position]]

    def pick(self, attempt: Callable[[Job], T | None], holding: str | None = None) -> tuple[Job, T] | None:
        """The first ready job ``attempt`` claims. After a failed attempt on a job of a group, the rest of
        the group is passed over (another worker holds its model) and tried only if nothing else was claimed."""
        tried: set[str] = set()
        passed: set[str] = set()
        for second in (False, True):
            for job in self.candidates(holding):
                key = self.keys.get(job.id)
                if job.id in tried or (not second and key is not None and key != holding and key in passed):
                    continue
                tried.add(job.id)
                claimed = attempt(job)
                if claimed is not None:
                    return job, claimed
                if key is not None:
                    passed.add(key)
            if not passed:
                break
        return None


# -- the queue: the ready set kept up to date from the run directory --------------------------------------
class JobQueue:
    """A worker's claims on a run directory (see the module docstring). ``started``: this run's start
    (failures recorded before it are retried). ``cost``: expected seconds per job (default: sizes from
    the task registry's assumptions at one assumed rate). ``clock``/``sleep``: injectable for tests."""

    def __init__(self, store, jobs: Iterable[Job], rank: int = 0, started: float | None = None,
                 cost: Callable[[Job], float] | None = None,
                 affinity: Callable[[Job, Mapping[str, Job]], str | None] | None = affinity_key,
                 idle: tuple[float, float] = IDLE_SECONDS, relist_seconds: float = RELIST_SECONDS,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.store = store
        self.jobs = list(jobs)
        by_id = {job.id: job for job in self.jobs}
        self.started_ns = int((time.time() if started is None else started) * 1e9)
        self.idle, self.relist_seconds, self.clock, self.sleep = idle, relist_seconds, clock, sleep
        keys = {job.id: affinity(job, by_id) if affinity else None for job in self.jobs}
        priority = priorities(self.jobs, cost or CostModel().seconds)
        self.ready = ReadySet(self.jobs, claim_positions(self.jobs, priority, keys, rank), keys)
        self.holding: str | None = None  # the affinity key of the model this worker last loaded
        self.failures: dict[str, int] = {}  # job id -> time_ns of its latest recorded failure (any run)
        self._markers: set[str] = set()  # done markers seen in the last listing
        self._suspects: set[str] = set()  # marked, but the result did not validate (yet)
        self._listed: dict[str, tuple[int | None, float]] = {"done": (None, 0.0), "failed": (None, 0.0)}
        self._scan()

    # -- what the run directory says ----------------------------------------------------------
    def _scan(self) -> None:
        """At start: the index, then every job folder the index does not account for (older code)."""
        self.refresh()
        try:
            folders = set(os.listdir(self.store.jobs_dir))
        except FileNotFoundError:
            folders = set()
        for job in self.jobs:
            if job.id in self.ready.done or job.id not in folders:
                continue
            if self.store.is_done(job.id):
                self.ready.mark_done(job.id)
                continue
            try:
                stamp = os.stat(self.store.job_dir(job.id) / "error.json").st_mtime_ns
            except FileNotFoundError:
                continue
            self._failure(job.id, max(stamp, self.failures.get(job.id, 0)))

    def _due(self, kind: str, folder) -> bool:
        try:
            mtime: int | None = os.stat(folder).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        last, listed_at = self._listed[kind]
        now = self.clock()
        if mtime == last and now - listed_at < self.relist_seconds:
            return False
        # an mtime within a second of now may still change within its clock tick: list again next time
        self._listed[kind] = (None if mtime and time.time() - mtime / 1e9 < 1.0 else mtime, now)
        return True

    def refresh(self) -> bool:
        """Bring the view up to date; True if a job finished or failed since the last refresh."""
        changed = False
        if self._due("done", self.store.done_index):
            markers = set(self.store.done_marked())
            new = markers - self._markers
            self._markers = markers
            self._suspects &= markers
            for job_id in (new | self._suspects) - self.ready.done:
                if job_id not in self.ready.jobs:
                    continue
                if self.store.is_done(job_id):
                    self._suspects.discard(job_id)
                    changed |= self.ready.mark_done(job_id)
                else:
                    self._suspects.add(job_id)
        if self._due("failed", self.store.failed_index):
            for job_id, stamp in self.store.failures_marked():
                if job_id in self.ready.jobs and stamp > self.failures.get(job_id, -1):
                    changed |= self._failure(job_id, stamp)
        return changed

    def _failure(self, job_id: str, stamp: int) -> bool:
        self.failures[job_id] = stamp
        return stamp >= self.started_ns and self.ready.mark_failed(job_id)

    # -- claims ------------------------------------------------------------------------------------
    def claim(self, worker: str, heartbeat: float = 30.0, holding: str | None = None):
        """One attempt, no waiting: (job, claim) for the first ready job this worker could claim, or None."""
        def attempt(job: Job):
            return self.store.try_claim(job.id, worker, heartbeat)

        claimed = self.ready.pick(attempt, holding if holding is not None else self.holding)
        if claimed is not None and (key := self.ready.keys.get(claimed[0].id)) is not None:
            self.holding = key
        return claimed

    def next_claim(self, worker: str, heartbeat: float = 30.0, holding: str | None = None):
        """(job, claim) of the next job to run, waiting (backing off) while nothing is claimable;
        None when nothing is left that this worker can run."""
        wait = self.idle[0]
        while True:
            if self.refresh():
                wait = self.idle[0]
            claimed = self.claim(worker, heartbeat, holding)
            if claimed is not None:
                return claimed
            if not len(self.ready) and not self._retried_elsewhere():
                return None  # what is left failed in this run or waits on such a job
            if wait >= self.idle[1]:  # long idle: a ready job may be done unmarked (a run directory we cannot write)
                for job in self.ready.ready():
                    if self.store.is_done(job.id):
                        self.ready.mark_done(job.id)
            self.sleep(wait)
            wait = min(wait * 2, self.idle[1])

    def _retried_elsewhere(self) -> bool:
        """A job failed in this run that another worker (started after the failure) is running again."""
        return any(self.store.owner(job_id).state == "held" for job_id in self.ready.failed)

    def finished(self, job: Job) -> None:
        """This worker committed ``job``."""
        self.ready.mark_done(job.id)

    def failed(self, job: Job) -> None:
        """``job`` failed in this worker (the store recorded it): neither it nor its dependents run here again."""
        self._failure(job.id, max(time.time_ns(), self.started_ns))

    # -- status ----------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """done / running / failed / pending, as ``bench.worker.status_counts`` counts them, from the
        view: only the jobs that can be running (ready, or failed in this run) have their locks tested."""
        done = len(self.ready.done)
        maybe = [job.id for job in self.ready.ready()] + sorted(self.ready.failed)
        running = {job_id for job_id in maybe if self.store.owner(job_id).state == "held"}
        failed = sum(1 for job_id in self.failures if job_id not in self.ready.done and job_id not in running)
        return {"done": done, "running": len(running), "failed": failed,
                "pending": len(self.jobs) - done - len(running) - failed}
