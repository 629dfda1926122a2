"""A CUDA node that is not there, for CPU-only CI: ``torch.cuda`` patched with N devices that
have UUIDs, and a record of what a process did with them.

Device count and availability are free to ask (NVML answers them without a context); every
other call counts as CUDA work and is recorded as ``early`` when it comes before the process's
first ``set_device``: a worker must make its own device current before it touches CUDA, or its
context, allocations and Triton launches land on device 0.

    fake = FakeCuda(["GPU-aaa", "GPU-bbb"]); fake.install(monkeypatch)      # in a test
    FakeCuda.from_env().install()                                           # in a worker process
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import torch

ENV = "FAKE_CUDA_UUIDS"  # this process's visible devices' UUIDs, comma-separated, in visible order


class _Uuid:
    """As torch's ``_CUuuid``: ``str`` gives the bare UUID, without nvidia-smi's ``GPU-`` prefix."""

    def __init__(self, text: str):
        self.text = text.removeprefix("GPU-")

    def __str__(self) -> str:
        return self.text


class FakeCuda:
    def __init__(self, uuids: list[str]):
        self.uuids = list(uuids)
        self.current: int | None = None
        self.set_calls: list[int] = []
        self.early: list[str] = []  # CUDA work done before the first set_device
        self.empty_cache_calls = 0

    @classmethod
    def from_env(cls) -> "FakeCuda":
        return cls([u for u in os.environ[ENV].split(",") if u])

    def _index(self, device=None) -> int:
        if device is None:
            return self.current if self.current is not None else 0
        if isinstance(device, int):
            index = device
        else:
            device = torch.device(device)
            index = device.index if device.index is not None else self._index()
        if not 0 <= index < len(self.uuids):
            raise RuntimeError(f"CUDA error: invalid device ordinal ({index} of {len(self.uuids)})")
        return index

    def _work(self, what: str) -> None:
        if self.current is None:
            self.early.append(what)

    # -- the patched functions ---------------------------------------------------------------------
    def set_device(self, device) -> None:
        index = self._index(device)
        self.set_calls.append(index)
        self.current = index

    def current_device(self) -> int:
        self._work("current_device")
        return self._index()

    def get_device_properties(self, device=None):
        self._work("get_device_properties")
        index = self._index(device)
        return SimpleNamespace(name="Fake GPU", uuid=_Uuid(self.uuids[index]), total_memory=80 * 2**30,
                               major=9, minor=0, multi_processor_count=132)

    def get_device_name(self, device=None) -> str:
        return self.get_device_properties(device).name

    def empty_cache(self) -> None:
        self._work("empty_cache")
        self.empty_cache_calls += 1

    def install(self, monkeypatch=None) -> "FakeCuda":
        patches = {
            "is_available": lambda: True,
            "device_count": lambda: len(self.uuids),
            "set_device": self.set_device,
            "current_device": self.current_device,
            "get_device_properties": self.get_device_properties,
            "get_device_name": self.get_device_name,
            "is_bf16_supported": lambda *a, **k: True,
            "empty_cache": self.empty_cache,
            "reset_peak_memory_stats": lambda *a, **k: self._work("reset_peak_memory_stats"),
            "max_memory_allocated": lambda *a, **k: (self._work("max_memory_allocated"), 0)[1],
            "memory_allocated": lambda *a, **k: (self._work("memory_allocated"), 0)[1],
        }
        for name, value in patches.items():
            if monkeypatch is not None:
                monkeypatch.setattr(torch.cuda, name, value)
            else:
                setattr(torch.cuda, name, value)
        return self

    def record(self) -> dict:
        return {"pid": os.getpid(), "set_calls": self.set_calls, "current": self.current, "early": self.early,
                "uuid": None if self.current is None else self.uuids[self.current],
                "empty_cache_calls": self.empty_cache_calls}
