"""The live view of a suite run: status line, ETA from measured job times, logs instead of noise."""

from __future__ import annotations

import io
import json
import logging
import warnings

from bench.progress import Eta, RunView, duration, estimate_remaining, job_costs, job_output, status_line
from bench.store import RunStore
from tests.bench.test_store import valid_result


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_eta_from_measured_times_per_kind():
    finished = [("eval", 2.0, 1.0), ("eval", 4.0, 1.0), ("task", 30.0, 1.0)]
    assert estimate_remaining(finished, [("eval", 1.0)] * 10 + [("task", 1.0)] * 2, workers=2) == Eta((30 + 60) / 2, False)
    assert estimate_remaining([], [("task", 1.0)], workers=1) is None, "nothing finished: nothing to measure"
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_a_kind_without_finished_jobs_is_scaled_from_the_others_by_its_work():
    # one MLM job of 1000 units took 20 s: 0.02 s per unit; an eval job of 50 units is then estimated at 1 s
    eta = estimate_remaining([("mlm", 20.0, 1000.0)], [("mlm", 1000.0), ("eval", 50.0), ("eval", 50.0)], workers=1)
    assert eta == Eta(20.0 + 1.0 + 1.0, estimated=True)
    # once an eval job finished (3 s for 50 units), its own kind's rate counts
    eta = estimate_remaining([("mlm", 20.0, 1000.0), ("eval", 3.0, 50.0)], [("eval", 50.0), ("eval", 100.0)], workers=1)
    assert eta == Eta(3.0 + 6.0, estimated=False)


def test_a_job_without_a_work_estimate_never_sets_a_rate():
    # preparing data and models (no tokens to count) took 10 s: that says nothing about the jobs left
    assert estimate_remaining([("prepare", 10.0, None)], [("mlm", 1000.0), ("eval", 10.0)], workers=1) is None
    eta = estimate_remaining([("prepare", 10.0, None), ("mlm", 4.0, 1000.0)], [("mlm", 1000.0), ("eval", 10.0)], workers=1)
    assert eta == Eta(4.0 + 0.04, True)


def _run(tmp_path, finished: int, total: int, kinds=("eval",)):
    store = RunStore(tmp_path)
    jobs = [{"id": f"j{i}", "kind": kinds[i * len(kinds) // total], "name": f"job/{i}", "deps": []} for i in range(total)]
    (tmp_path / "plan.json").write_text(json.dumps({"suite": "t", "jobs": jobs}))
    for i in range(finished):
        claim = store.try_claim(f"j{i}", "w")
        result = valid_result(f"j{i}")
        result["cost"]["job_wall_s"] = 10.0
        store.commit(claim, store.new_workspace(f"j{i}"), result)
        claim.release()
    return store, jobs


def test_status_line_counts_and_estimates(tmp_path):
    store, jobs = _run(tmp_path, finished=2, total=5)
    held = store.try_claim("j2", "w")
    try:
        line = status_line(store, jobs, started=0.0, now=75.0)
    finally:
        held.release()
    assert line == "done 2/5 · running 1 · failed 0 · 1m15s elapsed · ETA 30s"
    assert status_line(*_run(tmp_path / "all", 3, 3), started=0.0, now=1.0).endswith("finished")


def test_the_status_line_has_an_eta_from_the_first_finished_job(tmp_path):
    store, jobs = _run(tmp_path, finished=1, total=4, kinds=("mlm", "task", "eval", "eval"))
    work = {"j0": 100.0, "j1": 50.0, "j2": 10.0, "j3": 10.0}  # the first job: 10 s for 100 units
    assert status_line(store, jobs, started=0.0, now=12.0, work=work) == (
        "done 1/4 · running 0 · failed 0 · 12s elapsed · ETA ~7s")
    assert status_line(store, jobs, started=0.0, now=12.0).endswith("ETA ~30s"), "without estimates: every job alike"
    assert status_line(store, [], started=0.0, now=1.0) == "done 0/0 · running 0 · failed 0 · 1s elapsed · finished"
    empty, jobs = _run(tmp_path / "none", finished=0, total=2)
    assert status_line(empty, jobs, started=0.0, now=1.0).endswith("ETA pending")


def test_job_costs_come_from_the_suite_the_run_keeps(tmp_path):
    import shutil

    from bench.graph import build_graph
    from bench.suite import load_suite, resolve_suite_path

    shutil.copy(resolve_suite_path("smoke"), tmp_path / "suite.yaml")
    costs = job_costs(tmp_path)
    jobs = build_graph(load_suite(str(tmp_path / "suite.yaml"), check_paths=False))
    assert set(costs) == {job.id for job in jobs}
    by_kind = {kind: [costs[j.id] for j in jobs if j.kind == kind] for kind in ("mlm", "task", "eval")}
    assert min(by_kind["mlm"]) > max(by_kind["eval"]) and min(by_kind["task"]) > max(by_kind["eval"]) > 0
    assert all(costs[j.id] is None for j in jobs if j.kind == "prepare")
    assert job_costs(tmp_path / "missing") is None


def test_a_terminal_gets_one_status_line_and_the_log_gets_the_events(tmp_path):
    _run(tmp_path, finished=1, total=2)
    screen = Terminal()
    view = RunView(tmp_path, "host:1:rank0", rank=0, stream=screen)
    view.event("[host:1:rank0] done eval/0 in 1.0s {}")
    view.close()
    assert "done eval/0" not in screen.getvalue() and "\r\x1b[2Kdone 1/2" in screen.getvalue()
    assert "done eval/0" in (tmp_path / "logs" / "host_1_rank0.log").read_text()


def test_piped_or_verbose_output_keeps_the_event_lines(tmp_path):
    for stream, verbose in ((io.StringIO(), False), (Terminal(), True)):
        view = RunView(tmp_path, "w:1:rank0", rank=0, stream=stream, verbose=verbose)
        view.event("[w] start eval/0")
        view.close()
        assert stream.getvalue().strip() == "[w] start eval/0"


def test_third_party_output_goes_to_the_job_log(tmp_path, capsys):
    import transformers

    log = tmp_path / "job" / "log.txt"
    with job_output(log):
        print("a print")
        warnings.warn("a warning")
        logging.getLogger("some.library").warning("a library warning")
        transformers.utils.logging.get_logger("transformers.modeling_utils").warning("XLMRobertaModel LOAD REPORT")
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    text = log.read_text()
    for line in ("a print", "a warning", "a library warning", "LOAD REPORT"):
        assert line in text
