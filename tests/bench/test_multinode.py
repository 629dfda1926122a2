"""Multi-node launches for real: two "nodes" on this machine, one worker each, sharing one run
directory, started as launch/README.md says with the launch/ files themselves. Only the head
node's address, the port, the machine ranks and the worker count (one per "node") are set here."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.bench.test_runner import MINI, _wait_for, bench_run, finished, results

pytestmark = pytest.mark.slow
LAUNCH = Path(__file__).resolve().parents[2] / "launch"
BIN = Path(sys.executable).parent  # where `accelerate` is installed beside this interpreter
LIMIT = 600  # seconds for a whole two-node run; the mini suite takes ~12 s on 2 CPU cores
START = re.compile(r"\[(\S+:rank\d+)\] start (\S+)")


@pytest.fixture(scope="module")
def single_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    finished(bench_run(out))
    return results(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def launches(tmp_path, **env):
    """start(name, command) runs command in its own session with its output in tmp_path/name.log
    (a file, not a pipe: a full pipe would stall one node while we wait on the other);
    whatever still runs at exit is killed with its process group."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "LOGLEVEL": "INFO",  # torchrun's agent then prints the launch configuration it was given
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    env = {k: v for k, v in env.items() if v is not None}  # None: unset for the launch
    started = []

    def start(name, command):
        with open(tmp_path / f"{name}.log", "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        process.log = tmp_path / f"{name}.log"
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def outputs_of(*processes) -> list[str]:
    """Waits until all have exited 0; one failing (or the time limit) ends the wait."""
    deadline = time.time() + LIMIT
    while any(p.poll() is None for p in processes) and not any(p.returncode for p in processes):
        if time.time() > deadline:
            break
        time.sleep(0.5)
    found = [process.log.read_text() for process in processes]
    failed = [f"{p.args} {'still ran' if p.returncode is None else f'exited {p.returncode}'}:\n{output[-3000:]}"
              for p, output in zip(processes, found) if p.returncode != 0]
    assert not failed, "\n\n".join(failed)
    return found


def torchrun_config(output: str) -> dict[str, str]:
    """The launch configuration torchrun's agent printed: what accelerate really passed on."""
    return dict(re.findall(r"\]\s{2,}(\w+)\s+: (.*)", output))


def check_run(out, single_worker, node_outputs: list[str]):
    assert results(out) == single_worker
    starts = [START.findall(output) for output in node_outputs]
    names = [name for found in starts for _, name in found]
    assert len(names) == len(set(names)) == len(single_worker), "every job started exactly once"
    assert all(starts), f"both nodes did work: jobs started per node {[len(found) for found in starts]}"


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_nodes_with_the_documented_config(single_worker, tmp_path, rendezvous):
    out, port = tmp_path / "run", free_port()

    def node(rank):
        # accelerate 1.15 keeps its argparse default (static) over the file's rdzv_backend, so
        # the README's c10d command passes it again; torchrun_config below shows what was used
        backend = ["--rdzv_backend", "c10d"] if rendezvous == "c10d" else []
        return [str(BIN / "accelerate"), "launch", "--config_file", str(LAUNCH / f"multi-node-{rendezvous}.yaml"), *backend,
                "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                "--main_process_port", str(port), "-m", "madx", "bench", "run", MINI, "--out", str(out)]

    with launches(tmp_path) as start:
        if rendezvous == "static":  # the worker node first: it waits for the head's store
            other = start("node1", node(1))
            nodes = [start("node0", node(0)), other]
        else:
            # Both "nodes" here match the endpoint's host, so either would host the c10d store, and
            # the head's accelerate refuses a port already taken. On a cluster only the head matches;
            # so here the head starts first and the other once the store listens.
            nodes = [start("node0", node(0))]
            assert _wait_for(lambda: listening(port) or nodes[0].poll() is not None), "the head never listened"
            assert nodes[0].poll() is None, nodes[0].log.read_text()[-3000:]
            nodes.append(start("node1", node(1)))
        outputs = outputs_of(*nodes)
    check_run(out, single_worker, outputs)
    for rank, output in enumerate(outputs):
        config = torchrun_config(output)
        assert {k: config.get(k) for k in ("min_nodes", "max_nodes", "nproc_per_node", "rdzv_backend", "rdzv_endpoint")} == {
            "min_nodes": "2", "max_nodes": "2", "nproc_per_node": "1", "rdzv_backend": rendezvous,
            "rdzv_endpoint": f"127.0.0.1:{port}"}
        if rendezvous == "static":  # c10d assigns node ranks itself
            assert f"'rank': {rank}" in config["rdzv_configs"]


# A stand-in for srun, emulating SLURM_NNODES nodes on this machine: the command once per task
# (--ntasks-per-node per node) with SLURM_NODEID/PROCID/LOCALID and SLURM_CPUS_PER_TASK (from
# --cpus-per-task only, as srun >= 22.05 does) set, each task's output in SRUN_STANDIN_DIR/task-<procid>.log
# and its pid in task-<procid>.pid. Like a cluster configured with KillOnBadExit=1, it ends every task
# when one exits non-zero, unless given --kill-on-bad-exit=0. It records its options and the
# environment the tasks got in srun.json, and exits with the worst task status, as srun does.
SRUN = r"""#!/usr/bin/env python3
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
options = {}
while args and args[0].startswith("--"):
    key, _, value = args.pop(0)[2:].partition("=")
    options[key] = value
folder = os.environ["SRUN_STANDIN_DIR"]
nodes, per_node = int(os.environ["SLURM_NNODES"]), int(options.get("ntasks-per-node", "1"))
tasks = []
for node in range(nodes):
    for local in range(per_node):
        procid = node * per_node + local
        env = {**os.environ, "SLURM_NODEID": str(node), "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(local)}
        env.pop("SLURM_CPUS_PER_TASK", None)
        if "cpus-per-task" in options:
            env["SLURM_CPUS_PER_TASK"] = options["cpus-per-task"]
        with open(os.path.join(folder, f"task-{procid}.log"), "w") as log:
            task = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        with open(os.path.join(folder, f"task-{procid}.pid"), "w") as out:
            out.write(str(task.pid))
        tasks.append(task)
keep = {k: env.get(k) for k in ("HF_HUB_OFFLINE", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "SLURM_CPUS_PER_TASK")}
with open(os.path.join(folder, "srun.json"), "w") as out:
    json.dump({"options": options, "command": args, "task_env": keep}, out)
while any(t.poll() is None for t in tasks):
    if options.get("kill-on-bad-exit") != "0" and any(t.returncode not in (None, 0) for t in tasks):
        for t in tasks:
            if t.poll() is None:
                t.send_signal(signal.SIGKILL)
    time.sleep(0.2)
codes = [t.returncode for t in tasks]
with open(os.path.join(folder, "exits.json"), "w") as out:
    json.dump(codes, out)
bad = [c for c in codes if c != 0]
sys.exit(0 if not bad else (128 - bad[0] if bad[0] < 0 else bad[0]))
"""
# what launch/node-env.sh sets unless the caller did: the test's own environment must not decide
NODE_ENV_UNSET = {"HF_HUB_OFFLINE": None, "TRITON_CACHE_DIR": None, "TORCHINDUCTOR_CACHE_DIR": None}
SCONTROL = r"""#!/bin/bash
# scontrol: only `scontrol show hostnames LIST`, one "node" per SLURM_NNODES, all this machine.
[[ "${1-} ${2-}" == "show hostnames" ]] || { echo "scontrol stand-in: not emulated: $*" >&2; exit 2; }
for ((node = 0; node < SLURM_NNODES; node++)); do echo localhost; done
"""


def test_the_slurm_script_runs_independent_workers_and_one_death_stops_no_other(single_worker, tmp_path):
    """sbatch's allocation as its environment: 2 nodes x 2 tasks, 3 CPUs and 1 GPU per task. The
    script must hand srun --cpus-per-task (srun no longer inherits it) and keep a dead task from
    ending the others; one worker is killed (-9) while the others work, and the suite still
    finishes with the single worker's results."""
    stubs, tasks = tmp_path / "bin", tmp_path / "tasks"
    stubs.mkdir()
    tasks.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (stubs / name).write_text(text)
        (stubs / name).chmod((stubs / name).stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "run"
    allocation = {"SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "2",
                  "SLURM_CPUS_PER_TASK": "3", "SLURM_GPUS_PER_TASK": "1", "SRUN_STANDIN_DIR": str(tasks),
                  "MADX_NODE_CACHE": str(tmp_path / "node-local"), **NODE_ENV_UNSET,
                  "PATH": f"{stubs}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    with launches(tmp_path, **allocation) as start:
        script = start("sbatch", ["bash", str(LAUNCH / "slurm-multinode.sbatch"), MINI, str(out)])
        logs = [tasks / f"task-{i}.log" for i in range(4)]

        def working():  # a worker in a job after prepare: others are claiming too
            return any(re.search(r"\] start (mlm|task)/", log.read_text()) for log in logs if log.exists())

        assert _wait_for(working, timeout=LIMIT), script.log.read_text()[-3000:]
        victim = next(i for i, log in enumerate(logs) if re.search(r"\] start (mlm|task)/", log.read_text()))
        os.kill(int((tasks / f"task-{victim}.pid").read_text()), signal.SIGKILL)
        deadline = time.time() + LIMIT
        while script.poll() is None and time.time() < deadline:
            time.sleep(0.5)
    srun = json.loads((tasks / "srun.json").read_text())
    assert srun["options"]["cpus-per-task"] == "3" and srun["task_env"]["SLURM_CPUS_PER_TASK"] == "3"
    assert srun["options"]["kill-on-bad-exit"] == "0" and srun["options"]["ntasks-per-node"] == "2"
    assert srun["options"]["gpus-per-task"] == "1"
    assert srun["command"][-4:] == ["run", MINI, "--out", str(out)] and "accelerate" not in srun["command"]
    assert srun["task_env"]["HF_HUB_OFFLINE"] == "1"
    assert srun["task_env"]["TRITON_CACHE_DIR"] == str(tmp_path / "node-local" / "triton")
    assert srun["task_env"]["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "node-local" / "inductor")
    exits = json.loads((tasks / "exits.json").read_text())
    assert exits[victim] == -signal.SIGKILL and script.returncode != 0, "srun reports the dead task"
    assert [code for i, code in enumerate(exits) if i != victim] == [0, 0, 0], "the other workers finished their work"
    assert results(out) == single_worker, "the suite finished, the killed worker's job included"
    started = [name for i in range(4) if i != victim for _, name in START.findall(logs[i].read_text())]
    assert len(started) == len(set(started)), "no job ran twice among the living"
    assert sum(bool(START.search(logs[i].read_text())) for i in range(4)) >= 2, "more than one worker did work"


def test_workers_sh_starts_independent_workers_on_a_node(single_worker, tmp_path):
    """launch/workers.sh: WORKERS plain workers with LOCAL_RANK/RANK, the node environment, and one
    killed worker leaves the other to finish the suite."""
    out = tmp_path / "run"
    with launches(tmp_path, WORKERS="2", NODE_RANK="1", MADX_NODE_CACHE=str(tmp_path / "node-local"), **NODE_ENV_UNSET) as start:
        node = start("node", ["bash", str(LAUNCH / "workers.sh"), MINI, str(out)])
        assert _wait_for(lambda: re.search(r"\] start (mlm|task)/", node.log.read_text()), timeout=LIMIT)
        workers = re.findall(r"\[\S+:(\d+):rank(\d+)\] start (?:mlm|task)/", node.log.read_text())
        pid, rank = workers[0]
        os.kill(int(pid), signal.SIGKILL)
        deadline = time.time() + LIMIT
        while node.poll() is None and time.time() < deadline:
            time.sleep(0.5)
    output = node.log.read_text()
    assert node.returncode == 128 + signal.SIGKILL, "the script reports the killed worker's status"
    ranks = set(re.findall(r"\[\S+:\d+:rank(\d+)\]", output))
    assert ranks <= {"2", "3"} and rank in ranks, f"NODE_RANK 1 x 2 workers: ranks 2 and 3, got {ranks}"
    assert results(out) == single_worker, "the other worker finished the suite, the killed one's job included"


WAITING_SRUN = """#!/bin/bash
# srun stand-in: says it started, then runs until the test releases it, and exits with that status
touch "$SRUN_STANDIN_DIR/started"
while [[ ! -f $SRUN_STANDIN_DIR/release ]]; do sleep 0.05; done
exit "$(cat "$SRUN_STANDIN_DIR/release")"
"""
RECORDING_SCONTROL = """#!/bin/bash
echo "$*" >> "$SRUN_STANDIN_DIR/scontrol.calls"
"""


@pytest.mark.parametrize("srun_status", [0, 3])
def test_the_slurm_script_requeues_itself_on_usr1_and_waits_for_its_workers(tmp_path, srun_status):
    """--signal=B:USR1@300 sends USR1 to the batch shell before the time limit: the script must ask
    SLURM to requeue the job (which then SIGTERMs every worker: they checkpoint and release their jobs)
    and must not exit before srun has: it exits with srun's status."""
    stubs, tasks = tmp_path / "bin", tmp_path / "tasks"
    stubs.mkdir()
    tasks.mkdir()
    for name, text in (("srun", WAITING_SRUN), ("scontrol", RECORDING_SCONTROL)):
        (stubs / name).write_text(text)
        (stubs / name).chmod((stubs / name).stat().st_mode | stat.S_IXUSR)
    text = (LAUNCH / "slurm-multinode.sbatch").read_text()
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@" in text
    allocation = {"SLURM_JOB_ID": "4242", "SLURM_NNODES": "1", "SRUN_STANDIN_DIR": str(tasks),
                  "MADX_NODE_CACHE": str(tmp_path / "node-local"), **NODE_ENV_UNSET,
                  "PATH": f"{stubs}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    with launches(tmp_path, **allocation) as start:
        script = start("sbatch", ["bash", str(LAUNCH / "slurm-multinode.sbatch"), MINI, str(tmp_path / "run")])
        assert _wait_for(lambda: (tasks / "started").exists(), timeout=60), script.log.read_text()
        os.kill(script.pid, signal.SIGUSR1)
        assert _wait_for(lambda: (tasks / "scontrol.calls").exists(), timeout=60), script.log.read_text()
        assert (tasks / "scontrol.calls").read_text().split() == ["requeue", "4242"]
        assert script.poll() is None, "the script ended before its workers"
        (tasks / "release").write_text(str(srun_status))
        assert script.wait(timeout=60) == srun_status, script.log.read_text()
