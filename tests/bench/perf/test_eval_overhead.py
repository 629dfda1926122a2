"""The evaluation-overhead benchmark's logic: its suite, the stopwatch, the ratios and the report.
(The timed run itself is ``python -m bench.perf.eval_overhead``; nothing here asserts a time.)"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from typing import Callable

import datasets
import pytest
import torch

from bench.perf import eval_overhead as eo


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_test_sizes_follow_paper_ner_times_the_scale():
    sizes = eo.test_sizes(0.1)
    assert list(sizes) == list(eo.PAPER_NER_TEST_SENTENCES) and len(sizes) == 16
    assert (sizes["en"], sizes["sw"], sizes["qu"]) == (1000, 100, 10)
    assert eo.test_sizes(0.01, ["en", "qu"]) == {"en": 100, "qu": 10}  # at least 10 sentences
    with pytest.raises(ValueError, match="scale"):
        eo.test_sizes(0)


def test_the_suite_leaves_an_evaluation_phase_of_32_jobs():
    from bench.graph import build_graph, count_by_kind
    from bench.suite import parse_suite

    suite = parse_suite(eo.suite_spec(), "eval_overhead")
    assert suite.model["tiny"]["hidden_size"] == 256 and suite.model["tiny"]["num_hidden_layers"] == 4
    counts = count_by_kind(build_graph(suite))
    assert counts == {"prepare": 1, "mlm": 16, "task": 2, "eval": 32}  # MAD-X needs an adapter per target
    assert suite.hyperparameters["runtime"]["cpu_threads_per_worker"] == 1


def test_stopwatch_inclusive_and_exclusive_times_of_nested_calls():
    clock = FakeClock()
    watch = eo.Stopwatch(clock)

    def inner():
        clock.now += 2

    def outer():
        clock.now += 1
        timed_inner()
        timed_inner()
        clock.now += 3

    timed_inner, timed_outer = watch.timed(inner, "inner"), watch.timed(outer, "outer")
    timed_outer()
    assert watch.seconds == {"outer": 8, "inner": 4} and watch.exclusive == {"outer": 4, "inner": 4}
    assert watch.calls == {"outer": 1, "inner": 2}
    with pytest.raises(ZeroDivisionError):  # a failing call is still timed, and the nesting stays right
        watch.timed(lambda: 1 / 0, "fails")()
    assert watch.calls["fails"] == 1 and watch._stack() == []


class Base:
    def method(self):
        return "base"


class Child(Base):
    pass


@dataclass(frozen=True)
class Spec:
    evaluate: Callable


def test_patched_wraps_and_restores_every_kind_of_owner():
    module = types.ModuleType("m")
    module.function = lambda: "f"
    table = {"eval": lambda: "e"}
    spec = Spec(evaluate=lambda: "s")
    original_spec_evaluate = spec.evaluate
    watch = eo.Stopwatch()
    targets = [(module, "function", "function"), (table, "eval", "dict"), (Child, "method", "inherited"),
               (spec, "evaluate", "frozen"), (module, "absent", "absent")]
    with watch.patched(targets):
        assert module.function() == "f" and table["eval"]() == "e" and Child().method() == "base" and spec.evaluate() == "s"
        assert "method" in vars(Child)
    assert watch.calls == {"function": 1, "dict": 1, "inherited": 1, "frozen": 1} and watch.missing == ["absent"]
    assert not hasattr(module.function, "__wrapped__") and not hasattr(table["eval"], "__wrapped__")
    assert "method" not in vars(Child) and Child.method is Base.method  # inherited again, not copied down
    assert spec.evaluate is original_spec_evaluate


def test_forward_timer_times_the_model_call_inside_its_caller():
    clock = FakeClock()
    watch = eo.Stopwatch(clock)

    class Slow(torch.nn.Module):
        def forward(self, x):
            clock.now += 5
            return x

    model = eo.forward_timer(watch)(Slow())

    def predict():
        clock.now += 1
        model(torch.zeros(1))

    watch.timed(predict, "predictions")()
    assert watch.seconds["model forward"] == 5 and watch.exclusive["predictions"] == 1


def test_breakdown_puts_what_no_function_covers_last():
    rows = eo.breakdown({"job": 9.0, "forward": 6.0}, {"job": 3.0, "forward": 6.0}, {"job": 2, "forward": 4}, 10.0)
    assert [r["label"] for r in rows] == ["forward", "job", "not inside a timed function"]
    assert rows[0]["share"] == pytest.approx(0.6) and rows[1]["calls"] == 2
    assert rows[-1]["exclusive_s"] == pytest.approx(1.0)


def test_summarise_the_ratios():
    s = eo.summarise(phase_s=10.0, phase_cpu_s=8.0, forward_s=8.5, forward_cpu_s=7.6, tokens=5000,
                     forward_in_phase_s=9.2, jobs=4)
    assert s["ratio"] == pytest.approx(0.92) and s["meets_target"]
    assert s["ratio_cpu_time"] == pytest.approx(0.95) and s["ratio_wall_separate"] == pytest.approx(0.85)
    assert s["phase_tokens_per_s"] == 500 and s["overhead_per_job_s"] == pytest.approx(0.2)
    assert not eo.summarise(10.0, 8.0, 8.5, 7.6, 5000, 8.9, 4)["meets_target"]


def test_best_forward_takes_the_fastest_run_per_job():
    run = lambda *times: {"jobs": [{"name": f"j{i}", "tokens": 10, "forward_s": t, "forward_cpu_s": t / 2}
                                   for i, t in enumerate(times)]}
    best = eo.best_forward([run(1.0, 4.0), run(2.0, 3.0)])
    assert best["seconds"] == 4.0 and best["cpu_seconds"] == 2.0 and best["tokens"] == 20 and best["runs"] == 2
    with pytest.raises(ValueError, match="differ"):
        eo.best_forward([run(1.0), {"jobs": [{"name": "other", "tokens": 10, "forward_s": 1, "forward_cpu_s": 1}]}])


def test_pad_batches_matches_the_collator():
    from madx.tasks.ner import NERCollator

    features = datasets.Dataset.from_dict({"input_ids": [[0, 7, 2], [0, 5, 6, 8, 2], [0, 2]],
                                           "attention_mask": [[1] * 3, [1] * 5, [1] * 2],
                                           "labels": [[-100] * 3, [-100] * 5, [-100] * 2]})
    batches = eo.pad_batches(features, pad_id=1, batch_size=2)
    assert [b["input_ids"].shape for b in batches] == [(2, 5), (1, 2)] and set(batches[0]) == {"input_ids", "attention_mask"}
    tokenizer = types.SimpleNamespace(pad_token_id=1, padding_side="right")
    reference = NERCollator(tokenizer)([features[0], features[1]])
    torch.testing.assert_close(batches[0]["input_ids"], reference["input_ids"])
    torch.testing.assert_close(batches[0]["attention_mask"], reference["attention_mask"])


def test_the_report_names_its_command_and_ratio():
    summary = eo.summarise(10.0, 8.0, 8.5, 7.6, 5000, 9.2, 4)
    phase = {"name": "cached test sets", "summary_numbers": summary, "not_found": ["evaluate_task"],
             "breakdown": eo.breakdown({"forward": 9.2}, {"forward": 9.2}, {"forward": 3}, 10.0)}
    result = {"command": "python -m bench.perf.eval_overhead --scale 0.1", "eval_jobs": 4, "threads": 1, "scale": 0.1,
              "test_sentences": {"en": 1000}, "phases": [phase],
              "pure_forward": {"tokens": 5000}, "pure_forward_runs": [{"seconds": 8.5, "cpu_seconds": 7.6}],
              "environment": {"python": "3", "torch": "2", "transformers": "5", "processor": "x", "cpu_count": 2,
                              "load_average": None}}
    text = eo.render_markdown(result)
    assert "`python -m bench.perf.eval_overhead --scale 0.1`" in text and "**0.920**" in text
    assert "| cached test sets | 10.0 | 9.2 |" in text and "Not found on the path (not timed): evaluate_task" in text
    json.dumps(result)  # what main writes


def test_the_path_names_what_the_worker_calls():
    """Every label the benchmark times resolves, except the ones run_eval may stop calling (then listed as not found)."""
    owners = eo.resolve_targets()
    for owner, name, label in owners:
        present = name in owner if isinstance(owner, dict) else hasattr(owner, name)
        assert present or label == "evaluate_task", label
    assert eo.has_test_set_cache()


def test_main_refuses_bad_arguments(capsys):
    assert eo.main(["--scale", "0"]) == 2
    assert "--scale must be positive" in capsys.readouterr().err
