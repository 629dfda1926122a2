"""Multi-node launches for real: two "nodes" on this machine, one worker each, sharing one run
directory, started as launch/README.md says with the launch/ files themselves. Only the head
node's address, the port, the machine ranks and the worker count (one per "node") are set here."""

from __future__ import annotations

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


# Stand-ins for the two SLURM commands the script uses, emulating SLURM_NNODES nodes on this machine.
SRUN = r"""#!/bin/bash
# srun: the command once per node (one task each) with SLURM_NODEID/PROCID/LOCALID set, output
# labelled as by `srun --label`, the task's shell traced so the test sees the command it ran.
# All "nodes" are this machine, so each would host the c10d store; the head node starts first
# and the others once its store listens, as on a cluster.
set -u
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  (SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 env SHELLOPTS=xtrace "$@" 2>&1 | sed -u "s/^/$node: /"
   exit "${PIPESTATUS[0]}") &
  pids+=($!)
  if ((node == 0)); then
    until (exec 3<>"/dev/tcp/127.0.0.1/$MASTER_PORT") 2>/dev/null; do kill -0 "$!" 2>/dev/null || break; sleep 0.2; done
  fi
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
"""
SCONTROL = r"""#!/bin/bash
# scontrol: only `scontrol show hostnames LIST`, one "node" per SLURM_NNODES, all this machine.
# Slow after the first line, as a long node list is: a reader that stops early (`| head -n 1`
# under pipefail) then kills the script with SIGPIPE every time, not only on unlucky timing.
[[ "${1-} ${2-}" == "show hostnames" ]] || { echo "scontrol stand-in: not emulated: $*" >&2; exit 2; }
for ((node = 0; node < SLURM_NNODES; node++)); do ((node)) && sleep 0.3; echo localhost; done
"""


def test_the_slurm_script_on_two_emulated_nodes(single_worker, tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (stubs / name).write_text(text)
        (stubs / name).chmod((stubs / name).stat().st_mode | stat.S_IXUSR)
    out, port = tmp_path / "run", free_port()
    allocation = {"SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "1",
                  "MASTER_PORT": str(port), "PATH": f"{stubs}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    with launches(tmp_path, **allocation) as start:
        script = start("sbatch", ["bash", str(LAUNCH / "slurm-multinode.sbatch"), MINI, str(out)])
        (output,) = outputs_of(script)
    by_node = ["\n".join(line[3:] for line in output.splitlines() if line.startswith(f"{node}: ")) for node in (0, 1)]
    check_run(out, single_worker, by_node)
    for node, node_output in enumerate(by_node):
        assert (f"+ accelerate launch --multi_gpu --num_machines 2 --num_processes 2 --machine_rank {node} "
                f"--main_process_ip localhost --main_process_port {port} --rdzv_backend c10d "
                f"-m madx bench run {MINI} --out {out}") in node_output.splitlines()
        config = torchrun_config(node_output)
        assert (config["rdzv_backend"], config["rdzv_endpoint"], config["nproc_per_node"]) == ("c10d", f"localhost:{port}", "1")
