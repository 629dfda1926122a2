"""Devices of a node, partitioned between its workers by kernel locks in the run directory.

    RUN/devices/<host>/<GPU UUID>.lock held (flock) by whoever uses the device; never deleted.
                                       Its content says who: {"kind": "worker"|"group", "holder",
                                       "pid", "job", "since"} (for messages and humans only)

A worker owns one device for its life: its local rank's (another free one if that is taken).
A full-model job run as a DeepSpeed ZeRO group of ``n`` processes needs ``n`` devices: the
worker's own (its process only waits for the group meanwhile, so the group's rank 0 runs there)
and ``n - 1`` that nobody holds. The group is started with ``CUDA_VISIBLE_DEVICES`` set to
exactly those, so two groups never share a device and no group lands on another worker's.

Leases are exclusive ``flock``s, one lock file per device, for the reasons ``bench.store``
gives for job claims:

* the kernel (or the NFSv4 server) releases a lock when its process dies, however it dies, so a
  worker killed by ``kill -9`` or the OOM killer frees its devices at once; a lease file with an
  expiry would keep them idle until it ran out, or expire under a live but paused worker whose
  group still fills the GPUs.
* ``flock(LOCK_EX | LOCK_NB)`` is one atomic call: two workers cannot both take a device, with
  no check-then-act window.
* a lock cannot be taken from a live process.
The lock file is never unlinked (a worker that opened the old inode could lock it while another
locks a new file of the same name). The group's ``torchrun`` inherits the lease's descriptors,
so if the worker dies while its group still runs, the devices stay leased until the group ends.

Taking ``n`` devices: each device is its own lock; they are tried without blocking, in the
node's order, and if fewer than ``n`` could be had all of them are let go before waiting again
(with jitter). Nobody holds some devices while waiting for others, so there is no deadlock, and
a group of ``n`` is taken whole or not at all. The wait has two limits:

* ``n`` larger than the devices this worker sees is a configuration error, raised at once
  (``NotEnoughDevices``): waiting cannot help.
* devices held by other groups come back when those groups end, so that wait is bounded only by
  ``timeout`` (none by default). Devices owned by other workers come back only when those
  workers exit; when even every group ending would not leave ``n`` (more workers on the node
  than its GPUs leave room for), the wait fails after ``stuck_timeout`` (``DevicesBusy``),
  naming the job and who holds what.

Leases are per run directory: two runs (two ``--out``) on one node do not see each other's.

Leases are keyed by the GPU's UUID (``torch.cuda.get_device_properties(i).uuid``), never by a
visible index: under ``srun --gpus-per-task=1`` (or two jobs sharing a node) every worker sees
its GPU as ``cuda:0`` behind its own ``CUDA_VISIBLE_DEVICES``, and named by index they would all
fight over one lock. A worker binds its device (``bind_worker_device``) from ``LOCAL_RANK``
(torchrun, accelerate) or ``SLURM_LOCALID`` (srun) and makes it current before any other CUDA
call, so its context, allocations and Triton launches are all on it and none lands on GPU 0.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from bench.store import try_exclusive_lock

STUCK_SECONDS = 120.0  # how long a group may wait on devices that only a worker's exit can free


class DeviceError(RuntimeError):
    """Devices cannot be had: a configuration that asks for more than the node has, or a wait that cannot end."""


class NotEnoughDevices(DeviceError):
    pass


class DevicesBusy(DeviceError):
    pass


def node_devices(environ: Mapping[str, str] | None = None, count: int | None = None) -> tuple[str, ...]:
    """This process's devices as the node names them: the entries of ``CUDA_VISIBLE_DEVICES``
    (indices or UUIDs) when it is set, else ``0 .. device_count - 1``; ``()`` without CUDA."""
    environ = os.environ if environ is None else environ
    if count is None:
        import torch  # here, not above: processes given their devices (tests) need no torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count <= 0:
        return ()
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return tuple(str(i) for i in range(count))
    ids = [entry.strip() for entry in visible.split(",") if entry.strip()]
    return tuple(ids[:count])  # CUDA stops at the first entry it cannot use; count is what it found


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)  # MIG ids of old drivers contain slashes


class DeviceLease:
    """A ZeRO group's devices (the worker's own first); held until ``release``. ``fds`` are the
    lock descriptors to hand to the group's launcher (``pass_fds``)."""

    def __init__(self, allocator: "DeviceAllocator", devices: tuple[str, ...], taken: dict[str, int], job: str):
        self.allocator, self.devices, self.job = allocator, devices, job
        self._taken = taken  # device -> fd, the devices this lease locked itself (not the worker's own)
        self._held = True

    @property
    def fds(self) -> tuple[int, ...]:
        own = () if self.allocator.own is None else (self.allocator._own_fd,)
        return (*own, *self._taken.values())

    def release(self) -> None:
        """Give the group's devices back (the worker keeps its own). Safe to call twice."""
        if not self._held:
            return
        self._held = False
        self.allocator._unlock(self._taken)
        self.allocator._mark_own("worker", None)

    def __enter__(self) -> "DeviceLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class DeviceAllocator:
    """Leases on one node's devices under ``RUN/devices/<host>/``. ``devices`` are this
    process's devices in order (``node_devices()``; tests pass their own)."""

    def __init__(self, run_dir: str | Path, devices: Sequence[str], host: str | None = None,
                 holder: str | None = None, poll: float = 0.5):
        self.host = host or socket.gethostname()
        self.devices = tuple(str(d) for d in devices)
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"device list {list(self.devices)} names a device twice")
        self.directory = Path(run_dir) / "devices" / _file_name(self.host)
        self.holder = holder or f"{self.host}:{os.getpid()}"
        self.poll = poll
        self.own: str | None = None
        self._own_fd: int | None = None

    def lock_path(self, device: str) -> Path:
        return self.directory / f"{_file_name(device)}.lock"

    # -- locks ----------------------------------------------------------------------------------
    def _try_lock(self, device: str) -> int | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        return try_exclusive_lock(self.lock_path(device))

    def _write_record(self, fd: int, kind: str, job: str | None) -> None:
        record = {"kind": kind, "holder": self.holder, "pid": os.getpid(), "job": job, "since": time.time()}
        data = json.dumps(record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def _mark_own(self, kind: str, job: str | None) -> None:
        if self._own_fd is not None:
            self._write_record(self._own_fd, kind, job)

    def record(self, device: str) -> dict | None:
        """What the holder of ``device`` last wrote (None if nothing readable). Says nothing about
        whether the lock is held now: a dead holder's record stays until the next one's."""
        try:
            data = json.loads(self.lock_path(device).read_bytes() or b"null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _describe(self, devices: Sequence[str]) -> str:
        parts = []
        for device in devices:
            record = self.record(device) or {}
            what = "a worker's own device" if record.get("kind") == "worker" else f"group of {record.get('job', '?')}"
            parts.append(f"{device}: {what} ({record.get('holder', '?')})")
        return "; ".join(parts)

    @staticmethod
    def _for_life(record: dict | None) -> bool:
        """Held by a worker as its own device: free again only when that worker exits."""
        return record is not None and record.get("kind") == "worker"

    # -- the worker's own device ------------------------------------------------------------------
    def take_own(self, local_rank: int, stuck_timeout: float = STUCK_SECONDS) -> str:
        """Lease this worker's device for the life of the process: its local rank's, else the next
        free one. Waits while groups hold them all; raises DevicesBusy when workers do."""
        if self.own is not None:
            return self.own
        if not self.devices:
            raise NotEnoughDevices(f"no devices on {self.host} to give worker {self.holder}")
        first = local_rank % len(self.devices)
        order = self.devices[first:] + self.devices[:first]
        stuck_since = None
        while True:
            for device in order:
                fd = self._try_lock(device)
                if fd is not None:
                    self.own, self._own_fd = device, fd
                    self._write_record(fd, "worker", None)
                    return device
            now = time.monotonic()
            if all(self._for_life(self.record(d)) for d in order):
                stuck_since = now if stuck_since is None else stuck_since
                if now - stuck_since >= stuck_timeout:
                    raise DevicesBusy(
                        f"worker {self.holder} has no device of its own: all {len(order)} devices it sees on "
                        f"{self.host} are owned by other workers ({self._describe(order)}); start at most "
                        f"{len(order)} workers on this node")
            else:
                stuck_since = None
            time.sleep(self.poll * random.uniform(0.5, 1.5))

    def close(self) -> None:
        """Give the worker's own device back (process exit does the same)."""
        fd, self._own_fd, self.own = self._own_fd, None, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- groups -----------------------------------------------------------------------------------
    def acquire(self, n: int, job: str, setting: str = "the group size", timeout: float | None = None,
                stuck_timeout: float = STUCK_SECONDS) -> DeviceLease:
        """``n`` devices for ``job``'s group, all or none: the worker's own and ``n - 1`` free ones.
        ``setting`` names where ``n`` came from, for the error messages."""
        if n < 1:
            raise ValueError(f"{job}: {setting} = {n}; a group needs at least one device")
        if n > len(self.devices):
            raise NotEnoughDevices(
                f"{job}: {setting} = {n} needs {n} devices, but this worker sees {len(self.devices)} on "
                f"{self.host} ({', '.join(self.devices) or 'none'}; CUDA_VISIBLE_DEVICES narrows what a worker "
                f"sees): set {setting.rsplit('.', 1)[-1]} to at most {len(self.devices)}, or run on nodes with "
                f"{n} GPUs")
        started = time.monotonic()
        stuck_since = None
        while True:
            lease, blocked = self._try_group(n, job)
            if lease is not None:
                return lease
            now = time.monotonic()
            for_life = [d for d in blocked if self._for_life(self.record(d))]
            if len(self.devices) - len(for_life) < n:  # even with every group over, n are not there
                stuck_since = now if stuck_since is None else stuck_since
                if now - stuck_since >= stuck_timeout:
                    raise DevicesBusy(
                        f"{job}: {setting} = {n}, but on {self.host} {len(for_life)} of the {len(self.devices)} "
                        f"devices are other workers' own ({self._describe(for_life)}), which leaves fewer than {n} "
                        f"for this group for as long as those workers live; start at most "
                        f"{len(self.devices) // n} workers per node (each group uses its worker's device and "
                        f"{n - 1} more)")
            else:
                stuck_since = None
            if timeout is not None and now - started >= timeout:
                raise DevicesBusy(f"{job}: waited {timeout:.0f}s for {n} devices on {self.host} ({setting} = {n}); "
                                  f"held: {self._describe(blocked)}")
            time.sleep(self.poll * random.uniform(0.5, 1.5))

    def _try_group(self, n: int, job: str) -> tuple[DeviceLease | None, list[str]]:
        """One pass over the devices in the node's order, without blocking: the lease, or None and
        the devices that were held by others (then nothing stays taken)."""
        need = n - (self.own is not None)
        taken: dict[str, int] = {}
        blocked: list[str] = []
        try:
            for device in self.devices:
                if len(taken) == need:
                    break
                if device == self.own:
                    continue
                fd = self._try_lock(device)
                if fd is None:
                    blocked.append(device)
                else:
                    taken[device] = fd
            if len(taken) < need:
                self._unlock(taken)
                return None, blocked
            for fd in taken.values():
                self._write_record(fd, "group", job)
            self._mark_own("group", job)
        except BaseException:
            self._unlock(taken)
            raise
        own = () if self.own is None else (self.own,)
        return DeviceLease(self, (*own, *taken), taken, job), blocked

    @staticmethod
    def _unlock(taken: dict[str, int]) -> None:
        for fd in taken.values():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        taken.clear()


# One allocator per run directory in a worker process: flock locks of two descriptors conflict
# even within one process, so a second allocator would see this worker's own device as taken.
_WORKERS: dict[Path, DeviceAllocator] = {}


def lease_worker_device(run_dir: str | Path, devices: Sequence[str], local_rank: int, holder: str,
                        stuck_timeout: float = STUCK_SECONDS) -> DeviceAllocator:
    """This worker process's allocator for ``run_dir``, with its own device leased (once)."""
    key = Path(run_dir).resolve()
    allocator = _WORKERS.get(key)
    if allocator is None or allocator.devices != tuple(devices):
        if allocator is not None:
            allocator.close()
        allocator = DeviceAllocator(run_dir, devices, holder=holder)
        allocator.take_own(local_rank, stuck_timeout)
        _WORKERS[key] = allocator
    return allocator


def worker_allocator(run_dir: str | Path) -> DeviceAllocator | None:
    """The allocator ``lease_worker_device`` made for ``run_dir`` in this process (None on CPU)."""
    return _WORKERS.get(Path(run_dir).resolve())


# -- a worker's identity and its one device ------------------------------------------------------
def local_rank(environ: Mapping[str, str] | None = None) -> int:
    """This worker's index on its node: ``LOCAL_RANK`` (torchrun, accelerate, launch/workers.sh),
    else ``SLURM_LOCALID`` (a plain ``srun`` task), else 0."""
    environ = os.environ if environ is None else environ
    return int(environ.get("LOCAL_RANK", environ.get("SLURM_LOCALID", "0")))


def global_rank(environ: Mapping[str, str] | None = None) -> int:
    """This worker's index in the whole launch: ``RANK``, else ``SLURM_PROCID``, else the local rank."""
    environ = os.environ if environ is None else environ
    return int(environ.get("RANK", environ.get("SLURM_PROCID", local_rank(environ))))


def device_uuids(count: int) -> tuple[str, ...]:
    """The UUIDs of this process's visible devices 0 .. count - 1, as nvidia-smi and
    ``CUDA_VISIBLE_DEVICES`` spell them (``GPU-…``; MIG instances keep their ``MIG-…``)."""
    import torch

    uuids = []
    for index in range(count):
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        uuids.append(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    return tuple(uuids)


@dataclass(frozen=True)
class WorkerDevice:
    """The device a worker owns: ``cuda:{index}`` in this process, leased as ``uuid``."""

    index: int
    uuid: str
    uuids: tuple[str, ...]  # every visible device's UUID, by visible index
    names: tuple[str, ...]  # the same devices as CUDA_VISIBLE_DEVICES names them (or their indices)

    def visible_names(self, uuids: Sequence[str]) -> tuple[str, ...]:
        """``CUDA_VISIBLE_DEVICES`` entries for leased ``uuids`` (a ZeRO group's), in their order."""
        return tuple(self.names[self.uuids.index(u)] for u in uuids)


_BOUND: dict[Path, WorkerDevice] = {}


def bind_worker_device(run_dir: str | Path, holder: str, environ: Mapping[str, str] | None = None,
                       stuck_timeout: float = STUCK_SECONDS) -> WorkerDevice | None:
    """Make this worker's device current and lease it for the process's life; None without CUDA.

    The local rank's device is made current first, before anything else touches CUDA (reading the
    UUIDs included), so the context opens there; if another worker owns it already (two runs of
    one node's local ranks), the next free device is leased and made current instead."""
    import torch

    key = Path(run_dir).resolve()
    if key in _BOUND:
        return _BOUND[key]
    environ = os.environ if environ is None else environ
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count <= 0:
        return None
    local = local_rank(environ)
    preferred = local % count
    torch.cuda.set_device(preferred)
    uuids = device_uuids(count)
    allocator = lease_worker_device(run_dir, uuids, local, holder, stuck_timeout)
    index = uuids.index(allocator.own)
    if index != preferred:
        torch.cuda.set_device(index)
    bound = WorkerDevice(index, allocator.own, uuids, node_devices(environ, count))
    _BOUND[key] = bound
    return bound


def worker_device(run_dir: str | Path) -> WorkerDevice | None:
    """What ``bind_worker_device`` bound for ``run_dir`` in this process (None on CPU)."""
    return _BOUND.get(Path(run_dir).resolve())
