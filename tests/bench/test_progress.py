"""The live view of a suite run: status line, ETA from measured job times, logs instead of noise."""

from __future__ import annotations

import io
import json
import logging
import warnings

from bench.progress import RunView, duration, estimate_remaining, job_output, status_line
from bench.store import RunStore
from tests.bench.test_store import valid_result


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_eta_from_measured_times_per_kind():
    assert estimate_remaining({"eval": [2.0, 4.0], "task": [30.0]}, {"eval": 10, "task": 2}, workers=2) == (30 + 60) / 2
    assert estimate_remaining({"eval": [1.0]}, {"task": 1}, workers=1) is None, "no finished task job to measure"
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def _run(tmp_path, finished: int, total: int):
    store = RunStore(tmp_path)
    jobs = [{"id": f"j{i}", "kind": "eval", "name": f"eval/{i}", "deps": []} for i in range(total)]
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
