"""Read a run directory's result store and aggregate evaluation results over seeds.

The runner writes one ``RUN_DIR/jobs/<job_id>/result.json`` per finished job (atomically, so a file
that exists is complete). Everything else in a job directory (``claim``, ``error.json``, artifacts)
is not a result. A result file that cannot be read or does not follow the schema is skipped with an
:class:`UnreadableResultWarning` naming the file, and listed in :attr:`ResultStore.problems` so the
report can say so.

Aggregation keeps every seed's number (:class:`Value.per_seed`) so that averages of averages (over
source languages, over target languages) can still give a standard deviation across seeds: the
sample std (ddof=1) of the per-seed averages, when every component has the same seeds.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SCHEMA_VERSION = 1
# The kinds the tables read; other kinds (the runner's "prepare") are kept for cost and status.
JOB_KINDS = ("prepare", "mlm", "task", "eval")

CellKey = tuple[str, str, str, str]  # (task, method, source, target)


class UnreadableResultWarning(UserWarning):
    """A result.json that was skipped (unreadable, not JSON, or not the expected schema)."""


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the run directory
    reason: str


@dataclass(frozen=True)
class JobResult:
    id: str
    kind: str
    name: str
    params: Mapping[str, Any]
    deps: tuple[str, ...]
    metrics: Mapping[str, Any]
    cost: Mapping[str, Any]
    provenance: Mapping[str, Any]
    path: str  # relative to the run directory

    @property
    def task(self) -> str | None:
        return self.params.get("task")

    @property
    def method(self) -> str | None:
        return self.params.get("method")

    @property
    def seed(self) -> Any:
        return self.params.get("seed")


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
    run_info: Mapping[str, Any]  # run.json ({} if absent)
    suite: Mapping[str, Any]  # suite.yaml ({} if absent)
    status: JobDirStatus = field(default_factory=JobDirStatus)

    def by_kind(self, kind: str) -> tuple[JobResult, ...]:
        return tuple(r for r in self.results if r.kind == kind)

    @property
    def by_id(self) -> dict[str, JobResult]:
        return {r.id: r for r in self.results}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _parse_result(data: Any, job_dir_name: str) -> JobResult:
    """Validate one result.json's content; raise ValueError with a short reason."""
    if not isinstance(data, dict):
        raise ValueError(f"top level is {type(data).__name__}, expected an object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ValueError(f"schema {schema!r} (this report reads schema {SCHEMA_VERSION})")
    job = data.get("job")
    if not isinstance(job, dict):
        raise ValueError("no 'job' object")
    kind = job.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"job.kind {kind!r} is not a job kind (e.g. {', '.join(JOB_KINDS)})")
    params = job.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("job.params is not an object")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError("no 'metrics' object")
    cost = data.get("cost") or {}
    provenance = data.get("provenance") or {}
    if not isinstance(cost, dict) or not isinstance(provenance, dict):
        raise ValueError("'cost' or 'provenance' is not an object")
    deps = job.get("deps") or []
    if not isinstance(deps, list):
        raise ValueError("job.deps is not a list")
    job_id = str(job.get("id") or job_dir_name)
    return JobResult(
        id=job_id, kind=kind, name=str(job.get("name") or job_id), params=params,
        deps=tuple(str(d) for d in deps), metrics=metrics, cost=cost, provenance=provenance, path="",
    )


def _read_mapping(path: Path, loader, problems: list[Problem], root: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = loader(path.read_text(encoding="utf-8"))
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported, not fatal
        reason = f"unreadable: {type(error).__name__}: {error}"
        problems.append(Problem(_relative(path, root), reason))
        warnings.warn(f"{path}: {reason}", UnreadableResultWarning, stacklevel=3)
        return {}
    return data if isinstance(data, dict) else {}


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
    """Read ``run_dir/jobs/*/result.json`` plus ``run.json`` and ``suite.yaml``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {root} does not exist")
    problems: list[Problem] = []
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
        rel = _relative(path, root)
        try:
            result = replace(_parse_result(json.loads(path.read_text(encoding="utf-8")), job_dir.name), path=rel)
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = str(error) if type(error) is ValueError else f"unreadable: {type(error).__name__}: {error}"
            problems.append(Problem(rel, reason))
            warnings.warn(f"skipping {path}: {reason}", UnreadableResultWarning, stacklevel=2)
            continue
        results.append(result)
    run_info = _read_mapping(root / "run.json", json.loads, problems, root)
    suite = _read_mapping(root / "suite.yaml", yaml.safe_load, problems, root)
    results.sort(key=lambda r: (r.kind, r.name, r.id))
    problems.sort(key=lambda p: p.path)
    status = JobDirStatus(finished=len(results), failed=tuple(failed), claimed=tuple(claimed), other=tuple(other))
    return ResultStore(root, tuple(results), tuple(problems), run_info, suite, status)


# ---------------------------------------------------------------------------------------------
# Aggregation


def _as_float(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Value:
    """A mean over seeds (or an average of such means) with what is known about its spread.

    mean: None = missing (no seed). std: sample std (ddof=1) across seeds; None when fewer than 2
    seeds, or (for averages) when the components do not share the same seeds. per_seed: seed ->
    value when each seed has exactly one value (for leaves) / every component has the same seeds
    (for averages); None otherwise. n_seeds_min/max: seeds per leaf cell (equal when balanced).
    n_parts: how many leaf cells an average is over (1 for a leaf).
    """

    mean: float | None
    std: float | None = None
    n_seeds_min: int = 0
    n_seeds_max: int = 0
    per_seed: Mapping[Any, float] | None = None
    n_parts: int = 0
    parts: tuple[str, ...] = ()  # labels of the components of an average (e.g. source languages)

    @property
    def missing(self) -> bool:
        return self.mean is None

    @property
    def n_seeds(self) -> int:
        """Seeds behind the number (the smaller count when components differ)."""
        return self.n_seeds_min

    def seeds_label(self) -> str:
        if self.n_seeds_min == self.n_seeds_max:
            return str(self.n_seeds_min)
        return f"{self.n_seeds_min}–{self.n_seeds_max}"


MISSING = Value(mean=None)


def _seed_sort_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else (1, str(seed))


def leaf_value(samples: Iterable[tuple[Any, float]]) -> Value:
    """Mean ± sample std of (seed, value) samples. Duplicate seeds are kept as separate samples."""
    samples = sorted(samples, key=lambda s: (_seed_sort_key(s[0]), s[1]))
    if not samples:
        return MISSING
    values = [v for _, v in samples]
    seeds = [s for s, _ in samples]
    per_seed = dict(samples) if len(set(seeds)) == len(seeds) else None
    return Value(
        mean=math.fsum(values) / len(values),
        std=statistics.stdev(values) if len(values) >= 2 else None,
        n_seeds_min=len(values), n_seeds_max=len(values),
        per_seed=per_seed, n_parts=1,
    )


def average(values: Iterable[Value], labels: Iterable[str] | None = None) -> Value:
    """Mean of the components' means; std across seeds of the per-seed averages when balanced.

    Missing components are left out (the result's ``parts``/``n_parts`` say which were used).
    """
    values = list(values)
    labels = list(labels) if labels is not None else [""] * len(values)
    present = [(label, v) for label, v in zip(labels, values) if not v.missing]
    if not present:
        return MISSING
    means = [v.mean for _, v in present]
    per_seed = None
    std = None
    seed_sets = [None if v.per_seed is None else frozenset(v.per_seed) for _, v in present]
    if all(s is not None for s in seed_sets) and len(set(seed_sets)) == 1:
        seeds = sorted(seed_sets[0], key=_seed_sort_key)
        per_seed = {s: math.fsum(v.per_seed[s] for _, v in present) / len(present) for s in seeds}
        if len(per_seed) >= 2:
            std = statistics.stdev(per_seed.values())
    return Value(
        mean=math.fsum(means) / len(means),
        std=std,
        n_seeds_min=min(v.n_seeds_min for _, v in present),
        n_seeds_max=max(v.n_seeds_max for _, v in present),
        per_seed=per_seed,
        n_parts=sum(v.n_parts for _, v in present),
        parts=tuple(label for label, _ in present),
    )


@dataclass(frozen=True)
class CellWarning:
    key: CellKey
    message: str


@dataclass(frozen=True)
class EvalCells:
    """Eval results of one metric, keyed (task, method, source, target)."""

    metric: str
    cells: Mapping[CellKey, Value]
    warnings: tuple[CellWarning, ...] = ()

    def get(self, task: str, method: str, source: str, target: str) -> Value:
        return self.cells.get((task, method, source, target), MISSING)

    def keys(self, task: str | None = None) -> list[CellKey]:
        return sorted(k for k in self.cells if task is None or k[0] == task)

    def methods(self, task: str) -> set[str]:
        return {k[1] for k in self.cells if k[0] == task}

    def sources(self, task: str, method: str | None = None) -> set[str]:
        return {k[2] for k in self.cells if k[0] == task and (method is None or k[1] == method)}

    def targets(self, task: str, method: str | None = None, source: str | None = None) -> set[str]:
        return {k[3] for k in self.cells if k[0] == task and (method is None or k[1] == method)
                and (source is None or k[2] == source)}


# Parameters that identify a cell or a replicate; any other parameter that differs inside one cell
# means the cell mixes configurations (worth a warning in the report).
_CELL_PARAMS = {"task", "method", "source", "target", "seed"}


def eval_cells(results: Iterable[JobResult], metric: str) -> EvalCells:
    """Aggregate eval results over seeds into cells (task, method, source, target) -> Value."""
    groups: dict[CellKey, list[JobResult]] = defaultdict(list)
    notes: list[CellWarning] = []
    for r in results:
        if r.kind != "eval":
            continue
        key = (r.task, r.method, r.params.get("source"), r.params.get("target"))
        if any(not isinstance(k, str) or not k for k in key):
            continue
        if _as_float(r.metrics.get(metric)) is None:
            notes.append(CellWarning(key, f"job {r.id} ({r.path}) has no numeric {metric!r}; left out"))
            continue
        groups[key].append(r)
    cells: dict[CellKey, Value] = {}
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (_seed_sort_key(r.seed), r.id))
        cells[key] = leaf_value((r.seed, _as_float(r.metrics[metric])) for r in group)
        seeds = [r.seed for r in group]
        duplicates = sorted({str(s) for s in seeds if seeds.count(s) > 1})
        if duplicates:
            notes.append(CellWarning(key, f"seed(s) {', '.join(duplicates)} appear more than once "
                                          f"(jobs {', '.join(r.id[:10] for r in group)}); all values are averaged"))
        varying = sorted(
            name for name in set().union(*(r.params.keys() for r in group)) - _CELL_PARAMS
            if len({json.dumps(r.params.get(name), sort_keys=True, default=str) for r in group}) > 1
        )
        if varying:
            notes.append(CellWarning(key, f"results differ in {', '.join(varying)} but are averaged together"))
    return EvalCells(metric, cells, tuple(sorted(notes, key=lambda w: (w.key, w.message))))


__all__ = [
    "CellKey",
    "EvalCells",
    "JobDirStatus",
    "JobResult",
    "MISSING",
    "Problem",
    "ResultStore",
    "UnreadableResultWarning",
    "Value",
    "average",
    "eval_cells",
    "leaf_value",
    "load_store",
]
