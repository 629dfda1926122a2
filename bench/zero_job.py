"""Run one full-model job data-parallel over a DeepSpeed ZeRO group.

The worker that claimed the job starts this module with ``torchrun --nproc_per_node K`` and
keeps holding the claim; rank 0 writes ``output.json`` into the job's workspace, and the worker
commits it like any other job. Adapter jobs never come here: with 97% of the weights frozen
there are almost no optimizer states or gradients for ZeRO to partition (``bench/perf`` shows
the memory split), so one process per adapter job is the better use of devices.

    python -m torch.distributed.run --nproc_per_node 2 -m bench.zero_job RUN/jobs/<id>/work-xxxx/job.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from bench.execute import RUNNERS, JobContext
from bench.graph import Job
from bench.store import RunStore
from madx.atomic import atomic_write_json
from madx.runtime import Runtime


def main(argv: list[str]) -> int:
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))

    torch.set_num_threads(spec["cpu_threads"])
    jobs = [Job(**record) for record in [spec["job"], *spec["deps"]]]
    job, jobs_by_id = jobs[0], {j.id: j for j in jobs}
    store = RunStore(spec["run_dir"])
    runtime = Runtime.deepspeed(spec["zero_stage"], spec["mixed_precision"], compile=spec.get("compile", "auto"))
    rank = runtime.process_index
    context = JobContext(store, jobs_by_id, runtime, store.root / "tb",
                         lambda line: print(f"[zero rank{rank}] {line}", flush=True))
    output = RUNNERS[job.kind](job, context, spec_path.parent)
    if runtime.is_main_process:
        output.setdefault("cost", {})["zero"] = {"stage": spec["zero_stage"], "processes": runtime.num_processes}
        atomic_write_json(spec_path.parent / "output.json", output)
    dist.barrier()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
