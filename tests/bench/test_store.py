import json
import os
import subprocess
import sys

from bench.store import RunStore


def test_claims_are_exclusive_and_released(tmp_path):
    store = RunStore(tmp_path)
    first = store.try_claim("job", "w1", lease_seconds=60)
    assert first is not None
    assert store.try_claim("job", "w2", lease_seconds=60) is None
    first.release()
    second = store.try_claim("job", "w2", lease_seconds=60)
    assert second is not None
    second.release()


def test_a_dead_workers_claim_is_retaken(tmp_path):
    store = RunStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    claim_path = store.job_dir("job") / "claim"
    claim_path.parent.mkdir(parents=True)
    import socket
    claim_path.write_text(json.dumps({"worker": "dead", "host": socket.gethostname(), "pid": int(dead)}))
    claim = store.try_claim("job", "alive", lease_seconds=3600)
    assert claim is not None and json.loads(claim_path.read_text())["worker"] == "alive"
    claim.release()


def test_an_expired_lease_is_retaken(tmp_path):
    store = RunStore(tmp_path)
    claim_path = store.job_dir("job") / "claim"
    claim_path.parent.mkdir(parents=True)
    claim_path.write_text(json.dumps({"worker": "elsewhere", "host": "another-node", "pid": 1}))
    os.utime(claim_path, (0, 0))
    assert store.try_claim("job", "w", lease_seconds=10) is not None


def test_commit_writes_artifacts_then_result_and_replaces_leftovers(tmp_path):
    store = RunStore(tmp_path)
    leftover = store.artifacts("job")
    leftover.mkdir(parents=True)
    (leftover / "half.bin").write_text("partial")
    workspace = store.new_workspace("job")
    (workspace / "adapter.safetensors").write_text("x")
    assert not store.is_done("job")
    store.commit("job", workspace, {"metrics": {"f1": 1.0}})
    assert store.is_done("job") and store.read_result("job")["metrics"]["f1"] == 1.0
    assert sorted(p.name for p in store.artifacts("job").iterdir()) == ["adapter.safetensors"]
