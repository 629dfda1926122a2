"""Evaluation overhead: a whole evaluation phase run for real through the worker, against the pure
forward of the same batches.

    python -m bench.perf.eval_overhead                 # writes reports/perf/eval-overhead-cpu.{json,md}
    python -m bench.perf.eval_overhead --scale 0.02 --out /tmp/eo

paper-ner has 6,656 evaluation jobs, each a small forward pass; what a worker does around it (claim,
adapters, reading and tokenising the test set, tensorboard, the result record) must cost little
next to the forward. The target: the phase's throughput at least 0.9 of the pure forward's.

1. A synthetic suite with a cpu-small-sized encoder (``bench.perf.presets``: 4 layers, h=256, 4 heads,
   FFN 1024), paper-ner's 16 languages as targets, MAD-X and full fine-tuning from English, and
   test sets sized like paper-ner's WikiANN (Rahimi) test sets times ``--scale``.
2. ``run_worker`` with ``max_jobs`` = the prepare, MLM and task jobs (a few steps each; not measured):
   what is left is the evaluation phase. The test files are then rewritten to their sizes.
3. ``run_worker`` again: the evaluation phase, timed (wall and process CPU time), every function on the
   eval path on a ``Stopwatch`` (inclusive and exclusive seconds, nesting tracked as it happens) and
   the model's forward timed by hooks. Where ``JobContext`` caches tokenised test sets, the phase runs
   twice: with the cache emptied before every job (each job reads and tokenises its test set, as before
   the cache) and with it; the evaluation results are removed in between.
4. Pure forward, after each phase: for every evaluation job, the same model with its adapters already
   loaded and active, its test set already tokenised and padded into the same batches (32, ``run_eval``'s),
   only the forwards timed; the fastest run per job is the reference.

ratio = phase throughput / pure-forward throughput over the same tokens = forward seconds / phase
seconds (``summarise`` says which forward seconds). On a CPU the forward is slow, so the same overhead
weighs less than on a GPU: a CPU ratio above target is necessary, not sufficient; ``overhead ms/job``
is what to set against a GPU's forward time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import types
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TARGET = 0.9
EVAL_BATCH_SIZE = 32  # run_eval -> evaluate_task's default
CACHE_ATTRIBUTE = "_test_sets"  # bench.execute.JobContext's per-worker cache of tokenised test sets, where it has one

# WikiANN test sentences per language, Rahimi splits as paper-ner reads them (counted from the files)
PAPER_NER_TEST_SENTENCES: dict[str, int] = {
    "en": 10_000, "ja": 10_000, "zh": 10_000, "ar": 10_000, "sw": 1_000, "is": 1_000,
    **{lang: 100 for lang in ("jv", "my", "qu", "cdo", "ilo", "xmf", "mi", "mhr", "tk", "gn")},
}
PAPER_NER_EVAL_JOBS = 6_656  # madx bench plan paper-ner
CPU_SMALL_ENCODER = {"arch": "xlm-roberta", "vocab_size": 2000, "hidden_size": 256, "num_hidden_layers": 4,
                     "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 130,
                     "type_vocab_size": 1}


def test_sizes(scale: float, languages: Iterable[str] = PAPER_NER_TEST_SENTENCES, minimum: int = 10) -> dict[str, int]:
    """paper-ner's test set sizes times ``scale``, at least ``minimum`` sentences each."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return {lang: max(minimum, round(PAPER_NER_TEST_SENTENCES[lang] * scale)) for lang in languages}


def suite_spec(languages: Sequence[str] = tuple(PAPER_NER_TEST_SENTENCES), methods: Sequence[str] = ("madx", "full-ft"),
               encoder: Mapping[str, Any] = CPU_SMALL_ENCODER, threads: int = 1) -> dict[str, Any]:
    """The benchmark's suite as data: training as short as the runner allows, evaluation at full size."""
    return {
        "name": "eval-overhead",
        "model": {"tiny": dict(encoder)},
        "data": {"kind": "synthetic", "languages": list(languages), "ner_train": 32, "ner_dev": 16, "ner_test": 10,
                 "text_lines": 40, "qa_train": 4, "qa_eval": 4},
        "tasks": {"ner": {"sources": [languages[0]], "targets": list(languages), "methods": list(methods)}},
        "seeds": [1],
        "hyperparameters": {
            "mlm": {"steps": 2, "batch_size": 4, "max_seq_length": 32, "eval_every": 2},
            "ner": {"epochs": 1, "batch_size": 16, "batch_size_low_resource": 16, "max_length": 128},
            "runtime": {"cpu_threads_per_worker": threads, "lease_seconds": 60},
        },
    }


# -- timing what runs -----------------------------------------------------------------------------
class Stopwatch:
    """Wall seconds and calls of functions, by label, while ``patched`` is active: inclusive, and exclusive
    (less the time in timed calls made inside; nesting is tracked per thread as the calls happen)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: dict[str, float] = defaultdict(float)  # inclusive
        self.exclusive: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self.missing: list[str] = []
        self._local = threading.local()

    def _stack(self) -> list[float]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []  # per open timed call: seconds spent in its timed children so far
        return self._local.stack

    def enter(self) -> float:
        self._stack().append(0.0)
        return self.clock()

    def leave(self, label: str, start: float) -> None:
        elapsed = self.clock() - start
        stack = self._stack()
        children = stack.pop()
        self.seconds[label] += elapsed
        self.exclusive[label] += elapsed - children
        self.calls[label] += 1
        if stack:
            stack[-1] += elapsed

    def timed(self, function: Callable, label: str) -> Callable:
        def wrapper(*args, **kwargs):
            start = self.enter()
            try:
                return function(*args, **kwargs)
            finally:
                self.leave(label, start)

        wrapper.__wrapped__ = function
        return wrapper

    @contextlib.contextmanager
    def patched(self, targets: Iterable[tuple[Any, str, str]]):
        """Wrap ``owner.name`` (or ``owner[name]`` for a dict) for each (owner, name, label); restore on exit.
        A name the owner lacks is listed in ``missing`` and skipped."""
        undo = []
        try:
            for owner, name, label in targets:
                is_dict = isinstance(owner, dict)
                if (name not in owner) if is_dict else not hasattr(owner, name):
                    self.missing.append(label)
                    continue
                original = owner[name] if is_dict else getattr(owner, name)
                wrapped = self.timed(original, label)
                if is_dict:
                    owner[name] = wrapped
                    undo.append(lambda o=owner, n=name, f=original: o.__setitem__(n, f))
                elif isinstance(owner, type) or isinstance(owner, types.ModuleType):
                    had_own = not isinstance(owner, type) or name in vars(owner)
                    setattr(owner, name, wrapped)
                    undo.append(lambda o=owner, n=name, f=original, own=had_own: setattr(o, n, f) if own else delattr(o, n))
                else:  # an instance, frozen dataclasses too (a TaskSpec's evaluate)
                    had_own = name in getattr(owner, "__dict__", {})
                    object.__setattr__(owner, name, wrapped)
                    undo.append(lambda o=owner, n=name, f=original, own=had_own:
                                object.__setattr__(o, n, f) if own else object.__delattr__(o, n))
            yield self
        finally:
            for restore in reversed(undo):
                restore()


def forward_timer(stopwatch: Stopwatch, label: str = "model forward"):
    """Forward pre/post hooks that add each top-level forward's wall time to ``stopwatch`` (CPU: synchronous)."""
    starts: list[float] = []

    def pre(module, args):
        starts.append(stopwatch.enter())

    def post(module, args, output):
        stopwatch.leave(label, starts.pop())

    def attach(model):
        model.register_forward_pre_hook(pre)
        model.register_forward_hook(post)
        return model

    return attach


# what the eval path calls: (where, name, label); "module:Class" for a class attribute, "task:NAME" for a
# registered task's spec (its evaluate).
JOB = "job: _run_one (workspace, log, run_eval, result, commit)"
PATH = (
    ("bench.worker", "_run_one", JOB),
    ("bench.execute:RUNNERS", "eval", "run_eval"),
    ("bench.execute:JobContext", "test_set", "test set: cache lookup"),
    ("bench.execute", "_load_task_data", "test set: read the file"),
    ("bench.execute", "prepare_task_data", "test set: tokenise"),
    ("bench.execute:JobContext", "cached_model", "shared base model: detach, reset head"),
    ("bench.execute", "load_model", "load a model from disk"),
    ("madx", "load_adapter", "load adapters"),
    ("madx", "detach", "detach adapters"),
    ("bench.execute", "evaluate_task", "evaluate_task"),
    ("task:ner", "evaluate", "evaluate (the task's)"),
    ("madx.tasks.ner", "sharded_predictions", "predictions: collate, forward, argmax"),
    ("madx.tasks.ner", "word_level_predictions", "metrics: word-level tags"),
    ("madx.tasks.ner", "ner_scores", "metrics: seqeval"),
    ("bench.report.predictions", "write_predictions", "per-example predictions file"),
    ("bench.execute:JobContext", "writer", "tensorboard: writer"),
    ("torch.utils.tensorboard:SummaryWriter", "close", "tensorboard: close"),
    ("bench.worker", "job_result", "result record"),
    ("bench.store:RunStore", "commit", "commit"),
    ("bench.store:RunStore", "is_done", "scheduler: is_done"),
    ("bench.store:RunStore", "try_claim", "scheduler: claim"),
)
def resolve_targets(path=PATH) -> list[tuple[Any, str, str]]:
    import importlib

    from madx.tasks.registry import get_task

    targets = []
    for where, name, label in path:
        module, _, attribute = where.partition(":")
        if module == "task":
            owner = get_task(attribute)
        else:
            owner = importlib.import_module(module)
            if attribute:
                owner = getattr(owner, attribute)
        targets.append((owner, name, label))
    return targets


def breakdown(seconds: Mapping[str, float], exclusive: Mapping[str, float], calls: Mapping[str, int],
              phase_s: float) -> list[dict[str, Any]]:
    """Rows of (label, calls, inclusive s, exclusive s, exclusive share of the phase), largest first, and
    last what no timed function covers (the worker loop between jobs, job_output's log redirection, ...)."""
    rows = [{"label": label, "calls": int(calls.get(label, 0)), "inclusive_s": seconds[label],
             "exclusive_s": exclusive[label], "share": exclusive[label] / phase_s if phase_s else 0.0}
            for label in sorted(seconds, key=lambda label: -exclusive[label])]
    rest = phase_s - sum(exclusive.values())
    rows.append({"label": "not inside a timed function", "calls": 0, "inclusive_s": rest, "exclusive_s": rest,
                 "share": rest / phase_s if phase_s else 0.0})
    return rows


def summarise(phase_s: float, phase_cpu_s: float, forward_s: float, forward_cpu_s: float, tokens: int,
              forward_in_phase_s: float, jobs: int, target: float = TARGET) -> dict[str, Any]:
    """The phase's throughput against the pure forward's, three ways:

    ``ratio``: the forwards timed inside the phase (hooks on the model: the same batches, features
    tokenised and adapters loaded before them) over the phase's wall time. One time window, so load
    from other processes on a shared machine slows both alike: the headline and the verdict.
    ``ratio_cpu_time``: the pure-forward runs' process CPU time over the phase's (one torch thread).
    ``ratio_wall_separate``: the pure-forward runs' wall time over the phase's; other load in either window shows.
    """
    ratio = forward_in_phase_s / phase_s
    return {"tokens": tokens, "jobs": jobs, "phase_s": phase_s, "phase_cpu_s": phase_cpu_s,
            "forward_in_phase_s": forward_in_phase_s, "pure_forward_s": forward_s, "pure_forward_cpu_s": forward_cpu_s,
            "phase_tokens_per_s": tokens / phase_s, "forward_tokens_per_s": tokens / forward_in_phase_s,
            "pure_forward_tokens_per_s": tokens / forward_s, "ratio": ratio,
            "ratio_cpu_time": forward_cpu_s / phase_cpu_s if phase_cpu_s else None,
            "ratio_wall_separate": forward_s / phase_s,
            "overhead_per_job_s": (phase_s - forward_in_phase_s) / jobs if jobs else None,
            "target": target, "meets_target": ratio >= target}


def best_forward(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per job, the fastest of several pure-forward runs (wall and CPU time each); totals over jobs."""
    if not runs:
        raise ValueError("no pure-forward run")
    jobs = []
    for rows in zip(*(run["jobs"] for run in runs)):
        if len({row["name"] for row in rows}) != 1 or len({row["tokens"] for row in rows}) != 1:
            raise ValueError(f"pure-forward runs differ: {[row['name'] for row in rows]}")
        jobs.append({**rows[0], "forward_s": min(r["forward_s"] for r in rows),
                     "forward_cpu_s": min(r["forward_cpu_s"] for r in rows)})
    return {"seconds": sum(j["forward_s"] for j in jobs), "cpu_seconds": sum(j["forward_cpu_s"] for j in jobs),
            "tokens": sum(j["tokens"] for j in jobs), "jobs": jobs, "runs": len(runs)}


# -- the runs -------------------------------------------------------------------------------------
def write_test_sets(store, jobs, sizes: Mapping[str, int]) -> Path:
    """Rewrite the prepare job's WikiANN test files at ``sizes`` (the training phase is done with them)."""
    from madx.data import synthetic

    prepare = next(job for job in jobs if job.kind == "prepare")
    root = store.artifacts(prepare.id) / "data" / "wikiann"
    for lang, n in sizes.items():
        synthetic.write_wikiann(root / f"test-{lang}.tsv", lang, n, seed=2)
    return root


def pad_batches(features, pad_id: int, batch_size: int = EVAL_BATCH_SIZE) -> list[dict]:
    """The model inputs of ``features`` in batches of ``batch_size``, in order, right-padded to each
    batch's longest row (what NERCollator does; QA windows come padded already)."""
    import torch

    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features.column_names]
    columns = {k: features[k] for k in keys}
    out = []
    for start in range(0, len(features), batch_size):
        rows = {k: v[start:start + batch_size] for k, v in columns.items()}
        width = max(len(r) for r in rows["input_ids"])
        batch = {}
        for key, values in rows.items():
            pad = pad_id if key == "input_ids" else 0
            tensor = torch.full((len(values), width), pad, dtype=torch.long)  # (B, T)
            for i, row in enumerate(values):
                tensor[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
            batch[key] = tensor
        out.append(batch)
    return out


def pure_forward(suite, out: Path, jobs, threads: int) -> dict[str, Any]:
    """Every evaluation job's forwards alone: adapters loaded and features tokenised and batched before the clock."""
    import torch
    import transformers

    import madx
    from bench.execute import JobContext, load_model
    from bench.store import RunStore
    from madx.phases import prepare_task_data
    from madx.runtime import Runtime
    from madx.tasks.registry import get_task
    from madx.variants import get_variant

    torch.set_num_threads(threads)
    transformers.utils.logging.set_verbosity_error()  # "classifier newly initialised": the adapters bring it
    transformers.utils.logging.disable_progress_bar()
    store = RunStore(out, create=False)
    ctx = JobContext(store, {j.id: j for j in jobs}, Runtime.local("cpu"), out / "tb-pure", lambda line: None)
    models: dict[str, torch.nn.Module] = {}
    per_job, total_s, total_cpu_s, tokens = [], 0.0, 0.0, 0
    warm = False
    for job in (j for j in jobs if j.kind == "eval"):
        p = job.params
        task, target, variant, spec = p["task"], p["target"], get_variant(p["method"]), get_task(p["task"])
        tokenizer = ctx.tokenizer(ctx.base_model_dir(job))
        examples = spec.load_file(spec.data_file(ctx.task_data_fields(job, task), target, "test"))
        cap = spec.eval_cap(p["hyper"])
        if cap and len(examples) > cap:
            examples = examples.select(range(int(cap)))
        features = prepare_task_data(task, examples, tokenizer, train=False, max_length=p["hyper"]["max_length"])
        batches = pad_batches(features, tokenizer.pad_token_id)
        task_dir = store.artifacts(ctx.dep(job, "task").id)
        path = ctx.base_model_dir(job) if variant.uses_adapters else str(task_dir / "model")
        if path not in models:
            models[path] = load_model(path, task)
        model = models[path]
        setup = None
        if variant.uses_adapters:
            if variant.language_adapters:
                madx.load_adapter(model, store.artifacts(ctx.dep(job, "mlm", language=target, mode=variant.mlm_mode).id) / "adapter")
            madx.load_adapter(model, task_dir / "task_adapter")
            setup = variant.eval_setup(target, task)
        with torch.no_grad(), madx.active(model, setup) if setup is not None else contextlib.nullcontext():
            if not warm:
                model(**batches[0])
                warm = True
            start, cpu_start = time.perf_counter(), time.process_time()
            for batch in batches:
                model(**batch)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if variant.uses_adapters:
            madx.detach(model)
        n = int(sum(len(ids) for ids in features["input_ids"]))
        per_job.append({"name": job.name, "sentences": len(features), "tokens": n, "forward_s": wall, "forward_cpu_s": cpu})
        total_s, total_cpu_s, tokens = total_s + wall, total_cpu_s + cpu, tokens + n
    return {"seconds": total_s, "cpu_seconds": total_cpu_s, "tokens": tokens, "jobs": per_job}


def run_phase(suite, out: Path, jobs, clear_cache: bool) -> dict[str, Any]:
    """The evaluation phase through ``run_worker``, timed, every function of the path on a stopwatch."""
    import bench.execute
    from bench.worker import run_worker

    stopwatch = Stopwatch()
    events: list[str] = []
    targets = resolve_targets()
    hooks = forward_timer(stopwatch)
    load_model = bench.execute.load_model
    runners = bench.execute.RUNNERS
    run_eval = runners["eval"]

    def loading(path, head):  # the models the worker loads get the forward hooks
        return hooks(load_model(path, head))

    def eval_job(job, ctx, workspace):
        if clear_cache:
            getattr(ctx, CACHE_ATTRIBUTE, {}).clear()
        return run_eval(job, ctx, workspace)

    runners["eval"] = eval_job
    bench.execute.load_model = loading
    try:
        with stopwatch.patched(targets):
            start, cpu_start = time.perf_counter(), time.process_time()
            summary = run_worker(suite, out, progress=events.append)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        runners["eval"] = run_eval
        bench.execute.load_model = load_model
    results = [json.loads((out / "jobs" / j.id / "result.json").read_text()) for j in jobs if j.kind == "eval"]
    return {"summary": summary, "seconds": wall, "cpu_seconds": cpu, "stopwatch": dict(stopwatch.seconds),
            "exclusive": dict(stopwatch.exclusive), "calls": dict(stopwatch.calls), "not_found": stopwatch.missing,
            "jobs": [{"name": r["job"]["name"], "job_wall_s": r["cost"]["job_wall_s"], "evaluate_s": r["cost"]["wall_s"],
                      "tokens": r["cost"]["tokens"]} for r in results]}


def has_test_set_cache() -> bool:
    from bench.execute import JobContext

    probe = JobContext.__new__(JobContext)
    try:
        JobContext.__init__(probe, None, {}, None, Path("."), lambda line: None)
    except Exception:
        return False
    return isinstance(getattr(probe, CACHE_ATTRIBUTE, None), dict)


def benchmark(scale: float = 0.25, workdir: Path | None = None, threads: int = 1,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    from bench.graph import build_graph
    from bench.store import RunStore
    from bench.suite import parse_suite
    from bench.worker import run_worker

    raw = suite_spec(threads=threads)
    suite = parse_suite(raw, "bench/perf/eval_overhead.py")
    jobs = build_graph(suite)
    sizes = test_sizes(scale, suite.targets["ner"])
    scratch = Path(workdir or tempfile.mkdtemp(prefix="eval-overhead-"))
    out = scratch / "run"
    shutil.rmtree(out, ignore_errors=True)
    before = sum(job.kind != "eval" for job in jobs)
    log(f"training phase: {before} prepare/MLM/task jobs (not measured) in {out}")
    start = time.perf_counter()
    summary = run_worker(suite, out, progress=lambda line: None, max_jobs=before)
    pending = [job for job in jobs if not RunStore(out, create=False).is_done(job.id)]
    if summary["failed"] or any(job.kind != "eval" for job in pending):
        raise RuntimeError(f"the training phase did not finish: {summary}; see {out}/jobs/*/error.json")
    log(f"  done in {time.perf_counter() - start:.0f} s; {len(pending)} evaluation jobs left")
    write_test_sets(RunStore(out, create=False), jobs, sizes)

    variants = [("per-job tokenisation", True), ("cached test sets", False)] if has_test_set_cache() else [("as is", False)]
    phases, forwards = {}, []
    for name, clear in variants:  # each phase followed by a pure-forward run: the best of them is the reference
        for job in pending:  # the evaluation results of a previous variant go: the phase runs again
            shutil.rmtree(RunStore(out, create=False).job_dir(job.id), ignore_errors=True)
        log(f"evaluation phase ({name}): {len(pending)} jobs")
        phases[name] = run_phase(suite, out, jobs, clear_cache=clear)
        log(f"  {phases[name]['seconds']:.1f} s wall, {phases[name]['cpu_seconds']:.1f} s CPU")
        for _ in range(2 if len(variants) == 1 else 1):
            log("pure forward of the same batches")
            forwards.append(pure_forward(suite, out, jobs, threads))
            log(f"  {forwards[-1]['seconds']:.1f} s wall, {forwards[-1]['cpu_seconds']:.1f} s CPU, {forwards[-1]['tokens']:,} tokens")
    forward = best_forward(forwards)
    for name, phase in phases.items():
        phase["summary_numbers"] = summarise(phase["seconds"], phase["cpu_seconds"], forward["seconds"],
                                             forward["cpu_seconds"], forward["tokens"],
                                             phase["stopwatch"]["model forward"], len(pending))
        phase["breakdown"] = breakdown(phase["stopwatch"], phase["exclusive"], phase["calls"], phase["seconds"])
        phase_tokens = sum(j["tokens"] for j in phase["jobs"])
        if phase_tokens != forward["tokens"]:
            raise RuntimeError(f"the phase evaluated {phase_tokens} tokens, the pure forward {forward['tokens']}")
    return {"suite": raw, "test_sentences": sizes, "scale": scale, "threads": threads, "eval_jobs": len(pending),
            "phases": [{"name": name, **phase} for name, phase in phases.items()], "pure_forward": forward, "pure_forward_runs": [{k: f[k] for k in ("seconds", "cpu_seconds")}
                                                                             for f in forwards],
            "workdir": str(scratch)}


# -- the report -----------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def render_markdown(result: Mapping[str, Any]) -> str:
    from madx.tables import render_table

    lines = ["# Evaluation overhead (CPU)", "", f"Command: `{result['command']}`", "",
             f"{result['eval_jobs']} evaluation jobs of a synthetic NER suite (MAD-X and full fine-tuning from en, "
             f"paper-ner's 16 targets), encoder cpu-small-sized (4 layers, h=256, 4 heads, FFN 1024), "
             f"{result['threads']} torch thread per worker; test sets = paper-ner's WikiANN test sets x {result['scale']} "
             f"({', '.join(f'{k} {v:,}' for k, v in sorted(result['test_sentences'].items(), key=lambda kv: -kv[1]))} sentences).", "",
             f"ratio = phase throughput / pure-forward throughput over the same tokens; target >= {TARGET}.", ""]
    rows = []
    for phase in result["phases"]:
        s = phase["summary_numbers"]
        rows.append([phase["name"], f"{s['phase_s']:.1f}", f"{s['forward_in_phase_s']:.1f}", f"{s['phase_tokens_per_s']:,.0f}",
                     f"{s['forward_tokens_per_s']:,.0f}", f"**{s['ratio']:.3f}**", "yes" if s["meets_target"] else "no",
                     f"{1000 * s['overhead_per_job_s']:.0f}", f"{s['ratio_cpu_time']:.3f}", f"{s['ratio_wall_separate']:.3f}"])
    lines.append(render_table(["evaluation phase", "phase s", "forward s (in the phase)", "phase tokens/s",
                               "forward tokens/s", "ratio", ">= 0.9", "overhead ms/job", "ratio, CPU time",
                               "ratio, wall, separate runs"], rows))
    runs = result.get("pure_forward_runs", [])
    lines += ["", "ratio: the forwards timed inside the phase (hooks on the model; the same batches, the test set "
              "already tokenised and the adapters loaded before each forward) over the phase's wall time, one time "
              "window, so load from other processes on this shared machine slows both alike. The pure forward run "
              f"apart (the fastest of {len(runs)} runs per job: "
              + ", ".join(f"{r['seconds']:.1f} s wall / {r['cpu_seconds']:.1f} s CPU" for r in runs)
              + f"; {result['pure_forward']['tokens']:,} tokens) gives the last two columns: process CPU time "
              "(one torch thread), and wall time, which shows the load of whichever window was busier.", "",
              f"Each target's test set is evaluated by {result['eval_jobs'] / len(result['test_sentences']):g} jobs here "
              f"and by {PAPER_NER_EVAL_JOBS // len(PAPER_NER_TEST_SENTENCES)} in paper-ner "
              f"({PAPER_NER_EVAL_JOBS:,} / {len(PAPER_NER_TEST_SENTENCES)}): with the cache a worker reads and tokenises "
              "each at most once, so what the cache saves here is a small part of what it saves there.", ""]
    for phase in result["phases"]:
        name = phase["name"]
        sentences = sum(result["test_sentences"].values()) * result["eval_jobs"] / len(result["test_sentences"])
        lines += ["", f"## Where the phase's time goes: {name}", "",
                  "Exclusive seconds (a row's own time, its timed children's removed), their share of the phase's "
                  f"wall time, and per evaluation job and per test sentence ({sentences:,.0f} in the phase).", ""]
        body = [[r["label"], f"{r['calls']:,}", f"{r['inclusive_s']:.2f}", f"{r['exclusive_s']:.2f}", f"{100 * r['share']:.1f}%",
                 f"{1000 * r['exclusive_s'] / result['eval_jobs']:.1f}", f"{1e6 * r['exclusive_s'] / sentences:.0f}"]
                for r in phase["breakdown"]]
        lines.append(render_table(["what", "calls", "inclusive s", "exclusive s", "share", "ms per job", "µs per sentence"], body))
        if phase["not_found"]:
            lines += ["", "Not found on the path (not timed): " + ", ".join(phase["not_found"])]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    env = result["environment"]
    lines += ["", f"Environment: Python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, "
                  f"{env['processor']} x {env['cpu_count']}, load average at the end {env['load_average']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.eval_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.25, help="test sets = paper-ner's x SCALE (default 0.25)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (the suite's runtime setting)")
    parser.add_argument("--out", default="reports/perf", help="folder for eval-overhead-cpu.{json,md}")
    parser.add_argument("--workdir", default=None, help="run directory parent (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    if not args.scale > 0 or args.threads < 1:
        print("--scale must be positive and --threads at least 1", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets

    datasets.disable_progress_bars()
    result = benchmark(args.scale, Path(args.workdir) if args.workdir else None, args.threads)
    result["command"] = "python -m bench.perf.eval_overhead " + " ".join(argv if argv is not None else sys.argv[1:])
    result["environment"] = environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from madx.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out / "eval-overhead-cpu.json", result)
    atomic_write_text(out / "eval-overhead-cpu.md", render_markdown(result))
    if not args.keep:
        shutil.rmtree(result["workdir"], ignore_errors=True)
    for phase in result["phases"]:
        s, name = phase["summary_numbers"], phase["name"]
        print(f"{name}: ratio {s['ratio']:.3f} (CPU time {s['ratio_cpu_time']:.3f}, wall of separate runs "
              f"{s['ratio_wall_separate']:.3f}), target {TARGET}; overhead {1000 * s['overhead_per_job_s']:.0f} ms per job")
    print(f"wrote {out / 'eval-overhead-cpu.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
