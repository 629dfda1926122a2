"""Time one (workload, variant) configuration: step time, tokens/s, peak memory, MFU.

A training step is what ``madx.train`` does per optimizer step: zero the grads, forward and loss
(under autocast when the preset asks), backward, clip the trainable grads' norm to 1, AdamW step.
An evaluation step is one no-grad forward. ``warmup`` untimed steps (the first one compiles under
``torch.compile``), then ``steps`` timed one by one, ``torch.cuda.synchronize()`` on each side on
CUDA; we report the median and the spread. Beside the wall time, each step's process CPU time
(``time.process_time``): on a shared CPU machine run with ``--threads 1`` it leaves out the time
other processes held the core, though not their slowdown of shared caches, memory bandwidth or
an SMT sibling, so it is less sensitive to the load than wall time (on CUDA it is only the
host's share).

Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps. CPU: PyTorch keeps
no CPU allocator statistics, so one more untimed step runs under ``torch.profiler`` with
``profile_memory=True``, which reports every CPU allocation and free made by PyTorch's allocator;
the peak is the bytes live before the step (weights, buffers, optimizer state, batch; grads set
to None first) plus the highest running total of allocations minus frees during it. Same meaning
as CUDA's number: the most tensor memory live at once. Process RSS is recorded beside it but is
monotone and process-wide, so it is no per-configuration number.

Attention backend. Which SDPA kernel ran is read from the aten op names of one profiled step
(``torch.profiler``; on CPU the memory step, on CUDA one more step): flash, flash for CPU,
efficient (memory-efficient), cuDNN, or math (``_scaled_dot_product_attention_math``, or an
``scaled_dot_product_attention`` call with no fused kernel under it). A compiled graph that
decomposed the math path into matmuls shows no SDPA op at all: "math (decomposed)". Beside it,
the model's ``config._attn_implementation`` (what HF was asked to call).

FLOP counter. One more forward + backward of the eager ``compute`` under
``torch.utils.flop_counter.FlopCounterMode`` (reference kernels: the counter cannot see inside
Triton), compared with the analytic model. The counter counts what runs: a fused SDPA kernel's
backward recomputes QKᵀ (5 products where the analytic model counts 4); that recomputation is
reported apart (``attention_backward_recompute``, and every op in ``by_op``) so the counts can be
matched exactly. The chunked cross-entropy forms its gradients inside its forward, with no
recomputation: its products are the analytic model's.

Variants:
    eager    the reference (pure PyTorch) adapter kernels, no compilation
    compile  the same, compiled as production compiles it: the MLM workloads (a, f, c) through
             ``MaskedLMObjective(compile=True)`` (the encoder, static shapes; head and loss eager), the
             others with ``compute`` (forward + loss) under ``torch.compile``; AOTAutograd compiles the backward
    fused    the Triton adapter kernels (MADX_KERNEL_IMPL=triton), eager otherwise; CUDA only
"""

from __future__ import annotations

import contextlib
import gc
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.perf.flops import step_flops
from madx import kernels
from bench.perf.workloads import Batches, Preset, Prepared, Workload

VARIANTS = ("eager", "compile", "fused")
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
    # process CPU time per timed step (time.process_time, all threads): on a shared CPU with one torch
    # thread, the step without the time other processes held the core
    cpu_time_s: dict[str, float] = field(default_factory=dict)
    first_step_s: float | None = None  # the first warm-up step (includes compilation)
    tokens_per_s: float | None = None  # non-pad tokens / median step time
    non_pad_tokens: int | None = None
    executed_tokens: int | None = None  # B·T: what the dense kernels compute
    non_pad_fraction: float | None = None
    attention_backend: str = ""  # the SDPA kernel seen in a profiled step
    attn_implementation: str = ""  # model.config._attn_implementation
    peak_memory_bytes: int | None = None
    peak_memory_method: str = ""
    saved_activation_bytes: int | None = None  # tensors autograd keeps for backward, weights excluded (eager only)
    flops: dict[str, Any] = field(default_factory=dict)  # analytic (bench/perf/flops.py)
    flop_counter: dict[str, Any] = field(default_factory=dict)  # torch's FlopCounterMode on one eager step
    achieved_tflops: float | None = None
    mfu: float | None = None
    trainable_params: int | None = None
    kernel_impl: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def kernel_impl(name: str):
    with kernels.use_impl(name):
        yield


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


def _allocation_peak(prof) -> int:
    """The highest running total of CPU allocations minus frees recorded by a profile_memory profile."""
    from torch._C._profiler import _EventType

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
    return peak


def cpu_allocation_peak(fn) -> int:
    """Peak bytes PyTorch's CPU allocator held during ``fn()`` above what was live before it."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return _allocation_peak(prof)


def profile_step(step, prepared: Prepared, optimizer, device: torch.device) -> tuple[int | None, set[str]]:
    """One profiled step: (CPU peak live bytes or None on CUDA, the names of the ops that ran).

    On CPU the peak is the bytes live before the step (weights, buffers, optimizer state, batch;
    grads set to None first, so none is counted twice) plus the allocation peak during it.
    """
    from torch.profiler import ProfilerActivity, profile

    on_cpu = device.type == "cpu"
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    gc.collect()
    resident = _storage_bytes(_resident_tensors(prepared, optimizer)) if on_cpu else 0
    with profile(activities=[ProfilerActivity.CPU], profile_memory=on_cpu) as prof:
        step()
        synchronize(device)
    names = {event.name for event in prof.events()}
    return (resident + _allocation_peak(prof) if on_cpu else None), names


# forward aten ops of each SDPA backend, most specific first
SDPA_KERNELS = (
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "flash (CPU)"),
    ("aten::_scaled_dot_product_flash_attention", "flash"),
    ("aten::_scaled_dot_product_efficient_attention", "efficient"),
    ("aten::_scaled_dot_product_cudnn_attention", "cudnn"),
    ("aten::_scaled_dot_product_fused_attention_overrideable", "fused (overrideable)"),
    ("aten::_scaled_dot_product_attention_math", "math"),
)


def attention_backend(op_names: set[str]) -> str:
    """Which SDPA backend(s) ran, from a profile's op names; "+"-joined if several did."""
    seen = [backend for op, backend in SDPA_KERNELS if op in op_names]
    if seen:
        return "+".join(seen)
    if "aten::scaled_dot_product_attention" in op_names:
        return "math"  # dispatched, but to no fused kernel
    return "math (decomposed)"  # no SDPA op at all: eager attention, or a compiled graph that inlined the math path


def _extra_flop_formulas() -> dict:
    """Formulas FlopCounterMode lacks (torch 2.13), with its own counting functions: CPU flash attention
    (counted like the CUDA SDPA kernels) and in-place ``addmm_`` (the chunked loss's fp32 d(weight)
    accumulation; counted like ``addmm``)."""
    from torch.utils import flop_counter

    aten = torch.ops.aten

    def sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    def sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    def addmm(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.mm_flop(a_shape, b_shape)

    mapping = {aten.addmm_: addmm}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = sdpa
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = sdpa_backward  # (grad_out, q, k, v, ...)
    return mapping


def _is_attention_op(name: str) -> tuple[bool, bool]:
    """(is an attention product, is a fused SDPA backward) for a FlopCounterMode op name."""
    fused = "scaled_dot_product" in name or name.startswith(("aten._flash_attention", "aten._efficient_attention"))
    return (fused or name == "aten.bmm"), (fused and "backward" in name)


def count_flops(prepared: Prepared, device: torch.device, preset: Preset) -> dict[str, Any]:
    """One eager forward (+ backward) under FlopCounterMode, with the reference kernels.

    ``attention``: bmm and SDPA products; ``attention_backward_recompute``: the QKᵀ a fused SDPA
    backward recomputes (1 of the 5 products torch counts for it; the analytic model counts 4).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    with kernel_impl("reference"), counter:
        if prepared.train:
            with autocast(device, preset):
                loss = prepared.compute(prepared.batch)
            loss.backward()
            del loss
        else:
            with torch.no_grad(), autocast(device, preset):
                prepared.compute(prepared.batch)
    prepared.model.zero_grad(set_to_none=True)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    attention = recompute = 0
    for name, n in by_op.items():
        is_attention, fused_backward = _is_attention_op(name)
        attention += n if is_attention else 0
        recompute += n // 5 if fused_backward else 0
    return {"total": int(counter.get_total_flops()), "attention": attention,
            "attention_backward_recompute": recompute, "by_op": by_op}


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
            peak_flops: float, log=print, flop_counter: bool = False) -> Row:
    """One row of the table; never raises for a failing configuration (the row says why).
    ``flop_counter``: also count one eager step with FlopCounterMode (see ``count_flops``)."""
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
            row.non_pad_tokens, row.executed_tokens = prepared.tokens
            row.non_pad_fraction = row.non_pad_tokens / row.executed_tokens
            row.attn_implementation = str(getattr(prepared.model.config, "_attn_implementation", "") or "")
            row.trainable_params = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
            counted = step_flops(prepared.shape, prepared.trainable, train=prepared.train)
            row.flops = counted.to_dict()
            compute = prepared.compute
            if variant == "compile":
                torch._dynamo.reset()
                compute = prepared.compile()
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
            samples, cpu_samples = [], []
            for _ in range(preset.steps):
                synchronize(device)
                start, cpu_start = time.perf_counter(), time.process_time()
                step()
                synchronize(device)
                samples.append(time.perf_counter() - start)
                cpu_samples.append(time.process_time() - cpu_start)
            if device.type == "cuda":
                row.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
                row.peak_memory_method = "torch.cuda.max_memory_allocated over the timed steps"
            # after the timed steps (and CUDA's peak): the extra steps below must not count
            cpu_peak, op_names = profile_step(step, prepared, optimizer, device)
            row.attention_backend = attention_backend(op_names)
            if device.type == "cpu":
                row.peak_memory_bytes = cpu_peak
                row.peak_memory_method = "CPU allocator live bytes via torch.profiler(profile_memory=True), one extra step"
            if variant == "eager" and prepared.train:  # after the peak: this forward runs with last step's grads live
                row.saved_activation_bytes = saved_activation_bytes(prepared, device, preset)
            if flop_counter:
                row.flop_counter = count_flops(prepared, device, preset)
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
    row.cpu_time_s = {"median": statistics.median(cpu_samples), "min": min(cpu_samples), "max": max(cpu_samples)}
    row.tokens_per_s = row.non_pad_tokens / median
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
