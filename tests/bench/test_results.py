"""The result schema: round trips, errors that name the file and the field, schema 1 read by upgrading."""

from __future__ import annotations

import copy
import json

import pytest

from bench.results import (SCHEMA_VERSION, Cost, FieldError, JobResult, JobSpec, Provenance, ResultSchemaError, RunInfo,
                           WorkerInfo, ZeroGroup, collect_provenance, upgrade_v1)

PROVENANCE = Provenance(madx_version="0.1.0", git_revision="abc123", git_dirty=False, versions={"torch": "2.13.0", "triton": None},
                        hardware={"type": "cpu", "threads": 1}, python="3.11.7", platform="Linux", seed=1)


def result(**changes) -> JobResult:
    fields = dict(
        schema=SCHEMA_VERSION,
        job=JobSpec("0a9a5a1b750cd8c0126a", "task", "ner/sw/madx-inv/seed1", {"task": "ner", "method": "madx-inv", "seed": 1},
                    ("b90394c59623435c205b",)),
        status="done",
        metrics={"best_dev": {"f1": 19.2}, "train_loss": 0.71},
        train={"steps": 120, "history": [{"step": 1, "loss": 2.0}], "non_pad_fraction": 0.56},
        cost=Cost(device="cpu", wall_s=2.9, job_wall_s=3.0, device_hours=3.0 / 3600, tokens=42500, tokens_per_s=14711.9,
                  peak_memory_bytes=731824128, trainable_params=4711, total_params=128871, non_pad_fraction=0.56,
                  zero=ZeroGroup(stage=2, processes=2)),
        started_at="2026-11-27T10:06:24Z",
        finished_at="2026-11-27T10:06:27Z",
        worker=WorkerInfo.parse("vm:6188:rank0"),
        provenance=PROVENANCE,
    )
    return JobResult(**{**fields, **changes})


def as_json(data):
    return json.loads(json.dumps(data))


def test_round_trip_through_json():
    r = result()
    data = as_json(r.to_dict())
    assert data["job"]["deps"] == ["b90394c59623435c205b"] and data["cost"]["zero"] == {"stage": 2, "processes": 2}
    assert data["worker"] == {"id": "vm:6188:rank0", "host": "vm", "pid": 6188, "rank": 0}
    assert JobResult.from_dict(data) == r
    assert JobResult.from_dict({**data, "from_a_newer_runner": 1}) == r  # unknown keys are ignored
    info = RunInfo(schema=SCHEMA_VERSION, suite="smoke", suite_file="bench/suites/smoke.yaml", suite_sha256="f" * 64,
                   created="2026-11-27T10:05:19Z", command=("madx", "bench", "run", "smoke"), model={"name_or_path": "x"},
                   notes=("a note",), provenance=PROVENANCE)
    assert RunInfo.from_dict(as_json(info.to_dict())) == info


def test_optional_cost_fields_may_be_absent_or_null():
    data = as_json(result().to_dict())
    for key in ("tokens", "peak_memory_bytes", "non_pad_fraction", "zero"):
        del data["cost"][key]
    data["cost"]["tokens_per_s"] = None
    cost = JobResult.from_dict(data).cost
    assert (cost.tokens, cost.tokens_per_s, cost.non_pad_fraction, cost.zero) == (None, None, None, None)


@pytest.mark.parametrize("path, value, message", [
    (("cost", "tokens"), "12", "cost.tokens: expected int, got str ('12')"),
    (("cost", "wall_s"), True, "cost.wall_s: expected number, got bool (True)"),
    (("cost", "zero", "stage"), None, "cost.zero.stage: expected int, got NoneType (None)"),
    (("job", "deps"), ["a", 1], "job.deps[1]: expected str, got int (1)"),
    (("job", "kind"), "", "job.kind: must not be empty"),
    (("job", "params"), [], "job.params: expected an object, got list ([])"),
    (("status",), "failed", "status: 'failed' is not one of done"),
    (("worker", "pid"), "6188", "worker.pid: expected int, got str ('6188')"),
    (("provenance", "versions", "torch"), 2, "provenance.versions.torch: expected str, got int (2)"),
    (("provenance", "git_revision"), 7, "provenance.git_revision: expected str, got int (7)"),
    (("metrics",), None, "metrics: expected an object, got NoneType (None)"),
    (("finished_at",), None, "finished_at: expected str, got NoneType (None)"),
])
def test_a_wrong_type_names_the_file_and_the_field(path, value, message):
    data = as_json(result().to_dict())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ResultSchemaError) as caught:
        JobResult.from_dict(data, source="jobs/0a9a/result.json")
    assert str(caught.value) == f"jobs/0a9a/result.json: {message}"
    assert caught.value.source == "jobs/0a9a/result.json" and caught.value.field == message.split(":")[0]


@pytest.mark.parametrize("path", [("finished_at",), ("cost",), ("cost", "device"), ("job", "id"), ("provenance", "hardware"),
                                  ("worker", "host"), ("train",)])
def test_a_missing_field_is_named(path):
    data = as_json(result().to_dict())
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(ResultSchemaError, match=rf"^r\.json: {'.'.join(path)}: missing$"):
        JobResult.from_dict(data, source="r.json")


def test_schema_versions():
    data = as_json(result().to_dict())
    with pytest.raises(ResultSchemaError, match=r"^r\.json: schema: 99 is newer than this madx-bench reads \(1, 2\): update"):
        JobResult.from_dict({**data, "schema": 99}, source="r.json")
    with pytest.raises(ResultSchemaError, match=r"schema: 'two' is not a result schema"):
        JobResult.from_dict({**data, "schema": "two"}, source="r.json")
    without = {k: v for k, v in data.items() if k != "schema"}
    with pytest.raises(ResultSchemaError, match=r"^r\.json: schema: missing"):
        JobResult.from_dict(without, source="r.json")
    with pytest.raises(ResultSchemaError, match=r"^r\.json: \(top level\): expected an object, got list"):
        JobResult.from_dict([data], source="r.json")
    with pytest.raises(FieldError, match="schema: 1"):  # only from_dict reads old schemas
        result(schema=1)


# What bench/worker.py wrote before bench.results (schema 1), taken from a smoke run.
V1_RESULT = {
    "schema": 1,
    "job": {"id": "0a9a5a1b750cd8c0126a", "kind": "task", "name": "ner/sw/madx-inv/seed1",
            "params": {"task": "ner", "method": "madx-inv", "seed": 1}, "deps": ["b90394c59623435c205b"]},
    "metrics": {"best_dev": {"f1": 19.2}, "train_loss": 0.71},
    "train": {"steps": 120, "history": [{"step": 1, "loss": 2.0}], "non_pad_fraction": 0.56},
    "cost": {"device": "cpu", "device_hours": 0.0008, "job_wall_s": 2.95, "peak_memory_bytes": 731824128, "tokens": 42500,
             "tokens_per_s": 14711.9, "total_params": 128871, "trainable_params": 4711, "wall_s": 2.89},
    "provenance": {"finished_at": "2026-11-27T10:06:27Z", "worker": "vm:6188:rank0"},
}
V1_RUN = {"suite": "smoke", "started_at": "2026-11-27T10:05:19Z", "notes": ["n"], "model": {"tiny": {"arch": "xlm-roberta"}},
          "git_revision": "b17089c", "versions": {"torch": "2.13.0+cpu"}, "hardware": {"threads": 2, "type": "cpu"},
          "python": "3.11.7", "platform": "Linux"}


def test_schema_1_is_upgraded_without_inventing_provenance():
    r = JobResult.from_dict(copy.deepcopy(V1_RESULT), source="old.json")
    assert r.schema == SCHEMA_VERSION and r.status == "done" and r.job.name == "ner/sw/madx-inv/seed1"
    assert r.metrics == V1_RESULT["metrics"] and r.train == V1_RESULT["train"]
    assert r.cost.tokens == 42500 and r.cost.wall_s == 2.89 and r.cost.non_pad_fraction is None  # v1 never copied it
    assert r.worker == WorkerInfo("vm:6188:rank0", "vm", 6188, 0)
    assert r.started_at is None and r.finished_at == "2026-11-27T10:06:27Z"
    p = r.provenance
    assert (p.git_revision, p.madx_version, p.versions, p.hardware, p.code_version, p.seed) == (None, None, {}, {}, None, 1)
    assert upgrade_v1(V1_RESULT)["provenance"]["seed"] == 1
    broken = copy.deepcopy(V1_RESULT)
    broken["provenance"]["worker"] = "somewhere"
    with pytest.raises(ResultSchemaError, match=r"^old\.json: worker: expected an object, got str"):
        JobResult.from_dict(broken, source="old.json")
    del broken["cost"]["wall_s"]
    with pytest.raises(ResultSchemaError, match=r"^old\.json: cost\.wall_s: missing"):
        JobResult.from_dict(broken, source="old.json")


def test_schema_1_run_json_is_upgraded():
    info = RunInfo.from_dict(copy.deepcopy(V1_RUN), source="run.json")  # the first run.json had no schema key
    assert (info.suite, info.created, info.notes, info.model) == ("smoke", "2026-11-27T10:05:19Z", ("n",), V1_RUN["model"])
    assert (info.suite_file, info.suite_sha256, info.command) == (None, None, ())
    assert info.provenance.git_revision == "b17089c" and info.provenance.hardware == {"threads": 2, "type": "cpu"}
    assert info.provenance.madx_version is None
    with pytest.raises(ResultSchemaError, match=r"^run\.json: suite: expected str, got NoneType"):
        RunInfo.from_dict({k: v for k, v in V1_RUN.items() if k != "suite"}, source="run.json")


def test_code_version_marks_uncommitted_changes():
    import dataclasses

    assert PROVENANCE.code_version == "abc123"
    assert dataclasses.replace(PROVENANCE, git_dirty=True).code_version == "abc123 + uncommitted changes"
    assert dataclasses.replace(PROVENANCE, git_revision=None).code_version is None


def test_collect_provenance_records_this_process():
    import madx

    p = collect_provenance(seed=3)
    assert p.madx_version == madx.__version__ and p.seed == 3 and p.python and p.platform
    assert p.versions["torch"] and p.hardware["type"] in ("cpu", "cuda")
    assert (p.git_dirty is None) == (p.git_revision is None)
