"""A long-lived worker stays clean: one worker process runs ten compiled adapter MLM jobs of ten
languages, three compiled full-model MLM jobs, their task and evaluation jobs (31 jobs). The MLM
step is compiled with a backend that runs on CPU (aot_eager: AOTAutograd traces the backward as
Inductor would), recording every frame it compiles.

* the compiled step is reused: at most one frame per (mode, input shape) over the whole suite, not
  one per language, job or model, and every MLM job's steps all ran compiled (a job past dynamo's
  recompile limit would silently run eager). The one recompile allowed is transformers' own: its
  output-capturing registry (``_CAN_RECORD_REGISTRY``, one entry per model class a process creates)
  is guarded on, so the first model of a new class (a task job's) recompiles once; nothing madx holds
  (adapter names, adapter modules, the model) may appear in a recompile's reasons;
* nothing of a finished job stays reachable: before each job starts, every model, MLM objective
  (the compiled wrapper) and optimizer of the jobs before it has been freed (weakrefs dead).
"""

from __future__ import annotations

import gc
import logging
import re
import weakref
from collections import Counter
from pathlib import Path

import pytest
import torch

import bench.execute
from bench.suite import load_suite
from bench.worker import run_worker

pytestmark = pytest.mark.slow
SUITE = str(Path(__file__).resolve().parents[1] / "fixtures" / "long-lived-suite.yaml")


def test_one_worker_reuses_the_compiled_step_and_frees_every_finished_job(tmp_path, monkeypatch):
    current = {"job": None}
    frames: list[tuple[str, tuple]] = []  # (mode, input_ids shape) per compiled frame
    compiled_calls: Counter = Counter()  # job name -> calls of compiled code
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def recording_backend(gm, example_inputs):
        ids = [tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor) and t.dtype == torch.long and t.ndim == 2]
        frames.append((current["job"].params["mode"], tuple(ids)))
        inner = aot_eager(gm, example_inputs)

        def run(*args):
            compiled_calls[current["job"].name] += 1
            return inner(*args)

        return run

    recompiles: list[str] = []  # dynamo's reasons, one message per recompile

    class Reasons(logging.Handler):
        def emit(self, record):
            recompiles.append(record.getMessage())

    reasons = Reasons()
    torch._logging.set_logs(recompiles=True)
    recompile_log = logging.getLogger("torch._dynamo.guards.__recompiles")
    recompile_log.addHandler(reasons)
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **{**kw, "backend": recording_backend}))
    torch._dynamo.reset()

    owned: list[tuple[str, str, weakref.ref]] = []  # (job, what, ref) of every job so far
    real_fresh = bench.execute.JobContext.fresh_model

    def fresh_model(self, *args, **kwargs):
        model = real_fresh(self, *args, **kwargs)
        owned.append((current["job"].name, "model", weakref.ref(model)))
        return model

    monkeypatch.setattr(bench.execute.JobContext, "fresh_model", fresh_model)
    from madx.tasks import mlm

    real_objective_init = mlm.MaskedLMObjective.__init__

    def objective_init(self, *args, **kwargs):
        real_objective_init(self, *args, **kwargs)
        owned.append((current["job"].name, "MLM objective", weakref.ref(self)))

    monkeypatch.setattr(mlm.MaskedLMObjective, "__init__", objective_init)

    class RecordedAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            owned.append((current["job"].name, "optimizer", weakref.ref(self)))

    monkeypatch.setattr(torch.optim, "AdamW", RecordedAdamW)

    leaks: list[str] = []
    for kind, runner in list(bench.execute.RUNNERS.items()):
        def checked(job, ctx, workspace, runner=runner):
            gc.collect()
            leaks.extend(f"{what} of {name} still alive when {job.name} started"
                         for name, what, ref in owned if ref() is not None)
            current["job"] = job
            return runner(job, ctx, workspace)

        monkeypatch.setitem(bench.execute.RUNNERS, kind, checked)

    try:
        summary = run_worker(load_suite(SUITE), tmp_path, progress=lambda line: None)
    finally:
        recompile_log.removeHandler(reasons)
        torch._logging.set_logs()
    gc.collect()
    torch._dynamo.reset()
    assert summary == {"done": 31, "running": 0, "failed": 0, "pending": 0}, summary
    assert not leaks, "\n".join(leaks[:10])
    jobs_with = Counter(name for name, what, _ in owned if what == "model")
    assert len(jobs_with) == 3 + 3, f"full-model jobs seen: {sorted(jobs_with)}"  # 3 full MLM + 3 full QA tasks

    # each failed guard is a line "- 0/1: <guard>" (user stack lines follow as "- User stack trace:" / "-   File …")
    guard_failures = [line.strip() for message in recompiles for line in message.splitlines()
                      if re.match(r"\s*- \d+/\d+: ", line)]
    ours = [line for line in guard_failures if re.search(r"madx_\w+", line)]  # madx_adapters, madx_active, …
    assert not ours, f"recompiled for what madx holds (adapter names or modules): {ours[:5]}"
    registry = sum("_CAN_RECORD_REGISTRY" in message for message in recompiles)  # transformers' per-class registry
    assert registry <= 3, f"{registry} recompiles for transformers' registry: more than one per model class"
    per_key = Counter(frames)
    assert max(per_key.values()) <= 1 + registry, f"recompiled for the same (mode, shape): {per_key}"
    modes = {mode for mode, _ in frames}
    assert modes == {"adapter+inv", "full"}, modes
    mlm_jobs = [name for name, what, _ in owned if what == "MLM objective"]
    assert len(mlm_jobs) == 13
    ran_eager = [name for name in mlm_jobs if compiled_calls[name] == 0]
    assert not ran_eager, f"MLM jobs that never ran compiled code (recompile limit?): {ran_eager}"
    assert len(frames) <= 4 + registry, f"{len(frames)} compiled frames for 13 MLM jobs: {frames}"
