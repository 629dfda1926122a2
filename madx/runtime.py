"""Where a loop runs: device, mixed precision and (optionally) data parallelism.

``Runtime.local(device)`` is one process on one device: the suite runner's workers each run
their own jobs and must not join a collective. ``Runtime.distributed()`` hands everything to
``accelerate`` (DDP or DeepSpeed over all launched processes, gloo on CPU). The loops in
``madx.train`` and ``madx.evaluate`` only talk to this interface.

Mixed precision: ``bf16`` autocasts; ``fp16`` autocasts and scales the loss (fp16 gradients
underflow and overflow): the one-process runtime gives each training run a fresh
``torch.amp.GradScaler`` (the same scaler accelerate uses), accelerate and DeepSpeed scale their own.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

MIXED_PRECISION = ("no", "bf16", "fp16")
# torch.compile of the MLM step: "auto" compiles on CUDA only (on CPU, compiling costs more than it
# saves on the short jobs CPUs run), "yes" / "no" force it.
COMPILE = ("auto", "yes", "no")


class Runtime:
    def __init__(self, device: torch.device, mixed_precision: str = "no", accelerator=None, compile: str = "auto"):
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
        if compile not in COMPILE:
            raise ValueError(f"compile must be one of {COMPILE}, got {compile!r}")
        self.device = device
        self.mixed_precision = mixed_precision
        self.accelerator = accelerator
        self.compile = compile
        self.scaler: torch.amp.GradScaler | None = None  # local fp16 only (see prepare)
        self._scaled_optimizer = None

    @property
    def compiles(self) -> bool:
        """Whether training steps that support it run under torch.compile here."""
        return self.compile == "yes" or (self.compile == "auto" and self.device.type == "cuda")

    @classmethod
    def local(cls, device: str | torch.device | None = None, mixed_precision: str = "no", compile: str = "auto") -> "Runtime":
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(torch.device(device), mixed_precision, compile=compile)

    @classmethod
    def distributed(cls, mixed_precision: str = "no", compile: str = "auto", **accelerator_kwargs) -> "Runtime":
        # without CUDA, accelerate only forms a (gloo) process group when told it runs on CPU
        accelerator_kwargs.setdefault("cpu", not torch.cuda.is_available())
        accelerator = Accelerator(mixed_precision=mixed_precision, **accelerator_kwargs)
        return cls(accelerator.device, mixed_precision, accelerator, compile=compile)

    @classmethod
    def deepspeed(cls, zero_stage: int, mixed_precision: str = "no", gradient_clipping: float = 1.0,
                  compile: str = "auto") -> "DeepSpeedRuntime":
        return DeepSpeedRuntime(zero_stage, mixed_precision, gradient_clipping, compile)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return 0 if self.accelerator is None else self.accelerator.process_index

    def prepare(self, *objects):
        """Objects for one training run. Locally with fp16, an optimizer gets a fresh loss scaler (one
        per run: a worker's next job must not inherit the last one's scale)."""
        if self.accelerator is not None:
            return self.accelerator.prepare(*objects)
        prepared = []
        for obj in objects:
            if isinstance(obj, nn.Module):
                obj = obj.to(self.device)
            if isinstance(obj, torch.optim.Optimizer) and self.mixed_precision == "fp16":
                # fp16 gradients underflow (and overflow) without dynamic loss scaling; accelerate and
                # DeepSpeed scale their own, this is the same torch.amp.GradScaler for the local runtime
                self.scaler = torch.amp.GradScaler(self.device.type)
                self._scaled_optimizer = obj
            prepared.append(obj)
        return tuple(prepared) if len(prepared) > 1 else prepared[0]

    @property
    def keeps_master_weights(self) -> bool:
        """Whether the runtime keeps fp32 copies of low-precision trainable weights itself (DeepSpeed)."""
        return False

    @property
    def supports_checkpoints(self) -> bool:
        """Whether ``madx.train`` can checkpoint and resume training under this runtime."""
        return True

    def no_sync(self, model: nn.Module, skip: bool):
        """Inside: backward accumulates gradients without the data-parallel all-reduce (``skip`` True on
        every micro-batch of an accumulation window but the last), accelerate's own mechanism."""
        if skip and self.accelerator is not None and self.accelerator.num_processes > 1:
            return self.accelerator.no_sync(model)
        return contextlib.nullcontext()

    def skip_batches(self, loader, n: int):
        """``loader`` without its first ``n`` batches, drawn from its sampler but never collated (resume)."""
        if n == 0:
            return loader
        if self.accelerator is not None:
            return self.accelerator.skip_first_batches(loader, n)
        from accelerate.data_loader import SkipBatchSampler

        # the same generator: a DataLoader's iterator draws its base seed from it before the sampler draws its own
        return DataLoader(loader.dataset, batch_sampler=SkipBatchSampler(loader.batch_sampler, skip_batches=n),
                          collate_fn=loader.collate_fn, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                          generator=loader.generator)

    def scaler_state(self) -> dict[str, Any] | None:
        scaler = self._active_scaler()
        return None if scaler is None else scaler.state_dict()

    def load_scaler_state(self, state: dict[str, Any] | None) -> None:
        scaler = self._active_scaler()
        if scaler is not None and state:
            scaler.load_state_dict(state)

    def _active_scaler(self):
        if self.accelerator is not None:
            return getattr(self.accelerator, "scaler", None)
        return self.scaler

    def wait_for_everyone(self) -> None:
        if self.num_processes > 1:
            if self.accelerator is not None:
                self.accelerator.wait_for_everyone()
            else:
                dist.barrier()

    def any_across_processes(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (a stop signal seen by one rank stops all at the same step)."""
        return self.sum_across_processes(int(flag)) > 0 if self.num_processes > 1 else flag

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
        elif self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        if self.accelerator is not None:
            norm = self.accelerator.clip_grad_norm_(model.parameters(), max_norm)
        else:
            if self.scaler is not None:
                self.scaler.unscale_(self._scaled_optimizer)  # clip the true gradients, not the scaled ones
            norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)
        return float(norm) if norm is not None else float("nan")

    def optimizer_step(self, model: nn.Module, optimizer) -> bool:
        """Step; False when fp16 loss scaling skipped it (an inf/nan gradient: the scale shrinks instead).
        The caller then leaves the learning-rate schedule where it is, as accelerate does."""
        if self.accelerator is None and self.scaler is not None and optimizer is self._scaled_optimizer:
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            return self.scaler.get_scale() >= scale
        optimizer.step()
        return not getattr(optimizer, "step_was_skipped", False)  # accelerate's optimizer under its own scaler

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


class DeepSpeedRuntime(Runtime):
    """Data parallelism with DeepSpeed ZeRO over all launched processes (``torchrun``/``deepspeed``),
    for full-model jobs. DeepSpeed is driven directly: ``accelerate`` forms no process group for
    DeepSpeed without CUDA, and this path must also run (with gloo) on CPU machines and in CI."""

    def __init__(self, zero_stage: int, mixed_precision: str = "no", gradient_clipping: float = 1.0,
                 compile: str = "auto"):
        import deepspeed  # the optional extra madx-bench[deepspeed]: imported only by the runtime that needs it

        if zero_stage not in (1, 2):
            raise ValueError(f"ZeRO stage {zero_stage} is not supported here (1 or 2: parameters stay whole on each rank)")
        if not dist.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        super().__init__(device, mixed_precision, compile=compile)
        self.zero_stage = zero_stage
        self.gradient_clipping = gradient_clipping
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self._engine = None

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def num_processes(self) -> int:
        return self.world

    @property
    def process_index(self) -> int:
        return self.rank

    def prepare(self, model, optimizer, loader):
        import deepspeed  # optional extra, see __init__

        config = {
            "train_micro_batch_size_per_gpu": loader.batch_size,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": self.gradient_clipping,
            "zero_optimization": {"stage": self.zero_stage},
            "bf16": {"enabled": self.mixed_precision == "bf16"},
            "fp16": {"enabled": self.mixed_precision == "fp16"},
        }
        engine, ds_optimizer, _, _ = deepspeed.initialize(model=model.to(self.device), optimizer=optimizer, config=config)
        self._engine = engine
        seed = int(loader.generator.initial_seed()) if loader.generator is not None else 0
        sampler = DistributedSampler(loader.dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed)
        sharded = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn)
        return engine, ds_optimizer, sharded

    def autocast(self):
        return contextlib.nullcontext()  # DeepSpeed casts the model itself for bf16/fp16

    @property
    def keeps_master_weights(self) -> bool:
        return True  # its bf16/fp16 optimizers hold fp32 master weights (and scale fp16 losses)

    @property
    def supports_checkpoints(self) -> bool:
        return False  # partitioned optimizer states would need DeepSpeed's own checkpoint format

    def skip_batches(self, loader, n: int):
        if n == 0:
            return loader
        raise NotImplementedError("resuming a DeepSpeed ZeRO group's training from a checkpoint is not supported")

    def backward(self, loss: torch.Tensor) -> None:
        self._engine.backward(loss)

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        return float("nan")  # DeepSpeed clips inside engine.step (gradient_clipping); its norm comes after

    def optimizer_step(self, model: nn.Module, optimizer) -> bool:
        self._engine.step()
        return True

    def unwrap(self, model: nn.Module) -> nn.Module:
        return getattr(model, "module", model)

    def sum_across_processes(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(tensor)
        return int(tensor.item())

    def gather_objects(self, objects: list) -> list:
        gathered: list = [None] * self.world
        dist.all_gather_object(gathered, list(objects))
        return [item for part in gathered for item in part]

    def describe(self) -> str:
        return f"{super().describe()} x{self.world} (ZeRO-{self.zero_stage})"
