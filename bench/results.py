"""The result schema: what ``RUN/run.json`` and every ``RUN/jobs/<id>/result.json`` hold.

The runner writes through these types (``bench.worker``) and the report reads through them
(``bench.report.load``), so neither guesses the other's keys.

    RunInfo     run.json: the suite (name, file, sha256), when and how the run was created, the
                model, and the provenance of the worker that created it.
    JobResult   result.json: the job (id, kind, name, params, deps), status, metrics, the
                training log, cost, when it started and finished, the worker that ran it, and that
                worker's provenance (code revision, madx and package versions, hardware, seed).

Every type is a frozen dataclass that checks its fields' types on creation, with ``to_dict()``
(what is written, JSON-ready) and ``from_dict(data, source=...)``, which raises
:class:`ResultSchemaError` naming the file and the field, e.g.
``jobs/ab12/result.json: cost.tokens: expected int, got str ('12')``. A key the schema does not
know is ignored (a newer runner may add some); a missing key is an error unless the field has a
default; ``null`` is allowed only where the type says ``| None``.

Schema versions (``schema`` in both files):

    1  the runner's dict literals before this module. result.json: no status, no start time,
       provenance = {worker: "host:pid:rankN", finished_at} only; run.json: flat (suite,
       started_at, notes, model, git_revision, versions, hardware, python, platform) and
       without a ``schema`` key.
       Read through :func:`upgrade_v1` / :func:`upgrade_run_v1`.
    2  this module.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)  # 1 through upgrade_v1 / upgrade_run_v1
STATUSES = ("done",)


class ResultSchemaError(ValueError):
    """A run.json / result.json that does not follow the schema: which file, which field, what is wrong."""

    def __init__(self, source: str, field: str, problem: str):
        self.source, self.field, self.problem = str(source), field, problem
        super().__init__(f"{self.source}: {field}: {problem}")

    @property
    def reason(self) -> str:
        """The message without the file name (for lists that show the file separately)."""
        return f"{self.field}: {self.problem}"


class FieldError(ValueError):
    """A field's value is wrong (raised on creation; ``from_dict`` adds the file name)."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


# ---------------------------------------------------------------------------------------------
# Checking fields against their annotations


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text[:40] + '…' if len(text) > 40 else text})"


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return None


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if hint is float:
        return "number"
    if isinstance(hint, type):
        return "object" if dataclasses.is_dataclass(hint) else hint.__name__
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "list"
    if origin in (dict, Mapping):
        return "object"
    return str(hint)


def _check(value: Any, hint: Any, field: str) -> None:
    """Raise FieldError unless ``value`` fits ``hint`` (the subset of annotations this module uses)."""
    if hint is Any:
        return
    union = _union_args(hint)
    if union is not None:
        if value is None and type(None) in union:
            return
        options = [h for h in union if h is not type(None)]
        if len(options) == 1:
            return _check(value, options[0], field)
        raise TypeError(f"unsupported annotation {hint}")  # pragma: no cover - a mistake in this module
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (str, bool):
        ok = isinstance(value, hint)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        ok = isinstance(value, hint)
    elif typing.get_origin(hint) is tuple:
        if not isinstance(value, tuple):  # from JSON, lists become tuples before this check
            raise FieldError(field, f"expected {'a tuple' if isinstance(value, list) else 'a list'}, got {_describe(value)}")
        item = typing.get_args(hint)[0]
        for i, element in enumerate(value):
            _check(element, item, f"{field}[{i}]")
        return
    elif typing.get_origin(hint) in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise FieldError(field, f"expected an object, got {_describe(value)}")
        _, value_hint = typing.get_args(hint)
        for key, element in value.items():
            if not isinstance(key, str):
                raise FieldError(field, f"keys must be strings, got {_describe(key)}")
            _check(element, value_hint, f"{field}.{key}")
        return
    else:
        raise TypeError(f"unsupported annotation {hint}")  # pragma: no cover
    if not ok:
        raise FieldError(field, f"expected {_type_name(hint)}, got {_describe(value)}")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(value: Any, hint: Any, field: str) -> Any:
    """JSON -> field value: objects into nested records, lists into tuples. Types are checked on creation."""
    union = _union_args(hint)
    if union is not None:
        if value is None:
            return None
        hint = next(h for h in union if h is not type(None))
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint._from(value, field + ".")
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


class Record:
    """Base of the schema's frozen dataclasses: type checks on creation, ``to_dict`` / ``from_dict``."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            _check(getattr(self, f.name), hints[f.name], f.name)
        self.validate()

    def validate(self) -> None:
        """Rules beyond types (a subclass raises FieldError)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: nested records become objects, tuples lists."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<dict>") -> "Record":
        try:
            return cls._from(data, "")
        except FieldError as error:
            raise ResultSchemaError(str(source), error.field, error.problem) from None

    @classmethod
    def _from(cls, data: Any, prefix: str) -> "Record":
        if not isinstance(data, Mapping):
            raise FieldError(prefix.rstrip(".") or "(top level)", f"expected an object, got {_describe(data)}")
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if _required(f):
                    raise FieldError(prefix + f.name, "missing")
                continue
            values[f.name] = _convert(data[f.name], hints[f.name], prefix + f.name)
        try:
            return cls(**values)
        except FieldError as error:  # nested records are built above, so this names one of cls's fields
            raise FieldError(prefix + error.field, error.problem) from None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# The records


@dataclasses.dataclass(frozen=True)
class Provenance(Record):
    """What produced a result. ``None`` means "not recorded" (schema-1 results), never a guess."""

    madx_version: str | None  # madx.__version__ of the code that ran
    git_revision: str | None  # HEAD of the checkout madx was imported from; None outside git
    git_dirty: bool | None  # that checkout had uncommitted changes (to tracked files)
    versions: Mapping[str, str | None]  # package -> version (None: not installed), as `madx info` lists them
    # `madx info`'s device: {"type": "cpu", "threads": 1} / {"type": "cuda", "count": 1, "name": ..., "bf16": true}
    hardware: Mapping[str, Any]
    python: str | None
    platform: str | None
    seed: int | None = None  # the job's seed parameter (None: the job has none, or run.json)

    @property
    def code_version(self) -> str | None:
        """The revision, marked when the checkout had uncommitted changes (None: not recorded)."""
        if self.git_revision is None:
            return None
        return self.git_revision + (" + uncommitted changes" if self.git_dirty else "")


@dataclasses.dataclass(frozen=True)
class ZeroGroup(Record):
    stage: int
    processes: int


@dataclasses.dataclass(frozen=True)
class Cost(Record):
    """What a job cost. The optional figures are null when the job kind does not measure them."""

    device: str  # the worker's runtime ("cpu", "cuda:NVIDIA H100 80GB HBM3", ...)
    wall_s: float  # the job's own timing (training loop / evaluation), else the whole job's
    job_wall_s: float  # the whole job as the worker timed it (loading and saving included)
    device_hours: float  # job_wall_s / 3600
    tokens: int | None = None  # non-pad tokens processed (training: all processes)
    tokens_per_s: float | None = None
    peak_memory_bytes: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    non_pad_fraction: float | None = None  # training tokens / token positions computed (1.0: packed)
    zero: ZeroGroup | None = None  # set when the job ran in a DeepSpeed ZeRO group

    FROM_JOB: ClassVar[tuple[str, ...]] = ("wall_s", "tokens", "tokens_per_s", "peak_memory_bytes", "trainable_params",
                                           "total_params", "non_pad_fraction", "zero")


@dataclasses.dataclass(frozen=True)
class JobSpec(Record):
    """The job as planned (``bench.graph.Job``): its id hashes kind, version, params and deps."""

    id: str
    kind: str  # prepare / mlm / task / eval (a newer runner may add kinds)
    name: str
    params: Mapping[str, Any]
    deps: tuple[str, ...]

    def validate(self) -> None:
        for name in ("id", "kind", "name"):
            if not getattr(self, name):
                raise FieldError(name, "must not be empty")

    @property
    def task(self) -> str | None:
        return self.params.get("task")

    @property
    def method(self) -> str | None:
        return self.params.get("method")

    @property
    def seed(self) -> Any:
        return self.params.get("seed")


@dataclasses.dataclass(frozen=True)
class WorkerInfo(Record):
    id: str  # "host:pid:rankN", as in the runner's progress lines and claims
    host: str
    pid: int
    rank: int

    @classmethod
    def parse(cls, worker_id: str) -> "WorkerInfo":
        host, pid, rank = worker_id.rsplit(":", 2)
        if not rank.startswith("rank"):
            raise ValueError(worker_id)
        return cls(worker_id, host, int(pid), int(rank[len("rank"):]))


@dataclasses.dataclass(frozen=True)
class JobResult(Record):
    """One finished job: ``RUN/jobs/<id>/result.json``."""

    schema: int
    job: JobSpec
    status: str  # "done": failures go to error.json instead, and the next run retries the job
    metrics: Mapping[str, Any]  # the job kind's own (eval: f1, exact_match, ...; task: best_dev, train_loss)
    # the training loop's record (madx.train.TrainResult; resumed_from_step: the checkpoint a resumed job went on
    # from); None for prepare / eval
    train: Mapping[str, Any] | None
    cost: Cost
    started_at: str | None  # UTC, ISO 8601; None only in schema-1 results (not recorded)
    finished_at: str
    worker: WorkerInfo
    provenance: Provenance

    def validate(self) -> None:
        if self.schema != SCHEMA_VERSION:
            raise FieldError("schema", f"{self.schema} (a JobResult is schema {SCHEMA_VERSION}; "
                                       "older files are read through from_dict)")
        if self.status not in STATUSES:
            raise FieldError("status", f"{self.status!r} is not one of {', '.join(STATUSES)}")

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<dict>") -> "JobResult":
        return super().from_dict(_upgraded(data, source, upgrade_v1), source)


@dataclasses.dataclass(frozen=True)
class RunInfo(Record):
    """The run as created: ``RUN/run.json`` (written once, by the first worker)."""

    schema: int
    suite: str  # the suite's name
    suite_file: str | None  # the suite file as `madx bench run` was given it (None: a suite built in code)
    suite_sha256: str | None  # of that file's bytes (RUN/suite.yaml is a copy, rewritten by every run)
    created: str  # UTC, ISO 8601
    command: tuple[str, ...]  # the creating worker's sys.argv (empty: not recorded)
    model: Mapping[str, Any]  # the suite's model: {"name_or_path": ...} or {"tiny": {config}}
    notes: tuple[str, ...]  # the suite's notes, for the report
    provenance: Provenance  # the creating worker's; every job records its own

    def validate(self) -> None:
        if self.schema != SCHEMA_VERSION:
            raise FieldError("schema", f"{self.schema} (a RunInfo is schema {SCHEMA_VERSION}; "
                                       "older files are read through from_dict)")
        if not self.suite:
            raise FieldError("suite", "must not be empty")

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<dict>") -> "RunInfo":
        if isinstance(data, Mapping) and "schema" not in data:
            data = {**data, "schema": 1}  # the first run.json had no schema key (its results had "schema": 1)
        return super().from_dict(_upgraded(data, source, upgrade_run_v1), source)


# ---------------------------------------------------------------------------------------------
# Older schemas
#
# Upgrading, not refusing: schema 1 is a subset of schema 2 that maps field by field, and the run
# directories it describes took hours to compute (reports/ holds reports of some). What schema 1
# never recorded — start time, per-job code revision, package versions, hardware — is left null,
# never copied from run.json: a resumed run may have run other code. The report says how many
# results were upgraded and that the mixed-code-versions check cannot see them.


def schema_of(data: Any) -> Any:
    return data.get("schema") if isinstance(data, Mapping) else None


def _upgraded(data: Any, source: str | Path, upgrade_1) -> Any:
    if not isinstance(data, Mapping):
        return data  # from_dict names the problem
    if "schema" not in data:
        raise ResultSchemaError(str(source), "schema",
                                "missing (not a file madx-bench wrote: every version records its schema)")
    schema = data["schema"]
    if schema == 1:
        return upgrade_1(data)
    if schema == SCHEMA_VERSION:
        return data
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
        raise ResultSchemaError(str(source), "schema", f"{schema} is newer than this madx-bench reads "
                                                       f"({', '.join(map(str, READABLE_SCHEMAS))}): update madx-bench")
    raise ResultSchemaError(str(source), "schema", f"{schema!r} is not a result schema "
                                                   f"(this madx-bench reads {', '.join(map(str, READABLE_SCHEMAS))})")


def _unrecorded_provenance(seed: Any = None) -> dict[str, Any]:
    return {"madx_version": None, "git_revision": None, "git_dirty": None, "versions": {}, "hardware": {},
            "python": None, "platform": None, "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None}


def upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-1 result.json in schema 2's layout (not recorded in schema 1: null)."""
    provenance = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    job = data.get("job")
    worker: Any = provenance.get("worker")
    try:
        worker = WorkerInfo.parse(worker).to_dict()
    except (AttributeError, ValueError):
        pass  # left as it was: from_dict reports "worker: expected an object"
    params = job.get("params") if isinstance(job, Mapping) and isinstance(job.get("params"), Mapping) else {}
    return {
        "schema": SCHEMA_VERSION, "job": job, "status": "done", "metrics": data.get("metrics"), "train": data.get("train"),
        "cost": data.get("cost"), "started_at": None, "finished_at": provenance.get("finished_at"), "worker": worker,
        "provenance": _unrecorded_provenance(params.get("seed")),
    }


def upgrade_run_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-1 run.json (flat, with the first worker's provenance) in schema 2's layout."""
    provenance = {**_unrecorded_provenance(), **{k: data[k] for k in ("git_revision", "python", "platform") if k in data}}
    for key in ("versions", "hardware"):
        if isinstance(data.get(key), Mapping):
            provenance[key] = data[key]
    notes = data.get("notes", [])
    return {
        "schema": SCHEMA_VERSION, "suite": data.get("suite"), "suite_file": None, "suite_sha256": None,
        "created": data.get("started_at"), "command": [], "model": data.get("model", {}),
        "notes": [notes] if isinstance(notes, str) else notes, "provenance": provenance,
    }


# ---------------------------------------------------------------------------------------------
# Collecting provenance (once per worker: the code a process runs is the code it imported)


def _git_dirty(directory: Path) -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                             cwd=directory, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def collect_provenance(seed: int | None = None) -> Provenance:
    """This process's provenance (``madx.provenance`` plus madx's version and the checkout's state)."""
    import madx
    from madx.provenance import provenance

    info = provenance()
    revision = info["git_revision"]
    return Provenance(
        madx_version=madx.__version__, git_revision=revision,
        git_dirty=_git_dirty(Path(madx.__file__).resolve().parent) if revision else None,
        versions=dict(info["versions"]), hardware=dict(info["hardware"]), python=info["python"],
        platform=info["platform"], seed=seed,
    )


__all__ = [
    "Cost",
    "FieldError",
    "JobResult",
    "JobSpec",
    "Provenance",
    "READABLE_SCHEMAS",
    "ResultSchemaError",
    "RunInfo",
    "SCHEMA_VERSION",
    "WorkerInfo",
    "ZeroGroup",
    "collect_provenance",
    "schema_of",
    "upgrade_run_v1",
    "upgrade_v1",
]
