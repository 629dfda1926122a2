"""A worker: claim a ready job, run it, commit its result, repeat until the suite is finished.

Every process started by ``accelerate launch``/``torchrun`` (or by hand) is one worker; they
share work only through the run directory (``bench.store``), so any number of them, on any
number of nodes with a shared filesystem, can join or die at any moment. A job runs when all its
dependencies have results; a failure records the traceback, blocks the job's dependents for
this run, and the next run retries it. ``run.json`` and every ``result.json`` are written through
the schema in ``bench.results``.

Living and dying cleanly:

* SIGTERM / SIGINT stop the job in hand: its workspace is removed, its claim released (the job
  runs again later) and nothing half is written; then the worker exits (143 / 130).
* A worker started by a launcher (torchrun, accelerate launch, srun) dies with it (Linux:
  ``PR_SET_PDEATHSIG``), so killing a launcher leaves no orphans holding jobs; one started by hand
  (e.g. under nohup) outlives its shell.
* A full disk or read-only filesystem (ENOSPC, EDQUOT, EROFS) stops the worker with one message
  naming the path, instead of failing every ready job in turn; nothing committed is touched.
* So does a sticky CUDA/NCCL error (the job is released, not marked failed) or too many failures
  in a row (``bench.failures``): one sick device cannot fail the whole run.
* On a GPU node the worker binds its device before any CUDA work (``bench.devices.bind_worker_device``:
  ``LOCAL_RANK`` or ``SLURM_LOCALID``, leased by GPU UUID), so its context, its Triton launches and
  its allocations are all there; between jobs of different shapes it returns the finished job's
  cached memory (``JobHygiene``).
* A run directory belongs to one suite (``plan.json``): another suite is refused unless
  ``add_jobs`` (``--add``) is given, which adds its jobs to the plan.
* A finished run is recognised read-only: rerunning it needs no write access.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from bench.devices import bind_worker_device, global_rank, worker_allocator, worker_device
from bench.execute import RUNNERS, JobContext, is_full_model_job
from bench.failures import FailureGuard, WorkerUnhealthy, max_consecutive_from_env
from bench.hygiene import JobHygiene
from bench.graph import Job, build_graph
from bench.progress import job_output
from bench.results import SCHEMA_VERSION, Cost, JobResult, Provenance, RunInfo, WorkerInfo, collect_provenance
from bench.scheduler import CostModel, JobQueue
from bench.store import ClaimLost, RunDirectoryError, RunStore, is_storage_error
from bench.suite import Suite, compile_setting
from madx.atomic import atomic_write_json, atomic_write_text
from madx.provenance import now as _now
from madx.runtime import Runtime


ERROR_MESSAGE_CHARS = 500  # error.json's message; the traceback beside it carries the detail


class WorkerStopped(BaseException):
    """Raised in the worker's main thread by SIGTERM/SIGINT: unwinds the job without recording a failure."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StorageFull(RuntimeError):
    """The run directory's filesystem refused a write (full, over quota, read-only)."""


def _raise_stop(signum, frame):
    raise WorkerStopped(signum)


def install_lifecycle() -> None:
    """Stop cleanly on SIGTERM/SIGINT, and get SIGTERM when the parent (launcher) dies."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    # SLURM's --signal=USR1@T without B: reaches the worker itself; the training loop checkpoints the
    # step in flight first (madx.train), then this handler stops the worker as SIGTERM would
    signal.signal(signal.SIGUSR1, _raise_stop)
    # Only a launcher's child (torchrun / accelerate launch set these) dies with its parent: a worker
    # started by hand from a shell, e.g. under nohup, must outlive that shell.
    launched = any(k in os.environ for k in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "SLURM_PROCID"))
    if launched and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass  # no libc by that name: workers then outlive a killed launcher, as before
        if os.getppid() == 1:  # the parent died before prctl took effect
            raise WorkerStopped(signal.SIGTERM)


def bounded_message(error: BaseException) -> str:
    text = f"{type(error).__name__}: " + " ".join(str(error).split())
    return text if len(text) <= ERROR_MESSAGE_CHARS else text[: ERROR_MESSAGE_CHARS - 1] + "…"


def worker_identity() -> tuple[int, str]:
    """(global rank, "host:pid:rankN"): the rank from ``RANK`` (torchrun, accelerate) or ``SLURM_PROCID``
    (srun), else the local rank; only spreads workers over the ready list and names them in logs."""
    rank = global_rank()
    return rank, f"{socket.gethostname()}:{os.getpid()}:rank{rank}"


class SuiteMismatch(ValueError):
    pass


def check_plan(suite: Suite, out_dir: Path, jobs: list[Job], add_jobs: bool) -> list[dict] | None:
    """The plan already in ``out_dir`` (None if there is none); refuses another suite's directory. The same
    suite grown (more seeds, a new method, a newer madx with more jobs) runs into it: its earlier jobs stay."""
    path = out_dir / "plan.json"
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SuiteMismatch(f"{path} is not a readable plan ({error}); move the run directory aside") from None
    ours = {j.id for j in jobs}
    theirs = {j["id"] for j in plan.get("jobs", [])}
    if plan.get("suite") != suite.name and not ours <= theirs:
        if not add_jobs:
            raise SuiteMismatch(
                f"{out_dir} holds suite {plan.get('suite')!r} ({len(theirs)} jobs); this is suite {suite.name!r} with "
                f"{len(ours - theirs)} job(s) not in its plan. Use another --out, or --add to add them to this run")
    return plan.get("jobs", [])


def write_run_files(suite: Suite, store: RunStore, jobs: list[Job], provenance: Provenance,
                    previous: list[dict] | None = None) -> None:
    plan = [{"id": j.id, "kind": j.kind, "name": j.name, "deps": list(j.deps)} for j in jobs]
    known = {j["id"] for j in plan}
    plan = [j for j in previous or [] if j["id"] not in known] + plan  # earlier jobs (another suite's with --add) stay
    atomic_write_json(store.root / "plan.json", {"suite": suite.name, "jobs": plan})
    suite_bytes = Path(suite.path).read_bytes() if suite.path is not None else None
    if suite_bytes is not None:
        atomic_write_text(store.root / "suite.yaml", suite_bytes.decode("utf-8"))
    run_file = store.root / "run.json"
    if not run_file.exists():
        info = RunInfo(
            schema=SCHEMA_VERSION, suite=suite.name, suite_file=str(suite.path) if suite.path is not None else None,
            suite_sha256=hashlib.sha256(suite_bytes).hexdigest() if suite_bytes is not None else None,
            created=_now(), command=tuple(sys.argv), model=suite.model, notes=tuple(suite.notes),
            provenance=provenance)
        atomic_write_json(run_file, info.to_dict())


def run_worker(suite: Suite, out_dir: str | Path, progress: Callable[[str], None] = print,
               lease_seconds: float | None = None, max_jobs: int | None = None, add_jobs: bool = False) -> dict[str, int]:
    """Work on the suite until nothing is left that this worker can run; returns the status counts.
    Raises WorkerStopped (a signal), StorageFull, SuiteMismatch or RunDirectoryError."""
    rank, worker = worker_identity()
    out_dir = Path(out_dir)
    jobs = build_graph(suite)
    jobs_by_id = {job.id: job for job in jobs}
    previous = check_plan(suite, out_dir, jobs, add_jobs)
    if previous is not None and (out_dir / "jobs").is_dir():  # a finished run is recognised without writing anything
        store = RunStore(out_dir, create=False)
        if all(store.is_done(j.id) for j in jobs):
            summary = status_counts(store, jobs)
            progress(f"[{worker}] nothing to do: all {len(jobs)} jobs of {suite.name} are done in {out_dir}")
            return summary
    try:
        store = RunStore(out_dir)
        _check_writable(store.root)
    except OSError as error:
        raise RunDirectoryError(error.errno, f"cannot write the run directory {out_dir}: "
                                             f"{error.strerror or error}") from None
    runtime_hyper = suite.hyperparameters["runtime"]
    heartbeat = lease_seconds or runtime_hyper["lease_seconds"]
    # the device this worker owns for its life: made current before any CUDA work, leased by its UUID
    # in RUN/devices/<host>/ (bench.devices); None without CUDA
    bound = bind_worker_device(store.root, worker)
    if bound is not None:
        device = f"cuda:{bound.index}"
    else:
        device = "cpu"
        # fixed threads per worker: results must not depend on how many workers share the machine
        torch.set_num_threads(runtime_hyper["cpu_threads_per_worker"])
    check_precision(runtime_hyper["mixed_precision"], device, suite)
    runtime = Runtime.local(device, runtime_hyper["mixed_precision"], compile=compile_setting(runtime_hyper["compile"]))
    context = JobContext(store, jobs_by_id, runtime, store.root / "tb", lambda line: progress(f"[{worker}] {line}"))
    guard = FailureGuard(worker, device, max_consecutive_from_env())
    hygiene = JobHygiene(runtime.device)
    provenance = collect_provenance()  # once: the code this process runs is the code it imported
    if rank == 0:
        write_run_files(suite, store, jobs, provenance, previous)
    started = time.time()
    queue = JobQueue(store, jobs, rank, started, cost=CostModel.for_suite(suite).seconds)  # bench.scheduler
    ran = 0
    while (claimed := queue.next_claim(worker, heartbeat)) is not None:
        job, claim = claimed
        hygiene.before(job)
        try:
            _run_one(job, store, claim, context, worker, provenance, runtime_hyper["zero_group_size"], runtime_hyper,
                     guard)
            guard.succeeded()
            queue.finished(job)
        except (StorageFull, WorkerUnhealthy):
            raise
        except ClaimLost as error:
            progress(f"[{worker}] {error}")
        except Exception as error:
            queue.failed(job)
            guard.failed(job.name, error)  # raises WorkerUnhealthy at K failures in a row
        finally:
            claim.release()
            for where, why in hygiene.new_probe_failures().items():
                progress(f"[{worker}] WARNING kernel probe failed, auto runs the reference: {where}: {why}")
        ran += 1
        if max_jobs is not None and ran >= max_jobs:
            break
    summary = queue.counts()
    progress(f"[{worker}] finished: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return summary


def _run_in_zero_group(job: Job, context: JobContext, workspace: Path, processes: int, runtime_hyper: dict) -> dict:
    """Run ``job`` over ``processes`` new processes with DeepSpeed ZeRO (``bench.zero_job``). On GPUs
    the group gets a lease on ``processes`` devices (this worker's own and free ones, ``bench.devices``)
    and sees only those; on CPU it shares the machine's cores."""
    atomic_write_json(workspace / "job.json", zero_group_spec(job, context.jobs_by_id, context.store.root, runtime_hyper))
    allocator = worker_allocator(context.store.root)  # None without devices
    lease = None
    if allocator is not None:
        lease = allocator.acquire(processes, job.name, setting="hyperparameters.runtime.zero_group_size")
        torch.cuda.empty_cache()  # the group's rank 0 shares this worker's device
    try:
        # --standalone: the group's agent binds its own rendezvous store on a free port (c10d, localhost:0)
        # and hands it to its ranks, so groups starting together cannot pick the same port
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   "-m", "bench.zero_job", str(workspace / "job.json")]
        bound = worker_device(context.store.root)
        visible = None if lease is None else lease.devices if bound is None else bound.visible_names(lease.devices)
        env = zero_group_env(os.environ, visible)
        # torchrun holds the lease's descriptors too: if this worker dies, the devices stay leased while the group runs
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              pass_fds=() if lease is None else lease.fds) as group:
            try:
                stdout, stderr = group.communicate()
            except BaseException:  # stopped: torchrun stops its ranks (in their own sessions) on SIGTERM, not on SIGKILL
                group.send_signal(signal.SIGTERM)
                try:
                    group.communicate(timeout=60)  # torchrun gives its ranks 30 s
                except subprocess.TimeoutExpired:
                    group.kill()
                raise
    finally:
        if lease is not None:
            lease.release()
    if group.returncode != 0:
        raise RuntimeError(f"ZeRO group for {job.name} failed (exit {group.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    print(stdout, end="")  # into the job's log (job_output)
    return json.loads((workspace / "output.json").read_text(encoding="utf-8"))


def zero_group_spec(job: Job, jobs_by_id: dict[str, Job], run_dir: Path, runtime_hyper: dict) -> dict:
    """What ``bench.zero_job`` reads: the job, its dependencies, the run directory and the runtime settings."""
    return {
        "job": dataclasses.asdict(job),
        "deps": [dataclasses.asdict(jobs_by_id[d]) for d in job.deps],
        "run_dir": str(run_dir),
        "zero_stage": runtime_hyper["zero_stage"],
        "mixed_precision": runtime_hyper["mixed_precision"],
        "compile": compile_setting(runtime_hyper["compile"]),
        "cpu_threads": runtime_hyper["cpu_threads_per_worker"],
    }


def zero_group_env(environ: dict[str, str], devices: tuple[str, ...] | None) -> dict[str, str]:
    """The environment of a ZeRO group's ``torchrun``: the worker's, less its own launcher's
    rendezvous (the group forms its own), and only the group's ``devices`` visible (None: CPU)."""
    env = {k: v for k, v in environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                                         "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")}
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env


class PrecisionUnsupported(ValueError):
    pass


def check_precision(mixed_precision: str, device: str, suite: Suite) -> None:
    """bf16 on a GPU without bf16 (before Ampere) is a configuration error, said before any job runs."""
    if mixed_precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(torch.device(device))
        raise PrecisionUnsupported(
            f"suite {suite.name}: hyperparameters.runtime.mixed_precision = bf16, but {name} has no bf16 support; "
            f"set it to fp16 or no")


class JobOutOfMemory(RuntimeError):
    pass


def out_of_memory(job: Job, device: torch.device, error: BaseException) -> JobOutOfMemory:
    """A CUDA OOM as the job's failure: its batch size and the peak memory, so the fix is obvious."""
    hyper = job.params.get("hyper") or job.params.get("mlm") or {}
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    torch.cuda.empty_cache()  # the worker goes on with other jobs
    return JobOutOfMemory(
        f"{job.name}: out of memory at batch_size {hyper.get('batch_size')} (peak {peak / 2**30:.1f} GiB of "
        f"{total / 2**30:.1f} GiB): lower the batch size for this method in the suite's overrides "
        f"({str(error).splitlines()[0][:120]})")


def _check_writable(root: Path) -> None:
    probe = root / f".write-probe-{os.getpid()}"
    probe.write_text("")
    probe.unlink()


def _storage_full(error: OSError, job: Job) -> StorageFull:
    where = error.filename or "the run directory"
    return StorageFull(f"cannot write {where} ({errno.errorcode.get(error.errno, error.errno)}: {error.strerror}) "
                       f"while running {job.name}; free space or fix permissions, then rerun: finished jobs are kept")


def _run_one(job: Job, store: RunStore, claim, context: JobContext, worker: str, provenance: Provenance,
             zero_group_size: int = 1, runtime_hyper: dict | None = None, guard: FailureGuard | None = None) -> None:
    workspace = None
    try:
        store.clean_workspaces(claim)
        workspace = store.new_workspace(job.id)
        context.progress(f"start {job.name}")
        started_at = _now()
        start = time.perf_counter()
        try:
            with job_output(store.job_dir(job.id) / "log.txt"):  # third-party chatter: the job's log, not the screen
                if zero_group_size > 1 and is_full_model_job(job):
                    output = _run_in_zero_group(job, context, workspace, zero_group_size, runtime_hyper)
                else:
                    output = RUNNERS[job.kind](job, context, workspace)
            wall = time.perf_counter() - start
            result = job_result(job, output, context.runtime.describe(), worker, provenance, started_at, wall)
        except Exception as error:
            if is_storage_error(error):
                raise _storage_full(error, job) from error
            if guard is not None:
                guard.check(job.name, error)  # a sticky device error: not the job's failure, nothing recorded
            if isinstance(error, torch.OutOfMemoryError):
                error = out_of_memory(job, context.runtime.device, error)
            store.record_error(claim, {"job": job.name, "worker": worker, "error": bounded_message(error),
                                       "type": type(error).__name__, "traceback": traceback.format_exc(limit=30),
                                       "at": _now()})
            context.progress(f"FAILED {job.name}: {bounded_message(error)}")
            raise
        store.commit(claim, workspace, result.to_dict())
        workspace = None
    except OSError as error:
        if is_storage_error(error):
            raise _storage_full(error, job) from error
        raise
    finally:
        if workspace is not None:  # stopped, failed or out of space: leave no half workspace behind
            shutil.rmtree(workspace, ignore_errors=True)
    context.progress(f"done {job.name} in {wall:.1f}s {json.dumps(_short(result.metrics))}")


def job_result(job: Job, output: dict, device: str, worker: str, provenance: Provenance, started_at: str,
               wall: float) -> JobResult:
    """A job's output (``bench.execute``'s metrics, train, cost) as the schema's record."""
    reported = dict(output.get("cost", {}))
    unknown = sorted(set(reported) - set(Cost.FROM_JOB))
    if unknown:
        raise ValueError(f"job kind {job.kind!r} reports cost {', '.join(unknown)}, which bench.results.Cost does not "
                         "name: add the field there (and to the report, if it should show it)")
    train = output.get("train")
    if isinstance(train, dict) and "non_pad_fraction" in train:
        reported.setdefault("non_pad_fraction", train["non_pad_fraction"])
    cost = {"device": device, "wall_s": wall, **reported, "job_wall_s": wall, "device_hours": wall / 3600}
    seed = job.params.get("seed")
    record = {
        "schema": SCHEMA_VERSION,
        "job": {"id": job.id, "kind": job.kind, "name": job.name, "params": job.params, "deps": list(job.deps)},
        "status": "done",
        "metrics": output.get("metrics", {}),
        "train": train,
        "cost": cost,
        "started_at": started_at,
        "finished_at": _now(),
        "worker": WorkerInfo.parse(worker).to_dict(),
        "provenance": dataclasses.replace(provenance, seed=seed if type(seed) is int else None).to_dict(),
    }
    return JobResult.from_dict(record, source=f"the result of {job.name}")  # checked before it is written


def _short(metrics: dict) -> dict:
    return {k: round(v, 2) for k, v in metrics.items() if isinstance(v, (int, float)) and k in ("f1", "exact_match", "loss")}


def status_counts(store: RunStore, jobs: list[Job] | list[dict]) -> dict[str, int]:
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for job in jobs:
        job_id = job.id if isinstance(job, Job) else job["id"]
        if store.is_done(job_id):
            counts["done"] += 1
        elif store.owner(job_id).state == "held":
            counts["running"] += 1
        elif store.error(job_id) is not None:
            counts["failed"] += 1
        else:
            counts["pending"] += 1
    return counts
