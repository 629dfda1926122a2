"""Between jobs: a CUDA worker returns the cached memory of a finished job before a job of another
shape, keeps it for a job of the same shape (bench.hygiene); torch.cuda is faked (fake_cuda)."""

from __future__ import annotations

import torch

from bench.graph import Job
from bench.hygiene import JobHygiene, job_shape
from tests.bench.fake_cuda import FakeCuda


def mlm(language, mode="adapter", batch=16):
    return Job.make("mlm", f"mlm/{language}/{mode}", {"language": language, "mode": mode,
                                                      "mlm": {"batch_size": batch, "max_seq_length": 256}})


def test_the_cache_goes_back_only_when_the_shape_changes(monkeypatch):
    fake = FakeCuda(["GPU-a"]).install(monkeypatch)
    fake.set_device(0)
    hygiene = JobHygiene(torch.device("cuda:0"))
    for job in (mlm("en"), mlm("sw"), mlm("qu")):  # languages differ, the shape does not
        hygiene.before(job)
    assert fake.empty_cache_calls == 0
    hygiene.before(mlm("en", mode="full"))  # a full-model job: other memory layout
    hygiene.before(mlm("sw", batch=32))
    hygiene.before(mlm("qu", batch=32))
    assert fake.empty_cache_calls == hygiene.returned == 2
    assert job_shape(mlm("en")) == job_shape(mlm("qu")) != job_shape(mlm("en", mode="full"))


def test_nothing_is_done_on_cpu(monkeypatch):
    fake = FakeCuda(["GPU-a"]).install(monkeypatch)
    hygiene = JobHygiene(torch.device("cpu"))
    hygiene.before(mlm("en"))
    hygiene.before(mlm("en", mode="full"))
    assert fake.empty_cache_calls == 0 and fake.early == []
