"""Read a run directory through the result schema (``bench.results``).

The runner writes one ``RUN_DIR/jobs/<job_id>/result.json`` per finished job (atomically, so a file
that exists is complete) and ``RUN_DIR/run.json`` once. Everything else in a job directory
(``claim``, ``error.json``, artifacts) is not a result. A file that cannot be read, or that
``JobResult.from_dict`` / ``RunInfo.from_dict`` rejects, is skipped with an
:class:`UnreadableResultWarning` naming the file and the field, and listed in
:attr:`ResultStore.problems` so the report can say so.

Files in schema 1 (written before ``bench.results``) are read through its upgrade functions; they
are listed in :attr:`ResultStore.upgraded` because they record no per-job code version.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.results import JobResult, ResultSchemaError, RunInfo, schema_of

# The kinds the tables read, in display order; other kinds are kept for cost and status.
JOB_KINDS = ("prepare", "mlm", "task", "eval")


class UnreadableResultWarning(UserWarning):
    """A result.json or run.json that was skipped (unreadable, not JSON, or not the schema)."""


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the run directory
    reason: str


@dataclass(frozen=True)
class FailedJob:
    id: str  # the job directory's name
    name: str  # from error.json's "job" (or the id)
    error: str  # first line of error.json's "error" ("" if none)


@dataclass(frozen=True)
class JobDirStatus:
    """What the job directories say beyond finished results (for the report's status line)."""

    finished: int = 0
    failed: tuple[FailedJob, ...] = ()  # job dirs with error.json and no result.json
    claimed: tuple[str, ...] = ()  # job dirs with a claim and neither result nor error
    other: tuple[str, ...] = ()  # job dirs with none of those


@dataclass(frozen=True)
class ResultStore:
    run_dir: Path
    results: tuple[JobResult, ...]  # sorted by (kind, name, id)
    problems: tuple[Problem, ...]  # sorted by path
    run: RunInfo | None  # run.json (None if absent or unreadable)
    status: JobDirStatus = field(default_factory=JobDirStatus)
    upgraded: tuple[str, ...] = ()  # files read from an older schema (relative paths, sorted)

    def by_kind(self, kind: str) -> tuple[JobResult, ...]:
        return tuple(r for r in self.results if r.job.kind == kind)

    @property
    def by_id(self) -> dict[str, JobResult]:
        return {r.job.id: r for r in self.results}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _read(path: Path, root: Path, parse, problems: list[Problem], upgraded: list[str]) -> Any:
    """``parse(data, source)`` of a JSON file, or None (the problem recorded and warned about)."""
    rel = _relative(path, root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = parse(data, rel)
    except ResultSchemaError as error:
        reason = error.reason
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = f"unreadable: {type(error).__name__}: {error}"
    else:
        if schema_of(data) != record.schema:
            upgraded.append(rel)
        return record
    problems.append(Problem(rel, reason))
    warnings.warn(f"skipping {path}: {reason}", UnreadableResultWarning, stacklevel=3)
    return None


def _failed_job(job_dir: Path) -> FailedJob:
    try:
        data = json.loads((job_dir / "error.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    job = data.get("job")
    name = job.get("name") if isinstance(job, dict) else job
    error = str(data.get("error") or "").strip().splitlines()
    return FailedJob(job_dir.name, str(name or job_dir.name), error[0][:300] if error else "")


def load_store(run_dir: str | Path) -> ResultStore:
    """Read ``run_dir/jobs/*/result.json`` and ``run.json``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {root} does not exist")
    problems: list[Problem] = []
    upgraded: list[str] = []
    results: list[JobResult] = []
    failed, claimed, other = [], [], []
    jobs_dir = root / "jobs"
    job_dirs = sorted(p for p in jobs_dir.iterdir() if p.is_dir()) if jobs_dir.is_dir() else []
    for job_dir in job_dirs:
        path = job_dir / "result.json"
        if not path.is_file():
            if (job_dir / "error.json").exists():
                failed.append(_failed_job(job_dir))
            elif (job_dir / "claim").exists():
                claimed.append(job_dir.name)
            else:
                other.append(job_dir.name)
            continue
        result = _read(path, root, JobResult.from_dict, problems, upgraded)
        if result is not None:
            results.append(result)
    run = _read(root / "run.json", root, RunInfo.from_dict, problems, upgraded) if (root / "run.json").exists() else None
    results.sort(key=lambda r: (r.job.kind, r.job.name, r.job.id))
    problems.sort(key=lambda p: p.path)
    status = JobDirStatus(finished=len(results), failed=tuple(failed), claimed=tuple(claimed), other=tuple(other))
    return ResultStore(root, tuple(results), tuple(problems), run, status, tuple(sorted(upgraded)))


__all__ = [
    "FailedJob",
    "JOB_KINDS",
    "JobDirStatus",
    "Problem",
    "ResultStore",
    "UnreadableResultWarning",
    "load_store",
]
