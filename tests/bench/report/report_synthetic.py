"""A synthetic result store with known numbers, for the report tests (and the example report).

    python tests/bench/report/report_synthetic.py RUN_DIR      # writes RUN_DIR/jobs/*/result.json, run.json, suite.yaml

Written the way the runner writes: every result is a ``bench.results.JobResult`` written
atomically into the run directory's layout (``bench.store``: artifacts first, result.json last),
run.json a ``RunInfo``.

NER: sources en, ja, qu; targets en, ja, sw, qu; six methods; seeds 1-3 (MLM-TRG: seed 1 only, as in
the paper). Missing on purpose: madx qu->sw, full-ft ja->qu, madx-lad-inv en->qu (no seed at all: a Table 5
cell with no result); madx-inv en->sw has seeds 1-2 only. QA: madx, madx-inv, full-ft from en to en, ar, de
(seeds 1-3); madx en->de misses seed 3; full-ft en->ar has no result.
Plus one corrupt result.json, one from a newer schema, one that misses a field, a failed job
(error.json) and a claimed one.

Per-example predictions (``bench.report.predictions``), as eval jobs write them: NER per-sentence
entity counts and QA per-question scores, made so that they give the written metric exactly (NER F1
is the micro-F1 of the counts; QA F1 / EM the means of the per-question scores), on one test set per
target language (the same for every method, source and seed), with a per-example difficulty shared by
all methods, as real test sets have. The MLM-SRC results have none (as results written before eval
jobs stored them), and (with ``broken``) the predictions of madx-inv qu->ja seed 2 are a broken file.

``EXPECTED`` holds every eval number written, keyed (task, method, source, target, metric) ->
{seed: value}; tests compute their expectations from it with the statistics module. ``PREDICTIONS``
holds the per-example record written for each eval job id (absent: none written).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from bench.report.predictions import PREDICTIONS_FILE, write_predictions
from bench.results import SCHEMA_VERSION, Cost, JobResult, JobSpec, Provenance, RunInfo, WorkerInfo
from bench.store import RunStore
from madx.atomic import atomic_write_json

NER_SOURCES = ("en", "ja", "qu")
NER_TARGETS = ("en", "ja", "sw", "qu")
NER_METHODS = ("full-ft", "mlm-src", "mlm-trg", "madx-lad-inv", "madx-inv", "madx")
QA_METHODS = ("full-ft", "madx-inv", "madx")
QA_TARGETS = ("en", "ar", "de")
SEEDS = (1, 2, 3)

# Per-method base F1 and per-target offsets: readable numbers, distinct per cell.
_METHOD_BASE = {"full-ft": 40.0, "mlm-src": 36.0, "mlm-trg": 45.0, "madx-lad-inv": 38.0, "madx-inv": 44.0, "madx": 47.0}
_TARGET_OFFSET = {"en": 20.0, "ja": -10.0, "sw": 5.0, "qu": -15.0, "ar": -8.0, "de": 2.0}
_SOURCE_OFFSET = {"en": 3.0, "ja": -2.0, "qu": -6.0}
_SEED_NOISE = {1: -1.5, 2: 0.25, 3: 1.25}
_INTERACTION = {"full-ft": -1.0, "mlm-src": 0.5, "mlm-trg": -2.0, "madx-lad-inv": 0.0, "madx-inv": 0.75, "madx": 1.5}
_NOISE_SCALE = {"en": 1.0, "ja": 2.0, "sw": 0.5, "qu": 3.0, "ar": 1.5, "de": 0.75}
_METHOD_NOISE = {"full-ft": 1.0, "mlm-src": 0.8, "mlm-trg": 1.2, "madx-lad-inv": 0.9, "madx-inv": 1.1, "madx": 0.6}

MISSING_NER = {("madx", "qu", "sw"), ("full-ft", "ja", "qu"), ("madx-lad-inv", "en", "qu")}
# per-example predictions: test set sizes, the methods whose results have none, a broken file
NER_TEST_SENTENCES = {"en": 200, "ja": 160, "sw": 120, "qu": 100}
QA_TEST_QUESTIONS = {"en": 120, "ar": 100, "de": 80}
WITHOUT_PREDICTIONS = {"mlm-src"}
BROKEN_PREDICTIONS = ("ner", "madx-inv", "qu", "ja", 2)
MISSING_QA = {("full-ft", "ar")}
PARTIAL_SEEDS = {("ner", "madx-inv", "en", "sw"): (1, 2), ("qa", "madx", "en", "de"): (1, 2)}

RUN_NOTES = ["QA task adapters were trained on SQuAD v1.1 dev minus the XQuAD paragraphs (a stand-in for SQuAD train)."]
SUITE_NOTE = "Synthetic numbers made by tests/bench/report/report_synthetic.py, not a real run."


def _id(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def ner_f1(method: str, source: str, target: str, seed: int) -> float:
    noise = _SEED_NOISE[seed] * _NOISE_SCALE[target] * _METHOD_NOISE[method] * (1.5 if source == "qu" else 1.0)
    # a pair-specific term so that differences between methods vary over the heatmap
    pair = ((3 * len(source) + 5 * len(target) + ord(source[0]) + ord(target[1])) % 7 - 3) * _INTERACTION[method]
    return round(_METHOD_BASE[method] + _TARGET_OFFSET[target] + _SOURCE_OFFSET[source] + pair + noise, 4)


def qa_scores(method: str, target: str, seed: int) -> tuple[float, float]:
    noise = _SEED_NOISE[seed] * 2 * _NOISE_SCALE[target] * _METHOD_NOISE[method]
    f1 = round(_METHOD_BASE[method] + 25.0 + _TARGET_OFFSET[target] + noise, 4)
    return f1, round(f1 - 15.0 - seed * 0.5, 4)


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(int(_id(*parts)[:12], 16))


def _test_set(task: str, target: str) -> str:
    return hashlib.sha256(f"synthetic {task} test set {target}".encode()).hexdigest()


def ner_counts(method: str, source: str, target: str, seed: int, f1: float) -> tuple[dict, float]:
    """Per-sentence (tp, fp, fn) near ``f1`` on the target's test set, and their micro-F1 (the metric to write).

    Gold entities and a per-sentence difficulty belong to the test set; which entities a run finds is
    its own draw. fp = fn per sentence, so micro-F1 = tp / gold, set to the nearest count to ``f1``."""
    shared = _rng("ner", target)
    n = NER_TEST_SENTENCES[target]
    gold = shared.integers(0, 7, n)  # entities per sentence
    difficulty = shared.uniform(-0.3, 0.3, n)
    rng = _rng("ner", method, source, target, seed)
    tp = rng.binomial(gold, np.clip(f1 / 100 + difficulty, 0.02, 0.98))
    want = round(f1 / 100 * gold.sum())
    while tp.sum() != want:  # move single entities until the total is the nearest to f1
        step = 1 if tp.sum() < want else -1
        room = np.flatnonzero(tp < gold) if step > 0 else np.flatnonzero(tp > 0)
        tp[rng.choice(room)] += step
    fn = gold - tp
    record = {"unit": "sentence", "examples_sha256": _test_set("ner", target),
              "columns": {"tp": tp.astype(np.int32), "fp": fn.astype(np.int32), "fn": fn.astype(np.int32)},
              "statistics": {"f1": {"name": "micro_f1", "columns": ["tp", "fp", "fn"]}}}
    return record, 100 * want / int(gold.sum())


def qa_per_question(method: str, target: str, seed: int, f1: float, em: float) -> tuple[dict, float]:
    """Per-question F1 / EM (percent) whose means are ``f1`` and the EM returned (the nearest count to ``em``)."""
    n = QA_TEST_QUESTIONS[target]
    ease = _rng("qa", target).uniform(-1, 1, n)  # shared by every method: some questions are easier
    rng = _rng("qa", method, target, seed)
    k = round(em / 100 * n)
    exact = np.zeros(n, dtype=bool)
    exact[np.argsort(-(ease + rng.normal(0, 0.5, n)))[:k]] = True
    rest = (n * f1 - 100 * k) / (n - k)  # the mean F1 of the questions not answered exactly
    spread = ease[~exact] - ease[~exact].mean()
    scores = np.full(n, 100.0)
    scores[~exact] = rest + 0.45 * min(rest, 100 - rest) * spread
    scores[np.flatnonzero(~exact)[-1]] += n * f1 - scores.sum()  # exact mean despite rounding
    record = {"unit": "question", "examples_sha256": _test_set("qa", target),
              "columns": {"f1": scores, "exact_match": np.where(exact, 100.0, 0.0)},
              "statistics": {"f1": {"name": "mean", "columns": ["f1"]}, "exact_match": {"name": "mean", "columns": ["exact_match"]}}}
    return record, 100 * k / n


def _seeds(task: str, method: str, source: str, target: str) -> tuple[int, ...]:
    if task == "ner" and (method, source, target) in MISSING_NER:
        return ()
    if task == "qa" and (method, target) in MISSING_QA:
        return ()
    if task == "ner" and method == "mlm-trg":
        return (1,)
    return PARTIAL_SEEDS.get((task, method, source, target), SEEDS)


def _cost(kind: str, n: int, trainable: int | None, total: int) -> Cost:
    wall = {"prepare": 8.0, "mlm": 30.0, "task": 12.0, "eval": 2.0}[kind] + n * 0.5
    tokens = {"prepare": 0, "mlm": 64_000, "task": 20_000, "eval": 4_000}[kind] + n * 10
    peak = None if kind == "eval" else 500_000_000 + n * 1_000_000  # as the runner: eval jobs do not measure it
    return Cost(device="cpu", wall_s=wall, job_wall_s=wall, device_hours=wall / 3600, tokens=tokens,
                tokens_per_s=tokens / wall, peak_memory_bytes=peak, trainable_params=trainable, total_params=total)


PROVENANCE = Provenance(madx_version="0.1.0", git_revision="0123456789abcdef0123456789abcdef01234567", git_dirty=False,
                        versions={"torch": "2.13.0", "transformers": "5.0.0"}, hardware={"type": "cpu", "threads": 2},
                        python="3.11.7", platform="Linux (synthetic)")
WORKER = WorkerInfo("host-1:4242:rank0", "host-1", 4242, 0)
TOTAL = 278_043_648
TRAINABLE = {  # what a real run would record (biases and heads included)
    ("mlm", "madx"): 7_372_800 + 295_488, ("mlm", "madx-inv"): 7_372_800, ("mlm", "mlm-trg"): TOTAL,
    ("mlm", "mlm-src"): TOTAL, ("task", "madx"): 894_528 + 5_383, ("task", "madx-inv"): 894_528 + 5_383,
    ("task", "madx-lad-inv"): 894_528 + 5_383, ("task", "full-ft"): TOTAL + 5_383, ("task", "mlm-trg"): TOTAL + 5_383,
    ("task", "mlm-src"): TOTAL + 5_383,
}

EXPECTED: dict[tuple[str, str, str, str, str], dict[int, float]] = {}
PREDICTIONS: dict[str, dict] = {}  # eval job id -> per-example record written beside its result


def _result(kind: str, name: str, params: dict, deps: list[str], metrics: dict, n: int) -> JobResult:
    job_id = _id(kind, name)
    trainable = TRAINABLE.get((kind, params.get("method")), 0 if kind != "prepare" else None)
    seed = params.get("seed")
    return JobResult(
        schema=SCHEMA_VERSION, job=JobSpec(job_id, kind, name, params, tuple(sorted(deps))), status="done",
        metrics=metrics, train=None, cost=_cost(kind, n, trainable, TOTAL),
        started_at=f"2026-11-25T11:{n // 60:02d}:{n % 60:02d}Z", finished_at=f"2026-11-25T12:{n // 60:02d}:{n % 60:02d}Z",
        worker=WORKER, provenance=dataclasses.replace(PROVENANCE, seed=seed),
    )


def job_result(job_id: str, kind: str, params: dict, metrics: dict, **provenance) -> JobResult:
    """One result with synthetic cost, for tests that need a few hand-picked jobs."""
    return dataclasses.replace(_result(kind, job_id, params, [], metrics, 0), job=JobSpec(job_id, kind, job_id, params, ()),
                               provenance=dataclasses.replace(PROVENANCE, **provenance))


def all_results() -> list[JobResult]:
    EXPECTED.clear()
    PREDICTIONS.clear()
    # the runner's first job (offline suites): makes the tiny model and the data; everything depends on it
    prepare = _result("prepare", "prepare", {"model": {"tiny": {"arch": "xlm-roberta"}}}, [], {}, 0)
    results: list[JobResult] = [prepare]
    mlm_ids: dict[tuple[str, str], str] = {}
    for method in ("madx", "madx-inv", "mlm-trg", "mlm-src"):
        languages = sorted(set(NER_SOURCES) | set(NER_TARGETS) | (set(QA_TARGETS) if method in QA_METHODS else set()))
        if method == "mlm-src":
            languages = sorted(NER_SOURCES)
        for lang in languages:
            r = _result("mlm", f"mlm/{method}/{lang}", {"task": None, "method": method, "language": lang, "seed": 1},
                        [prepare.job.id], {"loss": 2.0 + len(lang) / 10, "perplexity": 7.5}, len(results))
            mlm_ids[(method, lang)] = r.job.id
            results.append(r)
    for task, methods, sources, targets in (("ner", NER_METHODS, NER_SOURCES, NER_TARGETS),
                                            ("qa", QA_METHODS, ("en",), QA_TARGETS)):
        for method in methods:
            for source in sources:
                for seed in SEEDS:
                    deps = [prepare.job.id]
                    if (method, source) in mlm_ids and method != "mlm-trg":
                        deps.append(mlm_ids[(method, source)])
                    task_job = _result("task", f"task/{task}/{source}/{method}/seed{seed}",
                                       {"task": task, "method": method, "source": source, "seed": seed}, deps,
                                       {"best_dev": {"f1": 70.0 + seed}, "train_loss": 0.3}, len(results))
                    results.append(task_job)
                    for target in targets:
                        if seed not in _seeds(task, method, source, target):
                            continue
                        eval_deps = [task_job.job.id]
                        if (method, target) in mlm_ids and method in ("madx", "madx-inv", "mlm-trg"):
                            eval_deps.append(mlm_ids[(method, target)])
                        if task == "ner":
                            record, f1 = ner_counts(method, source, target, seed, ner_f1(method, source, target, seed))
                            metrics = {"f1": f1, "precision": f1 - 1.0, "recall": f1 + 1.0}
                        else:
                            f1, em = qa_scores(method, target, seed)
                            record, em = qa_per_question(method, target, seed, f1, em)
                            metrics = {"f1": f1, "exact_match": em}
                            EXPECTED.setdefault((task, method, source, target, "exact_match"), {})[seed] = em
                        EXPECTED.setdefault((task, method, source, target, "f1"), {})[seed] = metrics["f1"]
                        result = _result(
                            "eval", f"eval/{task}/{source}->{target}/{method}/seed{seed}",
                            {"task": task, "method": method, "source": source, "target": target, "seed": seed},
                            eval_deps, metrics, len(results))
                        if method not in WITHOUT_PREDICTIONS:
                            PREDICTIONS[result.job.id] = record
                        results.append(result)
    return results


def run_info(base_model: str = "xlm-roberta-base") -> RunInfo:
    return RunInfo(schema=SCHEMA_VERSION, suite="synthetic-smoke", suite_file="synthetic.yaml", suite_sha256="0" * 64,
                   created="2026-11-25T11:59:00Z", command=("madx", "bench", "run", "synthetic.yaml", "--out", "synthetic-run"),
                   model={"name_or_path": base_model}, notes=(*RUN_NOTES, SUITE_NOTE), provenance=PROVENANCE)


def commit(store: RunStore, result: JobResult, predictions: dict | None = None) -> None:
    """As the runner does: the job's artifacts (an eval job's per-example predictions among them), then
    its result.json, atomically (bench.store's layout)."""
    artifacts = store.artifacts(result.job.id)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "artifact.bin").write_bytes(b"\0" * 8)  # not a result: ignored
    if predictions is not None:
        write_predictions(artifacts / PREDICTIONS_FILE, result.job.task, predictions)
    atomic_write_json(store.result_path(result.job.id), result.to_dict())


def broken_predictions_job() -> str:
    task, method, source, target, seed = BROKEN_PREDICTIONS
    return _id("eval", f"eval/{task}/{source}->{target}/{method}/seed{seed}")


def make_run(run_dir: str | Path, *, base_model: str = "xlm-roberta-base", broken: bool = True) -> Path:
    """Write the synthetic store into ``run_dir``; returns it. ``broken`` adds the unreadable/failed/claimed dirs."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    results = all_results()
    for result in results:
        commit(store, result, PREDICTIONS.get(result.job.id))
    jobs = store.jobs_dir
    if broken:
        (store.artifacts(broken_predictions_job()) / PREDICTIONS_FILE).write_bytes(b"PK\x03\x04 not a whole zip file")
        (jobs / "corrupt0000000000").mkdir(parents=True)
        (jobs / "corrupt0000000000" / "result.json").write_text('{"schema": 2, "job": {"id": "corr')
        newer = {**results[0].to_dict(), "schema": 99}
        (jobs / "schema99000000000").mkdir(parents=True)
        (jobs / "schema99000000000" / "result.json").write_text(json.dumps(newer))
        incomplete = results[1].to_dict()
        del incomplete["cost"]["wall_s"]
        (jobs / "nowall0000000000").mkdir(parents=True)
        (jobs / "nowall0000000000" / "result.json").write_text(json.dumps(incomplete))
        (jobs / "failed00000000000").mkdir(parents=True)
        (jobs / "failed00000000000" / "error.json").write_text(json.dumps(
            {"job": "eval/ner/en->gn/madx/seed1", "error": "RuntimeError('CUDA out of memory')",
             "traceback": "Traceback (most recent call last): ...", "at": "2026-11-25T12:30:00Z"}))
        (jobs / "claimed0000000000").mkdir(parents=True)
        (jobs / "claimed0000000000" / "claim").write_text("host-1 pid 42")
    (run_dir / "suite.yaml").write_text(yaml.safe_dump(
        {"name": "synthetic-smoke", "model": base_model, "notes": [SUITE_NOTE],
         "tasks": {"ner": {"sources": list(NER_SOURCES), "targets": list(NER_TARGETS)}}}, sort_keys=True))
    atomic_write_json(run_dir / "run.json", run_info(base_model).to_dict())
    return run_dir


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic-run")
    print(make_run(target))
