"""What ``impl="auto"`` runs on CUDA: the faster of reference and Triton, measured once per process.

The first auto call of an op on CUDA times both implementations, forward (+ backward when the
call records a graph), on inputs of the call's dtype and sizes (hidden and bottleneck sizes as
given, the token count rounded up to a power of two within [1024, 32768]) and caches the winner
under that key. Triton must be at least ``MARGIN`` faster to be picked, so timing noise cannot flip
a tie to the less-tested path. Nothing here runs on CPU: there auto is always the reference.

The probe uses its own random generator (the caller's RNG streams are untouched), runs outside
autocast with explicitly typed inputs, and is skipped where it cannot run: inside torch.compile
(auto is the reference there; Inductor fuses the reference itself) and during CUDA graph capture
(the cached choice, else the reference). It runs with the probed tensors' device current (warm-up
included), whatever device the caller left current: Triton launches on the current device.

A Triton path that fails in the probe makes auto the reference for that key, and the failure is
not swallowed: it is logged as a warning, kept (``failures()``; ``madx.kernels.probe_failures()``)
and shown by ``describe_auto()`` / ``madx info``, so a worker that silently runs the slower path
can be seen.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

MARGIN = 0.05  # Triton must take <= 95 % of the reference's time
TOKENS_MIN, TOKENS_MAX = 1024, 32768
WARMUP, REPS = 3, 15
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    impl: str  # "reference" or "triton"
    reason: str
    reference_ms: float | None = None
    triton_ms: float | None = None
    failed: bool = False  # the Triton path raised in the probe


# key -> Choice; key = (op, device, dtype, sizes, tokens, train)
_choices: dict[tuple, Choice] = {}
_lock = threading.RLock()


def probe_tokens(tokens: int) -> int:
    """The token count a probe times for a call with ``tokens`` rows."""
    p = 1 << max(int(tokens) - 1, 0).bit_length()
    return max(TOKENS_MIN, min(TOKENS_MAX, p))


def median_ms(
    fns: Sequence[Callable[[], object]], device: torch.device, warmup: int = WARMUP, reps: int = REPS,
) -> list[float]:
    """Median CUDA-event time of each fn, interleaved round by round so clock drift hits all alike.
    Everything, warm-up included, runs with ``device`` current (events and Triton launches use it)."""
    times: list[list[float]] = [[] for _ in fns]
    with torch.cuda.device(device):
        for _ in range(warmup):  # the first call also compiles the Triton kernels
            for fn in fns:
                fn()
        for _ in range(reps):
            for i, fn in enumerate(fns):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[i].append(start.elapsed_time(end))
    return [statistics.median(t) for t in times]


def choose(
    key: tuple,
    run_reference: Callable[[], object],
    run_triton: Callable[[], object],
    what: str,
    timer: Callable[[Sequence[Callable[[], object]]], list[float]],
) -> Choice:
    """The cached choice for ``key``, probing with ``timer`` the first time. ``what`` names the
    probed shape in the reason."""
    with _lock:
        if key in _choices:
            return _choices[key]
        try:
            ref_ms, tri_ms = timer([run_reference, run_triton])
        except Exception as e:  # a Triton path that fails here must not take the caller down, nor go unseen
            text = " ".join(str(e).split())[:300]
            choice = Choice("reference", f"the Triton path failed in the probe ({type(e).__name__}: {text})", failed=True)
            logger.warning("madx.kernels auto: %s: %s; auto runs the reference for it", what, choice.reason)
        else:
            ratio = ref_ms / tri_ms if tri_ms > 0 else float("inf")
            measured = f"{what}: Triton {tri_ms:.3f} ms vs reference {ref_ms:.3f} ms ({ratio:.2f}x)"
            if tri_ms <= (1 - MARGIN) * ref_ms:
                choice = Choice("triton", f"measured faster, {measured}", ref_ms, tri_ms)
            else:
                why = f"Triton not >= {1 / (1 - MARGIN):.2f}x faster, {measured}"
                choice = Choice("reference", why, ref_ms, tri_ms)
        _choices[key] = choice
        return choice


def cached(key: tuple) -> Choice | None:
    return _choices.get(key)


def choices() -> dict[tuple, Choice]:
    """Every probe made in this process so far."""
    return dict(_choices)


def failures() -> dict[tuple, Choice]:
    """The probes whose Triton path failed in this process."""
    return {key: choice for key, choice in _choices.items() if choice.failed}


def clear() -> None:
    """Forget every probe (tests; or after changing devices or settings that affect speed)."""
    with _lock:
        _choices.clear()


def _inputs(op: str, sizes: tuple, tokens: int, dtype: torch.dtype, device: torch.device, train: bool):
    """Probe inputs in the op's argument order, and the leaves a training call differentiates:
    activations ~ N(0, 1), weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1); LayerNorm frozen as in MAD-X."""
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=device, dtype=torch.float32) * scale).to(dtype)

    def act(n):
        return rand(tokens, n)

    def lin(n_out, n_in):
        return [rand(n_out, n_in, scale=n_in**-0.5), rand(n_out, scale=0.1)]

    kwargs = {}
    if op == "bottleneck_adapter":
        h, d = sizes
        args = [act(h), act(h), *lin(d, h), *lin(h, d)]
    elif op in ("adapter_layer", "stacked_adapter_layer"):
        h, *ds = sizes
        adapters = [p for d in ds for p in (*lin(d, h), *lin(h, d))]
        ln = [1 + rand(h, scale=0.1), rand(h, scale=0.1), 1e-5]
        args = [act(h), act(h), act(h), *adapters, *ln]
    elif op == "nice_coupling":
        h, k, inverse = sizes
        half = h // 2
        args = [act(h), *lin(k, half), *lin(half, k), *lin(k, half), *lin(half, k)]
        kwargs = {"inverse": inverse}
    else:
        raise ValueError(f"no probe inputs for op {op!r}")
    n_ln = 3 if op.endswith("adapter_layer") else 0
    leaves = [a for a in args[: len(args) - n_ln] if isinstance(a, torch.Tensor)] if train else []
    for leaf in leaves:
        leaf.requires_grad_()
    return args, kwargs, leaves


def runner(op: str, fn: Callable, sizes: tuple, tokens: int, dtype: torch.dtype, device: torch.device, train: bool):
    """A no-argument callable running ``fn`` (forward, + backward when ``train``) on probe inputs."""
    args, kwargs, leaves = _inputs(op, sizes, tokens, dtype, device, train)
    gen = torch.Generator(device=device).manual_seed(1)  # never the caller's RNG
    grad = torch.randn(tokens, sizes[0], generator=gen, device=device).to(dtype) if train else None

    def run():
        with torch.autocast(device.type, enabled=False), torch.set_grad_enabled(train):
            out = fn(*args, **kwargs)
            if train:
                torch.autograd.grad(out, leaves, grad)

    return run
