"""Workers of a (fake) CUDA node: real ``madx bench run`` processes sharing one run directory, with
``torch.cuda`` faked (tests/bench/fake_cuda.py) and stand-in job runners (tests/bench/fake_node.py).
Every worker must make its own device current before any CUDA work, lease it by UUID, and run
every job there; no two workers may fight over a device, however the launcher numbers them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.devices import _file_name
from tests.bench.fake_cuda import FakeCuda

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MINI = str(ROOT / "tests" / "fixtures" / "mini-suite.yaml")
UUIDS = [f"GPU-{i:08x}-1111-2222-3333-4444555566{i:02d}" for i in range(8)]
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID",
                      "SLURM_NODEID", "CUDA_VISIBLE_DEVICES", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def run_node(tmp_path, environments: list[dict[str, str]], timeout=600) -> tuple[list[dict], list[dict], Path]:
    out, records = tmp_path / "run", tmp_path / "records.jsonl"
    base = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    base.update({"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
                 "FAKE_NODE_WORKERS": str(len(environments))})
    processes = [subprocess.Popen([sys.executable, "-m", "tests.bench.fake_node", str(records), "bench", "run", MINI,
                                   "--out", str(out)], env={**base, **env}, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for env in environments]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    failed = [f"worker {i} exited {p.returncode}:\n{o[-2000:]}" for i, (p, o) in enumerate(zip(processes, outputs))
              if p.returncode != 0]
    assert not failed, "\n\n".join(failed)
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    return [r for r in lines if not r.get("exit")], [r for r in lines if r.get("exit")], out


def check_node(jobs, exits, out, expected_index, expected_uuid):
    """expected_*: worker number -> the visible index and UUID it must own; exits are keyed by pid."""
    assert len(exits) == len(expected_index), f"{len(exits)} workers reported, {len(expected_index)} started"
    for record in exits:
        assert record["early"] == [], f"worker {record['pid']} touched CUDA before set_device: {record['early']}"
        assert record["set_calls"], f"worker {record['pid']} never set its device"
    by_pid = {r["pid"]: r for r in exits}
    owned = sorted(r["uuid"] for r in exits)
    assert len(set(owned)) == len(owned), f"two workers on one device: {owned}"
    for job in jobs:  # every job ran on its worker's own device, as current device and as runtime device
        worker = by_pid[job["pid"]]
        assert job["runtime_device"] == f"cuda:{worker['current']}" and job["current"] == worker["current"]
        assert "GPU-" + job["uuid"] == worker["uuid"]
    by_rank = {int(r["rank_env"]): r for r in exits}
    for number, record in by_rank.items():
        assert record["current"] == expected_index[number] and record["uuid"] == expected_uuid[number]
    leases = sorted(p.stem for p in (out / "devices").glob("*/*.lock"))
    assert leases == sorted(_file_name(u) for u in owned), "leases are named by UUID, one per worker"


def test_eight_workers_of_a_torchrun_node_each_own_their_local_ranks_gpu(tmp_path):
    envs = [{"FAKE_CUDA_UUIDS": ",".join(UUIDS), "LOCAL_RANK": str(i), "RANK": str(i)} for i in range(8)]
    jobs, exits, out = run_node(tmp_path, envs)
    check_node(jobs, exits, out, {i: i for i in range(8)}, {i: UUIDS[i] for i in range(8)})


def test_one_gpu_per_task_every_worker_sees_cuda0_with_its_own_uuid(tmp_path):
    """srun --gpus-per-task=1: each task's CUDA_VISIBLE_DEVICES=0, behind it a different GPU."""
    envs = [{"FAKE_CUDA_UUIDS": UUIDS[i], "CUDA_VISIBLE_DEVICES": "0", "SLURM_LOCALID": str(i),
             "SLURM_PROCID": str(i), "SLURM_NODEID": "0"} for i in range(4)]
    jobs, exits, out = run_node(tmp_path, envs)
    check_node(jobs, exits, out, {i: 0 for i in range(4)}, {i: UUIDS[i] for i in range(4)})


def test_slurm_variables_alone_place_and_name_the_workers(tmp_path):
    """A plain srun task per GPU on the second node: no RANK or LOCAL_RANK, only SLURM_*."""
    envs = [{"FAKE_CUDA_UUIDS": ",".join(UUIDS[:4]), "SLURM_LOCALID": str(i), "SLURM_PROCID": str(4 + i),
             "SLURM_NODEID": "1"} for i in range(4)]
    jobs, exits, out = run_node(tmp_path, envs)
    check_node(jobs, exits, out, {4 + i: i for i in range(4)}, {4 + i: UUIDS[i] for i in range(4)})
    results = [json.loads(p.read_text()) for p in (out / "jobs").glob("*/result.json")]
    assert {r["worker"]["rank"] for r in results} <= {4, 5, 6, 7}, "global ranks come from SLURM_PROCID"


def test_binding_in_process_sets_the_device_first_and_falls_back_to_a_free_one(tmp_path, monkeypatch):
    import bench.devices

    monkeypatch.setattr(bench.devices, "_BOUND", {})
    monkeypatch.setattr(bench.devices, "_WORKERS", {})
    fake = FakeCuda(UUIDS[:2]).install(monkeypatch)
    other = bench.devices.DeviceAllocator(tmp_path, UUIDS[:2], holder="another run's worker")
    other.take_own(1)  # the local rank's GPU is owned by someone else
    try:
        bound = bench.devices.bind_worker_device(tmp_path, "me", {"SLURM_LOCALID": "1"})
    finally:
        other.close()
        for allocator in bench.devices._WORKERS.values():
            allocator.close()
    assert fake.early == [] and fake.set_calls == [1, 0], "the local rank's device first, then the one leased"
    assert (bound.index, bound.uuid) == (0, UUIDS[0]) and bound.visible_names([UUIDS[1]]) == ("1",)
