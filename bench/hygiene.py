"""What a long-lived worker does between jobs so that the next job starts as in a fresh process.

A worker runs hundreds of jobs in one process. What one job leaves behind must not grow with the
jobs run nor change the next job's numbers:

* models, optimizer state and compiled graphs of a finished job are unreachable once its runner
  returns (the worker keeps only its shared base model and tokenised test sets; the compiled
  MLM step is re-used by shape, not by job: ``tests/bench/test_long_lived_worker.py`` pins both);
* on CUDA the caching allocator keeps a finished job's blocks reserved. For a next job of the
  same shape they are what it will ask for again, so they stay; before a job of another shape
  (another kind, method, batch size or sequence length) the cycles are collected and the cache is
  returned, so one big job's reserve cannot push a later job of another shape into an OOM, and
  ``nvidia-smi`` shows what the worker really uses.
"""

from __future__ import annotations

import gc
from typing import Any

import torch


def job_shape(job) -> tuple[Any, ...]:
    """What decides a job's memory layout: kind, MLM mode or method, task, batch size, sequence length."""
    p = job.params
    hyper = p.get("hyper") or p.get("mlm") or {}
    length = hyper.get("max_seq_length", hyper.get("max_length"))
    return (job.kind, p.get("mode") or p.get("method"), p.get("task"), hyper.get("batch_size"), length)


class JobHygiene:
    """``before(job)`` ahead of every job a worker runs on ``device``."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.last_shape: tuple | None = None
        self.returned = 0  # how many times the cache was given back (for tests and the GPU check)
        self._probe_failures_seen: set[str] = set()

    def before(self, job) -> None:
        shape = job_shape(job)
        if self.device.type == "cuda" and self.last_shape is not None and shape != self.last_shape:
            gc.collect()  # a finished model caught in a reference cycle holds its blocks until collected
            torch.cuda.empty_cache()
            self.returned += 1
        self.last_shape = shape

    def new_probe_failures(self) -> dict[str, str]:
        """Kernel probes whose Triton path failed since the last call (``madx.kernels.probe_failures``):
        the worker logs them, so a worker that fell back to the reference is seen, not silent."""
        from madx import kernels

        found = {k: v for k, v in kernels.probe_failures().items() if k not in self._probe_failures_seen}
        self._probe_failures_seen.update(found)
        return found
