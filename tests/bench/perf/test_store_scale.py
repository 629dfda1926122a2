"""The run-directory benchmark: its operation counter, and both loops on a small plan with real
worker processes."""

from __future__ import annotations

import fcntl
import os

from bench.graph import build_graph
from bench.perf.store_scale import Ops, measure_polls, measure_run, render
from bench.suite import load_suite


def test_ops_counts_each_filesystem_call_while_active(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    ops = Ops()
    with ops.active():
        path.stat()
        os.listdir(tmp_path)
        with open(path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            with open(handle.fileno(), "rb", closefd=False):  # an fd, not a path: no filesystem call
                pass
    path.stat()
    assert dict(ops.counts) == {"stat": 1, "listdir": 1, "open": 1, "flock": 1}


def test_both_loops_on_a_small_plan(tmp_path):
    jobs = build_graph(load_suite("smoke"))
    rows = measure_polls(jobs, tmp_path, repeats=1, delay=0.0, loops=["before", "after"])
    assert len(rows) == 6 and {row["loop"] for row in rows} == {"before", "after"}
    by = {(row["scenario"].split(" (")[0], row["loop"]): row for row in rows}
    assert not by[("idle poll, start", "after")]["claimed"] and not by[("idle poll, late", "after")]["claimed"]
    assert by[("idle poll, start", "after")]["ops"] < by[("idle poll, start", "before")]["ops"]
    runs = [measure_run(jobs, tmp_path, loop, workers=2, max_jobs=None) for loop in ("before", "after")]
    assert [run["jobs_finished"] for run in runs] == [len(jobs), len(jobs)], "each job ran once, by one of the two"
    text = render({"command": "python -m bench.perf.store_scale --sizes 10", "delay_ms": 0, "machine": "m", "root": "r",
                   "sizes": [{"jobs": len(jobs), "polls": rows, "runs": runs}]})
    assert "Command: `python -m bench.perf.store_scale --sizes 10`" in text and "ops per finished job" in text
