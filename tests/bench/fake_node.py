"""One worker process of a fake CUDA node: ``madx`` with ``torch.cuda`` faked (``fake_cuda``) and
stand-in job runners that record the device each job ran on, then return at once.

    FAKE_CUDA_UUIDS=GPU-a,GPU-b FAKE_NODE_WORKERS=2 LOCAL_RANK=1 \\
        python -m tests.bench.fake_node RECORDS.jsonl bench run SUITE --out RUN

The first job a worker runs waits until ``FAKE_NODE_WORKERS`` workers hold a device lease in RUN
at the same moment (read from the lease records, without touching the locks), so every worker
of the node is alive together and a lease fight cannot hide behind one worker finishing early.
Each job appends a line to RECORDS; at exit the process appends what it did with CUDA.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from pathlib import Path

WAIT = 120.0  # seconds the first job waits for the whole node


def _append(path: str, record: dict) -> None:
    with open(path, "a") as out:  # one short line per write: appends of concurrent writers stay whole
        out.write(json.dumps(record) + "\n")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _whole_node_leased(run_dir: Path, workers: int) -> bool:
    from bench.devices import _file_name

    locks = list((run_dir / "devices" / _file_name(socket.gethostname())).glob("*.lock"))
    holders = set()
    for lock in locks:
        try:
            record = json.loads(lock.read_text() or "null")
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("kind") == "worker" and _alive(record.get("pid")):
            holders.add(record["pid"])
    return len(holders) >= workers


def main(argv: list[str]) -> int:
    records, cli_args = argv[0], argv[1:]
    from tests.bench.fake_cuda import FakeCuda

    fake = FakeCuda.from_env().install()
    atexit.register(lambda: _append(records, {"exit": True, "rank_env": os.environ.get("SLURM_PROCID", os.environ.get("RANK")),
                                              **fake.record()}))
    import torch

    import bench.execute

    workers = int(os.environ.get("FAKE_NODE_WORKERS", "1"))
    first = [True]

    def stand_in(job, ctx, workspace):
        if first[0]:
            first[0] = False
            deadline = time.monotonic() + WAIT
            while not _whole_node_leased(ctx.store.root, workers):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {workers} workers of this node never all held a device lease together")
                time.sleep(0.2)
        current = torch.cuda.current_device()
        _append(records, {"pid": os.getpid(), "job": job.name, "runtime_device": str(ctx.runtime.device),
                          "current": current, "uuid": str(torch.cuda.get_device_properties(current).uuid)})
        return {"metrics": {}, "cost": {"tokens": 0}}

    for kind in list(bench.execute.RUNNERS):
        bench.execute.RUNNERS[kind] = stand_in
    from madx.cli import main as madx_main

    return madx_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
