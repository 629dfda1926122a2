"""A worker: claim a ready job, run it, commit its result, repeat until the suite is finished.

Every process started by ``accelerate launch``/``torchrun`` (or by hand) is one worker; they
share work only through the run directory (``bench.store``), so any number of them, on any
number of nodes with a shared filesystem, can join or die at any moment. A job runs when all its
dependencies have results; a failure records the traceback, blocks the job's dependents for
this run, and the next run retries it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from bench.execute import RUNNERS, JobContext, is_full_model_job
from bench.graph import Job, build_graph
from bench.store import RunStore
from bench.suite import Suite, compile_setting
from madx.atomic import atomic_write_json, atomic_write_text
from madx.provenance import now as _now
from madx.provenance import provenance
from madx.runtime import Runtime


def worker_identity() -> tuple[int, str]:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    return rank, f"{socket.gethostname()}:{os.getpid()}:rank{rank}"


def write_run_files(suite: Suite, store: RunStore, jobs: list[Job]) -> None:
    plan = [{"id": j.id, "kind": j.kind, "name": j.name, "deps": list(j.deps)} for j in jobs]
    atomic_write_json(store.root / "plan.json", {"suite": suite.name, "jobs": plan})
    if suite.path is not None:
        atomic_write_text(store.root / "suite.yaml", Path(suite.path).read_text(encoding="utf-8"))
    run_file = store.root / "run.json"
    if not run_file.exists():
        atomic_write_json(run_file, {"suite": suite.name, "started_at": _now(), "notes": list(suite.notes),
                                     "model": suite.model, **provenance()})


def run_worker(suite: Suite, out_dir: str | Path, progress: Callable[[str], None] = print,
               lease_seconds: float | None = None, max_jobs: int | None = None) -> dict[str, int]:
    rank, worker = worker_identity()
    store = RunStore(out_dir)
    jobs = build_graph(suite)
    jobs_by_id = {job.id: job for job in jobs}
    if rank == 0:
        write_run_files(suite, store, jobs)
    runtime_hyper = suite.hyperparameters["runtime"]
    lease = lease_seconds or runtime_hyper["lease_seconds"]
    if torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    else:
        device = "cpu"
        # fixed threads per worker: results must not depend on how many workers share the machine
        torch.set_num_threads(runtime_hyper["cpu_threads_per_worker"])
    runtime = Runtime.local(device, runtime_hyper["mixed_precision"], compile=compile_setting(runtime_hyper["compile"]))
    context = JobContext(store, jobs_by_id, runtime, store.root / "tb", lambda line: progress(f"[{worker}] {line}"))
    started = time.time()
    failed_here: set[str] = set()
    ran = 0
    while True:
        pending = [j for j in jobs if not store.is_done(j.id)]
        if not pending:
            break
        failed = failed_here | {j.id for j in pending if _failed_this_run(store, j.id, started)}
        blocked = _blocked(pending, failed)
        candidates = [j for j in pending if j.id not in failed and j.id not in blocked and all(store.is_done(d) for d in j.deps)]
        if candidates:
            offset = rank % len(candidates)  # spread workers over the ready list to avoid claim collisions
            candidates = candidates[offset:] + candidates[:offset]
        claimed = None
        for job in candidates:
            claim = store.try_claim(job.id, worker, lease)
            if claim is not None:
                claimed = (job, claim)
                break
        if claimed is None:
            running = [j for j in pending if store.claim_owner(j.id) is not None]
            if not running and not candidates:
                break  # what is left is blocked by failures
            time.sleep(0.5)
            continue
        job, claim = claimed
        try:
            _run_one(job, store, context, worker, runtime_hyper["zero_group_size"], runtime_hyper)
        except Exception:
            failed_here.add(job.id)
        finally:
            claim.release()
        ran += 1
        if max_jobs is not None and ran >= max_jobs:
            break
    summary = status_counts(store, jobs)
    progress(f"[{worker}] finished: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return summary


def _failed_this_run(store: RunStore, job_id: str, started: float) -> bool:
    path = store.job_dir(job_id) / "error.json"
    try:
        return path.stat().st_mtime >= started
    except FileNotFoundError:
        return False


def _blocked(pending: list[Job], failed: set[str]) -> set[str]:
    blocked: set[str] = set()
    changed = True
    while changed:
        changed = False
        for job in pending:
            if job.id not in blocked and any(d in failed or d in blocked for d in job.deps):
                blocked.add(job.id)
                changed = True
    return blocked


def _run_in_zero_group(job: Job, context: JobContext, workspace: Path, processes: int, runtime_hyper: dict) -> dict:
    """Run ``job`` over ``processes`` new processes with DeepSpeed ZeRO (``bench.zero_job``)."""
    spec = {
        "job": dataclasses.asdict(job),
        "deps": [dataclasses.asdict(context.jobs_by_id[d]) for d in job.deps],
        "run_dir": str(context.store.root),
        "zero_stage": runtime_hyper["zero_stage"],
        "mixed_precision": runtime_hyper["mixed_precision"],
        "compile": compile_setting(runtime_hyper["compile"]),
        "cpu_threads": runtime_hyper["cpu_threads_per_worker"],
    }
    atomic_write_json(workspace / "job.json", spec)
    with socket.socket() as probe:  # a free port for this group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "bench.zero_job", str(workspace / "job.json")]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                                           "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")}
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"ZeRO group for {job.name} failed (exit {completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    for line in completed.stdout.splitlines():
        context.progress(line)
    return json.loads((workspace / "output.json").read_text(encoding="utf-8"))


def _run_one(job: Job, store: RunStore, context: JobContext, worker: str, zero_group_size: int = 1,
             runtime_hyper: dict | None = None) -> None:
    store.clean_workspaces(job.id)
    workspace = store.new_workspace(job.id)
    context.progress(f"start {job.name}")
    start = time.perf_counter()
    try:
        if zero_group_size > 1 and is_full_model_job(job):
            output = _run_in_zero_group(job, context, workspace, zero_group_size, runtime_hyper)
        else:
            output = RUNNERS[job.kind](job, context, workspace)
    except Exception as error:
        store.record_error(job.id, {"job": job.name, "worker": worker, "error": repr(error),
                                    "traceback": traceback.format_exc(), "at": _now()})
        context.progress(f"FAILED {job.name}: {error!r}")
        raise
    wall = time.perf_counter() - start
    cost = {"device": context.runtime.describe(), **output.get("cost", {})}
    cost.setdefault("wall_s", wall)
    cost["job_wall_s"] = wall
    cost["device_hours"] = wall / 3600
    result = {
        "schema": 1,
        "job": {"id": job.id, "kind": job.kind, "name": job.name, "params": job.params, "deps": list(job.deps)},
        "metrics": output.get("metrics", {}),
        "train": output.get("train"),
        "cost": cost,
        "provenance": {"worker": worker, "finished_at": _now()},
    }
    store.commit(job.id, workspace, result)
    context.progress(f"done {job.name} in {wall:.1f}s {json.dumps(_short(output.get('metrics', {})))}")


def _short(metrics: dict) -> dict:
    return {k: round(v, 2) for k, v in metrics.items() if isinstance(v, (int, float)) and k in ("f1", "exact_match", "loss")}


def status_counts(store: RunStore, jobs: list[Job] | list[dict]) -> dict[str, int]:
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for job in jobs:
        job_id = job.id if isinstance(job, Job) else job["id"]
        if store.is_done(job_id):
            counts["done"] += 1
        elif store.claim_owner(job_id) is not None:
            counts["running"] += 1
        elif store.error(job_id) is not None:
            counts["failed"] += 1
        else:
            counts["pending"] += 1
    return counts
