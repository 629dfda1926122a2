"""The run directory is the state: one folder per job id.

    RUN/run.json                      provenance of the run (written once)
    RUN/plan.json                     the suite this directory belongs to and its jobs
    RUN/suite.yaml                    the suite as run
    RUN/jobs/<id>/result.json         a valid one  <=>  the job is done (written atomically, last)
    RUN/jobs/<id>/artifacts/          the job's outputs (adapters, models), moved in before result.json
    RUN/jobs/<id>/lock                held (flock) by the worker that owns the job; never deleted
    RUN/jobs/<id>/claim               who owns it: worker, host, pid, fencing token; mtime = heartbeat
    RUN/jobs/<id>/error.json          the last failure: a bounded message and the traceback
    RUN/jobs/<id>/quarantine/         result files that failed validation, kept for inspection
    RUN/index/done/<id>               empty marker, created by ``commit`` after result.json (a hint: see below)
    RUN/index/failed/<id>@<time_ns>   empty marker, created by ``record_error`` after error.json
    RUN/tb/<job name>/                tensorboard events

Ownership is a kernel lock, not a lease. A worker owns a job while it holds an exclusive
``flock`` on ``jobs/<id>/lock``; the kernel (or the NFSv4 server, for a shared filesystem)
releases it when the process dies, however it dies. Why a lock rather than a lease file with a
fencing token:

* a lease can expire under a live worker (SIGSTOP, a VM pause, a filesystem stall longer than
  the lease); another worker then takes the job over and the first one, on waking, commits over
  it. A lock cannot be taken from a live process: the paused worker still owns the job when it
  wakes, and nobody else ran it. Exactly one owner at every moment.
* breaking a stale lease is a check-then-act race (two workers both "won" 2-12 % of the time);
  ``flock(LOCK_EX | LOCK_NB)`` is one atomic call.
* a dead worker's job is free at once, not a lease later.
The lock file is never unlinked: a worker that opened the old inode could otherwise lock it
while another locks a new file of the same name.

The ``claim`` file beside it says who holds the lock, for ``status`` and for humans, and carries
a fencing token that ``commit`` and ``release`` check, so that even where a filesystem lost a
lock (an NFS client cut off past its lease) an old owner cannot replace a newer owner's result,
delete its artifacts or its claim. Its mtime is refreshed by a heartbeat thread: a job whose
lock is held but whose heartbeat is old is shown as "running, no heartbeat" (paused or stuck).

A job is done only if its ``result.json`` parses and validates against ``bench.results``; a
file that does not (truncated, empty, edited by hand) is moved to ``quarantine/`` with the
reason, and the job runs again.

The index lets a worker follow a run of 10,000 jobs at the cost of what changed, not of the plan
(``bench.scheduler``): one ``stat`` of ``index/done/`` says whether any job finished since the last
look, one listing names them, and each new name costs one validation of its result.json. A marker
is a hint, never the truth: a marker without a valid result does not make a job done (``quarantine``
removes it), and a valid result without a marker (written by older code, or by an owner that died
between the two writes) is still found: by a scan of the job folders when a worker starts, and by
``try_claim``, which writes the missing marker when it finds the job done.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import JobResult, ResultSchemaError
from madx.atomic import atomic_write_json

# errors of the filesystem itself: the worker stops (with one message naming the path) instead of
# recording them as job failures and burning through every other ready job
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
PROBES_KEPT = 256  # lock descriptors kept open for the next claim attempt (bench.store.RunStore._lock)
FAILED_SEPARATOR = "@"  # index/failed/<job id>@<time_ns>: the time is in the name, so a listing is enough


class RunDirectoryError(OSError):
    """The run directory cannot be used (missing, not writable, full); names the path."""


class ClaimLost(RuntimeError):
    """This worker no longer owns the job (its fencing token is not the claim's): it must not touch it."""


def try_exclusive_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if missing), or None if another holds it.
    The caller unlocks and closes it; the kernel does both if the process dies."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_storage_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


class RunStore:
    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        if create:
            try:
                self.jobs_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise RunDirectoryError(error.errno, f"cannot create the run directory {self.jobs_dir}: "
                                                     f"{error.strerror}") from None
        elif not self.jobs_dir.is_dir():
            raise RunDirectoryError(errno.ENOENT, f"{self.root} is not a run directory (no {self.jobs_dir.name}/ in it)")
        self._valid: dict[str, tuple[int, int]] = {}  # job id -> (mtime_ns, size) of a result.json that validated
        self._jobs = str(self.jobs_dir)
        self._probes: dict[str, int] = {}  # job id -> an open fd of its lock file, found held by another
        self.done_index = self.root / "index" / "done"
        self.failed_index = self.root / "index" / "failed"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def result_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "result.json"

    def artifacts(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "artifacts"

    # -- results that prove themselves --------------------------------------------------------
    def is_done(self, job_id: str) -> bool:
        """Done = a result.json that parses and matches the schema. Validation is cached per file
        version (mtime, size), so polling thousands of jobs re-reads only files that changed."""
        path = self.result_path(job_id)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        if self._valid.get(job_id) == (stat.st_mtime_ns, stat.st_size):
            return True
        problem = self.result_problem(job_id)
        if problem is None:
            self._valid[job_id] = (stat.st_mtime_ns, stat.st_size)
            return True
        return False

    def result_problem(self, job_id: str) -> str | None:
        """Why this job's result.json is not a valid result (None if it is, or if there is none)."""
        path = self.result_path(job_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"not valid JSON ({error.__class__.__name__}: {str(error)[:120]})"
        try:
            result = JobResult.from_dict(data, source=path)
        except ResultSchemaError as error:
            return error.reason[:200]
        if result.job.id != job_id:
            return f"job.id is {result.job.id!r}, but the file lies in the folder of job {job_id!r}"
        return None

    def quarantine(self, job_id: str, reason: str) -> Path | None:
        """Move an invalid result.json aside (kept, with the reason), so the job runs again.
        Only the job's owner calls this. Returns where it went (None if it was gone already)."""
        folder = self.job_dir(job_id) / "quarantine"
        folder.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = folder / f"result.{stamp}.{uuid.uuid4().hex[:6]}.json"
        try:
            os.rename(self.result_path(job_id), target)
        except FileNotFoundError:
            return None
        target.with_suffix(".reason.txt").write_text(reason + "\n", encoding="utf-8")
        self._valid.pop(job_id, None)
        (self.done_index / job_id).unlink(missing_ok=True)  # done again only when a valid result is committed
        return target

    def quarantined(self, job_id: str) -> list[Path]:
        return sorted((self.job_dir(job_id) / "quarantine").glob("result.*.json"))

    def read_result(self, job_id: str) -> dict[str, Any]:
        return json.loads(self.result_path(job_id).read_text(encoding="utf-8"))

    def error(self, job_id: str) -> dict[str, Any] | None:
        path = self.job_dir(job_id) / "error.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
            return None

    # -- the index: cheap signals of what finished or failed -----------------------------------------
    def _mark(self, folder: Path, name: str) -> None:
        """Create the empty marker ``folder/name`` (the name appears atomically; its folder's mtime changes)."""
        try:
            fd = os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o666)
        except FileNotFoundError:  # a run directory from before the index
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)

    def done_marked(self) -> list[str]:
        """Job ids with a done marker (hints: check each with ``is_done``)."""
        try:
            return os.listdir(self.done_index)
        except FileNotFoundError:
            return []

    def failures_marked(self) -> list[tuple[str, int]]:
        """(job id, time_ns) of every recorded failure that is marked, in no order."""
        try:
            names = os.listdir(self.failed_index)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            job_id, _, stamp = name.rpartition(FAILED_SEPARATOR)
            if job_id and stamp.isdigit():
                found.append((job_id, int(stamp)))
        return found

    # -- ownership ------------------------------------------------------------------------------
    def try_claim(self, job_id: str, worker: str, heartbeat_seconds: float = 30.0) -> "Claim | None":
        """Own the job if nobody does (non-blocking); None if another worker owns it or it is done."""
        fd = self._lock(job_id)
        if fd is None:
            return None
        claim = Claim(self, job_id, fd, uuid.uuid4().hex, heartbeat_seconds)
        try:
            if self.is_done(job_id):  # finished by another worker between our look and our lock
                if not (self.done_index / job_id).exists():  # by older code, or its owner died before the marker
                    try:
                        self._mark(self.done_index, job_id)
                    except OSError:  # a repair only: a read-only run directory is still read
                        pass
                claim.release()
                return None
            if self.result_path(job_id).exists():  # is_done said it is no valid result
                self.quarantine(job_id, self.result_problem(job_id) or "not a valid result")
            atomic_write_json(claim.path, {"worker": worker, "host": socket.gethostname(), "pid": os.getpid(),
                                           "claimed_at": time.time(), "token": claim.token})
        except BaseException:
            claim.release()
            raise
        claim.start_heartbeat()
        return claim

    def _lock(self, job_id: str) -> int | None:
        """An fd holding the job's lock, or None if another process holds it. The descriptor of a lock
        found held is kept (up to ``PROBES_KEPT``), so that the next attempt on it is one ``flock`` call,
        not open, flock, close: an idle worker tries every ready job others hold at every poll."""
        path = os.path.join(self._jobs, job_id, "lock")
        fd = self._probes.pop(job_id, None)
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._probes[job_id] = fd
                return None
            try:
                kept, now = os.fstat(fd), os.stat(path)
                if (kept.st_dev, kept.st_ino) == (now.st_dev, now.st_ino):
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # the file was replaced behind the store's back (a folder removed by hand): lock the new one
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except FileNotFoundError:  # the job's first claim: one mkdir, not one per attempt
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._probes[job_id] = fd
            while len(self._probes) > PROBES_KEPT:
                os.close(self._probes.pop(next(iter(self._probes))))
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def owner(self, job_id: str) -> "Ownership":
        """Who owns the job now: held (a live lock), stale (a claim file, no lock) or free."""
        claim = self.claim_owner(job_id)
        lock = self.job_dir(job_id) / "lock"
        held = False
        if lock.exists():
            try:
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                fd = None
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    held = True
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        heartbeat_age = None
        try:
            heartbeat_age = time.time() - (self.job_dir(job_id) / "claim").stat().st_mtime
        except FileNotFoundError:
            pass
        state = "held" if held else "stale" if claim is not None else "free"
        return Ownership(state, claim, heartbeat_age)

    def claim_owner(self, job_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.job_dir(job_id) / "claim").read_text(encoding="utf-8"))
        except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    # -- results --------------------------------------------------------------------------------
    def new_workspace(self, job_id: str) -> Path:
        workspace = self.job_dir(job_id) / f"work-{uuid.uuid4().hex[:8]}"
        workspace.mkdir(parents=True)
        return workspace

    def commit(self, claim: "Claim", workspace: Path, result: dict[str, Any]) -> None:
        """Move the workspace in as ``artifacts`` and write ``result.json`` last, as the owner."""
        job_id = claim.job_id
        claim.check()
        artifacts = self.artifacts(job_id)
        if artifacts.exists():  # left by an owner that died between these two steps; no result names it
            shutil.rmtree(artifacts)
        os.rename(workspace, artifacts)
        claim.check()
        atomic_write_json(self.result_path(job_id), result)
        self._mark(self.done_index, job_id)  # after the result: a marker never precedes what it points at
        # a training job's mid-job checkpoint (bench.execute) is spent once its result is written
        shutil.rmtree(self.job_dir(job_id) / "checkpoint", ignore_errors=True)
        try:
            (self.job_dir(job_id) / "error.json").unlink()
        except FileNotFoundError:
            return
        for failed_id, stamp in self.failures_marked():  # it had failed before: its failure markers go too
            if failed_id == job_id:
                (self.failed_index / f"{job_id}{FAILED_SEPARATOR}{stamp}").unlink(missing_ok=True)

    def record_error(self, claim: "Claim", error: dict[str, Any]) -> None:
        claim.check()
        atomic_write_json(self.job_dir(claim.job_id) / "error.json", error)
        self._mark(self.failed_index, f"{claim.job_id}{FAILED_SEPARATOR}{time.time_ns()}")

    def clean_workspaces(self, claim: "Claim") -> None:
        claim.check()
        for workspace in self.job_dir(claim.job_id).glob("work-*"):
            shutil.rmtree(workspace, ignore_errors=True)


@dataclass(frozen=True)
class Ownership:
    state: str  # "held", "stale" or "free"
    claim: dict[str, Any] | None
    heartbeat_age: float | None

    def describe(self) -> str:
        who = "" if self.claim is None else f" by {self.claim.get('worker', '?')}"
        if self.state == "held":
            age = "" if self.heartbeat_age is None else f", heartbeat {self.heartbeat_age:.0f}s ago"
            return f"running{who}{age}"
        if self.state == "stale":
            return f"stale claim{who} (its process is gone; the job is free)"
        return "free"


class Claim:
    """The exclusive hold on one job: an flock'd file descriptor, a fencing token and a heartbeat."""

    def __init__(self, store: RunStore, job_id: str, fd: int, token: str, heartbeat_seconds: float):
        self.store, self.job_id, self.token = store, job_id, token
        self.path = store.job_dir(job_id) / "claim"
        self._fd: int | None = fd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(max(heartbeat_seconds / 4, 0.5),), daemon=True)

    def start_heartbeat(self) -> None:
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                os.utime(self.path)
            except OSError:
                return

    def holds(self) -> bool:
        data = self.store.claim_owner(self.job_id)
        return self._fd is not None and data is not None and data.get("token") == self.token

    def check(self) -> None:
        if not self.holds():
            raise ClaimLost(f"job {self.job_id}: this worker's claim was lost (the claim file no longer holds its "
                            f"token); it leaves the job alone")

    def release(self) -> None:
        """Drop the claim file if it is still ours, then the lock. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._fd is None:
            return
        try:
            if self.holds():
                self.path.unlink(missing_ok=True)
        finally:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
