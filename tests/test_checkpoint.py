"""Checkpoints and resume (madx.checkpoint, madx.train): a run stopped by SIGTERM / SIGUSR1 or killed
outright, then resumed from its checkpoint directory, ends bit for bit where an uninterrupted run
ends (CPU, fp32): weights, losses, dev metrics, best step."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from torch import nn

from madx import checkpoint
from madx.runtime import Runtime
from madx.train import TrainConfig, train


class Stopped(BaseException):
    """What bench.worker's handler raises (WorkerStopped): a BaseException from inside the step."""


class Crash(RuntimeError):
    pass


class NoisyCollator:
    """Stacks rows and adds noise from its own generator (as MaskedLMCollator draws its masks)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, rows):
        x = torch.stack([r["input_ids"] for r in rows])
        return {"input_ids": x + 0.1 * torch.randn(x.shape, generator=self.generator), "y": torch.stack([r["y"] for r in rows])}


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 1))  # dropout: torch's RNG


DATA = [{"input_ids": v[:4], "y": v[4:]} for v in torch.randn(22, 5, generator=torch.Generator().manual_seed(1))]
DEV = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))


def run(directory=None, stop_at=(), crash_at=None, every=1000, stop_signal=signal.SIGTERM, **overrides):
    """Train; send ``stop_signal`` to this process inside the micro-batches numbered in ``stop_at`` (counting from 1
    within this call), raise Crash in micro-batch ``crash_at``. Returns (result or the exception, model)."""
    model = make_model()
    calls = [0]

    def loss_fn(m, batch):
        calls[0] += 1
        if calls[0] in stop_at:
            os.kill(os.getpid(), stop_signal)
        if calls[0] == crash_at:
            raise Crash("killed")
        return ((m(batch["input_ids"]) - batch["y"]) ** 2).mean()

    def evaluate(m):
        return {"loss": float(((m(DEV[:, :4]) - DEV[:, 4:]) ** 2).mean())}

    settings = dict(learning_rate=0.05, batch_size=4, num_epochs=4, gradient_accumulation_steps=2, eval_every=2,
                    select_metric="loss", greater_is_better=False, log_every=1, warmup_ratio=0.2, weight_decay=0.01,
                    checkpoint_dir=None if directory is None else str(directory), checkpoint_every=every)
    config = TrainConfig(**{**settings, **overrides})
    try:
        result = train(model, DATA, NoisyCollator(7), loss_fn, config, Runtime.local("cpu"), evaluate)
    except (Stopped, Crash) as error:
        return error, model
    return result, model


def comparable(result) -> dict:
    """A result without what measures time or memory, and without the resume marker."""
    out = result.to_dict()
    for key in ("wall_s", "tokens_per_s", "peak_memory_bytes", "resumed_from_step"):
        out.pop(key)
    out["history"] = [{k: v for k, v in h.items() if k not in ("tokens_per_s", "peak_memory_bytes")} for h in out["history"]]
    return out


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture
def stop_handler():
    previous = signal.signal(signal.SIGTERM, _raise_stopped), signal.signal(signal.SIGUSR1, _raise_stopped)
    yield
    signal.signal(signal.SIGTERM, previous[0])
    signal.signal(signal.SIGUSR1, previous[1])


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@pytest.fixture(scope="module")
def reference():
    result, model = run()
    assert result.steps == 12 and result.epochs == 4.0  # 6 batches, windows of 2, 2, 2: 3 steps an epoch
    return result, model


# micro-batch numbers: 1 (the first step's first half), 2 (a step's last half), 5 (mid-epoch),
# 6 (an epoch's last batch), 13 (an epoch's first batch), 23 (the last step)
@pytest.mark.parametrize("stop_at", [1, 2, 5, 6, 13, 23])
def test_a_stop_signal_checkpoints_the_step_in_flight_and_the_resumed_run_ends_identical(tmp_path, stop_handler, reference, stop_at):
    stopped, _ = run(tmp_path, stop_at=(stop_at,))
    assert isinstance(stopped, Stopped)
    saved = checkpoint.latest(tmp_path)
    assert saved is not None and saved.name == f"step-{(stop_at + 1) // 2:08d}"  # the step the signal arrived in
    result, model = run(tmp_path)
    assert result.resumed_from_step == (stop_at + 1) // 2
    assert comparable(result) == comparable(reference[0])
    assert same_weights(model, reference[1])


def test_stopped_twice_and_sigusr1_as_well(tmp_path, stop_handler, reference):
    assert isinstance(run(tmp_path, stop_at=(3,))[0], Stopped)
    assert isinstance(run(tmp_path, stop_at=(4,), stop_signal=signal.SIGUSR1)[0], Stopped)  # SLURM --signal=USR1@..
    assert checkpoint.latest(tmp_path).name == "step-00000004"
    result, model = run(tmp_path)
    assert result.resumed_from_step == 4
    assert comparable(result) == comparable(reference[0]) and same_weights(model, reference[1])


@pytest.mark.parametrize("crash_at", [8, 17])
def test_a_killed_run_resumes_from_its_last_periodic_checkpoint(tmp_path, reference, crash_at):
    crashed, _ = run(tmp_path, crash_at=crash_at, every=3)
    assert isinstance(crashed, Crash)
    assert checkpoint.latest(tmp_path).name == f"step-{(crash_at - 1) // 2 // 3 * 3:08d}"
    assert len(list(tmp_path.iterdir())) == 1  # older checkpoints are removed
    result, model = run(tmp_path, every=3)
    assert comparable(result) == comparable(reference[0]) and same_weights(model, reference[1])


def test_early_stopping_state_and_best_weights_survive_a_resume(tmp_path, stop_handler):
    reference, reference_model = run(early_stopping_patience=1, eval_every=1)
    assert reference.stopped_early and reference.best_step < reference.steps
    assert isinstance(run(tmp_path, stop_at=(2 * reference.best_step + 1,), early_stopping_patience=1, eval_every=1)[0], Stopped)
    result, model = run(tmp_path, early_stopping_patience=1, eval_every=1)
    assert comparable(result) == comparable(reference) and same_weights(model, reference_model)


def test_an_incomplete_checkpoint_is_ignored_and_another_runs_checkpoint_refused(tmp_path, stop_handler, reference):
    assert isinstance(run(tmp_path, stop_at=(5,))[0], Stopped)
    saved = checkpoint.latest(tmp_path)
    # a writer killed before its manifest: a later step's folder without one is not a checkpoint
    (tmp_path / "step-00000009").mkdir()
    (tmp_path / "step-00000009" / "state.pt").write_bytes(b"half")
    assert checkpoint.latest(tmp_path) == saved
    with pytest.raises(checkpoint.CheckpointError, match=r"belongs to another training run \(config\.learning_rate: 0\.05 -> 0\.1"):
        run(tmp_path, learning_rate=0.1)
    result, model = run(tmp_path)
    assert comparable(result) == comparable(reference[0]) and same_weights(model, reference[1])


def test_a_broken_checkpoint_is_an_error_naming_it(tmp_path, stop_handler):
    run(tmp_path, stop_at=(5,))
    saved = checkpoint.latest(tmp_path)
    (saved / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match=f"{saved}: cannot read the checkpoint"):
        run(tmp_path)


def test_without_a_checkpoint_dir_signals_act_at_once_and_nothing_is_written(tmp_path, stop_handler):
    stopped, _ = run(None, stop_at=(1,))
    assert isinstance(stopped, Stopped)
    assert signal.getsignal(signal.SIGTERM) is _raise_stopped


def test_the_guard_is_asked_before_each_checkpoint(tmp_path):
    calls = []
    model = make_model()
    config = TrainConfig(learning_rate=0.05, batch_size=4, max_steps=5, checkpoint_dir=str(tmp_path), checkpoint_every=2)

    def guard():
        calls.append(len(calls))
        if len(calls) == 2:
            raise PermissionError("claim lost")

    with pytest.raises(PermissionError, match="claim lost"):
        train(model, DATA, NoisyCollator(7), lambda m, b: ((m(b["input_ids"]) - b["y"]) ** 2).mean(), config,
              Runtime.local("cpu"), checkpoint_guard=guard)
    assert calls == [0, 1] and checkpoint.latest(tmp_path).name == "step-00000002"
    manifest = json.loads((checkpoint.latest(tmp_path) / "manifest.json").read_text())
    assert manifest["step"] == 2 and "state.pt" in manifest["files"] and "loop.json" in manifest["files"]


@pytest.mark.parametrize("stop_at", [3, 13])
def test_resume_through_accelerate_whose_loader_collates_one_batch_ahead(tmp_path, monkeypatch, stop_handler, reference, stop_at):
    """accelerate's DataLoaderShard collates the next batch before the loop sees the current one: the
    collator's generator has drawn past the step by the time it completes; the checkpoint holds the
    state from before that draw (one process here; tests/phases/test_ddp.py runs two)."""
    runtime = Runtime.distributed("no")
    monkeypatch.setattr(Runtime, "local", staticmethod(lambda device: runtime))
    assert isinstance(runtime.prepare(torch.utils.data.DataLoader(DATA, batch_size=4)), __import__("accelerate").data_loader.DataLoaderShard)
    assert isinstance(run(tmp_path, stop_at=(stop_at,))[0], Stopped)
    result, model = run(tmp_path)
    assert result.resumed_from_step == (stop_at + 1) // 2
    assert comparable(result) == comparable(reference[0]) and same_weights(model, reference[1])


def test_a_handler_that_returns_lets_training_go_on_after_the_checkpoint(tmp_path, reference):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        result, model = run(tmp_path, stop_at=(5,))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]  # handed on once, after the checkpoint of step 3
    assert checkpoint.latest(tmp_path).name == "step-00000003"
    assert comparable(result) == comparable(reference[0]) and same_weights(model, reference[1])


def test_only_the_training_devices_cuda_rng_is_read_and_restored(monkeypatch):
    """A worker owns one GPU but may see all: reading every device's RNG would open a CUDA context on each."""
    read, written = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("read every GPU's RNG state"))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: read.append(device) or torch.zeros(16, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: written.append(device))
    states = checkpoint.rng_states({}, torch.device("cuda", 1))
    checkpoint.restore_rng(states, {}, torch.device("cuda", 1))
    assert read == written == [torch.device("cuda", 1)]
    assert checkpoint.rng_states({}, torch.device("cpu"))["cuda"] is None and read == [torch.device("cuda", 1)]
