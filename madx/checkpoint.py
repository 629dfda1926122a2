"""Training checkpoints: what a stopped training job needs to go on exactly where it stopped.

    DIR/step-00001200/state.pt          tensors: trainable weights, optimizer, scheduler, loss scaler,
                                        the best-so-far weights, this process's RNG states
    DIR/step-00001200/rng-rank<N>.pt    the RNG states of each other process (data parallelism)
    DIR/step-00001200/loop.json         the loop's bookkeeping: step, epoch, data position, history,
                                        best metrics, early-stopping count, token counts
    DIR/step-00001200/manifest.json     written last: a checkpoint is complete iff its manifest exists

Every file is written atomically (``madx.atomic``) and the manifest last (nanochat's habit), so a
process killed while writing leaves an incomplete folder that ``latest`` ignores and the next
``save`` removes. After a new checkpoint is complete the older ones are removed: one checkpoint
per job on disk.

The manifest carries a fingerprint of what the checkpoint belongs to (the training config, the
trainable parameters' names and shapes, batches per epoch, processes); resuming under another
fingerprint is an error that names what differs, never a silent mix of two runs.

``deferred_stop`` makes SIGTERM / SIGUSR1 (SLURM's ``--signal``) wait for the end of the
optimizer step in flight: the loop then writes a checkpoint of that completed step and delivers
the signal to the handler that was installed before (``bench.worker`` raises ``WorkerStopped``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from madx.atomic import atomic_write, atomic_write_json

FORMAT = 1
MANIFEST = "manifest.json"
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed here (another run's, unreadable): names the folder and why."""


def step_dir(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}"


def latest(directory: str | os.PathLike | None) -> Path | None:
    """The complete checkpoint with the highest step in ``directory`` (None: none, or no directory)."""
    if directory is None or not Path(directory).is_dir():
        return None
    complete = [p for p in Path(directory).glob("step-*") if (p / MANIFEST).is_file()]
    return max(complete, key=lambda p: p.name) if complete else None


def fingerprint_problems(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, as ``key: saved -> now`` (nested dicts by dotted key)."""
    problems = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            problems += [f"{key}.{p}" for p in fingerprint_problems(a, b)]
        elif a != b:
            problems.append(f"{key}: {a!r} -> {b!r}")
    return problems


def save(directory: str | os.PathLike, step: int, state: dict[str, Any], loop: dict[str, Any],
         fingerprint: dict[str, Any], rank_states: dict[int, dict[str, Any]] | None = None) -> Path:
    """Write one complete checkpoint (manifest last), then remove every other one. Main process only;
    other processes' RNG states come in ``rank_states`` or were written with ``save_rank_state``."""
    folder = step_dir(directory, step)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # rewriting a step (a second signal): incomplete until the end
    atomic_write(folder / "state.pt", lambda tmp: torch.save(state, tmp))
    for rank, rank_state in (rank_states or {}).items():
        save_rank_state(directory, step, rank, rank_state)
    atomic_write(folder / "loop.json", lambda tmp: Path(tmp).write_text(json.dumps(loop, default=_plain), encoding="utf-8"))
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    atomic_write_json(folder / MANIFEST, {"format": FORMAT, "step": step, "fingerprint": fingerprint, "files": files})
    for other in Path(directory).glob("step-*"):
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)
    return folder


def save_rank_state(directory: str | os.PathLike, step: int, rank: int, state: dict[str, Any]) -> None:
    folder = step_dir(directory, step)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"rng-rank{rank}.pt", lambda tmp: torch.save(state, tmp))


def load(folder: Path, fingerprint: dict[str, Any], rank: int = 0) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(state, loop, this rank's RNG states) of a complete checkpoint made under ``fingerprint``."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder / MANIFEST}: unreadable ({error}); delete {folder} to start over") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{folder}: checkpoint format {manifest.get('format')!r}, this madx reads {FORMAT}")
    problems = fingerprint_problems(manifest.get("fingerprint", {}), fingerprint)
    if problems:
        raise CheckpointError(f"{folder} belongs to another training run ({'; '.join(problems[:5])}): use another "
                              f"checkpoint directory, or delete it to start over")
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        loop = json.loads((folder / "loop.json").read_text(encoding="utf-8"))
        rng = state["rng"] if rank == 0 else torch.load(folder / f"rng-rank{rank}.pt", map_location="cpu", weights_only=True)
    except Exception as error:  # a complete manifest with a broken file: a disk fault, or edited by hand
        raise CheckpointError(f"{folder}: cannot read the checkpoint ({type(error).__name__}: {error}); delete {folder} "
                              f"to start over") from None
    return state, loop, rng


# -- random number generators -----------------------------------------------------------------------
def rng_states(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """Every RNG a training step can draw from: torch's on the CPU and on the training ``device`` (only
    that one: reading every visible GPU's would open a context on GPUs other workers own), Python's,
    NumPy's, and the loop's own generators (the shuffle, the collator's masks)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def restore_rng(states: dict[str, Any], generators: dict[str, torch.Generator], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _plain(value: Any) -> Any:
    """JSON for what dev metrics may hold besides floats (NumPy scalars, tensors of one value)."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a checkpoint's loop.json")


# -- stop signals -------------------------------------------------------------------------------------
class StopRequest:
    """SIGTERM / SIGUSR1 held back during training: ``signum`` is the one received (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _record(self, signum, frame) -> None:
        self.signum = signum

    def _install(self) -> None:
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._record)
            self._previous.setdefault(signum, previous if previous is not None else signal.SIG_DFL)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def deliver(self) -> None:
        """Hand the held signal to the handler that was installed before (``bench.worker``'s raises
        ``WorkerStopped``; the default one ends the process). If that handler returns, holding resumes."""
        signum, self.signum = self.signum, None
        if signum is None:
            return
        if not self._previous:  # not holding (off the main thread): nothing was intercepted
            return
        self._restore()
        try:
            signal.raise_signal(signum)
        except BaseException:
            self._previous.clear()
            raise
        self._install()


@contextlib.contextmanager
def deferred_stop(enabled: bool = True) -> Iterator[StopRequest]:
    """While inside, SIGTERM/SIGUSR1 are recorded instead of handled: the loop looks at ``request.signum``
    after each optimizer step, checkpoints that step and calls ``request.deliver()``. A signal still
    held at exit is delivered then. Off the main thread signals cannot be caught: a no-op there."""
    request = StopRequest()
    if enabled and threading.current_thread() is threading.main_thread():
        request._install()
    try:
        yield request
    finally:
        request._restore()
        request._previous.clear()
    if request.signum is not None:
        signum, request.signum = request.signum, None
        signal.raise_signal(signum)
