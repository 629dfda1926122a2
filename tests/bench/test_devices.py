"""Device leases: a node's GPUs partitioned between workers and their ZeRO groups by kernel locks.
Simulated device lists on CPU, real processes competing and dying; no mocks of the locking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import bench.devices
import bench.worker
from bench.devices import DeviceAllocator, DevicesBusy, NotEnoughDevices, lease_worker_device, node_devices
from bench.graph import Job
from bench.store import RunStore
from bench.suite import SuiteError, default_hyperparameters, parse_suite
from bench.worker import WorkerStopped, _run_in_zero_group, _run_one, zero_group_env
from madx.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
FOUR = ("0", "1", "2", "3")
SETTING = "hyperparameters.runtime.zero_group_size"


def python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(autouse=True)
def no_worker_allocators(monkeypatch):
    registry = {}
    monkeypatch.setattr(bench.devices, "_WORKERS", registry)  # this process's worker allocators, fresh per test
    monkeypatch.setattr(bench.devices, "_BOUND", {})
    yield
    for allocator in registry.values():
        allocator.close()


def test_node_devices_come_from_cuda_visible_devices_or_the_count():
    assert node_devices({}, count=0) == ()
    assert node_devices({}, count=3) == ("0", "1", "2")
    assert node_devices({"CUDA_VISIBLE_DEVICES": "4, 6,7"}, count=3) == ("4", "6", "7")
    assert node_devices({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb,9"}, count=2) == ("GPU-aa", "GPU-bb")
    assert node_devices({"CUDA_VISIBLE_DEVICES": "0,1"}, count=0) == ()


RACER = """
    import json, os, sys, time
    from pathlib import Path
    from bench.devices import DeviceAllocator
    root, devices, sizes, rounds, own_rank, racers = sys.argv[1:7]
    sizes = [int(s) for s in sizes.split(",")]
    allocator = DeviceAllocator(root, devices.split(","), host="node", holder=f"p{os.getpid()}", poll=0.005)
    if int(own_rank) >= 0:
        allocator.take_own(int(own_rank))
    marks = Path(root) / "marks"
    ready = Path(root) / "ready"
    (ready / str(os.getpid())).touch()
    while len(os.listdir(ready)) < int(racers):  # a barrier: every racer has its own device before any group
        time.sleep(0.001)
    groups, overlaps = [], 0
    for r in range(int(rounds)):
        n = sizes[r % len(sizes)]
        with allocator.acquire(n, f"job{r}", timeout=60) as lease:
            assert len(set(lease.devices)) == n
            mine = []
            for device in lease.devices:  # a second holder of a device would find its mark there
                try:
                    os.close(os.open(marks / device, os.O_CREAT | os.O_EXCL))
                    mine.append(device)
                except FileExistsError:
                    overlaps += 1
            time.sleep(0.002)
            for device in mine:
                os.unlink(marks / device)
            groups.append(list(lease.devices))
    finished = Path(root) / "finished"
    (finished / str(os.getpid())).touch()
    while len(os.listdir(finished)) < int(racers):  # own devices stay held until every racer is done
        time.sleep(0.001)
    print(json.dumps({"own": allocator.own, "groups": groups, "overlaps": overlaps}), flush=True)
"""


def race(tmp_path, devices: int, sizes: list[str], rounds: int = 12, own_ranks: list[int] | None = None) -> list[dict]:
    (tmp_path / "marks").mkdir()
    (tmp_path / "ready").mkdir()
    (tmp_path / "finished").mkdir()
    ids = ",".join(str(i) for i in range(devices))
    own_ranks = own_ranks or [-1] * len(sizes)
    racers = [python(RACER, str(tmp_path), ids, size, str(rounds), str(own), str(len(sizes)))
              for size, own in zip(sizes, own_ranks)]
    outputs = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err[-2000:]
        outputs.append(json.loads(out))
    for output in outputs:
        assert output["overlaps"] == 0, "two holders of one device"
        assert len(output["groups"]) == rounds, "every request was served"
    return outputs


@pytest.mark.parametrize("devices,sizes", [
    (4, ["2"] * 6),                       # groups of 2 out of 4
    (8, ["2"] * 6),                       # groups of 2 out of 8
    (8, ["8", "2", "2,3", "2,8"]),        # the whole node against small groups
])
def test_competing_workers_never_share_a_device_and_all_are_served(tmp_path, devices, sizes):
    race(tmp_path, devices, sizes)


def test_groups_use_their_workers_device_and_never_another_workers(tmp_path):
    """Four workers owning devices 0-3 of eight, groups of 2: each group is its worker's device
    and one of 4-7 (GPUs / k workers keep every group running at once)."""
    outputs = race(tmp_path, 8, ["2"] * 4, own_ranks=[0, 1, 2, 3])
    owned = {o["own"] for o in outputs}
    assert owned == {"0", "1", "2", "3"}
    for output in outputs:
        for group in output["groups"]:
            assert group[0] == output["own"] and group[1] not in owned


HOLDER = """
    import sys, time
    from bench.devices import DeviceAllocator
    allocator = DeviceAllocator(sys.argv[1], ["0", "1", "2", "3"], host="node", holder="doomed")
    allocator.take_own(0)
    lease = allocator.acquire(2, "task/ner/en/full-ft/1")
    print(",".join(lease.devices), flush=True)
    time.sleep(600)
"""


def test_a_killed_workers_devices_are_free_at_once(tmp_path):
    holder = python(HOLDER, str(tmp_path))
    assert holder.stdout.readline().strip() == "0,1"
    allocator = DeviceAllocator(tmp_path, FOUR, host="node", poll=0.01)
    with pytest.raises(DevicesBusy, match=r"job x: waited 0s for 3 devices.*0: group of task/ner/en/full-ft/1 "
                                          r"\(doomed\); 1: group of task/ner/en/full-ft/1 \(doomed\)"):
        allocator.acquire(3, "job x", timeout=0.2)
    holder.kill()
    holder.wait()
    with allocator.acquire(4, "job y", timeout=0) as lease:  # no lease to wait out
        assert lease.devices == FOUR


def test_a_group_larger_than_the_node_is_a_configuration_error_at_once(tmp_path):
    allocator = DeviceAllocator(tmp_path, FOUR, host="node")
    allocator.take_own(0)
    started = time.monotonic()
    with pytest.raises(NotEnoughDevices, match=r"^task/ner/en/full-ft/1: hyperparameters\.runtime\.zero_group_size = 8 "
                                               r"needs 8 devices, but this worker sees 4 on node \(0, 1, 2, 3;.*\): set "
                                               r"zero_group_size to at most 4"):
        allocator.acquire(8, "task/ner/en/full-ft/1", setting=SETTING)
    assert time.monotonic() - started < 1, "no waiting for what cannot come"


def test_a_worker_owned_device_is_never_in_another_group_and_a_wait_on_it_ends(tmp_path):
    other = DeviceAllocator(tmp_path, FOUR, host="node", holder="other-worker")
    assert other.take_own(0) == "0"
    mine = DeviceAllocator(tmp_path, FOUR, host="node", holder="me", poll=0.01)
    assert mine.take_own(1) == "1"
    with mine.acquire(3, "job a") as lease:
        assert lease.devices == ("1", "2", "3")
    started = time.monotonic()
    with pytest.raises(DevicesBusy, match=r"job b: hyperparameters\.runtime\.zero_group_size = 4, but on node 1 of the 4 "
                                          r"devices are other workers' own \(0: a worker's own device \(other-worker\)\).*"
                                          r"start at most 1 workers per node"):
        mine.acquire(4, "job b", setting=SETTING, stuck_timeout=0.3)  # no timeout: only being stuck ends it
    assert time.monotonic() - started < 5
    other.close()
    with mine.acquire(4, "job b", stuck_timeout=0.3) as lease:
        assert lease.devices == ("1", "0", "2", "3")  # the worker's own first: the group's rank 0 runs there


def test_a_workers_own_device_is_its_local_ranks_else_a_free_one(tmp_path):
    first = DeviceAllocator(tmp_path, FOUR, host="node")
    assert first.take_own(1) == "1" and first.take_own(1) == "1"
    second = DeviceAllocator(tmp_path, FOUR, host="node")  # a second launch on the node, same local rank
    assert second.take_own(5) == "2"
    rest = [DeviceAllocator(tmp_path, FOUR, host="node") for _ in range(2)]
    assert sorted(a.take_own(0) for a in rest) == ["0", "3"]
    with pytest.raises(DevicesBusy, match="has no device of its own: all 4 devices it sees on node are owned by other "
                                          "workers.*start at most 4 workers on this node"):
        DeviceAllocator(tmp_path, FOUR, host="node", poll=0.01).take_own(2, stuck_timeout=0.1)


def test_leases_of_one_node_are_apart_from_another_nodes(tmp_path):
    a = DeviceAllocator(tmp_path, FOUR, host="node-a")
    b = DeviceAllocator(tmp_path, FOUR, host="node-b")
    with a.acquire(4, "x", timeout=0), b.acquire(4, "y", timeout=0):
        assert (tmp_path / "devices" / "node-a" / "0.lock").exists() and (tmp_path / "devices" / "node-b").is_dir()


# -- the worker's ZeRO groups -------------------------------------------------------------------------

class FakeTorchrun:
    """Stands in for ``subprocess.Popen`` of torchrun: records what it was given, writes the output."""
    calls: list = []
    interrupt = False
    during = None  # called while the group "runs"; what it returns is kept as .seen

    def __init__(self, command, env, pass_fds, **kwargs):
        self.command, self.env, self.pass_fds, self.returncode, self.signals = command, env, pass_fds, None, []
        FakeTorchrun.calls.append(self)
        self.workspace = Path(command[-1]).parent

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def communicate(self, timeout=None):
        if FakeTorchrun.interrupt and not self.signals:
            raise WorkerStopped(signal.SIGTERM)
        self.seen = FakeTorchrun.during() if FakeTorchrun.during else None
        (self.workspace / "output.json").write_text(json.dumps({"metrics": {}}))
        self.returncode = 0
        return "group output\n", ""

    def send_signal(self, signum):
        self.signals.append(signum)

    def kill(self):
        self.signals.append(signal.SIGKILL)


def zero_call(tmp_path, monkeypatch, processes: int):
    monkeypatch.setattr(FakeTorchrun, "calls", [])
    monkeypatch.setattr(bench.worker.subprocess, "Popen", FakeTorchrun)
    store = RunStore(tmp_path)
    job = Job.make("task", "task/ner/en/full-ft/1", {"method": "full-ft"})
    workspace = store.new_workspace(job.id)
    context = SimpleNamespace(store=store, jobs_by_id={}, progress=lambda line: None)
    return _run_in_zero_group(job, context, workspace, processes, default_hyperparameters()["runtime"])


def test_a_zero_group_sees_only_its_leased_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    worker = lease_worker_device(tmp_path, FOUR, 1, "node:1:rank1")
    busy = DeviceAllocator(tmp_path, FOUR, holder="a group of another worker")

    def meanwhile():
        third = DeviceAllocator(tmp_path, FOUR)
        with pytest.raises(DevicesBusy):
            third.acquire(2, "a third group", timeout=0)
        with third.acquire(1, "a third group", timeout=0) as lease:
            return lease.devices, worker.record("1")["kind"], worker.record("2")["job"]

    monkeypatch.setattr(FakeTorchrun, "during", meanwhile)
    with busy.acquire(1, "other job"):  # device 0 taken by someone else's group
        assert zero_call(tmp_path, monkeypatch, 2) == {"metrics": {}}
    (call,) = FakeTorchrun.calls
    assert call.env["CUDA_VISIBLE_DEVICES"] == "1,2", "the worker's own device first, then the first free one"
    assert "LOCAL_RANK" not in call.env and "RANK" not in call.env
    assert call.command[call.command.index("--nproc_per_node") + 1] == "2"
    assert len(call.pass_fds) == 2, "torchrun holds the lease too, should the worker die under it"
    assert call.seen == (("3",), "group", "task/ner/en/full-ft/1"), "only device 3 was left while the group ran"
    assert worker.record("1")["kind"] == "worker"
    with DeviceAllocator(tmp_path, FOUR).acquire(3, "after", timeout=0) as lease:  # the group's devices came back
        assert lease.devices == ("0", "2", "3") and worker.own == "1"


def test_a_stopped_worker_stops_its_group_before_the_devices_go_back(tmp_path, monkeypatch):
    lease_worker_device(tmp_path, FOUR, 0, "node:1:rank0")
    monkeypatch.setattr(FakeTorchrun, "interrupt", True)
    with pytest.raises(WorkerStopped):
        zero_call(tmp_path, monkeypatch, 4)
    assert FakeTorchrun.calls[0].signals == [signal.SIGTERM]
    with DeviceAllocator(tmp_path, FOUR).acquire(3, "after", timeout=0) as lease:
        assert lease.devices == ("1", "2", "3")


def test_on_cpu_a_zero_group_gets_the_environment_it_always_had(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    zero_call(tmp_path, monkeypatch, 2)  # no allocator: no devices on this machine
    (call,) = FakeTorchrun.calls
    assert call.pass_fds == () and "CUDA_VISIBLE_DEVICES" not in call.env and "RANK" not in call.env
    assert call.env == zero_group_env(os.environ, None)
    assert call.env["DS_ACCELERATOR"] == "cpu"


def test_a_group_larger_than_the_node_fails_the_job_naming_it_and_the_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.worker.subprocess, "Popen", FakeTorchrun)
    lease_worker_device(tmp_path, ("0", "1"), 0, "node:1:rank0")
    store = RunStore(tmp_path)
    job = Job.make("task", "task/ner/en/full-ft/1", {"method": "full-ft"})
    claim = store.try_claim(job.id, "node:1:rank0")
    context = SimpleNamespace(store=store, jobs_by_id={job.id: job}, progress=lambda line: None,
                              runtime=Runtime.local("cpu"))
    with pytest.raises(NotEnoughDevices):
        _run_one(job, store, claim, context, "node:1:rank0", None, 4, default_hyperparameters()["runtime"])
    claim.release()
    error = store.error(job.id)["error"]
    assert error.startswith("NotEnoughDevices: task/ner/en/full-ft/1: hyperparameters.runtime.zero_group_size = 4 "
                            "needs 4 devices, but this worker sees 2")
    assert not list(store.job_dir(job.id).glob("work-*"))


def test_a_group_size_per_method_is_refused_when_the_suite_loads():
    """Workers read runtime settings once, for every job: a per-method override would be ignored."""
    raw = yaml.safe_load((ROOT / "tests" / "fixtures" / "zero-suite.yaml").read_text())
    raw["overrides"] = {"full-ft": {"runtime": {"zero_group_size": 4}}}
    with pytest.raises(SuiteError, match=r"^zero\.yaml: overrides\.full-ft\.runtime: runtime settings apply to every "
                                         r"job of the run; set them under hyperparameters\.runtime"):
        parse_suite(raw, "zero.yaml", check_paths=False)


def test_a_zero_group_binds_its_own_rendezvous_port(tmp_path, monkeypatch):
    """Groups starting together must not race for a port picked before torchrun binds it: the
    group's agent binds one itself (--standalone: c10d on localhost:0)."""
    zero_call(tmp_path, monkeypatch, 2)
    (call,) = FakeTorchrun.calls
    assert "--standalone" in call.command
    assert not any(arg in call.command for arg in ("--master_port", "--master_addr", "--rdzv_endpoint"))


def test_a_uuid_leased_group_sees_its_devices_by_the_names_its_worker_sees(tmp_path, monkeypatch):
    """Leases are keyed by UUID; the group's CUDA_VISIBLE_DEVICES uses the worker's own names for them."""
    from tests.bench.fake_cuda import FakeCuda

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setenv("LOCAL_RANK", "1")
    uuids = [f"GPU-{i}{i}{i}" for i in range(4, 8)]
    FakeCuda(uuids).install(monkeypatch)
    bound = bench.devices.bind_worker_device(tmp_path, "node:1:rank1")
    assert (bound.index, bound.uuid) == (1, "GPU-555")
    assert sorted(p.stem for p in (tmp_path / "devices").glob("*/*.lock")) == ["GPU-555"]
    zero_call(tmp_path, monkeypatch, 2)
    (call,) = FakeTorchrun.calls
    assert call.env["CUDA_VISIBLE_DEVICES"] == "5,4", "the worker's own device first, then the first free one"
