"""The makespan simulation: the claim order before and after on graphs whose answer is known."""

from __future__ import annotations

import pytest

from bench.graph import Job
from bench.perf.makespan import bounds, simulate

HOUR = 3600.0


def job(kind: str, name: str, deps=(), **params) -> Job:
    return Job.make(kind, name, {"name": name, **params}, tuple(deps))


def test_the_longest_chain_starts_first_and_meets_the_bound():
    """Name order runs four 1-hour jobs before the 4-hour job that a fifth waits on."""
    shorts = [job("mlm", f"a{i}") for i in range(4)]
    long = job("mlm", "z-long")
    tail = job("task", "zz-tail", (long.id,))
    jobs = [*shorts, long, tail]
    seconds = {**{j.id: HOUR for j in shorts}, long.id: 4 * HOUR, tail.id: HOUR}
    bound = bounds(jobs, seconds, 2)
    assert bound.critical_path_h == 5 and bound.work_per_worker_h == 4.5 and bound.paper == 5
    before = simulate(jobs, seconds, 2, "name order")
    after = simulate(jobs, seconds, 2, "scheduler")
    assert before.makespan_h == 7, "the loop before: a0, a1 | a2, a3 | z-long | zz-tail"
    assert after.makespan_h == pytest.approx(5) and after.makespan_h <= 1.1 * bound.paper


def test_each_worker_loads_each_fine_tuned_model_once():
    """paper-ner's names put one source and target's seeds side by side: each a different model."""
    tasks = [job("task", f"task/en/full-ft/seed{seed}", method="full-ft") for seed in (1, 2, 3)]
    evals = [job("eval", f"eval/en->{target}/full-ft/seed{seed}", (task.id,), method="full-ft")
             for target in ("ar", "en", "is", "ja", "sw", "zh") for seed, task in zip((1, 2, 3), tasks)]
    jobs = tasks + sorted(evals, key=lambda j: j.name)
    seconds = {j.id: 60.0 if j.kind == "task" else 1.0 for j in jobs}
    before = simulate(jobs, seconds, 2, "name order")
    after = simulate(jobs, seconds, 2, "scheduler")
    assert before.most_loads_of_one_model_by_one_worker > 1, "name order alternates models"
    assert after.most_loads_of_one_model_by_one_worker == 1
    assert after.full_model_loads <= len(tasks) + 2 < before.full_model_loads


def test_the_indivisible_bound():
    jobs = [job("mlm", f"m{i}") for i in range(3)]
    seconds = {j.id: HOUR * (i + 1) for i, j in enumerate(jobs)}
    assert bounds(jobs, seconds, 2).indivisible_h == 3  # of the 3 longest, two share a worker: at least 2 h + 1 h
    assert bounds(jobs, seconds, 3).indivisible_h == 0
