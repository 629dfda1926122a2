"""The one dispatch point for madx's adapter ops.

    bottleneck_adapter(hidden, residual, down_weight, down_bias, up_weight, up_bias, impl=None)
    stacked_bottleneck(hidden, residual, down1_weight, ..., up2_bias, impl=None)
    adapter_layer(normalised, ffn_output, attention_output, down_weight, down_bias, up_weight, up_bias,
                  ln_weight, ln_bias, ln_eps, impl=None)
    stacked_adapter_layer(normalised, ffn_output, attention_output, down1_weight, ..., up2_bias,
                          ln_weight, ln_bias, ln_eps, impl=None)
    nice_coupling(x, f_down_weight, ..., g_up_bias, inverse=False, impl=None)

``adapter_layer`` / ``stacked_adapter_layer`` are one adapter / Stack(language, task) as they sit
in a transformer layer, the layer's output LayerNorm included (MAD-X eq. 1, eq. 2);
``madx.inject.layer`` calls them. Each op has the signature of its pure-PyTorch twin in
``reference.py`` plus ``impl``. Implementations:

    "reference"  reference.py; any device and dtype; always available
    "triton"     every GEMM on cuBLAS (torch.mm), the memory-bound work around the GEMMs (bias,
                 ReLU, residual adds, LayerNorm, their backward, the bias-gradient sums) fused into
                 Triton row kernels (triton_rowwise.py; the ops in triton_bottleneck.py,
                 triton_layer.py, triton_nice.py). CUDA tensors in fp16/bf16/fp32, or CPU tensors
                 when TRITON_INTERPRET=1 was set before the Triton modules were imported

Choice, first match wins: the ``impl`` argument, the ``MADX_KERNEL_IMPL`` environment variable
("auto" or unset in either defers), else auto. Auto is the reference for CPU tensors; for CUDA
tensors it is whichever implementation a once-per-process timing probe on this device measured
faster for the call's op, dtype and sizes (``auto.py``; Triton must win by 5 %). Inside
torch.compile auto is the reference (Inductor fuses it). ``describe_auto()`` says what auto chose
and why; ``madx info`` prints it; ``probe_failures()`` lists the probes whose Triton path raised.
Triton launches on the current CUDA device, so every Triton call and probe runs with its tensors'
device current (``device_guard``): a worker on cuda:3 whose current device is still 0 would
otherwise launch there. A forced implementation that cannot run raises with the reason
instead of falling back. Triton is an optional extra (``pip install madx-bench[triton]``),
imported on first use.

History: until issue 11 the "triton" ops ran hand-written Triton GEMMs, and on an H200 their
backward was 2-5x slower than cuBLAS (reports/perf/h200.md: one language adapter, forward +
backward, 0.771 vs 0.226 ms), so auto never picked them. The ops kept their names and
signatures; their implementation is now the cuBLAS + Triton one above.
"""

from __future__ import annotations

import contextlib

import difflib
import functools
import os
from typing import NamedTuple

import torch

from madx.kernels import auto
from madx.kernels.reference import (
    adapter_layer_ref,
    bottleneck_adapter_ref,
    nice_coupling_ref,
    stacked_adapter_layer_ref,
    stacked_bottleneck_ref,
)

__all__ = [
    "IMPLEMENTATIONS",
    "OPS",
    "adapter_layer",
    "adapter_layer_ref",
    "available_implementations",
    "bottleneck_adapter",
    "bottleneck_adapter_ref",
    "describe_auto",
    "nice_coupling",
    "nice_coupling_ref",
    "probe_auto",
    "probe_failures",
    "resolve_impl",
    "set_impl",
    "use_impl",
    "stacked_adapter_layer",
    "stacked_adapter_layer_ref",
    "stacked_bottleneck",
    "stacked_bottleneck_ref",
]

IMPLEMENTATIONS = ("reference", "triton")
ENV_VAR = "MADX_KERNEL_IMPL"
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# the ops auto decides for (stacked_bottleneck is two bottleneck_adapter calls)
OPS = ("bottleneck_adapter", "adapter_layer", "stacked_adapter_layer", "nice_coupling")
_REFERENCES = {
    "bottleneck_adapter": bottleneck_adapter_ref,
    "adapter_layer": adapter_layer_ref,
    "stacked_adapter_layer": stacked_adapter_layer_ref,
    "nice_coupling": nice_coupling_ref,
}


class _TritonOps(NamedTuple):
    bottleneck_adapter: object
    adapter_layer: object
    stacked_adapter_layer: object
    nice_coupling: object
    interpret: bool


@functools.lru_cache(maxsize=None)
def _triton_ops() -> _TritonOps:
    """Import the Triton modules once, or raise ImportError."""
    import triton  # noqa: F401  (the optional extra)

    from madx.kernels import triton_rowwise
    from madx.kernels.triton_bottleneck import bottleneck_adapter_triton
    from madx.kernels.triton_layer import adapter_layer_triton, stacked_adapter_layer_triton
    from madx.kernels.triton_nice import nice_coupling_triton

    return _TritonOps(
        bottleneck_adapter_triton, adapter_layer_triton, stacked_adapter_layer_triton, nice_coupling_triton,
        triton_rowwise.INTERPRET,
    )


@functools.lru_cache(maxsize=None)
def _triton_status() -> tuple[bool, str]:
    """Probed once per process: (usable, "available..." or the reason not)."""
    try:
        interpret = _triton_ops().interpret
    except ImportError as e:
        if e.name == "triton":
            return False, f"not installed ({e.msg}); pip install 'madx-bench[triton]'"
        return False, f"import failed: {e}"
    except Exception as e:  # a broken install should be reported, not crash `madx info`
        return False, f"import failed: {type(e).__name__}: {e}"
    if interpret:
        return True, "available (interpreter: TRITON_INTERPRET=1, runs on CPU tensors, slow)"
    if not torch.cuda.is_available():
        return False, "installed, but no CUDA device (set TRITON_INTERPRET=1 to run it on CPU, slowly)"
    return True, "available"


def available_implementations() -> dict[str, str]:
    """name -> "available" (possibly with a note) or the reason it is not; for `madx info`."""
    ok, why = _triton_status()
    return {"reference": "available", "triton": why}


def _check_name(name: str, source: str) -> str:
    if name not in IMPLEMENTATIONS:
        close = difflib.get_close_matches(name, IMPLEMENTATIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown kernel implementation {name!r} (from {source}); known: {', '.join(IMPLEMENTATIONS)} "
            f"(or 'auto'){hint}"
        )
    return name


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


def _triton_unsupported(tensors: list[torch.Tensor]) -> str | None:
    """Why the Triton path cannot take these tensors, or None if it can."""
    ok, why = _triton_status()
    if not ok:
        return f"triton is {why}"
    interpret = _triton_ops().interpret
    for t in tensors:
        if t.device.type != "cuda" and not interpret:
            return f"a tensor is on {t.device}; the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 on CPU)"
    dtype = _compute_dtype(tensors[0])
    if dtype not in _TRITON_DTYPES:
        return f"dtype {dtype} is not supported by the Triton kernels (supported: fp16, bf16, fp32)"
    return None


# The process's forced implementation, (name or None for auto, where it came from): read from
# $MADX_KERNEL_IMPL once, on first use, then carried as a setting (set_impl / use_impl), never
# re-read per call.
_IMPL_SETTING: list[tuple[str | None, str]] = []


def _forced() -> tuple[str | None, str]:
    if not _IMPL_SETTING:
        env = os.environ.get(ENV_VAR, "").strip().lower()
        _IMPL_SETTING.append((None, "") if env in ("", "auto") else (env, f"${ENV_VAR}"))
    return _IMPL_SETTING[0]


def set_impl(name: str | None, source: str = "madx.kernels.set_impl") -> None:
    """Force ``name`` for every dispatched call in this process (None or "auto": auto's choice)."""
    if name in (None, "auto"):
        _IMPL_SETTING[:] = [(None, "")]
    else:
        _IMPL_SETTING[:] = [(_check_name(name, source), source)]


@contextlib.contextmanager
def use_impl(name: str | None):
    """``with use_impl("triton"): ...``: force an implementation for a block, then restore."""
    previous = _forced()
    set_impl(name, "madx.kernels.use_impl")
    try:
        yield
    finally:
        _IMPL_SETTING[:] = [previous]


def _sizes(op: str, args: tuple, kwargs: dict) -> tuple:
    """What besides dtype and token count distinguishes one probe of ``op`` from another."""
    h = args[0].shape[-1]
    if op in ("bottleneck_adapter", "adapter_layer"):
        return (h, args[3 if op == "adapter_layer" else 2].shape[0])
    if op == "stacked_adapter_layer":
        return (h, args[3].shape[0], args[7].shape[0])
    return (h, args[1].shape[0], bool(kwargs.get("inverse", False)))


# Devices auto probes on. CPU tensors always get the reference: the Triton kernels run there only
# through the interpreter, a correctness tool (tests add "cpu" here to exercise the probe).
_AUTO_DEVICES = ("cuda",)


def _auto_choice(op: str, args: tuple, kwargs: dict) -> auto.Choice:
    tensors = [t for t in args if isinstance(t, torch.Tensor)]
    device = tensors[0].device
    if device.type not in _AUTO_DEVICES:
        return auto.Choice(
            "reference", f"tensors on {device.type}: auto picks Triton only for CUDA tensors, by measurement")
    why = _triton_unsupported(tensors)
    if why is not None:
        return auto.Choice("reference", why)
    dtype = _compute_dtype(tensors[0])
    train = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    tokens = auto.probe_tokens(tensors[0].numel() // max(tensors[0].shape[-1], 1))
    sizes = _sizes(op, args, kwargs)
    key = (op, str(device), dtype, sizes, tokens, train)
    choice = auto.cached(key)
    if choice is not None:
        return choice
    cuda = device.type == "cuda"
    if cuda and torch.cuda.is_current_stream_capturing():
        return auto.Choice("reference", "CUDA graph capture before any probe of this shape: the reference")
    where = torch.cuda.get_device_name(device) if cuda else device.type
    what = (f"{'forward + backward' if train else 'forward'}, {tokens} tokens, sizes {sizes}, "
            f"{str(dtype).removeprefix('torch.')} on {where}")
    with device_guard(device):  # the probe's launches, warm-up included, on the probed device
        return auto.choose(
            key,
            auto.runner(op, _REFERENCES[op], sizes, tokens, dtype, device, train),
            auto.runner(op, getattr(_triton_ops(), op), sizes, tokens, dtype, device, train),
            what,
            timer=lambda fns: auto.median_ms(fns, device),
        )


def resolve_impl(impl: str | None, *tensors: torch.Tensor | None, op: str = "bottleneck_adapter", **kwargs) -> str:
    """The implementation a call of ``op`` with these arguments (in the op's order) runs: the forced
    one (argument, then env), checked that it can run on these tensors, else auto's choice."""
    source = "impl argument"
    if impl in (None, "auto"):
        impl, source = _forced()
    if impl not in (None, "auto"):
        impl = _check_name(impl, source)
        if impl == "triton":
            why = _triton_unsupported([t for t in tensors if isinstance(t, torch.Tensor)])
            if why is not None:
                raise RuntimeError(f"kernel implementation 'triton' was forced ({source}) but cannot run: {why}")
        return impl
    if torch.compiler.is_compiling():  # Inductor fuses the reference itself; no probing code is traced
        return "reference"
    return _auto_choice(op, tensors, kwargs).impl


def _describe_key(key: tuple) -> str:
    op, device, dtype, sizes, tokens, train = key
    kind = "train" if train else "forward"
    return f"{kind} {tokens} tokens, sizes {sizes}, {str(dtype).removeprefix('torch.')}, {device}"


def describe_auto() -> dict[str, str]:
    """op -> what ``impl="auto"`` runs for it in this process and why (every probe made so far)."""
    forced, source = _forced()
    probes = auto.choices()
    lines = {}
    for op in OPS:
        mine = [(k, c) for k, c in probes.items() if k[0] == op]
        if mine:
            line = "; ".join(f"{c.impl} for {_describe_key(k)} ({c.reason})" for k, c in mine)
        elif not torch.cuda.is_available():
            line = "reference: no CUDA device here (auto picks Triton only for CUDA tensors, by a timing probe)"
        else:
            ok, why = _triton_status()
            line = ("not probed yet in this process: the first auto call on CUDA times both "
                    "(`madx info --probe` does it now at MAD-X's shapes)") if ok else f"reference: triton is {why}"
        if forced:
            line = f"forced to {forced!r} by {source}; auto would be: {line}"
        lines[op] = line
    lines["stacked_bottleneck"] = "two bottleneck_adapter calls, each dispatched as bottleneck_adapter"
    return lines


def probe_auto(
    hidden: int = 768, tokens: int = 64 * 256, dtype: torch.dtype = torch.bfloat16, device: str | None = None,
) -> dict[str, str]:
    """Run auto's probes now at MAD-X's shapes (language adapter d = h/2, task adapter d = h/16,
    invertible adapter k = h/4; training calls) on ``device`` (default: the current CUDA device;
    without one nothing is probed) and return ``describe_auto()``."""
    if device is None and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.current_device()}"
    if device is not None and _triton_status()[0]:
        la, ta, k = hidden // 2, hidden // 16, hidden // 4
        for op, sizes in (
            ("bottleneck_adapter", (hidden, la)), ("bottleneck_adapter", (hidden, ta)),
            ("adapter_layer", (hidden, la)), ("adapter_layer", (hidden, ta)),
            ("stacked_adapter_layer", (hidden, la, ta)),
            ("nice_coupling", (hidden, k, False)), ("nice_coupling", (hidden, k, True)),
        ):
            # leaves require grad, as in training
            args, kwargs, _ = auto._inputs(op, sizes, tokens, dtype, torch.device(device), train=True)
            with torch.enable_grad():
                _auto_choice(op, tuple(args), kwargs)
    return describe_auto()


def device_guard(device: torch.device):
    """``device`` made current for a block when it is a CUDA device (Triton launches on the current
    device, cuBLAS and allocations follow the tensors); nothing for other devices."""
    device = torch.device(device)
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def probe_failures() -> dict[str, str]:
    """"op on device (shape)" -> why its Triton path failed in auto's probe, for every such probe in
    this process (auto runs the reference there); for ``madx info``, provenance and worker logs."""
    return {f"{key[0]} on {key[1]} ({_describe_key(key)})": choice.reason for key, choice in auto.failures().items()}


def _dispatch(op: str, impl: str | None, args: tuple, **kwargs) -> torch.Tensor:
    if resolve_impl(impl, *args, op=op, **kwargs) == "triton":
        with device_guard(args[0].device):  # the forward's launches; autograd runs the backward on the device's thread
            return getattr(_triton_ops(), op)(*args, **kwargs)
    return _REFERENCES[op](*args, **kwargs)


def bottleneck_adapter(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
    impl: str | None = None,
) -> torch.Tensor:
    """up(ReLU(down(hidden))) + residual. hidden, residual: (..., h); down: (d, h); up: (h, d)."""
    return _dispatch("bottleneck_adapter", impl, (hidden, residual, down_weight, down_bias, up_weight, up_bias))


def stacked_bottleneck(
    hidden: torch.Tensor,
    residual: torch.Tensor,
    down1_weight: torch.Tensor,
    down1_bias: torch.Tensor | None,
    up1_weight: torch.Tensor,
    up1_bias: torch.Tensor | None,
    down2_weight: torch.Tensor,
    down2_bias: torch.Tensor | None,
    up2_weight: torch.Tensor,
    up2_bias: torch.Tensor | None,
    impl: str | None = None,
) -> torch.Tensor:
    """Stack(language, task), MAD-X eq. 2, without the layer's LayerNorm: two bottleneck adapters
    sharing one residual, composed (``stacked_adapter_layer`` is the fused block with the LN)."""
    la = bottleneck_adapter(hidden, residual, down1_weight, down1_bias, up1_weight, up1_bias, impl=impl)  # (..., h)
    return bottleneck_adapter(la, residual, down2_weight, down2_bias, up2_weight, up2_bias, impl=impl)  # (..., h)


def adapter_layer(
    normalised: torch.Tensor,
    ffn_output: torch.Tensor,
    attention_output: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor | None,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None,
    ln_eps: float,
    impl: str | None = None,
) -> torch.Tensor:
    """LN(up(ReLU(down(normalised))) + ffn_output + attention_output), MAD-X eq. 1 in a layer.
    All activations (..., h); down: (d, h); up: (h, d); ln_weight, ln_bias: (h,)."""
    return _dispatch("adapter_layer", impl, (
        normalised, ffn_output, attention_output, down_weight, down_bias, up_weight, up_bias,
        ln_weight, ln_bias, ln_eps,
    ))


def stacked_adapter_layer(
    normalised: torch.Tensor,
    ffn_output: torch.Tensor,
    attention_output: torch.Tensor,
    down1_weight: torch.Tensor,
    down1_bias: torch.Tensor | None,
    up1_weight: torch.Tensor,
    up1_bias: torch.Tensor | None,
    down2_weight: torch.Tensor,
    down2_bias: torch.Tensor | None,
    up2_weight: torch.Tensor,
    up2_bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None,
    ln_eps: float,
    impl: str | None = None,
) -> torch.Tensor:
    """Stack(language, task) in a layer, MAD-X eq. 2 ("paper" mode): la = A1(normalised) + r,
    out = LN(A2(la) + r + x). Shapes as in ``adapter_layer``; adapter 1 is the language adapter."""
    return _dispatch("stacked_adapter_layer", impl, (
        normalised, ffn_output, attention_output, down1_weight, down1_bias, up1_weight, up1_bias,
        down2_weight, down2_bias, up2_weight, up2_bias, ln_weight, ln_bias, ln_eps,
    ))


def nice_coupling(
    x: torch.Tensor,
    f_down_weight: torch.Tensor,
    f_down_bias: torch.Tensor | None,
    f_up_weight: torch.Tensor,
    f_up_bias: torch.Tensor | None,
    g_down_weight: torch.Tensor,
    g_down_bias: torch.Tensor | None,
    g_up_weight: torch.Tensor,
    g_up_bias: torch.Tensor | None,
    inverse: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """NICE coupling (MAD-X eq. 3) or its inverse (eq. 4); x: (..., h) -> (..., h). Both
    directions are differentiable on every implementation."""
    args = (x, f_down_weight, f_down_bias, f_up_weight, f_up_bias, g_down_weight, g_down_bias, g_up_weight, g_up_bias)
    return _dispatch("nice_coupling", impl, args, inverse=inverse)
