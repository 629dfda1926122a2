"""Time one (workload, variant) configuration: step time, tokens/s, peak memory, MFU.

A training step is what ``madx.train`` does per optimizer step: zero the grads, forward and loss
(under autocast when the preset asks), backward, clip the trainable grads' norm to 1, AdamW step.
An evaluation step is one no-grad forward. ``warmup`` untimed steps (the first one compiles under
``torch.compile``), then ``steps`` timed one by one, ``torch.cuda.synchronize()`` on each side on
CUDA; we report the median and the spread.

Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps. CPU: PyTorch keeps
no CPU allocator statistics, so one more untimed step runs under ``torch.profiler`` with
``profile_memory=True``, which reports every CPU allocation and free made by PyTorch's allocator;
the peak is the bytes live before the step (weights, buffers, optimizer state, batch; grads set
to None first) plus the highest running total of allocations minus frees during it. Same meaning
as CUDA's number: the most tensor memory live at once. Process RSS is recorded beside it but is
monotone and process-wide, so it is no per-configuration number.

Variants:
    eager    the reference (pure PyTorch) adapter kernels, no compilation
    compile  the same, with ``compute`` (forward + loss) under ``torch.compile``; AOTAutograd compiles the backward
    fused    the Triton adapter kernels (MADX_KERNEL_IMPL=triton), eager otherwise; CUDA only
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.perf.flops import step_flops
from bench.perf.workloads import Batches, Preset, Prepared, Workload

VARIANTS = ("eager", "compile", "fused")
KERNEL_ENV = "MADX_KERNEL_IMPL"
CPU_FUSED_REASON = "the Triton kernels need CUDA (their CPU interpreter mode is far too slow to time)"


@dataclass
class Row:
    workload: str  # key, "a".."e"
    name: str
    variant: str
    status: str  # "ok", "n/a" or "error"
    reason: str = ""
    step_s: dict[str, float] = field(default_factory=dict)  # median, min, max of the timed steps
    samples_s: list[float] = field(default_factory=list)  # every timed step, in order
    first_step_s: float | None = None  # the first warm-up step (includes compilation)
    tokens_per_s: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_method: str = ""
    saved_activation_bytes: int | None = None  # tensors autograd keeps for backward, weights excluded (eager only)
    flops: dict[str, Any] = field(default_factory=dict)
    achieved_tflops: float | None = None
    mfu: float | None = None
    trainable_params: int | None = None
    kernel_impl: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def kernel_impl(name: str):
    previous = os.environ.get(KERNEL_ENV)
    os.environ[KERNEL_ENV] = name
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(KERNEL_ENV, None)
        else:
            os.environ[KERNEL_ENV] = previous


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, preset: Preset):
    if preset.autocast == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_step(prepared: Prepared, compute, device: torch.device, preset: Preset):
    """The step closure and the optimizer (None for evaluation)."""
    batch = prepared.batch
    if not prepared.train:
        def eval_step() -> None:
            with torch.no_grad(), autocast(device, preset):
                compute(batch)

        return eval_step, None
    params = [p for p in prepared.model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, preset):
            loss = compute(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return train_step, optimizer


def _storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _resident_tensors(prepared: Prepared, optimizer) -> list[torch.Tensor]:
    tensors = [*prepared.model.parameters(), *prepared.model.buffers(), *prepared.batch.values()]
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


def cpu_peak_memory(step, prepared: Prepared, optimizer) -> int:
    """Peak live bytes of PyTorch's CPU allocator during one step (see the module docstring)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)  # the step starts without grads, so none is counted twice
    gc.collect()
    resident = _storage_bytes(_resident_tensors(prepared, optimizer))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()

    def walk(nodes):
        for node in nodes:
            yield node
            yield from walk(node.children)

    events = [n for n in walk(prof.profiler.kineto_results.experimental_event_tree()) if n.tag == _EventType.Allocation]
    events.sort(key=lambda n: n.start_time_ns)
    live = peak = 0
    for node in events:
        if node.extra_fields.device.type != "cpu":
            continue
        live += node.extra_fields.alloc_size  # negative for a free
        peak = max(peak, live)
    return resident + peak


def saved_activation_bytes(prepared: Prepared, device: torch.device, preset: Preset) -> int:
    """Bytes of the tensors one forward saves for backward, weights excluded: what decides activation memory."""
    weights = {p.untyped_storage().data_ptr() for p in prepared.model.parameters()}
    saved: dict[int, int] = {}

    kept: list = []  # the storages stay allocated until the forward ends, so no address is reused and recounted

    def pack(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        kept.append(storage)
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        # Keep no tensor: this graph is never run backward. Returning the tensor made a cycle (a saved
        # output -> its grad_fn -> the packed output) through autograd's C++ nodes that gc cannot
        # break, so every workload's graph and model stayed live (seen on CPU with the tiny preset)
        # and inflated the CUDA peak memory of the workloads measured after it. Storages hold no
        # autograd references.
        return None

    def unpack(_: None) -> torch.Tensor:
        raise RuntimeError("saved_activation_bytes keeps no tensors; its graph cannot run backward")

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack), autocast(device, preset):
        loss = prepared.compute(prepared.batch)
    del loss
    kept.clear()
    return sum(saved.values())


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(workload: Workload, variant: str, preset: Preset, batches: Batches, device: torch.device,
            peak_flops: float, log=print) -> Row:
    """One row of the table; never raises for a failing configuration (the row says why)."""
    row = Row(workload.key, workload.name, variant, "ok")
    if variant == "fused" and device.type != "cuda":
        row.status, row.reason = "n/a", CPU_FUSED_REASON
        return row
    impl = "triton" if variant == "fused" else "reference"
    row.kernel_impl = impl
    prepared = compute = step = optimizer = None
    try:
        with kernel_impl(impl):
            prepared = workload.build(preset, batches, device)
            if variant == "fused" and not prepared.uses_adapters:
                row.status, row.reason = "n/a", "no adapter ops in this workload: identical to eager"
                return row
            row.trainable_params = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
            counted = step_flops(prepared.shape, prepared.trainable, train=prepared.train)
            row.flops = counted.to_dict()
            compute = prepared.compute
            if variant == "compile":
                torch._dynamo.reset()
                compute = torch.compile(compute)
            step, optimizer = make_step(prepared, compute, device, preset)

            for i in range(preset.warmup):
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                if i == 0:
                    row.first_step_s = time.perf_counter() - start
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            samples = []
            for _ in range(preset.steps):
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                samples.append(time.perf_counter() - start)
            if device.type == "cuda":
                row.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
                row.peak_memory_method = "torch.cuda.max_memory_allocated over the timed steps"
            else:
                row.peak_memory_bytes = cpu_peak_memory(step, prepared, optimizer)
                row.peak_memory_method = "CPU allocator live bytes via torch.profiler(profile_memory=True), one extra step"
            if variant == "eager" and prepared.train:  # after the peak: this forward runs with last step's grads live
                row.saved_activation_bytes = saved_activation_bytes(prepared, device, preset)
    except torch.OutOfMemoryError as error:
        row.status, row.reason = "n/a", f"out of memory: {_first_line(error)}"
        return row
    except Exception as error:  # a compile failure is a result to report, not a crash
        row.status = "n/a" if variant == "compile" else "error"
        row.reason = _first_line(error)
        log(f"  {workload.key} {variant}: {row.status}: {row.reason}")
        return row
    finally:
        # drop every reference to this model before the next one is built: CUDA's peak counts whatever is live
        prepared = compute = step = optimizer = None
        if variant == "compile":
            torch._dynamo.reset()  # compiled graphs hold the model's parameters
        _free(device)

    row.samples_s = samples
    median = statistics.median(samples)
    row.step_s = {"median": median, "min": min(samples), "max": max(samples)}
    row.tokens_per_s = batches.real_tokens / median
    row.achieved_tflops = counted.total / median / 1e12
    row.mfu = counted.total / median / peak_flops
    return row


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 2048, reps: int = 10) -> dict[str, float]:
    """FLOP/s of a square matmul: the best of ``reps`` (the closest to the hardware's peak) and the median."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    flops = 2 * size**3
    return {"size": size, "dtype": str(dtype).removeprefix("torch."), "reps": reps,
            "best_flops": flops / min(times), "median_flops": flops / statistics.median(times)}
