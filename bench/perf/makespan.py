"""Simulated wall time and model loads of a suite on N workers: the claim order before and after
``bench.scheduler``.

    python -m bench.perf.makespan                      # paper-ner on 8 and 64 workers -> reports/perf/makespan.{json,md}
    python -m bench.perf.makespan --suite smoke --workers 2 --out /tmp/ms

Each job takes its expected seconds (``bench.scheduler.CostModel``: the job's tokens from its kind and
sizes, ``bench.calibrate``, at a table of tokens/s per kind); workers are free at t=0, a free worker
claims at once and idle workers look again whenever a job finishes (no polling delay, no claim
contention, no failures: the same for both orders). Two claim orders:

* ``name order`` (the worker loop before): the ready jobs in the graph's order (kind, then name),
  rotated by ``rank % len(ready)``, the first not held by another worker (``bench/worker.py``'s loop
  at 2b45e9e, reproduced in ``name_order_pick``).
* ``scheduler``: ``bench.scheduler.ReadySet.pick`` with each worker's own claim positions (priority =
  expected seconds plus the longest chain below the job; full-model evaluations grouped by the model
  they load, the held group first).

Model loads: a worker keeps the fine-tuned model of its last full-model evaluation
(``bench.execute.run_eval``); a full-model evaluation of another task job loads a model. The report
gives the makespan against the lower bound max(critical path, total work / workers) and, where it is
larger, the bound that indivisible jobs add (of the W+1 longest jobs two share a worker: p_W + p_W+1).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.graph import Job, build_graph
from bench.scheduler import CostModel, ReadySet, affinity_key, claim_positions, priorities

ASSUMED = {}  # every kind at bench.scheduler.ASSUMED_TOKENS_PER_S, as `madx bench plan` assumes
# tokens/s of 64 x 256-token steps on one H200, bf16 eager (reports/perf/h200.md, "Whole steps"): (a) 54.7 ms,
# (c) 64.9 ms, (d) 33.4 ms, (e) 14.5 ms. task-full:ner was not measured: (d)'s rate x (a)/(c), stated as such.
H200 = {"mlm-adapter": 16384 / 0.0547, "mlm-full": 16384 / 0.0649, "task-adapter:ner": 16384 / 0.0334,
        "task-full:ner": 16384 / 0.0334 * 0.0547 / 0.0649, "eval:ner": 16384 / 0.0145}
RATE_TABLES = {"assumed": ASSUMED, "h200": H200}


@dataclass(frozen=True)
class Simulated:
    order: str
    workers: int
    makespan_h: float
    full_model_loads: int
    most_loads_of_one_model_by_one_worker: int
    busy_fraction: float


@dataclass(frozen=True)
class Bounds:
    critical_path_h: float
    work_per_worker_h: float
    indivisible_h: float  # p_W + p_W+1: two of the W+1 longest jobs share a worker (0 with <= W jobs)

    @property
    def paper(self) -> float:
        """The issue's bound: max(critical path, total work / workers)."""
        return max(self.critical_path_h, self.work_per_worker_h)

    @property
    def best(self) -> float:
        return max(self.paper, self.indivisible_h)


def bounds(jobs: list[Job], seconds: Mapping[str, float], workers: int) -> Bounds:
    longest = sorted(seconds.values(), reverse=True)
    critical = max(priorities(jobs, lambda job: seconds[job.id]).values())
    pair = longest[workers - 1] + longest[workers] if len(longest) > workers else 0.0
    return Bounds(critical / 3600, sum(longest) / workers / 3600, pair / 3600)


def name_order_pick(ready: list[int], held: set[int], rank: int) -> int | None:
    """The loop before: candidates in graph order (``ready`` is sorted), rotated by rank, first claimable."""
    if not ready:
        return None
    offset = rank % len(ready)
    for index in ready[offset:] + ready[:offset]:
        if index not in held:
            return index
    return None


def simulate(jobs: list[Job], seconds: Mapping[str, float], workers: int, order: str,
             estimate: Callable[[Job], float] | None = None) -> Simulated:
    """Run the plan on ``workers`` simulated workers; ``estimate`` is what the scheduler believes
    (default: the true ``seconds``)."""
    by_id = {job.id: job for job in jobs}
    index = {job.id: i for i, job in enumerate(jobs)}
    keys = {job.id: affinity_key(job, by_id) for job in jobs}
    full_model_eval = {job.id for job in jobs if keys[job.id] is not None}
    held: set[int] = set()
    done: set[str] = set()
    if order == "scheduler":
        level = priorities(jobs, estimate or (lambda job: seconds[job.id]))
        views = [ReadySet(jobs, claim_positions(jobs, level, keys, rank), keys) for rank in range(workers)]
        holding: list[str | None] = [None] * workers
    elif order == "name order":
        waiting = {job.id: len(job.deps) for job in jobs}
        dependents: dict[str, list[str]] = {job.id: [] for job in jobs}
        for job in jobs:
            for dep in job.deps:
                dependents[dep].append(job.id)
        ready = sorted(index[job.id] for job in jobs if not job.deps)
    else:
        raise ValueError(f"unknown order {order!r}: 'name order' or 'scheduler'")

    def pick(rank: int) -> Job | None:
        if order == "name order":
            chosen = name_order_pick(ready, held, rank)
            return None if chosen is None else jobs[chosen]
        claimed = views[rank].pick(lambda job: True if index[job.id] not in held else None, holding[rank])
        if claimed is None:
            return None
        if keys[claimed[0].id] is not None:
            holding[rank] = keys[claimed[0].id]
        return claimed[0]

    def finish(job: Job) -> None:
        done.add(job.id)
        if order == "scheduler":
            for view in views:
                view.mark_done(job.id)
            return
        del ready[ready.index(index[job.id])]
        for dependent in dependents[job.id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.insert(_bisect(ready, index[dependent]), index[dependent])

    loaded: list[str | None] = [None] * workers  # run_eval's one fine-tuned model per worker
    loads: Counter = Counter()
    running: list[tuple[float, int, str]] = []
    free = list(range(workers))
    now, busy = 0.0, 0.0
    while True:
        still_free = []
        for rank in free:
            job = pick(rank)
            if job is None:
                still_free.append(rank)
                continue
            held.add(index[job.id])
            if job.id in full_model_eval and loaded[rank] != keys[job.id]:
                loaded[rank] = keys[job.id]
                loads[(rank, keys[job.id])] += 1
            heapq.heappush(running, (now + seconds[job.id], rank, job.id))
            busy += seconds[job.id]
        free = still_free
        if not running:
            break
        now, rank, job_id = heapq.heappop(running)
        finished = [(rank, job_id)]
        while running and running[0][0] == now:
            _, other, other_id = heapq.heappop(running)
            finished.append((other, other_id))
        for rank, job_id in finished:
            held.discard(index[job_id])
            finish(by_id[job_id])
            free.append(rank)
        free.sort()
    if len(done) != len(jobs):
        raise RuntimeError(f"simulation stopped with {len(jobs) - len(done)} of {len(jobs)} jobs not run")
    return Simulated(order, workers, now / 3600, sum(loads.values()), max(loads.values(), default=0),
                     busy / (now * workers) if now else 1.0)


def _bisect(values: list[int], value: int) -> int:
    import bisect

    return bisect.bisect_left(values, value)


def durations(jobs: list[Job], rates: Mapping[str, float], noise: float = 0.0, seed: int = 0) -> dict[str, float]:
    """Expected seconds per job at ``rates``, times lognormal noise of sigma ``noise`` (the truth the
    scheduler does not know) when asked."""
    model = CostModel(rates=rates)
    rng = random.Random(seed)
    return {job.id: model.seconds(job) * (math.exp(rng.gauss(0.0, noise)) if noise else 1.0) for job in jobs}


def run(suite_name: str, worker_counts: list[int], out: Path, command: str, rate_names: list[str],
        noise: float = 0.2) -> dict:
    from bench.suite import load_suite

    jobs = build_graph(load_suite(suite_name, check_paths=False))
    scenarios = []
    for rate_name in rate_names:
        rates = RATE_TABLES[rate_name]
        for noisy in (False, True):
            truth = durations(jobs, rates, noise if noisy else 0.0)
            estimate = CostModel(rates=ASSUMED).seconds  # an uncalibrated worker: one assumed rate for every kind
            for workers in worker_counts:
                bound = bounds(jobs, truth, workers)
                rows = [simulate(jobs, truth, workers, order, estimate) for order in ("name order", "scheduler")]
                scenarios.append({"rates": rate_name, "noise": noise if noisy else 0.0, "workers": workers,
                                  "bounds": {**asdict(bound), "paper_h": bound.paper, "best_h": bound.best},
                                  "runs": [asdict(row) for row in rows]})
    data = {"suite": suite_name, "jobs": len(jobs), "command": command, "rates": {k: RATE_TABLES[k] for k in rate_names},
            "scenarios": scenarios}
    out.mkdir(parents=True, exist_ok=True)
    (out / "makespan.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "makespan.md").write_text(render(data))
    return data


def render(data: dict) -> str:
    lines = [f"# Simulated makespan and model loads: {data['suite']} ({data['jobs']:,} jobs)", "",
             f"Command: `{data['command']}`", "",
             "Expected seconds per job from `bench.scheduler.CostModel` (tokens per job from its kind and sizes) at "
             "the rates named; `noise` = true durations times lognormal noise of that sigma (the scheduler orders by the "
             "noise-free estimate at one assumed rate for every kind, as an uncalibrated worker does). Bound = "
             "max(critical path, work / workers); `indivisible` = p_W + p_W+1 (two of the W+1 longest jobs share a "
             "worker). Loads = full-model loads by evaluations (each worker keeps one fine-tuned model).", "",
             "| rates | noise | workers | order | makespan h | bound h | makespan / bound | indivisible h | "
             "makespan / max(bound, indivisible) | full-model loads | most loads of one model by one worker |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in data["scenarios"]:
        b = scenario["bounds"]
        for row in scenario["runs"]:
            lines.append(f"| {scenario['rates']} | {scenario['noise']} | {scenario['workers']} | {row['order']} | "
                         f"{row['makespan_h']:.2f} | {b['paper_h']:.2f} | {row['makespan_h'] / b['paper_h']:.3f} | "
                         f"{b['indivisible_h']:.2f} | {row['makespan_h'] / b['best_h']:.3f} | {row['full_model_loads']:,} | "
                         f"{row['most_loads_of_one_model_by_one_worker']} |")
    lines += ["", "Rates (tokens/s; `assumed`: every kind at 100,000 tokens/s, `madx bench plan`'s assumption):", ""]
    for name, rates in data["rates"].items():
        lines.append(f"- {name}: " + (", ".join(f"{k} {v:,.0f}" for k, v in rates.items()) or "100,000 for every kind"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.perf.makespan", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="paper-ner")
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--rates", nargs="+", choices=sorted(RATE_TABLES), default=["assumed", "h200"])
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=Path("reports/perf"))
    args = parser.parse_args(argv)
    data = run(args.suite, args.workers, args.out, shlex.join(["python", "-m", "bench.perf.makespan", *argv]),
               args.rates, args.noise)
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
