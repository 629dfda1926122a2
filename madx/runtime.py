"""Where a loop runs: device, mixed precision and (optionally) data parallelism.

``Runtime.local(device)`` is one process on one device: the suite runner's workers each run
their own jobs and must not join a collective. ``Runtime.distributed()`` hands everything to
``accelerate`` (DDP or DeepSpeed over all launched processes, gloo on CPU). The loops in
``madx.train`` and ``madx.evaluate`` only talk to this interface.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from typing import Any

import torch
from torch import nn

MIXED_PRECISION = ("no", "bf16", "fp16")


class Runtime:
    def __init__(self, device: torch.device, mixed_precision: str = "no", accelerator=None):
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
        self.device = device
        self.mixed_precision = mixed_precision
        self.accelerator = accelerator

    @classmethod
    def local(cls, device: str | torch.device | None = None, mixed_precision: str = "no") -> "Runtime":
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(torch.device(device), mixed_precision)

    @classmethod
    def distributed(cls, mixed_precision: str = "no", **accelerator_kwargs) -> "Runtime":
        from accelerate import Accelerator

        accelerator = Accelerator(mixed_precision=mixed_precision, **accelerator_kwargs)
        return cls(accelerator.device, mixed_precision, accelerator)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    def prepare(self, *objects):
        if self.accelerator is not None:
            return self.accelerator.prepare(*objects)
        prepared = []
        for obj in objects:
            if isinstance(obj, nn.Module):
                obj = obj.to(self.device)
            prepared.append(obj)
        return tuple(prepared) if len(prepared) > 1 else prepared[0]

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def autocast(self):
        if self.accelerator is not None:
            return self.accelerator.autocast()
        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        if self.accelerator is not None:
            norm = self.accelerator.clip_grad_norm_(model.parameters(), max_norm)
        else:
            norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)
        return float(norm) if norm is not None else float("nan")

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def sum_across_processes(self, value: int) -> int:
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return int(value)
        tensor = torch.tensor([value], device=self.device, dtype=torch.long)
        return int(self.accelerator.reduce(tensor, reduction="sum").item())

    def gather_objects(self, objects: list) -> list:
        """Concatenate per-process lists (in rank order) on every process."""
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return list(objects)
        from accelerate.utils import gather_object

        return gather_object(objects)

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int:
        """Peak device memory (CUDA) or the process's peak resident memory (CPU), in bytes."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)

    def describe(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.device)}"
        return "cpu"
