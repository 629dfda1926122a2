"""The run directory is the state: one folder per job id.

    RUN/run.json                      provenance of the run (written once)
    RUN/suite.yaml                    the suite as run
    RUN/jobs/<id>/result.json         exists  <=>  the job is done (written atomically, last)
    RUN/jobs/<id>/artifacts/          the job's outputs (adapters, models), moved in before result.json
    RUN/jobs/<id>/claim               a worker holds the job; its mtime is the heartbeat
    RUN/jobs/<id>/error.json          the last failure's traceback (a rerun retries the job)
    RUN/tb/<job name>/                tensorboard events

Claiming is an exclusive create of ``claim`` (atomic on local and NFSv3+ filesystems). A claim
whose heartbeat is older than the lease, or whose process is gone (same host), is stale: it is
broken by renaming it away — only one worker's rename succeeds — and then claimed afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from madx.atomic import atomic_write_json


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def result_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "result.json"

    def is_done(self, job_id: str) -> bool:
        return self.result_path(job_id).exists()

    def read_result(self, job_id: str) -> dict[str, Any]:
        return json.loads(self.result_path(job_id).read_text(encoding="utf-8"))

    def artifacts(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "artifacts"

    def error(self, job_id: str) -> dict[str, Any] | None:
        path = self.job_dir(job_id) / "error.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # -- claims ---------------------------------------------------------------------------
    def try_claim(self, job_id: str, worker: str, lease_seconds: float) -> "Claim | None":
        directory = self.job_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._break_if_stale(path, lease_seconds):
                    return None
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"worker": worker, "host": socket.gethostname(), "pid": os.getpid(), "claimed_at": time.time()}, handle)
            if self.is_done(job_id):  # finished by another worker between our check and our claim
                path.unlink(missing_ok=True)
                return None
            return Claim(path, lease_seconds)
        return None

    def _break_if_stale(self, path: Path, lease_seconds: float) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
            owner = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (FileNotFoundError, json.JSONDecodeError):
            owner, age = {}, 0.0
            if not path.exists():
                return True
        dead = owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid"))
        if age <= lease_seconds and not dead:
            return False
        try:
            os.rename(path, path.with_name(f"claim.stale.{uuid.uuid4().hex[:8]}"))
        except FileNotFoundError:
            pass  # another worker broke it first; try to claim
        for stale in path.parent.glob("claim.stale.*"):
            stale.unlink(missing_ok=True)
        return True

    def claim_owner(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.job_dir(job_id) / "claim").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # -- results --------------------------------------------------------------------------
    def new_workspace(self, job_id: str) -> Path:
        workspace = self.job_dir(job_id) / f"work-{uuid.uuid4().hex[:8]}"
        workspace.mkdir(parents=True)
        return workspace

    def commit(self, job_id: str, workspace: Path, result: dict[str, Any]) -> None:
        """Move the workspace in as ``artifacts`` and write ``result.json`` last."""
        artifacts = self.artifacts(job_id)
        if artifacts.exists():  # left by a worker that died between these two steps
            shutil.rmtree(artifacts)
        os.rename(workspace, artifacts)
        atomic_write_json(self.result_path(job_id), result)
        (self.job_dir(job_id) / "error.json").unlink(missing_ok=True)

    def record_error(self, job_id: str, error: dict[str, Any]) -> None:
        atomic_write_json(self.job_dir(job_id) / "error.json", error)

    def clean_workspaces(self, job_id: str) -> None:
        for workspace in self.job_dir(job_id).glob("work-*"):
            shutil.rmtree(workspace, ignore_errors=True)


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claim:
    """An exclusive hold on a job, kept fresh by a heartbeat thread until released."""

    def __init__(self, path: Path, lease_seconds: float):
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(max(lease_seconds / 4, 0.5),), daemon=True)
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)
