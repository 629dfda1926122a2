"""The worker's result record: each job kind's output (bench.execute) as a schema-valid JobResult."""

from __future__ import annotations

import json

import pytest

from bench.graph import Job
from bench.results import JobResult, Provenance, WorkerInfo
from bench.worker import job_result

PROVENANCE = Provenance(madx_version="0.1.0", git_revision="abc", git_dirty=False, versions={"torch": "2.13.0"},
                        hardware={"type": "cpu", "threads": 1}, python="3.11.7", platform="Linux")
TRAIN = {"steps": 4, "epochs": 1.0, "final_loss": 2.0, "best_step": None, "best_metrics": None, "history": [],
         "tokens": 1000, "positions": 1200, "non_pad_fraction": 1000 / 1200, "wall_s": 0.5, "tokens_per_s": 2000.0,
         "peak_memory_bytes": 10, "trainable_params": 5, "total_params": 50}
COST = {k: TRAIN[k] for k in ("wall_s", "tokens", "tokens_per_s", "peak_memory_bytes", "trainable_params", "total_params")}
# what bench.execute's runners return, per kind (a full-model job in a ZeRO group adds cost.zero)
OUTPUTS = {
    "prepare": {"metrics": {}, "cost": {"tokens": 0}},
    "mlm": {"metrics": {"loss": 2.0, "perplexity": 7.4}, "train": TRAIN, "cost": COST},
    "task": {"metrics": {"best_dev": {"f1": 50.0}, "train_loss": 0.3}, "train": TRAIN,
             "cost": {**COST, "zero": {"stage": 2, "processes": 2}}},
    "eval": {"metrics": {"f1": 40.0, "precision": 39.0}, "cost": {"wall_s": 0.1, "tokens": 300, "tokens_per_s": 3000.0}},
}


def make(kind: str, output: dict) -> JobResult:
    job = Job.make(kind, f"{kind}/x", {"seed": 2} if kind in ("task", "eval") else {}, ("dep",))
    return job_result(job, output, "cpu", "vm:77:rank1", PROVENANCE, "2026-11-27T10:00:00Z", wall=1.5)


@pytest.mark.parametrize("kind", OUTPUTS)
def test_every_job_kind_gives_a_valid_result(kind):
    r = make(kind, OUTPUTS[kind])
    data = json.loads(json.dumps(r.to_dict()))
    assert JobResult.from_dict(data, source=f"{kind}.json") == r
    assert r.job.kind == kind and r.job.deps == ("dep",) and r.metrics == OUTPUTS[kind]["metrics"]
    assert r.cost.device == "cpu" and r.cost.job_wall_s == 1.5 and r.cost.device_hours == 1.5 / 3600
    assert r.cost.wall_s == OUTPUTS[kind]["cost"].get("wall_s", 1.5)  # the job's own timing when it has one
    assert r.worker == WorkerInfo("vm:77:rank1", "vm", 77, 1)
    assert r.started_at == "2026-11-27T10:00:00Z" and r.finished_at >= r.started_at
    assert r.provenance.git_revision == "abc" and r.provenance.seed == (2 if kind in ("task", "eval") else None)


def test_training_jobs_record_the_non_pad_fraction_and_zero_group():
    task = make("task", OUTPUTS["task"])
    assert task.cost.non_pad_fraction == pytest.approx(1000 / 1200)
    assert task.cost.zero.stage == 2 and task.cost.zero.processes == 2
    assert make("eval", OUTPUTS["eval"]).cost.non_pad_fraction is None


def test_an_unknown_cost_field_is_an_error_not_dropped():
    with pytest.raises(ValueError, match="reports cost flops, which bench.results.Cost does not name"):
        make("eval", {"metrics": {}, "cost": {"flops": 1.0}})
    with pytest.raises(ValueError, match=r"^the result of eval/x: cost\.tokens: expected int"):
        make("eval", {"metrics": {}, "cost": {"tokens": "many"}})
