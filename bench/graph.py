"""Expand a suite into a graph of content-addressed jobs.

* ``prepare`` (synthetic suites only): write the tiny base model and the synthetic data.
* ``mlm``: per language, a language adapter with (``madx``) or without (``madx-inv``) its
  invertible adapter, the same two without an adapter in the last layer (``madx2``, ``madx2-inv``:
  other adapters, so other jobs); or full-model MLM (``mlm-src`` / ``mlm-trg``), shared by both
  baselines. The job's ``mode`` (``Variant.mlm_mode``) says which, and names it: ``mlm/qu/adapter+inv``,
  ``mlm/qu/adapter+inv,leave_out=-1``.
* ``task``: per task × method × source × seed (MLM-TRG: per source × target, ``mlm_trg_seeds``),
  depending on the MLM job its method needs.
* ``eval``: per task × method × source × target × seed, depending on the task job and, for
  adapter methods, on the target's MLM job (the zero-shot swap). Where the suite's text folder
  has no text for a language, methods that need MLM on it (adapters, MLM-SRC/TRG) get no jobs
  for it: those cells stay missing in reports.

A job's id hashes its kind, the code version of that kind, its resolved parameters and its
dependencies' ids — never a rank or a world size — so any worker computes the same graph.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suite import Suite
from madx.adapters.config import REDUCTION_FACTORS
from madx.tasks.registry import get_task
from madx.variants import get_variant, mlm_variant

# bump a kind's version when its results change meaning: old results are then not reused
JOB_VERSIONS = {"prepare": 1, "mlm": 1, "task": 1, "eval": 1}


@dataclass(frozen=True)
class Job:
    kind: str
    name: str
    params: dict[str, Any]
    deps: tuple[str, ...] = ()
    id: str = field(default="")

    @staticmethod
    def make(kind: str, name: str, params: dict[str, Any], deps: tuple[str, ...] = ()) -> "Job":
        payload = json.dumps({"kind": kind, "version": JOB_VERSIONS[kind], "params": params, "deps": sorted(deps)},
                             sort_keys=True, default=str)
        return Job(kind, name, params, tuple(deps), hashlib.sha256(payload.encode()).hexdigest()[:20])


def _model_params(suite: Suite) -> dict[str, Any]:
    return {"model": suite.model}


def _adapter_params(section: dict[str, Any], method: str) -> dict[str, Any]:
    """The suite's ``adapters`` section in a job's parameters. A job of a method without adapters (full fine-tuning,
    MLM-SRC / MLM-TRG) creates none, so only the sizes it always carried stay in its id: a change of how adapters
    start (``init_weights``) does not re-run full-model jobs."""
    if get_variant(method).uses_adapters:
        return section
    return {name: section[name] for name in REDUCTION_FACTORS if name in section}


def build_graph(suite: Suite) -> list[Job]:
    """All jobs of ``suite`` in a dependency-respecting order."""
    jobs: dict[str, Job] = {}

    def add(job: Job) -> Job:
        jobs.setdefault(job.id, job)
        return job

    prepare = None
    if suite.data.get("kind") == "synthetic":
        prepare = add(Job.make("prepare", "prepare", {"model": suite.model, "data": suite.data}))
    base_deps = (prepare.id,) if prepare else ()

    def mlm_settings(method: str) -> tuple[dict, dict]:
        hyper = suite.hyper(method)
        return hyper["mlm"], _adapter_params(hyper["adapters"], method)

    def mlm_job(language: str, method: str) -> Job:
        """The MLM job ``method`` needs on ``language``. Methods of one MLM mode (MLM-SRC and MLM-TRG
        both train the full model) share the job while their MLM settings agree; a method whose
        suite override changes them gets its own job, named after it."""
        mode = get_variant(method).mlm_mode
        mlm, adapters = mlm_settings(method)
        params = {**_model_params(suite), "language": language, "mode": mode, "mlm": mlm, "adapters": adapters,
                  "text": suite.data.get("text")}
        name = f"mlm/{language}/{mode}"
        if (mlm, adapters) != mlm_settings(mlm_variant(mode).name):
            name += f"/{method}"
        return add(Job.make("mlm", name, params, base_deps))

    text_dir = suite.data.get("text")

    def has_text(language: str) -> bool:
        """Adapter methods need a language adapter, hence MLM text, for every target."""
        if text_dir is None or suite.data.get("kind") == "synthetic" or not Path(text_dir).is_dir():
            return True  # nothing to check against (validation reports a missing folder)
        return (Path(text_dir) / f"{language}.txt").exists()

    for task in suite.tasks:
        for method in suite.methods[task]:
            variant = get_variant(method)
            hyper = suite.hyper(method)
            mode = variant.mlm_mode
            for source in suite.sources[task]:
                if mode is not None and not has_text(source):
                    continue
                if variant.full_model_mlm == "target":
                    pairs = [(target, seed) for target in suite.targets[task] if has_text(target) for seed in suite.mlm_trg_seeds]
                else:
                    pairs = [(None, seed) for seed in suite.seeds]
                for mlm_target, seed in pairs:
                    deps = list(base_deps)
                    if mode is not None:
                        deps.append(mlm_job(mlm_target if variant.full_model_mlm == "target" else source, method).id)
                    params = {**_model_params(suite), "task": task, "method": method, "source": source, "seed": seed,
                              "hyper": hyper[task], "adapters": _adapter_params(hyper["adapters"], method), "data": _task_data(suite, task),
                              "mlm_target": mlm_target}
                    suffix = f"->{mlm_target}" if mlm_target else ""
                    task_job = add(Job.make("task", f"{task}/{source}{suffix}/{method}/seed{seed}", params, tuple(deps)))
                    targets = [mlm_target] if mlm_target else suite.targets[task]
                    if mode is not None:  # MAD-X variants and MLM baselines need the target's text
                        targets = [t for t in targets if has_text(t)]
                    for target in targets:
                        eval_deps = [*base_deps, task_job.id]
                        if variant.language_adapters:
                            eval_deps.append(mlm_job(target, method).id)
                        eval_params = {**params, "target": target, "mlm_target": mlm_target}
                        add(Job.make("eval", f"eval/{task}/{source}->{target}/{method}/seed{seed}", eval_params, tuple(eval_deps)))
    order = {"prepare": 0, "mlm": 1, "task": 2, "eval": 3}
    return sorted(jobs.values(), key=lambda j: (order[j.kind], j.name))


def _task_data(suite: Suite, task: str) -> dict[str, Any]:
    return {k: suite.data.get(k) for k in get_task(task).data_fields} | {"kind": suite.data.get("kind", "files")}


def count_by_kind(jobs: list[Job]) -> Counter:
    return Counter(job.kind for job in jobs)
