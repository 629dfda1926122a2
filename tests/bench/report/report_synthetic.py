"""A synthetic result store with known numbers, for the report tests (and the example report).

    python tests/bench/report/report_synthetic.py RUN_DIR      # writes RUN_DIR/jobs/*/result.json, run.json, suite.yaml

NER: sources en, ja, qu; targets en, ja, sw, qu; six methods; seeds 1-3 (MLM-TRG: seed 1 only, as in
the paper). Missing on purpose: madx qu->sw, full-ft ja->qu, madx-lad-inv en->qu (no seed at all: a Table 5
cell with no result); madx-inv en->sw has seeds 1-2 only. QA: madx, madx-inv, full-ft from en to en, ar, de
(seeds 1-3); madx en->de misses seed 3; full-ft en->ar has no result.
Plus one corrupt result.json, one with an unknown schema, a failed job (error.json) and a claimed one.

``EXPECTED`` holds every eval number written, keyed (task, method, source, target, metric) ->
{seed: value}; tests compute their expectations from it with the statistics module.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

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

MISSING_NER = {("madx", "qu", "sw"), ("full-ft", "ja", "qu"), ("madx-lad-inv", "en", "qu")}
MISSING_QA = {("full-ft", "ar")}
PARTIAL_SEEDS = {("ner", "madx-inv", "en", "sw"): (1, 2), ("qa", "madx", "en", "de"): (1, 2)}

RUN_NOTES = ["QA task adapters were trained on SQuAD v1.1 dev minus the XQuAD paragraphs (a stand-in for SQuAD train)."]
SUITE_NOTE = "Synthetic numbers made by tests/bench/report/report_synthetic.py, not a real run."


def _id(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def ner_f1(method: str, source: str, target: str, seed: int) -> float:
    noise = _SEED_NOISE[seed] * _NOISE_SCALE[target] * (1.5 if source == "qu" else 1.0)
    # a pair-specific term so that differences between methods vary over the heatmap
    pair = ((3 * len(source) + 5 * len(target) + ord(source[0]) + ord(target[1])) % 7 - 3) * _INTERACTION[method]
    return round(_METHOD_BASE[method] + _TARGET_OFFSET[target] + _SOURCE_OFFSET[source] + pair + noise, 4)


def qa_scores(method: str, target: str, seed: int) -> tuple[float, float]:
    f1 = round(_METHOD_BASE[method] + 25.0 + _TARGET_OFFSET[target] + _SEED_NOISE[seed] * 2 * _NOISE_SCALE[target], 4)
    return f1, round(f1 - 15.0 - seed * 0.5, 4)


def _seeds(task: str, method: str, source: str, target: str) -> tuple[int, ...]:
    if task == "ner" and (method, source, target) in MISSING_NER:
        return ()
    if task == "qa" and (method, target) in MISSING_QA:
        return ()
    if task == "ner" and method == "mlm-trg":
        return (1,)
    return PARTIAL_SEEDS.get((task, method, source, target), SEEDS)


def _cost(kind: str, n: int, trainable: int, total: int) -> dict:
    wall = {"prepare": 8.0, "mlm": 30.0, "task": 12.0, "eval": 2.0}[kind] + n * 0.5
    tokens = {"prepare": 0, "mlm": 64_000, "task": 20_000, "eval": 4_000}[kind] + n * 10
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "device": "cpu",
            "device_hours": wall / 3600, "peak_memory_bytes": 500_000_000 + n * 1_000_000,
            "trainable_params": trainable, "total_params": total}


PROVENANCE = {"git_revision": "0123456789abcdef0123456789abcdef01234567",
              "versions": {"torch": "2.13.0", "transformers": "5.0.0"}, "hardware": "2 CPUs (synthetic)"}
TOTAL = 278_043_648
TRAINABLE = {  # what a real run would record (biases and heads included)
    ("mlm", "madx"): 7_372_800 + 295_488, ("mlm", "madx-inv"): 7_372_800, ("mlm", "mlm-trg"): TOTAL,
    ("mlm", "mlm-src"): TOTAL, ("task", "madx"): 894_528 + 5_383, ("task", "madx-inv"): 894_528 + 5_383,
    ("task", "madx-lad-inv"): 894_528 + 5_383, ("task", "full-ft"): TOTAL + 5_383, ("task", "mlm-trg"): TOTAL + 5_383,
    ("task", "mlm-src"): TOTAL + 5_383,
}

EXPECTED: dict[tuple[str, str, str, str, str], dict[int, float]] = {}


def _result(kind: str, name: str, params: dict, deps: list[str], metrics: dict, n: int) -> dict:
    job_id = _id(kind, name)
    trainable = TRAINABLE.get((kind, params.get("method")), 0 if kind != "prepare" else None)
    return {
        "schema": 1,
        "job": {"id": job_id, "kind": kind, "name": name, "params": params, "deps": sorted(deps)},
        "metrics": metrics,
        "cost": _cost(kind, n, trainable, TOTAL),
        "provenance": {**PROVENANCE, "finished_at": f"2026-11-25T12:{n // 60:02d}:{n % 60:02d}Z"},
        "extra_field_from_a_newer_runner": {"ignored": True},
    }


def all_results() -> list[dict]:
    EXPECTED.clear()
    # the runner's first job (offline suites): makes the tiny model and the data; everything depends on it
    prepare = _result("prepare", "prepare", {"model": {"tiny": {"arch": "xlm-roberta"}}}, [], {}, 0)
    results: list[dict] = [prepare]
    mlm_ids: dict[tuple[str, str], str] = {}
    for method in ("madx", "madx-inv", "mlm-trg", "mlm-src"):
        languages = sorted(set(NER_SOURCES) | set(NER_TARGETS) | (set(QA_TARGETS) if method in QA_METHODS else set()))
        if method == "mlm-src":
            languages = sorted(NER_SOURCES)
        for lang in languages:
            r = _result("mlm", f"mlm/{method}/{lang}", {"task": None, "method": method, "language": lang, "seed": 1},
                        [prepare["job"]["id"]], {"loss": 2.0 + len(lang) / 10, "perplexity": 7.5}, len(results))
            mlm_ids[(method, lang)] = r["job"]["id"]
            results.append(r)
    for task, methods, sources, targets in (("ner", NER_METHODS, NER_SOURCES, NER_TARGETS),
                                            ("qa", QA_METHODS, ("en",), QA_TARGETS)):
        for method in methods:
            for source in sources:
                for seed in SEEDS:
                    deps = [prepare["job"]["id"]]
                    if (method, source) in mlm_ids and method != "mlm-trg":
                        deps.append(mlm_ids[(method, source)])
                    task_job = _result("task", f"task/{task}/{source}/{method}/seed{seed}",
                                       {"task": task, "method": method, "source": source, "seed": seed}, deps,
                                       {"best_dev": {"f1": 70.0 + seed}, "train_loss": 0.3}, len(results))
                    results.append(task_job)
                    for target in targets:
                        if seed not in _seeds(task, method, source, target):
                            continue
                        eval_deps = [task_job["job"]["id"]]
                        if (method, target) in mlm_ids and method in ("madx", "madx-inv", "mlm-trg"):
                            eval_deps.append(mlm_ids[(method, target)])
                        if task == "ner":
                            f1 = ner_f1(method, source, target, seed)
                            metrics = {"f1": f1, "precision": f1 - 1.0, "recall": f1 + 1.0}
                        else:
                            f1, em = qa_scores(method, target, seed)
                            metrics = {"f1": f1, "exact_match": em}
                            EXPECTED.setdefault((task, method, source, target, "exact_match"), {})[seed] = em
                        EXPECTED.setdefault((task, method, source, target, "f1"), {})[seed] = metrics["f1"]
                        results.append(_result(
                            "eval", f"eval/{task}/{source}->{target}/{method}/seed{seed}",
                            {"task": task, "method": method, "source": source, "target": target, "seed": seed},
                            eval_deps, metrics, len(results)))
    return results


def make_run(run_dir: str | Path, *, base_model: str = "xlm-roberta-base", broken: bool = True) -> Path:
    """Write the synthetic store into ``run_dir``; returns it. ``broken`` adds the unreadable/failed/claimed dirs."""
    run_dir = Path(run_dir)
    jobs = run_dir / "jobs"
    for result in all_results():
        job_dir = jobs / result["job"]["id"]
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        (job_dir / "artifact.bin").write_bytes(b"\0" * 8)  # not a result: ignored
    if broken:
        (jobs / "corrupt0000000000").mkdir(parents=True)
        (jobs / "corrupt0000000000" / "result.json").write_text('{"schema": 1, "job": {"id": "corr')
        (jobs / "schema99000000000").mkdir(parents=True)
        (jobs / "schema99000000000" / "result.json").write_text(json.dumps({"schema": 99, "job": {}, "metrics": {}}))
        (jobs / "failed00000000000").mkdir(parents=True)
        (jobs / "failed00000000000" / "error.json").write_text(json.dumps(
            {"job": "eval/ner/en->gn/madx/seed1", "error": "RuntimeError('CUDA out of memory')",
             "traceback": "Traceback (most recent call last): ...", "at": "2026-11-25T12:30:00Z"}))
        (jobs / "claimed0000000000").mkdir(parents=True)
        (jobs / "claimed0000000000" / "claim").write_text("host-1 pid 42")
    (run_dir / "suite.yaml").write_text(yaml.safe_dump(
        {"name": "synthetic-smoke", "base_model": base_model, "notes": [SUITE_NOTE],
         "tasks": {"ner": {"sources": list(NER_SOURCES), "targets": list(NER_TARGETS)}}}, sort_keys=True))
    (run_dir / "run.json").write_text(json.dumps(
        {"suite": "synthetic-smoke", "git_revision": PROVENANCE["git_revision"], "versions": PROVENANCE["versions"],
         "hardware": PROVENANCE["hardware"], "started_at": "2026-11-25T11:59:00Z", "notes": RUN_NOTES},
        indent=2, sort_keys=True))
    return run_dir


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic-run")
    print(make_run(target))
